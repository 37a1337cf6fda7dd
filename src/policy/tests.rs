//! The policy language's semantics as named table cases: each asserts the verdict, the
//! deciding rule and the reason code. Policies are compiled by the real compiler from
//! small YAML texts over a throw-away category folder.

use std::fs;
use std::net::IpAddr;

use crate::classify::{Classification, Host};
use crate::config::{Diags, compile_str};
use crate::policy::{Inspection, ReasonCode, RequestFacts, Verdict};

struct Fixture {
    _dir: tempfile::TempDir,
    c: crate::config::Compiled,
}

const POLICY: &str = r#"
version: 1
categories: [cats]
groups:
  agents: {networks: [10.0.0.0/8]}
  rh: {users: [a.dupont]}
  invites: {networks: [192.168.100.0/24], inspect: false}
lists:
  noire: [bad.example, "=exact.example"]
  blanche: [ok.casino.example]
no_inspect:
  categories: [bank]
  domains: [pinned.example]
rules:
  - id: noire
    lists: [noire]
    action: block
    reason: Liste noire
  - id: blanche
    lists: [blanche]
    action: allow
  - id: approuve
    approved_requests: true
    action: allow
  - id: essai-jeux
    categories: [games]
    action: block
    mode: report
    reason: Jeux vidéo
  - id: jeux-argent
    categories: [gambling]
    action: block
    overridable: false
    reason: {fr: Jeux d'argent, en: Gambling}
  - id: rh-webdav
    users: [a.dupont]
    methods: [PROPFIND]
    action: allow
  - id: chemin
    urls: [news.example/casino]
    action: block
    reason: Chemin interdit
  - id: ia
    categories: [ai]
    action: block-upload
    reason: IA
  - id: invites-banque
    groups: [invites]
    domains: [mabanque.example]
    action: block
    reason: Pas de banque en invité
default: block
default_reason: Hors liste
"#;

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    for (cat, lines) in [
        ("gambling", "casino.example\n"),
        ("games", "games.example\n"),
        ("ai", "chat.example\n"),
        ("bank", "mabanque.example\n"),
    ] {
        fs::create_dir_all(dir.path().join("cats").join(cat)).unwrap();
        fs::write(dir.path().join("cats").join(cat).join("domains"), lines).unwrap();
    }
    let path = dir.path().join("p.yaml");
    let c = match compile_str(POLICY, &path, Diags::default()) {
        Ok(c) => c,
        Err(d) => panic!("{:#?}", d.items),
    };
    Fixture { _dir: dir, c }
}

struct Case {
    name: &'static str,
    ip: &'static str,
    user: Option<&'static str>,
    host: &'static str,
    path: Option<&'static str>,
    method: &'static str,
    body: bool,
    approved: bool,
    verdict: Verdict,
    rule: Option<&'static str>,
    code: ReasonCode,
}

const fn case(
    name: &'static str,
    host: &'static str,
    verdict: Verdict,
    rule: Option<&'static str>,
    code: ReasonCode,
) -> Case {
    Case {
        name,
        ip: "10.1.1.1",
        user: None,
        host,
        path: Some("/"),
        method: "GET",
        body: false,
        approved: false,
        verdict,
        rule,
        code,
    }
}

use ReasonCode::*;
use Verdict::{Allow, Block};

fn cases() -> Vec<Case> {
    vec![
        case(
            "blacklist matches the domain",
            "bad.example",
            Block,
            Some("noire"),
            RuleBlock,
        ),
        case(
            "blacklist matches subdomains",
            "a.b.bad.example",
            Block,
            Some("noire"),
            RuleBlock,
        ),
        case(
            "a lookalike is not a subdomain",
            "notbad.example",
            Block,
            None,
            DefaultBlock,
        ),
        case(
            "=host matches that host",
            "exact.example",
            Block,
            Some("noire"),
            RuleBlock,
        ),
        case(
            "=host does not match subdomains",
            "www.exact.example",
            Block,
            None,
            DefaultBlock,
        ),
        case(
            "whitelist before the category that would block",
            "ok.casino.example",
            Allow,
            Some("blanche"),
            RuleAllow,
        ),
        case(
            "category blocks with reason",
            "www.casino.example",
            Block,
            Some("jeux-argent"),
            RuleBlock,
        ),
        case(
            "report mode decides nothing; evaluation goes on",
            "games.example",
            Block,
            None,
            DefaultBlock,
        ),
        Case {
            approved: true,
            ..case(
                "approved request opens the site",
                "www.casino.example",
                Allow,
                Some("approuve"),
                RuleAllow,
            )
        },
        Case {
            method: "PROPFIND",
            user: Some("a.dupont"),
            ..case(
                "users and methods both hold",
                "dav.example",
                Allow,
                Some("rh-webdav"),
                RuleAllow,
            )
        },
        Case {
            method: "PROPFIND",
            ..case(
                "users missing: the rule does not match",
                "dav.example",
                Block,
                None,
                DefaultBlock,
            )
        },
        Case {
            user: Some("a.dupont"),
            ..case(
                "methods missing: the rule does not match",
                "dav.example",
                Block,
                None,
                DefaultBlock,
            )
        },
        Case {
            path: Some("/casino/today"),
            ..case(
                "url prefix where the path is visible",
                "news.example",
                Block,
                Some("chemin"),
                RuleBlock,
            )
        },
        Case {
            path: Some("/sports"),
            ..case(
                "other path on the same host",
                "news.example",
                Block,
                None,
                DefaultBlock,
            )
        },
        Case {
            method: "CONNECT",
            path: None,
            ..case(
                "url rules cannot match a tunnel",
                "news.example",
                Block,
                None,
                DefaultBlock,
            )
        },
        case(
            "block-upload lets reading through",
            "chat.example",
            Allow,
            Some("ia"),
            UploadReadAllowed,
        ),
        Case {
            method: "POST",
            body: true,
            ..case(
                "block-upload refuses a body",
                "chat.example",
                Block,
                Some("ia"),
                UploadBlocked,
            )
        },
        Case {
            method: "GET",
            body: true,
            ..case(
                "an upgrade counts as sending",
                "chat.example",
                Block,
                Some("ia"),
                UploadBlocked,
            )
        },
        Case {
            method: "CONNECT",
            path: None,
            ..case(
                "inspected tunnel: decided request by request",
                "chat.example",
                Allow,
                Some("ia"),
                UploadReadAllowed,
            )
        },
        Case {
            ip: "192.168.100.9",
            method: "CONNECT",
            path: None,
            ..case(
                "uninspected tunnel: refused as a whole",
                "chat.example",
                Block,
                Some("ia"),
                UploadTunnelBlocked,
            )
        },
        Case {
            ip: "192.168.100.9",
            ..case(
                "groups from networks",
                "mabanque.example",
                Block,
                Some("invites-banque"),
                RuleBlock,
            )
        },
        case(
            "default blocks with its own reason",
            "elsewhere.example",
            Block,
            None,
            DefaultBlock,
        ),
    ]
}

#[test]
fn table() {
    let f = fixture();
    let mut class = Classification::default();
    let mut scratch = String::new();
    for c in cases() {
        let who =
            f.c.policy
                .groups
                .resolve(c.ip.parse::<IpAddr>().unwrap(), c.user);
        let host = Host::parse(c.host).unwrap();
        f.c.classifier
            .classify(&host, c.path, &mut scratch, &mut class);
        let facts = RequestFacts {
            method: c.method,
            sends_data: c.body,
            path_visible: c.path.is_some(),
            approved: c.approved,
            inspectable: true,
        };
        let d = f.c.policy.decide(&who, &class, &facts);
        let rule = d.rule.map(|r| &*f.c.policy.rule(r).id);
        assert_eq!(
            (d.verdict, rule, d.reason.code),
            (c.verdict, c.rule, c.code),
            "case: {}",
            c.name
        );
    }
}

#[test]
fn reasons_are_worded_from_the_rule_in_both_languages() {
    let f = fixture();
    let p = &f.c.policy;
    let who = p.groups.resolve("10.0.0.1".parse().unwrap(), None);
    let mut class = Classification::default();
    f.c.classifier.classify(
        &Host::parse("casino.example").unwrap(),
        None,
        &mut String::new(),
        &mut class,
    );
    let d = p.decide(&who, &class, &RequestFacts::for_method("GET", true));
    assert_eq!(
        p.reason_text(&d.reason, crate::policy::Lang::Fr),
        "Jeux d'argent"
    );
    assert_eq!(
        p.reason_text(&d.reason, crate::policy::Lang::En),
        "Gambling"
    );
    assert!(!p.overridable(&d), "overridable: false is kept");
    class.clear();
    f.c.classifier.classify(
        &Host::parse("nowhere.example").unwrap(),
        None,
        &mut String::new(),
        &mut class,
    );
    let d = p.decide(&who, &class, &RequestFacts::for_method("GET", true));
    assert_eq!(
        p.reason_text(&d.reason, crate::policy::Lang::Fr),
        "Hors liste"
    );
    assert!(p.overridable(&d));
}

#[test]
fn report_mode_records_would_block() {
    let f = fixture();
    let p = &f.c.policy;
    let who = p.groups.resolve("10.0.0.1".parse().unwrap(), None);
    let mut class = Classification::default();
    f.c.classifier.classify(
        &Host::parse("games.example").unwrap(),
        None,
        &mut String::new(),
        &mut class,
    );
    let d = p.decide(&who, &class, &RequestFacts::for_method("GET", true));
    let (rule, reason) = d.would_block.expect("the report rule would have blocked");
    assert_eq!(&*p.rule(rule).id, "essai-jeux");
    assert_eq!(reason.code, ReasonCode::RuleBlock);
    assert_eq!(
        p.reason_text(&reason, crate::policy::Lang::Fr),
        "Jeux vidéo"
    );
}

#[test]
fn no_inspect_by_category_domain_or_group() {
    let f = fixture();
    let p = &f.c.policy;
    let mut class = Classification::default();
    let agent = p.groups.resolve("10.0.0.1".parse().unwrap(), None);
    let guest = p.groups.resolve("192.168.100.1".parse().unwrap(), None);
    for (host, who, want) in [
        ("www.mabanque.example", &agent, Inspection::Tunnel),
        ("api.pinned.example", &agent, Inspection::Tunnel),
        ("chat.example", &agent, Inspection::Inspect),
        ("chat.example", &guest, Inspection::Tunnel),
    ] {
        f.c.classifier.classify(
            &Host::parse(host).unwrap(),
            None,
            &mut String::new(),
            &mut class,
        );
        assert_eq!(p.inspection(who, &class), want, "{host}");
    }
}

#[test]
fn path_of_a_no_inspect_site_is_never_matched() {
    // Even over plain HTTP, a never-inspected site's path is not looked at.
    let dir = tempfile::tempdir().unwrap();
    let src = "version: 1\nno_inspect: {domains: [bank.example]}\nrules:\n  - id: u\n    urls: [bank.example/transfer]\n    action: block\n    reason: x\n";
    let c = compile_str(src, &dir.path().join("p.yaml"), Diags::default()).unwrap();
    let who = c.policy.groups.resolve("10.0.0.1".parse().unwrap(), None);
    let mut class = Classification::default();
    c.classifier.classify(
        &Host::parse("bank.example").unwrap(),
        Some("/transfer"),
        &mut String::new(),
        &mut class,
    );
    let d = c
        .policy
        .decide(&who, &class, &RequestFacts::for_method("GET", true));
    assert_eq!(
        (d.verdict, d.inspection),
        (Verdict::Allow, Inspection::Tunnel)
    );
}
