//! The trace from the admin pages (issue 24, CNIL 2021 recommendation on logging): the
//! search page (`/traces`), its downloads (`/traces.csv`, `/traces.json`, streamed) and
//! a person's export (`/traces/export?user=U`, GDPR art. 15, Arras charter §4.9).
//!
//! Only the administrators named in `trace.readers` may use them; every search, download
//! and export is recorded in the access audit (`DATA/trace-access.log`: who, when, which
//! criteria, how many lines) before its lines are shown, and a search whose access
//! cannot be recorded is not answered. The files are read on the blocking pool.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::session::Session;
use super::{AdminState, message, query};
use crate::action::body::{self, Body};
use crate::action::respond::html;
use crate::audit::search::{self, Criteria, Found};
use crate::pages::traces::{SHOWN, TracesPage, Typed, traces_page};
use crate::policy::Lang;

/// What the admin pages need to read the trace.
#[derive(Debug, Clone)]
pub struct TraceAccess {
    /// The live JSON trace file; `None` when the trace of record is not a JSON file.
    pub live: Option<PathBuf>,
    /// Where the access audit is.
    pub data_dir: PathBuf,
    /// The town's zone: what a day means in the form.
    pub tz: jiff::tz::TimeZone,
    /// `trace.readers`, as SIGHUP reloads them.
    pub readers: Arc<ArcSwap<Vec<String>>>,
}

impl TraceAccess {
    fn allows(&self, admin: &str) -> bool {
        self.readers.load().iter().any(|r| r == admin)
    }
}

/// How the downloads are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Download {
    Csv,
    Json,
}

fn typed(req: &Request<Incoming>) -> Typed {
    let q = |k| query(req, k).unwrap_or_default();
    Typed {
        user: q("user"),
        client: q("client"),
        host: q("host"),
        from: q("from"),
        to: q("to"),
    }
}

fn criteria(t: &Typed, tz: &jiff::tz::TimeZone, lang: Lang) -> Result<Option<Criteria>, String> {
    let c = Criteria::parse(
        Some(&t.user),
        Some(&t.client),
        Some(&t.host),
        Some(&t.from),
        Some(&t.to),
        tz,
    )
    .map_err(|e| match lang {
        Lang::Fr => format!("Critères invalides : {e}"),
        Lang::En => format!("Invalid criteria: {e}"),
    })?;
    Ok(c.is_narrowed().then_some(c))
}

/// Who the access audit names for an administrator of these pages.
fn who(s: &Session) -> String {
    format!("admin:{}", s.admin)
}

fn audit_failed(lang: Lang, e: &std::io::Error) -> Response<Body> {
    tracing::error!(error = %e, "access audit");
    let (t, d) = match lang {
        Lang::Fr => (
            "La consultation ne peut pas être enregistrée",
            "Le journal des consultations de la trace ne peut pas être écrit ; la trace n'est pas montrée sans que sa consultation soit enregistrée.",
        ),
        Lang::En => (
            "The access cannot be recorded",
            "The trace's access audit cannot be written; the trace is not shown without its access being recorded.",
        ),
    };
    message(lang, StatusCode::SERVICE_UNAVAILABLE, t, d)
}

/// GET /traces: the form, and the lines found when criteria are given.
pub async fn page(
    st: &AdminState,
    s: &Session,
    req: &Request<Incoming>,
    lang: Lang,
) -> Response<Body> {
    let mut p = TracesPage {
        admin: &s.admin,
        csrf: &s.csrf,
        allowed: st.trace_access.allows(&s.admin),
        available: st.trace_access.live.is_some(),
        typed: typed(req),
        ..TracesPage::default()
    };
    let status = if p.allowed {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    };
    let (true, Some(live)) = (p.allowed, st.trace_access.live.clone()) else {
        return html(status, traces_page(lang, &p));
    };
    let c = match criteria(&p.typed, &st.trace_access.tz, lang) {
        Ok(Some(c)) => c,
        Ok(None) => return html(status, traces_page(lang, &p)),
        Err(e) => {
            p.error = Some(e);
            return html(StatusCode::BAD_REQUEST, traces_page(lang, &p));
        }
    };
    let access = st.trace_access.clone();
    let who = who(s);
    let found = tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<String>, u64)> {
        let paths = c.files(&live, &access.tz)?;
        let mut shown = Vec::new();
        let (_, matched, _) = search::search(&paths, &c, |f: &Found| {
            if shown.len() < SHOWN {
                shown.push(f.line.clone());
            }
            Ok(())
        })?;
        search::note_access(&access.data_dir, &who, "search", &c, matched)?;
        Ok((shown, matched))
    })
    .await;
    match found {
        Ok(Ok((lines, total))) => {
            p.searched = true;
            p.lines = lines;
            p.total = total;
            html(StatusCode::OK, traces_page(lang, &p))
        }
        Ok(Err(e)) => audit_failed(lang, &e),
        Err(e) => audit_failed(lang, &std::io::Error::other(e.to_string())),
    }
}

/// A plain refusal for the downloads: not a reader, no file, or no criteria.
fn refused(st: &AdminState, s: &Session, lang: Lang) -> Option<Response<Body>> {
    if !st.trace_access.allows(&s.admin) {
        let (t, d) = match lang {
            Lang::Fr => (
                "Accès refusé",
                "Seuls les administrateurs désignés dans trace.readers peuvent consulter la trace.",
            ),
            Lang::En => (
                "Access refused",
                "Only the administrators named in trace.readers may read the trace.",
            ),
        };
        return Some(message(lang, StatusCode::FORBIDDEN, t, d));
    }
    if st.trace_access.live.is_none() {
        let (t, d) = match lang {
            Lang::Fr => (
                "Recherche impossible",
                "La trace n'est pas un fichier JSON.",
            ),
            Lang::En => ("Search not possible", "The trace is not a JSON file."),
        };
        return Some(message(lang, StatusCode::NOT_FOUND, t, d));
    }
    None
}

fn bad_criteria(lang: Lang, e: Option<String>) -> Response<Body> {
    let t = match lang {
        Lang::Fr => "Critères manquants ou invalides",
        Lang::En => "Missing or invalid criteria",
    };
    let d = e.unwrap_or_else(|| match lang {
        Lang::Fr => "Donnez un utilisateur, un poste, un site ou une date de début.".into(),
        Lang::En => "Give a user, a workstation, a site or a start date.".into(),
    });
    message(lang, StatusCode::BAD_REQUEST, t, &d)
}

fn attachment(mut r: Response<Body>, content_type: &'static str, name: &str) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// GET /traces.csv and /traces.json: every line found, streamed as it is read. The
/// access is recorded when the last line has been handed over (with the number of lines
/// the client took, if it went away first); the audit is checked writable before.
pub async fn download(
    st: &AdminState,
    s: &Session,
    req: &Request<Incoming>,
    lang: Lang,
    format: Download,
) -> Response<Body> {
    if let Some(r) = refused(st, s, lang) {
        return r;
    }
    let c = match criteria(&typed(req), &st.trace_access.tz, lang) {
        Ok(Some(c)) => c,
        Ok(None) => return bad_criteria(lang, None),
        Err(e) => return bad_criteria(lang, Some(e)),
    };
    let access = st.trace_access.clone();
    if let Err(e) = search::check_access_audit(&access.data_dir) {
        return audit_failed(lang, &e);
    }
    let Some(live) = access.live.clone() else {
        return bad_criteria(lang, None);
    };
    let who = who(s);
    let (tx, body) = body::channel(8);
    tokio::task::spawn_blocking(move || {
        const PIECE: usize = 64 * 1024;
        let mut buf = Vec::with_capacity(PIECE + 4096);
        let mut cells = Vec::new();
        if format == Download::Csv {
            buf.extend_from_slice(search::csv_header().as_bytes());
            buf.push(b'\n');
        }
        let mut sent = 0u64;
        let gone = || std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away");
        let result = c.files(&live, &access.tz).and_then(|paths| {
            search::search(&paths, &c, |f: &Found| {
                match format {
                    Download::Json => buf.extend_from_slice(f.line.as_bytes()),
                    Download::Csv => {
                        search::csv_line(&f.line, &mut cells);
                        buf.extend_from_slice(cells.join(",").as_bytes());
                    }
                }
                buf.push(b'\n');
                sent += 1;
                if buf.len() >= PIECE {
                    let piece = Bytes::from(std::mem::replace(
                        &mut buf,
                        Vec::with_capacity(PIECE + 4096),
                    ));
                    tx.blocking_send(piece).map_err(|_| gone())?;
                }
                Ok(())
            })
        });
        let what = match format {
            Download::Csv => "download csv",
            Download::Json => "download json",
        };
        let what = match &result {
            Ok(_) => {
                let _ = tx.blocking_send(Bytes::from(buf));
                what.to_owned()
            }
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => format!("{what} (interrupted)"),
            Err(e) => {
                tracing::error!(error = %e, "trace download");
                format!("{what} (failed: {e})")
            }
        };
        if let Err(e) = search::note_access(&access.data_dir, &who, &what, &c, sent) {
            tracing::error!(error = %e, "access audit: a download of {sent} line(s) by {who} could not be recorded");
        }
    });
    let (ct, ext) = match format {
        Download::Csv => ("text/csv; charset=utf-8", "csv"),
        Download::Json => ("application/x-ndjson", "jsonl"),
    };
    attachment(Response::new(body), ct, &format!("trace.{ext}"))
}

/// GET /traces/export?user=U: the file to hand to the person (their lines, their unblock
/// requests and the decisions on them), recorded in the access audit.
pub async fn export(
    st: &AdminState,
    s: &Session,
    req: &Request<Incoming>,
    lang: Lang,
) -> Response<Body> {
    if let Some(r) = refused(st, s, lang) {
        return r;
    }
    let Some(user) = query(req, "user").filter(|u| !u.trim().is_empty()) else {
        return bad_criteria(lang, None);
    };
    let access = st.trace_access.clone();
    let Some(live) = access.live.clone() else {
        return bad_criteria(lang, None);
    };
    let store = st.unblock.store().clone();
    let who = who(s);
    let u = user.clone();
    let doc = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let c = Criteria {
            user: Some(u.clone()),
            ..Criteria::default()
        };
        let paths = search::files_between(&live, None, None)?;
        let mut lines = Vec::new();
        search::search(&paths, &c, |f| {
            lines.push(serde_json::from_str::<serde_json::Value>(&f.line).unwrap_or_default());
            Ok(())
        })?;
        let key = crate::unblock::approvals::Requester::new(Some(&u), [0, 0, 0, 0].into()).key();
        let requests = store
            .list_for(&key)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let n = lines.len() as u64;
        let doc = crate::unblock::export::subject_document(&u, lines, &requests);
        search::note_access(&access.data_dir, &who, "export", &c, n)?;
        Ok(serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n")
    })
    .await;
    match doc {
        Ok(Ok(text)) => {
            let safe: String = user
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._-".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            attachment(
                Response::new(body::full(text)),
                "application/json",
                &format!("export-{safe}.json"),
            )
        }
        Ok(Err(e)) => audit_failed(lang, &e),
        Err(e) => audit_failed(lang, &std::io::Error::other(e.to_string())),
    }
}
