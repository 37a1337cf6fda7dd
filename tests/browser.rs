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
internal_sites: [127.0.0.0/8]
no_inspect:
  categories: [bank]
rules:
  - id: jeux
    categories: [gambling]
    action: block
    reason: {fr: "Jeux d'argent : usage privé (charte §6.1)", en: "Gambling: private use (charter §6.1)"}
default: allow
"#;

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
    let browser = common::chromium();
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

const UNBLOCK_POLICY: &str = r#"
version: 1
categories: [categories]
internal_sites: [127.0.0.0/8]
groups:
  agents:
    networks: [127.0.0.1/32]
  elus:
    networks: [127.0.0.3/32]
rules:
  - id: demandes
    approved_requests: true
    action: allow
  - id: jeux
    categories: [gambling]
    action: block
    reason: {fr: "Jeux d'argent : usage privé (charte §6.1)", en: "Gambling: private use (charter §6.1)"}
default: allow
"#;

/// The whole unblock flow in a real browser driven by WebDriver: block page → button →
/// form → acknowledgement; an administrator logs in and approves for the user's group for
/// 7 days; the page loads; another group is still blocked; past the end date it is blocked
/// again. With `CHARTE_SCREENSHOTS=DIR`, saves the screenshots the README shows.
#[test]
fn unblock_flow_end_to_end_in_chromium() {
    use common::webdriver::Driver;
    let shots = std::env::var_os("CHARTE_SCREENSHOTS").map(std::path::PathBuf::from);
    let shot = |d: &Driver, name: &str| {
        if let Some(dir) = &shots {
            std::fs::create_dir_all(dir).unwrap();
            d.screenshot(&dir.join(name));
        }
    };
    let up = common::proxy::Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/categories"),
        &dir.path().join("categories"),
    );
    std::fs::write(dir.path().join("policy.yaml"), UNBLOCK_POLICY).unwrap();
    let mut args = common::proxy::pins();
    args.push("--no-inspect".into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = Proxy::start_in(dir, &refs);
    {
        use std::io::Write as _;
        let mut child = common::bin()
            .args(["admins", "add", "m.durand", "--password-stdin", "--file"])
            .arg(p.path("data/admins"))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "mot de passe solide").unwrap();
        assert!(child.wait().unwrap().success());
    }
    let site = format!("http://casino-royal.example:{}/small", up.port());
    let user = Driver::start(&[format!("--proxy-server=http://{}", p.proxy)], "fr");

    // The agent meets the block page and clicks its button.
    user.goto(&site);
    let page = user.wait_source("the block page", |s| s.contains("Accès bloqué"));
    assert!(
        page.contains("Jeux d'argent : usage privé (charte §6.1)"),
        "{page}"
    );
    shot(&user, "0-page-de-blocage.png");
    user.click("a.button[href*='/demande?token=']");
    let form = user.wait_source("the form", |s| s.contains("<textarea"));
    assert!(
        form.contains("casino-royal.example") && form.contains("gambling"),
        "{form}"
    );
    user.type_into(
        "#justification",
        "Contrôle des sites de paris en ligne pour la police municipale.",
    );
    user.click("#wanted option[value='7d']");
    shot(&user, "1-formulaire.png");
    user.click("form button[type=submit]");
    let done = user.wait_source("the acknowledgement", |s| s.contains("enregistrée"));
    assert!(done.contains("Demande n° 1 enregistrée"), "{done}");
    shot(&user, "2-confirmation.png");

    // An administrator logs in and approves it for the agents, for 7 days.
    let admin = Driver::start(&[], "fr");
    admin.goto(&format!("http://{}/", p.admin));
    admin.wait_source("the login page", |s| s.contains("type=\"password\""));
    admin.type_into("#user", "m.durand");
    admin.type_into("#password", "mot de passe solide");
    admin.click("form button[type=submit]");
    let list = admin.wait_source("the pending list", |s| s.contains("demande-1"));
    assert!(
        list.contains("Contrôle des sites de paris en ligne") && list.contains("jeux"),
        "{list}"
    );
    admin.click("#demande-1 input[value='group:agents']");
    shot(&admin, "3-admin-demandes.png");
    admin.click("#duree-1 option[value='7d']");
    admin.click("#demande-1 button[value=approve]");
    admin.wait_source("the confirmation", |s| {
        s.contains("Décision enregistrée pour la demande n° 1")
    });

    // The same page now loads for the agent; the elected member is still blocked.
    user.goto(&site);
    user.wait_source("the site's own page", |s| s.contains("hello"));
    let (_, code, _) = common::proxy::curl(&[
        "-x",
        &p.url(),
        "--interface",
        "127.0.0.3",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &site,
    ]);
    assert_eq!(code, "403", "another group stays blocked");
    // The agent's own list says until when.
    user.goto(&format!("http://{}/mes-demandes", p.portal));
    let mine = user.wait_source("the user's list", |s| s.contains("Mes demandes"));
    assert!(mine.contains("Approuvée jusqu'au"), "{mine}");
    shot(&user, "4-mes-demandes.png");

    // Past the end date (moved to the past in the store, as a clock would), blocked again.
    let db = rusqlite::Connection::open(p.path("data/requests.db")).unwrap();
    let ended = db
        .execute(
            "UPDATE requests SET until = strftime('%s','now') - 1 WHERE id = 1",
            [],
        )
        .unwrap();
    assert_eq!(ended, 1);
    drop(db);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        user.goto(&site);
        if user.source().contains("Accès bloqué") {
            break;
        }
        assert!(Instant::now() < deadline, "still open after the end date");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(user.current_url().contains("casino-royal.example"));
}
