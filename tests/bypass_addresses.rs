//! Bypass class 1 (issue 20): an address listed in a category or list is caught in every
//! spelling of it — the IPv4 spellings browsers accept, and every IPv6 form that carries
//! it (mapped, compatible, translated, NAT64, 6to4), which the internal-address guard
//! already read as the IPv4 address. Through the real proxy, plain HTTP and inside a
//! bumped tunnel (HTTP/1.1 and HTTP/2), with a site that records what reached it; and
//! `explain` gives the same decision for each spelling.

mod common;

use common::wire::{Req, Rig, Via};

/// The site's own address is what the law category lists: a request that is not caught
/// reaches the site (or, inside a tunnel, fails on the site's certificate).
const POLICY: &str = r#"
version: 1
categories: [categories]
internal_sites: [127.0.0.0/8, "::1"]
lists:
  ecrit-en-ipv6: ["64:ff9b::c000:207", "::ffff:198.51.100.9"]
rules:
  - id: loi
    categories: [illegal]
    action: block
    overridable: false
    reason: {fr: "Site interdit par la loi (charte §6.3)", en: "Site forbidden by law (charter §6.3)"}
  - id: liste-ipv6
    lists: [ecrit-en-ipv6]
    action: block
    reason: {fr: "Liste noire", en: "Blacklist"}
default: allow
"#;

const ILLEGAL: (&str, &str) = (
    "categories/illegal/domains",
    "# The test sites' own address\n127.0.0.1\n",
);

/// Every spelling of 127.0.0.1 that reaches the same machine or is judged as it.
const SPELLINGS: &[&str] = &[
    "127.0.0.1",
    "127.1",
    "127.0.1",
    "0x7f.0.0.1",
    "0X7F.0.0.1",
    "0177.0.0.1",
    "0177.0.0.01",
    "2130706433",
    "0x7f000001",
    "017700000001",
    "127.0.0.1.",
    "[::ffff:127.0.0.1]",
    "[::FFFF:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:7f00:0001]",
    "[::ffff:0:127.0.0.1]",
    "[::ffff:0:7f00:1]",
    "[::127.0.0.1]",
    "[::7f00:1]",
    "[64:ff9b::127.0.0.1]",
    "[64:ff9b::7f00:1]",
    "[2002:7f00:1::]",
    "[2002:7f00:0001:abcd::1]",
];

fn refused_by_law(what: &str, a: &common::wire::Answer) {
    assert_eq!(a.status, 403, "{what}: {a:?}");
    assert_eq!(
        a.reason(),
        Some("block-rule; rule=loi"),
        "{what}: decided by the law category, not by another step: {a:?}"
    );
}

#[test]
fn a_listed_ipv4_address_is_caught_in_every_spelling_on_every_road() {
    let r = Rig::start(POLICY, &[ILLEGAL], &["allowed.test"], &[]);
    // The site is reachable by name: only its address is listed.
    for via in Via::ALL {
        let a = r.send(via, "allowed.test", &Req::get("/ok"));
        assert_eq!(a.status, 200, "{via:?}: {a:?}");
    }
    r.plain.clear();
    r.tls.clear();
    for via in Via::ALL {
        for host in SPELLINGS {
            let a = r.send(via, host, &Req::get("/"));
            refused_by_law(&format!("{via:?} {host}"), &a);
        }
    }
    assert!(r.plain.seen().is_empty(), "{:?}", r.plain.seen());
    assert!(r.tls.seen().is_empty(), "{:?}", r.tls.seen());
    // The record says why, with the address as asked for.
    let rec =
        r.p.trace_find(|v| v["host"] == "64:ff9b::7f00:1" && v["decision"] == "block");
    assert_eq!(rec["rule"], "loi", "{rec}");
    assert_eq!(rec["categories"][0], "illegal", "{rec}");
}

/// The tunnel itself is refused for each spelling when it is not inspected.
#[test]
fn a_listed_ipv4_address_is_caught_in_every_spelling_at_connect() {
    let r = Rig::start(POLICY, &[ILLEGAL], &["allowed.test"], &["--no-inspect"]);
    for host in SPELLINGS {
        let authority = r.authority(Via::BumpedH1, host);
        let got = common::wire::connect(r.p.proxy, &authority);
        let head = got.expect_err(&format!("{host}: the tunnel was opened"));
        assert!(head.starts_with("HTTP/1.1 403"), "{host}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("x-charte-reason: block-rule; rule=loi"),
            "{host}: {head}"
        );
    }
    assert!(r.tls.seen().is_empty());
}

/// An entry written in an IPv6 form that carries an IPv4 address catches the IPv4
/// address in every spelling, and the other carrying forms.
#[test]
fn an_entry_written_as_ipv6_catches_the_ipv4_address_it_carries() {
    let r = Rig::start(POLICY, &[ILLEGAL], &["allowed.test"], &[]);
    for host in [
        "192.0.2.7",
        "3221225991",
        "[::ffff:192.0.2.7]",
        "[64:ff9b::192.0.2.7]",
        "[2002:c000:207::1]",
        "198.51.100.9",
        "[::198.51.100.9]",
    ] {
        let a = r.send(Via::Plain, host, &Req::get("/"));
        assert_eq!(a.status, 403, "{host}: {a:?}");
        assert_eq!(
            a.reason(),
            Some("block-rule; rule=liste-ipv6"),
            "{host}: {a:?}"
        );
    }
}

/// `explain` runs the same classification: the same rule for every spelling.
#[test]
fn explain_agrees_with_the_proxy_on_every_spelling() {
    let dir = common::wire::policy_dir(POLICY, &[ILLEGAL]);
    let policy = dir.path().join("policy.yaml");
    let policy = policy.display().to_string();
    for host in SPELLINGS {
        for target in [
            format!("http://{host}/"),
            format!("https://{host}/"),
            format!("{host}:443"),
        ] {
            let v = common::explain_json(&["--policy", &policy], &target);
            assert_eq!(v["rule"], "loi", "{target}: {v:#}");
            assert_eq!(v["decision"], "block", "{target}: {v:#}");
            assert_eq!(v["overridable"], false, "{target}: {v:#}");
            assert_eq!(v["categories"][0]["entry"], "127.0.0.1", "{target}: {v:#}");
        }
    }
}
