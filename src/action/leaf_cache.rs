//! The leaves of bumped tunnels, kept and handed out: a bounded LRU of the leaves the
//! organisation's CA ([`super::ca`]) minted, shared by every connection, and the rustls
//! resolver that gives a handshake its leaf.
//!
//! - [`LeafCache::leaf`] gives the leaf of one [`Host`]: from the cache, or minted now.
//!   A host is minted once however many handshakes ask for it at the same moment (one
//!   lock per host, see [`Slot`]); a leaf near its end is minted again.
//! - [`LeafResolver`] hands that leaf to rustls during the client's handshake, for the
//!   tunnel's CONNECT host only.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use lru::LruCache;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use time::{Duration, OffsetDateTime};

use super::ca::{CaError, CertAuthority, Leaf};
use crate::classify::Host;

/// Leaves kept in memory unless told otherwise (about 2 KiB each).
pub const DEFAULT_CAPACITY: usize = 10_000;
/// A cached leaf this close to its end is minted again.
pub const LEAF_RENEW_BEFORE: Duration = Duration::days(1);

/// One host's place in the cache. Its lock is held while the leaf is minted, so
/// concurrent handshakes for the host wait for that leaf instead of minting their own.
#[derive(Default)]
struct Slot {
    leaf: Mutex<Option<Leaf>>,
}

/// The leaves minted from one CA, by host.
pub struct LeafCache {
    ca: Arc<CertAuthority>,
    /// Leaves by canonical host text. Entries are shared `Slot`s: the map lock is held
    /// only to find or add one, never while minting.
    slots: Mutex<LruCache<String, Arc<Slot>>>,
    minted: AtomicU64,
}

impl fmt::Debug for LeafCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeafCache")
            .field("ca", &self.ca)
            .field("minted", &self.minted())
            .finish_non_exhaustive()
    }
}

impl LeafCache {
    /// A cache of at most `capacity` leaves (at least 1) minted by `ca`.
    pub fn new(ca: Arc<CertAuthority>, capacity: usize) -> LeafCache {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        LeafCache {
            ca,
            slots: Mutex::new(LruCache::new(capacity)),
            minted: AtomicU64::new(0),
        }
    }

    pub fn ca(&self) -> &Arc<CertAuthority> {
        &self.ca
    }

    /// Leaves minted by this cache (re-mints included; the CA's load-time self-test
    /// excluded).
    pub fn minted(&self) -> u64 {
        self.minted.load(Ordering::Relaxed)
    }

    /// Hosts whose leaf is in the cache now.
    pub fn cached(&self) -> usize {
        lock(&self.slots).len()
    }

    /// The leaf for `host`, chained `[leaf, CA, …]`, with its key: from the cache (a few
    /// microseconds), or minted now on the caller's thread ([`CertAuthority::mint`]).
    /// Concurrent calls for one host mint it once: the others wait on that host's lock
    /// for the same leaf. A leaf within [`LEAF_RENEW_BEFORE`] of its end is replaced.
    pub fn leaf(&self, host: &Host) -> Result<Arc<CertifiedKey>, CaError> {
        let slot = lock(&self.slots)
            .get_or_insert_ref(host.as_str(), Arc::default)
            .clone();
        let mut current = lock(&slot.leaf);
        if let Some(leaf) = current.as_ref() {
            if !self.needs_renewal(leaf, OffsetDateTime::now_utc()) {
                return Ok(leaf.key.clone());
            }
        }
        let minted = self.ca.mint(host)?;
        self.minted.fetch_add(1, Ordering::Relaxed);
        let key = minted.key.clone();
        *current = Some(minted);
        Ok(key)
    }

    fn needs_renewal(&self, leaf: &Leaf, now: OffsetDateTime) -> bool {
        if leaf.not_after <= now {
            return true;
        }
        // A leaf already cut at the CA's own end gains nothing by being minted again.
        leaf.not_after - now < LEAF_RENEW_BEFORE && leaf.not_after < self.ca.not_after()
    }
}

/// A poisoned lock still guards consistent data here (a map of `Arc`s, an `Option`):
/// take it rather than fail every later handshake.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Picks the leaf for a bumped connection from the ClientHello. Built per tunnel with the
/// CONNECT host as `fallback`, used when the client sends no SNI (always the case for an
/// address). An SNI that names another host gets no certificate and the handshake
/// fails: the tunnel's decision was taken for the CONNECT host, and a certificate for
/// another name would let that name through unchecked. (The tunnel refuses such a
/// mismatch earlier, with its reason; this is the second lock.)
#[derive(Debug)]
pub struct LeafResolver {
    leaves: Arc<LeafCache>,
    fallback: Host,
}

impl LeafResolver {
    pub fn new(leaves: Arc<LeafCache>, fallback: Host) -> LeafResolver {
        LeafResolver { leaves, fallback }
    }
}

impl ResolvesServerCert for LeafResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(sni) = hello.server_name() {
            match Host::parse(sni) {
                Ok(h) if h == self.fallback => {}
                Ok(h) => {
                    tracing::warn!(sni = %h, connect = %self.fallback,
                        "TLS name differs from the CONNECT host: no certificate");
                    return None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "invalid TLS server name: no certificate");
                    return None;
                }
            }
        }
        match self.leaves.leaf(&self.fallback) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::warn!(error = %e, code = e.code(), "no certificate for the client");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Barrier;

    use rustls::RootCertStore;
    use rustls::pki_types::{CertificateDer, ServerName};

    use super::*;
    use crate::action::ca::tests::{host, new_ca, subject_alt_names};
    use crate::action::ca::{LEAF_LIFETIME, crypto_provider};

    /// A cache of `capacity` leaves over a new test CA in `dir`.
    fn new_cache(dir: &Path, capacity: usize) -> LeafCache {
        let (_, ca) = new_ca(dir);
        LeafCache::new(Arc::new(ca), capacity)
    }

    #[test]
    fn leaves_are_cached_and_renewed_near_their_end() {
        let dir = tempfile::tempdir().unwrap();
        let leaves = new_cache(dir.path(), DEFAULT_CAPACITY);
        let a = leaves.leaf(&host("a.example")).unwrap();
        let again = leaves.leaf(&host("A.EXAMPLE.")).unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(leaves.minted(), 1);

        let m = Leaf {
            key: a,
            not_after: OffsetDateTime::now_utc() + LEAF_LIFETIME,
        };
        let now = OffsetDateTime::now_utc();
        assert!(!leaves.needs_renewal(&m, now));
        assert!(!leaves.needs_renewal(&m, now + Duration::days(5)));
        assert!(leaves.needs_renewal(&m, now + Duration::days(6) + Duration::hours(1)));
        assert!(leaves.needs_renewal(&m, now + Duration::days(8)));
        // A leaf cut at the CA's end is kept until it ends.
        let ca_end = leaves.ca().not_after();
        let capped = Leaf {
            not_after: ca_end,
            ..m
        };
        assert!(!leaves.needs_renewal(&capped, ca_end - Duration::hours(1)));
        assert!(leaves.needs_renewal(&capped, ca_end));
    }

    #[test]
    fn concurrent_handshakes_mint_each_host_once() {
        let dir = tempfile::tempdir().unwrap();
        let leaves = Arc::new(new_cache(dir.path(), DEFAULT_CAPACITY));
        let barrier = Arc::new(Barrier::new(200));
        let threads: Vec<_> = (0..200)
            .map(|i| {
                let (leaves, barrier) = (leaves.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let h = host(&format!("host{}.example", i % 20));
                    barrier.wait();
                    (i % 20, leaves.leaf(&h).unwrap())
                })
            })
            .collect();
        let mut first: Vec<Option<Arc<CertifiedKey>>> = vec![None; 20];
        for t in threads {
            let (h, leaf) = t.join().unwrap();
            match &first[h] {
                Some(f) => assert!(Arc::ptr_eq(f, &leaf), "host{h} has two leaves"),
                None => first[h] = Some(leaf),
            }
        }
        assert_eq!(leaves.minted(), 20);
        assert_eq!(leaves.cached(), 20);
    }

    #[test]
    fn the_cache_keeps_at_most_its_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let leaves = new_cache(dir.path(), 5);
        for i in 0..10 {
            leaves.leaf(&host(&format!("h{i}.example"))).unwrap();
            assert!(leaves.cached() <= 5);
        }
        assert_eq!((leaves.minted(), leaves.cached()), (10, 5));
        leaves.leaf(&host("h9.example")).unwrap();
        assert_eq!(leaves.minted(), 10, "a recent host is still cached");
        leaves.leaf(&host("h0.example")).unwrap();
        assert_eq!(leaves.minted(), 11, "an evicted host is minted again");
        assert_eq!(leaves.cached(), 5);
    }

    /// Runs a TLS handshake in memory: a client asking for `sni` (sent or not) against a
    /// server resolving with `LeafResolver` for the CONNECT host `connect`. Returns the
    /// chain the client received.
    fn handshake(
        leaves: &Arc<LeafCache>,
        connect: &str,
        sni: &str,
        send_sni: bool,
    ) -> Result<Vec<CertificateDer<'static>>, rustls::Error> {
        let provider = crypto_provider();
        let resolver = LeafResolver::new(leaves.clone(), host(connect));
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(leaves.ca().cert_der().to_vec()))
            .unwrap();
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.enable_sni = send_sni;
        let name = ServerName::try_from(sni.to_string()).unwrap();
        let mut client = rustls::Connection::from(
            rustls::ClientConnection::new(Arc::new(client), name).unwrap(),
        );
        let mut server =
            rustls::Connection::from(rustls::ServerConnection::new(Arc::new(server)).unwrap());
        fn transfer(
            from: &mut rustls::Connection,
            to: &mut rustls::Connection,
        ) -> Result<usize, rustls::Error> {
            let mut buf = Vec::new();
            while from.wants_write() {
                from.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                to.read_tls(&mut rd).unwrap();
                to.process_new_packets()?;
            }
            Ok(buf.len())
        }
        while client.is_handshaking() || server.is_handshaking() {
            let sent = transfer(&mut client, &mut server)? + transfer(&mut server, &mut client)?;
            if sent == 0 {
                return Err(rustls::Error::General("handshake stalled".into()));
            }
        }
        Ok(client.peer_certificates().unwrap().to_vec())
    }

    #[test]
    fn the_resolver_serves_the_connect_host_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let leaves = Arc::new(new_cache(dir.path(), DEFAULT_CAPACITY));
        let chain = handshake(&leaves, "www.example.com", "www.example.com", true).unwrap();
        assert_eq!(
            subject_alt_names(&chain[0]).unwrap(),
            vec![(0x82, b"www.example.com".to_vec())]
        );
        assert_eq!(&chain[1][..], leaves.ca().cert_der());

        // No SNI (as for an address): the CONNECT host's leaf.
        let chain = handshake(&leaves, "192.0.2.7", "192.0.2.7", true).unwrap();
        assert_eq!(
            subject_alt_names(&chain[0]).unwrap(),
            vec![(0x87, vec![192, 0, 2, 7])]
        );
        handshake(&leaves, "www.example.com", "www.example.com", false).unwrap();

        // An SNI naming another host than the CONNECT: no certificate, no handshake.
        let minted = leaves.minted();
        assert!(handshake(&leaves, "www.example.com", "blocked.example", true).is_err());
        assert_eq!(leaves.minted(), minted, "nothing minted for the other name");
    }
}
