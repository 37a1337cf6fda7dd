//! The store several proxies share: PostgreSQL, through `tokio-postgres` and a bounded
//! `deadpool` pool, TLS by rustls when the URL or a CA file asks for it (the server's
//! certificate and name are then always verified).
//!
//! The [`Store`] trait is synchronous (it is called from `spawn_blocking` threads and from
//! the CLI), the driver is async: `PgStore` owns a small tokio runtime of its own
//! (`charte-pg` threads) where every call runs under a time limit, and the calling thread
//! waits on it with a plain executor, which works inside and outside any runtime. A dead
//! database thus gives [`StoreError::Unavailable`] within the limit, never a hang.
//!
//! Changes made by other proxies reach this one through `LISTEN charte_changes`: every
//! write that matters to the approvals bumps the one-row `changes` table and sends a
//! `NOTIFY` in its own transaction. A dedicated connection listens and counts the
//! notifications; [`Store::version`] adds that count to the last counter read from the
//! database, and reads the counter again (in the background) every [`CATCH_UP`], which
//! repairs a notification lost with a connection. `version` never waits on the database.
//! The listening connection comes back by itself, with backoff, when the database does.
//!
//! Schema migrations are numbered files (`migrations/pg/NNNN_*.sql`) applied at start in
//! one transaction under an advisory lock, recorded in `schema_migrations`: two proxies
//! starting at once on an empty database migrate it once. Writes return after `COMMIT`,
//! with PostgreSQL's default `synchronous_commit = on`: a request acknowledged to its user
//! is on the database's disk.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, NoTls, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::sqlite::SqliteStore;
use super::store::{
    ApprovalRow, DecisionRow, Dim, NewRequest, Purged, RequestRow, Scope, Status, Store,
    StoreError, Submitted, Tallied, week_of, week_start,
};

/// Schema migrations; migration `i` brings the schema to version `i + 1`.
/// Ended administrators' sessions are deleted this long (seconds) after their last use.
const SESSION_KEPT: i64 = 86_400;

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/pg/0001_init.sql"),
    include_str!("../../migrations/pg/0002_admin_sessions.sql"),
];

/// The advisory lock key the migrations are applied under ("charte" in ASCII).
const MIGRATION_LOCK: i64 = 0x6368_6172_7465;

/// The channel of change notifications.
const CHANNEL: &str = "charte_changes";

/// How often [`Store::version`] reads the change counter from the database, to repair a
/// missed notification.
pub const CATCH_UP: Duration = Duration::from_secs(2);

/// Longest time the migrations may take (they may wait on another proxy's).
const MIGRATION_TIME: Duration = Duration::from_secs(120);

/// Longest time `migrate-from-sqlite` may take.
const IMPORT_TIME: Duration = Duration::from_secs(1800);

/// Rows per statement when copying counters.
const IMPORT_BATCH: usize = 1000;

/// How to reach the database.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE[?sslmode=…]`; never logged.
    pub url: String,
    /// Most connections the pool opens.
    pub pool_size: usize,
    /// The CA that signed the database's certificate; TLS is on when given. Without it,
    /// TLS (`sslmode=require`, `verify-ca`, `verify-full`) trusts the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Longest wait for one call.
    pub timeout: Duration,
}

impl PgOptions {
    pub const DEFAULT_POOL_SIZE: usize = 8;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    pub fn new(url: impl Into<String>) -> PgOptions {
        PgOptions {
            url: url.into(),
            pool_size: Self::DEFAULT_POOL_SIZE,
            ca_file: None,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &"(hidden)")
            .field("pool_size", &self.pool_size)
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The database's address as shown in messages and logs: host, port and database name,
/// never the user or password.
fn shown(c: &tokio_postgres::Config) -> String {
    let host = match c.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", c.get_dbname().unwrap_or("?"))
}

/// The connection settings of a URL, and the TLS to use (`None`: plain TCP).
fn target(
    o: &PgOptions,
) -> Result<(tokio_postgres::Config, Option<MakeRustlsConnect>), StoreError> {
    let bad = |m: String| StoreError::Postgres {
        db: "(store.postgres.url_file)".into(),
        detail: m,
    };
    let mut url = url::Url::parse(o.url.trim()).map_err(|e| {
        bad(format!(
            "the URL does not parse ({e}); expected postgres://USER:PASSWORD@HOST:PORT/DATABASE"
        ))
    })?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(bad("the URL must start with postgres://".into()));
    }
    // `tokio-postgres` knows `disable`, `prefer` and `require` only; TLS here always
    // verifies the certificate and name (as libpq's `verify-full`), so the verifying
    // modes are read here and the driver is told `require`.
    let mut sslmode = None;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(k, v)| {
            if k == "sslmode" {
                sslmode = Some(v.into_owned());
                None
            } else {
                Some((k.into_owned(), v.into_owned()))
            }
        })
        .collect();
    url.set_query(None);
    if !kept.is_empty() {
        url.query_pairs_mut().extend_pairs(kept);
    }
    let tls_on = match sslmode.as_deref() {
        Some("disable") => false,
        None | Some("allow" | "prefer") => o.ca_file.is_some(),
        Some("require" | "verify-ca" | "verify-full") => true,
        Some(m) => {
            return Err(bad(format!(
                "unknown sslmode {m:?}: use disable, require or verify-full"
            )));
        }
    };
    let mut config: tokio_postgres::Config = url
        .as_str()
        .parse()
        .map_err(|e| bad(format!("the URL is not a PostgreSQL URL ({e})")))?;
    config
        .ssl_mode(if tls_on {
            SslMode::Require
        } else {
            SslMode::Disable
        })
        .connect_timeout(o.timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .application_name("charte-proxy");
    let tls = if tls_on {
        Some(MakeRustlsConnect::new(tls_config(
            o.ca_file.as_deref(),
            &shown(&config),
        )?))
    } else {
        None
    };
    Ok((config, tls))
}

fn tls_config(ca_file: Option<&Path>, db: &str) -> Result<rustls::ClientConfig, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let bad = |m: String| StoreError::Postgres {
        db: db.to_string(),
        detail: m,
    };
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let at = |e: String| bad(format!("store.postgres.ca_file {}: {e}", path.display()));
            let bytes = std::fs::read(path).map_err(|e| at(e.to_string()))?;
            for c in CertificateDer::pem_slice_iter(&bytes) {
                roots
                    .add(c.map_err(|e| at(e.to_string()))?)
                    .map_err(|e| at(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(at("no CERTIFICATE block".into()));
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if roots.is_empty() {
                return Err(bad(
                    "TLS asked for, no store.postgres.ca_file given and no system root \
                     certificate found"
                        .into(),
                ));
            }
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Why a call on the store's runtime failed, before it becomes a [`StoreError`] that
/// names the database.
enum Fail {
    Store(StoreError),
    Pg(tokio_postgres::Error),
    Pool(PoolError),
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        Fail::Store(e)
    }
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Fail {
        Fail::Pg(e)
    }
}

impl From<PoolError> for Fail {
    fn from(e: PoolError) -> Fail {
        Fail::Pool(e)
    }
}

impl Fail {
    fn into_store(self, db: &str) -> StoreError {
        match self {
            Fail::Store(e) => e,
            Fail::Pg(e) => pg_error(&e, db),
            Fail::Pool(PoolError::Backend(e)) => pg_error(&e, db),
            Fail::Pool(PoolError::Timeout(t)) => StoreError::Unavailable {
                db: db.into(),
                detail: format!("no connection within the time limit ({t:?})"),
            },
            Fail::Pool(e) => StoreError::Postgres {
                db: db.into(),
                detail: e.to_string(),
            },
        }
    }
}

/// A driver error, with its cause, as [`StoreError::Unavailable`] when the database could
/// not be reached or went away, else [`StoreError::Postgres`].
fn pg_error(e: &tokio_postgres::Error, db: &str) -> StoreError {
    // A socket error, but not a TLS failure (tokio-rustls reports a certificate that
    // does not verify as `InvalidData`): that one is a setting to fix, not an outage.
    let io = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| {
            !matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
            )
        });
    let gone = e.code().is_some_and(|c| {
        let c = c.code();
        // Connection exceptions, operator intervention (shutdown, starting up), too many
        // connections.
        c.starts_with("08") || c.starts_with("57P") || c == "53300"
    });
    let detail = match e.as_db_error() {
        Some(d) => format!("{}: {}", d.severity(), d.message()),
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    };
    if io || gone || e.is_closed() {
        StoreError::Unavailable {
            db: db.into(),
            detail,
        }
    } else {
        StoreError::Postgres {
            db: db.into(),
            detail,
        }
    }
}

/// What the store's runtime and the callers share: the database's state as last seen.
struct Shared {
    db: Arc<str>,
    available: AtomicBool,
    /// Changes seen without reading the counter: notifications, this store's own
    /// writes, and reconnections of the listener (which may have missed some).
    seen: AtomicI64,
    /// The database's change counter, as last read.
    counter: AtomicI64,
    /// When the counter was last read, in milliseconds since `born`.
    read_at: AtomicI64,
    born: Instant,
    /// A background read of the counter is under way.
    reading: AtomicBool,
    /// The schema is known to be up to date (set at `open`, or later when the database
    /// did not answer at start); until then every call is refused as unavailable.
    ready: AtomicBool,
}

impl Shared {
    fn version(&self) -> i64 {
        self.counter
            .load(Ordering::SeqCst)
            .wrapping_add(self.seen.load(Ordering::SeqCst))
    }

    fn changed(&self) {
        self.seen.fetch_add(1, Ordering::SeqCst);
    }

    fn set_available(&self, up: bool, why: Option<&StoreError>) {
        let was = self.available.swap(up, Ordering::SeqCst);
        match (was, up) {
            (true, false) => tracing::warn!(
                db = %self.db,
                error = why.map(tracing::field::display),
                "the PostgreSQL store is unavailable; filtering goes on with the approvals \
                 in memory"
            ),
            (false, true) => tracing::info!(db = %self.db, "the PostgreSQL store is available"),
            _ => {}
        }
    }

    fn since_born(&self) -> i64 {
        self.born.elapsed().as_millis() as i64
    }
}

/// The PostgreSQL store. See the module's documentation.
pub struct PgStore {
    /// Dropped in the background in `Drop` (a runtime may not be dropped on a runtime).
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pool: Pool,
    shared: Arc<Shared>,
    timeout: Duration,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("db", &self.shared.db)
            .finish()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl PgStore {
    /// Connects, brings the schema up to date and starts listening for changes. Fails
    /// when the database cannot be reached.
    pub fn open(o: &PgOptions) -> Result<PgStore, StoreError> {
        let (config, tls) = target(o)?;
        let db: Arc<str> = shown(&config).into();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("charte-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Postgres {
                db: db.to_string(),
                detail: format!("cannot start the store's threads: {e}"),
            })?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Some(t) => Manager::from_config(config.clone(), t.clone(), manager_config),
            None => Manager::from_config(config.clone(), NoTls, manager_config),
        };
        let pool = {
            let _in = rt.enter();
            Pool::builder(manager)
                .max_size(o.pool_size.max(1))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(o.timeout))
                .create_timeout(Some(o.timeout))
                .recycle_timeout(Some(o.timeout))
                .build()
                .map_err(|e| StoreError::Postgres {
                    db: db.to_string(),
                    detail: e.to_string(),
                })?
        };
        let shared = Arc::new(Shared {
            db: db.clone(),
            available: AtomicBool::new(true),
            seen: AtomicI64::new(0),
            counter: AtomicI64::new(0),
            read_at: AtomicI64::new(0),
            born: Instant::now(),
            reading: AtomicBool::new(false),
            ready: AtomicBool::new(false),
        });
        let store = PgStore {
            handle: rt.handle().clone(),
            rt: Some(rt),
            pool,
            shared,
            timeout: o.timeout,
        };
        match store.run_for(MIGRATION_TIME, migrate(store.pool.clone(), db.clone())) {
            Ok(schema) => {
                store.shared.ready.store(true, Ordering::SeqCst);
                let n = store.run(read_counter(store.pool.clone()))?;
                store.shared.counter.store(n, Ordering::SeqCst);
                store
                    .shared
                    .read_at
                    .store(store.shared.since_born(), Ordering::SeqCst);
                tracing::info!(%db, schema, "unblock requests in PostgreSQL");
            }
            // A proxy rebooted while the database is down still starts, and filters
            // with no approval until the database answers: it never opens more than
            // was approved. Anything else (a wrong password, a certificate, a newer
            // schema) stops the start.
            Err(e @ StoreError::Unavailable { .. }) => {
                tracing::warn!(
                    error = %e,
                    "the PostgreSQL store does not answer at start: filtering goes on with no \
                     approval until it does, and requests cannot be taken"
                );
                store
                    .handle
                    .spawn(prepare_later(store.pool.clone(), store.shared.clone()));
            }
            Err(e) => return Err(e),
        }
        store
            .handle
            .spawn(listen(config, tls, store.shared.clone()));
        Ok(store)
    }

    /// Whether the database answered the last call, and the listening connection is up.
    /// For `/health` and the metrics; the request path never needs it.
    pub fn available(&self) -> bool {
        self.shared.ready.load(Ordering::SeqCst) && self.shared.available.load(Ordering::SeqCst)
    }

    /// `host:port/database`, for messages.
    pub fn db(&self) -> &str {
        &self.shared.db
    }

    fn run<T, F>(&self, fut: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, Fail>> + Send + 'static,
        T: Send + 'static,
    {
        if !self.shared.ready.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                db: self.shared.db.to_string(),
                detail: "not answered since the start (the schema is not checked yet)".into(),
            });
        }
        self.run_for(self.timeout, fut)
    }

    /// Runs `fut` on the store's runtime within `limit`, and waits for it here.
    fn run_for<T, F>(&self, limit: Duration, fut: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, Fail>> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.shared.db.clone();
        let task = self.handle.spawn(async move {
            match tokio::time::timeout(limit, fut).await {
                Ok(r) => r.map_err(|f| f.into_store(&db)),
                Err(_) => Err(StoreError::Unavailable {
                    db: db.to_string(),
                    detail: format!("no answer within {} s", limit.as_secs_f32()),
                }),
            }
        });
        let r = futures_executor::block_on(task).unwrap_or_else(|e| {
            Err(StoreError::Postgres {
                db: self.shared.db.to_string(),
                detail: format!("the store's task failed: {e}"),
            })
        });
        match &r {
            Ok(_) => self.shared.set_available(true, None),
            Err(e @ StoreError::Unavailable { .. }) => self.shared.set_available(false, Some(e)),
            Err(_) => {}
        }
        r
    }

    /// Reads the change counter in the background when the last read is older than
    /// [`CATCH_UP`]; never waits.
    fn catch_up(&self) {
        let s = &self.shared;
        let due = s.since_born() - s.read_at.load(Ordering::SeqCst) >= CATCH_UP.as_millis() as i64;
        if !due || s.reading.swap(true, Ordering::SeqCst) {
            return;
        }
        let shared = s.clone();
        let pool = self.pool.clone();
        let limit = self.timeout;
        self.handle.spawn(async move {
            let r = tokio::time::timeout(limit, read_counter(pool)).await;
            match r {
                Ok(Ok(n)) => {
                    shared.counter.store(n, Ordering::SeqCst);
                    shared.set_available(true, None);
                }
                Ok(Err(f)) => {
                    let e = f.into_store(&shared.db);
                    if matches!(e, StoreError::Unavailable { .. }) {
                        shared.set_available(false, Some(&e));
                    }
                }
                Err(_) => shared.set_available(false, None),
            }
            shared.read_at.store(shared.since_born(), Ordering::SeqCst);
            shared.reading.store(false, Ordering::SeqCst);
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        id: i64,
        admin: &str,
        status: Status,
        scope: Option<&Scope>,
        until: Option<i64>,
        message: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        let admin = admin.to_string();
        let scope = scope.map(ToString::to_string);
        let message = message.map(str::to_string);
        self.run(async move {
            let mut c = pool.get().await?;
            let tx = c.transaction().await?;
            let current = tx
                .query_opt(
                    "SELECT status FROM requests WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await?;
            match current.as_ref().map(|r| r.get::<_, &str>(0)) {
                None => return Err(StoreError::NotFound(id).into()),
                Some("refused") if status == Status::Refused => {
                    return Err(StoreError::AlreadyDecided(id).into());
                }
                _ => {}
            }
            tx.execute(
                "UPDATE requests SET status = $2, scope = $3, until = $4, decided_by = $5,
                 decided_at = $6, message = $7, updated = $6 WHERE id = $1",
                &[
                    &id,
                    &status.as_str(),
                    &scope,
                    &until,
                    &admin,
                    &now,
                    &message,
                ],
            )
            .await
            .map_err(|e| {
                // Another pending request of the same person for the same site cannot
                // exist; reopening is not offered, so this is a decided request.
                if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                    Fail::Store(StoreError::AlreadyDecided(id))
                } else {
                    Fail::Pg(e)
                }
            })?;
            tx.execute(
                "INSERT INTO decisions (request, at, admin, status, scope, until, message)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &id,
                    &now,
                    &admin,
                    &status.as_str(),
                    &scope,
                    &until,
                    &message,
                ],
            )
            .await?;
            bump(&tx).await?;
            tx.commit().await?;
            Ok(())
        })?;
        self.shared.changed();
        Ok(())
    }

    /// Copies what a single proxy's SQLite store holds: requests and decisions keeping
    /// their numbers, block counts and dashboard counters. Idempotent: what is already
    /// here (the same number, or the same counter key) is skipped. A request whose
    /// number is taken here by another request is not copied (a conflict), nor are its
    /// decisions.
    pub fn import_sqlite(&self, src: &SqliteStore) -> Result<Imported, StoreError> {
        let requests = src.list(None)?;
        let decisions = src.history()?;
        let blocks = src.all_blocks()?;
        let mut counts = Vec::new();
        for dim in Dim::ALL {
            for (bucket, key, n) in src.counts(dim, i64::MIN, i64::MAX)? {
                counts.push((dim.as_str(), bucket, key, n));
            }
        }
        let pool = self.pool.clone();
        let done = self.run_for(IMPORT_TIME, async move {
            let mut c = pool.get().await?;
            let tx = c.transaction().await?;
            let mut out = Imported::default();
            let mut conflicts = HashSet::new();
            let insert = tx
                .prepare(&format!(
                    "INSERT INTO requests ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
                     $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
                     ON CONFLICT DO NOTHING"
                ))
                .await?;
            for r in &requests {
                let groups = json_list(&r.groups);
                let categories = json_list(&r.categories);
                let n = tx
                    .execute(
                        &insert,
                        &[
                            &r.id,
                            &r.created,
                            &r.updated,
                            &r.requester,
                            &r.user,
                            &r.ip,
                            &groups,
                            &r.host,
                            &r.url,
                            &categories,
                            &r.rule,
                            &r.reason_code,
                            &r.justification,
                            &r.wanted,
                            &r.asked,
                            &r.status.as_str(),
                            &r.scope,
                            &r.until,
                            &r.decided_by,
                            &r.decided_at,
                            &r.message,
                        ],
                    )
                    .await?;
                if n == 1 {
                    out.requests.copied += 1;
                    continue;
                }
                let same = tx
                    .query_opt(
                        "SELECT 1 FROM requests WHERE id = $1 AND created = $2
                         AND requester = $3 AND host = $4",
                        &[&r.id, &r.created, &r.requester, &r.host],
                    )
                    .await?;
                if same.is_some() {
                    out.requests.skipped += 1;
                } else {
                    out.requests.conflicts += 1;
                    conflicts.insert(r.id);
                }
            }
            for d in &decisions {
                if conflicts.contains(&d.request) {
                    out.decisions.conflicts += 1;
                    continue;
                }
                let n = tx
                    .execute(
                        "INSERT INTO decisions (id, request, at, admin, status, scope, until,
                         message) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                        &[
                            &d.id,
                            &d.request,
                            &d.at,
                            &d.admin,
                            &d.status.as_str(),
                            &d.scope,
                            &d.until,
                            &d.message,
                        ],
                    )
                    .await?;
                if n == 1 {
                    out.decisions.copied += 1;
                } else {
                    out.decisions.skipped += 1;
                }
            }
            for t in ["requests", "decisions"] {
                tx.execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{t}', 'id'),
                         GREATEST((SELECT MAX(id) FROM {t}), 1))"
                    ),
                    &[],
                )
                .await?;
            }
            for chunk in blocks.chunks(IMPORT_BATCH) {
                let (who, host, day, n) = columns4(chunk);
                let copied = tx
                    .execute(
                        "INSERT INTO blocks (requester, host, day, n)
                         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
                         ON CONFLICT DO NOTHING",
                        &[&who, &host, &day, &n],
                    )
                    .await?;
                out.blocks.copied += copied;
                out.blocks.skipped += chunk.len() as u64 - copied;
            }
            for chunk in counts.chunks(IMPORT_BATCH) {
                let dim: Vec<&str> = chunk.iter().map(|c| c.0).collect();
                let bucket: Vec<i64> = chunk.iter().map(|c| c.1).collect();
                let key: Vec<&str> = chunk.iter().map(|c| c.2.as_str()).collect();
                let n: Vec<i64> = chunk.iter().map(|c| c.3).collect();
                let copied = tx
                    .execute(
                        "INSERT INTO counts (dim, bucket, key, n)
                         SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[])
                         ON CONFLICT DO NOTHING",
                        &[&dim, &bucket, &key, &n],
                    )
                    .await?;
                out.counts.copied += copied;
                out.counts.skipped += chunk.len() as u64 - copied;
            }
            bump(&tx).await?;
            tx.commit().await?;
            Ok(out)
        })?;
        self.shared.changed();
        Ok(done)
    }
}

/// What [`PgStore::import_sqlite`] did, by kind of row.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub requests: Copied,
    pub decisions: Copied,
    pub blocks: Copied,
    pub counts: Copied,
}

/// Rows copied, rows already there, rows whose number is taken by another.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub copied: u64,
    pub skipped: u64,
    pub conflicts: u64,
}

fn columns4(rows: &[(String, String, i64, i64)]) -> (Vec<&str>, Vec<&str>, Vec<i64>, Vec<i64>) {
    (
        rows.iter().map(|r| r.0.as_str()).collect(),
        rows.iter().map(|r| r.1.as_str()).collect(),
        rows.iter().map(|r| r.2).collect(),
        rows.iter().map(|r| r.3).collect(),
    )
}

/// Applies the missing migrations in one transaction under the advisory lock; returns
/// the schema version.
async fn migrate(pool: Pool, db: Arc<str>) -> Result<i32, Fail> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            applied BIGINT NOT NULL
         )",
    )
    .await?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    let known = MIGRATIONS.len() as i32;
    if current > known {
        return Err(StoreError::TooNew {
            path: db.to_string(),
            found: current.into(),
            known: known.into(),
        }
        .into());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied)
             VALUES ($1, EXTRACT(EPOCH FROM now())::BIGINT)",
            &[&version],
        )
        .await?;
        tracing::info!(version, "request database migrated");
    }
    tx.commit().await?;
    Ok(known)
}

/// For a store opened while the database did not answer: migrates as soon as it does
/// (retried with a backoff from 0.1 s to 5 s), then counts one change so that every
/// reader loads the approvals.
async fn prepare_later(pool: Pool, shared: Arc<Shared>) {
    let mut wait = Duration::from_millis(100);
    loop {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
        let done =
            tokio::time::timeout(MIGRATION_TIME, migrate(pool.clone(), shared.db.clone())).await;
        let Ok(Ok(schema)) = done else {
            continue;
        };
        let Ok(Ok(n)) = tokio::time::timeout(MIGRATION_TIME, read_counter(pool.clone())).await
        else {
            continue;
        };
        shared.counter.store(n, Ordering::SeqCst);
        shared.read_at.store(shared.since_born(), Ordering::SeqCst);
        shared.ready.store(true, Ordering::SeqCst);
        shared.changed();
        shared.set_available(true, None);
        tracing::info!(db = %shared.db, schema, "unblock requests in PostgreSQL");
        return;
    }
}

async fn read_counter(pool: Pool) -> Result<i64, Fail> {
    let c = pool.get().await?;
    Ok(c.query_one("SELECT n FROM changes", &[]).await?.get(0))
}

/// Bumps the change counter and notifies the other proxies, both at the commit of `tx`.
async fn bump(tx: &tokio_postgres::Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    tx.batch_execute(&format!("UPDATE changes SET n = n + 1; NOTIFY {CHANNEL}"))
        .await
}

/// Listens for change notifications for as long as the runtime lives, reconnecting
/// with backoff (0.1 s doubling up to 5 s) when the connection is lost.
async fn listen(
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    shared: Arc<Shared>,
) {
    let first = Duration::from_millis(100);
    let mut backoff = first;
    loop {
        let r = match &tls {
            Some(t) => match config.connect(t.clone()).await {
                Ok((client, conn)) => listen_on(client, conn, &shared).await,
                Err(e) => Err(e),
            },
            None => match config.connect(NoTls).await {
                Ok((client, conn)) => listen_on(client, conn, &shared).await,
                Err(e) => Err(e),
            },
        };
        match r {
            // It was up, and went away: try again soon.
            Ok(()) => {
                backoff = first;
                shared.set_available(false, None);
            }
            Err(e) => {
                let e = pg_error(&e, &shared.db);
                if matches!(e, StoreError::Unavailable { .. }) {
                    shared.set_available(false, Some(&e));
                } else {
                    tracing::warn!(error = %e, "the PostgreSQL store cannot listen for changes");
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Sends `LISTEN` and counts notifications until the connection ends.
async fn listen_on<S, T>(
    client: tokio_postgres::Client,
    mut conn: tokio_postgres::Connection<S, T>,
    shared: &Arc<Shared>,
) -> Result<(), tokio_postgres::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let counting = shared.clone();
    let pump = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => counting.changed(),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "PostgreSQL listening connection ended");
                    return;
                }
                None => return,
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    // Anything may have changed while nobody listened.
    shared.changed();
    shared.set_available(true, None);
    let _ = pump.await;
    drop(client);
    Ok(())
}

const COLUMNS: &str = "id, created, updated, requester, \"user\", ip, groups, host, url, \
     categories, rule, reason_code, justification, wanted, asked, status, scope, until, \
     decided_by, decided_at, message";

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn from_json(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

fn request_row(r: &Row) -> RequestRow {
    RequestRow {
        id: r.get(0),
        created: r.get(1),
        updated: r.get(2),
        requester: r.get(3),
        user: r.get(4),
        ip: r.get(5),
        groups: from_json(r.get(6)),
        host: r.get(7),
        url: r.get(8),
        categories: from_json(r.get(9)),
        rule: r.get(10),
        reason_code: r.get(11),
        justification: r.get(12),
        wanted: r.get(13),
        asked: r.get(14),
        status: r.get::<_, &str>(15).parse().unwrap_or(Status::Pending),
        scope: r.get(16),
        until: r.get(17),
        decided_by: r.get(18),
        decided_at: r.get(19),
        message: r.get(20),
    }
}

impl Store for PgStore {
    fn submit(&self, r: &NewRequest, now: i64) -> Result<Submitted, StoreError> {
        let r = r.clone();
        let pool = self.pool.clone();
        let stamp = time::OffsetDateTime::from_unix_timestamp(now)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let added = format!("\n\n[{stamp}] {}", r.justification);
        let db = self.shared.db.clone();
        let out = self.run(async move {
            let mut c = pool.get().await?;
            // Two proxies may take the same person's request for the same site at once:
            // the second insert then finds the first one's pending request, and merges
            // into it on the next turn.
            for _ in 0..3 {
                let tx = c.transaction().await?;
                let pending = tx
                    .query_opt(
                        "SELECT id FROM requests WHERE requester = $1 AND host = $2
                         AND status = 'pending' FOR UPDATE",
                        &[&r.requester, &r.host],
                    )
                    .await?;
                let out = match pending {
                    Some(row) => {
                        let id: i64 = row.get(0);
                        tx.execute(
                            "UPDATE requests SET justification = justification || $2,
                             asked = asked + 1, updated = $3, wanted = COALESCE($4, wanted)
                             WHERE id = $1",
                            &[&id, &added, &now, &r.wanted],
                        )
                        .await?;
                        Submitted::Merged(id)
                    }
                    None => {
                        let row = tx
                            .query_opt(
                                "INSERT INTO requests (created, updated, requester, \"user\",
                                 ip, groups, host, url, categories, rule, reason_code,
                                 justification, wanted)
                                 VALUES ($1, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                                 ON CONFLICT (requester, host) WHERE status = 'pending'
                                 DO NOTHING RETURNING id",
                                &[
                                    &now,
                                    &r.requester,
                                    &r.user,
                                    &r.ip,
                                    &json_list(&r.groups),
                                    &r.host,
                                    &r.url,
                                    &json_list(&r.categories),
                                    &r.rule,
                                    &r.reason_code,
                                    &r.justification,
                                    &r.wanted,
                                ],
                            )
                            .await?;
                        match row {
                            Some(row) => Submitted::Created(row.get(0)),
                            None => {
                                tx.rollback().await?;
                                continue;
                            }
                        }
                    }
                };
                bump(&tx).await?;
                tx.commit().await?;
                return Ok(out);
            }
            Err(StoreError::Postgres {
                db: db.to_string(),
                detail: "the request kept changing under this one; try again".into(),
            }
            .into())
        })?;
        self.shared.changed();
        Ok(out)
    }

    fn get(&self, id: i64) -> Result<RequestRow, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await?;
            let row = c
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM requests WHERE id = $1"),
                    &[&id],
                )
                .await?;
            row.map(|r| request_row(&r))
                .ok_or(Fail::Store(StoreError::NotFound(id)))
        })
    }

    fn list(&self, status: Option<Status>) -> Result<Vec<RequestRow>, StoreError> {
        let pool = self.pool.clone();
        let status = status.map(Status::as_str);
        self.run(async move {
            let c = pool.get().await?;
            let rows = c
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM requests WHERE $1::TEXT IS NULL OR status = $1
                         ORDER BY id DESC"
                    ),
                    &[&status],
                )
                .await?;
            Ok(rows.iter().map(request_row).collect())
        })
    }

    fn list_for(&self, requester: &str) -> Result<Vec<RequestRow>, StoreError> {
        let pool = self.pool.clone();
        let requester = requester.to_string();
        self.run(async move {
            let c = pool.get().await?;
            let rows = c
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM requests WHERE requester = $1 ORDER BY id DESC"
                    ),
                    &[&requester],
                )
                .await?;
            Ok(rows.iter().map(request_row).collect())
        })
    }

    fn approve(
        &self,
        id: i64,
        admin: &str,
        scope: &Scope,
        until: Option<i64>,
        message: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.decide(
            id,
            admin,
            Status::Approved,
            Some(scope),
            until,
            message,
            now,
        )
    }

    fn refuse(&self, id: i64, admin: &str, message: &str, now: i64) -> Result<(), StoreError> {
        self.decide(id, admin, Status::Refused, None, None, Some(message), now)
    }

    fn history(&self) -> Result<Vec<DecisionRow>, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await?;
            let rows = c
                .query(
                    "SELECT d.id, d.request, d.at, d.admin, d.status, d.scope, d.until,
                            d.message, r.host, r.requester
                     FROM decisions d JOIN requests r ON r.id = d.request ORDER BY d.id",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| DecisionRow {
                    id: r.get(0),
                    request: r.get(1),
                    at: r.get(2),
                    admin: r.get(3),
                    status: r.get::<_, &str>(4).parse().unwrap_or(Status::Pending),
                    scope: r.get(5),
                    until: r.get(6),
                    message: r.get(7),
                    host: r.get(8),
                    requester: r.get(9),
                })
                .collect())
        })
    }

    fn approvals(&self, now: i64) -> Result<Vec<ApprovalRow>, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await?;
            let rows = c
                .query(
                    "SELECT id, host, requester, scope, until FROM requests
                     WHERE status = 'approved' AND (until IS NULL OR until > $1)",
                    &[&now],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| ApprovalRow {
                    request: r.get(0),
                    host: r.get(1),
                    requester: r.get(2),
                    scope: r.get::<_, Option<String>>(3).unwrap_or_default(),
                    until: r.get(4),
                })
                .collect())
        })
    }

    fn count_blocks(&self, counts: &[(String, String, i64, i64)]) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        // One row per key, in key order: one statement, and two proxies adding to the
        // same keys lock them in the same order.
        let mut merged = BTreeMap::<(&str, &str, i64), i64>::new();
        for (who, host, day, n) in counts {
            *merged.entry((who, host, *day)).or_default() += n;
        }
        let who: Vec<String> = merged.keys().map(|k| k.0.to_string()).collect();
        let host: Vec<String> = merged.keys().map(|k| k.1.to_string()).collect();
        let day: Vec<i64> = merged.keys().map(|k| k.2).collect();
        let n: Vec<i64> = merged.values().copied().collect();
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await?;
            c.execute(
                "INSERT INTO blocks (requester, host, day, n)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
                 ON CONFLICT (requester, host, day) DO UPDATE SET n = blocks.n + EXCLUDED.n",
                &[&who, &host, &day, &n],
            )
            .await?;
            Ok(())
        })
    }

    fn blocks(&self, requester: &str, host: &str, since_day: i64) -> Result<i64, StoreError> {
        let pool = self.pool.clone();
        let requester = requester.to_string();
        let host = host.to_string();
        self.run(async move {
            let c = pool.get().await?;
            Ok(c.query_one(
                "SELECT COALESCE(SUM(n), 0)::BIGINT FROM blocks
                 WHERE requester = $1 AND host = $2 AND day >= $3",
                &[&requester, &host, &since_day],
            )
            .await?
            .get(0))
        })
    }

    fn version(&self) -> Result<i64, StoreError> {
        self.catch_up();
        Ok(self.shared.version())
    }

    fn available(&self) -> bool {
        PgStore::available(self)
    }

    fn describe(&self) -> (&'static str, String) {
        ("postgres", self.db().to_string())
    }

    fn shares_sessions(&self) -> bool {
        true
    }

    fn session_start(
        &self,
        key: &str,
        admin: &str,
        csrf: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        let (key, admin, csrf) = (key.to_string(), admin.to_string(), csrf.to_string());
        self.run(async move {
            let c = pool.get().await?;
            // Sessions that ended long ago go with each login (a handful a day).
            c.execute(
                "DELETE FROM admin_sessions WHERE last < $1",
                &[&(now - SESSION_KEPT)],
            )
            .await?;
            c.execute(
                "INSERT INTO admin_sessions (key, admin, csrf, started, last)
                 VALUES ($1, $2, $3, $4, $4)",
                &[&key, &admin, &csrf, &now],
            )
            .await?;
            Ok(())
        })
    }

    fn session_get(
        &self,
        key: &str,
        now: i64,
        idle: i64,
        absolute: i64,
    ) -> Result<Option<(String, String)>, StoreError> {
        let pool = self.pool.clone();
        let key = key.to_string();
        self.run(async move {
            let c = pool.get().await?;
            let row = c
                .query_opt(
                    "UPDATE admin_sessions SET last = $2
                     WHERE key = $1 AND last > $3 AND started > $4
                     RETURNING admin, csrf",
                    &[&key, &now, &(now - idle), &(now - absolute)],
                )
                .await?;
            Ok(row.map(|r| (r.get(0), r.get(1))))
        })
    }

    fn session_end(&self, key: &str) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        let key = key.to_string();
        self.run(async move {
            let c = pool.get().await?;
            c.execute("DELETE FROM admin_sessions WHERE key = $1", &[&key])
                .await?;
            Ok(())
        })
    }

    fn purge(&self, before: i64, now: i64, batch: usize) -> Result<Purged, StoreError> {
        let pool = self.pool.clone();
        let batch = batch as i64;
        let done = self.run(async move {
            let mut c = pool.get().await?;
            let tx = c.transaction().await?;
            // Requests whose life is over: decided, last changed before the cutoff, and
            // not an approval still in force.
            let ids: Vec<i64> = tx
                .query(
                    "SELECT id FROM requests
                     WHERE updated < $1 AND status <> 'pending'
                       AND NOT (status = 'approved' AND (until IS NULL OR until > $2))
                     ORDER BY id LIMIT $3",
                    &[&before, &now, &batch],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let decisions = tx
                .execute("DELETE FROM decisions WHERE request = ANY($1)", &[&ids])
                .await?;
            let requests = tx
                .execute("DELETE FROM requests WHERE id = ANY($1)", &[&ids])
                .await?;
            let before_day = before.div_euclid(86_400);
            let blocks = tx
                .execute(
                    "DELETE FROM blocks WHERE (requester, host, day) IN
                       (SELECT requester, host, day FROM blocks WHERE day < $1 LIMIT $2)",
                    &[&before_day, &batch],
                )
                .await?;
            let mut counts = 0;
            for dim in Dim::ALL {
                counts += tx
                    .execute(
                        "DELETE FROM counts WHERE (dim, bucket, key) IN
                           (SELECT dim, bucket, key FROM counts
                            WHERE dim = $1 AND bucket < $2 LIMIT $3)",
                        &[&dim.as_str(), &dim.bucket(before), &batch],
                    )
                    .await?;
            }
            let done = Purged {
                requests,
                decisions,
                blocks,
                counts,
            };
            if !done.is_empty() {
                bump(&tx).await?;
            }
            tx.commit().await?;
            Ok(done)
        })?;
        if !done.is_empty() {
            self.shared.changed();
        }
        Ok(done)
    }

    fn add_counts(&self, counts: &[Tallied]) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut merged = BTreeMap::<(&str, i64, &str), i64>::new();
        for c in counts {
            *merged
                .entry((c.dim.as_str(), c.bucket, &c.key))
                .or_default() += c.n;
        }
        let dim: Vec<String> = merged.keys().map(|k| k.0.to_string()).collect();
        let bucket: Vec<i64> = merged.keys().map(|k| k.1).collect();
        let key: Vec<String> = merged.keys().map(|k| k.2.to_string()).collect();
        let n: Vec<i64> = merged.values().copied().collect();
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await?;
            c.execute(
                "INSERT INTO counts (dim, bucket, key, n)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[])
                 ON CONFLICT (dim, bucket, key) DO UPDATE SET n = counts.n + EXCLUDED.n",
                &[&dim, &bucket, &key, &n],
            )
            .await?;
            Ok(())
        })
    }

    fn counts(&self, dim: Dim, from: i64, to: i64) -> Result<Vec<(i64, String, i64)>, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await?;
            // Keys in byte order, as SQLite sorts them, whatever the database's collation.
            let rows = c
                .query(
                    "SELECT bucket, key, n FROM counts
                     WHERE dim = $1 AND bucket >= $2 AND bucket < $3
                     ORDER BY bucket, key COLLATE \"C\"",
                    &[&dim.as_str(), &from, &to],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect())
        })
    }

    fn top(
        &self,
        dim: Dim,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let pool = self.pool.clone();
        let limit = limit as i64;
        self.run(async move {
            let c = pool.get().await?;
            let rows = c
                .query(
                    "SELECT key, SUM(n)::BIGINT AS total FROM counts
                     WHERE dim = $1 AND bucket >= $2 AND bucket < $3
                     GROUP BY key ORDER BY total DESC, key COLLATE \"C\" LIMIT $4",
                    &[&dim.as_str(), &from, &to, &limit],
                )
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn weekly_requests(&self, from_week: i64) -> Result<Vec<(i64, i64, i64, i64)>, StoreError> {
        let pool = self.pool.clone();
        let since = week_start(from_week);
        self.run(async move {
            let c = pool.get().await?;
            let mut weeks = BTreeMap::<i64, (i64, i64, i64)>::new();
            for r in c
                .query(
                    "SELECT created FROM requests WHERE created >= $1",
                    &[&since],
                )
                .await?
            {
                weeks.entry(week_of(r.get(0))).or_default().0 += 1;
            }
            for r in c
                .query("SELECT at, status FROM decisions WHERE at >= $1", &[&since])
                .await?
            {
                let w = weeks.entry(week_of(r.get(0))).or_default();
                match r.get::<_, &str>(1) {
                    "approved" => w.1 += 1,
                    "refused" => w.2 += 1,
                    _ => {}
                }
            }
            Ok(weeks
                .into_iter()
                .map(|(w, (o, a, r))| (w, o, a, r))
                .collect())
        })
    }
}
