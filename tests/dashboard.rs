//! The dashboard ("Tableau de bord") through the real binary: requests made through the
//! proxy (plain allowed and blocked, one inspected, one tunnelled), counted by the
//! trace's writer into the store (flushed every 200 ms here, `CHARTE_REPORT_FLUSH_MS`),
//! and shown to a logged-in administrator: the figures match the requests, people are
//! pseudonymised unless the administrator is in `trace.names_visible_to`, French by
//! default and English on request. Then in headless Chromium: the page loads nothing
//! but itself, and its screenshot goes to docs/screenshots/tableau-de-bord.png.

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use common::admin::{AdminClient, add_admin};
use common::proxy::{Proxy, Upstream, curl, fixture_dir};
use common::tls::{HttpsUpstream, TestCa};

const SERVER: &str = "trace:\n  names_visible_to: [lea]\n";

/// The proxy with the test policy, HTTPS inspection towards `https` (its CA trusted) and
/// the counts flushed every 200 ms.
fn start(https: &HttpsUpstream, up_ca: &TestCa) -> Proxy {
    let dir = fixture_dir();
    let up_pem = dir.path().join("upstream-root.pem");
    up_ca.write_pem(&up_pem);
    let env: [(&'static str, OsString); 1] = [("CHARTE_REPORT_FLUSH_MS", "200".into())];
    let port = https.port().to_string();
    Proxy::start_in_with(
        dir,
        SERVER,
        &env,
        &[
            "--upstream-ca",
            up_pem.to_str().unwrap(),
            "--connect-port",
            &port,
        ],
    )
}

/// The status of `url` fetched through the proxy from the address `from`.
fn fetch(p: &Proxy, url: &str, from: &str, extra: &[&str]) -> String {
    let proxy = p.url();
    let mut args = vec!["-x", &proxy, "--interface", from];
    args.extend_from_slice(extra);
    args.extend(["-o", "/dev/null", "-w", "%{http_code}", url]);
    let (_, code, err) = curl(&args);
    assert!(!code.is_empty(), "{url}: {err}");
    code
}

/// Plain: 3 allowed, 2 blocked by `jeux-agents` (group agents), 1 blocked by `haine`;
/// one request inspected inside a bumped tunnel; one bank tunnel relayed as bytes.
/// 8 requests, 3 blocks.
fn traffic(p: &Proxy, up: &Upstream, https: &HttpsUpstream) {
    let plain = |host: &str| format!("http://{host}:{}/small", up.port());
    for _ in 0..3 {
        assert_eq!(fetch(p, &plain("allowed.test"), "127.0.0.1", &[]), "200");
    }
    for _ in 0..2 {
        assert_eq!(
            fetch(p, &plain("casino-royal.example"), "127.0.0.2", &[]),
            "403"
        );
    }
    assert_eq!(fetch(p, &plain("hate.example"), "127.0.0.1", &[]), "403");
    let ca = p.path("data/ca/ca.pem");
    let ca = ca.to_str().unwrap();
    let bumped = format!("https://allowed.test:{}/small", https.port());
    assert_eq!(fetch(p, &bumped, "127.0.0.1", &["--cacert", ca]), "200");
    // The bank is not inspected: relayed as bytes (its certificate is the upstream's).
    let up_pem = p.path("upstream-root.pem");
    let bank = format!("https://mabanque.example:{}/small", https.port());
    assert_eq!(
        fetch(
            p,
            &bank,
            "127.0.0.1",
            &["--cacert", up_pem.to_str().unwrap()]
        ),
        "200"
    );
}

/// The dashboard, polled until the writer flushed every request (a condition, not a
/// sleep): the share chart's caption gives the total.
fn dashboard_when_counted(c: &mut AdminClient) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = c.get("/tableau-de-bord");
        assert_eq!(a.status, 200, "{}", a.body);
        if a.body.contains("8 requêtes sur 30 jours, dont 3 bloquées") {
            return a.body;
        }
        assert!(Instant::now() < deadline, "never counted: {}", a.body);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `<th scope="row">label</th><td>n</td>…`: a row of a chart's table.
fn row(label: &str, n: &str) -> String {
    format!("<th scope=\"row\">{label}</th><td>{n}</td>")
}

struct Setup {
    p: Proxy,
    _up: Upstream,
    _https: HttpsUpstream,
}

fn setup() -> Setup {
    let up = Upstream::start();
    let up_ca = TestCa::new("Test upstream root");
    let https = HttpsUpstream::start(&up_ca.leaf(&["allowed.test", "mabanque.example"]));
    let p = start(&https, &up_ca);
    traffic(&p, &up, &https);
    add_admin(&p, "lea", "mot de passe de lea");
    add_admin(&p, "marc", "mot de passe de marc");
    Setup {
        p,
        _up: up,
        _https: https,
    }
}

#[test]
fn the_dashboard_shows_what_went_through_with_pseudonyms_unless_names_are_allowed() {
    let s = setup();
    let p = &s.p;

    // Not logged in: to the login page.
    let mut c = AdminClient::new(p);
    let a = c.get("/tableau-de-bord");
    assert_eq!((a.status, a.location.as_str()), (303, "/connexion"));

    // Marc is not in names_visible_to: pseudonyms.
    assert_eq!(c.login("marc", "mot de passe de marc").status, 303);
    let page = dashboard_when_counted(&mut c);
    assert!(page.contains("<h1>Tableau de bord</h1>"), "{page}");
    assert!(
        page.contains("href=\"/tableau-de-bord\""),
        "the nav links it"
    );
    for (label, n) in [
        ("casino-royal.example", "2"),
        ("hate.example", "1"),
        ("jeux-agents", "2"),
        ("haine", "1"),
        ("gambling", "2"),
        ("agents", "2"),
        ("Inspecté (HTTPS déchiffré)", "1"),
        ("En tunnel (non inspecté)", "1"),
        ("HTTP en clair", "6"),
    ] {
        assert!(page.contains(&row(label, n)), "{label} {n}: {page}");
    }
    assert!(page.contains("<td>12,5 %</td>") && page.contains("<td>75,0 %</td>"));
    // This hour: 8 requests, 3 blocked.
    assert!(page.contains("<td>8</td><td>3</td></tr>"), "{page}");
    assert!(
        !page.contains("allowed.test"),
        "allowed sites are not listed"
    );
    assert!(page.contains("pseudonyme stable"), "{page}");
    assert!(
        !page.contains("ip:127.0.0.2") && !page.contains("ip:127.0.0.1"),
        "{page}"
    );
    let pseudonym = page
        .split("<th scope=\"row\">agent-")
        .nth(1)
        .map(|r| format!("agent-{}", &r[..8]))
        .expect("a pseudonym in the people's table");
    assert!(page.contains(&format!("{}</th><td>2</td>", pseudonym)));
    // The same person has the same pseudonym on the next load.
    let again = c.get("/tableau-de-bord").body;
    assert!(again.contains(&pseudonym));

    // Léa is: names (here, the addresses: no proxy authentication).
    let mut lea = AdminClient::new(p);
    assert_eq!(lea.login("lea", "mot de passe de lea").status, 303);
    let page = lea.get("/tableau-de-bord").body;
    assert!(page.contains(&row("ip:127.0.0.2", "2")), "{page}");
    assert!(page.contains(&row("ip:127.0.0.1", "1")), "{page}");
    assert!(page.contains("désignées par leur nom"), "{page}");
    assert!(!page.contains(&pseudonym));

    // English when the browser asks for it.
    let en = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}/tableau-de-bord", p.admin))
        .header("cookie", lea.cookie_header())
        .header("accept-language", "en-GB,en;q=0.9")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(en.contains("<h1>Dashboard</h1>"), "{en}");
    assert!(
        en.contains("8 requests over 30 days, 3 of them blocked"),
        "{en}"
    );
    assert!(en.contains("Most blocked sites, last 30 days"));
    assert!(en.contains(&row("Plain HTTP", "6")) && en.contains("<td>75.0%</td>"));
    assert!(en.contains("shown by name"), "{en}");
}

#[test]
fn chromium_shows_the_dashboard_offline_and_saves_its_screenshot() {
    use common::webdriver::Driver;
    let s = setup();
    let p = &s.p;
    // Counted before the browser looks.
    let mut c = AdminClient::new(p);
    c.login("marc", "mot de passe de marc");
    dashboard_when_counted(&mut c);

    let d = Driver::start(&["--window-size=1200,2200".to_string()], "fr");
    d.goto(&format!("http://{}/", p.admin));
    d.wait_source("the login page", |s| s.contains("type=\"password\""));
    d.type_into("#user", "marc");
    d.type_into("#password", "mot de passe de marc");
    d.click("form button[type=submit]");
    d.wait_source("the pending list", |s| s.contains("/tableau-de-bord"));
    d.click("nav a[href='/tableau-de-bord']");
    let page = d.wait_source("the dashboard", |s| s.contains("Tableau de bord</h1>"));
    assert!(page.contains("casino-royal.example"), "{page}");
    // The charts are drawn: SVG with bars, as the browser laid them out.
    let bars = d.script("return document.querySelectorAll('svg rect').length");
    assert!(bars.as_u64().unwrap() > 10, "{bars}");
    let width =
        d.script("return document.querySelector('#sites svg').getBoundingClientRect().width");
    assert!(width.as_f64().unwrap() > 100.0, "{width}");
    // Offline: the page loaded nothing besides itself.
    let loaded = d.script("return performance.getEntriesByType('resource').map(e => e.name)");
    assert_eq!(
        loaded,
        serde_json::json!([]),
        "resources requested: {loaded}"
    );
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    d.screenshot(&shots.join("tableau-de-bord.png"));
}
