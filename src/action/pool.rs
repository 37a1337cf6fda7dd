//! The plain-HTTP upstream pool: HTTP/1.1 connections to sites, kept per worker thread
//! and per site (`host[:port]`), reused last-in first-out, closed after `keepalive` idle.
//!
//! Every plain request goes through hyper's HTTP/1.1 client connection, each connection
//! driven by a task of its own, with upgrades (WebSocket) supported. A site's answer is
//! untrusted input read by hyper's parser, within the limits set here: a head of at
//! most [`MAX_ANSWER_HEAD`] however its bytes arrive, at most [`MAX_ANSWER_FIELDS`]
//! fields, and no answer framed by both `Transfer-Encoding` and `Content-Length` (hyper
//! lets the first win; either could be a response-splitting attempt, so it is refused,
//! as nginx does). Why there is no second parser of our own: DESIGN.md, "One HTTP/1.1
//! client".
//!
//! Against hyper-util's general client this spares, on every request, a SipHash of the
//! key byte by byte, checkout and `Pooled` bookkeeping and a lock shared by every
//! thread: the key is hashed with foldhash, the pool is the worker's own (its lock is
//! never contended), and a connection goes back as soon as hyper says it can take the
//! next request.
//!
//! A request sent on a kept connection that the site had closed meanwhile is not lost.
//! hyper hands back a request it had not sent yet, and it goes on the next connection.
//! A request without a body that may be sent again (`GET`, `HEAD`, `OPTIONS`: RFC 9110
//! §9.2.2) also goes again on the next connection when it was sent but the connection
//! failed before any byte of the answer came (the site's idle timeout racing the
//! request): hyper retries only what it had not sent, and the client would get a 502.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::body::CountedIncoming;
use super::dial::{Dialer, UpstreamError};
use crate::classify::Host;

/// The largest answer head accepted from a site (status line and header fields): hyper
/// refuses a longer head when it is whole, and stops reading one that is not whole at
/// this size, so the limit holds however the bytes arrive.
pub const MAX_ANSWER_HEAD: usize = 64 * 1024;
/// The most header fields a site's answer may carry.
pub const MAX_ANSWER_FIELDS: usize = 128;

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
    /// The answer parsed, but its framing is ambiguous.
    #[error("the exchange with the site failed")]
    Framing(#[source] AmbiguousFraming),
}

impl PoolError {
    /// The site could not be reached at all (nothing was sent).
    pub fn is_connect(&self) -> bool {
        matches!(self, PoolError::Connect(_))
    }
}

/// An answer with a body framed by both `Transfer-Encoding` and `Content-Length`.
#[derive(Debug, thiserror::Error)]
#[error("the site's answer is not valid HTTP/1.1: both Transfer-Encoding and Content-Length")]
pub struct AmbiguousFraming;

/// An answer from the site, with the address it came from.
pub struct Answer {
    pub response: Response<SiteBody>,
    pub peer: SocketAddr,
}

/// A site's answer body. One from the pool gives its connection back as soon as it has
/// been read to its end, from the reader's own poll (no task waits for it); dropped or
/// failed before its end, it takes the connection with it.
pub struct SiteBody {
    inner: Incoming,
    back: Option<GiveBack>,
}

/// A connection to keep once its answer's body has been read.
struct GiveBack {
    pool: Pool,
    site: Box<str>,
    tx: SendRequest<Outgoing>,
    peer: SocketAddr,
    heard: Arc<AtomicBool>,
}

impl SiteBody {
    /// A body whose connection is not the pool's (the inspected-HTTPS client's).
    pub fn new(inner: Incoming) -> SiteBody {
        SiteBody { inner, back: None }
    }

    fn ended(&mut self) {
        if let Some(b) = self.back.take() {
            b.pool.keep(&b.site, b.tx, b.peer, b.heard);
        }
    }
}

impl http_body::Body for SiteBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.ended(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.ended(),
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// What goes up to the site: the client's body, or nothing (a request that may be sent
/// again is sent without its empty body, so that a copy of its head is all of it).
type Outgoing = Either<CountedIncoming, Empty<Bytes>>;

struct Idle {
    tx: SendRequest<Outgoing>,
    peer: SocketAddr,
    /// Set by the connection when bytes come from the site (see [`Heard`]).
    heard: Arc<AtomicBool>,
    since: Instant,
}

type Map = HashMap<Box<str>, Vec<Idle>, foldhash::fast::RandomState>;

struct Inner {
    idle: Mutex<Map>,
    keepalive: Duration,
    max_idle_per_site: usize,
    /// The sweeping task runs (started with the first kept connection).
    sweeping: AtomicBool,
    /// hyper's client settings, with the limits on answers.
    builder: http1::Builder,
}

/// What became of a request offered to the kept connections.
enum Kept {
    Done(Result<Answer, PoolError>),
    Unsent(Request<Outgoing>),
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
        let mut builder = http1::Builder::new();
        builder
            .max_header_size(MAX_ANSWER_HEAD)
            .max_headers(MAX_ANSWER_FIELDS);
        Pool {
            inner: Arc::new(Inner {
                idle: Mutex::new(Map::default()),
                keepalive,
                max_idle_per_site,
                sweeping: AtomicBool::new(false),
                builder,
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
        let again = may_send_again(&req);
        let head_request = req.method() == Method::HEAD;
        let req = req.map(|body| {
            if again {
                Either::Right(Empty::new())
            } else {
                Either::Left(body)
            }
        });
        let req = match self.send_kept(site, req, again, head_request).await {
            Kept::Done(answer) => return answer,
            Kept::Unsent(req) => req,
        };
        // A new connection is the rare case under load: its (large) future is boxed, so
        // that the future every request builds and moves stays small.
        Box::pin(self.send_new(site, host, port, req, head_request)).await
    }

    /// Sends `req` on the kept connections to `site`, most recent first: a request handed
    /// back unsent, or failed unanswered when it may be sent again, goes on the next one.
    /// `Unsent`: no kept connection could take it.
    async fn send_kept(
        &self,
        site: &str,
        mut req: Request<Outgoing>,
        again: bool,
        head_request: bool,
    ) -> Kept {
        while let Some(idle) = self.checkout(site) {
            let Idle {
                mut tx,
                peer,
                heard,
                ..
            } = idle;
            // A connection whose answer was read to its end a moment ago may still be
            // finishing it; one that cannot take a request any more is skipped.
            if !tx.is_ready() && tx.ready().await.is_err() {
                continue;
            }
            let copy = again.then(|| copy_head(&req));
            heard.store(false, Ordering::Relaxed);
            match tx.try_send_request(req).await {
                Ok(response) => {
                    return Kept::Done(self.answered(
                        site,
                        tx,
                        peer,
                        heard,
                        head_request,
                        response,
                    ));
                }
                Err(mut e) => match (e.take_message(), copy) {
                    (Some(unsent), _) => {
                        tracing::debug!(site, error = %e.error(), "kept connection closed; retrying");
                        req = unsent;
                    }
                    (None, Some(copy)) if !heard.load(Ordering::Relaxed) => {
                        tracing::debug!(site, error = %e.error(), "kept connection closed unanswered; sending again");
                        req = copy;
                    }
                    (None, _) => return Kept::Done(Err(PoolError::Exchange(e.into_error()))),
                },
            }
        }
        Kept::Unsent(req)
    }

    /// Sends `req` on a new connection to `host:port`, driven by a task of its own.
    async fn send_new(
        &self,
        site: &str,
        host: &Host,
        port: u16,
        req: Request<Outgoing>,
        head_request: bool,
    ) -> Result<Answer, PoolError> {
        let (stream, peer) = self
            .dialer
            .connect(host, port)
            .await
            .map_err(PoolError::Connect)?;
        let heard = Arc::new(AtomicBool::new(false));
        let io = Heard {
            io: stream,
            heard: heard.clone(),
        };
        let (mut tx, conn) = self
            .inner
            .builder
            .handshake(TokioIo::new(io))
            .await
            .map_err(PoolError::Exchange)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "site connection ended with an error");
            }
        });
        let response = tx.send_request(req).await.map_err(PoolError::Exchange)?;
        self.answered(site, tx, peer, heard, head_request, response)
    }

    /// Checks the answer's framing, and keeps the connection for the next request: now
    /// when the answer has no body to read, else once its body has been read (by
    /// [`SiteBody`]). An upgraded connection is not HTTP any more and is never kept.
    fn answered(
        &self,
        site: &str,
        tx: SendRequest<Outgoing>,
        peer: SocketAddr,
        heard: Arc<AtomicBool>,
        head_request: bool,
        response: Response<Incoming>,
    ) -> Result<Answer, PoolError> {
        if ambiguous(&response, head_request) {
            // Neither the answer nor its connection is used: both are dropped here.
            return Err(PoolError::Framing(AmbiguousFraming));
        }
        let mut response = response.map(SiteBody::new);
        if response.status() != StatusCode::SWITCHING_PROTOCOLS && !tx.is_closed() {
            if http_body::Body::is_end_stream(response.body()) {
                self.keep(site, tx, peer, heard);
            } else {
                response.body_mut().back = Some(GiveBack {
                    pool: self.clone(),
                    site: site.into(),
                    tx,
                    peer,
                    heard,
                });
            }
        }
        Ok(Answer { response, peer })
    }

    /// The most recently used connection to `site` that is still open and has not been
    /// idle too long (it may still be finishing its last answer).
    fn checkout(&self, site: &str) -> Option<Idle> {
        let mut map = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.get_mut(site)?;
        let now = Instant::now();
        while let Some(idle) = list.pop() {
            if !idle.tx.is_closed() && now.duration_since(idle.since) < self.inner.keepalive {
                return Some(idle);
            }
        }
        None
    }

    fn keep(
        &self,
        site: &str,
        tx: SendRequest<Outgoing>,
        peer: SocketAddr,
        heard: Arc<AtomicBool>,
    ) {
        let idle = Idle {
            tx,
            peer,
            heard,
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

/// Whether `req` may go again on another connection after one failed before answering:
/// a method that may be sent again (RFC 9110 §9.2.2) whose request has no body, and no
/// upgrade.
fn may_send_again<B: http_body::Body>(req: &Request<B>) -> bool {
    let m = req.method();
    (m == Method::GET || m == Method::HEAD || m == Method::OPTIONS)
        && req.body().is_end_stream()
        && !req.headers().contains_key(header::UPGRADE)
}

/// A request without a body, again: its head (method, target, version, fields).
fn copy_head(req: &Request<Outgoing>) -> Request<Outgoing> {
    let mut copy = Request::new(Either::Right(Empty::new()));
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// An answer with a body (RFC 9112 §6.3: not to `HEAD`, not 1xx, 204 or 304) that
/// carries both `Transfer-Encoding` and `Content-Length`.
fn ambiguous(res: &Response<Incoming>, head_request: bool) -> bool {
    let s = res.status();
    let bodiless = head_request
        || s.is_informational()
        || s == StatusCode::NO_CONTENT
        || s == StatusCode::NOT_MODIFIED;
    !bodiless
        && res.headers().contains_key(header::TRANSFER_ENCODING)
        && res.headers().contains_key(header::CONTENT_LENGTH)
}

/// A site's socket that notes when bytes come from it: when a request on a kept
/// connection fails, whether any of the answer had come (the flag is cleared before
/// each request on a kept connection; hyper reads nothing unasked in between, or closes
/// the connection).
struct Heard {
    io: TcpStream,
    heard: Arc<AtomicBool>,
}

impl AsyncRead for Heard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.heard.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Heard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Closes connections idle for longer than `keepalive`, and forgets those their site
/// closed (hyper has closed its side already), every `keepalive / 2` (at least every
/// 100 ms), until the pool is dropped.
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
