//! The unblock store under load: submissions per second into SQLite and PostgreSQL (1
//! and 8 threads, each submission a new request, durable when it returns), and how long
//! a change made through one `PgStore` takes to change another's `version()` (the
//! NOTIFY path; a proxy's `LiveApprovals` adds its own 500 ms poll on top). PostgreSQL is
//! a throw-away cluster (`tests/common/postgres.rs`), on the same machine.
//!
//! ```sh
//! cargo bench --bench store_submit
//! ```
//!
//! Without `--bench` (as under `cargo test --benches`) the counts shrink to a smoke run.

#[path = "../tests/common/postgres.rs"]
mod postgres;

use std::sync::Arc;
use std::time::{Duration, Instant};

use charte_proxy::unblock::postgres::{PgOptions, PgStore};
use charte_proxy::unblock::sqlite::SqliteStore;
use charte_proxy::unblock::store::{NewRequest, Store, Submitted};

fn req(i: usize, t: usize) -> NewRequest {
    NewRequest {
        requester: format!("ip:10.{t}.{}.{}", i / 250, i % 250),
        user: None,
        ip: format!("10.{t}.{}.{}", i / 250, i % 250),
        groups: vec!["agents".into()],
        host: format!("site{i}.example"),
        url: format!("https://site{i}.example/"),
        categories: vec!["games".into()],
        rule: Some("jeux".into()),
        reason_code: "block-rule".into(),
        justification: "besoin pour le service".into(),
        wanted: Some("30d".into()),
    }
}

/// Submissions per second with `threads` threads of `each` submissions; checks that
/// every one was created.
fn submissions(store: Arc<dyn Store>, threads: usize, each: usize, round: usize) -> f64 {
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let s = store.clone();
            std::thread::spawn(move || {
                for i in 0..each {
                    let r = s.submit(&req(i, round * 16 + t), 1).expect("submitted");
                    assert!(matches!(r, Submitted::Created(_)), "{r:?}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    (threads * each) as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (each, samples) = if full { (500, 200) } else { (20, 10) };
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("requests.db")).expect("SQLite opens"));
    if postgres::bin_dir().is_none() {
        eprintln!("store_submit: PostgreSQL is not installed; SQLite only");
    }
    let pg = postgres::bin_dir().map(|_| postgres::Postgres::start());
    let url = pg.as_ref().map(|p| p.database("bench"));
    let pgstore: Option<Arc<dyn Store>> = url.as_ref().map(|u| {
        Arc::new(PgStore::open(&PgOptions::new(u.clone())).expect("PostgreSQL opens")) as _
    });
    for (round, threads) in [1, 8].into_iter().enumerate() {
        let s = submissions(sqlite.clone(), threads, each, round);
        println!("submit  sqlite      {threads} thread(s)  {s:>8.0} /s");
        if let Some(p) = &pgstore {
            let s = submissions(p.clone(), threads, each, round);
            println!("submit  postgresql  {threads} thread(s)  {s:>8.0} /s");
        }
    }
    let Some(url) = url else { return };
    // Propagation: a write through B, until A's version moves.
    let a = PgStore::open(&PgOptions::new(url.clone())).expect("A opens");
    let b = PgStore::open(&PgOptions::new(url)).expect("B opens");
    let mut took = Vec::with_capacity(samples);
    for i in 0..samples {
        let v = a.version().expect("version");
        let id = b.submit(&req(i, 200), 1).expect("submitted").id();
        let start = Instant::now();
        while a.version().expect("version") == v {
            assert!(start.elapsed() < Duration::from_secs(5), "not seen in 5 s");
            std::thread::yield_now();
        }
        took.push(start.elapsed());
        b.approve(
            id,
            "admin",
            &charte_proxy::unblock::store::Scope::Everyone,
            None,
            None,
            2,
        )
        .expect("approved");
    }
    took.sort();
    println!(
        "propagation B → A (commit returned → version changed), {samples} samples: \
         p50 {:?}, p99 {:?}, max {:?}",
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        took[took.len() - 1]
    );
}
