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
//!   check against `url::Host::parse` + the documented name rules);
//! - the decision for a spelling equals the decision for its canonical form (issue 20,
//!   class 1): an address is classified and decided as the address it stands for
//!   (`canonical_ip`: an IPv6 form carrying an IPv4 address is that address), against a
//!   small policy; a list entry written as any accepted spelling catches the canonical
//!   form and the spelling alike; and an IPv4 address is decided the same in every IPv6
//!   form that carries it (mapped, compatible, translated, NAT64, 6to4).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::OnceLock;

use charte_proxy::classify::host::{MAX_HOST_LEN, MAX_LABEL_LEN, canonical_ip};
use charte_proxy::classify::{Classification, Host, HostKind, IndexBuilder};
use charte_proxy::config::{Compiled, Diags, compile_str};
use charte_proxy::policy::RequestFacts;
use libfuzzer_sys::fuzz_target;

/// A policy whose lists hold addresses in several spellings and a few names, so that the
/// decision property meets listed hosts (the dictionary carries these addresses).
const POLICY: &str = r#"
version: 1
groups:
  agents:
    networks: [127.0.0.0/8]
lists:
  loi: [10.0.0.1, "::ffff:198.51.100.9", "64:ff9b::203.0.113.5", bad.example, "=exact.example"]
  ipv6: ["2001:db8::1", "[::1]"]
rules:
  - id: loi
    lists: [loi]
    action: block
    overridable: false
    reason: Loi
  - id: ipv6
    lists: [ipv6]
    action: block-upload
    reason: Envoi
default: allow
"#;

fn policy() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let path = Path::new("/nonexistent/charte-proxy-fuzz/host.yaml");
        compile_str(POLICY, path, Diags::default())
            .unwrap_or_else(|d| panic!("the fuzz target's policy does not compile: {:?}", d.items))
    })
}

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
    if let Ok(h) = &parsed {
        check_decision(&s, h);
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
    let key = h.match_str();
    for start in h.suffix_starts() {
        assert!(start == 0 || key.as_bytes()[start - 1] == b'.');
        let suffix = &key[start..];
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

/// What the policy decides for `h`: (verdict, rule, tags), for a client in and out of
/// the group, with and without data sent.
fn decide(h: &Host) -> Vec<(String, Option<u32>, Vec<u32>)> {
    let c = policy();
    let mut class = Classification::default();
    let mut scratch = String::new();
    c.classifier.classify(h, None, &mut scratch, &mut class);
    let tags: Vec<u32> = class.tags().map(u32::from).collect();
    let mut out = Vec::new();
    for ip in [Ipv4Addr::LOCALHOST, Ipv4Addr::new(192, 0, 2, 1)] {
        let who = c.policy.groups.resolve(IpAddr::V4(ip), None);
        for (method, sends_data) in [("GET", false), ("POST", true)] {
            let facts = RequestFacts {
                body: sends_data,
                ..RequestFacts::for_method(method, false)
            };
            let d = c.policy.decide(&who, &class, &facts);
            out.push((
                format!("{:?} {:?}", d.verdict, d.reason.code),
                d.rule.map(|r| r as u32),
                tags.clone(),
            ));
        }
    }
    out
}

/// The forms of an IPv4 address that carry it inside an IPv6 address.
fn carrying_forms(v4: Ipv4Addr) -> [Ipv6Addr; 5] {
    let [a, b, c, d] = v4.octets();
    let hi = u16::from_be_bytes([a, b]);
    let lo = u16::from_be_bytes([c, d]);
    [
        v4.to_ipv6_mapped(),
        Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, hi, lo),
        Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
        Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1),
        // IPv4-compatible only for addresses whose top 16 bits are not zero (`::` and
        // `::1` and the like are IPv6 addresses of their own).
        if hi != 0 {
            Ipv6Addr::new(0, 0, 0, 0, 0, 0, hi, lo)
        } else {
            v4.to_ipv6_mapped()
        },
    ]
}

fn check_decision(input: &str, h: &Host) {
    // The canonical form of this spelling: the address it stands for, or the name.
    let canonical = match h.ip() {
        Some(ip) => Host::from_ip(canonical_ip(ip)),
        None => Host::parse(h.as_str()).expect("idempotent"),
    };
    assert_eq!(
        h.match_str(),
        canonical.match_str(),
        "{input:?}: matched as {:?}, its canonical form as {:?}",
        h.match_str(),
        canonical.match_str()
    );
    assert_eq!(
        decide(h),
        decide(&canonical),
        "{input:?}: decided otherwise than its canonical form {canonical}"
    );
    // A list entry written as this spelling catches the canonical form, and the other
    // way round.
    for (entry, asked) in [(h, &canonical), (&canonical, h)] {
        let mut b = IndexBuilder::new();
        b.add(entry, 7, false);
        let ix = b.build();
        assert!(
            ix.lookup(asked).iter().any(|m| m.tag == 7),
            "{input:?}: entry {entry} does not catch {asked}"
        );
    }
    // An IPv4 address is decided the same in every IPv6 form that carries it.
    if let Some(IpAddr::V4(v4)) = canonical.ip() {
        let want = decide(&canonical);
        for v6 in carrying_forms(v4) {
            let form = Host::from_ip(IpAddr::V6(v6));
            assert_eq!(form.match_str(), canonical.as_str(), "{input:?}: {v6}");
            assert_eq!(decide(&form), want, "{input:?}: {v6} decided otherwise than {v4}");
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
