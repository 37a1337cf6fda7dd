//! Downloads over HTTPS with the trust of the proxy's upstream connections (the
//! system's roots and `tls.upstream_ca`, through the same [`client_config`]), a bound on
//! the size, a timeout, and a few redirects, HTTPS ones only.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::UpdateError;
use crate::action::bump::client_config;

/// Redirects followed at most (a mirror, a CDN).
const MAX_REDIRECTS: usize = 5;
/// Connecting, handshake included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A whole download: UT1 is ~20 MiB, minutes on a slow line.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// An HTTPS client trusting what the proxy trusts upstream.
pub struct Fetcher {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl Fetcher {
    pub fn new(upstream_ca: &[PathBuf]) -> Result<Fetcher, UpdateError> {
        let provider = crate::action::ca::crypto_provider();
        let tls = client_config(provider, upstream_ca)
            .map_err(|e| UpdateError::Setup(format!("upstream trust: {e}")))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(Fetcher { client })
    }

    /// The body at `url` (HTTPS only), at most `max_bytes` long.
    pub async fn get(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, UpdateError> {
        tokio::time::timeout(DOWNLOAD_TIMEOUT, self.get_inner(url, max_bytes))
            .await
            .map_err(|_| UpdateError::Download {
                url: url.to_string(),
                why: format!("no complete answer within {} s", DOWNLOAD_TIMEOUT.as_secs()),
            })?
    }

    async fn get_inner(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, UpdateError> {
        let fail = |why: String| UpdateError::Download {
            url: url.to_string(),
            why,
        };
        let mut at = url::Url::parse(url).map_err(|e| fail(format!("not an address: {e}")))?;
        for _ in 0..=MAX_REDIRECTS {
            if at.scheme() != "https" {
                return Err(fail(format!("{at} is not an https:// address")));
            }
            let uri: http::Uri = at
                .as_str()
                .parse()
                .map_err(|e| fail(format!("not an address: {e}")))?;
            let req = http::Request::get(uri)
                .header(
                    http::header::USER_AGENT,
                    concat!("charte-proxy/", env!("CARGO_PKG_VERSION")),
                )
                .body(Empty::<Bytes>::new())
                .map_err(|e| fail(e.to_string()))?;
            let resp = self.client.request(req).await.map_err(|e| {
                // The legacy client's error says "client error (Connect)"; the cause
                // (certificate, refused connection) is in its sources.
                let mut why = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    why = format!("{why}: {s}");
                    src = s.source();
                }
                fail(why)
            })?;
            let status = resp.status();
            if status.is_redirection() {
                let next = resp
                    .headers()
                    .get(http::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| fail(format!("{status} without a Location")))?;
                at = at
                    .join(next)
                    .map_err(|e| fail(format!("bad redirect {next:?}: {e}")))?;
                continue;
            }
            if status != http::StatusCode::OK {
                return Err(fail(format!("the server answered {status}")));
            }
            if let Some(len) = resp
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                && len > max_bytes
            {
                return Err(fail(format!(
                    "{len} bytes announced, more than the {max_bytes} allowed (max_bytes)"
                )));
            }
            let mut body = resp.into_body();
            let mut out = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| fail(format!("download cut: {e}")))?;
                if let Some(data) = frame.data_ref() {
                    if (out.len() + data.len()) as u64 > max_bytes {
                        return Err(fail(format!(
                            "more than the {max_bytes} bytes allowed (max_bytes)"
                        )));
                    }
                    out.extend_from_slice(data);
                }
            }
            return Ok(out);
        }
        Err(fail(format!("more than {MAX_REDIRECTS} redirects")))
    }
}

/// The SHA-256 a `sha256sum`-format file gives for `name` (the archive's file name):
/// `HEX  name` or `HEX *name` lines; a file of one bare digest, or of one line whatever
/// its name, gives that digest.
pub fn expected_sha256(text: &str, name: &str) -> Result<[u8; 32], String> {
    let mut lines: Vec<(&str, Option<&str>)> = Vec::new();
    for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if l.starts_with('#') {
            continue;
        }
        let (hex, file) = match l.split_once(char::is_whitespace) {
            Some((h, f)) => (h, Some(f.trim().trim_start_matches('*'))),
            None => (l, None),
        };
        lines.push((hex, file));
    }
    let hex = match lines.as_slice() {
        [(hex, _)] => *hex,
        many => many
            .iter()
            .find(|(_, f)| f.is_some_and(|f| f.rsplit('/').next() == Some(name)))
            .map(|(h, _)| *h)
            .ok_or_else(|| format!("the checksum file has no line for {name}"))?,
    };
    parse_hex32(hex).ok_or_else(|| format!("{hex:?} is not a SHA-256 digest (64 hex digits)"))
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256sum_lines() {
        let d = "a".repeat(64);
        let e = "b".repeat(64);
        let want = [0xaa; 32];
        assert_eq!(expected_sha256(&d, "x.tar.gz").unwrap(), want);
        assert_eq!(
            expected_sha256(&format!("{d}  blacklists.tar.gz\n"), "blacklists.tar.gz").unwrap(),
            want
        );
        let two = format!("{e}  other.tar.gz\n{d} *blacklists.tar.gz\n");
        assert_eq!(expected_sha256(&two, "blacklists.tar.gz").unwrap(), want);
        assert!(expected_sha256(&two, "missing.tar.gz").is_err());
        assert!(expected_sha256("d41d8cd98f00b204e9800998ecf8427e  x", "x").is_err());
    }
}
