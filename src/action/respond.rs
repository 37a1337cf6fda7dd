//! Answers the proxy writes itself, on every listener: an HTML page or a short text,
//! never cached, and the `X-Charte-Reason` header that carries a refusal's stable code.
//! The pages' words and HTML are [`crate::pages`]'; this only wraps them in a response.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::body::{Body, full};
use crate::policy::ReasonCode;

/// `X-Charte-Reason: <code>[; rule=<id>]` — ASCII, stable, for tools and tests.
pub fn reason_header(res: &mut Response<Body>, code: ReasonCode, rule: Option<&str>) {
    let v = match rule {
        Some(r) => format!("{}; rule={r}", code.as_str()),
        None => code.as_str().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&v) {
        res.headers_mut().insert("x-charte-reason", v);
    }
}

pub fn html(status: StatusCode, page: String) -> Response<Body> {
    let mut res = Response::new(full(page));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

pub fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
