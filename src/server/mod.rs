//! Sockets only, no decisions: binds the three listeners, runs the accept loops with
//! hyper, counts connections, and shuts down gracefully (stop accepting, let exchanges
//! and tunnels in flight finish within a bounded time, flush the trace).

pub mod instance;
pub mod limits;
pub mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

use self::limits::{ConnLimits, Held};
use self::workers::Workers;
use crate::action::body::Body;
use crate::action::bump::Bumper;
use crate::action::ca::{self, CaFiles, CertAuthority};
use crate::action::dial::Resolver;
use crate::action::dial::{Dialer, Guard};
use crate::action::pool::Pool;
use crate::admin::AdminState;
use crate::audit::{AuditWriter, Destination, Format, Life};
use crate::identity::auth::{Authenticator, UsersFile};
use crate::identity::directory::Directory;
use crate::identity::workstation::Workstations;
use crate::metrics::Metrics;
use crate::per_worker::PerWorker;
use crate::pipeline::ProxyState;
use crate::pipeline::identify::ConnIdentity;
use crate::portal::PortalState;
use crate::settings::{Limits, Settings, TraceTo};
use crate::snapshot::{Live, Snapshot};
use crate::tracker::Tracker;
use crate::unblock::UnblockService;
use crate::unblock::sqlite::SqliteStore;
use crate::unblock::token;

/// Addresses actually bound (port 0 becomes a real port).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub proxy: SocketAddr,
    pub portal: SocketAddr,
    pub admin: SocketAddr,
}

/// Reads the server settings again (the same file and flags as at start), for SIGHUP;
/// the problems found, one per line, otherwise.
pub type Reread = Box<dyn Fn() -> Result<Settings, String> + Send + Sync>;

/// Runs the proxy until SIGTERM or SIGINT, with `pages` (compiled by the caller, which
/// reports a broken template as a configuration error). Prints the banner once listening.
/// SIGHUP reloads the policy, the users file, and from the server file read again
/// (`reread`) the pages and `trace.readers`.
pub async fn serve(
    mut cfg: Settings,
    pages: crate::pages::Pages,
    reread: Reread,
) -> anyhow::Result<()> {
    ca::install_crypto_provider();
    let metrics = Arc::new(Metrics::new());
    // Nothing is created before the data folder is known to be usable and the listeners
    // are bound: a mistake there leaves no file behind.
    instance::preflight(&cfg).map_err(|e| anyhow::anyhow!(ConfigError(e.to_string())))?;
    let as_read = cfg.clone();
    let live = load_policy(&cfg, &metrics)?;
    crate::pages::templates::install(pages);
    let (listeners, bound) = bind(&mut cfg).await?;
    let _claim = instance::claim(&cfg).map_err(|e| anyhow::anyhow!(ConfigError(e.to_string())))?;
    let Data { token_key, auth } = open_data(&cfg)?;
    // Before the trace: its writer counts the dashboard's figures into this store.
    let unblock = open_unblock(&cfg)?;
    let (audit, writer) = AuditWriter::start_living(
        trace_outputs(&cfg)?,
        cfg.trace_queue,
        metrics.trace_dropped.clone(),
        Some(trace_life(&cfg)?),
        cfg.trace_life
            .durable
            .then(|| metrics.trace_wait_seconds.clone()),
        Some(Box::new(crate::report::Counting::new(
            unblock.store().clone(),
            report_flush_every(),
        ))),
    )
    .with_context(|| "cannot open the trace")?;
    let dialer = dialer(&cfg, &bound, &live);
    let n_workers = workers::count(cfg.workers);
    let pool = Arc::new(
        Workers::start(n_workers, cfg.worker_spin).context("cannot start the worker threads")?,
    );
    let bumper = load_bumper(&cfg, dialer.clone(), n_workers)?;
    let directory = open_directory(&cfg, &live)?;
    let _unblock_sync = tokio::spawn(unblock_sync(unblock.clone()));
    let _unblock_purge = tokio::spawn(unblock_purge(unblock.clone(), cfg.requests_retention_days));
    let tunnels = Tracker::default();
    let mut admin = AdminState::new(
        live.clone(),
        unblock.clone(),
        metrics.clone(),
        tunnels.clone(),
        bumper.clone(),
        admins_file(&cfg),
    );
    admin.directory = directory.clone();
    admin.trace = writer.status();
    admin.trace_access = crate::admin::trace::TraceAccess {
        live: cfg
            .trace_path
            .clone()
            .filter(|_| cfg.trace_format == "json"),
        data_dir: cfg.data_dir.clone(),
        tz: crate::clock::zone(&cfg.time_zone).map_err(|e| anyhow::anyhow!(ConfigError(e)))?,
        readers: Arc::new(arc_swap::ArcSwap::from_pointee(
            cfg.trace_life.readers.clone(),
        )),
    };
    let readers = admin.trace_access.readers.clone();
    admin.names_visible_to = cfg.trace_life.names_visible_to.clone();
    let key_path = cfg.data_dir.join("pseudonyms.key");
    admin.pseudonym_key = token::load_or_create_key(&key_path)
        .with_context(|| format!("cannot use the key {}", key_path.display()))?
        .into();
    let states = States {
        proxy: Arc::new(ProxyState {
            bumper: bumper.clone(),
            unblock: unblock.clone(),
            // One pool of site connections per worker: a connection stays on its thread.
            upstream: PerWorker::new(n_workers, || {
                Pool::new(dialer.clone(), cfg.limits.upstream_keepalive, 64)
            }),
            dialer,
            live: live.clone(),
            metrics: metrics.clone(),
            audit,
            auth,
            directory: directory.clone(),
            #[cfg(feature = "kerberos")]
            negotiate: open_negotiate(&cfg)?,
            workstations: Workstations::new(cfg.reverse_dns, Duration::from_secs(600)),
            token_key: token_key.clone(),
            tunnels: tunnels.clone(),
            tz: crate::clock::zone(&cfg.time_zone).map_err(|e| anyhow::anyhow!(ConfigError(e)))?,
            cfg: cfg.clone(),
        }),
        portal: Arc::new(PortalState {
            cfg: cfg.clone(),
            live: live.clone(),
            unblock: unblock.clone(),
            token_key,
        }),
        admin: Arc::new(admin),
    };
    let _watcher = watch_policy(&cfg, &live);

    let (stop_tx, stop_rx) = watch::channel(false);
    let writer = Arc::new(writer);
    let w = writer.clone();
    let users = states
        .proxy
        .auth
        .clone()
        .map(|a| (a, cfg.auth.users_file.clone()));
    let signals = tokio::spawn(signal_loop(
        live.clone(),
        users,
        Reload {
            reread,
            running: as_read,
            readers,
        },
        move || w.reopen(),
        stop_tx,
    ));

    banner(&cfg, &bound, &live, bumper.as_deref(), pool.len());
    let status = format!("serving on {}", bound.proxy);
    instance::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
    run_listeners(listeners, &states, &cfg, &pool, &metrics, &live, stop_rx).await;
    instance::notify(&[sd_notify::NotifyState::Stopping]);

    // Tunnels outlive their HTTP exchange: give them the same grace.
    let tunnels = &states.proxy.tunnels;
    if tokio::time::timeout(cfg.shutdown_grace, tunnels.idle())
        .await
        .is_err()
    {
        tracing::warn!(
            tunnels = tunnels.active(),
            "grace period over: closing the remaining tunnels"
        );
    }
    signals.abort();
    let _ = signals.await;
    // Stopping the workers cancels what the grace period left; joining them blocks.
    let _ = tokio::task::spawn_blocking(move || drop(pool)).await;
    drop(states);
    match Arc::try_unwrap(writer) {
        Ok(w) => w.shutdown().await,
        Err(_) => {
            tracing::error!("the trace writer is still shared at shutdown; some lines may be lost")
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// The state of each listener's handler; what they share is shared by `Arc`.
struct States {
    proxy: Arc<ProxyState>,
    portal: Arc<PortalState>,
    admin: Arc<AdminState>,
}

/// What the data folder gives at start.
struct Data {
    /// Signs the unblock tokens of block pages and the portal's seals.
    token_key: Arc<[u8]>,
    /// The users of proxy authentication; `None` when it is off everywhere.
    auth: Option<Arc<Authenticator>>,
}

/// The directory when one is configured: its client is set up now (TLS roots read), and
/// its first connection is tried in the background, so that a directory that is down
/// does not keep the proxy from starting (the policy's network groups apply meanwhile).
fn open_directory(cfg: &Settings, live: &Live) -> anyhow::Result<Option<Arc<Directory>>> {
    let Some(d) = &cfg.directory else {
        return Ok(None);
    };
    let dir = Directory::new(d.clone())
        .map_err(|e| anyhow::anyhow!(ConfigError(format!("directory: {e}"))))?;
    let dir = Arc::new(dir);
    // The policy's short group names are resolved at each load.
    let names = dir.clone();
    live.on_publish(move |s| names.resolve_names(s.policy.groups.directory_names()));
    let probe = dir.clone();
    tokio::spawn(async move {
        match probe.probe().await {
            Ok(()) => tracing::info!("directory reachable"),
            Err(e) => {
                tracing::warn!(error = %e, "directory unreachable at start; network groups apply until it answers")
            }
        }
    });
    Ok(Some(dir))
}

/// The Kerberos acceptor when Negotiate is offered: a missing or empty keytab stops the
/// start, naming it.
#[cfg(feature = "kerberos")]
fn open_negotiate(
    cfg: &Settings,
) -> anyhow::Result<Option<Arc<crate::identity::negotiate::Acceptor>>> {
    if !cfg.auth.negotiate {
        return Ok(None);
    }
    let acceptor = crate::identity::negotiate::Acceptor::new()
        .map_err(|e| anyhow::anyhow!(ConfigError(format!("Kerberos: {e}"))))?;
    Ok(Some(Arc::new(acceptor)))
}

/// The three listeners, bound.
struct Listeners {
    proxy: TcpListener,
    portal: TcpListener,
    admin: TcpListener,
}

/// Loads the policy in force at start (its problems printed, then a configuration
/// error), its warnings logged.
fn load_policy(cfg: &Settings, metrics: &Arc<Metrics>) -> anyhow::Result<Arc<Live>> {
    let first = match Snapshot::load(&cfg.policy, 1) {
        Ok(s) => s,
        Err(d) => {
            for diag in d.sorted() {
                eprintln!("{diag}");
            }
            anyhow::bail!(ConfigError(format!(
                "the policy {} is not valid",
                cfg.policy.display()
            )));
        }
    };
    for w in first.warnings.warnings() {
        tracing::warn!(target: "charte::policy", "{w}");
    }
    Ok(Arc::new(Live::new(first, &cfg.policy, metrics.clone())))
}

/// The data folder, the key that signs unblock tokens, and the users of proxy
/// authentication when it is on.
fn open_data(cfg: &Settings) -> anyhow::Result<Data> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create the data folder {}", cfg.data_dir.display()))?;
    let key_path = cfg.data_dir.join("secret.key");
    let token_key: Arc<[u8]> = token::load_or_create_key(&key_path)
        .with_context(|| format!("cannot use the key {}", key_path.display()))?
        .into();
    let auth = if cfg.auth.enabled() {
        let users = UsersFile::load(&cfg.auth.users_file)
            .map_err(|e| anyhow::anyhow!(ConfigError(e.to_string())))?;
        Some(Arc::new(Authenticator::new(users)))
    } else {
        None
    };
    Ok(Data { token_key, auth })
}

fn trace_format(cfg: &Settings) -> anyhow::Result<Format> {
    cfg.trace_format
        .parse()
        .map_err(|_| anyhow::anyhow!(ConfigError("bad trace format".into())))
}

/// How the trace's files live (`trace.rotate`, `compress`, `retention_days`), in the
/// town's time zone.
fn trace_life(cfg: &Settings) -> anyhow::Result<Life> {
    let tz = crate::clock::zone(&cfg.time_zone).map_err(|e| anyhow::anyhow!(ConfigError(e)))?;
    let l = &cfg.trace_life;
    Ok(Life {
        rotate: l.rotate,
        compress: l.compress,
        retention_days: l.retention_days,
        tz,
        access_audit: Some((cfg.data_dir.clone(), l.access_retention_days)),
    })
}

/// The trace's outputs: `trace_path` in `trace_format` first (the trace of record),
/// then `trace.outputs`.
fn trace_outputs(cfg: &Settings) -> anyhow::Result<Vec<(Destination, Format)>> {
    let first = match &cfg.trace_path {
        Some(p) => Destination::File(p.clone()),
        None => Destination::Stdout,
    };
    let mut outs = vec![(first, trace_format(cfg)?)];
    for o in &cfg.trace_outputs {
        let dest = match &o.to {
            TraceTo::Stdout => Destination::Stdout,
            TraceTo::File(p) => Destination::File(p.clone()),
            TraceTo::Syslog { to, facility } => Destination::Syslog {
                to: to.clone(),
                facility: *facility,
            },
        };
        let format = o
            .format
            .parse()
            .map_err(|_| anyhow::anyhow!(ConfigError("bad trace format".into())))?;
        outs.push((dest, format));
    }
    Ok(outs)
}

/// Binds the three listeners, and says where they really are when a port was 0.
async fn bind(cfg: &mut Settings) -> anyhow::Result<(Listeners, Bound)> {
    // The error names the listener and where its address comes from.
    let at = |a: SocketAddr, what: &'static str, flag: &'static str, key: &'static str| async move {
        TcpListener::bind(a).await.map_err(|e| {
            anyhow::anyhow!(ConfigError(format!(
                "cannot listen on {a} for the {what} ({flag}, or {key} in the server file): {e}"
            )))
        })
    };
    let l = Listeners {
        proxy: at(cfg.proxy, "proxy", "--listen", "listen.proxy").await?,
        portal: at(cfg.portal, "portal", "--portal-listen", "listen.portal").await?,
        admin: at(cfg.admin, "admin pages", "--admin-listen", "listen.admin").await?,
    };
    let bound = Bound {
        proxy: l.proxy.local_addr()?,
        portal: l.portal.local_addr()?,
        admin: l.admin.local_addr()?,
    };
    // Port 0 in a listen address means "any": say where we really are.
    if cfg.proxy.port() == 0 && cfg.public_proxy == cfg.proxy.to_string() {
        cfg.public_proxy = bound.proxy.to_string();
    }
    if cfg.portal.port() == 0 && cfg.portal_url == format!("http://{}", cfg.portal) {
        cfg.portal_url = format!("http://{}", bound.portal);
    }
    Ok((l, bound))
}

/// The one way out to sites: its guard never lets it reach the proxy's own listeners,
/// and follows the `internal_sites` of the policy in force.
fn dialer(cfg: &Settings, bound: &Bound, live: &Live) -> Dialer {
    let guard = Guard::new(vec![bound.proxy, bound.portal, bound.admin]);
    let g = guard.clone();
    live.on_publish(move |s| g.set_sites(s.policy.internal.clone()));
    Dialer::new(
        Resolver::new(cfg.hosts.clone()),
        guard,
        cfg.limits.upstream_connect_timeout,
    )
}

/// How often the dashboard's counts are written: [`crate::report::FLUSH_EVERY`], or
/// what [`crate::report::FLUSH_ENV`] says (tests).
fn report_flush_every() -> Duration {
    match std::env::var(crate::report::FLUSH_ENV) {
        Ok(v) => match v.parse::<u64>() {
            Ok(ms) if ms > 0 => {
                tracing::warn!(
                    "{}={ms}: the dashboard's counts are written every {ms} ms (for tests)",
                    crate::report::FLUSH_ENV
                );
                Duration::from_millis(ms)
            }
            _ => {
                tracing::warn!(
                    "{}={v:?} is not a number of milliseconds; ignored",
                    crate::report::FLUSH_ENV
                );
                crate::report::FLUSH_EVERY
            }
        },
        Err(_) => crate::report::FLUSH_EVERY,
    }
}

/// The unblock requests' store (SQLite in the data folder) and the approvals in force.
/// The unblock store the settings name: SQLite in the data folder (`requests.db`), or
/// the PostgreSQL database of `store.postgres` (its URL read from its file now).
pub fn open_store(
    cfg: &Settings,
) -> Result<Arc<dyn crate::unblock::store::Store>, crate::unblock::store::StoreError> {
    use crate::settings::StoreSettings;
    use crate::unblock::postgres::{PgOptions, PgStore};
    match &cfg.store {
        StoreSettings::Sqlite => Ok(Arc::new(SqliteStore::open(
            &cfg.data_dir.join("requests.db"),
        )?)),
        StoreSettings::Postgres(pg) => {
            let url = crate::settings::read_url_file(&pg.url_file).map_err(|detail| {
                crate::unblock::store::StoreError::Postgres {
                    db: "(store.postgres.url_file)".into(),
                    detail,
                }
            })?;
            let mut o = PgOptions::new(url);
            o.pool_size = pg.pool_size;
            o.ca_file = pg.ca_file.clone();
            Ok(Arc::new(PgStore::open(&o)?))
        }
    }
}

fn open_unblock(cfg: &Settings) -> anyhow::Result<Arc<UnblockService>> {
    let store = open_store(cfg).map_err(|e| anyhow::anyhow!(ConfigError(e.to_string())))?;
    Ok(Arc::new(UnblockService::new(store).map_err(|e| {
        anyhow::anyhow!(ConfigError(e.to_string()))
    })?))
}

/// Reloads on changes to the policy's files, when asked to (SIGHUP always reloads).
fn watch_policy(cfg: &Settings, live: &Arc<Live>) -> Option<tokio::task::JoinHandle<()>> {
    if !cfg.watch {
        return None;
    }
    match live.watch(Duration::from_millis(300)) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!("cannot watch the policy files ({e}); reload with SIGHUP");
            None
        }
    }
}

/// Serves the three listeners until `stop`: proxy connections on the worker threads,
/// the portal and admin pages on the main runtime, each behind the head limit.
async fn run_listeners(
    l: Listeners,
    states: &States,
    cfg: &Settings,
    pool: &Arc<Workers>,
    metrics: &Arc<Metrics>,
    live: &Arc<Live>,
    stop: watch::Receiver<bool>,
) {
    let st = states.proxy.clone();
    let proxy = tokio::spawn(accept_loop(
        l.proxy,
        Listening::new("proxy", cfg),
        Some(pool.clone()),
        metrics.clone(),
        stop.clone(),
        move |conn, peer, req| crate::pipeline::handle(st.clone(), conn, peer, req),
    ));
    let st = states.portal.clone();
    let (max_head, lv) = (cfg.limits.max_head_bytes, live.clone());
    let portal = tokio::spawn(accept_loop(
        l.portal,
        Listening::new("portal", cfg),
        None,
        metrics.clone(),
        stop.clone(),
        move |_, peer, req| {
            let st = st.clone();
            head_limited(max_head, lv.clone(), req, move |req| {
                crate::portal::portal(st, peer, req)
            })
        },
    ));
    let st = states.admin.clone();
    let lv = live.clone();
    let admin = tokio::spawn(accept_loop(
        l.admin,
        Listening::new("admin", cfg),
        None,
        metrics.clone(),
        stop,
        move |_, peer, req| {
            let st = st.clone();
            head_limited(max_head, lv.clone(), req, move |req| {
                crate::admin::handle(st, peer, req)
            })
        },
    ));
    let _ = tokio::join!(proxy, portal, admin);
}

/// A configuration problem found at start (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Installs the signal handlers now (before the banner says the proxy is ready: a
/// SIGHUP that came before them would kill the process) and returns the loop that
/// serves them.
fn signal_loop(
    live: Arc<Live>,
    users: Option<(Arc<Authenticator>, std::path::PathBuf)>,
    mut settings: Reload,
    reopen: impl Fn() + Send + 'static,
    stop: watch::Sender<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let installed = (
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut hup), Ok(mut usr1), Ok(mut term), Ok(mut int)) = installed else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the policy");
                    let _ = live.reload().await;
                    if let Some((auth, path)) = &users {
                        match UsersFile::load(path) {
                            Ok(u) => {
                                auth.replace(u);
                                tracing::info!(users = auth.len(), "users file reloaded");
                            }
                            Err(e) => tracing::error!("users file not reloaded, the previous one stays: {e}"),
                        }
                    }
                    settings.apply().await;
                }
                _ = usr1.recv() => {
                    tracing::info!("SIGUSR1: reopening the trace file");
                    reopen();
                }
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); let _ = stop.send(true); return; }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); let _ = stop.send(true); return; }
            }
        }
    }
}

/// What SIGHUP takes again from the server file: the pages (templates, town, logo,
/// contact, time zone) and `trace.readers`. Everything else needs a restart, and the
/// log says which settings changed without effect.
struct Reload {
    reread: Reread,
    /// The settings in force, as read at start (before the listeners were bound).
    running: Settings,
    readers: Arc<arc_swap::ArcSwap<Vec<String>>>,
}

impl Reload {
    async fn apply(&mut self) {
        let reread = std::mem::replace(&mut self.reread, Box::new(|| Err(String::new())));
        let (reread, new) = match tokio::task::spawn_blocking(move || {
            let new = reread();
            (reread, new)
        })
        .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("server file not read again: {e}");
                return;
            }
        };
        self.reread = reread;
        let new = match new {
            Ok(n) => n,
            Err(problems) => {
                tracing::error!(
                    "server file not reloaded, the settings in force stay:\n{problems}"
                );
                return;
            }
        };
        match crate::pages::templates::reload(&new.pages) {
            Ok(()) => {
                tracing::info!("pages reloaded (templates, town, logo, contact, time zone)");
                self.running.pages = new.pages.clone();
            }
            Err(e) => tracing::error!("page templates not reloaded, the previous ones stay: {e}"),
        }
        if new.trace_life.readers != self.running.trace_life.readers {
            tracing::info!(readers = ?new.trace_life.readers, "trace.readers reloaded");
            self.readers.store(Arc::new(new.trace_life.readers.clone()));
            self.running.trace_life.readers = new.trace_life.readers.clone();
        }
        let later = new.changed_from(&self.running);
        if !later.is_empty() {
            tracing::warn!(
                settings = ?later,
                "the server file has changes that take effect only at the next start \
                 (charte-proxy serve): {}; SIGHUP applied the pages and trace.readers",
                later.join(", ")
            );
        }
    }
}

/// Keeps the approvals in step with the store (decisions made by another process are
/// seen within half a second) and writes the counted blocks, off the request path.
async fn unblock_sync(u: Arc<UnblockService>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    // Said once when the sync starts failing and once when it works again, not at
    // every tick of an outage.
    let mut failing = false;
    loop {
        tick.tick().await;
        let u = u.clone();
        let r = tokio::task::spawn_blocking(move || {
            u.approvals.refresh()?;
            u.blocks.flush(u.store().as_ref())
        })
        .await;
        match r {
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "unblock requests: cannot sync with the store");
            }
            Ok(Ok(())) if failing => {
                failing = false;
                tracing::info!("unblock requests: in step with the store again");
            }
            _ => {}
        }
    }
}

/// Rows of each kind one purge transaction deletes: short transactions, so that the
/// request path's writes (a user's request, block counts) never wait long.
const PURGE_BATCH: usize = 500;

/// The unblock store's retention: at start and then every hour, deletes what is older
/// than `days` (decided requests and their decisions, block counts), in small batches
/// on the blocking pool, and logs what it deleted.
async fn unblock_purge(u: Arc<UnblockService>, days: u32) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let now = crate::unblock::approvals::now();
        let before = now - i64::from(days) * 86_400;
        let mut total = crate::unblock::store::Purged::default();
        loop {
            let u = u.clone();
            let r = tokio::task::spawn_blocking(move || u.store().purge(before, now, PURGE_BATCH))
                .await;
            match r {
                Ok(Ok(done)) if done.is_empty() => break,
                Ok(Ok(done)) => total.add(done),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "unblock requests: purge failed, retried in an hour");
                    break;
                }
                Err(_) => break,
            }
            tokio::task::yield_now().await;
        }
        if !total.is_empty() {
            let up_to = httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + Duration::from_secs(before.max(0) as u64),
            );
            tracing::info!(
                requests = total.requests,
                decisions = total.decisions,
                block_counts = total.blocks,
                dashboard_counts = total.counts,
                "unblock store purge: {} request(s), {} decision(s) and {} block count(s) \
                 older than {up_to} deleted (retention {days} days), and {} dashboard \
                 count(s)",
                total.requests,
                total.decisions,
                total.blocks,
                total.counts
            );
        }
    }
}

/// The TLS interception of `cfg`: its CA (DATA/ca, created on first start when no other
/// is named) and the upstream TLS client. `None` when inspection is off.
fn load_bumper(
    cfg: &Settings,
    dialer: Dialer,
    workers: usize,
) -> anyhow::Result<Option<Arc<Bumper>>> {
    if !cfg.tls.inspect {
        return Ok(None);
    }
    let files = match (&cfg.tls.ca_cert, &cfg.tls.ca_key) {
        (Some(cert), Some(key)) => CaFiles {
            cert_pem: cert.clone(),
            key_pem: key.clone(),
        },
        _ => {
            let dir = cfg.data_dir.join("ca");
            let files = CaFiles::in_dir(&dir);
            if !files.cert_pem.exists() && !files.key_pem.exists() {
                ca::init(&files, &ca::default_common_name(), None, false)
                    .with_context(|| format!("cannot create the CA in {}", dir.display()))?;
                tracing::warn!(
                    cert = %files.cert_pem.display(),
                    "created the organisation's CA for TLS inspection: deploy its certificate \
                     to the workstations (`charte-proxy ca show` says how)"
                );
            }
            files
        }
    };
    let authority = CertAuthority::load(&files).map_err(|e| {
        if e.is_config() {
            anyhow::anyhow!(ConfigError(e.to_string()))
        } else {
            anyhow::anyhow!(e)
        }
    })?;
    let bumper = Bumper::new(
        Arc::new(authority),
        ca::crypto_provider(),
        &cfg.tls.upstream_ca,
        dialer,
        cfg.limits.upstream_keepalive,
        workers,
    )
    .map_err(|e| anyhow::anyhow!(ConfigError(e.to_string())))?;
    Ok(Some(Arc::new(bumper)))
}

/// Says on standard output what runs where, ending with one machine-readable line.
/// Written without `println!`: `serve` keeps SIGPIPE ignored (see `cli`), so a closed
/// standard output is an error here, logged with the addresses, not a panic.
/// The administrators' file of `cfg`, absolute: the banner and the login page name it
/// in a command to run, whatever the folder the proxy was started from.
fn admins_file(cfg: &Settings) -> std::path::PathBuf {
    let f = cfg.data_dir.join("admins");
    std::path::absolute(&f).unwrap_or(f)
}

fn banner(cfg: &Settings, b: &Bound, live: &Live, bumper: Option<&Bumper>, workers: usize) {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let s = live.get();
    let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let trace = match &cfg.trace_path {
        Some(p) => absolute(p).display().to_string(),
        None => "standard output".into(),
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "charte-proxy {} — policy {} (generation {}, {} rules, {} names indexed, compiled in {:.2} s)",
        env!("CARGO_PKG_VERSION"),
        absolute(&cfg.policy).display(),
        s.generation,
        s.policy.rules.len(),
        s.classifier.domain_names(),
        s.stats.build_time.as_secs_f64()
    );
    let _ = writeln!(
        text,
        "  proxy   http://{}   (HTTP and CONNECT; workstations use {}; {workers} worker thread{})",
        b.proxy,
        cfg.public_proxy,
        if workers == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        text,
        "  portal  http://{}   (PAC file: {}/proxy.pac)",
        b.portal, cfg.portal_url
    );
    let admins = admins_file(cfg);
    let _ = writeln!(
        text,
        "  admin   http://{}   (request review for the accounts of {}, /metrics, /health)",
        b.admin,
        admins.display()
    );
    let no_admins = crate::identity::auth::UsersFile::load(&admins)
        .map_or(true, |f| f.users().next().is_none());
    if no_admins {
        let _ = writeln!(
            text,
            "          no administrator account yet: create one with `charte-proxy admins add NAME --file {}`",
            crate::pages::admin::shell_word(&admins.display().to_string())
        );
    }
    let _ = writeln!(text, "  trace   {trace} ({})", cfg.trace_format);
    let _ = match bumper {
        Some(bp) => writeln!(
            text,
            "  TLS     inspected with the CA \"{}\" (SHA-256 {}), except no_inspect sites",
            bp.ca().subject(),
            bp.ca().fingerprint()
        ),
        None => writeln!(
            text,
            "  TLS     not inspected (--no-inspect): tunnels are relayed as bytes"
        ),
    };
    // One machine-readable line for scripts and tests.
    let _ = writeln!(
        text,
        "listening proxy={} portal={} admin={}",
        b.proxy, b.portal, b.admin
    );
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        tracing::warn!(
            error = %e,
            proxy = %b.proxy,
            portal = %b.portal,
            admin = %b.admin,
            "cannot write the start banner on standard output"
        );
    }
}

/// The head limit on the portal and admin listeners: hyper enforces `max_buf_size` only
/// while a head is incomplete, so every parsed request is counted again
/// ([`crate::head`]) before `handler` sees it; over the limit, 431 with the error page.
/// The proxy listener's pipeline counts its own requests, and traces what it refuses.
async fn head_limited<F, Fut>(
    limit: usize,
    live: Arc<Live>,
    req: Request<Incoming>,
    handler: F,
) -> Result<Response<Body>, std::convert::Infallible>
where
    F: FnOnce(Request<Incoming>) -> Fut,
    Fut: Future<Output = Result<Response<Body>, std::convert::Infallible>>,
{
    let size = crate::head::request_head_size(&req);
    if size > limit {
        tracing::debug!(size, limit, "request head over the limit (431)");
        let lang = crate::pages::lang_of(req.headers());
        let detail = format!("request head of {size} bytes, over the limit of {limit}");
        let snap = live.get();
        return Ok(crate::pipeline::head_too_large(
            &snap.policy,
            lang,
            req.version(),
            &detail,
        ));
    }
    handler(req).await
}

/// What a listener applies to its connections.
struct Listening {
    name: &'static str,
    grace: Duration,
    limits: Limits,
    /// Each listener has caps of its own, of the configured sizes.
    caps: Arc<ConnLimits>,
}

impl Listening {
    fn new(name: &'static str, cfg: &Settings) -> Listening {
        let l = &cfg.limits;
        Listening {
            name,
            grace: cfg.shutdown_grace,
            limits: l.clone(),
            caps: ConnLimits::new(l.max_connections, l.max_connections_per_client),
        }
    }
}

/// Accepts connections until `stop`, serving each with hyper (HTTP/1.1 keep-alive,
/// upgrades for CONNECT and WebSocket), each on one of `workers` when given, else on
/// the current runtime; then waits up to `grace` for open exchanges.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    settings: Listening,
    workers: Option<Arc<Workers>>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    handler: F,
) where
    F: Fn(Arc<ConnIdentity>, SocketAddr, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, std::convert::Infallible>> + Send + 'static,
{
    let Listening {
        name,
        grace,
        limits,
        caps,
    } = settings;
    let open = Tracker::default();
    let gauge = metrics.active_connections.with_label_values(&[name]);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little, do not spin.
                        tracing::warn!(listener = name, "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let permit = match caps.try_acquire(peer.ip()) {
                    Ok(p) => p,
                    Err(excess) => {
                        metrics
                            .connections_refused
                            .with_label_values(&[excess.as_str()])
                            .inc();
                        tracing::warn!(listener = name, %peer, cap = excess.as_str(), "connection refused (503)");
                        let mut stream = stream;
                        tokio::spawn(async move {
                            let answer = limits::refusal(excess);
                            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                                stream.write_all(&answer).await?;
                                stream.shutdown().await
                            })
                            .await;
                        });
                        continue;
                    }
                };
                let h = handler.clone();
                let limits = limits.clone();
                let gauge = gauge.clone();
                let guard = open.enter();
                let mut stop = stop.clone();
                gauge.inc();
                let serve = move |stream: tokio::net::TcpStream| async move {
                    let _guard = guard;
                    // What the connection proves (Negotiate) lasts as long as it.
                    let conn_identity = Arc::new(ConnIdentity::default());
                    let svc = service_fn(move |req| h(conn_identity.clone(), peer, req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .preserve_header_case(true)
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(limits.header_timeout)
                        .max_buf_size(crate::head::parser_buffer(limits.max_head_bytes))
                        .max_headers(limits.max_headers)
                        .serve_connection(TokioIo::new(Held::new(stream, permit)), svc)
                        .with_upgrades();
                    let mut conn = std::pin::pin!(conn);
                    let ended = tokio::select! {
                        r = conn.as_mut() => r,
                        _ = stop.changed() => {
                            // Finish the exchange in flight, then close.
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                    };
                    if let Err(e) = ended {
                        tracing::debug!(listener = name, %peer, "connection ended: {e}");
                    }
                    gauge.dec();
                };
                match &workers {
                    Some(w) => w.dispatch(stream, serve),
                    None => {
                        tokio::spawn(serve(stream));
                    }
                }
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, open.idle()).await.is_err() {
        tracing::warn!(
            listener = name,
            open = open.active(),
            "grace period over: closing the remaining connections"
        );
    }
}
