//! TLS interception ("bump"): the client's side of an inspected tunnel is finished with a
//! leaf minted by the organisation's CA, and the site's side is a TLS client that verifies
//! the site's certificate fully (system roots plus the configured extra roots, the name,
//! TLS 1.2 or 1.3 only). The proxy never mints a certificate for a site whose own
//! certificate failed: the request gets an error page naming the problem instead.
//!
//! Decisions are not taken here: the pipeline says which tunnels to bump.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lru::LruCache;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ServerSessionMemoryCache, StoresServerSessions};
use rustls::{
    AlertDescription, CertificateError, DigitallySignedStruct, OtherError, PeerIncompatible,
    RootCertStore, SignatureScheme,
};
use tokio_rustls::TlsAcceptor;

use super::body::CountedIncoming;
use super::ca::CertAuthority;
use super::dial::Dialer;
use super::leaf_cache::{self, LeafCache, LeafResolver};
use crate::classify::Host;
use crate::per_worker::PerWorker;
use crate::policy::{Lang, ReasonCode};

/// ALPN protocols offered to clients in a bumped tunnel, in order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The pooled client for sites reached over TLS from bumped tunnels.
pub type TlsUpstream = Client<HttpsConnector<Dialer>, CountedIncoming>;

/// Why TLS cannot be set up at start. Messages say what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read the upstream CA file {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "the upstream CA file {} holds no usable certificate ({why}); give a PEM file with \
         one or more CERTIFICATE blocks",
        .path.display()
    )]
    Bad { path: PathBuf, why: String },
    #[error(
        "no trusted root for upstream servers: the system store is empty or unreadable \
         ({0}); install the ca-certificates package or give --upstream-ca"
    )]
    NoRoots(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Acceptors kept, by host (about 1 KiB each): a host's next tunnel reuses its
/// configuration instead of building one.
pub const ACCEPTORS: usize = 4096;
/// TLS sessions the client side keeps for resumption, all hosts together (rustls's own
/// default for one configuration is 256).
pub const SESSIONS: usize = 8192;

/// What interception needs: the CA's leaves and their cache, the client-side acceptors,
/// and the upstream TLS client.
pub struct Bumper {
    leaves: Arc<LeafCache>,
    provider: Arc<CryptoProvider>,
    /// One client (and pool) per worker thread.
    upstream: PerWorker<TlsUpstream>,
    /// By canonical host. A tunnel used to build its own `ServerConfig`, with an empty
    /// session cache of 256 slots: the work of every tunnel, and no client could ever
    /// resume a session in the next tunnel to the same site.
    acceptors: Mutex<LruCache<String, TlsAcceptor>>,
    /// Shared by every acceptor. rustls resumes a session only for the server name it
    /// was made for (RFC 6066), and the tunnel checked that name against the CONNECT
    /// host before the handshake.
    sessions: Arc<dyn StoresServerSessions>,
}

impl fmt::Debug for Bumper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bumper")
            .field("leaves", &self.leaves)
            .finish()
    }
}

impl Bumper {
    /// `extra_roots`: PEM files trusted for upstream servers besides the system store;
    /// `workers`: how many worker threads get an upstream client of their own.
    pub fn new(
        ca: Arc<CertAuthority>,
        provider: Arc<CryptoProvider>,
        extra_roots: &[PathBuf],
        dialer: Dialer,
        keepalive: Duration,
        workers: usize,
    ) -> Result<Bumper, TlsSetupError> {
        let tls = client_config(provider.clone(), extra_roots)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(dialer);
        let upstream = PerWorker::new(workers, || {
            Client::builder(TokioExecutor::new())
                // Without a timer the pool never reaps idle connections (hyper-util).
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .pool_idle_timeout(keepalive)
                .pool_max_idle_per_host(64)
                .build(https.clone())
        });
        Ok(Bumper {
            leaves: Arc::new(LeafCache::new(ca, leaf_cache::DEFAULT_CAPACITY)),
            provider,
            upstream,
            acceptors: Mutex::new(LruCache::new(
                NonZeroUsize::new(ACCEPTORS).unwrap_or(NonZeroUsize::MIN),
            )),
            sessions: ServerSessionMemoryCache::new(SESSIONS),
        })
    }

    pub fn ca(&self) -> &Arc<CertAuthority> {
        self.leaves.ca()
    }

    /// The leaves minted for bumped tunnels.
    pub fn leaves(&self) -> &LeafCache {
        &self.leaves
    }

    /// The upstream client of the calling worker thread.
    pub fn upstream(&self) -> &TlsUpstream {
        self.upstream.get()
    }

    /// The acceptor for a tunnel to `host`: a leaf for `host` only (an SNI naming
    /// another host gets no certificate), ALPN h2 and http/1.1, TLS 1.2 and 1.3, and
    /// session resumption. Built once per host and kept (the leaf itself is looked up
    /// at each handshake, so a renewed leaf is served at once).
    pub fn acceptor(&self, host: &Host) -> Result<TlsAcceptor, rustls::Error> {
        let mut kept = self
            .acceptors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(a) = kept.get(host.as_str()) {
            return Ok(a.clone());
        }
        let resolver = LeafResolver::new(self.leaves.clone(), host.clone());
        let mut cfg = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        cfg.session_storage = self.sessions.clone();
        let a = TlsAcceptor::from(Arc::new(cfg));
        kept.put(host.as_str().to_string(), a.clone());
        Ok(a)
    }
}

/// The upstream TLS client configuration: full verification against the system's roots
/// and `extra_roots`, TLS 1.2 and 1.3 only (rustls has nothing older).
pub fn client_config(
    provider: Arc<CryptoProvider>,
    extra_roots: &[PathBuf],
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if !native.errors.is_empty() {
        tracing::debug!(errors = ?native.errors, "some system roots could not be read");
    }
    for path in extra_roots {
        let bytes = std::fs::read(path).map_err(|source| TlsSetupError::Read {
            path: path.clone(),
            source,
        })?;
        let bad = |why: String| TlsSetupError::Bad {
            path: path.clone(),
            why,
        };
        let mut n = 0;
        for c in CertificateDer::pem_slice_iter(&bytes) {
            let c = c.map_err(|e| bad(e.to_string()))?;
            roots.add(c).map_err(|e| bad(e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(bad("no CERTIFICATE block".into()));
        }
    }
    if roots.is_empty() {
        let why = native
            .errors
            .first()
            .map_or_else(|| "no certificate found".to_string(), ToString::to_string);
        return Err(TlsSetupError::NoRoots(why));
    }
    tracing::debug!(
        system = added,
        extra = extra_roots.len(),
        "upstream trust store"
    );
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e.to_string())))?;
    let verifier = Arc::new(Verifier::new(inner));
    // `dangerous()` only because the verifier is ours: it is WebPKI's, unchanged, with a
    // clearer error for a self-signed certificate.
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(cfg)
}

/// Chains verified, kept (about 100 bytes each): a site's next connection, or another
/// site serving the same certificate, skips the chain's signature checks.
pub const VERIFIED: usize = 4096;
/// How long a verified chain is trusted without checking it again, at most (and never
/// past the end of any certificate in it).
pub const VERIFIED_FOR: u64 = 300;

/// WebPKI verification, with "self-signed" told apart from "unknown issuer", and the
/// chains found good kept for a while. A kept chain is keyed by a SHA-256 of what the
/// chain check reads (the site's certificate, the intermediates it sent, the OCSP
/// answer), so only the very same chain reuses it; it ends at the earliest notAfter of
/// the chain (a certificate that expires is checked again), and the name is checked at
/// every connection: one certificate serves many names (a CDN, `*.example.org`), and a
/// name it does not cover is refused as before. Failures are never kept. The
/// handshake's own signature (proof that the site holds the key) is checked at every
/// connection.
struct Verifier {
    inner: Arc<WebPkiServerVerifier>,
    verified: Mutex<LruCache<[u8; 32], u64>>,
    /// Full chain checks made (the others were kept results).
    full_checks: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    fn new(inner: Arc<WebPkiServerVerifier>) -> Verifier {
        Verifier {
            inner,
            verified: Mutex::new(LruCache::new(
                NonZeroUsize::new(VERIFIED).unwrap_or(NonZeroUsize::MIN),
            )),
            full_checks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// What a kept result is found by: each part with its length, so that no two
    /// different inputs give the same bytes.
    fn key(
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        ocsp_response: &[u8],
    ) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        let mut part = |b: &[u8]| {
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        };
        part(ocsp_response);
        part(end_entity);
        for c in intermediates {
            part(c);
        }
        h.finalize().into()
    }

    /// The earliest notAfter (unix seconds) of the chain; `None` if one does not parse.
    fn chain_end(
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Option<u64> {
        std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| {
                let (_, c) = x509_parser::parse_x509_certificate(c).ok()?;
                u64::try_from(c.validity().not_after.timestamp()).ok()
            })
            .try_fold(u64::MAX, |end, t| Some(end.min(t?)))
    }

    #[cfg(test)]
    fn full_checks(&self) -> u64 {
        self.full_checks.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The marker error for a self-signed site certificate.
#[derive(Debug, thiserror::Error)]
#[error("the certificate is self-signed")]
struct SelfSigned;

fn is_self_signed(der: &[u8]) -> bool {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, c)) => c.issuer().as_raw() == c.subject().as_raw(),
        Err(_) => false,
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = Verifier::key(end_entity, intermediates, ocsp_response);
        let at = now.as_secs();
        let kept = {
            let mut kept = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            match kept.get(&key) {
                Some(&until) if at < until => true,
                Some(_) => {
                    kept.pop(&key);
                    false
                }
                None => false,
            }
        };
        if kept {
            // The chain is good until `until`; the name is this connection's own.
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_name(&cert, server_name)?;
            return Ok(ServerCertVerified::assertion());
        }
        self.full_checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let verified = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| match e {
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
                    if intermediates.is_empty() && is_self_signed(end_entity) =>
                {
                    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(
                        Arc::new(SelfSigned),
                    )))
                }
                e => e,
            })?;
        // Kept until the chain's first end, and never longer than VERIFIED_FOR. The
        // checks at `at` passed, so every notAfter is after it.
        if let Some(end) = Verifier::chain_end(end_entity, intermediates) {
            let until = end.min(at.saturating_add(VERIFIED_FOR));
            self.verified
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .put(key, until);
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Why a site's TLS failed, as told to the user and in the trace. `code()` is stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsProblem {
    Expired,
    NotYetValid,
    WrongName,
    SelfSigned,
    UnknownCa,
    Revoked,
    /// Another certificate problem (bad signature, wrong usage…).
    BadCertificate(String),
    /// The site offers only TLS 1.1 or older.
    OldProtocol,
    /// Another handshake failure.
    Handshake(String),
}

impl TlsProblem {
    pub fn code(&self) -> &'static str {
        self.reason().as_str()
    }

    /// The trace's code for this problem.
    pub fn reason(&self) -> ReasonCode {
        match self {
            TlsProblem::Expired => ReasonCode::UpstreamCertExpired,
            TlsProblem::NotYetValid => ReasonCode::UpstreamCertNotYetValid,
            TlsProblem::WrongName => ReasonCode::UpstreamCertName,
            TlsProblem::SelfSigned => ReasonCode::UpstreamCertSelfSigned,
            TlsProblem::UnknownCa => ReasonCode::UpstreamCertUnknownCa,
            TlsProblem::Revoked => ReasonCode::UpstreamCertRevoked,
            TlsProblem::BadCertificate(_) => ReasonCode::UpstreamCertInvalid,
            TlsProblem::OldProtocol => ReasonCode::UpstreamTlsVersion,
            TlsProblem::Handshake(_) => ReasonCode::UpstreamTls,
        }
    }

    /// The page title: what is wrong, for a user.
    pub fn title(&self, lang: Lang) -> &'static str {
        let en = lang == Lang::En;
        match self {
            TlsProblem::Expired if en => "The site's certificate has expired",
            TlsProblem::Expired => "Le certificat du site a expiré",
            TlsProblem::NotYetValid if en => "The site's certificate is not valid yet",
            TlsProblem::NotYetValid => "Le certificat du site n'est pas encore valable",
            TlsProblem::WrongName if en => "The site's certificate is for another name",
            TlsProblem::WrongName => "Le certificat du site est établi pour un autre nom",
            TlsProblem::SelfSigned if en => {
                "The site's certificate is self-signed: nobody vouches for it"
            }
            TlsProblem::SelfSigned => {
                "Le certificat du site est auto-signé : aucune autorité ne le garantit"
            }
            TlsProblem::UnknownCa if en => {
                "The site's certificate comes from an unknown certification authority"
            }
            TlsProblem::UnknownCa => {
                "Le certificat du site vient d'une autorité de certification inconnue"
            }
            TlsProblem::Revoked if en => "The site's certificate has been revoked",
            TlsProblem::Revoked => "Le certificat du site a été révoqué",
            TlsProblem::BadCertificate(_) if en => "The site's certificate is not valid",
            TlsProblem::BadCertificate(_) => "Le certificat du site n'est pas valable",
            TlsProblem::OldProtocol if en => {
                "The site only offers an obsolete version of TLS (1.1 or older)"
            }
            TlsProblem::OldProtocol => {
                "Le site ne propose qu'une version obsolète de TLS (1.1 ou plus ancienne)"
            }
            TlsProblem::Handshake(_) if en => "The secure connection to the site failed",
            TlsProblem::Handshake(_) => "La connexion sécurisée au site a échoué",
        }
    }

    /// One sentence added under the title: the proxy did not connect through.
    pub fn explanation(lang: Lang) -> &'static str {
        match lang {
            Lang::En => {
                "The proxy did not connect to this site: its identity cannot be verified, \
                 and a connection to it could be intercepted. Contact the IT service if the \
                 site is needed."
            }
            Lang::Fr => {
                "Le proxy ne s'est pas connecté à ce site : son identité ne peut pas être \
                 vérifiée et une connexion pourrait être interceptée. Contactez le service \
                 informatique si ce site vous est nécessaire."
            }
        }
    }

    fn from_rustls(e: &rustls::Error) -> TlsProblem {
        use CertificateError as C;
        match e {
            rustls::Error::InvalidCertificate(c) => match c {
                C::Expired | C::ExpiredContext { .. } => TlsProblem::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => TlsProblem::NotYetValid,
                C::NotValidForName | C::NotValidForNameContext { .. } => TlsProblem::WrongName,
                C::UnknownIssuer => TlsProblem::UnknownCa,
                C::Revoked => TlsProblem::Revoked,
                C::Other(o) if o.0.downcast_ref::<SelfSigned>().is_some() => TlsProblem::SelfSigned,
                other => TlsProblem::BadCertificate(format!("{other:?}")),
            },
            rustls::Error::PeerIncompatible(PeerIncompatible::ServerDoesNotSupportTls12Or13)
            | rustls::Error::AlertReceived(AlertDescription::ProtocolVersion) => {
                TlsProblem::OldProtocol
            }
            other => TlsProblem::Handshake(other.to_string()),
        }
    }

    /// The TLS problem somewhere in an error's chain of sources, if there is one.
    pub fn find(err: &(dyn StdError + 'static)) -> Option<TlsProblem> {
        let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(r) = rustls_in(e) {
                return Some(TlsProblem::from_rustls(r));
            }
            cur = e.source();
        }
        None
    }
}

/// A rustls error, directly or inside (possibly nested) `io::Error`s, whose `source()`
/// skips the error they wrap.
fn rustls_in<'a>(mut e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    loop {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        let inner = e.downcast_ref::<io::Error>()?.get_ref()?;
        e = inner;
    }
}

/// Why the client's side of a bump failed, for the trace. The common one is a
/// workstation that does not trust the organisation's CA.
pub fn client_handshake_problem(e: &io::Error) -> (ReasonCode, String) {
    let detail = e.to_string();
    match rustls_in(e) {
        Some(rustls::Error::AlertReceived(
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown,
        )) => (
            ReasonCode::ClientUntrustedCa,
            format!(
                "the workstation refused the proxy's certificate ({detail}): install the \
                 organisation's CA on it (`charte-proxy ca show`), or list the application \
                 in no_inspect if it pins its certificates"
            ),
        ),
        _ => (ReasonCode::ClientHandshake, detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_found_inside_io_errors() {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::Expired),
        );
        assert_eq!(TlsProblem::find(&e), Some(TlsProblem::Expired));
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                SelfSigned,
            )))),
        );
        assert_eq!(TlsProblem::find(&e), Some(TlsProblem::SelfSigned));
        // hyper-rustls wraps tokio-rustls's io::Error in another.
        let e = io::Error::other(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
        ));
        assert_eq!(TlsProblem::find(&e), Some(TlsProblem::WrongName));
        let e = io::Error::other("plain");
        assert_eq!(TlsProblem::find(&e), None);
    }

    #[test]
    fn codes_are_stable_and_titles_translated() {
        for p in [
            TlsProblem::Expired,
            TlsProblem::WrongName,
            TlsProblem::SelfSigned,
            TlsProblem::UnknownCa,
            TlsProblem::OldProtocol,
        ] {
            assert!(p.code().starts_with("upstream-"));
            assert_ne!(p.title(Lang::Fr), p.title(Lang::En));
        }
    }

    /// A CA and a site certificate for `names`, valid from a day ago for `days` days.
    fn site(names: &[&str], days: i64) -> (CertificateDer<'static>, CertificateDer<'static>) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let now = time::OffsetDateTime::now_utc();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.not_before = now - time::Duration::days(1);
        ca.not_after = now + time::Duration::days(30);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        leaf.not_before = now - time::Duration::days(1);
        leaf.not_after = now + time::Duration::days(days);
        let leaf = leaf
            .signed_by(&KeyPair::generate().unwrap(), &issuer)
            .unwrap();
        (ca_cert.der().clone(), leaf.der().clone())
    }

    fn verifier(root: &CertificateDer<'static>) -> Verifier {
        let mut roots = RootCertStore::empty();
        roots.add(root.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Verifier::new(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap(),
        )
    }

    #[test]
    fn a_chain_found_good_is_kept_but_names_and_ends_are_checked_every_time() {
        let (root, leaf) = site(&["a.test", "*.b.test"], 2);
        let v = verifier(&root);
        let name = |n: &str| ServerName::try_from(n.to_string()).unwrap();
        let now = UnixTime::now();
        let check = |n: &str, at: UnixTime| v.verify_server_cert(&leaf, &[], &name(n), &[], at);
        check("a.test", now).unwrap();
        assert_eq!(v.full_checks(), 1);
        // Another name the same certificate covers: the chain is not checked again.
        check("www.b.test", now).unwrap();
        assert_eq!(v.full_checks(), 1, "kept");
        // A name it does not cover is refused, kept chain or not.
        let e = check("c.test", now).unwrap_err();
        assert!(
            matches!(
                e,
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{e:?}"
        );
        // Past the certificate's end the kept result is not used: it is expired.
        let later = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs() + 3 * 86_400));
        let e = check("a.test", later).unwrap_err();
        assert!(
            matches!(
                e,
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. }
                )
            ),
            "{e:?}"
        );
        assert_eq!(v.full_checks(), 2);
        // Kept at most VERIFIED_FOR: after it, checked in full again (and still good).
        let after = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs() + VERIFIED_FOR));
        check("a.test", after).unwrap();
        assert_eq!(v.full_checks(), 3);
        // Another certificate for the same names is checked on its own.
        let (_, other) = site(&["a.test"], 2);
        let e = v
            .verify_server_cert(&other, &[], &name("a.test"), &[], now)
            .unwrap_err();
        assert!(
            matches!(
                e,
                rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature
                )
            ),
            "a certificate from another CA (of the same empty name): {e:?}"
        );
        // Failures are not kept.
        assert!(
            v.verify_server_cert(&other, &[], &name("a.test"), &[], now)
                .is_err()
        );
        assert_eq!(v.full_checks(), 5);
    }
}
