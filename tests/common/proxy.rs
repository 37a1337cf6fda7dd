//! Test harness for the running proxy: starts the real binary on ephemeral loopback
//! ports with a throw-away data folder, waits for its "listening" line (a condition, not
//! a sleep), and runs local upstream servers.
#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

pub type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A running proxy.
pub struct Proxy {
    pub child: Child,
    pub proxy: SocketAddr,
    pub portal: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
    /// Standard output so far: the start banner, whole once the proxy is started (its
    /// `listening` line is the banner's last).
    pub stdout: std::sync::Arc<std::sync::Mutex<String>>,
}

/// The names the tests use, all pinned to the loopback upstreams.
pub const TEST_HOSTS: &[&str] = &[
    "allowed.test",
    "casino-royal.example",
    "hate.example",
    "chat.example",
    "mabanque.example",
];

thread_local! {
    /// The file size limit of the next proxy this thread launches.
    static FSIZE: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// `--host NAME=127.0.0.1` for every test name.
pub fn pins() -> Vec<String> {
    TEST_HOSTS
        .iter()
        .map(|h| format!("--host={h}=127.0.0.1"))
        .collect()
}

impl Proxy {
    /// [`Proxy::start`] with the test names pinned to loopback.
    pub fn start_pinned(extra: &[&str]) -> Proxy {
        let mut args = pins();
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Proxy::start(&refs)
    }

    /// Copies the test policy and categories into a temp folder and starts the proxy
    /// with `extra` arguments.
    pub fn start(extra: &[&str]) -> Proxy {
        Self::start_in(fixture_dir(), extra)
    }

    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Proxy {
        Self::launch(dir, extra, false, &[])
    }

    /// [`Proxy::start_pinned`] with standard output a pipe whose reader has already gone:
    /// the proxy cannot write its start banner and says its addresses in its log
    /// instead, where they are read from.
    pub fn start_pinned_stdout_closed(extra: &[&str]) -> Proxy {
        let mut args = pins();
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::launch(fixture_dir(), &refs, true, &[])
    }

    /// [`Proxy::start_pinned`] with `env` added to the proxy's environment.
    pub fn start_pinned_env(extra: &[&str], env: &[(&'static str, std::ffi::OsString)]) -> Proxy {
        let mut args = pins();
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::launch(fixture_dir(), &refs, false, env)
    }

    /// The proxy in `dir` (which holds `policy.yaml` and what it names), with the test
    /// names pinned, `server_yaml` as its server file and `env` added to its environment
    /// (Kerberos: `KRB5_CONFIG`, `KRB5_KTNAME`…).
    pub fn start_in_with(
        dir: tempfile::TempDir,
        server_yaml: &str,
        env: &[(&'static str, std::ffi::OsString)],
        extra: &[&str],
    ) -> Proxy {
        std::fs::write(dir.path().join("server.yaml"), server_yaml).unwrap();
        let mut args = pins();
        args.extend(["--config".to_string(), "server.yaml".to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::launch(dir, &refs, false, env)
    }

    /// [`Proxy::start_in_with`] for a process that may write files of at most
    /// `max_file_bytes` (RLIMIT_FSIZE): a disk that fills up, without a tmpfs.
    pub fn start_in_limited(
        dir: tempfile::TempDir,
        server_yaml: &str,
        extra: &[&str],
        max_file_bytes: u64,
    ) -> Proxy {
        FSIZE.with(|f| f.set(Some(max_file_bytes)));
        let p = Self::start_in_with(dir, server_yaml, &[], extra);
        FSIZE.with(|f| f.set(None));
        p
    }

    fn launch(
        dir: tempfile::TempDir,
        extra: &[&str],
        stdout_closed: bool,
        env: &[(&'static str, std::ffi::OsString)],
    ) -> Proxy {
        let data = dir.path().join("data");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_charte-proxy"));
        cmd.current_dir(dir.path())
            .env("CHARTE_LOG", "info")
            .env_remove("CHARTE_POLICY")
            .env_remove("CHARTE_CONFIG")
            .env_remove("CHARTE_PUBLIC_PROXY")
            .env_remove("CHARTE_PORTAL_URL")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["serve", "--policy", "policy.yaml"])
            // Loopback listeners on free ports, unless `extra` names others.
            .args(
                [
                    ("--listen", "127.0.0.1:0"),
                    ("--portal-listen", "127.0.0.1:0"),
                    ("--admin-listen", "127.0.0.1:0"),
                ]
                .into_iter()
                .filter(|(flag, _)| !extra.contains(flag))
                .flat_map(|(flag, addr)| [flag, addr]),
            )
            .arg("--data-dir")
            .arg(&data)
            .args(["--shutdown-grace", "5"])
            // Two workers, whatever the machine: connections spread over both, each with
            // its own pool of site connections, as on a production server.
            .args(if extra.contains(&"--workers") {
                &[][..]
            } else {
                &["--workers", "2"][..]
            })
            .args(if extra.contains(&"--reverse-dns") {
                &[][..]
            } else {
                &["--no-reverse-dns"][..]
            })
            .args(extra)
            .stdout(if stdout_closed {
                Stdio::from(super::closed_pipe())
            } else {
                Stdio::piped()
            })
            .stderr(Stdio::piped());
        if let Some(limit) = FSIZE.with(|f| f.get()) {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child
            // between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let l = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &l) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("the proxy starts");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let log2 = log.clone();
        // The addresses: from the last line of the banner, or from the log line that
        // says the banner could not be written (with the same `proxy=… portal=… admin=…`).
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                log2.lock().unwrap().push_str(&line);
                if stdout_closed && line.contains("cannot write the start banner") {
                    let _ = tx2.send(line.clone());
                }
                line.clear();
            }
        });
        let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let out2 = out.clone();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    {
                        let mut o = out2.lock().unwrap();
                        o.push_str(&line);
                        o.push('\n');
                    }
                    if let Some(rest) = line.strip_prefix("listening ") {
                        let _ = tx.send(rest.to_string());
                    }
                }
            });
        } else {
            // Only the log's reader sends: if the proxy dies, the wait ends at once.
            drop(tx);
        }
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("the proxy did not start:\n{}", log.lock().unwrap());
            }
        };
        let get = |k: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .unwrap()
                .parse()
                .unwrap()
        };
        Proxy {
            proxy: get("proxy"),
            portal: get("portal"),
            admin: get("admin"),
            child,
            dir,
            stderr: log,
            stdout: out,
        }
    }

    /// [`Proxy::start_pinned`] with `server_yaml` written as the server configuration
    /// (`--config server.yaml`) beside the test policy and categories.
    pub fn start_with_config(server_yaml: &str, extra: &[&str]) -> Proxy {
        let dir = fixture_dir();
        std::fs::write(dir.path().join("server.yaml"), server_yaml).unwrap();
        let mut args = pins();
        args.extend(["--config".to_string(), "server.yaml".to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Proxy::start_in(dir, &refs)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.proxy)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn trace_path(&self) -> PathBuf {
        self.dir.path().join("data/trace.log")
    }

    /// Trace lines (JSON), waiting until at least `n` are there.
    pub fn trace(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(self.trace_path()).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("bad trace line {l}: {e}"))
                })
                .collect();
            if lines.len() >= n || Instant::now() > deadline {
                assert!(
                    lines.len() >= n,
                    "expected {n} trace lines, got {}: {text}",
                    lines.len()
                );
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last trace record for which `pred` holds, waiting for it.
    pub fn trace_find(&self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(self.trace_path()).unwrap_or_default();
            if let Some(v) = text
                .lines()
                .rev()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(&pred)
            {
                return v;
            }
            assert!(Instant::now() < deadline, "no such trace record: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The trace record whose host and method match, waiting for it.
    pub fn trace_for(&self, host: &str, method: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(self.trace_path()).unwrap_or_default();
            if let Some(v) = text
                .lines()
                .rev()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["host"] == host && v["method"] == method)
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no trace for {method} {host}: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET on the admin listener.
    pub fn admin_get(&self, path: &str) -> String {
        http_get(self.admin, path).1
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits until `/health` reports `generation` (a reload took effect).
    pub fn wait_generation(&self, generation: u64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let h: serde_json::Value = serde_json::from_str(&self.admin_get("/health")).unwrap();
            if h["generation"].as_u64() >= Some(generation) {
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "generation {generation} never came: {h}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident memory of the proxy, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "the proxy did not exit:\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temp folder holding a copy of the test policy (`policy.yaml`) and its categories.
pub fn fixture_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    copy_dir(&root.join("categories"), &dir.path().join("categories"));
    std::fs::copy(
        root.join("proxy-policy.yaml"),
        dir.path().join("policy.yaml"),
    )
    .unwrap();
    dir
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// A raw HTTP/1.1 GET (origin-form) to a listener; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf[9..12].parse().unwrap();
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Runs `curl` with arguments; returns (exit code, stdout, stderr).
pub fn curl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--noproxy", ""])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("NO_PROXY")
        .output()
        .expect("curl is installed (tests/run.sh installs it)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A local upstream web server, on its own thread and runtime. Routes:
/// `/small` → "hello"; `/version` → the HTTP version it was asked in; `/big?n=N` → N bytes streamed; `POST /upload` → the byte count
/// read; `/headers` (and `/search`) → the request headers it received, one a line, and the
/// request URI; `/ws` → 101 then
/// echoes bytes; `/slow?ms=N` → waits N ms then "slow done"; `/stall?n=N` → promises N
/// bytes, sends 10, then stalls.
pub struct Upstream {
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let (addr, stop) = serve_on_loopback(|s| async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), hyper::service::service_fn(route))
                .with_upgrades()
                .await;
        });
        Upstream { addr, _stop: stop }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// Accepts connections on an ephemeral loopback port, on a thread with its own runtime,
/// handing each to `serve`; stops when the returned sender is dropped.
pub fn serve_on_loopback<F, Fut>(serve: F) -> (SocketAddr, tokio::sync::oneshot::Sender<()>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            let accept = async {
                loop {
                    let (s, _) = l.accept().await.unwrap();
                    tokio::spawn(serve(s));
                }
            };
            tokio::select! { _ = accept => {}, _ = stop_rx => {} }
        });
    });
    (rx.recv().unwrap(), stop_tx)
}

fn full(s: impl Into<Bytes>) -> TestBody {
    Full::new(s.into()).boxed()
}

/// The head of a Windows program (`MZ`, then a PE marker), served as `/setup.pdf`.
pub const PE_AS_PDF: &[u8] = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00PE program";

/// `/slow` requests the test upstreams of this test executable have begun to answer.
static SLOW_STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many `/slow` requests reached a test upstream (of any test in this executable):
/// a condition to wait on rather than a sleep.
pub fn slow_started() -> usize {
    SLOW_STARTED.load(std::sync::atomic::Ordering::SeqCst)
}

pub async fn route(mut req: Request<Incoming>) -> Result<Response<TestBody>, Infallible> {
    let q = req.uri().query().unwrap_or("").to_string();
    let num = |k: &str| -> u64 {
        q.split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let res = match req.uri().path() {
        "/small" => Response::new(full("hello")),
        "/html" => {
            let mut r = Response::new(full("<!doctype html><title>t</title><p>bonjour</p>"));
            r.headers_mut()
                .insert("content-type", "text/html; charset=utf-8".parse().unwrap());
            r
        }
        "/version" => Response::new(full(format!("{:?}", req.version()))),
        // A Windows program served as a PDF (the download checks must see through it).
        "/setup.pdf" => {
            let mut r = Response::new(full(PE_AS_PDF));
            r.headers_mut()
                .insert("content-type", "application/pdf".parse().unwrap());
            r
        }
        // `/search`: the same, for search engines whose query the proxy rewrites.
        "/headers" | "/search" => {
            let mut s = String::new();
            for (k, v) in req.headers() {
                s.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
            }
            s.push_str(&format!("request-uri: {}\n", req.uri()));
            Response::new(full(s))
        }
        "/big" => {
            let n = num("n");
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures_util::stream::unfold(n, move |left| {
                let chunk = chunk.clone();
                async move {
                    if left == 0 {
                        return None;
                    }
                    let take = left.min(chunk.len() as u64);
                    Some((
                        Ok::<_, Infallible>(Frame::data(chunk.slice(..take as usize))),
                        left - take,
                    ))
                }
            });
            let mut r = Response::new(StreamBody::new(stream).boxed());
            r.headers_mut()
                .insert("content-length", n.to_string().parse().unwrap());
            r
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut n = 0u64;
            while let Some(f) = body.frame().await {
                if let Ok(d) = f.unwrap().into_data() {
                    n += d.len() as u64;
                }
            }
            Response::new(full(n.to_string()))
        }
        "/stall" => {
            // Promises `n` bytes, sends 10, then stalls for a minute.
            let n = num("n").max(11);
            let stream = futures_util::stream::unfold(0u8, |step| async move {
                match step {
                    0 => Some((
                        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"0123456789"))),
                        1,
                    )),
                    _ => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        None
                    }
                }
            });
            let mut r = Response::new(StreamBody::new(stream).boxed());
            r.headers_mut()
                .insert("content-length", n.to_string().parse().unwrap());
            r
        }
        "/slow" => {
            SLOW_STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(num("ms"))).await;
            Response::new(full("slow done"))
        }
        "/ws" => {
            let up = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(u) = up.await {
                    let mut io = TokioIo::new(u);
                    let (mut r, mut w) = tokio::io::split(&mut io);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
            let mut r = Response::new(full(""));
            *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut()
                .insert("upgrade", "websocket".parse().unwrap());
            r.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            r
        }
        _ => {
            let mut r = Response::new(full("not found"));
            *r.status_mut() = hyper::StatusCode::NOT_FOUND;
            r
        }
    };
    Ok(res)
}

/// A listener that must never be connected to; `connected()` says whether it was. The
/// kernel completes a connection to a listening socket without waiting for `accept`, so
/// a connection made before a point in the test is there to be seen at that point.
pub struct Trap(std::net::TcpListener);

impl Default for Trap {
    fn default() -> Trap {
        Trap::new()
    }
}

impl Trap {
    pub fn new() -> Trap {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Trap(l)
    }

    pub fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }

    pub fn connected(&self) -> bool {
        match self.0.accept() {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(e) => panic!("{e}"),
        }
    }
}

/// A TCP server that answers every connection with `banner` then echoes.
pub fn tcp_echo(banner: &'static str) -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            std::thread::spawn(move || {
                let _ = s.write_all(banner.as_bytes());
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Sends one keep-alive GET for `target` on `s` and reads one response with a
/// `Content-Length` body; returns (status, body).
pub fn exchange(s: &mut BufReader<TcpStream>, target: &str, host: &str) -> (u16, String) {
    write!(s.get_mut(), "GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let mut status_line = String::new();
    s.read_line(&mut status_line).unwrap();
    assert!(!status_line.is_empty(), "the connection was closed");
    let status: u16 = status_line[9..12].parse().unwrap();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        s.read_line(&mut h).unwrap();
        if h == "\r\n" {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Reads one request from a site's side of a connection: its head, then a body of its
/// `Content-Length`. `false` once the connection is closed or broken.
pub fn read_request(r: &mut impl BufRead) -> bool {
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    r.read_exact(&mut vec![0u8; length]).is_ok()
}

/// The status code of an HTTP/1.1 answer's text (`HTTP/1.1 403 Forbidden…`); 0 when it
/// has none (the connection was closed first).
pub fn status_of(text: &str) -> u16 {
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Sends `head` on a new connection to `proxy` and reads one response: its head and a
/// `Content-Length` body (the connection may stay open, as after a refused CONNECT), or
/// everything until the close when there is no length.
pub fn one_response(proxy: SocketAddr, head: &str) -> String {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => got.push(b[0]),
            _ => return String::from_utf8_lossy(&got).into_owned(),
        }
    }
    let text = String::from_utf8_lossy(&got).to_lowercase();
    match text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        Some(n) => {
            let mut body = vec![0u8; n];
            let _ = s.read_exact(&mut body);
            got.extend_from_slice(&body);
        }
        None => {
            let _ = s.read_to_end(&mut got);
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}
