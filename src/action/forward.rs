//! Forwarding HTTP: hop-by-hop headers handled per RFC 9110 §7.6.1, a `Via` header, and
//! bodies streamed both ways — counted on the way through, never held whole in memory.
//! The connections to sites are kept in [`super::pool`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use smallvec::SmallVec;

pub use super::dial::{Dialer, Resolver};

/// Error type of every body the proxy sends.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the proxy sends.
pub type Body = BoxBody<Bytes, BoxError>;

/// A whole body from bytes (pages, short texts).
pub fn full(b: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(b.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A body that waited too long for its next piece.
#[derive(Debug, thiserror::Error)]
#[error("{side} body idle for more than {} s", .after.as_secs_f64())]
pub struct BodyIdle {
    /// `request` (the client stalled) or `response` (the site stalled).
    pub side: &'static str,
    pub after: Duration,
}

/// Ends a body with [`BodyIdle`] when its next frame takes longer than `after` to come
/// once asked for. The clock starts when the body has nothing ready (the producer is
/// late), not while the consumer is busy elsewhere; and the timer exists only from the
/// first such wait: a body that is always ready (a small response, an empty request)
/// never registers one, which spares every such request an allocation and two timer
/// wheel operations.
pub struct Idle<B> {
    inner: B,
    side: &'static str,
    after: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The timer counts the current wait (false: it is left over from an earlier one).
    armed: bool,
}

impl<B> Idle<B> {
    pub fn new(inner: B, side: &'static str, after: Duration) -> Self {
        Idle {
            inner,
            side,
            after,
            timer: None,
            armed: false,
        }
    }
}

impl<B> HttpBody for Idle<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(f) => {
                this.armed = false;
                Poll::Ready(f.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let after = this.after;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
                if !this.armed {
                    // This wait starts now.
                    timer.as_mut().reset(tokio::time::Instant::now() + after);
                    this.armed = true;
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyIdle {
                        side: this.side,
                        after: this.after,
                    })))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's request body could not be read: bad chunked framing, or cut.
#[derive(Debug, thiserror::Error)]
#[error("the request body is malformed or was cut: {0}")]
pub struct ClientBody(#[source] pub hyper::Error);

type ClientIncoming = http_body_util::combinators::MapErr<Incoming, fn(hyper::Error) -> ClientBody>;

/// Request bodies on their way upstream, counted, ended if the client stalls.
pub struct CountedIncoming {
    inner: Idle<ClientIncoming>,
    count: Arc<AtomicU64>,
}

impl CountedIncoming {
    pub fn new(inner: Incoming, count: Arc<AtomicU64>, idle: Duration) -> Self {
        let tagged: ClientIncoming = inner.map_err(ClientBody as fn(hyper::Error) -> ClientBody);
        CountedIncoming {
            inner: Idle::new(tagged, "request", idle),
            count,
        }
    }
}

impl HttpBody for CountedIncoming {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let p = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &p
            && let Some(d) = f.data_ref()
        {
            self.count.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        p
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Response bodies on their way to the client, counted; `on_end` runs once, when the
/// body ends, fails or is dropped (client gone), with the byte count and any error.
pub struct CountedBody<F: FnOnce(u64, Option<String>) + Send + 'static> {
    inner: Body,
    count: u64,
    on_end: Option<F>,
}

impl<F: FnOnce(u64, Option<String>) + Send + 'static> CountedBody<F> {
    pub fn new(inner: Body, on_end: F) -> Self {
        CountedBody {
            inner,
            count: 0,
            on_end: Some(on_end),
        }
    }

    fn finish(&mut self, err: Option<String>) {
        if let Some(f) = self.on_end.take() {
            f(self.count, err);
        }
    }
}

impl<F: FnOnce(u64, Option<String>) + Send + Unpin + 'static> HttpBody for CountedBody<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let p = Pin::new(&mut self.inner).poll_frame(cx);
        match &p {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.count += d.len() as u64;
                }
                // hyper stops polling once a Content-Length is satisfied.
                if self.inner.is_end_stream() {
                    self.finish(None);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let msg = e.to_string();
                self.finish(Some(msg));
            }
            Poll::Ready(None) => self.finish(None),
            Poll::Pending => {}
        }
        p
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<F: FnOnce(u64, Option<String>) + Send + 'static> Drop for CountedBody<F> {
    fn drop(&mut self) {
        if self.on_end.is_some() {
            let err = (!self.inner.is_end_stream())
                .then(|| "client closed before the end of the body".to_string());
            self.finish(err);
        }
    }
}

/// The `Via` pseudonym of this proxy (RFC 9110 §7.6.3).
pub const VIA: &str = "1.1 charte-proxy";

/// Removes hop-by-hop headers: `Connection` and every header it names, and the fixed
/// list of RFC 9110 (`Proxy-Connection`, `Keep-Alive`, `TE`, `Trailer`,
/// `Transfer-Encoding`, `Upgrade`, `Proxy-Authorization`, `Proxy-Authenticate`).
/// With `keep_upgrade`, `Connection: upgrade` and `Upgrade` survive (WebSocket relay).
pub fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    /// The hop-by-hop names (RFC 9110 §7.6.1, plus `Proxy-Connection`, `Keep-Alive` and
    /// the proxy credentials). `Upgrade` last: it stays when an upgrade is relayed.
    const HOP: [HeaderName; 9] = [
        header::CONNECTION,
        HeaderName::from_static("proxy-connection"),
        HeaderName::from_static("keep-alive"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
        header::UPGRADE,
    ];
    // One pass over the names the message carries, instead of a hashed `remove` for each
    // of the nine: most messages carry one of them (`Connection`) or none.
    let mut present = 0u16;
    for k in h.keys() {
        if let Some(i) = HOP.iter().position(|n| n == k) {
            present |= 1 << i;
        }
    }
    if present & 1 != 0 {
        // The names `Connection` lists that the message carries, other than the nine
        // (removed below in any case). Usually none: `keep-alive` or `close`. Cloning a
        // name is a reference count; an invalid name is in no map.
        let listed: SmallVec<[HeaderName; 2]> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !HOP.iter().any(|n| t.eq_ignore_ascii_case(n.as_str())))
            .filter_map(|t| h.keys().find(|k| t.eq_ignore_ascii_case(k.as_str())))
            .cloned()
            .collect();
        for n in listed {
            h.remove(n);
        }
    }
    for (i, n) in HOP.iter().enumerate() {
        if present & (1 << i) != 0 && !(keep_upgrade && *n == header::UPGRADE) {
            h.remove(n);
        }
    }
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Appends this proxy to `Via`.
pub fn add_via(h: &mut HeaderMap) {
    // One more field line: the same list as "previous, ours" (RFC 9110 §5.3), with every
    // earlier `Via` line kept, and nothing to build.
    h.append(header::VIA, HeaderValue::from_static(VIA));
}

/// Whether this proxy already handled the request (a loop).
pub fn seen_by_us(h: &HeaderMap) -> bool {
    h.get_all(header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim() == VIA))
}

/// Whether a request carries data: a body (non-zero `Content-Length`, or any
/// `Transfer-Encoding`) or a protocol upgrade.
pub fn sends_data(h: &HeaderMap) -> bool {
    let cl = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "0");
    cl || h.contains_key(header::TRANSFER_ENCODING) || wants_upgrade(h)
}

/// Whether the request asks for a protocol switch, to whatever protocol: `Upgrade`, and
/// `Connection` listing `upgrade` (in any case, on any of its lines). Only a WebSocket
/// handshake ([`websocket_handshake`]) is relayed as a switch.
pub fn wants_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Methods never forwarded, whatever the policy says of the site: TRACE (RFC 9110
/// §9.3.8) and IIS's TRACK send the request back as the site received it — cookies,
/// credentials, and what the proxy added — to whatever script made it (cross-site
/// tracing); no browser needs them. Matched in any case: the method token is
/// case-sensitive, but a server that folds case would take `trace` for TRACE.
pub fn never_forwarded(method: &Method) -> bool {
    let m = method.as_str();
    m.eq_ignore_ascii_case("TRACE") || m.eq_ignore_ascii_case("TRACK")
}

/// Whether a request is a WebSocket handshake the proxy relays (RFC 6455 §4.1): a GET
/// in HTTP/1.1 that asks to switch ([`wants_upgrade`]) to `websocket` and to nothing
/// else. Any other `Upgrade` is dropped with the other hop-by-hop fields and the request
/// goes on as an ordinary one: RFC 9110 §7.8 lets an intermediary do so, Squid does the
/// same by default (`http_upgrade_request_protocols`), and the offer is optional for
/// the client (curl's `Upgrade: h2c` gets its answer in HTTP/1.1). Refusing instead
/// would break those clients and close nothing more: the switch is what must not pass.
pub fn websocket_handshake(method: &Method, version: Version, h: &HeaderMap) -> bool {
    method == Method::GET
        && version == Version::HTTP_11
        && wants_upgrade(h)
        && names_websocket_only(h)
}

/// Whether the `Upgrade` fields of `h` (all their lines together) name one protocol,
/// `websocket` (any case). A list that names another one too is not: the site would
/// choose, and could choose the other. Used on requests and on the site's `101`.
pub fn names_websocket_only(h: &HeaderMap) -> bool {
    let mut names = h
        .get_all(header::UPGRADE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty());
    matches!(
        (names.next(), names.next()),
        (Some(t), None) if t.eq_ignore_ascii_case(b"websocket")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_and_track_are_never_forwarded_in_any_case() {
        for m in ["TRACE", "TRACK", "trace", "Track"] {
            assert!(
                never_forwarded(&Method::from_bytes(m.as_bytes()).unwrap()),
                "{m}"
            );
        }
        for m in ["GET", "OPTIONS", "TRACES", "PATCH"] {
            assert!(
                !never_forwarded(&Method::from_bytes(m.as_bytes()).unwrap()),
                "{m}"
            );
        }
    }

    #[test]
    fn only_a_websocket_handshake_is_relayed_as_a_switch() {
        let h = |fields: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in fields {
                m.append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            m
        };
        let get = Method::GET;
        let v11 = Version::HTTP_11;
        for (fields, relayed) in [
            (
                &[("connection", "Upgrade"), ("upgrade", "websocket")][..],
                true,
            ),
            (
                &[
                    ("connection", "keep-alive, UPGRADE"),
                    ("upgrade", "WebSocket"),
                ],
                true,
            ),
            (
                &[
                    ("connection", "keep-alive"),
                    ("connection", "upgrade"),
                    ("upgrade", " websocket "),
                ],
                true,
            ),
            (&[("connection", "upgrade"), ("upgrade", "h2c")], false),
            (
                &[("connection", "upgrade"), ("upgrade", "websocket, h2c")],
                false,
            ),
            (
                &[("connection", "upgrade"), ("upgrade", "h2c, websocket")],
                false,
            ),
            (
                &[
                    ("connection", "upgrade"),
                    ("upgrade", "websocket"),
                    ("upgrade", "h2c"),
                ],
                false,
            ),
            (
                &[("connection", "upgrade"), ("upgrade", "websocket/13")],
                false,
            ),
            (&[("connection", "upgrade"), ("upgrade", "TLS/1.0")], false),
            (&[("connection", "upgrade"), ("upgrade", "")], false),
            (
                &[("connection", "keep-alive"), ("upgrade", "websocket")],
                false,
            ),
            (&[("upgrade", "websocket")], false),
        ] {
            assert_eq!(
                websocket_handshake(&get, v11, &h(fields)),
                relayed,
                "{fields:?}"
            );
        }
        let ws = h(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        assert!(!websocket_handshake(&Method::POST, v11, &ws));
        assert!(!websocket_handshake(&get, Version::HTTP_10, &ws));
        assert!(!websocket_handshake(&get, Version::HTTP_2, &ws));
    }

    /// A body fed by the test, one frame a message.
    struct Fed(tokio::sync::mpsc::Receiver<Bytes>);

    impl HttpBody for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test]
    async fn a_body_always_ready_never_starts_a_timer() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        for part in ["a", "b"] {
            tx.send(Bytes::from(part)).await.unwrap();
        }
        drop(tx);
        let mut body = Idle::new(Fed(rx), "response", Duration::from_secs(60));
        let got = (&mut body).collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], b"ab");
        assert!(body.timer.is_none());
    }

    #[tokio::test]
    async fn the_idle_clock_counts_the_producer_not_the_consumer() {
        let after = Duration::from_millis(150);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut body = Idle::new(Fed(rx), "response", after);
        tx.send(Bytes::from_static(b"1")).await.unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.data_ref().unwrap(), &Bytes::from_static(b"1"));
        // The consumer is busy for twice the limit (a slow client), then asks again; the
        // site answers 50 ms after being asked: no idle error.
        tokio::time::sleep(after * 2).await;
        let feeder = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.send(Bytes::from_static(b"2")).await.unwrap();
            tx
        });
        let second = body.frame().await.unwrap().unwrap();
        assert_eq!(second.data_ref().unwrap(), &Bytes::from_static(b"2"));
        // Now the site stalls: the body ends with BodyIdle, no sooner than `after`.
        let _tx = feeder.await.unwrap();
        let asked = std::time::Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(asked.elapsed() >= after, "{:?}", asked.elapsed());
        let idle = err.downcast_ref::<BodyIdle>().expect("a BodyIdle");
        assert_eq!(idle.side, "response");
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-authorization", "Basic eA==".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("x-kept", "yes".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn end_to_end_headers_are_left_as_they_were() {
        let mut h = HeaderMap::new();
        h.insert("host", "example.org".parse().unwrap());
        h.append("accept", "text/html".parse().unwrap());
        h.append("accept", "*/*".parse().unwrap());
        h.insert("x-connection", "close".parse().unwrap());
        let before = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
        // Any one hop-by-hop name is enough to take the full path.
        h.insert("te", "trailers".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
        // Relaying an upgrade always takes it: `Connection: upgrade` is set.
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn every_connection_header_is_read() {
        let mut h = HeaderMap::new();
        for v in ["x-a", "X-B , keep-alive", "x-c,,bad name", "x-d"] {
            h.append("connection", v.parse().unwrap());
        }
        for n in ["x-a", "x-b", "x-c", "x-d", "x-kept"] {
            h.insert(n, "1".parse().unwrap());
        }
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn upgrade_survives_when_relayed() {
        let mut h = HeaderMap::new();
        h.insert("connection", "Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        assert!(wants_upgrade(&h) && sends_data(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn via_and_loops() {
        let mut h = HeaderMap::new();
        assert!(!seen_by_us(&h));
        add_via(&mut h);
        assert_eq!(h["via"], VIA);
        assert!(seen_by_us(&h));
        let mut h = HeaderMap::new();
        h.append("via", "1.0 a".parse().unwrap());
        h.append("via", "1.1 b, 1.1 c".parse().unwrap());
        assert!(!seen_by_us(&h));
        add_via(&mut h);
        let all: Vec<_> = h
            .get_all("via")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            all,
            ["1.0 a", "1.1 b, 1.1 c", VIA],
            "earlier hops kept, in order"
        );
        assert!(seen_by_us(&h));
    }

    #[test]
    fn bodies() {
        let mut h = HeaderMap::new();
        assert!(!sends_data(&h));
        h.insert("content-length", "0".parse().unwrap());
        assert!(!sends_data(&h));
        h.insert("content-length", "12".parse().unwrap());
        assert!(sends_data(&h));
        let mut h = HeaderMap::new();
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        assert!(sends_data(&h));
    }
}
