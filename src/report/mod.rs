//! The dashboard's figures ("Tableau de bord"): counters kept in the store, fed by the
//! trace's writer, read back in a few indexed queries.
//!
//! ```text
//! writer task ── Counting::seen(&Record) ──▶ Tally (HashMap, in memory)
//!      │ every FLUSH_EVERY, at each hour change, at shutdown
//!      └── spawn_blocking ──▶ Store::add_counts (upserts: n = n + added)
//! admin page ── Dashboard::load ──▶ Store::counts / top / weekly_requests
//! ```
//!
//! What this module owns and why:
//! - **Counting off the request path.** Records are counted where they are encoded, on
//!   the writer task ([`crate::audit::Observer`]); a request only hands its record to
//!   the trace's queue, as before. The store is written on the blocking pool.
//! - **Granularity** ([`Dim`]): totals, categories, rules and groups per hour; sites and
//!   people per day, as their keys are many. A year with 3 000 blocked sites a day is
//!   about a million rows of sites; the dashboard reads only the last 30 days of them
//!   (`benches/dashboard.rs` measures it with a year of data).
//! - **Nothing lost to a failing store.** Counts the store refused are kept and added
//!   to the next flush.
//! - **People are pseudonymised when shown**, not when stored ([`pseudonym`]): the key
//!   is kept in the data folder, so a pseudonym stays the same from one day to the next
//!   and cannot be reversed without the key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::audit::{Observer, Outcome, Record, Scheme};
use crate::clock;
use crate::unblock::store::{Dim, Store, StoreError, Tallied, week_of, week_start};
use crate::unblock::unix;

/// How often counts go to the store (besides each hour change and shutdown).
pub const FLUSH_EVERY: Duration = Duration::from_secs(60);

/// Sets another flush period, in milliseconds (tests only; the server warns when set).
pub const FLUSH_ENV: &str = "CHARTE_REPORT_FLUSH_MS";

/// Index of each key of [`Dim::TOTALS`].
const REQUESTS: usize = 0;
const BLOCKED: usize = 1;
const INSPECTED: usize = 2;
const TUNNELLED: usize = 3;
const PLAIN: usize = 4;
const BYTES: usize = 5;

/// The key of "none" (no category, the policy's default rule, no group).
static EMPTY: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));

/// Counts not yet in the store.
#[derive(Debug, Default)]
pub struct Tally {
    /// Per hour: the [`Dim::TOTALS`] counters.
    totals: HashMap<i64, [u64; 6]>,
    /// Blocks by (dimension, bucket, key).
    keyed: HashMap<(Dim, i64, Arc<str>), u64>,
}

impl Tally {
    /// Counts one record. An inspected tunnel's own line (`bump`) is not a request:
    /// the requests inside it have their lines.
    pub fn count(&mut self, r: &Record) {
        if r.decision == Outcome::Bump {
            return;
        }
        let t = unix(r.time);
        let totals = self.totals.entry(Dim::Total.bucket(t)).or_default();
        totals[REQUESTS] += 1;
        totals[match r.scheme {
            Scheme::Http => PLAIN,
            Scheme::Https => INSPECTED,
            Scheme::Tunnel => TUNNELLED,
        }] += 1;
        totals[BYTES] += r.bytes_sent + r.bytes_received;
        if r.decision != Outcome::Block {
            return;
        }
        totals[BLOCKED] += 1;
        let empty = &*EMPTY;
        let mut add = |dim: Dim, key: &Arc<str>| {
            *self
                .keyed
                .entry((dim, dim.bucket(t), Arc::clone(key)))
                .or_default() += 1;
        };
        if r.categories.is_empty() {
            add(Dim::Category, empty);
        }
        for c in &r.categories {
            add(Dim::Category, c);
        }
        add(Dim::Rule, r.rule.as_ref().unwrap_or(empty));
        if r.groups.is_empty() {
            add(Dim::Group, empty);
        }
        for g in &r.groups {
            add(Dim::Group, g);
        }
        add(Dim::Site, &r.host);
        match &r.user {
            Some(u) => add(Dim::User, u),
            None => add(Dim::User, &Arc::from(format!("ip:{}", r.client))),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.totals.is_empty() && self.keyed.is_empty()
    }

    /// Everything counted, as rows to add; the tally is empty afterwards.
    pub fn take(&mut self) -> Vec<Tallied> {
        let mut out = Vec::with_capacity(self.totals.len() * 6 + self.keyed.len());
        for (hour, totals) in self.totals.drain() {
            for (key, n) in Dim::TOTALS.iter().zip(totals) {
                if n > 0 {
                    out.push(Tallied {
                        dim: Dim::Total,
                        bucket: hour,
                        key: (*key).to_owned(),
                        n: n as i64,
                    });
                }
            }
        }
        for ((dim, bucket, key), n) in self.keyed.drain() {
            out.push(Tallied {
                dim,
                bucket,
                key: key.to_string(),
                n: n as i64,
            });
        }
        out
    }
}

/// The writer's [`Observer`]: counts, and hands the counts to the store every
/// `every`, at each hour change and at shutdown.
pub struct Counting {
    tally: Tally,
    store: Arc<dyn Store>,
    every: Duration,
    next: tokio::time::Instant,
    /// Counts the store refused, added to the next flush.
    failed: Arc<Mutex<Vec<Tallied>>>,
}

impl Counting {
    pub fn new(store: Arc<dyn Store>, every: Duration) -> Counting {
        let mut c = Counting {
            tally: Tally::default(),
            store,
            every,
            next: tokio::time::Instant::now(),
            failed: Arc::default(),
        };
        c.next = c.next_flush();
        c
    }

    /// In `every`, or at the next hour on the proxy's clock if that comes first.
    fn next_flush(&self) -> tokio::time::Instant {
        let now = unix(clock::now());
        let to_hour = Duration::from_secs((3600 - now.rem_euclid(3600)) as u64);
        tokio::time::Instant::now() + self.every.min(to_hour)
    }

    fn flush(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        let mut rows = self.tally.take();
        if let Ok(mut f) = self.failed.lock() {
            rows.append(&mut f);
        }
        if rows.is_empty() {
            return None;
        }
        let store = Arc::clone(&self.store);
        let failed = Arc::clone(&self.failed);
        Some(tokio::task::spawn_blocking(move || {
            if let Err(e) = store.add_counts(&rows) {
                tracing::warn!(
                    target: "charte::report",
                    error = %e,
                    rows = rows.len(),
                    "cannot write the dashboard's counts; kept for the next try"
                );
                if let Ok(mut f) = failed.lock() {
                    f.extend(rows);
                }
            }
        }))
    }
}

impl Observer for Counting {
    fn seen(&mut self, r: &Record) {
        self.tally.count(r);
    }

    fn due(&self) -> tokio::time::Instant {
        self.next
    }

    fn tick(&mut self) {
        self.flush();
        self.next = self.next_flush();
    }

    fn finish(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.flush()
    }
}

/// How a person is shown to an administrator who may not see names: `agent-` and 8 hex
/// digits of HMAC-SHA256(key, name). Stable while the key is (DATA/pseudonyms.key).
pub fn pseudonym(key: &[u8], who: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    m.update(who.as_bytes());
    let tag = m.finalize().into_bytes();
    let mut out = String::from("agent-");
    for b in &tag[..4] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Days the block charts cover.
pub const DAYS: i64 = 30;
/// Hours of the hourly chart.
pub const HOURS: i64 = 7 * 24;
/// Weeks of the unblock requests chart.
pub const WEEKS: i64 = 12;
/// Bars of each top list.
pub const TOP: usize = 10;

/// One hour of the hourly chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hour {
    /// Unix seconds of its start.
    pub start: i64,
    pub requests: i64,
    pub blocked: i64,
}

/// One week of unblock requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Week {
    /// Unix seconds of its Monday, 00:00 UTC.
    pub start: i64,
    pub opened: i64,
    pub approved: i64,
    pub refused: i64,
}

/// Everything the dashboard shows, as read from the store.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub now: i64,
    /// The last [`HOURS`] hours, oldest first, the current one last.
    pub hours: Vec<Hour>,
    /// Blocks over the last [`DAYS`] days: (key, count), largest first.
    pub categories: Vec<(String, i64)>,
    pub rules: Vec<(String, i64)>,
    pub sites: Vec<(String, i64)>,
    pub groups: Vec<(String, i64)>,
    /// People with the most blocks, as shown: names or pseudonyms ([`Dashboard::names`]).
    pub users: Vec<(String, i64)>,
    /// Whether `users` holds names (else pseudonyms).
    pub names: bool,
    /// Over the last [`DAYS`] days: (requests, inspected, tunnelled, plain, bytes).
    pub share: [i64; 5],
    /// Blocks over the last [`DAYS`] days.
    pub blocked: i64,
    /// The last [`WEEKS`] weeks, oldest first.
    pub weeks: Vec<Week>,
}

impl Dashboard {
    /// Reads the figures at `now` (unix seconds). `pseudonyms`: the key to hide names
    /// with, `None` to show them.
    pub fn load(
        store: &dyn Store,
        now: i64,
        pseudonyms: Option<&[u8]>,
    ) -> Result<Dashboard, StoreError> {
        let hour = Dim::Total.bucket(now);
        let end_hour = hour + 1;
        let mut hours: Vec<Hour> = (end_hour - HOURS..end_hour)
            .map(|h| Hour {
                start: h * 3600,
                requests: 0,
                blocked: 0,
            })
            .collect();
        for (h, key, n) in store.counts(Dim::Total, end_hour - HOURS, end_hour)? {
            let Some(slot) = hours.get_mut((h - (end_hour - HOURS)) as usize) else {
                continue;
            };
            match key.as_str() {
                "requests" => slot.requests += n,
                "blocked" => slot.blocked += n,
                _ => {}
            }
        }
        let since = now - DAYS * 86_400;
        let range = |d: Dim| (d.bucket(since) + 1, d.bucket(now) + 1);
        let top = |d: Dim, limit: usize| {
            let (from, to) = range(d);
            store.top(d, from, to, limit)
        };
        let totals = top(Dim::Total, Dim::TOTALS.len())?;
        let total = |k: &str| {
            totals
                .iter()
                .find(|(key, _)| key == k)
                .map_or(0, |(_, n)| *n)
        };
        let mut users = top(Dim::User, TOP)?;
        if let Some(key) = pseudonyms {
            for (who, _) in &mut users {
                *who = pseudonym(key, who);
            }
        }
        let this_week = week_of(now);
        let mut weeks: Vec<Week> = (this_week + 1 - WEEKS..=this_week)
            .map(|w| Week {
                start: week_start(w),
                opened: 0,
                approved: 0,
                refused: 0,
            })
            .collect();
        for (w, opened, approved, refused) in store.weekly_requests(this_week + 1 - WEEKS)? {
            if let Some(slot) = weeks.get_mut((w - (this_week + 1 - WEEKS)) as usize) {
                *slot = Week {
                    start: week_start(w),
                    opened,
                    approved,
                    refused,
                };
            }
        }
        Ok(Dashboard {
            now,
            hours,
            categories: top(Dim::Category, 15)?,
            rules: top(Dim::Rule, 15)?,
            sites: top(Dim::Site, TOP)?,
            groups: top(Dim::Group, 15)?,
            users,
            names: pseudonyms.is_none(),
            share: [
                total("requests"),
                total("inspected"),
                total("tunnelled"),
                total("plain"),
                total("bytes"),
            ],
            blocked: total("blocked"),
            weeks,
        })
    }
}

#[cfg(test)]
mod tests;
