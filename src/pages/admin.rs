//! The administrators' pages: login, pending requests with their decision forms, the
//! history of decisions, and short messages. French by default, English when the
//! browser asks for it.
//!
//! The HTML is in the templates `admin-*.html` (with `page.html` around them); this
//! module gives them plain values and the words of each language (`t.admin`). The
//! templates escape every value that came from a user, a token or the store; every form
//! carries the session's CSRF token.

use std::path::Path;

use minijinja::{Value, context};

use super::frame::When;
use super::portal::{Duration, durations, sample_rows};
use super::proxy::render_or_bare;
use super::templates::{Pages, current};
use crate::policy::{Lang, Policy};
use crate::unblock::reason_for;
use crate::unblock::store::{DecisionRow, MAX_MESSAGE, RequestRow, Status};

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

/// The login form (`admin-login.html`). `csrf` goes in the form and in the login cookie;
/// `admins_file`: the administrators' file of this proxy, named with the command that
/// fills it when `no_admins`.
pub fn login_page(
    lang: Lang,
    csrf: &str,
    error: Option<&str>,
    no_admins: bool,
    admins_file: &Path,
) -> String {
    current().login_page(lang, csrf, error, no_admins, admins_file)
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

/// The pending requests (`admin-pending.html`), newest first, each with its decision
/// form.
pub fn pending_page(
    lang: Lang,
    policy: &Policy,
    admin: &str,
    csrf: &str,
    items: &[Pending],
    flash: Option<&Flash>,
) -> String {
    current().pending_page(lang, policy, admin, csrf, items, flash)
}

/// Every decision (`admin-history.html`), newest first.
pub fn history_page(lang: Lang, admin: &str, csrf: &str, rows: &[DecisionRow]) -> String {
    current().history_page(lang, admin, csrf, rows)
}

/// A short page of the admin listener (`admin-message.html`): `title` and `text` (may
/// be empty), both in `lang`.
pub fn message_page(lang: Lang, title: &str, text: &str) -> String {
    current().message_page(lang, title, text)
}

/// A pending request as `admin-pending.html` shows it.
#[derive(serde::Serialize)]
struct PendingView<'a> {
    id: i64,
    host: &'a str,
    url: &'a str,
    user: Option<&'a str>,
    ip: &'a str,
    groups: &'a [String],
    categories: &'a [String],
    /// `None`: the policy's default.
    rule: Option<&'a str>,
    /// Why it was blocked, in the page's language.
    reason: String,
    blocks_30d: i64,
    created: When,
    /// How many times it was sent.
    asked: i64,
    /// The duration asked for (a value of `durations`), `None` when not given.
    wanted: Option<&'a str>,
    /// The duration preselected in the decision form.
    duration: &'a str,
    justification: &'a str,
}

/// A decision as `admin-history.html` shows it.
#[derive(serde::Serialize)]
struct DecisionView<'a> {
    /// The request's number.
    request: i64,
    at: When,
    /// Who decided.
    admin: &'a str,
    /// `approved` or `refused`.
    status: &'static str,
    host: &'a str,
    requester: &'a str,
    scope: Option<&'a str>,
    /// `None`: no end (or not approved).
    until: Option<When>,
    message: Option<&'a str>,
}

impl Pages {
    fn pending_view<'a>(&self, policy: &Policy, p: &'a Pending, lang: Lang) -> PendingView<'a> {
        let r = &p.row;
        let (reason, _) = reason_for(policy, r.rule.as_deref(), &r.reason_code, lang);
        PendingView {
            id: r.id,
            host: &r.host,
            url: &r.url,
            user: r.user.as_deref(),
            ip: &r.ip,
            groups: &r.groups,
            categories: &r.categories,
            rule: r.rule.as_deref(),
            reason,
            blocks_30d: p.blocks_30d,
            created: self.when(r.created, lang),
            asked: r.asked,
            wanted: r.wanted.as_deref(),
            duration: r.wanted.as_deref().unwrap_or("30d"),
            justification: &r.justification,
        }
    }

    fn decision_view<'a>(&self, d: &'a DecisionRow, lang: Lang) -> DecisionView<'a> {
        DecisionView {
            request: d.request,
            at: self.when(d.at, lang),
            admin: &d.admin,
            status: d.status.as_str(),
            host: &d.host,
            requester: &d.requester,
            scope: d.scope.as_deref(),
            until: d
                .until
                .filter(|_| d.status == Status::Approved)
                .map(|u| self.when(u, lang)),
            message: d.message.as_deref(),
        }
    }

    /// [`login_page`] with this set.
    pub fn login_page(
        &self,
        lang: Lang,
        csrf: &str,
        error: Option<&str>,
        no_admins: bool,
        admins_file: &Path,
    ) -> String {
        let page = login_values(csrf, error, no_admins, admins_file);
        let heading = words(lang).login_title;
        render_or_bare(self, "admin-login.html", lang, page, heading)
    }

    /// [`pending_page`] with this set.
    pub fn pending_page(
        &self,
        lang: Lang,
        policy: &Policy,
        admin: &str,
        csrf: &str,
        items: &[Pending],
        flash: Option<&Flash>,
    ) -> String {
        let requests: Vec<_> = items
            .iter()
            .map(|p| self.pending_view(policy, p, lang))
            .collect();
        let page = pending_values(lang, admin, csrf, requests, flash);
        let heading = words(lang).pending_title;
        render_or_bare(self, "admin-pending.html", lang, page, heading)
    }

    /// [`history_page`] with this set.
    pub fn history_page(
        &self,
        lang: Lang,
        admin: &str,
        csrf: &str,
        rows: &[DecisionRow],
    ) -> String {
        let decisions: Vec<_> = rows
            .iter()
            .rev()
            .map(|d| self.decision_view(d, lang))
            .collect();
        let page = context! { admin_name => admin, csrf, decisions };
        let heading = words(lang).history_title;
        render_or_bare(self, "admin-history.html", lang, page, heading)
    }

    /// [`message_page`] with this set.
    pub fn message_page(&self, lang: Lang, title: &str, text: &str) -> String {
        let page = context! { title, text };
        render_or_bare(self, "admin-message.html", lang, page, title)
    }
}

fn login_values(csrf: &str, error: Option<&str>, no_admins: bool, admins_file: &Path) -> Value {
    context! {
        csrf,
        error,
        no_admins,
        admins_file => shell_word(&admins_file.display().to_string()),
    }
}

fn pending_values(
    lang: Lang,
    admin: &str,
    csrf: &str,
    requests: Vec<PendingView>,
    flash: Option<&Flash>,
) -> Value {
    let (notice, error) = match flash {
        Some(Flash::Done(m)) => (Some(m.as_str()), None),
        Some(Flash::Error(m)) => (None, Some(m.as_str())),
        None => (None, None),
    };
    let durations: Vec<Duration> = durations(lang);
    context! {
        admin_name => admin,
        csrf,
        notice,
        error,
        requests,
        durations,
        max_message => MAX_MESSAGE,
    }
}

/// Renders every admin page on sample values, in both languages and in each variant,
/// so that a template that would fail on a request fails at load instead.
pub(super) fn try_samples(pages: &Pages) -> Result<(), minijinja::Error> {
    let now = 1_800_000_000;
    let policy = Policy {
        groups: crate::identity::GroupTable::default(),
        rules: Vec::new(),
        default: crate::policy::DefaultRule {
            action: crate::policy::Action::Allow,
            reason: None,
        },
        no_inspect: crate::policy::TagSet::new(0),
        internal: std::sync::Arc::default(),
        scheduled: false,
        tenant: Default::default(),
    };
    let items: Vec<Pending> = sample_rows(now)
        .into_iter()
        .zip([0, 1, 2, 3, 4])
        .map(|(row, blocks_30d)| Pending { row, blocks_30d })
        .collect();
    let decisions: Vec<DecisionRow> = sample_rows(now)
        .into_iter()
        .map(|r| DecisionRow {
            id: r.id,
            request: r.id,
            at: now,
            admin: "a".into(),
            status: r.status,
            scope: r.scope,
            until: r.until,
            message: r.message,
            host: r.host,
            requester: r.requester,
        })
        .collect();
    let file = Path::new("/x/admins.yaml");
    let flashes = [
        Some(Flash::Done("d".into())),
        Some(Flash::Error("e".into())),
        None,
    ];
    for lang in [Lang::Fr, Lang::En] {
        for (error, no_admins) in [(Some("e"), true), (None, false)] {
            let page = login_values("csrf", error, no_admins, file);
            pages.render("admin-login.html", lang, page)?;
        }
        for (items, flash) in [
            (&items[..], &flashes[0]),
            (&[], &flashes[1]),
            (&[], &flashes[2]),
        ] {
            let requests: Vec<_> = items
                .iter()
                .map(|p| pages.pending_view(&policy, p, lang))
                .collect();
            let page = pending_values(lang, "a", "csrf", requests, flash.as_ref());
            pages.render("admin-pending.html", lang, page)?;
        }
        for rows in [&decisions[..], &[]] {
            let decisions: Vec<_> = rows.iter().map(|d| pages.decision_view(d, lang)).collect();
            let page = context! { admin_name => "a", csrf => "csrf", decisions };
            pages.render("admin-history.html", lang, page)?;
        }
        for text in ["", "x"] {
            let page = context! { title => "t", text };
            pages.render("admin-message.html", lang, page)?;
        }
    }
    Ok(())
}

/// The words of the admin pages in one language: the templates' `t.admin`. HTML,
/// written here and marked safe, never escaped.
#[derive(serde::Serialize)]
pub(super) struct Words {
    login_title: &'static str,
    user_name: &'static str,
    password: &'static str,
    log_in: &'static str,
    /// Before the command that creates the first account.
    no_account: &'static str,
    /// In that command, in place of the account's name.
    name_placeholder: &'static str,
    nav_pending: &'static str,
    nav_history: &'static str,
    nav_traces: &'static str,
    nav_dashboard: &'static str,
    nav_csv: &'static str,
    logout: &'static str,
    /// Before " : " and the administrator's name.
    logged_in: &'static str,
    pending_title: &'static str,
    pending_intro: &'static str,
    none_pending: &'static str,
    number: &'static str,
    /// "(envoyée 2×)".
    asked: &'static str,
    asked_by: &'static str,
    groups: &'static str,
    address: &'static str,
    categories: &'static str,
    rule: &'static str,
    blocked: &'static str,
    blocked_none: &'static str,
    blocked_once: &'static str,
    /// Before and after the number of blocks, when more than one.
    blocked_times_before: &'static str,
    blocked_times_after: &'static str,
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
    decided_by: &'static str,
    decision: &'static str,
    site: &'static str,
    scope: &'static str,
    until: &'static str,
    message_column: &'static str,
    approved: &'static str,
    refused: &'static str,
    no_end: &'static str,
}

const FR: Words = Words {
    login_title: "Administration du filtrage — connexion",
    user_name: "Identifiant",
    password: "Mot de passe",
    log_in: "Se connecter",
    no_account: "Aucun compte d'administration n'existe encore. Sur le serveur, créez-en un avec",
    name_placeholder: "NOM",
    nav_pending: "Demandes en attente",
    nav_history: "Historique",
    nav_traces: "Trace",
    nav_dashboard: "Tableau de bord",
    nav_csv: "Exporter l'historique (CSV)",
    logout: "Se déconnecter",
    logged_in: "Connecté :",
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
    blocked_none: "aucun blocage compté",
    blocked_once: "bloqué 1 fois pour cette personne",
    blocked_times_before: "bloqué",
    blocked_times_after: "fois pour cette personne",
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
    decided_by: "Décidée par",
    decision: "Décision",
    site: "Site",
    scope: "Portée",
    until: "Jusqu'au",
    message_column: "Message",
    approved: "approuvée",
    refused: "refusée",
    no_end: "sans limite",
};

const EN: Words = Words {
    login_title: "Filtering administration — log in",
    user_name: "User name",
    password: "Password",
    log_in: "Log in",
    no_account: "No administrator account exists yet. On the server, create one with",
    name_placeholder: "NAME",
    nav_pending: "Pending requests",
    nav_history: "History",
    nav_traces: "Trace",
    nav_dashboard: "Dashboard",
    nav_csv: "Export the history (CSV)",
    logout: "Log out",
    logged_in: "Logged in:",
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
    blocked_none: "no block counted",
    blocked_once: "blocked once for this person",
    blocked_times_before: "blocked",
    blocked_times_after: "times for this person",
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
    decided_by: "Decided by",
    decision: "Decision",
    site: "Site",
    scope: "Scope",
    until: "Until",
    message_column: "Message",
    approved: "approved",
    refused: "refused",
    no_end: "no end",
};

pub(super) fn words(lang: Lang) -> &'static Words {
    match lang {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::policy::{Action, DefaultRule, Mode, Rule, Text};

    /// A policy with an overridable rule (`jeux`) and one that is not (`loi`), built as
    /// the compiler would: the pages do not import `config`.
    pub(in crate::pages) fn policy() -> Policy {
        let rule = |id: &str, overridable: bool, fr: &str, en: &str| Rule {
            id: id.into(),
            conds: crate::policy::Conditions::default(),
            action: Action::Block,
            mode: Mode::Enforce,
            overridable,
            reason: Some(Text {
                fr: fr.into(),
                en: Some(en.into()),
            }),
        };
        Policy {
            groups: crate::identity::GroupTable::default(),
            rules: vec![
                rule(
                    "jeux",
                    true,
                    "Jeux d'argent <interdits>",
                    "Gambling <not allowed>",
                ),
                rule("loi", false, "Interdit par la loi", "Forbidden by law"),
            ],
            default: DefaultRule {
                action: Action::Allow,
                reason: None,
            },
            no_inspect: crate::policy::TagSet::new(0),
            internal: std::sync::Arc::default(),
            scheduled: false,
            tenant: Default::default(),
        }
    }

    pub(in crate::pages) fn row(host: &str, why: &str) -> RequestRow {
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
            scheduled: false,
            tenant: Default::default(),
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

    /// Every admin page, in both languages and in each variant: what administrators see,
    /// kept by snapshots.
    #[test]
    fn admin_pages() {
        let policy = policy();
        let mut other = row("other.example", "");
        other.id = 4;
        other.user = None;
        other.groups = Vec::new();
        other.categories = Vec::new();
        other.rule = None;
        other.wanted = None;
        other.asked = 1;
        let items = [
            Pending {
                row: row("casino.example", "pour le <travail>\nligne 2"),
                blocks_30d: 4,
            },
            Pending {
                row: other,
                blocks_30d: 0,
            },
        ];
        let one = [Pending {
            row: row("one.example", "x"),
            blocks_30d: 1,
        }];
        let decision =
            |id: i64, status: Status, until: Option<i64>, message: Option<&str>| DecisionRow {
                id,
                request: id + 10,
                at: 1_700_000_000 + id,
                admin: "a.durand".into(),
                status,
                scope: (status == Status::Approved).then(|| "group:<agents>".into()),
                until,
                message: message.map(Into::into),
                host: "casino.example".into(),
                requester: "user:c.martin".into(),
            };
        let decisions = [
            decision(1, Status::Approved, Some(1_800_000_000), Some("ok")),
            decision(2, Status::Approved, None, None),
            decision(3, Status::Refused, None, Some("Non <b>")),
        ];
        let file = Path::new("/etc/charte proxy/admins.yaml");
        let mut all = String::new();
        for lang in [Lang::Fr, Lang::En] {
            let mut add = |name: &str, html: String| {
                all.push_str(&format!("===== {name} {}\n{html}", lang.code()));
            };
            add("login", login_page(lang, "CSRF\"x", None, false, file));
            add(
                "login no admins, error",
                login_page(lang, "CSRF", Some("Mauvais <mot>"), true, file),
            );
            add(
                "pending",
                pending_page(lang, &policy, "a.durand", "CSRF", &items, None),
            );
            add(
                "pending one, done",
                pending_page(
                    lang,
                    &policy,
                    "a.durand",
                    "CSRF",
                    &one,
                    Some(&Flash::Done("Demande <3> approuvée".into())),
                ),
            );
            add(
                "pending none, error",
                pending_page(
                    lang,
                    &policy,
                    "a.durand",
                    "CSRF",
                    &[],
                    Some(&Flash::Error("Message <requis>".into())),
                ),
            );
            add(
                "history",
                history_page(lang, "a.durand", "CSRF", &decisions),
            );
            add("history empty", history_page(lang, "a.durand", "CSRF", &[]));
        }
        // The style sheet is the same on every page (and kept by the block page's snapshots).
        insta::with_settings!({filters => vec![(r"<style>.*</style>", "<style>…</style>")]}, {
            insta::assert_snapshot!(all);
        });
    }

    #[test]
    fn hostile_values_are_escaped_on_the_login_history_and_message_pages() {
        const HOSTILE: &str = "\"><script>alert('x')</script><img src=x onerror=alert(1)>";
        let d = DecisionRow {
            id: 1,
            request: 1,
            at: 0,
            admin: HOSTILE.into(),
            status: Status::Approved,
            scope: Some(HOSTILE.into()),
            until: None,
            message: Some(HOSTILE.into()),
            host: HOSTILE.into(),
            requester: HOSTILE.into(),
        };
        let pages = [
            login_page(Lang::Fr, HOSTILE, Some(HOSTILE), true, Path::new(HOSTILE)),
            history_page(Lang::En, HOSTILE, HOSTILE, &[d]),
            message_page(Lang::Fr, HOSTILE, HOSTILE),
        ];
        for html in pages {
            assert!(!html.contains("<script"), "{html}");
            assert!(!html.contains("<img"), "{html}");
            assert!(html.contains("&lt;script&gt;alert("), "{html}");
        }
    }
}
