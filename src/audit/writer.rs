//! The two ends of the trace: [`AuditSink`], which connections hold and which never waits,
//! and [`AuditWriter`], the handle on the one task that encodes records and appends them
//! to the destination. See the module doc of [`crate::audit`] for the guarantees.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use super::files;
use super::record::{Format, Record};
use crate::clock;
pub use crate::settings::SyslogTo;
use crate::settings::{Compress, Rotate};

/// Records taken from the queue at once.
const BATCH: usize = 256;
/// Encoded bytes gathered before a write even when more records are queued.
const WRITE_AT: usize = 64 * 1024;
/// Longest a record waits for others before it is written: under load, one wake-up,
/// one write and one hand-off to the blocking pool carry many records instead of one
/// or two. Short, because the records gathered are encoded in one burst on the main
/// thread, which competes with the workers for the CPU; 2 ms gave a lower p99 than 20 ms
/// under load (benches/README.md). A crash loses at most this much more of the trace.
const LINGER: Duration = Duration::from_millis(2);
/// At most one warning per period about dropped or lost records.
const WARN_PERIOD: Duration = Duration::from_secs(10);
const WARN_PERIOD_MS: u64 = WARN_PERIOD.as_millis() as u64;

/// How the file outputs live: rotated at local midnight (or by size), closed files
/// compressed and deleted after the retention ([`super::files`]).
#[derive(Debug, Clone)]
pub struct Life {
    pub rotate: Rotate,
    pub compress: Compress,
    pub retention_days: u32,
    /// The town's time zone: what "midnight" and "a day" mean.
    pub tz: jiff::tz::TimeZone,
    /// The access audit's folder and its retention in days
    /// ([`super::search::purge_access_audit`], with each daily pass).
    pub access_audit: Option<(PathBuf, u32)>,
}

/// Something else that reads every record on the writer task, off the request path: the
/// dashboard's counters ([`crate::report`]). The writer knows nothing of what it does;
/// it calls [`Observer::tick`] when [`Observer::due`] has come, and waits for what
/// [`Observer::finish`] returns at shutdown, after the last record.
pub trait Observer: Send + 'static {
    /// One record, as it is encoded (an inspected tunnel's line included).
    fn seen(&mut self, r: &Record);
    /// When [`Observer::tick`] should run next.
    fn due(&self) -> tokio::time::Instant;
    /// Its periodic work; must not block (hand I/O to the blocking pool).
    fn tick(&mut self);
    /// The last work, at shutdown; the writer waits for the handle.
    fn finish(&mut self) -> Option<JoinHandle<()>>;
}

/// What the files' life did last, for `/health`.
#[derive(Debug, Clone, Default)]
pub struct LifeStatus {
    /// When the files were last rotated.
    pub rotated: Option<std::time::SystemTime>,
    /// When closed files were last deleted, how many, and the first day kept.
    pub purged: Option<(std::time::SystemTime, usize, String)>,
    /// The last failure (rotation, compression, deletion), if any since.
    pub error: Option<String>,
    /// The last failure to write lines (a full disk…), and when; the proxy keeps
    /// serving and counts the lines in `charte_trace_dropped_total`.
    pub write_error: Option<(std::time::SystemTime, String)>,
}

/// A handle on what the trace's writer did last, for `/health`.
#[derive(Clone, Default)]
pub struct TraceStatus(Arc<std::sync::Mutex<LifeStatus>>);

impl TraceStatus {
    pub fn get(&self) -> LifeStatus {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Where the trace goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    /// Appended to; created with its parent folders (mode 0640 on unix when created).
    File(PathBuf),
    /// A syslog collector: each record one RFC 5424 message (facility `facility`,
    /// severity informational, app-name `charte-proxy`, msgid `trace`).
    Syslog {
        to: SyslogTo,
        facility: u8,
    },
}

/// Cheap to clone (one reference count); given to every connection.
#[derive(Clone)]
pub struct AuditSink {
    /// `None` for [`AuditSink::disabled`].
    inner: Option<Arc<SinkInner>>,
}

struct SinkInner {
    tx: mpsc::Sender<Record>,
    drops: Arc<Drops>,
    /// The durable mode: a full queue holds new requests back instead of dropping.
    durable: Option<Arc<Durable>>,
}

/// The durable mode's side of the queue. A record is never refused: one that finds the
/// queue full goes to `overflow` (at most one per request in flight, since new requests
/// wait), and [`AuditSink::admit`] holds new requests until the writer has made room.
struct Durable {
    overflow: mpsc::UnboundedSender<Record>,
    /// Records in `overflow` not taken by the writer yet.
    overflowing: AtomicU64,
    /// Signalled by the writer each time it takes records.
    room: Notify,
    /// Signalled when a record is passed aside, to wake an idle writer.
    arrived: Notify,
    waited: prometheus::Histogram,
}

impl AuditSink {
    /// Never blocks, never fails: a full (or shut) queue drops the record and counts it;
    /// in the durable mode a full queue passes it to the writer aside.
    pub fn record(&self, r: Record) {
        let Some(inner) = &self.inner else { return };
        match inner.tx.try_send(r) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(r)) if inner.durable.is_some() => {
                let d = inner.durable.as_ref().expect("checked");
                d.overflowing.fetch_add(1, Ordering::SeqCst);
                if d.overflow.send(r).is_err() {
                    d.overflowing.fetch_sub(1, Ordering::SeqCst);
                    inner.drops.dropped(Instant::now());
                } else {
                    d.arrived.notify_one();
                }
            }
            Err(_) => inner.drops.dropped(Instant::now()),
        }
    }

    /// Where a request begins: in the durable mode, waits while the trace's queue is
    /// full (the proxy slows down rather than lose a line), and counts the wait; at
    /// once otherwise.
    pub async fn admit(&self) {
        let Some(d) = self
            .inner
            .as_ref()
            .and_then(|i| i.durable.as_ref().map(|d| (i, d)))
        else {
            return;
        };
        let (inner, d) = d;
        let full = || inner.tx.capacity() == 0 || d.overflowing.load(Ordering::SeqCst) > 0;
        if !full() || inner.tx.is_closed() {
            return;
        }
        let started = Instant::now();
        loop {
            let room = d.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if !full() || inner.tx.is_closed() {
                break;
            }
            room.await;
        }
        d.waited.observe(started.elapsed().as_secs_f64());
    }

    /// The same sink in the durable mode (before it is cloned to connections), and the
    /// writer's end of it.
    fn durable(self, waited: prometheus::Histogram) -> (Self, DurableTap) {
        let Some(inner) = self.inner else {
            return (self, DurableTap(None));
        };
        let (overflow, rx) = mpsc::unbounded_channel();
        let d = Arc::new(Durable {
            overflow,
            overflowing: AtomicU64::new(0),
            room: Notify::new(),
            arrived: Notify::new(),
            waited,
        });
        let sink = AuditSink {
            inner: Some(Arc::new(SinkInner {
                tx: inner.tx.clone(),
                drops: Arc::clone(&inner.drops),
                durable: Some(Arc::clone(&d)),
            })),
        };
        (sink, DurableTap(Some((rx, d))))
    }

    /// A sink that discards everything, silently and without counting: for tests and
    /// tools that run the pipeline without a trace.
    pub fn disabled() -> Self {
        AuditSink { inner: None }
    }

    /// A sink whose records are handed to the returned receiver instead of a writer task:
    /// for tests that assert what the pipeline traces. Full queue: dropped and counted.
    pub fn capture(capacity: usize, dropped: IntCounter) -> (Self, mpsc::Receiver<Record>) {
        let (sink, rx, _) = Self::channel(capacity, dropped);
        (sink, rx)
    }

    fn channel(capacity: usize, dropped: IntCounter) -> (Self, mpsc::Receiver<Record>, Arc<Drops>) {
        // tokio's channel panics on 0; one slot is the least that makes sense.
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let drops = Arc::new(Drops {
            counter: dropped,
            throttle: Throttle::new(Instant::now()),
        });
        let inner = SinkInner {
            tx,
            drops: Arc::clone(&drops),
            durable: None,
        };
        let sink = AuditSink {
            inner: Some(Arc::new(inner)),
        };
        (sink, rx, drops)
    }
}

impl fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSink")
            .field("enabled", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

/// Records that never reached the trace: the metric, and the rate-limited warning about
/// a full queue.
struct Drops {
    counter: IntCounter,
    throttle: Throttle,
}

impl Drops {
    /// A record refused by a full or closed queue (request path: atomics only, and a log
    /// line at most every [`WARN_PERIOD`]).
    fn dropped(&self, now: Instant) {
        self.counter.inc();
        self.throttle.add(1);
        self.warn_if_due(now);
    }

    fn warn_if_due(&self, now: Instant) {
        if let Some(n) = self.throttle.due(now) {
            tracing::warn!(
                target: "charte::audit",
                dropped = n,
                "audit queue full: {n} record(s) dropped since the last warning"
            );
        }
    }

    /// Whatever was never reported, at the end.
    fn warn_rest(&self) {
        let n = self.throttle.take();
        if n > 0 {
            tracing::warn!(
                target: "charte::audit",
                dropped = n,
                "audit queue full: {n} record(s) dropped since the last warning"
            );
        }
    }

    /// Records encoded or written in vain: counted, reported by the writer's own log line.
    fn lost(&self, n: u64) {
        self.counter.inc_by(n);
    }
}

/// At most one report per [`WARN_PERIOD`], carrying how many events happened since the
/// previous one. Lock-free, since it is shared by every connection.
pub(super) struct Throttle {
    base: Instant,
    /// Milliseconds from `base` to the last report, plus one; 0 = never reported.
    last: AtomicU64,
    /// Events not reported yet.
    pending: AtomicU64,
}

impl Throttle {
    pub(super) fn new(base: Instant) -> Self {
        Throttle {
            base,
            last: AtomicU64::new(0),
            pending: AtomicU64::new(0),
        }
    }

    pub(super) fn add(&self, n: u64) {
        self.pending.fetch_add(n, Ordering::Relaxed);
    }

    /// If something is pending and no report was made in the last period, claims the
    /// report (one caller wins) and returns how many events it covers.
    pub(super) fn due(&self, now: Instant) -> Option<u64> {
        if self.pending.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let since_base = now.saturating_duration_since(self.base).as_millis();
        let now_ms = u64::try_from(since_base).unwrap_or(u64::MAX - 1) + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < WARN_PERIOD_MS {
            return None;
        }
        self.last
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        let n = self.pending.swap(0, Ordering::Relaxed);
        (n > 0).then_some(n)
    }

    pub(super) fn take(&self) -> u64 {
        self.pending.swap(0, Ordering::Relaxed)
    }
}

/// What the server asks of the writer task, outside the record queue.
struct Control {
    /// Reopen before writing the next records (set by `reopen()`).
    reopen: AtomicBool,
    /// Close the queue, drain it, flush, stop.
    shutdown: AtomicBool,
    /// Wakes the task when idle, so both take effect at once.
    wake: Notify,
    /// Records handed to the OS so far, for [`AuditWriter::wait_written`].
    written: watch::Sender<u64>,
}

/// The writer task's handle, kept by the server.
pub struct AuditWriter {
    control: Arc<Control>,
    task: JoinHandle<()>,
    /// `reopen()` is a no-op for stdout.
    is_file: bool,
    status: Arc<std::sync::Mutex<LifeStatus>>,
    /// `None` when the files do not live here (external rotation, no file).
    maintenance: Option<Maintenance>,
}

impl fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditWriter")
            .field("is_file", &self.is_file)
            .finish_non_exhaustive()
    }
}

impl AuditWriter {
    /// Opens the destination (creating parent folders and the file, append mode, file mode
    /// 0640 on unix) and spawns the writer task on the current tokio runtime. Errors if the
    /// file cannot be opened or if there is no current runtime. A `capacity` of 0 means 1.
    pub fn start(
        dest: Destination,
        format: Format,
        capacity: usize,
        dropped: IntCounter,
    ) -> io::Result<(AuditSink, AuditWriter)> {
        Self::start_many(vec![(dest, format)], capacity, dropped)
    }

    /// The same with several outputs, each in its own format, all written by the one
    /// task from the one queue: every record goes to every output.
    pub fn start_many(
        outputs: Vec<(Destination, Format)>,
        capacity: usize,
        dropped: IntCounter,
    ) -> io::Result<(AuditSink, AuditWriter)> {
        Self::start_living(outputs, capacity, dropped, None, None, None)
    }

    /// [`AuditWriter::start_many`] whose file outputs live as `life` says: a file left
    /// from a day before is closed first, then each is closed at local midnight (or at
    /// its size), compressed, and deleted after the retention.
    ///
    /// With `durable` (the wait histogram), a full queue makes new requests wait
    /// ([`AuditSink::admit`]) instead of dropping lines, and every file output is synced
    /// to disk after each batch.
    pub fn start_living(
        outputs: Vec<(Destination, Format)>,
        capacity: usize,
        dropped: IntCounter,
        life: Option<Life>,
        durable: Option<prometheus::Histogram>,
        observer: Option<Box<dyn Observer>>,
    ) -> io::Result<(AuditSink, AuditWriter)> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        if let Some(l) = life.as_ref().filter(|l| l.rotate != Rotate::External) {
            for (d, _) in &outputs {
                if let Destination::File(p) = d {
                    close_stale(p, &l.tz)?;
                }
            }
        }
        let (mut sink, mut unstarted) = Self::open_many(outputs, capacity, dropped)?;
        if let Some(waited) = durable {
            let (s, tap) = sink.durable(waited);
            sink = s;
            unstarted.0.durable = tap.0;
        }
        unstarted.0.observer = observer;
        if let Some(l) = life.filter(|l| l.rotate != Rotate::External) {
            let next = clock::next_midnight(clock::now(), &l.tz);
            unstarted.0.life = Some(Living { life: l, next });
        }
        let writer = unstarted.spawn(&runtime);
        writer.maintain_now();
        Ok((sink, writer))
    }

    /// `start` without the spawn: the queue fills with nothing draining it, so tests can
    /// make it full deterministically.
    #[cfg(test)]
    pub(super) fn open(
        dest: Destination,
        format: Format,
        capacity: usize,
        dropped: IntCounter,
    ) -> io::Result<(AuditSink, Unstarted)> {
        Self::open_many(vec![(dest, format)], capacity, dropped)
    }

    fn open_many(
        outputs: Vec<(Destination, Format)>,
        capacity: usize,
        dropped: IntCounter,
    ) -> io::Result<(AuditSink, Unstarted)> {
        if outputs.is_empty() {
            return Err(io::Error::other("the trace has no output"));
        }
        let outs = outputs
            .iter()
            .map(|(dest, format)| {
                let size = match dest {
                    Destination::File(p) => std::fs::metadata(p).map_or(0, |m| m.len()),
                    _ => 0,
                };
                Ok(Out {
                    out: Output::open(dest)?,
                    format: *format,
                    buf: Vec::with_capacity(WRITE_AT + 4096),
                    size,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let (sink, rx, drops) = AuditSink::channel(capacity, dropped);
        let task = Task {
            rx,
            outs,
            drops,
            control: Arc::new(Control {
                reopen: AtomicBool::new(false),
                shutdown: AtomicBool::new(false),
                wake: Notify::new(),
                written: watch::Sender::new(0),
            }),
            errors: Throttle::new(Instant::now()),
            life: None,
            status: Arc::new(std::sync::Mutex::new(LifeStatus::default())),
            durable: None,
            observer: None,
        };
        Ok((sink, Unstarted(task)))
    }

    /// Close and reopen the file at the same path (after rotation). No-op for stdout.
    /// Returns at once; every record given to a sink afterwards goes to the new file.
    pub fn reopen(&self) {
        if self.is_file {
            self.control.reopen.store(true, Ordering::SeqCst);
            self.control.wake.notify_one();
        }
    }

    /// What the files' life did last (rotation, purge, failure).
    pub fn life_status(&self) -> LifeStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// A handle on the same, for the admin listener's `/health`.
    pub fn status(&self) -> TraceStatus {
        TraceStatus(Arc::clone(&self.status))
    }

    /// Runs a maintenance pass (compression, retention) on the blocking pool, now.
    fn maintain_now(&self) {
        if let Some(m) = &self.maintenance {
            m.spawn();
        }
    }

    /// Records written to the destination so far (handed to the OS; lost ones excluded).
    pub fn written(&self) -> u64 {
        *self.control.written.borrow()
    }

    /// Waits until at least `n` records have been written in total: lets a test read the
    /// trace without sleeping. Waits forever if that never happens — use a timeout.
    pub async fn wait_written(&self, n: u64) {
        let mut written = self.control.written.subscribe();
        // The sender lives in `self.control`, so this cannot fail while `self` is borrowed.
        let _ = written.wait_for(|&w| w >= n).await;
    }

    /// Drain everything queued, flush, stop the task. Records sent after this are dropped
    /// (counted).
    pub async fn shutdown(self) {
        self.control.shutdown.store(true, Ordering::SeqCst);
        self.control.wake.notify_one();
        if let Err(e) = self.task.await {
            tracing::error!(target: "charte::audit", "audit writer task failed: {e}");
        }
    }
}

/// The writer's end of the durable mode: the records passed aside, and the signals.
struct DurableTap(Option<(mpsc::UnboundedReceiver<Record>, Arc<Durable>)>);

/// A writer whose task is not running yet.
pub(super) struct Unstarted(Task);

impl Unstarted {
    pub(super) fn spawn(self, runtime: &tokio::runtime::Handle) -> AuditWriter {
        let control = Arc::clone(&self.0.control);
        let is_file = self
            .0
            .outs
            .iter()
            .any(|o| matches!(o.out, Output::File { .. }));
        let status = Arc::clone(&self.0.status);
        let maintenance = self.0.maintenance();
        let task = runtime.spawn(self.0.run());
        AuditWriter {
            control,
            task,
            is_file,
            status,
            maintenance,
        }
    }
}

/// Closes `live` if it was last written on a day before today (the proxy was not
/// running at midnight): renamed after the day it was last written.
fn close_stale(live: &Path, tz: &jiff::tz::TimeZone) -> io::Result<()> {
    let Ok(meta) = std::fs::metadata(live) else {
        return Ok(());
    };
    if meta.len() == 0 {
        return Ok(());
    }
    let Ok(modified) = meta.modified() else {
        return Ok(());
    };
    let day = clock::local_date(modified, tz);
    if day >= clock::local_date(clock::now(), tz) {
        return Ok(());
    }
    let closed = files::next_closed_name(live, day)?;
    std::fs::rename(live, &closed).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot close the trace file {} of {day}: {e}",
                live.display()
            ),
        )
    })?;
    tracing::info!(target: "charte::audit", file = %closed.display(), "trace file of {day} closed at start");
    Ok(())
}

/// A compression and retention pass over every file output, on the blocking pool.
#[derive(Clone)]
struct Maintenance {
    lives: Vec<PathBuf>,
    compress: Compress,
    retention_days: u32,
    tz: jiff::tz::TimeZone,
    access_audit: Option<(PathBuf, u32)>,
    status: Arc<std::sync::Mutex<LifeStatus>>,
}

impl Maintenance {
    fn spawn(&self) {
        let m = self.clone();
        tokio::task::spawn_blocking(move || m.run());
    }

    fn run(&self) {
        use jiff::ToSpan as _;
        let today = clock::local_date(clock::now(), &self.tz);
        let Ok(keep_from) = today.checked_sub(i64::from(self.retention_days).days()) else {
            return;
        };
        let mut deleted = 0;
        let mut errors = Vec::new();
        for live in &self.lives {
            match files::maintain(live, self.compress, keep_from) {
                Ok(done) => {
                    if !done.compressed.is_empty() {
                        tracing::info!(
                            target: "charte::audit",
                            files = done.compressed.len(),
                            "closed trace files compressed"
                        );
                    }
                    if !done.deleted.is_empty() {
                        tracing::info!(
                            target: "charte::audit",
                            files = done.deleted.len(),
                            kept_from = %keep_from,
                            "trace purge: {} file(s) of {} deleted (days before {keep_from}, \
                             retention {} days)",
                            done.deleted.len(),
                            live.display(),
                            self.retention_days
                        );
                    }
                    deleted += done.deleted.len();
                    errors.extend(done.failed);
                }
                Err(e) => errors.push(format!("{}: {e}", live.display())),
            }
        }
        if let Some((dir, days)) = &self.access_audit {
            let keep_from = today
                .checked_sub(i64::from(*days).days())
                .ok()
                .and_then(|d| jiff::Timestamp::try_from(clock::start_of(d, &self.tz)).ok());
            if let Some(keep_from) = keep_from {
                match super::search::purge_access_audit(dir, keep_from) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        target: "charte::audit",
                        lines = n,
                        "access audit purge: {n} line(s) of {} deleted (before {keep_from}, \
                         retention {days} days)",
                        dir.join(super::search::ACCESS_AUDIT).display()
                    ),
                    Err(e) => errors.push(format!("access audit purge: {e}")),
                }
            }
        }
        for e in &errors {
            tracing::error!(target: "charte::audit", "trace file maintenance: {e}");
        }
        if let Ok(mut s) = self.status.lock() {
            if deleted > 0 {
                s.purged = Some((clock::now(), deleted, keep_from.to_string()));
            }
            if let Some(e) = errors.pop() {
                s.error = Some(e);
            }
        }
    }
}

/// One output of the task, its format and the lines encoded for it and not written yet.
struct Out {
    out: Output,
    format: Format,
    buf: Vec<u8>,
    /// Bytes in the file (a file output), for rotation by size.
    size: u64,
}

enum Output {
    Stdout(tokio::io::Stdout),
    File {
        path: PathBuf,
        file: tokio::fs::File,
    },
    Syslog(Syslog),
}

/// A syslog destination and what every message's header repeats.
struct Syslog {
    to: SyslogTo,
    /// `<PRI>1 `.
    pri: String,
    /// ` HOSTNAME charte-proxy PID trace - `.
    tail: String,
    conn: SyslogConn,
}

enum SyslogConn {
    Udp(tokio::net::UdpSocket),
    Tcp(Option<tokio::net::TcpStream>),
    Unix(tokio::net::UnixDatagram),
}

/// How long a TCP collector may take to accept a connection.
const SYSLOG_CONNECT: Duration = Duration::from_secs(2);

impl Syslog {
    fn open(to: &SyslogTo, facility: u8) -> io::Result<Syslog> {
        let conn = match to {
            SyslogTo::Udp(a) => {
                let any: std::net::SocketAddr = if a.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = std::net::UdpSocket::bind(any)?;
                s.set_nonblocking(true)?;
                SyslogConn::Udp(tokio::net::UdpSocket::from_std(s)?)
            }
            // Connected at the first write, and again after an error.
            SyslogTo::Tcp(_) => SyslogConn::Tcp(None),
            SyslogTo::Unix(_) => SyslogConn::Unix(tokio::net::UnixDatagram::unbound()?),
        };
        let host = hostname();
        Ok(Syslog {
            to: to.clone(),
            // Severity 6, informational.
            pri: format!("<{}>1 ", u16::from(facility) * 8 + 6),
            tail: format!(" {host} charte-proxy {} trace - ", std::process::id()),
            conn,
        })
    }

    /// Appends one message holding `line` (its line end taken off) to `buf`, ended by
    /// a line feed that [`Syslog::send`] splits on.
    fn frame(&self, line: &[u8], buf: &mut Vec<u8>) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        buf.extend_from_slice(self.pri.as_bytes());
        match super::record::ser::rfc3339_bytes(std::time::SystemTime::now()) {
            Ok(t) => buf.extend_from_slice(&t),
            Err(_) => buf.push(b'-'),
        }
        buf.extend_from_slice(self.tail.as_bytes());
        buf.extend_from_slice(line);
        buf.push(b'\n');
    }

    /// Sends the messages of `buf` (one a line).
    async fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        let messages = buf.split(|b| *b == b'\n').filter(|m| !m.is_empty());
        match (&mut self.conn, &self.to) {
            (SyslogConn::Udp(s), SyslogTo::Udp(to)) => {
                for m in messages {
                    s.send_to(m, to).await?;
                }
            }
            (SyslogConn::Unix(s), SyslogTo::Unix(to)) => {
                for m in messages {
                    s.send_to(m, to).await?;
                }
            }
            (SyslogConn::Tcp(conn), SyslogTo::Tcp(to)) => {
                let mut framed = Vec::with_capacity(buf.len() + 64);
                for m in messages {
                    framed.extend_from_slice(format!("{} ", m.len()).as_bytes());
                    framed.extend_from_slice(m);
                }
                if conn.is_none() {
                    let c =
                        tokio::time::timeout(SYSLOG_CONNECT, tokio::net::TcpStream::connect(to))
                            .await
                            .map_err(|_| {
                                io::Error::new(io::ErrorKind::TimedOut, "connect timed out")
                            })??;
                    *conn = Some(c);
                }
                if let Some(c) = conn.as_mut()
                    && let Err(e) = c.write_all(&framed).await
                {
                    *conn = None;
                    return Err(e);
                }
            }
            _ => return Err(io::Error::other("syslog connection of another kind")),
        }
        Ok(())
    }
}

/// This machine's name for syslog's HOSTNAME field (`-` when unknown).
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if r == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    // PRINTUSASCII without spaces, at most 255 characters (RFC 5424 §6.2.4).
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if name.is_empty() { "-".into() } else { name }
}

impl Output {
    fn open(dest: &Destination) -> io::Result<Self> {
        Ok(match dest {
            Destination::Stdout => Output::Stdout(tokio::io::stdout()),
            Destination::File(path) => Output::File {
                file: tokio::fs::File::from_std(open_file(path)?),
                path: path.clone(),
            },
            Destination::Syslog { to, facility } => Output::Syslog(Syslog::open(to, *facility)?),
        })
    }

    /// Writes and waits until the bytes are handed to the OS (tokio's file and stdout
    /// finish their writes on the blocking pool, and `flush` waits for them).
    async fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(out) => {
                out.write_all(buf).await?;
                out.flush().await
            }
            Output::File { file, .. } => {
                file.write_all(buf).await?;
                file.flush().await
            }
            Output::Syslog(s) => s.send(buf).await,
        }
    }

    /// Opens the path again; on failure the old file is kept.
    async fn reopen(&mut self) -> io::Result<()> {
        let Output::File { path, file } = self else {
            return Ok(());
        };
        let p = path.clone();
        let new = tokio::task::spawn_blocking(move || open_file(&p))
            .await
            .map_err(io::Error::other)??;
        *file = tokio::fs::File::from_std(new);
        Ok(())
    }

    fn name(&self) -> String {
        match self {
            Output::Stdout(_) => "stdout".to_owned(),
            Output::File { path, .. } => path.display().to_string(),
            Output::Syslog(s) => format!("syslog {:?}", s.to),
        }
    }
}

/// Appending, with the parent folders; 0640 when created, as the trace names people.
fn open_file(path: &Path) -> io::Result<std::fs::File> {
    let with_path = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("cannot open audit file {}: {e}", path.display()),
        )
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(with_path)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o640);
    }
    options.open(path).map_err(with_path)
}

/// The writer task's state.
struct Task {
    rx: mpsc::Receiver<Record>,
    /// Every record goes to each.
    outs: Vec<Out>,
    drops: Arc<Drops>,
    control: Arc<Control>,
    /// Rate limit of the writer's own error lines (records lost to encode or I/O errors).
    errors: Throttle,
    /// When the file outputs rotate by themselves.
    life: Option<Living>,
    status: Arc<std::sync::Mutex<LifeStatus>>,
    /// The durable mode: records passed aside, room signalled, files synced.
    durable: Option<(mpsc::UnboundedReceiver<Record>, Arc<Durable>)>,
    /// Reads every record too (the dashboard's counters).
    observer: Option<Box<dyn Observer>>,
}

/// A life in progress: the next local midnight.
struct Living {
    life: Life,
    next: std::time::SystemTime,
}

/// How many records the outputs' buffers hold, not written yet.
struct Pending {
    records: u64,
}

impl Task {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut pending = Pending { records: 0 };
        // When the oldest record not yet written must go out.
        let mut due: Option<tokio::time::Instant> = None;
        loop {
            // Local midnight, on the proxy's clock, as a tokio deadline.
            let midnight = self.life.as_ref().map(|l| {
                let left = l
                    .next
                    .duration_since(clock::now())
                    .unwrap_or(Duration::ZERO);
                tokio::time::Instant::now() + left
            });
            let rotating = midnight.is_some();
            let midnight = midnight.unwrap_or_else(tokio::time::Instant::now);
            let aside = self.durable.as_ref().map(|(_, d)| Arc::clone(d));
            let durable = aside.is_some();
            let arrived = async {
                match &aside {
                    Some(d) => d.arrived.notified().await,
                    None => std::future::pending().await,
                }
            };
            let observing = self.observer.is_some();
            let tick_at = self
                .observer
                .as_ref()
                .map_or_else(tokio::time::Instant::now, |o| o.due());
            let (mut open, lingered) = match due {
                // Records are waiting to be written: sleep until they are due without
                // listening to the queue, so that a busy proxy wakes this task once per
                // linger, not once per record.
                Some(due) => tokio::select! {
                    biased;
                    () = self.control.wake.notified() => (true, false),
                    () = tokio::time::sleep_until(due) => (true, true),
                    () = tokio::time::sleep_until(midnight), if rotating => (true, false),
                    () = tokio::time::sleep_until(tick_at), if observing => (true, false),
                },
                None => tokio::select! {
                    biased;
                    () = self.control.wake.notified() => (true, false),
                    n = self.rx.recv_many(&mut batch, BATCH) => (n > 0, false),
                    () = arrived, if durable => (true, false),
                    () = tokio::time::sleep_until(midnight), if rotating => (true, false),
                    () = tokio::time::sleep_until(tick_at), if observing => (true, false),
                },
            };
            // Midnight: what was received before it goes into the day's file, then
            // every file output is closed under that day's name and a new one begun.
            if let Some(day) = self.midnight_passed() {
                self.encode(&mut batch, &mut pending);
                self.write_out(&mut pending).await;
                self.rotate(day).await;
            }
            if let Some(o) = &mut self.observer
                && tokio::time::Instant::now() >= o.due()
            {
                o.tick();
            }
            if lingered {
                // Take what came in meanwhile, without waiting, up to one write's worth
                // (a busy proxy could otherwise keep this loop going); the rest is
                // taken on the next turn.
                while self.buffered() < WRITE_AT {
                    match self.rx.try_recv() {
                        Ok(r) => {
                            batch.push(r);
                            if batch.len() >= BATCH {
                                self.encode(&mut batch, &mut pending);
                            }
                        }
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                }
            }
            // Records were taken from the queue: tell the requests waiting for room (the
            // durable mode), whichever branch took them.
            self.take_aside(&mut batch);
            // After the receive: a record sent after `reopen()` returned was received here
            // or later, so it sees the flag and lands in the new file.
            if self.control.reopen.swap(false, Ordering::SeqCst) {
                self.write_out(&mut pending).await;
                for o in &mut self.outs {
                    if !matches!(o.out, Output::File { .. }) {
                        continue;
                    }
                    match o.out.reopen().await {
                        Ok(()) => tracing::info!(target: "charte::audit", "audit file reopened"),
                        Err(e) => tracing::error!(
                            target: "charte::audit",
                            "{e}; still writing to the previous file"
                        ),
                    }
                }
            }
            self.encode(&mut batch, &mut pending);
            if self.control.shutdown.load(Ordering::SeqCst) {
                // Refuse new records (senders see "closed" and count a drop), keep
                // those already queued.
                self.rx.close();
                while self.rx.recv_many(&mut batch, BATCH).await > 0 {
                    self.encode(&mut batch, &mut pending);
                    if self.buffered() >= WRITE_AT {
                        self.write_out(&mut pending).await;
                    }
                }
                self.take_aside(&mut batch);
                self.encode(&mut batch, &mut pending);
                self.write_out(&mut pending).await;
                break;
            }
            if !open {
                // Every sink is gone: nothing more can come.
                self.write_out(&mut pending).await;
                break;
            }
            if self.buffered() >= WRITE_AT || lingered {
                self.write_out(&mut pending).await;
                if let Some(day) = self.size_reached() {
                    self.rotate(day).await;
                }
            }
            due = match (pending.records == 0, due) {
                (true, _) => None,
                (false, None) => Some(tokio::time::Instant::now() + LINGER),
                (false, Some(d)) => Some(d),
            };
            self.drops.warn_if_due(Instant::now());
        }
        if let Some(h) = self.observer.as_mut().and_then(|o| o.finish()) {
            let _ = h.await;
        }
        self.drops.warn_rest();
        let lost = self.errors.take();
        if lost > 0 {
            tracing::error!(
                target: "charte::audit",
                lost,
                "{lost} audit record(s) lost to errors since the last report"
            );
        }
    }

    /// `Some(the day that ended)` once the proxy's clock passed local midnight; the
    /// next midnight is then set.
    fn midnight_passed(&mut self) -> Option<jiff::civil::Date> {
        let l = self.life.as_mut()?;
        let now = clock::now();
        if now < l.next {
            return None;
        }
        // The day that just ended (the instant before midnight).
        let ended = clock::local_date(l.next - Duration::from_nanos(1), &l.life.tz);
        l.next = clock::next_midnight(now, &l.life.tz);
        Some(ended)
    }

    /// `Some(today)` when a file output reached the size at which it rotates.
    fn size_reached(&self) -> Option<jiff::civil::Date> {
        let l = self.life.as_ref()?;
        let Rotate::Size(max) = l.life.rotate else {
            return None;
        };
        self.outs
            .iter()
            .any(|o| matches!(o.out, Output::File { .. }) && o.size >= max)
            .then(|| clock::local_date(clock::now(), &l.life.tz))
    }

    /// Closes every file output as `day`'s (renamed beside it) and opens a new one at
    /// its path, then compresses and purges on the blocking pool. A file that cannot be
    /// renamed stays the one written to; the failure is logged and shown in `/health`.
    async fn rotate(&mut self, day: jiff::civil::Date) {
        let mut errors = Vec::new();
        for o in &mut self.outs {
            let Output::File { path, .. } = &o.out else {
                continue;
            };
            let live = path.clone();
            let renamed = tokio::task::spawn_blocking(move || -> io::Result<PathBuf> {
                let closed = files::next_closed_name(&live, day)?;
                std::fs::rename(&live, &closed)?;
                files::sync_dir(&closed);
                Ok(closed)
            })
            .await
            .map_err(io::Error::other)
            .and_then(|r| r);
            match renamed {
                Ok(closed) => {
                    o.size = 0;
                    if let Err(e) = o.out.reopen().await {
                        errors.push(format!("{e}"));
                    } else {
                        tracing::info!(
                            target: "charte::audit",
                            file = %closed.display(),
                            "trace file of {day} closed"
                        );
                    }
                }
                Err(e) => errors.push(format!(
                    "cannot close the trace file {} of {day}: {e}",
                    path.display()
                )),
            }
        }
        for e in &errors {
            tracing::error!(target: "charte::audit", "{e}; still writing to the same file");
        }
        if let Ok(mut s) = self.status.lock() {
            s.rotated = Some(clock::now());
            if let Some(e) = errors.pop() {
                s.error = Some(e);
            }
        }
        if let Some(m) = self.maintenance() {
            m.spawn();
        }
    }

    /// The maintenance of the file outputs, when they live here.
    fn maintenance(&self) -> Option<Maintenance> {
        let l = self.life.as_ref()?;
        let lives: Vec<PathBuf> = self
            .outs
            .iter()
            .filter_map(|o| match &o.out {
                Output::File { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect();
        (!lives.is_empty()).then(|| Maintenance {
            lives,
            compress: l.life.compress,
            retention_days: l.life.retention_days,
            tz: l.life.tz.clone(),
            access_audit: l.life.access_audit.clone(),
            status: Arc::clone(&self.status),
        })
    }

    /// The durable mode: takes the records passed aside, and tells waiting requests
    /// that there is room (the queue's records were just taken too).
    fn take_aside(&mut self, batch: &mut Vec<Record>) {
        let Some((rx, d)) = &mut self.durable else {
            return;
        };
        let mut took = 0;
        while let Ok(r) = rx.try_recv() {
            batch.push(r);
            took += 1;
        }
        if took > 0 {
            d.overflowing.fetch_sub(took, Ordering::SeqCst);
        }
        d.room.notify_waiters();
    }

    /// The most bytes an output has waiting.
    fn buffered(&self) -> usize {
        self.outs.iter().map(|o| o.buf.len()).max().unwrap_or(0)
    }

    fn encode(&mut self, batch: &mut Vec<Record>, pending: &mut Pending) {
        let mut line = Vec::new();
        for r in batch.drain(..) {
            if let Some(o) = &mut self.observer {
                o.seen(&r);
            }
            let mut ok = true;
            for o in &mut self.outs {
                let encoded = match &o.out {
                    Output::Syslog(s) => {
                        line.clear();
                        let e = o.format.write_line(&r, &mut line);
                        if e.is_ok() {
                            s.frame(&line, &mut o.buf);
                        }
                        e
                    }
                    _ => o.format.write_line(&r, &mut o.buf),
                };
                if let Err(e) = encoded {
                    ok = false;
                    tracing::debug!(target: "charte::audit", "cannot encode an audit record: {e}");
                }
            }
            if ok {
                pending.records += 1;
            } else {
                self.lose(1, "cannot encode an audit record");
            }
        }
    }

    async fn write_out(&mut self, pending: &mut Pending) {
        if pending.records == 0 && self.outs.iter().all(|o| o.buf.is_empty()) {
            return;
        }
        let n = pending.records;
        let mut first_ok = true;
        let mut failures = Vec::new();
        for (i, o) in self.outs.iter_mut().enumerate() {
            if o.buf.is_empty() {
                continue;
            }
            if let Err(e) = o.out.write(&o.buf).await {
                if i == 0 {
                    first_ok = false;
                }
                failures.push(format!(
                    "cannot write the audit trail to {}: {e}",
                    o.out.name()
                ));
            } else {
                o.size += o.buf.len() as u64;
                if self.durable.is_some()
                    && let Output::File { file, .. } = &mut o.out
                    && let Err(e) = file.sync_data().await
                {
                    failures.push(format!("cannot sync {} to disk: {e}", o.out.name()));
                }
            }
            o.buf.clear();
        }
        // The first output is the trace of record: its count is the one `written` gives.
        if first_ok {
            self.control.written.send_modify(|w| *w += n);
        }
        if let Some(last) = failures.last()
            && let Ok(mut st) = self.status.lock()
        {
            st.write_error = Some((clock::now(), last.clone()));
        }
        for what in failures {
            self.lose(n, &what);
        }
        pending.records = 0;
    }

    /// Counts lost records; logs at most once per period with how many since last time.
    fn lose(&self, n: u64, what: &str) {
        self.drops.lost(n);
        self.errors.add(n);
        if let Some(total) = self.errors.due(Instant::now()) {
            tracing::error!(
                target: "charte::audit",
                lost = total,
                "{what}; {total} record(s) lost since the last report"
            );
        }
    }
}
