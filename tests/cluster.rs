//! Two proxies sharing one PostgreSQL store (issue 27), each a real `charte-proxy serve`
//! against a throw-away PostgreSQL: they start together on an empty database and migrate
//! it once; a request made through one appears on the other's admin pages; a decision
//! taken on one opens or closes the site on the other within a second; a `kill -9` right
//! after the user's acknowledgement loses nothing; the database stopping leaves both
//! filtering with the approvals they had while the portal and `/health` say requests
//! cannot be taken; its return needs no restart.

mod common;

use std::time::{Duration, Instant};

use common::admin::{AdminClient, add_admin, csrf_of};
use common::postgres::{self, Postgres};
use common::proxy::{Proxy, Upstream, curl};
use common::unblock::{status_of, submit, token_of, unblock_link, wait_status};

/// The server file of every node: the shared database, its URL in a 0600 file.
struct Cluster {
    _dir: tempfile::TempDir,
    yaml: String,
}

impl Cluster {
    fn new(url: &str) -> Cluster {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let url_file = dir.path().join("pg-url");
        std::fs::write(&url_file, format!("{url}\n")).unwrap();
        std::fs::set_permissions(&url_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let yaml = format!(
            "store:\n  postgres:\n    url_file: {}\n    pool_size: 4\n",
            url_file.display()
        );
        Cluster { _dir: dir, yaml }
    }

    fn node(&self) -> Proxy {
        Proxy::start_with_config(&self.yaml, &[])
    }

    /// Two nodes started at the same moment.
    fn two_at_once(&self) -> (Proxy, Proxy) {
        std::thread::scope(|s| {
            let a = s.spawn(|| self.node());
            let b = s.spawn(|| self.node());
            (a.join().unwrap(), b.join().unwrap())
        })
    }
}

/// `charte-proxy requests ARGS` with a node's server file (the shared database).
fn requests(p: &Proxy, args: &[&str]) -> String {
    let out = common::bin()
        .arg("requests")
        .arg("--config")
        .arg(p.path("server.yaml"))
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

fn health(p: &Proxy) -> serde_json::Value {
    serde_json::from_str(&p.admin_get("/health")).unwrap()
}

/// Waits until `/health` of `p` says the store is (or is not) available.
fn wait_store(p: &Proxy, available: bool) {
    let t0 = Instant::now();
    loop {
        let h = health(p);
        if h["store"]["available"] == available {
            assert_eq!(h["store"]["kind"], "postgres");
            assert_eq!(h["status"], if available { "ok" } else { "degraded" });
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "store still not available={available}: {h}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metric(p: &Proxy, name: &str) -> Option<String> {
    p.admin_get("/metrics")
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
}

#[test]
fn a_request_through_one_proxy_is_decided_on_the_other() {
    if !postgres::available() {
        return;
    }
    let pg = Postgres::start();
    let cluster = Cluster::new(&pg.database("cluster"));
    let up = Upstream::start();
    let site = format!("http://casino-royal.example:{}/small", up.port());

    // Started together on an empty database: it is migrated once.
    let (mut a, b) = cluster.two_at_once();
    let n = postgres::migrations();
    assert_eq!(
        pg.psql(
            "cluster",
            "SELECT count(*), max(version) FROM schema_migrations"
        ),
        format!("{n}|{n}")
    );

    // A request through A, acknowledged, then A killed at once: nothing is lost.
    let link = unblock_link(&a, &site, "127.0.0.2");
    let (status, page) = submit(&a, &token_of(&link), "Contrôle des jeux, police municipale");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Demande n° 1 enregistrée"), "{page}");
    a.signal("KILL");
    a.wait_exit(Duration::from_secs(10));

    // It is on B's admin pages.
    add_admin(&b, "alice", "correct horse");
    let mut admin = AdminClient::new(&b);
    assert_eq!(admin.login("alice", "correct horse").status, 303);
    let list = admin.get("/demandes").body;
    assert!(
        list.contains("casino-royal.example") && list.contains("police municipale"),
        "{list} {}",
        b.stderr.lock().unwrap()
    );

    // A comes back; approved on B's page for the agents, the site opens on A within a
    // second (and on B).
    let a = cluster.node();
    assert_eq!(status_of(&a, &site, "127.0.0.2"), "403");
    let csrf = csrf_of(&list);
    let r = admin.post(
        "/demandes/1",
        &[
            ("csrf", &csrf),
            ("decision", "approve"),
            ("scope", "group:agents"),
            ("duration", "7d"),
        ],
        None,
    );
    assert_eq!(
        (r.status, r.location.as_str()),
        (303, "/demandes?fait=1"),
        "{}",
        r.body
    );
    let took = wait_status(&a, &site, "127.0.0.2", 200);
    assert!(took <= Duration::from_secs(1), "opened on A after {took:?}");
    wait_status(&b, &site, "127.0.0.2", 200);
    let t = a.trace_find(|v| v["host"] == "casino-royal.example" && v["status"] == 200);
    assert_eq!(t["rule"], "demandes");

    // The session works whichever proxy serves the admin pages (B logged it in, A
    // serves it), and a logout on A ends it on B too.
    admin.to(&a);
    let r = admin.get("/demandes");
    assert_eq!(r.status, 200, "{}", r.body);
    // The administrator's page (request 1 is decided: no longer in the list).
    assert!(
        r.body.contains("alice") && !r.body.contains("name=\"password\""),
        "{}",
        r.body
    );
    let session = admin.cookie_header();
    assert!(session.contains("charte_admin="), "{session}");
    let r = admin.post("/deconnexion", &[("csrf", &csrf_of(&r.body))], None);
    assert_eq!((r.status, r.location.as_str()), (303, "/connexion"));
    let replayed = reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://{}/demandes", b.admin))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(
        replayed.status().as_u16(),
        303,
        "the session ended on A still opens B's pages"
    );

    // Decided again on the command line for three seconds: at its end the site closes
    // on both, by time alone.
    requests(
        &b,
        &["approve", "1", "--scope", "group:agents", "--for", "3s"],
    );
    wait_status(&a, &site, "127.0.0.2", 403);
    wait_status(&b, &site, "127.0.0.2", 403);
    let shown = requests(&a, &["show", "1"]);
    assert!(shown.contains("approved"), "{shown}");
}

#[test]
fn the_database_stopped_keeps_both_filtering_and_its_return_needs_no_restart() {
    if !postgres::available() {
        return;
    }
    let mut pg = Postgres::start();
    let cluster = Cluster::new(&pg.database("cluster"));
    let up = Upstream::start();
    let casino = format!("http://casino-royal.example:{}/small", up.port());
    let hate = format!("http://hate.example:{}/small", up.port());
    let (a, b) = cluster.two_at_once();
    for p in [&a, &b] {
        wait_store(p, true);
        assert_eq!(metric(p, "charte_store_up").as_deref(), Some("1"));
    }

    // Asked and approved (for the agents, a week) while the database is up.
    let link = unblock_link(&a, &casino, "127.0.0.2");
    assert_eq!(submit(&a, &token_of(&link), "Enquête").0, 200);
    requests(
        &a,
        &["approve", "1", "--scope", "group:agents", "--for", "7d"],
    );
    wait_status(&a, &casino, "127.0.0.2", 200);
    wait_status(&b, &casino, "127.0.0.2", 200);

    pg.stop();
    for p in [&a, &b] {
        wait_store(p, false);
        assert_eq!(metric(p, "charte_store_up").as_deref(), Some("0"));
        // Filtering goes on with what was approved, and no more.
        assert_eq!(status_of(p, &casino, "127.0.0.2"), "200");
        assert_eq!(status_of(p, &hate, "127.0.0.2"), "403");
    }
    // The portal says that requests cannot be taken, before the form is filled in and
    // when it is sent.
    let (_, form, _) = curl(&["-i", "-H", "Accept-Language: fr", &link]);
    assert!(
        form.starts_with("HTTP/1.1 503")
            && form.contains("momentanément indisponibles")
            && form.contains("Le filtrage continue"),
        "{form}"
    );
    assert!(!form.contains("<textarea"), "{form}");
    let (status, page) = submit(&a, &token_of(&link), "Pendant la panne");
    assert_eq!(status, 503, "{page}");
    // A proxy (re)started during the outage starts, knows no approval yet, so opens
    // nothing that the others had opened.
    let c = cluster.node();
    wait_store(&c, false);
    assert_eq!(status_of(&c, &casino, "127.0.0.2"), "403");

    // Back: both see it without a restart, take requests again, and a decision made
    // now reaches both (the listening connection came back).
    pg.restart();
    for p in [&a, &b, &c] {
        wait_store(p, true);
    }
    wait_status(&c, &casino, "127.0.0.2", 200);
    let (status, page) = submit(&a, &token_of(&link), "Après la panne");
    assert_eq!(status, 200, "{page}");
    requests(
        &b,
        &["approve", "1", "--scope", "group:agents", "--for", "1s"],
    );
    for p in [&a, &b, &c] {
        wait_status(p, &casino, "127.0.0.2", 403);
    }
}
