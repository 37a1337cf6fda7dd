//! CONNECT tunnels: connect to the site, then copy bytes both ways until either side
//! closes, counting them for the trace. The decision was taken on the host before any
//! byte is relayed.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
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

/// Copies both ways until either side closes. Returns (bytes client → site, bytes site →
/// client, error if the copy ended on one).
pub async fn splice(client: Upgraded, mut upstream: TcpStream) -> (u64, u64, Option<String>) {
    let mut client = TokioIo::new(client);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => (up, down, None),
        Err(e) => (0, 0, Some(e.to_string())),
    }
}
