//! `charte-proxy check` and the command line as a process: the shipped policy passes,
//! every broken-policy fixture gives its exact diagnostics (snapshots), exit codes.

mod common;

use common::run;

#[test]
fn shipped_policy_passes_check_with_a_summary() {
    let r = run(&["check"]);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(
        r.stdout.contains("policies/charte.yaml: OK, 0 warnings"),
        "{}",
        r.stdout
    );
    for needle in [
        "Groups (3):",
        "agents",
        "communication",
        "invites",
        "Rules (",
        "interdits-par-la-loi",
    ] {
        assert!(
            r.stdout.contains(needle),
            "summary lacks {needle:?}:\n{}",
            r.stdout
        );
    }
    // Every category the charter needs is loaded with entries.
    for cat in [
        "ai",
        "cloud-storage",
        "approved-cloud",
        "bank",
        "health",
        "agressif",
        "gambling",
    ] {
        let line = r
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(cat))
            .unwrap_or_else(|| panic!("category {cat} missing from the summary:\n{}", r.stdout));
        let count: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(count > 0, "category {cat} has no domain: {line}");
    }
    assert!(
        r.stdout.contains("Never inspected: bank, health"),
        "{}",
        r.stdout
    );
}

/// Runs `check` on a broken fixture and returns exit code and the whole output.
fn check_fixture(name: &str) -> (i32, String) {
    let path = format!("tests/fixtures/broken/{name}.yaml");
    let r = run(&["check", "--quiet", "--policy", &path]);
    (r.code, format!("{}{}", r.stderr, r.stdout))
}

macro_rules! fixture_test {
    ($fn:ident, $name:literal, $code:expr) => {
        #[test]
        fn $fn() {
            let (code, out) = check_fixture($name);
            assert_eq!(code, $code, "{out}");
            insta::assert_snapshot!($name, out);
        }
    };
}

fixture_test!(yaml_syntax_error_points_at_the_place, "yaml-syntax", 2);
fixture_test!(unknown_keys_are_refused_with_suggestions, "unknown-keys", 2);
fixture_test!(
    unknown_group_category_list_suggest_closest,
    "unknown-names",
    2
);
fixture_test!(
    duplicate_rule_id_and_missing_reason,
    "duplicate-and-reason",
    2
);
fixture_test!(
    missing_list_file_and_folder_and_bad_list_lines,
    "missing-files",
    2
);
fixture_test!(bad_values_are_all_reported_at_once, "bad-values", 2);
fixture_test!(
    bad_days_and_hours_of_a_schedule_are_reported_with_the_forms_that_work,
    "bad-schedule",
    2
);
fixture_test!(
    content_detectors_and_file_types_are_checked_with_what_to_write,
    "bad-content",
    2
);
fixture_test!(missing_version, "no-version", 2);
fixture_test!(
    warnings_unreachable_rule_public_suffix_and_bad_category_line,
    "warnings-only",
    0
);
fixture_test!(missing_category_folder_is_one_error, "missing-folder", 2);
fixture_test!(
    tenant_restrictions_never_inspected_are_warned_naming_the_host_and_group,
    "tenant-not-inspected",
    0
);
fixture_test!(
    tenant_restrictions_bad_values_and_combinations_are_all_reported,
    "tenant-bad",
    2
);
fixture_test!(
    tenant_restrictions_v1_and_v2_together_are_refused,
    "tenant-versions",
    2
);
fixture_test!(
    squid_spellings_are_read_with_a_note_and_bad_list_lines_skipped,
    "squid-spellings",
    0
);

/// The one error of a missing category folder, and nothing else: no unknown category
/// for each name the rules and `no_inspect` use, no advice to move rules.
#[test]
fn missing_category_folder_is_reported_once() {
    let (code, out) = check_fixture("missing-folder");
    assert_eq!(code, 2, "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.contains(": error[")).collect();
    assert_eq!(errors.len(), 1, "{out}");
    assert!(errors[0].contains("error[missing-folder]"), "{out}");
    assert!(errors[0].contains("tests/fixtures/nowhere"), "{out}");
    assert!(!out.contains("unknown-category"), "{out}");
    assert!(!out.contains("unreachable-rule"), "{out}");
    assert!(out.contains(": 1 error — the policy is not valid"), "{out}");
}

/// A bad line of a list file is a warning naming file:line and is skipped (the help
/// says so, and the policy loads); the file's other lines are in force, `*.` ones too.
#[test]
fn bad_list_line_is_skipped_with_a_warning_and_the_rest_applies() {
    let (code, out) = check_fixture("squid-spellings");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "tests/fixtures/lists/broken.txt:2:1: warning[bad-line]: bad entry \"bad entry here\""
        ),
        "{out}"
    );
    assert!(out.contains("the line is skipped"), "{out}");
    assert!(!out.contains("error["), "{out}");
    let policy = ["-p", "tests/fixtures/broken/squid-spellings.yaml"];
    for (target, rule) in [
        ("ok.example", "cassee"),
        ("www.wild.example", "cassee"),
        ("wild.example", "cassee"),
        ("a.blocked.example", "noire"),
        ("blocked.example", "noire"),
        ("other.example", "noire"),
        ("www.allowed.example", "liste-blanche"),
        ("partner.example", "liste-blanche"),
    ] {
        let e = common::explain_json(&policy, target);
        assert_eq!(e["rule"], rule, "{target}: {e}");
    }
}

/// `*.site` and `.site`, in list files and in the policy, are notes (how they are
/// read), not warnings: `--deny-warnings` accepts them.
#[test]
fn squid_spellings_are_notes_not_warnings() {
    let r = run(&[
        "check",
        "-q",
        "--deny-warnings",
        "-p",
        "tests/fixtures/broken/warnings-only.yaml",
    ]);
    assert_eq!(r.code, 2, "the fixture has warnings: {}", r.stderr);
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        "version: 1\nrules:\n  - id: n\n    domains: [\"*.blocked.example\", .other.example]\n    action: block\n    reason: N\n",
    )
    .unwrap();
    let r = run(&[
        "check",
        "-q",
        "--deny-warnings",
        "-p",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stderr, r.stdout);
    assert!(
        r.stderr.contains(
            "note[read-as]: `*.blocked.example` is read as `blocked.example`, which covers `blocked.example` and all its subdomains (at `rules[0].domains[0]`)"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("`.other.example` is read as `other.example`"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("OK, 0 warnings"), "{}", r.stdout);
}

#[test]
fn deny_warnings_turns_warnings_into_failure() {
    let r = run(&[
        "check",
        "-q",
        "--deny-warnings",
        "-p",
        "tests/fixtures/broken/warnings-only.yaml",
    ]);
    assert_eq!(r.code, 2);
}

#[test]
fn missing_policy_file_is_a_config_error() {
    let r = run(&["check", "-p", "tests/fixtures/does-not-exist.yaml"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("tests/fixtures/does-not-exist.yaml: error[io]: cannot read the policy"),
        "{}",
        r.stderr
    );
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["check", "--help"],
        vec!["explain", "--help"],
        vec!["categories", "--help"],
        vec!["categories", "import", "--help"],
        vec!["categories", "list", "--help"],
        vec!["serve", "--help"],
        vec!["users", "--help"],
        vec!["ca", "--help"],
        vec!["ca", "init", "--help"],
        vec!["ca", "show", "--help"],
    ] {
        let r = run(&args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        assert!(r.stdout.contains("Usage:"), "{args:?}: {}", r.stdout);
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["no-such-command"]).code, 2);
    assert_eq!(run(&["explain"]).code, 2, "TARGET is required");
    assert_eq!(
        run(&["explain", "--ip", "not-an-ip", "example.com"]).code,
        2
    );
}

#[test]
fn runtime_failure_exits_1() {
    // The destination is a file, so the folder cannot be created.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let r = run(&[
        "categories",
        "import",
        "tests/fixtures/categories",
        "--dest",
        file.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.starts_with("error:"), "{}", r.stderr);
}

#[test]
fn categories_import_copies_a_tree_that_then_loads() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("imported");
    let r = run(&[
        "categories",
        "import",
        "tests/fixtures/categories",
        "--dest",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("imported 4 categories"), "{}", r.stdout);
    assert!(dest.join("gambling/domains").is_file());
    // A policy naming the imported folder compiles and sees its categories.
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, "version: 1\ncategories: [imported]\nrules:\n  - id: j\n    categories: [gambling]\n    action: block\n    reason: Jeux\n").unwrap();
    let r = run(&["categories", "list", "-p", policy.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.lines().any(|l| l.starts_with("gambling\t2\t0")),
        "{}",
        r.stdout
    );
    // Importing a folder without categories is refused.
    let r = run(&[
        "categories",
        "import",
        "tests/fixtures/lists",
        "--dest",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}
