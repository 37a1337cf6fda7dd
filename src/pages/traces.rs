//! The trace search of the admin pages (`admin-traces.html`): the form, the lines found
//! (the first [`SHOWN`], times in the town's zone) with links to download them all, or
//! why this administrator cannot search. Values are escaped by the template.

use minijinja::Value;
use serde::Serialize;

use super::templates::{Pages, current};
use crate::policy::Lang;

/// Lines shown on the page; the downloads have them all.
pub const SHOWN: usize = 200;

/// What was typed in the form, given back to it.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Typed {
    pub user: String,
    pub client: String,
    pub host: String,
    pub from: String,
    pub to: String,
}

impl Typed {
    /// The criteria as a query string (the download links).
    pub fn query(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("user", &self.user),
            ("client", &self.client),
            ("host", &self.host),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.finish()
    }
}

/// What the page shows.
#[derive(Debug, Default)]
pub struct TracesPage<'a> {
    /// The logged-in administrator.
    pub admin: &'a str,
    /// The session's CSRF token (the navigation bar's logout form).
    pub csrf: &'a str,
    /// Whether this administrator is one of `trace.readers`.
    pub allowed: bool,
    /// Whether the trace is a JSON file the proxy can read.
    pub available: bool,
    pub typed: Typed,
    pub error: Option<String>,
    /// Whether a search ran (criteria were given and valid).
    pub searched: bool,
    /// The trace lines shown, as written.
    pub lines: Vec<String>,
    /// Every line that matched.
    pub total: u64,
}

struct Words {
    title: &'static str,
    h1: &'static str,
    intro: &'static str,
    not_reader: &'static str,
    not_reader_how: &'static str,
    unavailable: &'static str,
    user: &'static str,
    client: &'static str,
    host: &'static str,
    from: &'static str,
    to: &'static str,
    search: &'static str,
    recorded: &'static str,
    found_h2: &'static str,
    lines: &'static str,
    shown_first: &'static str,
    csv: &'static str,
    json: &'static str,
    export: &'static str,
    col_time: &'static str,
    col_user: &'static str,
    col_client: &'static str,
    col_request: &'static str,
    col_decision: &'static str,
    col_bytes: &'static str,
}

const FR: Words = Words {
    title: "Recherche dans la trace",
    h1: "Recherche dans la trace",
    intro: "Les accès tracés (charte §4.8) d'une personne, d'un poste ou d'un site, entre deux dates, dans les fichiers fermés et le fichier en cours.",
    not_reader: "Votre compte ne peut pas consulter la trace : elle contient des données personnelles et seuls les administrateurs désignés y ont accès.",
    not_reader_how: "Pour désigner un administrateur, ajoutez son identifiant dans le fichier de configuration du serveur :",
    unavailable: "La trace n'est pas écrite dans un fichier JSON que le proxy peut relire (trace.path absent, « - » ou trace.format autre que json) : la recherche est impossible.",
    user: "Identifiant de l'utilisateur",
    client: "Adresse IP du poste",
    host: "Site (et ses sous-domaines)",
    from: "Du (inclus)",
    to: "Au (inclus)",
    search: "Rechercher",
    recorded: "Chaque recherche et chaque export sont eux-mêmes enregistrés (qui, quand, quels critères, combien de lignes).",
    found_h2: "Résultats",
    lines: "ligne(s) trouvée(s)",
    shown_first: "affichage des",
    csv: "Tout télécharger (CSV)",
    json: "Tout télécharger (JSON)",
    export: "Export pour la personne (RGPD art. 15)",
    col_time: "Date",
    col_user: "Utilisateur",
    col_client: "Poste",
    col_request: "Requête",
    col_decision: "Décision",
    col_bytes: "Octets envoyés / reçus",
};

const EN: Words = Words {
    title: "Trace search",
    h1: "Trace search",
    intro: "The traced accesses (charter §4.8) of a person, a workstation or a site, between two dates, in the closed files and the live one.",
    not_reader: "Your account cannot read the trace: it holds personal data and only the designated administrators may read it.",
    not_reader_how: "To designate an administrator, add their name in the server file:",
    unavailable: "The trace is not written to a JSON file the proxy can read back (trace.path unset, \"-\" or trace.format other than json): searching is not possible.",
    user: "User name",
    client: "Workstation IP address",
    host: "Site (and its subdomains)",
    from: "From (included)",
    to: "To (included)",
    search: "Search",
    recorded: "Every search and every export is itself recorded (who, when, which criteria, how many lines).",
    found_h2: "Results",
    lines: "line(s) found",
    shown_first: "showing the first",
    csv: "Download all (CSV)",
    json: "Download all (JSON)",
    export: "Export for the person (GDPR art. 15)",
    col_time: "Date",
    col_user: "User",
    col_client: "Workstation",
    col_request: "Request",
    col_decision: "Decision",
    col_bytes: "Bytes sent / received",
};

impl Words {
    fn of(lang: Lang) -> &'static Words {
        match lang {
            Lang::Fr => &FR,
            Lang::En => &EN,
        }
    }

    fn value(&self) -> Value {
        minijinja::context! {
            title => self.title, h1 => self.h1, intro => self.intro, not_reader => self.not_reader,
            not_reader_how => self.not_reader_how, unavailable => self.unavailable,
            user => self.user, client => self.client, host => self.host, from => self.from,
            to => self.to, search => self.search, recorded => self.recorded,
            found_h2 => self.found_h2, lines => self.lines, shown_first => self.shown_first,
            csv => self.csv, json => self.json, export => self.export,
            col_time => self.col_time, col_user => self.col_user,
            col_client => self.col_client, col_request => self.col_request,
            col_decision => self.col_decision, col_bytes => self.col_bytes,
        }
    }
}

/// One trace line as the table shows it.
#[derive(Serialize)]
struct Row {
    time: String,
    iso: String,
    user: Option<String>,
    client: String,
    workstation: Option<String>,
    method: String,
    host: String,
    path: String,
    decision: String,
    reason: Option<String>,
    sent: u64,
    received: u64,
}

impl Row {
    fn of(pages: &Pages, line: &str, lang: Lang) -> Row {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let s = |k: &str| v[k].as_str().map(str::to_owned);
        let time = s("time").unwrap_or_default();
        let (shown, iso) = time
            .parse::<jiff::Timestamp>()
            .map(|t| pages.time(t.as_second(), lang))
            .unwrap_or_else(|_| (time.clone(), time.clone()));
        Row {
            time: shown,
            iso,
            user: s("user"),
            client: s("client").unwrap_or_default(),
            workstation: s("workstation"),
            method: s("method").unwrap_or_default(),
            host: s("host").unwrap_or_default(),
            path: s("path").unwrap_or_default(),
            decision: s("decision").unwrap_or_default(),
            reason: s("reason"),
            sent: v["bytes_sent"].as_u64().unwrap_or(0),
            received: v["bytes_received"].as_u64().unwrap_or(0),
        }
    }
}

/// The trace search page.
pub fn traces_page(lang: Lang, p: &TracesPage) -> String {
    current().traces_page(lang, p)
}

impl Pages {
    /// [`traces_page`] with this set.
    pub fn traces_page(&self, lang: Lang, p: &TracesPage) -> String {
        let page = self.traces_context(lang, p);
        let heading = Words::of(lang).h1;
        super::proxy::render_or_bare(self, "admin-traces.html", lang, page, heading)
    }

    fn traces_context(&self, lang: Lang, p: &TracesPage) -> Value {
        let w = Words::of(lang);
        let rows: Vec<Row> = p.lines.iter().map(|l| Row::of(self, l, lang)).collect();
        let export_query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("user", &p.typed.user)
            .finish();
        minijinja::context! {
            csrf => p.csrf,
            w => w.value(),
            admin_name => p.admin,
            allowed => p.allowed,
            available => p.available,
            q => &p.typed,
            error => &p.error,
            searched => p.searched,
            rows => rows,
            total => p.total,
            query => p.typed.query(),
            export_query => export_query,
        }
    }
}

/// Renders the page on sample values in both languages (at load: a broken override is
/// refused with its file and line).
pub(super) fn try_samples(pages: &Pages) -> Result<(), minijinja::Error> {
    let line = r#"{"time":"2026-12-04T09:15:02.123Z","client":"10.1.2.3","workstation":"pc-accueil","user":"c.martin","method":"GET","host":"www.example.com","path":"/a?b=<c>","decision":"block","reason":"Jeux d'argent","bytes_sent":120,"bytes_received":4096}"#;
    for lang in [Lang::Fr, Lang::En] {
        for (allowed, available, searched) in [
            (false, true, false),
            (true, false, false),
            (true, true, false),
            (true, true, true),
        ] {
            let p = TracesPage {
                admin: "dsi",
                csrf: "csrf",
                allowed,
                available,
                typed: Typed {
                    user: "c.martin".into(),
                    ..Typed::default()
                },
                error: searched.then(|| "sample".to_owned()),
                searched,
                lines: vec![line.to_owned(); 2],
                total: 3,
            };
            pages.render("admin-traces.html", lang, pages.traces_context(lang, &p))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_lines_and_keeps_the_query_for_downloads() {
        let hostile = r#"{"time":"2026-12-04T09:15:02Z","client":"10.0.0.1","user":"<script>x</script>","method":"GET","host":"a.example","path":"/\"><img src=x>","decision":"allow"}"#;
        let p = TracesPage {
            admin: "dsi",
            csrf: "",
            allowed: true,
            available: true,
            typed: Typed {
                user: "<script>x</script>".into(),
                host: "a.example".into(),
                ..Typed::default()
            },
            searched: true,
            lines: vec![hostile.into()],
            total: 1,
            ..TracesPage::default()
        };
        let html = traces_page(Lang::Fr, &p);
        assert!(!html.contains("<script>x"), "{html}");
        assert!(!html.contains("<img src=x>"), "{html}");
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"), "{html}");
        assert!(
            html.contains("/traces.csv?user=%3Cscript%3Ex%3C%2Fscript%3E&amp;host=a.example"),
            "{html}"
        );
        assert!(html.contains("1 ligne(s) trouvée(s)"), "{html}");
    }

    #[test]
    fn a_non_reader_sees_why_and_no_form() {
        let p = TracesPage {
            admin: "stagiaire",
            allowed: false,
            available: true,
            ..TracesPage::default()
        };
        let html = traces_page(Lang::En, &p);
        assert!(
            html.contains("only the designated administrators"),
            "{html}"
        );
        assert!(html.contains("trace: {readers: [stagiaire]}"), "{html}");
        assert!(!html.contains("<form method=\"get\""), "{html}");
    }
}
