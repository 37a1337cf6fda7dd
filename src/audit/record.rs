//! The fixed-schema access record (§4.8) and its two line encodings.
//!
//! [`Record`] is what the pipeline fills in once per request or tunnel, at the end.
//! [`Format::Json`] writes every field — it is the complete §4.8 trace. [`Format::Squid`]
//! writes Squid's native `access.log` line and nothing more, so that existing analysers
//! (SARG, LightSquid, …) read it unchanged; the charter-specific fields (rule, reason,
//! categories, groups, workstation, bytes sent, error) exist only in the JSON format.
//!
//! Encoding is pure and synchronous: it runs on the writer task, never on the request path.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

use crate::policy::{Inspection, ReasonCode, Verdict};

/// What became of a request or tunnel: the trace's `decision`. The Squid encoding maps
/// it to a result code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Block,
    /// Refused until the client authenticates (407).
    AuthRequired,
    /// Allowed, and failed (the site, its TLS, the client).
    Error,
    /// The line of an inspected tunnel; each request inside has a line of its own.
    Bump,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Block => "block",
            Outcome::AuthRequired => "auth-required",
            Outcome::Error => "error",
            Outcome::Bump => "bump",
        }
    }
}

impl From<Verdict> for Outcome {
    fn from(v: Verdict) -> Outcome {
        match v {
            Verdict::Allow => Outcome::Allow,
            Verdict::Block => Outcome::Block,
        }
    }
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// How a request reached the proxy: the trace's `scheme`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    /// A request seen inside an inspected (bumped) TLS tunnel.
    Https,
    /// A CONNECT: relayed as opaque bytes, or the line of an inspected tunnel.
    Tunnel,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Tunnel => "tunnel",
        }
    }
}

impl Serialize for Scheme {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One access, fixed schema: one per request, or one per tunnel relayed as bytes.
///
/// JSON field names are the field names, except `duration`, written `duration_ms`.
/// `time` is RFC 3339 UTC with milliseconds, addresses are strings, `None` is `null`:
/// every key is present in every line, so consumers never guess.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// When the request or tunnel started (not when it was logged).
    #[serde(serialize_with = "ser::rfc3339_millis")]
    pub time: SystemTime,
    #[serde(serialize_with = "ser::ip")]
    pub client: IpAddr,
    /// Reverse-DNS name of the client, when known (the charter's "poste de travail").
    #[serde(serialize_with = "ser::opt_str")]
    pub workstation: Option<Arc<str>>,
    /// Authenticated user.
    #[serde(serialize_with = "ser::opt_str")]
    pub user: Option<Arc<str>>,
    #[serde(serialize_with = "ser::strs")]
    pub groups: Vec<Arc<str>>,
    /// "GET", "CONNECT", …
    #[serde(serialize_with = "ser::str")]
    pub method: Arc<str>,
    /// "http", "https" (inside an inspected tunnel) or "tunnel".
    pub scheme: Scheme,
    #[serde(serialize_with = "ser::str")]
    pub host: Arc<str>,
    pub port: u16,
    /// Path and query, only where visible; `None` for CONNECT and never-inspected sites.
    #[serde(serialize_with = "ser::opt_str")]
    pub path: Option<Arc<str>>,
    #[serde(serialize_with = "ser::strs")]
    pub categories: Vec<Arc<str>>,
    /// "allow" | "block" | "auth-required" | "error" | "bump" (an inspected tunnel's line).
    pub decision: Outcome,
    /// Deciding rule id; `None` = policy default, or not a policy decision.
    #[serde(serialize_with = "ser::opt_str")]
    pub rule: Option<Arc<str>>,
    /// Stable code, e.g. "block-rule", "allow-default", "block-port", "upstream-connect";
    /// `""` in the rare record that ended before anything was decided.
    #[serde(serialize_with = "ser::opt_code")]
    pub reason_code: Option<ReasonCode>,
    /// The reason text (French) for blocks; `None` for plain allows.
    #[serde(serialize_with = "ser::opt_str")]
    pub reason: Option<Arc<str>>,
    /// A report-mode rule that would have blocked (habit 14).
    #[serde(serialize_with = "ser::opt_str")]
    pub would_block: Option<Arc<str>>,
    /// "inspect" | "tunnel".
    #[serde(serialize_with = "ser::inspection")]
    pub inspection: Inspection,
    /// HTTP status sent to the client (200 for an established CONNECT).
    pub status: u16,
    /// Bytes from the client towards the site (request body / tunnel upstream).
    pub bytes_sent: u64,
    /// Bytes from the site towards the client (response body / tunnel downstream).
    pub bytes_received: u64,
    #[serde(rename = "duration_ms", serialize_with = "ser::millis")]
    pub duration: Duration,
    /// Address actually connected to.
    #[serde(serialize_with = "ser::opt_socket")]
    pub upstream: Option<SocketAddr>,
    /// Error text, if any.
    #[serde(serialize_with = "ser::opt_str")]
    pub error: Option<Arc<str>>,
    /// The client's `User-Agent` (§4.8 "applications utilisées"), cut at
    /// [`USER_AGENT_MAX`] bytes; `None` when it sent none.
    #[serde(serialize_with = "ser::opt_str")]
    pub user_agent: Option<Arc<str>>,
    /// The answer's `Content-Type`: the site's, or the proxy's own page's (`text/html`
    /// for a block page); `None` for a tunnel and an answer without one.
    #[serde(serialize_with = "ser::opt_str")]
    pub content_type: Option<Arc<str>>,
    /// For a 407: the user name the refused credentials gave (Basic), never the
    /// password; `None` otherwise, and for a refused Kerberos token (its name is not
    /// readable without accepting it).
    #[serde(serialize_with = "ser::opt_str")]
    pub user_tried: Option<Arc<str>>,
    /// What the content checks found that decided: the dictionaries and identifiers of
    /// an upload with their counts (`nir:2 confidentiel:1`), or the kind of a download
    /// and the clue that showed it (`executable(magic)`). Never the text found.
    #[serde(serialize_with = "ser::opt_str")]
    pub found: Option<Arc<str>>,
}

/// Longest `User-Agent` kept in a record, in bytes (cut at a character boundary).
pub const USER_AGENT_MAX: usize = 512;

/// The JSON record's keys, in the order every line writes them (the CSV columns of
/// `trace search`).
pub const FIELDS: [&str; 27] = [
    "time",
    "client",
    "workstation",
    "user",
    "groups",
    "method",
    "scheme",
    "host",
    "port",
    "path",
    "categories",
    "decision",
    "rule",
    "reason_code",
    "reason",
    "would_block",
    "inspection",
    "status",
    "bytes_sent",
    "bytes_received",
    "duration_ms",
    "upstream",
    "error",
    "user_agent",
    "content_type",
    "user_tried",
    "found",
];

/// How records are written, one line each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line: the complete §4.8 record.
    Json,
    /// Squid's native `access.log` line, for existing analysers; Squid's fields only.
    Squid,
}

/// `--audit-format` got something else than `json` or `squid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit format {0:?}: expected \"json\" or \"squid\"")]
pub struct UnknownFormat(pub String);

impl std::str::FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Format::Json),
            "squid" => Ok(Format::Squid),
            other => Err(UnknownFormat(other.to_owned())),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Json => "json",
            Format::Squid => "squid",
        })
    }
}

impl Format {
    /// Appends `r` as one line, `\n` included, to `out`. On error `out` is left as it was.
    ///
    /// Only JSON can fail, and only for a `time` outside years 0 to 9999.
    pub fn write_line(self, r: &Record, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        match self {
            Format::Json => {
                // Control characters are escaped, so no field can split the line.
                json::write(r, out)?;
                out.push(b'\n');
            }
            Format::Squid => {
                let mut line = String::with_capacity(160);
                write_squid(r, &mut line);
                line.push('\n');
                out.extend_from_slice(line.as_bytes());
            }
        }
        Ok(())
    }
}

impl Record {
    /// The JSON line, without its `\n`.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let mut out = Vec::with_capacity(512);
        json::write(self, &mut out)?;
        // Only UTF-8 goes in: the strings are `str`, the rest is ASCII.
        String::from_utf8(out).map_err(serde::ser::Error::custom)
    }

    /// The Squid native line, without its `\n`.
    pub fn to_squid(&self) -> String {
        let mut line = String::with_capacity(160);
        write_squid(self, &mut line);
        line
    }

    /// Squid's result code (`%Ss`). Errors are `NONE_NONE`, as Squid 5 and later log a
    /// transaction that got no usable answer from the site (e.g. connect failure);
    /// an inspected tunnel's line too (its requests have lines of their own).
    pub fn squid_result(&self) -> &'static str {
        match self.decision {
            Outcome::Block | Outcome::AuthRequired => "TCP_DENIED",
            Outcome::Allow if self.is_connect() => "TCP_TUNNEL",
            Outcome::Allow => "TCP_MISS",
            Outcome::Error | Outcome::Bump => "NONE_NONE",
        }
    }

    /// Squid's `%<st`: the bytes sent to the client. An inspected tunnel's line counts
    /// none, as Squid logs a bumped CONNECT: its requests' lines count their own bytes,
    /// and an analyser that sums the lines would count them twice otherwise.
    pub fn squid_bytes(&self) -> u64 {
        if self.decision == Outcome::Bump {
            0
        } else {
            self.bytes_received
        }
    }

    fn is_connect(&self) -> bool {
        self.method.eq_ignore_ascii_case("CONNECT") || self.scheme == Scheme::Tunnel
    }

    /// The reason code's text, `""` when there is none.
    pub fn code(&self) -> &'static str {
        self.reason_code.map_or("", ReasonCode::as_str)
    }
}

/// `%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt`, Squid's `squid` logformat.
/// A field that has no value is `-`, as Squid writes it, so every line has ten fields.
fn write_squid(r: &Record, out: &mut String) {
    // A time before 1970 cannot be written as Squid's unsigned seconds: clamp to 0.
    let since = r
        .time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let elapsed = r.duration.as_millis();
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "{}.{:03} {:>6} {} {}/{:03} {} ",
        since.as_secs(),
        since.subsec_millis(),
        elapsed,
        r.client,
        r.squid_result(),
        r.status,
        r.squid_bytes(),
    );
    push_escaped(out, &r.method, false);
    out.push(' ');
    write_squid_url(r, out);
    out.push(' ');
    match r.user.as_deref() {
        Some(u) if !u.is_empty() => push_escaped(out, u, true),
        _ => out.push('-'),
    }
    match r.upstream {
        Some(a) => {
            let _ = write!(out, " HIER_DIRECT/{}", a.ip());
        }
        None => out.push_str(" HIER_NONE/-"),
    }
    out.push(' ');
    match r.content_type.as_deref() {
        Some(t) if !t.is_empty() => push_escaped(out, t, false),
        _ => out.push('-'),
    }
}

/// `%ru`: `host:port` for a CONNECT; `scheme://host[:port]path` otherwise, the port left out
/// when it is the scheme's default; `scheme://host:port` when the path was never seen.
fn write_squid_url(r: &Record, out: &mut String) {
    if r.is_connect() {
        push_host(out, &r.host);
        let _ = write!(out, ":{}", r.port);
        return;
    }
    out.push_str(r.scheme.as_str());
    out.push_str("://");
    push_host(out, &r.host);
    let Some(path) = r.path.as_deref() else {
        let _ = write!(out, ":{}", r.port);
        return;
    };
    let default_port = match r.scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
        Scheme::Tunnel => 0,
    };
    if r.port != default_port {
        let _ = write!(out, ":{}", r.port);
    }
    if !path.starts_with('/') {
        out.push('/');
    }
    // Already percent-encoded on the wire: keep '%' as is.
    push_escaped(out, path, false);
}

/// An IPv6 literal gets its brackets back so `host:port` stays readable.
fn push_host(out: &mut String, host: &str) {
    if host.contains(':') && !host.starts_with('[') {
        out.push('[');
        push_escaped(out, host, false);
        out.push(']');
    } else {
        push_escaped(out, host, false);
    }
}

/// Squid's fields are separated by spaces: percent-encode spaces, control characters and
/// non-ASCII bytes (as Squid's own RFC 1738 escaping does), and '%' itself when asked
/// (user names, which are not already encoded).
fn push_escaped(out: &mut String, s: &str, escape_percent: bool) {
    let unsafe_byte = |b: u8| b <= b' ' || b >= 0x7f || (escape_percent && b == b'%');
    if !s.bytes().any(unsafe_byte) {
        out.push_str(s);
        return;
    }
    for b in s.bytes() {
        if unsafe_byte(b) {
            let _ = write!(out, "%{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
}

/// Serde helpers: `Arc<str>` without serde's `rc` feature, and the time and duration shapes.
pub(crate) mod ser {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use serde::Serializer;
    use serde::ser::{Error as _, SerializeSeq as _};
    use time::OffsetDateTime;

    pub(super) fn opt_code<S: Serializer>(
        c: &Option<crate::policy::ReasonCode>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.map_or("", crate::policy::ReasonCode::as_str))
    }

    pub(super) fn inspection<S: Serializer>(
        i: &crate::policy::Inspection,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(i.as_str())
    }

    pub(super) fn rfc3339_millis<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let b = rfc3339_bytes(*t).map_err(S::Error::custom)?;
        s.serialize_str(std::str::from_utf8(&b).map_err(S::Error::custom)?)
    }

    /// `t` as RFC 3339 UTC with milliseconds (`2025-03-04T05:06:07.089Z`); an error for
    /// a year outside 0 to 9999.
    pub(crate) fn rfc3339_bytes(t: SystemTime) -> Result<[u8; 24], String> {
        // Through nanoseconds, not `From<SystemTime>`, which panics out of range.
        let nanos = match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        };
        let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|e| e.to_string())?;
        let year = t.year();
        if !(0..=9999).contains(&year) {
            return Err(format!("year {year} out of range"));
        }
        // Digits written by hand into a stack buffer (`core::fmt`'s padding is most of
        // the encoder's time otherwise): one record a request, no allocation.
        let mut b = *b"0000-00-00T00:00:00.000Z";
        digits(&mut b[0..4], year as u32);
        digits(&mut b[5..7], u8::from(t.month()).into());
        digits(&mut b[8..10], t.day().into());
        digits(&mut b[11..13], t.hour().into());
        digits(&mut b[14..16], t.minute().into());
        digits(&mut b[17..19], t.second().into());
        digits(&mut b[20..23], t.millisecond().into());
        Ok(b)
    }

    /// `v`'s last `out.len()` decimal digits, zero-padded, into `out`.
    fn digits(out: &mut [u8], mut v: u32) {
        for d in out.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }

    /// `v` in decimal, unpadded, at the start of `out`. Returns the length used.
    pub(super) fn decimal(out: &mut [u8], v: u32) -> usize {
        let width = v.checked_ilog10().map_or(1, |l| l as usize + 1);
        digits(&mut out[..width], v);
        width
    }

    /// `a.b.c.d`, written without `core::fmt`. Returns the length used in `buf`.
    pub(super) fn ipv4(buf: &mut [u8], ip: Ipv4Addr) -> usize {
        let mut n = 0;
        for (i, o) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                buf[n] = b'.';
                n += 1;
            }
            n += decimal(&mut buf[n..], o.into());
        }
        n
    }

    pub(super) fn ip<S: Serializer>(v: &IpAddr, s: S) -> Result<S::Ok, S::Error> {
        match v {
            IpAddr::V4(a) => {
                let mut buf = [0u8; 15];
                let n = ipv4(&mut buf, *a);
                s.serialize_str(std::str::from_utf8(&buf[..n]).map_err(S::Error::custom)?)
            }
            IpAddr::V6(_) => s.collect_str(v),
        }
    }

    pub(super) fn opt_socket<S: Serializer>(
        v: &Option<SocketAddr>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(SocketAddr::V4(a)) => {
                let mut buf = [0u8; 21];
                let mut n = ipv4(&mut buf, *a.ip());
                buf[n] = b':';
                n += 1;
                n += decimal(&mut buf[n..], a.port().into());
                s.serialize_str(std::str::from_utf8(&buf[..n]).map_err(S::Error::custom)?)
            }
            Some(a) => s.collect_str(a),
            None => s.serialize_none(),
        }
    }

    pub(super) fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_nanos() as f64 / 1e6)
    }

    pub(super) fn str<S: Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }

    pub(super) fn opt_str<S: Serializer>(v: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(v),
            None => s.serialize_none(),
        }
    }

    pub(super) fn strs<S: Serializer>(v: &[Arc<str>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for item in v {
            seq.serialize_element(&**item)?;
        }
        seq.end()
    }
}

/// The JSON line written by hand, field by field, in the order and shape of the
/// `Serialize` derive above (which stays the schema's definition, and the reference the
/// tests compare against byte for byte). serde_json spends most of a record escaping
/// the fixed key names and short ASCII values one byte at a time; here the keys are
/// constants and a value is copied whole unless it holds a byte that needs escaping
/// (the measurement is in DESIGN.md, "The trace line by hand").
mod json {
    use std::net::{IpAddr, SocketAddr};
    use std::sync::Arc;

    use serde::ser::Error as _;

    use super::{Record, ser};

    /// Appends `r` (without `\n`) to `out`. On error (a time outside years 0 to 9999)
    /// `out` is left as it was.
    pub(super) fn write(r: &Record, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        let time = ser::rfc3339_bytes(r.time).map_err(serde_json::Error::custom)?;
        out.extend_from_slice(b"{\"time\":\"");
        out.extend_from_slice(&time);
        out.extend_from_slice(b"\",\"client\":");
        ip(out, r.client);
        out.extend_from_slice(b",\"workstation\":");
        opt_str(out, r.workstation.as_deref());
        out.extend_from_slice(b",\"user\":");
        opt_str(out, r.user.as_deref());
        out.extend_from_slice(b",\"groups\":");
        strs(out, &r.groups);
        out.extend_from_slice(b",\"method\":");
        str(out, &r.method);
        out.extend_from_slice(b",\"scheme\":");
        str(out, r.scheme.as_str());
        out.extend_from_slice(b",\"host\":");
        str(out, &r.host);
        out.extend_from_slice(b",\"port\":");
        number(out, r.port);
        out.extend_from_slice(b",\"path\":");
        opt_str(out, r.path.as_deref());
        out.extend_from_slice(b",\"categories\":");
        strs(out, &r.categories);
        out.extend_from_slice(b",\"decision\":");
        str(out, r.decision.as_str());
        out.extend_from_slice(b",\"rule\":");
        opt_str(out, r.rule.as_deref());
        out.extend_from_slice(b",\"reason_code\":");
        str(out, r.code());
        out.extend_from_slice(b",\"reason\":");
        opt_str(out, r.reason.as_deref());
        out.extend_from_slice(b",\"would_block\":");
        opt_str(out, r.would_block.as_deref());
        out.extend_from_slice(b",\"inspection\":");
        str(out, r.inspection.as_str());
        out.extend_from_slice(b",\"status\":");
        number(out, r.status);
        out.extend_from_slice(b",\"bytes_sent\":");
        number(out, r.bytes_sent);
        out.extend_from_slice(b",\"bytes_received\":");
        number(out, r.bytes_received);
        out.extend_from_slice(b",\"duration_ms\":");
        number(out, r.duration.as_nanos() as f64 / 1e6);
        out.extend_from_slice(b",\"upstream\":");
        match r.upstream {
            Some(SocketAddr::V4(a)) => {
                let mut buf = [0u8; 21];
                let mut n = ser::ipv4(&mut buf, *a.ip());
                buf[n] = b':';
                n += 1;
                n += ser::decimal(&mut buf[n..], a.port().into());
                quoted_ascii(out, &buf[..n]);
            }
            Some(a) => display(out, a),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"error\":");
        opt_str(out, r.error.as_deref());
        out.extend_from_slice(b",\"user_agent\":");
        opt_str(out, r.user_agent.as_deref());
        out.extend_from_slice(b",\"content_type\":");
        opt_str(out, r.content_type.as_deref());
        out.extend_from_slice(b",\"user_tried\":");
        opt_str(out, r.user_tried.as_deref());
        out.extend_from_slice(b",\"found\":");
        opt_str(out, r.found.as_deref());
        out.push(b'}');
        Ok(())
    }

    /// A JSON string, escaped exactly as serde_json escapes it.
    fn str(out: &mut Vec<u8>, s: &str) {
        // Nothing to escape (the usual case: names, paths, codes): copied whole. serde_json
        // escapes `"`, `\\` and the control characters below 0x20, nothing else.
        if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            out.reserve(s.len() + 2);
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        } else {
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, s);
        }
    }

    /// Bytes known to need no escaping (digits, dots, colons).
    fn quoted_ascii(out: &mut Vec<u8>, b: &[u8]) {
        out.push(b'"');
        out.extend_from_slice(b);
        out.push(b'"');
    }

    fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            Some(s) => str(out, s),
            None => out.extend_from_slice(b"null"),
        }
    }

    fn strs(out: &mut Vec<u8>, v: &[Arc<str>]) {
        out.push(b'[');
        for (i, s) in v.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            str(out, s);
        }
        out.push(b']');
    }

    fn ip(out: &mut Vec<u8>, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => {
                let mut buf = [0u8; 15];
                let n = ser::ipv4(&mut buf, a);
                quoted_ascii(out, &buf[..n]);
            }
            IpAddr::V6(_) => display(out, ip),
        }
    }

    /// A `Display` value as a JSON string (IPv6 addresses: hex digits, colons, dots,
    /// brackets; nothing to escape).
    fn display(out: &mut Vec<u8>, v: impl std::fmt::Display) {
        use std::io::Write as _;
        out.push(b'"');
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{v}");
        out.push(b'"');
    }

    /// A number, through serde_json itself (integers in decimal; an `f64` as the
    /// shortest text that reads back the same, `null` when not finite): the same digits
    /// as the derive, whatever the float formatter serde_json uses.
    fn number(out: &mut Vec<u8>, v: impl serde::Serialize) {
        // Writing into a Vec cannot fail, and numbers have no other error.
        let _ = serde_json::to_writer(&mut *out, &v);
    }
}
