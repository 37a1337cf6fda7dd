//! The frame every page shares: the document around a card, the inline style sheet, the
//! escaping of every reflected value, and times written for people.
//!
//! Self-contained on purpose: one HTML document with inline CSS and no external
//! resource, since a page is served in place of a site the browser could not reach.
//! Readable by everyone: `lang` on `<html>`, viewport meta and a fluid layout for phones,
//! real headings, colours with a contrast of at least 4.5:1, a visible focus ring, and
//! no information carried by colour alone.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// Inline style sheet shared by all pages. Contrast on white: text #1a1a1a 17:1, muted
/// #4a4a4a 8.9:1, links and button #0b4f9c 7.8:1 (white on it likewise), heading #8a1116
/// 9.7:1. The focus ring is a dark outline, visible on white and on the button.
const CSS: &str = "\
*{box-sizing:border-box}\
body{margin:0;background:#f2f3f5;color:#1a1a1a;font:1rem/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,Arial,sans-serif}\
main{max-width:42rem;margin:0 auto;padding:1.5rem 1rem}\
.card{background:#fff;border-top:.4rem solid #8a1116;border-radius:.5rem;padding:1.25rem;box-shadow:0 1px 3px rgba(0,0,0,.2)}\
.card.info{border-top-color:#0b4f9c}\
h1{margin:0 0 .75rem;font-size:1.6rem;line-height:1.2;color:#8a1116}\
.info h1{color:#1a1a1a}\
h2{margin:1.5rem 0 .5rem;font-size:1.15rem;line-height:1.3}\
p,ul{margin:.5rem 0}\
li{margin:.25rem 0}\
dl{margin:0;display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem}\
dt{font-weight:600}\
dd{margin:0;overflow-wrap:anywhere}\
@media (max-width:32rem){dl{display:block}dd{margin:0 0 .6rem}}\
strong,code{overflow-wrap:anywhere}\
code{font-family:ui-monospace,Consolas,monospace;font-size:.95em}\
a{color:#0b4f9c}\
a:focus-visible{outline:3px solid #1a1a1a;outline-offset:3px;border-radius:.2rem}\
.button{display:inline-block;min-height:2.75rem;padding:.6rem 1.25rem;background:#0b4f9c;color:#fff;font-weight:600;text-decoration:none;border-radius:.375rem}\
.button:hover{background:#083a73;text-decoration:underline}\
.muted{color:#4a4a4a}\
.small{font-size:.875rem;margin-top:1.5rem}\
label{display:block;font-weight:600;margin:1rem 0 .25rem}\
textarea,select,input[type=text],input[type=password]{width:100%;font:inherit;padding:.5rem;border:1px solid #6b6b6b;border-radius:.375rem}\
textarea{min-height:8rem}\
button{min-height:2.75rem;padding:.6rem 1.25rem;margin-top:1rem;background:#0b4f9c;color:#fff;font:inherit;font-weight:600;border:0;border-radius:.375rem;cursor:pointer}\
table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #ddd;vertical-align:top;overflow-wrap:anywhere}\
main.wide{max-width:72rem}\
nav{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;margin:0 0 1rem}\
nav form{margin:0 0 0 auto}nav button{margin:0;min-height:2.25rem;padding:.3rem .9rem}\
.request{border-top:1px solid #ddd;padding-top:1rem;margin-top:1.5rem}\
.request h2{margin-top:0}.request textarea{min-height:4rem}\
.why{white-space:pre-wrap;background:#f6f7f9;border-left:.25rem solid #0b4f9c;padding:.5rem .75rem;margin:.5rem 0}\
fieldset{border:1px solid #ccc;border-radius:.375rem;margin:1rem 0 0;padding:.5rem .75rem}\
legend{font-weight:600}\
fieldset label{display:inline-block;font-weight:400;margin:.25rem 1.25rem .25rem 0}\
.actions{display:flex;flex-wrap:wrap;gap:.75rem}\
button.refuse{background:#8a1116}button.refuse:hover{background:#5e0b0f}\
.notice{background:#e8f1fb;border-left:.25rem solid #0b4f9c;padding:.5rem .75rem}\
.error{background:#fbe9ea;border-left:.25rem solid #8a1116;padding:.5rem .75rem}";

/// Opens the document up to and including the opening of the card.
pub(super) fn open_page(out: &mut String, lang: Lang, title: &str, class: &str) {
    open_page_in(out, lang, title, class, "", "no-referrer");
}

/// [`open_page`] with HTML (already escaped) put before the card, which widens `<main>`
/// for the admin pages' tables, and a referrer policy.
fn open_page_in(
    out: &mut String,
    lang: Lang,
    title: &str,
    class: &str,
    before: &str,
    referrer: &str,
) {
    let main = if before.is_empty() {
        "<main>"
    } else {
        "<main class=\"wide\">"
    };
    w!(
        out,
        "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex, nofollow\">\n\
         <meta name=\"referrer\" content=\"{referrer}\">\n\
         <title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{main}\n{before}\
         <div class=\"{class}\">\n",
        lang = lang.code(),
    );
}

/// A whole page around `body` (HTML the caller has escaped): the portal's and the admin
/// pages share the block page's look.
pub fn render_page(lang: Lang, title: &str, info: bool, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let class = if info { "card info" } else { "card" };
    open_page(&mut out, lang, &html_escape(title), class);
    out.push_str(body);
    close_page(&mut out);
    out
}

/// An admin page: wider when it has `nav` (HTML the caller has escaped) above the card.
/// Its referrer policy is `same-origin`: browsers then send the `Origin` of its forms,
/// which the admin listener checks (with `no-referrer` they send `Origin: null`).
pub fn render_admin_page(lang: Lang, title: &str, nav: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    open_page_in(
        &mut out,
        lang,
        &html_escape(title),
        "card info",
        nav,
        "same-origin",
    );
    out.push_str(body);
    close_page(&mut out);
    out
}

pub(super) fn close_page(out: &mut String) {
    out.push_str("</div>\n</main>\n</body>\n</html>\n");
}

/// The time as "23/11/2026 14:05 UTC" (fr) or "2026-11-23 14:05 UTC" (en), and its
/// machine-readable form for `<time datetime>`.
pub(super) fn format_time(t: SystemTime, lang: Lang) -> (String, String) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let dt =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (y, m, d) = (dt.year(), u8::from(dt.month()), dt.day());
    let (hh, mm) = (dt.hour(), dt.minute());
    let shown = match lang {
        Lang::Fr => format!("{d:02}/{m:02}/{y} {hh:02}:{mm:02} UTC"),
        Lang::En => format!("{y}-{m:02}-{d:02} {hh:02}:{mm:02} UTC"),
    };
    let machine = format!("{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{:02}Z", dt.second());
    (shown, machine)
}

/// At most `max` characters of `s`, and whether it was cut.
pub(super) fn cut(s: &str, max: usize) -> (&str, bool) {
    match s.char_indices().nth(max) {
        Some((i, _)) => (&s[..i], true),
        None => (s, false),
    }
}

/// A time in seconds since the epoch for people: `23/11/2026 14:05 UTC` (fr) or
/// `2026-11-23 14:05 UTC` (en).
pub fn date(t: i64, lang: Lang) -> String {
    let Ok(d) = time::OffsetDateTime::from_unix_timestamp(t) else {
        return t.to_string();
    };
    match lang {
        Lang::Fr => format!(
            "{:02}/{:02}/{} {:02}:{:02} UTC",
            d.day(),
            d.month() as u8,
            d.year(),
            d.hour(),
            d.minute()
        ),
        Lang::En => format!(
            "{}-{:02}-{:02} {:02}:{:02} UTC",
            d.year(),
            d.month() as u8,
            d.day(),
            d.hour(),
            d.minute()
        ),
    }
}
