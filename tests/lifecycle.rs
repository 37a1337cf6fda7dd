//! The proxy over time: proxy authentication, live reload (good and broken), malformed
//! requests, graceful shutdown.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::proxy::{Proxy, Upstream, curl, exchange, pins};

fn start(extra: &[&str]) -> Proxy {
    Proxy::start_pinned(extra)
}

#[test]
fn authentication_is_required_then_succeeds_with_a_users_file_login() {
    let up = Upstream::start();
    let users = tempfile::tempdir().unwrap();
    let file = users.path().join("users");
    common::add_user(&file, "c.martin", "s3cret pass");
    let p = start(&[
        "--auth-required",
        "127.0.0.0/8",
        "--users-file",
        file.to_str().unwrap(),
    ]);
    let url = format!("http://allowed.test:{}/small", up.port());
    let (_, out, _) = curl(&["-x", &p.url(), "-i", &url]);
    assert!(out.starts_with("HTTP/1.1 407"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("proxy-authenticate: basic realm=\"charte-proxy\""),
        "{out}"
    );
    let (_, out, _) = curl(&["-x", &p.url(), "-i", "--proxy-user", "c.martin:wrong", &url]);
    assert!(out.starts_with("HTTP/1.1 407"), "wrong password: {out}");
    let (code, out, err) = curl(&["-x", &p.url(), "--proxy-user", "c.martin:s3cret pass", &url]);
    assert_eq!((code, out.as_str()), (0, "hello"), "{err}");
    let t = p.trace_for("allowed.test", "GET");
    let lines = p.trace(3);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["decision"] == "auth-required")
            .count(),
        2,
        "{lines:?}"
    );
    let ok = lines.iter().find(|l| l["decision"] == "allow").unwrap();
    assert_eq!(ok["user"], "c.martin");
    assert_eq!(ok["groups"], serde_json::json!(["communication"]));
    let _ = t;
    // A user added later is known after SIGHUP.
    common::add_user(&file, "a.dupont", "autre");
    p.signal("HUP");
    p.wait_generation(2);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, out, _) = curl(&["-x", &p.url(), "--proxy-user", "a.dupont:autre", &url]);
        if out == "hello" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new user was never accepted: {out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_good_reload_changes_decisions_without_dropping_a_connection() {
    let up = Upstream::start();
    let p = start(&["--no-watch"]);
    let target = format!("http://allowed.test:{}/small", up.port());
    let mut conn = BufReader::new(TcpStream::connect(p.proxy).unwrap());
    conn.get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        exchange(&mut conn, &target, "allowed.test"),
        (200, "hello".into())
    );
    // Block allowed.test in a new version of the policy.
    let policy = p.path("policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    let text = text.replace(
        "rules:\n",
        "rules:\n  - id: nouveau\n    domains: [allowed.test]\n    action: block\n    reason: \"Bloqué après rechargement (charte §6.3)\"\n",
    );
    std::fs::write(&policy, text).unwrap();
    p.signal("HUP");
    let h = p.wait_generation(2);
    assert_eq!(h["stale"], false);
    let (status, body) = exchange(&mut conn, &target, "allowed.test");
    assert_eq!(status, 403, "same connection, new decision: {body}");
    assert!(body.contains("Bloqué après rechargement"), "{body}");
}

#[test]
fn a_file_change_is_picked_up_by_the_watcher() {
    let up = Upstream::start();
    let p = start(&[]);
    let target = format!("http://allowed.test:{}/small", up.port());
    let policy = p.path("policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        text.replace(
            "rules:\n",
            "rules:\n  - id: vu\n    domains: [allowed.test]\n    action: block\n    reason: Vu\n",
        ),
    )
    .unwrap();
    p.wait_generation(2);
    let (_, out, _) = curl(&["-x", &p.url(), "-i", &target]);
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
}

#[test]
fn a_broken_reload_is_refused_and_the_old_policy_keeps_working() {
    let up = Upstream::start();
    let p = start(&["--no-watch"]);
    let target = format!("http://casino-royal.example:{}/small", up.port());
    let policy = p.path("policy.yaml");
    let good = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        good.replace("categories: [gambling]", "categories: [gamblng]"),
    )
    .unwrap();
    p.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        let h: serde_json::Value = serde_json::from_str(&p.admin_get("/health")).unwrap();
        if h["stale"] == true {
            break h;
        }
        assert!(Instant::now() < deadline, "never stale: {h}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(health["status"], "stale");
    assert_eq!(health["generation"], 1);
    let err = health["last_error"].as_str().unwrap();
    assert!(
        err.contains("policy.yaml:") && err.contains("unknown category `gamblng`"),
        "{err}"
    );
    assert!(err.contains("did you mean `gambling`?"), "{err}");
    assert!(p.admin_get("/metrics").contains("charte_policy_stale 1"));
    assert!(
        p.admin_get("/metrics")
            .contains("charte_policy_reloads_total{result=\"error\"} 1")
    );
    // The old policy still decides.
    let (_, out, _) = curl(&["-x", &p.url(), "--interface", "127.0.0.2", "-i", &target]);
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    // The error was logged with its place.
    let log = p.stderr.lock().unwrap().clone();
    assert!(log.contains("unknown category `gamblng`"), "{log}");
    // Fixing it clears the stale flag.
    std::fs::write(&policy, good).unwrap();
    p.signal("HUP");
    let h = p.wait_generation(2);
    assert_eq!(h["stale"], false, "{h}");
}

#[test]
fn malformed_requests_get_an_http_error_not_a_crash() {
    let p = start(&[]);
    for raw in [
        "GET http://exa_mple!.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "CONNECT nohostport HTTP/1.1\r\nHost: x\r\n\r\n",
        "GARBAGE\r\n\r\n",
        "GET ftp://files.example/ HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(p.proxy).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        assert!(buf.starts_with("HTTP/1.1 400"), "{raw:?} → {buf:?}");
    }
    // Still serving.
    let (status, _) = common::proxy::http_get(p.admin, "/healthz");
    assert_eq!(status, 200);
}

#[test]
fn sigterm_lets_exchanges_in_flight_finish_flushes_the_trace_and_exits_0() {
    let up = Upstream::start();
    let mut p = start(&[]);
    let url = format!("http://allowed.test:{}/slow?ms=1500", up.port());
    let proxy = p.url();
    let slow = std::thread::spawn(move || curl(&["-x", &proxy, &url]));
    // Wait until the request is in flight (a condition, not a sleep).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p
        .admin_get("/metrics")
        .contains("charte_active_connections{listener=\"proxy\"} 1")
    {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    p.signal("TERM");
    let (code, out, err) = slow.join().unwrap();
    assert_eq!((code, out.as_str()), (0, "slow done"), "{err}");
    assert_eq!(p.wait_exit(Duration::from_secs(15)), 0);
    let trace = std::fs::read_to_string(p.trace_path()).unwrap();
    assert!(
        trace.contains("/slow?ms=1500"),
        "the record was flushed: {trace}"
    );
}

#[test]
fn trace_rotation_on_sigusr1_and_squid_format() {
    let up = Upstream::start();
    let p = start(&["--trace-format", "squid"]);
    let url = format!("http://allowed.test:{}/small", up.port());
    let (_, out, _) = curl(&[
        "-x",
        &p.url(),
        "--interface",
        "127.0.0.2",
        &format!("http://casino-royal.example:{}/", up.port()),
    ]);
    assert!(out.contains("charte"), "{out}");
    let wait_lines = |path: &std::path::Path, n: usize| -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let lines: Vec<String> = std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "{} has {} lines, want {n}",
                path.display(),
                lines.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let lines = wait_lines(&p.trace_path(), 1);
    let f: Vec<&str> = lines[0].split_whitespace().collect();
    // time elapsed client code/status bytes method URL user hierarchy type
    assert_eq!(f.len(), 10, "{}", lines[0]);
    assert!(
        f[0].contains('.') && f[0].split('.').nth(1).unwrap().len() == 3,
        "{}",
        lines[0]
    );
    assert_eq!(f[2], "127.0.0.2");
    assert_eq!(f[3], "TCP_DENIED/403");
    assert_eq!(f[5], "GET");
    assert_eq!(f[6], format!("http://casino-royal.example:{}/", up.port()));
    // Rotation: rename, signal, the next line goes to a new file at the same path.
    let rotated = p.path("data/trace.log.1");
    std::fs::rename(p.trace_path(), &rotated).unwrap();
    p.signal("USR1");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !p.trace_path().exists() {
        // The reopen happens on the signal; the file appears at the latest with the next line.
        let _ = curl(&["-x", &p.url(), &url]);
        assert!(Instant::now() < deadline, "the trace file was not reopened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = curl(&["-x", &p.url(), &url]);
    let new_lines = wait_lines(&p.trace_path(), 1);
    assert!(
        new_lines.iter().all(|l| l.contains("TCP_MISS/200")),
        "{new_lines:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&rotated).unwrap().lines().count(),
        1,
        "nothing lost, nothing duplicated"
    );
}

#[test]
fn the_trace_names_the_workstation_from_reverse_dns() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    common::proxy::copy_dir(&root.join("categories"), &dir.path().join("categories"));
    std::fs::copy(
        root.join("proxy-policy.yaml"),
        dir.path().join("policy.yaml"),
    )
    .unwrap();
    // `localhost`, from /etc/hosts on every Debian machine.
    let expected = dns_lookup::lookup_addr(&"127.0.0.1".parse().unwrap())
        .ok()
        .filter(|n| n != "127.0.0.1")
        .expect("127.0.0.1 has a reverse name (localhost in /etc/hosts)");
    let mut args = pins();
    args.push("--reverse-dns".into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = Proxy::start_in(dir, &refs);
    let url = format!("http://allowed.test:{}/small", up.port());
    // The lookup runs off the request path: the name shows up on a later request.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let _ = curl(&["-x", &p.url(), "--interface", "127.0.0.1", &url]);
        let t = p.trace_for("allowed.test", "GET");
        if t["workstation"] == expected.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "no workstation name in {t}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the proxy's log has `what`.
fn wait_log(p: &Proxy, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !p.stderr.lock().unwrap().contains(what) {
        assert!(Instant::now() < deadline, "never logged: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_reads_the_server_file_again_for_the_pages_and_says_what_needs_a_restart() {
    let up = Upstream::start();
    let p = Proxy::start_in_with(
        common::proxy::fixture_dir(),
        "pages: {town: Ville de Départ}\n",
        &[("CHARTE_LOG", "info".into())],
        &[],
    );
    let page = || {
        let url = format!("http://hate.example:{}/", up.port());
        curl(&["-s", "-x", &p.url(), &url]).1
    };
    assert!(page().contains("Ville de Départ"), "{}", page());

    // The town changes: the next page names it, with no warning about a restart.
    std::fs::write(p.path("server.yaml"), "pages: {town: Ville d'Arrivée}\n").unwrap();
    p.signal("HUP");
    wait_log(&p, "pages reloaded");
    let html = page();
    assert!(html.contains("Ville d&#39;Arrivée"), "{html}");
    assert!(!p.stderr.lock().unwrap().contains("next start"));

    // A setting that needs a restart: applied what can be, and said.
    std::fs::write(
        p.path("server.yaml"),
        "pages: {town: Ville d'Arrivée}\nlimits: {max_connections: 77}\n",
    )
    .unwrap();
    p.signal("HUP");
    wait_log(&p, "take effect only at the next start");

    // A broken server file: said with its line, the pages in force stay.
    std::fs::write(
        p.path("server.yaml"),
        "pages: {town: Ailleurs, colour: red}\n",
    )
    .unwrap();
    p.signal("HUP");
    wait_log(&p, "server file not reloaded");
    assert!(
        p.stderr.lock().unwrap().contains("server.yaml:1"),
        "{}",
        p.stderr.lock().unwrap()
    );
    let html = page();
    assert!(
        html.contains("Ville d&#39;Arrivée") && !html.contains("Ailleurs"),
        "{html}"
    );
}
