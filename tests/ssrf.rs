//! Server-side request forgery: the proxy never connects to an internal address (by name,
//! by any spelling of an address literal, or to itself) unless the policy's
//! `internal_sites` opens it. The names are pinned (`--host`), which is the stub resolver.

mod common;

use std::time::Duration;

use common::proxy::{Proxy, Trap, Upstream, copy_dir};

/// Sends `head` as it is and returns (status, whole response text).
fn raw(p: &Proxy, head: &str) -> (u16, String) {
    let text = common::proxy::one_response(p.proxy, head);
    (common::proxy::status_of(&text), text)
}

fn get(p: &Proxy, authority: &str, path: &str) -> (u16, String) {
    raw(
        p,
        &format!(
            "GET http://{authority}{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        ),
    )
}

/// The test policy without its `internal_sites` line: the shipped default.
fn start_closed(extra: &[&str]) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    copy_dir(&root.join("categories"), &dir.path().join("categories"));
    let policy = std::fs::read_to_string(root.join("proxy-policy.yaml")).unwrap();
    let closed: String = policy
        .lines()
        .filter(|l| !l.starts_with("internal_sites:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(
        closed, policy,
        "the fixture opens loopback for the other tests"
    );
    std::fs::write(dir.path().join("policy.yaml"), closed).unwrap();
    let mut args: Vec<String> = common::proxy::pins();
    args.push("--host=rebind.test=127.0.0.1".into());
    args.push("--host=metadata.test=169.254.169.254".into());
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Proxy::start_in(dir, &refs)
}

#[test]
fn internal_addresses_are_refused_by_name_and_in_every_spelling() {
    let trap = Trap::new();
    let port = trap.port();
    // Tunnels relayed as bytes: the CONNECT itself is refused (an inspected tunnel would
    // be refused at its first request, through the same dialer).
    let p = start_closed(&["--connect-port", &port.to_string(), "--no-inspect"]);
    let spellings = [
        format!("rebind.test:{port}"),
        format!("allowed.test:{port}"),
        format!("127.0.0.1:{port}"),
        format!("127.1:{port}"),
        format!("0x7f.0.0.1:{port}"),
        format!("2130706433:{port}"),
        format!("0177.0.0.1:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        format!("[::ffff:7f00:1]:{port}"),
        format!("[::1]:{port}"),
        format!("localhost.:{port}"),
    ];
    for a in &spellings {
        let (status, text) = get(&p, a, "/x");
        // localhost is not pinned: the system resolver answers loopback.
        assert_eq!(status, 403, "{a}: {text}");
        assert!(
            text.contains("x-charte-reason: block-internal"),
            "{a}: {text}"
        );
        assert!(
            text.contains("réseau interne"),
            "French page by default: {text}"
        );
    }
    // CONNECT too, by name and by address.
    for a in [format!("rebind.test:{port}"), format!("127.0.0.1:{port}")] {
        let (status, text) = raw(&p, &format!("CONNECT {a} HTTP/1.1\r\nHost: {a}\r\n\r\n"));
        assert_eq!(status, 403, "CONNECT {a}: {text}");
        assert!(text.contains("x-charte-reason: block-internal"), "{text}");
    }
    assert!(!trap.connected(), "nothing may reach the internal listener");

    // The cloud metadata address: refused at once, without a connection attempt.
    let t = std::time::Instant::now();
    let (status, text) = get(&p, "metadata.test", "/latest/meta-data/");
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("169.254.169.254"), "{text}");
    let (status, _) = get(&p, "169.254.169.254", "/latest/meta-data/");
    assert_eq!(status, 403);
    assert!(t.elapsed() < Duration::from_secs(5));

    // The reason is in the trace, with the refused address.
    let rec = p.trace_find(|r| r["host"] == "rebind.test");
    assert_eq!(rec["decision"], "block", "{rec}");
    assert_eq!(rec["reason_code"], "block-internal", "{rec}");
}

#[test]
fn internal_sites_open_networks_but_never_the_proxy_itself() {
    let up = Upstream::start();
    // The fixture opens 127.0.0.0/8 and ::1.
    let p = Proxy::start_pinned(&[]);
    let (status, text) = get(&p, &format!("allowed.test:{}", up.port()), "/small");
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("hello"), "{text}");
    let (status, _) = get(&p, &format!("127.0.0.1:{}", up.port()), "/small");
    assert_eq!(status, 200);

    // The proxy, its portal and its admin pages are not reachable through the proxy,
    // even with loopback opened: admin pages stay on their own listener.
    for (what, addr) in [("proxy", p.proxy), ("portal", p.portal), ("admin", p.admin)] {
        let (status, text) = get(&p, &addr.to_string(), "/demandes");
        assert_eq!(status, 403, "{what}: {text}");
        assert!(text.contains("x-charte-reason: block-internal"), "{text}");
        assert!(text.contains("own listener"), "{what}: {text}");
        let (status, _) = get(&p, &format!("localhost:{}", addr.port()), "/");
        assert_eq!(status, 403, "{what} as localhost");
    }
}

#[test]
fn a_bad_internal_site_is_a_policy_error_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "version: 1\ninternal_sites:\n  - 10.0.0.0/8\n  - not a site!\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_charte-proxy"))
        .args(["check", "--policy"])
        .arg(&policy)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("policy.yaml:4") && err.contains("internal_sites[1]"),
        "{err}"
    );
    assert!(err.contains("not a network or a site name"), "{err}");
}
