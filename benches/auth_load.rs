//! Load with directory identity (issue 22), beside its reference in the same run:
//!
//! 1. **kept-alive authenticated connections, warm group cache**: each client connection
//!    proves itself once with a Kerberos (SPNEGO) token, then sends its requests with no
//!    header (the connection is authenticated, its user's directory groups cached),
//!    against the same requests through a proxy with no authentication. Target: within
//!    5 % of the rate.
//! 2. **new Negotiate connections a second**: a new connection, a new token (the client's
//!    GSSAPI initiator, in this process), one request, closed; beside new connections to
//!    the unauthenticated proxy, and the tokens alone (what the client side costs).
//!
//! Everything is real and on loopback: a throw-away MIT KDC and OpenLDAP (the test suite's
//! `tests/common/{kdc,slapd}.rs`), a hyper origin answering 1 KiB, two `charte-proxy`
//! processes (`CHARTE_BIN`, default `target/release/charte-proxy`, built with
//! `--features kerberos`). Rounds alternate which proxy goes first.
//!
//! ```sh
//! cargo build --release --features kerberos
//! cargo bench --features kerberos --bench auth_load      # ROUNDS=3 SECONDS=5 CONNS=50
//! ```
//!
//! Shared 2-core VM: the client, both proxies, the origin, the KDC and slapd share the
//! cores; quote the ratios of one run, not absolute figures.

#[path = "../tests/common/kdc.rs"]
mod kdc;
#[path = "../tests/common/slapd.rs"]
mod slapd;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_SPNEGO, GSS_NT_KRB5_PRINCIPAL};
use tokio::net::{TcpListener, TcpStream};

const POLICY: &str = r#"version: 1
categories: []
groups:
  agents:
    networks: [127.0.0.0/8]
  communication:
    directory: ["cn=GG-Internet-Communication,ou=Groupes,dc=mairie,dc=test"]
internal_sites: [127.0.0.0/8]
rules:
  - id: jeux-communication
    groups: [communication]
    domains: [casino.bench.test]
    action: allow
default: allow
"#;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rounds = env_or("ROUNDS", 3);
    let seconds = env_or("SECONDS", 5);
    let conns = env_or("CONNS", 50) as usize;
    let bin = std::env::var_os("CHARTE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/charte-proxy")
        });
    assert!(
        bin.is_file(),
        "no proxy binary at {} (cargo build --release --features kerberos)",
        bin.display()
    );

    let kdc = kdc::Kdc::start();
    kdc.add_user("alice", "alice-pw");
    let dir = tempfile::tempdir().unwrap();
    let keytab = dir.path().join("proxy.keytab");
    kdc.add_service("HTTP/proxy.mairie.test", &keytab);
    let ccache = kdc.kinit("alice", "alice-pw");
    for (k, v) in kdc.env(&ccache) {
        // SAFETY: no other thread runs yet; GSSAPI's initiator reads these.
        unsafe { std::env::set_var(k, v) };
    }
    let ldap = slapd::Slapd::start();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let pw = dir.path().join("ldap-password");
    std::fs::write(&pw, &ldap.service_password).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let directory = format!(
        "directory:\n  url: {}\n  starttls: true\n  ca_file: {}\n  base_dn: dc=mairie,dc=test\n  bind_dn: {}\n  bind_password_file: ldap-password\n  user_filter: (uid={{user}})\n  nesting: walk\n",
        ldap.url,
        ldap.ca_pem.display(),
        ldap.service_dn
    );
    let with_auth = format!(
        "auth:\n  required: [127.0.0.0/8]\n  negotiate: true\n  keytab: proxy.keytab\n{directory}"
    );
    let server_env = kdc.server_env(&keytab);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let origin = rt.block_on(origin());
    let a = ProxyProc::start(&bin, dir.path(), "auth", &with_auth, &server_env);
    let b = ProxyProc::start(&bin, dir.path(), "none", "", &server_env);
    let url = format!("http://casino.bench.test:{}/1k", origin.port());
    eprintln!(
        "[auth_load] KDC :{} slapd :{} origin {origin} proxies auth {} none {}; {rounds} rounds of {seconds} s, {conns} connections",
        kdc.port, ldap.port, a.addr, b.addr
    );

    let mut kept = (Vec::new(), Vec::new());
    let mut fresh = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order: [(&ProxyProc, bool); 2] = if round % 2 == 0 {
            [(&a, true), (&b, false)]
        } else {
            [(&b, false), (&a, true)]
        };
        for (p, auth) in order {
            let r = rt.block_on(kept_alive(p.addr, &url, auth, conns, seconds));
            eprintln!(
                "[auth_load] round {} kept-alive {}: {r:.0} req/s",
                round + 1,
                p.name
            );
            if auth { kept.0.push(r) } else { kept.1.push(r) }
        }
        for (p, auth) in order {
            let r = rt.block_on(new_connections(p.addr, &url, auth, seconds));
            eprintln!(
                "[auth_load] round {} new connections {}: {r:.0} /s",
                round + 1,
                p.name
            );
            if auth {
                fresh.0.push(r)
            } else {
                fresh.1.push(r)
            }
        }
    }
    let tokens = tokens_per_second(seconds);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratios = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| format!("{:.3}", x / y))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "| what | authenticated (Negotiate + directory groups) | no authentication | ratio per round |"
    );
    println!("|---|---|---|---|");
    println!(
        "| kept-alive 1 KiB req/s, {conns} connections | {:.0} | {:.0} | {} |",
        median(&mut kept.0.clone()),
        median(&mut kept.1.clone()),
        ratios(&kept.0, &kept.1)
    );
    println!(
        "| new connections a second (one request each) | {:.0} | {:.0} | {} |",
        median(&mut fresh.0.clone()),
        median(&mut fresh.1.clone()),
        ratios(&fresh.0, &fresh.1)
    );
    println!("| SPNEGO tokens a second, client side alone | {tokens:.0} | | |");
    drop((a, b));
}

/// A hyper origin on loopback answering 1 KiB to everything.
async fn origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let body = Bytes::from(vec![b'x'; 1024]);
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// A SPNEGO token for the proxy's service, as a browser makes one.
fn token() -> String {
    let target = Name::new(
        b"HTTP/proxy.mairie.test@MAIRIE.TEST",
        Some(GSS_NT_KRB5_PRINCIPAL),
    )
    .unwrap();
    let mut ctx = ClientCtx::new(
        None,
        target,
        CtxFlags::GSS_C_MUTUAL_FLAG,
        Some(GSS_MECH_SPNEGO),
    );
    let tok = ctx.step(None, None).unwrap().expect("a first token");
    format!(
        "Negotiate {}",
        base64::engine::general_purpose::STANDARD.encode(&*tok)
    )
}

fn tokens_per_second(seconds: u64) -> f64 {
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut n = 0u64;
    let start = Instant::now();
    while Instant::now() < end {
        let _ = token();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(proxy: SocketAddr) -> Sender {
    let s = TcpStream::connect(proxy).await.unwrap();
    s.set_nodelay(true).unwrap();
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    tx
}

/// One GET of `url` on `tx`, with `authorization` if any; the status.
async fn get(tx: &mut Sender, url: &str, authorization: Option<&str>) -> u16 {
    let mut req = Request::get(url).header("host", "casino.bench.test");
    if let Some(a) = authorization {
        req = req.header("proxy-authorization", a);
    }
    tx.ready().await.unwrap();
    let res = tx
        .send_request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let _ = res.into_body().collect().await;
    status
}

/// Requests a second over `conns` kept-alive connections, each authenticated once.
async fn kept_alive(proxy: SocketAddr, url: &str, auth: bool, conns: usize, seconds: u64) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for _ in 0..conns {
        let mut tx = connect(proxy).await;
        let t = auth.then(token);
        assert_eq!(get(&mut tx, url, t.as_deref()).await, 200, "first request");
        senders.push(tx);
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for mut tx in senders {
        let (count, url) = (count.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                assert_eq!(get(&mut tx, &url, None).await, 200);
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// New connections a second, one request each (a fresh token each when `auth`), from
/// eight clients at a time.
async fn new_connections(proxy: SocketAddr, url: &str, auth: bool, seconds: u64) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (count, url) = (count.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let t = if auth {
                    Some(tokio::task::spawn_blocking(token).await.unwrap())
                } else {
                    None
                };
                let mut tx = connect(proxy).await;
                assert_eq!(get(&mut tx, &url, t.as_deref()).await, 200);
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// A charte-proxy process with `server_yaml`, its data in `root/name`.
struct ProxyProc {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl ProxyProc {
    fn start(
        bin: &Path,
        root: &Path,
        name: &'static str,
        server_yaml: &str,
        env: &[(&'static str, std::ffi::OsString)],
    ) -> ProxyProc {
        let server = root.join(format!("server-{name}.yaml"));
        std::fs::write(&server, server_yaml).unwrap();
        let mut child = Command::new(bin)
            .current_dir(root)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("CHARTE_LOG", "warn")
            .args(["serve", "--policy", "policy.yaml", "--config"])
            .arg(&server)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--portal-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(root.join(format!("data-{name}")))
            .args(["--no-reverse-dns", "--host", "casino.bench.test=127.0.0.1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let addr = loop {
            line.clear();
            assert!(
                std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
                "the proxy {name} stopped"
            );
            if let Some(a) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("proxy="))
            {
                break a.parse().unwrap();
            }
        };
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        ProxyProc { name, child, addr }
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
