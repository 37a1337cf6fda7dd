//! The unblock flow through the running proxy: block page → form on the portal → stored
//! request → decision by the `requests` command → the site opens for the approved scope,
//! and closes again at the end date. Forged tokens, duplicates, concurrency, kill -9.

mod common;

use std::time::{Duration, Instant};

use common::admin::{AdminClient, add_admin, csrf_of};
use common::proxy::{Proxy, Upstream, curl};
use common::unblock::{status_of, submit, token_of, unblock_link, wait_status};

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

#[test]
fn admin_pages_login_csrf_approve_refuse_history() {
    let up = Upstream::start();
    let p = Proxy::start_pinned(&[]);
    let url = format!("http://casino-royal.example:{}/small", up.port());
    let mut admin = AdminClient::new(&p);

    // No account yet: the login page says how to make one.
    let page = admin.get("/connexion");
    assert!(
        page.body.contains("charte-proxy admins add"),
        "{}",
        page.body
    );
    add_admin(&p, "alice", "correct horse");
    add_admin(&p, "bob", "battery staple");

    // Protected pages send to the login page.
    let r = admin.get("/demandes");
    assert_eq!((r.status, r.location.as_str()), (303, "/connexion"));
    // Wrong password: 401, no session.
    let r = admin.login("alice", "wrong");
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("Identifiant ou mot de passe incorrect"));
    assert!(!admin.cookie_header().contains("charte_admin="));
    // A login form posted without its cookie (from another site) is refused.
    let mut other = AdminClient::new(&p);
    let r = other.post(
        "/connexion",
        &[
            ("csrf", "x"),
            ("user", "alice"),
            ("password", "correct horse"),
        ],
        None,
    );
    assert_eq!(r.status, 403);
    // The right password: a session cookie only this listener's pages can use.
    let r = admin.login("alice", "correct horse");
    assert_eq!(
        (r.status, r.location.as_str()),
        (303, "/demandes"),
        "{}",
        r.body
    );
    let session = r
        .set_cookies
        .iter()
        .find(|c| c.starts_with("charte_admin="))
        .unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );

    // Two requests: agents (127.0.0.2) blocked twice on the casino, then one more site.
    for _ in 0..2 {
        assert_eq!(status_of(&p, &url, "127.0.0.2"), "403");
    }
    let link = unblock_link(&p, &url, "127.0.0.2");
    let (status, _) = submit(
        &p,
        &token_of(&link),
        "Contrôle <script>alert(1)</script> des jeux",
    );
    assert_eq!(status, 200);
    let url2 = format!("http://poker.example:{}/small", up.port());
    let link2 = unblock_link(&p, &url2, "127.0.0.2");
    assert_eq!(submit(&p, &token_of(&link2), "Enquête").0, 200);

    // The list: newest first, escaped, with groups, categories, rule, blocks in 30 days
    // (counted in memory and written to the store within a second).
    let deadline = Instant::now() + Duration::from_secs(10);
    let list = loop {
        let r = admin.get("/demandes");
        assert_eq!(r.status, 200);
        if r.body.contains("bloqué 3 fois") || Instant::now() > deadline {
            break r.body;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(list.contains("bloqué 3 fois pour cette personne"), "{list}");
    assert!(
        list.find("poker.example").unwrap() < list.find("casino-royal.example").unwrap(),
        "newest first"
    );
    assert!(!list.contains("<script>alert(1)"), "{list}");
    assert!(list.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    for want in [
        "agents",
        "gambling",
        "jeux-agents",
        "value=\"group:agents\"",
    ] {
        assert!(list.contains(want), "{want}: {list}");
    }
    let csrf = csrf_of(&list);

    // CSRF: no token, another session's token, a foreign Origin → 403, nothing decided.
    let approve = |csrf: &str| {
        vec![
            ("csrf", csrf.to_string()),
            ("decision", "approve".into()),
            ("scope", "group:agents".into()),
            ("duration", "7d".into()),
        ]
    };
    let post = |c: &mut AdminClient, form: Vec<(&str, String)>, origin: Option<&str>| {
        let refs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        c.post("/demandes/1", &refs, origin)
    };
    let r = post(&mut admin, approve("")[1..].to_vec(), None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("Formulaire refusé"));
    let mut bob = AdminClient::new(&p);
    assert_eq!(bob.login("bob", "battery staple").status, 303);
    let bob_csrf = csrf_of(&bob.get("/demandes").body);
    assert_ne!(bob_csrf, csrf);
    assert_eq!(post(&mut admin, approve(&bob_csrf), None).status, 403);
    assert_eq!(
        post(&mut admin, approve(&csrf), Some("http://evil.example")).status,
        403
    );
    // Without a session, the token alone does nothing.
    let mut stranger = AdminClient::new(&p);
    assert_eq!(post(&mut stranger, approve(&csrf), None).status, 403);
    assert!(requests(&p, &["list"]).contains("    1  pending"));
    assert_eq!(status_of(&p, &url, "127.0.0.2"), "403");

    // A group the person is not in is not a scope on offer.
    let mut bad = approve(&csrf);
    bad[2].1 = "group:communication".into();
    assert_eq!(post(&mut admin, bad, None).status, 422);

    // Approved for the agents for 7 days: in force when the confirmation comes back.
    let r = post(&mut admin, approve(&csrf), None);
    assert_eq!((r.status, r.location.as_str()), (303, "/demandes?fait=1"));
    assert_eq!(status_of(&p, &url, "127.0.0.2"), "200");
    let r = admin.get("/demandes?fait=1");
    assert!(r.body.contains("Décision enregistrée pour la demande n° 1"));
    assert!(
        !r.body.contains("casino-royal.example"),
        "no longer pending"
    );
    let show = requests(&p, &["show", "1"]);
    assert!(show.contains("approved"), "{show}");

    // Refusing needs a message; with one, the user reads it.
    let refuse = |msg: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("decision", "refuse".into()),
            ("message", msg.to_string()),
        ]
    };
    let r = {
        let f = refuse("  ");
        let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        admin.post("/demandes/2", &refs, None)
    };
    assert_eq!(r.status, 422);
    assert!(r.body.contains("écrivez un message"), "{}", r.body);
    let r = {
        let f = refuse("Hors <missions>");
        let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        admin.post("/demandes/2", &refs, None)
    };
    assert_eq!(r.status, 303);
    let (_, follow, _) = curl(&[
        &format!("http://{}/mes-demandes", p.portal),
        "--interface",
        "127.0.0.2",
    ]);
    assert!(follow.contains("Hors &lt;missions&gt;"), "{follow}");

    // The history, newest first, with who decided; and its CSV.
    let h = admin.get("/historique").body;
    let (refused, approved) = (h.find("refusée").unwrap(), h.find("approuvée").unwrap());
    assert!(refused < approved, "{h}");
    assert!(h.contains("alice") && h.contains("group:agents"), "{h}");
    let csv = admin.get("/historique.csv");
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert!(
        lines[0].starts_with("decision,request,at,admin"),
        "{}",
        csv.body
    );
    assert!(
        lines[1].contains(",alice,approved,group:agents,"),
        "{}",
        csv.body
    );
    assert!(lines[2].contains(",alice,refused,,"), "{}", csv.body);

    // The approvals in force as a policy fragment.
    let yaml = requests(&p, &["export", "--yaml"]);
    let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(v["rules"][0]["groups"][0], "agents", "{yaml}");
    assert_eq!(v["rules"][0]["domains"][0], "casino-royal.example");

    // Logging out ends the session.
    let r = admin.post("/deconnexion", &[("csrf", &csrf)], None);
    assert_eq!((r.status, r.location.as_str()), (303, "/connexion"));
    let r = admin.get("/demandes");
    assert_eq!(r.status, 303);
}
