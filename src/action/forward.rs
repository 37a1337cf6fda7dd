//! Forwarding HTTP: the request as it goes to the site (hop-by-hop fields handled per
//! RFC 9110 §7.6.1, `Via`, one canonical `Host`, the URI the upstream client needs), sent
//! through the worker's pool (plain HTTP) or TLS client (inspected HTTPS) with a bound on
//! how long the site may take to answer, and the answer's head as it goes back. Bodies
//! are [`super::body`]'s; the connections to sites are kept in [`super::pool`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri, Version};
use smallvec::SmallVec;

use super::body::CountedIncoming;
use super::bump::TlsUpstream;
use super::dial::UpstreamError;
use super::pool::{Pool, PoolError, SiteBody};
use crate::classify::Host;
use crate::identity::GroupSet;
use crate::policy::tenant::{SafeParam, TenantRestrictions};

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

/// Whether a request's head announces a body (non-zero `Content-Length`, or any
/// `Transfer-Encoding`) or a protocol upgrade: the `body` of the policy's facts.
pub fn announces_body(h: &HeaderMap) -> bool {
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

/// The site a request goes to, as the forwarding needs it.
pub struct Site<'a> {
    /// Inside an inspected tunnel (TLS to the site), or plain HTTP.
    pub https: bool,
    pub host: &'a Host,
    pub port: u16,
    /// `host[:port]`, the port only when it is not the scheme's: the `Host` the site sees.
    pub authority: &'a str,
}

/// Makes the head of a request the one that goes to `site`: hop-by-hop fields removed
/// (a relayed WebSocket handshake, `websocket`, keeps its `Upgrade`), `Via` added, one
/// `Host` (the canonical one) in plain HTTP, none in TLS (the client sets it from the
/// URI), HTTP/1.1, and the URI the upstream client reads: origin-form for the pool,
/// absolute for the TLS client. `Err`: the authority makes no URI.
pub fn prepare(
    parts: &mut http::request::Parts,
    site: &Site<'_>,
    websocket: bool,
) -> Result<(), http::Error> {
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    strip_hop_by_hop(&mut parts.headers, websocket);
    add_via(&mut parts.headers);
    if site.https {
        parts.headers.remove(header::HOST);
    } else if !only_value(&parts.headers, header::HOST, site.authority)
        && let Ok(v) = HeaderValue::from_str(site.authority)
    {
        // Replaces every Host the client sent: the site sees one, the canonical one.
        parts.headers.insert(header::HOST, v);
    }
    parts.version = Version::HTTP_11;
    parts.uri = if site.https {
        Uri::builder()
            .scheme("https")
            .authority(site.authority)
            .path_and_query(path)
            .build()?
    } else {
        // The plain pool is given the site apart and sends origin-form.
        Uri::from(path)
    };
    Ok(())
}

/// Makes the head of a site's answer the one that goes to the client: hop-by-hop
/// fields removed (a WebSocket's `Upgrade` kept when it is relayed), `Via` added.
pub fn answer_head(parts: &mut http::response::Parts, websocket: bool) {
    strip_hop_by_hop(&mut parts.headers, websocket);
    add_via(&mut parts.headers);
}

/// Applies the policy's tenant restrictions to a request prepared by [`prepare`] for
/// `host`, from a client in `groups`: every header of a restriction that concerns them
/// replaces all copies the client sent (any case), and a search's SafeSearch parameter
/// replaces any the client sent. Costs a test when the policy has none.
pub fn restrict(
    parts: &mut http::request::Parts,
    tr: &TenantRestrictions,
    host: &Host,
    groups: &GroupSet,
) {
    if tr.is_empty() {
        return;
    }
    for (name, value) in tr.headers_for(host, groups) {
        // Both were checked when the policy was compiled; `insert` drops every earlier
        // value of the name (header names are matched case-insensitively).
        if let Ok(v) = HeaderValue::from_str(value) {
            parts.headers.insert(HeaderName::from_static(name), v);
        }
    }
    if let Some(p) = tr.safe_search_for(host, parts.uri.path(), groups)
        && let Some(uri) = with_param(&parts.uri, p)
    {
        parts.uri = uri;
    }
}

/// `uri` with the query parameter `p.name` set to `p.value`: every pair of that name
/// removed, ours appended. `None` if the result makes no URI (it always does).
fn with_param(uri: &Uri, p: SafeParam) -> Option<Uri> {
    let mut q = String::with_capacity(uri.query().map_or(0, str::len) + 16);
    for pair in uri.query().unwrap_or("").split('&') {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if pair.is_empty() || key == p.name {
            continue;
        }
        q.push_str(pair);
        q.push('&');
    }
    q.push_str(p.name);
    q.push('=');
    q.push_str(p.value);
    let pq = format!("{}?{q}", uri.path());
    let mut b = Uri::builder();
    if let Some(s) = uri.scheme() {
        b = b.scheme(s.clone());
    }
    if let Some(a) = uri.authority() {
        b = b.authority(a.clone());
    }
    b.path_and_query(pq).build().ok()
}

/// Whether `name` appears exactly once in `h`, with the value `want`.
fn only_value(h: &HeaderMap, name: HeaderName, want: &str) -> bool {
    let mut all = h.get_all(name).iter();
    all.next().map(HeaderValue::as_bytes) == Some(want.as_bytes()) && all.next().is_none()
}

/// Why the site's answer did not come.
#[derive(Debug)]
pub enum SendError {
    /// From the plain-HTTP pool.
    Plain(PoolError),
    /// From the inspected-HTTPS client.
    Tls(hyper_util::client::legacy::Error),
    /// The site did not answer within the first-byte timeout once the request stopped
    /// moving.
    Timeout(UpstreamError),
}

impl SendError {
    /// Whether the connection to the site could not be made.
    pub fn is_connect(&self) -> bool {
        match self {
            SendError::Plain(e) => e.is_connect(),
            SendError::Tls(e) => e.is_connect(),
            SendError::Timeout(_) => false,
        }
    }

    /// The error, for its chain of sources.
    pub fn error(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            SendError::Plain(e) => e,
            SendError::Tls(e) => e,
            SendError::Timeout(e) => e,
        }
    }
}

/// What [`send`] uses to reach sites.
pub struct Senders<'a> {
    /// The calling worker's pool of plain-HTTP site connections.
    pub pool: &'a Pool,
    /// The calling worker's TLS client, when inspection is on.
    pub tls: Option<&'a TlsUpstream>,
}

/// Sends `out` (prepared by [`prepare`]) to `site` and waits for the answer's head. The
/// site has `first_byte` to answer once the request stops moving (`sent`, the body's
/// byte count, is read to tell): a long upload is never cut while its bytes flow.
/// Returns the answer and the address it came from.
pub async fn send(
    out: Request<CountedIncoming>,
    site: &Site<'_>,
    via: Senders<'_>,
    sent: &AtomicU64,
    first_byte: Duration,
) -> Result<(Response<SiteBody>, Option<SocketAddr>), SendError> {
    let sending = async {
        match (via.tls, site.https) {
            (Some(tls), true) => match tls.request(out).await {
                Ok(r) => {
                    let peer = r
                        .extensions()
                        .get::<hyper_util::client::legacy::connect::HttpInfo>()
                        .map(|i| i.remote_addr());
                    Ok((r.map(SiteBody::new), peer))
                }
                Err(e) => Err(SendError::Tls(e)),
            },
            _ => match via
                .pool
                .send(site.authority, site.host, site.port, out)
                .await
            {
                Ok(a) => Ok((a.response, Some(a.peer))),
                Err(e) => Err(SendError::Plain(e)),
            },
        }
    };
    let mut sending = std::pin::pin!(sending);
    let mut seen = sent.load(Ordering::Relaxed);
    loop {
        match tokio::time::timeout(first_byte, sending.as_mut()).await {
            Ok(r) => return r,
            Err(_) => {
                let now = sent.load(Ordering::Relaxed);
                if now == seen {
                    return Err(SendError::Timeout(UpstreamError::Timeout {
                        host: site.host.to_string(),
                    }));
                }
                seen = now;
            }
        }
    }
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
        assert!(wants_upgrade(&h) && announces_body(&h));
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
        assert!(!announces_body(&h));
        h.insert("content-length", "0".parse().unwrap());
        assert!(!announces_body(&h));
        h.insert("content-length", "12".parse().unwrap());
        assert!(announces_body(&h));
        let mut h = HeaderMap::new();
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        assert!(announces_body(&h));
    }

    #[test]
    fn safe_search_parameter_replaces_every_copy_and_keeps_the_rest() {
        let p = SafeParam {
            name: "safe",
            value: "active",
        };
        for (from, to) in [
            ("/search?q=x&safe=off", "/search?q=x&safe=active"),
            (
                "/search?safe=off&q=x&safe=images",
                "/search?q=x&safe=active",
            ),
            ("/search", "/search?safe=active"),
            (
                "/search?q=a%26safe%3Doff",
                "/search?q=a%26safe%3Doff&safe=active",
            ),
            (
                "https://www.google.com/search?q=x&safe",
                "https://www.google.com/search?q=x&safe=active",
            ),
            (
                "/search?q=x&safesearch=off",
                "/search?q=x&safesearch=off&safe=active",
            ),
        ] {
            let uri: Uri = from.parse().unwrap();
            assert_eq!(with_param(&uri, p).unwrap().to_string(), to, "{from}");
        }
    }

    #[test]
    fn restrict_replaces_the_clients_headers_in_any_case() {
        use crate::policy::tenant::{H_TRV2, HeaderRule, Hosts, TRV2_LOGIN};
        let tr = TenantRestrictions {
            headers: vec![HeaderRule {
                hosts: Hosts::exact(TRV2_LOGIN),
                name: H_TRV2,
                value: "t:p".into(),
                groups: None,
            }],
            safe_search: None,
        };
        let (mut parts, ()) = Request::builder()
            .uri("https://login.live.com/")
            .header("Sec-Restrict-Tenant-Access-Policy", "evil:1")
            .header("SEC-RESTRICT-TENANT-ACCESS-POLICY", "evil:2")
            .body(())
            .unwrap()
            .into_parts();
        let host = Host::parse("login.live.com").unwrap();
        restrict(&mut parts, &tr, &host, &GroupSet::EMPTY);
        let all: Vec<_> = parts.headers.get_all(H_TRV2).iter().collect();
        assert_eq!(all, ["t:p"]);
        let other = Host::parse("example.org").unwrap();
        let (mut parts, ()) = Request::new(()).into_parts();
        restrict(&mut parts, &tr, &other, &GroupSet::EMPTY);
        assert!(parts.headers.is_empty());
    }
}
