//! The portal listener (PAC file, the page behind the block page's button) and the admin
//! listener (`/metrics`, `/health`). Neither makes filtering decisions.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::action::block_page;
use crate::action::forward::{Body, full};
use crate::config::server::ServerConfig;
use crate::pipeline::{State, html, text};
use crate::policy::Lang;
use crate::unblock::token;

/// How long a block page's unblock link stays valid.
pub const TOKEN_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Requests to the portal listener.
pub async fn portal(st: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let lang = block_page::negotiate_lang(
        req.headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into()));
    }
    let res = match req.uri().path() {
        "/proxy.pac" | "/wpad.dat" => {
            let mut r = Response::new(full(pac(&st.cfg)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ns-proxy-autoconfig"),
            );
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=300"),
            );
            r
        }
        "/" => html(StatusCode::OK, index_page(&st.cfg, lang)),
        "/demande" => {
            let token = req
                .uri()
                .query()
                .and_then(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .find(|(k, _)| k == "token")
                        .map(|(_, v)| v.into_owned())
                })
                .unwrap_or_default();
            match token::verify(&st.token_key, &token, SystemTime::now(), TOKEN_MAX_AGE) {
                Ok(c) => html(StatusCode::OK, request_page(&c, lang)),
                Err(e) => {
                    let (title, detail) = match lang {
                        Lang::Fr => (
                            "Lien de demande invalide ou expiré",
                            "Revenez sur la page de blocage et cliquez à nouveau sur le bouton. Rien n'a été enregistré.",
                        ),
                        Lang::En => (
                            "Invalid or expired request link",
                            "Go back to the block page and click the button again. Nothing was recorded.",
                        ),
                    };
                    let _ = e;
                    html(
                        StatusCode::BAD_REQUEST,
                        block_page::render_error_page(lang, 400, title, detail),
                    )
                }
            }
        }
        _ => html(
            StatusCode::NOT_FOUND,
            block_page::render_error_page(
                lang,
                404,
                match lang {
                    Lang::Fr => "Page introuvable",
                    Lang::En => "Page not found",
                },
                "",
            ),
        ),
    };
    Ok(res)
}

fn index_page(cfg: &ServerConfig, lang: Lang) -> String {
    let pac = format!("{}/proxy.pac", cfg.portal_url);
    block_page::render_help_page(lang, &cfg.public_proxy, &pac, &cfg.portal_url)
}

/// What the unblock link carries, checked: the request form itself comes with the unblock
/// request service; until then the page says what was blocked and by whom it was asked.
fn request_page(c: &token::Claims, lang: Lang) -> String {
    let title = match lang {
        Lang::Fr => "Demande d'ouverture d'un site",
        Lang::En => "Request to open a site",
    };
    block_page::render_error_page(lang, 200, title, &body_text(c, lang))
}

fn body_text(c: &token::Claims, lang: Lang) -> String {
    match lang {
        Lang::Fr => format!(
            "Site : {} — règle : {} — demandé par : {}",
            c.url,
            c.rule.as_deref().unwrap_or("-"),
            c.user.as_deref().unwrap_or(&c.ip)
        ),
        Lang::En => format!(
            "Site: {} — rule: {} — asked by: {}",
            c.url,
            c.rule.as_deref().unwrap_or("-"),
            c.user.as_deref().unwrap_or(&c.ip)
        ),
    }
}

/// The PAC file: plain host names, internal domains and networks, and the portal go
/// DIRECT; everything else goes to the proxy. No fallback to DIRECT: a workstation that
/// cannot reach the proxy must not bypass the filter.
pub fn pac(cfg: &ServerConfig) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "// charte-proxy: proxy auto-configuration");
    let _ = writeln!(s, "function FindProxyForURL(url, host) {{");
    let _ = writeln!(s, "  host = host.toLowerCase();");
    let _ = writeln!(s, "  if (isPlainHostName(host)) return \"DIRECT\";");
    let portal_host = url::Url::parse(&cfg.portal_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string));
    let mut domains: Vec<String> = cfg
        .internal_domains
        .iter()
        .map(|d| d.trim_start_matches('.').to_ascii_lowercase())
        .collect();
    if let Some(p) = portal_host {
        domains.push(p);
    }
    for d in &domains {
        let d = d.replace(['"', '\\'], "");
        let _ = writeln!(
            s,
            "  if (host == \"{d}\" || dnsDomainIs(host, \".{d}\")) return \"DIRECT\";"
        );
    }
    let v4: Vec<_> = cfg
        .internal_networks
        .iter()
        .filter_map(|n| match n {
            ipnet::IpNet::V4(v4) => Some(*v4),
            ipnet::IpNet::V6(_) => None,
        })
        .collect();
    if !v4.is_empty() {
        // Only for address literals: isInNet on a name would make the browser resolve it.
        let _ = writeln!(s, "  if (/^\\d+\\.\\d+\\.\\d+\\.\\d+$/.test(host)) {{");
        for n in v4 {
            let _ = writeln!(
                s,
                "    if (isInNet(host, \"{}\", \"{}\")) return \"DIRECT\";",
                n.network(),
                n.netmask()
            );
        }
        let _ = writeln!(s, "  }}");
    }
    let _ = writeln!(
        s,
        "  return \"PROXY {}\";",
        cfg.public_proxy.replace(['"', '\\'], "")
    );
    let _ = writeln!(s, "}}");
    s
}

/// Requests to the admin listener.
pub async fn admin(st: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let res = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            if let Some(b) = &st.bumper {
                let ca = b.ca();
                st.metrics
                    .tls_leaves_minted
                    .set(i64::try_from(ca.minted()).unwrap_or(i64::MAX));
                st.metrics
                    .tls_leaf_cache
                    .set(i64::try_from(ca.cached()).unwrap_or(i64::MAX));
            }
            let mut r = Response::new(full(st.metrics.render()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into()),
        (&Method::GET, "/health") => {
            let snap = st.live.get();
            let status = st.live.status();
            let body = serde_json::json!({
                "status": if status.stale { "stale" } else { "ok" },
                "policy": st.live.policy_path().display().to_string(),
                "generation": snap.generation,
                "loaded_at": httpdate::fmt_http_date(snap.loaded_at),
                "rules": snap.policy.rules.len(),
                "index_entries": snap.classifier.domains.len(),
                "stale": status.stale,
                "last_error": status.last_error,
                "tunnels": st.tunnels.active(),
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
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /metrics, /health, /healthz\n".into(),
        ),
    };
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pac_sends_internal_direct_and_the_rest_to_the_proxy() {
        let cfg = ServerConfig {
            public_proxy: "proxy.mairie.example:3128".into(),
            portal_url: "http://portail.mairie.example:3129".into(),
            internal_domains: vec!["mairie.example".into()],
            internal_networks: vec!["10.0.0.0/8".parse().unwrap()],
            ..ServerConfig::default()
        };
        let p = pac(&cfg);
        assert!(
            p.contains("if (isPlainHostName(host)) return \"DIRECT\";"),
            "{p}"
        );
        assert!(p.contains("dnsDomainIs(host, \".mairie.example\")"), "{p}");
        assert!(p.contains("host == \"portail.mairie.example\""), "{p}");
        assert!(
            p.contains("isInNet(host, \"10.0.0.0\", \"255.0.0.0\")"),
            "{p}"
        );
        assert!(
            p.trim_end()
                .ends_with("return \"PROXY proxy.mairie.example:3128\";\n}"),
            "{p}"
        );
        assert!(
            !p.contains("; DIRECT"),
            "no fallback that bypasses the filter"
        );
    }
}
