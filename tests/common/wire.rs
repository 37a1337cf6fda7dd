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
        let log: Log = Arc::default();
        let l = log.clone();
        let (addr, stop) = serve_on_loopback(move |s| {
            let l = l.clone();
            async move {
                let svc = hyper::service::service_fn(move |r| record(l.clone(), r));
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
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain.clone(), leaf.key())
            .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
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
                let svc = hyper::service::service_fn(move |r| record(l.clone(), r));
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

async fn record(log: Log, mut req: Request<Incoming>) -> Result<Response<TestBody>, Infallible> {
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
    let switch = req.headers().get("upgrade").cloned().filter(|_| {
        req.headers().get_all("connection").iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .to_ascii_lowercase()
                .contains("upgrade")
        })
    });
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
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
}

impl<'a> Req<'a> {
    pub fn get(target: &'a str) -> Req<'a> {
        Req {
            method: "GET",
            target,
            headers: Vec::new(),
            body: b"",
        }
    }

    pub fn header(mut self, name: &'a str, value: &'a str) -> Req<'a> {
        self.headers.push((name, value));
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
    org: CertificateDer<'static>,
    _up_ca: TestCa,
    _up_dir: tempfile::TempDir,
}

impl Rig {
    /// Starts the proxy on a temp folder holding `policy` (as `policy.yaml`) and the test
    /// categories (`tests/fixtures/categories`), plus `files` (relative path, content),
    /// with `extra` arguments. The TLS site's certificate covers `tls_names`.
    pub fn start(policy: &str, files: &[(&str, &str)], tls_names: &[&str], extra: &[&str]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        copy_dir(&root.join("categories"), &dir.path().join("categories"));
        std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
        for (rel, content) in files {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let up_ca = TestCa::new("Test upstream root");
        let tls = Site::tls(&up_ca.leaf(tls_names));
        let plain = Site::plain();
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
        let org = CertificateDer::from_pem_file(p.path("data/ca/ca.pem")).unwrap();
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
            Via::BumpedH1 => bumped_h1(self.p.proxy, &authority, &self.org, req),
            Via::BumpedH2 => bumped_h2(self.p.proxy, &authority, &self.org, req),
        }
    }
}

/// The head lines of `req` (without the request line), `Connection: close` last.
fn head_lines(authority: &str, req: &Req<'_>) -> String {
    let mut head = format!("Host: {authority}\r\n");
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !req.body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    if !req
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
        "{} http://{authority}{} HTTP/1.1\r\n{}",
        req.method,
        req.target,
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

/// The TLS name a client would use for `authority`'s host.
fn server_name(authority: &str) -> ServerName<'static> {
    let host = match authority.rsplit_once(':') {
        Some((h, _)) => h,
        None => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).unwrap()
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
        "{} {} HTTP/1.1\r\n{}",
        req.method,
        req.target,
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
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
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
