//! Connection caps: open client connections overall and per client address. A
//! connection over a cap gets a short 503 and is closed; connections already open are
//! untouched. The permit travels with the socket ([`Held`]), so a connection that became
//! a tunnel still counts until the tunnel closes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Which cap a refused connection hit (metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excess {
    Total,
    PerClient,
}

impl Excess {
    pub fn as_str(self) -> &'static str {
        match self {
            Excess::Total => "max-connections",
            Excess::PerClient => "max-connections-per-client",
        }
    }
}

#[derive(Debug)]
pub struct ConnLimits {
    max: usize,
    per_client: usize,
    total: AtomicUsize,
    by_client: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnLimits {
    pub fn new(max: usize, per_client: usize) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            max,
            per_client,
            total: AtomicUsize::new(0),
            by_client: Mutex::new(HashMap::new()),
        })
    }

    /// A permit for one more connection from `ip`, or which cap it would pass.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Excess> {
        let ip = ip.to_canonical();
        let mut by = self.by_client.lock().unwrap_or_else(|e| e.into_inner());
        if self.total.load(Ordering::Relaxed) >= self.max {
            return Err(Excess::Total);
        }
        let n = by.entry(ip).or_insert(0);
        if *n >= self.per_client {
            return Err(Excess::PerClient);
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Permit {
            limits: self.clone(),
            ip,
        })
    }

    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// One counted connection; released when dropped.
#[derive(Debug)]
pub struct Permit {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut by = self
            .limits
            .by_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = by.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by.remove(&self.ip);
            }
        }
        self.limits.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A socket with its permit: the permit lives exactly as long as the socket.
#[derive(Debug)]
pub struct Held<IO> {
    io: IO,
    _permit: Permit,
}

impl<IO> Held<IO> {
    pub fn new(io: IO, permit: Permit) -> Held<IO> {
        Held {
            io,
            _permit: permit,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Held<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Held<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The answer to a connection over a cap, written before closing it.
pub fn refusal(excess: Excess) -> Vec<u8> {
    let body = match excess {
        Excess::Total => {
            "Le proxy est saturé : réessayez dans quelques instants.\nThe proxy is at capacity: try again in a moment.\n"
        }
        Excess::PerClient => {
            "Trop de connexions ouvertes depuis ce poste : réessayez dans quelques instants.\nToo many open connections from this workstation: try again in a moment.\n"
        }
    };
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 5\r\nX-Charte-Reason: {}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        excess.as_str(),
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_overall_and_per_client_and_release_on_drop() {
        let l = ConnLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = l.try_acquire(a).unwrap();
        // The mapped form is the same client.
        let a2 = l.try_acquire("::ffff:10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(l.try_acquire(a).unwrap_err(), Excess::PerClient);
        let b1 = l.try_acquire(b).unwrap();
        assert_eq!(l.try_acquire(b).unwrap_err(), Excess::Total);
        assert_eq!(l.open(), 3);
        drop(a1);
        let _a3 = l.try_acquire(a).unwrap();
        drop((a2, b1));
        assert_eq!(l.open(), 1);
        assert_eq!(l.by_client.lock().unwrap().len(), 1);
    }
}
