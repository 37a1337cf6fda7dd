//! Administrators' sessions: an unguessable id in an `HttpOnly`, `SameSite=Strict` cookie,
//! and a per-session CSRF token that every form carries back. Kept in memory: a restart
//! logs administrators out, which costs one login.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    failures: HashMap<IpAddr, (u32, Instant)>,
}

/// Live sessions and the login throttle.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
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

    /// Whether `ip` may try to log in now.
    pub fn may_try(&self, ip: IpAddr, now: Instant) -> bool {
        let g = self.lock();
        g.failures
            .get(&ip)
            .is_none_or(|(n, since)| *n < MAX_FAILURES || now.duration_since(*since) > FAIL_WINDOW)
    }

    /// Counts a failed login from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut g = self.lock();
        if g.failures.len() > 10_000 {
            g.failures
                .retain(|_, (_, since)| now.duration_since(*since) <= FAIL_WINDOW);
        }
        let e = g.failures.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) > FAIL_WINDOW {
            *e = (0, now);
        }
        e.0 += 1;
    }

    /// Forgets the failures of `ip` after a successful login.
    pub fn succeeded(&self, ip: IpAddr) {
        self.lock().failures.remove(&ip);
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

    #[test]
    fn logins_are_throttled_per_address() {
        let s = Sessions::default();
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let other: IpAddr = "10.0.0.10".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(s.may_try(ip, t0));
            s.failed(ip, t0);
        }
        assert!(!s.may_try(ip, t0));
        assert!(s.may_try(other, t0));
        assert!(s.may_try(ip, t0 + FAIL_WINDOW + Duration::from_secs(1)));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
