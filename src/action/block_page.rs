//! Pages people read: the block page, the help page shown to someone who browses to the
//! proxy port itself, and a generic error page.
//!
//! What this module owns and why:
//! - **Language.** French by default, English only when the browser prefers it
//!   ([`negotiate_lang`]); every visible word below exists in both.
//! - **Safety.** Every reflected value (URL, host, reason, user name, links…) goes through
//!   [`html_escape`]; nothing is ever placed in a script, a style or an unquoted attribute.
//! - **Self-contained.** One HTML document with inline CSS and no external resource: the
//!   page is served in place of a site the browser could not reach, so it cannot rely on
//!   anything else being reachable.
//! - **Readable by everyone.** `lang` on `<html>`, viewport meta and a fluid layout for
//!   phones, real headings and a description list, colours with a contrast of at least
//!   4.5:1, a visible focus ring, and no information carried by colour alone (the coloured
//!   bar only repeats what the heading says).
//!
//! The reason text is not built here: it comes, already in the right language and with
//! its charter clause, from [`crate::policy::Policy::reason_text`] (one `Reason` feeds
//! every output). The unblock button only carries a link built by the caller (the portal
//! URL with its signed token, see [`crate::unblock::token`]); it is a plain link styled as
//! a button so that it works without JavaScript.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::policy::Lang;

/// Writes into a `String`; writing into a `String` cannot fail.
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

/// The language of a request's `Accept-Language` header (French by default).
pub fn lang_of(headers: &http::HeaderMap) -> Lang {
    negotiate_lang(
        headers
            .get(http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

/// French unless the browser prefers English.
///
/// Each language gets the highest q-value among the ranges of the header that name it
/// (`en`, `en-GB`… count for English; `fr`, `fr-CA`… for French); a language the header
/// does not name gets the q-value of `*`, or 0. English is chosen only when its q-value is
/// strictly higher than French's, so `*`, a missing or unreadable header, or a tie give
/// French. Entries with an unreadable q-value are skipped.
pub fn negotiate_lang(accept_language: Option<&str>) -> Lang {
    let Some(header) = accept_language else {
        return Lang::Fr;
    };
    // q-values in thousandths, as the RFC allows at most three decimals.
    let (mut fr, mut en, mut star) = (None::<u16>, None::<u16>, None::<u16>);
    // A real header has a handful of entries; bound the work on a hostile one.
    for entry in header.split(',').take(64) {
        let mut parts = entry.split(';');
        let range = parts.next().unwrap_or("").trim();
        let mut q = Some(1000);
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("q") {
                q = parse_q(value.trim());
            }
        }
        let Some(q) = q else { continue };
        let primary = range.split('-').next().unwrap_or("");
        let slot = if primary.eq_ignore_ascii_case("fr") {
            &mut fr
        } else if primary.eq_ignore_ascii_case("en") {
            &mut en
        } else if primary == "*" {
            &mut star
        } else {
            continue;
        };
        *slot = Some(slot.map_or(q, |old| old.max(q)));
    }
    let fr = fr.or(star).unwrap_or(0);
    let en = en.or(star).unwrap_or(0);
    if en > fr { Lang::En } else { Lang::Fr }
}

/// A q-value ("0", "0.8", "1.000") in thousandths; `None` when it is not one.
fn parse_q(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    let q = int + thousandths;
    (q <= 1000).then_some(q)
}

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

/// Everything the block page shows. All text is given in the page's language.
pub struct BlockPage<'a> {
    pub lang: Lang,
    /// The blocked URL (or `host:port` for a tunnel). Shown escaped, cut after
    /// [`URL_SHOWN_MAX`] characters (the full URL is in the trace).
    pub url: &'a str,
    pub host: &'a str,
    /// The site's categories in words, already in the right language (may be empty).
    pub categories: &'a [&'a str],
    /// The reason text with its charter clause, already in the right language. When it is
    /// empty (a rule without a reason), a general sentence citing §6.3 is shown.
    pub reason: &'a str,
    /// Stable code, shown small for support ("Code : block-rule").
    pub reason_code: &'a str,
    /// Rule id, `None` for the policy's default.
    pub rule: Option<&'a str>,
    /// Shown in UTC, "23/11/2026 14:05 UTC" (fr) or "2026-11-23 14:05 UTC" (en), so the
    /// page reads the same whatever the server's time zone.
    pub time: SystemTime,
    /// The user name, or the client address when the request was not authenticated.
    pub who: &'a str,
    pub unblock: Unblock<'a>,
}

/// What the person can do about the block.
pub enum Unblock<'a> {
    /// A button (a link styled as a button, so it works without JavaScript) to the
    /// portal's request form. `href` is escaped here; the caller builds it.
    Offer { href: &'a str },
    /// The rule is not overridable: say the site cannot be opened and why (the law /
    /// security), no button.
    NotOverridable,
}

/// How many characters of the blocked URL the page shows; a longer one is cut with "…".
pub const URL_SHOWN_MAX: usize = 512;

/// The words of the pages, in one language.
struct Words {
    block_title: &'static str,
    block_h1: &'static str,
    /// Before and after the host in the opening sentence.
    block_lead: (&'static str, &'static str),
    reason_h2: &'static str,
    reason_fallback: &'static str,
    details_h2: &'static str,
    site: &'static str,
    address: &'static str,
    category: &'static str,
    categories: &'static str,
    uncategorised: &'static str,
    when: &'static str,
    who: &'static str,
    rule: &'static str,
    default_rule: &'static str,
    trace: &'static str,
    todo_h2: &'static str,
    offer: &'static str,
    offer_button: &'static str,
    not_overridable: &'static str,
    not_overridable_support: &'static str,
    code: &'static str,
    help_title: &'static str,
    help_h1: &'static str,
    help_intro: &'static str,
    help_setup_h2: &'static str,
    help_setup_intro: &'static str,
    help_pac: &'static str,
    help_manual: &'static str,
    help_portal_h2: &'static str,
    help_portal: &'static str,
    help_portal_link: &'static str,
    error_title_suffix: &'static str,
    error_status: &'static str,
    error_detail: &'static str,
}

/// Non-breaking space before ":", "?" (French typography).
const FR: Words = Words {
    block_title: "Accès bloqué — charte informatique",
    block_h1: "Accès bloqué",
    block_lead: (
        "L'accès à ",
        " a été bloqué par le filtrage internet de la collectivité, en application de la charte informatique.",
    ),
    reason_h2: "Motif",
    reason_fallback: "Ce site est bloqué par la politique de filtrage de la collectivité (charte §6.3).",
    details_h2: "Détails",
    site: "Site",
    address: "Adresse",
    category: "Catégorie",
    categories: "Catégories",
    uncategorised: "Non catégorisé",
    when: "Date et heure",
    who: "Identifié comme",
    rule: "Règle appliquée",
    default_rule: "règle par défaut",
    trace: "Cet accès refusé est enregistré avec son motif (charte §4.8).",
    todo_h2: "Que faire&nbsp;?",
    offer: "Si ce site est nécessaire à vos missions, vous pouvez demander son ouverture. L'administration étudiera la demande selon vos missions et les contraintes de sécurité (charte §6.3).",
    offer_button: "Demander l'ouverture de ce site",
    not_overridable: "Ce site ne peut pas être ouvert, même sur demande&nbsp;: son blocage est imposé par la loi ou par la sécurité du système d'information (charte §6.3).",
    not_overridable_support: "Si vous pensez que ce site est mal classé, signalez-le au support informatique en indiquant le code ci-dessous.",
    code: "Code&nbsp;:",
    help_title: "Proxy de filtrage — charte informatique",
    help_h1: "Proxy de filtrage de la collectivité",
    help_intro: "Vous êtes sur le proxy de filtrage web de la collectivité. Il n'héberge aucun site&nbsp;: il relaie la navigation des postes de travail en appliquant la charte informatique (§6.3).",
    help_setup_h2: "Configurer le navigateur",
    help_setup_intro: "Sur un poste géré par la collectivité, la configuration est automatique. Sinon, dans les paramètres réseau du navigateur ou du système, choisissez&nbsp;:",
    help_pac: "la configuration automatique du proxy (recommandée), adresse du script&nbsp;:",
    help_manual: "ou un proxy manuel, pour HTTP et HTTPS&nbsp;:",
    help_portal_h2: "Demandes d'ouverture de site",
    help_portal: "Pour demander l'ouverture d'un site bloqué ou suivre vos demandes&nbsp;:",
    help_portal_link: "portail des demandes",
    error_title_suffix: "charte informatique",
    error_status: "Erreur",
    error_detail: "Détail technique&nbsp;:",
};

const EN: Words = Words {
    block_title: "Access blocked — IT charter",
    block_h1: "Access blocked",
    block_lead: (
        "Access to ",
        " was blocked by the authority's web filtering, under the IT charter.",
    ),
    reason_h2: "Reason",
    reason_fallback: "This site is blocked by the authority's filtering policy (charter §6.3).",
    details_h2: "Details",
    site: "Site",
    address: "Address",
    category: "Category",
    categories: "Categories",
    uncategorised: "Uncategorised",
    when: "Date and time",
    who: "Identified as",
    rule: "Rule applied",
    default_rule: "default rule",
    trace: "This refused access is recorded with its reason (charter §4.8).",
    todo_h2: "What can I do?",
    offer: "If you need this site for your work, you can ask for it to be opened. The administration will review the request against your duties and security constraints (charter §6.3).",
    offer_button: "Ask for this site to be opened",
    not_overridable: "This site cannot be opened, even on request: blocking it is required by law or by the security of the information system (charter §6.3).",
    not_overridable_support: "If you think this site is wrongly classified, tell the IT support and give them the code below.",
    code: "Code:",
    help_title: "Filtering proxy — IT charter",
    help_h1: "The authority's filtering proxy",
    help_intro: "This is the authority's web filtering proxy. It hosts no site: it relays the workstations' browsing and applies the IT charter (§6.3).",
    help_setup_h2: "Setting up the browser",
    help_setup_intro: "On a workstation managed by the authority this is automatic. Otherwise, in the network settings of the browser or the system, choose:",
    help_pac: "automatic proxy configuration (recommended), script address:",
    help_manual: "or a manual proxy, for HTTP and HTTPS:",
    help_portal_h2: "Requests to open a site",
    help_portal: "To ask for a blocked site to be opened or follow your requests:",
    help_portal_link: "request portal",
    error_title_suffix: "IT charter",
    error_status: "Error",
    error_detail: "Technical detail:",
};

fn words(lang: Lang) -> &'static Words {
    match lang {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
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
fn open_page(out: &mut String, lang: Lang, title: &str, class: &str) {
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

fn close_page(out: &mut String) {
    out.push_str("</div>\n</main>\n</body>\n</html>\n");
}

/// The time as "23/11/2026 14:05 UTC" (fr) or "2026-11-23 14:05 UTC" (en), and its
/// machine-readable form for `<time datetime>`.
fn format_time(t: SystemTime, lang: Lang) -> (String, String) {
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
fn cut(s: &str, max: usize) -> (&str, bool) {
    match s.char_indices().nth(max) {
        Some((i, _)) => (&s[..i], true),
        None => (s, false),
    }
}

/// The block page: a full HTML document, to be served with status 403.
pub fn render_block_page(p: &BlockPage) -> String {
    let t = words(p.lang);
    let e = html_escape;
    let mut out = String::with_capacity(6 * 1024);
    open_page(&mut out, p.lang, t.block_title, "card");

    w!(out, "<h1>{}</h1>\n", t.block_h1);
    w!(
        out,
        "<p>{}<strong>{}</strong>{}</p>\n",
        t.block_lead.0,
        e(p.host),
        t.block_lead.1
    );

    w!(out, "<h2>{}</h2>\n", t.reason_h2);
    let reason = p.reason.trim();
    if reason.is_empty() {
        w!(out, "<p>{}</p>\n", t.reason_fallback);
    } else {
        w!(out, "<p>{}</p>\n", e(reason));
    }

    w!(out, "<h2>{}</h2>\n<dl>\n", t.details_h2);
    w!(out, "<dt>{}</dt><dd>{}</dd>\n", t.site, e(p.host));
    let (url, was_cut) = cut(p.url, URL_SHOWN_MAX);
    let ellipsis = if was_cut { "…" } else { "" };
    w!(
        out,
        "<dt>{}</dt><dd><code>{}{ellipsis}</code></dd>\n",
        t.address,
        e(url)
    );
    let label = if p.categories.len() > 1 {
        t.categories
    } else {
        t.category
    };
    if p.categories.is_empty() {
        w!(out, "<dt>{label}</dt><dd>{}</dd>\n", t.uncategorised);
    } else {
        w!(
            out,
            "<dt>{label}</dt><dd>{}</dd>\n",
            e(&p.categories.join(", "))
        );
    }
    let (shown, machine) = format_time(p.time, p.lang);
    w!(
        out,
        "<dt>{}</dt><dd><time datetime=\"{machine}\">{shown}</time></dd>\n",
        t.when
    );
    w!(out, "<dt>{}</dt><dd>{}</dd>\n", t.who, e(p.who));
    match p.rule {
        Some(rule) => w!(
            out,
            "<dt>{}</dt><dd><code>{}</code></dd>\n",
            t.rule,
            e(rule)
        ),
        None => w!(out, "<dt>{}</dt><dd>{}</dd>\n", t.rule, t.default_rule),
    }
    out.push_str("</dl>\n");
    w!(out, "<p class=\"muted\">{}</p>\n", t.trace);

    w!(out, "<h2>{}</h2>\n", t.todo_h2);
    match p.unblock {
        Unblock::Offer { href } => {
            w!(out, "<p>{}</p>\n", t.offer);
            w!(
                out,
                "<p><a class=\"button\" href=\"{}\">{}</a></p>\n",
                e(href),
                t.offer_button
            );
        }
        Unblock::NotOverridable => {
            w!(out, "<p>{}</p>\n", t.not_overridable);
            w!(out, "<p>{}</p>\n", t.not_overridable_support);
        }
    }

    w!(
        out,
        "<p class=\"muted small\">{} <code>{}</code></p>\n",
        t.code,
        e(p.reason_code)
    );
    close_page(&mut out);
    out
}

/// Short page for someone who browsed to the proxy port itself (origin-form request):
/// says this is the authority's filtering proxy, how to configure the browser (PAC URL
/// or proxy address, each left out when empty), and links to the portal.
pub fn render_help_page(lang: Lang, proxy_addr: &str, pac_url: &str, portal_url: &str) -> String {
    let t = words(lang);
    let e = html_escape;
    let mut out = String::with_capacity(4 * 1024);
    open_page(&mut out, lang, t.help_title, "card info");
    w!(out, "<h1>{}</h1>\n<p>{}</p>\n", t.help_h1, t.help_intro);

    w!(
        out,
        "<h2>{}</h2>\n<p>{}</p>\n<ul>\n",
        t.help_setup_h2,
        t.help_setup_intro
    );
    if !pac_url.is_empty() {
        w!(out, "<li>{} <code>{}</code></li>\n", t.help_pac, e(pac_url));
    }
    if !proxy_addr.is_empty() {
        w!(
            out,
            "<li>{} <code>{}</code></li>\n",
            t.help_manual,
            e(proxy_addr)
        );
    }
    out.push_str("</ul>\n");

    if !portal_url.is_empty() {
        w!(
            out,
            "<h2>{}</h2>\n<p>{} <a href=\"{}\">{}</a></p>\n",
            t.help_portal_h2,
            t.help_portal,
            e(portal_url),
            t.help_portal_link
        );
    }
    close_page(&mut out);
    out
}

/// The plain explanation of an error status, for people.
fn explain_status(lang: Lang, status: u16) -> &'static str {
    match (lang, status) {
        (Lang::Fr, 400) => "Le proxy n'a pas pu comprendre la requête envoyée par le navigateur.",
        (Lang::En, 400) => "The proxy could not understand the request sent by the browser.",
        (Lang::Fr, 407) => "Le proxy a besoin de vous identifier avant de relayer cette requête.",
        (Lang::En, 407) => "The proxy needs to identify you before relaying this request.",
        (Lang::Fr, 408) => "Le navigateur a mis trop de temps à envoyer sa requête.",
        (Lang::En, 408) => "The browser took too long to send its request.",
        (Lang::Fr, 413 | 414 | 431) => "La requête est trop grande pour être relayée par le proxy.",
        (Lang::En, 413 | 414 | 431) => "The request is too large for the proxy to relay.",
        (Lang::Fr, 429) => {
            "Trop de requêtes ont été envoyées en peu de temps. Réessayez dans un instant."
        }
        (Lang::En, 429) => "Too many requests were sent in a short time. Try again in a moment.",
        (Lang::Fr, 502) => {
            "Le site demandé n'a pas répondu correctement au proxy. Il est peut-être indisponible&nbsp;; réessayez plus tard."
        }
        (Lang::En, 502) => {
            "The requested site did not answer the proxy properly. It may be unavailable; try again later."
        }
        (Lang::Fr, 503) => "Le proxy est momentanément indisponible. Réessayez dans un instant.",
        (Lang::En, 503) => "The proxy is unavailable for the moment. Try again in a moment.",
        (Lang::Fr, 504) => "Le site demandé n'a pas répondu à temps. Réessayez plus tard.",
        (Lang::En, 504) => "The requested site did not answer in time. Try again later.",
        (Lang::Fr, 400..=499) => "Le proxy ne peut pas relayer cette requête.",
        (Lang::En, 400..=499) => "The proxy cannot relay this request.",
        (Lang::Fr, _) => {
            "Le proxy a rencontré un problème en relayant cette requête. Réessayez plus tard&nbsp;; si le problème persiste, contactez le support informatique."
        }
        (Lang::En, _) => {
            "The proxy ran into a problem relaying this request. Try again later; if it persists, contact the IT support."
        }
    }
}

/// Generic error page (502, 504, 400…): `title` (in the page's language) as heading, a
/// plain explanation of `status`, and `detail` when not empty. Both are escaped.
pub fn render_error_page(lang: Lang, status: u16, title: &str, detail: &str) -> String {
    let t = words(lang);
    let e = html_escape;
    let title = e(title);
    let mut out = String::with_capacity(3 * 1024);
    let full_title = format!("{title} — {}", t.error_title_suffix);
    open_page(&mut out, lang, &full_title, "card");
    w!(
        out,
        "<h1>{title}</h1>\n<p>{}</p>\n",
        explain_status(lang, status)
    );
    let detail = detail.trim();
    if !detail.is_empty() {
        let (detail, was_cut) = cut(detail, URL_SHOWN_MAX);
        let ellipsis = if was_cut { "…" } else { "" };
        w!(
            out,
            "<p>{} <code>{}{ellipsis}</code></p>\n",
            t.error_detail,
            e(detail)
        );
    }
    w!(
        out,
        "<p class=\"muted small\">{} {status}</p>\n",
        t.error_status
    );
    close_page(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 2026-11-23 14:05:09 UTC.
    fn fixed_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_442_709)
    }

    fn page<'a>(lang: Lang, unblock: Unblock<'a>, categories: &'a [&'a str]) -> BlockPage<'a> {
        let reason = match lang {
            Lang::Fr => {
                "Jeux d'argent en ligne : interdits sur le réseau de la collectivité (charte §6.3)"
            }
            Lang::En => "Online gambling: not allowed on the authority's network (charter §6.3)",
        };
        BlockPage {
            lang,
            url: "https://www.casino.example/jouer?partie=42&mise=10",
            host: "www.casino.example",
            categories,
            reason,
            reason_code: "block-rule",
            rule: Some("jeux-argent"),
            time: fixed_time(),
            who: "a.dupont",
            unblock,
        }
    }

    const OFFER: Unblock<'static> = Unblock::Offer {
        href: "https://proxy.arras.example/demandes/nouvelle?t=eyJ1cmwiOiJodHRwcyJ9.c2ln",
    };

    #[test]
    fn fixed_time_is_the_documented_one() {
        assert_eq!(
            format_time(fixed_time(), Lang::Fr).0,
            "23/11/2026 14:05 UTC"
        );
        assert_eq!(
            format_time(fixed_time(), Lang::En),
            (
                "2026-11-23 14:05 UTC".to_owned(),
                "2026-11-23T14:05:09Z".to_owned()
            )
        );
    }

    #[test]
    fn block_page_fr_offer() {
        let html = render_block_page(&page(Lang::Fr, OFFER, &["Jeux d'argent"]));
        insta::assert_snapshot!(html);
    }

    #[test]
    fn block_page_en_offer() {
        let html = render_block_page(&page(Lang::En, OFFER, &["Gambling"]));
        insta::assert_snapshot!(html);
    }

    #[test]
    fn block_page_fr_not_overridable() {
        let html = render_block_page(&page(
            Lang::Fr,
            Unblock::NotOverridable,
            &["Jeux d'argent", "Publicité"],
        ));
        insta::assert_snapshot!(html);
    }

    #[test]
    fn block_page_en_not_overridable() {
        let html = render_block_page(&page(Lang::En, Unblock::NotOverridable, &[]));
        insta::assert_snapshot!(html);
    }

    #[test]
    fn block_page_tunnel_default_rule_without_reason() {
        let p = BlockPage {
            url: "inconnu.example:443",
            host: "inconnu.example",
            reason: "",
            reason_code: "block-default",
            rule: None,
            who: "10.1.2.3",
            ..page(Lang::Fr, OFFER, &[])
        };
        let html = render_block_page(&p);
        assert!(html.contains("<code>inconnu.example:443</code>"));
        assert!(html.contains("Non catégorisé"));
        assert!(html.contains("règle par défaut"));
        assert!(html.contains("(charte §6.3)"));
        assert!(html.contains("<dd>10.1.2.3</dd>"));
        assert!(html.contains("<code>block-default</code>"));
    }

    #[test]
    fn help_page_fr() {
        insta::assert_snapshot!(render_help_page(
            Lang::Fr,
            "proxy.arras.example:3128",
            "http://proxy.arras.example/proxy.pac",
            "https://proxy.arras.example/demandes",
        ));
    }

    #[test]
    fn help_page_en() {
        insta::assert_snapshot!(render_help_page(
            Lang::En,
            "proxy.arras.example:3128",
            "http://proxy.arras.example/proxy.pac",
            "https://proxy.arras.example/demandes",
        ));
    }

    #[test]
    fn error_page_fr_502() {
        insta::assert_snapshot!(render_error_page(
            Lang::Fr,
            502,
            "Site injoignable",
            "connexion refusée par upstream.example:443",
        ));
    }

    #[test]
    fn error_page_en_504_without_detail() {
        let html = render_error_page(Lang::En, 504, "Site did not answer", "  ");
        assert!(html.contains("<h1>Site did not answer</h1>"));
        assert!(html.contains("did not answer in time"));
        assert!(!html.contains("Technical detail"));
        assert!(html.contains("Error 504"));
    }

    const HOSTILE: &str = "\"><script>alert('x')</script><img src=x onerror=alert(1)>";

    /// Nothing reflected may open a tag or leave an attribute.
    fn assert_inert(html: &str) {
        assert!(!html.contains("<script"), "raw <script> in:\n{html}");
        assert!(!html.contains("<img"), "raw <img> in:\n{html}");
        assert!(!html.contains("\"><"), "attribute escape in:\n{html}");
        assert!(!html.contains("'x'"), "raw quote in:\n{html}");
    }

    #[test]
    fn hostile_values_are_escaped_on_the_block_page() {
        let url = format!("http://evil.example/{HOSTILE}");
        let href = format!("https://portal.example/?t={HOSTILE}");
        let cats = [HOSTILE];
        let p = BlockPage {
            lang: Lang::Fr,
            url: &url,
            host: HOSTILE,
            categories: &cats,
            reason: HOSTILE,
            reason_code: HOSTILE,
            rule: Some(HOSTILE),
            time: fixed_time(),
            who: HOSTILE,
            unblock: Unblock::Offer { href: &href },
        };
        let html = render_block_page(&p);
        assert_inert(&html);
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("href=\"https://portal.example/?t=&quot;&gt;&lt;script&gt;"));
    }

    #[test]
    fn hostile_values_are_escaped_on_help_and_error_pages() {
        assert_inert(&render_help_page(Lang::En, HOSTILE, HOSTILE, HOSTILE));
        assert_inert(&render_error_page(Lang::Fr, 400, HOSTILE, HOSTILE));
    }

    #[test]
    fn long_url_is_cut_on_a_char_boundary() {
        let url = format!("https://long.example/{}", "é".repeat(2000));
        let p = BlockPage {
            url: &url,
            ..page(Lang::Fr, Unblock::NotOverridable, &[])
        };
        let html = render_block_page(&p);
        assert!(html.contains("éé…</code>"));
        assert!(html.len() < 8 * 1024);
    }

    #[test]
    fn html_escape_borrows_when_clean_and_escapes_all_five() {
        assert!(matches!(html_escape("a.dupont"), Cow::Borrowed("a.dupont")));
        assert_eq!(
            html_escape(r#"a&b<c>d"e'f"#),
            "a&amp;b&lt;c&gt;d&quot;e&#39;f"
        );
        assert_eq!(html_escape("été <b>"), "été &lt;b&gt;");
    }

    #[test]
    fn negotiate_lang_table() {
        use Lang::{En, Fr};
        let cases: &[(Option<&str>, Lang)] = &[
            (None, Fr),
            (Some(""), Fr),
            (Some("fr"), Fr),
            (Some("fr-FR"), Fr),
            (Some("*"), Fr),
            (Some("en"), En),
            (Some("en-GB"), En),
            (Some("EN-us"), En),
            (Some("fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7"), Fr),
            (Some("en-US,en;q=0.9,fr;q=0.8"), En),
            (Some("fr;q=0.5, en;q=0.8"), En),
            (Some("en;q=0.5, fr;q=0.8"), Fr),
            (Some("en;q=0.8, fr;q=0.8"), Fr),
            (Some("de-DE,de;q=0.9,en;q=0.5"), En),
            (Some("de, *;q=0.5"), Fr),
            (Some("en;q=0.7, *;q=0.9"), Fr),
            (Some("fr;q=0.1, *;q=0.9"), En),
            (Some("en;q=0"), Fr),
            (Some("en;q=0.000"), Fr),
            (Some("en ; q = 0.9"), En),
            (Some("en;q=2"), Fr),
            (Some("en;q=abc"), Fr),
            (Some("en;q=0.1234"), Fr),
            (Some("en;q=1.5"), Fr),
            (Some("en;q=1.000"), En),
            (Some("english"), Fr),
            (Some(";;,,=q"), Fr),
            (Some("\u{0}garbage\u{ff}"), Fr),
        ];
        for &(header, want) in cases {
            assert_eq!(negotiate_lang(header), want, "Accept-Language: {header:?}");
        }
    }

    /// Renders the French block page to /tmp/block-fr.html for a look in a browser.
    #[test]
    fn render_sample_to_tmp() {
        let html = render_block_page(&page(Lang::Fr, OFFER, &["Jeux d'argent"]));
        std::fs::write(std::env::temp_dir().join("block-fr.html"), html).ok();
    }
}
