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

/// The shipped template `name` with `line` at the top of its content block.
fn with_line(name: &str, line: &str) -> String {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("templates")
            .join(name),
    )
    .unwrap();
    let page = shipped.replacen(
        "{% block content %}\n",
        &format!("{{% block content %}}\n{line}\n"),
        1,
    );
    assert_ne!(page, shipped, "{name} has a content block");
    page
}

#[test]
fn an_override_folder_changes_the_portal_form_and_the_admin_list_and_values_stay_escaped() {
    let up = common::proxy::Upstream::start();
    let dir = fixture_dir();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    std::fs::create_dir(dir.path().join("gabarits")).unwrap();
    std::fs::write(
        dir.path().join("gabarits/portal-form.html"),
        with_line(
            "portal-form.html",
            "<p id=\"marqueur-portail\">Formulaire de {{ town }} pour {{ url }}</p>",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("gabarits/admin-pending.html"),
        with_line(
            "admin-pending.html",
            "<p id=\"marqueur-admin\">{{ requests|length }} demande(s) à {{ town }}, vues par {{ admin_name }}</p>",
        ),
    )
    .unwrap();
    let p = Proxy::start_in_with(
        dir,
        "pages: {templates: gabarits, town: \"Ville d'Arras\"}\n",
        &[],
        &["--no-inspect"],
    );

    // The block page's button leads to the overridden form on the portal listener.
    let blocked = block_page(&p, up.port());
    let start = blocked
        .find("/demande?token=")
        .unwrap_or_else(|| panic!("no button: {blocked}"));
    let rest = &blocked[start..];
    let path = rest[..rest.find('"').unwrap()].replace("&amp;", "&");
    let (_, form, _) = common::proxy::curl(&[&format!("http://{}{path}", p.portal)]);
    let url = format!("http://casino-royal.example:{}/jouer", up.port());
    assert!(
        form.contains(&format!(
            "<p id=\"marqueur-portail\">Formulaire de Ville d&#39;Arras pour {url}</p>"
        )),
        "{form}"
    );
    // The rest is the shipped form: its fields, the token, the words.
    for want in [
        "<textarea id=\"justification\" name=\"justification\"",
        "<input type=\"hidden\" name=\"token\" value=\"",
        "<option value=\"7d\">7 jours</option>",
        "Jeux d&#39;argent : usage privé (charte §6.1)",
        "<span>Ville d&#39;Arras</span>",
    ] {
        assert!(form.contains(want), "{want} in: {form}");
    }

    // A hostile justification, then the overridden admin list.
    let token = path.split("token=").nth(1).unwrap();
    let (_, done, _) = common::proxy::curl(&[
        "--data-urlencode",
        &format!("token={token}"),
        "--data-urlencode",
        "justification=\"><script>alert('x')</script>",
        &format!("http://{}/demande", p.portal),
    ]);
    assert!(done.contains("Demande n° 1 enregistrée"), "{done}");
    common::admin::add_admin(&p, "alice", "correct horse");
    let mut admin = common::admin::AdminClient::new(&p);
    assert_eq!(admin.login("alice", "correct horse").status, 303);
    let list = admin.get("/demandes");
    assert_eq!(list.status, 200, "{}", list.body);
    let list = list.body;
    assert!(
        list.contains(
            "<p id=\"marqueur-admin\">1 demande(s) à Ville d&#39;Arras, vues par alice</p>"
        ),
        "{list}"
    );
    assert!(!list.contains("<script"), "{list}");
    assert!(
        list.contains(
            "<div class=\"why\">&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</div>"
        ),
        "{list}"
    );
    // Both forms (decision, logout) still carry the session's token.
    let csrf = common::admin::csrf_of(&list);
    assert_eq!(
        list.matches(&format!("name=\"csrf\" value=\"{csrf}\""))
            .count(),
        2,
        "{list}"
    );
}

#[test]
fn a_broken_portal_or_admin_override_is_refused_with_its_file_and_line() {
    // A syntax error in the portal's form; a variable no admin page has.
    for (name, line, (at, what)) in [
        ("portal-form.html", "<p>{{ url }</p>", (4, "syntax error")),
        (
            "admin-history.html",
            "<p>{{ no_such_value }}</p>",
            (5, "undefined value"),
        ),
    ] {
        let dir = fixture_dir();
        std::fs::create_dir(dir.path().join("gabarits")).unwrap();
        let src = format!(
            "{{% extends \"page.html\" %}}\n{{% block title %}}x{{% endblock %}}\n{{% block content %}}\n{}{line}\n{{% endblock %}}\n",
            "\n".repeat(at - 4)
        );
        std::fs::write(dir.path().join("gabarits").join(name), src).unwrap();
        let d = dir.path();
        std::fs::write(d.join("server.yaml"), "pages:\n  templates: gabarits\n").unwrap();
        let run = common::run(&[
            "check",
            "--policy",
            &d.join("policy.yaml").display().to_string(),
            "--config",
            &d.join("server.yaml").display().to_string(),
        ]);
        assert_ne!(run.code, 0, "{name}");
        let want = format!("{}:{at}:", d.join("gabarits").join(name).display());
        assert!(run.stderr.contains(&want), "{want} in: {}", run.stderr);
        assert!(run.stderr.contains(what), "{what} in: {}", run.stderr);
    }
}

#[test]
fn sighup_with_a_broken_admin_override_keeps_the_previous_pages() {
    let dir = fixture_dir();
    std::fs::create_dir(dir.path().join("gabarits")).unwrap();
    let login = dir.path().join("gabarits/admin-login.html");
    std::fs::write(&login, with_line("admin-login.html", "<p>avant</p>")).unwrap();
    let p = Proxy::start_in_with(
        dir,
        "pages: {templates: gabarits}\n",
        &[],
        &["--no-inspect"],
    );
    assert!(p.admin_get("/connexion").contains("<p>avant</p>"));

    std::fs::write(
        &login,
        with_line("admin-login.html", "<p>{{ t.admin.no_such_word }}</p>"),
    )
    .unwrap();
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
    assert!(log.contains("gabarits/admin-login.html:"), "{log}");
    let page = p.admin_get("/connexion");
    assert!(page.contains("<p>avant</p>"), "{page}");
    assert!(page.contains("name=\"csrf\""), "{page}");
}
