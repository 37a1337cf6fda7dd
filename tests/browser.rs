//! A real browser through the proxy: headless Chromium (Debian's `chromium`, installed by
//! tests/run.sh) trusting the test organisation CA through its own NSS store, loads an
//! allowed HTTPS page and, for a blocked HTTPS page, shows the block page with its unblock
//! button. Checked on the page's text (`--dump-dom`).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::proxy::{Proxy, copy_dir};
use common::tls::{HttpsUpstream, TestCa};

const POLICY: &str = r#"
version: 1
categories: [categories]
no_inspect:
  categories: [bank]
rules:
  - id: jeux
    categories: [gambling]
    action: block
    reason: {fr: "Jeux d'argent : usage privé (charte §6.1)", en: "Gambling: private use (charter §6.1)"}
default: allow
"#;

fn chromium() -> &'static str {
    for c in ["chromium", "chromium-browser"] {
        if Command::new(c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return c;
        }
    }
    panic!("Chromium is needed: run the suite with tests/run.sh, which installs it");
}

/// Trusts `ca_pem` in the NSS store Chromium reads under `home`.
fn trust(home: &Path, ca_pem: &Path) {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db = format!("sql:{}", db.display());
    let ok = Command::new("certutil")
        .args(["-N", "--empty-password", "-d", &db])
        .status()
        .expect("certutil is installed (libnss3-tools, by tests/run.sh)")
        .success();
    assert!(ok, "certutil -N");
    let ok = Command::new("certutil")
        .args([
            "-A",
            "-t",
            "C,,",
            "-n",
            "charte-proxy test CA",
            "-d",
            &db,
            "-i",
        ])
        .arg(ca_pem)
        .status()
        .unwrap()
        .success();
    assert!(ok, "certutil -A");
}

/// The DOM of `url` as headless Chromium renders it through `proxy`.
fn dump_dom(browser: &str, home: &Path, proxy: &Proxy, url: &str, lang: &str) -> String {
    let mut child = Command::new(browser)
        .env("HOME", home)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--lang={lang}"))
        .arg(format!("--accept-lang={lang}"))
        .arg(format!(
            "--user-data-dir={}",
            home.join("profile").display()
        ))
        .arg(format!("--proxy-server=http://{}", proxy.proxy))
        .arg("--dump-dom")
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("Chromium did not finish loading {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn chromium_loads_an_allowed_https_page_and_shows_the_block_page_for_a_blocked_one() {
    let browser = chromium();
    let up_ca = TestCa::new("Test upstream root");
    let up = HttpsUpstream::start(&up_ca.leaf(&["allowed.test", "casino-royal.example"]));
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/categories"),
        &dir.path().join("categories"),
    );
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let up_pem = dir.path().join("upstream-root.pem");
    up_ca.write_pem(&up_pem);
    let up_pem = up_pem.display().to_string();
    let port = up.port().to_string();
    let mut args = common::proxy::pins();
    args.extend([
        "--upstream-ca".into(),
        up_pem,
        "--connect-port".into(),
        port,
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = Proxy::start_in(dir, &refs);

    let home = tempfile::tempdir().unwrap();
    trust(home.path(), &p.path("data/ca/ca.pem"));

    // Allowed: the site's own content, over a bumped tunnel the browser trusts.
    let url = format!("https://allowed.test:{}/small", up.port());
    let dom = dump_dom(browser, home.path(), &p, &url, "fr");
    assert!(dom.contains("hello"), "the allowed page: {dom}");
    let t = p.trace_find(|v| v["host"] == "allowed.test" && v["path"] == "/small");
    assert_eq!(
        (t["status"].as_u64(), t["scheme"].as_str()),
        (Some(200), Some("https"))
    );

    // Blocked: the block page, in French, with its button to ask for the site.
    let url = format!("https://casino-royal.example:{}/small", up.port());
    let dom = dump_dom(browser, home.path(), &p, &url, "fr");
    assert!(dom.contains("casino-royal.example"), "{dom}");
    assert!(
        dom.contains("Jeux d'argent : usage privé (charte §6.1)"),
        "{dom}"
    );
    assert!(dom.contains("/demande?token="), "the unblock button: {dom}");
    assert!(!dom.contains("hello"), "{dom}");
    // English when the browser asks for it.
    let dom = dump_dom(browser, home.path(), &p, &url, "en-US");
    assert!(
        dom.contains("Gambling: private use (charter §6.1)"),
        "{dom}"
    );
    let t = p.trace_find(|v| v["host"] == "casino-royal.example" && v["path"] == "/small");
    assert_eq!(
        (t["decision"].as_str(), t["rule"].as_str()),
        (Some("block"), Some("jeux"))
    );
}
