//! The counters as the writer fills them, and the dashboard read back from a real
//! SQLite store.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::policy::Inspection;
use crate::unblock::sqlite::SqliteStore;
use crate::unblock::store::{NewRequest, Scope};

fn s(v: &str) -> Arc<str> {
    Arc::from(v)
}

/// 2026-12-05 10:30:00 UTC.
const T: i64 = 1_796_466_600;

fn rec(scheme: Scheme, decision: Outcome, host: &str, user: Option<&str>) -> Record {
    Record {
        time: SystemTime::UNIX_EPOCH + Duration::from_secs(T as u64),
        client: "10.0.0.5".parse::<IpAddr>().unwrap(),
        workstation: None,
        user: user.map(s),
        groups: vec![s("agents")],
        method: s("GET"),
        scheme,
        host: s(host),
        port: 80,
        path: None,
        categories: if decision == Outcome::Block {
            vec![s("jeux")]
        } else {
            vec![]
        },
        decision,
        rule: (decision == Outcome::Block).then(|| s("pas-de-jeux")),
        reason_code: None,
        reason: None,
        would_block: None,
        inspection: Inspection::Inspect,
        status: 200,
        bytes_sent: 10,
        bytes_received: 90,
        duration: Duration::ZERO,
        upstream: None,
        error: None,
        user_agent: None,
        content_type: None,
        user_tried: None,
        found: None,
    }
}

fn find<'a>(rows: &'a [Tallied], dim: Dim, key: &str) -> Option<&'a Tallied> {
    rows.iter().find(|r| r.dim == dim && r.key == key)
}

#[test]
fn a_tally_counts_requests_by_kind_and_blocks_by_each_dimension() {
    let mut t = Tally::default();
    t.count(&rec(
        Scheme::Http,
        Outcome::Allow,
        "a.example",
        Some("c.martin"),
    ));
    t.count(&rec(
        Scheme::Https,
        Outcome::Block,
        "jeux.example",
        Some("c.martin"),
    ));
    t.count(&rec(Scheme::Tunnel, Outcome::Allow, "b.example", None));
    t.count(&rec(Scheme::Tunnel, Outcome::Bump, "jeux.example", None));
    t.count(&rec(Scheme::Http, Outcome::Block, "jeux.example", None));
    let rows = t.take();
    assert!(t.is_empty());
    let total = |k: &str| find(&rows, Dim::Total, k).map_or(0, |r| r.n);
    assert_eq!(total("requests"), 4, "the bump line is not a request");
    assert_eq!(total("blocked"), 2);
    assert_eq!(total("plain"), 2);
    assert_eq!(total("inspected"), 1);
    assert_eq!(total("tunnelled"), 1);
    assert_eq!(total("bytes"), 400);
    assert_eq!(
        find(&rows, Dim::Total, "requests").unwrap().bucket,
        T / 3600
    );
    assert_eq!(find(&rows, Dim::Category, "jeux").unwrap().n, 2);
    assert_eq!(find(&rows, Dim::Rule, "pas-de-jeux").unwrap().n, 2);
    assert_eq!(find(&rows, Dim::Group, "agents").unwrap().n, 2);
    let site = find(&rows, Dim::Site, "jeux.example").unwrap();
    assert_eq!((site.n, site.bucket), (2, T / 86_400), "sites are per day");
    assert_eq!(find(&rows, Dim::User, "c.martin").unwrap().n, 1);
    assert_eq!(find(&rows, Dim::User, "ip:10.0.0.5").unwrap().n, 1);
    assert!(
        find(&rows, Dim::Site, "a.example").is_none(),
        "allowed sites are not kept"
    );
}

fn request(host: &str) -> NewRequest {
    NewRequest {
        requester: "user:c.martin".into(),
        user: Some("c.martin".into()),
        ip: "10.0.0.5".into(),
        groups: vec![],
        host: host.into(),
        url: format!("https://{host}/"),
        categories: vec![],
        rule: None,
        reason_code: "block-rule".into(),
        justification: "travail".into(),
        wanted: None,
    }
}

#[test]
fn the_dashboard_reads_back_what_was_added_and_the_purge_deletes_old_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("requests.db")).unwrap();
    let mut t = Tally::default();
    for _ in 0..3 {
        t.count(&rec(
            Scheme::Https,
            Outcome::Block,
            "jeux.example",
            Some("c.martin"),
        ));
    }
    t.count(&rec(Scheme::Http, Outcome::Allow, "a.example", None));
    // Added in two flushes: the second adds to the first.
    let rows = t.take();
    store.add_counts(&rows[..rows.len() / 2]).unwrap();
    store.add_counts(&rows[rows.len() / 2..]).unwrap();
    t.count(&rec(
        Scheme::Http,
        Outcome::Block,
        "autre.example",
        Some("a.durand"),
    ));
    store.add_counts(&t.take()).unwrap();
    // A count of 400 days ago, for the purge.
    store
        .add_counts(&[Tallied {
            dim: Dim::Site,
            bucket: Dim::Site.bucket(T - 400 * 86_400),
            key: "vieux.example".into(),
            n: 1,
        }])
        .unwrap();
    let id = store
        .submit(&request("jeux.example"), T - 3600)
        .unwrap()
        .id();
    store
        .approve(id, "admin", &Scope::Requester, None, None, T - 60)
        .unwrap();
    let id = store
        .submit(&request("autre.example"), T - 3600)
        .unwrap()
        .id();
    store.refuse(id, "admin", "non", T - 30).unwrap();
    store.submit(&request("encore.example"), T - 10).unwrap();

    let now = T + 600;
    let d = Dashboard::load(&store, now, None).unwrap();
    assert_eq!(d.hours.len(), HOURS as usize);
    let last = d.hours.last().unwrap();
    assert_eq!((last.requests, last.blocked), (5, 4));
    assert_eq!(last.start, T / 3600 * 3600);
    assert_eq!(
        d.sites,
        vec![("jeux.example".into(), 3), ("autre.example".into(), 1)]
    );
    assert_eq!(d.categories, vec![("jeux".into(), 4)]);
    assert_eq!(d.rules, vec![("pas-de-jeux".into(), 4)]);
    assert_eq!(d.users[0], ("c.martin".into(), 3));
    assert!(d.names);
    assert_eq!(d.share, [5, 3, 0, 2, 500]);
    assert_eq!(d.blocked, 4);
    let week = d.weeks.last().unwrap();
    assert_eq!((week.opened, week.approved, week.refused), (3, 1, 1));
    assert_eq!(d.weeks.len(), WEEKS as usize);

    let key = [7u8; 32];
    let hidden = Dashboard::load(&store, now, Some(&key)).unwrap();
    assert!(!hidden.names);
    assert_eq!(hidden.users[0].0, pseudonym(&key, "c.martin"));
    assert!(hidden.users[0].0.starts_with("agent-") && hidden.users[0].0.len() == 14);
    assert_ne!(pseudonym(&key, "c.martin"), pseudonym(&key, "a.durand"));
    assert_ne!(
        pseudonym(&key, "c.martin"),
        pseudonym(&[8u8; 32], "c.martin")
    );

    let purged = store.purge(now - 365 * 86_400, now, 100).unwrap();
    assert_eq!(purged.counts, 1, "{purged:?}");
    assert_eq!(Dashboard::load(&store, now, None).unwrap().sites.len(), 2);
}
