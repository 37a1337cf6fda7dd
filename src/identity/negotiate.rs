//! Proxy authentication by Kerberos: `Proxy-Authorization: Negotiate <base64>` (RFC 4559),
//! the token an SPNEGO-wrapped (RFC 4178) Kerberos AP-REQ that a domain-joined browser
//! sends without asking the user anything.
//!
//! Two parts:
//! - the header's framing ([`parse_negotiate`], [`scheme_of`]), always compiled: plain
//!   byte handling that never calls GSSAPI;
//! - the [`Acceptor`], behind the cargo feature `kerberos`: it checks a token with the
//!   system's MIT GSSAPI library (`libgssapi`), with the keys of the keytab named by
//!   `KRB5_KTNAME`.
//!
//! The acceptor's credential is acquired with no name, so a token for **any** principal
//! of the keytab is accepted: a load-balanced cluster behind `proxy.mairie.test` and
//! each node's own name (`HTTP/proxy1.mairie.test`, …) share one keytab. Each token gets
//! a new server context and one call of `gss_accept_sec_context`: Kerberos through SPNEGO
//! completes in one round trip, and a mechanism that wants another one (NTLM through
//! SPNEGO, for instance) is refused rather than kept as per-connection state.
//!
//! Replays are caught by MIT's replay cache, a file in `KRB5RCACHEDIR` (default
//! `/var/tmp`) shared by every process of the same user on the machine; it must be on a
//! local disk the proxy can write. Expired tickets and clocks more than `clockskew`
//! (krb5.conf, 300 s by default) apart are refused by the library.
//!
//! [`Acceptor::accept`] blocks (it reads the keytab and the replay cache): run it on
//! tokio's blocking pool.

use base64::Engine as _;

/// Longest `Proxy-Authorization: Negotiate` value accepted, in bytes. A Kerberos ticket
/// from Active Directory carries the user's groups (the PAC): with hundreds of groups
/// the token reaches 12–48 KiB, and Windows' own limit (`MaxTokenSize`) is 48 000 bytes
/// before base64. Longer values are refused as [`TokenError::TooLong`].
pub const MAX_NEGOTIATE_HEADER: usize = 64 * 1024;

/// The authentication scheme of a `Proxy-Authorization` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Basic,
    Negotiate,
    Other,
}

/// The scheme of a `Proxy-Authorization` value: its first word, compared without case.
/// Leading white space is skipped.
pub fn scheme_of(value: &[u8]) -> Scheme {
    let value = value.trim_ascii_start();
    let end = value
        .iter()
        .position(|b| *b == b' ' || *b == b'\t')
        .unwrap_or(value.len());
    let word = &value[..end];
    if word.eq_ignore_ascii_case(b"basic") {
        Scheme::Basic
    } else if word.eq_ignore_ascii_case(b"negotiate") {
        Scheme::Negotiate
    } else {
        Scheme::Other
    }
}

/// Why a `Proxy-Authorization` value is not a well-framed Negotiate token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the Negotiate value is {len} bytes long, more than {MAX_NEGOTIATE_HEADER}")]
    TooLong { len: usize },
    #[error("the scheme is not Negotiate")]
    NotNegotiate,
    #[error("the Negotiate scheme is not followed by a space and a token")]
    NoToken,
    #[error("the Negotiate token is not base64: {0}")]
    Base64(String),
}

impl TokenError {
    /// Stable short code of the error kind.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::TooLong { .. } => "negotiate_too_long",
            TokenError::NotNegotiate => "not_negotiate",
            TokenError::NoToken => "negotiate_no_token",
            TokenError::Base64(_) => "negotiate_base64",
        }
    }
}

/// The token of a `Proxy-Authorization: Negotiate <base64>` value, decoded.
///
/// The framing of RFC 4559 and RFC 9110 (`credentials = auth-scheme 1*SP token68`): the
/// scheme without regard to case, one or more spaces, then standard base64 (`+/`, not the
/// URL-safe alphabet). Padding is *indifferent*: `=` may be there or not (every client
/// seen pads; the bytes are the same either way), but when present it must be right.
/// White space around the value (optional white space of a field value) is ignored;
/// anything else after the token is an error, as is an empty token.
pub fn parse_negotiate(value: &[u8]) -> Result<Vec<u8>, TokenError> {
    if value.len() > MAX_NEGOTIATE_HEADER {
        return Err(TokenError::TooLong { len: value.len() });
    }
    let value = value.trim_ascii();
    let Some((scheme, rest)) = value.split_at_checked(b"negotiate".len()) else {
        return Err(if scheme_of(value) == Scheme::Negotiate {
            TokenError::NoToken
        } else {
            TokenError::NotNegotiate
        });
    };
    if !scheme.eq_ignore_ascii_case(b"negotiate") {
        return Err(TokenError::NotNegotiate);
    }
    let token = match rest.strip_prefix(b" ") {
        Some(t) => t.trim_ascii_start(),
        None if rest.is_empty() => return Err(TokenError::NoToken),
        // A tab is not the space the grammar wants (`1*SP`).
        None if rest[0] == b'\t' => return Err(TokenError::NoToken),
        // `NegotiateXYZ`: another scheme whose name begins with ours.
        None => return Err(TokenError::NotNegotiate),
    };
    if token.is_empty() {
        return Err(TokenError::NoToken);
    }
    base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
        .decode(token)
        .map_err(|e| TokenError::Base64(e.to_string()))
}

#[cfg(feature = "kerberos")]
pub use acceptor::{Accepted, Acceptor, NegotiateError, Refusal};

#[cfg(feature = "kerberos")]
mod acceptor {
    use std::collections::HashMap;
    use std::ffi::OsString;
    use std::fmt;
    use std::io::Read as _;
    use std::path::PathBuf;
    use std::sync::Mutex;

    use libgssapi::context::{SecurityContext as _, ServerCtx};
    use libgssapi::credential::{Cred, CredUsage};
    use libgssapi::error::{Error as GssError, MajorFlags};
    use libgssapi::oid::{GSS_MECH_KRB5, GSS_MECH_SPNEGO, OidSet};

    /// Why the acceptor could not be set up.
    #[derive(Debug, thiserror::Error)]
    pub enum NegotiateError {
        #[error("keytab {}: no such file (KRB5_KTNAME={ktname:?})", path.display())]
        KeytabMissing { path: PathBuf, ktname: OsString },
        #[error("keytab {}: cannot be read: {source}", path.display())]
        KeytabUnreadable {
            path: PathBuf,
            #[source]
            source: std::io::Error,
        },
        #[error("keytab {}: holds no key", path.display())]
        KeytabEmpty { path: PathBuf },
        #[error("no acceptor credential from the keytab {keytab}: {message}")]
        Credential { keytab: String, message: String },
    }

    impl NegotiateError {
        /// Stable short code of the error kind.
        pub fn code(&self) -> &'static str {
            match self {
                NegotiateError::KeytabMissing { .. } => "keytab_missing",
                NegotiateError::KeytabUnreadable { .. } => "keytab_unreadable",
                NegotiateError::KeytabEmpty { .. } => "keytab_empty",
                NegotiateError::Credential { .. } => "acceptor_credential",
            }
        }
    }

    /// Why a token was refused. The codes are stable (logs, metric labels); `Other`
    /// carries GSSAPI's own message for the log, never for the client.
    #[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
    pub enum Refusal {
        /// Not a token GSSAPI can read (truncated, garbage, unknown mechanism).
        #[error("malformed token: {0}")]
        Malformed(String),
        /// A raw NTLM message (`NTLMSSP\0`): a Windows client that could not get a
        /// Kerberos ticket for the proxy (named by its address, not in the domain…).
        #[error("NTLM token: the client has no Kerberos ticket for the proxy")]
        Ntlm,
        /// The same authenticator seen before (the replay cache).
        #[error("replayed token: {0}")]
        Replay(String),
        /// The ticket has expired, or the client's clock is too far from ours.
        #[error("expired ticket or clock skew: {0}")]
        Expired(String),
        /// A ticket for a service whose key is not in the keytab (another host's name,
        /// or an old key version after the service's password changed).
        #[error("ticket for a service not in the keytab: {0}")]
        WrongService(String),
        /// The mechanism asked for a second round trip, which this acceptor does not do.
        #[error("the mechanism asked for another round trip")]
        ContinueNeeded,
        #[error("GSSAPI refused the token: {0}")]
        Other(String),
    }

    impl Refusal {
        /// Stable short code of the refusal.
        pub fn code(&self) -> &'static str {
            match self {
                Refusal::Malformed(_) => "malformed",
                Refusal::Ntlm => "ntlm",
                Refusal::Replay(_) => "replay",
                Refusal::Expired(_) => "expired",
                Refusal::WrongService(_) => "wrong-service",
                Refusal::ContinueNeeded => "continue-needed",
                Refusal::Other(_) => "other",
            }
        }
    }

    /// An accepted token.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Accepted {
        /// The client's principal, `alice@MAIRIE.TEST`.
        pub principal: String,
        /// The token to send back as `Proxy-Authenticate: Negotiate <base64>` on the
        /// answer (SPNEGO's final `accept-completed`, with the Kerberos AP-REP when the
        /// client asked for mutual authentication); `None` when GSSAPI gave none.
        pub reply: Option<Vec<u8>>,
    }

    /// Checks Negotiate tokens with the keys of the process's keytab; one per process,
    /// shared by every connection (it is `Send + Sync`: GSSAPI locks the credential).
    pub struct Acceptor {
        cred: Cred,
        /// The keytab's name, for logs.
        keytab: String,
        /// Minor statuses renumbered by GSSAPI, resolved (see `Acceptor::minor_kind`).
        resolved: Mutex<HashMap<u32, Option<Kind>>>,
    }

    impl fmt::Debug for Acceptor {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Acceptor")
                .field("keytab", &self.keytab)
                .finish_non_exhaustive()
        }
    }

    /// The path of a file keytab name (`FILE:/p`, `WRFILE:/p` or `/p`); `None` for other
    /// kinds (`MEMORY:`, `DIR:`…), which only GSSAPI can check.
    fn keytab_path(name: &str) -> Option<PathBuf> {
        if let Some(p) = name
            .strip_prefix("FILE:")
            .or_else(|| name.strip_prefix("WRFILE:"))
        {
            return Some(PathBuf::from(p));
        }
        // A residual without a type is a file name (MIT: "FILE" is the default type); a
        // type prefix is letters before a `:`.
        match name.split_once(':') {
            Some((kind, _))
                if !kind.is_empty() && kind.chars().all(|c| c.is_ascii_alphabetic()) =>
            {
                None
            }
            _ => Some(PathBuf::from(name)),
        }
    }

    /// Checks that a file keytab exists, can be read and holds more than its 2-byte
    /// version header, so that the usual mistakes are named with the path.
    fn check_keytab_file(path: PathBuf, ktname: &OsString) -> Result<(), NegotiateError> {
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(NegotiateError::KeytabMissing {
                    path,
                    ktname: ktname.clone(),
                });
            }
            Err(source) => return Err(NegotiateError::KeytabUnreadable { path, source }),
        };
        let mut head = [0u8; 3];
        let mut n = 0;
        loop {
            match file.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => {
                    n += k;
                    if n == head.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => return Err(NegotiateError::KeytabUnreadable { path, source }),
            }
        }
        if n <= 2 {
            return Err(NegotiateError::KeytabEmpty { path });
        }
        Ok(())
    }

    impl Acceptor {
        /// An acceptor for every principal of the keytab named by `KRB5_KTNAME` (or
        /// the library's default keytab, `/etc/krb5.keytab` unless krb5.conf's
        /// `default_keytab_name` says otherwise). The rest of the Kerberos setup also
        /// comes from the environment: `KRB5_CONFIG`, `KRB5RCACHEDIR`.
        pub fn new() -> Result<Acceptor, NegotiateError> {
            let ktname = std::env::var_os("KRB5_KTNAME");
            let keytab = match &ktname {
                Some(n) => n.to_string_lossy().into_owned(),
                None => "(default keytab; KRB5_KTNAME is not set)".to_string(),
            };
            if let Some(n) = &ktname
                && let Some(path) = keytab_path(&n.to_string_lossy())
            {
                check_keytab_file(path, n)?;
            }
            let cred_error = |e: GssError| NegotiateError::Credential {
                keytab: keytab.clone(),
                message: e.to_string(),
            };
            // Kerberos alone first: its error names what is wrong with the keytab
            // ("Unsupported key table format version number"), where SPNEGO's only
            // says that it found no mechanism.
            let krb5 = OidSet::singleton(GSS_MECH_KRB5).map_err(cred_error)?;
            Cred::acquire(None, None, CredUsage::Accept, Some(&krb5)).map_err(cred_error)?;
            // Kerberos itself and SPNEGO around it; nothing else (no NegoEx, no NTLM).
            let mut mechs = OidSet::new();
            mechs.add(GSS_MECH_SPNEGO).map_err(cred_error)?;
            mechs.add(GSS_MECH_KRB5).map_err(cred_error)?;
            // No name: any principal of the keytab (MIT also checks here that the
            // keytab holds at least one key).
            let cred =
                Cred::acquire(None, None, CredUsage::Accept, Some(&mechs)).map_err(cred_error)?;
            Ok(Acceptor {
                cred,
                keytab,
                resolved: Mutex::new(HashMap::new()),
            })
        }

        /// The keytab the acceptor reads, as named in the environment.
        pub fn keytab(&self) -> &str {
            &self.keytab
        }

        /// Checks one token (already base64-decoded, see [`parse_negotiate`]). Blocking.
        ///
        /// [`parse_negotiate`]: super::parse_negotiate
        pub fn accept(&self, token: &[u8]) -> Result<Accepted, Refusal> {
            if token.starts_with(b"NTLMSSP\0") {
                return Err(Refusal::Ntlm);
            }
            if token.is_empty() {
                return Err(Refusal::Malformed("empty token".into()));
            }
            let mut ctx = ServerCtx::new(Some(self.cred.clone()));
            let reply = ctx.step(token, None).map_err(|e| self.refusal(&e))?;
            if !ctx.is_complete() {
                return Err(Refusal::ContinueNeeded);
            }
            let name = ctx
                .source_name()
                .and_then(|n| n.display_name())
                .map_err(|e| Refusal::Other(format!("no client name: {e}")))?;
            let principal = String::from_utf8(name.to_vec())
                .map_err(|_| Refusal::Other("the client name is not UTF-8".into()))?;
            Ok(Accepted {
                principal,
                reply: reply.map(|b| b.to_vec()).filter(|b| !b.is_empty()),
            })
        }
    }

    /// What a refusal means, before its message is attached.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Kind {
        Malformed,
        Replay,
        Expired,
        WrongService,
        Other,
    }

    /// Minor status codes of MIT Kerberos that say what went wrong: the krb5
    /// mechanism's (`krb5.h`, com_err table "krb5"), the ASN.1 decoder's (table
    /// "asn1", also in `krb5.h`) and GSSAPI's generic token checks (table "ggss",
    /// `gssapi_err_generic.et` of MIT's sources, not installed as a header).
    const MINORS: &[(i64, Kind)] = &[
        (-1765328353, Kind::Malformed),    // KRB5KRB_AP_ERR_BAD_INTEGRITY
        (-1765328352, Kind::Expired),      // KRB5KRB_AP_ERR_TKT_EXPIRED
        (-1765328351, Kind::Expired),      // KRB5KRB_AP_ERR_TKT_NYV (not yet valid)
        (-1765328350, Kind::Replay),       // KRB5KRB_AP_ERR_REPEAT
        (-1765328349, Kind::WrongService), // KRB5KRB_AP_ERR_NOT_US
        (-1765328348, Kind::Malformed),    // KRB5KRB_AP_ERR_BADMATCH
        (-1765328347, Kind::Expired),      // KRB5KRB_AP_ERR_SKEW
        (-1765328345, Kind::Malformed),    // KRB5KRB_AP_ERR_BADVERSION
        (-1765328344, Kind::Malformed),    // KRB5KRB_AP_ERR_MSG_TYPE
        (-1765328343, Kind::Malformed),    // KRB5KRB_AP_ERR_MODIFIED
        (-1765328340, Kind::WrongService), // KRB5KRB_AP_ERR_BADKEYVER
        (-1765328339, Kind::WrongService), // KRB5KRB_AP_ERR_NOKEY
        (-1765328334, Kind::Malformed),    // KRB5KRB_AP_ERR_INAPP_CKSUM
        (-1765328246, Kind::Malformed),    // KRB5_BADMSGTYPE
        (-1765328240, Kind::WrongService), // KRB5KRB_AP_WRONG_PRINC
        (-1765328221, Kind::Replay),       // KRB5_RC_REPLAY
        (-1765328203, Kind::WrongService), // KRB5_KT_NOTFOUND
        (-1765328154, Kind::WrongService), // KRB5_KT_KVNONOTFOUND
        (1859794433, Kind::Malformed),     // ASN1_MISSING_FIELD
        (1859794434, Kind::Malformed),     // ASN1_MISPLACED_FIELD
        (1859794435, Kind::Malformed),     // ASN1_TYPE_MISMATCH
        (1859794436, Kind::Malformed),     // ASN1_OVERFLOW
        (1859794437, Kind::Malformed),     // ASN1_OVERRUN
        (1859794438, Kind::Malformed),     // ASN1_BAD_ID
        (1859794439, Kind::Malformed),     // ASN1_BAD_LENGTH
        (1859794440, Kind::Malformed),     // ASN1_BAD_FORMAT
        (1859794441, Kind::Malformed),     // ASN1_PARSE_ERROR
        (1859794443, Kind::Malformed),     // ASN1_INDEF
        (1859794444, Kind::Malformed),     // ASN1_MISSING_EOC
        (2249944331, Kind::Malformed),     // G_WRONG_MECH
        (2249944332, Kind::Malformed),     // G_BAD_TOK_HEADER
        (2249944334, Kind::Malformed),     // G_TOK_TRUNC
        (2249944336, Kind::Malformed),     // G_WRONG_TOKID
    ];

    /// The kind a known minor code says.
    fn minor_kind(minor: u32) -> Option<Kind> {
        MINORS
            .iter()
            .find(|(code, _)| *code as u32 == minor)
            .map(|(_, kind)| *kind)
    }

    /// GSSAPI's text for a minor status.
    fn minor_text(minor: u32) -> String {
        GssError {
            major: MajorFlags::empty(),
            minor,
        }
        .to_string()
    }

    /// Routine error field of a major status (RFC 2744 §3.9.1), in place.
    const ROUTINE_MASK: u32 = 0xff << 16;
    const GSS_S_BAD_MECH: u32 = 1 << 16;
    const GSS_S_BAD_SIG: u32 = 6 << 16;
    const GSS_S_NO_CRED: u32 = 7 << 16;
    const GSS_S_DEFECTIVE_TOKEN: u32 = 9 << 16;
    const GSS_S_CREDENTIALS_EXPIRED: u32 = 11 << 16;
    const GSS_S_CONTEXT_EXPIRED: u32 = 12 << 16;

    /// The kind of a failure from its major status and the kind its minor status
    /// says, if known: the minor (the krb5 mechanism's error, passed up by SPNEGO) is
    /// the more precise; the major decides otherwise.
    fn classify(major: u32, minor: Option<Kind>) -> Kind {
        if let Some(kind) = minor {
            return kind;
        }
        if major & MajorFlags::GSS_S_DUPLICATE_TOKEN.bits() != 0 {
            return Kind::Replay;
        }
        match major & ROUTINE_MASK {
            GSS_S_CREDENTIALS_EXPIRED | GSS_S_CONTEXT_EXPIRED => Kind::Expired,
            GSS_S_DEFECTIVE_TOKEN | GSS_S_BAD_MECH | GSS_S_BAD_SIG => Kind::Malformed,
            GSS_S_NO_CRED => Kind::WrongService,
            _ => Kind::Other,
        }
    }

    impl Acceptor {
        /// The kind a minor status says. MIT's GSSAPI renumbers minor statuses per
        /// process so that codes of different mechanisms cannot collide: the krb5
        /// mechanism's `KRB5KRB_AP_ERR_REPEAT` keeps its number, but the same code
        /// passed up by SPNEGO, (SPNEGO, code), gets a made-up one (100000 and up)
        /// that only `gss_display_status` maps back. Such a number is compared by its
        /// text with the known codes' (the same library call at the end of the same
        /// chain, so equal whatever the locale) and remembered: the numbering holds
        /// for the life of the process.
        fn minor_kind(&self, minor: u32) -> Option<Kind> {
            if let Some(kind) = minor_kind(minor) {
                return Some(kind);
            }
            let mut resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(kind) = resolved.get(&minor) {
                return *kind;
            }
            let text = minor_text(minor);
            let kind = MINORS
                .iter()
                .find(|(code, _)| minor_text(*code as u32) == text)
                .map(|(_, kind)| *kind);
            // Bounded: one entry per (mechanism, code) pair the library has seen.
            if resolved.len() < 1024 {
                resolved.insert(minor, kind);
            }
            kind
        }

        /// A refusal from GSSAPI's major and minor statuses.
        fn refusal(&self, e: &GssError) -> Refusal {
            let message = e.to_string();
            match classify(e.major.bits(), self.minor_kind(e.minor)) {
                Kind::Malformed => Refusal::Malformed(message),
                Kind::Replay => Refusal::Replay(message),
                Kind::Expired => Refusal::Expired(message),
                Kind::WrongService => Refusal::WrongService(message),
                Kind::Other => Refusal::Other(message),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn keytab_names() {
            assert_eq!(keytab_path("FILE:/etc/k"), Some("/etc/k".into()));
            assert_eq!(keytab_path("WRFILE:/etc/k"), Some("/etc/k".into()));
            assert_eq!(keytab_path("/etc/k"), Some("/etc/k".into()));
            assert_eq!(keytab_path("MEMORY:x"), None);
            assert_eq!(keytab_path("DIR:/etc/keytabs"), None);
        }

        #[test]
        fn statuses_map_to_refusals() {
            let failure = 13 << 16;
            for (minor, kind) in [
                (-1765328350_i32 as u32, Kind::Replay),
                (-1765328347_i32 as u32, Kind::Expired),
                (-1765328352_i32 as u32, Kind::Expired),
                (-1765328240_i32 as u32, Kind::WrongService),
                (-1765328339_i32 as u32, Kind::WrongService),
                (-1765328343_i32 as u32, Kind::Malformed),
                (2249944332, Kind::Malformed),
                (1859794437, Kind::Malformed),
            ] {
                assert_eq!(classify(failure, minor_kind(minor)), kind, "{minor}");
            }
            assert_eq!(classify(failure, minor_kind(0)), Kind::Other);
            assert_eq!(classify(GSS_S_DEFECTIVE_TOKEN, None), Kind::Malformed);
            assert_eq!(classify(GSS_S_CONTEXT_EXPIRED, None), Kind::Expired);
            assert_eq!(
                classify(failure | MajorFlags::GSS_S_DUPLICATE_TOKEN.bits(), None),
                Kind::Replay
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn schemes() {
        for (value, scheme) in [
            (&b"Basic QQ=="[..], Scheme::Basic),
            (b"basic", Scheme::Basic),
            (b"  BASIC\tQQ==", Scheme::Basic),
            (b"Negotiate YII=", Scheme::Negotiate),
            (b"NEGOTIATE", Scheme::Negotiate),
            (b"Bearer x", Scheme::Other),
            (b"NTLM TlRMTVNTUAAB", Scheme::Other),
            (b"Negotiated x", Scheme::Other),
            (b"Basicx", Scheme::Other),
            (b"", Scheme::Other),
            (b"\xff\xfe", Scheme::Other),
        ] {
            assert_eq!(
                scheme_of(value),
                scheme,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn good_framings() {
        let token = b"\x60\x82\x01\x00 a token \xff";
        let t = b64(token);
        for value in [
            format!("Negotiate {t}"),
            format!("negotiate {t}"),
            format!("NeGoTiAtE    {t}"),
            format!("  Negotiate {t}\t "),
            // Padding is indifferent.
            format!("Negotiate {}", t.trim_end_matches('=')),
        ] {
            assert_eq!(
                parse_negotiate(value.as_bytes()).as_deref(),
                Ok(&token[..]),
                "{value:?}"
            );
        }
        // A large token (an AD ticket with many groups) within the bound.
        let big = vec![7u8; 40_000];
        let value = format!("Negotiate {}", b64(&big));
        assert_eq!(parse_negotiate(value.as_bytes()), Ok(big));
    }

    #[test]
    fn bad_framings() {
        let t = b64(b"token!");
        let too_long = format!("Negotiate {}", "A".repeat(MAX_NEGOTIATE_HEADER));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "not_negotiate"),
            (b"   ".to_vec(), "not_negotiate"),
            (b"Negotiate".to_vec(), "negotiate_no_token"),
            (b"Negotiate ".to_vec(), "negotiate_no_token"),
            (b"Negotiate    ".to_vec(), "negotiate_no_token"),
            (b"Negotiat".to_vec(), "not_negotiate"),
            (format!("Negotiate\t{t}").into_bytes(), "negotiate_no_token"),
            (format!("NegotiateX {t}").into_bytes(), "not_negotiate"),
            (format!("Negotiate{t}").into_bytes(), "not_negotiate"),
            (format!("Basic {t}").into_bytes(), "not_negotiate"),
            (format!("NTLM {t}").into_bytes(), "not_negotiate"),
            (
                format!("Negotiate {t} {t}").into_bytes(),
                "negotiate_base64",
            ),
            (format!("Negotiate {t},x").into_bytes(), "negotiate_base64"),
            (format!("Negotiate {t}==").into_bytes(), "negotiate_base64"),
            (b"Negotiate dG9rZW4h=".to_vec(), "negotiate_base64"),
            (b"Negotiate dG9rZW4_".to_vec(), "negotiate_base64"),
            (b"Negotiate dG9-ZW4h".to_vec(), "negotiate_base64"),
            (b"Negotiate !!!!".to_vec(), "negotiate_base64"),
            (b"Negotiate Q".to_vec(), "negotiate_base64"),
            // Non-zero trailing bits: not canonical base64.
            (b"Negotiate QR==".to_vec(), "negotiate_base64"),
            (b"Negotiate \xff\xfe".to_vec(), "negotiate_base64"),
            (b"Negotiate dG9r\0ZW4h".to_vec(), "negotiate_base64"),
            (
                format!("Negotiate {t}\r\nX-Injected: 1").into_bytes(),
                "negotiate_base64",
            ),
            (too_long.into_bytes(), "negotiate_too_long"),
        ];
        for (value, code) in cases {
            let shown = String::from_utf8_lossy(&value[..value.len().min(60)]).into_owned();
            match parse_negotiate(&value) {
                Ok(t) => panic!("{shown:?} parsed as {t:?}"),
                Err(e) => assert_eq!(e.code(), code, "{shown:?}: {e}"),
            }
        }
    }

    #[test]
    fn never_panics_on_any_short_input() {
        // Every value of up to 3 bytes from an alphabet of interesting bytes, after
        // each prefix a parser might special-case.
        let alphabet = [b' ', b'\t', b'=', b'A', b'/', b'+', b'-', 0, 0xff, b'\r'];
        for prefix in [&b""[..], b"Negotiate", b"Negotiate ", b"negotiate  QQ"] {
            for a in alphabet {
                for b in alphabet {
                    for c in alphabet {
                        let mut v = prefix.to_vec();
                        v.extend([a, b, c]);
                        let _ = parse_negotiate(&v);
                        let _ = scheme_of(&v);
                    }
                }
            }
        }
    }
}
