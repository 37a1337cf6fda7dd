//! The pages of the portal listener, the user's side of the unblock flow: the form behind
//! the block page's button (filled in from the signed token), the acknowledgement with
//! the request's number, and the pages that follow a request.
//!
//! The HTML is in the templates `portal-*.html` (with `page.html` around them); this
//! module gives them plain values and the words of each language (`t.portal`), and the
//! templates escape what they print.

use minijinja::{Value, context};

use super::frame::When;
use super::proxy::render_or_bare;
use super::templates::{Pages, current};
use crate::policy::{Lang, Policy};
use crate::unblock::store::{MAX_JUSTIFICATION, RequestRow, Status};
use crate::unblock::token::Claims;
use crate::unblock::{WANTED, reason_for};

/// The words of the portal's pages in one language: the templates' `t.portal`. HTML,
/// written here and marked safe, never escaped.
#[derive(serde::Serialize)]
pub(super) struct Words {
    site: &'static str,
    categories: &'static str,
    why_blocked: &'static str,
    asked_by: &'static str,
    closed_title: &'static str,
    closed_text: &'static str,
    form_title: &'static str,
    form_intro: &'static str,
    why: &'static str,
    why_help: &'static str,
    how_long: &'static str,
    no_preference: &'static str,
    send: &'static str,
    /// Before a request's number ("Demande n° 3").
    request_no: &'static str,
    /// After "Demande n° 3".
    recorded: &'static str,
    done_new: &'static str,
    done_merged: &'static str,
    follow: &'static str,
    all_mine: &'static str,
    pending: &'static str,
    /// Before the date.
    approved_expired: &'static str,
    /// Before the date.
    approved_until: &'static str,
    approved_no_end: &'static str,
    refused: &'static str,
    status: &'static str,
    admin_message: &'static str,
    sent: &'static str,
    list_title: &'static str,
    no_request: &'static str,
    number: &'static str,
}

const FR: Words = Words {
    site: "Site",
    categories: "Catégories",
    why_blocked: "Motif du blocage",
    asked_by: "Demandé par",
    closed_title: "Ce site ne peut pas être ouvert",
    closed_text: "La règle qui le bloque ne peut pas faire l'objet d'une demande : elle applique la loi ou protège le système d'information.",
    form_title: "Demander l'ouverture d'un site",
    form_intro: "L'administration examine chaque demande au regard de vos missions et des contraintes de sécurité (charte §6.3).",
    why: "Pourquoi ce site est-il nécessaire à vos missions ?",
    why_help: "Obligatoire, 2000 caractères au plus.",
    how_long: "Pour combien de temps ?",
    no_preference: "Je ne sais pas",
    send: "Envoyer la demande",
    request_no: "Demande n°",
    recorded: "enregistrée",
    done_new: "L'administration va l'examiner. Vous pouvez suivre sa décision ici :",
    done_merged: "Vous aviez déjà une demande en attente pour ce site : votre message y a été ajouté.",
    follow: "Suivre la demande",
    all_mine: "Toutes mes demandes",
    pending: "En attente de décision",
    approved_expired: "Approuvée, expirée le",
    approved_until: "Approuvée jusqu'au",
    approved_no_end: "Approuvée, sans limite de durée",
    refused: "Refusée",
    status: "État",
    admin_message: "Message de l'administration",
    sent: "Envoyée le",
    list_title: "Mes demandes",
    no_request: "Aucune demande.",
    number: "N°",
};

const EN: Words = Words {
    site: "Site",
    categories: "Categories",
    why_blocked: "Why it was blocked",
    asked_by: "Asked by",
    closed_title: "This site cannot be opened",
    closed_text: "The rule that blocks it cannot be waived on request: it applies the law or protects the information system.",
    form_title: "Ask for a site to be opened",
    form_intro: "The administration assesses each request against your missions and security constraints (charter §6.3).",
    why: "Why is this site needed for your missions?",
    why_help: "Required, at most 2000 characters.",
    how_long: "For how long?",
    no_preference: "I don't know",
    send: "Send the request",
    request_no: "Request no.",
    recorded: "recorded",
    done_new: "The administration will assess it. Follow its decision here:",
    done_merged: "You already had a pending request for this site: your message was added to it.",
    follow: "Follow the request",
    all_mine: "All my requests",
    pending: "Waiting for a decision",
    approved_expired: "Approved, expired on",
    approved_until: "Approved until",
    approved_no_end: "Approved, with no end",
    refused: "Refused",
    status: "Status",
    admin_message: "Message from the administration",
    sent: "Sent on",
    list_title: "My requests",
    no_request: "No request.",
    number: "No.",
};

pub(super) fn words(lang: Lang) -> &'static Words {
    match lang {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
}

/// A duration one may ask for (or grant), with its label in the page's language.
#[derive(serde::Serialize)]
pub(super) struct Duration {
    value: &'static str,
    label: &'static str,
}

/// The durations of [`WANTED`] in `lang`.
pub(super) fn durations(lang: Lang) -> Vec<Duration> {
    WANTED
        .iter()
        .map(|&(value, fr, en)| Duration {
            value,
            label: if lang == Lang::Fr { fr } else { en },
        })
        .collect()
}

/// A request as its author sees it (`request` of `portal-request.html`).
#[derive(serde::Serialize)]
struct RequestView<'a> {
    id: i64,
    host: &'a str,
    created: When,
    /// `pending`, `approved` or `refused`.
    status: &'static str,
    /// `None`: no end (or not approved).
    until: Option<When>,
    /// Approved, and its end has passed.
    expired: bool,
    /// The administration's message, `None` when there is none.
    message: Option<&'a str>,
}

impl Pages {
    fn request_view<'a>(&self, r: &'a RequestRow, lang: Lang, now: i64) -> RequestView<'a> {
        RequestView {
            id: r.id,
            host: &r.host,
            created: self.when(r.created, lang),
            status: r.status.as_str(),
            until: r
                .until
                .filter(|_| r.status == Status::Approved)
                .map(|u| self.when(u, lang)),
            expired: r.status == Status::Approved && r.until.is_some_and(|u| u <= now),
            message: r.message.as_deref().filter(|m| !m.is_empty()),
        }
    }
}

/// The form (`portal-form.html`), or the page saying the site cannot be opened
/// (`portal-closed.html`) when the rule that blocked is not overridable.
pub fn form_page(
    policy: &Policy,
    c: &Claims,
    token: &str,
    lang: Lang,
    error: Option<&str>,
) -> String {
    current().form_page(policy, c, token, lang, error)
}

/// The acknowledgement (`portal-done.html`): the number and where to follow it.
pub fn done_page(id: i64, merged: bool, follow: &str, lang: Lang) -> String {
    current().done_page(id, merged, follow, lang)
}

/// One request as its author sees it (`portal-request.html`).
pub fn request_page(r: &RequestRow, lang: Lang, now: i64) -> String {
    current().request_page(r, lang, now)
}

/// A user's requests (`portal-list.html`).
pub fn list_page(rows: &[RequestRow], lang: Lang, now: i64) -> String {
    current().list_page(rows, lang, now)
}

/// The template and the values of the form or of the page saying the site cannot be
/// opened.
fn form_values(
    c: &Claims,
    reason: &str,
    overridable: bool,
    token: &str,
    lang: Lang,
    error: Option<&str>,
) -> (&'static str, Value) {
    let name = if overridable {
        "portal-form.html"
    } else {
        "portal-closed.html"
    };
    let page = context! {
        url => &c.url,
        categories => &c.categories,
        reason,
        user => &c.user,
        ip => &c.ip,
        token,
        error,
        durations => durations(lang),
        max_justification => MAX_JUSTIFICATION,
    };
    (name, page)
}

fn done_values(id: i64, merged: bool, follow: &str) -> Value {
    context! { id, merged, follow }
}

impl Pages {
    /// [`form_page`] with this set.
    pub fn form_page(
        &self,
        policy: &Policy,
        c: &Claims,
        token: &str,
        lang: Lang,
        error: Option<&str>,
    ) -> String {
        let (reason, overridable) = reason_for(policy, c.rule.as_deref(), &c.reason_code, lang);
        let (name, page) = form_values(c, &reason, overridable, token, lang, error);
        let w = words(lang);
        let heading = if overridable {
            w.form_title
        } else {
            w.closed_title
        };
        render_or_bare(self, name, lang, page, heading)
    }

    /// [`done_page`] with this set.
    pub fn done_page(&self, id: i64, merged: bool, follow: &str, lang: Lang) -> String {
        let w = words(lang);
        let heading = format!("{} {id} {}", w.request_no, w.recorded);
        let page = done_values(id, merged, follow);
        render_or_bare(self, "portal-done.html", lang, page, &heading)
    }

    /// [`request_page`] with this set.
    pub fn request_page(&self, r: &RequestRow, lang: Lang, now: i64) -> String {
        let heading = format!("{} {}", words(lang).request_no, r.id);
        let page = context! { request => self.request_view(r, lang, now) };
        render_or_bare(self, "portal-request.html", lang, page, &heading)
    }

    /// [`list_page`] with this set.
    pub fn list_page(&self, rows: &[RequestRow], lang: Lang, now: i64) -> String {
        let requests: Vec<_> = rows
            .iter()
            .map(|r| self.request_view(r, lang, now))
            .collect();
        let page = context! { requests };
        render_or_bare(self, "portal-list.html", lang, page, words(lang).list_title)
    }
}

/// A request of each status (approved with an end to come, past, and without one), for
/// the samples the templates are tried on at load.
pub(super) fn sample_rows(now: i64) -> Vec<RequestRow> {
    let base = RequestRow {
        id: 1,
        created: now,
        updated: now,
        requester: "user:sample".into(),
        user: Some("sample".into()),
        ip: "10.0.0.1".into(),
        groups: vec!["g1".into(), "g2".into()],
        host: "site.example".into(),
        url: "https://site.example/".into(),
        categories: vec!["a".into(), "b".into()],
        rule: Some("rule".into()),
        reason_code: "block-rule".into(),
        justification: "j".into(),
        wanted: Some("7d".into()),
        asked: 2,
        status: Status::Pending,
        scope: None,
        until: None,
        decided_by: None,
        decided_at: None,
        message: None,
    };
    let decided = |status, until: Option<i64>, message: Option<&str>| RequestRow {
        status,
        until,
        message: message.map(Into::into),
        user: None,
        groups: Vec::new(),
        categories: Vec::new(),
        rule: None,
        wanted: None,
        asked: 1,
        ..base.clone()
    };
    vec![
        decided(Status::Approved, Some(now + 1), Some("m")),
        decided(Status::Approved, Some(now - 1), None),
        decided(Status::Approved, None, None),
        decided(Status::Refused, None, Some("m")),
        base,
    ]
}

/// Renders every portal page on sample values, in both languages and in each variant,
/// so that a template that would fail on a request fails at load instead.
pub(super) fn try_samples(pages: &Pages) -> Result<(), minijinja::Error> {
    let now = 1_800_000_000;
    let rows = sample_rows(now);
    for lang in [Lang::Fr, Lang::En] {
        for (user, cats, error) in [
            (
                Some("sample"),
                vec!["a".to_owned(), "b".to_owned()],
                Some("e"),
            ),
            (None, Vec::new(), None),
        ] {
            let c = Claims {
                url: "https://site.example/".into(),
                host: "site.example".into(),
                rule: None,
                reason_code: "block-rule".into(),
                categories: cats,
                user: user.map(Into::into),
                ip: "10.0.0.1".into(),
                groups: Vec::new(),
                iat: 0,
            };
            for overridable in [true, false] {
                let (name, page) = form_values(&c, "r", overridable, "token", lang, error);
                pages.render(name, lang, page)?;
            }
        }
        for merged in [true, false] {
            pages.render("portal-done.html", lang, done_values(1, merged, "/x"))?;
        }
        for r in &rows {
            let page = context! { request => pages.request_view(r, lang, now) };
            pages.render("portal-request.html", lang, page)?;
        }
        for rows in [&rows[..], &[]] {
            let requests: Vec<_> = rows
                .iter()
                .map(|r| pages.request_view(r, lang, now))
                .collect();
            pages.render("portal-list.html", lang, context! { requests })?;
        }
    }
    Ok(())
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

    #[test]
    fn hostile_values_are_escaped_on_every_portal_page() {
        const HOSTILE: &str = "\"><script>alert('x')</script><img src=x onerror=alert(1)>";
        let policy = policy();
        let hostile_claims = |rule: &str| Claims {
            url: format!("http://e.example/{HOSTILE}"),
            categories: vec![HOSTILE.into()],
            user: Some(HOSTILE.into()),
            ..claims(rule)
        };
        let mut r = row(HOSTILE, HOSTILE);
        r.status = Status::Refused;
        r.message = Some(HOSTILE.into());
        let pages = [
            form_page(
                &policy,
                &hostile_claims("jeux"),
                HOSTILE,
                Lang::Fr,
                Some(HOSTILE),
            ),
            form_page(&policy, &hostile_claims("loi"), HOSTILE, Lang::En, None),
            done_page(1, false, HOSTILE, Lang::Fr),
            request_page(&r, Lang::En, 0),
            list_page(std::slice::from_ref(&r), Lang::Fr, 0),
        ];
        for html in pages {
            assert!(!html.contains("<script"), "{html}");
            assert!(!html.contains("<img"), "{html}");
            assert!(
                html.contains("&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
                "{html}"
            );
        }
    }
}
