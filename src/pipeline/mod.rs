//! The request pipeline: composes the stages for one request or tunnel —
//! identity → classification → decision (+ reason) → action → audit record —
//! and is the only place that does. Every path out of here emits exactly one record.
//! Tunnels (CONNECT, TLS inspection) are in [`connect`].

mod connect;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use crate::action::bump::{Bumper, TlsProblem};
use crate::action::dial::UpstreamError;
use crate::action::forward::{
    self, Body, CountedBody, CountedIncoming, Dialer, add_via, names_websocket_only,
    never_forwarded, seen_by_us, sends_data, strip_hop_by_hop, websocket_handshake,
};
use crate::action::pool::{Pool, PoolError};
use crate::action::respond::{html, reason_header, text};
use crate::action::tunnel;
use crate::audit::{AuditSink, Outcome, Record, Scheme};
use crate::classify::{Classification, Host, TagKind};
use crate::identity::Identity;
use crate::identity::auth::{AuthOutcome, Authenticator};
use crate::identity::workstation::Workstations;
use crate::metrics::Metrics;
use crate::pages::{self as block_page, BlockPage, UnblockOffer};
use crate::per_worker::PerWorker;
use crate::policy::{
    Decision, Inspection, Lang, Policy, Reason, ReasonCode, RequestFacts, Verdict,
};
use crate::settings::{AuthMode, Settings};
use crate::snapshot::{Live, Snapshot};
use crate::tracker::Tracker;
use crate::unblock::UnblockService;
use crate::unblock::approvals::{self, Requester};
use crate::unblock::token;

/// What the proxy listener's requests need that outlives them.
pub struct ProxyState {
    pub cfg: Settings,
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    pub audit: AuditSink,
    /// `None` when authentication is off everywhere.
    pub auth: Option<Arc<Authenticator>>,
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
}

impl Ctx {
    fn new(
        st: &Arc<ProxyState>,
        peer: SocketAddr,
        method: &Method,
        kind: &'static str,
        lang: Lang,
    ) -> Box<Ctx> {
        let snap = st.live.get();
        // An IPv4 client seen through an IPv6 socket (::ffff:a.b.c.d) is the IPv4 client.
        let client = peer.ip().to_canonical();
        let rec = Record {
            time: SystemTime::now(),
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
        };
        Box::new(Ctx {
            st: st.clone(),
            peer,
            snap,
            started: Instant::now(),
            rec,
            kind,
            lang,
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
        m.bytes_sent.inc_by(sent);
        m.bytes_received.inc_by(received);
        m.observe_duration(self.kind, self.rec.duration.as_secs_f64());
        self.st.audit.record(self.rec);
    }
}

/// Entry point for every request on the proxy listener.
pub async fn handle(
    st: Arc<ProxyState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let lang = block_page::lang_of(req.headers());
    let head = crate::head::request_head_size(&req);
    if head > st.cfg.limits.max_head_bytes {
        return Ok(listener_head_refused(&st, peer, &req, head, lang));
    }
    if req.method() != Method::CONNECT && req.uri().authority().is_none() {
        // Someone browsed to the proxy itself: explain, do not loop.
        let pac = format!("{}/proxy.pac", st.cfg.portal_url);
        let page =
            block_page::render_help_page(lang, &st.cfg.public_proxy, &pac, &st.cfg.portal_url);
        return Ok(html(StatusCode::OK, page));
    }
    let kind = if req.method() == Method::CONNECT {
        "connect"
    } else {
        "http"
    };
    let mut cx = Ctx::new(&st, peer, req.method(), kind, lang);

    // Identity.
    let user = match authenticate(&st, cx.rec.client, &req).await {
        Ok(u) => u,
        Err(()) => {
            cx.refused(ReasonCode::AuthRequired);
            st.metrics.auth_failures.inc();
            let reason = cx
                .snap
                .policy
                .reason_text(&Reason::new(ReasonCode::AuthRequired, None), lang)
                .into_owned();
            let mut res = text(
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                format!("{reason}\n"),
            );
            let challenge = format!(
                "Basic realm=\"{}\", charset=\"UTF-8\"",
                st.cfg.auth.realm.replace('"', "")
            );
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                res.headers_mut().insert(header::PROXY_AUTHENTICATE, v);
            }
            reason_header(&mut res, ReasonCode::AuthRequired, None);
            cx.finish(407, 0, 0, None);
            return Ok(res);
        }
    };
    let who = cx
        .snap
        .policy
        .groups
        .resolve(cx.rec.client, user.as_deref());
    cx.identify(&who);

    if seen_by_us(req.headers()) {
        return Ok(loop_detected(cx));
    }

    if kind == "connect" {
        Ok(connect::connect(cx, who, req).await)
    } else {
        Ok(http(cx, who, req).await)
    }
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

/// 508: the request already went through this proxy.
fn loop_detected(mut cx: Box<Ctx>) -> Response<Body> {
    cx.rec.decision = Outcome::Error;
    cx.rec.reason_code = Some(ReasonCode::Loop);
    let page = block_page::render_error_page(cx.lang, 508, loop_title(cx.lang), "");
    cx.finish(
        508,
        0,
        0,
        Some("request loop: this proxy is already in Via".into()),
    );
    html(StatusCode::LOOP_DETECTED, page)
}

fn loop_title(lang: Lang) -> &'static str {
    match lang {
        Lang::Fr => "Boucle détectée : la requête revient vers le proxy",
        Lang::En => "Loop detected: the request comes back to the proxy",
    }
}

/// 431 for a head over `limits.max_head_bytes` ([`crate::head`]), traced: the host as
/// the client wrote it (filled in by the caller; nothing was classified), never a path.
fn head_refused(mut cx: Box<Ctx>, size: usize, version: Version) -> Response<Body> {
    let limit = cx.st.cfg.limits.max_head_bytes;
    cx.refused(ReasonCode::HeadTooLarge);
    let detail = format!("request head of {size} bytes, over the limit of {limit}");
    let res = head_too_large(&cx.snap.policy, cx.lang, version, &detail);
    cx.finish(431, 0, 0, Some(detail));
    res
}

/// [`head_refused`] on the proxy listener: the record names the host as the client wrote
/// it (absolute URI, CONNECT authority or `Host`).
fn listener_head_refused(
    st: &Arc<ProxyState>,
    peer: SocketAddr,
    req: &Request<Incoming>,
    size: usize,
    lang: Lang,
) -> Response<Body> {
    let connect = req.method() == Method::CONNECT;
    let kind = if connect { "connect" } else { "http" };
    let mut cx = Ctx::new(st, peer, req.method(), kind, lang);
    let written = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(header::HOST)?.to_str().ok())
        .unwrap_or("");
    match Host::parse_authority(written) {
        Ok((h, p)) => {
            cx.rec.host = h.as_str().into();
            cx.rec.port = p.unwrap_or(if connect { 0 } else { 80 });
        }
        Err(_) => cx.rec.host = written.chars().take(255).collect::<String>().into(),
    }
    head_refused(cx, size, req.version())
}

/// The answer to a head over the limit, on every listener: 431, the error page, the
/// reason header, and in HTTP/1 `Connection: close` (a client that sent such a head
/// gets no second try on that connection; HTTP/2 has no such field, its stream ends).
pub fn head_too_large(
    policy: &Policy,
    lang: Lang,
    version: Version,
    detail: &str,
) -> Response<Body> {
    let title = policy.reason_text(&Reason::new(ReasonCode::HeadTooLarge, None), lang);
    let page = block_page::render_error_page(lang, 431, &title, detail);
    let mut res = html(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, page);
    reason_header(&mut res, ReasonCode::HeadTooLarge, None);
    if version < Version::HTTP_2 {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// 405 for a method the proxy never relays (TRACE, TRACK; CONNECT inside a bumped
/// tunnel): the page says why. No `Allow` field: which methods the site allows is the
/// site's to say. The rule that let the site through did not decide this refusal.
fn method_refused(mut cx: Box<Ctx>) -> Response<Body> {
    cx.refused(ReasonCode::MethodNotAllowed);
    cx.rec.rule = None;
    let title = cx
        .snap
        .policy
        .reason_text(&Reason::new(ReasonCode::MethodNotAllowed, None), cx.lang)
        .into_owned();
    let detail = cx.rec.method.to_string();
    let page = block_page::render_error_page(cx.lang, 405, &title, &detail);
    let mut res = html(StatusCode::METHOD_NOT_ALLOWED, page);
    reason_header(&mut res, ReasonCode::MethodNotAllowed, None);
    cx.finish(405, 0, 0, None);
    res
}

/// `Ok(user)` when the client may go on (authenticated or anonymous where allowed).
async fn authenticate(
    st: &ProxyState,
    client: std::net::IpAddr,
    req: &Request<Incoming>,
) -> Result<Option<Arc<str>>, ()> {
    let Some(auth) = &st.auth else {
        return Ok(None);
    };
    let mode = st.cfg.auth.mode(client);
    if mode == AuthMode::Off {
        return Ok(None);
    }
    let header = req
        .headers()
        .get(header::PROXY_AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match (auth.check(header).await, mode) {
        (AuthOutcome::Authenticated(u), _) => Ok(Some(u)),
        (AuthOutcome::Missing, AuthMode::Optional) => Ok(None),
        _ => Err(()),
    }
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
        cx.finish(400, 0, 0, None);
        return html(StatusCode::BAD_REQUEST, page);
    }
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
    let (host, port) = match Host::parse_authority(authority) {
        Ok((h, p)) => (h, p.unwrap_or(80)),
        Err(e) => return bad_host(cx, authority, &e.to_string()),
    };
    let target = Target {
        https: false,
        host,
        port,
    };
    exchange(cx, who, req, target).await
}

/// Classifies the request with its path and decides; fills the record. `Some(page)`
/// when it is blocked (the caller finishes the record with 403).
fn decide(
    cx: &mut Ctx,
    who: &Identity,
    req: &Request<Incoming>,
    target: &Target,
) -> Option<Response<Body>> {
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
        method: req.method().as_str(),
        // HTTP/2 has no Content-Length to rely on: a body is a body.
        sends_data: sends_data(req.headers()) || !req.body().is_end_stream(),
        path_visible: true,
        approved: approved(&st, &snap, who, host),
        // The request is in clear here: plain HTTP, or decrypted from a bumped tunnel.
        inspectable: true,
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
    (d.verdict == Verdict::Block).then(|| {
        let url = format!("{}://{}{path}", target.scheme(), target.authority());
        block_response(cx, who, &d, host, &url)
    })
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
    if let Some(blocked) = decide(&mut cx, &who, &req, &target) {
        cx.finish(403, 0, 0, None);
        return blocked;
    }
    drop(who);
    if never_forwarded(req.method()) {
        return method_refused(cx);
    }
    let st = cx.st.clone();
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));

    // Forward. Only a WebSocket handshake keeps its `Upgrade` (see
    // [`websocket_handshake`] for why any other is dropped rather than refused).
    let upgrade = websocket_handshake(req.method(), req.version(), req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers, upgrade);
    add_via(&mut parts.headers);
    let canonical = target.authority();
    if target.https {
        // The TLS client sets Host (HTTP/1.1) or :authority (HTTP/2) from the URI.
        parts.headers.remove(header::HOST);
    } else if !only_value(&parts.headers, header::HOST, &canonical)
        && let Ok(v) = HeaderValue::from_str(&canonical)
    {
        // Replaces every Host the client sent: the site sees one, the canonical one.
        parts.headers.insert(header::HOST, v);
    }
    parts.version = Version::HTTP_11;
    if target.https {
        // hyper-util's client reads the site from an absolute URI.
        parts.uri = match Uri::builder()
            .scheme(target.scheme())
            .authority(canonical.as_str())
            .path_and_query(path)
            .build()
        {
            Ok(u) => u,
            Err(e) => return bad_host(cx, &canonical, &e.to_string()),
        };
    } else {
        // The plain pool is given the site apart and sends origin-form: nothing to build.
        parts.uri = Uri::from(path);
    }
    let sent = Arc::new(AtomicU64::new(0));
    let lim = &st.cfg.limits;
    let out = Request::from_parts(
        parts,
        CountedIncoming::new(body, sent.clone(), lim.body_idle_timeout),
    );
    let sending = async {
        match (&st.bumper, target.https) {
            (Some(b), true) => match b.upstream().request(out).await {
                Ok(r) => {
                    let peer = r
                        .extensions()
                        .get::<hyper_util::client::legacy::connect::HttpInfo>()
                        .map(|i| i.remote_addr());
                    Ok((r, peer))
                }
                Err(e) => Err(Failed::Tls(e)),
            },
            _ => match st
                .upstream
                .get()
                .send(&canonical, &target.host, target.port, out)
                .await
            {
                Ok(a) => Ok((a.response, Some(a.peer))),
                Err(e) => Err(Failed::Plain(e)),
            },
        }
    };
    // The site has `upstream_first_byte_timeout` to answer once the request stops
    // moving: a long upload is not cut while its bytes flow.
    let mut sending = std::pin::pin!(sending);
    let mut seen = sent.load(Ordering::Relaxed);
    let answered = loop {
        match tokio::time::timeout(lim.upstream_first_byte_timeout, sending.as_mut()).await {
            Ok(r) => break r,
            Err(_) => {
                let now = sent.load(Ordering::Relaxed);
                if now == seen {
                    let e = UpstreamError::Timeout {
                        host: target.host.to_string(),
                    };
                    return dial_failed(cx, &e, true);
                }
                seen = now;
            }
        }
    };
    let mut res = match answered {
        Ok((r, peer)) => {
            cx.rec.upstream = peer;
            r
        }
        Err(e) => return upstream_failed(cx, &e, sent.load(Ordering::Relaxed)),
    };
    let status = res.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // The client's connection is handed over only to the WebSocket the proxy relayed a
        // handshake for: any other switch would carry bytes that nothing decides.
        let Some(client_up) = client_upgrade.filter(|_| names_websocket_only(res.headers())) else {
            let to = res.headers().get(header::UPGRADE).cloned();
            return switch_refused(cx, to.as_ref(), sent.load(Ordering::Relaxed));
        };
        let server_up = hyper::upgrade::on(&mut res);
        let guard = st.tunnels.enter();
        let idle = lim.tunnel_idle_timeout;
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
        let (mut parts, _) = res.into_parts();
        strip_hop_by_hop(&mut parts.headers, true);
        add_via(&mut parts.headers);
        return Response::from_parts(parts, forward::empty());
    }
    let (mut parts, body) = res.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    add_via(&mut parts.headers);
    use http_body_util::BodyExt;
    let body: Body = forward::Idle::new(body, "response", lim.upstream_idle_timeout).boxed();
    let code = status.as_u16();
    let counted = CountedBody::new(body, move |received, err| {
        cx.finish(code, sent.load(Ordering::Relaxed), received, err);
    });
    Response::from_parts(parts, http_body_util::BodyExt::boxed(counted))
}

/// 502: the site answered `101 Switching Protocols` to a request that was not a relayed
/// WebSocket handshake, or switched to another protocol than WebSocket. The site's
/// connection is dropped; the client's stays HTTP and gets a page.
fn switch_refused(mut cx: Box<Ctx>, to: Option<&HeaderValue>, sent: u64) -> Response<Body> {
    cx.st
        .metrics
        .upstream_errors
        .with_label_values(&["switch"])
        .inc();
    let to: String = to
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
        .chars()
        .take(100)
        .collect();
    let detail = format!(
        "the site switched protocols (101, Upgrade: {to:?}) where the proxy relayed no \
         WebSocket handshake"
    );
    let title = match cx.lang {
        Lang::Fr => "Le site a voulu changer de protocole : le proxy ne peut pas le suivre",
        Lang::En => "The site tried to switch protocols: the proxy cannot follow it",
    };
    let page = block_page::render_error_page(cx.lang, 502, title, &detail);
    cx.rec.reason_code = Some(ReasonCode::UpstreamSwitch);
    cx.finish(502, sent, 0, Some(detail));
    let mut res = html(StatusCode::BAD_GATEWAY, page);
    res.headers_mut().insert(
        "x-charte-error",
        HeaderValue::from_static(ReasonCode::UpstreamSwitch.as_str()),
    );
    res
}

/// Whether `name` appears exactly once in `h`, with the value `want`.
fn only_value(h: &HeaderMap, name: HeaderName, want: &str) -> bool {
    let mut all = h.get_all(name).iter();
    all.next().map(HeaderValue::as_bytes) == Some(want.as_bytes()) && all.next().is_none()
}

fn bad_host(mut cx: Box<Ctx>, authority: &str, why: &str) -> Response<Body> {
    cx.refused(ReasonCode::BadHost);
    cx.rec.host = authority.chars().take(255).collect::<String>().into();
    let title = cx
        .snap
        .policy
        .reason_text(&Reason::new(ReasonCode::BadHost, None), cx.lang)
        .into_owned();
    let page = block_page::render_error_page(cx.lang, 400, &title, why);
    cx.finish(400, 0, 0, None);
    html(StatusCode::BAD_REQUEST, page)
}

/// Why the site's answer did not come, from either upstream client.
enum Failed {
    /// The plain-HTTP pool.
    Plain(PoolError),
    /// The bumped-HTTPS client.
    Tls(hyper_util::client::legacy::Error),
}

impl Failed {
    fn is_connect(&self) -> bool {
        match self {
            Failed::Plain(e) => e.is_connect(),
            Failed::Tls(e) => e.is_connect(),
        }
    }

    fn error(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            Failed::Plain(e) => e,
            Failed::Tls(e) => e,
        }
    }
}

fn upstream_failed(cx: Box<Ctx>, failed: &Failed, sent: u64) -> Response<Body> {
    let e = failed.error();
    if let Some(problem) = TlsProblem::find(e) {
        return upstream_tls_failed(cx, problem, sent);
    }
    if let Some(d) = find_source::<UpstreamError>(e) {
        return dial_failed(cx, d, true);
    }
    if let Some(bad) = find_source::<forward::ClientBody>(e) {
        // The client's own framing is wrong (a bad chunk size…): its fault, not the site's.
        let mut cx = cx;
        let detail = bad.to_string();
        let title = match cx.lang {
            Lang::Fr => "Requête mal formée : son contenu ne respecte pas HTTP/1.1",
            Lang::En => "Malformed request: its body does not follow HTTP/1.1",
        };
        let page = block_page::render_error_page(cx.lang, 400, title, &detail);
        cx.rec.reason_code = Some(ReasonCode::ClientBodyMalformed);
        cx.finish(400, sent, 0, Some(detail));
        let mut res = html(StatusCode::BAD_REQUEST, page);
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    if let Some(idle) = find_source::<forward::BodyIdle>(e) {
        // The client stopped sending its body (slow POST).
        let mut cx = cx;
        let detail = idle.to_string();
        let title = match cx.lang {
            Lang::Fr => "La requête a été interrompue : son contenu n'arrivait plus",
            Lang::En => "The request was cut off: its content stopped arriving",
        };
        let page = block_page::render_error_page(cx.lang, 408, title, &detail);
        cx.rec.reason_code = Some(ReasonCode::ClientBodyIdle);
        cx.finish(408, sent, 0, Some(detail));
        let mut res = html(StatusCode::REQUEST_TIMEOUT, page);
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    let kind = if failed.is_connect() {
        "connect"
    } else {
        "other"
    };
    cx.st
        .metrics
        .upstream_errors
        .with_label_values(&[kind])
        .inc();
    let mut detail = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        src = s.source();
    }
    let title = match cx.lang {
        Lang::Fr => "Le site n'a pas pu être joint",
        Lang::En => "The site could not be reached",
    };
    let page = block_page::render_error_page(cx.lang, 502, title, &detail);
    let mut cx = cx;
    cx.rec.reason_code = Some(if failed.is_connect() {
        ReasonCode::UpstreamConnect
    } else {
        ReasonCode::UpstreamError
    });
    cx.finish(502, sent, 0, Some(detail));
    html(StatusCode::BAD_GATEWAY, page)
}

/// The first error of type `T` in `e`'s chain of sources.
fn find_source<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// The site could not be dialed: 403 when the proxy refused (internal address, itself),
/// 504 on a timeout, 502 otherwise. `page`: an HTML page (plain HTTP, inside an inspected
/// tunnel); otherwise a short text (CONNECT: browsers show their own error).
fn dial_failed(mut cx: Box<Ctx>, e: &UpstreamError, page: bool) -> Response<Body> {
    cx.st
        .metrics
        .upstream_errors
        .with_label_values(&[e.kind()])
        .inc();
    let detail = e.to_string();
    let (status, title) = if e.is_refusal() {
        cx.refused(ReasonCode::InternalDestination);
        let reason = Reason::new(ReasonCode::InternalDestination, None);
        let title = cx.snap.policy.reason_text(&reason, cx.lang).into_owned();
        (StatusCode::FORBIDDEN, title)
    } else {
        let title = match (matches!(e, UpstreamError::Timeout { .. }), cx.lang) {
            (true, Lang::Fr) => "Le site n'a pas répondu à temps",
            (true, Lang::En) => "The site did not answer in time",
            (false, Lang::Fr) => "Le site n'a pas pu être joint",
            (false, Lang::En) => "The site could not be reached",
        };
        let status = if matches!(e, UpstreamError::Timeout { .. }) {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::BAD_GATEWAY
        };
        (status, title.to_string())
    };
    cx.rec.reason_code = Some(e.reason());
    let mut res = if page {
        let p = block_page::render_error_page(cx.lang, status.as_u16(), &title, &detail);
        html(status, p)
    } else {
        text(status, format!("{title}\n{detail}\n"))
    };
    if e.is_refusal() {
        reason_header(&mut res, ReasonCode::InternalDestination, None);
    }
    cx.finish(status.as_u16(), 0, 0, Some(detail));
    res
}

/// 502 naming what is wrong with the site's TLS; nothing was sent to it.
fn upstream_tls_failed(mut cx: Box<Ctx>, problem: TlsProblem, sent: u64) -> Response<Body> {
    cx.st
        .metrics
        .upstream_errors
        .with_label_values(&["tls"])
        .inc();
    let title = problem.title(cx.lang);
    let detail = match &problem {
        TlsProblem::BadCertificate(d) | TlsProblem::Handshake(d) => {
            format!("{} ({d})", TlsProblem::explanation(cx.lang))
        }
        _ => TlsProblem::explanation(cx.lang).to_string(),
    };
    let page = block_page::render_error_page(cx.lang, 502, title, &detail);
    cx.rec.reason_code = Some(problem.reason());
    let msg = format!("{}: {}", problem.code(), problem.title(Lang::En));
    cx.finish(502, sent, 0, Some(msg));
    let mut res = html(StatusCode::BAD_GATEWAY, page);
    if let Ok(v) = HeaderValue::from_str(problem.code()) {
        res.headers_mut().insert("x-charte-error", v);
    }
    res
}

/// 403 with the block page and its unblock button (or why there is none).
fn block_response(
    cx: &Ctx,
    who: &Identity,
    d: &Decision,
    host: &Host,
    url: &str,
) -> Response<Body> {
    let snap = &cx.snap;
    let p = &snap.policy;
    let en = cx.lang == Lang::En;
    let titles: Vec<&str> = cx
        .rec
        .categories
        .iter()
        .filter_map(|c| snap.classifier.find_tag(TagKind::Category, c))
        .map(|t| snap.classifier.tag(t).title(en))
        .collect();
    let reason = p.reason_text(&d.reason, cx.lang);
    let rule = d.rule.map(|r| &*p.rule(r).id);
    let who_text = match &who.user {
        Some(u) => u.to_string(),
        None => who.addr.to_string(),
    };
    let claims = token::Claims {
        url: url.to_string(),
        host: host.to_string(),
        rule: rule.map(str::to_string),
        reason_code: d.reason.code.as_str().to_string(),
        categories: cx.rec.categories.iter().map(|c| c.to_string()).collect(),
        user: who.user.as_deref().map(str::to_string),
        ip: who.addr.to_string(),
        groups: cx.rec.groups.iter().map(|g| g.to_string()).collect(),
        iat: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let href = format!(
        "{}/demande?token={}",
        cx.st.cfg.portal_url,
        token::sign(&cx.st.token_key, &claims)
    );
    cx.st.unblock.blocks.add(
        &Requester::new(who.user.as_deref(), who.addr),
        host.as_str(),
    );
    let unblock = if p.overridable(d) {
        UnblockOffer::Offer { href: &href }
    } else {
        UnblockOffer::NotOverridable
    };
    let page = block_page::render_block_page(&BlockPage {
        lang: cx.lang,
        url,
        host: host.as_str(),
        categories: &titles,
        reason: &reason,
        reason_code: d.reason.code.as_str(),
        rule,
        time: cx.rec.time,
        who: &who_text,
        unblock,
    });
    let mut res = html(StatusCode::FORBIDDEN, page);
    reason_header(&mut res, d.reason.code, rule);
    res
}

/// 403 for a tunnel: browsers show their own error, so a short text and the header.
fn tunnel_refusal(cx: &Ctx, reason: &Reason, rule: Option<&str>) -> Response<Body> {
    let text_ = cx.snap.policy.reason_text(reason, cx.lang);
    let mut res = text(StatusCode::FORBIDDEN, format!("{text_}\n"));
    reason_header(&mut res, reason.code, rule);
    res
}
