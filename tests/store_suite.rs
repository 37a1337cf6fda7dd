//! One suite of store behaviours, run against both stores: SQLite always, PostgreSQL
//! (a throw-away cluster, `common::postgres`) when it is installed (always under CI).
//! Each behaviour is a function over `&dyn Store`; `both!` makes a test of it for each
//! store, each on a new empty database.
//!
//! The PostgreSQL-only behaviours follow: two stores migrating one empty database at
//! once, a change on one store seen by another within a second (NOTIFY), the database
//! stopped (a quick `Unavailable`, `available()` false) and started again (the same
//! store works on), a newer schema refused, and `store migrate-from-sqlite`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use charte_proxy::unblock::approvals::{BlockCounter, Requester};
use charte_proxy::unblock::postgres::{PgOptions, PgStore};
use charte_proxy::unblock::sqlite::SqliteStore;
use charte_proxy::unblock::store::{
    Dim, NewRequest, Purged, Scope, Status, Store, StoreError, Submitted, Tallied, week_of,
};
use common::postgres::{self, Postgres};

fn req(who: &str, host: &str) -> NewRequest {
    NewRequest {
        requester: who.into(),
        user: who.strip_prefix("user:").map(Into::into),
        ip: "10.0.0.1".into(),
        groups: vec!["agents".into(), "élus".into()],
        host: host.into(),
        url: format!("https://{host}/page"),
        categories: vec!["gambling".into()],
        rule: Some("jeux".into()),
        reason_code: "block-rule".into(),
        justification: "besoin pour le service".into(),
        wanted: None,
    }
}

// ---- the behaviours ----

fn submit_merges_into_the_pending_request(s: &dyn Store) {
    let a = s.submit(&req("ip:10.0.0.1", "a.example"), 100).unwrap();
    let Submitted::Created(id) = a else {
        panic!("{a:?}")
    };
    let mut again = req("ip:10.0.0.1", "a.example");
    again.justification = "encore".into();
    again.wanted = Some("30d".into());
    assert_eq!(s.submit(&again, 160).unwrap(), Submitted::Merged(id));
    // Another person, another site: new requests.
    let b = s.submit(&req("ip:10.0.0.2", "a.example"), 170).unwrap();
    let c = s.submit(&req("ip:10.0.0.1", "b.example"), 180).unwrap();
    assert!(matches!(b, Submitted::Created(_)) && matches!(c, Submitted::Created(_)));
    assert!(b.id() != id && c.id() != id && b.id() != c.id());
    let r = s.get(id).unwrap();
    assert_eq!(r.asked, 2);
    assert_eq!(r.created, 100);
    assert_eq!(r.updated, 160);
    assert_eq!(r.wanted.as_deref(), Some("30d"));
    assert_eq!(
        r.justification,
        "besoin pour le service\n\n[1970-01-01T00:02:40Z] encore"
    );
    assert_eq!(r.groups, ["agents", "élus"]);
    assert_eq!(r.categories, ["gambling"]);
    assert_eq!(r.status, Status::Pending);
    assert_eq!(r.rule.as_deref(), Some("jeux"));
    assert_eq!(r.url, "https://a.example/page");
    // A merge without a wish keeps the earlier one.
    s.submit(&req("ip:10.0.0.1", "a.example"), 200).unwrap();
    assert_eq!(s.get(id).unwrap().wanted.as_deref(), Some("30d"));
}

fn approve_opens_until_the_end_and_asking_again_makes_a_new_request(s: &dyn Store) {
    let id = s
        .submit(&req("user:c.martin", "a.example"), 100)
        .unwrap()
        .id();
    let v = s.version().unwrap();
    s.approve(
        id,
        "admin",
        &Scope::Group("agents".into()),
        Some(200),
        Some("ok"),
        150,
    )
    .unwrap();
    assert_ne!(s.version().unwrap(), v, "version changes with an approval");
    let a = s.approvals(199).unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].request, id);
    assert_eq!(a[0].host, "a.example");
    assert_eq!(a[0].requester, "user:c.martin");
    assert_eq!(a[0].scope, "group:agents");
    assert_eq!(a[0].until, Some(200));
    assert!(s.approvals(200).unwrap().is_empty(), "expired");
    let r = s.get(id).unwrap();
    assert_eq!(r.status, Status::Approved);
    assert_eq!(r.decided_by.as_deref(), Some("admin"));
    assert_eq!(r.decided_at, Some(150));
    assert_eq!(r.updated, 150);
    assert_eq!(r.message.as_deref(), Some("ok"));
    // Once approved, asking again makes a new request.
    let again = s.submit(&req("user:c.martin", "a.example"), 300).unwrap();
    assert!(
        matches!(again, Submitted::Created(n) if n != id),
        "{again:?}"
    );
    // An approved request may be approved again (a longer end, a wider scope).
    s.approve(id, "chef", &Scope::Everyone, None, None, 400)
        .unwrap();
    let a = s.approvals(1_000_000).unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!((a[0].scope.as_str(), a[0].until), ("everyone", None));
}

fn refusals_and_unknown_requests(s: &dyn Store) {
    let id = s
        .submit(&req("ip:10.0.0.9", "c.example"), 100)
        .unwrap()
        .id();
    let v = s.version().unwrap();
    s.refuse(id, "admin", "non", 101).unwrap();
    assert_ne!(s.version().unwrap(), v, "version changes with a refusal");
    assert!(matches!(
        s.refuse(id, "admin", "toujours non", 102),
        Err(StoreError::AlreadyDecided(n)) if n == id
    ));
    assert!(matches!(s.get(9_999), Err(StoreError::NotFound(9_999))));
    assert!(matches!(
        s.approve(9_999, "admin", &Scope::Requester, None, None, 1),
        Err(StoreError::NotFound(9_999))
    ));
    assert!(matches!(
        s.refuse(9_999, "admin", "non", 1),
        Err(StoreError::NotFound(9_999))
    ));
    // A refused request may still be approved (the administrator changed their mind).
    s.approve(id, "admin", &Scope::Requester, None, None, 103)
        .unwrap();
    assert_eq!(s.get(id).unwrap().status, Status::Approved);
    assert_eq!(s.get(id).unwrap().message, None);
    let h = s.history().unwrap();
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h[0].status, Status::Refused);
    assert_eq!(h[0].message.as_deref(), Some("non"));
    assert_eq!(h[0].request, id);
    assert_eq!(h[0].host, "c.example");
    assert_eq!(h[0].requester, "ip:10.0.0.9");
    assert_eq!(h[1].status, Status::Approved);
    assert_eq!(h[1].scope.as_deref(), Some("requester"));
    assert!(h[0].id < h[1].id, "oldest first");
}

fn lists_are_newest_first_and_by_status_or_person(s: &dyn Store) {
    let a = s.submit(&req("ip:10.0.0.1", "a.example"), 1).unwrap().id();
    let b = s.submit(&req("ip:10.0.0.2", "b.example"), 2).unwrap().id();
    let c = s.submit(&req("ip:10.0.0.1", "c.example"), 3).unwrap().id();
    s.refuse(b, "admin", "non", 4).unwrap();
    let ids = |rows: Vec<charte_proxy::unblock::store::RequestRow>| {
        rows.iter().map(|r| r.id).collect::<Vec<_>>()
    };
    assert_eq!(ids(s.list(None).unwrap()), [c, b, a]);
    assert_eq!(ids(s.list(Some(Status::Pending)).unwrap()), [c, a]);
    assert_eq!(ids(s.list(Some(Status::Refused)).unwrap()), [b]);
    assert!(s.list(Some(Status::Approved)).unwrap().is_empty());
    assert_eq!(ids(s.list_for("ip:10.0.0.1").unwrap()), [c, a]);
    assert!(s.list_for("ip:10.9.9.9").unwrap().is_empty());
    // What `get` and `list` return is the same row.
    assert_eq!(s.list(None).unwrap()[0], s.get(c).unwrap());
}

fn block_counts_add_up_by_day(s: &dyn Store) {
    s.count_blocks(&[]).unwrap();
    s.count_blocks(&[
        ("ip:10.0.0.1".into(), "a.example".into(), 10, 3),
        ("ip:10.0.0.1".into(), "a.example".into(), 10, 1),
        ("ip:10.0.0.2".into(), "a.example".into(), 10, 7),
    ])
    .unwrap();
    s.count_blocks(&[("ip:10.0.0.1".into(), "a.example".into(), 11, 2)])
        .unwrap();
    assert_eq!(s.blocks("ip:10.0.0.1", "a.example", 11).unwrap(), 2);
    assert_eq!(s.blocks("ip:10.0.0.1", "a.example", 0).unwrap(), 6);
    assert_eq!(s.blocks("ip:10.0.0.2", "a.example", 0).unwrap(), 7);
    assert_eq!(s.blocks("ip:10.0.0.1", "b.example", 0).unwrap(), 0);
}

fn dashboard_counts_sum_sort_and_rank(s: &dyn Store) {
    let t = |dim, bucket, key: &str, n| Tallied {
        dim,
        bucket,
        key: key.into(),
        n,
    };
    s.add_counts(&[]).unwrap();
    s.add_counts(&[
        t(Dim::Site, 5, "b.example", 2),
        t(Dim::Site, 5, "a.example", 2),
        t(Dim::Site, 5, "a.example", 1),
        t(Dim::Site, 6, "Z.example", 3),
        t(Dim::Site, 6, "_x.example", 3),
        t(Dim::Category, 5, "", 4),
    ])
    .unwrap();
    s.add_counts(&[t(Dim::Site, 6, "b.example", 1)]).unwrap();
    assert_eq!(
        s.counts(Dim::Site, 5, 7).unwrap(),
        [
            (5, "a.example".to_string(), 3),
            (5, "b.example".to_string(), 2),
            (6, "Z.example".to_string(), 3),
            (6, "_x.example".to_string(), 3),
            (6, "b.example".to_string(), 1),
        ],
        "by bucket, then key in byte order"
    );
    assert_eq!(s.counts(Dim::Site, 6, 6).unwrap(), []);
    assert_eq!(
        s.counts(Dim::Category, 0, 10).unwrap(),
        [(5, String::new(), 4)]
    );
    // Sums over the buckets, largest first, ties by key (byte order).
    s.add_counts(&[t(Dim::Site, 9, "c.example", 1)]).unwrap();
    assert_eq!(
        s.top(Dim::Site, 0, 10, 3).unwrap(),
        [
            ("Z.example".to_string(), 3),
            ("_x.example".to_string(), 3),
            ("a.example".to_string(), 3),
        ]
    );
    assert_eq!(
        s.top(Dim::Site, 6, 10, 10).unwrap().last(),
        Some(&("c.example".to_string(), 1))
    );
    assert_eq!(s.top(Dim::User, 0, 10, 3).unwrap(), []);
}

fn weekly_figures(s: &dyn Store) {
    let week = 3_000;
    let start = charte_proxy::unblock::store::week_start(week);
    let a = s
        .submit(&req("ip:10.0.0.1", "a.example"), start + 10)
        .unwrap()
        .id();
    let b = s
        .submit(&req("ip:10.0.0.2", "a.example"), start + 20)
        .unwrap()
        .id();
    s.submit(&req("ip:10.0.0.3", "a.example"), start - 10)
        .unwrap();
    s.approve(
        a,
        "admin",
        &Scope::Requester,
        None,
        None,
        start + 7 * 86_400,
    )
    .unwrap();
    s.refuse(b, "admin", "non", start + 30).unwrap();
    assert_eq!(week_of(start + 7 * 86_400), week + 1);
    assert_eq!(
        s.weekly_requests(week).unwrap(),
        [(week, 2, 0, 1), (week + 1, 0, 1, 0)]
    );
    assert_eq!(s.weekly_requests(week + 1).unwrap(), [(week + 1, 0, 1, 0)]);
}

fn purge_keeps_what_is_alive_and_goes_by_batches(s: &dyn Store) {
    let day = 86_400;
    let now = 1_000 * day;
    let before = now - 100 * day;
    let old = before - day;
    // Old and decided: gone. Old and pending, or approved without end: kept.
    let mut refused = Vec::new();
    for i in 0..3 {
        let id = s
            .submit(&req(&format!("ip:10.0.1.{i}"), "r.example"), old)
            .unwrap()
            .id();
        s.refuse(id, "admin", "non", old).unwrap();
        refused.push(id);
    }
    let expired = s
        .submit(&req("ip:10.0.2.1", "e.example"), old)
        .unwrap()
        .id();
    s.approve(
        expired,
        "admin",
        &Scope::Requester,
        Some(old + 10),
        None,
        old,
    )
    .unwrap();
    let forever = s
        .submit(&req("ip:10.0.2.2", "f.example"), old)
        .unwrap()
        .id();
    s.approve(forever, "admin", &Scope::Everyone, None, None, old)
        .unwrap();
    let pending = s
        .submit(&req("ip:10.0.2.3", "p.example"), old)
        .unwrap()
        .id();
    let recent = s
        .submit(&req("ip:10.0.2.4", "n.example"), now)
        .unwrap()
        .id();
    s.refuse(recent, "admin", "non", now).unwrap();
    s.count_blocks(&[
        ("ip:10.0.0.1".into(), "a.example".into(), old / day, 1),
        ("ip:10.0.0.1".into(), "a.example".into(), now / day, 1),
    ])
    .unwrap();
    s.add_counts(&[
        Tallied {
            dim: Dim::Total,
            bucket: Dim::Total.bucket(old),
            key: "blocked".into(),
            n: 1,
        },
        Tallied {
            dim: Dim::Site,
            bucket: Dim::Site.bucket(now),
            key: "a.example".into(),
            n: 1,
        },
    ])
    .unwrap();
    let v = s.version().unwrap();
    let first = s.purge(before, now, 2).unwrap();
    assert_eq!(
        first,
        Purged {
            requests: 2,
            decisions: 2,
            blocks: 1,
            counts: 1,
        }
    );
    assert_ne!(s.version().unwrap(), v);
    let mut total = first;
    loop {
        let p = s.purge(before, now, 2).unwrap();
        if p.is_empty() {
            break;
        }
        total.add(p);
    }
    assert_eq!(total.requests, 4, "three refused and one expired");
    assert_eq!(total.decisions, 4);
    let mut left: Vec<i64> = s.list(None).unwrap().iter().map(|r| r.id).collect();
    left.sort();
    assert_eq!(left, [forever, pending, recent]);
    assert_eq!(
        s.history().unwrap().len(),
        2,
        "the decisions of what is left"
    );
    assert_eq!(s.blocks("ip:10.0.0.1", "a.example", 0).unwrap(), 1);
    assert_eq!(s.counts(Dim::Total, 0, i64::MAX).unwrap(), []);
    assert_eq!(s.counts(Dim::Site, 0, i64::MAX).unwrap().len(), 1);
    assert!(s.purge(before, now, 2).unwrap().is_empty());
}

fn version_follows_every_request_and_decision(s: &dyn Store) {
    let v0 = s.version().unwrap();
    assert_eq!(s.version().unwrap(), v0, "steady without changes");
    let id = s.submit(&req("ip:10.0.0.1", "a.example"), 1).unwrap().id();
    let v1 = s.version().unwrap();
    assert_ne!(v1, v0);
    s.submit(&req("ip:10.0.0.1", "a.example"), 2).unwrap();
    let v2 = s.version().unwrap();
    assert_ne!(v2, v1);
    s.approve(id, "admin", &Scope::Requester, None, None, 3)
        .unwrap();
    assert_ne!(s.version().unwrap(), v2);
}

// ---- the two stores ----

/// A new SQLite store in a temp folder (kept alive with it).
fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("requests.db")).unwrap();
    (dir, s)
}

/// A new cluster and a store on a new database of it.
fn postgres() -> Option<(Postgres, PgStore)> {
    if !postgres::available() {
        return None;
    }
    let pg = Postgres::start();
    let url = pg.database("suite");
    let s = PgStore::open(&PgOptions::new(url)).unwrap();
    Some((pg, s))
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite_store {
            $(
                #[test]
                fn $name() {
                    let (_dir, s) = super::sqlite();
                    super::$name(&s);
                }
            )*
        }
        mod postgres_store {
            $(
                #[test]
                fn $name() {
                    if let Some((_pg, s)) = super::postgres() {
                        super::$name(&s);
                    }
                }
            )*
        }
    };
}

both!(
    submit_merges_into_the_pending_request,
    approve_opens_until_the_end_and_asking_again_makes_a_new_request,
    refusals_and_unknown_requests,
    lists_are_newest_first_and_by_status_or_person,
    block_counts_add_up_by_day,
    dashboard_counts_sum_sort_and_rank,
    weekly_figures,
    purge_keeps_what_is_alive_and_goes_by_batches,
    version_follows_every_request_and_decision,
);

// ---- PostgreSQL only ----

/// Waits until `f` holds, or panics after `limit` saying `what`.
fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if f() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn two_stores_opening_an_empty_database_at_once_migrate_it_once() {
    if !postgres::available() {
        return;
    }
    let pg = Postgres::start();
    let url = pg.database("race");
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                PgStore::open(&PgOptions::new(url))
            })
        })
        .collect();
    let stores: Vec<PgStore> = opened
        .into_iter()
        .map(|t| t.join().unwrap().expect("every store opens"))
        .collect();
    let n = common::postgres::migrations();
    assert_eq!(
        pg.psql(
            "race",
            "SELECT count(*), max(version) FROM schema_migrations"
        ),
        format!("{n}|{n}")
    );
    // They share the one schema.
    let id = stores[0]
        .submit(&req("ip:10.0.0.1", "a.example"), 1)
        .unwrap()
        .id();
    assert_eq!(stores[3].get(id).unwrap().host, "a.example");
}

#[test]
fn a_change_on_one_store_reaches_another_within_a_second() {
    if !postgres::available() {
        return;
    }
    let pg = Postgres::start();
    let url = pg.database("notify");
    let a = PgStore::open(&PgOptions::new(url.clone())).unwrap();
    let b = PgStore::open(&PgOptions::new(url)).unwrap();
    // Each write of B is seen in A's version well before A's catch-up read would see it.
    for round in 0..3 {
        let v = a.version().unwrap();
        let id = b
            .submit(&req("ip:10.0.0.1", &format!("h{round}.example")), 1)
            .unwrap()
            .id();
        let took = wait_for(Duration::from_secs(1), "B's request seen by A", || {
            a.version().unwrap() != v
        });
        assert!(took < Duration::from_secs(1), "{took:?}");
        let v = a.version().unwrap();
        b.approve(id, "admin", &Scope::Everyone, None, None, 2)
            .unwrap();
        wait_for(Duration::from_secs(1), "B's approval seen by A", || {
            a.version().unwrap() != v
        });
        assert!(a.approvals(3).unwrap().iter().any(|r| r.request == id));
    }
}

#[test]
fn the_database_stopped_gives_a_quick_clear_error_and_its_return_is_noticed() {
    if !postgres::available() {
        return;
    }
    let mut pg = Postgres::start();
    let url = pg.database("down");
    let mut o = PgOptions::new(url);
    o.timeout = Duration::from_secs(2);
    let s = PgStore::open(&o).unwrap();
    let id = s.submit(&req("ip:10.0.0.1", "a.example"), 1).unwrap().id();
    s.approve(id, "admin", &Scope::Everyone, None, None, 2)
        .unwrap();
    assert!(s.available());
    pg.stop();
    let start = Instant::now();
    let e = s.submit(&req("ip:10.0.0.2", "b.example"), 3).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("cannot be reached"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}/down", pg.port)),
        "{text}"
    );
    assert!(!text.contains(postgres::PASSWORD), "{text}");
    assert!(!s.available());
    // Blocks counted meanwhile are kept for the next flush.
    let counter = BlockCounter::default();
    let who = Requester::Ip("10.0.0.7".parse().unwrap());
    counter.add(&who, "a.example");
    assert!(counter.flush(&s).is_err());
    counter.add(&who, "a.example");
    // The version does not wait on the dead database.
    let start = Instant::now();
    let v = s.version().unwrap();
    assert!(start.elapsed() < Duration::from_millis(100));
    pg.restart();
    // The same store works again: the pool reconnects on the next call, the listener
    // by itself (and bumps the version: changes may have been missed meanwhile).
    wait_for(Duration::from_secs(10), "the listener back", || {
        s.available()
    });
    wait_for(Duration::from_secs(10), "the version moved", || {
        s.version().unwrap() != v
    });
    let id2 = s.submit(&req("ip:10.0.0.2", "b.example"), 4).unwrap().id();
    assert_ne!(id2, id);
    assert_eq!(s.approvals(5).unwrap().len(), 1);
    counter.flush(&s).unwrap();
    assert_eq!(s.blocks(&who.key(), "a.example", 0).unwrap(), 2);
    assert!(s.available());
}

#[test]
fn a_database_of_a_newer_schema_is_refused() {
    if !postgres::available() {
        return;
    }
    let pg = Postgres::start();
    let url = pg.database("newer");
    drop(PgStore::open(&PgOptions::new(url.clone())).unwrap());
    pg.psql("newer", "INSERT INTO schema_migrations VALUES (99, 0)");
    let e = PgStore::open(&PgOptions::new(url)).unwrap_err();
    let known = postgres::migrations() as i64;
    assert!(
        matches!(
            e,
            StoreError::TooNew {
                found: 99,
                known: k,
                ..
            } if k == known
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("newer charte-proxy"), "{e}");
}

/// A server file naming the database `url` (its URL file mode 0600), in `dir`.
fn server_file(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let url_file = dir.join("pg-url");
    std::fs::write(&url_file, format!("{url}\n")).unwrap();
    std::fs::set_permissions(&url_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let yaml = dir.join("server.yaml");
    std::fs::write(
        &yaml,
        format!(
            "data_dir: {}\nstore:\n  postgres:\n    url_file: {}\n    pool_size: 2\n",
            dir.join("data").display(),
            url_file.display()
        ),
    )
    .unwrap();
    yaml
}

/// Spaces squeezed, for lines printed in columns.
fn squeeze(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn migrate_from_sqlite_copies_everything_once_and_requests_reads_postgres() {
    if !postgres::available() {
        return;
    }
    let pg = Postgres::start();
    let url = pg.database("import");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("requests.db");
    {
        let s = SqliteStore::open(&db).unwrap();
        let a = s
            .submit(&req("user:c.martin", "a.example"), 100)
            .unwrap()
            .id();
        let b = s
            .submit(&req("ip:10.0.0.2", "b.example"), 110)
            .unwrap()
            .id();
        s.submit(&req("ip:10.0.0.3", "c.example"), 120).unwrap();
        s.submit(&req("ip:10.0.0.3", "c.example"), 130).unwrap();
        s.approve(
            a,
            "admin",
            &Scope::Group("agents".into()),
            None,
            Some("ok"),
            140,
        )
        .unwrap();
        s.refuse(b, "admin", "non", 150).unwrap();
        s.count_blocks(&[
            ("ip:10.0.0.2".into(), "b.example".into(), 1, 4),
            ("ip:10.0.0.3".into(), "c.example".into(), 1, 2),
        ])
        .unwrap();
        s.add_counts(&[Tallied {
            dim: Dim::Total,
            bucket: 7,
            key: "blocked".into(),
            n: 6,
        }])
        .unwrap();
    }
    let yaml = server_file(dir.path(), &url);
    let args = [
        "store",
        "migrate-from-sqlite",
        db.to_str().unwrap(),
        "--config",
        yaml.to_str().unwrap(),
    ];
    let first = common::run(&args);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    let out = squeeze(&first.stdout);
    for line in [
        "requests 3 copied, 0 already there",
        "decisions 2 copied, 0 already there",
        "blocks 2 copied, 0 already there",
        "counters 1 copied, 0 already there",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    assert!(
        !first.stdout.contains(postgres::PASSWORD),
        "{}",
        first.stdout
    );
    let again = common::run(&args);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    let out = squeeze(&again.stdout);
    for line in [
        "requests 0 copied, 3 already there",
        "decisions 0 copied, 2 already there",
        "blocks 0 copied, 2 already there",
        "counters 0 copied, 1 already there",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    // The same rows, numbers and all.
    let src = SqliteStore::open(&db).unwrap();
    let dest = PgStore::open(&PgOptions::new(url)).unwrap();
    assert_eq!(dest.list(None).unwrap(), src.list(None).unwrap());
    assert_eq!(dest.history().unwrap(), src.history().unwrap());
    assert_eq!(dest.approvals(200).unwrap(), src.approvals(200).unwrap());
    assert_eq!(dest.blocks("ip:10.0.0.2", "b.example", 0).unwrap(), 4);
    assert_eq!(
        dest.counts(Dim::Total, 0, 10).unwrap(),
        src.counts(Dim::Total, 0, 10).unwrap()
    );
    // New requests are numbered after the copied ones.
    let next = dest
        .submit(&req("ip:10.0.0.9", "d.example"), 200)
        .unwrap()
        .id();
    assert_eq!(next, 4);
    // `requests` reads the database the server file names.
    let listed = common::run(&[
        "requests",
        "list",
        "--status",
        "all",
        "--config",
        yaml.to_str().unwrap(),
    ]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(listed.stdout.contains("d.example"), "{}", listed.stdout);
    assert!(listed.stdout.contains("a.example"), "{}", listed.stdout);
}

#[test]
fn a_url_file_others_may_read_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let yaml = server_file(dir.path(), "postgres://charte:secret@127.0.0.1:1/x");
    let url_file = dir.path().join("pg-url");
    std::fs::set_permissions(&url_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = common::run(&["requests", "list", "--config", yaml.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains(&format!("chmod 600 {}", url_file.display())),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("secret"), "{}", r.stderr);
}

/// PEM of one DER block.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[test]
fn tls_to_the_database_verifies_its_certificate() {
    if !postgres::available() {
        return;
    }
    let pg = Postgres::start();
    let ca = common::tls::TestCa::new("Base de test");
    let leaf = ca.leaf(&["127.0.0.1"]);
    pg.enable_tls(
        &pem("CERTIFICATE", &leaf.chain[0]),
        &pem("PRIVATE KEY", &leaf.key_der),
    );
    let url = pg.database("tls");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    ca.write_pem(&ca_file);
    let mut o = PgOptions::new(url.clone());
    o.ca_file = Some(ca_file);
    let s = PgStore::open(&o).unwrap();
    s.submit(&req("ip:10.0.0.1", "a.example"), 1).unwrap();
    let encrypted = pg.psql(
        "tls",
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.datname = 'tls' AND s.ssl AND a.application_name = 'charte-proxy'",
    );
    assert_ne!(encrypted, "0", "the store's connections use TLS");
    let plain = pg.psql(
        "tls",
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.datname = 'tls' AND NOT s.ssl AND a.application_name = 'charte-proxy'",
    );
    assert_eq!(plain, "0");
    // A certificate from another CA, or only the system's roots: refused, and said so
    // (a setting to fix, not an outage).
    let other = common::tls::TestCa::new("Autre");
    let other_file = dir.path().join("other.pem");
    other.write_pem(&other_file);
    o.ca_file = Some(other_file);
    let e = PgStore::open(&o).unwrap_err();
    assert!(matches!(e, StoreError::Postgres { .. }), "{e:?}");
    assert!(e.to_string().contains("certificate"), "{e}");
    let e = PgStore::open(&PgOptions::new(format!("{url}?sslmode=verify-full"))).unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
}
