//! Dialing the site: the one way the proxy opens a connection upstream, for plain HTTP
//! (as the pooled client's connector), for tunnels and for inspected HTTPS.
//!
//! The name is resolved once; every address is checked against the internal ranges
//! ([`crate::policy::internal::internal_range`]) and the proxy's own listeners; the connection goes to
//! exactly a checked address. Nothing resolves the name a second time, so an answer that
//! changes between a check and a connect (DNS rebinding) changes nothing.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::classify::Host;
use crate::policy::ReasonCode;
use crate::policy::internal::InternalSites;

/// Why the site could not be reached; `code()` is stable (trace, metrics).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("name resolution failed for {host}: {source}")]
    Dns {
        host: String,
        source: std::io::Error,
    },
    #[error("connection to {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connection to {host} timed out")]
    Timeout { host: String },
    /// Every address of the site is internal and the policy does not list it.
    #[error("{host} is at {addr}, an internal address ({range}) that the policy does not open")]
    Internal {
        host: String,
        addr: IpAddr,
        range: &'static str,
    },
    /// The site is one of the proxy's own listeners.
    #[error("{addr} is this proxy's own listener")]
    OwnListener { addr: SocketAddr },
    #[error("the address has no valid host: {0}")]
    BadHost(String),
}

impl UpstreamError {
    pub fn code(&self) -> &'static str {
        self.reason().as_str()
    }

    /// The trace's code for this failure.
    pub fn reason(&self) -> ReasonCode {
        match self {
            UpstreamError::Dns { .. } => ReasonCode::UpstreamDns,
            UpstreamError::Connect { .. } => ReasonCode::UpstreamConnect,
            UpstreamError::Timeout { .. } => ReasonCode::UpstreamTimeout,
            UpstreamError::Internal { .. } => ReasonCode::InternalDestination,
            UpstreamError::OwnListener { .. } => ReasonCode::OwnListener,
            UpstreamError::BadHost(_) => ReasonCode::BadHost,
        }
    }

    /// Metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Dns { .. } => "dns",
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::Timeout { .. } => "timeout",
            UpstreamError::Internal { .. } | UpstreamError::OwnListener { .. } => "internal",
            UpstreamError::BadHost(_) => "other",
        }
    }

    /// Refused by the proxy (403) rather than a failure of the site (502/504).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            UpstreamError::Internal { .. } | UpstreamError::OwnListener { .. }
        )
    }
}

/// A source of addresses for names; [`Resolver`] in the product, stubs in tests
/// (a resolver that hangs, or that answers differently each time it is asked).
pub trait Resolve: Send + Sync + 'static {
    fn resolve<'a>(
        &'a self,
        host: &'a Host,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>>;
}

impl Resolve for Resolver {
    fn resolve<'a>(
        &'a self,
        host: &'a Host,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        Box::pin(Resolver::resolve(self, host, port))
    }
}

/// Resolves upstream names: the server configuration's pinned `hosts` first, then the
/// system resolver. Addresses come back unchecked; [`Dialer`] checks them.
#[derive(Clone)]
pub struct Resolver {
    pinned: Arc<BTreeMap<String, IpAddr>>,
}

impl Resolver {
    pub fn new(pinned: BTreeMap<String, IpAddr>) -> Resolver {
        Resolver {
            pinned: Arc::new(pinned),
        }
    }

    /// Every address of `host`, port `port`.
    pub async fn resolve(&self, host: &Host, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        if let Some(ip) = host.ip() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        if let Some(ip) = self.pinned.get(host.as_str()) {
            return Ok(vec![SocketAddr::new(*ip, port)]);
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await?
            .collect();
        if addrs.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no address",
            ));
        }
        Ok(addrs)
    }
}

/// What the proxy must never connect to: internal addresses the policy does not open,
/// and its own listeners.
pub struct Guard {
    own: Vec<SocketAddr>,
    sites: ArcSwap<InternalSites>,
}

impl Guard {
    pub fn new(own: Vec<SocketAddr>) -> Arc<Guard> {
        Arc::new(Guard {
            own,
            sites: ArcSwap::from_pointee(InternalSites::default()),
        })
    }

    /// The policy in force changed (load, reload).
    pub fn set_sites(&self, sites: Arc<InternalSites>) {
        self.sites.store(sites);
    }

    /// Whether the proxy may connect to `addr` for `host`.
    pub fn check(&self, host: &Host, addr: SocketAddr) -> Result<(), UpstreamError> {
        let ip = addr.ip().to_canonical();
        for l in &self.own {
            let same_ip = l.ip().to_canonical() == ip
                || (l.ip().is_unspecified() && (ip.is_loopback() || ip.is_unspecified()));
            if l.port() == addr.port() && same_ip {
                return Err(UpstreamError::OwnListener { addr });
            }
        }
        self.sites
            .load()
            .permits(host, addr.ip())
            .map_err(|range| UpstreamError::Internal {
                host: host.to_string(),
                addr: addr.ip(),
                range,
            })
    }
}

/// Opens connections to sites; see the module documentation.
#[derive(Clone)]
pub struct Dialer {
    resolver: Arc<dyn Resolve>,
    guard: Arc<Guard>,
    timeout: Duration,
}

impl Dialer {
    pub fn new(resolver: impl Resolve, guard: Arc<Guard>, timeout: Duration) -> Dialer {
        Dialer {
            resolver: Arc::new(resolver),
            guard,
            timeout,
        }
    }

    pub fn guard(&self) -> &Arc<Guard> {
        &self.guard
    }

    /// Resolves `host`, checks every address, and connects to the first checked one
    /// that answers, all within the connect timeout. When every address is refused, the
    /// first refusal is the error.
    pub async fn connect(
        &self,
        host: &Host,
        port: u16,
    ) -> Result<(TcpStream, SocketAddr), UpstreamError> {
        let attempt = async {
            let checked = self.check(host, port).await?;
            dial(host, checked).await
        };
        self.timed(host, attempt).await
    }

    /// [`Dialer::connect`] in two steps, for a caller that must decide something between
    /// knowing where the site is and connecting to it: resolves and checks now (within
    /// the connect timeout), so that a refused or unknown site is known at once; the
    /// connection is opened by [`Dialer::connect_to`], to those addresses only.
    pub async fn resolve(&self, host: &Host, port: u16) -> Result<Checked, UpstreamError> {
        self.timed(host, self.check(host, port)).await
    }

    /// Connects to the first of `checked` that answers, within the connect timeout.
    pub async fn connect_to(
        &self,
        host: &Host,
        checked: Checked,
    ) -> Result<(TcpStream, SocketAddr), UpstreamError> {
        self.timed(host, dial(host, checked)).await
    }

    async fn timed<T>(
        &self,
        host: &Host,
        f: impl Future<Output = Result<T, UpstreamError>>,
    ) -> Result<T, UpstreamError> {
        tokio::time::timeout(self.timeout, f)
            .await
            .unwrap_or_else(|_| {
                Err(UpstreamError::Timeout {
                    host: host.to_string(),
                })
            })
    }

    /// The addresses of `host` that the guard lets through; when none, the first
    /// refusal.
    async fn check(&self, host: &Host, port: u16) -> Result<Checked, UpstreamError> {
        let addrs =
            self.resolver
                .resolve(host, port)
                .await
                .map_err(|source| UpstreamError::Dns {
                    host: host.to_string(),
                    source,
                })?;
        let mut refused = None;
        let mut allowed = Vec::with_capacity(addrs.len());
        for addr in addrs {
            match self.guard.check(host, addr) {
                Ok(()) => allowed.push(addr),
                Err(e) => {
                    refused.get_or_insert(e);
                }
            }
        }
        if allowed.is_empty() {
            return Err(refused.unwrap_or_else(|| UpstreamError::BadHost(host.to_string())));
        }
        Ok(Checked(allowed))
    }
}

/// A site's addresses, resolved once and checked by the guard: the only ones
/// [`Dialer::connect_to`] connects to.
#[derive(Debug)]
pub struct Checked(Vec<SocketAddr>);

/// Connects to the first of `checked` that answers; the last failure otherwise.
async fn dial(host: &Host, checked: Checked) -> Result<(TcpStream, SocketAddr), UpstreamError> {
    let mut last = None;
    for addr in checked.0 {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok((s, addr));
            }
            Err(source) => last = Some(UpstreamError::Connect { addr, source }),
        }
    }
    Err(last.unwrap_or_else(|| UpstreamError::BadHost(host.to_string())))
}

/// The pooled clients' connector.
impl tower_service::Service<Uri> for Dialer {
    type Response = TokioIo<TcpStream>;
    type Error = UpstreamError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, UpstreamError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            let raw = dst.host().unwrap_or("");
            let host = Host::parse(raw).map_err(|e| UpstreamError::BadHost(e.to_string()))?;
            let https = dst.scheme_str() == Some("https");
            let port = dst.port_u16().unwrap_or(if https { 443 } else { 80 });
            let (stream, _) = me.connect(&host, port).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers `answers[n]` to the n-th question (the last one after that), counting
    /// the questions; never answers when `answers` is empty.
    struct Stub {
        answers: Vec<Vec<IpAddr>>,
        asked: Arc<AtomicUsize>,
    }

    impl Resolve for Stub {
        fn resolve<'a>(
            &'a self,
            _: &'a Host,
            port: u16,
        ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>> {
            let n = self.asked.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let Some(last) = self.answers.last() else {
                    return std::future::pending().await;
                };
                let ips = self.answers.get(n).unwrap_or(last);
                Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
            })
        }
    }

    fn stub(answers: &[&[&str]]) -> (Stub, Arc<AtomicUsize>) {
        let asked = Arc::new(AtomicUsize::new(0));
        let answers = answers
            .iter()
            .map(|a| a.iter().map(|s| s.parse().unwrap()).collect())
            .collect();
        (
            Stub {
                answers,
                asked: asked.clone(),
            },
            asked,
        )
    }

    #[tokio::test]
    async fn one_lookup_per_connection_and_only_checked_addresses_are_dialed() {
        let site = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = site.local_addr().unwrap().port();
        let guard = Guard::new(vec![]);
        guard.set_sites(Arc::new(InternalSites {
            networks: vec!["127.0.0.1/32".parse().unwrap()],
            names: vec![],
        }));
        let h = Host::parse("rebind.example").unwrap();

        // Rebinding: an opened address first, then the metadata address. Each connection
        // asks once and goes where that one answer said.
        let (s, asked) = stub(&[&["127.0.0.1"], &["169.254.169.254"]]);
        let dialer = Dialer::new(s, guard.clone(), Duration::from_secs(5));
        let (_c, addr) = dialer.connect(&h, port).await.unwrap();
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
        assert_eq!(
            asked.load(Ordering::SeqCst),
            1,
            "one lookup, no second one to connect"
        );
        let e = dialer.connect(&h, port).await.unwrap_err();
        assert_eq!(e.code(), "block-internal");
        assert!(e.to_string().contains("169.254.169.254"), "{e}");
        assert_eq!(asked.load(Ordering::SeqCst), 2);

        // A mixed answer keeps only the checked addresses: the refused one is skipped,
        // never dialed.
        let (s, _) = stub(&[&["10.0.0.1", "127.0.0.1"]]);
        let dialer = Dialer::new(s, guard.clone(), Duration::from_secs(5));
        let (_c, addr) = dialer.connect(&h, port).await.unwrap();
        assert_eq!(addr.ip().to_string(), "127.0.0.1");

        // Every address refused: the first refusal is the error.
        let (s, _) = stub(&[&["10.0.0.1", "fd00::1"]]);
        let dialer = Dialer::new(s, guard.clone(), Duration::from_secs(5));
        let e = dialer.connect(&h, port).await.unwrap_err();
        assert!(e.to_string().contains("10.0.0.1"), "{e}");

        // In two steps: the refusal is known at `resolve`, before any connection; the
        // connection goes to the checked address, without asking the resolver again.
        assert_eq!(
            dialer.resolve(&h, port).await.unwrap_err().code(),
            "block-internal"
        );
        let (s, asked) = stub(&[&["10.0.0.1", "127.0.0.1"], &["169.254.169.254"]]);
        let dialer = Dialer::new(s, guard.clone(), Duration::from_secs(5));
        let checked = dialer.resolve(&h, port).await.unwrap();
        let (_c, addr) = dialer.connect_to(&h, checked).await.unwrap();
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_resolver_that_never_answers_times_out() {
        let (s, asked) = stub(&[]);
        let dialer = Dialer::new(s, Guard::new(vec![]), Duration::from_millis(200));
        let t = std::time::Instant::now();
        let e = dialer
            .connect(&Host::parse("slow-dns.example").unwrap(), 80)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "upstream-timeout");
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn internal_addresses_and_own_listeners_are_refused_before_connecting() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = l.local_addr().unwrap();
        let own: SocketAddr = "127.0.0.1:3128".parse().unwrap();
        let mut pins = BTreeMap::new();
        pins.insert("rebind.example".to_string(), open.ip());
        let guard = Guard::new(vec![own, "0.0.0.0:3130".parse().unwrap()]);
        let dialer = Dialer::new(Resolver::new(pins), guard.clone(), Duration::from_secs(5));
        let h = |s: &str| Host::parse(s).unwrap();

        // Loopback refused by default, by name (the stub resolver answers 127.0.0.1) or
        // as a literal, in any spelling the host parser turns into it.
        for host in [
            "rebind.example",
            "127.0.0.1",
            "0x7f.1",
            "[::ffff:127.0.0.1]",
        ] {
            let e = dialer.connect(&h(host), open.port()).await.unwrap_err();
            assert_eq!(e.code(), "block-internal", "{host}: {e}");
            assert!(e.is_refusal());
        }
        // Opened by the policy: connects to exactly the checked address.
        guard.set_sites(Arc::new(InternalSites {
            networks: vec!["127.0.0.0/8".parse().unwrap()],
            names: vec![],
        }));
        let (_s, addr) = dialer
            .connect(&h("rebind.example"), open.port())
            .await
            .unwrap();
        assert_eq!(addr, open);
        // The proxy's own listeners stay closed even then (a 0.0.0.0 listener: every
        // loopback address with its port).
        for (host, port) in [("127.0.0.1", 3128), ("127.0.0.2", 3130), ("::1", 3130)] {
            let e = dialer.connect(&h(host), port).await.unwrap_err();
            assert_eq!(e.code(), "block-own-listener", "{host}:{port}");
        }
    }
}
