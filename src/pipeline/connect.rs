//! CONNECT: the tunnel is decided on its host, then either relayed as bytes (sites never
//! inspected, groups with inspection off, or inspection turned off) or bumped: the
//! client's TLS is finished with a leaf of the organisation's CA and every request inside
//! goes through [`super::exchange`] like a plain one, with its path.
//!
//! Before either, the ClientHello is read without being consumed: a TLS name (SNI) that
//! differs from the CONNECT host is refused, since the decision was taken for the latter;
//! a relayed tunnel's site is dialled only once the hello passed, so a refused tunnel
//! never reaches it.
//!
//! Inside a bumped tunnel, every request is checked again before its decision: its head
//! against the size limit, its method (a CONNECT there would be a tunnel in the tunnel),
//! its host against the tunnel's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

use super::refuse::{self, bad_host, tunnel_refusal};
use super::{Ctx, ProxyState, Target, exchange, local_time};
use crate::action::body::{self, Body};
use crate::action::bump::client_handshake_problem;
use crate::action::client_hello::{self, ClientHello, HelloError, PeekError, Rewind};
use crate::action::dial::{Checked, UpstreamError};
use crate::action::forward::seen_by_us;
use crate::action::tunnel::{self, Counters, CountingIo};
use crate::audit::Outcome;
use crate::classify::{Classification, Host};
use crate::identity::Identity;
use crate::pages as block_page;
use crate::policy::{Inspection, Reason, ReasonCode, RequestFacts, Verdict};

/// What the requests of a bumped tunnel share.
pub(super) struct Tunnel {
    pub(super) host: Host,
    pub(super) port: u16,
    peer: SocketAddr,
    /// The user authenticated on CONNECT; groups are resolved again per request, against
    /// the policy in force then.
    user: Option<Box<str>>,
}

pub(super) async fn connect(
    mut cx: Box<Ctx>,
    who: Identity,
    req: Request<Incoming>,
) -> Response<Body> {
    let st = cx.st.clone();
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let (host, port) = match Host::parse_authority(&authority) {
        Ok((h, Some(p))) => (h, p),
        Ok((_, None)) => return bad_host(cx, &authority, "CONNECT needs host:port"),
        Err(e) => return bad_host(cx, &authority, &e.to_string()),
    };
    let snap = cx.snap.clone();
    let mut class = Classification::default();
    snap.classifier
        .classify(&host, None, &mut String::new(), &mut class);
    cx.classified(&host, port, &class);
    if !st.cfg.connect_ports.contains(&port) {
        cx.refused(ReasonCode::PortNotAllowed);
        let res = tunnel_refusal(&cx, &Reason::new(ReasonCode::PortNotAllowed, None), None);
        cx.answered(&res, 0, None);
        return res;
    }
    let facts = RequestFacts {
        approved: super::approved(&st, &snap, &who, &host),
        inspectable: st.bumper.is_some(),
        local: local_time(&st, &snap.policy, cx.rec.time),
        ..RequestFacts::for_method("CONNECT", false)
    };
    let d = snap.policy.decide(&who, &class, &facts);
    cx.decided(&d);
    let bump = st.bumper.is_some() && d.inspection == Inspection::Inspect;

    if bump {
        // Even a blocked host is bumped, so that the user sees the block page (with its
        // unblock button) instead of a browser error. Each request inside has its own
        // decision and record; this one is the tunnel's.
        return start_bump(cx, &who, host, port, req);
    }

    if d.verdict == Verdict::Block {
        let rule = d.rule.map(|r| snap.policy.rule(r).id.to_string());
        let res = tunnel_refusal(&cx, &d.reason, rule.as_deref());
        cx.answered(&res, 0, None);
        return res;
    }
    relay(cx, host, port, req).await
}

/// Answers the CONNECT with its 200 and finishes the client's TLS in a task of its own,
/// where every request is decided as a plain one.
fn start_bump(
    mut cx: Box<Ctx>,
    who: &Identity,
    host: Host,
    port: u16,
    req: Request<Incoming>,
) -> Response<Body> {
    cx.rec.decision = Outcome::Bump;
    cx.rec.rule = None;
    cx.rec.reason = None;
    cx.rec.reason_code = Some(ReasonCode::Bump);
    let tunnel = Arc::new(Tunnel {
        host,
        port,
        peer: cx.peer,
        user: who.user.clone(),
    });
    let guard = cx.st.tunnels.enter();
    tokio::spawn(async move {
        let _guard = guard;
        bump_tunnel(cx, tunnel, req).await;
    });
    Response::new(body::empty())
}

/// An allowed tunnel that is not inspected: its bytes relayed both ways once the site is
/// dialled (after the ClientHello was checked, when the proxy can read one).
async fn relay(mut cx: Box<Ctx>, host: Host, port: u16, req: Request<Incoming>) -> Response<Body> {
    let st = cx.st.clone();
    let dial = if st.bumper.is_some() {
        // The ClientHello is read before the site is dialled: a TLS name other than the
        // CONNECT host is refused without any connection to the site. The name is
        // resolved and its addresses checked now, so that an internal or unknown site is
        // still answered on the CONNECT (403, 502); only the connection waits for the
        // hello (which the client sends once it has the 200).
        match st.dialer.resolve(&host, port).await {
            Ok(checked) => Dial::AfterHello(checked),
            Err(e) => return refuse::dial_failed(cx, &e, false),
        }
    } else {
        // Without inspection nothing is read from the client first (a server may speak
        // first): the site is dialled before the 200.
        match st.dialer.connect(&host, port).await {
            Ok((upstream, addr)) => {
                cx.rec.upstream = Some(addr);
                Dial::Open(upstream)
            }
            Err(e) => return refuse::dial_failed(cx, &e, false),
        }
    };
    let guard = st.tunnels.enter();
    tokio::spawn(async move {
        let _guard = guard;
        let mut client = match hyper::upgrade::on(req).await {
            Ok(u) => tunnel::client_io(u),
            Err(e) => {
                cx.finish(200, 0, 0, Some(format!("client upgrade failed: {e}")));
                return;
            }
        };
        let (cx, prefix, upstream) = match dial {
            Dial::Open(upstream) => (cx, Bytes::new(), upstream),
            Dial::AfterHello(checked) => {
                // Not decrypted, but the name the client gives the server is still
                // checked. A client that does not speak TLS here (the site is never
                // inspected, or the client's group is not) is relayed as it is.
                let Some((mut cx, prefix)) = check_hello(cx, &mut client, &host, false).await
                else {
                    return;
                };
                match st.dialer.connect_to(&host, checked).await {
                    Ok((upstream, addr)) => {
                        cx.rec.upstream = Some(addr);
                        (cx, prefix, upstream)
                    }
                    Err(e) => return dial_failed_after_hello(cx, &e, prefix.len() as u64),
                }
            }
        };
        let (up, down, err) =
            tunnel::splice(client, &prefix, upstream, st.cfg.limits.tunnel_idle_timeout).await;
        cx.finish(200, up, down, err);
    });
    Response::new(body::empty())
}

/// A relayed tunnel's site: connected before the CONNECT's answer, or resolved and
/// checked, to be connected once the ClientHello has named the CONNECT host.
enum Dial {
    Open(tokio::net::TcpStream),
    AfterHello(Checked),
}

/// The site could not be reached once the hello was read: the client already has its
/// 200 and sees the tunnel close; the record says why.
fn dial_failed_after_hello(mut cx: Box<Ctx>, e: &UpstreamError, read: u64) {
    cx.st
        .metrics
        .upstream_errors
        .with_label_values(&[e.kind()])
        .inc();
    cx.rec.reason_code = Some(e.reason());
    cx.finish(200, read, 0, Some(e.to_string()));
}

/// Reads the ClientHello (every byte kept for replay) and checks its SNI against the
/// CONNECT host. `None`: the tunnel was refused or failed, and its record emitted.
async fn check_hello<IO: tokio::io::AsyncRead + Unpin>(
    mut cx: Box<Ctx>,
    io: &mut IO,
    host: &Host,
    tls_required: bool,
) -> Option<(Box<Ctx>, Bytes)> {
    let timeout = cx.st.cfg.tls.hello_timeout;
    let (res, prefix) = client_hello::peek(io, timeout).await;
    let read = prefix.len() as u64;
    match res {
        Ok(ClientHello { sni: Some(sni), .. })
            if Host::parse(&sni).map_or(true, |s| &s != host) =>
        {
            cx.refused(ReasonCode::SniMismatch);
            let detail = format!("TLS SNI {sni:?} differs from the CONNECT host {host}");
            cx.finish(403, read, 0, Some(detail));
            None
        }
        Ok(_) => Some((cx, prefix)),
        Err(PeekError::Hello(HelloError::NotTls)) if !tls_required => Some((cx, prefix)),
        Err(PeekError::Hello(HelloError::NotTls)) => {
            cx.refused(ReasonCode::TlsRequired);
            let detail = "the client did not start a TLS handshake".to_string();
            cx.finish(403, read, 0, Some(detail));
            None
        }
        Err(e) => {
            cx.rec.decision = Outcome::Error;
            cx.rec.reason_code = Some(e.reason());
            cx.finish(200, read, 0, Some(e.to_string()));
            None
        }
    }
}

/// A bumped tunnel: ClientHello, the client's handshake with a minted leaf, then HTTP/1.1
/// or HTTP/2 requests until the client goes. Emits the tunnel's record at the end.
async fn bump_tunnel(cx: Box<Ctx>, t: Arc<Tunnel>, req: Request<Incoming>) {
    let st = cx.st.clone();
    let Some(bumper) = st.bumper.clone() else {
        return;
    };
    let upgraded = match hyper::upgrade::on(req).await {
        Ok(u) => u,
        Err(e) => {
            cx.finish(200, 0, 0, Some(format!("client upgrade failed: {e}")));
            return;
        }
    };
    let counters = Counters::default();
    let mut io = CountingIo::new(tunnel::client_io(upgraded), counters.clone());
    let Some((mut cx, prefix)) = check_hello(cx, &mut io, &t.host, true).await else {
        return;
    };
    let acceptor = match bumper.acceptor(&t.host) {
        Ok(a) => a,
        Err(e) => {
            cx.rec.decision = Outcome::Error;
            cx.rec.reason_code = Some(ReasonCode::BumpConfig);
            cx.finish(200, prefix.len() as u64, 0, Some(e.to_string()));
            return;
        }
    };
    let tls = match acceptor.accept(Rewind::new(prefix, io)).await {
        Ok(s) => s,
        Err(e) => {
            let (code, detail) = client_handshake_problem(&e);
            cx.rec.decision = Outcome::Error;
            cx.rec.reason_code = Some(code);
            let (r, w) = counters.get();
            cx.finish(200, r, w, Some(detail));
            return;
        }
    };
    // From here on the requests inside count the bytes (`charte_bytes_total`).
    cx.bytes_counted_inside = true;
    let st2 = st.clone();
    let t2 = t.clone();
    let svc = service_fn(move |req| {
        let st = st2.clone();
        let t = t2.clone();
        async move { Ok::<_, Infallible>(bumped_request(st, t, req).await) }
    });
    let lim = &st.cfg.limits;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(lim.header_timeout)
        .max_buf_size(crate::head::parser_buffer(lim.max_head_bytes))
        .max_headers(lim.max_headers);
    // h2 0.4.20 refuses CONTINUATION floods and bounds pending resets (rapid reset).
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(lim.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024)
        .max_header_list_size(u32::try_from(lim.max_head_bytes).unwrap_or(u32::MAX));
    let served = b
        .serve_connection_with_upgrades(TokioIo::new(tls), svc)
        .await;
    let err = served.err().and_then(|e| {
        let msg = e.to_string();
        // A client that closes or resets its connection is how tunnels end.
        let benign = e
            .downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message() || h.is_closed() || h.is_canceled());
        (!benign).then_some(msg)
    });
    let (r, w) = counters.get();
    cx.finish(200, r, w, err);
}

/// One request inside a bumped tunnel: checked to name the tunnel's host, then decided
/// and answered like any other.
async fn bumped_request(
    st: Arc<ProxyState>,
    t: Arc<Tunnel>,
    req: Request<Incoming>,
) -> Response<Body> {
    let lang = block_page::negotiate_lang(
        req.headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    st.audit.admit().await;
    let mut cx = Ctx::new(&st, t.peer, req.method(), req.headers(), "https", lang);
    let (who, note) = super::identify::groups(
        &st,
        &cx.snap.policy.groups,
        cx.rec.client,
        t.user.as_deref(),
    )
    .await;
    cx.identify(&who);
    if let Some(n) = note {
        cx.rec.error = Some(n.into());
    }
    let head = crate::head::request_head_size(&req);
    if head > st.cfg.limits.max_head_bytes {
        cx.rec.host = t.host.as_str().into();
        cx.rec.port = t.port;
        return refuse::head_refused(cx, head, req.version());
    }
    if req.method() == Method::CONNECT {
        // A tunnel inside the tunnel: its bytes would flow past every decision (HTTP/1.1
        // CONNECT on the decrypted connection, or an HTTP/2 CONNECT stream).
        cx.rec.host = t.host.as_str().into();
        cx.rec.port = t.port;
        return refuse::method_refused(cx);
    }
    if let Some(given) = other_host(&req, &t) {
        return refuse::host_mismatch(cx, &t, &given);
    }
    if seen_by_us(req.headers()) {
        return refuse::loop_detected(cx);
    }
    let target = Target {
        https: true,
        host: t.host.clone(),
        port: t.port,
    };
    exchange(cx, who, req, target).await
}

/// The Host header or `:authority` (or absolute URI) of a request when it names another
/// host or port than the tunnel's; `None` when all that are present agree with it.
fn other_host(req: &Request<Incoming>, t: &Tunnel) -> Option<String> {
    let from_uri = req.uri().authority().map(|a| a.as_str());
    let from_header = req
        .headers()
        .get_all(header::HOST)
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    for given in from_uri.into_iter().chain(from_header) {
        let same = match Host::parse_authority(given) {
            Ok((h, p)) => h == t.host && p.is_none_or(|p| p == t.port),
            Err(_) => false,
        };
        if !same {
            return Some(given.chars().take(255).collect());
        }
    }
    None
}
