//! TLS test fixtures: a throw-away PKI for upstream sites (a test root given to the proxy
//! as extra trust, and certificates that are good, expired, for another name, self-signed
//! or from an unknown CA), HTTPS upstream servers speaking HTTP/1.1 and HTTP/2, and a
//! client that opens a TLS session through a CONNECT tunnel.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use time::OffsetDateTime;

/// A certificate with its key, ready for a rustls server.
#[derive(Clone)]
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
}

impl Leaf {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// A test certification authority.
pub struct TestCa {
    pub pem: String,
    pub der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(cn: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names`, valid from `from` to `until` days from now.
    pub fn leaf_valid(&self, names: &[&str], from: i64, until: i64) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("x"));
        let now = OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from);
        params.not_after = now + time::Duration::days(until);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key_der: key.serialize_der(),
        }
    }

    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_valid(names, -1, 30)
    }

    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, &self.pem).unwrap();
    }
}

/// A self-signed leaf (no CA behind it).
pub fn self_signed(names: &[&str]) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("x"));
    let cert = params.self_signed(&key).unwrap();
    Leaf {
        chain: vec![cert.der().clone()],
        key_der: key.serialize_der(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// An HTTPS upstream on loopback with the routes of [`super::proxy::Upstream`]; ALPN h2
/// and http/1.1.
pub struct HttpsUpstream {
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl HttpsUpstream {
    pub fn start(leaf: &Leaf) -> HttpsUpstream {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain.clone(), leaf.key())
            .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let (addr, stop) = super::proxy::serve_on_loopback(move |s| {
            let acceptor = acceptor.clone();
            async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(
                        TokioIo::new(tls),
                        hyper::service::service_fn(super::proxy::route),
                    )
                    .await;
            }
        });
        HttpsUpstream { addr, _stop: stop }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// An HTTPS upstream for `names`, signed by a fresh test root whose PEM is written in
/// `dir`, and the proxy arguments that trust that root and allow CONNECT to its port.
pub struct TrustedUpstream {
    pub up: HttpsUpstream,
    _ca: TestCa,
    args: [String; 4],
}

impl TrustedUpstream {
    pub fn start(names: &[&str], dir: &Path) -> TrustedUpstream {
        let ca = TestCa::new("Test upstream root");
        let up = HttpsUpstream::start(&ca.leaf(names));
        let pem = dir.join("upstream-root.pem");
        ca.write_pem(&pem);
        let args = [
            "--upstream-ca".to_string(),
            pem.display().to_string(),
            "--connect-port".to_string(),
            up.port().to_string(),
        ];
        TrustedUpstream { up, _ca: ca, args }
    }

    /// `--upstream-ca PEM --connect-port PORT`.
    pub fn args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }

    pub fn port(&self) -> u16 {
        self.up.port()
    }
}

/// Opens a CONNECT tunnel to `connect_to` through `proxy`, then a TLS session naming
/// `sni`, trusting `roots`. Returns the TLS stream or the handshake error.
pub fn tls_through(
    proxy: SocketAddr,
    connect_to: &str,
    sni: &str,
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>, String> {
    tls_through_with(proxy, connect_to, sni, client_config(roots, alpn))
}

/// A TLS client configuration trusting `roots` and offering `alpn`. Sessions made with
/// one configuration are offered again by its later connections (rustls's client
/// session cache), as a browser does.
pub fn client_config(
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// [`tls_through`] with a given client configuration.
pub fn tls_through_with(
    proxy: SocketAddr,
    connect_to: &str,
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>, String> {
    let s = super::wire::connect(proxy, connect_to)
        .map_err(|head| format!("CONNECT refused: {head}"))?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, s);
    // Drive the handshake to its end (or its failure).
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            return Err(e.to_string());
        }
    }
    Ok(tls)
}

/// Sends one HTTP/1.1 request on a TLS stream and reads the whole answer (the request
/// asks the server to close).
pub fn h1_exchange(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    request: &str,
) -> String {
    tls.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}
