//! The bodies of every message the proxy sends or relays: a whole page, nothing, or a
//! stream from the other side — counted on the way through, never held whole in memory,
//! and ended when the side that should be sending goes quiet for too long.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;

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

/// A body written by another task (a file read on the blocking pool): what is sent
/// on the returned sender, in order; it ends when every sender is dropped. Bounded: the
/// writer waits while the client is slow.
pub fn channel(pieces: usize) -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = tokio::sync::mpsc::channel(pieces);
    (tx, ChannelBody(rx).boxed())
}

struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
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

/// Sees each piece of a request body as it goes upstream, then its end (`None`); an
/// error ends the body there (the site gets an incomplete request, never a complete one).
pub type Watch = Box<dyn FnMut(Option<&[u8]>) -> Result<(), BoxError> + Send>;

/// Request bodies on their way upstream, counted, ended if the client stalls. A body
/// can be read ahead (held while it is checked) and then given out from the start
/// ([`CountedIncoming::replay`]).
pub struct CountedIncoming {
    inner: Idle<ClientIncoming>,
    count: Arc<AtomicU64>,
    /// Frames read ahead, given out first.
    held: std::collections::VecDeque<Frame<Bytes>>,
    /// Data bytes in `held`.
    held_bytes: u64,
    /// Sees what comes after the held frames; `None` once it has seen the end.
    watch: Option<Watch>,
}

impl CountedIncoming {
    pub fn new(inner: Incoming, count: Arc<AtomicU64>, idle: Duration) -> Self {
        let tagged: ClientIncoming = inner.map_err(ClientBody as fn(hyper::Error) -> ClientBody);
        CountedIncoming {
            inner: Idle::new(tagged, "request", idle),
            count,
            held: std::collections::VecDeque::new(),
            held_bytes: 0,
            watch: None,
        }
    }

    /// Gives `held` (frames read from this body) out again before the rest, and has
    /// `watch` see the rest.
    pub fn replay(&mut self, held: Vec<Frame<Bytes>>, watch: Option<Watch>) {
        self.held_bytes = data_len(&held);
        self.held = held.into();
        self.watch = watch;
    }
}

impl HttpBody for CountedIncoming {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(f) = this.held.pop_front() {
            // Counted when it was read ahead.
            if let Some(d) = f.data_ref() {
                this.held_bytes -= d.len() as u64;
            }
            return Poll::Ready(Some(Ok(f)));
        }
        let p = Pin::new(&mut this.inner).poll_frame(cx);
        match &p {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.count.fetch_add(d.len() as u64, Ordering::Relaxed);
                    if let Some(w) = &mut this.watch
                        && let Err(e) = w(Some(d))
                    {
                        this.watch = None;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(mut w) = this.watch.take()
                    && let Err(e) = w(None)
                {
                    return Poll::Ready(Some(Err(e)));
                }
            }
            _ => {}
        }
        p
    }

    fn is_end_stream(&self) -> bool {
        // A watch must see the end: the body is not over before it has.
        self.held.is_empty() && self.watch.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        plus(self.inner.size_hint(), self.held_bytes)
    }
}

/// A body whose first frames were read ahead (to see what it is) and are given out
/// again first.
pub struct Prefixed<B> {
    held: std::collections::VecDeque<Frame<Bytes>>,
    inner: B,
}

impl<B> Prefixed<B> {
    pub fn new(held: Vec<Frame<Bytes>>, inner: B) -> Self {
        Prefixed {
            held: held.into(),
            inner,
        }
    }
}

impl<B> HttpBody for Prefixed<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.held.pop_front() {
            Some(f) => Poll::Ready(Some(Ok(f))),
            None => Pin::new(&mut self.inner).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        plus(self.inner.size_hint(), data_len(&self.held))
    }
}

/// The data bytes of `frames`.
fn data_len<'a>(frames: impl IntoIterator<Item = &'a Frame<Bytes>>) -> u64 {
    frames
        .into_iter()
        .filter_map(Frame::data_ref)
        .map(|d| d.len() as u64)
        .sum()
}

/// A body's size hint with `n` more bytes in front of it.
fn plus(inner: SizeHint, n: u64) -> SizeHint {
    let mut h = SizeHint::new();
    h.set_lower(inner.lower() + n);
    if let Some(u) = inner.upper() {
        h.set_upper(u + n);
    }
    h
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
