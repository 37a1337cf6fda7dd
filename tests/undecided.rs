//! Bytes that would flow without a decision. Each class is a table of spellings sent
//! through the real proxy — plain, and inside a bumped tunnel over HTTP/1.1 and HTTP/2 —
//! to sites that record what reached them:
//!
//! - protocol switches: only WebSocket, decided like any request, is followed; any other
//!   `Upgrade` is dropped, and a site's `101` that the proxy did not relay a WebSocket
//!   handshake for is refused (502);
//! - CONNECT inside a bumped tunnel, TRACE and TRACK: refused (405);
//! - `OPTIONS *`, HTTP/1.0 keep-alive, an answer framed by the close, `Expect`.
//!
//! After each attempt, a second request on the same client connection, for a path the
//! policy blocks, must be decided (refused, with a trace record of its own) or find the
//! connection closed: it must never reach the site, neither as a request nor as raw
//! bytes after a protocol switch.

mod common;

use common::wire::{Answer, Req, Rig, Seen, Site, SiteOpts, Via, Wire};

const POLICY: &str = r#"version: 1
categories: [categories]
internal_sites: [127.0.0.0/8, "::1"]
rules:
  - id: interdit
    categories: [interdit]
    action: block
    reason: {fr: "Chemin interdit", en: "Forbidden path"}
  - id: haine
    categories: [agressif]
    action: block
    reason: {fr: "Site interdit", en: "Forbidden site"}
  - id: ia
    categories: [ai]
    action: block-upload
    reason: {fr: "Envoi interdit", en: "Sending forbidden"}
default: allow
"#;

/// `/second…` on allowed.test is blocked by the rule `interdit`.
const FILES: &[(&str, &str)] = &[("categories/interdit/urls", "allowed.test/second\n")];
const NAMES: &[&str] = &["allowed.test", "hate.example", "chat.example"];

/// Sites that speak HTTP/1.1 only, where a switch can happen (over HTTP/2 to the site
/// there is no `Upgrade` at all).
const H1_SITES: SiteOpts = SiteOpts {
    switch_to: None,
    tls_h1_only: true,
};

fn rig(opts: SiteOpts) -> Rig {
    Rig::start_with(POLICY, FILES, NAMES, &[], opts)
}

/// The HTTP/1.x roads: those where a client connection could switch.
const H1_ROADS: [Via; 2] = [Via::Plain, Via::BumpedH1];

/// After an attempt on `w`, a request for the blocked `/second/{n}` on the same
/// connection: refused by the proxy and traced as its own record (403), refused as
/// malformed by the proxy's parser (400), or the connection is closed. `site` must never
/// have seen it, neither as a request nor as bytes after a switch.
fn second_is_decided(rig: &Rig, site: &Site, w: &mut Wire, n: usize, case: &str) {
    let target = format!("/second/{n}");
    let bytes = w.bytes_of(&Req::get(&target));
    let a = match w.write(&bytes) {
        Ok(()) => w.read_answer(),
        Err(_) => Answer::default(),
    };
    eprintln!("{case}: the second request got {}", a.status);
    no_raw_bytes(site, case);
    for seen in site.seen() {
        assert!(
            !seen.target.contains("/second"),
            "{case}: the second request reached the site: {seen:?}"
        );
    }
    match a.status {
        0 | 400 => {}
        403 => {
            // `interdit` on allowed.test; on a blocked host, that host's own rule.
            let host = w.authority.rsplit_once(':').map_or("", |(h, _)| h);
            let scheme = if w.via == Via::Plain { "http" } else { "https" };
            let t = rig.p.trace_find(|r| {
                r["path"] == target.as_str() && r["host"] == host && r["scheme"] == scheme
            });
            assert_eq!(t["decision"], "block", "{case}: {t}");
            let rule = t["rule"].as_str().unwrap_or("");
            assert!(rule == "interdit" || rule == "haine", "{case}: {t}");
            assert_eq!(
                a.reason(),
                Some(format!("block-rule; rule={rule}").as_str()),
                "{case}: {a:?}"
            );
        }
        s => panic!("{case}: the second request got {s}: {a:?}"),
    }
}

/// The site saw no bytes after a protocol switch.
fn no_raw_bytes(site: &Site, case: &str) {
    for seen in site.seen() {
        assert!(
            seen.after_switch.is_empty(),
            "{case}: raw bytes reached the site after a switch: {:?}",
            String::from_utf8_lossy(&seen.after_switch)
        );
    }
}

/// What the site saw of the request for `target`, if it came.
fn seen_target(site: &Site, target: &str) -> Option<Seen> {
    site.seen().into_iter().find(|s| s.target.ends_with(target))
}

#[test]
fn upgrades_to_anything_but_websocket_are_dropped_and_the_connection_stays_http() {
    let rig = rig(H1_SITES);
    // (case, request): each asks, one way or another, for a switch to a protocol the
    // proxy cannot follow, or for WebSocket in a way it cannot be (HTTP/1.0, POST).
    let cases: Vec<(&str, Req)> = vec![
        (
            "h2c as curl sends it",
            Req::get("/")
                .header("Connection", "Upgrade, HTTP2-Settings")
                .header("Upgrade", "h2c")
                .header("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
        ),
        (
            "H2C",
            Req::get("/")
                .header("Connection", "Upgrade")
                .header("Upgrade", "H2C"),
        ),
        (
            "h2c, websocket",
            Req::get("/")
                .header("Connection", "Upgrade")
                .header("Upgrade", "h2c, websocket"),
        ),
        (
            "websocket, h2c",
            Req::get("/")
                .header("Connection", "Upgrade")
                .header("Upgrade", "websocket, h2c"),
        ),
        (
            "two Upgrade lines",
            Req::get("/")
                .header("Connection", "Upgrade")
                .header("Upgrade", "websocket")
                .header("Upgrade", "h2c"),
        ),
        (
            "TLS/1.0 (RFC 2817)",
            Req::get("/")
                .header("Connection", "Upgrade")
                .header("Upgrade", "TLS/1.0"),
        ),
        (
            "HTTP/2.0",
            Req::get("/")
                .header("Connection", "Upgrade")
                .header("Upgrade", "HTTP/2.0"),
        ),
        (
            "websocket/13",
            Req::get("/")
                .header("Connection", "Upgrade")
                .header("Upgrade", "websocket/13"),
        ),
        (
            "Connection in odd case",
            Req::get("/")
                .header("Connection", "uPgRaDe")
                .header("Upgrade", "h2c"),
        ),
        (
            "Connection split over two lines",
            Req::get("/")
                .header("Connection", "keep-alive")
                .header("Connection", "Upgrade")
                .header("Upgrade", "h2c"),
        ),
        (
            "Upgrade without Connection: upgrade",
            Req::get("/")
                .header("Connection", "keep-alive")
                .header("Upgrade", "h2c"),
        ),
        (
            "Upgrade with no Connection at all",
            Req::get("/").header("Upgrade", "h2c"),
        ),
        (
            "h2c on HTTP/1.0",
            Req::get("/")
                .version("HTTP/1.0")
                .header("Connection", "Upgrade, keep-alive")
                .header("Upgrade", "h2c"),
        ),
        (
            "websocket on HTTP/1.0",
            Req::get("/")
                .version("HTTP/1.0")
                .header("Connection", "Upgrade, keep-alive")
                .header("Upgrade", "websocket"),
        ),
        (
            "websocket on POST",
            Req::new("POST", "/")
                .header("Connection", "Upgrade")
                .header("Upgrade", "websocket")
                .body(b"hello"),
        ),
    ];
    for via in H1_ROADS {
        let site = rig.site(via);
        for (n, (name, req)) in cases.iter().enumerate() {
            let case = format!("{via:?} {name}");
            site.clear();
            let target = format!("/first/{n}");
            let req = Req {
                target: &target,
                ..req.clone()
            };
            let mut w = rig.open(via, "allowed.test").unwrap();
            let a = w.send(&req);
            assert_eq!(a.status, 200, "{case}: {a:?}");
            assert!(a.body.starts_with("reached /first/"), "{case}: {a:?}");
            let seen = seen_target(site, &target).expect("the first request reached the site");
            assert!(
                !seen
                    .headers
                    .iter()
                    .any(|(k, _)| k == "upgrade" || k == "http2-settings"),
                "{case}: the site was asked to switch: {seen:?}"
            );
            second_is_decided(&rig, site, &mut w, n, &case);
        }
    }
}

/// The WebSocket handshake: `Upgrade: websocket` (any case), `Connection` listing
/// `upgrade` (any case, any line).
fn websocket_spellings() -> Vec<(&'static str, Req<'static>)> {
    let base = |connection: &'static str, upgrade: &'static str| {
        Req::get("/")
            .header("Connection", connection)
            .header("Upgrade", upgrade)
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
    };
    vec![
        ("websocket", base("Upgrade", "websocket")),
        (
            "WebSocket, keep-alive first",
            base("keep-alive, Upgrade", "WebSocket"),
        ),
        (
            "Connection over two lines",
            Req::get("/")
                .header("Connection", "keep-alive")
                .header("Connection", "upgrade")
                .header("Upgrade", "websocket")
                .header("Sec-WebSocket-Version", "13")
                .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ),
    ]
}

#[test]
fn websocket_is_still_relayed_when_allowed_and_decided_like_any_request() {
    let rig = rig(H1_SITES);
    for via in H1_ROADS {
        let site = rig.site(via);
        for (n, (name, req)) in websocket_spellings().into_iter().enumerate() {
            let case = format!("{via:?} {name}");
            site.clear();
            let target = format!("/ws/{n}");
            let req = Req {
                target: &target,
                ..req
            };
            // Allowed: switched, and frames flow both ways.
            let mut w = rig.open(via, "allowed.test").unwrap();
            let a = w.send(&req);
            assert_eq!(a.status, 101, "{case}: {a:?}");
            w.write(b"frame").unwrap();
            let mut echo = [0u8; 5];
            w.read_exact(&mut echo).unwrap();
            assert_eq!(&echo, b"frame", "{case}");
            let seen = seen_target(site, &target).unwrap();
            assert_eq!(seen.after_switch, b"frame", "{case}");
            drop(w);
            let t = rig
                .p
                .trace_find(|r| r["path"] == target.as_str() && r["status"] == 101);
            assert_eq!(t["decision"], "allow", "{case}: {t}");

            // Blocked host, and a host where sending is blocked: refused, nothing reached.
            for (host, reason) in [
                ("hate.example", "block-rule; rule=haine"),
                ("chat.example", "block-upload; rule=ia"),
            ] {
                site.clear();
                let mut w = rig.open(via, host).unwrap();
                let a = w.send(&req);
                assert_eq!(a.status, 403, "{case} {host}: {a:?}");
                assert_eq!(a.reason(), Some(reason), "{case} {host}");
                assert!(site.seen().is_empty(), "{case} {host}: {:?}", site.seen());
            }
        }
    }
}

#[test]
fn a_switch_the_proxy_did_not_relay_a_websocket_handshake_for_is_refused() {
    // Sites that answer every request with 101, to h2c (whatever was asked), or to
    // websocket (even when nothing was asked).
    for (proto, with_ws_asked) in [("h2c", true), ("websocket", false)] {
        let rig = rig(SiteOpts {
            switch_to: Some(proto),
            tls_h1_only: true,
        });
        for via in H1_ROADS {
            let site = rig.site(via);
            let mut cases: Vec<(&str, Req)> = vec![
                ("GET without Upgrade", Req::get("/")),
                ("POST without Upgrade", Req::new("POST", "/").body(b"hello")),
            ];
            if with_ws_asked {
                cases.extend(websocket_spellings().into_iter().take(1));
            }
            for (n, (name, req)) in cases.into_iter().enumerate() {
                let case = format!("{via:?} site switching to {proto}, {name}");
                site.clear();
                let target = format!("/switch-{proto}/{n}");
                let req = Req {
                    target: &target,
                    ..req
                };
                let mut w = rig.open(via, "allowed.test").unwrap();
                let a = w.send(&req);
                assert_eq!(a.status, 502, "{case}: {a:?}");
                assert_eq!(
                    a.header("x-charte-error"),
                    Some("upstream-switch"),
                    "{case}"
                );
                assert!(a.body.contains("<html"), "{case}: a page: {a:?}");
                let t = rig.p.trace_find(|r| r["path"] == target.as_str());
                assert_eq!(t["status"], 502, "{case}: {t}");
                assert_eq!(t["reason_code"], "upstream-switch", "{case}: {t}");
                assert_eq!(t["decision"], "error", "{case}: {t}");
                second_is_decided(&rig, site, &mut w, n, &case);
            }
        }
    }
}

#[test]
fn connection_specific_fields_in_http2_are_malformed_and_never_forwarded() {
    let rig = rig(SiteOpts::default());
    let authority = rig.authority(Via::BumpedH2, "allowed.test");
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("upgrade", &[("upgrade", "h2c")]),
        (
            "connection: upgrade",
            &[("connection", "upgrade"), ("upgrade", "websocket")],
        ),
        ("connection: keep-alive", &[("connection", "keep-alive")]),
        ("keep-alive", &[("keep-alive", "timeout=5")]),
        ("proxy-connection", &[("proxy-connection", "keep-alive")]),
        ("transfer-encoding", &[("transfer-encoding", "chunked")]),
        ("te: gzip", &[("te", "gzip")]),
    ];
    for (n, (name, extra)) in cases.iter().enumerate() {
        let path = format!("/h2-conn/{n}");
        let mut fields = vec![
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", authority.as_str()),
            (":path", path.as_str()),
        ];
        fields.extend_from_slice(extra);
        let out = rig.h2_raw("allowed.test", &fields, None);
        assert!(out.refused(), "{name}: {out:?}");
        assert!(
            seen_target(&rig.tls, &path).is_none(),
            "{name}: reached the site"
        );
    }
    // The same request without them goes through: the refusals above are theirs.
    let fields = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", authority.as_str()),
        (":path", "/h2-conn/clean"),
    ];
    let out = rig.h2_raw("allowed.test", &fields, None);
    assert_eq!(out.status, Some(200), "{out:?}");
    assert!(seen_target(&rig.tls, "/h2-conn/clean").is_some());
}

#[test]
fn connect_inside_a_bumped_tunnel_is_refused() {
    let rig = rig(H1_SITES);
    let site = &rig.tls;
    let own = rig.authority(Via::BumpedH1, "allowed.test");
    // HTTP/1.1 on the decrypted connection: to another host, to the tunnel's own, to
    // the tunnel's host on another port.
    let targets = [
        "hate.example:443".to_string(),
        own.clone(),
        "allowed.test:443".to_string(),
    ];
    for (n, target) in targets.iter().enumerate() {
        let case = format!("BumpedH1 CONNECT {target}");
        site.clear();
        let mut w = rig.open(Via::BumpedH1, "allowed.test").unwrap();
        let head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        w.write(head.as_bytes()).unwrap();
        let a = w.read_answer();
        assert_eq!(a.status, 405, "{case}: {a:?}");
        assert_eq!(a.reason(), Some("block-method"), "{case}");
        assert!(site.seen().is_empty(), "{case}: {:?}", site.seen());
        let t = rig
            .p
            .trace_find(|r| r["method"] == "CONNECT" && r["scheme"] == "https");
        assert_eq!(t["reason_code"], "block-method", "{case}: {t}");
        second_is_decided(&rig, site, &mut w, 100 + n, &case);
    }

    // HTTP/2: CONNECT, with bytes that would be the tunnel's; extended CONNECT
    // (RFC 8441), which the proxy does not announce.
    site.clear();
    let own = rig.authority(Via::BumpedH2, "allowed.test");
    let connect = [(":method", "CONNECT"), (":authority", own.as_str())];
    let out = rig.h2_raw(
        "allowed.test",
        &connect,
        Some(b"GET /second/h2 HTTP/1.1\r\nHost: allowed.test\r\n\r\n"),
    );
    assert_eq!(out.status, Some(405), "{out:?}");
    let extended = [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "https"),
        (":authority", own.as_str()),
        (":path", "/chat"),
    ];
    let out = rig.h2_raw("allowed.test", &extended, Some(b"raw bytes"));
    assert!(out.refused(), "{out:?}");
    assert!(site.seen().is_empty(), "{:?}", site.seen());
    no_raw_bytes(site, "h2 CONNECT");
}

#[test]
fn trace_and_track_are_refused_with_405_and_never_forwarded() {
    let rig = rig(SiteOpts::default());
    let methods = ["TRACE", "TRACK", "trace", "Track"];
    for via in Via::ALL {
        let site = rig.site(via);
        for (n, method) in methods.iter().enumerate() {
            for max_forwards in [None, Some("0")] {
                let case = format!("{via:?} {method} max-forwards {max_forwards:?}");
                site.clear();
                let target = format!("/trace/{n}");
                let mut req = Req::new(method, &target);
                if let Some(m) = max_forwards {
                    req = req.header("Max-Forwards", m);
                }
                let a = rig.send(via, "allowed.test", &req);
                assert_eq!(a.status, 405, "{case}: {a:?}");
                assert_eq!(a.reason(), Some("block-method"), "{case}");
                assert!(site.seen().is_empty(), "{case}: {:?}", site.seen());
                let t = rig
                    .p
                    .trace_find(|r| r["method"] == *method && r["path"] == target.as_str());
                assert_eq!(t["decision"], "block", "{case}: {t}");
                assert_eq!(t["reason_code"], "block-method", "{case}: {t}");
                assert_eq!(t["status"], 405, "{case}: {t}");
            }
        }
    }
    // English when the browser asks, French otherwise.
    let a = rig.send(
        Via::Plain,
        "allowed.test",
        &Req::new("TRACE", "/").header("Accept-Language", "en"),
    );
    assert!(a.body.contains("Method not relayed"), "{a:?}");
    let a = rig.send(Via::Plain, "allowed.test", &Req::new("TRACE", "/"));
    assert!(a.body.contains("Méthode non relayée"), "{a:?}");
}

#[test]
fn options_star_is_answered_by_the_proxy_or_decided_like_any_request() {
    let rig = rig(H1_SITES);
    // Plain: `OPTIONS *` names no site; the proxy answers it itself (its help page).
    let site = &rig.plain;
    let mut w = rig.open(Via::Plain, "allowed.test").unwrap();
    let head = format!("OPTIONS * HTTP/1.1\r\nHost: {}\r\n\r\n", w.authority);
    w.write(head.as_bytes()).unwrap();
    let a = w.read_answer();
    assert_eq!(a.status, 200, "{a:?}");
    assert!(site.seen().is_empty(), "{:?}", site.seen());
    second_is_decided(&rig, site, &mut w, 200, "Plain OPTIONS *");

    // Inside a tunnel it asks the tunnel's site: decided on that site like any request,
    // traced, and refused where the site is blocked.
    let site = &rig.tls;
    for (n, (host, status)) in [("allowed.test", 200), ("hate.example", 403)]
        .into_iter()
        .enumerate()
    {
        let case = format!("BumpedH1 OPTIONS * to {host}");
        site.clear();
        let mut w = rig.open(Via::BumpedH1, host).unwrap();
        let head = format!("OPTIONS * HTTP/1.1\r\nHost: {}\r\n\r\n", w.authority);
        w.write(head.as_bytes()).unwrap();
        let a = w.read_answer();
        assert_eq!(a.status, status, "{case}: {a:?}");
        let t = rig
            .p
            .trace_find(|r| r["method"] == "OPTIONS" && r["path"] == "*" && r["host"] == host);
        assert_eq!(t["status"], status, "{case}: {t}");
        let seen: Vec<_> = site
            .seen()
            .into_iter()
            .map(|s| (s.method, s.target))
            .collect();
        let want = if status == 200 {
            vec![("OPTIONS".to_string(), "*".to_string())]
        } else {
            vec![]
        };
        assert_eq!(seen, want, "{case}");
        second_is_decided(&rig, site, &mut w, 201 + n, &case);
    }

    // HTTP/2: `:path *`, the same.
    site.clear();
    let own = rig.authority(Via::BumpedH2, "allowed.test");
    let fields = [
        (":method", "OPTIONS"),
        (":scheme", "https"),
        (":authority", own.as_str()),
        (":path", "*"),
    ];
    let out = rig.h2_raw("allowed.test", &fields, None);
    assert_eq!(out.status, Some(200), "{out:?}");
    assert_eq!(site.seen().len(), 1, "{:?}", site.seen());
}

#[test]
fn http_1_0_keep_alive_and_answers_framed_by_the_close_keep_every_request_decided() {
    let rig = rig(SiteOpts::default());
    for via in H1_ROADS {
        let site = rig.site(via);
        for (n, version) in ["HTTP/1.0", "HTTP/1.1"].into_iter().enumerate() {
            let case = format!("{via:?} {version} keep-alive");
            site.clear();
            let target = format!("/first/ka{n}");
            let mut w = rig.open(via, "allowed.test").unwrap();
            let a = w.send(
                &Req::get(&target)
                    .version(version)
                    .header("Connection", "keep-alive"),
            );
            assert_eq!(a.status, 200, "{case}: {a:?}");
            second_is_decided(&rig, site, &mut w, 300 + n, &case);
        }
    }
    // A site whose answer has no length: the body ends with the site's close; the
    // client's connection must still carry nothing to the site undecided.
    let unframed = Site::unframed();
    let authority = format!("allowed.test:{}", unframed.port());
    for (n, version) in ["HTTP/1.0", "HTTP/1.1"].into_iter().enumerate() {
        let case = format!("unframed answer, {version} keep-alive");
        let mut w = Wire::open(rig.p.proxy, Via::Plain, &authority, rig.org_ca()).unwrap();
        let target = format!("/first/unframed{n}");
        let a = w.send(
            &Req::get(&target)
                .version(version)
                .header("Connection", "keep-alive"),
        );
        assert_eq!(a.status, 200, "{case}: {a:?}");
        assert_eq!(a.body, format!("reached {target} unframed"), "{case}");
        second_is_decided(&rig, &unframed, &mut w, 310 + n, &case);
        // Each request of that connection is a record of its own.
        let t = rig.p.trace_find(|r| r["path"] == target.as_str());
        assert_eq!(t["decision"], "allow", "{case}: {t}");
    }
}

#[test]
fn expect_100_continue_sends_no_body_to_a_blocked_site_and_works_when_allowed() {
    let rig = rig(SiteOpts::default());
    for via in H1_ROADS {
        let site = rig.site(via);
        // Blocked upload: the final answer comes at once, no 100, no body asked for.
        let case = format!("{via:?} blocked upload");
        site.clear();
        let mut w = rig.open(via, "chat.example").unwrap();
        let head = Req::new("POST", "/upload")
            .header("Expect", "100-continue")
            .header("Content-Length", "5");
        w.write(&w.bytes_of(&head)).unwrap();
        let a = w.read_answer();
        assert_eq!(a.status, 403, "{case}: {a:?}");
        assert_eq!(a.reason(), Some("block-upload; rule=ia"), "{case}");
        // A client that sends its body anyway: still nothing reaches the site.
        let _ = w.write(b"hello");
        second_is_decided(&rig, site, &mut w, 400, &case);
        assert!(site.seen().is_empty(), "{case}: {:?}", site.seen());

        // Allowed upload: 100, then the body, then the site's answer.
        for (n, expect) in ["100-continue", "100-Continue"].into_iter().enumerate() {
            let case = format!("{via:?} allowed upload, Expect: {expect}");
            site.clear();
            let target = format!("/up/{n}");
            let mut w = rig.open(via, "allowed.test").unwrap();
            let head = Req::new("POST", &target)
                .header("Expect", expect)
                .header("Content-Length", "5");
            w.write(&w.bytes_of(&head)).unwrap();
            let a = w.read_answer();
            assert_eq!(a.status, 100, "{case}: {a:?}");
            w.write(b"hello").unwrap();
            let a = w.read_answer();
            assert_eq!(a.status, 200, "{case}: {a:?}");
            assert_eq!(a.body, format!("reached {target} (5 bytes)"), "{case}");
        }

        // An expectation the proxy does not know is the site's to meet or refuse (417):
        // the request is decided like any other, here allowed and traced, and goes on
        // with its body and its `Expect`.
        let case = format!("{via:?} unknown expectation");
        site.clear();
        let target = "/up/unknown";
        let a = rig.send(
            via,
            "allowed.test",
            &Req::new("POST", target)
                .header("Expect", "bananas")
                .body(b"hello"),
        );
        assert_eq!(a.status, 200, "{case}: {a:?}");
        assert_eq!(a.body, format!("reached {target} (5 bytes)"), "{case}");
        let seen = seen_target(site, target).unwrap();
        assert!(
            seen.headers.contains(&("expect".into(), "bananas".into())),
            "{case}: {seen:?}"
        );
        let t = rig.p.trace_find(|r| r["path"] == target);
        assert_eq!(t["decision"], "allow", "{case}: {t}");
    }
    // HTTP/2 inside a tunnel: a blocked upload never reaches the site.
    let site = &rig.tls;
    site.clear();
    let a = rig.send(
        Via::BumpedH2,
        "chat.example",
        &Req::new("POST", "/upload")
            .header("expect", "100-continue")
            .body(b"hello"),
    );
    assert_eq!(a.status, 403, "{a:?}");
    assert!(site.seen().is_empty(), "{:?}", site.seen());
}
