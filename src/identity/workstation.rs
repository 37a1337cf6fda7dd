//! Workstation names (§4.8 of the charter, « le nom du poste de travail ») by reverse
//! DNS of the client's address, for the audit record.
//!
//! A reverse lookup can take seconds when the DNS is slow, so it never sits on a
//! request's path: [`Workstations::get`] answers from a cache at once and, on a miss,
//! starts one lookup in the background for the next request from that address. Lookups
//! run `getnameinfo` (the system resolver: `/etc/hosts`, DNS, whatever NSS says) on
//! tokio's blocking pool, at most [`MAX_CONCURRENT_LOOKUPS`] at a time so that a burst
//! of new addresses cannot take the pool from the rest of the proxy; the others wait
//! their turn in the background.
//!
//! The cache is bounded ([`MAX_ENTRIES`]). Answers stay fresh for the configured TTL,
//! "no name" answers as well (negative cache). Once an answer expires, `get` keeps
//! returning it while a new lookup runs (a workstation rarely changes name). A failed
//! lookup (DNS unreachable, time-out) keeps the last known name and is retried after
//! at most [`RETRY_AFTER`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dns_lookup::{LookupError, LookupErrorKind};
use tokio::sync::{Notify, Semaphore};

/// Most addresses remembered.
pub const MAX_ENTRIES: usize = 65_536;

/// Most reverse lookups running at once.
pub const MAX_CONCURRENT_LOOKUPS: usize = 16;

/// Longest wait before retrying a lookup that failed (as opposed to "no name").
pub const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Longest TTL honoured (a longer one is this).
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Reverse-DNS names of client addresses; cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct Workstations {
    /// `None` when disabled.
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    ttl: Duration,
    entries: Mutex<HashMap<IpAddr, Entry>>,
    lookups: Arc<Semaphore>,
    /// Lookups started so far (tests count them to check deduplication).
    started: AtomicU64,
}

#[derive(Debug, Default)]
struct Entry {
    /// Last answer; `None` for "no name" or no answer yet.
    name: Option<Arc<str>>,
    /// Until when `name` is fresh; `None` before the first answer.
    fresh_until: Option<Instant>,
    /// The lookup in progress, if any; notified when it ends.
    pending: Option<Arc<Notify>>,
}

impl Entry {
    fn is_fresh(&self, now: Instant) -> bool {
        self.fresh_until.is_some_and(|t| t > now)
    }
}

/// An IPv4 client seen through an IPv6 socket is the IPv4 client.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// What a lookup result means for the cache: `Some(name)` to store (possibly "no
/// name"), `None` for a failure that should keep the last known name.
fn interpret(ip: IpAddr, result: Result<String, LookupError>) -> Option<Option<Arc<str>>> {
    match result {
        Ok(name) => {
            let name = name.trim_end_matches('.');
            // A resolver that answers with the address itself has no name for it.
            let no_name = name.is_empty() || name.parse::<IpAddr>().is_ok_and(|n| n == ip);
            Some((!no_name).then(|| Arc::from(name)))
        }
        Err(e) => match e.kind() {
            LookupErrorKind::NoName | LookupErrorKind::NoData => Some(None),
            _ => None,
        },
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Entry>> {
        // Every update leaves the map consistent, whatever panicked meanwhile.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Workstations {
    /// `enabled: false` gives an instance that never looks anything up.
    pub fn new(enabled: bool, ttl: Duration) -> Workstations {
        Workstations {
            inner: enabled.then(|| {
                Arc::new(Inner {
                    // Bounded so that `now + ttl` cannot overflow.
                    ttl: ttl.min(MAX_TTL),
                    entries: Mutex::new(HashMap::new()),
                    lookups: Arc::new(Semaphore::new(MAX_CONCURRENT_LOOKUPS)),
                    started: AtomicU64::new(0),
                })
            }),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Lookups started so far.
    pub fn lookups_started(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |i| i.started.load(Ordering::Relaxed))
    }

    /// The cached name of `ip`, if any, without waiting. When the answer is missing or
    /// expired, starts one background lookup (unless one is running) for next time; an
    /// expired name is still returned meanwhile. Must be called inside a tokio runtime
    /// to start lookups (outside one it only reads the cache).
    pub fn get(&self, ip: IpAddr) -> Option<Arc<str>> {
        let inner = self.inner.as_ref()?;
        let ip = canonical(ip);
        let mut entries = inner.lock();
        let (name, _) = lookup_if_needed(inner, &mut entries, ip);
        name
    }

    /// The name of `ip`, waiting up to `timeout` for a lookup in progress (or one it
    /// starts). For tests, and for writers that can afford to wait.
    pub async fn resolve_now(&self, ip: IpAddr, timeout: Duration) -> Option<Arc<str>> {
        let inner = self.inner.as_ref()?;
        let ip = canonical(ip);
        let notified = {
            let mut entries = inner.lock();
            match lookup_if_needed(inner, &mut entries, ip) {
                (name, None) => return name,
                // Created under the lock, before the lookup can end: `notify_waiters`
                // reaches a `Notified` from its creation on, polled or not.
                (_, Some(notify)) => notify.notified_owned(),
            }
        };
        let _ = tokio::time::timeout(timeout, notified).await;
        inner.lock().get(&ip).and_then(|e| e.name.clone())
    }
}

/// The current name of `ip` and, if a lookup is (now) running, its notifier.
fn lookup_if_needed(
    inner: &Arc<Inner>,
    entries: &mut HashMap<IpAddr, Entry>,
    ip: IpAddr,
) -> (Option<Arc<str>>, Option<Arc<Notify>>) {
    let now = Instant::now();
    if let Some(e) = entries.get(&ip) {
        if e.is_fresh(now) {
            return (e.name.clone(), None);
        }
        if let Some(p) = &e.pending {
            return (e.name.clone(), Some(p.clone()));
        }
    } else if entries.len() >= MAX_ENTRIES {
        entries.retain(|_, e| e.is_fresh(now) || e.pending.is_some());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.pending.is_some());
        }
        if entries.len() >= MAX_ENTRIES {
            // Only lookups in flight: do not queue more.
            return (None, None);
        }
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return (entries.get(&ip).and_then(|e| e.name.clone()), None);
    };
    let notify = Arc::new(Notify::new());
    let entry = entries.entry(ip).or_default();
    entry.pending = Some(notify.clone());
    inner.started.fetch_add(1, Ordering::Relaxed);
    let task_inner = inner.clone();
    let task_notify = notify.clone();
    runtime.spawn(async move {
        let inner = task_inner;
        let result = match inner.lookups.clone().acquire_owned().await {
            Ok(permit) => tokio::task::spawn_blocking(move || {
                let _permit = permit;
                interpret(ip, dns_lookup::lookup_addr(&ip))
            })
            .await
            .unwrap_or(None),
            Err(_) => None,
        };
        {
            let mut entries = inner.lock();
            let e = entries.entry(ip).or_default();
            let now = Instant::now();
            match result {
                Some(name) => {
                    e.name = name;
                    e.fresh_until = Some(now + inner.ttl);
                }
                None => e.fresh_until = Some(now + inner.ttl.min(RETRY_AFTER)),
            }
            e.pending = None;
        }
        task_notify.notify_waiters();
    });
    (entry.name.clone(), Some(notify))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn localhost_resolves_then_comes_from_the_cache() {
        let w = Workstations::new(true, Duration::from_secs(60));
        // The first get only starts the lookup; a second one does not start another.
        assert_eq!(w.get(LOCALHOST), None);
        assert_eq!(w.get("::ffff:127.0.0.1".parse().unwrap()), None);
        assert_eq!(w.lookups_started(), 1);
        let name = w
            .resolve_now(LOCALHOST, Duration::from_secs(10))
            .await
            .expect("127.0.0.1 has a name (localhost in /etc/hosts)");
        assert_ne!(&*name, "127.0.0.1");
        assert_eq!(w.get(LOCALHOST), Some(name.clone()));
        assert_eq!(
            w.resolve_now(LOCALHOST, Duration::ZERO).await,
            Some(name),
            "a fresh answer needs no wait"
        );
        assert_eq!(w.lookups_started(), 1);
    }

    #[tokio::test]
    async fn an_expired_name_is_served_while_it_is_looked_up_again() {
        let w = Workstations::new(true, Duration::ZERO);
        let name = w.resolve_now(LOCALHOST, Duration::from_secs(10)).await;
        assert!(name.is_some());
        assert_eq!(w.get(LOCALHOST), name);
        assert_eq!(w.lookups_started(), 2);
    }

    #[tokio::test]
    async fn a_disabled_instance_never_answers() {
        let w = Workstations::new(false, Duration::from_secs(60));
        assert_eq!(w.get(LOCALHOST), None);
        assert_eq!(w.resolve_now(LOCALHOST, Duration::from_secs(1)).await, None);
        assert_eq!(w.lookups_started(), 0);
    }

    #[test]
    fn outside_a_runtime_get_only_reads() {
        let w = Workstations::new(true, Duration::from_secs(60));
        assert_eq!(w.get(LOCALHOST), None);
        assert_eq!(w.lookups_started(), 0);
    }

    #[test]
    fn a_name_that_is_the_address_is_no_name() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(interpret(ip, Ok("10.1.2.3".into())), Some(None));
        assert_eq!(
            interpret(ip, Ok("poste-12.mairie.local.".into())),
            Some(Some("poste-12.mairie.local".into()))
        );
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(interpret(v6, Ok("2001:db8:0::1".into())), Some(None));
    }
}
