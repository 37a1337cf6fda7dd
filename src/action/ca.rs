//! The organisation's certificate authority for TLS inspection ("bump"): its files on
//! disk, loading it, and minting one leaf certificate. Which leaves are kept, and how
//! they reach a handshake, is [`super::leaf_cache`]'s.
//!
//! - [`init`] creates the proxy's own CA (ECDSA P-256, ten years) as three files: the
//!   key (`ca.key`, mode 0600 from the moment it exists), the certificate in PEM
//!   (`ca.pem`) and in DER (`ca.der`, what GPO and MDM tools import).
//! - [`CertAuthority::load`] opens that CA, or any other one the authority provides (for
//!   instance a subordinate of its own PKI): the first certificate of the PEM file is the
//!   signing CA, the ones after it are sent along in every chain. The key may be PKCS#8,
//!   SEC1 or PKCS#1, ECDSA P-256/P-384 or RSA. Loading refuses a key open to group or
//!   others, a certificate that is not a CA, a key that is not the certificate's, and a CA
//!   out of its validity; then it mints one throw-away leaf and verifies it with webpki,
//!   so that a CA that loads is a CA whose leaves verify.
//! - [`CertAuthority::mint`] mints the leaf of one [`Host`]: fresh ECDSA P-256 key, valid
//!   7 days from an hour ago (never past the CA's own end), SAN exactly that name or
//!   address.
//!
//! Keys: rustls's crypto provider (aws-lc-rs) holds every private key and makes every
//! signature, the CA's included (through [`CaSigner`]), so any key format it reads is
//! accepted. rcgen encodes the certificates and generates the fresh keys; x509-parser
//! reads what is checked in a certificate (CA flag, key usage, validity, subject, public
//! key), as rcgen itself does to issue from it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::SignatureScheme;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest as _, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::error::X509Error;
use x509_parser::nom;
use x509_parser::prelude::{FromDer as _, SubjectPublicKeyInfo};

use crate::classify::Host;

/// How long a leaf is valid. Short: a leaf that leaks is worth little, and nothing
/// needs to be revoked.
pub const LEAF_LIFETIME: Duration = Duration::days(7);
/// A leaf is valid from this long before it was minted, for workstations whose clock
/// is a little behind.
pub const LEAF_BACKDATE: Duration = Duration::hours(1);
/// How long one leaf key serves: the leaves minted within this time share a key pair,
/// generated when the first of them is minted. Key generation (with its pairwise check)
/// and loading the key for rustls were a third of a mint; a leaf key is only ever in
/// this process's memory, like the leaves themselves, and a leaf lives a week at most.
pub const LEAF_KEY_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);
/// Lifetime of a CA made by [`init`]: about ten years.
pub const CA_LIFETIME: Duration = Duration::days(3653);
/// A new CA is valid from a day before its creation (clock skew, time zones).
pub const CA_BACKDATE: Duration = Duration::days(1);
/// X.509 upper bound for a common name (ub-common-name), in characters.
const MAX_CN_CHARS: usize = 64;

/// Where a CA lives on disk. The DER copy sits next to the PEM certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// The CA certificate (PEM), possibly followed by its own issuers.
    pub cert_pem: PathBuf,
    /// The CA private key (PEM): PKCS#8, SEC1 or PKCS#1, not encrypted.
    pub key_pem: PathBuf,
}

impl CaFiles {
    /// `DIR/ca.pem` and `DIR/ca.key` (and `DIR/ca.der`). The proxy uses `DATA/ca`.
    pub fn in_dir(dir: &Path) -> CaFiles {
        CaFiles {
            cert_pem: dir.join("ca.pem"),
            key_pem: dir.join("ca.key"),
        }
    }

    /// The DER copy of the certificate: the PEM path with the extension `der`.
    pub fn cert_der(&self) -> PathBuf {
        self.cert_pem.with_extension("der")
    }
}

/// Why a CA cannot be created, loaded or used. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(
        "{} does not exist: create the organisation's CA with `charte-proxy ca init`, or name \
         an existing CA's certificate and key with --cert and --key",
        .path.display()
    )]
    Missing { path: PathBuf },
    #[error(
        "a CA already exists at {}: keep it, or replace it with `charte-proxy ca init --force` \
         (workstations will then need the new certificate before inspected sites load again)",
        .path.display()
    )]
    Exists { path: PathBuf },
    #[error(
        "the CA key {path} is open to group or others (mode {mode:04o}); run `chmod 600 {path}`",
        path = .path.display()
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a usable CA certificate: {why}", .path.display())]
    BadCert { path: PathBuf, why: String },
    #[error("{}: not a usable CA key: {why}", .path.display())]
    BadKey { path: PathBuf, why: String },
    #[error(
        "{}: this certificate is not a CA ({why}); give a CA certificate (basicConstraints \
         CA:TRUE, keyUsage keyCertSign), or create one with `charte-proxy ca init`",
        .path.display()
    )]
    NotCa { path: PathBuf, why: &'static str },
    #[error(
        "the key {} is not the key of the certificate {}: give the pair that belongs together",
        .key.display(), .cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "{}: the CA is valid from {} to {}, which does not include now; renew it (for the \
         proxy's own CA: `charte-proxy ca init --force`, then deploy the new certificate)",
        .path.display(), show_time(*.not_before), show_time(*.not_after)
    )]
    NotValidNow {
        path: PathBuf,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    },
    #[error("invalid CA name: {0}")]
    BadName(String),
    #[error("could not create the CA: {0}")]
    Generate(String),
    #[error("could not mint a certificate for {host}: {why}")]
    Mint { host: String, why: String },
}

impl CaError {
    /// Stable short code, for traces and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            CaError::Missing { .. } => "ca-missing",
            CaError::Exists { .. } => "ca-exists",
            CaError::KeyPermissions { .. } => "ca-key-permissions",
            CaError::Io { .. } => "ca-io",
            CaError::BadCert { .. } => "ca-cert-invalid",
            CaError::BadKey { .. } => "ca-key-invalid",
            CaError::NotCa { .. } => "ca-not-ca",
            CaError::KeyMismatch { .. } => "ca-key-mismatch",
            CaError::NotValidNow { .. } => "ca-not-valid-now",
            CaError::BadName(_) => "ca-name-invalid",
            CaError::Generate(_) => "ca-generate",
            CaError::Mint { .. } => "ca-mint",
        }
    }

    /// True when the fix is in the configuration or the files (exit code 2), false for
    /// failures of the moment (exit code 1).
    pub fn is_config(&self) -> bool {
        !matches!(
            self,
            CaError::Io { .. } | CaError::Generate(_) | CaError::Mint { .. }
        )
    }
}

/// `2035-01-31 12:00 UTC`.
pub fn show_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))
    .unwrap_or_else(|_| t.to_string())
}

/// The crypto provider: the process default if one was installed, else aws-lc-rs.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// Installs aws-lc-rs as the process-wide rustls provider, for code that relies on the
/// default (`ServerConfig::builder()`). Call once at start; later calls do nothing.
pub fn install_crypto_provider() {
    // Err means a provider is already installed: keep it.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The name [`init`] gives a CA when none is asked for: `charte-proxy CA — HOSTNAME`,
/// so that the CAs of several proxies can be told apart in a trust store.
pub fn default_common_name() -> String {
    match dns_lookup::get_hostname() {
        Ok(h) if !h.trim().is_empty() => {
            let name = format!("charte-proxy CA — {}", h.trim());
            name.chars().take(MAX_CN_CHARS).collect()
        }
        _ => "charte-proxy CA".to_string(),
    }
}

/// Creates a new CA in `files`: ECDSA P-256, valid ten years, `CN=common_name` and
/// `O=organisation`, basicConstraints CA:TRUE with path length 0, keyUsage keyCertSign
/// and cRLSign. The key is created mode 0600 (never more open, even for a moment), the
/// certificates 0644. Refuses to replace an existing CA unless `force`. The three files
/// are written aside then renamed into place.
pub fn init(
    files: &CaFiles,
    common_name: &str,
    organisation: Option<&str>,
    force: bool,
) -> Result<(), CaError> {
    check_name("name", common_name)?;
    if let Some(o) = organisation {
        check_name("organisation", o)?;
    }
    if !force {
        for path in [&files.cert_pem, &files.key_pem] {
            if std::fs::symlink_metadata(path).is_ok() {
                return Err(CaError::Exists { path: path.clone() });
            }
        }
    }
    let gen_err = |e: rcgen::Error| CaError::Generate(e.to_string());
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(o) = organisation {
        dn.push(DnType::OrganizationName, o);
    }
    params.distinguished_name = dn;
    params.not_before = now - CA_BACKDATE;
    params.not_after = now + CA_LIFETIME;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key).map_err(gen_err)?;

    let der_path = files.cert_der();
    let pending = [
        (&files.key_pem, key.serialize_pem().into_bytes(), 0o600),
        (&files.cert_pem, cert.pem().into_bytes(), 0o644),
        (&der_path, cert.der().to_vec(), 0o644),
    ];
    let mut written = Vec::with_capacity(pending.len());
    for (path, bytes, mode) in &pending {
        match write_aside(path, bytes, *mode) {
            Ok(tmp) => written.push((tmp, *path)),
            Err(e) => {
                for (tmp, _) in &written {
                    let _ = std::fs::remove_file(tmp);
                }
                return Err(e);
            }
        }
    }
    for (i, (tmp, path)) in written.iter().enumerate() {
        if let Err(source) = std::fs::rename(tmp, path) {
            for (left, _) in &written[i..] {
                let _ = std::fs::remove_file(left);
            }
            return Err(CaError::Io {
                path: (*path).clone(),
                source,
            });
        }
    }
    crate::atomic_file::sync_folder(&files.key_pem);
    Ok(())
}

fn check_name(what: &str, s: &str) -> Result<(), CaError> {
    if s.trim().is_empty() {
        return Err(CaError::BadName(format!("the {what} is empty")));
    }
    if s.chars().count() > MAX_CN_CHARS {
        return Err(CaError::BadName(format!(
            "the {what} has more than {MAX_CN_CHARS} characters"
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(CaError::BadName(format!(
            "the {what} holds a control character"
        )));
    }
    Ok(())
}

/// [`crate::atomic_file::write_aside`], with the error naming `path`.
fn write_aside(path: &Path, bytes: &[u8], mode: u32) -> Result<PathBuf, CaError> {
    crate::atomic_file::write_aside(path, bytes, mode).map_err(|source| CaError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A positive 16-byte serial number.
fn random_serial() -> rcgen::SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // no leading zero byte, so the encoding keeps 16 bytes
    rcgen::SerialNumber::from_slice(&bytes)
}

/// The CA in use: its certificate, the chain sent after each leaf, and its key.
pub struct CertAuthority {
    /// The CA certificate (DER): its fingerprint, and the trust anchor in tests.
    cert_der: CertificateDer<'static>,
    /// What follows each leaf in the chain sent to clients: the CA, then any issuers
    /// that came after it in the PEM file.
    chain: Vec<CertificateDer<'static>>,
    info: CertInfo,
    /// Subject, key identifier and signing key, as rcgen needs them to issue.
    issuer: Issuer<'static, CaSigner>,
    provider: Arc<CryptoProvider>,
    /// The key pair of the leaves minted now ([`LEAF_KEY_LIFETIME`]).
    leaf_key: Mutex<Option<LeafKey>>,
}

/// A leaf key pair: as rcgen issues with it and as rustls signs with it.
#[derive(Clone)]
struct LeafKey {
    pair: Arc<KeyPair>,
    signer: Arc<dyn rustls::sign::SigningKey>,
    born: std::time::Instant,
}

/// A leaf minted by [`CertAuthority::mint`]: the chain `[leaf, CA, …]` with its key, and
/// when it ends.
#[derive(Clone)]
pub struct Leaf {
    pub key: Arc<CertifiedKey>,
    /// The leaf's notAfter: [`LEAF_LIFETIME`] from its minting, or the CA's own end if
    /// that comes first.
    pub not_after: OffsetDateTime,
}

impl fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAuthority")
            .field("subject", &self.info.subject)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl CertAuthority {
    /// Loads the CA in `files` with [`crypto_provider`]. See the module documentation
    /// for what is checked.
    pub fn load(files: &CaFiles) -> Result<CertAuthority, CaError> {
        Self::load_with_provider(files, crypto_provider())
    }

    /// Same as [`load`](Self::load) with a given crypto provider.
    pub fn load_with_provider(
        files: &CaFiles,
        provider: Arc<CryptoProvider>,
    ) -> Result<CertAuthority, CaError> {
        let cert_path = &files.cert_pem;
        let key_path = &files.key_pem;
        let cert_bytes = read(cert_path)?;
        check_key_mode(key_path)?;
        let key_bytes = read(key_path)?;
        let bad_cert = |why: String| CaError::BadCert {
            path: cert_path.clone(),
            why,
        };

        let certs = read_certs(&cert_bytes).map_err(bad_cert)?;
        let cert_der = certs[0].clone();
        let info = CertInfo::parse(&cert_der)
            .map_err(|e| bad_cert(format!("the DER structure cannot be read ({e})")))?;
        if !info.ca {
            return Err(CaError::NotCa {
                path: cert_path.clone(),
                why: "basicConstraints CA:TRUE is missing",
            });
        }
        if info.key_cert_sign == Some(false) {
            return Err(CaError::NotCa {
                path: cert_path.clone(),
                why: "keyUsage does not allow keyCertSign",
            });
        }

        let signer = read_key(&key_bytes, key_path, &provider).map_err(|why| CaError::BadKey {
            path: key_path.clone(),
            why,
        })?;
        if signer.public != info.public_key {
            return Err(CaError::KeyMismatch {
                cert: cert_path.clone(),
                key: key_path.clone(),
            });
        }

        let now = OffsetDateTime::now_utc();
        if now < info.not_before || now > info.not_after {
            return Err(CaError::NotValidNow {
                path: cert_path.clone(),
                not_before: info.not_before,
                not_after: info.not_after,
            });
        }

        let issuer = Issuer::from_ca_cert_der(&cert_der, signer)
            .map_err(|e| bad_cert(format!("rcgen cannot issue from it: {e}")))?;
        let ca = CertAuthority {
            cert_der,
            chain: certs,
            info,
            issuer,
            provider,
            leaf_key: Mutex::new(None),
        };
        ca.self_test().map_err(|why| {
            bad_cert(format!(
                "a certificate issued from it does not verify: {why}"
            ))
        })?;
        Ok(ca)
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// SHA-256 of the certificate, `AB:CD:…` in upper-case hex: what a workstation's
    /// certificate viewer shows.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }

    /// The subject, `CN=…, O=…`, in the certificate's order.
    pub fn subject(&self) -> String {
        self.info.subject.clone()
    }

    pub fn not_before(&self) -> OffsetDateTime {
        self.info.not_before
    }

    pub fn not_after(&self) -> OffsetDateTime {
        self.info.not_after
    }

    /// Mints the leaf of `host` now, on the caller's thread (about 0.1 ms with a P-256
    /// CA), chained `[leaf, CA, …]`. Every call mints a new one: keeping them is
    /// [`super::leaf_cache::LeafCache`]'s.
    pub fn mint(&self, host: &Host) -> Result<Leaf, CaError> {
        let now = OffsetDateTime::now_utc();
        let err = |why: String| CaError::Mint {
            host: host.to_string(),
            why,
        };
        let key = self.leaf_key().map_err(err)?;
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![match host.ip() {
            Some(ip) => SanType::IpAddress(ip),
            None => SanType::DnsName(
                host.as_str()
                    .try_into()
                    .map_err(|e: rcgen::Error| err(e.to_string()))?,
            ),
        }];
        let mut dn = DistinguishedName::new();
        // Browsers read only the SAN; the CN is for people, and X.509 caps it at 64.
        if host.as_str().len() <= MAX_CN_CHARS {
            dn.push(DnType::CommonName, host.as_str());
        }
        params.distinguished_name = dn;
        params.not_before = now - LEAF_BACKDATE;
        params.not_after = (now + LEAF_LIFETIME).min(self.info.not_after);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        // Random, so that a leaf minted after a restart never reuses the serial of an
        // earlier one with different contents (Firefox refuses that).
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&*key.pair, &self.issuer)
            .map_err(|e| err(e.to_string()))?;
        let mut chain = Vec::with_capacity(1 + self.chain.len());
        chain.push(cert.der().clone());
        chain.extend(self.chain.iter().cloned());
        Ok(Leaf {
            key: Arc::new(CertifiedKey::new(chain, key.signer)),
            not_after: params.not_after,
        })
    }

    /// The leaf key pair in use, made anew when the last one is [`LEAF_KEY_LIFETIME`]
    /// old.
    fn leaf_key(&self) -> Result<LeafKey, String> {
        let mut kept = self.leaf_key.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(k) = kept
            .as_ref()
            .filter(|k| k.born.elapsed() < LEAF_KEY_LIFETIME)
        {
            return Ok(k.clone());
        }
        let pair =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
        let signer = self
            .provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                pair.serialize_der(),
            )))
            .map_err(|e| e.to_string())?;
        let k = LeafKey {
            pair: Arc::new(pair),
            signer,
            born: std::time::Instant::now(),
        };
        *kept = Some(k.clone());
        Ok(k)
    }

    /// Mints a leaf for a reserved name and verifies it against the CA as a browser
    /// would: catches an issuer name rcgen would not reproduce byte for byte, an
    /// algorithm webpki refuses, a key that does not sign for this certificate.
    fn self_test(&self) -> Result<(), String> {
        use rustls::client::danger::ServerCertVerifier as _;
        let host = Host::parse("charte-proxy.invalid").map_err(|e| e.to_string())?;
        let leaf = self.mint(&host).map_err(|e| e.to_string())?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.cert_der.clone())
            .map_err(|e| e.to_string())?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| e.to_string())?;
        let name =
            rustls::pki_types::ServerName::try_from(host.as_str()).map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(
                &leaf.key.cert[0],
                &leaf.key.cert[1..],
                &name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The certificates of a PEM file, in order; a DER file given where the PEM one was
/// expected is taken as its one certificate. Never empty.
fn read_certs(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    for c in CertificateDer::pem_slice_iter(bytes) {
        certs.push(c.map_err(|e| format!("unreadable PEM: {e}"))?);
    }
    if certs.is_empty() {
        if bytes.first() == Some(&0x30) {
            certs.push(CertificateDer::from(bytes.to_vec()));
        } else {
            return Err("no CERTIFICATE block in the file".into());
        }
    }
    Ok(certs)
}

/// The CA key in `bytes` (read from `path`), loaded by `provider`. The error says what
/// is wrong with the key.
fn read_key(bytes: &[u8], path: &Path, provider: &CryptoProvider) -> Result<CaSigner, String> {
    let key_der = PrivateKeyDer::from_pem_slice(bytes).map_err(|e| {
        if bytes.windows(9).any(|w| w == b"ENCRYPTED") {
            format!(
                "the key is encrypted; store it decrypted with mode 0600 (`openssl pkey \
                 -in {0} -out {0}.plain`, then replace {0} with it)",
                path.display()
            )
        } else {
            format!("no PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block ({e})")
        }
    })?;
    let key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| e.to_string())?;
    CaSigner::new(key)
}

/// What the CA checks and `ca show` need from a certificate, read by x509-parser.
#[derive(Debug, Clone)]
struct CertInfo {
    /// `CN=…, O=…` in the certificate's order (x509-parser's rendering).
    subject: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    /// Contents of the SubjectPublicKeyInfo's BIT STRING.
    public_key: Vec<u8>,
    /// basicConstraints cA.
    ca: bool,
    /// keyUsage keyCertSign; `None` when the extension is absent.
    key_cert_sign: Option<bool>,
}

impl CertInfo {
    fn parse(der: &[u8]) -> Result<CertInfo, X509Error> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| match e {
            nom::Err::Error(e) | nom::Err::Failure(e) => e,
            nom::Err::Incomplete(_) => X509Error::InvalidCertificate,
        })?;
        let validity = cert.validity();
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            not_before: validity.not_before.to_datetime(),
            not_after: validity.not_after.to_datetime(),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
            ca: cert.basic_constraints()?.is_some_and(|bc| bc.value.ca),
            key_cert_sign: cert.key_usage()?.map(|ku| ku.value.key_cert_sign()),
        })
    }
}

/// SHA-256 of `der`, `AB:CD:…`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut s = String::with_capacity(digest.len() * 3);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02X}"));
    }
    s
}

fn read(path: &Path) -> Result<Vec<u8>, CaError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            CaError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            CaError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Refuses a key file that group or others may read or write.
fn check_key_mode(path: &Path) -> Result<(), CaError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            // Reported, with the right message, by the read that follows.
            Err(_) => return Ok(()),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CaError::KeyPermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The CA's key as rcgen sees it: rcgen builds the certificate, rustls's provider makes
/// the signature. This is what lets a SEC1 or PKCS#1 key (which rcgen's own backend
/// cannot read) sign.
struct CaSigner {
    key: Arc<dyn rustls::sign::SigningKey>,
    scheme: SignatureScheme,
    alg: &'static rcgen::SignatureAlgorithm,
    /// The raw public key: the contents of the SubjectPublicKeyInfo's BIT STRING.
    public: Vec<u8>,
}

impl CaSigner {
    fn new(key: Arc<dyn rustls::sign::SigningKey>) -> Result<CaSigner, String> {
        let supported: [(SignatureScheme, &'static rcgen::SignatureAlgorithm); 3] = [
            (
                SignatureScheme::ECDSA_NISTP256_SHA256,
                &rcgen::PKCS_ECDSA_P256_SHA256,
            ),
            (
                SignatureScheme::ECDSA_NISTP384_SHA384,
                &rcgen::PKCS_ECDSA_P384_SHA384,
            ),
            (SignatureScheme::RSA_PKCS1_SHA256, &rcgen::PKCS_RSA_SHA256),
        ];
        let (scheme, alg) = supported
            .into_iter()
            .find(|(s, _)| key.choose_scheme(&[*s]).is_some())
            .ok_or_else(|| {
                format!(
                    "a {:?} key cannot sign certificates browsers accept here; use ECDSA \
                     P-256, P-384 or RSA",
                    key.algorithm()
                )
            })?;
        let spki = key
            .public_key()
            .ok_or("the crypto provider does not reveal the key's public half")?;
        let (_, spki) = SubjectPublicKeyInfo::from_der(&spki)
            .map_err(|e| format!("the key's public half cannot be read: {e}"))?;
        let public = spki.subject_public_key.data.to_vec();
        Ok(CaSigner {
            key,
            scheme,
            alg,
            public,
        })
    }
}

impl rcgen::PublicKeyData for CaSigner {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.alg
    }
}

impl rcgen::SigningKey for CaSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let signer = self
            .key
            .choose_scheme(&[self.scheme])
            .ok_or(rcgen::Error::RemoteKeyError)?;
        signer.sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use rustls::RootCertStore;
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::{ServerName, UnixTime};

    use super::*;

    /// Throw-away test keys, made with `openssl ecparam -genkey -noout` (SEC1) and
    /// `openssl genrsa -traditional 2048` (PKCS#1): formats rcgen's own backend cannot read.
    const SEC1_P256: &str = r"-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIJ+MYvwOLjdiV6ai5d+eDySo09KW1QAbejRaPsSirIfpoAoGCCqGSM49
AwEHoUQDQgAE8CHp5m6UmA/yfd9t9F3xdv5jw4B9G+gJeZ2ymErvFGGL+cjkTnyR
FJTiw+TvyGKLNtS3MwD3OwSbz6czW4wyWw==
-----END EC PRIVATE KEY-----
";
    const PKCS1_RSA: &str = r"-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAvbLUvIZZpUk1o9YEevTAterU3oDyzMXM//d/1fN2emIrV3Hu
Db1YU3Lep1qjMIdBb10IcS6IAN0BjxO6RzKcW1eaOAgrl3muCvaV0GhYZWmuBN+N
7w/Ck1QUtFokQ5EZGoenUnm8VuJ4sYIC3UhqDfcXL0/INjg04ZFBPxk7BwS1Dn2q
zjdeLdEkBVkFk7TaRKNOdw9iUcoiYIlJOgFC1gMHaMFnSzXNXMKMXiBPj5NMzo0W
CVWBPbV3Cp0lp7ZbWBVjD9QttcVQnFQibAkHsc6udcrDSqMzKZpN4XVEY0O2ugHD
1P5OXmZdJ2I1S//sHcavkmIKUNA376mq8Yr4KQIDAQABAoIBAAWNPEigLfN2Zwl6
c/sdOp6YVs6EO5bemxdKqQUb8PW39cjDXtIsHm+ixv1i26/J5ZJayKp3UCemUCtd
ym/W/Vh3Ad5t7siqGPvdJ5lH1H5zT1J5MHA0p98j8M8ubC1GC9QI8E6rnWV1j06y
nV7YhbIO7zDFRvi/QFzxoVU1adLUtYmdltkDG9S8vPygLjf/fYJcJz5fdfhjqggA
3xEMIX6LAvoVH7Q7LoFaz0y5LfZsf0lphsEI3jJbkLqvBHBrGKzGqx9YsDU/UkU6
fXth4DZISPOgfc2HHA2AphmO7atMFUZMY+77TOyNCJbIsYVmG5vxB4q6nN+tVNCC
Z/VDKFkCgYEA3e4gKSilly2Be453Jil7Jch3NOPNkfKNDRztxQ5Ss8IA1SNV0Ujp
KkLaSddsgOFgjR7RcKKBJh/4mPpOk+ypQNlrZz7NzW5hjy9AgpemCERlZy1Q4HCD
hiAehhe04t93tCwa+44fNCT5r0fRZE4P6eptRL625EB4Uhz+ouuyz+8CgYEA2tIA
A5GN7XY5idnDVAvEDFRxSp9xSMi7BlwLwdiAknVgOZl+kUpBmBW6Qg36uRxikg0O
HB4BCc0m92Pk+eoYb6rMKoej7tYAP+JuSmyhhFhBmx2ShWs4SnPmnIPxEWa7pmhO
l8bXG0/agh5kutK99JRukyrwVySakX1ZjQFsoWcCgYEAobidzQBmsqShf3UQlEmU
CLNtUqhSK/FxIcYb6gYG9CECVE68gZa8+mPfCAIoej5CCnQTsR1qOWsA0BFO43KI
383P+1uDwxiVlS6cts1lWw7kSex2zCaRYVLUi2iJEu4/H5coTnmBeZEcNcOC7bII
3K9M0tSbF/d29ndUg0p4chcCgYBBTUZfykJWyV9meixGmrRJEbI1mNuP4wedYD7J
/Lhx/MFYrywMY+KrZmCNceqO75+jAm5hibq5mBW24oLk6i2ctZX0Y0JS9l5gskxD
vaN+AXCiv/KICnVkEq6RqvZ4QPZjNOGvfdGX/v6wsi1Ra67wnJNbLAdJmkzeelAN
Oo2WpQKBgC50MNI7RyC6l2NgtcJRiflBpOu285zRfBb+ND6UYy4dv7K4ViUTUMxb
PGnHDicTTMlcqe1aX1xwIO8eAnMdB0qJh6x+euoglcglgBVj2mwo+3QK9BChyxq6
nLCOFL81sa9mNcfxProwygfiegkalAIOo6JXCDoOA0k4v9UNavxB
-----END RSA PRIVATE KEY-----
";

    pub(crate) fn host(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    pub(crate) fn new_ca(dir: &Path) -> (CaFiles, CertAuthority) {
        let files = CaFiles::in_dir(&dir.join("ca"));
        init(&files, "Test CA", Some("Mairie de Test"), false).unwrap();
        let ca = CertAuthority::load(&files).unwrap();
        (files, ca)
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Verifies `chain` ([leaf, intermediates…]) for `name` with webpki, trusting `root`.
    fn verify(root: &[u8], chain: &[CertificateDer<'static>], name: &str) -> Result<(), String> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(root.to_vec())).unwrap();
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            crypto_provider(),
        )
        .build()
        .unwrap();
        let name = ServerName::try_from(name.to_string()).unwrap();
        v.verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The subjectAltName entries of a certificate as (tag, contents): (0x82, name) for a
    /// DNS name, (0x87, octets) for an address.
    pub(crate) fn subject_alt_names(der: &[u8]) -> Option<Vec<(u8, Vec<u8>)>> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let Some(san) = cert.subject_alternative_name().ok()? else {
            return Some(Vec::new());
        };
        san.value
            .general_names
            .iter()
            .map(|name| match name {
                GeneralName::DNSName(d) => Some((0x82, d.as_bytes().to_vec())),
                GeneralName::IPAddress(a) => Some((0x87, a.to_vec())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn init_writes_a_private_key_and_public_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let (files, ca) = new_ca(dir.path());
        assert_eq!(files.cert_pem, dir.path().join("ca/ca.pem"));
        assert_eq!(files.cert_der(), dir.path().join("ca/ca.der"));
        #[cfg(unix)]
        {
            assert_eq!(mode(&files.key_pem), 0o600);
            assert_eq!(mode(&files.cert_pem), 0o644);
            assert_eq!(mode(&files.cert_der()), 0o644);
        }
        let der = std::fs::read(files.cert_der()).unwrap();
        assert_eq!(der, ca.cert_der(), "the DER file is the PEM certificate");
        let key = std::fs::read_to_string(&files.key_pem).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        assert_eq!(ca.subject(), "CN=Test CA, O=Mairie de Test");
        let now = OffsetDateTime::now_utc();
        let years = (ca.not_after() - now).whole_days() as f64 / 365.25;
        assert!((9.9..10.1).contains(&years), "{years} years");
        assert!(ca.not_before() < now - Duration::hours(23));
        let fp = ca.fingerprint();
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(
            fp.bytes()
                .all(|b| b == b':' || b.is_ascii_digit() || b.is_ascii_uppercase()),
            "{fp}"
        );
        let info = CertInfo::parse(&der).unwrap();
        assert!(info.ca);
        assert_eq!(info.key_cert_sign, Some(true));
        assert!(no_temp_files(&dir.path().join("ca")));
    }

    fn no_temp_files(dir: &Path) -> bool {
        std::fs::read_dir(dir)
            .unwrap()
            .all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp"))
    }

    #[test]
    fn init_refuses_to_replace_a_ca_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let (files, ca) = new_ca(dir.path());
        let err = init(&files, "Other", None, false).unwrap_err();
        assert_eq!(err.code(), "ca-exists");
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(
            CertAuthority::load(&files).unwrap().fingerprint(),
            ca.fingerprint()
        );

        init(&files, "Other", None, true).unwrap();
        let other = CertAuthority::load(&files).unwrap();
        assert_ne!(other.fingerprint(), ca.fingerprint());
        assert_eq!(other.subject(), "CN=Other");
        #[cfg(unix)]
        assert_eq!(mode(&files.key_pem), 0o600);
    }

    #[test]
    fn init_refuses_names_x509_cannot_hold() {
        let dir = tempfile::tempdir().unwrap();
        let files = CaFiles::in_dir(dir.path());
        for (name, org) in [("", None), ("x", Some(" ")), (&"é".repeat(65)[..], None)] {
            let err = init(&files, name, org, false).unwrap_err();
            assert_eq!(err.code(), "ca-name-invalid", "{name:?}");
        }
        assert!(!files.key_pem.exists());
        assert!(default_common_name().starts_with("charte-proxy CA"));
        assert!(default_common_name().chars().count() <= MAX_CN_CHARS);
    }

    #[cfg(unix)]
    #[test]
    fn load_refuses_a_key_open_to_others_and_says_how_to_fix_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = new_ca(dir.path());
        for m in [0o644, 0o640, 0o602] {
            std::fs::set_permissions(&files.key_pem, std::fs::Permissions::from_mode(m)).unwrap();
            let err = CertAuthority::load(&files).unwrap_err();
            assert_eq!(err.code(), "ca-key-permissions");
            assert!(err.is_config());
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("chmod 600 {}", files.key_pem.display())),
                "{msg}"
            );
            assert!(msg.contains(&format!("{m:04o}")), "{msg}");
        }
        std::fs::set_permissions(&files.key_pem, std::fs::Permissions::from_mode(0o400)).unwrap();
        CertAuthority::load(&files).unwrap();
    }

    #[test]
    fn load_says_to_run_init_when_there_is_no_ca() {
        let dir = tempfile::tempdir().unwrap();
        let err = CertAuthority::load(&CaFiles::in_dir(dir.path())).unwrap_err();
        assert_eq!(err.code(), "ca-missing");
        assert!(err.to_string().contains("charte-proxy ca init"), "{err}");
    }

    #[test]
    fn load_refuses_a_key_that_is_not_the_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let a = CaFiles::in_dir(&dir.path().join("a"));
        let b = CaFiles::in_dir(&dir.path().join("b"));
        init(&a, "A", None, false).unwrap();
        init(&b, "B", None, false).unwrap();
        let mixed = CaFiles {
            cert_pem: a.cert_pem.clone(),
            key_pem: b.key_pem.clone(),
        };
        let err = CertAuthority::load(&mixed).unwrap_err();
        assert_eq!(err.code(), "ca-key-mismatch", "{err}");
    }

    #[test]
    fn load_refuses_a_certificate_that_is_not_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["server.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let files = write_pair(dir.path(), &cert.pem(), &key.serialize_pem());
        let err = CertAuthority::load(&files).unwrap_err();
        assert_eq!(err.code(), "ca-not-ca", "{err}");
        assert!(err.to_string().contains("CA:TRUE"), "{err}");
    }

    #[test]
    fn load_refuses_an_expired_ca() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = OffsetDateTime::now_utc() - Duration::days(30);
        params.not_after = OffsetDateTime::now_utc() - Duration::days(1);
        let cert = params.self_signed(&key).unwrap();
        let files = write_pair(dir.path(), &cert.pem(), &key.serialize_pem());
        let err = CertAuthority::load(&files).unwrap_err();
        assert_eq!(err.code(), "ca-not-valid-now", "{err}");
    }

    fn write_pair(dir: &Path, cert_pem: &str, key_pem: &str) -> CaFiles {
        let files = CaFiles::in_dir(dir);
        std::fs::write(&files.cert_pem, cert_pem).unwrap();
        write_key(&files.key_pem, key_pem);
        files
    }

    fn write_key(path: &Path, pem: &str) {
        let tmp = write_aside(path, pem.as_bytes(), 0o600).unwrap();
        std::fs::rename(tmp, path).unwrap();
    }

    #[test]
    fn a_leaf_chains_to_the_ca_and_names_its_host_only() {
        let dir = tempfile::tempdir().unwrap();
        let (_, ca) = new_ca(dir.path());
        let leaf = ca.mint(&host("WWW.Example.com")).unwrap().key;
        assert_eq!(leaf.cert.len(), 2);
        assert_eq!(&leaf.cert[1][..], ca.cert_der());
        leaf.keys_match().unwrap();

        verify(ca.cert_der(), &leaf.cert, "www.example.com").unwrap();
        let err = verify(ca.cert_der(), &leaf.cert, "example.com").unwrap_err();
        assert!(err.contains("not valid for name"), "{err}");
        assert!(verify(ca.cert_der(), &leaf.cert, "evil.www.example.com").is_err());

        let sans = subject_alt_names(&leaf.cert[0]).unwrap();
        assert_eq!(sans, vec![(0x82, b"www.example.com".to_vec())]);
        let info = CertInfo::parse(&leaf.cert[0]).unwrap();
        assert_eq!(info.subject, "CN=www.example.com");
        assert!(!info.ca);
        assert_eq!(info.key_cert_sign, Some(false));
        let now = OffsetDateTime::now_utc();
        let lifetime = info.not_after - info.not_before;
        assert_eq!(lifetime, LEAF_LIFETIME + LEAF_BACKDATE);
        assert!((now - info.not_before - LEAF_BACKDATE).abs() < Duration::minutes(1));

        // Another CA's leaves are not trusted.
        let other = tempfile::tempdir().unwrap();
        let (_, ca2) = new_ca(other.path());
        assert!(verify(ca2.cert_der(), &leaf.cert, "www.example.com").is_err());
    }

    #[test]
    fn an_address_gets_an_ip_san() {
        let dir = tempfile::tempdir().unwrap();
        let (_, ca) = new_ca(dir.path());
        let leaf = ca.mint(&host("192.0.2.7")).unwrap().key;
        let sans = subject_alt_names(&leaf.cert[0]).unwrap();
        assert_eq!(sans, vec![(0x87, vec![192, 0, 2, 7])]);
        verify(ca.cert_der(), &leaf.cert, "192.0.2.7").unwrap();
        assert!(verify(ca.cert_der(), &leaf.cert, "192.0.2.8").is_err());

        let leaf = ca.mint(&host("[2001:DB8::1]")).unwrap().key;
        let sans = subject_alt_names(&leaf.cert[0]).unwrap();
        let v6: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(sans, vec![(0x87, v6.octets().to_vec())]);
        verify(ca.cert_der(), &leaf.cert, "2001:db8::1").unwrap();
    }

    /// The public key a leaf certifies.
    fn leaf_spki(der: &[u8]) -> Vec<u8> {
        let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
        c.public_key().raw.to_vec()
    }

    #[test]
    fn leaves_share_a_key_for_an_hour_then_get_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let (_, ca) = new_ca(dir.path());
        let a = ca.mint(&host("a.example")).unwrap().key;
        let b = ca.mint(&host("b.example")).unwrap().key;
        assert_eq!(leaf_spki(&a.cert[0]), leaf_spki(&b.cert[0]));
        verify(ca.cert_der(), &b.cert, "b.example").unwrap();
        // The key is older than its lifetime: the next leaf gets a new one, and the
        // leaves minted before keep theirs.
        {
            let mut kept = ca.leaf_key.lock().unwrap();
            let k = kept.as_mut().unwrap();
            k.born = std::time::Instant::now()
                .checked_sub(LEAF_KEY_LIFETIME + std::time::Duration::from_secs(1))
                .unwrap();
        }
        let c = ca.mint(&host("c.example")).unwrap().key;
        assert_ne!(leaf_spki(&a.cert[0]), leaf_spki(&c.cert[0]));
        verify(ca.cert_der(), &c.cert, "c.example").unwrap();
        verify(ca.cert_der(), &a.cert, "a.example").unwrap();
        // Each leaf signs with the key its certificate names.
        for leaf in [&a, &c] {
            assert_eq!(leaf.keys_match().map_err(|e| e.to_string()), Ok(()));
        }
    }

    #[test]
    fn a_long_name_gets_no_common_name_but_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let (_, ca) = new_ca(dir.path());
        let name = format!("{}.example.com", "a".repeat(60));
        let leaf = ca.mint(&host(&name)).unwrap().key;
        assert_eq!(CertInfo::parse(&leaf.cert[0]).unwrap().subject, "");
        verify(ca.cert_der(), &leaf.cert, &name).unwrap();
    }

    /// A subordinate of another PKI, with a SEC1 key, its issuer after it in the file:
    /// leaves carry the whole chain and verify against the PKI's root.
    #[test]
    fn a_subordinate_ca_with_a_sec1_key_is_used_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let provider = crypto_provider();
        let root_key = KeyPair::generate().unwrap();
        let mut root_params = CertificateParams::default();
        root_params.distinguished_name = DistinguishedName::new();
        root_params
            .distinguished_name
            .push(DnType::CommonName, "Racine PKI Mairie");
        root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root_params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        root_params.not_after = OffsetDateTime::now_utc() + Duration::days(365);
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);

        let sub_key = provider
            .key_provider
            .load_private_key(PrivateKeyDer::from_pem_slice(SEC1_P256.as_bytes()).unwrap())
            .unwrap();
        let sub_signer = CaSigner::new(sub_key).unwrap();
        let mut sub_params = CertificateParams::default();
        sub_params.distinguished_name = DistinguishedName::new();
        sub_params
            .distinguished_name
            .push(DnType::CommonName, "Proxy filtrage");
        sub_params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "DSI");
        sub_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        sub_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        sub_params.use_authority_key_identifier_extension = true;
        sub_params.not_before = OffsetDateTime::now_utc() - Duration::hours(2);
        sub_params.not_after = OffsetDateTime::now_utc() + Duration::days(300);
        let sub = sub_params.signed_by(&sub_signer, &root_issuer).unwrap();

        let files = write_pair(
            dir.path(),
            &format!("{}{}", sub.pem(), root.pem()),
            SEC1_P256,
        );
        let ca = CertAuthority::load(&files).unwrap();
        assert_eq!(ca.subject(), "CN=Proxy filtrage, OU=DSI");
        let leaf = ca.mint(&host("intranet.mairie.example")).unwrap().key;
        assert_eq!(leaf.cert.len(), 3, "leaf, subordinate, root");
        verify(root.der(), &leaf.cert, "intranet.mairie.example").unwrap();
    }

    #[test]
    fn an_rsa_ca_with_a_pkcs1_key_signs_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let key = crypto_provider()
            .key_provider
            .load_private_key(PrivateKeyDer::from_pem_slice(PKCS1_RSA.as_bytes()).unwrap())
            .unwrap();
        let signer = CaSigner::new(key).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "RSA CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(30);
        let cert = params.self_signed(&signer).unwrap();
        let files = write_pair(dir.path(), &cert.pem(), PKCS1_RSA);
        let ca = CertAuthority::load(&files).unwrap();
        let leaf = ca.mint(&host("rsa.example")).unwrap().key;
        verify(ca.cert_der(), &leaf.cert, "rsa.example").unwrap();
        // The leaf ends with the CA, not after it.
        let info = CertInfo::parse(&leaf.cert[0]).unwrap();
        assert!(info.not_after <= ca.not_after());
    }
}
