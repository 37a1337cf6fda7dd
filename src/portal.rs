//! The portal listener: the PAC file, the help page, and the user's side of the unblock
//! flow (the form behind the block page's button, the pages that follow a request). It
//! makes no filtering decision.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::action::body::{Body, full};
use crate::action::respond::{html, text};
use crate::pages::{self as block_page, portal as pages};
use crate::policy::Lang;
use crate::settings::Settings;
use crate::snapshot::Live;
use crate::unblock::UnblockService;
use crate::unblock::store::{MAX_JUSTIFICATION, NewRequest, StoreError, Submitted};
use crate::unblock::token;

/// What the portal reads: the settings its pages and PAC file name (its own URL, the
/// proxy's public address, the internal domains and networks), the policy in force (the
/// reason of a block), the unblock store, and the key that signs tokens and seals.
pub struct PortalState {
    pub cfg: Settings,
    pub live: Arc<Live>,
    pub unblock: Arc<UnblockService>,
    pub token_key: Arc<[u8]>,
}

/// How long a block page's unblock link stays valid.
pub const TOKEN_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Requests to the portal listener.
pub async fn portal(
    st: Arc<PortalState>,
    peer: std::net::SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let lang = block_page::lang_of(req.headers());
    let path = req.uri().path().to_string();
    let is_get = req.method() == Method::GET || req.method() == Method::HEAD;
    let is_form = req.method() == Method::POST && path == "/demande";
    if !(is_get || is_form) {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into()));
    }
    let query = |k: &str| {
        req.uri().query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
        })
    };
    let res = match path.as_str() {
        "/proxy.pac" | "/wpad.dat" => {
            let mut r = Response::new(full(pac(&st.cfg, peer.ip())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ns-proxy-autoconfig"),
            );
            // Orders by network make the file differ by workstation: no shared cache.
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(if st.cfg.pac.by_network.is_empty() {
                    "max-age=300"
                } else {
                    "private, max-age=300"
                }),
            );
            r
        }
        "/" => html(StatusCode::OK, index_page(&st.cfg, peer.ip(), lang)),
        "/demande" if is_get => {
            let token = query("token").unwrap_or_default();
            match token::verify(&st.token_key, &token, SystemTime::now(), TOKEN_MAX_AGE) {
                // Said before the user writes a justification that could not be kept.
                Ok(_) if !st.unblock.store().available() => store_unavailable(lang),
                Ok(c) => html(
                    StatusCode::OK,
                    pages::form_page(&st.live.get().policy, &c, &token, lang, None),
                ),
                Err(_) => bad_token(lang),
            }
        }
        "/demande" => submit(&st, req, lang).await,
        "/mes-demandes" => {
            let who = req
                .headers()
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|c| c.trim().strip_prefix("charte_demandeur="))
                .and_then(|v| token::unseal(&st.token_key, v))
                .unwrap_or_else(|| format!("ip:{}", peer.ip().to_canonical()));
            let store = st.unblock.store().clone();
            match tokio::task::spawn_blocking(move || store.list_for(&who)).await {
                Ok(Ok(rows)) => html(StatusCode::OK, pages::list_page(&rows, lang, unix_now())),
                _ => store_unavailable(lang),
            }
        }
        p if p.starts_with("/demandes/") => {
            let id: Option<i64> = p["/demandes/".len()..].parse().ok();
            let key_ok = id.is_some_and(|id| {
                query("k").and_then(|k| token::unseal(&st.token_key, &k)) == Some(id.to_string())
            });
            let store = st.unblock.store().clone();
            match id.filter(|_| key_ok) {
                None => not_found(lang),
                Some(id) => match tokio::task::spawn_blocking(move || store.get(id)).await {
                    Ok(Ok(r)) => html(StatusCode::OK, pages::request_page(&r, lang, unix_now())),
                    Ok(Err(StoreError::NotFound(_))) => not_found(lang),
                    _ => store_unavailable(lang),
                },
            }
        }
        _ => not_found(lang),
    };
    Ok(res)
}

fn not_found(lang: Lang) -> Response<Body> {
    html(
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
    )
}

fn bad_token(lang: Lang) -> Response<Body> {
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
    html(
        StatusCode::BAD_REQUEST,
        block_page::render_error_page(lang, 400, title, detail),
    )
}

fn store_unavailable(lang: Lang) -> Response<Body> {
    let (title, detail) = match lang {
        Lang::Fr => (
            "Les demandes sont momentanément indisponibles",
            "Le service qui enregistre les demandes de déblocage ne répond pas. Le filtrage \
             continue comme avant. Réessayez dans quelques minutes ; si c'est urgent, \
             appelez le service informatique.",
        ),
        Lang::En => (
            "Requests are unavailable for a moment",
            "The service that keeps unblock requests does not answer. Filtering goes on as \
             before. Try again in a few minutes; if it is urgent, call the IT service.",
        ),
    };
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        block_page::render_error_page(lang, 503, title, detail),
    )
}

fn unix_now() -> i64 {
    crate::unblock::approvals::now()
}

/// Largest form body read.
const MAX_FORM: usize = 32 * 1024;

/// POST /demande: checks the token again, stores the request durably, then answers with
/// its number (and a cookie that lists the user's requests).
async fn submit(st: &Arc<PortalState>, req: Request<Incoming>, lang: Lang) -> Response<Body> {
    use http_body_util::BodyExt as _;
    let body = match http_body_util::Limited::new(req.into_body(), MAX_FORM)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return html(
                StatusCode::PAYLOAD_TOO_LARGE,
                block_page::render_error_page(
                    lang,
                    413,
                    "Formulaire trop long / Form too long",
                    "",
                ),
            );
        }
    };
    let mut token_s = String::new();
    let mut justification = String::new();
    let mut wanted = None;
    for (k, v) in url::form_urlencoded::parse(&body) {
        match &*k {
            "token" => token_s = v.into_owned(),
            "justification" => justification = v.trim().to_string(),
            "wanted" if crate::unblock::WANTED.iter().any(|w| w.0 == v) => {
                wanted = Some(v.into_owned())
            }
            _ => {}
        }
    }
    let claims = match token::verify(&st.token_key, &token_s, SystemTime::now(), TOKEN_MAX_AGE) {
        Ok(c) => c,
        Err(_) => return bad_token(lang),
    };
    let policy = &st.live.get().policy;
    let too_long = justification.chars().count() > MAX_JUSTIFICATION;
    if justification.is_empty() || too_long {
        let msg = match (lang, too_long) {
            (Lang::Fr, false) => "Expliquez pourquoi ce site est nécessaire à vos missions.",
            (Lang::Fr, true) => "La justification dépasse 2000 caractères.",
            (Lang::En, false) => "Explain why this site is needed for your missions.",
            (Lang::En, true) => "The justification is longer than 2000 characters.",
        };
        return html(
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::form_page(policy, &claims, &token_s, lang, Some(msg)),
        );
    }
    // A rule that cannot be waived is not offered, whatever the form says.
    let overridable = claims.rule.as_deref().is_none_or(|id| {
        policy
            .rules
            .iter()
            .find(|r| &*r.id == id)
            .is_none_or(|r| r.overridable)
    });
    if !overridable {
        return html(
            StatusCode::FORBIDDEN,
            pages::form_page(policy, &claims, &token_s, lang, None),
        );
    }
    let requester = token::requester_of(&claims);
    let new = NewRequest {
        requester: requester.clone(),
        user: claims.user.clone(),
        ip: claims.ip.clone(),
        groups: claims.groups.clone(),
        host: claims.host.clone(),
        url: claims.url.clone(),
        categories: claims.categories.clone(),
        rule: claims.rule.clone(),
        reason_code: claims.reason_code.clone(),
        justification,
        wanted,
    };
    let store = st.unblock.store().clone();
    let done = tokio::task::spawn_blocking(move || store.submit(&new, unix_now())).await;
    let submitted = match done {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot store an unblock request");
            return store_unavailable(lang);
        }
        Err(_) => return store_unavailable(lang),
    };
    let id = submitted.id();
    let follow = format!(
        "/demandes/{id}?k={}",
        token::seal(&st.token_key, &id.to_string())
    );
    let mut res = html(
        StatusCode::OK,
        pages::done_page(id, matches!(submitted, Submitted::Merged(_)), &follow, lang),
    );
    let cookie = format!(
        "charte_demandeur={}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax",
        token::seal(&st.token_key, &requester)
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// The help page; its manual proxy is the first the PAC file gives this workstation.
fn index_page(cfg: &Settings, client: std::net::IpAddr, lang: Lang) -> String {
    let pac = format!("{}/proxy.pac", cfg.portal_url);
    let proxy = cfg.proxies_for(client).first().map_or("", String::as_str);
    block_page::render_help_page(lang, proxy, &pac, &cfg.portal_url)
}

/// The PAC file for the workstation at `client`: plain host names, internal domains and
/// networks, and the portal go DIRECT; everything else goes to the proxies in the order
/// [`Settings::proxies_for`] gives it (the browser tries the next when one does not
/// answer). No fallback to DIRECT: a workstation that cannot reach any proxy must not
/// bypass the filter.
pub fn pac(cfg: &Settings, client: std::net::IpAddr) -> String {
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
    // `pac` entries are checked when the server file is read; `public_proxy` (a flag
    // too) is cleaned here, as it always was.
    let proxies: Vec<String> = cfg
        .proxies_for(client)
        .iter()
        .map(|p| format!("PROXY {}", p.replace(['"', '\\', ';'], "")))
        .collect();
    let _ = writeln!(s, "  return \"{}\";", proxies.join("; "));
    let _ = writeln!(s, "}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pac_sends_internal_direct_and_the_rest_to_the_proxy() {
        let cfg = Settings {
            public_proxy: "proxy.mairie.example:3128".into(),
            portal_url: "http://portail.mairie.example:3129".into(),
            internal_domains: vec!["mairie.example".into()],
            internal_networks: vec!["10.0.0.0/8".parse().unwrap()],
            ..Settings::default()
        };
        let p = pac(&cfg, "10.1.2.3".parse().unwrap());
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

    fn cluster() -> Settings {
        use crate::settings::{PacGroup, PacSettings};
        let s = |v: &[&str]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        Settings {
            public_proxy: "proxy.mairie.example:3128".into(),
            pac: PacSettings {
                proxies: s(&["p1.mairie.example:3128", "p2.mairie.example:3128"]),
                by_network: vec![
                    PacGroup {
                        networks: vec!["10.1.0.0/16".parse().unwrap()],
                        proxies: s(&["p1.mairie.example:3128", "p2.mairie.example:3128"]),
                    },
                    PacGroup {
                        networks: vec![
                            "10.2.0.0/16".parse().unwrap(),
                            "10.3.0.0/16".parse().unwrap(),
                        ],
                        proxies: s(&["p2.mairie.example:3128", "p1.mairie.example:3128"]),
                    },
                ],
            },
            ..Settings::default()
        }
    }

    /// The last line of the function: what a site outside the internal ones gets.
    fn last_return(p: &str) -> &str {
        p.lines()
            .rev()
            .find(|l| l.trim_start().starts_with("return"))
            .unwrap()
            .trim()
    }

    #[test]
    fn pac_lists_the_proxies_in_the_order_of_the_workstations_network() {
        let cfg = cluster();
        for (client, want) in [
            (
                "10.1.4.5",
                "return \"PROXY p1.mairie.example:3128; PROXY p2.mairie.example:3128\";",
            ),
            (
                "10.3.0.9",
                "return \"PROXY p2.mairie.example:3128; PROXY p1.mairie.example:3128\";",
            ),
            // Outside every group: the default order.
            (
                "192.168.1.20",
                "return \"PROXY p1.mairie.example:3128; PROXY p2.mairie.example:3128\";",
            ),
            // An IPv4 client seen on an IPv6 socket.
            (
                "::ffff:10.2.0.1",
                "return \"PROXY p2.mairie.example:3128; PROXY p1.mairie.example:3128\";",
            ),
        ] {
            let p = pac(&cfg, client.parse().unwrap());
            assert_eq!(last_return(&p), want, "{client}: {p}");
            assert!(!last_return(&p).contains("DIRECT"), "no fallback: {p}");
        }
    }

    #[test]
    fn pac_without_its_own_proxies_names_public_proxy_alone_for_every_network() {
        use crate::settings::{PacGroup, PacSettings};
        let mut cfg = cluster();
        cfg.pac.proxies.clear();
        let p = pac(&cfg, "192.168.1.20".parse().unwrap());
        assert_eq!(
            last_return(&p),
            "return \"PROXY proxy.mairie.example:3128\";"
        );
        cfg.pac = PacSettings {
            proxies: Vec::new(),
            by_network: vec![PacGroup {
                networks: vec!["10.1.0.0/16".parse().unwrap()],
                proxies: vec!["p2.mairie.example:3128".into()],
            }],
        };
        let p = pac(&cfg, "10.1.0.1".parse().unwrap());
        assert_eq!(last_return(&p), "return \"PROXY p2.mairie.example:3128\";");
    }

    #[test]
    fn the_help_page_names_the_first_proxy_of_the_workstations_order() {
        let cfg = cluster();
        let page = index_page(&cfg, "10.2.0.7".parse().unwrap(), Lang::En);
        assert!(
            page.contains("<code>p2.mairie.example:3128</code>"),
            "{page}"
        );
        let page = index_page(&Settings::default(), "10.2.0.7".parse().unwrap(), Lang::En);
        assert!(page.contains("<code>127.0.0.1:3128</code>"), "{page}");
    }
}
