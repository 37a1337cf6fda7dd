//! The pages of the portal listener, the user's side of the unblock flow: the form behind
//! the block page's button (filled in from the signed token), the acknowledgement with
//! the request's number, and the pages that follow a request. Everything shown is escaped.

// HTML fragments end in a newline by design.
#![allow(clippy::write_with_newline)]

use std::fmt::Write as _;

use super::frame::{date, html_escape as e, render_page};
use crate::policy::{Lang, Policy};
use crate::unblock::store::{MAX_JUSTIFICATION, RequestRow, Status};
use crate::unblock::token::Claims;
use crate::unblock::{WANTED, reason_for};

/// The reason the policy gives for what the token says blocked, in `lang`.
fn reason_of(policy: &Policy, c: &Claims, lang: Lang) -> (String, bool) {
    reason_for(policy, c.rule.as_deref(), &c.reason_code, lang)
}

fn facts(out: &mut String, c: &Claims, reason: &str, lang: Lang) {
    let (site, cats, why, asked) = match lang {
        Lang::Fr => ("Site", "Catégories", "Motif du blocage", "Demandé par"),
        Lang::En => ("Site", "Categories", "Why it was blocked", "Asked by"),
    };
    let _ = write!(
        out,
        "<dl><dt>{site}</dt><dd><code>{}</code></dd><dt>{cats}</dt><dd>{}</dd>\
         <dt>{why}</dt><dd>{}</dd><dt>{asked}</dt><dd>{}</dd></dl>\n",
        e(&c.url),
        e(&if c.categories.is_empty() {
            "-".to_string()
        } else {
            c.categories.join(", ")
        }),
        e(reason),
        e(c.user.as_deref().unwrap_or(&c.ip)),
    );
}

/// The form, or the page saying the site cannot be opened.
pub fn form_page(
    policy: &Policy,
    c: &Claims,
    token: &str,
    lang: Lang,
    error: Option<&str>,
) -> String {
    let (reason, overridable) = reason_of(policy, c, lang);
    let mut b = String::new();
    if !overridable {
        let (title, text) = match lang {
            Lang::Fr => (
                "Ce site ne peut pas être ouvert",
                "La règle qui le bloque ne peut pas faire l'objet d'une demande : elle applique la loi ou protège le système d'information.",
            ),
            Lang::En => (
                "This site cannot be opened",
                "The rule that blocks it cannot be waived on request: it applies the law or protects the information system.",
            ),
        };
        let _ = write!(b, "<h1>{title}</h1>\n<p>{text}</p>\n");
        facts(&mut b, c, &reason, lang);
        return render_page(lang, title, false, &b);
    }
    let (title, intro, why, why_help, how_long, no_pref, send) = match lang {
        Lang::Fr => (
            "Demander l'ouverture d'un site",
            "L'administration examine chaque demande au regard de vos missions et des contraintes de sécurité (charte §6.3).",
            "Pourquoi ce site est-il nécessaire à vos missions ?",
            "Obligatoire, 2000 caractères au plus.",
            "Pour combien de temps ?",
            "Je ne sais pas",
            "Envoyer la demande",
        ),
        Lang::En => (
            "Ask for a site to be opened",
            "The administration assesses each request against your missions and security constraints (charter §6.3).",
            "Why is this site needed for your missions?",
            "Required, at most 2000 characters.",
            "For how long?",
            "I don't know",
            "Send the request",
        ),
    };
    let _ = write!(b, "<h1>{title}</h1>\n<p>{intro}</p>\n");
    facts(&mut b, c, &reason, lang);
    if let Some(err) = error {
        let _ = write!(b, "<p role=\"alert\"><strong>{}</strong></p>\n", e(err));
    }
    let _ = write!(
        b,
        "<form method=\"post\" action=\"/demande\">\n\
         <input type=\"hidden\" name=\"token\" value=\"{}\">\n\
         <label for=\"justification\">{why}</label>\n\
         <textarea id=\"justification\" name=\"justification\" required maxlength=\"{MAX_JUSTIFICATION}\" aria-describedby=\"jh\"></textarea>\n\
         <p id=\"jh\" class=\"muted\">{why_help}</p>\n\
         <label for=\"wanted\">{how_long}</label>\n<select id=\"wanted\" name=\"wanted\">\n\
         <option value=\"\">{no_pref}</option>\n",
        e(token)
    );
    for (v, fr, en) in WANTED {
        let label = if lang == Lang::Fr { fr } else { en };
        let _ = writeln!(b, "<option value=\"{v}\">{label}</option>");
    }
    let _ = write!(
        b,
        "</select>\n<button type=\"submit\">{send}</button>\n</form>\n"
    );
    render_page(lang, title, true, &b)
}

/// The acknowledgement: the number and where to follow it.
pub fn done_page(id: i64, merged: bool, follow: &str, lang: Lang) -> String {
    let (title, text, link, mine) = match lang {
        Lang::Fr => (
            format!("Demande n° {id} enregistrée"),
            if merged {
                "Vous aviez déjà une demande en attente pour ce site : votre message y a été ajouté."
            } else {
                "L'administration va l'examiner. Vous pouvez suivre sa décision ici :"
            },
            "Suivre la demande",
            "Toutes mes demandes",
        ),
        Lang::En => (
            format!("Request no. {id} recorded"),
            if merged {
                "You already had a pending request for this site: your message was added to it."
            } else {
                "The administration will assess it. Follow its decision here:"
            },
            "Follow the request",
            "All my requests",
        ),
    };
    let body = format!(
        "<h1>{}</h1>\n<p>{text}</p>\n<p><a class=\"button\" href=\"{}\">{link}</a></p>\n\
         <p><a href=\"/mes-demandes\">{mine}</a></p>\n",
        e(&title),
        e(follow)
    );
    render_page(lang, &title, true, &body)
}

/// The status of a request in words.
pub fn status_text(r: &RequestRow, lang: Lang, now: i64) -> String {
    match (r.status, lang) {
        (Status::Pending, Lang::Fr) => "En attente de décision".into(),
        (Status::Pending, Lang::En) => "Waiting for a decision".into(),
        (Status::Approved, _) => match r.until {
            Some(u) if u <= now => match lang {
                Lang::Fr => format!("Approuvée, expirée le {}", date(u, lang)),
                Lang::En => format!("Approved, expired on {}", date(u, lang)),
            },
            Some(u) => match lang {
                Lang::Fr => format!("Approuvée jusqu'au {}", date(u, lang)),
                Lang::En => format!("Approved until {}", date(u, lang)),
            },
            None => match lang {
                Lang::Fr => "Approuvée, sans limite de durée".into(),
                Lang::En => "Approved, with no end".into(),
            },
        },
        (Status::Refused, Lang::Fr) => "Refusée".into(),
        (Status::Refused, Lang::En) => "Refused".into(),
    }
}

/// One request as its author sees it.
pub fn request_page(r: &RequestRow, lang: Lang, now: i64) -> String {
    let title = match lang {
        Lang::Fr => format!("Demande n° {}", r.id),
        Lang::En => format!("Request no. {}", r.id),
    };
    let (site, status, msg, sent) = match lang {
        Lang::Fr => ("Site", "État", "Message de l'administration", "Envoyée le"),
        Lang::En => (
            "Site",
            "Status",
            "Message from the administration",
            "Sent on",
        ),
    };
    let mut b = format!("<h1>{}</h1>\n<dl>", e(&title));
    let _ = write!(
        b,
        "<dt>{site}</dt><dd><code>{}</code></dd><dt>{sent}</dt><dd>{}</dd>\
         <dt>{status}</dt><dd><strong>{}</strong></dd>",
        e(&r.host),
        date(r.created, lang),
        e(&status_text(r, lang, now))
    );
    if let Some(m) = r.message.as_deref().filter(|m| !m.is_empty()) {
        let _ = write!(b, "<dt>{msg}</dt><dd>{}</dd>", e(m));
    }
    b.push_str("</dl>\n");
    render_page(lang, &title, true, &b)
}

/// A user's requests.
pub fn list_page(rows: &[RequestRow], lang: Lang, now: i64) -> String {
    let (title, none, site, status, no) = match lang {
        Lang::Fr => ("Mes demandes", "Aucune demande.", "Site", "État", "N°"),
        Lang::En => ("My requests", "No request.", "Site", "Status", "No."),
    };
    let mut b = format!("<h1>{title}</h1>\n");
    if rows.is_empty() {
        let _ = writeln!(b, "<p>{none}</p>");
    } else {
        let _ = write!(
            b,
            "<table><thead><tr><th>{no}</th><th>{site}</th><th>{status}</th></tr></thead><tbody>\n"
        );
        for r in rows {
            let mut st = status_text(r, lang, now);
            if let Some(m) = r.message.as_deref().filter(|m| !m.is_empty()) {
                st.push_str(" — ");
                st.push_str(m);
            }
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                r.id,
                e(&r.host),
                e(&st)
            );
        }
        b.push_str("</tbody></table>\n");
    }
    render_page(lang, title, true, &b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::admin::tests::{policy, row};

    fn claims(rule: &str) -> Claims {
        Claims {
            url: "http://casino.example/x?a=1&b=2".into(),
            host: "casino.example".into(),
            rule: Some(rule.into()),
            reason_code: "rule-block".into(),
            categories: vec!["gambling".into(), "ads".into()],
            user: Some("c.martin".into()),
            ip: "10.0.0.5".into(),
            groups: vec!["agents".into()],
            iat: 1_700_000_000,
        }
    }

    /// Every page of the portal, in both languages and in each variant: what people see,
    /// kept by snapshots.
    #[test]
    fn portal_pages() {
        let policy = policy();
        let now = 1_800_000_000;
        let mut rows = vec![row("casino.example", "pour le travail")];
        let mut approved = row("approved.example", "x");
        approved.id = 4;
        approved.status = Status::Approved;
        approved.until = Some(now + 86_400);
        approved.message = Some("Ouvert <30 jours>".into());
        let mut expired = row("expired.example", "x");
        expired.id = 5;
        expired.status = Status::Approved;
        expired.until = Some(now - 86_400);
        let mut forever = row("forever.example", "x");
        forever.id = 6;
        forever.status = Status::Approved;
        let mut refused = row("refused.example", "x");
        refused.id = 7;
        refused.status = Status::Refused;
        refused.message = Some("Non : <b>pas pour ce poste</b>".into());
        rows.extend([approved, expired, forever, refused]);
        let mut all = String::new();
        for lang in [Lang::Fr, Lang::En] {
            let mut add = |name: &str, html: String| {
                all.push_str(&format!("===== {name} {}\n{html}", lang.code()));
            };
            add(
                "form",
                form_page(&policy, &claims("jeux"), "TOKEN\"x", lang, None),
            );
            add(
                "form with error",
                form_page(
                    &policy,
                    &claims("jeux"),
                    "TOKEN",
                    lang,
                    Some("Trop <court>"),
                ),
            );
            add(
                "form not overridable",
                form_page(&policy, &claims("loi"), "TOKEN", lang, None),
            );
            add("done", done_page(3, false, "/mes-demandes/3?a=1&b=2", lang));
            add("done merged", done_page(3, true, "/mes-demandes/3", lang));
            for r in &rows {
                add("request", request_page(r, lang, now));
            }
            add("list", list_page(&rows, lang, now));
            add("list empty", list_page(&[], lang, now));
        }
        // The style sheet is the same on every page (and kept by the block page's snapshots).
        insta::with_settings!({filters => vec![(r"<style>.*</style>", "<style>…</style>")]}, {
            insta::assert_snapshot!(all);
        });
    }
}
