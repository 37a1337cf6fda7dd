//! The pages' templates from the server file (`pages:`): an override folder changes the
//! block page as headless Chromium shows it, with the town's name, logo, IT contact and
//! time zone; a broken override stops the start with its file and line.
//!
//! With `CHARTE_SCREENSHOTS=DIR`, saves `DIR/block-page.png` (the README's picture).

mod common;

use std::path::Path;

use common::proxy::{Proxy, fixture_dir};
use common::webdriver::Driver;

/// A plain shield, as a town's logo might be: inlined by the proxy as a data: URI.
const LOGO_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="64" height="72" viewBox="0 0 64 72"><path d="M4 4h56v30c0 18-14 30-28 34C18 64 4 52 4 34z" fill="#0b4f9c"/><path d="M14 14h36v20c0 12-9 20-18 23-9-3-18-11-18-23z" fill="#f2c200"/><circle cx="32" cy="32" r="8" fill="#8a1116"/></svg>"##;

/// The shipped block page with a line of the town's own, as an override folder holds it.
fn block_override() -> String {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/block.html"))
            .unwrap();
    let marker = "{% block content %}\n<p class=\"notice\" id=\"marqueur\">Page de {{ town }} : \
                  pour toute question, appelez le {{ support.phone }}.</p>\n";
    let page = shipped.replacen("{% block content %}\n", marker, 1);
    assert_ne!(page, shipped, "the shipped block page has a content block");
    page
}

/// Gambling blocked for everyone, with its reason.
const POLICY: &str = r#"
version: 1
categories: [categories]
internal_sites: [127.0.0.0/8]
rules:
  - id: jeux
    categories: [gambling]
    action: block
    reason: {fr: "Jeux d'argent : usage privé (charte §6.1)", en: "Gambling: private use (charter §6.1)"}
default: allow
"#;

const SERVER: &str = r#"
pages:
  templates: gabarits
  town: "Ville d'Arras"
  logo: blason.svg
  support: {phone: "03 21 50 50 50", mail: "support@arras.example"}
time_zone: America/Cayenne
"#;

#[test]
fn an_override_folder_changes_the_block_page_in_chromium() {
    let up = common::proxy::Upstream::start();
    let dir = fixture_dir();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    std::fs::create_dir(dir.path().join("gabarits")).unwrap();
    std::fs::write(dir.path().join("gabarits/block.html"), block_override()).unwrap();
    std::fs::write(dir.path().join("blason.svg"), LOGO_SVG).unwrap();
    let p = Proxy::start_in_with(dir, SERVER, &[], &["--no-inspect"]);

    let browser = Driver::start(&[format!("--proxy-server=http://{}", p.proxy)], "fr");
    browser.goto(&format!("http://casino-royal.example:{}/jouer", up.port()));
    let page = browser.wait_source("the block page", |s| s.contains("Accès bloqué"));
    // The override's own line, with the town and the contact from the server file.
    assert_eq!(
        browser.text("#marqueur"),
        "Page de Ville d'Arras : pour toute question, appelez le 03 21 50 50 50."
    );
    // The rest is still the shipped page, frame and footer included.
    assert!(page.contains("casino-royal.example"), "{page}");
    assert!(
        page.contains("Jeux d'argent : usage privé (charte §6.1)"),
        "{page}"
    );
    assert!(page.contains("<span>Ville d'Arras</span>"), "{page}");
    assert!(
        page.contains("<img src=\"data:image/svg+xml;base64,"),
        "{page}"
    );
    assert!(page.contains("href=\"tel:0321505050\""), "{page}");
    assert!(page.contains("mailto:support@arras.example"), "{page}");
    // The time in the town's zone (Cayenne: UTC-3, no summer time).
    let time = browser.text("time");
    assert!(
        time.ends_with(" -03"),
        "the time in America/Cayenne: {time}"
    );
    if let Some(dir) = std::env::var_os("CHARTE_SCREENSHOTS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        browser.screenshot(&dir.join("block-page.png"));
    }
}

#[test]
fn a_broken_override_stops_the_start_with_its_file_and_line() {
    let dir = fixture_dir();
    std::fs::create_dir(dir.path().join("gabarits")).unwrap();
    let broken =
        "{% extends \"layout.html\" %}\n{% block content %}\n<p>{{ host }</p>\n{% endblock %}\n";
    std::fs::write(dir.path().join("gabarits/block.html"), broken).unwrap();
    std::fs::write(
        dir.path().join("server.yaml"),
        "pages:\n  templates: gabarits\n",
    )
    .unwrap();
    let d = dir.path();
    let data = d.join("data");
    let args = [
        "serve",
        "--config",
        &d.join("server.yaml").display().to_string(),
        "--policy",
        &d.join("policy.yaml").display().to_string(),
        "--data-dir",
        &data.display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--portal-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]
    .map(String::from);
    // Waited for with a deadline: a proxy that starts anyway must fail the test, not hang it.
    let mut child = common::bin()
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the proxy started with a broken template");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let run = common::Run {
        code: code.unwrap_or(-1),
        stdout: String::new(),
        stderr,
    };
    assert_eq!(run.code, 2, "a configuration error; stderr: {}", run.stderr);
    let want = format!("{}:3:", d.join("gabarits/block.html").display());
    assert!(run.stderr.contains(&want), "{want} in: {}", run.stderr);
    assert!(run.stderr.contains("syntax error"), "{}", run.stderr);
    assert!(!data.join("trace.log").exists(), "nothing started");

    // `check --config` says the same, before any restart.
    let run = common::run(&[
        "check",
        "--policy",
        &d.join("policy.yaml").display().to_string(),
        "--config",
        &d.join("server.yaml").display().to_string(),
    ]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains(&want), "{want} in: {}", run.stderr);
}

/// The block page as curl gets it through the proxy.
fn block_page(p: &Proxy, port: u16) -> String {
    let url = format!("http://casino-royal.example:{port}/jouer");
    common::proxy::curl(&["-x", &p.url(), &url]).1
}

#[test]
fn sighup_reloads_the_templates_and_a_broken_set_keeps_the_previous_one() {
    let up = common::proxy::Upstream::start();
    let dir = fixture_dir();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    std::fs::create_dir(dir.path().join("gabarits")).unwrap();
    let block = dir.path().join("gabarits/block.html");
    let page = |word: &str| {
        format!(
            "{{% extends \"layout.html\" %}}\n{{% block content %}}\n<p>{word} {{{{ host }}}}</p>\n{{% endblock %}}\n"
        )
    };
    std::fs::write(&block, page("avant")).unwrap();
    let p = Proxy::start_in_with(
        dir,
        "pages: {templates: gabarits}\n",
        &[],
        &["--no-inspect"],
    );
    assert!(block_page(&p, up.port()).contains("<p>avant casino-royal.example</p>"));

    std::fs::write(&block, page("après")).unwrap();
    p.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !block_page(&p, up.port()).contains("<p>après casino-royal.example</p>") {
        assert!(std::time::Instant::now() < deadline, "not reloaded");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    std::fs::write(&block, "{% block content %}\n{{ host }\n").unwrap();
    p.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !p
        .stderr
        .lock()
        .unwrap()
        .contains("page templates not reloaded")
    {
        assert!(std::time::Instant::now() < deadline, "no error logged");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = p.stderr.lock().unwrap().clone();
    assert!(log.contains("gabarits/block.html:2:"), "{log}");
    assert!(block_page(&p, up.port()).contains("<p>après casino-royal.example</p>"));
}
