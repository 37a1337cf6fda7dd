//! Every answer the proxy listener gives in place of a site's, built in one place: the
//! block page (and its unblock button), the refusals of the proxy's own rules (a loop,
//! a head over the limit, a method never relayed, a protocol switch it cannot follow, a
//! bad host, an internal destination), and the pages for a site that could not be
//! reached, whose TLS failed, or a client whose body broke. Each fills the request's
//! record (reason code, status, error) and emits it, once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use super::connect::Tunnel;
use super::{Ctx, ProxyState};
use crate::action::body::{self, Body};
use crate::action::bump::TlsProblem;
use crate::action::dial::UpstreamError;
use crate::action::forward::SendError;
use crate::action::respond::{html, reason_header, text};
use crate::audit::Outcome;
use crate::classify::{Host, TagKind};
use crate::identity::Identity;
use crate::pages::{self as block_page, BlockPage, UnblockOffer};
use crate::policy::{Decision, Lang, Policy, Reason, ReasonCode};
use crate::unblock::approvals::Requester;
use crate::unblock::token;

/// 508: the request already went through this proxy.
pub(super) fn loop_detected(mut cx: Box<Ctx>) -> Response<Body> {
    cx.rec.decision = Outcome::Error;
    cx.rec.reason_code = Some(ReasonCode::Loop);
    let page = block_page::render_error_page(cx.lang, 508, loop_title(cx.lang), "");
    let res = html(StatusCode::LOOP_DETECTED, page);
    let detail = "request loop: this proxy is already in Via";
    cx.answered(&res, 0, Some(detail.into()));
    res
}

fn loop_title(lang: Lang) -> &'static str {
    match lang {
        Lang::Fr => "Boucle détectée : la requête revient vers le proxy",
        Lang::En => "Loop detected: the request comes back to the proxy",
    }
}

/// 431 for a head over `limits.max_head_bytes` ([`crate::head`]), traced: the host as
/// the client wrote it (filled in by the caller; nothing was classified), never a path.
pub(super) fn head_refused(mut cx: Box<Ctx>, size: usize, version: Version) -> Response<Body> {
    let limit = cx.st.cfg.limits.max_head_bytes;
    cx.refused(ReasonCode::HeadTooLarge);
    let detail = format!("request head of {size} bytes, over the limit of {limit}");
    let res = head_too_large(&cx.snap.policy, cx.lang, version, &detail);
    cx.answered(&res, 0, Some(detail));
    res
}

/// [`head_refused`] on the proxy listener: the record names the host as the client wrote
/// it (absolute URI, CONNECT authority or `Host`).
pub(super) fn listener_head_refused(
    st: &Arc<ProxyState>,
    peer: SocketAddr,
    req: &Request<Incoming>,
    size: usize,
    lang: Lang,
) -> Response<Body> {
    let connect = req.method() == Method::CONNECT;
    let kind = if connect { "connect" } else { "http" };
    let mut cx = Ctx::new(st, peer, req.method(), req.headers(), kind, lang);
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
pub(super) fn method_refused(mut cx: Box<Ctx>) -> Response<Body> {
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
    cx.answered(&res, 0, None);
    res
}

/// 502: the site answered `101 Switching Protocols` to a request that was not a relayed
/// WebSocket handshake, or switched to another protocol than WebSocket. The site's
/// connection is dropped; the client's stays HTTP and gets a page.
pub(super) fn switch_refused(
    mut cx: Box<Ctx>,
    to: Option<&HeaderValue>,
    sent: u64,
) -> Response<Body> {
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
    let mut res = html(StatusCode::BAD_GATEWAY, page);
    res.headers_mut().insert(
        "x-charte-error",
        HeaderValue::from_static(ReasonCode::UpstreamSwitch.as_str()),
    );
    cx.answered(&res, sent, Some(detail));
    res
}

pub(super) fn bad_host(mut cx: Box<Ctx>, authority: &str, why: &str) -> Response<Body> {
    cx.refused(ReasonCode::BadHost);
    cx.rec.host = authority.chars().take(255).collect::<String>().into();
    let title = cx
        .snap
        .policy
        .reason_text(&Reason::new(ReasonCode::BadHost, None), cx.lang)
        .into_owned();
    let page = block_page::render_error_page(cx.lang, 400, &title, why);
    let res = html(StatusCode::BAD_REQUEST, page);
    cx.answered(&res, 0, None);
    res
}

pub(super) fn upstream_failed(cx: Box<Ctx>, failed: &SendError, sent: u64) -> Response<Body> {
    let e = failed.error();
    if let Some(problem) = TlsProblem::find(e) {
        return upstream_tls_failed(cx, problem, sent);
    }
    if let Some(d) = find_source::<UpstreamError>(e) {
        return dial_failed(cx, d, true);
    }
    if find_source::<body::ClientBody>(e).is_some() || find_source::<body::BodyIdle>(e).is_some() {
        return client_body_failed(cx, e, sent);
    }
    let kind = if failed.is_connect() {
        "connect"
    } else {
        "other"
    };
    upstream_other(cx, failed, kind, sent)
}

/// The client's body failed: malformed (400) or stalled (408). Anything else is taken
/// as malformed.
pub(super) fn client_body_failed(
    cx: Box<Ctx>,
    e: &(dyn std::error::Error + 'static),
    sent: u64,
) -> Response<Body> {
    if let Some(idle) = find_source::<body::BodyIdle>(e) {
        // The client stopped sending its body (slow POST).
        let mut cx = cx;
        let detail = idle.to_string();
        let title = match cx.lang {
            Lang::Fr => "La requête a été interrompue : son contenu n'arrivait plus",
            Lang::En => "The request was cut off: its content stopped arriving",
        };
        let page = block_page::render_error_page(cx.lang, 408, title, &detail);
        cx.rec.reason_code = Some(ReasonCode::ClientBodyIdle);
        let mut res = html(StatusCode::REQUEST_TIMEOUT, page);
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        cx.answered(&res, sent, Some(detail));
        return res;
    }
    // The client's own framing is wrong (a bad chunk size…): its fault, not the site's.
    let mut cx = cx;
    let bad = e;
    let detail = bad.to_string();
    let title = match cx.lang {
        Lang::Fr => "Requête mal formée : son contenu ne respecte pas HTTP/1.1",
        Lang::En => "Malformed request: its body does not follow HTTP/1.1",
    };
    let page = block_page::render_error_page(cx.lang, 400, title, &detail);
    cx.rec.reason_code = Some(ReasonCode::ClientBodyMalformed);
    let mut res = html(StatusCode::BAD_REQUEST, page);
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    cx.answered(&res, sent, Some(detail));
    res
}

fn upstream_other(
    cx: Box<Ctx>,
    failed: &SendError,
    kind: &'static str,
    sent: u64,
) -> Response<Body> {
    let e = failed.error();
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
    let res = html(StatusCode::BAD_GATEWAY, page);
    cx.answered(&res, sent, Some(detail));
    res
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
pub(super) fn dial_failed(mut cx: Box<Ctx>, e: &UpstreamError, page: bool) -> Response<Body> {
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
    cx.answered(&res, 0, Some(detail));
    res
}

/// 502 naming what is wrong with the site's TLS; nothing was sent to it.
pub(super) fn upstream_tls_failed(
    mut cx: Box<Ctx>,
    problem: TlsProblem,
    sent: u64,
) -> Response<Body> {
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
    let mut res = html(StatusCode::BAD_GATEWAY, page);
    if let Ok(v) = HeaderValue::from_str(problem.code()) {
        res.headers_mut().insert("x-charte-error", v);
    }
    cx.answered(&res, sent, Some(msg));
    res
}

/// 403 with the block page and its unblock button (or why there is none).
pub(super) fn block_response(
    cx: &Ctx,
    who: &Identity,
    d: &Decision,
    host: &Host,
    url: &str,
    found: Option<&str>,
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
        found,
    });
    let mut res = html(StatusCode::FORBIDDEN, page);
    reason_header(&mut res, d.reason.code, rule);
    res
}

/// 403 for a tunnel: browsers show their own error, so a short text and the header.
pub(super) fn tunnel_refusal(cx: &Ctx, reason: &Reason, rule: Option<&str>) -> Response<Body> {
    let text_ = cx.snap.policy.reason_text(reason, cx.lang);
    let mut res = text(StatusCode::FORBIDDEN, format!("{text_}\n"));
    reason_header(&mut res, reason.code, rule);
    res
}

/// 421 Misdirected Request: the request names another site than the tunnel's. Browsers
/// retry such a request on a connection of its own.
pub(super) fn host_mismatch(mut cx: Box<Ctx>, t: &Tunnel, given: &str) -> Response<Body> {
    cx.rec.host = t.host.as_str().into();
    cx.rec.port = t.port;
    cx.refused(ReasonCode::HostMismatch);
    let reason = Reason::new(ReasonCode::HostMismatch, None);
    let title = cx.snap.policy.reason_text(&reason, cx.lang).into_owned();
    let detail = format!("Host: {given} — TLS: {}", t.host);
    let page = block_page::render_error_page(cx.lang, 421, &title, &detail);
    let mut res = html(StatusCode::MISDIRECTED_REQUEST, page);
    reason_header(&mut res, ReasonCode::HostMismatch, None);
    cx.answered(&res, 0, Some(detail));
    res
}
