//! TLS load client of `benches/load.sh` part 6 (bumped HTTPS, issue 26): the same client
//! runs direct to the HTTPS origin and through a proxy's CONNECT tunnel (charte-proxy,
//! e2guardian), so that the ratio proxy / direct is what counts.
//!
//! Each connection: TCP (to the proxy, then `CONNECT HOST:PORT`; or straight to
//! `--connect`), a TLS handshake with rustls trusting the `--cafile` PEM files (SNI HOST,
//! ALPN `h2` or `http/1.1` as `--http` says, and the one negotiated must be that one), then
//! HTTP/1.1 or HTTP/2 through hyper's client connection API. Modes:
//!
//! * `keepalive`: `--conns` connections held for `--duration` s, each sending `GET PATH`
//!   one after the other (closed loop). With `--rate R` (total requests a second), open
//!   loop instead: each connection's requests are due at fixed times (R / conns a second
//!   each, staggered), are sent when due or as soon as the connection is free, and each
//!   latency counts from when the request was due (no coordinated omission).
//! * `handshake`: `--conns` tasks, each opening a new connection (full TLS handshake: no
//!   session resumption), one `GET PATH` (`Connection: close` in HTTP/1.1), closing; with
//!   `--host` the same name every time (leaf cache warm), with `--hosts-file` each name
//!   once (cold), until the names or `--duration` run out.
//! * `download`: one connection, one `GET PATH` read to the end; `mib_s` is its rate.
//! * `upload`: one connection, one `PUT PATH` of `--size` bytes; `mib_s` is its rate
//!   (until the origin's answer, which nginx's WebDAV PUT sends after the whole body).
//!
//! Prints one JSON line: ok, errors, elapsed_s, rate (ok / elapsed_s), p50_ms, p99_ms,
//! p999_ms, mib_s, bytes, reconnects, alpn, first_error. A run with errors still prints its figures.
//!
//! ```sh
//! cargo build --release --benches     # then target/release/deps/tls_load-<hash>
//! tls_load --mode keepalive --http 2 --proxy 127.0.0.1:3128 --host origin.bench.test \
//!   --port 443 --cafile ca.pem --conns 50 --duration 10
//! ```

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Keepalive,
    Handshake,
    Download,
    Upload,
}

#[derive(Parser, Debug)]
#[command(about = "TLS load client (direct or through CONNECT) for benches/load.sh part 6")]
struct Args {
    #[arg(long, value_enum)]
    mode: Mode,
    /// HTTP proxy host:port to CONNECT through; none: straight to --connect.
    #[arg(long)]
    proxy: Option<String>,
    /// Address dialled without a proxy (default 127.0.0.1:PORT).
    #[arg(long)]
    connect: Option<String>,
    /// Name for SNI, Host and CONNECT (one name: warm leaf cache).
    #[arg(long, default_value = "origin.bench.test")]
    host: String,
    /// One name a line, each used once (handshake mode, cold leaf cache).
    #[arg(long)]
    hosts_file: Option<PathBuf>,
    /// Origin port (in CONNECT and Host).
    #[arg(long)]
    port: u16,
    /// PEM CA certificates to trust (repeat).
    #[arg(long, required = true)]
    cafile: Vec<PathBuf>,
    /// HTTP version inside TLS: 1 (HTTP/1.1) or 2.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    http: u8,
    #[arg(long, default_value = "/1k")]
    path: String,
    /// Concurrent connections (keepalive) or tasks (handshake).
    #[arg(long, default_value_t = 50)]
    conns: usize,
    /// Seconds of a keepalive or handshake run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Total requests a second, open loop (keepalive only); none: closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Body bytes every answer must have (GETs; a proxy's block page is caught).
    #[arg(long)]
    expect_bytes: Option<u64>,
    /// Upload size in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    size: usize,
    /// Client runtime threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seconds allowed for one connection set-up or one request.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
}

/// What every connection needs, built once.
struct Target {
    args: Args,
    tls: TlsConnector,
    dial: String,
}

/// Where the keepalive tasks wait for each other and learn when the clock started.
struct Gate {
    barrier: tokio::sync::Barrier,
    t0: OnceLock<Instant>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Tallies shared by the tasks of a run.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    /// Keepalive connections reopened after the server closed them or an error.
    reconnects: AtomicU64,
    first_error: Mutex<Option<String>>,
    latencies_us: Mutex<Vec<u32>>,
    alpn: Mutex<Option<String>>,
}

impl Tally {
    fn error(&self, e: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut f = self.first_error.lock().unwrap();
        if f.is_none() {
            *f = Some(e.to_string());
        }
    }
    /// One exchange done: `bytes` read or sent, `took` long (kept in `lat`).
    fn success(&self, bytes: u64, took: Duration, lat: &mut Vec<u32>) {
        self.ok.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        lat.push(took.as_micros().min(u32::MAX as u128) as u32);
    }
    fn add_latencies(&self, mut v: Vec<u32>) {
        self.latencies_us.lock().unwrap().append(&mut v);
    }
}

fn tls_config(args: &Args) -> Result<rustls::ClientConfig, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    for f in &args.cafile {
        for c in CertificateDer::pem_file_iter(f)? {
            roots.add(c?)?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // every new connection is a full handshake on the client's side
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![if args.http == 2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    Ok(config)
}

/// TCP (+ CONNECT) + TLS; checks that the negotiated ALPN is the one asked for.
async fn open_tls(t: &Target, host: &str) -> Result<TlsStream<TcpStream>, BoxError> {
    let a = &t.args;
    let mut tcp = TcpStream::connect(&t.dial).await?;
    tcp.set_nodelay(true)?;
    if a.proxy.is_some() {
        let req = format!(
            "CONNECT {host}:{p} HTTP/1.1\r\nHost: {host}:{p}\r\n\r\n",
            p = a.port
        );
        tcp.write_all(req.as_bytes()).await?;
        // the proxy says nothing after its reply until the client's TLS hello, so the
        // reply's head is all there is to read
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 512];
        while !buf.ends_with(b"\r\n\r\n") {
            let n = tcp.read(&mut chunk).await?;
            if n == 0 {
                return Err("proxy closed before the end of its CONNECT reply".into());
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > 16384 {
                return Err("CONNECT reply head too long".into());
            }
        }
        let status = buf.split(|&b| b == b'\r').next().unwrap_or_default();
        let status = String::from_utf8_lossy(status);
        if status.split(' ').nth(1) != Some("200") {
            return Err(format!("CONNECT refused: {status}").into());
        }
    }
    let name = ServerName::try_from(host.to_owned())?;
    let tls = t.tls.connect(name, tcp).await?;
    let want: &[u8] = if a.http == 2 { b"h2" } else { b"http/1.1" };
    let got = tls.get_ref().1.alpn_protocol();
    // a server without ALPN speaks HTTP/1.1; HTTP/2 must be negotiated
    if got != Some(want) && !(a.http == 1 && got.is_none()) {
        return Err(format!(
            "ALPN: asked {}, got {}",
            String::from_utf8_lossy(want),
            got.map_or("none".into(), |g| String::from_utf8_lossy(g).into_owned())
        )
        .into());
    }
    Ok(tls)
}

/// One HTTP connection of either version, sending requests one at a time.
enum Sender<B> {
    H1(hyper::client::conn::http1::SendRequest<B>),
    H2(hyper::client::conn::http2::SendRequest<B>),
}

impl<B> Sender<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    async fn send(
        &mut self,
        req: Request<B>,
    ) -> hyper::Result<hyper::Response<hyper::body::Incoming>> {
        match self {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }
}

async fn connect<B>(t: &Target, host: &str, tally: &Tally) -> Result<Sender<B>, BoxError>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let tls = open_tls(t, host).await?;
    {
        let mut alpn = tally.alpn.lock().unwrap();
        if alpn.is_none() {
            *alpn = tls
                .get_ref()
                .1
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned());
        }
    }
    let io = TokioIo::new(tls);
    if t.args.http == 2 {
        let (s, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await?;
        tokio::spawn(conn);
        Ok(Sender::H2(s))
    } else {
        let (s, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        Ok(Sender::H1(s))
    }
}

/// A request for PATH on HOST: origin-form and a Host header in HTTP/1.1, absolute URI
/// (the :authority) in HTTP/2.
fn request<B>(t: &Target, host: &str, method: &str, body: B, close: bool) -> Request<B> {
    let a = &t.args;
    let b = Request::builder().method(method);
    let b = if a.http == 2 {
        b.uri(format!("https://{host}:{}{}", a.port, a.path))
    } else {
        let b = b
            .uri(a.path.as_str())
            .header(hyper::header::HOST, format!("{host}:{}", a.port));
        if close {
            b.header(hyper::header::CONNECTION, "close")
        } else {
            b
        }
    };
    b.body(body).expect("request parts are valid")
}

/// Sends one request and reads the answer to its end; the body's byte count, and
/// whether the server closes the connection after it. The answer is checked: a 2xx (a
/// PUT: nginx's 201 or 204, not a proxy's page) with `--expect-bytes` bytes when given.
async fn exchange<B>(
    t: &Target,
    s: &mut Sender<B>,
    req: Request<B>,
) -> Result<(u64, bool), BoxError>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let put = req.method() == hyper::Method::PUT;
    let resp = s.send(req).await?;
    let status = resp.status();
    let close = resp
        .headers()
        .get_all(hyper::header::CONNECTION)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(f) = body.frame().await {
        if let Some(d) = f?.data_ref() {
            n += d.len() as u64;
        }
    }
    if !status.is_success() || (put && status.as_u16() != 201 && status.as_u16() != 204) {
        return Err(format!("HTTP status {status} ({n} bytes)").into());
    }
    if let Some(want) = t.args.expect_bytes.filter(|&w| !put && w != n) {
        return Err(format!("{n} bytes in the answer, not {want}").into());
    }
    Ok((n, close))
}

async fn timed<T>(secs: f64, f: impl Future<Output = Result<T, BoxError>>) -> Result<T, BoxError> {
    match tokio::time::timeout(Duration::from_secs_f64(secs), f).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {secs} s").into()),
    }
}

/// One kept-alive connection: requests until `end`, closed loop or, with `interval`,
/// due at `first + k * interval` and timed from then.
/// The connection is set up first; the clock starts once every connection is (`gate`:
/// all tasks and `run` meet there twice, `t0` set in between).
async fn keepalive_conn(t: Arc<Target>, tally: Arc<Tally>, c: usize, gate: Arc<Gate>) {
    let a = &t.args;
    let s = timed(a.timeout, connect::<Empty<Bytes>>(&t, &a.host, &tally)).await;
    gate.barrier.wait().await;
    gate.barrier.wait().await;
    let mut s = match s {
        Ok(s) => Some(s),
        Err(e) => return tally.error(e),
    };
    let t0 = *gate.t0.get().expect("set between the two waits");
    let end = t0 + Duration::from_secs_f64(a.duration);
    let conns = a.conns.max(1);
    let schedule = a.rate.map(|r| {
        let every = Duration::from_secs_f64(conns as f64 / r);
        (t0 + every.mul_f64(c as f64 / conns as f64), every)
    });
    let mut lat = Vec::new();
    let mut k: u32 = 0;
    loop {
        let start = match schedule {
            Some((first, every)) => {
                let due = first + every * k;
                k += 1;
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                now
            }
        };
        // a connection the server closed (e2guardian answers `Connection: close` inside
        // its bumped tunnels) or that failed is reopened, inside this request's time
        let one = async {
            let mut conn = match s.take() {
                Some(c) => c,
                None => {
                    tally.reconnects.fetch_add(1, Ordering::Relaxed);
                    connect::<Empty<Bytes>>(&t, &a.host, &tally).await?
                }
            };
            let req = request(&t, &a.host, "GET", Empty::new(), false);
            let (n, close) = exchange(&t, &mut conn, req).await?;
            if !close {
                s = Some(conn);
            }
            Ok::<_, BoxError>(n)
        };
        match timed(a.timeout, one).await {
            Ok(n) => tally.success(n, start.elapsed(), &mut lat),
            Err(e) => tally.error(e),
        }
    }
    tally.add_latencies(lat);
}

/// Opens a connection a name, one request each, until the names or `end` run out.
async fn handshake_task(
    t: Arc<Target>,
    tally: Arc<Tally>,
    names: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    cycle: bool,
    end: Instant,
) {
    let a = &t.args;
    let mut lat = Vec::new();
    while Instant::now() < end {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let host = if cycle {
            &names[i % names.len()]
        } else if i < names.len() {
            &names[i]
        } else {
            break;
        };
        let start = Instant::now();
        let one = async {
            let mut s = connect::<Empty<Bytes>>(&t, host, &tally).await?;
            let (n, _) = exchange(&t, &mut s, request(&t, host, "GET", Empty::new(), true)).await?;
            Ok::<_, BoxError>(n)
        };
        match timed(a.timeout, one).await {
            Ok(n) => tally.success(n, start.elapsed(), &mut lat),
            Err(e) => tally.error(e),
        }
    }
    tally.add_latencies(lat);
}

fn percentile(sorted: &[u32], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(f64::from(sorted[i]) / 1000.0)
}

async fn run(t: Arc<Target>, tally: Arc<Tally>) -> f64 {
    let a = &t.args;
    let dur = Duration::from_secs_f64(a.duration);
    let t0 = Instant::now();
    match a.mode {
        Mode::Keepalive => {
            // connections are set up before the clock starts: requests/s inside tunnels
            let conns = a.conns.max(1);
            let gate = Arc::new(Gate {
                barrier: tokio::sync::Barrier::new(conns + 1),
                t0: OnceLock::new(),
            });
            let tasks: Vec<_> = (0..conns)
                .map(|c| tokio::spawn(keepalive_conn(t.clone(), tally.clone(), c, gate.clone())))
                .collect();
            gate.barrier.wait().await;
            let t0 = Instant::now();
            let _ = gate.t0.set(t0);
            gate.barrier.wait().await;
            for task in tasks {
                let _ = task.await;
            }
            return t0.elapsed().as_secs_f64();
        }
        Mode::Handshake => {
            let (names, cycle) = match &a.hosts_file {
                Some(f) => match std::fs::read_to_string(f) {
                    Ok(s) => (
                        s.lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_owned)
                            .collect::<Vec<_>>(),
                        false,
                    ),
                    Err(e) => {
                        tally.error(format!("{}: {e}", f.display()));
                        (Vec::new(), false)
                    }
                },
                None => (vec![a.host.clone()], true),
            };
            let names = Arc::new(names);
            let next = Arc::new(AtomicUsize::new(0));
            let end = t0 + dur;
            let tasks: Vec<_> = (0..a.conns.max(1))
                .map(|_| {
                    tokio::spawn(handshake_task(
                        t.clone(),
                        tally.clone(),
                        names.clone(),
                        next.clone(),
                        cycle,
                        end,
                    ))
                })
                .collect();
            for task in tasks {
                let _ = task.await;
            }
        }
        Mode::Download | Mode::Upload => {
            let upload = a.mode == Mode::Upload;
            let one = async {
                if upload {
                    let mut s = connect::<Full<Bytes>>(&t, &a.host, &tally).await?;
                    let body = Full::new(Bytes::from(vec![0x5a; a.size]));
                    let start = Instant::now();
                    exchange(&t, &mut s, request(&t, &a.host, "PUT", body, false)).await?;
                    Ok::<_, BoxError>((a.size as u64, start.elapsed()))
                } else {
                    let mut s = connect::<Empty<Bytes>>(&t, &a.host, &tally).await?;
                    let start = Instant::now();
                    let (n, _) =
                        exchange(&t, &mut s, request(&t, &a.host, "GET", Empty::new(), false))
                            .await?;
                    Ok((n, start.elapsed()))
                }
            };
            match timed(a.timeout.max(120.0), one).await {
                Ok((n, took)) => {
                    let mut lat = Vec::with_capacity(1);
                    tally.success(n, took, &mut lat);
                    tally.add_latencies(lat);
                    return took.as_secs_f64();
                }
                Err(e) => tally.error(e),
            }
        }
    }
    t0.elapsed().as_secs_f64()
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    let tls = match tls_config(&args) {
        Ok(c) => TlsConnector::from(Arc::new(c)),
        Err(e) => {
            eprintln!("tls_load: CA files: {e}");
            std::process::exit(2);
        }
    };
    let dial = match (&args.proxy, &args.connect) {
        (Some(p), _) => p.clone(),
        (None, Some(c)) => c.clone(),
        (None, None) => format!("127.0.0.1:{}", args.port),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let t = Arc::new(Target { args, tls, dial });
    let tally = Arc::new(Tally::default());
    let elapsed = rt.block_on(run(t.clone(), tally.clone()));
    // connection tasks still draining must not keep the process up
    rt.shutdown_timeout(Duration::from_millis(200));

    let ok = tally.ok.load(Ordering::Relaxed);
    let bytes = tally.bytes.load(Ordering::Relaxed);
    let mut lat = std::mem::take(&mut *tally.latencies_us.lock().unwrap());
    lat.sort_unstable();
    let mib_s = if matches!(t.args.mode, Mode::Download | Mode::Upload) && ok > 0 {
        Some(bytes as f64 / 1048576.0 / elapsed)
    } else {
        None
    };
    let line = serde_json::json!({
        "mode": format!("{:?}", t.args.mode).to_lowercase(),
        "http": t.args.http,
        "ok": ok,
        "errors": tally.errors.load(Ordering::Relaxed),
        "elapsed_s": elapsed,
        "rate": if elapsed > 0.0 { ok as f64 / elapsed } else { 0.0 },
        "p50_ms": percentile(&lat, 0.50),
        "p99_ms": percentile(&lat, 0.99),
        "p999_ms": percentile(&lat, 0.999),
        "mib_s": mib_s,
        "bytes": bytes,
        "reconnects": tally.reconnects.load(Ordering::Relaxed),
        "alpn": *tally.alpn.lock().unwrap(),
        "first_error": *tally.first_error.lock().unwrap(),
    });
    println!("{line}");
    Ok(())
}
