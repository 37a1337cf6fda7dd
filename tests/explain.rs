//! `charte-proxy explain` on the shipped policy: the charter's answer for an agent on the
//! sites the issue names, and spellings meant to slip through (case, trailing dot, port,
//! punycode, IP forms, user@host).

mod common;

use common::{explain_json, run};
use serde_json::Value;

fn names(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// (target, method, rule, action, decision, inspection, category that must be found)
type Expected = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

const CHARTER: &[Expected] = &[
    // §6.5 generative AI: reading allowed, sending refused
    (
        "chatgpt.com",
        "GET",
        Some("ia-generative"),
        "block-upload",
        "allow",
        "inspect",
        "ai",
    ),
    (
        "chatgpt.com",
        "POST",
        Some("ia-generative"),
        "block-upload",
        "block",
        "inspect",
        "ai",
    ),
    (
        "https://api.openai.com/v1/files",
        "POST",
        Some("ia-generative"),
        "block-upload",
        "block",
        "inspect",
        "ai",
    ),
    (
        "chat.openai.com",
        "GET",
        Some("ia-generative"),
        "block-upload",
        "allow",
        "inspect",
        "ai",
    ),
    // §5.9 personal cloud
    (
        "https://drive.google.com/drive/my-drive",
        "GET",
        Some("cloud-personnel"),
        "block-upload",
        "allow",
        "inspect",
        "cloud-storage",
    ),
    (
        "drive.google.com",
        "PUT",
        Some("cloud-personnel"),
        "block-upload",
        "block",
        "inspect",
        "cloud-storage",
    ),
    (
        "wetransfer.com",
        "GET",
        Some("cloud-personnel"),
        "block-upload",
        "allow",
        "inspect",
        "cloud-storage",
    ),
    (
        "wetransfer.com",
        "POST",
        Some("cloud-personnel"),
        "block-upload",
        "block",
        "inspect",
        "cloud-storage",
    ),
    (
        "www.dropbox.com",
        "GET",
        Some("cloud-personnel"),
        "block-upload",
        "allow",
        "inspect",
        "cloud-storage",
    ),
    (
        "www.dropbox.com",
        "POST",
        Some("cloud-personnel"),
        "block-upload",
        "block",
        "inspect",
        "cloud-storage",
    ),
    // §6.3 illegal content and recreational use: blocked with reason
    (
        "14words.com",
        "GET",
        Some("interdits-par-la-loi"),
        "block",
        "block",
        "inspect",
        "agressif",
    ),
    (
        "http://www.0-casino.info/",
        "GET",
        Some("jeux-argent"),
        "block",
        "block",
        "inspect",
        "gambling",
    ),
    // §6.3 banking and health: tunnelled untouched
    (
        "www.ameli.fr",
        "GET",
        None,
        "allow",
        "allow",
        "tunnel",
        "health",
    ),
    (
        "https://www.doctolib.fr/medecin-generaliste",
        "GET",
        None,
        "allow",
        "allow",
        "tunnel",
        "health",
    ),
    (
        "www.labanquepostale.fr",
        "GET",
        None,
        "allow",
        "allow",
        "tunnel",
        "bank",
    ),
    // §5.9 approved cloud
    (
        "cu-arras-my.sharepoint.com",
        "POST",
        Some("cloud-approuve"),
        "allow",
        "allow",
        "inspect",
        "approved-cloud",
    ),
    // Another organisation's SharePoint is not the town's tenant: no upload.
    (
        "other-my.sharepoint.com",
        "POST",
        Some("cloud-personnel"),
        "block-upload",
        "block",
        "inspect",
        "cloud-storage",
    ),
    (
        "pastebin.com",
        "POST",
        Some("cloud-personnel"),
        "block-upload",
        "block",
        "inspect",
        "paste",
    ),
    (
        "www.deepl.com",
        "POST",
        Some("ia-generative"),
        "block-upload",
        "block",
        "inspect",
        "ai",
    ),
    (
        "teams.microsoft.com",
        "POST",
        Some("cloud-approuve"),
        "allow",
        "allow",
        "inspect",
        "approved-cloud",
    ),
];

#[test]
fn charter_answers_for_an_agent() {
    for (target, method, rule, action, decision, inspection, category) in CHARTER {
        let v = explain_json(&["--ip", "10.2.3.4", "--method", method], target);
        let ctx = format!("{target} {method}: {v:#}");
        assert_eq!(v["rule"].as_str(), *rule, "{ctx}");
        assert_eq!(v["action"], *action, "{ctx}");
        assert_eq!(v["decision"], *decision, "{ctx}");
        assert_eq!(v["inspection"], *inspection, "{ctx}");
        assert!(
            names(&v, "categories").contains(&category.to_string()),
            "{ctx}"
        );
        assert_eq!(v["groups"], serde_json::json!(["agents"]), "{ctx}");
        let reason = v["reason"].as_str().unwrap();
        if *decision == "block" {
            assert!(
                reason.contains("charte §"),
                "a block reason cites the charter: {ctx}"
            );
        }
    }
}

#[test]
fn blocked_reasons_are_the_rules_own_words() {
    let v = explain_json(&[], "14words.com");
    assert_eq!(v["reason_code"], "block-rule");
    assert_eq!(
        v["reason"],
        "Site dont l'accès est interdit par la loi : contenu haineux, discriminatoire ou incitant à la violence (charte §6.3)"
    );
    assert_eq!(
        v["overridable"], false,
        "the law cannot be overridden by a request"
    );
    assert_eq!(v["categories"][0]["entry"], "14words.com");
    let v = explain_json(&["--lang", "en"], "14words.com");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("Access to this site is forbidden by law")
    );
    let v = explain_json(&["--method", "POST"], "wetransfer.com");
    assert_eq!(v["reason_code"], "block-upload");
    assert_eq!(v["overridable"], true);
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("(charte §5.9) : utilisez OneDrive, Teams ou SharePoint")
    );
}

#[test]
fn an_unlisted_site_gets_the_default() {
    let v = explain_json(&[], "https://www.example.org/some/page");
    assert_eq!(v["rule"], Value::Null);
    assert_eq!(v["action"], "allow");
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["reason_code"], "allow-default");
    assert_eq!(v["inspection"], "inspect");
    assert!(v["categories"].as_array().unwrap().is_empty());
    assert_eq!(v["registrable_domain"], "example.org");
}

#[test]
fn block_upload_refuses_a_tunnel_that_cannot_be_inspected() {
    // Guests are never inspected: a block-upload site is refused as a whole tunnel.
    let v = explain_json(&["--ip", "192.168.100.20"], "chatgpt.com");
    assert_eq!(v["groups"], serde_json::json!(["invites"]));
    assert_eq!(v["inspection"], "tunnel");
    assert_eq!(v["seen_as"], "tunnel");
    assert_eq!(v["method"], "CONNECT");
    assert_eq!(v["decision"], "block");
    assert_eq!(v["reason_code"], "block-upload-tunnel");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("ne peut pas distinguer la lecture de l'envoi")
    );
    // An agent's CONNECT to the same site is let through, to be decided request by request.
    let v = explain_json(&["--method", "CONNECT"], "chatgpt.com");
    assert_eq!(
        (v["decision"].as_str(), v["inspection"].as_str()),
        (Some("allow"), Some("inspect"))
    );
}

#[test]
fn groups_from_users_change_the_decision_and_report_mode_records_would_block() {
    let v = explain_json(&[], "www.facebook.com");
    assert_eq!(
        v["rule"],
        Value::Null,
        "report-mode rules decide nothing: {v:#}"
    );
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["would_block"]["rule"], "reseaux-sociaux");
    let v = explain_json(&["--user", "c.martin"], "www.facebook.com");
    assert_eq!(v["groups"], serde_json::json!(["agents", "communication"]));
    assert_eq!(v["rule"], "communication-reseaux-sociaux");
    assert_eq!(v["would_block"], Value::Null);
}

#[test]
fn spellings_meant_to_slip_through_are_caught() {
    let agressif_ip: std::net::Ipv4Addr = "118.123.4.224".parse().unwrap();
    let decimal = u32::from(agressif_ip).to_string();
    let hex = format!("0x{:08x}", u32::from(agressif_ip));
    let cases: Vec<(String, &str, &str)> = vec![
        ("14WORDS.COM".into(), "14words.com", "interdits-par-la-loi"),
        ("14words.com.".into(), "14words.com", "interdits-par-la-loi"),
        (
            "14words.com:8443".into(),
            "14words.com",
            "interdits-par-la-loi",
        ),
        (
            "HTTPS://WWW.14Words.Com.:443/x".into(),
            "www.14words.com",
            "interdits-par-la-loi",
        ),
        (
            "ｗｗｗ．１４ｗｏｒｄｓ．ｃｏｍ".into(),
            "www.14words.com",
            "interdits-par-la-loi",
        ),
        // IDN written in Unicode matches the punycode entry of the list
        (
            "bästacasinobonusar.nu".into(),
            "xn--bstacasinobonusar-qqb.nu",
            "jeux-argent",
        ),
        (
            "BÄSTACASINOBONUSAR.NU".into(),
            "xn--bstacasinobonusar-qqb.nu",
            "jeux-argent",
        ),
        (
            "xn--bstacasinobonusar-qqb.nu".into(),
            "xn--bstacasinobonusar-qqb.nu",
            "jeux-argent",
        ),
        // IPv4 in other spellings
        (decimal, "118.123.4.224", "interdits-par-la-loi"),
        (hex, "118.123.4.224", "interdits-par-la-loi"),
        (
            "0x76.0173.4.224".into(),
            "118.123.4.224",
            "interdits-par-la-loi",
        ),
        (
            "http://118.8062176/".into(),
            "118.123.4.224",
            "interdits-par-la-loi",
        ),
    ];
    for (target, host, rule) in &cases {
        let v = explain_json(&[], target);
        assert_eq!(v["host"], *host, "{target}: {v:#}");
        assert_eq!(v["rule"], *rule, "{target}: {v:#}");
        assert_eq!(v["decision"], "block", "{target}");
    }
    // IPv6 is canonical
    let v = explain_json(&[], "[2001:DB8:0::1]:443");
    assert_eq!(v["host"], "2001:db8::1");
}

#[test]
fn invalid_targets_are_errors_not_misses() {
    for target in [
        "http://user@14words.com/",
        "exa mple.com",
        "a..b.com",
        "http://[::1",
        "ftp://14words.com/",
        "14words.com:99999",
    ] {
        let r = run(&["explain", target]);
        assert_eq!(r.code, 2, "{target}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.starts_with("error: "), "{target}: {}", r.stderr);
    }
}

#[test]
fn text_output_shows_every_rule_and_the_decision() {
    let r = run(&["explain", "--ip", "10.0.0.9", "https://www.ameli.fr/assure"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = r.stdout;
    assert!(
        out.contains("Categories   health (Santé) by entry ameli.fr"),
        "{out}"
    );
    assert!(
        out.contains("Inspection   tunnel: never decrypted"),
        "{out}"
    );
    assert!(out.contains("Seen as      CONNECT tunnel"), "{out}");
    assert!(out.contains("✗ interdits-par-la-loi"), "{out}");
    assert!(
        out.contains("Decision     allow by the default → CONNECT ALLOW"),
        "{out}"
    );
}

#[test]
fn url_entries_match_only_where_the_path_is_seen() {
    // phishing/malware lists are host/path entries (UT1 `urls` files)
    let v = explain_json(&[], "https://0001-5cf.pages.dev/awards/2024");
    assert_eq!(v["rule"], "securite", "{v:#}");
    assert_eq!(v["decision"], "block");
    assert!(
        v["categories"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["entry"] == "0001-5cf.pages.dev/awards"),
        "{v:#}"
    );
    // Another path on the same host is not listed.
    let v = explain_json(&[], "https://0001-5cf.pages.dev/contact");
    assert_eq!(v["rule"], Value::Null, "{v:#}");
    // The tunnel alone shows no path: the URL rule cannot match it.
    let v = explain_json(&["--method", "CONNECT"], "0001-5cf.pages.dev");
    assert_eq!(v["decision"], "allow", "{v:#}");
}

/// What an administrator reads, whole, for the test policy (its categories are fixed
/// files, so the output is too): a change to the layout or the words shows here.
#[test]
fn explain_output_as_people_read_it() {
    let policy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/proxy-policy.yaml"
    );
    for (name, args) in [
        (
            "agent_gambling",
            &["--ip", "127.0.0.2", "http://casino-royal.example/mise"][..],
        ),
        (
            "ai_upload",
            &[
                "--ip",
                "127.0.0.9",
                "--method",
                "POST",
                "https://chat.example/api",
            ][..],
        ),
        ("bank_tunnel", &["https://mabanque.example/compte"][..]),
        (
            "law_english",
            &["--lang", "en", "--user", "c.martin", "hate.example"][..],
        ),
    ] {
        let mut a = vec!["explain", "--policy", policy];
        a.extend_from_slice(args);
        let r = run(&a);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        insta::assert_snapshot!(format!("explain_{name}"), r.stdout);
        a.insert(1, "--json");
        let r = run(&a);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        insta::assert_snapshot!(format!("explain_{name}_json"), r.stdout);
    }
}

/// `--at` shows the decision at a time: the town's wall-clock time as written, or an
/// RFC 3339 instant turned into the zone of the server file (Europe/Paris without one).
#[test]
fn explain_at_a_time_inside_and_outside_a_schedule() {
    let policy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/schedule-policy.yaml"
    );
    let explain = |extra: &[&str]| {
        let mut a = vec!["explain", "--policy", policy];
        a.extend_from_slice(extra);
        a.push("casino-royal.example");
        let r = run(&a);
        assert_eq!(r.code, 0, "{extra:?}: {}", r.stderr);
        r.stdout
    };
    // Monday 7 December 2026.
    let lunch = explain(&["--at", "2026-12-07T12:30"]);
    insta::assert_snapshot!("explain_schedule_lunch", lunch);
    let morning = explain(&["--at", "2026-12-07T11:59"]);
    insta::assert_snapshot!("explain_schedule_morning", morning);

    let json = |extra: &[&str]| {
        let mut a = vec!["--policy", policy];
        a.extend_from_slice(extra);
        explain_json(&a, "casino-royal.example")
    };
    for (at, want_rule, want_at) in [
        // Summer: 10:30 UTC is 12:30 in Paris.
        (
            "2026-07-06T10:30:00Z",
            "jeux-midi",
            "Monday 2026-07-06 12:30 (Europe/Paris)",
        ),
        // Winter: 11:30 UTC is 12:30 in Paris, 10:30 UTC only 11:30.
        (
            "2026-12-07T11:30:00Z",
            "jeux-midi",
            "Monday 2026-12-07 12:30 (Europe/Paris)",
        ),
        (
            "2026-12-07T10:30:00Z",
            "jeux",
            "Monday 2026-12-07 11:30 (Europe/Paris)",
        ),
        // Saturday lunch is not a weekday's.
        (
            "2026-12-12 12:30",
            "jeux",
            "Saturday 2026-12-12 12:30 (Europe/Paris)",
        ),
    ] {
        let v = json(&["--at", at]);
        assert_eq!(
            (v["rule"].as_str(), v["at"].as_str()),
            (Some(want_rule), Some(want_at)),
            "{at}"
        );
    }

    // The server file's time zone: 08:30 UTC is 12:30 in La Réunion.
    let dir = tempfile::tempdir().unwrap();
    let server = dir.path().join("server.yaml");
    std::fs::write(&server, "time_zone: Indian/Reunion\n").unwrap();
    let server = server.to_str().unwrap();
    let v = json(&[
        "--config",
        server,
        "--offline",
        "--at",
        "2026-12-07T08:30:00Z",
    ]);
    assert_eq!(v["rule"], "jeux-midi", "{v}");
    assert_eq!(v["at"], "Monday 2026-12-07 12:30 (Indian/Reunion)");
    let v = json(&["--at", "2026-12-07T08:30:00Z"]);
    assert_eq!(v["rule"], "jeux", "{v}");

    // Without --at: now, shown because the policy has a schedule.
    let v = json(&[]);
    assert!(v["at"].as_str().unwrap().ends_with("(Europe/Paris)"), "{v}");

    let r = run(&[
        "explain",
        "--policy",
        policy,
        "--at",
        "midi",
        "casino-royal.example",
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("--at \"midi\": not a time"),
        "{}",
        r.stderr
    );
}

/// `explain` says which tenant-restriction headers the proxy would add, and only where
/// it would: for the group named, on a request it sees in clear.
#[test]
fn explain_names_the_tenant_restriction_headers_it_would_add() {
    let policy = ["-p", "tests/fixtures/broken/tenant-not-inspected.yaml"];
    let mut args = policy.to_vec();
    args.extend(["--ip", "10.1.2.3"]);
    let v = explain_json(&args, "https://www.youtube.com/watch");
    assert_eq!(
        v["adds_headers"],
        serde_json::json!([["youtube-restrict", "Moderate"]]),
        "{v:#}"
    );
    // `invites` is never inspected: nothing can be added.
    let mut args = policy.to_vec();
    args.extend(["--ip", "192.168.100.5"]);
    let v = explain_json(&args, "https://www.youtube.com/watch");
    assert!(v.get("adds_headers").is_none(), "{v:#}");
    // The sign-in host is in `no_inspect`: a tunnel, nothing added.
    let mut args = policy.to_vec();
    args.extend(["--ip", "10.1.2.3"]);
    let v = explain_json(&args, "https://login.microsoftonline.com/");
    assert!(v.get("adds_headers").is_none(), "{v:#}");
}
