//! One canonical form of a request's path and query, for matching URL rules.
//!
//! A `urls` entry must catch every spelling of the same resource, so both the entries
//! (at load) and each request's path (on the hot path) go through [`normalize_into`], and
//! only the results are compared. `explain` reaches the same function through the same
//! [`super::UrlIndex`], so the two never disagree.
//!
//! The path (RFC 3986 §6.2.2, and what common servers do besides):
//!
//! - a percent-escape of an unreserved character (`A-Z a-z 0-9 - . _ ~`) is that
//!   character (`/%63asino` is `/casino`, `%2e` is a dot);
//! - an escaped slash (`%2F`) and a backslash, raw or escaped (`\`, `%5C`), are path
//!   separators: nginx decodes `%2F` before routing and IIS takes `\` as `/`, so the
//!   filter reads them as the server that reads most into them would;
//! - segment parameters are dropped: `;` up to the next raw separator (`/a;x=1/b` is
//!   `/a/b`), as Tomcat, Jetty and Spring route (`/x/..;/casino` reaches `/casino` there);
//! - empty segments are dropped (`//a///b` is `/a/b`), then dot segments are removed
//!   (RFC 3986 §5.2.4: `/./`, `/x/../`, also when written `%2e%2E`);
//! - every other escape stays an escape; bytes that a URI cannot carry raw (non-ASCII,
//!   controls, space, `"<>\^``{|}`) and a `%` that starts no escape are escaped, so that
//!   `/été` and `/%C3%A9t%C3%A9` are one path;
//! - everything is lower-cased (URL rules have always been case-insensitive here, as in
//!   squidGuard), which also makes the case of escapes irrelevant.
//!
//! The query (after the first `?`) keeps its structure: only unreserved escapes are
//! decoded, raw bytes escaped and the case folded. A fragment (`#…`) is never part of it.
//!
//! The form errs toward matching: a spelling that some server reads as a listed path
//! is caught, at the cost of catching a few spellings that another server would read as
//! a different one. Since the canonical form reads the most into a path, a server that
//! reads less could still find a listed path where the canonical form removed it
//! (`/listed//..` is `/` here, `/listed/` for a server that does not merge slashes); so
//! a path whose readings can differ is also matched as RFC 3986 alone reads it and as
//! written ([`Reading`]), and any reading that carries a listed path decides.
//!
//! What reaches the site is the path as the client sent it, never this form: rewriting
//! it would break sites that sign their URLs or give `%2F` and `;` a meaning of their
//! own, and the decision already covers every reading above.
//!
//! Pure and allocation-free once `out` has grown: the hot path reuses one buffer.

/// How a server may read a path. [`Reading::Canonical`] is the form described above,
/// the one that reads the most into a path; the other two read less, so that a listed
/// path cannot hide behind a reading that the canonical form does not make (a server
/// that does not merge slashes reads `/a/b//..` as `/a/b/`, one that resolves nothing
/// reads `/a/b/../c` as a path under `/a/b`). URL rules match a request when any reading
/// carries a listed path; the entries themselves are kept in the canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// Everything above: separators, parameters, merged slashes, dot segments.
    Canonical,
    /// RFC 3986 alone: unreserved escapes decoded, dot segments removed (§5.2.4), empty
    /// segments, parameters, `%2F` and backslashes kept as they are.
    Rfc,
    /// As written: unreserved escapes decoded and the case folded, nothing removed.
    Literal,
}

impl Reading {
    pub const ALL: [Reading; 3] = [Reading::Canonical, Reading::Rfc, Reading::Literal];

    /// `\`, `%2F` and `%5C` separate segments.
    fn wide_separators(self) -> bool {
        self == Reading::Canonical
    }

    /// `;parameters` are dropped and empty segments merged.
    fn server_habits(self) -> bool {
        self == Reading::Canonical
    }

    fn removes_dots(self) -> bool {
        self != Reading::Literal
    }
}

/// Writes the canonical form of `raw` (a request target's path and query, or a URL
/// entry's path) into `out`, which is cleared first. The result starts with `/`.
pub fn normalize_into(raw: &str, out: &mut String) {
    out.clear();
    append_reading(raw, Reading::Canonical, out);
}

/// The canonical form as a new string (cold path: entries at load, tests).
pub fn normalize(raw: &str) -> String {
    let mut s = String::with_capacity(raw.len() + 1);
    normalize_into(raw, &mut s);
    s
}

/// Appends `raw` as `reading` reads it to `out` (which may already hold other forms:
/// nothing before the length it had is touched).
pub fn append_reading(raw: &str, reading: Reading, out: &mut String) {
    let raw = raw.as_bytes();
    let raw = match raw.iter().position(|&b| b == b'#') {
        Some(i) => &raw[..i],
        None => raw,
    };
    let (path, query) = match raw.iter().position(|&b| b == b'?') {
        Some(i) => (&raw[..i], Some(&raw[i + 1..])),
        None => (raw, None),
    };
    normalize_path(path, reading, out);
    if let Some(q) = query {
        out.push('?');
        normalize_query(q, out);
    }
}

/// Whether the readings of `raw` can differ at all: only an escape, a backslash, a
/// parameter, a doubled slash or a dot segment makes them. Most paths have none, and
/// are read once.
pub fn readings_may_differ(raw: &str) -> bool {
    let path = raw.split(['?', '#']).next().unwrap_or("").as_bytes();
    path.first() == Some(&b'.')
        || path.iter().any(|&b| matches!(b, b'%' | b'\\' | b';'))
        || path
            .windows(2)
            .any(|w| w[0] == b'/' && (w[1] == b'/' || w[1] == b'.'))
}

/// One unit of a path after decoding.
enum Unit {
    /// A path separator: `/`, and in the canonical reading `\`, `%2F`, `%5C`.
    Sep,
    /// A character that stands for itself (already lower-cased).
    Char(u8),
    /// A byte that stays (or becomes) a percent-escape.
    Escaped(u8),
}

/// Reads the unit at `raw[i..]`; returns it and its length in bytes.
#[inline]
fn unit(raw: &[u8], i: usize, wide: bool) -> (Unit, usize) {
    let b = raw[i];
    if b == b'%'
        && let (Some(h), Some(l)) = (
            raw.get(i + 1).and_then(|&c| hex(c)),
            raw.get(i + 2).and_then(|&c| hex(c)),
        )
    {
        let v = h << 4 | l;
        let u = if wide && (v == b'/' || v == b'\\') {
            Unit::Sep
        } else if is_unreserved(v) {
            Unit::Char(v.to_ascii_lowercase())
        } else {
            Unit::Escaped(v)
        };
        return (u, 3);
    }
    let u = match b {
        b'/' => Unit::Sep,
        b'\\' if wide => Unit::Sep,
        // A `%` that starts no escape is a percent sign.
        b'%' => Unit::Escaped(b'%'),
        _ if is_raw_ok(b) || (b == b';' && !wide) => Unit::Char(b.to_ascii_lowercase()),
        _ => Unit::Escaped(b),
    };
    (u, 1)
}

fn normalize_path(path: &[u8], reading: Reading, out: &mut String) {
    let wide = reading.wide_separators();
    let habits = reading.server_habits();
    let dots = reading.removes_dots();
    out.push('/');
    // Where this form starts: its leading `/` is never removed.
    let root = out.len();
    // Where the segment being written starts in `out` (just after its `/`).
    let mut seg_start = root;
    // Inside `;parameters`, skipped up to the next raw separator.
    let mut in_params = false;
    // The `/` pushed above stands for the path's own first one.
    let mut i = usize::from(path.first() == Some(&b'/'));
    while i < path.len() {
        let b = path[i];
        if in_params && b != b'/' && b != b'\\' {
            i += 1;
            continue;
        }
        in_params = false;
        if is_raw_ok(b) {
            // A run of characters that stand for themselves (most of any path), copied
            // at once; dots too, since a dot segment is judged whole at its end.
            let run = path[i..]
                .iter()
                .position(|&c| !is_raw_ok(c))
                .map_or(path.len(), |n| i + n);
            push_lowered(out, &path[i..run]);
            i = run;
            continue;
        }
        if habits && b == b';' {
            in_params = true;
            i += 1;
            continue;
        }
        let (u, n) = unit(path, i, wide);
        i += n;
        match u {
            Unit::Sep => {
                let removed = dots && end_segment(out, root, seg_start);
                // A segment is kept with its `/`; an empty one only where slashes are
                // not merged; a removed dot segment leaves `out` ending with `/`.
                if !removed && (out.len() > seg_start || !habits) {
                    out.push('/');
                }
                seg_start = out.len();
            }
            Unit::Char(c) => out.push(c as char),
            Unit::Escaped(v) => push_escape(out, v),
        }
    }
    if dots {
        end_segment(out, root, seg_start);
    }
}

/// Removes the segment that starts at `seg_start` if it is `.` or `..` (and, for `..`,
/// the segment before it, never the form's leading `/` before `root`), leaving `out`
/// ending with `/`. Returns whether it was a dot segment.
#[inline]
fn end_segment(out: &mut String, root: usize, seg_start: usize) -> bool {
    match &out.as_bytes()[seg_start..] {
        b"." => out.truncate(seg_start),
        b".." => {
            out.truncate(seg_start);
            if seg_start > root {
                // `out` ends with the `/` of the previous segment: drop that segment.
                let prev = out.as_bytes()[root..seg_start - 1]
                    .iter()
                    .rposition(|&b| b == b'/')
                    .map_or(root, |p| root + p + 1);
                out.truncate(prev);
            }
        }
        _ => return false,
    }
    true
}

fn normalize_query(q: &[u8], out: &mut String) {
    let mut i = 0;
    while i < q.len() {
        let b = q[i];
        if is_raw_ok(b) || b == b'/' || b == b'?' || b == b';' {
            // Data kept as written, a run at a time.
            let run = q[i..]
                .iter()
                .position(|&c| !(is_raw_ok(c) || c == b'/' || c == b'?' || c == b';'))
                .map_or(q.len(), |n| i + n);
            push_lowered(out, &q[i..run]);
            i = run;
            continue;
        }
        if b == b'%'
            && let (Some(h), Some(l)) = (
                q.get(i + 1).and_then(|&c| hex(c)),
                q.get(i + 2).and_then(|&c| hex(c)),
            )
        {
            let v = h << 4 | l;
            if is_unreserved(v) {
                out.push(v.to_ascii_lowercase() as char);
            } else {
                push_escape(out, v);
            }
            i += 3;
            continue;
        }
        if b != b'%' && (is_raw_ok(b) || b == b'/' || b == b'?' || b == b';' || b == b'\\') {
            // In a query these are data, kept as written (a backslash is escaped below
            // only because a URI cannot carry it raw).
            if b == b'\\' {
                push_escape(out, b);
            } else {
                out.push(b.to_ascii_lowercase() as char);
            }
        } else {
            push_escape(out, b);
        }
        i += 1;
    }
}

/// Appends ASCII bytes, lower-cased.
#[inline]
fn push_lowered(out: &mut String, ascii: &[u8]) {
    let start = out.len();
    // Only ASCII bytes reach here (is_raw_ok and the query's data characters).
    out.push_str(std::str::from_utf8(ascii).unwrap_or_default());
    out[start..].make_ascii_lowercase();
}

#[inline]
fn push_escape(out: &mut String, v: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('%');
    out.push(HEX[(v >> 4) as usize] as char);
    out.push(HEX[(v & 15) as usize] as char);
}

#[inline]
fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 unreserved characters.
#[inline]
const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters a path segment carries raw: unreserved, sub-delims, `:` and `@`
/// (RFC 3986 `pchar`), besides `/`, `;`, `%` and `\` which the caller handles.
#[inline]
fn is_raw_ok(b: u8) -> bool {
    RAW_OK[b as usize]
}

/// [`is_raw_ok`] as a table: it is asked of every byte of every path.
static RAW_OK: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = is_unreserved(c)
            || matches!(
                c,
                b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
            );
        b += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spelling in a row has the canonical form given first.
    #[test]
    fn spellings_of_one_path_have_one_form() {
        let rows: &[(&str, &[&str])] = &[
            (
                "/casino/jeu",
                &[
                    "/casino/jeu",
                    "/CASINO/Jeu",
                    "/%63asino/jeu",
                    "/%63%61%73%69%6E%6f/jeu",
                    "/./casino/jeu",
                    "/casino/./jeu",
                    "/x/../casino/jeu",
                    "/x/y/../../casino/jeu",
                    "/../casino/jeu",
                    "/../../casino/./jeu",
                    "/x/%2e%2e/casino/jeu",
                    "/x/.%2E/casino/jeu",
                    "/%2e/casino/jeu",
                    "//casino//jeu",
                    "///casino/jeu",
                    "/casino%2fjeu",
                    "/casino%2Fjeu",
                    "\\casino\\jeu",
                    "/casino%5cjeu",
                    "/casino;jsessionid=1/jeu",
                    "/x/..;/casino/jeu",
                    "/x;a=b/..;c/casino/jeu",
                    "casino/jeu",
                    "/casino/jeu#fragment",
                ],
            ),
            (
                "/",
                &["", "/", "//", "/.", "/..", "/x/..", "/./", "/%2e%2e/"],
            ),
            ("/a/", &["/a/", "/a/b/..", "/a/b/../", "/a/.", "/a//"]),
            (
                "/%c3%a9t%c3%a9",
                &["/été", "/%C3%A9t%C3%A9", "/%c3%a9T%C3%a9"],
            ),
            ("/a%20b", &["/a b", "/a%20b", "/A%20B"]),
            ("/100%25", &["/100%", "/100%25"]),
            ("/a%3bb", &["/a%3Bb", "/a%3bb"]),
            ("/a%3fb?q", &["/a%3Fb?q", "/A%3fB?Q"]),
            ("/%00", &["/%00"]),
            ("/*", &["*"]),
            (
                "/watch?v=abc&x=/../y",
                &[
                    "/watch?v=abc&x=/../y",
                    "/watch?v=%61bc&x=/../y",
                    "/./WATCH?V=ABC&X=/../Y",
                ],
            ),
            ("/?a%2fb", &["?a%2Fb", "/?a%2fb"]),
        ];
        for (want, spellings) in rows {
            for s in *spellings {
                assert_eq!(normalize(s), *want, "{s:?}");
            }
        }
    }

    #[test]
    fn the_form_is_a_fixed_point() {
        for s in [
            "/a/b",
            "/x/../casino",
            "/%2e%2e/a",
            "/été?q=%C3%A9",
            "/a;b/c",
            "\\a\\..\\b",
            "/a%2F..%2Fb",
            "/%25%32%65",
            "/%%2e",
        ] {
            let once = normalize(s);
            assert_eq!(normalize(&once), once, "{s:?}");
        }
    }

    /// Escapes are decoded once only: `%252e` is the text `%2e`, not a dot.
    #[test]
    fn escapes_are_decoded_once() {
        assert_eq!(normalize("/a/%252e%252e/b"), "/a/%252e%252e/b");
        assert_eq!(normalize("/%%2e"), "/%25.");
    }

    /// The readings that read less than the canonical form, for a server that does not
    /// merge slashes, strip parameters or decode separators, or resolves nothing.
    #[test]
    fn the_other_readings_read_less() {
        let rows: &[(&str, &str, &str, &str)] = &[
            // raw, canonical, RFC, literal
            ("/a/b", "/a/b", "/a/b", "/a/b"),
            ("a/b", "/a/b", "/a/b", "/a/b"),
            ("/a/b//..", "/a/", "/a/b/", "/a/b//.."),
            ("/a/b/../c", "/a/c", "/a/c", "/a/b/../c"),
            ("/a/b/..;/", "/a/", "/a/b/..;/", "/a/b/..;/"),
            ("/a/b%2F..", "/a/", "/a/b%2f..", "/a/b%2f.."),
            ("/a/b\\..", "/a/", "/a/b%5c..", "/a/b%5c.."),
            ("/A/%62/%2E%2e/C", "/a/c", "/a/c", "/a/b/../c"),
            ("//a", "/a", "//a", "//a"),
            ("/..", "/", "/", "/.."),
            ("./a", "/a", "/a", "/./a"),
            ("/a;x/b?Q=%41", "/a/b?q=a", "/a;x/b?q=a", "/a;x/b?q=a"),
        ];
        for (raw, canonical, rfc, literal) in rows {
            for (reading, want) in [
                (Reading::Canonical, canonical),
                (Reading::Rfc, rfc),
                (Reading::Literal, literal),
            ] {
                let mut out = String::from("kept");
                append_reading(raw, reading, &mut out);
                assert_eq!(&out[4..], *want, "{raw:?} {reading:?}");
                assert_eq!(&out[..4], "kept", "{raw:?} {reading:?}");
            }
            if canonical != rfc || canonical != literal {
                assert!(readings_may_differ(raw), "{raw:?}");
            }
        }
        for raw in ["/a/b.html", "/a-b_c~d/e?x=%2e%2e/..//", "/"] {
            assert!(!readings_may_differ(raw), "{raw:?}");
        }
    }

    #[test]
    fn a_buffer_is_reused() {
        let mut out = String::new();
        normalize_into("/a/very/long/path/indeed", &mut out);
        let cap = out.capacity();
        normalize_into("/short", &mut out);
        assert_eq!(out, "/short");
        assert_eq!(out.capacity(), cap);
    }
}
