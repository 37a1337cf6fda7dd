//! Administrators' sessions: an unguessable id in an `HttpOnly`, `SameSite=Strict` cookie,
//! and a per-session CSRF token that every form carries back. Kept in memory with the
//! embedded store (a restart logs administrators out, which costs one login); kept in
//! the store when several proxies share it ([`Store::shares_sessions`], PostgreSQL), so
//! that whichever proxy serves the admin pages knows the session, and a logout on one
//! ends it on all. The store holds the SHA-256 of each id, never the id.
//!
//! Also the login throttle: [`MAX_FAILURES`] failed logins from an address within
//! [`FAIL_WINDOW`] suspend logins from it. An attempt is reserved before its password is
//! checked (the check takes a slow hash) and settled after, so attempts sent together
//! are counted together instead of all passing a check none of them has failed yet.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::unblock::store::Store;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Name of the session cookie.
pub const COOKIE: &str = "charte_admin";
/// Name of the cookie that carries the login form's CSRF value (before any session).
pub const LOGIN_COOKIE: &str = "charte_admin_login";
/// A session unused for this long ends.
pub const IDLE: Duration = Duration::from_secs(2 * 3600);
/// A session ends this long after login, used or not.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);
/// Failed logins from one address within [`FAIL_WINDOW`] before logins from it are refused.
pub const MAX_FAILURES: u32 = 10;
pub const FAIL_WINDOW: Duration = Duration::from_secs(600);
/// At most this many live sessions; the oldest goes first.
const MAX_SESSIONS: usize = 1000;

/// A logged-in administrator.
#[derive(Debug, Clone)]
pub struct Session {
    pub admin: String,
    /// The value every form of this session carries in its `csrf` field.
    pub csrf: String,
    started: Instant,
    last: Instant,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    /// Login attempts per address: failed ones in the current window, and the ones whose
    /// password is being checked.
    attempts: HashMap<IpAddr, Tally>,
}

/// The login attempts of one address.
#[derive(Debug, Clone, Copy)]
struct Tally {
    /// Failures counted since `since`.
    failed: u32,
    /// Attempts reserved and not settled yet: their password is being checked. They
    /// count against the limit, so that attempts arriving together cannot all pass a
    /// check made before any of them has failed.
    in_flight: u32,
    /// When the first failure of the current window was counted.
    since: Instant,
}

impl Tally {
    /// Forgets failures older than the window.
    fn expire(&mut self, now: Instant) {
        if self.failed > 0 && now.saturating_duration_since(self.since) > FAIL_WINDOW {
            self.failed = 0;
        }
    }

    /// Nothing left to remember.
    fn is_empty(&self) -> bool {
        self.failed == 0 && self.in_flight == 0
    }
}

/// Live sessions and the login throttle (always this proxy's own).
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
    /// Where the sessions are kept when proxies share a store.
    shared: Option<Arc<dyn Store>>,
}

/// What the shared store keeps for a session id: its SHA-256, hex (the cookie's value
/// cannot be rebuilt from the database).
fn store_key(id: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unix_now() -> i64 {
    crate::unblock::approvals::now()
}

/// 256 random bits, base64url.
pub fn random_token() -> String {
    let b: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(b)
}

/// Compares two secrets in time that depends only on their lengths.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    /// Sessions kept in `store` if proxies share it, else in memory.
    pub fn for_store(store: &Arc<dyn Store>) -> Sessions {
        Sessions {
            inner: Mutex::default(),
            shared: store.shares_sessions().then(|| store.clone()),
        }
    }

    /// Starts a session for `admin`; returns its id (for the cookie). `None`: the shared
    /// store could not keep it (logged).
    pub async fn open(&self, admin: &str) -> Option<String> {
        let Some(store) = self.shared.clone() else {
            return Some(self.start(admin, Instant::now()));
        };
        let id = random_token();
        let (key, admin, csrf) = (store_key(&id), admin.to_string(), random_token());
        let done = tokio::task::spawn_blocking(move || {
            store.session_start(&key, &admin, &csrf, unix_now())
        })
        .await;
        match done {
            Ok(Ok(())) => Some(id),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot keep an administrator's session in the store");
                None
            }
            Err(_) => None,
        }
    }

    /// The live session with this id (marked used), from memory or the shared store.
    pub async fn find(&self, id: &str) -> Option<Session> {
        let Some(store) = self.shared.clone() else {
            return self.get(id, Instant::now());
        };
        let key = store_key(id);
        let found = tokio::task::spawn_blocking(move || {
            store.session_get(
                &key,
                unix_now(),
                IDLE.as_secs() as i64,
                ABSOLUTE.as_secs() as i64,
            )
        })
        .await;
        match found {
            Ok(Ok(Some((admin, csrf)))) => {
                let now = Instant::now();
                Some(Session {
                    admin,
                    csrf,
                    started: now,
                    last: now,
                })
            }
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read an administrator's session from the store");
                None
            }
            Err(_) => None,
        }
    }

    /// Ends the session (logout), on every proxy when they share the store.
    pub async fn close(&self, id: &str) {
        let Some(store) = self.shared.clone() else {
            self.end(id);
            return;
        };
        let key = store_key(id);
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.session_end(&key)).await {
            tracing::warn!(error = %e, "cannot end an administrator's session in the store");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session for `admin`; returns its id (for the cookie).
    pub fn start(&self, admin: &str, now: Instant) -> String {
        let id = random_token();
        let mut g = self.lock();
        g.sessions.retain(|_, s| live(s, now));
        if g.sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = g
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.started)
                .map(|(k, _)| k.clone())
            {
                g.sessions.remove(&oldest);
            }
        }
        g.sessions.insert(
            id.clone(),
            Session {
                admin: admin.to_string(),
                csrf: random_token(),
                started: now,
                last: now,
            },
        );
        id
    }

    /// The session with this id, if it is still live (and marks it used).
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut g = self.lock();
        let s = g.sessions.get_mut(id)?;
        if !live(s, now) {
            g.sessions.remove(id);
            return None;
        }
        s.last = now;
        Some(s.clone())
    }

    pub fn end(&self, id: &str) {
        self.lock().sessions.remove(id);
    }

    /// Reserves a login attempt from `ip` at `now`, before its password is checked: `None`
    /// when the address has used up its attempts (failures in the window plus attempts
    /// being checked). The reservation is counted at once, under the same lock as the
    /// check, so that concurrent attempts are never all let through; the returned
    /// [`Attempt`] says afterwards how it ended.
    pub fn reserve(&self, ip: IpAddr, now: Instant) -> Option<Attempt<'_>> {
        let mut g = self.lock();
        if g.attempts.len() > 10_000 {
            g.attempts.retain(|_, t| {
                t.expire(now);
                !t.is_empty()
            });
        }
        let t = g.attempts.entry(ip).or_insert(Tally {
            failed: 0,
            in_flight: 0,
            since: now,
        });
        t.expire(now);
        if t.failed.saturating_add(t.in_flight) >= MAX_FAILURES {
            return None;
        }
        t.in_flight += 1;
        Some(Attempt {
            sessions: self,
            ip,
            at: now,
            settled: false,
        })
    }

    /// Settles one attempt of `ip` reserved at `at`.
    fn settle(&self, ip: IpAddr, at: Instant, outcome: Outcome) {
        let mut g = self.lock();
        let Some(t) = g.attempts.get_mut(&ip) else {
            return;
        };
        t.in_flight = t.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Failed => {
                t.expire(at);
                if t.failed == 0 {
                    t.since = at;
                }
                t.failed += 1;
            }
            Outcome::Succeeded => t.failed = 0,
            Outcome::Released => {}
        }
        if t.is_empty() {
            g.attempts.remove(&ip);
        }
    }
}

/// How a login attempt ended.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Failed,
    Succeeded,
    Released,
}

/// A login attempt counted against its address's limit while its password is checked
/// (from [`Sessions::reserve`]). Settle it with [`Attempt::succeeded`],
/// [`Attempt::failed`] or [`Attempt::release`]; one dropped unsettled (the request was
/// abandoned while its password was checked) counts as a failure, the safe side.
#[must_use = "a login attempt must be settled: succeeded, failed or release"]
pub struct Attempt<'a> {
    sessions: &'a Sessions,
    ip: IpAddr,
    /// When it was reserved: a failure counts in the window of that moment.
    at: Instant,
    settled: bool,
}

impl Attempt<'_> {
    /// The password was right: forgets the failures of the address.
    pub fn succeeded(self) {
        self.settle(Outcome::Succeeded);
    }

    /// The password was wrong: the attempt stays counted, as a failure.
    pub fn failed(self) {
        self.settle(Outcome::Failed);
    }

    /// The password could not be checked, through no fault of the person (the
    /// administrators' file is unreadable): the attempt is given back.
    pub fn release(self) {
        self.settle(Outcome::Released);
    }

    fn settle(mut self, outcome: Outcome) {
        self.settled = true;
        self.sessions.settle(self.ip, self.at, outcome);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.sessions.settle(self.ip, self.at, Outcome::Failed);
        }
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last) < IDLE && now.duration_since(s.started) < ABSOLUTE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_when_idle_or_too_old() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let id = s.start("alice", t0);
        let got = s.get(&id, t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(got.admin, "alice");
        assert!(s.get("nope", t0).is_none());
        // Idle for longer than IDLE: gone.
        assert!(s.get(&id, t0 + IDLE + Duration::from_secs(61)).is_none());
        // Used all along, but past ABSOLUTE: gone.
        let id = s.start("bob", t0);
        let mut t = t0;
        while t < t0 + ABSOLUTE - IDLE / 2 {
            t += IDLE / 2;
            assert!(s.get(&id, t).is_some());
        }
        assert!(s.get(&id, t0 + ABSOLUTE).is_none());
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn logins_are_throttled_per_address() {
        let s = Sessions::default();
        let (ip, other) = (ip("10.0.0.9"), ip("10.0.0.10"));
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            s.reserve(ip, t0).expect("under the limit").failed();
        }
        assert!(s.reserve(ip, t0).is_none());
        assert!(s.reserve(ip, t0 + FAIL_WINDOW).is_none());
        s.reserve(other, t0).unwrap().release();
        // The window is over: the failures are forgotten.
        let later = t0 + FAIL_WINDOW + Duration::from_secs(1);
        for _ in 0..MAX_FAILURES {
            s.reserve(ip, later).expect("a new window").failed();
        }
        assert!(s.reserve(ip, later).is_none());
    }

    #[test]
    fn attempts_being_checked_count_against_the_limit() {
        let s = Sessions::default();
        let ip = ip("10.0.0.9");
        let t0 = Instant::now();
        let held: Vec<Attempt<'_>> = (0..MAX_FAILURES)
            .map(|_| s.reserve(ip, t0).expect("under the limit"))
            .collect();
        // No failure counted yet, but as many attempts as allowed are being checked.
        assert!(s.reserve(ip, t0).is_none());
        // One given back (unreadable admins file): one more may try.
        let mut held = held.into_iter();
        held.next().unwrap().release();
        let again = s.reserve(ip, t0).expect("a released attempt is given back");
        assert!(s.reserve(ip, t0).is_none());
        again.failed();
        held.for_each(Attempt::failed);
        assert!(s.reserve(ip, t0).is_none());
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_limit() {
        let s = Sessions::default();
        let ip = ip("10.0.0.9");
        let t0 = Instant::now();
        let start = std::sync::Barrier::new(32);
        let granted = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|sc| {
            for i in 0..32 {
                let (s, start, granted) = (&s, &start, &granted);
                sc.spawn(move || {
                    start.wait();
                    for _ in 0..4 {
                        if let Some(a) = s.reserve(ip, t0) {
                            granted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            // Half fail, half are dropped unsettled: both count.
                            if i % 2 == 0 {
                                a.failed();
                            } else {
                                drop(a);
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(
            granted.load(std::sync::atomic::Ordering::SeqCst),
            MAX_FAILURES
        );
        assert!(s.reserve(ip, t0).is_none());
    }

    #[test]
    fn success_forgets_the_failures_of_the_address() {
        let s = Sessions::default();
        let ip = ip("10.0.0.9");
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            s.reserve(ip, t0).unwrap().failed();
        }
        // The tenth attempt, still being checked, fills the allowance...
        let right = s.reserve(ip, t0).unwrap();
        assert!(s.reserve(ip, t0).is_none());
        // ... and, the password being right, frees all of it.
        right.succeeded();
        for _ in 0..MAX_FAILURES {
            s.reserve(ip, t0).expect("failures forgotten").failed();
        }
        assert!(s.reserve(ip, t0).is_none());
    }

    #[test]
    fn a_success_leaves_other_attempts_in_flight_counted() {
        let s = Sessions::default();
        let ip = ip("10.0.0.9");
        let t0 = Instant::now();
        let right = s.reserve(ip, t0).unwrap();
        let others: Vec<_> = (1..MAX_FAILURES)
            .map(|_| s.reserve(ip, t0).unwrap())
            .collect();
        right.succeeded();
        // The nine still being checked keep their places: one more may try, not ten.
        let last = s.reserve(ip, t0).expect("one place freed");
        assert!(s.reserve(ip, t0).is_none());
        last.failed();
        others.into_iter().for_each(Attempt::failed);
        assert!(s.reserve(ip, t0).is_none());
    }

    #[test]
    fn released_attempts_leave_nothing_behind() {
        let s = Sessions::default();
        let ip = ip("10.0.0.9");
        let t0 = Instant::now();
        for _ in 0..3 * MAX_FAILURES {
            s.reserve(ip, t0)
                .expect("released attempts are not failures")
                .release();
        }
        assert!(s.lock().attempts.is_empty());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
