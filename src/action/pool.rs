//! The plain-HTTP upstream pool: HTTP/1.1 connections to sites, kept per worker thread
//! and per site (`host[:port]`), reused last-in first-out, closed after `keepalive` idle.
//!
//! Requests without a body (`GET`, `HEAD`, `OPTIONS`: the bulk of browsing) are
//! exchanged by [`super::h1`], in the request's own task. Requests with a body, and
//! upgrades (WebSocket), go through hyper's client connection, driven by a task of its
//! own; a kept connection can move from the first kind to the second, not back.
//!
//! Against hyper-util's general client this spares, on every request, a SipHash of the
//! key byte by byte, checkout and `Pooled` bookkeeping and a lock shared by every
//! thread: the key is hashed with foldhash, and the pool is the worker's own (its lock
//! is never contended).
//!
//! A request sent on a kept connection that the site had closed meanwhile is not lost:
//! it goes on the next connection (hyper hands it back unsent; [`super::h1`] says when
//! nothing of the answer came, for methods that may be sent again).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::dial::{Dialer, UpstreamError};
use super::forward::{BoxError, CountedIncoming};
use super::h1::{self, Conn, H1Error};
use crate::classify::Host;

/// Why a request could not be exchanged with the site.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection: the name did not resolve, the address is refused or did not answer.
    #[error("cannot connect to the site")]
    Connect(#[source] UpstreamError),
    /// The exchange failed on a connection: reset, closed early, malformed answer, or the
    /// client's own body failed on its way up.
    #[error("the exchange with the site failed")]
    Exchange(#[source] hyper::Error),
    /// The same, on the path without a body.
    #[error("the exchange with the site failed")]
    Raw(#[source] H1Error),
}

impl PoolError {
    /// The site could not be reached at all (nothing was sent).
    pub fn is_connect(&self) -> bool {
        matches!(self, PoolError::Connect(_))
    }
}

/// An answer from the site, with the address it came from.
pub struct Answer {
    pub response: Response<UpBody>,
    pub peer: SocketAddr,
}

/// The body of a site's answer, from either kind of connection.
pub enum UpBody {
    Hyper(Incoming),
    Raw(h1::RawBody),
}

impl HttpBody for UpBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            UpBody::Raw(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Hyper(b) => b.is_end_stream(),
            UpBody::Raw(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Hyper(b) => b.size_hint(),
            UpBody::Raw(b) => b.size_hint(),
        }
    }
}

struct Idle {
    tx: SendRequest<CountedIncoming>,
    peer: SocketAddr,
    since: Instant,
}

/// A connection for [`super::h1`], idle.
struct IdleRaw {
    conn: Conn,
    since: Instant,
}

/// One site's idle connections, most recently used last.
#[derive(Default)]
struct Kept {
    raw: Vec<IdleRaw>,
    hyper: Vec<Idle>,
}

type Map = HashMap<Box<str>, Kept, foldhash::fast::RandomState>;

struct Inner {
    idle: Mutex<Map>,
    keepalive: Duration,
    max_idle_per_site: usize,
    /// The sweeping task runs (started with the first kept connection).
    sweeping: AtomicBool,
}

/// One worker's pool of site connections. Cloning shares it.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
    dialer: Dialer,
}

impl Pool {
    /// `keepalive`: how long a connection may stay idle; at most `max_idle_per_site` idle
    /// connections are kept for one site.
    pub fn new(dialer: Dialer, keepalive: Duration, max_idle_per_site: usize) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                idle: Mutex::new(Map::default()),
                keepalive,
                max_idle_per_site,
                sweeping: AtomicBool::new(false),
            }),
            dialer,
        }
    }

    /// Sends `req` (its URI absolute or origin-form; sent in origin-form) to `host:port`,
    /// on a kept connection to `site` (the canonical `host[:port]`) or a new one.
    pub async fn send(
        &self,
        site: &str,
        host: &Host,
        port: u16,
        mut req: Request<CountedIncoming>,
    ) -> Result<Answer, PoolError> {
        origin_form(req.uri_mut());
        if h1::eligible(req.method(), req.headers(), req.body().is_end_stream()) {
            return self.send_raw(site, host, port, req).await;
        }
        // Kept connections first; a request handed back unsent goes on the next one.
        while let Some(mut idle) = self.checkout(site) {
            match idle.tx.try_send_request(req).await {
                Ok(response) => {
                    self.give_back(site, idle.tx, idle.peer, &response);
                    return Ok(Answer {
                        response: response.map(UpBody::Hyper),
                        peer: idle.peer,
                    });
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => {
                        tracing::debug!(site, error = %e.error(), "kept connection closed; retrying");
                        req = unsent;
                    }
                    None => return Err(PoolError::Exchange(e.into_error())),
                },
            }
        }
        let (stream, peer) = match self.checkout_raw(site) {
            Some(conn) => {
                let peer = conn.peer;
                (conn.into_io(), peer)
            }
            None => self
                .dialer
                .connect(host, port)
                .await
                .map_err(PoolError::Connect)?,
        };
        let (mut tx, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(PoolError::Exchange)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "site connection ended with an error");
            }
        });
        let response = tx.send_request(req).await.map_err(PoolError::Exchange)?;
        self.give_back(site, tx, peer, &response);
        Ok(Answer {
            response: response.map(UpBody::Hyper),
            peer,
        })
    }

    /// A request without a body, through [`super::h1`]: on kept connections while they
    /// turn out closed before answering, then on a new one.
    async fn send_raw(
        &self,
        site: &str,
        host: &Host,
        port: u16,
        req: Request<CountedIncoming>,
    ) -> Result<Answer, PoolError> {
        let (parts, _empty) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        loop {
            let conn = match self.checkout_raw(site) {
                Some(c) => c,
                None => {
                    let (io, peer) = self
                        .dialer
                        .connect(host, port)
                        .await
                        .map_err(PoolError::Connect)?;
                    Conn::new(io, peer)
                }
            };
            let peer = conn.peer;
            let give_back = || -> h1::GiveBack {
                let me = self.clone();
                let site: Box<str> = site.into();
                Box::new(move |c| me.keep_raw(&site, c))
            };
            match conn
                .exchange(&parts.method, path, &parts.headers, give_back)
                .await
            {
                Ok(x) => {
                    if let Some(c) = x.conn {
                        self.keep_raw(site, c);
                    }
                    return Ok(Answer {
                        response: x.response.map(UpBody::Raw),
                        peer,
                    });
                }
                // Only a kept connection says so: a new one ends the loop.
                Err(f) if f.retry => {
                    tracing::debug!(site, error = %f.error, "kept connection closed; retrying");
                }
                Err(f) => return Err(PoolError::Raw(f.error)),
            }
        }
    }

    /// The most recently used idle [`super::h1`] connection to `site` still open.
    fn checkout_raw(&self, site: &str) -> Option<Conn> {
        let mut map = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = &mut map.get_mut(site)?.raw;
        let now = Instant::now();
        while let Some(idle) = list.pop() {
            if now.duration_since(idle.since) < self.inner.keepalive && !idle.conn.is_closed() {
                return Some(idle.conn);
            }
        }
        None
    }

    fn keep_raw(&self, site: &str, conn: Conn) {
        let idle = IdleRaw {
            conn,
            since: Instant::now(),
        };
        self.keep_with(site, |k| {
            push_bounded(&mut k.raw, idle, self.inner.max_idle_per_site)
        });
    }

    /// The most recently used idle connection to `site` that can take a request.
    fn checkout(&self, site: &str) -> Option<Idle> {
        let mut map = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = &mut map.get_mut(site)?.hyper;
        let now = Instant::now();
        while let Some(idle) = list.pop() {
            if idle.tx.is_ready() && now.duration_since(idle.since) < self.inner.keepalive {
                return Some(idle);
            }
        }
        None
    }

    /// Keeps `tx` for the next request once it can take one: now if hyper says so (the
    /// answer was read whole), else when its body has been read (a task waits for it).
    /// An upgraded connection is not HTTP any more and is never kept.
    fn give_back(
        &self,
        site: &str,
        mut tx: SendRequest<CountedIncoming>,
        peer: SocketAddr,
        response: &Response<Incoming>,
    ) {
        if response.status() == http::StatusCode::SWITCHING_PROTOCOLS || tx.is_closed() {
            return;
        }
        if tx.is_ready() {
            self.keep(site, tx, peer);
            return;
        }
        let me = self.clone();
        let site: Box<str> = site.into();
        tokio::spawn(async move {
            if tx.ready().await.is_ok() {
                me.keep(&site, tx, peer);
            }
        });
    }

    fn keep(&self, site: &str, tx: SendRequest<CountedIncoming>, peer: SocketAddr) {
        let idle = Idle {
            tx,
            peer,
            since: Instant::now(),
        };
        self.keep_with(site, |k| {
            push_bounded(&mut k.hyper, idle, self.inner.max_idle_per_site)
        });
    }

    fn keep_with(&self, site: &str, put: impl FnOnce(&mut Kept)) {
        {
            let mut map = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
            match map.get_mut(site) {
                Some(kept) => put(kept),
                None => {
                    let mut kept = Kept::default();
                    put(&mut kept);
                    map.insert(site.into(), kept);
                }
            }
        }
        if !self.inner.sweeping.swap(true, Ordering::Relaxed) {
            tokio::spawn(sweep(Arc::downgrade(&self.inner)));
        }
    }
}

/// Adds `item` last; the oldest goes when `list` is full (the likeliest to be closed by
/// the site).
fn push_bounded<T>(list: &mut Vec<T>, item: T, max: usize) {
    if list.len() >= max {
        list.remove(0);
    }
    list.push(item);
}

/// Closes connections idle for longer than `keepalive` or closed by their site, every
/// `keepalive / 2` but at least once a second and at most every 100 ms, until the pool
/// is dropped. hyper's connections close themselves when the site closes them; an idle
/// [`super::h1`] connection has no task watching it, and is closed here (a site's close
/// seen by the reactor costs no system call to find): within a second, instead of
/// lingering half-closed until the keep-alive runs out.
async fn sweep(pool: Weak<Inner>) {
    let period = match pool.upgrade() {
        Some(p) => (p.keepalive / 2).clamp(Duration::from_millis(100), Duration::from_secs(1)),
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(p) = pool.upgrade() else { return };
        let now = Instant::now();
        let mut map = p.idle.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, kept| {
            kept.hyper
                .retain(|i| !i.tx.is_closed() && now.duration_since(i.since) < p.keepalive);
            kept.raw
                .retain(|i| now.duration_since(i.since) < p.keepalive && !i.conn.is_closed());
            !(kept.hyper.is_empty() && kept.raw.is_empty())
        });
    }
}

/// `/path?query` (RFC 9112 §3.2.1): what a site expects from a client that is not a proxy.
fn origin_form(uri: &mut Uri) {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return;
    }
    *uri = match uri.path_and_query() {
        Some(p) if p.as_str() != "/" => {
            let mut parts = http::uri::Parts::default();
            parts.path_and_query = Some(p.clone());
            Uri::from_parts(parts).unwrap_or_default()
        }
        _ => Uri::default(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_form_keeps_the_path_and_query_only() {
        for (given, want) in [
            ("http://example.org/a/b?c=d", "/a/b?c=d"),
            ("http://example.org:8080/", "/"),
            ("http://example.org", "/"),
            ("/already?x", "/already?x"),
        ] {
            let mut u: Uri = given.parse().unwrap();
            origin_form(&mut u);
            assert_eq!(u.to_string(), want, "{given}");
            assert!(u.authority().is_none() && u.scheme().is_none(), "{given}");
        }
    }
}
