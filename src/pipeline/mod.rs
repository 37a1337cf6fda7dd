//! The request pipeline: composes the stages for one request or tunnel —
//! identity → classification → decision (+ reason) → action → audit record —
//! and is the only place that does. Every path out of here emits exactly one record.
//! Tunnels (CONNECT, TLS inspection) are in [`connect`].

mod connect;
pub mod identify;
mod late;
mod refuse;

pub use refuse::head_too_large;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::header;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::action::body::{self, Body, CountedBody, CountedIncoming};
use crate::action::bump::Bumper;
use crate::action::dial::Dialer;
use crate::action::forward::{
    self, SendError, announces_body, names_websocket_only, never_forwarded, seen_by_us,
    websocket_handshake,
};
use crate::action::pool::Pool;
use crate::action::respond::{html, reason_header, text};
use crate::action::tunnel;
use crate::audit::{AuditSink, Outcome, Record, Scheme};
use crate::classify::{Classification, Host, TagKind};
use crate::identity::Identity;
use crate::identity::auth::Authenticator;
use crate::identity::directory::Directory;
use crate::identity::workstation::Workstations;
use crate::metrics::Metrics;
use crate::pages::{self as block_page};
use crate::per_worker::PerWorker;
use crate::policy::{
    Decision, Inspection, Lang, LocalTime, Reason, ReasonCode, RequestFacts, Verdict,
};
use crate::settings::Settings;
use crate::snapshot::{Live, Snapshot};
use crate::tracker::Tracker;
use crate::unblock::UnblockService;
use crate::unblock::approvals::{self};

/// What the proxy listener's requests need that outlives them.
pub struct ProxyState {
    pub cfg: Settings,
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    pub audit: AuditSink,
    /// The users file; `None` when authentication is off everywhere.
    pub auth: Option<Arc<Authenticator>>,
    /// The directory, for groups and Basic passwords; `None` when none is configured.
    pub directory: Option<Arc<Directory>>,
    /// Kerberos single sign-on; `None` when Negotiate is not offered.
    #[cfg(feature = "kerberos")]
    pub negotiate: Option<Arc<crate::identity::negotiate::Acceptor>>,
    pub workstations: Workstations,
    /// One pool of plain-HTTP site connections per worker thread.
    pub upstream: PerWorker<Pool>,
    pub dialer: Dialer,
    /// Key that signs the unblock tokens of block pages.
    pub token_key: Arc<[u8]>,
    /// Tunnels and upgraded connections in flight (for graceful shutdown).
    pub tunnels: Tracker,
    /// TLS interception; `None` when it is off (`--no-inspect`).
    pub bumper: Option<Arc<Bumper>>,
    /// Unblock requests: approvals in force, blocks counted for the admin pages.
    pub unblock: Arc<UnblockService>,
    /// The town's time zone (`time_zone`): `schedule` conditions read its wall clock.
    pub tz: jiff::tz::TimeZone,
}

/// What the pipeline knows of a request, filled in as the stages go; becomes the record.
struct Ctx {
    st: Arc<ProxyState>,
    peer: SocketAddr,
    snap: Arc<Snapshot>,
    started: Instant,
    rec: Record,
    kind: &'static str,
    lang: Lang,
    /// An inspected tunnel whose TLS handshake succeeded: the requests inside it add
    /// their bytes to `charte_bytes_total`, so the tunnel's own record does not add them
    /// again (its bytes stay in its trace record).
    bytes_counted_inside: bool,
}

impl Ctx {
    fn new(
        st: &Arc<ProxyState>,
        peer: SocketAddr,
        method: &Method,
        headers: &http::HeaderMap,
        kind: &'static str,
        lang: Lang,
    ) -> Box<Ctx> {
        let snap = st.live.get();
        // An IPv4 client seen through an IPv6 socket (::ffff:a.b.c.d) is the IPv4 client.
        let client = peer.ip().to_canonical();
        let rec = Record {
            time: crate::clock::now(),
            client,
            workstation: st.workstations.get(client),
            user: None,
            groups: Vec::new(),
            method: method.as_str().into(),
            scheme: match kind {
                "connect" => Scheme::Tunnel,
                "https" => Scheme::Https,
                _ => Scheme::Http,
            },
            host: "".into(),
            port: 0,
            path: None,
            categories: Vec::new(),
            decision: Outcome::Allow,
            rule: None,
            reason_code: None,
            reason: None,
            would_block: None,
            inspection: Inspection::Inspect,
            status: 0,
            bytes_sent: 0,
            bytes_received: 0,
            duration: Duration::ZERO,
            upstream: None,
            error: None,
            user_agent: headers
                .get(header::USER_AGENT)
                .map(|v| header_text(v, crate::audit::record::USER_AGENT_MAX)),
            content_type: None,
            user_tried: None,
            found: None,
        };
        Box::new(Ctx {
            st: st.clone(),
            peer,
            snap,
            started: Instant::now(),
            rec,
            kind,
            lang,
            bytes_counted_inside: false,
        })
    }

    fn identify(&mut self, who: &Identity) {
        let groups = &self.snap.policy.groups;
        self.rec.groups = groups.shared_names(&who.groups).collect();
        self.rec.user = who.user.as_deref().map(Into::into);
    }

    fn classified(&mut self, host: &Host, port: u16, class: &Classification) {
        self.rec.host = host.as_str().into();
        self.rec.port = port;
        let cls = &self.snap.classifier;
        self.rec.categories = class
            .tags()
            .filter(|t| cls.tag(*t).kind == TagKind::Category)
            .map(|t| Arc::clone(&cls.tag(t).name))
            .collect();
    }

    fn decided(&mut self, d: &Decision) {
        let p = &self.snap.policy;
        self.rec.decision = d.verdict.into();
        self.rec.rule = d.rule.map(|r| Arc::clone(&p.rule(r).id));
        self.rec.reason_code = Some(d.reason.code);
        if d.verdict == Verdict::Block {
            self.rec.reason = Some(p.reason_text(&d.reason, Lang::Fr).into());
        }
        self.rec.would_block = d.would_block.map(|(r, _)| Arc::clone(&p.rule(r).id));
        self.rec.inspection = d.inspection;
    }

    fn refused(&mut self, code: ReasonCode) {
        self.rec.decision = if code == ReasonCode::AuthRequired {
            Outcome::AuthRequired
        } else {
            Outcome::Block
        };
        self.rec.reason_code = Some(code);
        self.rec.reason = Some(
            self.snap
                .policy
                .reason_text(&Reason::new(code, None), Lang::Fr)
                .into(),
        );
    }

    /// Emits the record of a request the proxy answered itself (a block page, a refusal,
    /// an error page): its status, and the bytes and content type of what it sent.
    fn answered(mut self: Box<Self>, res: &Response<Body>, sent: u64, error: Option<String>) {
        use http_body::Body as _;
        self.rec.content_type = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| header_text(v, CONTENT_TYPE_MAX));
        let page = res.body().size_hint().exact().unwrap_or(0);
        self.finish(res.status().as_u16(), sent, page, error);
    }

    /// Emits the one record of this request, and its metrics.
    fn finish(mut self: Box<Self>, status: u16, sent: u64, received: u64, error: Option<String>) {
        self.rec.status = status;
        self.rec.bytes_sent = sent;
        self.rec.bytes_received = received;
        self.rec.duration = self.started.elapsed();
        if let Some(e) = error {
            if self.rec.decision == Outcome::Allow {
                self.rec.decision = Outcome::Error;
            }
            self.rec.error = Some(e.into());
        }
        let m = &self.st.metrics;
        m.requests
            .with_label_values(&[
                self.kind,
                self.rec.decision.as_str(),
                // The metric's labels: the first category and group, or "none".
                self.rec.categories.first().map_or("none", |c| &**c),
                self.rec.groups.first().map_or("none", |g| &**g),
            ])
            .inc();
        if matches!(self.rec.decision, Outcome::Block | Outcome::AuthRequired) {
            m.blocks.with_label_values(&[self.rec.code()]).inc();
        }
        if !self.bytes_counted_inside {
            m.bytes_sent.inc_by(sent);
            m.bytes_received.inc_by(received);
        }
        m.observe_duration(self.kind, self.rec.duration.as_secs_f64());
        self.st.audit.record(self.rec);
    }
}

/// Longest `Content-Type` kept in a record, in bytes.
const CONTENT_TYPE_MAX: usize = 256;

/// A header's value as trace text: at most `max` bytes (cut at a character boundary),
/// bytes that are not UTF-8 replaced. The proxy's own two page types are shared, not
/// copied.
fn header_text(v: &http::HeaderValue, max: usize) -> Arc<str> {
    use std::sync::LazyLock;
    static HTML: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("text/html; charset=utf-8"));
    static TEXT: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("text/plain; charset=utf-8"));
    let b = v.as_bytes();
    if b == HTML.as_bytes() {
        return HTML.clone();
    }
    if b == TEXT.as_bytes() {
        return TEXT.clone();
    }
    let text = String::from_utf8_lossy(b);
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Arc::from(&text[..end])
}

/// Entry point for every request on the proxy listener; `conn`: what the request's
/// connection has proved.
pub async fn handle(
    st: Arc<ProxyState>,
    conn: Arc<identify::ConnIdentity>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let lang = block_page::lang_of(req.headers());
    // The durable trace: a full queue holds new requests here, before anything that
    // writes a record (the 431 refusal too).
    st.audit.admit().await;
    let head = crate::head::request_head_size(&req);
    if head > st.cfg.limits.max_head_bytes {
        return Ok(refuse::listener_head_refused(&st, peer, &req, head, lang));
    }
    if req.method() != Method::CONNECT && req.uri().authority().is_none() {
        // Someone browsed to the proxy itself: explain, do not loop. The manual proxy
        // shown is the first the PAC file gives this workstation.
        let pac = format!("{}/proxy.pac", st.cfg.portal_url);
        let proxy = st
            .cfg
            .proxies_for(peer.ip())
            .first()
            .map_or("", String::as_str);
        let page = block_page::render_help_page(lang, proxy, &pac, &st.cfg.portal_url);
        return Ok(html(StatusCode::OK, page));
    }
    let kind = if req.method() == Method::CONNECT {
        "connect"
    } else {
        "http"
    };
    let mut cx = Ctx::new(&st, peer, req.method(), req.headers(), kind, lang);

    // Identity.
    let proved = match identify::authenticate(&st, &conn, cx.rec.client, req.headers()).await {
        Ok(p) => p,
        Err(why) => return Ok(challenge(cx, &req, why)),
    };
    let (who, note) = identify::groups(
        &st,
        &cx.snap.policy.groups,
        cx.rec.client,
        proved.user.as_deref(),
    )
    .await;
    cx.identify(&who);
    if let Some(n) = note {
        cx.rec.error = Some(n.into());
    }

    if seen_by_us(req.headers()) {
        return Ok(refuse::loop_detected(cx));
    }

    let mut res = if kind == "connect" {
        connect::connect(cx, who, req).await
    } else {
        http(cx, who, req).await
    };
    if let Some(reply) = proved.reply {
        // Negotiate's last leg (mutual authentication), on the first answer.
        res.headers_mut().insert(header::PROXY_AUTHENTICATE, reply);
    }
    Ok(res)
}

/// 407: the client must (again) prove who it is. The record names the site asked for
/// (its URL, as Squid logs it), why (`no-credentials`, a refused token's code…) and the
/// user name the refused credentials gave.
fn challenge(
    mut cx: Box<Ctx>,
    req: &Request<Incoming>,
    why: identify::Challenge,
) -> Response<Body> {
    let st = cx.st.clone();
    if let Some(a) = req.uri().authority() {
        let default = if cx.kind == "connect" { 443 } else { 80 };
        cx.rec.port = a.port_u16().unwrap_or(default);
        match Host::parse_authority(a.as_str()) {
            Ok((host, _)) => {
                // The path, as for any request in clear, except a never-inspected site's.
                let path = req.uri().path_and_query().map(|p| p.as_str());
                let mut class = Classification::default();
                let snap = cx.snap.clone();
                snap.classifier
                    .classify(&host, path, &mut String::new(), &mut class);
                if cx.kind != "connect" && !snap.policy.never_inspected(&class) {
                    cx.rec.path = path.map(Into::into);
                }
                cx.rec.host = host.as_str().into();
            }
            Err(_) => cx.rec.host = a.host().chars().take(255).collect::<String>().into(),
        }
    }
    cx.refused(ReasonCode::AuthRequired);
    cx.rec.error = Some(why.code().into());
    cx.rec.user_tried = identify::tried_user(req.headers()).map(Into::into);
    st.metrics.auth_failures.inc();
    st.metrics
        .auth_challenges
        .with_label_values(&[why.label()])
        .inc();
    let reason = cx
        .snap
        .policy
        .reason_text(&Reason::new(ReasonCode::AuthRequired, None), cx.lang)
        .into_owned();
    let mut res = text(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        format!("{reason}\n"),
    );
    for v in identify::challenges(&st) {
        res.headers_mut().append(header::PROXY_AUTHENTICATE, v);
    }
    reason_header(&mut res, ReasonCode::AuthRequired, None);
    cx.answered(&res, 0, None);
    res
}

/// Whether an approved unblock request opens `host` for this client now.
fn approved(st: &ProxyState, snap: &Snapshot, who: &Identity, host: &Host) -> bool {
    let a = st.unblock.approvals.get();
    if a.is_empty() {
        return false;
    }
    let groups = &snap.policy.groups;
    let in_group = |g: &str| groups.names(&who.groups).any(|n| n == g);
    a.covers(
        host,
        who.user.as_deref(),
        who.addr,
        &in_group,
        approvals::now(),
    )
}

/// Where a request goes: from an absolute URI (plain HTTP) or from the tunnel it came in
/// (inspected HTTPS).
struct Target {
    https: bool,
    host: Host,
    port: u16,
}

impl Target {
    fn default_port(&self) -> u16 {
        if self.https { 443 } else { 80 }
    }

    /// `host[:port]`, the port only when it is not the scheme's.
    fn authority(&self) -> String {
        let mut a = self.host.to_authority();
        if self.port != self.default_port() {
            use std::fmt::Write as _;
            let _ = write!(a, ":{}", self.port);
        }
        a
    }

    fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// The URL of `path` on this target (block pages, unblock tokens).
    fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme(), self.authority())
    }
}

async fn http(mut cx: Box<Ctx>, who: Identity, req: Request<Incoming>) -> Response<Body> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("http") {
        cx.refused(ReasonCode::BadHost);
        let page = block_page::render_error_page(
            cx.lang,
            400,
            match cx.lang {
                Lang::Fr => "Seules les adresses http:// passent en clair par le proxy",
                Lang::En => "Only http:// addresses go through the proxy in clear",
            },
            uri.scheme_str().unwrap_or(""),
        );
        let res = html(StatusCode::BAD_REQUEST, page);
        cx.answered(&res, 0, None);
        return res;
    }
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
    let (host, port) = match Host::parse_authority(authority) {
        Ok((h, p)) => (h, p.unwrap_or(80)),
        Err(e) => return refuse::bad_host(cx, authority, &e.to_string()),
    };
    let target = Target {
        https: false,
        host,
        port,
    };
    exchange(cx, who, req, target).await
}

/// The town's wall-clock time at `t`, for the policy's `schedule` conditions; Monday
/// 00:00 (never read) when no rule has one.
fn local_time(
    st: &ProxyState,
    policy: &crate::policy::Policy,
    t: std::time::SystemTime,
) -> LocalTime {
    if policy.scheduled {
        LocalTime::of(crate::clock::civil(t, &st.tz))
    } else {
        LocalTime::default()
    }
}

/// Classifies the request with its path and decides; fills the record. `Err(page)`
/// when it is blocked (the caller finishes the record with 403); otherwise the decision
/// and the facts it had, for a late decision.
fn decide(
    cx: &mut Ctx,
    who: &Identity,
    req: &Request<Incoming>,
    target: &Target,
) -> Result<(Decision, late::Asked), Box<Response<Body>>> {
    use http_body::Body as _;
    let st = cx.st.clone();
    let host = &target.host;
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let snap = cx.snap.clone();
    let mut class = Classification::default();
    let mut scratch = String::new();
    snap.classifier
        .classify(host, Some(path), &mut scratch, &mut class);
    let facts = RequestFacts {
        // HTTP/2 has no Content-Length to rely on: a body is a body.
        body: announces_body(req.headers()) || !req.body().is_end_stream(),
        query_len: req.uri().query().map_or(0, |q| q.len() as u32),
        approved: approved(&st, &snap, who, host),
        local: local_time(&st, &snap.policy, cx.rec.time),
        // The request is in clear here: plain HTTP, or decrypted from a bumped tunnel.
        ..RequestFacts::for_method(req.method().as_str(), true)
    };
    let d = snap.policy.decide(who, &class, &facts);
    cx.classified(host, target.port, &class);
    cx.decided(&d);
    // Plain HTTP shows the path, but a never-inspected site's path is never recorded.
    if snap.policy.never_inspected(&class) {
        cx.rec.inspection = Inspection::Tunnel;
    } else {
        cx.rec.inspection = Inspection::Inspect;
        cx.rec.path = Some(path.into());
    }
    if d.verdict == Verdict::Block {
        let url = target.url(path);
        return Err(Box::new(refuse::block_response(
            cx, who, &d, host, &url, None,
        )));
    }
    let asked = late::Asked {
        approved: facts.approved,
        local: facts.local,
        body: facts.body,
        query_len: facts.query_len,
    };
    Ok((d, asked))
}

/// One request, plain or from an inspected tunnel: classify with the path, decide,
/// then answer with the block page or forward it.
async fn exchange(
    mut cx: Box<Ctx>,
    who: Identity,
    mut req: Request<Incoming>,
    target: Target,
) -> Response<Body> {
    // The decision is synchronous and kept out of this future: what it needs (the
    // classification, the scratch buffers) does not live across the awaits below, so the
    // future that every request moves stays small.
    let (d, asked) = match decide(&mut cx, &who, &req, &target) {
        Ok(x) => x,
        Err(blocked) => {
            cx.answered(&blocked, 0, None);
            return *blocked;
        }
    };
    // Tenant restrictions go on what is seen in clear and may be inspected.
    let restricted = (cx.rec.inspection == Inspection::Inspect
        && !cx.snap.policy.tenant.is_empty()
        && !cx.snap.policy.groups.inspection_off(&who.groups))
    .then_some(who.groups);
    if never_forwarded(req.method()) {
        return refuse::method_refused(cx);
    }
    let accepts_html = block_page::wants_html(req.headers());
    // A rule before the deciding one waits for the body or the answer: keep what a new
    // decision needs (rare: only policies with `content` or `file_types` rules).
    // (Something pending implies a path in clear, so the record holds it.)
    let again = (d.pending.body() || d.pending.answer()).then(|| {
        let path = cx.rec.path.clone().unwrap_or_else(|| "/".into());
        Arc::new(late::Again::new(
            &cx.snap,
            who,
            &target.host,
            path,
            req.method(),
            asked,
        ))
    });
    let st = cx.st.clone();
    let lim = &st.cfg.limits;
    // Only a WebSocket handshake keeps its `Upgrade` (see [`websocket_handshake`] for why
    // any other is dropped rather than refused).
    let websocket = websocket_handshake(req.method(), req.version(), req.headers());
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let authority = target.authority();
    let site = forward::Site {
        https: target.https,
        host: &target.host,
        port: target.port,
        authority: &authority,
    };
    let (mut parts, body) = req.into_parts();
    if let Err(e) = forward::prepare(&mut parts, &site, websocket) {
        return refuse::bad_host(cx, &authority, &e.to_string());
    }
    if let Some(groups) = restricted {
        forward::restrict(&mut parts, &cx.snap.policy.tenant, &target.host, &groups);
    }
    let sent = Arc::new(AtomicU64::new(0));
    let mut incoming = CountedIncoming::new(body, sent.clone(), lim.body_idle_timeout);
    // The upload's content, when a rule waits for it.
    let mut content = None;
    let mut pending = d.pending;
    let mut slot = None;
    if let Some(again) = again.as_ref().filter(|_| d.pending.body()) {
        if !asked.body {
            content = Some(crate::policy::ContentHits::NONE);
        } else {
            match late::upload(&mut incoming, &parts.headers, again.clone(), &d).await {
                late::Upload::Whole(d2, found) => {
                    st.metrics
                        .content_checks
                        .with_label_values(&["upload", "clean"])
                        .inc();
                    cx.decided(&d2);
                    pending = d2.pending;
                    content = Some(found.hits());
                }
                late::Upload::Streaming(d2, s) => {
                    st.metrics
                        .content_checks
                        .with_label_values(&["upload", "streamed"])
                        .inc();
                    cx.decided(&d2);
                    pending = d2.pending;
                    slot = Some(s);
                }
                late::Upload::Refused(r) => {
                    return upload_refused(cx, again, r, &target, sent.load(Ordering::Relaxed));
                }
            }
        }
    }
    let out = Request::from_parts(parts, incoming);
    let senders = forward::Senders {
        pool: st.upstream.get(),
        tls: st.bumper.as_deref().map(Bumper::upstream),
    };
    let answered = forward::send(out, &site, senders, &sent, lim.upstream_first_byte_timeout);
    let mut res = match answered.await {
        Ok((r, peer)) => {
            cx.rec.upstream = peer;
            r
        }
        Err(e) => {
            // A long upload refused on its way: the block page, not an upstream error.
            let refused = slot.and_then(|s| s.lock().ok().and_then(|mut g| g.take()));
            if let (Some(r), Some(again)) = (refused, again.as_ref()) {
                return upload_refused(cx, again, r, &target, sent.load(Ordering::Relaxed));
            }
            return match e {
                SendError::Timeout(e) => refuse::dial_failed(cx, &e, true),
                e => refuse::upstream_failed(cx, &e, sent.load(Ordering::Relaxed)),
            };
        }
    };
    let status = res.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // The client's connection is handed over only to the WebSocket the proxy relayed a
        // handshake for: any other switch would carry bytes that nothing decides.
        let Some(client_up) = client_upgrade.filter(|_| names_websocket_only(res.headers())) else {
            let to = res.headers().get(header::UPGRADE).cloned();
            return refuse::switch_refused(cx, to.as_ref(), sent.load(Ordering::Relaxed));
        };
        let server_up = hyper::upgrade::on(&mut res);
        relay_switched(cx, client_up, server_up, lim.tunnel_idle_timeout);
        let (mut parts, _) = res.into_parts();
        forward::answer_head(&mut parts, true);
        return Response::from_parts(parts, body::empty());
    }
    let (mut parts, mut body) = res.into_parts();
    // A download a rule waits for: its first bytes say what it is.
    let mut ahead = Vec::new();
    if let Some(again) = again.as_ref().filter(|_| pending.answer()) {
        ahead = match late::first_bytes(&mut body, lim.upstream_idle_timeout).await {
            Ok(h) => h,
            Err(e) => {
                let e = SendError::Timeout(crate::action::dial::UpstreamError::Timeout {
                    host: format!("{} ({e})", target.host),
                });
                return refuse::upstream_failed(cx, &e, sent.load(Ordering::Relaxed));
            }
        };
        let path = cx.rec.path.clone().unwrap_or_else(|| "/".into());
        let (kinds, words) = late::download_kinds(&path, &parts.headers, &ahead);
        // Nothing found: no `file_types` rule can match, the decision stands.
        let d3 = if kinds.is_empty() {
            None
        } else {
            Some(again.decide(content, Some(kinds)))
        };
        let outcome = if d3.is_some_and(|d3| d3.verdict == Verdict::Block) {
            "refused"
        } else {
            "clean"
        };
        st.metrics
            .content_checks
            .with_label_values(&["download", outcome])
            .inc();
        if let Some(d3) = d3.filter(|d3| d3.verdict == Verdict::Block) {
            cx.decided(&d3);
            cx.rec.found = Some(words.into());
            return download_refused(cx, again, &d3, kinds, &target, accepts_html);
        }
    }
    let body = body::Prefixed::new(ahead, body);
    forward::answer_head(&mut parts, false);
    cx.rec.content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| header_text(v, CONTENT_TYPE_MAX));
    use http_body_util::BodyExt;
    let body: Body = body::Idle::new(body, "response", lim.upstream_idle_timeout).boxed();
    let code = status.as_u16();
    let counted = CountedBody::new(body, move |received, err| {
        cx.finish(code, sent.load(Ordering::Relaxed), received, err);
    });
    Response::from_parts(parts, counted.boxed())
}

/// An upload refused by the content checks (or unreadable for them): the block page,
/// with what was found (never the text itself); nothing of the body was sent, or only
/// an incomplete part of a body longer than the hold.
fn upload_refused(
    mut cx: Box<Ctx>,
    again: &late::Again,
    r: late::Refusal,
    target: &Target,
    sent: u64,
) -> Response<Body> {
    let url = target.url(cx.rec.path.as_deref().unwrap_or("/"));
    let outcome = match &r {
        late::Refusal::Content(..) => Some("refused"),
        late::Refusal::Unchecked(_) => Some("unchecked"),
        late::Refusal::Client(_) => None,
    };
    if let Some(o) = outcome {
        cx.st
            .metrics
            .content_checks
            .with_label_values(&["upload", o])
            .inc();
    }
    match r {
        late::Refusal::Content(d, found) => {
            cx.decided(&d);
            let s = &cx.snap.policy.content;
            cx.rec.found = Some(found.trace(s).into());
            let page = found.page(s, cx.lang);
            let res = refuse::block_response(&cx, &again.who, &d, &target.host, &url, Some(&page));
            cx.answered(&res, sent, None);
            res
        }
        late::Refusal::Unchecked(e) => {
            let d = Decision {
                verdict: Verdict::Block,
                reason: Reason::new(ReasonCode::ContentUnchecked, None),
                rule: None,
                ..again.decide(Some(crate::policy::ContentHits::NONE), None)
            };
            cx.decided(&d);
            cx.rec.rule = None;
            cx.rec.error = Some(e.code().into());
            let res = refuse::block_response(&cx, &again.who, &d, &target.host, &url, None);
            cx.answered(&res, sent, None);
            res
        }
        late::Refusal::Client(e) => refuse::client_body_failed(cx, e.as_ref(), sent),
    }
}

/// A download refused for its type: the block page for a browser, a short text for
/// other clients; the site's answer is dropped unread.
fn download_refused(
    cx: Box<Ctx>,
    again: &late::Again,
    d: &Decision,
    kinds: crate::policy::FileTypes,
    target: &Target,
    accepts_html: bool,
) -> Response<Body> {
    let url = target.url(cx.rec.path.as_deref().unwrap_or("/"));
    let found = late::kinds_page(kinds, cx.lang);
    let res = if accepts_html {
        refuse::block_response(&cx, &again.who, d, &target.host, &url, Some(&found))
    } else {
        let reason = cx.snap.policy.reason_text(&d.reason, cx.lang).into_owned();
        let mut res = text(StatusCode::FORBIDDEN, format!("{reason}\n{found}\n"));
        reason_header(
            &mut res,
            d.reason.code,
            d.rule.map(|r| &*cx.snap.policy.rule(r).id),
        );
        res
    };
    cx.answered(&res, 0, None);
    res
}

/// Relays a switched (WebSocket) connection as bytes once both sides have handed it
/// over, and emits the request's record when it ends.
fn relay_switched(
    cx: Box<Ctx>,
    client_up: hyper::upgrade::OnUpgrade,
    server_up: hyper::upgrade::OnUpgrade,
    idle: std::time::Duration,
) {
    let guard = cx.st.tunnels.enter();
    tokio::spawn(async move {
        let _guard = guard;
        let (a, b) = tokio::join!(client_up, server_up);
        let (sent_n, recv_n, err) = match (a, b) {
            (Ok(a), Ok(b)) => {
                let a = hyper_util::rt::TokioIo::new(a);
                let b = hyper_util::rt::TokioIo::new(b);
                tunnel::relay(a, b, idle).await
            }
            (Err(e), _) | (_, Err(e)) => (0, 0, Some(e.to_string())),
        };
        cx.finish(101, sent_n, recv_n, err);
    });
}
