//! The organisation's directory (Active Directory or OpenLDAP), over LDAP: a user's
//! groups for the policy, and the password check of `Proxy-Authorization: Basic` when
//! the users are the directory's.
//!
//! One [`Directory`] per process. It keeps one connection bound as the service account
//! for searches, and opens a separate, short-lived connection for each password check,
//! which binds **as the user** (the directory checks the password; the proxy never sees
//! a hash). Every operation has the `timeout` of the settings; a directory that is down
//! answers at once with the last connection error for [`RETRY_AFTER`] before the next
//! attempt, so a burst of requests does not queue behind connection attempts. A lookup
//! whose connection was lost under it (a restarted directory, an idle connection the
//! server closed) is tried once more on a new connection.
//!
//! Connections are TLS (`ldaps://`, or `ldap://` with StartTLS) with rustls, verified
//! against the configured CA file or the system's roots; cleartext `ldap://` is refused
//! unless `allow_cleartext` (a lab) says otherwise, since a simple bind sends the
//! password as it is.
//!
//! Groups ([`Directory::groups`]) are cached per user for `group_ttl`. A request never
//! waits on the directory when an answer is known, even an expired one: it gets the
//! known answer and one refresh per user starts in the background (stale while
//! revalidate). A user seen for the first time waits at most `first_wait`; the lookup
//! goes on in the background after that, so the next request finds its answer. Groups
//! come back as normalised DNs ([`normalize_dn`]), the form the policy's group DNs are
//! compiled to. Nested groups are found by one `LDAP_MATCHING_RULE_IN_CHAIN` search on
//! Active Directory ([`Nesting::InChain`]), or by walking `member` links breadth-first on
//! other directories ([`Nesting::Walk`]).
//!
//! Password checks ([`Directory::check_password`]) that succeeded are cached for
//! `bind_cache_ttl`, keyed by the SHA-256 of `user \0 password` (so a wrong password
//! never matches a cached entry, and no password is kept); identical checks arriving
//! together share one bind, as in [`super::auth`]. Failures are not cached.
//!
//! Health ([`Directory::health`]) and counters ([`Directory::stats`]) are plain values
//! for the layers above to export.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::asn1::PL;
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, LdapError, ResultEntry, Scope, SearchOptions,
    ldap_escape,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::{Notify, OnceCell, Semaphore};

use super::DirectoryNames;

/// The default user filter: Active Directory's logon name or OpenLDAP's `uid`.
pub const DEFAULT_USER_FILTER: &str = "(|(sAMAccountName={user})(uid={user}))";

/// Active Directory's `LDAP_MATCHING_RULE_IN_CHAIN`: `member:<this>:=<dn>` matches the
/// groups that hold `dn` directly or through nested groups.
pub const MATCHING_RULE_IN_CHAIN: &str = "1.2.840.113556.1.4.1941";

/// `LDAP_CAP_ACTIVE_DIRECTORY_OID`, in the root DSE's `supportedCapabilities` of an
/// Active Directory domain controller.
const AD_CAPABILITY: &str = "1.2.840.113556.1.4.800";

/// How long a failed connection (or a failed lookup of a user) is answered from its
/// error before the directory is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Most users whose groups are remembered.
pub const GROUP_CACHE_MAX: usize = 65_536;

/// Most remembered password checks.
pub const BIND_CACHE_MAX: usize = 10_000;

/// Most user binds (each its own connection) at once.
pub const MAX_CONCURRENT_BINDS: usize = 16;

/// Default depth bound of [`Nesting::Walk`].
pub const DEFAULT_WALK_DEPTH: u32 = 10;

/// Entries per page of a group search (Active Directory answers at most 1000 a page).
const PAGE_SIZE: i32 = 500;

/// DNs per `(|(member=…)…)` filter of a walk step.
const WALK_BATCH: usize = 32;

/// Longest TTL honoured (a longer one is this).
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Longest user name looked up; longer ones are nobody.
const MAX_USER_LEN: usize = 256;

// The settings are plain data, resolved by `config` into `crate::settings` (which the
// request path reads); their defaults and checks are here.
pub use crate::settings::{DirectorySettings, Nesting};

impl fmt::Debug for DirectorySettings {
    /// Everything but the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectorySettings")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("allow_cleartext", &self.allow_cleartext)
            .field("ca_file", &self.ca_file)
            .field("base_dn", &self.base_dn)
            .field("bind_dn", &self.bind_dn)
            .field("user_filter", &self.user_filter)
            .field("strip_realm", &self.strip_realm)
            .field("kind", &self.kind)
            .field("group_ttl", &self.group_ttl)
            .field("first_wait", &self.first_wait)
            .field("timeout", &self.timeout)
            .field("bind_cache_ttl", &self.bind_cache_ttl)
            .finish_non_exhaustive()
    }
}

impl DirectorySettings {
    /// Settings with the defaults: no StartTLS, system roots, [`DEFAULT_USER_FILTER`],
    /// realm stripped, Active Directory nesting, groups fresh 5 min, first wait 2 s,
    /// 5 s per operation, password checks remembered 60 s.
    pub fn new(
        url: impl Into<String>,
        base_dn: impl Into<String>,
        bind_dn: impl Into<String>,
        bind_password: impl Into<String>,
    ) -> DirectorySettings {
        DirectorySettings {
            url: url.into(),
            starttls: false,
            allow_cleartext: false,
            ca_file: None,
            base_dn: base_dn.into(),
            bind_dn: bind_dn.into(),
            bind_password: bind_password.into(),
            user_filter: DEFAULT_USER_FILTER.into(),
            strip_realm: true,
            kind: Nesting::InChain,
            group_ttl: Duration::from_secs(5 * 60),
            first_wait: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            bind_cache_ttl: Duration::from_secs(60),
        }
    }
}

/// Errors of the directory: its settings, and its answers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error(
        "{url}: ldap:// without StartTLS sends passwords in clear; use ldaps://, \
         StartTLS, or allow cleartext explicitly (a lab only)"
    )]
    Cleartext { url: String },
    #[error("directory URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("directory setting {what}: {reason}")]
    Setting { what: &'static str, reason: String },
    #[error("CA file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    SecretFile { path: PathBuf, reason: String },
    #[error(
        "{}: mode {mode:04o} lets other users read the secret; make it 0600",
        path.display()
    )]
    SecretMode { path: PathBuf, mode: u32 },
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("the service account {dn} cannot bind: {message}")]
    ServiceBind { dn: String, message: String },
    #[error("LDAP {op} took more than {after:?}")]
    Timeout { op: &'static str, after: Duration },
    #[error("LDAP {op} failed: {message}")]
    Operation { op: &'static str, message: String },
    #[error("LDAP {op}: the connection to {url} was lost: {message}")]
    Lost {
        url: String,
        op: &'static str,
        message: String,
    },
    #[error("several directory entries match the user filter for {user:?}")]
    Ambiguous { user: String },
    #[error("no answer from the directory within {waited:?} (the lookup goes on)")]
    FirstWait { waited: Duration },
}

impl DirectoryError {
    /// Stable short code of the error kind.
    pub fn code(&self) -> &'static str {
        match self {
            DirectoryError::Cleartext { .. } => "ldap_cleartext",
            DirectoryError::Url { .. } => "ldap_url",
            DirectoryError::Setting { .. } => "ldap_setting",
            DirectoryError::CaFile { .. } => "ldap_ca_file",
            DirectoryError::SecretFile { .. } => "ldap_secret_file",
            DirectoryError::SecretMode { .. } => "ldap_secret_mode",
            DirectoryError::Connect { .. } => "ldap_connect",
            DirectoryError::ServiceBind { .. } => "ldap_service_bind",
            DirectoryError::Timeout { .. } => "ldap_timeout",
            DirectoryError::Operation { .. } => "ldap_operation",
            DirectoryError::Lost { .. } => "ldap_connection_lost",
            DirectoryError::Ambiguous { .. } => "ldap_ambiguous",
            DirectoryError::FirstWait { .. } => "ldap_first_wait",
        }
    }

    /// Whether the error says the directory cannot be used (as opposed to an answer
    /// about one user).
    fn is_outage(&self) -> bool {
        !matches!(
            self,
            DirectoryError::Ambiguous { .. } | DirectoryError::FirstWait { .. }
        )
    }
}

/// Reads a secret (the service account's password) from a file that only its owner may
/// read: a file with any group or other permission is refused, naming its mode. One
/// trailing line end is removed; an empty secret is refused.
pub fn read_secret_file(path: &Path) -> Result<String, DirectoryError> {
    use std::os::unix::fs::PermissionsExt as _;
    let err = |reason: String| DirectoryError::SecretFile {
        path: path.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(DirectoryError::SecretMode {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let secret = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if secret.is_empty() {
        return Err(err("the secret is empty".into()));
    }
    Ok(secret.to_owned())
}

/// A user's groups, as far as the directory tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Groups {
    /// Normalised group DNs ([`normalize_dn`]), sorted; empty for a user the directory
    /// does not know.
    Known(Arc<[Box<str>]>),
    /// No answer known and none came in time.
    Unavailable(DirectoryError),
}

/// Whether the directory answers, for health checks and the status page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryHealth {
    /// The last exchange with the directory succeeded. `false` before the first one.
    pub up: bool,
    /// The last error, kept after the directory came back (for the status page).
    pub last_error: Option<String>,
    /// When `up` last changed (the creation of the [`Directory`] before any change).
    pub last_change: SystemTime,
}

/// Counters since start, for the metrics layer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DirectoryStats {
    /// Group lookups and password checks sent to the directory.
    pub lookups: u64,
    /// Answers taken from a cache (groups, fresh or not, and password checks).
    pub cache_hits: u64,
    /// Of those, group answers past their TTL (served while a refresh runs).
    pub stale_hits: u64,
    /// Lookups that ended in an error.
    pub failures: u64,
    /// Requests that waited `first_wait` for a first group lookup and went on without.
    pub first_waits_expired: u64,
    /// Total duration of the lookups, in seconds, and their number.
    pub latency_sum_seconds: f64,
    pub latency_count: u64,
}

/// Normalises a DN for comparison: attribute types and values lowercased, spaces
/// around `,`, `+` and `=` removed, escapes decoded and written back in one way (RFC
/// 4514: `\` before `"+,;<>\`, a leading `#` or space and a trailing space; `\00` for
/// NUL), the values of a multi-valued RDN in order. `None` if the text is not a DN:
/// each RDN `type=value[+type=value…]`, the type a name (`cn`, `ou`, `sAMAccountName`)
/// or an OID (`2.5.4.3`), the value non-empty, UTF-8 once unescaped, with `"`, `;`, `<`,
/// `>` escaped, or `#` and hex digits (a BER value, kept as it is).
pub fn normalize_dn(s: &str) -> Option<Box<str>> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut rdns: Vec<String> = Vec::new();
    loop {
        let mut avas: Vec<String> = Vec::new();
        loop {
            skip_spaces(b, &mut i);
            let attr = attribute_type(b, &mut i)?;
            skip_spaces(b, &mut i);
            if b.get(i) != Some(&b'=') {
                return None;
            }
            i += 1;
            skip_spaces(b, &mut i);
            let value = attribute_value(b, &mut i)?;
            avas.push(format!("{attr}={value}"));
            match b.get(i) {
                Some(b'+') => i += 1,
                _ => break,
            }
        }
        avas.sort_unstable();
        rdns.push(avas.join("+"));
        match b.get(i) {
            None => break,
            Some(b',') => i += 1,
            Some(_) => return None,
        }
    }
    Some(rdns.join(",").into_boxed_str())
}

fn skip_spaces(b: &[u8], i: &mut usize) {
    while b.get(*i) == Some(&b' ') {
        *i += 1;
    }
}

/// `keystring` (a letter, then letters, digits, `-`) or `numericoid`, lowercased.
fn attribute_type(b: &[u8], i: &mut usize) -> Option<String> {
    let start = *i;
    match b.get(*i) {
        Some(c) if c.is_ascii_alphabetic() => {
            while b
                .get(*i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'-')
            {
                *i += 1;
            }
        }
        Some(c) if c.is_ascii_digit() => loop {
            let digits = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            if *i == digits {
                return None;
            }
            if b.get(*i) == Some(&b'.') {
                *i += 1;
            } else {
                break;
            }
        },
        _ => return None,
    }
    Some(String::from_utf8_lossy(&b[start..*i]).to_ascii_lowercase())
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// An attribute value up to an unescaped `,` or `+` or the end, trailing unescaped
/// spaces left out; in its canonical, lowercased form.
fn attribute_value(b: &[u8], i: &mut usize) -> Option<String> {
    if b.get(*i) == Some(&b'#') {
        *i += 1;
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_hexdigit) {
            *i += 1;
        }
        let digits = *i - start;
        skip_spaces(b, i);
        if digits == 0 || digits % 2 != 0 || !matches!(b.get(*i), None | Some(b',' | b'+')) {
            return None;
        }
        let h = String::from_utf8_lossy(&b[start..start + digits]).to_ascii_lowercase();
        return Some(format!("#{h}"));
    }
    let mut raw: Vec<u8> = Vec::new();
    // Length of `raw` without its trailing unescaped spaces.
    let mut kept = 0;
    while let Some(&c) = b.get(*i) {
        match c {
            b',' | b'+' => break,
            b'\\' => {
                let (x, y) = (b.get(*i + 1).copied(), b.get(*i + 2).copied());
                match (x, y) {
                    (Some(x), Some(y)) if hex(x).is_some() && hex(y).is_some() => {
                        raw.push(hex(x)? << 4 | hex(y)?);
                        *i += 3;
                    }
                    (Some(x), _) if b" \"#+,;<=>\\".contains(&x) => {
                        raw.push(x);
                        *i += 2;
                    }
                    _ => return None,
                }
                kept = raw.len();
            }
            b'"' | b';' | b'<' | b'>' | 0 => return None,
            b' ' => {
                raw.push(c);
                *i += 1;
            }
            _ => {
                raw.push(c);
                *i += 1;
                kept = raw.len();
            }
        }
    }
    raw.truncate(kept);
    if raw.is_empty() {
        return None;
    }
    let value = String::from_utf8(raw).ok()?.to_lowercase();
    let n = value.chars().count();
    let mut out = String::with_capacity(value.len() + 4);
    for (k, ch) in value.chars().enumerate() {
        match ch {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            '\0' => out.push_str("\\00"),
            '#' if k == 0 => out.push_str("\\#"),
            ' ' if k == 0 || k == n - 1 => out.push_str("\\ "),
            _ => out.push(ch),
        }
    }
    Some(out)
}

/// A DN as the directory returned it, normalised; lowercased as it is if it does not
/// parse (the directory's word is taken, it just compares less well).
fn normalized_or_lower(dn: &str) -> Box<str> {
    normalize_dn(dn).unwrap_or_else(|| dn.trim().to_lowercase().into_boxed_str())
}

/// The filter that finds the groups holding any of `dns` directly.
fn member_filter(dns: &[String]) -> String {
    let mut f = String::new();
    if dns.len() > 1 {
        f.push_str("(|");
    }
    for dn in dns {
        f.push_str("(member=");
        f.push_str(&ldap_escape(dn.as_str()));
        f.push(')');
    }
    if dns.len() > 1 {
        f.push(')');
    }
    f
}

/// The filter that finds the groups named `name`: Active Directory's `group` by its
/// `sAMAccountName` or `cn`, or another directory's group entries by `cn`.
fn group_name_filter(name: &str) -> String {
    let v = ldap_escape(name);
    format!(
        "(&(|(objectClass=group)(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)\
         (objectClass=posixGroup))(|(sAMAccountName={v})(cn={v})))"
    )
}

/// The filter that finds every group holding `dn`, nested or not (Active Directory).
fn in_chain_filter(dn: &str) -> String {
    format!(
        "(&(objectClass=group)(member:{MATCHING_RULE_IN_CHAIN}:={}))",
        ldap_escape(dn)
    )
}

/// The DN of a search result entry, without ldap3's `SearchEntry::construct` (which
/// panics on an entry it cannot parse).
fn entry_dn(e: ResultEntry) -> Option<String> {
    let parts = e.0.match_id(4)?.expect_constructed()?;
    match &parts.first()?.payload {
        PL::P(bytes) => String::from_utf8(bytes.clone()).ok(),
        PL::C(_) => None,
    }
}

/// SHA-256 of `user \0 password`: the password-check cache key.
type Key = [u8; 32];

/// A password check shared by identical requests arriving together.
type BindFlight = Arc<OnceCell<Result<Option<Box<str>>, DirectoryError>>>;

struct BindEntry {
    dn: Box<str>,
    expires: Instant,
}

#[derive(Default)]
struct Binds {
    cache: HashMap<Key, BindEntry>,
    flights: HashMap<Key, BindFlight>,
}

struct GroupEntry {
    /// Last known answer.
    groups: Option<Arc<[Box<str>]>>,
    /// Until when the answer is fresh, or, after a failure, before when the directory
    /// is not asked again.
    fresh_until: Instant,
    /// The last lookup's error, cleared by a success.
    failed: Option<DirectoryError>,
    /// The lookup in progress, if any; notified when it ends.
    pending: Option<Arc<Notify>>,
}

/// The service connection and its number (so that only the connection that failed is
/// dropped).
type ServiceConn = Option<(u64, Ldap)>;

#[derive(Default)]
struct Reconnect {
    next_id: u64,
    /// The last failed attempt: its error and until when it stands.
    down: Option<(Instant, DirectoryError)>,
}

struct HealthState {
    up: bool,
    last_error: Option<String>,
    last_change: SystemTime,
}

#[derive(Default)]
struct Counters {
    lookups: AtomicU64,
    cache_hits: AtomicU64,
    stale_hits: AtomicU64,
    failures: AtomicU64,
    first_waits_expired: AtomicU64,
    latency_micros: AtomicU64,
    latency_count: AtomicU64,
}

struct Inner {
    settings: DirectorySettings,
    /// `None` for a cleartext connection.
    tls: Option<Arc<rustls::ClientConfig>>,
    service: Mutex<ServiceConn>,
    /// Held while connecting, so that one caller connects and the others wait for it.
    reconnect: tokio::sync::Mutex<Reconnect>,
    groups: Mutex<HashMap<Box<str>, GroupEntry>>,
    binds: Mutex<Binds>,
    bind_slots: Semaphore,
    health: Mutex<HealthState>,
    counters: Counters,
    /// The policy's short group names and their DNs, as last resolved.
    names: arc_swap::ArcSwap<DirectoryNames>,
    /// Counts the calls of [`Directory::resolve_names`]: a resolver task whose number
    /// is no longer the last one stops.
    names_generation: AtomicU64,
    /// The number of the last call whose names were asked of the directory (answered
    /// or not: requests wait for the first attempt only).
    names_done: tokio::sync::watch::Sender<u64>,
    /// The last attempt to resolve the names got no answer from the directory.
    names_unanswered: std::sync::atomic::AtomicBool,
    /// Names the last resolution could not turn into one DN, with why.
    name_problems: Mutex<Vec<NameProblem>>,
}

/// A short group name that resolves to no group, or to several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameProblem {
    pub name: Box<str>,
    /// The DNs found: none, or more than one.
    pub found: Vec<Box<str>>,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.found.is_empty() {
            write!(f, "no directory group is named {:?}", self.name)
        } else {
            write!(
                f,
                "{} directory groups are named {:?} ({}); write the DN of the one meant",
                self.found.len(),
                self.name,
                self.found.join("; ")
            )
        }
    }
}

/// The directory; one per process, shared (`Send + Sync`).
pub struct Directory {
    inner: Arc<Inner>,
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directory")
            .field("url", &self.inner.settings.url)
            .finish_non_exhaustive()
    }
}

/// Locks a std mutex whose data stays consistent whatever panicked while it was held.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn setting(what: &'static str, reason: impl Into<String>) -> DirectoryError {
    DirectoryError::Setting {
        what,
        reason: reason.into(),
    }
}

/// Checks the settings that can be checked without the directory; says whether the
/// connections are TLS (`ldaps://` or StartTLS).
fn check_settings(s: &DirectorySettings) -> Result<bool, DirectoryError> {
    let bad_url = |reason: &str| DirectoryError::Url {
        url: s.url.clone(),
        reason: reason.into(),
    };
    let url = url::Url::parse(&s.url).map_err(|e| bad_url(&e.to_string()))?;
    match url.scheme() {
        "ldaps" if s.starttls => return Err(bad_url("StartTLS on an ldaps:// URL")),
        "ldaps" => {}
        "ldap" if !s.starttls && !s.allow_cleartext => {
            return Err(DirectoryError::Cleartext { url: s.url.clone() });
        }
        "ldap" => {}
        _ => return Err(bad_url("the scheme must be ldap:// or ldaps://")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad_url("no host"));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err(bad_url(
            "a base DN or a query goes in its own setting, not the URL",
        ));
    }
    if normalize_dn(&s.base_dn).is_none() {
        return Err(setting("base_dn", format!("{:?} is not a DN", s.base_dn)));
    }
    if normalize_dn(&s.bind_dn).is_none() {
        return Err(setting("bind_dn", format!("{:?} is not a DN", s.bind_dn)));
    }
    if s.bind_password.is_empty() {
        // An LDAP bind with an empty password is an anonymous bind.
        return Err(setting("bind_password", "empty"));
    }
    if !s.user_filter.contains("{user}") {
        return Err(setting("user_filter", "has no {user}"));
    }
    let sample = s.user_filter.replace("{user}", "x");
    if ldap3::parse_filter(&sample).is_err() {
        return Err(setting(
            "user_filter",
            format!("{:?} is not an LDAP filter", s.user_filter),
        ));
    }
    if s.timeout.is_zero() {
        return Err(setting("timeout", "zero"));
    }
    if let Nesting::Walk { max_depth: 0 } = s.kind {
        return Err(setting("nesting depth", "zero"));
    }
    Ok(s.starttls || url.scheme() == "ldaps")
}

/// The TLS client configuration: the CA file's certificates, else the system's roots.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, DirectoryError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |reason: String| DirectoryError::CaFile {
                path: path.to_owned(),
                reason,
            };
            let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            for c in CertificateDer::pem_slice_iter(&bytes) {
                let c = c.map_err(|e| bad(e.to_string()))?;
                roots.add(c).map_err(|e| bad(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad("no CERTIFICATE block".into()));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(setting(
                    "ca_file",
                    "none given and no system root certificate found",
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setting("tls", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Directory {
    /// Checks the settings and reads the CA file; does not connect (see
    /// [`Directory::probe`]).
    pub fn new(mut settings: DirectorySettings) -> Result<Directory, DirectoryError> {
        // Bounded so that `now + ttl` cannot overflow.
        settings.group_ttl = settings.group_ttl.min(MAX_TTL);
        settings.bind_cache_ttl = settings.bind_cache_ttl.min(MAX_TTL);
        let tls = if check_settings(&settings)? {
            Some(Arc::new(tls_config(settings.ca_file.as_deref())?))
        } else {
            None
        };
        Ok(Directory {
            inner: Arc::new(Inner {
                settings,
                tls,
                service: Mutex::new(None),
                reconnect: tokio::sync::Mutex::new(Reconnect::default()),
                groups: Mutex::new(HashMap::new()),
                binds: Mutex::new(Binds::default()),
                bind_slots: Semaphore::new(MAX_CONCURRENT_BINDS),
                health: Mutex::new(HealthState {
                    up: false,
                    last_error: None,
                    last_change: SystemTime::now(),
                }),
                counters: Counters::default(),
                names: arc_swap::ArcSwap::from_pointee(DirectoryNames::new()),
                names_generation: AtomicU64::new(0),
                names_done: tokio::sync::watch::Sender::new(0),
                names_unanswered: std::sync::atomic::AtomicBool::new(false),
                name_problems: Mutex::new(Vec::new()),
            }),
        })
    }

    pub fn settings(&self) -> &DirectorySettings {
        &self.inner.settings
    }

    /// Connects and binds the service account now (at start, to report a wrong setting
    /// at once rather than on the first request).
    pub async fn probe(&self) -> Result<(), DirectoryError> {
        let r = self.inner.service().await.map(|_| ());
        self.inner.record_health(&r);
        r
    }

    /// Checks `user`'s password by binding as the user: `Ok(Some(dn))` with the user's
    /// DN as the directory writes it if right, `Ok(None)` if wrong, if the user is
    /// unknown or the password empty (an empty-password bind is anonymous in LDAP and
    /// would "succeed"), `Err` if the directory could not say.
    pub async fn check_password(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Option<Box<str>>, DirectoryError> {
        let inner = &self.inner;
        if password.is_empty() {
            return Ok(None);
        }
        let Some(name) = inner.user_value(user) else {
            return Ok(None);
        };
        let key: Key = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        let flight = {
            let mut st = lock(&inner.binds);
            if let Some(e) = st.cache.get(&key) {
                if e.expires > Instant::now() {
                    inner.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(e.dn.clone()));
                }
                st.cache.remove(&key);
            }
            st.flights.entry(key).or_default().clone()
        };
        let result = flight
            .get_or_init(|| inner.verify_password(name, password, key))
            .await
            .clone();
        let mut st = lock(&inner.binds);
        if st
            .flights
            .get(&key)
            .is_some_and(|f| Arc::ptr_eq(f, &flight))
        {
            st.flights.remove(&key);
        }
        result
    }

    /// `user`'s groups, from the cache when known (fresh or not), else from a lookup
    /// waited for at most `first_wait`. See the module's documentation.
    pub async fn groups(&self, user: &str) -> Groups {
        let inner = &self.inner;
        let Some(name) = inner.user_value(user) else {
            return Groups::Known(Arc::from([]));
        };
        let key: Box<str> = name.to_lowercase().into();
        let notified = {
            let mut map = lock(&inner.groups);
            let now = Instant::now();
            let entry = map.get(&key);
            if let Some(e) = entry
                && let Some(g) = &e.groups
            {
                let g = g.clone();
                inner.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                if e.fresh_until <= now {
                    inner.counters.stale_hits.fetch_add(1, Ordering::Relaxed);
                    if e.pending.is_none() {
                        // If no refresh can start, the known answer stands.
                        let _ = start_lookup(inner, &mut map, &key, name);
                    }
                }
                return Groups::Known(g);
            }
            match entry {
                Some(GroupEntry {
                    pending: Some(p), ..
                }) => p.clone().notified_owned(),
                Some(GroupEntry {
                    failed: Some(e),
                    fresh_until,
                    ..
                }) if *fresh_until > now => return Groups::Unavailable(e.clone()),
                _ => match start_lookup(inner, &mut map, &key, name) {
                    Ok(notify) => notify.notified_owned(),
                    Err(e) => return Groups::Unavailable(e),
                },
            }
        };
        let waited = inner.settings.first_wait;
        let _ = tokio::time::timeout(waited, notified).await;
        let map = lock(&inner.groups);
        match map.get(&key) {
            Some(GroupEntry {
                groups: Some(g), ..
            }) => Groups::Known(g.clone()),
            Some(GroupEntry {
                pending: None,
                failed: Some(e),
                ..
            }) => Groups::Unavailable(e.clone()),
            _ => {
                inner
                    .counters
                    .first_waits_expired
                    .fetch_add(1, Ordering::Relaxed);
                Groups::Unavailable(DirectoryError::FirstWait { waited })
            }
        }
    }

    pub fn health(&self) -> DirectoryHealth {
        let h = lock(&self.inner.health);
        DirectoryHealth {
            up: h.up,
            last_error: h.last_error.clone(),
            last_change: h.last_change,
        }
    }

    pub fn stats(&self) -> DirectoryStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DirectoryStats {
            lookups: get(&c.lookups),
            cache_hits: get(&c.cache_hits),
            stale_hits: get(&c.stale_hits),
            failures: get(&c.failures),
            first_waits_expired: get(&c.first_waits_expired),
            latency_sum_seconds: get(&c.latency_micros) as f64 / 1e6,
            latency_count: get(&c.latency_count),
        }
    }

    /// The DNs of the short group names the policy in force uses (see
    /// [`Directory::resolve_names`]); a name not resolved (yet) is absent.
    pub fn names(&self) -> arc_swap::Guard<Arc<DirectoryNames>> {
        self.inner.names.load()
    }

    /// Whether the names of the policy in force have been asked of the directory;
    /// waits for it at most `first_wait` (the first requests after a start or a reload
    /// that added names).
    pub async fn names_ready(&self) -> bool {
        let inner = &self.inner;
        let want = inner.names_generation.load(Ordering::SeqCst);
        if *inner.names_done.borrow() >= want {
            return true;
        }
        let mut rx = inner.names_done.subscribe();
        let waited = inner.settings.first_wait;
        matches!(
            tokio::time::timeout(waited, rx.wait_for(|done| *done >= want)).await,
            Ok(Ok(_))
        )
    }

    /// Whether the last attempt to resolve the policy's names got no answer (the
    /// names resolved before, if any, still stand).
    pub fn names_unanswered(&self) -> bool {
        self.inner.names_unanswered.load(Ordering::SeqCst)
    }

    /// Names the last resolution could not resolve to one group.
    pub fn name_problems(&self) -> Vec<NameProblem> {
        lock(&self.inner.name_problems).clone()
    }

    /// Resolves the short group names of a policy just put in force, in the background:
    /// at once, again every group TTL (a renamed or moved group is followed), and every
    /// few seconds while the directory does not answer. The names of the previous
    /// policy keep their DNs until the new answer. A name that matches no group or
    /// several is left out (its policy group gets no directory member) and reported in
    /// the log and [`Directory::name_problems`].
    pub fn resolve_names(&self, names: Vec<Box<str>>) {
        let inner = self.inner.clone();
        let generation = inner.names_generation.fetch_add(1, Ordering::SeqCst) + 1;
        if names.is_empty() {
            inner.names.store(Arc::new(DirectoryNames::new()));
            lock(&inner.name_problems).clear();
            inner.names_unanswered.store(false, Ordering::SeqCst);
            inner.names_done.send_replace(generation);
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let attempted = move |inner: &Inner, answered: bool| {
            inner.names_unanswered.store(!answered, Ordering::SeqCst);
            inner.names_done.send_if_modified(|done| {
                let newer = *done < generation;
                *done = (*done).max(generation);
                newer
            });
        };
        runtime.spawn(async move {
            while inner.names_generation.load(Ordering::SeqCst) == generation {
                let wait = match inner.resolve_all(&names).await {
                    Ok((map, problems)) => {
                        for p in &problems {
                            tracing::warn!(problem = %p, "directory group name not resolved");
                        }
                        if inner.names_generation.load(Ordering::SeqCst) != generation {
                            return;
                        }
                        inner.names.store(Arc::new(map));
                        *lock(&inner.name_problems) = problems;
                        attempted(&inner, true);
                        inner.settings.group_ttl
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "directory group names not resolved yet");
                        if inner.names_generation.load(Ordering::SeqCst) != generation {
                            return;
                        }
                        attempted(&inner, false);
                        NAMES_RETRY
                    }
                };
                tokio::time::sleep(wait).await;
            }
        });
    }

    /// The DNs of the groups whose `cn` or `sAMAccountName` is `name` (normalised,
    /// sorted): one when the name is good, none or several otherwise.
    pub async fn find_group(&self, name: &str) -> Result<Vec<Box<str>>, DirectoryError> {
        self.inner.find_group(name).await
    }
}

/// How long a resolution of group names waits before trying again when the directory
/// did not answer.
const NAMES_RETRY: Duration = Duration::from_secs(5);

/// Starts a background group lookup for `key` and returns its notifier; the entry is
/// created if needed (the cache evicted first when full).
fn start_lookup(
    inner: &Arc<Inner>,
    map: &mut HashMap<Box<str>, GroupEntry>,
    key: &str,
    name: &str,
) -> Result<Arc<Notify>, DirectoryError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| DirectoryError::Operation {
        op: "group lookup",
        message: "no tokio runtime".into(),
    })?;
    let now = Instant::now();
    if !map.contains_key(key) && map.len() >= GROUP_CACHE_MAX {
        map.retain(|_, e| e.fresh_until > now || e.pending.is_some());
        if map.len() >= GROUP_CACHE_MAX {
            map.retain(|_, e| e.pending.is_some());
        }
        if map.len() >= GROUP_CACHE_MAX {
            return Err(DirectoryError::Operation {
                op: "group lookup",
                message: format!("{GROUP_CACHE_MAX} lookups already in flight"),
            });
        }
    }
    let notify = Arc::new(Notify::new());
    let entry = map.entry(key.into()).or_insert_with(|| GroupEntry {
        groups: None,
        fresh_until: now,
        failed: None,
        pending: None,
    });
    entry.pending = Some(notify.clone());
    let task_inner = inner.clone();
    let task_key: Box<str> = key.into();
    let task_name = name.to_owned();
    let task_notify = notify.clone();
    runtime.spawn(async move {
        let inner = task_inner;
        let result = inner.lookup_groups(&task_name).await;
        {
            let mut map = lock(&inner.groups);
            if let Some(e) = map.get_mut(&task_key) {
                let now = Instant::now();
                match result {
                    Ok(g) => {
                        e.groups = Some(g);
                        e.failed = None;
                        e.fresh_until = now + inner.settings.group_ttl;
                    }
                    Err(err) => {
                        e.failed = Some(err);
                        e.fresh_until = now + RETRY_AFTER;
                    }
                }
                e.pending = None;
            }
        }
        task_notify.notify_waiters();
    });
    Ok(notify)
}

impl Inner {
    /// The name put in the user filter, or `None` for a name nobody can have.
    fn user_value<'a>(&self, user: &'a str) -> Option<&'a str> {
        let mut name = user;
        if self.settings.strip_realm {
            if let Some((n, _realm)) = name.rsplit_once('@') {
                name = n;
            }
            if let Some((_domain, n)) = name.split_once('\\') {
                name = n;
            }
        }
        let ok =
            !name.is_empty() && name.len() <= MAX_USER_LEN && !name.chars().any(char::is_control);
        ok.then_some(name)
    }

    fn user_filter(&self, name: &str) -> String {
        self.settings
            .user_filter
            .replace("{user}", &ldap_escape(name))
    }

    /// Runs one LDAP operation within the timeout; an error that breaks the service
    /// connection `conn` drops it, so that the next operation reconnects.
    async fn timed<T>(
        &self,
        op: &'static str,
        conn: Option<u64>,
        fut: impl Future<Output = Result<T, LdapError>>,
    ) -> Result<T, DirectoryError> {
        let after = self.settings.timeout;
        let (err, broken) = match tokio::time::timeout(after, fut).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(LdapError::LdapResult { result })) => (
                DirectoryError::Operation {
                    op,
                    message: result.to_string(),
                },
                false,
            ),
            Ok(Err(e)) => (
                DirectoryError::Lost {
                    url: self.settings.url.clone(),
                    op,
                    message: e.to_string(),
                },
                true,
            ),
            Err(_) => (DirectoryError::Timeout { op, after }, true),
        };
        if broken && let Some(id) = conn {
            let mut svc = lock(&self.service);
            if svc.as_ref().is_some_and(|(i, _)| *i == id) {
                *svc = None;
            }
        }
        Err(err)
    }

    /// A new connection (TLS as configured), its driver spawned.
    async fn open(&self) -> Result<Ldap, DirectoryError> {
        let s = &self.settings;
        let mut cs = LdapConnSettings::new()
            .set_conn_timeout(s.timeout)
            .set_starttls(s.starttls);
        if let Some(tls) = &self.tls {
            cs = cs.set_config(tls.clone());
        }
        let (conn, ldap) =
            match tokio::time::timeout(s.timeout, LdapConnAsync::with_settings(cs, &s.url)).await {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => {
                    return Err(DirectoryError::Connect {
                        url: s.url.clone(),
                        message: e.to_string(),
                    });
                }
                Err(_) => {
                    return Err(DirectoryError::Timeout {
                        op: "connection",
                        after: s.timeout,
                    });
                }
            };
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }

    /// The open service connection, if any.
    fn current_service(&self) -> Option<(u64, Ldap)> {
        let mut svc = lock(&self.service);
        let (id, ldap) = svc.as_mut()?;
        if ldap.is_closed() {
            *svc = None;
            return None;
        }
        Some((*id, ldap.clone()))
    }

    /// The service connection, bound; connects if needed, unless the last attempt
    /// failed less than [`RETRY_AFTER`] ago (then its error, at once).
    async fn service(&self) -> Result<(u64, Ldap), DirectoryError> {
        if let Some(c) = self.current_service() {
            return Ok(c);
        }
        let mut rc = self.reconnect.lock().await;
        if let Some(c) = self.current_service() {
            return Ok(c);
        }
        if let Some((until, e)) = &rc.down
            && Instant::now() < *until
        {
            return Err(e.clone());
        }
        match self.open_service().await {
            Ok(ldap) => {
                rc.next_id += 1;
                rc.down = None;
                let id = rc.next_id;
                *lock(&self.service) = Some((id, ldap.clone()));
                Ok((id, ldap))
            }
            Err(e) => {
                rc.down = Some((Instant::now() + RETRY_AFTER, e.clone()));
                Err(e)
            }
        }
    }

    async fn open_service(&self) -> Result<Ldap, DirectoryError> {
        let s = &self.settings;
        let mut ldap = self.open().await?;
        let res = self
            .timed(
                "service bind",
                None,
                ldap.simple_bind(&s.bind_dn, &s.bind_password),
            )
            .await?;
        if res.rc != 0 {
            return Err(DirectoryError::ServiceBind {
                dn: s.bind_dn.clone(),
                message: res.to_string(),
            });
        }
        if s.kind == Nesting::InChain && !self.is_active_directory(&mut ldap).await? {
            // Elsewhere the in-chain filter matches nothing: every user would be in
            // no group, silently.
            return Err(setting(
                "nesting",
                format!(
                    "in-chain needs Active Directory, and {} does not say it is one \
                     (its root DSE lacks capability {AD_CAPABILITY}); use walk",
                    s.url
                ),
            ));
        }
        Ok(ldap)
    }

    /// Whether the root DSE advertises Active Directory's capability.
    async fn is_active_directory(&self, ldap: &mut Ldap) -> Result<bool, DirectoryError> {
        let filter = format!("(supportedCapabilities={AD_CAPABILITY})");
        let search = ldap.search("", Scope::Base, &filter, vec!["1.1"]);
        let ldap3::SearchResult(entries, res) = self.timed("root DSE search", None, search).await?;
        Ok(res.rc == 0 && !entries.is_empty())
    }

    /// The DN of the one entry the user filter finds for `name`; `None` if none.
    async fn find_user(
        &self,
        conn: u64,
        ldap: &mut Ldap,
        name: &str,
    ) -> Result<Option<String>, DirectoryError> {
        let filter = self.user_filter(name);
        let search = ldap
            .with_search_options(SearchOptions::new().sizelimit(2))
            .search(&self.settings.base_dn, Scope::Subtree, &filter, vec!["1.1"]);
        let ldap3::SearchResult(entries, res) =
            self.timed("user search", Some(conn), search).await?;
        // 4: sizeLimitExceeded, more than the two entries asked for.
        if res.rc == 4 || entries.len() > 1 {
            return Err(DirectoryError::Ambiguous { user: name.into() });
        }
        if res.rc != 0 {
            return Err(DirectoryError::Operation {
                op: "user search",
                message: res.to_string(),
            });
        }
        match entries.into_iter().next() {
            None => Ok(None),
            Some(e) => entry_dn(e).map(Some).ok_or(DirectoryError::Operation {
                op: "user search",
                message: "an entry the client cannot read".into(),
            }),
        }
    }

    /// The DNs of the entries `filter` finds under the base, page by page.
    async fn search_dns(
        &self,
        conn: u64,
        ldap: &mut Ldap,
        filter: &str,
    ) -> Result<Vec<String>, DirectoryError> {
        let base = self.settings.base_dn.as_str();
        let search = async {
            let adapters: Vec<Box<dyn Adapter<'_, &str, Vec<&str>>>> = vec![
                Box::new(EntriesOnly::new()),
                Box::new(PagedResults::new(PAGE_SIZE)),
            ];
            let mut stream = ldap
                .streaming_search_with(adapters, base, Scope::Subtree, filter, vec!["1.1"])
                .await?;
            let mut dns = Vec::new();
            while let Some(e) = stream.next().await? {
                dns.extend(entry_dn(e));
            }
            stream.finish().await.success()?;
            Ok(dns)
        };
        self.timed("group search", Some(conn), search).await
    }

    /// Every group of `user_dn`, following `member` links breadth-first.
    async fn walk(
        &self,
        conn: u64,
        ldap: &mut Ldap,
        user_dn: &str,
        max_depth: u32,
    ) -> Result<Vec<Box<str>>, DirectoryError> {
        let mut seen: HashSet<Box<str>> = HashSet::from([normalized_or_lower(user_dn)]);
        let mut found = Vec::new();
        let mut frontier = vec![user_dn.to_owned()];
        for _ in 0..max_depth {
            let mut next = Vec::new();
            for batch in frontier.chunks(WALK_BATCH) {
                for dn in self.search_dns(conn, ldap, &member_filter(batch)).await? {
                    let norm = normalized_or_lower(&dn);
                    if seen.insert(norm.clone()) {
                        found.push(norm);
                        next.push(dn);
                    }
                }
            }
            if next.is_empty() {
                return Ok(found);
            }
            frontier = next;
        }
        tracing::debug!(
            user = user_dn,
            max_depth,
            "group nesting deeper than the walk's bound"
        );
        Ok(found)
    }

    async fn lookup_groups(&self, name: &str) -> Result<Arc<[Box<str>]>, DirectoryError> {
        let started = Instant::now();
        self.counters.lookups.fetch_add(1, Ordering::Relaxed);
        let mut result = self.try_lookup_groups(name).await;
        if let Err(DirectoryError::Lost { .. }) = result {
            // The service connection died under the lookup (the directory restarted,
            // or closed it for idleness): once more, on a new one.
            result = self.try_lookup_groups(name).await;
        }
        self.finish(started, &result);
        result
    }

    /// Each name's DN, and the names that matched no group or several.
    async fn resolve_all(
        &self,
        names: &[Box<str>],
    ) -> Result<(DirectoryNames, Vec<NameProblem>), DirectoryError> {
        let mut map = DirectoryNames::new();
        let mut problems = Vec::new();
        for name in names {
            let mut found = self.find_group(name).await?;
            if found.len() == 1 {
                map.insert(name.clone(), found.remove(0));
            } else {
                problems.push(NameProblem {
                    name: name.clone(),
                    found,
                });
            }
        }
        Ok((map, problems))
    }

    async fn find_group(&self, name: &str) -> Result<Vec<Box<str>>, DirectoryError> {
        let started = Instant::now();
        self.counters.lookups.fetch_add(1, Ordering::Relaxed);
        let filter = group_name_filter(name);
        let mut result = self.try_find_group(&filter).await;
        if let Err(DirectoryError::Lost { .. }) = result {
            result = self.try_find_group(&filter).await;
        }
        self.finish(started, &result);
        result
    }

    async fn try_find_group(&self, filter: &str) -> Result<Vec<Box<str>>, DirectoryError> {
        let (conn, mut ldap) = self.service().await?;
        let mut dns: Vec<Box<str>> = self
            .search_dns(conn, &mut ldap, filter)
            .await?
            .iter()
            .map(|g| normalized_or_lower(g))
            .collect();
        dns.sort_unstable();
        dns.dedup();
        Ok(dns)
    }

    async fn try_lookup_groups(&self, name: &str) -> Result<Arc<[Box<str>]>, DirectoryError> {
        let (conn, mut ldap) = self.service().await?;
        let Some(dn) = self.find_user(conn, &mut ldap, name).await? else {
            return Ok(Arc::from([]));
        };
        let mut groups = match self.settings.kind {
            Nesting::InChain => self
                .search_dns(conn, &mut ldap, &in_chain_filter(&dn))
                .await?
                .iter()
                .map(|g| normalized_or_lower(g))
                .collect(),
            Nesting::Walk { max_depth } => self.walk(conn, &mut ldap, &dn, max_depth).await?,
        };
        groups.sort_unstable();
        groups.dedup();
        Ok(groups.into())
    }

    /// Finds the user with the service account, then binds as the user on a
    /// connection of its own; caches a success under `key`.
    async fn verify_password(
        &self,
        name: &str,
        password: &str,
        key: Key,
    ) -> Result<Option<Box<str>>, DirectoryError> {
        let started = Instant::now();
        self.counters.lookups.fetch_add(1, Ordering::Relaxed);
        let mut result = self.try_password(name, password).await;
        if let Err(DirectoryError::Lost { .. }) = result {
            // As for groups; binding twice is harmless.
            result = self.try_password(name, password).await;
        }
        self.finish(started, &result);
        if let Ok(Some(dn)) = &result {
            let mut st = lock(&self.binds);
            let now = Instant::now();
            if st.cache.len() >= BIND_CACHE_MAX {
                st.cache.retain(|_, e| e.expires > now);
                if st.cache.len() >= BIND_CACHE_MAX {
                    st.cache.clear();
                }
            }
            st.cache.insert(
                key,
                BindEntry {
                    dn: dn.clone(),
                    expires: now + self.settings.bind_cache_ttl,
                },
            );
        }
        result
    }

    async fn try_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<Box<str>>, DirectoryError> {
        let (conn, mut ldap) = self.service().await?;
        let Some(dn) = self.find_user(conn, &mut ldap, name).await? else {
            return Ok(None);
        };
        let _slot = self.bind_slots.acquire().await;
        let mut user_conn = self.open().await?;
        let res = self
            .timed("user bind", None, user_conn.simple_bind(&dn, password))
            .await;
        // Polite close; the connection goes away with the handle anyway.
        let _ = tokio::time::timeout(self.settings.timeout, user_conn.unbind()).await;
        match res?.rc {
            0 => Ok(Some(dn.into_boxed_str())),
            // invalidCredentials (AD adds why: expired, locked, disabled…),
            // inappropriateAuthentication, insufficientAccessRights, unwillingToPerform.
            48..=50 | 53 => Ok(None),
            rc => Err(DirectoryError::Operation {
                op: "user bind",
                message: format!("result code {rc}"),
            }),
        }
    }

    /// Counts a finished lookup and updates the health.
    fn finish<T>(&self, started: Instant, result: &Result<T, DirectoryError>) {
        let c = &self.counters;
        c.latency_micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        c.latency_count.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            c.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.record_health(result);
    }

    fn record_health<T>(&self, result: &Result<T, DirectoryError>) {
        let up = match result {
            Ok(_) => true,
            Err(e) if e.is_outage() => false,
            Err(_) => return,
        };
        let mut h = lock(&self.health);
        if let Err(e) = result {
            h.last_error = Some(e.to_string());
        }
        if h.up != up {
            h.up = up;
            h.last_change = SystemTime::now();
            if up {
                tracing::info!(url = %self.settings.url, "directory reachable");
            } else {
                tracing::warn!(
                    url = %self.settings.url,
                    error = h.last_error.as_deref().unwrap_or(""),
                    "directory unavailable"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> DirectorySettings {
        DirectorySettings::new(
            url,
            "dc=mairie,dc=test",
            "cn=proxy-svc,ou=Services,dc=mairie,dc=test",
            "svc-pw",
        )
    }

    #[test]
    fn filter_values_are_escaped() {
        let d = Directory::new(DirectorySettings {
            allow_cleartext: true,
            ..settings("ldap://127.0.0.1:1")
        })
        .unwrap();
        let f = |name| d.inner.user_filter(name);
        assert_eq!(f("alice"), "(|(sAMAccountName=alice)(uid=alice))");
        assert_eq!(
            f("*)(uid=*"),
            "(|(sAMAccountName=\\2a\\29\\28uid=\\2a)(uid=\\2a\\29\\28uid=\\2a))"
        );
        assert_eq!(
            f("a\\b\0"),
            "(|(sAMAccountName=a\\5cb\\00)(uid=a\\5cb\\00))"
        );
        assert_eq!(f("élodie"), "(|(sAMAccountName=élodie)(uid=élodie))");
        // DNs go into filters escaped too: their own backslashes become \5c.
        assert_eq!(
            member_filter(&["cn=Doe\\, J (x),dc=t".into()]),
            "(member=cn=Doe\\5c, J \\28x\\29,dc=t)"
        );
        assert_eq!(
            member_filter(&["cn=a,dc=t".into(), "cn=b,dc=t".into()]),
            "(|(member=cn=a,dc=t)(member=cn=b,dc=t))"
        );
        assert_eq!(
            in_chain_filter("cn=a*,dc=t"),
            "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:=cn=a\\2a,dc=t))"
        );
        for f in [f("*)(uid=*"), member_filter(&["cn=(x),dc=t".into()])] {
            assert!(ldap3::parse_filter(&f).is_ok(), "{f}");
        }
    }

    #[test]
    fn user_values_strip_the_realm_or_domain() {
        let d = Directory::new(DirectorySettings {
            allow_cleartext: true,
            ..settings("ldap://127.0.0.1:1")
        })
        .unwrap();
        let u = |name| d.inner.user_value(name);
        assert_eq!(u("alice@MAIRIE.TEST"), Some("alice"));
        assert_eq!(u("MAIRIE\\alice"), Some("alice"));
        assert_eq!(u("alice"), Some("alice"));
        assert_eq!(u(""), None);
        assert_eq!(u("@MAIRIE.TEST"), None);
        assert_eq!(u("a\nb"), None);
        assert_eq!(u(&"x".repeat(MAX_USER_LEN + 1)), None);
        let keep = Directory::new(DirectorySettings {
            allow_cleartext: true,
            strip_realm: false,
            ..settings("ldap://127.0.0.1:1")
        })
        .unwrap();
        assert_eq!(
            keep.inner.user_value("alice@MAIRIE.TEST"),
            Some("alice@MAIRIE.TEST")
        );
    }

    #[test]
    fn dns_normalise() {
        let n = |s| normalize_dn(s).map(String::from);
        let same = [
            (
                "CN=GG-Internet-Communication,OU=Groupes,DC=mairie,DC=test",
                "cn=gg-internet-communication,ou=groupes,dc=mairie,dc=test",
            ),
            ("  cn = A B ,  ou= C  ", "cn=a b,ou=c"),
            ("cn=Doe\\, John,dc=x", "cn=doe\\, john,dc=x"),
            ("cn=Doe\\2C John,dc=x", "cn=doe\\, john,dc=x"),
            ("cn=Doe\\2c John,dc=x", "cn=doe\\, john,dc=x"),
            ("sn=B+cn=A,dc=x", "cn=a+sn=b,dc=x"),
            ("cn = a + sn = b,dc=x", "cn=a+sn=b,dc=x"),
            ("2.5.4.3=Admins,dc=x", "2.5.4.3=admins,dc=x"),
            ("cn=\\#1,dc=x", "cn=\\#1,dc=x"),
            ("cn=\\23 1,dc=x", "cn=\\# 1,dc=x"),
            ("cn=a\\ ,dc=x", "cn=a\\ ,dc=x"),
            ("cn=\\ a,dc=x", "cn=\\ a,dc=x"),
            ("cn=a=b,dc=x", "cn=a=b,dc=x"),
            ("cn=a\\=b,dc=x", "cn=a=b,dc=x"),
            ("cn=#04024869,dc=x", "cn=#04024869,dc=x"),
            ("cn=#0402486A,dc=x", "cn=#0402486a,dc=x"),
            ("CN=École Élémentaire,DC=x", "cn=école élémentaire,dc=x"),
            ("cn=\\C3\\89cole,dc=x", "cn=école,dc=x"),
            ("cn=a\\\"b\\<c\\>d\\;e,dc=x", "cn=a\\\"b\\<c\\>d\\;e,dc=x"),
            ("cn=a\\5cb,dc=x", "cn=a\\\\b,dc=x"),
            ("cn=a\\00b", "cn=a\\00b"),
            ("sAMAccountName=x-1", "samaccountname=x-1"),
            ("dc=test", "dc=test"),
        ];
        for (input, want) in same {
            assert_eq!(n(input).as_deref(), Some(want), "{input:?}");
        }
        let bad = [
            "",
            "   ",
            "cn",
            "=a",
            "cn=",
            "cn= ",
            "cn=a,",
            ",cn=a",
            "cn=a,,dc=b",
            "cn=a+,dc=b",
            "c n=a",
            "1cn=a",
            "2.5..4=a",
            "2.5.4.=a",
            "cn=a;dc=b",
            "cn=\"quoted\"",
            "cn=<a>",
            "cn=a\\",
            "cn=a\\z",
            "cn=a\\zz",
            "cn=\\c3",
            "cn=#",
            "cn=#a",
            "cn=#zz",
            "cn=#0102 x",
            "cn=a\0b",
            "cn_x=a",
            "cn=a,dc",
        ];
        for input in bad {
            assert_eq!(n(input), None, "{input:?}");
        }
    }

    #[test]
    fn cleartext_is_refused_unless_allowed() {
        let e = Directory::new(settings("ldap://dc1.mairie.test")).unwrap_err();
        assert_eq!(e.code(), "ldap_cleartext");
        assert!(e.to_string().starts_with("ldap://dc1.mairie.test: "), "{e}");
        let e = Directory::new(settings("LDAP://dc1.mairie.test")).unwrap_err();
        assert_eq!(e.code(), "ldap_cleartext", "the scheme in capitals");
        assert!(
            Directory::new(DirectorySettings {
                allow_cleartext: true,
                ..settings("ldap://dc1.mairie.test")
            })
            .is_ok()
        );
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, test_ca_pem()).unwrap();
        for s in [
            DirectorySettings {
                starttls: true,
                ca_file: Some(ca.clone()),
                ..settings("ldap://dc1.mairie.test")
            },
            DirectorySettings {
                ca_file: Some(ca.clone()),
                ..settings("ldaps://dc1.mairie.test:636")
            },
            DirectorySettings {
                ca_file: Some(ca.clone()),
                ..settings("LDAPS://dc1.mairie.test")
            },
        ] {
            let d = Directory::new(s).unwrap();
            assert!(d.inner.tls.is_some(), "{:?}", d.settings());
        }
    }

    fn test_ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn bad_settings_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.txt");
        std::fs::write(&not_pem, "hello").unwrap();
        let cases: Vec<(DirectorySettings, &str, &str)> = vec![
            (settings("http://dc1"), "ldap_url", "ldap:// or ldaps://"),
            (settings("ldaps://"), "ldap_url", ""),
            (
                DirectorySettings {
                    starttls: true,
                    ..settings("ldaps://dc1")
                },
                "ldap_url",
                "StartTLS on an ldaps:// URL",
            ),
            (
                settings("ldaps://dc1/dc=mairie,dc=test"),
                "ldap_url",
                "own setting",
            ),
            (
                DirectorySettings {
                    base_dn: "mairie.test".into(),
                    ..settings("ldaps://dc1")
                },
                "ldap_setting",
                "base_dn",
            ),
            (
                DirectorySettings {
                    bind_dn: "proxy-svc".into(),
                    ..settings("ldaps://dc1")
                },
                "ldap_setting",
                "bind_dn",
            ),
            (
                DirectorySettings {
                    bind_password: String::new(),
                    ..settings("ldaps://dc1")
                },
                "ldap_setting",
                "bind_password",
            ),
            (
                DirectorySettings {
                    user_filter: "(uid=alice)".into(),
                    ..settings("ldaps://dc1")
                },
                "ldap_setting",
                "has no {user}",
            ),
            (
                DirectorySettings {
                    user_filter: "(uid={user}".into(),
                    ..settings("ldaps://dc1")
                },
                "ldap_setting",
                "not an LDAP filter",
            ),
            (
                DirectorySettings {
                    kind: Nesting::Walk { max_depth: 0 },
                    ..settings("ldaps://dc1")
                },
                "ldap_setting",
                "depth",
            ),
            (
                DirectorySettings {
                    ca_file: Some(dir.path().join("missing.pem")),
                    ..settings("ldaps://dc1")
                },
                "ldap_ca_file",
                "missing.pem",
            ),
            (
                DirectorySettings {
                    ca_file: Some(not_pem),
                    ..settings("ldaps://dc1")
                },
                "ldap_ca_file",
                "no CERTIFICATE block",
            ),
        ];
        for (s, code, needle) in cases {
            let shown = format!("{s:?}");
            let e = Directory::new(s).unwrap_err();
            assert_eq!(e.code(), code, "{shown}: {e}");
            assert!(e.to_string().contains(needle), "{shown}: {e}");
        }
    }

    #[test]
    fn the_password_stays_out_of_debug() {
        let s = format!("{:?}", settings("ldaps://dc1"));
        assert!(!s.contains("svc-pw"), "{s}");
    }

    #[test]
    fn secret_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bind-password");
        std::fs::write(&p, "s3cret pw\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file(&p).unwrap(), "s3cret pw");
        std::fs::write(&p, "s3cret\r\n").unwrap();
        assert_eq!(read_secret_file(&p).unwrap(), "s3cret");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(read_secret_file(&p).unwrap(), "s3cret");
        for mode in [0o640, 0o604, 0o644, 0o660] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = read_secret_file(&p).unwrap_err();
            assert_eq!(e.code(), "ldap_secret_mode");
            let msg = e.to_string();
            assert!(
                msg.starts_with(&p.display().to_string())
                    && msg.contains(&format!("mode {mode:04o}")),
                "{msg}"
            );
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&p, "\n").unwrap();
        assert_eq!(read_secret_file(&p).unwrap_err().code(), "ldap_secret_file");
        let e = read_secret_file(&dir.path().join("nope")).unwrap_err();
        assert_eq!(e.code(), "ldap_secret_file");
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[tokio::test]
    async fn a_closed_port_fails_fast_and_empty_passwords_never_bind() {
        // Port 1 on loopback: connection refused at once.
        let d = Directory::new(DirectorySettings {
            allow_cleartext: true,
            first_wait: Duration::from_secs(5),
            ..settings("ldap://127.0.0.1:1")
        })
        .unwrap();
        assert_eq!(d.check_password("alice", "").await, Ok(None));
        assert_eq!(d.stats().lookups, 0, "no lookup for an empty password");
        let started = Instant::now();
        let Groups::Unavailable(e) = d.groups("alice").await else {
            panic!("groups from a closed port");
        };
        assert_eq!(e.code(), "ldap_connect", "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let h = d.health();
        assert!(!h.up);
        assert!(h.last_error.is_some_and(|m| m.contains("127.0.0.1:1")));
        // Within RETRY_AFTER, the same answer without another attempt.
        assert_eq!(d.groups("alice").await, Groups::Unavailable(e.clone()));
        assert_eq!(d.stats().lookups, 1);
        assert_eq!(
            d.check_password("bob", "pw").await.unwrap_err().code(),
            "ldap_connect"
        );
        assert_eq!(d.stats().failures, 2);
    }
}
