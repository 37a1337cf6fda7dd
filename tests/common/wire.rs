//! Requests sent exactly as written — no URL normalisation on the way, unlike curl,
//! reqwest or a browser — through the proxy on each road a request can take:
//!
//! - [`Via::Plain`]: HTTP/1.1 in absolute form to the proxy listener;
//! - [`Via::BumpedH1`]: HTTP/1.1 inside a CONNECT tunnel that the proxy inspects;
//! - [`Via::BumpedH2`]: HTTP/2 inside such a tunnel (ALPN `h2`).
//!
//! And a [`Site`] that records every request that reaches it, so a test can say both
//! what the client got and that nothing got through. [`Rig`] puts them together: a proxy
//! started with a given policy, a plain site and a TLS site (h2 and http/1.1) on loopback.
//!
//! For what one request cannot show: a [`Wire`] keeps a client connection open (plain
//! or a bumped HTTP/1.1 session) to send several requests, or raw bytes, on it; and
//! [`Rig::h2_raw`] writes HTTP/2 frames by hand, for the requests an HTTP/2 library
//! refuses to send (connection-specific fields, extended CONNECT, heads over the limit
//! the server announced).
#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::proxy::{Proxy, TestBody, copy_dir, pins, serve_on_loopback};
use super::tls::{Leaf, TestCa};

/// The road a request takes through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Plain,
    BumpedH1,
    BumpedH2,
}

impl Via {
    pub const ALL: [Via; 3] = [Via::Plain, Via::BumpedH1, Via::BumpedH2];

    pub fn bumped(self) -> bool {
        self != Via::Plain
    }
}

/// What the client got back.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `X-Charte-Reason`, the proxy's reason code (and rule) for a refusal.
    pub fn reason(&self) -> Option<&str> {
        self.header("x-charte-reason")
    }
}

/// One request as the site received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// The request target as it arrived (origin form, or `:path` in HTTP/2).
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    /// Bytes that came after a protocol switch (`101`) on that connection, if any.
    pub after_switch: Vec<u8>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// How the sites of a [`Rig`] behave.
#[derive(Clone, Copy, Debug, Default)]
pub struct SiteOpts {
    /// Answer every request with `101` switching to this protocol, whether the request
    /// asked for a switch or not (a site that switches on its own, or to another
    /// protocol than the one asked).
    pub switch_to: Option<&'static str>,
    /// The TLS site offers HTTP/1.1 only (ALPN), so that the proxy's requests to it go
    /// as HTTP/1.1, where a protocol switch can happen.
    pub tls_h1_only: bool,
}

/// A site that answers `200 reached <target>` to every request and records it. A request
/// asking to switch protocols (`Upgrade` + `Connection: upgrade`, whatever the protocol)
/// is granted with `101` naming the same protocol, as a server that speaks it would; the
/// bytes that then arrive are recorded and echoed.
pub struct Site {
    pub addr: SocketAddr,
    log: Log,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Site {
    /// HTTP/1.1 in clear.
    pub fn plain() -> Site {
        Site::plain_with(SiteOpts::default())
    }

    /// HTTP/1.1 in clear, behaving as `opts` says.
    pub fn plain_with(opts: SiteOpts) -> Site {
        let log: Log = Arc::default();
        let l = log.clone();
        let (addr, stop) = serve_on_loopback(move |s| {
            let l = l.clone();
            async move {
                let svc = hyper::service::service_fn(move |r| record(l.clone(), opts, r));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .with_upgrades()
                    .await;
            }
        });
        Site {
            addr,
            log,
            _stop: stop,
        }
    }

    /// TLS with `leaf`, HTTP/2 or HTTP/1.1 by ALPN.
    pub fn tls(leaf: &Leaf) -> Site {
        Site::tls_with(leaf, SiteOpts::default())
    }

    /// TLS with `leaf`, behaving as `opts` says.
    pub fn tls_with(leaf: &Leaf, opts: SiteOpts) -> Site {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain.clone(), leaf.key())
            .unwrap();
        cfg.alpn_protocols = if opts.tls_h1_only {
            vec![b"http/1.1".to_vec()]
        } else {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let log: Log = Arc::default();
        let l = log.clone();
        let (addr, stop) = serve_on_loopback(move |s| {
            let acceptor = acceptor.clone();
            let l = l.clone();
            async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |r| record(l.clone(), opts, r));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await;
            }
        });
        Site {
            addr,
            log,
            _stop: stop,
        }
    }

    /// HTTP/1.1 in clear, answering every request `200` with a body framed by the close
    /// only (no length, no chunks), as an HTTP/1.0 server would, then closing.
    pub fn unframed() -> Site {
        let log: Log = Arc::default();
        let l = log.clone();
        let (addr, stop) = serve_on_loopback(move |mut s| {
            let l = l.clone();
            async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let seen = loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    let mut fields = [httparse::EMPTY_HEADER; 64];
                    let mut req = httparse::Request::new(&mut fields);
                    match req.parse(&buf) {
                        Ok(httparse::Status::Complete(_)) => {
                            break Seen {
                                method: req.method.unwrap_or("").to_string(),
                                target: req.path.unwrap_or("").to_string(),
                                version: format!("HTTP/1.{}", req.version.unwrap_or(1)),
                                headers: req
                                    .headers
                                    .iter()
                                    .map(|h| {
                                        (
                                            h.name.to_ascii_lowercase(),
                                            String::from_utf8_lossy(h.value).into_owned(),
                                        )
                                    })
                                    .collect(),
                                after_switch: Vec::new(),
                            };
                        }
                        Ok(httparse::Status::Partial) => {}
                        Err(_) => return,
                    }
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nreached {} unframed",
                    seen.target
                );
                l.lock().unwrap().push(seen);
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        Site {
            addr,
            log,
            _stop: stop,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request recorded so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    /// Forgets what was recorded.
    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }

    /// Waits until `pred` holds for what was recorded, or `within` passes; returns
    /// whether it held. Used for bytes that arrive after a switch, on their own time.
    pub fn wait_for(&self, within: Duration, pred: impl Fn(&[Seen]) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if pred(&self.log.lock().unwrap()) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

async fn record(
    log: Log,
    opts: SiteOpts,
    mut req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    let target = match req.version() {
        hyper::Version::HTTP_2 => req
            .uri()
            .path_and_query()
            .map_or("/".to_string(), |p| p.to_string()),
        _ => req.uri().to_string(),
    };
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let index = {
        let mut l = log.lock().unwrap();
        l.push(Seen {
            method: req.method().to_string(),
            target: target.clone(),
            version: format!("{:?}", req.version()),
            headers,
            after_switch: Vec::new(),
        });
        l.len() - 1
    };
    let asked = req.headers().get("upgrade").cloned().filter(|_| {
        req.headers().get_all("connection").iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .to_ascii_lowercase()
                .contains("upgrade")
        })
    });
    let switch = match opts.switch_to {
        Some(p) => Some(hyper::header::HeaderValue::from_static(p)),
        None => asked,
    };
    if let Some(proto) = switch {
        let up = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(u) = up.await else { return };
            let mut io = TokioIo::new(u);
            let mut buf = [0u8; 4096];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        log.lock().unwrap()[index]
                            .after_switch
                            .extend_from_slice(&buf[..n]);
                        if io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()).boxed());
        *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert("upgrade", proto);
        r.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        return Ok(r);
    }
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let n = body.map_or(0, |b| b.len());
    let text = format!("reached {target} ({n} bytes)");
    Ok(Response::new(Full::new(Bytes::from(text)).boxed()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// One request to send as written.
#[derive(Clone, Debug)]
pub struct Req<'a> {
    pub method: &'a str,
    /// The request target after the authority: `/path?query`, sent byte for byte.
    pub target: &'a str,
    /// `HTTP/1.1` unless said otherwise (HTTP/1.x roads only).
    pub version: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
}

impl<'a> Req<'a> {
    pub fn get(target: &'a str) -> Req<'a> {
        Req::new("GET", target)
    }

    pub fn new(method: &'a str, target: &'a str) -> Req<'a> {
        Req {
            method,
            target,
            version: "HTTP/1.1",
            headers: Vec::new(),
            body: b"",
        }
    }

    pub fn header(mut self, name: &'a str, value: &'a str) -> Req<'a> {
        self.headers.push((name, value));
        self
    }

    pub fn version(mut self, version: &'a str) -> Req<'a> {
        self.version = version;
        self
    }

    pub fn body(mut self, body: &'a [u8]) -> Req<'a> {
        self.body = body;
        self
    }
}

/// A proxy with a policy of the test's own, a plain site and a TLS site on loopback,
/// the organisation CA the proxy created, and the names of [`super::proxy::TEST_HOSTS`]
/// pinned to loopback.
pub struct Rig {
    pub p: Proxy,
    pub plain: Site,
    pub tls: Site,
    /// `None` when inspection is off (no CA is made).
    org: Option<CertificateDer<'static>>,
    _up_ca: TestCa,
    _up_dir: tempfile::TempDir,
}

impl Rig {
    /// Starts the proxy on a temp folder holding `policy` (as `policy.yaml`) and the test
    /// categories (`tests/fixtures/categories`), plus `files` (relative path, content),
    /// with `extra` arguments. The TLS site's certificate covers `tls_names`.
    pub fn start(policy: &str, files: &[(&str, &str)], tls_names: &[&str], extra: &[&str]) -> Rig {
        Rig::start_with(policy, files, tls_names, extra, SiteOpts::default())
    }

    /// [`Rig::start`] with sites that behave as `opts` says.
    pub fn start_with(
        policy: &str,
        files: &[(&str, &str)],
        tls_names: &[&str],
        extra: &[&str],
        opts: SiteOpts,
    ) -> Rig {
        let dir = policy_dir(policy, files);
        let up_ca = TestCa::new("Test upstream root");
        let tls = Site::tls_with(&up_ca.leaf(tls_names), opts);
        let plain = Site::plain_with(opts);
        let up_dir = tempfile::tempdir().unwrap();
        let up_pem = up_dir.path().join("upstream-root.pem");
        up_ca.write_pem(&up_pem);
        let mut args = pins();
        let port = tls.port().to_string();
        args.extend(
            [
                "--upstream-ca",
                &up_pem.display().to_string(),
                "--connect-port",
                &port,
            ]
            .map(String::from),
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = Proxy::start_in(dir, &refs);
        let org = CertificateDer::from_pem_file(p.path("data/ca/ca.pem")).ok();
        Rig {
            p,
            plain,
            tls,
            org,
            _up_ca: up_ca,
            _up_dir: up_dir,
        }
    }

    /// The site a road leads to.
    pub fn site(&self, via: Via) -> &Site {
        if via.bumped() { &self.tls } else { &self.plain }
    }

    /// `host:port` of the site for that road; `host` as written in a URL (IPv6 in
    /// brackets).
    pub fn authority(&self, via: Via, host: &str) -> String {
        format!("{host}:{}", self.site(via).port())
    }

    /// Sends `req` to `host` (the site's port is added) by `via`.
    pub fn send(&self, via: Via, host: &str, req: &Req<'_>) -> Answer {
        let authority = self.authority(via, host);
        match via {
            Via::Plain => plain(self.p.proxy, &authority, req),
            Via::BumpedH1 => bumped_h1(self.p.proxy, &authority, self.org_ca(), req),
            Via::BumpedH2 => bumped_h2(self.p.proxy, &authority, self.org_ca(), req),
        }
    }

    /// Opens a client connection to `host` (the site's port is added) by `via`, plain
    /// or bumped HTTP/1.1, kept open for several requests or raw bytes. `Err`: the
    /// CONNECT or the TLS handshake failed, with what came back.
    pub fn open(&self, via: Via, host: &str) -> Result<Wire, Answer> {
        let authority = self.authority(via, host);
        Wire::open(self.p.proxy, via, &authority, self.org_ca())
    }

    /// Sends one HTTP/2 request written by hand, inside a bumped tunnel to `host`:
    /// `fields` in order (pseudo-fields first, as the caller writes them) in a header
    /// block of literal fields, split over CONTINUATION frames as needed, then `body` in
    /// one DATA frame if any. Returns what the proxy did with stream 1.
    pub fn h2_raw(&self, host: &str, fields: &[(&str, &str)], body: Option<&[u8]>) -> H2Outcome {
        let authority = self.authority(Via::BumpedH2, host);
        h2_raw(self.p.proxy, &authority, self.org_ca(), fields, body)
    }

    /// The organisation CA the proxy signs its leaves with (inspection must be on: the
    /// proxy makes its CA only then).
    pub fn org_ca(&self) -> &CertificateDer<'static> {
        self.org
            .as_ref()
            .expect("inspection is on: the proxy made its CA")
    }
}

/// A client connection through the proxy, kept open: plain, or an HTTP/1.1 session in
/// a bumped tunnel. Requests go as written; nothing is added (no `Connection: close`).
pub struct Wire {
    pub via: Via,
    /// `host:port` the requests are for.
    pub authority: String,
    io: Box<dyn ReadWrite>,
}

/// A TLS client session whose reads never write first: rustls' `StreamOwned` sends
/// what it still holds before reading, and fails the read if the peer has gone, losing
/// what the peer said before it went (a 431 to a head that was still being sent).
struct Tls {
    conn: rustls::ClientConnection,
    sock: TcpStream,
}

impl Read for Tls {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            self.conn.read_tls(&mut self.sock)?;
            self.conn
                .process_new_packets()
                .map_err(std::io::Error::other)?;
        }
    }
}

impl Write for Tls {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.conn.writer().write(buf)?;
        self.flush()?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.sock)?;
        }
        Ok(())
    }
}

pub trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

impl Wire {
    /// A connection to `proxy` for `authority`: plain (requests in absolute form) or a
    /// bumped HTTP/1.1 session (a CONNECT, then TLS trusting `org`).
    pub fn open(
        proxy: SocketAddr,
        via: Via,
        authority: &str,
        org: &CertificateDer<'static>,
    ) -> Result<Wire, Answer> {
        let io: Box<dyn ReadWrite> = match via {
            Via::Plain => {
                let s = TcpStream::connect(proxy).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                Box::new(s)
            }
            Via::BumpedH1 => {
                let s = connect(proxy, authority).map_err(|head| answer_of(head.as_bytes()))?;
                let mut conn = rustls::ClientConnection::new(
                    client_config(org, b"http/1.1"),
                    server_name(authority),
                )
                .unwrap();
                let mut sock = s;
                while conn.is_handshaking() {
                    if let Err(e) = conn.complete_io(&mut sock) {
                        return Err(Answer {
                            body: format!("TLS failed: {e}"),
                            ..Answer::default()
                        });
                    }
                }
                Box::new(Tls { conn, sock })
            }
            Via::BumpedH2 => panic!("a Wire speaks HTTP/1.x; use Rig::h2_raw for HTTP/2"),
        };
        Ok(Wire {
            via,
            authority: authority.to_string(),
            io,
        })
    }

    /// The bytes of `req` as this connection sends it: absolute form on a plain
    /// connection, origin form inside a tunnel; `Host` first, the body's length after the
    /// caller's fields when there is a body, nothing else added.
    pub fn bytes_of(&self, req: &Req<'_>) -> Vec<u8> {
        let target = match self.via {
            Via::Plain => format!("http://{}{}", self.authority, req.target),
            _ => req.target.to_string(),
        };
        let mut b = format!(
            "{} {target} {}\r\n{}",
            req.method,
            req.version,
            head_lines_as(&self.authority, req, false)
        )
        .into_bytes();
        b.extend_from_slice(req.body);
        b
    }

    /// Sends `req` and reads one answer.
    pub fn send(&mut self, req: &Req<'_>) -> Answer {
        let bytes = self.bytes_of(req);
        if let Err(e) = self.write(&bytes) {
            return Answer {
                body: format!("write failed: {e}"),
                ..Answer::default()
            };
        }
        self.read_answer()
    }

    /// Writes bytes as they are.
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes)?;
        self.io.flush()
    }

    /// Reads one answer (status 0: the connection closed first, or what came back is
    /// not an HTTP answer, such as bytes echoed after a protocol switch).
    pub fn read_answer(&mut self) -> Answer {
        read_answer(&mut self.io)
    }

    /// Reads exactly `buf.len()` bytes (after a switch: what the site sent back).
    pub fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.io.read_exact(buf)
    }
}

/// A temp folder holding `policy` (as `policy.yaml`), the test categories
/// (`tests/fixtures/categories`) and `files` (relative path, content).
pub fn policy_dir(policy: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    copy_dir(&root.join("categories"), &dir.path().join("categories"));
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    for (rel, content) in files {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

/// The head lines of `req` (without the request line), `Connection: close` last.
fn head_lines(authority: &str, req: &Req<'_>) -> String {
    head_lines_as(authority, req, true)
}

/// The head lines of `req`; `close`: `Connection: close` last, unless the request has
/// a `Connection` field of its own.
fn head_lines_as(authority: &str, req: &Req<'_>, close: bool) -> String {
    let mut head = format!("Host: {authority}\r\n");
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !req.body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    if close
        && !req
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
    {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    head
}

/// Plain HTTP/1.1, absolute form.
pub fn plain(proxy: SocketAddr, authority: &str, req: &Req<'_>) -> Answer {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut bytes = format!(
        "{} http://{authority}{} {}\r\n{}",
        req.method,
        req.target,
        req.version,
        head_lines(authority, req)
    )
    .into_bytes();
    bytes.extend_from_slice(req.body);
    s.write_all(&bytes).unwrap();
    read_answer(&mut s)
}

/// Opens a CONNECT tunnel to `authority`; returns the stream once the proxy said 200.
pub fn connect(proxy: SocketAddr, authority: &str) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return Err(format!("closed after {:?}", String::from_utf8_lossy(&head))),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if head.starts_with("HTTP/1.1 200") {
        Ok(s)
    } else {
        Err(head)
    }
}

/// The TLS name a browser would use for `authority`'s host: the host as the URL
/// parser reads it (`127.1` is the address 127.0.0.1), an address or a DNS name.
fn server_name(authority: &str) -> ServerName<'static> {
    match charte_proxy::classify::Host::parse_authority(authority) {
        Ok((h, _)) => match h.ip() {
            Some(ip) => ServerName::IpAddress(ip.into()),
            None => ServerName::try_from(h.as_str().to_string()).unwrap(),
        },
        Err(_) => ServerName::try_from("invalid.test").unwrap(),
    }
}

fn client_config(org: &CertificateDer<'static>, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(org.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(cfg)
}

/// HTTP/1.1 inside a bumped tunnel, origin form.
pub fn bumped_h1(
    proxy: SocketAddr,
    authority: &str,
    org: &CertificateDer<'static>,
    req: &Req<'_>,
) -> Answer {
    let s = match connect(proxy, authority) {
        Ok(s) => s,
        Err(head) => return answer_of(head.as_bytes()),
    };
    let conn =
        rustls::ClientConnection::new(client_config(org, b"http/1.1"), server_name(authority))
            .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, s);
    let mut bytes = format!(
        "{} {} {}\r\n{}",
        req.method,
        req.target,
        req.version,
        head_lines(authority, req)
    )
    .into_bytes();
    bytes.extend_from_slice(req.body);
    if let Err(e) = tls.write_all(&bytes) {
        return Answer {
            status: 0,
            body: format!("TLS failed: {e}"),
            ..Answer::default()
        };
    }
    read_answer(&mut tls)
}

/// HTTP/2 inside a bumped tunnel; `:path` is `req.target` as written.
pub fn bumped_h2(
    proxy: SocketAddr,
    authority: &str,
    org: &CertificateDer<'static>,
    req: &Req<'_>,
) -> Answer {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = match connect(proxy, authority) {
            Ok(s) => s,
            Err(head) => return answer_of(head.as_bytes()),
        };
        s.set_nonblocking(true).unwrap();
        let s = tokio::net::TcpStream::from_std(s).unwrap();
        let connector = tokio_rustls::TlsConnector::from(client_config(org, b"h2"));
        let tls = match connector.connect(server_name(authority), s).await {
            Ok(t) => t,
            Err(e) => {
                return Answer {
                    status: 0,
                    body: format!("TLS failed: {e}"),
                    ..Answer::default()
                };
            }
        };
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut b = Request::builder()
            .method(req.method)
            .uri(format!("https://{authority}{}", req.target));
        for (k, v) in &req.headers {
            b = b.header(*k, *v);
        }
        let r = match b.body(Full::new(Bytes::copy_from_slice(req.body))) {
            Ok(r) => r,
            Err(e) => {
                return Answer {
                    status: 0,
                    body: format!("request not built: {e}"),
                    ..Answer::default()
                };
            }
        };
        let res = match tokio::time::timeout(Duration::from_secs(20), send.send_request(r)).await {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => {
                return Answer {
                    status: 0,
                    body: format!("HTTP/2 error: {e}"),
                    ..Answer::default()
                };
            }
            Err(_) => panic!("no HTTP/2 answer within 20 s"),
        };
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = res.into_body().collect().await.map(|b| b.to_bytes());
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body.unwrap_or_default()).into_owned(),
        }
    })
}

/// Reads one HTTP/1.1 answer: its head, then a body framed by `Content-Length`, by
/// chunks, or by the close.
pub fn read_answer(s: &mut impl Read) -> Answer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return answer_of(&buf),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let mut a = answer_of(&buf[..head_end]);
    let mut body = buf[head_end..].to_vec();
    let length = a
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    let chunked = a
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let complete = |b: &[u8]| match (length, chunked) {
        (Some(n), _) => b.len() >= n,
        (None, true) => b.ends_with(b"0\r\n\r\n"),
        (None, false) => false,
    };
    // A 1xx or 204/304 answer has no body; HEAD answers are not sent by these tests.
    let bodiless = a.status < 200 || a.status == 204 || a.status == 304;
    while !bodiless && !complete(&body) {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    if chunked {
        body = dechunk(&body);
    }
    a.body = String::from_utf8_lossy(&body).into_owned();
    a
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = find(b, b"\r\n") {
        let size = std::str::from_utf8(&b[..i])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || b.len() < i + 2 + size {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[(i + 4 + size).min(b.len())..];
    }
    out
}

/// Status and headers of a head (`HTTP/1.1 403 …\r\nName: value…`).
fn answer_of(head: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = super::proxy::status_of(lines.next().unwrap_or(""));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: String::new(),
    }
}

/// What the proxy did with a hand-written HTTP/2 request (stream 1).
#[derive(Clone, Debug, Default)]
pub struct H2Outcome {
    /// The answer's `:status`, when an answer came.
    pub status: Option<u16>,
    /// The error code of a RST_STREAM on stream 1.
    pub reset: Option<u32>,
    /// The error code of a GOAWAY.
    pub goaway: Option<u32>,
    /// Why reading stopped otherwise (closed, TLS failure, CONNECT refused).
    pub note: String,
}

impl H2Outcome {
    /// Stream 1 got no successful answer: a 4xx or 5xx, a reset, or a GOAWAY with an
    /// error.
    pub fn refused(&self) -> bool {
        self.status.is_some_and(|s| s >= 400)
            || self.reset.is_some()
            || self.goaway.is_some_and(|c| c != 0)
    }
}

/// A frame: length, type, flags, stream, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix after the bits of `first` (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A header block of literal fields, never indexed, names and values as written.
fn hpack_literals(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// The `:status` of a response header block: it comes first (RFC 9113 §8.3), as an
/// entry of the static table or a literal with an indexed name, its value in ASCII or
/// Huffman-coded digits. Enough for the answers of hyper's HTTP/2 server.
fn h2_status(block: &[u8]) -> Option<u16> {
    let mut i = 0;
    // Dynamic table size updates may come first.
    while *block.get(i)? & 0xe0 == 0x20 {
        let more = block[i] & 0x1f == 0x1f;
        i += 1;
        if more {
            while block.get(i)? & 0x80 != 0 {
                i += 1;
            }
            i += 1;
        }
    }
    let b = *block.get(i)?;
    if b & 0x80 != 0 {
        return match b & 0x7f {
            8 => Some(200),
            9 => Some(204),
            10 => Some(206),
            11 => Some(304),
            12 => Some(400),
            13 => Some(404),
            14 => Some(500),
            _ => None,
        };
    }
    let name = if b & 0xc0 == 0x40 { b & 0x3f } else { b & 0x0f };
    if !(8..=14).contains(&name) {
        return None;
    }
    let huffman = block.get(i + 1)? & 0x80 != 0;
    let len = (block[i + 1] & 0x7f) as usize;
    let raw = block.get(i + 2..i + 2 + len)?;
    let text = if huffman {
        huffman_digits(raw)
    } else {
        String::from_utf8_lossy(raw).into_owned()
    };
    text.parse().ok()
}

/// Digits in HPACK's Huffman code (RFC 7541 Appendix B): `0`-`2` take 5 bits
/// (00000-00010), `3`-`9` take 6 (011001-011111); the padding is ones.
fn huffman_digits(raw: &[u8]) -> String {
    let bits: Vec<u8> = raw
        .iter()
        .flat_map(|b| (0..8).rev().map(move |k| (b >> k) & 1))
        .collect();
    let value = |from: usize, n: usize| bits[from..from + n].iter().fold(0u8, |a, b| a << 1 | b);
    let mut out = String::new();
    let mut i = 0;
    while i + 5 <= bits.len() {
        let v5 = value(i, 5);
        if v5 <= 2 {
            out.push((b'0' + v5) as char);
            i += 5;
        } else if i + 6 <= bits.len() && (0x19..=0x1f).contains(&value(i, 6)) {
            out.push((b'0' + 3 + value(i, 6) - 0x19) as char);
            i += 6;
        } else {
            break;
        }
    }
    out
}

/// See [`Rig::h2_raw`].
pub fn h2_raw(
    proxy: SocketAddr,
    authority: &str,
    org: &CertificateDer<'static>,
    fields: &[(&str, &str)],
    body: Option<&[u8]>,
) -> H2Outcome {
    let mut out = H2Outcome::default();
    let s = match connect(proxy, authority) {
        Ok(s) => s,
        Err(head) => {
            out.note = format!("CONNECT refused: {head}");
            return out;
        }
    };
    let conn =
        rustls::ClientConnection::new(client_config(org, b"h2"), server_name(authority)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, s);
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend(h2_frame(4, 0, 0, &[]));
    // HEADERS then CONTINUATION frames of at most 16 KiB (the smallest frame size a
    // server may announce); END_STREAM on HEADERS when there is no body.
    let block = hpack_literals(fields);
    let pieces: Vec<&[u8]> = if block.is_empty() {
        vec![&[]]
    } else {
        block.chunks(16_384).collect()
    };
    for (i, piece) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let mut flags = if last { 0x4 } else { 0 };
        if i == 0 && body.is_none() {
            flags |= 0x1;
        }
        bytes.extend(h2_frame(if i == 0 { 1 } else { 9 }, flags, 1, piece));
    }
    if let Some(b) = body {
        bytes.extend(h2_frame(0, 0x1, 1, b));
    }
    if let Err(e) = tls.write_all(&bytes).and_then(|_| tls.flush()) {
        // The proxy may have answered and closed already: read what it said.
        out.note = format!("write failed: {e}; ");
    }
    loop {
        let mut head = [0u8; 9];
        if let Err(e) = tls.read_exact(&mut head) {
            out.note.push_str(&format!("closed: {e}"));
            return out;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if let Err(e) = tls.read_exact(&mut payload) {
            out.note.push_str(&format!("closed in a frame: {e}"));
            return out;
        }
        match kind {
            // SETTINGS: acknowledged, as a client must.
            4 if flags & 0x1 == 0 => {
                let _ = tls.write_all(&h2_frame(4, 0x1, 0, &[]));
                let _ = tls.flush();
            }
            1 if stream == 1 => {
                let mut block = &payload[..];
                if flags & 0x8 != 0 {
                    let pad = block[0] as usize;
                    block = &block[1..block.len() - pad];
                }
                if flags & 0x20 != 0 {
                    block = &block[5..];
                }
                out.status = h2_status(block);
                return out;
            }
            3 if stream == 1 => {
                out.reset = Some(u32::from_be_bytes(payload[..4].try_into().unwrap()));
                return out;
            }
            7 => {
                let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                out.goaway = Some(code);
                // NO_ERROR: the streams it covers are still answered.
                if code != 0 {
                    return out;
                }
            }
            _ => {}
        }
    }
}
