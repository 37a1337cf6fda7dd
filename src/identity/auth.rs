//! Proxy authentication: `Proxy-Authorization: Basic` checked against a users file of
//! salted slow hashes.
//!
//! The users file is text, one `user:$argon2id$v=19$m=19456,t=2,p=1$salt$hash` PHC string
//! a line; blank lines and `#` comments are kept as they are when the file is rewritten.
//! It is written atomically (a temporary file beside it, then a rename) with mode 0600.
//!
//! Hashes are Argon2id with the `argon2` crate's default parameters (OWASP's minimum):
//! m = 19 MiB of memory, t = 2 passes, p = 1 lane, 16-byte random salt, 32-byte output.
//! One verification costs about 20–30 ms of one core and 19 MiB (measured on the
//! development machine, an AMD EPYC, release and test builds alike). The parameters
//! travel inside each PHC string, so raising them later only affects new passwords.
//!
//! The [`Authenticator`] keeps that cost off the hot path:
//! - argon2 runs on tokio's blocking pool, never on an async worker thread, and at most
//!   one verification per core runs at a time (a semaphore), so a flood of wrong
//!   passwords costs queueing, not `512 × 19 MiB` of memory;
//! - a verification that succeeded is cached for [`CACHE_TTL`], keyed by the SHA-256 of
//!   the raw header value: a repeat of the right header is a hash-map lookup, and a
//!   wrong password can never be answered from the cache (its header hashes elsewhere).
//!   Failures are not cached. The cache holds at most [`CACHE_MAX`] entries; when full,
//!   expired entries go first, then everything (the next requests simply verify again);
//! - identical headers arriving together (a browser opening six connections at once)
//!   share one verification.
//!
//! An unknown user is refused without running argon2, so a client can tell an unknown
//! name from a wrong password by the answer's delay. User names of the organisation
//! are not secrets (they are in e-mail addresses), and not hashing saves the CPU an
//! attacker would otherwise make us burn.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use argon2::password_hash::PasswordVerifier as _;
use argon2::{Argon2, PasswordHash, PasswordHasher as _};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::{OnceCell, Semaphore};

/// How long a successful verification is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(5 * 60);

/// Most remembered verifications.
pub const CACHE_MAX: usize = 10_000;

/// Longest `Proxy-Authorization` value considered; longer ones are malformed.
const MAX_HEADER_LEN: usize = 4096;

/// Errors of the users file and of user management.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("invalid user name {name:?}: {reason}")]
    BadUser { name: String, reason: &'static str },
    #[error("the password is empty")]
    EmptyPassword,
    #[error("password hashing failed: {0}")]
    Hash(#[source] argon2::password_hash::Error),
}

impl AuthError {
    /// Stable short code of the error kind.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Io { .. } => "users_io",
            AuthError::Parse { .. } => "users_parse",
            AuthError::BadUser { .. } => "bad_user",
            AuthError::EmptyPassword => "empty_password",
            AuthError::Hash(_) => "hash",
        }
    }
}

/// Checks a user name: non-empty, no `:` (it ends the name in Basic credentials), no
/// white space (it ends it in the file), no control character.
pub fn validate_user(name: &str) -> Result<(), AuthError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.contains(':') {
        "it contains ':'"
    } else if name.chars().any(char::is_whitespace) {
        "it contains white space"
    } else if name.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(AuthError::BadUser {
        name: name.into(),
        reason,
    })
}

/// One line of the users file, kept so that rewriting preserves comments and order.
#[derive(Clone)]
enum Line {
    /// A comment or a blank line, verbatim.
    Other(String),
    User {
        name: String,
        /// The PHC string as written (rewritten verbatim).
        phc: String,
        /// The same, parsed once at load so a verification does not parse it again.
        hash: Arc<PasswordHash>,
    },
}

/// The users file: its path and its lines in order.
#[derive(Clone)]
pub struct UsersFile {
    path: PathBuf,
    lines: Vec<Line>,
}

impl fmt::Debug for UsersFile {
    /// Names only: hashes stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsersFile")
            .field("path", &self.path)
            .field("users", &self.users().collect::<Vec<_>>())
            .finish()
    }
}

/// Parses a PHC string and checks it is an Argon2 hash with valid parameters, so that
/// a damaged line is reported at load rather than failing every login.
fn parse_phc(phc: &str) -> Result<PasswordHash, String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("invalid PHC string: {e}"))?;
    argon2::Algorithm::try_from(hash.algorithm.as_str())
        .map_err(|_| format!("{} is not an Argon2 hash", hash.algorithm.as_str()))?;
    argon2::Params::try_from(&hash).map_err(|e| format!("invalid Argon2 parameters: {e}"))?;
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err("the PHC string lacks its salt or its hash".into());
    }
    Ok(hash)
}

impl UsersFile {
    /// An empty users file that [`UsersFile::save`] would write at `path`.
    pub fn empty(path: &Path) -> UsersFile {
        UsersFile {
            path: path.to_owned(),
            lines: Vec::new(),
        }
    }

    /// Reads and checks the users file; a missing file is an empty one.
    pub fn load(path: &Path) -> Result<UsersFile, AuthError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(UsersFile::empty(path)),
            Err(source) => {
                return Err(AuthError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        UsersFile::parse(path, &text)
    }

    /// Parses the text of a users file read from `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<UsersFile, AuthError> {
        let err = |line: usize, message: String| AuthError::Parse {
            path: path.to_owned(),
            line,
            message,
        };
        let mut lines = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                lines.push(Line::Other(raw.trim_end().to_owned()));
                continue;
            }
            let Some((name, phc)) = line.split_once(':') else {
                return Err(err(n, "expected `user:$argon2id$…`".into()));
            };
            validate_user(name).map_err(|e| err(n, e.to_string()))?;
            if let Some(first) = seen.insert(name, n) {
                return Err(err(
                    n,
                    format!("user {name:?} is already defined on line {first}"),
                ));
            }
            let hash = parse_phc(phc).map_err(|m| err(n, format!("user {name:?}: {m}")))?;
            lines.push(Line::User {
                name: name.to_owned(),
                phc: phc.to_owned(),
                hash: Arc::new(hash),
            });
        }
        Ok(UsersFile {
            path: path.to_owned(),
            lines,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds `user` with a fresh salted hash of `password`, or replaces their hash in place.
    /// Costs one Argon2 hash (tens of milliseconds): call it off the async threads.
    pub fn add(&mut self, user: &str, password: &str) -> Result<(), AuthError> {
        validate_user(user)?;
        if password.is_empty() {
            return Err(AuthError::EmptyPassword);
        }
        let hash = Argon2::default()
            .hash_password(password.as_bytes())
            .map_err(AuthError::Hash)?;
        let new = Line::User {
            name: user.to_owned(),
            phc: hash.to_string(),
            hash: Arc::new(hash),
        };
        match self
            .lines
            .iter_mut()
            .find(|l| matches!(l, Line::User { name, .. } if name == user))
        {
            Some(line) => *line = new,
            None => self.lines.push(new),
        }
        Ok(())
    }

    /// Removes `user`; `false` if there was no such user.
    pub fn remove(&mut self, user: &str) -> bool {
        let before = self.lines.len();
        self.lines
            .retain(|l| !matches!(l, Line::User { name, .. } if name == user));
        self.lines.len() != before
    }

    /// User names, in file order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|l| match l {
            Line::User { name, .. } => Some(name.as_str()),
            Line::Other(_) => None,
        })
    }

    /// Whether `password` is `user`'s. Costs one Argon2 verification (tens of
    /// milliseconds) whether the user exists or not, so that the time taken does not tell
    /// which names exist: call it off the async threads.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let found = self.lines.iter().find_map(|l| match l {
            Line::User { name, hash, .. } if name == user => Some(hash.clone()),
            _ => None,
        });
        match found {
            Some(hash) => Argon2::default()
                .verify_password(password.as_bytes(), &*hash)
                .is_ok(),
            None => {
                let phc = DUMMY.get_or_init(|| {
                    Argon2::default()
                        .hash_password(b"charte-proxy: no such user")
                        .map(|h| h.to_string())
                        .unwrap_or_default()
                });
                if let Ok(h) = PasswordHash::new(phc) {
                    let _ = Argon2::default().verify_password(password.as_bytes(), &h);
                }
                false
            }
        }
    }

    pub fn contains(&self, user: &str) -> bool {
        self.users().any(|u| u == user)
    }

    /// Writes the file atomically: a temporary file (mode 0600) in the same folder, flushed
    /// to disk, then renamed over the old one. Creates the folder if needed.
    pub fn save(&self) -> Result<(), AuthError> {
        let io_err = |source| AuthError::Io {
            path: self.path.clone(),
            source,
        };
        let mut text = String::new();
        for l in &self.lines {
            match l {
                Line::Other(s) => text.push_str(s),
                Line::User { name, phc, .. } => {
                    text.push_str(name);
                    text.push(':');
                    text.push_str(phc);
                }
            }
            text.push('\n');
        }
        crate::atomic_file::write(&self.path, text.as_bytes(), 0o600).map_err(io_err)
    }
}

/// Parses a `Proxy-Authorization` value `Basic base64(user:password)`; the scheme is
/// case-insensitive, padding optional. The credentials are UTF-8 (RFC 7617); bytes
/// that are not UTF-8 are read as ISO-8859-1, which older clients send, so `é` matches
/// either way. `None` if malformed: another scheme, bad base64, no `:`.
pub fn parse_basic(value: &[u8]) -> Option<(String, String)> {
    if value.len() > MAX_HEADER_LEN {
        return None;
    }
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at_checked(5)?;
    // `Basic`, then a space or a tab (RFC 9110 §11.4 asks for spaces; a tab is taken, as
    // `negotiate::scheme_of` takes it): the same reading of the scheme everywhere.
    if !scheme.eq_ignore_ascii_case(b"basic") || !matches!(rest.first()?, b' ' | b'\t') {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
        .decode(rest.trim_ascii())
        .ok()?;
    let text = match String::from_utf8(decoded) {
        Ok(s) => s,
        Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
    };
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// What the proxy knows about a request's credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Right user and password.
    Authenticated(Arc<str>),
    /// Credentials given but wrong: malformed, unknown user or wrong password.
    Invalid,
    /// No `Proxy-Authorization` header.
    Missing,
}

/// SHA-256 of a raw header value: the cache key.
type Key = [u8; 32];

/// A verification shared by the requests that carry the same header at the same time;
/// holds the user on success.
type Flight = Arc<OnceCell<Option<Arc<str>>>>;

struct CacheEntry {
    user: Arc<str>,
    expires: Instant,
}

/// Cache and in-flight verifications, under one lock held only for map operations.
#[derive(Default)]
struct Verifications {
    /// Bumped by [`Authenticator::replace`]; a verification begun under an older
    /// generation does not fill the cache.
    generation: u64,
    cache: HashMap<Key, CacheEntry>,
    flights: HashMap<Key, Flight>,
}

/// The user table, from a [`UsersFile`].
type Users = HashMap<Arc<str>, Arc<PasswordHash>>;

/// Checks `Proxy-Authorization` headers; one for all connections.
pub struct Authenticator {
    users: ArcSwap<Users>,
    state: Mutex<Verifications>,
    /// At most one argon2 run per core at a time.
    hashing: Arc<Semaphore>,
    /// Argon2 runs so far (for tests of the cache).
    verifications: Arc<AtomicU64>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("users", &self.users.load().len())
            .finish_non_exhaustive()
    }
}

fn table(users: &UsersFile) -> Users {
    users
        .lines
        .iter()
        .filter_map(|l| match l {
            Line::User { name, hash, .. } => Some((Arc::from(name.as_str()), hash.clone())),
            Line::Other(_) => None,
        })
        .collect()
}

impl Authenticator {
    pub fn new(users: UsersFile) -> Authenticator {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Authenticator {
            users: ArcSwap::from_pointee(table(&users)),
            state: Mutex::new(Verifications::default()),
            hashing: Arc::new(Semaphore::new(cores)),
            verifications: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Swaps in a reloaded users file and forgets every cached verification.
    pub fn replace(&self, users: UsersFile) {
        let mut st = self.lock();
        self.users.store(Arc::new(table(&users)));
        st.generation += 1;
        st.cache.clear();
        st.flights.clear();
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Argon2 verifications run so far (cache misses that reached a known user).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Verifications> {
        // The state stays consistent whatever panicked while holding the lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks the raw `Proxy-Authorization` value, if any.
    pub async fn check(&self, header: Option<&[u8]>) -> AuthOutcome {
        let Some(header) = header else {
            return AuthOutcome::Missing;
        };
        let key: Key = Sha256::digest(header).into();
        let (flight, generation) = {
            let mut st = self.lock();
            if let Some(e) = st.cache.get(&key) {
                if e.expires > Instant::now() {
                    return AuthOutcome::Authenticated(e.user.clone());
                }
                st.cache.remove(&key);
            }
            let generation = st.generation;
            (st.flights.entry(key).or_default().clone(), generation)
        };
        let user = flight
            .get_or_init(|| self.verify(header, key, generation))
            .await
            .clone();
        {
            let mut st = self.lock();
            if st
                .flights
                .get(&key)
                .is_some_and(|f| Arc::ptr_eq(f, &flight))
            {
                st.flights.remove(&key);
            }
        }
        match user {
            Some(u) => AuthOutcome::Authenticated(u),
            None => AuthOutcome::Invalid,
        }
    }

    /// Parses and verifies `header`; on success caches it under `key` (unless a
    /// `replace` happened since `generation`) and returns the user.
    async fn verify(&self, header: &[u8], key: Key, generation: u64) -> Option<Arc<str>> {
        let (user, password) = parse_basic(header)?;
        let (user, hash) = {
            let users = self.users.load();
            let (u, h) = users.get_key_value(user.as_str())?;
            (u.clone(), h.clone())
        };
        // The permit moves into the blocking task: it is held while argon2 runs, even
        // if this request is dropped meanwhile.
        let permit = self.hashing.clone().acquire_owned().await.ok()?;
        let counter = self.verifications.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            counter.fetch_add(1, Ordering::Relaxed);
            Argon2::default()
                .verify_password(password.as_bytes(), &*hash)
                .is_ok()
        })
        .await
        .unwrap_or(false);
        if !ok {
            return None;
        }
        let mut st = self.lock();
        // Checked against users replaced meanwhile: the answer stands for this request
        // (it is what it would have been a moment earlier) but is not remembered.
        if st.generation == generation {
            if st.cache.len() >= CACHE_MAX {
                let now = Instant::now();
                st.cache.retain(|_, e| e.expires > now);
                if st.cache.len() >= CACHE_MAX {
                    st.cache.clear();
                }
            }
            st.cache.insert(
                key,
                CacheEntry {
                    user: user.clone(),
                    expires: Instant::now() + CACHE_TTL,
                },
            );
        }
        Some(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {b64}").into_bytes()
    }

    fn pair(u: &str, p: &str) -> Option<(String, String)> {
        Some((u.into(), p.into()))
    }

    #[test]
    fn parse_basic_cases() {
        // "Aladdin:open sesame", RFC 7617's example.
        let v = b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==";
        assert_eq!(parse_basic(v), pair("Aladdin", "open sesame"));
        assert_eq!(
            parse_basic(b"bAsIc   QWxhZGRpbjpvcGVuIHNlc2FtZQ==  "),
            pair("Aladdin", "open sesame"),
            "scheme case-insensitive, extra spaces"
        );
        assert_eq!(
            parse_basic(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ"),
            pair("Aladdin", "open sesame"),
            "padding optional"
        );
        assert_eq!(parse_basic(&header("u", "a:b:c")), pair("u", "a:b:c"));
        assert_eq!(parse_basic(&header("u", "")), pair("u", ""));
        assert_eq!(
            parse_basic(&header("u", "mot de passe é")),
            pair("u", "mot de passe é")
        );
        // ISO-8859-1 from an old client: 'é' is 0xE9.
        let latin1 = base64::engine::general_purpose::STANDARD.encode(b"u:caf\xe9");
        assert_eq!(
            parse_basic(format!("Basic {latin1}").as_bytes()),
            pair("u", "café")
        );
        for bad in [
            &b"Basic !!!notbase64"[..],
            b"Basic dXNlcg==", // "user", no colon
            b"Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
            b"BasicQWxhZGRpbjpvcGVuIHNlc2FtZQ==",
            b"Basic",
            b"Basic ",
            b"",
        ] {
            assert_eq!(parse_basic(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        let huge = header("u", &"x".repeat(MAX_HEADER_LEN));
        assert_eq!(parse_basic(&huge), None);
    }

    #[test]
    fn user_names() {
        for ok in ["c.martin", "é.dupont", "u@mairie.fr"] {
            assert!(validate_user(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a:b", "a b", "a\tb", "a\u{7f}"] {
            assert!(
                matches!(validate_user(bad), Err(AuthError::BadUser { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn add_save_load_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/users");
        let mut f = UsersFile::load(&path).unwrap();
        assert_eq!(f.users().count(), 0, "a missing file is empty");
        f.add("alice", "s3cret").unwrap();
        f.add("bob", "hunter2").unwrap();
        f.save().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("alice:$argon2id$v=19$m=19456,t=2,p=1$"),
            "{text}"
        );
        assert!(!text.contains("s3cret"));
        // Comments survive a rewrite; replacing a password keeps the user's place.
        std::fs::write(&path, format!("# agents\n\n{text}")).unwrap();
        let mut g = UsersFile::load(&path).unwrap();
        assert_eq!(g.users().collect::<Vec<_>>(), ["alice", "bob"]);
        g.add("alice", "new").unwrap();
        assert!(g.remove("bob"));
        assert!(!g.remove("bob"));
        g.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# agents\n\nalice:$argon2id$"), "{text}");
        assert_eq!(text.lines().count(), 3);
        // No temporary file left behind.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
        assert!(matches!(g.add("x", ""), Err(AuthError::EmptyPassword)));
        assert!(matches!(g.add("a b", "p"), Err(AuthError::BadUser { .. })));
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        let p = Path::new("data/users");
        let good = "$argon2id$v=19$m=19456,t=2,p=1$GN9xo0AiAFRnK0gzBtua3A$owjmkXSN9uHrHbKJIQB7xkqM6lMtqkRheDb/jvJGnK8";
        let cases = [
            ("# c\nalice\n", 2, "expected `user:$argon2id$…`"),
            ("a b:x\n", 1, "invalid user name"),
            ("alice:nothash\n", 1, "invalid PHC string"),
            (
                "alice:$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n",
                1,
                "not an Argon2 hash",
            ),
        ];
        for (text, line, needle) in cases {
            let e = UsersFile::parse(p, text).unwrap_err();
            let msg = e.to_string();
            assert!(
                matches!(e, AuthError::Parse { line: l, .. } if l == line),
                "{text:?}: {msg}"
            );
            assert!(msg.starts_with(&format!("data/users:{line}: ")), "{msg}");
            assert!(msg.contains(needle), "{text:?}: {msg}");
        }
        let dup = format!("alice:{good}\n\nalice:{good}\n");
        let msg = UsersFile::parse(p, &dup).unwrap_err().to_string();
        assert_eq!(
            msg,
            "data/users:3: user \"alice\" is already defined on line 1"
        );
        let ok = UsersFile::parse(p, &format!("  alice:{good}  \r\n")).unwrap();
        assert_eq!(ok.users().collect::<Vec<_>>(), ["alice"]);
    }

    fn users(pairs: &[(&str, &str)]) -> UsersFile {
        let mut f = UsersFile::empty(Path::new("unused"));
        for (u, p) in pairs {
            f.add(u, p).unwrap();
        }
        f
    }

    #[tokio::test]
    async fn verifies_and_caches_only_successes() {
        let auth = Authenticator::new(users(&[("alice", "s3cret")]));
        assert_eq!(auth.check(None).await, AuthOutcome::Missing);
        assert_eq!(auth.check(Some(b"Basic !!")).await, AuthOutcome::Invalid);
        assert_eq!(
            auth.check(Some(&header("nobody", "s3cret"))).await,
            AuthOutcome::Invalid
        );
        assert_eq!(auth.verifications(), 0, "unknown users cost no hash");

        let right = header("alice", "s3cret");
        let wrong = header("alice", "S3cret");
        assert_eq!(
            auth.check(Some(&right)).await,
            AuthOutcome::Authenticated("alice".into())
        );
        assert_eq!(auth.verifications(), 1);
        // A repeat is a cache hit: no argon2.
        for _ in 0..3 {
            assert_eq!(
                auth.check(Some(&right)).await,
                AuthOutcome::Authenticated("alice".into())
            );
        }
        assert_eq!(auth.verifications(), 1);
        // Wrong passwords are verified each time, never cached.
        assert_eq!(auth.check(Some(&wrong)).await, AuthOutcome::Invalid);
        assert_eq!(auth.check(Some(&wrong)).await, AuthOutcome::Invalid);
        assert_eq!(auth.verifications(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn identical_concurrent_headers_share_one_verification() {
        let auth = Arc::new(Authenticator::new(users(&[("alice", "s3cret")])));
        let right = Arc::new(header("alice", "s3cret"));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (auth, right) = (auth.clone(), right.clone());
                tokio::spawn(async move { auth.check(Some(&right)).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), AuthOutcome::Authenticated("alice".into()));
        }
        assert_eq!(auth.verifications(), 1);
    }

    #[tokio::test]
    async fn replace_invalidates_the_cache() {
        let auth = Authenticator::new(users(&[("alice", "s3cret"), ("bob", "b")]));
        let alice = header("alice", "s3cret");
        let bob = header("bob", "b");
        assert!(matches!(
            auth.check(Some(&alice)).await,
            AuthOutcome::Authenticated(_)
        ));
        assert!(matches!(
            auth.check(Some(&bob)).await,
            AuthOutcome::Authenticated(_)
        ));
        assert_eq!(auth.verifications(), 2);
        // Alice changes her password and Bob leaves.
        auth.replace(users(&[("alice", "n3w")]));
        assert_eq!(auth.check(Some(&alice)).await, AuthOutcome::Invalid);
        assert_eq!(auth.check(Some(&bob)).await, AuthOutcome::Invalid);
        assert_eq!(auth.verifications(), 3, "the old header was verified again");
        assert_eq!(
            auth.check(Some(&header("alice", "n3w"))).await,
            AuthOutcome::Authenticated("alice".into())
        );
    }
}
