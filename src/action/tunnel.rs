//! CONNECT tunnels: connect to the site, then copy bytes both ways until either side
//! closes, counting them for the trace. The decision was taken on the host before any
//! byte is relayed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

pub use super::dial::UpstreamError;

/// Copies both ways until either side closes, after sending `prefix` (bytes already read
/// from the client, such as a peeked ClientHello) to the site. Returns (bytes client →
/// site, bytes site → client, error if the copy ended on one).
///
/// Each direction starts with a [`MIN_BUF`] buffer, so an idle tunnel costs no more than
/// with tokio's `copy_bidirectional`, and doubles it up to [`MAX_BUF`] each time a read
/// fills it: a bulk transfer then moves 64 KiB per system call instead of 8 KiB.
pub async fn splice<C: AsyncRead + AsyncWrite + Unpin>(
    client: C,
    prefix: &[u8],
    mut upstream: TcpStream,
    idle: Duration,
) -> (u64, u64, Option<String>) {
    if let Err(e) = upstream.write_all(prefix).await {
        return (0, 0, Some(e.to_string()));
    }
    let (up, down, err) = relay(client, upstream, idle).await;
    (prefix.len() as u64 + up, down, err)
}

/// Copies both ways between `a` and `b` until both directions ended, one failed, or no
/// byte moved either way for `idle`. Returns (bytes a → b, bytes b → a, error).
pub async fn relay<A, B>(mut a: A, mut b: B, idle: Duration) -> (u64, u64, Option<String>)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut up = Pump::default();
    let mut down = Pump::default();
    let mut timer = Box::pin(tokio::time::sleep(idle));
    let mut moved = 0;
    let r = std::future::poll_fn(|cx| {
        let x = up.poll(cx, &mut a, &mut b)?;
        let y = down.poll(cx, &mut b, &mut a)?;
        if x.is_ready() && y.is_ready() {
            return Poll::Ready(Ok(()));
        }
        let now = up.moved + down.moved;
        if now != moved {
            moved = now;
            timer.as_mut().reset(tokio::time::Instant::now() + idle);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("tunnel idle for {} s", idle.as_secs_f64()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    (up.moved, down.moved, r.err().map(|e| e.to_string()))
}

/// A tunnel direction's first buffer, and its size when idle.
pub const MIN_BUF: usize = 8 * 1024;
/// The largest a tunnel direction's buffer grows.
pub const MAX_BUF: usize = 64 * 1024;

/// One direction of a tunnel: read into the buffer, write it all out, again, until the
/// reader ends; then shut the writer down (half-close, so the other direction goes on).
#[derive(Default)]
struct Pump {
    buf: Vec<u8>,
    /// Bytes `buf[pos..end]` are read and not written yet.
    pos: usize,
    end: usize,
    eof: bool,
    done: bool,
    moved: u64,
    /// Largest buffer used (tests).
    peak: usize,
}

impl Pump {
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<std::io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            while self.pos < self.end {
                let n =
                    ready!(Pin::new(&mut *writer).poll_write(cx, &self.buf[self.pos..self.end]))?;
                if n == 0 {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.moved += n as u64;
            }
            if self.eof {
                ready!(Pin::new(&mut *writer).poll_shutdown(cx))?;
                self.done = true;
                self.buf = Vec::new();
                return Poll::Ready(Ok(()));
            }
            self.pos = 0;
            self.end = 0;
            if self.buf.is_empty() {
                self.buf = vec![0; MIN_BUF];
                self.peak = self.peak.max(MIN_BUF);
            }
            let mut rb = ReadBuf::new(&mut self.buf);
            match Pin::new(&mut *reader).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Nothing more to read now: push out what the writer buffers.
                    ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                    return Poll::Pending;
                }
            }
            let n = rb.filled().len();
            if n == 0 {
                self.eof = true;
            } else if n == self.buf.len() && n < MAX_BUF {
                // A full read: more is waiting. Grow for the next one.
                let next = (n * 2).min(MAX_BUF);
                let mut bigger = vec![0; next];
                bigger[..n].copy_from_slice(&self.buf[..n]);
                self.buf = bigger;
                self.peak = next;
            }
            self.end = n;
        }
    }
}

/// The client's side of a tunnel as a byte stream.
pub fn client_io(u: Upgraded) -> TokioIo<Upgraded> {
    TokioIo::new(u)
}

/// Shared counters, readable after the stream has been handed to a TLS acceptor.
#[derive(Debug, Clone, Default)]
pub struct Counters(pub Arc<(AtomicU64, AtomicU64)>);

impl Counters {
    /// (bytes read from the client, bytes written to it).
    pub fn get(&self) -> (u64, u64) {
        (
            self.0.0.load(Ordering::Relaxed),
            self.0.1.load(Ordering::Relaxed),
        )
    }
}

/// An IO that adds what passes through it to [`Counters`].
#[derive(Debug)]
pub struct CountingIo<IO> {
    inner: IO,
    counters: Counters,
}

impl<IO> CountingIo<IO> {
    pub fn new(inner: IO, counters: Counters) -> Self {
        CountingIo { inner, counters }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for CountingIo<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before) as u64;
        this.counters.0.0.fetch_add(n, Ordering::Relaxed);
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for CountingIo<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.counters.0.1.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A connected pair of loopback sockets.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap());
        let (a, b) = tokio::join!(a, l.accept());
        (a.unwrap(), b.unwrap().0)
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[tokio::test]
    async fn splice_relays_both_ways_with_half_close_and_counts() {
        let (mut user, client_side) = pair().await;
        let (upstream, mut site) = pair().await;
        let relay = tokio::spawn(splice(
            client_side,
            b"hello ",
            upstream,
            Duration::from_secs(30),
        ));

        let up_data = pattern(300_000, 7);
        let down_data = pattern(3 << 20, 11);
        let site_task = {
            let down_data = down_data.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                // The user's half-close reaches the site as end of stream...
                site.read_to_end(&mut got).await.unwrap();
                // ...and the other direction still flows afterwards.
                site.write_all(&down_data).await.unwrap();
                site.shutdown().await.unwrap();
                got
            })
        };
        user.write_all(&up_data).await.unwrap();
        user.shutdown().await.unwrap();
        let mut got_down = Vec::new();
        user.read_to_end(&mut got_down).await.unwrap();
        let got_up = site_task.await.unwrap();

        assert_eq!(&got_up[..6], b"hello ");
        assert!(got_up[6..] == up_data[..], "client → site bytes differ");
        assert!(got_down == down_data, "site → client bytes differ");
        let (up, down, err) = relay.await.unwrap();
        assert_eq!((up, down, err), (6 + 300_000, 3 << 20, None));
    }

    #[tokio::test]
    async fn an_idle_tunnel_is_closed_and_an_active_one_is_not() {
        let (mut user, client_side) = pair().await;
        let (upstream, mut site) = pair().await;
        let idle = Duration::from_millis(300);
        let relay = tokio::spawn(splice(client_side, b"", upstream, idle));
        // Traffic every 100 ms for 1 s keeps it open (3 idle periods in all).
        let mut buf = [0u8; 4];
        for _ in 0..10 {
            user.write_all(b"ping").await.unwrap();
            site.read_exact(&mut buf).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!relay.is_finished(), "an active tunnel stays open");
        // Then silence: the relay ends on its own, and both sides see the close.
        let (up, down, err) = relay.await.unwrap();
        assert_eq!((up, down), (40, 0));
        assert!(err.unwrap().contains("idle"));
        assert_eq!(site.read(&mut buf).await.unwrap(), 0);
        assert_eq!(user.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn pump_grows_on_full_reads_up_to_max() {
        let (mut src, mut a) = pair().await;
        let (mut b, mut dst) = pair().await;
        let data = pattern(4 << 20, 3);
        let writer = {
            let data = data.clone();
            tokio::spawn(async move {
                src.write_all(&data).await.unwrap();
                src.shutdown().await.unwrap();
            })
        };
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            dst.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut p = Pump::default();
        std::future::poll_fn(|cx| p.poll(cx, &mut a, &mut b))
            .await
            .unwrap();
        writer.await.unwrap();
        assert!(reader.await.unwrap() == data);
        assert_eq!(p.moved, 4 << 20);
        assert_eq!(
            p.peak, MAX_BUF,
            "a bulk transfer grows the buffer to its maximum"
        );
        // Done: the buffer is given back.
        assert!(p.done && p.buf.capacity() == 0);
    }
}
