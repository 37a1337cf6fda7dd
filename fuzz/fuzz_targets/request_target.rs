//! The request head as the proxy's listener sees it, then the proxy's own steps on it.
//!
//! hyper 1.x (HTTP/1) parses a request head with `httparse` (default `ParserConfig`, at
//! most 100 headers), refuses a request-target longer than 65534 bytes, then builds the
//! `http::Uri` with `Uri::from_maybe_shared` (here `Uri::try_from(&[u8])`, the same
//! parser) and the headers with `HeaderName` / `HeaderValue`. This target does the same,
//! then what `pipeline::handle` and its helpers do with the result:
//!
//! - `pages::lang_of` on the headers (first step of every request);
//! - no authority and not CONNECT: the help page, nothing parsed;
//! - CONNECT (`pipeline::connect`): `Host::parse_authority` on the URI authority, a port
//!   required, then classification without a path;
//! - otherwise (`pipeline::http`): scheme `http` only, `Host::parse_authority` on the URI
//!   authority (port 80 by default), then `exchange`: classification with the path, the
//!   decision, the canonical authority put back into a `Host` header value and an
//!   upstream `Uri` (scheme + canonical authority + path and query);
//! - the `Host` headers as `connect::other_host` reads them inside a tunnel
//!   (`to_str`, else U+FFFD, then `Host::parse_authority`).
//!
//! Issue 20, class 2 (one canonical form for every path), checked on every plain-HTTP
//! target: the canonical form is a fixed point; a path whose readings the quick check
//! calls equal has equal readings; the decision for a spelling equals the decision for
//! its syntax-normal form (unreserved escapes decoded, case folded: RFC 3986 §6.2.2.1-2)
//! and, where its readings agree, for its canonical form; where they do not (a server
//! reading less into the path than the canonical form), it is never less strict than
//! the canonical form's; and `explain`'s reading of the same URL gives the same host,
//! port and path, hence the same decision.
//!
//! Besides "never panics", checked: what the proxy builds from a host it accepted is
//! accepted by `http` (else the proxy would answer 400 to a request it judged valid, or
//! forward the client's own `Host` header instead of the canonical one), and the port it
//! connects to is the one `http` reads in the same authority.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::OnceLock;

use charte_proxy::pages as block_page;
use charte_proxy::classify::path::{Reading, append_reading, normalize, readings_may_differ};
use charte_proxy::classify::{Classification, Host};
use charte_proxy::config::{Compiled, Diags, compile_str};
use charte_proxy::policy::RequestFacts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};
use libfuzzer_sys::fuzz_target;

/// hyper's `DEFAULT_MAX_HEADERS`.
const MAX_HEADERS: usize = 100;
/// hyper's `MAX_URI_LEN`.
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;

/// A small policy with inline lists only (no file is read), so that classification and
/// decision find domain and URL matches.
const POLICY: &str = r#"
version: 1
groups:
  agents:
    networks: [127.0.0.0/8, "::1/128"]
lists:
  noire: [bad.example, "=exact.example", 10.0.0.1, "[::1]", "example.com/private", "xn--bcher-kva.de/Ab"]
no_inspect:
  domains: [bank.example]
rules:
  - id: noire
    lists: [noire]
    action: block
    reason: Liste noire
  - id: upload
    groups: [agents]
    domains: [upload.example]
    methods: [POST, PUT]
    action: block-upload
    reason: {fr: Envoi, en: Upload}
  - id: chemins
    urls: ["example.org/a/b", "example.org/%41", "example.org/x;y/%2Fz", "example.net/"]
    action: block
    mode: report
    reason: Chemin
default: allow
"#;

fn policy() -> &'static Compiled {
    static POLICY_COMPILED: OnceLock<Compiled> = OnceLock::new();
    POLICY_COMPILED.get_or_init(|| {
        let path = Path::new("/nonexistent/charte-proxy-fuzz/request-target.yaml");
        match compile_str(POLICY, path, Diags::default()) {
            Ok(c) => c,
            Err(d) => panic!(
                "the fuzz target's own policy does not compile: {:?}",
                d.items
            ),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // As hyper's `Server::parse`.
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let Ok(httparse::Status::Complete(_)) =
        httparse::ParserConfig::default().parse_request(&mut req, data)
    else {
        return;
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return;
    };
    if target.len() > MAX_URI_LEN {
        return;
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    // `TryFrom<&[u8]>` is `from_shared(Bytes::copy_from_slice)`, as hyper's.
    let Ok(uri) = Uri::try_from(target.as_bytes()) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for h in req.headers.iter() {
        // hyper takes both unchecked: httparse has validated them already.
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            continue;
        };
        headers.append(name, value);
    }

    proxy_steps(&method, &uri, &headers);
});

fn proxy_steps(method: &Method, uri: &Uri, headers: &HeaderMap) {
    // pipeline::handle
    let _lang = block_page::lang_of(headers);
    if method != Method::CONNECT && uri.authority().is_none() {
        return; // the help page
    }
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
    let tunnel_host = if method == Method::CONNECT {
        // pipeline::connect
        match Host::parse_authority(authority) {
            Ok((host, Some(port))) => {
                check_port(uri, port);
                let _ = classify(&host, None, "CONNECT");
                Some((host, port))
            }
            _ => None,
        }
    } else if uri.scheme_str() != Some("http") {
        None // refused: only http:// in clear
    } else {
        // pipeline::http
        match Host::parse_authority(authority) {
            Ok((host, port)) => {
                if let Some(p) = port {
                    check_port(uri, p);
                }
                let port = port.unwrap_or(80);
                exchange(method, uri, headers, &host, port);
                Some((host, port))
            }
            Err(_) => None,
        }
    };

    // connect::other_host, as inside a tunnel to the host found above.
    for v in headers.get_all(header::HOST) {
        let given = v.to_str().unwrap_or("\u{fffd}");
        if let Ok((h, p)) = Host::parse_authority(given)
            && let Some((t, tp)) = &tunnel_host
        {
            let _same = h == *t && p.is_none_or(|p| p == *tp);
        }
    }
}

/// The port the proxy connects to is the one `http` reads in the same authority.
fn check_port(uri: &Uri, port: u16) {
    assert_eq!(
        uri.port_u16(),
        Some(port),
        "{uri}: the proxy reads port {port}, http reads {:?}",
        uri.port_u16()
    );
}

/// The tags found and what is decided, for two clients.
fn classify(host: &Host, path: Option<&str>, method: &str) -> Vec<String> {
    let c = policy();
    let mut class = Classification::default();
    let mut scratch = String::new();
    c.classifier.classify(host, path, &mut scratch, &mut class);
    let mut out: Vec<String> = class.tags().map(|t| format!("tag {t}")).collect();
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    ] {
        let who = c.policy.groups.resolve(ip, None);
        let facts = RequestFacts {
            body: method == "POST",
            ..RequestFacts::for_method(method, path.is_some())
        };
        let d = c.policy.decide(&who, &class, &facts);
        out.push(format!("{:?} {:?} {:?}", d.verdict, d.rule, d.reason.code));
    }
    let _ = c.policy.never_inspected(&class);
    out
}

/// One reading of `path` as a string.
fn reading(path: &str, r: Reading) -> String {
    let mut s = String::new();
    append_reading(path, r, &mut s);
    s
}

/// The path properties of issue 20, class 2 (see the module's comment).
fn check_path(uri: &Uri, host: &Host, port: u16, path: &str, method: &str) {
    let canonical = normalize(path);
    assert_eq!(normalize(&canonical), canonical, "{path:?}: canonical form not a fixed point");
    let readings = Reading::ALL.map(|r| reading(path, r));
    if !readings_may_differ(path) {
        assert!(
            readings.iter().all(|f| *f == canonical),
            "{path:?}: readings differ ({readings:?}) where the quick check says they cannot"
        );
    }
    let decided = classify(host, Some(path), method);
    // The syntax-normal form (unreserved escapes decoded, case folded) is the same path.
    let literal = &readings[2];
    assert_eq!(
        classify(host, Some(literal), method),
        decided,
        "{path:?}: decided otherwise than its normal form {literal:?}"
    );
    let for_canonical = classify(host, Some(&canonical), method);
    if readings.iter().all(|f| *f == canonical) {
        assert_eq!(
            decided, for_canonical,
            "{path:?}: decided otherwise than its canonical form {canonical:?}"
        );
    } else {
        // Never less strict: every tag of the canonical form is found for the spelling.
        for t in for_canonical.iter().filter(|t| t.starts_with("tag ")) {
            assert!(
                decided.contains(t),
                "{path:?}: {t} of its canonical form {canonical:?} not found for it"
            );
        }
    }
    // `explain` reads the same URL into the same host, port and path.
    let url = format!("http://{}{path}", uri.authority().map_or("", |a| a.as_str()));
    match charte_proxy::explain::parse_target(&url) {
        Ok(t) => {
            assert_eq!(&t.host, host, "{url:?}: explain reads another host");
            assert_eq!(t.port.unwrap_or(80), port, "{url:?}: explain reads another port");
            let want = if path.is_empty() { "/" } else { path };
            assert_eq!(t.path.as_deref(), Some(want), "{url:?}: explain reads another path");
        }
        Err(e) => panic!("{url:?}: the proxy takes it, explain refuses it: {e}"),
    }
}

/// pipeline::exchange for a plain-HTTP target.
fn exchange(method: &Method, uri: &Uri, _headers: &HeaderMap, host: &Host, port: u16) {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    check_path(uri, host, port, path, method.as_str());
    // Target::authority
    let canonical = if port == 80 {
        host.to_authority()
    } else {
        format!("{}:{}", host.to_authority(), port)
    };
    assert!(
        HeaderValue::from_str(&canonical).is_ok(),
        "{uri}: canonical authority {canonical:?} is not a header value; the client's Host would be forwarded"
    );
    let rebuilt = Uri::builder()
        .scheme("http")
        .authority(canonical.as_str())
        .path_and_query(path)
        .build();
    match rebuilt {
        Ok(u) => {
            // What the upstream client connects to is what was classified.
            let a = u.authority().map(|a| a.as_str()).unwrap_or("");
            let (h2, p2) = Host::parse_authority(a).expect("canonical authority re-parses");
            assert_eq!(&h2, host, "{uri}: upstream host differs");
            assert_eq!(p2.unwrap_or(80), port, "{uri}: upstream port differs");
        }
        Err(e) => panic!("{uri}: upstream URI from {canonical:?} + {path:?} refused: {e}"),
    }
}
