//! What every page shares besides its templates (`layout.html`, the frame, and
//! `page.html`, the portal's and the admin pages' frame): the escaping of every reflected
//! value, and times written for people.
//!
//! Self-contained on purpose: one HTML document with inline CSS and no external
//! resource, since a page is served in place of a site the browser could not reach.
//! Readable by everyone: `lang` on `<html>`, viewport meta and a fluid layout for phones,
//! real headings, colours with a contrast of at least 4.5:1, a visible focus ring, and
//! no information carried by colour alone.

use std::borrow::Cow;

use super::templates::{Pages, current};
use crate::policy::Lang;

/// Escapes `& < > " '` so that `s` is safe in HTML text and in quoted attributes.
/// Borrows when there is nothing to escape.
pub fn html_escape(s: &str) -> Cow<'_, str> {
    let special = |c: char| matches!(c, '&' | '<' | '>' | '"' | '\'');
    let Some(first) = s.find(special) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 16);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A time as the pages show it: `shown` for people, in the town's time zone, and
/// `machine` for a `<time datetime>`.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct When {
    pub shown: String,
    pub machine: String,
}

impl Pages {
    /// `t` (seconds since the epoch) as the pages show it.
    pub(super) fn when(&self, t: i64, lang: Lang) -> When {
        let (shown, machine) = self.time(t, lang);
        When { shown, machine }
    }
}

/// At most `max` characters of `s`, and whether it was cut.
pub(super) fn cut(s: &str, max: usize) -> (&str, bool) {
    match s.char_indices().nth(max) {
        Some((i, _)) => (&s[..i], true),
        None => (s, false),
    }
}

/// A time in seconds since the epoch for people, in the town's time zone:
/// `23/11/2026 15:05 CET` (fr) or `2026-11-23 15:05 CET` (en).
pub fn date(t: i64, lang: Lang) -> String {
    current().time(t, lang).0
}
