//! `Host`: a host name or address normalised once, at the edge.
//!
//! Every later stage takes a `&Host`, never a bare `&str`, so that no rule can be
//! slipped past with another spelling of the same name. Normalisation follows the
//! WHATWG URL host parser (the one browsers use), then our own stricter checks:
//!
//! - lower case; one trailing dot removed; a port removed by [`Host::parse_authority`];
//! - IDN converted to punycode (UTS #46 mapping, so full-width dots and letters fold too);
//! - IPv4 in every spelling browsers accept (`0x7f.1`, `2130706433`, `0177.0.0.1`) turned
//!   into dotted decimal; IPv6 into its canonical text (RFC 5952);
//! - an IPv6 address that carries an IPv4 address (mapped, compatible, translated, NAT64,
//!   6to4: [`embedded_v4`]) keeps its own text and address, since that is what will be
//!   connected to, but is *matched* as the IPv4 address it carries ([`Host::match_str`]):
//!   a list entry `192.0.2.7` catches `[::ffff:192.0.2.7]` and `[64:ff9b::c000:207]`, and
//!   an entry written in one of those forms catches the plain IPv4 address. The
//!   internal-address guard (`policy::internal`) judges addresses through the same
//!   [`canonical_ip`], so classification and the guard never see two different hosts;
//! - anything that is not a valid DNS name or address is an error, never a miss.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest host name we accept, in bytes (RFC 1035, without the trailing dot).
pub const MAX_HOST_LEN: usize = 253;
/// Longest label (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// A normalised host: a DNS name in lower-case ASCII, or an IP address.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Host {
    /// Canonical text: the name, dotted-decimal IPv4, or IPv6 without brackets.
    text: Box<str>,
    kind: HostKind,
    /// The dotted-decimal IPv4 address an IPv6 address carries, which lists match
    /// instead of `text`; `None` for every other host (derived from `kind`, so equality
    /// and hashing are unchanged by it).
    carried: Option<Box<str>>,
}

/// The IPv4 address inside an IPv6 address of one of the forms that carry one:
/// IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated, but not
/// `::` and `::1`), IPv4-translated (`::ffff:0:a.b.c.d`), the NAT64 well-known prefix
/// (`64:ff9b::a.b.c.d`, RFC 6052) and 6to4 (`2002:AABB:CCDD::/48`, RFC 3056). Teredo
/// (`2001::/32`) hides its address and is refused whole by the internal-address guard.
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        // ::a.b.c.d, but not :: and ::1 (they have their own names).
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

/// An address as the one it stands for: an IPv6 address that carries an IPv4 address
/// ([`embedded_v4`]) is that IPv4 address; every other address is itself. The one
/// canonicalisation of addresses, used by classification and by the internal-address
/// guard alike.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What kind of host this is; addresses keep their parsed value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostKind {
    Domain,
    Ip(IpAddr),
}

/// Why a host was refused. Each variant has a stable code for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("the host is empty")]
    Empty,
    #[error("the host is longer than {MAX_HOST_LEN} bytes")]
    TooLong,
    #[error("the host has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    #[error("a label of the host is longer than {MAX_LABEL_LEN} bytes")]
    LabelTooLong,
    #[error("the host contains a character not allowed in a name: {0:?}")]
    InvalidChar(char),
    #[error("the host is not a valid internationalised name or address: {0}")]
    Invalid(String),
    #[error("the port is not a number between 1 and 65535: {0:?}")]
    InvalidPort(String),
}

impl HostError {
    /// Stable short code, for traces and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            HostError::Empty => "host-empty",
            HostError::TooLong => "host-too-long",
            HostError::EmptyLabel => "host-empty-label",
            HostError::LabelTooLong => "host-label-too-long",
            HostError::InvalidChar(_) => "host-invalid-char",
            HostError::Invalid(_) => "host-invalid",
            HostError::InvalidPort(_) => "port-invalid",
        }
    }
}

impl Host {
    /// Normalises a bare host: a name, an IPv4 address in any spelling, or an IPv6
    /// address with or without brackets. No port.
    pub fn parse(input: &str) -> Result<Host, HostError> {
        if input.is_empty() {
            return Err(HostError::Empty);
        }
        if let Some(c) = input.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(HostError::InvalidChar(c));
        }
        // Bare IPv6 (as written in list files and CLI arguments).
        if !input.starts_with('[') && input.contains(':') {
            return match input.parse::<Ipv6Addr>() {
                Ok(v6) => Ok(Host::from_ip(IpAddr::V6(v6))),
                Err(_) => Err(HostError::InvalidChar(':')),
            };
        }
        // One trailing dot is the fully-qualified spelling of the same name.
        let trimmed = input.strip_suffix('.').unwrap_or(input);
        if trimmed.is_empty() {
            return Err(HostError::Empty);
        }
        if trimmed.ends_with('.') {
            return Err(HostError::EmptyLabel);
        }
        if let Some(fast) = Self::parse_plain_name(trimmed)? {
            return Ok(fast);
        }
        // Dotted-decimal IPv4 as written canonically (std's parser takes four decimal
        // parts without leading zeros and nothing else, so the text is already the
        // canonical one): no IDNA machinery, no formatting. Every other spelling
        // (hex, octal, fewer parts) goes to the URL parser below.
        if trimmed.as_bytes()[0].is_ascii_digit()
            && let Ok(v4) = trimmed.parse::<std::net::Ipv4Addr>()
        {
            return Ok(Host {
                text: trimmed.into(),
                kind: HostKind::Ip(IpAddr::V4(v4)),
                carried: None,
            });
        }
        // Slow path: IDN, numeric IPv4 forms, bracketed IPv6, odd characters.
        match url::Host::parse(trimmed) {
            Ok(url::Host::Domain(d)) => {
                let d = d.strip_suffix('.').unwrap_or(&d);
                Self::check_name(d)?;
                Ok(Host {
                    text: d.into(),
                    kind: HostKind::Domain,
                    carried: None,
                })
            }
            Ok(url::Host::Ipv4(v4)) => Ok(Host::from_ip(IpAddr::V4(v4))),
            Ok(url::Host::Ipv6(v6)) => Ok(Host::from_ip(IpAddr::V6(v6))),
            Err(e) => Err(HostError::Invalid(e.to_string())),
        }
    }

    /// Normalises `host[:port]` (an HTTP authority without user info). The port, if
    /// any, is returned apart; `[v6]:port` is understood.
    pub fn parse_authority(input: &str) -> Result<(Host, Option<u16>), HostError> {
        if input.contains('@') {
            // user@host is never accepted as an authority: it is a classic way to
            // show one name to a filter and connect to another.
            return Err(HostError::InvalidChar('@'));
        }
        let (host, port) = if let Some(rest) = input.strip_prefix('[') {
            let end = rest.find(']').ok_or(HostError::InvalidChar('['))?;
            let after = &rest[end + 1..];
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(HostError::InvalidChar(']'))?),
            };
            (&input[..end + 2], port)
        } else {
            match input.rsplit_once(':') {
                // `2001:db8::1:80` is ambiguous: an IPv6 address with a port must be
                // bracketed, so a colon left in the host part is refused rather
                // than guessed at.
                Some((h, _)) if h.contains(':') => return Err(HostError::InvalidChar(':')),
                Some((h, p)) => (h, Some(p)),
                None => (input, None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => Some(parse_port(p)?),
        };
        Ok((Host::parse(host)?, port))
    }

    /// A host as a person writes it in a list file or on the command line: `host`,
    /// `host:port`, `[v6]:port`, or a bare IPv6 address, taken whole (never split at its
    /// last colon). Protocol fields (request targets, `Host` headers) use
    /// [`Host::parse_authority`], which requires the brackets.
    pub fn parse_written(input: &str) -> Result<(Host, Option<u16>), HostError> {
        if !input.starts_with('[')
            && input.contains(':')
            && let Ok(v6) = input.parse::<Ipv6Addr>()
        {
            return Ok((Host::from_ip(IpAddr::V6(v6)), None));
        }
        Host::parse_authority(input)
    }

    /// Builds a host from an address (always valid).
    pub fn from_ip(ip: IpAddr) -> Host {
        let carried = match canonical_ip(ip) {
            IpAddr::V4(v4) if ip.is_ipv6() => Some(v4.to_string().into()),
            _ => None,
        };
        Host {
            text: ip.to_string().into(),
            kind: HostKind::Ip(ip),
            carried,
        }
    }

    /// The canonical text: name, dotted-decimal IPv4, or IPv6 without brackets. What is
    /// shown, traced and connected to.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text that list entries are matched against: [`Host::as_str`], except for an
    /// IPv6 address that carries an IPv4 address, which is matched as that IPv4 address
    /// (dotted decimal). List entries are keyed by the same text when they are built.
    pub fn match_str(&self) -> &str {
        self.carried.as_deref().unwrap_or(&self.text)
    }

    pub fn kind(&self) -> HostKind {
        self.kind
    }

    pub fn ip(&self) -> Option<IpAddr> {
        match self.kind {
            HostKind::Ip(ip) => Some(ip),
            HostKind::Domain => None,
        }
    }

    pub fn is_domain(&self) -> bool {
        self.kind == HostKind::Domain
    }

    /// Byte offsets in [`Host::match_str`] at which the host and each of its parent
    /// domains start, from the host itself to its last label. An address has only itself.
    /// `www.example.com` → 0 (`www.example.com`), 4 (`example.com`), 12 (`com`).
    pub fn suffix_starts(&self) -> SuffixStarts<'_> {
        SuffixStarts {
            text: self.match_str().as_bytes(),
            next: Some(0),
            whole_only: !self.is_domain(),
        }
    }

    /// Text to put in a URL or a `Host` header: IPv6 in brackets.
    pub fn to_authority(&self) -> String {
        match self.kind {
            HostKind::Ip(IpAddr::V6(_)) => format!("[{}]", self.text),
            _ => self.text.to_string(),
        }
    }

    /// Plain ASCII names (the overwhelming majority) are checked and lowered in one pass,
    /// without going through the URL parser. Returns `None` when the slow path must
    /// decide: another character, a last label that makes it an IPv4 address for
    /// browsers (digits only, or `0x…`), or an `xn--` label (IDNA checks its punycode).
    fn parse_plain_name(s: &str) -> Result<Option<Host>, HostError> {
        let bytes = s.as_bytes();
        let mut lower = [0u8; MAX_HOST_LEN];
        let mut label_start = 0;
        // Whether the label so far is all digits / starts with 0x.
        let mut digits = true;
        let mut too_long = bytes.len() > MAX_HOST_LEN;
        // A bad inner label is reported only once the last label is known
        // not to be numeric: `<64 zeros>.0` is an IPv4 address to the URL
        // parser, so the slow path must judge it.
        let mut bad_label = None;
        for (i, &b) in bytes.iter().enumerate() {
            let l = b.to_ascii_lowercase();
            if l == b'.' {
                let label = &bytes[label_start..i];
                if label.is_empty() {
                    bad_label.get_or_insert(HostError::EmptyLabel);
                } else if label.len() > MAX_LABEL_LEN {
                    bad_label.get_or_insert(HostError::LabelTooLong);
                }
                label_start = i + 1;
                digits = true;
            } else if l.is_ascii_digit() {
            } else if l.is_ascii_lowercase() || l == b'-' || l == b'_' {
                digits = false;
            } else {
                return Ok(None);
            }
            if i == label_start + 3
                && l == b'-'
                && bytes[i - 1] == b'-'
                && matches!(bytes[i - 3..i - 1], [b'x' | b'X', b'n' | b'N'])
            {
                return Ok(None);
            }
            if let Some(slot) = lower.get_mut(i) {
                *slot = l;
            } else {
                too_long = true;
            }
        }
        let last = &bytes[label_start..];
        if last.is_empty() {
            return Err(HostError::EmptyLabel);
        }
        if digits || matches!(last, [b'0', b'x' | b'X', ..]) {
            return Ok(None);
        }
        if let Some(err) = bad_label {
            return Err(err);
        }
        if too_long {
            return Err(HostError::TooLong);
        }
        if last.len() > MAX_LABEL_LEN {
            return Err(HostError::LabelTooLong);
        }
        // Only ASCII letters, digits, '-', '_' and '.' were copied.
        let text = std::str::from_utf8(&lower[..bytes.len()]).map_err(|_| HostError::Empty)?;
        Ok(Some(Host {
            text: text.into(),
            kind: HostKind::Domain,
            carried: None,
        }))
    }

    fn check_name(s: &str) -> Result<(), HostError> {
        if s.is_empty() {
            return Err(HostError::Empty);
        }
        if s.len() > MAX_HOST_LEN {
            return Err(HostError::TooLong);
        }
        for label in s.split('.') {
            if label.is_empty() {
                return Err(HostError::EmptyLabel);
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(HostError::LabelTooLong);
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
            {
                return Err(HostError::InvalidChar(c));
            }
        }
        Ok(())
    }
}

/// Parses a decimal TCP port, 1..=65535.
pub fn parse_port(p: &str) -> Result<u16, HostError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::InvalidPort(p.to_string()));
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(HostError::InvalidPort(p.to_string())),
        Ok(n) => Ok(n),
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Host({})", self.text)
    }
}

impl From<Ipv4Addr> for Host {
    fn from(v4: Ipv4Addr) -> Host {
        Host::from_ip(IpAddr::V4(v4))
    }
}

/// Iterator over the start offsets of a host's suffixes; see [`Host::suffix_starts`].
pub struct SuffixStarts<'a> {
    text: &'a [u8],
    next: Option<usize>,
    whole_only: bool,
}

impl Iterator for SuffixStarts<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        let start = self.next?;
        self.next = if self.whole_only {
            None
        } else {
            memchr_dot(&self.text[start..]).map(|i| start + i + 1)
        };
        Some(start)
    }
}

#[inline]
fn memchr_dot(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Host::parse(s).unwrap().as_str().to_string()
    }

    #[test]
    fn names_are_lowered_and_lose_one_trailing_dot() {
        assert_eq!(norm("WWW.Example.COM"), "www.example.com");
        assert_eq!(norm("example.com."), "example.com");
        assert!(Host::parse("example.com..").is_err());
        assert_eq!(norm("_dmarc.example.com"), "_dmarc.example.com");
    }

    #[test]
    fn idn_becomes_punycode_and_fullwidth_folds() {
        assert_eq!(norm("bücher.de"), "xn--bcher-kva.de");
        assert_eq!(norm("BÜCHER.de"), "xn--bcher-kva.de");
        assert_eq!(norm("xn--bcher-kva.de"), "xn--bcher-kva.de");
        // full-width letters and the ideographic full stop
        assert_eq!(norm("ｃｈａｔｇｐｔ。ｃｏｍ"), "chatgpt.com");
        assert!(
            Host::parse("xn--zz.de").is_err(),
            "invalid punycode is refused"
        );
    }

    #[test]
    fn ipv4_in_every_spelling_is_dotted_decimal() {
        for s in [
            "127.0.0.1",
            "0x7f.1",
            "2130706433",
            "0177.0.0.1",
            "0x7f000001",
            "127.1",
            "127.0.0.1.",
        ] {
            assert_eq!(norm(s), "127.0.0.1", "{s}");
            assert_eq!(
                Host::parse(s).unwrap().ip(),
                Some("127.0.0.1".parse().unwrap())
            );
        }
        assert!(Host::parse("256.1.1.1").is_err());
        assert!(Host::parse("example.0x7f").is_err(), "numeric last label");
    }

    /// The dotted-decimal fast path answers exactly what the URL parser answers.
    #[test]
    fn the_ipv4_fast_path_agrees_with_the_url_parser() {
        for s in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.0.255",
            "255.255.255.255",
            "169.254.169.254",
            "127.000.0.1",
            "01.2.3.4",
            "1.2.3.4.5",
            "1.2.3",
            "1.2.3.256",
            "1..2.3",
            "1.2.3.4x",
            "4294967295",
            "4294967296",
        ] {
            let slow = match url::Host::parse(s) {
                Ok(url::Host::Ipv4(v4)) => Ok((v4.to_string(), Some(IpAddr::V4(v4)))),
                Ok(url::Host::Domain(d)) => Ok((d, None)),
                Ok(other) => Err(format!("not IPv4: {other}")),
                Err(e) => Err(e.to_string()),
            };
            let fast = Host::parse(s).map(|h| (h.as_str().to_string(), h.ip()));
            match (&slow, &fast) {
                (Ok(want), Ok(got)) => assert_eq!(got, want, "{s}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{s}: url says {slow:?}, Host::parse says {fast:?}"),
            }
        }
    }

    #[test]
    fn ipv6_is_canonical_with_or_without_brackets() {
        assert_eq!(norm("[2001:DB8:0:0::1]"), "2001:db8::1");
        assert_eq!(norm("2001:db8:0000::0001"), "2001:db8::1");
        assert_eq!(norm("[::ffff:127.0.0.1]"), "::ffff:127.0.0.1");
        assert!(Host::parse("[2001:db8::zz]").is_err());
    }

    /// Every IPv6 form that carries an IPv4 address keeps its own text (what is connected
    /// to) and is matched as the IPv4 address; the guard's canonicalisation agrees.
    #[test]
    fn ipv6_forms_carrying_ipv4_are_matched_as_it() {
        for s in [
            "[::ffff:192.0.2.7]",
            "::ffff:c000:207",
            "[::ffff:0:192.0.2.7]",
            "[::192.0.2.7]",
            "[64:ff9b::192.0.2.7]",
            "[2002:c000:207::]",
            "[2002:c000:207:1234::9]",
        ] {
            let h = Host::parse(s).unwrap();
            assert_eq!(h.match_str(), "192.0.2.7", "{s}");
            assert_ne!(
                h.as_str(),
                "192.0.2.7",
                "{s}: the address asked for is kept"
            );
            assert!(matches!(h.ip(), Some(IpAddr::V6(_))), "{s}");
            assert_eq!(
                canonical_ip(h.ip().unwrap()),
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
                "{s}"
            );
        }
        // Forms that carry none are matched as themselves.
        for s in [
            "::1",
            "::",
            "2001:db8::1",
            "64:ff9b:1::1",
            "2001::c000:207",
            "fe80::1",
        ] {
            let h = Host::parse(s).unwrap();
            assert_eq!(h.match_str(), h.as_str(), "{s}");
        }
        let v4 = Host::parse("192.0.2.7").unwrap();
        assert_eq!(v4.match_str(), "192.0.2.7");
        let name = Host::parse("Example.COM").unwrap();
        assert_eq!(name.match_str(), "example.com");
    }

    #[test]
    fn authority_ports_are_split_off() {
        let (h, p) = Host::parse_authority("Example.com:8080").unwrap();
        assert_eq!((h.as_str(), p), ("example.com", Some(8080)));
        let (h, p) = Host::parse_authority("[::1]:443").unwrap();
        assert_eq!((h.as_str(), p), ("::1", Some(443)));
        let (h, p) = Host::parse_authority("example.com").unwrap();
        assert_eq!((h.as_str(), p), ("example.com", None));
        assert!(Host::parse_authority("example.com:0").is_err());
        assert!(Host::parse_authority("example.com:99999").is_err());
        assert!(Host::parse_authority("example.com:+80").is_err());
        assert!(Host::parse_authority("user@example.com").is_err());
        assert!(Host::parse_authority("[::1]x").is_err());
        // An IPv6 address with a port must be bracketed (fuzz finding F2).
        assert!(Host::parse_authority("2001:db8::1:80").is_err());
        assert!(Host::parse_authority("::1").is_err());
        let (h, p) = Host::parse_authority("[2001:db8::1]:80").unwrap();
        assert_eq!((h.as_str(), p), ("2001:db8::1", Some(80)));
    }

    #[test]
    fn invalid_names_are_errors_not_misses() {
        for s in [
            "",
            ".",
            "a..b",
            ".example.com",
            "exa mple.com",
            "example.com/x",
            "a*b.com",
            "exa\u{0}mple.com",
        ] {
            assert!(Host::parse(s).is_err(), "{s:?} must be refused");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert_eq!(Host::parse(&long_label), Err(HostError::LabelTooLong));
        let long = format!("{}com", "abcdefghi.".repeat(26));
        assert_eq!(Host::parse(&long), Err(HostError::TooLong));
    }

    #[test]
    fn suffixes_walk_from_the_host_to_its_last_label() {
        let h = Host::parse("a.b.example.com").unwrap();
        let s: Vec<&str> = h.suffix_starts().map(|i| &h.as_str()[i..]).collect();
        assert_eq!(
            s,
            ["a.b.example.com", "b.example.com", "example.com", "com"]
        );
        let ip = Host::parse("10.1.2.3").unwrap();
        assert_eq!(ip.suffix_starts().count(), 1);
    }

    /// The one-pass path for plain names gives what the URL parser gives, or leaves the
    /// name to it; never another answer.
    #[test]
    fn plain_name_fast_path_agrees_with_the_url_parser() {
        let long_label = "a".repeat(64);
        let long_name = format!("{}.com", "abcdefghi.".repeat(25));
        // Fuzz finding F1 (fuzz/regressions/host): an over-long or empty
        // inner label must not be refused before the numeric last label is seen.
        let zeros = "0".repeat(64);
        let zeros_then_zero = format!("{zeros}.0");
        let long_zero_inner = format!("127.{zeros}.1");
        let empty_inner_numeric = "1..2";
        let long_label_then_name = format!("{long_label}.com");
        let cases = [
            zeros_then_zero.as_str(),
            long_zero_inner.as_str(),
            empty_inner_numeric,
            long_label_then_name.as_str(),
            "Example.COM",
            "www.example.com",
            "a-b_c.d1.fr",
            "xn--bcher-kva.example",
            "WWW.XN--BCHER-KVA.example",
            "axn--b.com",
            "x.0x1f",
            "a.b.12",
            "a.b.1a",
            "0x7f.1",
            "a..b",
            ".a",
            "a.",
            "-a.com",
            long_label.as_str(),
            long_name.as_str(),
            "x",
            "1.2.3.4",
            "a.b-.c",
        ];
        for input in cases {
            let fast = Host::parse_plain_name(input);
            let slow = match url::Host::parse(input) {
                Ok(url::Host::Domain(d)) => Host::check_name(&d).map(|()| Some(d)),
                Ok(_) => Ok(None),
                Err(e) => Err(HostError::Invalid(e.to_string())),
            };
            match (fast, slow) {
                (Ok(None), _) => {}
                (Ok(Some(h)), Ok(Some(d))) => assert_eq!(h.as_str(), d, "{input}"),
                (Err(_), Err(_)) => {}
                (f, s) => panic!("{input}: fast {f:?} but URL parser {s:?}"),
            }
        }
        // And the full parser reads them as the addresses a browser would.
        assert_eq!(Host::parse(&long_zero_inner).unwrap().as_str(), "127.0.0.1");
        assert_eq!(Host::parse(&zeros_then_zero).unwrap().as_str(), "0.0.0.0");
        assert!(Host::parse(&long_label_then_name).is_err());
    }
}
