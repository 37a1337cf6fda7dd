//! Bypass class 2 (issue 20): a URL rule (a category's `urls` file or a rule's `urls`)
//! catches every spelling of the listed path — case, percent-escapes of unreserved
//! characters, dot segments (also escaped), repeated slashes, escaped slashes and
//! backslashes, `;parameters`, and the readings of servers that read less into a path
//! than the canonical form does — through the real proxy, plain HTTP and inside a bumped
//! tunnel (HTTP/1.1 and HTTP/2), with a site that records what reached it. `explain`
//! gives the same decision for every spelling, and what reaches the site for an allowed
//! request is the path as the client sent it.

mod common;

use common::wire::{Req, Rig, Via};

const POLICY: &str = r#"
version: 1
categories: [categories]
internal_sites: [127.0.0.0/8, "::1"]
rules:
  - id: loi
    categories: [illegal]
    action: block
    overridable: false
    reason: {fr: "Site interdit par la loi (charte §6.3)", en: "Site forbidden by law (charter §6.3)"}
  - id: prive
    urls: ["allowed.test/Prive/Dossier"]
    action: block
    reason: {fr: "Chemin réservé", en: "Reserved path"}
default: allow
"#;

/// A category's `urls` file, as UT1 writes them (host/path, no scheme).
const ILLEGAL: (&str, &str) = (
    "categories/illegal/urls",
    "# listed paths\nallowed.test/interdit/page\nwww.allowed.test/ete/%C3%A9t%C3%A9\n",
);

/// Spellings of `/interdit/page` (the law category's entry).
const LAW: &[&str] = &[
    "/interdit/page",
    "/interdit/page/suite",
    "/interdit/page?x=1",
    "/INTERDIT/Page",
    "/%69nterdit/page",
    "/%69%6E%74%65%72%64%69%74/%70%61%67%65",
    "/interdit/p%61ge",
    "/./interdit/page",
    "/interdit/./page",
    "/x/../interdit/page",
    "/x/y/../../interdit/page",
    "/../interdit/page",
    "/x/%2e%2e/interdit/page",
    "/x/%2E%2E/interdit/page",
    "/x/.%2e/interdit/page",
    "/x/%2e./interdit/page",
    "/%2e/interdit/page",
    "//interdit/page",
    "/interdit//page",
    "///interdit///page",
    "/interdit%2fpage",
    "/interdit%2Fpage",
    "/x%2F..%2Finterdit/page",
    "/interdit\\page",
    "/x\\..\\interdit\\page",
    "/interdit%5Cpage",
    "/interdit;jsessionid=1/page",
    "/x/..;/interdit/page",
    "/x;y/..;z/interdit/page",
];

/// Paths that the canonical form reads elsewhere, but that a server reading less into
/// them serves from under `/interdit/page`: one that does not merge slashes
/// (`//..` only removes the empty segment), one that does not strip parameters or
/// decode separators, one that resolves nothing (routers that see the raw path).
const LESS_READ: &[&str] = &[
    "/interdit/page//..",
    "/interdit/page/..;/",
    "/interdit/page%2F..",
    "/interdit/page\\..",
    "/interdit/page/../x",
    "/interdit/page/%2e%2e/x",
];

/// Spellings of `/Prive/Dossier` (a rule's inline `urls`, written with capitals).
const RULE: &[&str] = &[
    "/prive/dossier",
    "/Prive/Dossier",
    "/PRIVE/DOSSIER/x",
    "/%70rive/dossier",
    "/prive/./dossier",
    "/prive/x/../dossier",
    "/prive//dossier",
    "/prive%2fdossier",
];

/// Spellings of `/ete/été`, listed escaped.
const ESCAPED: &[&str] = &[
    "/ete/%C3%A9t%C3%A9",
    "/ete/%c3%a9t%c3%a9",
    "/ete/%C3%A9T%C3%A9",
];

/// Paths on the same site that no rule lists: they reach it.
const ALLOWED: &[&str] = &[
    "/interdit",
    "/interdit/pag",
    "/autre/interdit/page",
    "/interdit%252fpage",
    "/x/..%252finterdit/page",
    "/prive",
    "/ete/ete",
    "/x/../autre/%2e//page%2Fsuite;p=1\\x",
];

fn start() -> Rig {
    Rig::start(POLICY, &[ILLEGAL], &["allowed.test"], &[])
}

#[test]
fn a_listed_path_is_caught_in_every_spelling_on_every_road() {
    let r = start();
    for via in Via::ALL {
        for (spellings, reason) in [
            (LAW, "block-rule; rule=loi"),
            (LESS_READ, "block-rule; rule=loi"),
            (RULE, "block-rule; rule=prive"),
            (ESCAPED, "block-rule; rule=loi"),
        ] {
            for path in spellings {
                let a = r.send(via, "allowed.test", &Req::get(path));
                assert_eq!(a.status, 403, "{via:?} {path}: {a:?}");
                assert_eq!(a.reason(), Some(reason), "{via:?} {path}: {a:?}");
            }
        }
        let seen = r.site(via).seen();
        assert!(seen.is_empty(), "{via:?}: reached the site: {seen:?}");
    }
}

/// Raw bytes a browser would have escaped (HTTP/2 `:path` and HTTP/1.1 targets carry
/// them as hyper accepts them) are the escaped path.
#[test]
fn raw_non_ascii_is_the_escaped_path() {
    let r = start();
    for via in [Via::Plain, Via::BumpedH1] {
        let a = r.send(via, "allowed.test", &Req::get("/ete/été"));
        assert_eq!(a.status, 403, "{via:?}: {a:?}");
        assert_eq!(a.reason(), Some("block-rule; rule=loi"), "{via:?}: {a:?}");
    }
    assert!(r.plain.seen().is_empty() && r.tls.seen().is_empty());
}

/// An allowed request reaches the site with its path exactly as the client wrote it:
/// the canonical form is for deciding only.
#[test]
fn allowed_paths_reach_the_site_as_sent() {
    let r = start();
    for via in Via::ALL {
        r.site(via).clear();
        for path in ALLOWED {
            let a = r.send(via, "allowed.test", &Req::get(path));
            assert_eq!(a.status, 200, "{via:?} {path}: {a:?}");
        }
        let seen: Vec<String> = r.site(via).seen().into_iter().map(|s| s.target).collect();
        let sent: Vec<String> = ALLOWED.iter().map(|p| p.to_string()).collect();
        assert_eq!(seen, sent, "{via:?}");
    }
}

/// The trace records the block with its rule, and the path as it was asked for.
#[test]
fn the_trace_names_the_rule_and_the_path_as_asked() {
    let r = start();
    let a = r.send(
        Via::Plain,
        "allowed.test",
        &Req::get("/x/%2e%2e/interdit/page"),
    );
    assert_eq!(a.status, 403);
    let rec = r.p.trace_find(|v| v["decision"] == "block");
    assert_eq!(rec["rule"], "loi", "{rec}");
    assert_eq!(rec["path"], "/x/%2e%2e/interdit/page", "{rec}");
}

/// `explain` decides every spelling as the proxy does, for http:// and https:// URLs.
#[test]
fn explain_agrees_with_the_proxy_on_every_spelling() {
    let dir = common::wire::policy_dir(POLICY, &[ILLEGAL]);
    let policy = dir.path().join("policy.yaml");
    let policy = policy.display().to_string();
    let cases = LAW
        .iter()
        .map(|p| (p, "loi"))
        .chain(LESS_READ.iter().map(|p| (p, "loi")))
        .chain(RULE.iter().map(|p| (p, "prive")))
        .chain(ESCAPED.iter().map(|p| (p, "loi")))
        .chain(std::iter::once((&"/ete/été", "loi")));
    for (path, rule) in cases {
        for scheme in ["http", "https"] {
            let target = format!("{scheme}://allowed.test{path}");
            let v = common::explain_json(&["--policy", &policy], &target);
            assert_eq!(v["rule"], rule, "{target}: {v:#}");
            assert_eq!(v["decision"], "block", "{target}: {v:#}");
        }
    }
    for path in ALLOWED {
        let target = format!("http://allowed.test{path}");
        let v = common::explain_json(&["--policy", &policy], &target);
        assert_eq!(v["decision"], "allow", "{target}: {v:#}");
    }
}
