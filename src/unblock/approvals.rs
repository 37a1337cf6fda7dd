//! Approvals in force, in memory, for the request path: which hosts are opened for whom
//! and until when. Rebuilt from the store whenever it changes (an administrator's
//! decision in this process, or the `requests` command in another, seen within a second)
//! and swapped whole; an approval whose end has passed stops matching on its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::ArcSwap;

use super::store::{ApprovalRow, Store, StoreError};
use crate::classify::Host;

/// Who a request belongs to: the user when authenticated, else the address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Requester {
    User(Box<str>),
    Ip(IpAddr),
}

impl Requester {
    pub fn new(user: Option<&str>, ip: IpAddr) -> Requester {
        match user {
            Some(u) => Requester::User(u.into()),
            None => Requester::Ip(ip),
        }
    }

    /// `user:NAME` or `ip:ADDRESS`, as stored.
    pub fn key(&self) -> String {
        match self {
            Requester::User(u) => format!("user:{u}"),
            Requester::Ip(ip) => format!("ip:{ip}"),
        }
    }

    pub fn parse(key: &str) -> Option<Requester> {
        if let Some(u) = key.strip_prefix("user:") {
            return Some(Requester::User(u.into()));
        }
        key.strip_prefix("ip:")?.parse().ok().map(Requester::Ip)
    }

    fn is(&self, user: Option<&str>, ip: IpAddr) -> bool {
        match self {
            Requester::User(u) => user == Some(&**u),
            Requester::Ip(a) => user.is_none() && *a == ip,
        }
    }
}

#[derive(Debug, Clone)]
enum Who {
    Requester(Requester),
    Group(Box<str>),
    Everyone,
}

#[derive(Debug, Clone)]
struct Entry {
    who: Who,
    until: Option<i64>,
}

/// The approvals of one moment, by host.
#[derive(Debug, Default)]
pub struct Approvals {
    by_host: HashMap<Box<str>, Vec<Entry>>,
}

impl Approvals {
    pub fn from_rows(rows: &[ApprovalRow]) -> Approvals {
        let mut by_host: HashMap<Box<str>, Vec<Entry>> = HashMap::new();
        for r in rows {
            let who = if r.scope == "everyone" {
                Who::Everyone
            } else if let Some(g) = r.scope.strip_prefix("group:") {
                Who::Group(g.into())
            } else {
                match Requester::parse(&r.requester) {
                    Some(q) => Who::Requester(q),
                    None => continue,
                }
            };
            // Keyed as hosts are matched (an IPv6 form carrying an IPv4 address is that
            // address); a stored text that no longer parses is kept as it is.
            let key: Box<str> = match Host::parse(&r.host) {
                Ok(h) => h.match_str().into(),
                Err(_) => r.host.as_str().into(),
            };
            by_host.entry(key).or_default().push(Entry {
                who,
                until: r.until,
            });
        }
        Approvals { by_host }
    }

    pub fn len(&self) -> usize {
        self.by_host.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }

    /// Whether an approval in force at `now` opens `host` (or a parent domain of it, as
    /// approved) for this client. `in_group` says whether the client is in a group.
    pub fn covers(
        &self,
        host: &Host,
        user: Option<&str>,
        ip: IpAddr,
        in_group: &dyn Fn(&str) -> bool,
        now: i64,
    ) -> bool {
        if self.by_host.is_empty() {
            return false;
        }
        // Keyed like the lists: an IPv6 form carrying an IPv4 address is that address.
        let name = host.match_str();
        let mut suffix = name;
        loop {
            if let Some(entries) = self.by_host.get(suffix) {
                let hit = entries.iter().any(|e| {
                    e.until.is_none_or(|u| u > now)
                        && match &e.who {
                            Who::Everyone => true,
                            Who::Group(g) => in_group(g),
                            Who::Requester(r) => r.is(user, ip),
                        }
                });
                if hit {
                    return true;
                }
            }
            match suffix.find('.') {
                Some(i) => suffix = &suffix[i + 1..],
                None => return false,
            }
        }
    }
}

/// The approvals in force, kept in step with the store.
pub struct LiveApprovals {
    current: ArcSwap<Approvals>,
    store: Arc<dyn Store>,
    seen: AtomicI64,
    refreshing: Mutex<()>,
}

impl LiveApprovals {
    pub fn new(store: Arc<dyn Store>) -> Result<LiveApprovals, StoreError> {
        let live = LiveApprovals {
            current: ArcSwap::from_pointee(Approvals::default()),
            store,
            seen: AtomicI64::new(i64::MIN),
            refreshing: Mutex::new(()),
        };
        match live.refresh() {
            Ok(_) => {}
            // A shared store that does not answer at start: no approval yet, so nothing
            // opens that was not approved; the sync loads them when it answers.
            Err(e @ StoreError::Unavailable { .. }) => {
                tracing::warn!(error = %e, "no approval known yet: the store does not answer");
            }
            Err(e) => return Err(e),
        }
        Ok(live)
    }

    pub fn get(&self) -> arc_swap::Guard<Arc<Approvals>> {
        self.current.load()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Reloads the approvals if the store changed since the last look. Blocking (SQLite).
    pub fn refresh(&self) -> Result<bool, StoreError> {
        let _one = self.refreshing.lock().unwrap_or_else(|p| p.into_inner());
        let v = self.store.version()?;
        if v == self.seen.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let rows = self.store.approvals(now())?;
        self.current.store(Arc::new(Approvals::from_rows(&rows)));
        self.seen.store(v, Ordering::SeqCst);
        Ok(true)
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    crate::clock::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Blocks per person and site, counted in memory on the request path and written to the
/// store in batches off it (for "blocked N times in 30 days" on the admin pages).
#[derive(Default)]
pub struct BlockCounter {
    pending: Mutex<HashMap<(String, String, i64), i64>>,
}

impl BlockCounter {
    pub fn add(&self, requester: &Requester, host: &str) {
        let day = now() / 86_400;
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        *p.entry((requester.key(), host.to_string(), day))
            .or_default() += 1;
    }

    /// Writes what was counted since the last call. Blocking (SQLite, PostgreSQL). What
    /// could not be written is kept for the next call (a database down for a while).
    pub fn flush(&self, store: &dyn Store) -> Result<(), StoreError> {
        let batch: Vec<(String, String, i64, i64)> = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *p)
                .into_iter()
                .map(|((r, h, d), n)| (r, h, d, n))
                .collect()
        };
        let r = store.count_blocks(&batch);
        if r.is_err() {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for (r, h, d, n) in batch {
                *p.entry((r, h, d)).or_default() += n;
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(host: &str, requester: &str, scope: &str, until: Option<i64>) -> ApprovalRow {
        ApprovalRow {
            request: 1,
            host: host.into(),
            requester: requester.into(),
            scope: scope.into(),
            until,
        }
    }

    #[test]
    fn scopes_subdomains_and_expiry() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let a = Approvals::from_rows(&[
            row("a.example", "ip:10.0.0.1", "requester", Some(100)),
            row("b.example", "user:c.martin", "group:agents", None),
            row("c.example", "user:x", "everyone", None),
        ]);
        let h = |s: &str| Host::parse(s).unwrap();
        let none = |_: &str| false;
        let agents = |g: &str| g == "agents";
        assert!(a.covers(&h("a.example"), None, ip, &none, 99));
        assert!(a.covers(&h("www.a.example"), None, ip, &none, 99));
        assert!(!a.covers(&h("a.example"), None, ip, &none, 100), "expired");
        assert!(!a.covers(&h("a.example"), None, other, &none, 99));
        assert!(!a.covers(&h("a.example"), Some("u"), ip, &none, 99));
        assert!(a.covers(&h("b.example"), None, other, &agents, 0));
        assert!(!a.covers(&h("b.example"), None, other, &none, 0));
        assert!(a.covers(&h("c.example"), None, other, &none, 0));
        assert!(!a.covers(&h("xa.example"), None, ip, &none, 0));
    }
}
