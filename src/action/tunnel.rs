//! CONNECT tunnels: connect to the site, then copy bytes both ways until either side
//! closes, counting them for the trace. The decision was taken on the host before any
//! byte is relayed.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::forward::Resolver;

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
}

impl UpstreamError {
    pub fn code(&self) -> &'static str {
        match self {
            UpstreamError::Dns { .. } => "upstream-dns",
            UpstreamError::Connect { .. } => "upstream-connect",
            UpstreamError::Timeout { .. } => "upstream-timeout",
        }
    }

    /// Metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Dns { .. } => "dns",
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::Timeout { .. } => "timeout",
        }
    }
}

/// Resolves `host` and connects to the first address that answers, within `timeout`.
pub async fn connect(
    resolver: &Resolver,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr), UpstreamError> {
    let attempt = async {
        let addrs = resolver
            .resolve(host, port)
            .await
            .map_err(|source| UpstreamError::Dns {
                host: host.to_string(),
                source,
            })?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok((s, addr));
                }
                Err(source) => last = Some(UpstreamError::Connect { addr, source }),
            }
        }
        Err(last.expect("resolve returns at least one address"))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(UpstreamError::Timeout {
                host: host.to_string(),
            })
        })
}

/// Copies both ways until either side closes, after sending `prefix` (bytes already read
/// from the client, such as a peeked ClientHello) to the site. Returns (bytes client →
/// site, bytes site → client, error if the copy ended on one).
pub async fn splice<C: AsyncRead + AsyncWrite + Unpin>(
    mut client: C,
    prefix: &[u8],
    mut upstream: TcpStream,
) -> (u64, u64, Option<String>) {
    if let Err(e) = upstream.write_all(prefix).await {
        return (0, 0, Some(e.to_string()));
    }
    let sent = prefix.len() as u64;
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => (sent + up, down, None),
        Err(e) => (sent, 0, Some(e.to_string())),
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
