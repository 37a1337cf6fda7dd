//! The signed token carried by the block page's "ask for this site to be opened" button.
//!
//! The portal must know who asks and what was blocked without trusting the form: the
//! proxy puts what it knew at block time (URL, rule, user, address, groups, time) into
//! [`Claims`] and signs them with a key only the server holds.
//!
//! Format: `base64url(JSON claims) "." base64url(HMAC-SHA256(key, first part))`, both
//! without padding. The MAC covers the first part as text, so it is checked before the
//! claims are even decoded, and the comparison is constant-time (the `hmac` crate's
//! `verify_slice`).
//!
//! The tokens are signed, not encrypted: the claims are readable by whoever holds the link
//! (the person who was blocked, who knows them anyway). The key lives in a file of its own
//! ([`load_or_create_key`]), created with mode 0600 and refused when others can read it.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of the server key in bytes.
pub const KEY_LEN: usize = 32;

/// Longest token [`verify`] looks at; a longer one is `Malformed` without further work.
/// Claims hold one URL (the server caps request lines well below this).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// How far in the future `iat` may be (clocks of the signer and verifier disagreeing).
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// What the proxy knew when it blocked the request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    /// The blocked URL (`host:port` for a tunnel).
    pub url: String,
    pub host: String,
    /// Id of the rule that blocked; `None` for the policy's default.
    pub rule: Option<String>,
    /// Stable reason code (`block-rule`…).
    pub reason_code: String,
    /// Category tags of the site.
    pub categories: Vec<String>,
    /// The authenticated user, if any.
    pub user: Option<String>,
    /// The client address.
    pub ip: String,
    /// The groups the client was in.
    pub groups: Vec<String>,
    /// Issued at, unix seconds.
    pub iat: u64,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not shaped like a token: no single ".", empty part, a character outside base64url,
    /// too long, or claims that do not decode.
    #[error("malformed unblock token")]
    Malformed,
    /// Shaped like a token, but not signed by this server's key (altered, or another key).
    #[error("unblock token signature does not match")]
    BadSignature,
    /// Signed by us, but older than the allowed age, or issued more than [`CLOCK_SKEW`]
    /// in the future (clocks disagree).
    #[error("unblock token expired or not yet valid")]
    Expired,
}

impl TokenError {
    /// Stable code for traces and metric labels. Never renamed.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed => "token-malformed",
            TokenError::BadSignature => "token-bad-signature",
            TokenError::Expired => "token-expired",
        }
    }
}

/// Seconds since the Unix epoch (0 before it), for [`Claims::iat`].
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (longer ones are hashed); this cannot fail.
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// Signs `claims` with `key` (the bytes from [`load_or_create_key`]).
pub fn sign(key: &[u8], claims: &Claims) -> String {
    // Strings, options, vectors and integers always serialize to JSON.
    let json = serde_json::to_vec(claims).expect("claims serialize to JSON");
    let payload = URL_SAFE_NO_PAD.encode(json);
    let tag = mac(key)
        .chain_update(payload.as_bytes())
        .finalize()
        .into_bytes();
    let mut token = payload;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut token);
    token
}

/// Checks `token` against `key` and returns its claims when the signature matches and it
/// was issued at most `max_age` before `now` (and at most [`CLOCK_SKEW`] after).
pub fn verify(
    key: &[u8],
    token: &str,
    now: SystemTime,
    max_age: Duration,
) -> Result<Claims, TokenError> {
    let is_b64url = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let (payload, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
    if !is_b64url(payload) || !is_b64url(sig) {
        return Err(TokenError::Malformed);
    }
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| TokenError::Malformed)?;
    // Constant-time; a tag of the wrong length does not match either.
    mac(key)
        .chain_update(payload.as_bytes())
        .verify_slice(&sig)
        .map_err(|_| TokenError::BadSignature)?;

    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;

    let now = unix_secs(now);
    if claims.iat > now.saturating_add(CLOCK_SKEW.as_secs())
        || now.saturating_sub(claims.iat) > max_age.as_secs()
    {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// Loads the server key ([`KEY_LEN`] random bytes) from `path`, creating it (and its
/// parent folder, mode 0700 on unix) if missing, with mode 0600 on unix.
///
/// Refuses an existing key file that group or others may read or write (asking for
/// `chmod 600 <path>`), and one that does not hold exactly [`KEY_LEN`] bytes.
pub fn load_or_create_key(path: &Path) -> io::Result<Vec<u8>> {
    match read_key(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    match create_key(path) {
        // Another process created it in between: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_key(path),
        other => other,
    }
}

fn read_key(path: &Path) -> io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unblock key {} is not a regular file", path.display()),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "unblock key {path} is open to group or others (mode {mode:03o}); \
                     run `chmod 600 {path}`",
                    path = path.display()
                ),
            ));
        }
    }
    let key = std::fs::read(path)?;
    if key.len() != KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "unblock key {} holds {} bytes instead of {KEY_LEN}; remove it to have a new \
                 one created (links already handed out will stop working)",
                path.display(),
                key.len()
            ),
        ));
    }
    Ok(key)
}

fn create_key(path: &Path) -> io::Result<Vec<u8>> {
    use io::Write as _;
    use rand::TryRng as _;

    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
        dir.create(parent)?;
    }
    let mut key = vec![0u8; KEY_LEN];
    rand::rngs::SysRng
        .try_fill_bytes(&mut key)
        .map_err(io::Error::from)?;

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(&key)?;
    file.sync_all()?;
    Ok(key)
}

/// The requester key (`user:NAME` or `ip:ADDRESS`) of a token's claims.
pub fn requester_of(c: &Claims) -> String {
    match &c.user {
        Some(u) => format!("user:{u}"),
        None => format!("ip:{}", c.ip),
    }
}

/// `base64url(text).mac`: a value the user carries and cannot forge (the follow link of
/// a request, the cookie that lists a user's requests).
pub fn seal(key: &[u8], text: &str) -> String {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    m.update(b"charte-proxy seal\0");
    m.update(text.as_bytes());
    let tag = m.finalize().into_bytes();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(text),
        URL_SAFE_NO_PAD.encode(&tag[..16])
    )
}

/// The text of a value made by [`seal`] with `key`, if it is one.
pub fn unseal(key: &[u8], sealed: &str) -> Option<String> {
    let (t, _) = sealed.split_once('.')?;
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(t).ok()?).ok()?;
    let again = seal(key, &text);
    // Constant-time enough for a 22-character tag: compare the whole strings by MAC.
    let mut a = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    a.update(again.as_bytes());
    a.verify_slice(&{
        let mut b = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
        b.update(sealed.as_bytes());
        b.finalize().into_bytes()
    })
    .ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const DAY: Duration = Duration::from_secs(86_400);

    fn claims() -> Claims {
        Claims {
            url: "https://www.casino.example/jouer?partie=42".into(),
            host: "www.casino.example".into(),
            rule: Some("jeux-argent".into()),
            reason_code: "block-rule".into(),
            categories: vec!["gambling".into()],
            user: Some("a.dupont".into()),
            ip: "10.1.2.3".into(),
            groups: vec!["agents".into(), "rh".into()],
            iat: 1_795_442_709,
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn round_trip() {
        let c = claims();
        let token = sign(KEY, &c);
        assert_eq!(token.matches('.').count(), 1);
        assert!(!token.contains('='));
        assert_eq!(verify(KEY, &token, at(c.iat + 10), DAY), Ok(c.clone()));
        // Deterministic: the same claims give the same token.
        assert_eq!(sign(KEY, &c), token);
    }

    #[test]
    fn round_trip_without_user_or_rule() {
        let c = Claims {
            rule: None,
            user: None,
            groups: vec![],
            categories: vec![],
            ..claims()
        };
        let token = sign(KEY, &c);
        assert_eq!(verify(KEY, &token, at(c.iat), DAY), Ok(c));
    }

    /// Decodes one part, flips a bit in byte `i`, encodes it back.
    fn flip(part: &str, i: usize) -> String {
        let mut bytes = URL_SAFE_NO_PAD.decode(part).unwrap();
        bytes[i] ^= 0x01;
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn flipped_byte_in_payload_is_bad_signature() {
        let c = claims();
        let token = sign(KEY, &c);
        let (payload, sig) = token.split_once('.').unwrap();
        for i in [0, 10, payload.len() * 3 / 4 - 1] {
            let forged = format!("{}.{sig}", flip(payload, i));
            assert_eq!(
                verify(KEY, &forged, at(c.iat), DAY),
                Err(TokenError::BadSignature),
                "byte {i}"
            );
        }
    }

    #[test]
    fn flipped_byte_in_signature_is_bad_signature() {
        let c = claims();
        let token = sign(KEY, &c);
        let (payload, sig) = token.split_once('.').unwrap();
        for i in [0, 15, 31] {
            let forged = format!("{payload}.{}", flip(sig, i));
            assert_eq!(
                verify(KEY, &forged, at(c.iat), DAY),
                Err(TokenError::BadSignature),
                "byte {i}"
            );
        }
        // A character changed in the text, truncated or lengthened tags.
        let mut chars: Vec<char> = sig.chars().collect();
        chars[5] = if chars[5] == 'A' { 'B' } else { 'A' };
        let forged = format!("{payload}.{}", chars.into_iter().collect::<String>());
        assert_eq!(
            verify(KEY, &forged, at(c.iat), DAY),
            Err(TokenError::BadSignature)
        );
        let short = URL_SAFE_NO_PAD.encode(&URL_SAFE_NO_PAD.decode(sig).unwrap()[..16]);
        let forged = format!("{payload}.{short}");
        assert_eq!(
            verify(KEY, &forged, at(c.iat), DAY),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn another_key_is_bad_signature() {
        let c = claims();
        let token = sign(b"another key, another server.....", &c);
        assert_eq!(
            verify(KEY, &token, at(c.iat), DAY),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let now = at(claims().iat);
        let long = "A".repeat(MAX_TOKEN_LEN + 1);
        for garbage in [
            "",
            ".",
            "abc",
            "abc.",
            ".abc",
            "a.b.c",
            "%%%.&&&",
            "abc def.ghi",
            "abc=.def",
            "abc.A",
            long.as_str(),
        ] {
            assert_eq!(
                verify(KEY, garbage, now, DAY),
                Err(TokenError::Malformed),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn signed_but_not_claims_is_malformed() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"url":"x"}"#);
        let tag = mac(KEY)
            .chain_update(payload.as_bytes())
            .finalize()
            .into_bytes();
        let token = format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag));
        assert_eq!(verify(KEY, &token, at(0), DAY), Err(TokenError::Malformed));
    }

    #[test]
    fn expired_and_future_tokens() {
        let c = claims();
        let token = sign(KEY, &c);
        let ok = |secs| verify(KEY, &token, at(secs), DAY);
        assert_eq!(ok(c.iat + 86_400), Ok(c.clone()), "exactly max_age old");
        assert_eq!(ok(c.iat + 86_401), Err(TokenError::Expired));
        assert_eq!(ok(c.iat - 60), Ok(c.clone()), "60 s of clock skew");
        assert_eq!(ok(c.iat - 61), Err(TokenError::Expired));
    }

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(TokenError::Malformed.code(), "token-malformed");
        assert_eq!(TokenError::BadSignature.code(), "token-bad-signature");
        assert_eq!(TokenError::Expired.code(), "token-expired");
    }

    #[test]
    fn key_file_is_created_private_and_reloaded_equal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets/sub/unblock.key");
        let key = load_or_create_key(&path).unwrap();
        assert_eq!(key.len(), KEY_LEN);
        assert_ne!(key, vec![0u8; KEY_LEN]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let parent = std::fs::metadata(path.parent().unwrap()).unwrap();
            assert_eq!(parent.permissions().mode() & 0o077, 0);
        }
        assert_eq!(load_or_create_key(&path).unwrap(), key);
        // And tokens signed with it verify with the reloaded key.
        let token = sign(&key, &claims());
        let again = load_or_create_key(&path).unwrap();
        assert!(verify(&again, &token, at(claims().iat), DAY).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn key_file_open_to_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unblock.key");
        std::fs::write(&path, [7u8; KEY_LEN]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_key(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("chmod 600 {}", path.display())),
            "{msg}"
        );
        // The file is left untouched.
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; KEY_LEN]);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_or_create_key(&path).unwrap(), vec![7u8; KEY_LEN]);
    }

    #[test]
    fn key_file_of_the_wrong_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unblock.key");
        std::fs::write(&path, b"short").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let err = load_or_create_key(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn sealed_values_round_trip_and_resist_tampering() {
        let k = [7u8; 32];
        let s = seal(&k, "user:c.martin");
        assert_eq!(unseal(&k, &s).as_deref(), Some("user:c.martin"));
        let forged = seal(&[8u8; 32], "user:c.martin");
        assert_eq!(unseal(&k, &forged), None);
        let (_, tag) = s.split_once('.').unwrap();
        let other = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("user:admin"));
        assert_eq!(unseal(&k, &other), None);
    }
}
