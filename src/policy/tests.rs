//! The policy language's semantics as named table cases: each asserts the verdict, the
//! deciding rule and the reason code. Policies are compiled by the real compiler from
//! small YAML texts over a throw-away category folder.

use std::fs;
use std::net::IpAddr;

use crate::classify::{Classification, Host};
use crate::config::{Diags, compile_str};
use crate::policy::{Inspection, LocalTime, ReasonCode, RequestFacts, Verdict};

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
            body: c.body,
            path_visible: c.path.is_some(),
            approved: c.approved,
            ..RequestFacts::for_method(c.method, true)
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

/// A policy allowing gambling on weekdays at lunch and at night, blocking it otherwise,
/// over a category folder of its own.
const SCHEDULED: &str = r#"
version: 1
categories: [cats]
rules:
  - id: jeux-midi
    categories: [gambling]
    schedule: {days: [mon-fri], hours: ["12:00-14:00", "22:00-06:00"]}
    action: allow
  - id: jeux-dimanche
    categories: [gambling]
    schedule: {days: [dim]}
    action: allow
  - id: jeux
    categories: [gambling]
    action: block
    reason: Jeux d'argent
default: allow
"#;

fn compile_scheduled(src: &str) -> (tempfile::TempDir, Result<crate::config::Compiled, Diags>) {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("cats/gambling")).unwrap();
    fs::write(dir.path().join("cats/gambling/domains"), "casino.example\n").unwrap();
    let c = compile_str(src, &dir.path().join("p.yaml"), Diags::default());
    (dir, c)
}

/// The deciding rule for casino.example at a town's wall-clock time.
fn rule_at(c: &crate::config::Compiled, local: &str) -> String {
    let who = c.policy.groups.resolve("10.0.0.1".parse().unwrap(), None);
    let mut class = Classification::default();
    c.classifier.classify(
        &Host::parse("casino.example").unwrap(),
        None,
        &mut String::new(),
        &mut class,
    );
    let dt: jiff::civil::DateTime = local.parse().unwrap();
    let facts = RequestFacts::for_method("GET", true).at(LocalTime::of(dt));
    let d = c.policy.decide(&who, &class, &facts);
    d.rule
        .map_or("default".into(), |r| c.policy.rule(r).id.to_string())
}

#[test]
fn a_schedule_holds_inside_its_hours_and_days_only() {
    let (_dir, c) = compile_scheduled(SCHEDULED);
    let c = c.unwrap_or_else(|d| panic!("{:#?}", d.items));
    // 2026-12-07 is a Monday.
    for (at, want) in [
        ("2026-12-07T11:59", "jeux"),
        ("2026-12-07T12:00", "jeux-midi"),
        ("2026-12-07T13:59", "jeux-midi"),
        ("2026-12-07T14:00", "jeux"),
        ("2026-12-07T21:59", "jeux"),
        ("2026-12-07T22:00", "jeux-midi"),
        // Monday night runs into Tuesday morning, until 06:00 excluded.
        ("2026-12-08T05:59", "jeux-midi"),
        ("2026-12-08T06:00", "jeux"),
        // Friday night runs into Saturday; Saturday at lunch is no weekday.
        ("2026-12-12T03:00", "jeux-midi"),
        ("2026-12-12T12:30", "jeux"),
        // Sunday: the whole day (dim), but Sunday night is no weekday night.
        ("2026-12-13T00:00", "jeux-dimanche"),
        ("2026-12-13T23:59", "jeux-dimanche"),
        ("2026-12-14T03:00", "jeux"),
    ] {
        assert_eq!(rule_at(&c, at), want, "at {at}");
    }
}

/// The town's wall clock decides, not the offset: on the days the clocks change in
/// Paris (Sundays 29 March and 25 October 2026), lunch is 12:00-14:00 local on both
/// sides, and the night from Saturday 22:00 to Sunday 06:00 is 7 hours in spring, 9 in
/// autumn.
#[test]
fn a_schedule_follows_the_wall_clock_across_dst_changes() {
    let src = r#"
version: 1
categories: [cats]
rules:
  - id: jeux-midi
    categories: [gambling]
    schedule: {days: [sat-sun], hours: ["12:00-14:00", "22:00-06:00"]}
    action: allow
  - id: jeux
    categories: [gambling]
    action: block
    reason: Jeux d'argent
"#;
    let (_dir, c) = compile_scheduled(src);
    let c = c.unwrap_or_else(|d| panic!("{:#?}", d.items));
    let paris = crate::clock::zone("Europe/Paris").unwrap();
    for (utc, want) in [
        // Spring: summer time (+2) from 02:00 local, so lunch is 10:00-12:00 UTC.
        ("2026-03-29T09:59:00Z", "jeux"),
        ("2026-03-29T10:00:00Z", "jeux-midi"),
        ("2026-03-29T11:59:00Z", "jeux-midi"),
        ("2026-03-29T12:00:00Z", "jeux"),
        // Saturday 22:00 (+1) to Sunday 06:00 (+2): 21:00 to 04:00 UTC.
        ("2026-03-28T20:59:00Z", "jeux"),
        ("2026-03-28T21:00:00Z", "jeux-midi"),
        ("2026-03-29T01:30:00Z", "jeux-midi"),
        ("2026-03-29T03:59:00Z", "jeux-midi"),
        ("2026-03-29T04:00:00Z", "jeux"),
        // Autumn: winter time (+1) from 03:00 local, so lunch is 11:00-13:00 UTC.
        ("2026-10-25T10:59:00Z", "jeux"),
        ("2026-10-25T11:00:00Z", "jeux-midi"),
        ("2026-10-25T12:59:00Z", "jeux-midi"),
        ("2026-10-25T13:00:00Z", "jeux"),
        // Saturday 22:00 (+2) to Sunday 06:00 (+1): 20:00 to 05:00 UTC, 02:30 local
        // twice on the way.
        ("2026-10-24T19:59:00Z", "jeux"),
        ("2026-10-24T20:00:00Z", "jeux-midi"),
        ("2026-10-25T00:30:00Z", "jeux-midi"),
        ("2026-10-25T01:30:00Z", "jeux-midi"),
        ("2026-10-25T04:59:00Z", "jeux-midi"),
        ("2026-10-25T05:00:00Z", "jeux"),
    ] {
        let local = crate::clock::civil(crate::clock::parse_instant(utc).unwrap(), &paris);
        assert_eq!(rule_at(&c, &local.to_string()), want, "at {utc} ({local})");
    }
}

#[test]
fn schedule_errors_name_the_place_and_say_how_to_write_it() {
    let src = r#"version: 1
categories: [cats]
rules:
  - id: a
    schedule: {days: [mon-xyz, lundi], hours: ["25:00-26:00", "12:00-12:00", "midi", "24:00-02:00"]}
    action: allow
  - id: b
    schedule: {hours: []}
    action: allow
  - id: c
    schedule: {}
    action: allow
"#;
    let (_dir, c) = compile_scheduled(src);
    let Err(d) = c else { panic!("compiled") };
    let got: Vec<String> = d
        .errors()
        .map(|e| {
            format!(
                "{}:{} {} {} {}",
                e.line,
                e.col,
                e.code,
                e.key.as_deref().unwrap_or(""),
                e.message
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            r#"5:23 bad-day rules[0].schedule.days[0] unknown day "xyz" in "mon-xyz""#,
            r#"5:48 bad-hours rules[0].schedule.hours[0] no such time of day: "25:00""#,
            r#"5:63 bad-hours rules[0].schedule.hours[1] the range "12:00-12:00" is empty (it starts where it ends)"#,
            r#"5:78 bad-hours rules[0].schedule.hours[2] not a range of hours: "midi""#,
            r#"5:86 bad-hours rules[0].schedule.hours[3] "24:00" can only end a range (it is midnight at the end of the day)"#,
            "8:16 empty-condition rules[1].schedule.hours `schedule.hours` is empty, so rule `b` can never match",
            "11:5 empty-condition rules[2].schedule `schedule` of rule `c` names neither days nor hours",
        ]
    );
    assert!(
        d.errors().all(|e| e.help.is_some()),
        "every error has a help"
    );
}
