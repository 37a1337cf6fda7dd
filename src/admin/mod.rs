//! The admin listener: the administrators' pages that decide unblock requests (behind a
//! login, with a session cookie and a CSRF token on every form), the history and its CSV
//! export, and the monitoring endpoints (`/metrics`, `/health`, `/healthz`).
//!
//! Administrators are the accounts of DATA/admins (`charte-proxy admins add`), read at each
//! login so that an account added or removed takes effect without a restart. A decision
//! is written to the store, then the approvals in force are reloaded before the answer, so
//! the next request through the proxy sees it.

pub mod session;
pub mod trace;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::action::body::{Body, full};
use crate::action::bump::Bumper;
use crate::action::respond::{html, text};
use crate::identity::auth::UsersFile;
use crate::identity::directory::Directory;
use crate::metrics::Metrics;
use crate::pages as block_page;
use crate::pages::admin::{self as pages, Flash, Pending};
use crate::policy::Lang;
use crate::snapshot::Live;
use crate::tracker::Tracker;
use crate::unblock::UnblockService;
use crate::unblock::approvals::now;
use crate::unblock::export;
use crate::unblock::parse_duration;
use crate::unblock::store::{MAX_MESSAGE, Scope, Status, StoreError};
use session::{COOKIE, LOGIN_COOKIE, Session, Sessions, random_token, same_secret};

/// Largest form body read.
const MAX_FORM: usize = 16 * 1024;

/// What the admin listener reads and keeps between requests: its own sessions and
/// accounts file, and what it shows of the rest (the snapshot in force, the unblock
/// store, the metrics, the tunnels in flight, the leaf cache).
pub struct AdminState {
    pub live: Arc<Live>,
    pub unblock: Arc<UnblockService>,
    pub metrics: Arc<Metrics>,
    pub tunnels: Tracker,
    pub bumper: Option<Arc<Bumper>>,
    pub sessions: Sessions,
    /// The administrators' accounts (same format as the users file); absolute, as the
    /// login page names it in the command that creates the first account.
    pub admins_file: PathBuf,
    /// One login verification (Argon2) at a time.
    hashing: tokio::sync::Semaphore,
    /// The directory, when one is configured (its state on `/health` and `/metrics`).
    pub directory: Option<Arc<Directory>>,
    /// What the trace's writer did last (rotation, purge, failures), for `/health`.
    pub trace: crate::audit::TraceStatus,
    /// The trace's files and who may read them (`/traces`).
    pub trace_access: trace::TraceAccess,
    /// `trace.names_visible_to`: who sees names on the dashboard (others, pseudonyms).
    pub names_visible_to: Vec<String>,
    /// The key of the dashboard's pseudonyms (DATA/pseudonyms.key).
    pub pseudonym_key: Arc<[u8]>,
}

impl AdminState {
    pub fn new(
        live: Arc<Live>,
        unblock: Arc<UnblockService>,
        metrics: Arc<Metrics>,
        tunnels: Tracker,
        bumper: Option<Arc<Bumper>>,
        admins_file: PathBuf,
    ) -> AdminState {
        let sessions = Sessions::for_store(unblock.store());
        AdminState {
            live,
            unblock,
            metrics,
            tunnels,
            bumper,
            sessions,
            admins_file,
            hashing: tokio::sync::Semaphore::new(1),
            directory: None,
            trace: Default::default(),
            trace_access: trace::TraceAccess {
                live: None,
                data_dir: PathBuf::new(),
                tz: jiff::tz::TimeZone::UTC,
                readers: Default::default(),
            },
            names_visible_to: Vec::new(),
            // Random until the server sets the data folder's key: never a guessable one.
            pseudonym_key: Arc::from(rand::random::<[u8; 32]>().as_slice()),
        }
    }
}

/// Requests to the admin listener.
pub async fn handle(
    st: Arc<AdminState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let lang = block_page::lang_of(req.headers());
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    let res = match path.as_str() {
        "/metrics" if get => metrics(&st),
        "/healthz" if get => text(StatusCode::OK, "ok\n".into()),
        "/health" if get => health(&st),
        "/" if get => redirect("/demandes"),
        "/connexion" if get => login_form(lang, None, false, &st).await,
        "/connexion" if post => login(&st, peer, req, lang).await,
        "/deconnexion" if post => match authorised(&st, req, lang).await {
            Ok((_, sid, _)) => {
                st.sessions.close(&sid).await;
                let mut r = redirect("/connexion");
                set_cookie(&mut r, &format!("{COOKIE}=; {}; Max-Age=0", COOKIE_ATTRS));
                r
            }
            Err(r) => r,
        },
        "/demandes" if get => match session_of(&st, req.headers()).await {
            Some((s, _)) => {
                let flash = query(&req, "fait").map(|n| {
                    Flash::Done(match lang {
                        Lang::Fr => format!("Décision enregistrée pour la demande n° {n}."),
                        Lang::En => format!("Decision recorded for request no. {n}."),
                    })
                });
                pending(&st, &s, lang, flash.as_ref(), StatusCode::OK).await
            }
            None => redirect("/connexion"),
        },
        p if post && p.starts_with("/demandes/") => match p["/demandes/".len()..].parse::<i64>() {
            Ok(id) => decide(&st, id, req, lang).await,
            Err(_) => message(lang, StatusCode::NOT_FOUND, not_found_words(lang), ""),
        },
        "/historique" | "/historique.csv" if get => match session_of(&st, req.headers()).await {
            Some((s, _)) => history(&st, &s, lang, path.ends_with(".csv")).await,
            None => redirect("/connexion"),
        },
        "/traces" | "/traces.csv" | "/traces.json" | "/traces/export" if get => {
            match session_of(&st, req.headers()).await {
                Some((s, _)) => match path.as_str() {
                    "/traces" => trace::page(&st, &s, &req, lang).await,
                    "/traces.csv" => {
                        trace::download(&st, &s, &req, lang, trace::Download::Csv).await
                    }
                    "/traces.json" => {
                        trace::download(&st, &s, &req, lang, trace::Download::Json).await
                    }
                    _ => trace::export(&st, &s, &req, lang).await,
                },
                None => redirect("/connexion"),
            }
        }
        "/tableau-de-bord" if get => match session_of(&st, req.headers()).await {
            Some((s, _)) => dashboard(&st, &s, lang).await,
            None => redirect("/connexion"),
        },
        "/metrics" | "/healthz" | "/health" | "/" | "/demandes" | "/historique"
        | "/historique.csv" | "/traces" | "/traces.csv" | "/traces.json" | "/traces/export"
        | "/tableau-de-bord" => text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into()),
        "/connexion" | "/deconnexion" => {
            text(StatusCode::METHOD_NOT_ALLOWED, "GET or POST\n".into())
        }
        _ => message(lang, StatusCode::NOT_FOUND, not_found_words(lang), ""),
    };
    Ok(secure(res))
}

/// Cookie attributes of the session: sent back only to this listener, never to scripts,
/// never on a request started by another site.
const COOKIE_ATTRS: &str = "Path=/; HttpOnly; SameSite=Strict";

/// Headers every admin answer carries: no caching, no framing, no scripts, no leaks.
fn secure(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut r = Response::new(full(String::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    r
}

fn set_cookie(r: &mut Response<Body>, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

fn query(req: &Request<Incoming>, k: &str) -> Option<String> {
    req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    })
}

/// The live session named by the request's cookie, with its id.
async fn session_of(st: &AdminState, headers: &HeaderMap) -> Option<(Session, String)> {
    let sid = cookie(headers, COOKIE)?;
    let s = st.sessions.find(sid).await?;
    Some((s, sid.to_string()))
}

/// A small page with a title and a sentence.
fn message(lang: Lang, status: StatusCode, title: &str, text: &str) -> Response<Body> {
    html(status, pages::message_page(lang, title, text))
}

fn not_found_words(lang: Lang) -> &'static str {
    match lang {
        Lang::Fr => "Page introuvable",
        Lang::En => "Page not found",
    }
}

/// Reads a form body of at most [`MAX_FORM`] bytes into its fields.
async fn form(req: Request<Incoming>) -> Option<Vec<(String, String)>> {
    use http_body_util::BodyExt as _;
    let body = http_body_util::Limited::new(req.into_body(), MAX_FORM)
        .collect()
        .await
        .ok()?
        .to_bytes();
    Some(
        url::form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    )
}

fn field<'a>(f: &'a [(String, String)], k: &str) -> Option<&'a str> {
    f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// Whether the browser says the form came from another site. Browsers send `Origin` on
/// every POST; one that names another origin than this listener is refused even with a
/// valid token.
fn foreign_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin != format!("http://{host}") && origin != format!("https://{host}")
}

/// A POST from a logged-in administrator whose form carries the session's CSRF token:
/// the session, its id and the form's fields. Otherwise the page to answer with.
async fn authorised(
    st: &AdminState,
    req: Request<Incoming>,
    lang: Lang,
) -> Result<(Session, String, Vec<(String, String)>), Response<Body>> {
    let Some((s, sid)) = session_of(st, req.headers()).await else {
        let (t, x) = match lang {
            Lang::Fr => (
                "Session expirée",
                "Reconnectez-vous, puis recommencez : rien n'a été modifié.",
            ),
            Lang::En => (
                "Session expired",
                "Log in again, then start over: nothing was changed.",
            ),
        };
        return Err(message(lang, StatusCode::FORBIDDEN, t, x));
    };
    let foreign = foreign_origin(req.headers());
    let Some(fields) = form(req).await else {
        return Err(message(
            lang,
            StatusCode::PAYLOAD_TOO_LARGE,
            "Formulaire trop long / Form too long",
            "",
        ));
    };
    let token_ok = field(&fields, "csrf").is_some_and(|t| same_secret(t, &s.csrf));
    if foreign || !token_ok {
        tracing::warn!(admin = %s.admin, foreign, "admin form refused: bad CSRF token or origin");
        return Err(csrf_refused(lang));
    }
    Ok((s, sid, fields))
}

fn csrf_refused(lang: Lang) -> Response<Body> {
    let (t, x) = match lang {
        Lang::Fr => (
            "Formulaire refusé",
            "Ce formulaire ne vient pas d'une page d'administration ouverte dans cette session. Rechargez la page et recommencez : rien n'a été modifié.",
        ),
        Lang::En => (
            "Form refused",
            "This form does not come from an admin page opened in this session. Reload the page and start over: nothing was changed.",
        ),
    };
    message(lang, StatusCode::FORBIDDEN, t, x)
}

/// The login form, with a fresh CSRF value in the form and in a cookie.
async fn login_form(
    lang: Lang,
    error: Option<&str>,
    failed: bool,
    st: &AdminState,
) -> Response<Body> {
    let path = st.admins_file.clone();
    let no_admins = tokio::task::spawn_blocking(move || {
        UsersFile::load(&path).map_or(true, |f| f.users().next().is_none())
    })
    .await
    .unwrap_or(true);
    let csrf = random_token();
    let status = if failed {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let mut r = html(
        status,
        pages::login_page(lang, &csrf, error, no_admins, &st.admins_file),
    );
    set_cookie(&mut r, &format!("{LOGIN_COOKIE}={csrf}; {COOKIE_ATTRS}"));
    r
}

async fn login(
    st: &AdminState,
    peer: SocketAddr,
    req: Request<Incoming>,
    lang: Lang,
) -> Response<Body> {
    let ip = peer.ip().to_canonical();
    let expected = cookie(req.headers(), LOGIN_COOKIE).map(str::to_string);
    let foreign = foreign_origin(req.headers());
    let Some(fields) = form(req).await else {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "form too long\n".into());
    };
    let token_ok = match (field(&fields, "csrf"), expected) {
        (Some(t), Some(c)) => same_secret(t, &c),
        _ => false,
    };
    if foreign || !token_ok {
        return csrf_refused(lang);
    }
    // Counted before the slow hash, settled after it (see `session`).
    let Some(attempt) = st.sessions.reserve(ip, Instant::now()) else {
        let msg = match lang {
            Lang::Fr => "Trop d'essais manqués depuis ce poste : réessayez dans dix minutes.",
            Lang::En => "Too many failed attempts from this workstation: try again in ten minutes.",
        };
        let mut r = login_form(lang, Some(msg), true, st).await;
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return r;
    };
    let user = field(&fields, "user").unwrap_or("").trim().to_string();
    let password = field(&fields, "password").unwrap_or("").to_string();
    let path = st.admins_file.clone();
    let checked = {
        let _one = st.hashing.acquire().await;
        let u = user.clone();
        tokio::task::spawn_blocking(move || match UsersFile::load(&path) {
            Ok(f) => Ok(f.verify(&u, &password)),
            Err(e) => Err(e.to_string()),
        })
        .await
    };
    match checked {
        Ok(Ok(true)) => {
            attempt.succeeded();
            let Some(sid) = st.sessions.open(&user).await else {
                return store_failed(lang, "");
            };
            tracing::info!(admin = %user, client = %ip, "administrator logged in");
            let mut r = redirect("/demandes");
            set_cookie(&mut r, &format!("{COOKIE}={sid}; {COOKIE_ATTRS}"));
            set_cookie(
                &mut r,
                &format!("{LOGIN_COOKIE}=; {COOKIE_ATTRS}; Max-Age=0"),
            );
            r
        }
        Ok(Ok(false)) => {
            attempt.failed();
            tracing::warn!(admin = %user, client = %ip, "failed administrator login");
            let msg = match lang {
                Lang::Fr => "Identifiant ou mot de passe incorrect.",
                Lang::En => "Wrong user name or password.",
            };
            login_form(lang, Some(msg), true, st).await
        }
        Ok(Err(e)) => {
            // Not the person's fault: the attempt is given back.
            attempt.release();
            tracing::error!(error = %e, "cannot read the administrators' file");
            let msg = match lang {
                Lang::Fr => {
                    "Le fichier des comptes d'administration est illisible : voir le journal du proxy."
                }
                Lang::En => "The administrators' file cannot be read: see the proxy's log.",
            };
            login_unavailable(lang, msg, st).await
        }
        Err(e) => {
            // The check itself broke on this input: counted, nothing says it was not
            // the input's doing.
            attempt.failed();
            tracing::error!(error = %e, "administrator password check failed");
            let msg = match lang {
                Lang::Fr => "La vérification du mot de passe a échoué : voir le journal du proxy.",
                Lang::En => "The password check failed: see the proxy's log.",
            };
            login_unavailable(lang, msg, st).await
        }
    }
}

/// The login form again, with `msg`, when the password could not be checked.
async fn login_unavailable(lang: Lang, msg: &str, st: &AdminState) -> Response<Body> {
    let mut r = login_form(lang, Some(msg), true, st).await;
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r
}

/// The pending requests with their 30-day block counts.
async fn pending(
    st: &AdminState,
    s: &Session,
    lang: Lang,
    flash: Option<&Flash>,
    status: StatusCode,
) -> Response<Body> {
    let store = st.unblock.store().clone();
    let t = now();
    let items = tokio::task::spawn_blocking(move || -> Result<Vec<Pending>, StoreError> {
        let since = t.div_euclid(86_400) - 30;
        store
            .list(Some(Status::Pending))?
            .into_iter()
            .map(|row| {
                let blocks_30d = store.blocks(&row.requester, &row.host, since)?;
                Ok(Pending { row, blocks_30d })
            })
            .collect()
    })
    .await;
    match items {
        Ok(Ok(items)) => html(
            status,
            pages::pending_page(
                lang,
                &st.live.get().policy,
                &s.admin,
                &s.csrf,
                &items,
                flash,
            ),
        ),
        Ok(Err(e)) => store_failed(lang, &e.to_string()),
        Err(e) => store_failed(lang, &e.to_string()),
    }
}

/// The dashboard: the figures read on the blocking pool, people shown by name only to
/// the administrators of `trace.names_visible_to`.
async fn dashboard(st: &AdminState, s: &Session, lang: Lang) -> Response<Body> {
    let store = st.unblock.store().clone();
    let names = st.names_visible_to.contains(&s.admin);
    let key = (!names).then(|| st.pseudonym_key.clone());
    let t = crate::unblock::unix(crate::clock::now());
    let started = Instant::now();
    let d = tokio::task::spawn_blocking(move || {
        crate::report::Dashboard::load(store.as_ref(), t, key.as_deref())
    })
    .await;
    match d {
        Ok(Ok(d)) => {
            let page = crate::pages::dashboard::page(lang, &s.admin, &s.csrf, &d);
            tracing::debug!(
                admin = %s.admin,
                ms = started.elapsed().as_millis() as u64,
                "dashboard served"
            );
            html(StatusCode::OK, page)
        }
        Ok(Err(e)) => store_failed(lang, &e.to_string()),
        Err(e) => store_failed(lang, &e.to_string()),
    }
}

fn store_failed(lang: Lang, e: &str) -> Response<Body> {
    tracing::error!(error = %e, "request store");
    let t = match lang {
        Lang::Fr => "La base des demandes est indisponible",
        Lang::En => "The request database is unavailable",
    };
    message(lang, StatusCode::SERVICE_UNAVAILABLE, t, e)
}

/// POST /demandes/N: approve or refuse.
async fn decide(st: &AdminState, id: i64, req: Request<Incoming>, lang: Lang) -> Response<Body> {
    let (s, _, fields) = match authorised(st, req, lang).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let store = st.unblock.store().clone();
    let row = {
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.get(id)).await {
            Ok(Ok(r)) => r,
            Ok(Err(StoreError::NotFound(_))) => {
                return message(lang, StatusCode::NOT_FOUND, not_found_words(lang), "");
            }
            Ok(Err(e)) => return store_failed(lang, &e.to_string()),
            Err(e) => return store_failed(lang, &e.to_string()),
        }
    };
    let msg = field(&fields, "message")
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    let bad = |text: String| async {
        pending(
            st,
            &s,
            lang,
            Some(&Flash::Error(text)),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await
    };
    if msg
        .as_ref()
        .is_some_and(|m| m.chars().count() > MAX_MESSAGE)
    {
        return bad(match lang {
            Lang::Fr => format!("Demande n° {id} : le message dépasse {MAX_MESSAGE} caractères."),
            Lang::En => {
                format!("Request no. {id}: the message is longer than {MAX_MESSAGE} characters.")
            }
        })
        .await;
    }
    let admin = s.admin.clone();
    let t = now();
    let decision = match ruling_of(&fields, &row.groups, msg.is_some(), t) {
        Ok(d) => d,
        Err(why) => return bad(why.text(id, lang)).await,
    };
    let unblock = st.unblock.clone();
    let d2 = decision.clone();
    let m2 = msg.clone();
    let done = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        let store = unblock.store();
        match &d2 {
            Ruling::Approve(scope, until) => {
                store.approve(id, &admin, scope, *until, m2.as_deref(), t)?
            }
            Ruling::Refuse => store.refuse(id, &admin, m2.as_deref().unwrap_or(""), t)?,
        }
        // In force before the administrator sees the confirmation.
        unblock.approvals.refresh()?;
        Ok(())
    })
    .await;
    match done {
        Ok(Ok(())) => {
            tracing::info!(admin = %s.admin, request = id, host = %row.host, decision = ?decision, "unblock request decided");
            let mut r = Response::new(full(String::new()));
            *r.status_mut() = StatusCode::SEE_OTHER;
            if let Ok(v) = HeaderValue::from_str(&format!("/demandes?fait={id}")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Ok(Err(StoreError::AlreadyDecided(_))) => {
            bad(match lang {
                Lang::Fr => format!("La demande n° {id} a déjà été traitée."),
                Lang::En => format!("Request no. {id} was already decided."),
            })
            .await
        }
        Ok(Err(e)) => store_failed(lang, &e.to_string()),
        Err(e) => store_failed(lang, &e.to_string()),
    }
}

/// What an administrator ruled on a request.
#[derive(Debug, Clone)]
enum Ruling {
    /// For whom, until when (`None`: no end).
    Approve(Scope, Option<i64>),
    Refuse,
}

/// Why a decision form cannot be taken as it is.
enum FormProblem {
    UnknownScopeOrDuration,
    RefusalWithoutMessage,
    NoChoice,
}

impl FormProblem {
    fn text(&self, id: i64, lang: Lang) -> String {
        match (self, lang) {
            (FormProblem::UnknownScopeOrDuration, Lang::Fr) => {
                format!("Demande n° {id} : portée ou durée inconnue.")
            }
            (FormProblem::UnknownScopeOrDuration, Lang::En) => {
                format!("Request no. {id}: unknown scope or duration.")
            }
            (FormProblem::RefusalWithoutMessage, Lang::Fr) => format!(
                "Demande n° {id} : écrivez un message pour expliquer le refus à la personne."
            ),
            (FormProblem::RefusalWithoutMessage, Lang::En) => {
                format!("Request no. {id}: write a message explaining the refusal to the person.")
            }
            (FormProblem::NoChoice, Lang::Fr) => {
                format!("Demande n° {id} : choisissez Approuver ou Refuser.")
            }
            (FormProblem::NoChoice, Lang::En) => {
                format!("Request no. {id}: choose Approve or Refuse.")
            }
        }
    }
}

/// The ruling a decision form asks for, at `now`: only the scopes the page offered
/// (this person, one of the requester's `groups`, everyone) and the durations it
/// offered; a refusal needs a message.
fn ruling_of(
    fields: &[(String, String)],
    groups: &[String],
    has_message: bool,
    now: i64,
) -> Result<Ruling, FormProblem> {
    match field(fields, "decision") {
        Some("approve") => {
            let scope = match field(fields, "scope")
                .unwrap_or("requester")
                .parse::<Scope>()
            {
                Ok(Scope::Group(g)) if !groups.contains(&g) => None,
                Ok(sc) => Some(sc),
                Err(_) => None,
            };
            let until = field(fields, "duration")
                .filter(|d| crate::unblock::WANTED.iter().any(|w| w.0 == *d))
                .and_then(|d| parse_duration(d).ok());
            match (scope, until) {
                (Some(scope), Some(until)) => Ok(Ruling::Approve(scope, until.map(|d| now + d))),
                _ => Err(FormProblem::UnknownScopeOrDuration),
            }
        }
        Some("refuse") if has_message => Ok(Ruling::Refuse),
        Some("refuse") => Err(FormProblem::RefusalWithoutMessage),
        _ => Err(FormProblem::NoChoice),
    }
}

/// GET /historique and /historique.csv.
async fn history(st: &AdminState, s: &Session, lang: Lang, csv: bool) -> Response<Body> {
    let store = st.unblock.store().clone();
    let rows = match tokio::task::spawn_blocking(move || store.history()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return store_failed(lang, &e.to_string()),
        Err(e) => return store_failed(lang, &e.to_string()),
    };
    if !csv {
        return html(
            StatusCode::OK,
            pages::history_page(lang, &s.admin, &s.csrf, &rows),
        );
    }
    let mut r = Response::new(full(export::decisions_csv(&rows)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"decisions-demandes.csv\""),
    );
    r
}

fn metrics(st: &AdminState) -> Response<Body> {
    st.metrics
        .tunnels_active
        .set(i64::try_from(st.tunnels.active()).unwrap_or(i64::MAX));
    if let Some(b) = &st.bumper {
        let leaves = b.leaves();
        st.metrics.observe_leaves(leaves.minted(), leaves.cached());
    }
    if let Some(d) = &st.directory {
        st.metrics.observe_directory(d);
    }
    st.metrics
        .store_up
        .set(i64::from(st.unblock.store().available()));
    let mut r = Response::new(full(st.metrics.render()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// The trace's part of `/health`: its last rotation and purge, and any failure.
fn trace_health(st: &AdminState) -> serde_json::Value {
    let t = st.trace.get();
    let date = httpdate::fmt_http_date;
    serde_json::json!({
        "last_rotation": t.rotated.map(date),
        "last_purge": t.purged.map(|(at, files, kept_from)| serde_json::json!({
            "at": date(at), "files_deleted": files, "kept_from": kept_from,
        })),
        "last_error": t.error,
        "write_error": t.write_error.map(|(at, e)| serde_json::json!({"at": date(at), "error": e})),
        "lines_dropped": st.metrics.trace_dropped.get(),
    })
}

fn health(st: &AdminState) -> Response<Body> {
    let (snap, status) = st.live.state();
    let store = st.unblock.store();
    let (kind, place) = store.describe();
    let store_up = store.available();
    let body = serde_json::json!({
        // `stale`: the policy in force is not the files' (a reload failed); `degraded`:
        // the store's database does not answer (filtering goes on, requests cannot be
        // taken).
        "status": if status.stale { "stale" } else if !store_up { "degraded" } else { "ok" },
        "policy": st.live.policy_path().display().to_string(),
        "generation": snap.generation,
        "loaded_at": httpdate::fmt_http_date(snap.loaded_at),
        "rules": snap.policy.rules.len(),
        "index_entries": snap.classifier.domain_names(),
        "compiled_index": snap.stats.compiled_index.as_ref().map(|p| p.display().to_string()),
        "stale": status.stale,
        "last_error": status.last_error,
        "tunnels": st.tunnels.active(),
        "trace": trace_health(st),
        "store": {
            "kind": kind,
            "at": place,
            "available": store_up,
            "approvals_in_force": st.unblock.approvals.get().len(),
        },
        "directory": st.directory.as_ref().map(|d| {
            let h = d.health();
            serde_json::json!({
                "up": h.up,
                "last_error": h.last_error,
                "since": httpdate::fmt_http_date(h.last_change),
                "unresolved_names": d.name_problems().iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        }),
    });
    let mut r = Response::new(full(
        serde_json::to_string_pretty(&body).unwrap_or_default() + "\n",
    ));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
