//! The example HAProxy configuration for several proxies (`deploy/haproxy.cfg`, README
//! "Several proxies"): HAProxy itself checks it, as written and with each commented
//! alternative turned on, and it keeps saying what it cannot do.

use std::path::Path;
use std::process::Command;

fn shipped() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy.cfg"))
        .unwrap()
}

/// `haproxy -c` on `text`: valid, and without a warning.
fn haproxy_check(name: &str, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("haproxy runs (package haproxy, installed by tests/run.sh)");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && all.contains("Configuration file is valid"),
        "haproxy -c {name}: {all}"
    );
    assert!(
        !all.contains("[WARNING]") && !all.contains("[ALERT]"),
        "haproxy -c {name}: {all}"
    );
}

/// `text` with the commented line `line` (without its `# `) turned on.
fn uncomment(text: &str, line: &str) -> String {
    let commented = text
        .lines()
        .find(|l| l.trim_start().trim_start_matches('#').trim() == line)
        .unwrap_or_else(|| panic!("no commented `{line}` in deploy/haproxy.cfg"));
    assert!(commented.trim_start().starts_with('#'), "{commented}");
    text.replace(commented, &format!("    {line}"))
}

#[test]
fn the_haproxy_example_passes_haproxy_check_with_each_alternative() {
    let cfg = shipped();
    for want in [
        "mode tcp",
        "bind :3128",
        "balance source",
        "timeout tunnel",
        "check",
    ] {
        assert!(cfg.contains(want), "deploy/haproxy.cfg lacks {want}");
    }
    // charte-proxy does not read the PROXY protocol: the file must not send it.
    assert!(
        !cfg.lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("send-proxy")),
        "send-proxy would break every request"
    );
    haproxy_check("haproxy.cfg", &cfg);
    haproxy_check(
        "transparent.cfg",
        &uncomment(&cfg, "source 0.0.0.0 usesrc clientip"),
    );
    let http_check = uncomment(
        &uncomment(&cfg, "option httpchk GET /healthz"),
        "default-server check port 3130 inter 2s fall 3 rise 2",
    );
    haproxy_check("healthz.cfg", &http_check);
}
