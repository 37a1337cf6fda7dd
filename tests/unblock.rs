//! The unblock flow through the running proxy: block page → form on the portal → stored
//! request → decision by the `requests` command → the site opens for the approved scope,
//! and closes again at the end date. Forged tokens, duplicates, concurrency, kill -9.

mod common;

use std::time::{Duration, Instant};

use common::proxy::{Proxy, Upstream, curl};

/// The unblock link of the block page `url` shows to a client at `from`.
fn unblock_link(p: &Proxy, url: &str, from: &str) -> String {
    let (_, page, _) = curl(&["-x", &p.url(), "--interface", from, url]);
    let start = page
        .find("/demande?token=")
        .unwrap_or_else(|| panic!("no button: {page}"));
    let rest = &page[start..];
    let end = rest.find('"').unwrap();
    format!("http://{}{}", p.portal, &rest[..end].replace("&amp;", "&"))
}

fn token_of(link: &str) -> String {
    link.split("token=").nth(1).unwrap().to_string()
}

/// POSTs the form; returns (status, page, Set-Cookie).
fn submit(p: &Proxy, token: &str, why: &str) -> (u16, String) {
    let (_, out, _) = curl(&[
        "-i",
        "--data-urlencode",
        &format!("token={token}"),
        "--data-urlencode",
        &format!("justification={why}"),
        "--data-urlencode",
        "wanted=7d",
        &format!("http://{}/demande", p.portal),
    ]);
    let status = out[9..12].parse().unwrap();
    (status, out)
}

fn requests(p: &Proxy, args: &[&str]) -> String {
    let out = common::bin()
        .arg("requests")
        .arg("--data-dir")
        .arg(p.path("data"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn wait_status(p: &Proxy, url: &str, from: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, out, _) = curl(&[
            "-x",
            &p.url(),
            "--interface",
            from,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            url,
        ]);
        if out == want.to_string() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} from {from}: still {out}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn request_approve_for_the_group_then_expire() {
    let up = Upstream::start();
    let p = Proxy::start_pinned(&[]);
    let url = format!("http://casino-royal.example:{}/small", up.port());
    let link = unblock_link(&p, &url, "127.0.0.2");
    // The form, filled in from the token.
    let (_, form, _) = curl(&[&link]);
    assert!(
        form.contains("casino-royal.example") && form.contains("<textarea"),
        "{form}"
    );
    assert!(
        form.contains("Jeux d&#39;argent") || form.contains("Jeux d'argent"),
        "{form}"
    );
    // Empty justification: asked again, nothing stored.
    let (status, _) = submit(&p, &token_of(&link), "  ");
    assert_eq!(status, 422);
    let (status, page) = submit(
        &p,
        &token_of(&link),
        "Contrôle des jeux pour la police municipale",
    );
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Demande n° 1 enregistrée"), "{page}");
    assert!(
        page.to_ascii_lowercase()
            .contains("set-cookie: charte_demandeur="),
        "{page}"
    );
    // Asking again while pending adds to the same request.
    let (_, page) = submit(&p, &token_of(&link), "Encore");
    assert!(
        page.contains("Demande n° 1 enregistrée") && page.contains("déjà une demande"),
        "{page}"
    );
    let show = requests(&p, &["show", "1"]);
    assert!(
        show.contains("asked 2×") && show.contains("Encore"),
        "{show}"
    );
    // The follow link shows the status.
    let follow = page
        .split("href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let (_, st, _) = curl(&[&format!("http://{}{follow}", p.portal)]);
    assert!(st.contains("En attente"), "{st}");

    // Approved for the agents group for two seconds: opens within a second for agents.
    requests(
        &p,
        &["approve", "1", "--scope", "group:agents", "--for", "3s"],
    );
    wait_status(&p, &url, "127.0.0.2", 200);
    let t = p.trace_find(|v| v["host"] == "casino-royal.example" && v["status"] == 200);
    assert_eq!(t["rule"], "demandes");
    // …and closes on its own at the end date.
    wait_status(&p, &url, "127.0.0.2", 403);
    let (_, st, _) = curl(&[&format!("http://{}{follow}", p.portal)]);
    assert!(st.contains("expirée"), "{st}");
    // The history exports as CSV.
    let csv = requests(&p, &["export"]);
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .contains(",approved,group:agents,"),
        "{csv}"
    );
}

#[test]
fn forged_token_refused_path_non_overridable_rule() {
    let up = Upstream::start();
    let p = Proxy::start_pinned(&[]);
    let url = format!("http://casino-royal.example:{}/small", up.port());
    let link = unblock_link(&p, &url, "127.0.0.2");
    let mut forged = token_of(&link);
    forged.insert(3, 'A');
    let (status, page) = submit(&p, &forged, "x");
    assert_eq!(status, 400, "{page}");
    assert!(
        page.contains("Rien n&#39;a été enregistré") || page.contains("Rien n'a été enregistré")
    );
    assert_eq!(requests(&p, &["list", "--status", "all"]), "");
    // Refused with a message, which the user sees.
    let (_, page) = submit(&p, &token_of(&link), "besoin");
    let cookie = page
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    requests(&p, &["refuse", "1", "--message", "Pas dans vos missions"]);
    let (_, list, _) = curl(&["-b", &cookie, &format!("http://{}/mes-demandes", p.portal)]);
    assert!(
        list.contains("Refusée") && list.contains("Pas dans vos missions"),
        "{list}"
    );
    // The law cannot be waived: a forged-free token for hate.example is not offered.
    let (_, page, _) = curl(&[
        "-x",
        &p.url(),
        &format!("http://hate.example:{}/small", up.port()),
    ]);
    assert!(!page.contains("/demande?token="), "{page}");
}

#[test]
fn a_hundred_concurrent_submissions_none_lost_none_duplicated() {
    let up = Upstream::start();
    let p = Proxy::start_pinned(&[]);
    let url = format!("http://casino-royal.example:{}/small", up.port());
    let link = unblock_link(&p, &url, "127.0.0.2");
    let token = token_of(&link);
    let portal = p.portal;
    // The same person sends 100 at once: one request, asked 100 times.
    let threads: Vec<_> = (0..100)
        .map(|i| {
            let token = token.clone();
            std::thread::spawn(move || {
                let (_, out, _) = curl(&[
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--data-urlencode",
                    &format!("token={token}"),
                    "--data-urlencode",
                    &format!("justification=raison {i}"),
                    &format!("http://{portal}/demande"),
                ]);
                out
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), "200");
    }
    let list = requests(&p, &["list"]);
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.contains("asked 100×"), "{list}");
    let show = requests(&p, &["show", "1"]);
    for i in 0..100 {
        assert!(show.contains(&format!("raison {i}")), "lost {i}");
    }
}

#[test]
fn an_acknowledged_request_survives_kill_9() {
    let up = Upstream::start();
    let mut p = Proxy::start_pinned(&[]);
    let url = format!("http://casino-royal.example:{}/small", up.port());
    let link = unblock_link(&p, &url, "127.0.0.2");
    let (status, page) = submit(&p, &token_of(&link), "à garder");
    assert_eq!(status, 200, "{page}");
    p.signal("KILL");
    p.wait_exit(Duration::from_secs(10));
    assert!(requests(&p, &["list"]).contains("casino-royal.example"));
}
