//! `categories compile` and `classify`: the compiled index file beside the policy, used
//! in place by `check`, `classify` and the proxy while it matches the lists, and set
//! aside (with a warning) as soon as a list changes.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;

use common::proxy::{Proxy, Upstream, curl};

fn setup() -> tempfile::TempDir {
    common::proxy::fixture_dir()
}

/// Runs `classify` on `input`; returns stdout.
fn classify(dir: &Path, input: &str) -> String {
    let mut child = common::bin()
        .current_dir(dir)
        .args(["classify", "--policy", "policy.yaml"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn run_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = common::bin().current_dir(dir).args(args).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const INPUT: &str = "casino-royal.example\n\
    WWW.Casino-Royal.example.\n\
    http://poker.example/tables?x=1 10.0.0.1/- - GET\n\
    unknown.test\n\
    a..b\n";

const EXPECTED: &str = "casino-royal.example\tgambling\n\
    www.casino-royal.example\tgambling\n\
    poker.example\tgambling\n\
    unknown.test\t-\n\
    a..b\t?\n";

#[test]
fn compile_then_classify_check_and_serve_from_the_mapped_index() {
    let dir = setup();
    let d = dir.path().to_path_buf();
    let d = d.as_path();
    // From the text lists.
    assert_eq!(classify(d, INPUT), EXPECTED);
    let (code, out, _) = run_in(d, &["check", "--policy", "policy.yaml"]);
    assert_eq!(code, 0);
    assert!(out.contains("read from the text lists"), "{out}");

    // Compiled: one file beside the policy, used in place, same answers.
    let (code, _, err) = run_in(d, &["categories", "compile", "--policy", "policy.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("compiled") && err.contains("policy.idx"),
        "{err}"
    );
    assert!(d.join("policy.idx").is_file());
    let (code, out, err) = run_in(d, &["check", "--policy", "policy.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("from the compiled index"), "{out}");
    assert!(!err.contains("stale-index"), "{err}");
    assert_eq!(classify(d, INPUT), EXPECTED);

    // A long stream (many chunks, several workers) comes back whole and in order, even
    // with a line longer than a chunk and no newline at the end.
    let mut long = String::new();
    for i in 0..60_000 {
        long.push_str(&format!("h{i}.casino-royal.example\nq{i}.unknown.test\n"));
    }
    long.push_str(&format!("{}.example\n", "a".repeat(63)));
    long.push_str(&format!("http://x.example/{}\n", "p".repeat(300_000)));
    long.push_str("poker.example");
    let out = classify(d, &long);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 120_003);
    for (i, pair) in lines[..120_000].chunks(2).enumerate() {
        assert_eq!(pair[0], format!("h{i}.casino-royal.example\tgambling"));
        assert_eq!(pair[1], format!("q{i}.unknown.test\t-"));
    }
    assert_eq!(lines[120_001], "x.example\t-");
    assert_eq!(lines[120_002], "poker.example\tgambling");

    // The proxy maps it and blocks from it.
    let up = Upstream::start();
    let pins = common::proxy::pins();
    let p = Proxy::start_in(dir, &pins.iter().map(String::as_str).collect::<Vec<_>>());
    let d = p.dir.path();
    let health: serde_json::Value = serde_json::from_str(&p.admin_get("/health")).unwrap();
    assert!(
        health["compiled_index"]
            .as_str()
            .is_some_and(|f| f.ends_with("policy.idx")),
        "{health}"
    );
    let (_, code, _) = curl(&[
        "-x",
        &p.url(),
        "--interface",
        "127.0.0.2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://casino-royal.example:{}/small", up.port()),
    ]);
    assert_eq!(code, "403");

    // A list changes: the file is set aside with a warning saying what to run, and the
    // text lists give the new answer.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(d.join("categories/gambling/domains"))
        .unwrap();
    writeln!(f, "nouveau-casino.example").unwrap();
    drop(f);
    let (code, out, err) = run_in(d, &["check", "--policy", "policy.yaml"]);
    assert_eq!(code, 0, "{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("stale-index") && all.contains("categories compile"),
        "{all}"
    );
    assert!(classify(d, "nouveau-casino.example\n").contains("\tgambling"));

    // A damaged file is refused the same way, never crashes a load.
    std::fs::write(d.join("policy.idx"), b"CHARTIX\x01garbage").unwrap();
    let (code, out, err) = run_in(d, &["check", "--policy", "policy.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(format!("{out}{err}").contains("stale-index"));
}
