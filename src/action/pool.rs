//! The plain-HTTP upstream pool: HTTP/1.1 connections to sites, kept per worker thread
//! and per site (`host[:port]`), reused last-in first-out, closed after `keepalive` idle.
//!
//! It replaces hyper-util's general client on the plain path, where that client's
//! generality costs on every request (a SipHash of the key byte by byte, checkout and
//! `Pooled` bookkeeping, a lock shared by every thread). Here the key is hashed with
//! foldhash, the pool is the worker's own (its lock is never contended), and a
//! connection goes back as soon as hyper says it can take the next request. Each
//! connection is still driven by its own task, with upgrades (WebSocket) supported.
//!
//! A request sent on a kept connection that the site had closed meanwhile is not lost:
//! hyper hands it back unsent, and it goes on the next connection (as hyper-util does).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::dial::{Dialer, UpstreamError};
use super::forward::CountedIncoming;
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
}

impl PoolError {
    /// The site could not be reached at all (nothing was sent).
    pub fn is_connect(&self) -> bool {
        matches!(self, PoolError::Connect(_))
    }
}

/// An answer from the site, with the address it came from.
pub struct Answer {
    pub response: Response<Incoming>,
    pub peer: SocketAddr,
}

struct Idle {
    tx: SendRequest<CountedIncoming>,
    peer: SocketAddr,
    since: Instant,
}

type Map = HashMap<Box<str>, Vec<Idle>, foldhash::fast::RandomState>;

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
        // Kept connections first; a request handed back unsent goes on the next one.
        while let Some(mut idle) = self.checkout(site) {
            match idle.tx.try_send_request(req).await {
                Ok(response) => {
                    self.give_back(site, idle.tx, idle.peer, &response);
                    return Ok(Answer {
                        response,
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
        let (stream, peer) = self
            .dialer
            .connect(host, port)
            .await
            .map_err(PoolError::Connect)?;
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
        Ok(Answer { response, peer })
    }

    /// The most recently used idle connection to `site` that can take a request.
    fn checkout(&self, site: &str) -> Option<Idle> {
        let mut map = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.get_mut(site)?;
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
        {
            let mut map = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
            match map.get_mut(site) {
                Some(list) => {
                    if list.len() >= self.inner.max_idle_per_site {
                        // The oldest goes: it is the likeliest to be closed by the site.
                        list.remove(0);
                    }
                    list.push(idle);
                }
                None => {
                    map.insert(site.into(), vec![idle]);
                }
            }
        }
        if !self.inner.sweeping.swap(true, Ordering::Relaxed) {
            tokio::spawn(sweep(Arc::downgrade(&self.inner)));
        }
    }
}

/// Closes connections idle for longer than `keepalive` (or closed by their site), every
/// `keepalive / 2` (at least every 100 ms), until the pool is dropped.
async fn sweep(pool: Weak<Inner>) {
    let period = match pool.upgrade() {
        Some(p) => (p.keepalive / 2).max(Duration::from_millis(100)),
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
        map.retain(|_, list| {
            list.retain(|i| !i.tx.is_closed() && now.duration_since(i.since) < p.keepalive);
            !list.is_empty()
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
