//! The pages of the proxy listener: the block page, the help page shown to someone who
//! browses to the proxy port itself, and a generic error page.
//!
//! The reason text is not built here: it comes, already in the right language and with
//! its charter clause, from [`crate::policy::Policy::reason_text`] (one `Reason` feeds
//! every output). The unblock button only carries a link built by the caller (the portal
//! URL with its signed token, see [`crate::unblock::token`]); it is a plain link styled as
//! a button so that it works without JavaScript.

use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::{Value, context};

use super::frame::{cut, html_escape};
use super::templates::{Pages, current};
use crate::policy::Lang;

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
    /// Shown in the town's time zone (`time_zone`, Europe/Paris by default),
    /// "23/11/2026 15:05 CET" (fr) or "2026-11-23 15:05 CET" (en).
    pub time: SystemTime,
    /// The user name, or the client address when the request was not authenticated.
    pub who: &'a str,
    pub unblock: UnblockOffer<'a>,
    /// What the content checks found (`2 × nir (French social security number)`),
    /// already in the right language; never the text found itself.
    pub found: Option<&'a str>,
}

/// What the person can do about the block.
pub enum UnblockOffer<'a> {
    /// A button (a link styled as a button, so it works without JavaScript) to the
    /// portal's request form. `href` is escaped here; the caller builds it.
    Offer { href: &'a str },
    /// The rule is not overridable: say the site cannot be opened and why (the law /
    /// security), no button.
    NotOverridable,
}

/// How many characters of the blocked URL the page shows; a longer one is cut with "…".
pub const URL_SHOWN_MAX: usize = 512;

/// The words of the pages, in one language: the templates' `t`. They are HTML (`&nbsp;`
/// before French colons), written here and marked safe, never escaped.
#[derive(serde::Serialize)]
struct Words {
    block_title: &'static str,
    block_h1: &'static str,
    /// Before and after the host in the opening sentence.
    block_lead_before: &'static str,
    block_lead_after: &'static str,
    reason_h2: &'static str,
    reason_fallback: &'static str,
    details_h2: &'static str,
    site: &'static str,
    address: &'static str,
    category: &'static str,
    categories: &'static str,
    uncategorised: &'static str,
    found: &'static str,
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
    /// Before the IT service's phone and mail, at the foot of every page.
    support: &'static str,
    /// The logo's text when the town's name is not shown beside it.
    logo_alt: &'static str,
}

/// Non-breaking space before ":", "?" (French typography).
const FR: Words = Words {
    block_title: "Accès bloqué — charte informatique",
    block_h1: "Accès bloqué",
    block_lead_before: "L'accès à ",
    block_lead_after: " a été bloqué par le filtrage internet de la collectivité, en application de la charte informatique.",
    reason_h2: "Motif",
    reason_fallback: "Ce site est bloqué par la politique de filtrage de la collectivité (charte §6.3).",
    details_h2: "Détails",
    site: "Site",
    address: "Adresse",
    category: "Catégorie",
    categories: "Catégories",
    uncategorised: "Non catégorisé",
    found: "Détecté",
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
    support: "Support informatique&nbsp;:",
    logo_alt: "Logo de la collectivité",
};

const EN: Words = Words {
    block_title: "Access blocked — IT charter",
    block_h1: "Access blocked",
    block_lead_before: "Access to ",
    block_lead_after: " was blocked by the authority's web filtering, under the IT charter.",
    reason_h2: "Reason",
    reason_fallback: "This site is blocked by the authority's filtering policy (charter §6.3).",
    details_h2: "Details",
    site: "Site",
    address: "Address",
    category: "Category",
    categories: "Categories",
    uncategorised: "Uncategorised",
    found: "Found",
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
    support: "IT support:",
    logo_alt: "The authority's logo",
};

fn words(lang: Lang) -> &'static Words {
    match lang {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
}

/// The words of `lang` as the templates' `t`: every field a safe string.
pub(super) fn words_value(lang: Lang) -> Value {
    super::templates::safe_words(words(lang))
}

/// Renders `name`, or on error (which the samples tried at load make unlikely) logs it
/// and answers a bare page with `heading`: never a blank page.
pub(super) fn render_or_bare(
    pages: &Pages,
    name: &str,
    lang: Lang,
    page: Value,
    heading: &str,
) -> String {
    match pages.render(name, lang, page) {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(template = name, "cannot render the page: {e:#}");
            format!(
                "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n<title>{h}</title>\n</head>\n<body>\n<h1>{h}</h1>\n</body>\n</html>\n",
                lang.code(),
                h = html_escape(heading),
            )
        }
    }
}

/// The block page: a full HTML document, to be served with status 403.
pub fn render_block_page(p: &BlockPage) -> String {
    current().block_page(p)
}

/// Short page for someone who browsed to the proxy port itself (origin-form request):
/// says this is the authority's filtering proxy, how to configure the browser (PAC URL
/// or proxy address, each left out when empty), and links to the portal.
pub fn render_help_page(lang: Lang, proxy_addr: &str, pac_url: &str, portal_url: &str) -> String {
    current().help_page(lang, proxy_addr, pac_url, portal_url)
}

impl Pages {
    /// [`render_block_page`] with this set (`block.html`).
    pub fn block_page(&self, p: &BlockPage) -> String {
        let (url, url_cut) = cut(p.url, URL_SHOWN_MAX);
        let secs = p
            .time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let (shown, machine) = self.time(secs, p.lang);
        let offer_href = match p.unblock {
            UnblockOffer::Offer { href } => Some(href),
            UnblockOffer::NotOverridable => None,
        };
        let page = context! {
            host => p.host,
            url => url,
            url_cut => url_cut,
            categories => p.categories,
            reason => p.reason.trim(),
            reason_code => p.reason_code,
            rule => p.rule,
            time => context! { shown => shown, machine => machine },
            who => p.who,
            offer_href => offer_href,
            found => p.found,
        };
        render_or_bare(self, "block.html", p.lang, page, words(p.lang).block_h1)
    }

    /// [`render_help_page`] with this set (`help.html`).
    pub fn help_page(
        &self,
        lang: Lang,
        proxy_addr: &str,
        pac_url: &str,
        portal_url: &str,
    ) -> String {
        let page = context! { proxy_addr, pac_url, portal_url };
        render_or_bare(self, "help.html", lang, page, words(lang).help_h1)
    }

    /// [`render_error_page`] with this set (`error.html`).
    pub fn error_page(&self, lang: Lang, status: u16, title: &str, detail: &str) -> String {
        let (detail, detail_cut) = cut(detail.trim(), URL_SHOWN_MAX);
        let page = context! {
            status,
            title,
            explanation => Value::from_safe_string(explain_status(lang, status).to_owned()),
            detail,
            detail_cut,
        };
        render_or_bare(self, "error.html", lang, page, title)
    }
}

/// Renders every page on sample values, in both languages and in each variant, so that a
/// template that would fail on a request fails at load instead.
pub(super) fn try_samples(pages: &Pages) -> Result<(), minijinja::Error> {
    for lang in [Lang::Fr, Lang::En] {
        for (offer, rule, cats) in [
            (
                Some("https://portal.example/?t=x"),
                Some("rule"),
                &["a", "b"][..],
            ),
            (None, None, &[][..]),
        ] {
            let page = context! {
                host => "site.example",
                url => "https://site.example/",
                url_cut => false,
                categories => cats,
                reason => "",
                reason_code => "block-rule",
                rule => rule,
                time => context! { shown => "01/01/2026 12:00 CET", machine => "2026-01-01T12:00:00+01:00" },
                who => "10.0.0.1",
                offer_href => offer,
            };
            pages.render("block.html", lang, page)?;
        }
        for v in ["", "x"] {
            pages.render(
                "help.html",
                lang,
                context! { proxy_addr => v, pac_url => v, portal_url => v },
            )?;
            let page = context! { status => 502, title => "t", explanation => "e", detail => v, detail_cut => false };
            pages.render("error.html", lang, page)?;
        }
    }
    Ok(())
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
    current().error_page(lang, status, title, detail)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::pages::negotiate_lang;

    /// 2026-11-23 14:05:09 UTC.
    fn fixed_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_442_709)
    }

    fn page<'a>(lang: Lang, unblock: UnblockOffer<'a>, categories: &'a [&'a str]) -> BlockPage<'a> {
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
            found: None,
        }
    }

    const OFFER: UnblockOffer<'static> = UnblockOffer::Offer {
        href: "https://proxy.arras.example/demandes/nouvelle?t=eyJ1cmwiOiJodHRwcyJ9.c2ln",
    };

    #[test]
    fn fixed_time_is_the_documented_one() {
        let pages = current();
        assert_eq!(
            pages.time(1_795_442_709, Lang::Fr).0,
            "23/11/2026 15:05 CET"
        );
        assert_eq!(
            pages.time(1_795_442_709, Lang::En),
            (
                "2026-11-23 15:05 CET".to_owned(),
                "2026-11-23T15:05:09+01:00".to_owned()
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
            UnblockOffer::NotOverridable,
            &["Jeux d'argent", "Publicité"],
        ));
        insta::assert_snapshot!(html);
    }

    #[test]
    fn block_page_en_not_overridable() {
        let html = render_block_page(&page(Lang::En, UnblockOffer::NotOverridable, &[]));
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
            unblock: UnblockOffer::Offer { href: &href },
            found: None,
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
            ..page(Lang::Fr, UnblockOffer::NotOverridable, &[])
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
}
