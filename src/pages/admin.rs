//! The administrators' pages: login, pending requests with their decision forms, and the
//! history of decisions. French by default, English when the browser asks for it. Every
//! value that came from a user, a token or the store is escaped here; every form carries
//! the session's CSRF token.

// HTML fragments end in a newline by design.
#![allow(clippy::write_with_newline)]

use std::fmt::Write as _;
use std::path::Path;

use super::frame::{date, html_escape as e, render_admin_page};
use crate::policy::{Lang, Policy};
use crate::unblock::store::{DecisionRow, MAX_MESSAGE, RequestRow, Status};
use crate::unblock::{WANTED, reason_for};

/// A pending request with what the page shows beside it.
pub struct Pending {
    pub row: RequestRow,
    /// Blocks of the site for the requester in the last 30 days.
    pub blocks_30d: i64,
}

/// A message at the top of the list.
pub enum Flash {
    Done(String),
    Error(String),
}

/// The login form. `csrf` goes in the form and in the login cookie; `admins_file`: the
/// administrators' file of this proxy, named with the command that fills it when
/// `no_admins`.
pub fn login_page(
    lang: Lang,
    csrf: &str,
    error: Option<&str>,
    no_admins: bool,
    admins_file: &Path,
) -> String {
    let (title, user, pass, send, none, name) = match lang {
        Lang::Fr => (
            "Administration du filtrage — connexion",
            "Identifiant",
            "Mot de passe",
            "Se connecter",
            "Aucun compte d'administration n'existe encore. Sur le serveur, créez-en un avec",
            "NOM",
        ),
        Lang::En => (
            "Filtering administration — log in",
            "User name",
            "Password",
            "Log in",
            "No administrator account exists yet. On the server, create one with",
            "NAME",
        ),
    };
    let mut b = format!("<h1>{title}</h1>\n");
    if no_admins {
        let file = admins_file.display().to_string();
        let _ = write!(
            b,
            "<p class=\"notice\">{none} <code>charte-proxy admins add {name} --file {}</code></p>\n",
            e(&shell_word(&file))
        );
    }
    if let Some(err) = error {
        let _ = write!(b, "<p class=\"error\" role=\"alert\">{}</p>\n", e(err));
    }
    let _ = write!(
        b,
        "<form method=\"post\" action=\"/connexion\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\n\
         <label for=\"user\">{user}</label>\n\
         <input type=\"text\" id=\"user\" name=\"user\" autocomplete=\"username\" required>\n\
         <label for=\"password\">{pass}</label>\n\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\n\
         <button type=\"submit\">{send}</button>\n</form>\n",
        e(csrf)
    );
    render_admin_page(lang, title, "", &b)
}

/// `w` as one shell word: quoted when it holds anything but safe characters.
pub fn shell_word(w: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:,@".contains(c);
    if !w.is_empty() && w.chars().all(safe) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// The navigation bar with the logout form.
pub(super) fn nav(lang: Lang, admin: &str, csrf: &str) -> String {
    let dashboard = match lang {
        Lang::Fr => "Tableau de bord",
        Lang::En => "Dashboard",
    };
    let (pending, history, csv, logout, who) = match lang {
        Lang::Fr => (
            "Demandes en attente",
            "Historique",
            "Exporter l'historique (CSV)",
            "Se déconnecter",
            "Connecté",
        ),
        Lang::En => (
            "Pending requests",
            "History",
            "Export the history (CSV)",
            "Log out",
            "Logged in",
        ),
    };
    format!(
        "<nav aria-label=\"Administration\"><a href=\"/demandes\">{pending}</a>\
         <a href=\"/historique\">{history}</a><a href=\"/historique.csv\">{csv}</a>\
         <a href=\"/tableau-de-bord\">{dashboard}</a>\
         <form method=\"post\" action=\"/deconnexion\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <span class=\"muted\">{who} : {}</span> <button type=\"submit\">{logout}</button></form></nav>\n",
        e(csrf),
        e(admin)
    )
}

fn who(r: &RequestRow) -> String {
    match &r.user {
        Some(u) => format!("{u} ({})", r.ip),
        None => r.ip.clone(),
    }
}

fn list_or_dash(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(", ")
    }
}

/// The pending requests, newest first, each with its decision form.
pub fn pending_page(
    lang: Lang,
    policy: &Policy,
    admin: &str,
    csrf: &str,
    items: &[Pending],
    flash: Option<&Flash>,
) -> String {
    let t = Words::of(lang);
    let mut b = format!("<h1>{}</h1>\n", t.pending_title);
    match flash {
        Some(Flash::Done(m)) => {
            let _ = write!(b, "<p class=\"notice\" role=\"status\">{}</p>\n", e(m));
        }
        Some(Flash::Error(m)) => {
            let _ = write!(b, "<p class=\"error\" role=\"alert\">{}</p>\n", e(m));
        }
        None => {}
    }
    if items.is_empty() {
        let _ = write!(b, "<p>{}</p>\n", t.none_pending);
    } else {
        let _ = write!(b, "<p class=\"muted\">{}</p>\n", t.pending_intro);
    }
    for Pending { row: r, blocks_30d } in items {
        let id = r.id;
        let (reason, _) = reason_for(policy, r.rule.as_deref(), &r.reason_code, lang);
        let _ = write!(
            b,
            "<section class=\"request\" id=\"demande-{id}\" aria-labelledby=\"t{id}\">\n\
             <h2 id=\"t{id}\">{} {id} — <code>{}</code></h2>\n<dl>",
            t.number,
            e(&r.host)
        );
        let asked = if r.asked > 1 {
            format!(" ({} {}×)", t.asked, r.asked)
        } else {
            String::new()
        };
        let wanted = r
            .wanted
            .as_deref()
            .and_then(|w| WANTED.iter().find(|x| x.0 == w))
            .map_or(
                t.no_preference,
                |x| if lang == Lang::Fr { x.1 } else { x.2 },
            );
        let rows: [(&str, String); 8] = [
            (t.asked_by, e(&who(r)).into_owned()),
            (t.groups, e(&list_or_dash(&r.groups)).into_owned()),
            (t.address, format!("<code>{}</code>", e(&r.url))),
            (t.categories, e(&list_or_dash(&r.categories)).into_owned()),
            (
                t.rule,
                format!(
                    "<code>{}</code> — {}",
                    e(r.rule.as_deref().unwrap_or("default")),
                    e(&reason)
                ),
            ),
            (t.blocked, (t.blocked_n)(*blocks_30d)),
            (t.sent, format!("{}{asked}", date(r.created, lang))),
            (t.wanted, wanted.to_string()),
        ];
        for (k, v) in &rows {
            let _ = write!(b, "<dt>{k}</dt><dd>{v}</dd>");
        }
        let _ = write!(
            b,
            "</dl>\n<p><strong>{}</strong></p>\n<div class=\"why\">{}</div>\n",
            t.justification,
            e(&r.justification)
        );
        // The decision form.
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/demandes/{id}\">\n\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\n\
             <fieldset><legend>{}</legend>\n\
             <label><input type=\"radio\" name=\"scope\" value=\"requester\" checked> {} ({})</label>\n",
            e(csrf),
            t.open_for,
            t.this_person,
            e(&who(r))
        );
        for g in &r.groups {
            let _ = write!(
                b,
                "<label><input type=\"radio\" name=\"scope\" value=\"group:{}\"> {} {}</label>\n",
                e(g),
                t.the_group,
                e(g)
            );
        }
        let _ = write!(
            b,
            "<label><input type=\"radio\" name=\"scope\" value=\"everyone\"> {}</label>\n</fieldset>\n\
             <label for=\"duree-{id}\">{}</label>\n<select id=\"duree-{id}\" name=\"duration\">\n",
            t.everyone, t.duration
        );
        let chosen = r.wanted.as_deref().unwrap_or("30d");
        for (v, fr, en) in WANTED {
            let label = if lang == Lang::Fr { fr } else { en };
            let sel = if v == chosen { " selected" } else { "" };
            let _ = writeln!(b, "<option value=\"{v}\"{sel}>{label}</option>");
        }
        let _ = write!(
            b,
            "</select>\n<label for=\"message-{id}\">{}</label>\n\
             <textarea id=\"message-{id}\" name=\"message\" maxlength=\"{MAX_MESSAGE}\"></textarea>\n\
             <div class=\"actions\"><button type=\"submit\" name=\"decision\" value=\"approve\">{}</button>\
             <button type=\"submit\" name=\"decision\" value=\"refuse\" class=\"refuse\">{}</button></div>\n\
             </form>\n</section>\n",
            t.message, t.approve, t.refuse
        );
    }
    render_admin_page(lang, t.pending_title, &nav(lang, admin, csrf), &b)
}

/// Every decision, newest first.
pub fn history_page(lang: Lang, admin: &str, csrf: &str, rows: &[DecisionRow]) -> String {
    let t = Words::of(lang);
    let mut b = format!("<h1>{}</h1>\n", t.history_title);
    if rows.is_empty() {
        let _ = write!(b, "<p>{}</p>\n", t.no_decision);
    } else {
        let _ = write!(
            b,
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>Site</th>\
             <th>{}</th><th>{}</th><th>{}</th><th>Message</th></tr></thead><tbody>\n",
            t.number, t.when, t.admin, t.decision, t.asked_by, t.scope, t.until
        );
        for d in rows.iter().rev() {
            let status = match (d.status, lang) {
                (Status::Approved, Lang::Fr) => "approuvée",
                (Status::Approved, Lang::En) => "approved",
                (Status::Refused, Lang::Fr) => "refusée",
                (Status::Refused, Lang::En) => "refused",
                (Status::Pending, _) => "-",
            };
            let until = match (d.status, d.until) {
                (Status::Approved, Some(u)) => date(u, lang),
                (Status::Approved, None) => t.no_end.to_string(),
                _ => "-".into(),
            };
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{status}</td><td><code>{}</code></td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                d.request,
                date(d.at, lang),
                e(&d.admin),
                e(&d.host),
                e(&d.requester),
                e(d.scope.as_deref().unwrap_or("-")),
                e(&until),
                e(d.message.as_deref().unwrap_or(""))
            );
        }
        b.push_str("</tbody></table>\n");
    }
    render_admin_page(lang, t.history_title, &nav(lang, admin, csrf), &b)
}

/// The labels of the admin pages in one language.
struct Words {
    pending_title: &'static str,
    pending_intro: &'static str,
    none_pending: &'static str,
    number: &'static str,
    asked: &'static str,
    asked_by: &'static str,
    groups: &'static str,
    address: &'static str,
    categories: &'static str,
    rule: &'static str,
    blocked: &'static str,
    blocked_n: fn(i64) -> String,
    sent: &'static str,
    wanted: &'static str,
    no_preference: &'static str,
    justification: &'static str,
    open_for: &'static str,
    this_person: &'static str,
    the_group: &'static str,
    everyone: &'static str,
    duration: &'static str,
    message: &'static str,
    approve: &'static str,
    refuse: &'static str,
    history_title: &'static str,
    no_decision: &'static str,
    when: &'static str,
    admin: &'static str,
    decision: &'static str,
    scope: &'static str,
    until: &'static str,
    no_end: &'static str,
}

impl Words {
    fn of(lang: Lang) -> Words {
        match lang {
            Lang::Fr => Words {
                pending_title: "Demandes d'ouverture en attente",
                pending_intro: "Les plus récentes d'abord. Chaque décision est tracée avec votre identifiant et prend effet dans la seconde.",
                none_pending: "Aucune demande en attente.",
                number: "N°",
                asked: "envoyée",
                asked_by: "Demandée par",
                groups: "Groupes",
                address: "Adresse bloquée",
                categories: "Catégories",
                rule: "Règle",
                blocked: "Blocages (30 jours)",
                blocked_n: |n| match n {
                    0 => "aucun blocage compté".into(),
                    1 => "bloqué 1 fois pour cette personne".into(),
                    n => format!("bloqué {n} fois pour cette personne"),
                },
                sent: "Envoyée le",
                wanted: "Durée souhaitée",
                no_preference: "non précisée",
                justification: "Justification",
                open_for: "Ouvrir pour",
                this_person: "cette personne",
                the_group: "le groupe",
                everyone: "tout le monde",
                duration: "Durée",
                message: "Message à la personne (obligatoire pour un refus)",
                approve: "Approuver",
                refuse: "Refuser",
                history_title: "Historique des décisions",
                no_decision: "Aucune décision pour l'instant.",
                when: "Date",
                admin: "Décidée par",
                decision: "Décision",
                scope: "Portée",
                until: "Jusqu'au",
                no_end: "sans limite",
            },
            Lang::En => Words {
                pending_title: "Pending unblock requests",
                pending_intro: "Newest first. Each decision is recorded with your name and takes effect within a second.",
                none_pending: "No pending request.",
                number: "No.",
                asked: "sent",
                asked_by: "Asked by",
                groups: "Groups",
                address: "Blocked address",
                categories: "Categories",
                rule: "Rule",
                blocked: "Blocks (30 days)",
                blocked_n: |n| match n {
                    0 => "no block counted".into(),
                    1 => "blocked once for this person".into(),
                    n => format!("blocked {n} times for this person"),
                },
                sent: "Sent on",
                wanted: "Duration asked for",
                no_preference: "not given",
                justification: "Justification",
                open_for: "Open for",
                this_person: "this person",
                the_group: "the group",
                everyone: "everyone",
                duration: "Duration",
                message: "Message to the person (required to refuse)",
                approve: "Approve",
                refuse: "Refuse",
                history_title: "History of decisions",
                no_decision: "No decision yet.",
                when: "Date",
                admin: "Decided by",
                decision: "Decision",
                scope: "Scope",
                until: "Until",
                no_end: "no end",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(host: &str, why: &str) -> RequestRow {
        RequestRow {
            id: 3,
            created: 1_700_000_000,
            updated: 1_700_000_000,
            requester: "user:c.martin".into(),
            user: Some("c.martin".into()),
            ip: "10.0.0.5".into(),
            groups: vec!["agents".into(), "<g>".into()],
            host: host.into(),
            url: format!("http://{host}/x?a=1&b=2"),
            categories: vec!["gambling".into()],
            rule: Some("jeux".into()),
            reason_code: "rule-block".into(),
            justification: why.into(),
            wanted: Some("7d".into()),
            asked: 2,
            status: Status::Pending,
            scope: None,
            until: None,
            decided_by: None,
            decided_at: None,
            message: None,
        }
    }

    #[test]
    fn pending_page_escapes_everything_and_carries_the_csrf_token() {
        // An empty policy (no group, no rule, allow), built as the compiler would: the
        // admin pages do not import `config`.
        let policy = Policy {
            groups: crate::identity::GroupTable::default(),
            rules: Vec::new(),
            default: crate::policy::DefaultRule {
                action: crate::policy::Action::Allow,
                reason: None,
            },
            no_inspect: crate::policy::TagSet::new(0),
            internal: std::sync::Arc::default(),
        };
        let items = [Pending {
            row: row("casino.example", "<script>alert(1)</script>\"'"),
            blocks_30d: 4,
        }];
        let page = pending_page(Lang::Fr, &policy, "<b>admin</b>", "TOKEN\"x", &items, None);
        assert!(!page.contains("<script>alert(1)"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!page.contains("<b>admin</b>") && page.contains("&lt;b&gt;admin"));
        assert!(page.contains("value=\"group:&lt;g&gt;\""));
        assert!(page.contains("a=1&amp;b=2"));
        assert!(page.contains("bloqué 4 fois"));
        // Every form carries the token, escaped.
        let forms = page.matches("<form").count();
        assert_eq!(forms, 2, "decision + logout");
        assert_eq!(
            page.matches("name=\"csrf\" value=\"TOKEN&quot;x\"").count(),
            forms
        );
        // The duration the user asked for is preselected.
        assert!(page.contains("<option value=\"7d\" selected>"));
    }
}
