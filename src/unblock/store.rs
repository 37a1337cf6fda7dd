//! What the unblock flow keeps: requests, the administrators' decisions, and the count
//! of blocks per person and site. Behind a small trait so that several proxies can later
//! share one database; [`super::sqlite::SqliteStore`] is the embedded implementation,
//! [`super::postgres::PgStore`] the one several proxies share.

use std::fmt;
use std::str::FromStr;

/// Longest justification kept, in characters.
pub const MAX_JUSTIFICATION: usize = 2000;
/// Longest administrator message, in characters.
pub const MAX_MESSAGE: usize = 1000;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Approved,
    Refused,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Refused => "refused",
        }
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(Status::Pending),
            "approved" => Ok(Status::Approved),
            "refused" => Ok(Status::Refused),
            _ => Err(format!("unknown status {s:?}")),
        }
    }
}

/// Who an approval opens the site for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The person who asked (their user name, or their address without authentication).
    Requester,
    Group(String),
    Everyone,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Requester => f.write_str("requester"),
            Scope::Group(g) => write!(f, "group:{g}"),
            Scope::Everyone => f.write_str("everyone"),
        }
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "requester" | "user" => Ok(Scope::Requester),
            "everyone" | "all" => Ok(Scope::Everyone),
            _ => match s.strip_prefix("group:") {
                Some(g) if !g.is_empty() => Ok(Scope::Group(g.to_string())),
                _ => Err(format!(
                    "unknown scope {s:?}: use `requester`, `group:NAME` or `everyone`"
                )),
            },
        }
    }
}

/// A request as the user sent it, with what the block token said.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// `user:NAME` when authenticated, else `ip:ADDRESS`: who the request belongs to.
    pub requester: String,
    pub user: Option<String>,
    pub ip: String,
    pub groups: Vec<String>,
    pub host: String,
    pub url: String,
    pub categories: Vec<String>,
    pub rule: Option<String>,
    pub reason_code: String,
    pub justification: String,
    /// What the user suggested (`7d`, `30d`, `1y`, `none`), if anything.
    pub wanted: Option<String>,
}

/// A stored request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    pub id: i64,
    pub created: i64,
    pub updated: i64,
    pub requester: String,
    pub user: Option<String>,
    pub ip: String,
    pub groups: Vec<String>,
    pub host: String,
    pub url: String,
    pub categories: Vec<String>,
    pub rule: Option<String>,
    pub reason_code: String,
    /// The justification, then what was added by asking again, each with its time.
    pub justification: String,
    pub wanted: Option<String>,
    /// How many times the user sent it (1, plus one per merge).
    pub asked: i64,
    pub status: Status,
    pub scope: Option<String>,
    /// End of the approval (unix seconds); `None` with `Approved`: no end.
    pub until: Option<i64>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub message: Option<String>,
}

/// One administrator decision, for the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRow {
    pub id: i64,
    pub request: i64,
    pub at: i64,
    pub admin: String,
    pub status: Status,
    pub scope: Option<String>,
    pub until: Option<i64>,
    pub message: Option<String>,
    pub host: String,
    pub requester: String,
}

/// An approval in force (or expired, for the caller to skip).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRow {
    pub request: i64,
    pub host: String,
    pub requester: String,
    pub scope: String,
    pub until: Option<i64>,
}

/// What [`Store::submit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    Created(i64),
    /// Added to the pending request of the same person for the same site.
    Merged(i64),
}

impl Submitted {
    pub fn id(self) -> i64 {
        match self {
            Submitted::Created(i) | Submitted::Merged(i) => i,
        }
    }
}

/// Why the store failed. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the request database {path} is locked by another process for too long; is another \
         charte-proxy using it? ({source})"
    )]
    Locked {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "the request database {path} is damaged ({source}); stop the proxy, keep a copy, and \
         try `sqlite3 {path} .recover`"
    )]
    Corrupt {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "the request database {path} was written by a newer charte-proxy (schema {found}, \
         this one knows up to {known})"
    )]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("no request number {0}")]
    NotFound(i64),
    #[error("request {0} was already decided")]
    AlreadyDecided(i64),
    #[error("request database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The PostgreSQL database did not answer: refused, lost or timed out connection.
    /// The proxy keeps filtering with the approvals it has; calls succeed again when the
    /// database is back.
    #[error(
        "the PostgreSQL database {db} cannot be reached ({detail}); check that PostgreSQL \
         runs, that this machine reaches it (address, port, firewall, TLS), and the URL in \
         the file of `store.postgres.url_file`"
    )]
    Unavailable { db: String, detail: String },
    /// Any other PostgreSQL error (a refused password, a certificate that does not
    /// verify, a query the database rejects).
    #[error("PostgreSQL database {db}: {detail}")]
    Postgres { db: String, detail: String },
}

/// The store of unblock requests. Every write that a user or an administrator is told
/// about is durable when the call returns.
pub trait Store: Send + Sync {
    /// Stores a request, or adds to the same requester's pending request for the host.
    fn submit(&self, r: &NewRequest, now: i64) -> Result<Submitted, StoreError>;
    fn get(&self, id: i64) -> Result<RequestRow, StoreError>;
    /// Requests with this status (all when `None`), newest first.
    fn list(&self, status: Option<Status>) -> Result<Vec<RequestRow>, StoreError>;
    fn list_for(&self, requester: &str) -> Result<Vec<RequestRow>, StoreError>;
    /// Approves a pending (or earlier approved) request.
    fn approve(
        &self,
        id: i64,
        admin: &str,
        scope: &Scope,
        until: Option<i64>,
        message: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError>;
    fn refuse(&self, id: i64, admin: &str, message: &str, now: i64) -> Result<(), StoreError>;
    /// Every decision, oldest first.
    fn history(&self) -> Result<Vec<DecisionRow>, StoreError>;
    /// Approvals whose end is after `now` (or without end).
    fn approvals(&self, now: i64) -> Result<Vec<ApprovalRow>, StoreError>;
    /// Adds blocks seen (requester, host, day number, count).
    fn count_blocks(&self, counts: &[(String, String, i64, i64)]) -> Result<(), StoreError>;
    /// Blocks of `host` for `requester` since `since_day` (days since the epoch).
    fn blocks(&self, requester: &str, host: &str, since_day: i64) -> Result<i64, StoreError>;
    /// A number that changes whenever the data changes, in this process or another.
    /// Never waits long: a store that cannot reach its database returns the last value
    /// it knows.
    fn version(&self) -> Result<i64, StoreError>;
    /// Whether the store's database answered lately (always, for an embedded file); for
    /// `/health` and the metrics.
    fn available(&self) -> bool {
        true
    }
    /// What the store is, for `/health`: `sqlite` or `postgres`, and where (a file, or
    /// `host:port/database`; never a password).
    fn describe(&self) -> (&'static str, String);

    /// Whether several proxies share this store: administrators' sessions are then kept
    /// in it, so that any proxy serves the admin pages. An embedded store does not, and
    /// the sessions stay in the proxy's memory (the `session_*` methods are then never
    /// called).
    fn shares_sessions(&self) -> bool {
        false
    }
    /// Keeps a new administrator's session. `key`: the SHA-256 (hex) of the session id,
    /// never the id itself.
    fn session_start(
        &self,
        _key: &str,
        _admin: &str,
        _csrf: &str,
        _now: i64,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    /// The administrator and CSRF value of the session `key` if it is live at `now`
    /// (used within `idle` seconds, started within `absolute`), marked as used now.
    fn session_get(
        &self,
        _key: &str,
        _now: i64,
        _idle: i64,
        _absolute: i64,
    ) -> Result<Option<(String, String)>, StoreError> {
        Ok(None)
    }
    /// Ends the session `key` (logout), on every proxy.
    fn session_end(&self, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// Deletes, at most `batch` rows of each kind, what is older than `before` (unix
    /// seconds): decided requests last changed before it, with their decisions (never a
    /// pending request, nor an approval still in force at `now`), and block counts of
    /// days before it, and the dashboard's counters of hours and days before it. Call
    /// again until it returns nothing.
    fn purge(&self, before: i64, now: i64, batch: usize) -> Result<Purged, StoreError>;

    /// Adds to the dashboard's counters: each row's `n` is added to the count of its
    /// (dimension, bucket, key), created at 0 (see [`crate::unblock::store::Dim`]).
    fn add_counts(&self, counts: &[Tallied]) -> Result<(), StoreError>;
    /// The counts of `dim` in buckets `from..to`, by bucket then key.
    fn counts(&self, dim: Dim, from: i64, to: i64) -> Result<Vec<(i64, String, i64)>, StoreError>;
    /// The `limit` keys of `dim` with the largest sums over buckets `from..to`, largest
    /// first (ties by key).
    fn top(
        &self,
        dim: Dim,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Unblock requests opened, approved and refused per week (see [`week_of`]), for the
    /// weeks from `from_week` on: (week, opened, approved, refused), weeks with none left
    /// out.
    fn weekly_requests(&self, from_week: i64) -> Result<Vec<(i64, i64, i64, i64)>, StoreError>;
}

/// What the dashboard counts, and at which granularity ([`Dim::bucket`]).
///
/// Small dimensions (totals, categories, rules, groups) are counted per hour: a year is
/// 8 760 buckets of a few dozen keys. Sites and people are counted per day: their keys
/// are many (thousands of sites), an hourly row for each would make a year of them 24
/// times bigger, and the dashboard only shows them over 30 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// Per hour; keys [`Dim::TOTALS`].
    Total,
    /// Blocks by category, per hour; `""` for a block without category.
    Category,
    /// Blocks by rule id, per hour; `""` for the policy's default.
    Rule,
    /// Blocks by group, per hour; `""` for people in no group.
    Group,
    /// Blocks by site (host), per day.
    Site,
    /// Blocks by person (user name, or `ip:ADDRESS`), per day, stored as given:
    /// pseudonymised only when shown.
    User,
}

impl Dim {
    pub const ALL: [Dim; 6] = [
        Dim::Total,
        Dim::Category,
        Dim::Rule,
        Dim::Group,
        Dim::Site,
        Dim::User,
    ];
    /// The keys of [`Dim::Total`]: requests (every record but an inspected tunnel's own
    /// line), blocks, requests seen inside inspected tunnels, tunnels relayed without
    /// inspection, plain HTTP requests, and bytes both ways.
    pub const TOTALS: [&'static str; 6] = [
        "requests",
        "blocked",
        "inspected",
        "tunnelled",
        "plain",
        "bytes",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Total => "total",
            Dim::Category => "category",
            Dim::Rule => "rule",
            Dim::Group => "group",
            Dim::Site => "site",
            Dim::User => "user",
        }
    }

    /// Counted per day (else per hour).
    pub fn daily(self) -> bool {
        matches!(self, Dim::Site | Dim::User)
    }

    /// Seconds in one bucket.
    pub fn span(self) -> i64 {
        if self.daily() { 86_400 } else { 3_600 }
    }

    /// The bucket of `unix` seconds: hours or days since the epoch (UTC).
    pub fn bucket(self, unix: i64) -> i64 {
        unix.div_euclid(self.span())
    }
}

/// The week of `unix` seconds: weeks since the Monday 1969-12-29, UTC.
pub fn week_of(unix: i64) -> i64 {
    (unix + 3 * 86_400).div_euclid(7 * 86_400)
}

/// The first second of `week` ([`week_of`]).
pub fn week_start(week: i64) -> i64 {
    week * 7 * 86_400 - 3 * 86_400
}

/// One counter to add to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tallied {
    pub dim: Dim,
    pub bucket: i64,
    pub key: String,
    pub n: i64,
}

/// What one [`Store::purge`] call deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub requests: u64,
    pub decisions: u64,
    pub blocks: u64,
    /// Rows of the dashboard's counters.
    pub counts: u64,
}

impl Purged {
    pub fn is_empty(&self) -> bool {
        *self == Purged::default()
    }

    pub fn add(&mut self, o: Purged) {
        self.requests += o.requests;
        self.decisions += o.decisions;
        self.blocks += o.blocks;
        self.counts += o.counts;
    }
}
