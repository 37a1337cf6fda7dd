//! `Host::parse` and `Host::parse_authority` on arbitrary text (raw bytes are converted
//! lossily, so invalid UTF-8 becomes U+FFFD as it would in a lossy log or header read).
//!
//! Besides "never panics", every accepted host must be in canonical form:
//!
//! - its text is lower-case ASCII: a DNS name of 1–253 bytes made of 1–63-byte labels of
//!   `[a-z0-9_-]`, or an address printed as `IpAddr` prints it;
//! - normalisation is idempotent: `parse(h.as_str()) == h`;
//! - `to_authority()` gives the same host back through `parse_authority`, alone and with
//!   a port, and is a valid `http::uri::Authority` and header value (the proxy builds
//!   the upstream URI and `Host` header from it);
//! - each suffix that `suffix_starts` yields (what the domain index looks up) is itself
//!   a valid host whose canonical text is that very suffix, so that a list entry written
//!   as that suffix matches it;
//! - plain ASCII names (letters, digits, `-`, `_`, `.`), which `Host::parse` checks on a
//!   fast path of its own, get the answer the URL parser path would give (differential
//!   check against `url::Host::parse` + the documented name rules).
#![no_main]

use std::net::IpAddr;

use charte_proxy::classify::host::{MAX_HOST_LEN, MAX_LABEL_LEN};
use charte_proxy::classify::{Host, HostKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let parsed = Host::parse(&s);
    if let Ok(h) = &parsed {
        check_host(&s, h);
    }
    if let Some(expected) = slow_path(&s) {
        let got = parsed.as_ref().map(|h| h.as_str()).map_err(|_| ());
        assert_eq!(
            got,
            expected.as_deref().map_err(|_| ()),
            "{s:?}: Host::parse differs from the URL parser path"
        );
    }
    if let Ok((h, port)) = Host::parse_authority(&s) {
        check_host(&s, &h);
        assert_ne!(port, Some(0), "{s:?}: port 0 accepted");
        if let Some(p) = port {
            let again = Host::parse_authority(&format!("{}:{p}", h.to_authority()));
            assert_eq!(
                again,
                Ok((h.clone(), Some(p))),
                "{s:?}: authority with port"
            );
        }
    }
});

fn check_host(input: &str, h: &Host) {
    let text = h.as_str();
    assert!(!text.is_empty(), "{input:?}: empty host accepted");
    assert!(
        text.is_ascii() && !text.bytes().any(|b| b.is_ascii_uppercase()),
        "{input:?}: canonical text {text:?} is not lower-case ASCII"
    );
    match h.kind() {
        HostKind::Domain => {
            assert!(text.len() <= MAX_HOST_LEN, "{input:?}: {text:?} too long");
            for label in text.split('.') {
                assert!(
                    !label.is_empty() && label.len() <= MAX_LABEL_LEN,
                    "{input:?}: bad label {label:?} in {text:?}"
                );
                assert!(
                    label.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'-'
                        || b == b'_'),
                    "{input:?}: bad character in {text:?}"
                );
            }
            assert!(
                text.parse::<IpAddr>().is_err(),
                "{input:?}: {text:?} is an address but kind is Domain"
            );
        }
        HostKind::Ip(ip) => {
            assert_eq!(
                text,
                ip.to_string(),
                "{input:?}: address text not canonical"
            );
            assert_eq!(h.ip(), Some(ip));
        }
    }

    // Idempotent normalisation.
    let again = Host::parse(text);
    assert_eq!(again.as_ref(), Ok(h), "{input:?}: parse(as_str) differs");

    // Authority round trip, and what the proxy builds from it.
    let auth = h.to_authority();
    assert_eq!(
        Host::parse_authority(&auth),
        Ok((h.clone(), None)),
        "{input:?}: parse_authority(to_authority) differs"
    );
    assert!(
        auth.parse::<http::uri::Authority>().is_ok(),
        "{input:?}: {auth:?} is not a valid URI authority"
    );
    assert!(
        http::HeaderValue::from_str(&auth).is_ok(),
        "{input:?}: {auth:?} is not a valid header value"
    );

    // Every suffix the index looks up is a canonical host itself.
    for start in h.suffix_starts() {
        assert!(start == 0 || text.as_bytes()[start - 1] == b'.');
        let suffix = &text[start..];
        match Host::parse(suffix) {
            Ok(s) => assert_eq!(
                s.as_str(),
                suffix,
                "{input:?}: suffix {suffix:?} of {text:?} is not canonical"
            ),
            Err(e) => panic!("{input:?}: suffix {suffix:?} of {text:?} is refused: {e}"),
        }
    }
}

/// For a plain ASCII name (what the fast path of `Host::parse` may take), what the slow
/// path (WHATWG URL host parser, then the name rules) answers; `None` for other inputs.
fn slow_path(input: &str) -> Option<Result<String, ()>> {
    let trimmed = input.strip_suffix('.').unwrap_or(input);
    if trimmed.is_empty()
        || trimmed.ends_with('.')
        || !trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return None;
    }
    Some(match url::Host::parse(trimmed) {
        Ok(url::Host::Domain(d)) => {
            let d = d.strip_suffix('.').unwrap_or(&d);
            let ok = !d.is_empty()
                && d.len() <= MAX_HOST_LEN
                && d.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= MAX_LABEL_LEN
                        && l.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                        })
                });
            if ok { Ok(d.to_string()) } else { Err(()) }
        }
        Ok(url::Host::Ipv4(v4)) => Ok(v4.to_string()),
        Ok(url::Host::Ipv6(v6)) => Ok(v6.to_string()),
        Err(_) => Err(()),
    })
}
