//! The frame every page shares (`layout.html`, `page.html`): the portal's and the admin
//! pages around their card, the escaping of every reflected value, and times written
//! for people.
//!
//! Self-contained on purpose: one HTML document with inline CSS and no external
//! resource, since a page is served in place of a site the browser could not reach.
//! Readable by everyone: `lang` on `<html>`, viewport meta and a fluid layout for phones,
//! real headings, colours with a contrast of at least 4.5:1, a visible focus ring, and
//! no information carried by colour alone.

use std::borrow::Cow;

use minijinja::Value;

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

/// A whole page around `body` (HTML the caller has escaped): the portal's and the admin
/// pages share the block page's look (`page.html`).
pub fn render_page(lang: Lang, title: &str, info: bool, body: &str) -> String {
    current().page(lang, title, info, body)
}

/// An admin page: wider when it has `nav` (HTML the caller has escaped) above the card.
/// Its referrer policy is `same-origin`: browsers then send the `Origin` of its forms,
/// which the admin listener checks (with `no-referrer` they send `Origin: null`).
pub fn render_admin_page(lang: Lang, title: &str, nav: &str, body: &str) -> String {
    current().admin_page(lang, title, nav, body)
}

impl Pages {
    /// [`render_page`] with this set.
    pub fn page(&self, lang: Lang, title: &str, info: bool, body: &str) -> String {
        self.framed(lang, title, info, false, "", body)
    }

    /// [`render_admin_page`] with this set.
    pub fn admin_page(&self, lang: Lang, title: &str, nav: &str, body: &str) -> String {
        self.framed(lang, title, true, true, nav, body)
    }

    fn framed(
        &self,
        lang: Lang,
        title: &str,
        info: bool,
        admin: bool,
        nav: &str,
        body: &str,
    ) -> String {
        let page = minijinja::context! {
            title,
            info,
            admin,
            nav => Value::from_safe_string(nav.to_owned()),
            body => Value::from_safe_string(body.to_owned()),
        };
        match self.render("page.html", lang, page) {
            Ok(html) => html,
            Err(e) => {
                tracing::error!(template = "page.html", "cannot render the page: {e:#}");
                format!(
                    "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n</head>\n<body>\n{body}</body>\n</html>\n",
                    lang.code(),
                    t = html_escape(title),
                )
            }
        }
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
