//! The identity stage, composed: who is asking (proxy authentication: Kerberos single
//! sign-on, Basic against the users file or the directory) and in which groups (the
//! policy's networks and users, and the directory's groups).
//!
//! Negotiate (Kerberos/SPNEGO) authenticates a **connection**: once a token was
//! accepted, the connection's later requests carry no header and are not challenged
//! again, as browsers expect (RFC 4559 §4). Basic is checked on each request (browsers
//! send it each time), from a cache. A directory that does not answer never opens more
//! than the policy's network groups and default: the request goes on without the
//! directory's groups and its record says `directory-unavailable`.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use http::HeaderMap;
use http::header::{self, HeaderValue};

use super::ProxyState;
use crate::identity::GroupTable;
use crate::identity::Identity;
use crate::identity::auth::{AuthOutcome, parse_basic};
use crate::identity::directory::Groups;
use crate::identity::negotiate::{self, Scheme};
use crate::settings::{AuthMode, UserName};

/// What a connection to the proxy listener has proved: set once, by an accepted
/// Negotiate token.
#[derive(Debug, Default)]
pub struct ConnIdentity {
    user: OnceLock<Arc<str>>,
}

impl ConnIdentity {
    pub fn user(&self) -> Option<&Arc<str>> {
        self.user.get()
    }
}

/// Why a request gets 407: a stable code for the trace's `error` and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// No credentials where they are required.
    Missing,
    /// A Negotiate token refused (its code: `malformed`, `replay`, `expired`,
    /// `wrong-service`, `ntlm`, `continue-needed`, `other`) or unusable here.
    Negotiate(&'static str),
    /// Basic credentials that are wrong, unknown or malformed.
    Basic,
    /// A scheme the proxy does not offer.
    Scheme,
}

impl Challenge {
    pub fn code(self) -> &'static str {
        match self {
            Challenge::Missing => "no-credentials",
            Challenge::Negotiate(c) => c,
            Challenge::Basic => "basic-invalid",
            Challenge::Scheme => "unsupported-scheme",
        }
    }

    /// The metric label: the code, with `negotiate-` before a refused token's.
    pub fn label(self) -> &'static str {
        match self {
            Challenge::Negotiate(c) => negotiate_label(c),
            other => other.code(),
        }
    }
}

/// The user name refused Basic credentials gave, for the 407's record (never the
/// password); `None` for other schemes, whose names cannot be read without accepting
/// the token.
pub fn tried_user(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::PROXY_AUTHORIZATION)?;
    if negotiate::scheme_of(value.as_bytes()) != Scheme::Basic {
        return None;
    }
    let (user, _password) = parse_basic(value.as_bytes())?;
    // As long as a user name can be in the users file, at most.
    let user: String = user.chars().filter(|c| !c.is_control()).take(256).collect();
    (!user.is_empty()).then_some(user)
}

fn negotiate_label(code: &str) -> &'static str {
    match code {
        "malformed" => "negotiate-malformed",
        "replay" => "negotiate-replay",
        "expired" => "negotiate-expired",
        "wrong-service" => "negotiate-wrong-service",
        "ntlm" => "negotiate-ntlm",
        "continue-needed" => "negotiate-continue-needed",
        "off" => "negotiate-off",
        _ => "negotiate-other",
    }
}

/// An authenticated user, and the token to return with the answer (Negotiate's mutual
/// authentication), if any.
#[derive(Debug, Default)]
pub struct Proved {
    pub user: Option<Arc<str>>,
    pub reply: Option<HeaderValue>,
}

/// Checks the request's credentials. `Ok`: the client may go on, authenticated or
/// anonymous where that is allowed.
///
/// What most requests need is decided here without waiting (authentication off, a
/// connection already authenticated, no credentials); a header to check goes through a
/// boxed future, so that the request's own future stays small.
pub async fn authenticate(
    st: &ProxyState,
    conn: &ConnIdentity,
    client: IpAddr,
    headers: &HeaderMap,
) -> Result<Proved, Challenge> {
    let mode = st.cfg.auth.mode(client);
    if mode == AuthMode::Off {
        return Ok(Proved::default());
    }
    if let Some(user) = conn.user() {
        return Ok(Proved {
            user: Some(user.clone()),
            reply: None,
        });
    }
    let Some(value) = headers.get(header::PROXY_AUTHORIZATION) else {
        return match mode {
            AuthMode::Optional => Ok(Proved::default()),
            _ => Err(Challenge::Missing),
        };
    };
    Box::pin(check(st, conn, value.as_bytes())).await
}

/// A `Proxy-Authorization` value, checked by its scheme.
async fn check(st: &ProxyState, conn: &ConnIdentity, value: &[u8]) -> Result<Proved, Challenge> {
    match negotiate::scheme_of(value) {
        Scheme::Negotiate if st.cfg.auth.negotiate => {
            let (user, reply) = accept_negotiate(st, value).await?;
            let user = conn.user.get_or_init(|| user).clone();
            Ok(Proved {
                user: Some(user),
                reply,
            })
        }
        Scheme::Basic if st.cfg.auth.basic => basic(st, value).await.map(|user| Proved {
            user: Some(user),
            reply: None,
        }),
        _ => Err(Challenge::Scheme),
    }
}

/// Basic: the users file first, then the directory (a bind as the user).
async fn basic(st: &ProxyState, value: &[u8]) -> Result<Arc<str>, Challenge> {
    if let Some(auth) = &st.auth
        && let AuthOutcome::Authenticated(u) = auth.check(Some(value)).await
    {
        return Ok(u);
    }
    let Some(dir) = st
        .directory
        .as_ref()
        .filter(|_| st.cfg.auth.basic_directory)
    else {
        return Err(Challenge::Basic);
    };
    let Some((user, password)) = parse_basic(value) else {
        return Err(Challenge::Basic);
    };
    match dir.check_password(&user, &password).await {
        Ok(Some(_)) => Ok(user.into()),
        Ok(None) => Err(Challenge::Basic),
        Err(e) => {
            tracing::warn!(error = %e, "directory: password check failed");
            Err(Challenge::Basic)
        }
    }
}

/// One Negotiate token, accepted on the blocking pool (GSSAPI reads the keytab and the
/// replay cache from disk).
#[cfg(feature = "kerberos")]
async fn accept_negotiate(
    st: &ProxyState,
    value: &[u8],
) -> Result<(Arc<str>, Option<HeaderValue>), Challenge> {
    use base64::Engine as _;
    let Some(acceptor) = st.negotiate.clone() else {
        return Err(Challenge::Negotiate("off"));
    };
    let token = negotiate::parse_negotiate(value).map_err(|_| Challenge::Negotiate("malformed"))?;
    let accepted = tokio::task::spawn_blocking(move || acceptor.accept(&token))
        .await
        .map_err(|_| Challenge::Negotiate("other"))?;
    match accepted {
        Ok(a) => {
            let user = user_name(&a.principal, st.cfg.auth.user_name);
            let reply = a.reply.and_then(|r| {
                let b64 = base64::engine::general_purpose::STANDARD.encode(r);
                HeaderValue::from_str(&format!("Negotiate {b64}")).ok()
            });
            Ok((user, reply))
        }
        Err(refusal) => {
            tracing::info!(code = refusal.code(), error = %refusal, "Negotiate token refused");
            Err(Challenge::Negotiate(refusal.code()))
        }
    }
}

#[cfg(not(feature = "kerberos"))]
async fn accept_negotiate(
    _st: &ProxyState,
    _value: &[u8],
) -> Result<(Arc<str>, Option<HeaderValue>), Challenge> {
    Err(Challenge::Negotiate("off"))
}

#[cfg_attr(not(feature = "kerberos"), allow(dead_code))]
/// How the trace names a Kerberos principal: whole (`alice@MAIRIE.LOCAL`) or short
/// (`alice`).
fn user_name(principal: &str, form: UserName) -> Arc<str> {
    match form {
        UserName::Principal => principal.into(),
        UserName::Short => principal
            .rsplit_once('@')
            .map_or(principal, |(name, _)| name)
            .into(),
    }
}

/// The `Proxy-Authenticate` fields of a 407: Negotiate first (browsers take the first
/// scheme they support), then Basic with its realm.
pub fn challenges(st: &ProxyState) -> Vec<HeaderValue> {
    let mut out = Vec::with_capacity(2);
    if st.cfg.auth.negotiate {
        out.push(HeaderValue::from_static("Negotiate"));
    }
    if st.cfg.auth.basic {
        let basic = format!(
            "Basic realm=\"{}\", charset=\"UTF-8\"",
            st.cfg.auth.realm.replace('"', "")
        );
        if let Ok(v) = HeaderValue::from_str(&basic) {
            out.push(v);
        }
    }
    out
}

/// The client's groups: the policy's networks and users, and the directory's groups
/// when the policy names some. `Some("directory-unavailable")` when the directory gave
/// no answer in time (the request goes on without its groups).
pub async fn groups(
    st: &ProxyState,
    table: &GroupTable,
    client: IpAddr,
    user: Option<&str>,
) -> (Identity, Option<&'static str>) {
    let (Some(dir), Some(u)) = (st.directory.as_ref(), user) else {
        return (table.resolve(client, user), None);
    };
    if !table.uses_directory() {
        return (table.resolve(client, user), None);
    }
    match Box::pin(dir.groups(u)).await {
        Groups::Known(dns) => {
            // Short group names not yet resolved (just after a start or a reload):
            // waited for as a first lookup is, then the groups the DNs give.
            let ready = !table.has_directory_names() || Box::pin(dir.names_ready()).await;
            let names = dir.names();
            // A name the directory could not be asked about (down since the load).
            let unanswered = dir.names_unanswered()
                && table
                    .groups
                    .iter()
                    .flat_map(|g| &g.directory_names)
                    .any(|n| !names.contains_key(&n.name));
            let id = table.resolve_with(client, user, &dns, &names);
            (
                id,
                (!ready || unanswered).then_some("directory-unavailable"),
            )
        }
        Groups::Unavailable(e) => {
            tracing::debug!(user = u, error = %e, "directory unavailable: network groups only");
            (table.resolve(client, user), Some("directory-unavailable"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_are_named_whole_or_short() {
        assert_eq!(
            &*user_name("alice@MAIRIE.TEST", UserName::Principal),
            "alice@MAIRIE.TEST"
        );
        assert_eq!(&*user_name("alice@MAIRIE.TEST", UserName::Short), "alice");
        assert_eq!(&*user_name("alice", UserName::Short), "alice");
    }

    #[test]
    fn every_refusal_has_its_label() {
        for (code, label) in [
            ("malformed", "negotiate-malformed"),
            ("replay", "negotiate-replay"),
            ("expired", "negotiate-expired"),
            ("wrong-service", "negotiate-wrong-service"),
            ("whatever", "negotiate-other"),
        ] {
            assert_eq!(Challenge::Negotiate(code).label(), label);
        }
        assert_eq!(Challenge::Missing.label(), "no-credentials");
    }
}
