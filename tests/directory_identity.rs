//! Directory identity through the real proxy (issue 22): a real OpenLDAP (`slapd`) and,
//! in a build with the `kerberos` feature, a real MIT KDC, both throw-away instances on
//! free loopback ports (tests/common/{slapd,kdc}.rs); clients are curl and raw sockets.
//!
//! The policy: `communication` is the directory group GG-Internet-Communication (alice
//! directly, bob through the nested GG-Com-Nested); gambling is allowed for it and
//! blocked for everyone else, so a group decision shows in the answer (200 or 403) and
//! a directory that fails must never turn a 403 into a 200.

mod common;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::proxy::{Proxy, Upstream, fixture_dir};
use common::slapd::Slapd;

const POLICY: &str = r#"version: 1
categories: [categories]
groups:
  agents:
    networks: [127.0.0.0/8]
  communication:
    directory: ["CN=GG-Internet-Communication, OU=Groupes, DC=mairie, DC=test"]
internal_sites: [127.0.0.0/8, "::1"]
rules:
  - id: jeux-communication
    groups: [communication]
    categories: [gambling]
    action: allow
  - id: jeux
    categories: [gambling]
    action: block
    reason: {fr: "Jeux d'argent (charte §6.1)", en: "Gambling (charter §6.1)"}
default: allow
"#;

/// The test folder (categories, the policy above) and the service account's password
/// file (mode 0600) in it.
fn folder(slapd: &Slapd) -> tempfile::TempDir {
    let dir = fixture_dir();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let pw = dir.path().join("ldap-password");
    std::fs::write(&pw, format!("{}\n", slapd.service_password)).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    dir
}

/// The server file's `directory:` section for `slapd` (StartTLS on ldap://, the group
/// walk OpenLDAP needs), and `extra` lines.
fn server_yaml(slapd: &Slapd, auth: &str) -> String {
    format!(
        "{auth}
directory:
  url: {url}
  starttls: true
  ca_file: {ca}
  base_dn: dc=mairie,dc=test
  bind_dn: {svc}
  bind_password_file: ldap-password
  user_filter: (uid={{user}})
  nesting: walk
  first_wait_milliseconds: 1500
  timeout_seconds: 2
",
        url = slapd.url,
        ca = slapd.ca_pem.display(),
        svc = slapd.service_dn,
    )
}

/// curl with `env` added; (exit code, stdout, stderr).
fn curl_env(env: &[(&'static str, OsString)], args: &[&str]) -> (i32, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--noproxy", ""])
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .expect("curl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The status of curl's last answer (`-w %{http_code}` at the end of stdout).
fn status(out: &str) -> u16 {
    out.rsplit('\n')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The trace's records so far.
fn records(p: &Proxy) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p.trace_path())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits for a record matching `pred` (the trace is written off the request path).
fn wait_record(
    p: &Proxy,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(r) = records(p).into_iter().rev().find(|r| pred(r)) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no record {what}: {:?}",
            records(p)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Basic through curl: the status of GET `url` as `user:password`.
fn basic_get(p: &Proxy, user_pw: &str, url: &str) -> u16 {
    let (_, out, err) = curl_env(
        &[],
        &[
            "-x",
            &p.url(),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--proxy-user",
            user_pw,
            url,
        ],
    );
    let s = status(&out);
    assert_ne!(s, 0, "curl failed: {err}");
    s
}

#[test]
fn basic_checked_by_the_directory_gives_its_nested_groups() {
    let slapd = Slapd::start();
    let up = Upstream::start();
    let p = Proxy::start_in_with(
        folder(&slapd),
        &server_yaml(&slapd, "auth:\n  required: [127.0.0.0/8]"),
        &[],
        &[],
    );
    let casino = format!("http://casino-royal.example:{}/small", up.port());
    let allowed = format!("http://allowed.test:{}/small", up.port());
    // bob is in GG-Com-Nested, itself in GG-Internet-Communication: the outer group's rule.
    assert_eq!(basic_get(&p, "bob:bob-pw", &casino), 200);
    let r = wait_record(&p, "bob's", |r| r["user"] == "bob");
    assert_eq!(
        r["groups"],
        serde_json::json!(["agents", "communication"]),
        "{r}"
    );
    // alice directly; carol in no group: the rule for everyone.
    assert_eq!(basic_get(&p, "alice:alice-pw", &casino), 200);
    assert_eq!(basic_get(&p, "carol:carol-pw", &casino), 403);
    assert_eq!(basic_get(&p, "carol:carol-pw", &allowed), 200);
    // A wrong password, an unknown user, an empty password (an anonymous bind in LDAP):
    // 407, each traced with its reason and the site that was asked for.
    for creds in ["bob:wrong", "mallory:x", "bob:"] {
        assert_eq!(basic_get(&p, creds, &allowed), 407, "{creds}");
    }
    let r = wait_record(&p, "407", |r| r["decision"] == "auth-required");
    assert_eq!(r["error"], "basic-invalid", "{r}");
    assert_eq!(r["host"], "allowed.test", "{r}");
    let m = p.admin_get("/metrics");
    assert!(
        m.contains("charte_auth_challenges_total{reason=\"basic-invalid\"} 3"),
        "{m}"
    );
    assert!(m.contains("charte_directory_up 1"), "{m}");
}

#[test]
fn a_directory_that_goes_down_never_opens_more_and_comes_back_without_a_restart() {
    let mut slapd = Slapd::start();
    let up = Upstream::start();
    let dir = folder(&slapd);
    // alice also has a local password: she can log in while the directory is down.
    let users = dir.path().join("users");
    common::add_user(&users, "alice", "local-pw");
    let users = users.to_str().unwrap().to_string();
    let p = Proxy::start_in_with(
        dir,
        &server_yaml(&slapd, "auth:\n  required: [127.0.0.0/8]"),
        &[],
        &["--users-file", &users],
    );
    let casino = format!("http://casino-royal.example:{}/small", up.port());
    assert_eq!(basic_get(&p, "bob:bob-pw", &casino), 200);

    slapd.stop();
    // bob's password check and groups are cached: nothing changes for him.
    assert_eq!(basic_get(&p, "bob:bob-pw", &casino), 200);
    // alice was never looked up: the policy's network groups only, so the block holds,
    // and the record says why.
    let started = Instant::now();
    assert_eq!(basic_get(&p, "alice:local-pw", &casino), 403);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a request waited {:?} on a directory that is down",
        started.elapsed()
    );
    let r = wait_record(&p, "alice's", |r| r["user"] == "alice");
    assert_eq!(r["error"], "directory-unavailable", "{r}");
    assert_eq!(r["groups"], serde_json::json!(["agents"]), "{r}");
    // An unknown password of the directory cannot be checked: refused, not let through.
    assert_eq!(basic_get(&p, "carol:carol-pw", &casino), 407);
    let health: serde_json::Value = serde_json::from_str(&p.admin_get("/health")).unwrap();
    assert_eq!(health["directory"]["up"], false, "{health}");
    assert!(health["directory"]["last_error"].is_string(), "{health}");

    slapd.restart();
    // Back without a restart of the proxy: alice gets her directory group again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while basic_get(&p, "alice:local-pw", &casino) != 200 {
        assert!(Instant::now() < deadline, "alice never got her group back");
        std::thread::sleep(Duration::from_millis(100));
    }
    let health: serde_json::Value = serde_json::from_str(&p.admin_get("/health")).unwrap();
    assert_eq!(health["directory"]["up"], true, "{health}");
}

#[test]
fn check_reports_a_malformed_directory_group_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    common::proxy::copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/categories"),
        &dir.path().join("categories"),
    );
    let policy = POLICY.replace(
        "directory: [\"CN=GG-Internet-Communication, OU=Groupes, DC=mairie, DC=test\"]",
        "directory: [\"CN=GG-Internet-Communication,,DC=test\", \"GG(*)\"]",
    );
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, policy).unwrap();
    let r = common::run(&["check", "--policy", path.to_str().unwrap()]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("policy.yaml:7:") && all.contains("bad-group-dn"),
        "{all}"
    );
    assert!(all.contains("bad-group-name"), "{all}");
}

#[test]
fn short_group_names_are_resolved_by_the_directory_at_load() {
    let slapd = Slapd::start();
    let up = Upstream::start();
    let dir = folder(&slapd);
    // The group by its cn, in another case than the directory's.
    let policy = POLICY.replace(
        "directory: [\"CN=GG-Internet-Communication, OU=Groupes, DC=mairie, DC=test\"]",
        "directory: [gg-internet-communication]",
    );
    std::fs::write(dir.path().join("policy.yaml"), &policy).unwrap();
    let server = server_yaml(&slapd, "auth:\n  required: [127.0.0.0/8]");
    std::fs::write(dir.path().join("server.yaml"), &server).unwrap();
    let policy_path = dir.path().join("policy.yaml");
    let server_path = dir.path().join("server.yaml");

    // check with the server file asks the directory: the name is known.
    let check = |policy: &Path| {
        common::run(&[
            "check",
            "-q",
            "--policy",
            policy.to_str().unwrap(),
            "--config",
            server_path.to_str().unwrap(),
        ])
    };
    let r = check(&policy_path);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // explain gives the group through the name.
    let r = common::run(&[
        "explain",
        "--json",
        "--policy",
        policy_path.to_str().unwrap(),
        "--config",
        server_path.to_str().unwrap(),
        "--ip",
        "192.0.2.1",
        "--user",
        "bob",
        "http://casino-royal.example/",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let e: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(e["groups"], serde_json::json!(["communication"]), "{e}");

    // A name no group has: check says so at its line, with what to do.
    let unknown = dir.path().join("unknown.yaml");
    std::fs::write(
        &unknown,
        policy.replace("gg-internet-communication", "GG-Internet-Comm"),
    )
    .unwrap();
    let r = check(&unknown);
    assert_ne!(r.code, 0, "{}", r.stdout);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("unknown.yaml:7:")
            && all.contains("unknown-directory-group")
            && all.contains("GG-Internet-Comm".to_lowercase().as_str()),
        "{all}"
    );

    // Through the proxy: bob, in the group through GG-Com-Nested, from the first
    // request after the start; carol is not in it.
    let p = Proxy::start_in_with(dir, &server, &[], &[]);
    let casino = format!("http://casino-royal.example:{}/small", up.port());
    assert_eq!(basic_get(&p, "bob:bob-pw", &casino), 200);
    let r = wait_record(&p, "bob's", |r| r["user"] == "bob");
    assert_eq!(
        r["groups"],
        serde_json::json!(["agents", "communication"]),
        "{r}"
    );
    assert!(r.get("error").is_none_or(|e| e.is_null()), "{r}");
    assert_eq!(basic_get(&p, "carol:carol-pw", &casino), 403);
    let health: serde_json::Value = serde_json::from_str(&p.admin_get("/health")).unwrap();
    assert_eq!(
        health["directory"]["unresolved_names"],
        serde_json::json!([]),
        "{health}"
    );
}

#[cfg_attr(not(feature = "kerberos"), allow(dead_code))]
/// One request on a new raw connection with `proxy_authorization`; the answer's text.
fn raw_get(p: &Proxy, url: &str, proxy_authorization: &str) -> String {
    let mut s = TcpStream::connect(p.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let host = url.split('/').nth(2).unwrap();
    write!(
        s,
        "GET {url} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: {proxy_authorization}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[cfg(feature = "kerberos")]
mod kerberos {
    use std::net::TcpListener;
    use std::sync::mpsc;

    use super::common::kdc::{Kdc, curl_anyauth_args, curl_negotiate_args};
    use super::*;

    struct Setup {
        kdc: Kdc,
        _slapd: Slapd,
        up: Upstream,
        p: Proxy,
    }

    fn setup() -> Setup {
        setup_with(None)
    }

    /// [`setup`] with the acceptor's `clockskew` set to `skew` seconds (MIT's default is
    /// 300: an expired ticket is taken five more minutes).
    fn setup_with(skew: Option<u32>) -> Setup {
        let kdc = Kdc::start();
        for (u, pw) in common::slapd::USERS {
            kdc.add_user(u, pw);
        }
        let slapd = Slapd::start();
        let dir = folder(&slapd);
        let keytab = dir.path().join("proxy.keytab");
        // Two names in one keytab, as behind a load balancer; proxy3 is known to the KDC
        // but its key is not in the proxy's keytab.
        kdc.add_service("HTTP/proxy.mairie.test", &keytab);
        kdc.add_service("HTTP/proxy2.mairie.test", &keytab);
        kdc.add_service("HTTP/proxy3.mairie.test", &dir.path().join("other.keytab"));
        let env = match skew {
            Some(secs) => kdc.server_env_clockskew(&keytab, secs),
            None => kdc.server_env(&keytab),
        };
        let p = Proxy::start_in_with(
            dir,
            &server_yaml(
                &slapd,
                "auth:\n  required: [127.0.0.0/8]\n  negotiate: true\n  keytab: proxy.keytab",
            ),
            &env,
            &[],
        );
        Setup {
            kdc,
            _slapd: slapd,
            up: Upstream::start(),
            p,
        }
    }

    /// curl through the proxy named `name` with Negotiate as `user`: the status of
    /// each URL, in order (one connection, kept alive).
    fn negotiate(s: &Setup, name: &str, user: &str, urls: &[&str], anyauth: bool) -> Vec<u16> {
        let pw = common::slapd::USERS
            .iter()
            .find(|(u, _)| *u == user)
            .unwrap()
            .1;
        let cc = s.kdc.kinit(user, pw);
        let mut args = if anyauth {
            curl_anyauth_args(name, s.p.proxy.port())
        } else {
            curl_negotiate_args(name, s.p.proxy.port())
        };
        args.extend([
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_code}\\n".into(),
        ]);
        for (i, u) in urls.iter().enumerate() {
            if i > 0 {
                args.push("--next".into());
                args.extend(if anyauth {
                    curl_anyauth_args(name, s.p.proxy.port())
                } else {
                    curl_negotiate_args(name, s.p.proxy.port())
                });
                args.extend([
                    "-o".into(),
                    "/dev/null".into(),
                    "-w".into(),
                    "%{http_code}\\n".into(),
                ]);
            }
            args.push((*u).into());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, out, err) = curl_env(&s.kdc.env(&cc), &refs);
        let codes: Vec<u16> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
        assert_eq!(codes.len(), urls.len(), "{out} {err}");
        codes
    }

    #[test]
    fn kerberos_single_sign_on_gives_the_principal_and_its_directory_groups() {
        let s = setup();
        let casino = format!("http://casino-royal.example:{}/small", s.up.port());
        let allowed = format!("http://allowed.test:{}/small", s.up.port());
        // bob, through the nested group: the outer group's rule; two requests on one
        // connection (the second is not challenged again).
        assert_eq!(
            negotiate(&s, "proxy.mairie.test", "bob", &[&casino, &allowed], false),
            [200, 200]
        );
        let r = wait_record(&s.p, "bob's", |r| {
            r["user"] == "bob@MAIRIE.TEST" && r["host"] == "allowed.test"
        });
        assert_eq!(
            r["groups"],
            serde_json::json!(["agents", "communication"]),
            "{r}"
        );
        // The other name in the keytab works too; carol is in no group.
        assert_eq!(
            negotiate(&s, "proxy2.mairie.test", "carol", &[&casino], false),
            [403]
        );
        // As a browser does: no credentials, 407 Negotiate, then the token.
        assert_eq!(
            negotiate(&s, "proxy.mairie.test", "alice", &[&casino, &allowed], true),
            [200, 200]
        );
        // The trace is written in order, off the request path: once alice's last line
        // is there, every earlier one is.
        wait_record(&s.p, "alice's", |r| {
            r["user"] == "alice@MAIRIE.TEST" && r["host"] == "allowed.test"
        });
        let auth_lines = records(&s.p)
            .into_iter()
            .filter(|r| r["decision"] == "auth-required")
            .count();
        assert_eq!(
            auth_lines,
            1,
            "one 407 for the browser-like client: {:?}",
            records(&s.p)
        );
    }

    #[test]
    fn no_ticket_a_ticket_for_another_service_garbage_and_replays_get_407() {
        let s = setup();
        let allowed = format!("http://allowed.test:{}/small", s.up.port());
        // No credentials: 407 offering Negotiate, and Basic.
        let (_, out, _) = curl_env(&[], &["-x", &s.p.url(), "-i", &allowed]);
        assert!(out.starts_with("HTTP/1.1 407"), "{out}");
        let lower = out.to_ascii_lowercase();
        assert!(lower.contains("proxy-authenticate: negotiate\r\n"), "{out}");
        assert!(lower.contains("proxy-authenticate: basic realm="), "{out}");
        // A ticket for a service whose key the proxy does not have.
        assert_eq!(
            negotiate(&s, "proxy3.mairie.test", "alice", &[&allowed], false),
            [407]
        );
        wait_record(&s.p, "wrong-service", |r| r["error"] == "wrong-service");
        // Garbage: not base64, and base64 of nothing GSSAPI reads.
        for bad in ["Negotiate !!!", "Negotiate AAAAAAAA", "Negotiate"] {
            let out = raw_get(&s.p, &allowed, bad);
            assert!(out.starts_with("HTTP/1.1 407"), "{bad}: {out}");
        }
        wait_record(&s.p, "malformed", |r| r["error"] == "malformed");
        // A token taken by a listener standing in for the proxy, presented twice.
        let token = capture_token(&s, "proxy.mairie.test", "bob");
        let first = raw_get(&s.p, &allowed, &token);
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        let again = raw_get(&s.p, &allowed, &token);
        assert!(again.starts_with("HTTP/1.1 407"), "{again}");
        wait_record(&s.p, "replay", |r| r["error"] == "replay");
        let m = s.p.admin_get("/metrics");
        for label in [
            "negotiate-replay",
            "negotiate-wrong-service",
            "negotiate-malformed",
        ] {
            assert!(
                m.lines().any(|l| l.starts_with(&format!(
                    "charte_auth_challenges_total{{reason=\"{label}\"}}"
                )) && !l.ends_with(" 0")),
                "{label}: {m}"
            );
        }
        // Still serving.
        assert_eq!(
            negotiate(&s, "proxy.mairie.test", "alice", &[&allowed], false),
            [200]
        );
    }

    #[test]
    fn an_expired_ticket_gets_407_with_its_reason() {
        let s = setup_with(Some(1));
        let allowed = format!("http://allowed.test:{}/small", s.up.port());
        let issued = Instant::now();
        let token = capture_token_for(&s, "proxy.mairie.test", "bob", Some("2s"));
        // The condition is the clock itself: the ticket's end (2 s after kinit) and the
        // acceptor's one second of skew must be past.
        while issued.elapsed() < Duration::from_secs(4) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = raw_get(&s.p, &allowed, &token);
        assert!(out.starts_with("HTTP/1.1 407"), "{out}");
        let r = wait_record(&s.p, "expired", |r| r["decision"] == "auth-required");
        assert_eq!(r["error"], "expired", "{r}");
    }

    /// The `Proxy-Authorization` value curl sends for `user` to a proxy named `name`,
    /// taken by a listener that answers nothing useful.
    fn capture_token(s: &Setup, name: &str, user: &str) -> String {
        capture_token_for(s, name, user, None)
    }

    /// [`capture_token`] from a ticket of `lifetime` (`kinit -l`).
    fn capture_token_for(s: &Setup, name: &str, user: &str, lifetime: Option<&str>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0; 8192];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = c.read(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let _ = c.write_all(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            let head = String::from_utf8_lossy(&buf).into_owned();
            let value = head
                .lines()
                .find_map(|l| l.strip_prefix("Proxy-Authorization: "))
                .map(str::to_string);
            tx.send(value).unwrap();
        });
        let pw = common::slapd::USERS
            .iter()
            .find(|(u, _)| *u == user)
            .unwrap()
            .1;
        let cc = s.kdc.kinit_for(user, pw, lifetime);
        let args = curl_negotiate_args(name, port);
        let mut refs: Vec<&str> = args.iter().map(String::as_str).collect();
        refs.push("http://allowed.test/");
        let _ = curl_env(&s.kdc.env(&cc), &refs);
        rx.recv_timeout(Duration::from_secs(20))
            .unwrap()
            .expect("curl sent a Negotiate token")
    }
}

#[test]
fn explain_asks_the_directory_and_check_reads_the_directory_section() {
    let slapd = Slapd::start();
    let dir = folder(&slapd);
    let server = dir.path().join("server.yaml");
    std::fs::write(&server, server_yaml(&slapd, "")).unwrap();
    let policy = dir.path().join("policy.yaml");
    let explain = |extra: &[&str]| {
        let mut args = vec![
            "explain",
            "--json",
            "--policy",
            policy.to_str().unwrap(),
            "--config",
            server.to_str().unwrap(),
            "--ip",
            "192.0.2.1",
            "--user",
            "bob",
        ];
        args.extend_from_slice(extra);
        args.push("http://casino-royal.example/");
        let r = common::run(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()
    };
    let e = explain(&[]);
    assert_eq!(e["groups"], serde_json::json!(["communication"]), "{e}");
    assert_eq!(e["action"], "allow", "{e}");
    assert!(
        e["directory_groups"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(
                "cn=gg-com-nested,ou=groupes,dc=mairie,dc=test"
            )),
        "{e}"
    );
    let e = explain(&["--offline"]);
    assert_eq!(e["groups"], serde_json::json!([]), "{e}");
    assert_eq!(e["action"], "block", "{e}");

    // The directory section is checked with the policy: clear text refused, a bad DN,
    // a password file others can read, each with its line.
    let bad = server_yaml(&slapd, "")
        .replace("  starttls: true\n", "")
        .replace("base_dn: dc=mairie,dc=test", "base_dn: mairie.test");
    std::fs::write(&server, bad).unwrap();
    std::fs::set_permissions(
        dir.path().join("ldap-password"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let r = common::run(&[
        "check",
        "--policy",
        policy.to_str().unwrap(),
        "--config",
        server.to_str().unwrap(),
    ]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    let all = format!("{}{}", r.stdout, r.stderr);
    for want in [
        "server.yaml:3:",
        "in clear",
        "server.yaml:5:",
        "not a distinguished name",
        "server.yaml:7:",
        "ldap-password",
    ] {
        assert!(all.contains(want), "{want}: {all}");
    }
}
