//! The host a rule is applied to is the one the connection goes to: spellings are
//! canonicalised before any rule, and a Host header, user info or CONNECT authority that
//! names another site is overridden or refused. (Address literals: tests/ssrf.rs; SNI
//! and the Host inside inspected tunnels: tests/tls.rs.)

mod common;

use common::proxy::{Proxy, Upstream};

fn raw(p: &Proxy, head: &str) -> String {
    common::proxy::one_response(p.proxy, head)
}

use common::proxy::status_of as status;

fn get(p: &Proxy, target: &str, host: &str) -> String {
    raw(
        p,
        &format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn spellings_of_a_blocked_name_are_all_blocked() {
    let p = Proxy::start_pinned(&[]);
    // hate.example is blocked for everyone (non-overridable law rule).
    for target in [
        "http://hate.example/",
        "http://HATE.Example/",
        "http://hate.example./",
        "http://www.hate.example/",
        "http://hate.example:80/",
        "http://xn--hate-.example/",
    ] {
        let text = get(&p, target, "allowed.test");
        let code = status(&text);
        assert!(
            code == 403 || code == 400,
            "{target} must never pass: {text}"
        );
        if !target.contains("xn--") {
            assert_eq!(code, 403, "{target}: {text}");
            assert!(
                text.contains("x-charte-reason: block-rule; rule=haine"),
                "{text}"
            );
        }
    }
    // Percent-encoding or odd characters in the host: refused, never a miss.
    for target in [
        "http://hate%2eexample/",
        "http://hate.example%00.allowed.test/",
    ] {
        let code = status(&get(&p, target, "allowed.test"));
        assert!(code == 400 || code == 403, "{target}: {code}");
    }
}

#[test]
fn the_request_line_wins_over_the_host_header_and_user_info_is_refused() {
    let up = Upstream::start();
    let p = Proxy::start_pinned(&[]);
    let ok = format!("allowed.test:{}", up.port());

    // Host header names a blocked site, the request line an allowed one: decided and
    // forwarded on the request line; the site sees the request line's host.
    let text = get(&p, &format!("http://{ok}/headers"), "hate.example");
    assert_eq!(status(&text), 200, "{text}");
    assert!(text.contains(&format!("host: {ok}")), "{text}");
    assert!(!text.contains("host: hate.example"), "{text}");

    // The reverse: the request line is blocked whatever the Host header says.
    let text = get(&p, "http://hate.example/", &ok);
    assert_eq!(status(&text), 403, "{text}");

    // Two Host headers: refused.
    let text = raw(
        &p,
        &format!(
            "GET http://{ok}/headers HTTP/1.1\r\nHost: {ok}\r\nHost: hate.example\r\nConnection: close\r\n\r\n"
        ),
    );
    let code = status(&text);
    assert!(
        code == 400 || (code == 200 && text.contains(&format!("host: {ok}"))),
        "{text}"
    );

    // user@host: the classic way to show one name and go to another. Refused.
    for target in [
        format!("http://{ok}@hate.example/"),
        format!("http://hate.example@{ok}/headers"),
        format!("http://user:pw@{ok}/headers"),
    ] {
        let text = get(&p, &target, &ok);
        assert_eq!(status(&text), 400, "{target}: {text}");
    }

    // CONNECT: the authority is the host; user info or a missing port is refused.
    for authority in [
        format!("user@{ok}"),
        "allowed.test".to_string(),
        format!("{ok}/x"),
    ] {
        let text = raw(
            &p,
            &format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"),
        );
        assert_eq!(status(&text), 400, "CONNECT {authority}: {text}");
    }
}
