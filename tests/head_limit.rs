//! The request-head limit (`limits.max_head_bytes`) holds however the head is cut into
//! segments: sent in one write, trickled, or just under the limit, with the default
//! (64 KiB) and a configured limit, on the proxy listener (plain, and inside a bumped
//! tunnel over HTTP/1.1 and HTTP/2) and on the portal and admin listeners. A head over
//! the limit gets 431 and `Connection: close` and reaches no site; up to 16 KiB over, the
//! proxy's own count answers, with the error page and (on the proxy listener) a trace
//! record, however the head was cut; further over, the HTTP parser may answer first. A
//! head under the limit goes through.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::wire::{Answer, Req, Rig, Site, SiteOpts, Via, Wire, read_answer};

const POLICY: &str = r#"version: 1
categories: [categories]
internal_sites: [127.0.0.0/8, "::1"]
default: allow
"#;
const NAMES: &[&str] = &["allowed.test"];

/// HTTP/1.1 sites: their own head limits are far above the proxy's (an HTTP/2 server's
/// default header list limit is 16 KiB, which would answer first).
const SITES: SiteOpts = SiteOpts {
    switch_to: None,
    tls_h1_only: true,
};

const DEFAULT_LIMIT: usize = 64 * 1024;
const CONFIGURED_LIMIT: usize = 16 * 1024;

fn rig_default() -> Rig {
    Rig::start_with(POLICY, &[], NAMES, &[], SITES)
}

fn rig_configured() -> Rig {
    let yaml = format!("limits:\n  max_head_bytes: {CONFIGURED_LIMIT}\n");
    Rig::start_with(
        POLICY,
        &[("server.yaml", &yaml)],
        NAMES,
        &["--config", "server.yaml"],
        SITES,
    )
}

/// A request for `target` on `w` whose head is `total` bytes as sent: `Host`, then one
/// `X-Big` field long enough.
fn head_of(w: &Wire, target: &str, total: usize) -> Vec<u8> {
    let base = w.bytes_of(&Req::get(target).header("X-Big", "")).len();
    assert!(total > base, "a head of {total} bytes cannot be built");
    let value = "a".repeat(total - base);
    let bytes = w.bytes_of(&Req::get(target).header("X-Big", &value));
    assert_eq!(bytes.len(), total);
    bytes
}

/// How the head is written.
#[derive(Clone, Copy, Debug)]
enum Arrival {
    /// One write.
    Whole,
    /// 2 KiB at a time, 1 ms apart, stopping if the proxy already answered.
    Trickled,
}

fn write(w: &mut impl FnMut(&[u8]) -> std::io::Result<()>, bytes: &[u8], how: Arrival) {
    match how {
        Arrival::Whole => {
            let _ = w(bytes);
        }
        Arrival::Trickled => {
            for piece in bytes.chunks(2048) {
                if w(piece).is_err() {
                    // Refused and closed while the head was still coming.
                    break;
                }
                // Pacing, so that the head arrives in many reads: not a wait for anything.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// 431 and `Connection: close`, whoever refused: the proxy's own count (the error page,
/// French by default, and the reason header) or, when the head came in reads that took
/// the parser's buffer over the limit before the head was whole, the HTTP parser (a
/// bare 431). Which one depends on how the bytes were read, not only on how they were
/// written; the limit holds either way. Returns whether it was the proxy's count.
fn assert_refused(a: &Answer, case: &str) -> bool {
    assert_eq!(a.status, 431, "{case}: {a:?}");
    assert_eq!(a.header("connection"), Some("close"), "{case}: {a:?}");
    if a.body.is_empty() {
        return false;
    }
    assert!(a.body.contains("<html"), "{case}: the error page: {a:?}");
    assert!(
        a.body.contains("dépasse la taille"),
        "{case}: French by default: {a:?}"
    );
    assert_eq!(a.reason(), Some("head-too-large"), "{case}: {a:?}");
    true
}

/// Heads over `limit`: just over and 8 KiB over, whole or trickled, which the HTTP
/// parser holds whole (its buffer has 16 KiB of slack) and the proxy's count refuses
/// with its page; and 64 KiB over, which the parser may cut short first.
fn over(limit: usize) -> [(usize, Arrival); 5] {
    [
        (limit + 100, Arrival::Whole),
        (limit + 8 * 1024, Arrival::Whole),
        (limit + 8 * 1024, Arrival::Trickled),
        (limit + 64 * 1024, Arrival::Whole),
        (limit + 64 * 1024, Arrival::Trickled),
    ]
}

/// Over the limit (see [`over`]), and just under it, by `via`.
fn proxy_roads(rig: &Rig, limit: usize) {
    for via in [Via::Plain, Via::BumpedH1] {
        let site: &Site = rig.site(via);
        for (n, (total, how)) in over(limit).into_iter().enumerate() {
            let case = format!("{via:?} limit {limit}: head of {total} bytes, {how:?}");
            site.clear();
            let target = format!("/big/{limit}/{n}");
            let mut w = rig.open(via, "allowed.test").unwrap();
            let bytes = head_of(&w, &target, total);
            write(&mut |b| w.write(b), &bytes, how);
            let a = w.read_answer();
            let counted = assert_refused(&a, &case);
            assert!(
                counted || total > limit + 16 * 1024,
                "{case}: a head the parser holds whole is refused by the proxy's count"
            );
            assert!(site.seen().is_empty(), "{case}: reached the site");
            if counted {
                // The proxy's own refusal is traced (the parser's leaves no record).
                let t = rig.p.trace_find(|r| {
                    r["reason_code"] == "head-too-large"
                        && r["error"]
                            .as_str()
                            .is_some_and(|e| e.contains(&format!("{total} ")))
                });
                assert_eq!(t["decision"], "block", "{case}: {t}");
                assert_eq!(t["status"], 431, "{case}: {t}");
                assert_eq!(t["host"], "allowed.test", "{case}: {t}");
            }
        }
        let case = format!("{via:?} limit {limit}: just under");
        site.clear();
        let target = format!("/big/{limit}/under");
        let mut w = rig.open(via, "allowed.test").unwrap();
        let bytes = head_of(&w, &target, limit - 100);
        w.write(&bytes).unwrap();
        let a = w.read_answer();
        assert_eq!(a.status, 200, "{case}: {a:?}");
        assert!(a.body.starts_with("reached /big/"), "{case}: {a:?}");
    }

    // HTTP/2 in a bumped tunnel: the header list limit announced to the client is the
    // same; whichever refuses first, nothing reaches the site.
    let authority = rig.authority(Via::BumpedH2, "allowed.test");
    let site = &rig.tls;
    for (n, size) in [limit + limit / 2, limit + 100].into_iter().enumerate() {
        site.clear();
        let path = format!("/big/{limit}/h2-{n}");
        let value = "a".repeat(size);
        let fields = [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", authority.as_str()),
            (":path", path.as_str()),
            ("x-big", value.as_str()),
        ];
        let out = rig.h2_raw("allowed.test", &fields, None);
        assert!(out.refused(), "h2 limit {limit}, {size}: {out:?}");
        assert!(site.seen().is_empty(), "h2 limit {limit}, {size}: reached");
    }
    site.clear();
    let value = "a".repeat(limit - 1024);
    let path = format!("/big/{limit}/h2-under");
    let fields = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", authority.as_str()),
        (":path", path.as_str()),
        ("x-big", value.as_str()),
    ];
    let out = rig.h2_raw("allowed.test", &fields, None);
    assert_eq!(
        out.status,
        Some(200),
        "h2 limit {limit}, just under: {out:?}"
    );
}

/// A request to a listener of the proxy itself (origin form) with a head of `total`.
fn own_listener(addr: SocketAddr, path: &str, total: usize, how: Arrival) -> Answer {
    let base = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nX-Big: \r\n\r\n").len();
    let value = "a".repeat(total - base);
    let bytes = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nX-Big: {value}\r\n\r\n");
    assert_eq!(bytes.len(), total);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write(&mut |b| s.write_all(b), bytes.as_bytes(), how);
    read_answer(&mut s)
}

fn own_listeners(rig: &Rig, limit: usize) {
    for (name, addr, path) in [
        ("portal", rig.p.portal, "/"),
        ("admin", rig.p.admin, "/health"),
    ] {
        for (total, how) in over(limit) {
            let case = format!("{name} limit {limit}: head of {total} bytes, {how:?}");
            let a = own_listener(addr, path, total, how);
            let counted = assert_refused(&a, &case);
            assert!(
                counted || total > limit + 16 * 1024,
                "{case}: a head the parser holds whole is refused by the proxy's count"
            );
        }
        let a = own_listener(addr, path, limit - 100, Arrival::Whole);
        assert_eq!(a.status, 200, "{name} limit {limit}: just under: {a:?}");
    }
}

#[test]
fn the_default_head_limit_holds_however_the_head_arrives() {
    let rig = rig_default();
    proxy_roads(&rig, DEFAULT_LIMIT);
    own_listeners(&rig, DEFAULT_LIMIT);
    // A CONNECT whose head is over the limit is refused the same way.
    let mut s = TcpStream::connect(rig.p.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let authority = rig.authority(Via::BumpedH1, "allowed.test");
    let value = "a".repeat(DEFAULT_LIMIT + 1000);
    s.write_all(
        format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nX-Big: {value}\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let a = read_answer(&mut s);
    assert_refused(&a, "CONNECT");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "the connection closes after the 431");
}

#[test]
fn a_configured_head_limit_holds_however_the_head_arrives() {
    let rig = rig_configured();
    proxy_roads(&rig, CONFIGURED_LIMIT);
    own_listeners(&rig, CONFIGURED_LIMIT);
}
