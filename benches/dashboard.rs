//! The dashboard with a year of data: the queries (`report::Dashboard::load`) and the
//! whole page (queries + SVG render) against a SQLite store filled with a year of
//! realistic counters. See `benches/README.md`.
//!
//!     cargo bench --bench dashboard
//!     CHARTE_BENCH_SITES=5000 cargo bench --bench dashboard
//!
//! The year (8 760 hours) is made here with a fixed seed: per hour the six totals, about
//! 12 of 20 categories, 15 of 50 rules and 8 of 10 groups with blocks; per day
//! `CHARTE_BENCH_SITES` blocked sites (default 3 000, drawn from 20 000 with Zipf-like
//! weights) and 300 of 500 people; 4 000 unblock requests with their decisions. The
//! answer is checked (a full week of hours, ten sites, the most blocked site first)
//! before anything is timed. Under `cargo test --benches` the year shrinks to 30 days.

use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;

use charte_proxy::policy::Lang;
use charte_proxy::report::Dashboard;
use charte_proxy::unblock::sqlite::SqliteStore;
use charte_proxy::unblock::store::{Dim, NewRequest, Scope, Store, Tallied};

/// 2026-12-05 10:30 UTC.
const NOW: i64 = 1_796_466_600;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Zipf-like: rank r drawn with weight about 1/(r+1).
    fn skewed(&mut self, n: u64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64 + 1.0).powf(u) - 1.0) as u64 % n
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Fills `store` with `days` days of counters ending at [`NOW`]; returns the rows.
fn fill(store: &SqliteStore, days: i64, sites_per_day: u64) -> usize {
    let mut rng = Rng(42);
    let mut rows = Vec::new();
    let mut total = 0;
    let push = |rows: &mut Vec<Tallied>, dim, bucket, key: String, n: u64| {
        rows.push(Tallied {
            dim,
            bucket,
            key,
            n: n as i64,
        });
    };
    let first_hour = Dim::Total.bucket(NOW) - days * 24 + 1;
    for hour in first_hour..=Dim::Total.bucket(NOW) {
        let requests = 2_000 + rng.below(20_000);
        let blocked = requests / 20;
        for (key, n) in Dim::TOTALS.iter().zip([
            requests,
            blocked,
            requests * 6 / 10,
            requests * 3 / 10,
            requests / 10,
            requests * 40_000,
        ]) {
            push(&mut rows, Dim::Total, hour, (*key).to_owned(), n);
        }
        for c in 0..20 {
            if rng.below(10) < 6 {
                push(
                    &mut rows,
                    Dim::Category,
                    hour,
                    format!("categorie-{c}"),
                    1 + rng.below(50),
                );
            }
        }
        for r in 0..50 {
            if rng.below(10) < 3 {
                push(
                    &mut rows,
                    Dim::Rule,
                    hour,
                    format!("regle-{r}"),
                    1 + rng.below(40),
                );
            }
        }
        for g in 0..10 {
            if rng.below(10) < 8 {
                push(
                    &mut rows,
                    Dim::Group,
                    hour,
                    format!("groupe-{g}"),
                    1 + rng.below(60),
                );
            }
        }
        if rows.len() > 50_000 {
            total += rows.len();
            store.add_counts(&rows).unwrap();
            rows.clear();
        }
    }
    let first_day = Dim::Site.bucket(NOW) - days + 1;
    for day in first_day..=Dim::Site.bucket(NOW) {
        let mut seen = std::collections::HashSet::new();
        while (seen.len() as u64) < sites_per_day {
            seen.insert(rng.skewed(20_000));
        }
        for s in seen {
            // The most blocked site is site-0, by far.
            let n = if s == 0 {
                5_000
            } else {
                1 + rng.below(200 / (1 + s % 50))
            };
            push(&mut rows, Dim::Site, day, format!("site-{s}.example"), n);
        }
        for u in 0..500 {
            if rng.below(10) < 6 {
                push(
                    &mut rows,
                    Dim::User,
                    day,
                    format!("agent.{u}"),
                    1 + rng.below(30),
                );
            }
        }
        total += rows.len();
        store.add_counts(&rows).unwrap();
        rows.clear();
    }
    total += rows.len();
    store.add_counts(&rows).unwrap();
    for i in 0..(days * 11) {
        let t = NOW - days * 86_400 + i * 86_400 / 11;
        let id = store
            .submit(
                &NewRequest {
                    requester: format!("user:agent.{}", i % 500),
                    user: Some(format!("agent.{}", i % 500)),
                    ip: "10.0.0.1".into(),
                    groups: vec!["groupe-1".into()],
                    host: format!("site-{i}.example"),
                    url: format!("https://site-{i}.example/"),
                    categories: vec!["categorie-1".into()],
                    rule: Some("regle-1".into()),
                    reason_code: "block-rule".into(),
                    justification: "travail".into(),
                    wanted: None,
                },
                t,
            )
            .unwrap()
            .id();
        match i % 3 {
            0 => store
                .approve(id, "admin", &Scope::Requester, None, None, t + 600)
                .unwrap(),
            1 => store.refuse(id, "admin", "non", t + 600).unwrap(),
            _ => {}
        }
    }
    total
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let test_mode = std::env::args().any(|a| a == "--test");
    let days = if test_mode { 30 } else { 365 };
    let sites = env("CHARTE_BENCH_SITES", 3_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.db");
    let store = SqliteStore::open(&path).unwrap();
    let started = Instant::now();
    let rows = fill(&store, days, sites);
    let size = std::fs::metadata(&path).map_or(0, |m| m.len())
        + std::fs::metadata(dir.path().join("requests.db-wal")).map_or(0, |m| m.len());
    eprintln!(
        "dashboard bench: {days} days, {rows} counter rows, {sites} sites a day, \
         database {:.1} MB, filled in {:.1} s",
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    // The answer, before timing.
    let key = [7u8; 32];
    let d = Dashboard::load(&store, NOW, Some(&key)).unwrap();
    assert_eq!(d.hours.len(), 168);
    assert!(d.hours.iter().all(|h| h.requests >= 2_000), "a full week");
    assert_eq!(d.sites.len(), 10);
    assert_eq!(d.sites[0].0, "site-0.example");
    assert_eq!(d.sites[0].1, 5_000 * 30);
    assert_eq!(d.users.len(), 10);
    assert!(d.users.iter().all(|(u, _)| u.starts_with("agent-")));
    assert!(d.weeks.iter().rev().take(4).all(|w| w.opened > 0));
    let page = charte_proxy::pages::dashboard::page(Lang::Fr, "admin", "csrf", &d);
    assert!(page.contains("site-0.example") && page.contains("<svg"));

    let mut g = c.benchmark_group("dashboard");
    g.sample_size(20);
    g.bench_function("queries", |b| {
        b.iter(|| black_box(Dashboard::load(&store, NOW, Some(&key)).unwrap()))
    });
    g.bench_function("page", |b| {
        b.iter(|| {
            let d = Dashboard::load(&store, NOW, Some(&key)).unwrap();
            black_box(charte_proxy::pages::dashboard::page(
                Lang::Fr,
                "admin",
                "csrf",
                &d,
            ))
        })
    });
    g.finish();
    c.final_summary();
}
