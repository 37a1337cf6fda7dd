//! Every metric, declared in one place. Labels come from closed sets only — decisions,
//! reason codes, categories and groups of the policy — never a host, a URL or a user.
//! Counters end in `_total`; a value copied from elsewhere at scrape time that only grows
//! is a counter too (caught up, never set), so that `rate()` works on it.

use prometheus::{
    Counter, Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The kinds of request the pipeline records (`kind` label).
pub const REQUEST_KINDS: [&str; 3] = ["http", "connect", "https"];

/// The proxy's metrics, registered in their own registry.
pub struct Metrics {
    /// The proxy's own metrics, all named `charte_…`.
    pub registry: Registry,
    /// The standard `process_*` metrics (resident memory, CPU seconds, open and maximum
    /// file descriptors, start time), which keep their usual names: a registry apart,
    /// because `registry`'s prefix would rename them.
    process: Registry,
    /// Requests and tunnels by kind (`http`, `connect`), decision, most specific category
    /// and first group (`none` when there is none).
    pub requests: IntCounterVec,
    /// Refusals by reason code.
    pub blocks: IntCounterVec,
    /// Open client connections by listener.
    pub active_connections: IntGaugeVec,
    /// Bytes relayed, by direction (`sent`: client → site, `received`: site → client).
    pub bytes: IntCounterVec,
    pub request_duration: HistogramVec,
    /// Upstream failures by kind (`dns`, `connect`, `timeout`, `internal`, `tls`,
    /// `switch`: a 101 the proxy did not relay a WebSocket handshake for, `other`).
    pub upstream_errors: IntCounterVec,
    /// Bodies read by the late checks, by `what` (`upload`, `download`) and `outcome`
    /// (`clean`: nothing a rule named; `refused`; `unchecked`: an upload that could not
    /// be read, refused; `streamed`: an upload longer than the hold, read on its way).
    pub content_checks: IntCounterVec,
    /// Client connections refused at accept, by cap (`max-connections`, …).
    pub connections_refused: IntCounterVec,
    /// Policy reloads by result (`ok`, `error`).
    pub reloads: IntCounterVec,
    pub policy_generation: IntGauge,
    pub policy_loaded_timestamp: Gauge,
    pub policy_build_seconds: Gauge,
    /// 1 when the last reload failed and an older policy is still in force.
    pub policy_stale: IntGauge,
    pub index_entries: IntGaugeVec,
    pub index_bytes: IntGauge,
    /// Trace lines dropped because the writer could not keep up.
    pub trace_dropped: IntCounter,
    /// Durable trace mode: how long requests waited for room in the trace's queue.
    pub trace_wait_seconds: Histogram,
    /// Clients refused for lack of valid proxy credentials.
    pub auth_failures: IntCounter,
    /// The same by why (`no-credentials`, `basic-invalid`, `negotiate-replay`, …).
    pub auth_challenges: IntCounterVec,
    /// The directory: whether its last exchange succeeded, and its counters since start
    /// (copied from `identity::directory` when scraped).
    pub directory_up: IntGauge,
    /// 1 when the unblock store's database answers (always, for SQLite); set at scrape.
    pub store_up: IntGauge,
    pub directory_lookups: IntCounter,
    pub directory_cache_hits: IntCounter,
    pub directory_failures: IntCounter,
    pub directory_lookup_seconds: Counter,
    /// Leaf certificates minted since start (caught up from the CA at scrape time).
    pub tls_leaves_minted: IntCounter,
    /// Leaf certificates in the cache now.
    pub tls_leaf_cache: IntGauge,
    /// Open tunnels and upgraded connections (set when scraped).
    pub tunnels_active: IntGauge,
    /// `bytes{direction="sent"}` and `…"received"}`, resolved once: every request adds
    /// to both, and a label lookup hashes and takes a lock.
    pub bytes_sent: IntCounter,
    pub bytes_received: IntCounter,
    /// `request_duration` of each request kind, resolved once.
    durations: [(&'static str, Histogram); 3],
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("charte".into()), None).expect("valid prefix");
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m;
                registry
                    .register(Box::new(m.clone()))
                    .expect("metric names are unique");
                m
            }};
        }
        let requests = reg!(
            IntCounterVec::new(
                Opts::new(
                    "requests_total",
                    "Requests and tunnels by kind, decision, category and group"
                ),
                &["kind", "decision", "category", "group"],
            )
            .unwrap()
        );
        let blocks = reg!(
            IntCounterVec::new(
                Opts::new("blocks_total", "Refusals by reason code"),
                &["reason"]
            )
            .unwrap()
        );
        let active_connections = reg!(
            IntGaugeVec::new(
                Opts::new("active_connections", "Open client connections by listener"),
                &["listener"],
            )
            .unwrap()
        );
        let bytes = reg!(
            IntCounterVec::new(
                Opts::new("bytes_total", "Bytes relayed by direction"),
                &["direction"]
            )
            .unwrap()
        );
        let request_duration = reg!(
            HistogramVec::new(
                HistogramOpts::new(
                    "request_duration_seconds",
                    "Duration of requests and tunnels"
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
                    600.0,
                ]),
                &["kind"],
            )
            .unwrap()
        );
        let upstream_errors = reg!(
            IntCounterVec::new(
                Opts::new("upstream_errors_total", "Upstream failures by kind"),
                &["kind"],
            )
            .unwrap()
        );
        let content_checks = reg!(
            IntCounterVec::new(
                Opts::new(
                    "content_checks_total",
                    "Uploads and downloads read by the content checks, by what and outcome",
                ),
                &["what", "outcome"],
            )
            .unwrap()
        );
        let connections_refused = reg!(
            IntCounterVec::new(
                Opts::new(
                    "connections_refused_total",
                    "Client connections refused with 503 at accept, by cap",
                ),
                &["cap"],
            )
            .unwrap()
        );
        let reloads = reg!(
            IntCounterVec::new(
                Opts::new("policy_reloads_total", "Policy reloads by result"),
                &["result"]
            )
            .unwrap()
        );
        let policy_generation =
            reg!(IntGauge::new("policy_generation", "Generation of the policy in force").unwrap());
        let policy_loaded_timestamp = reg!(
            Gauge::new(
                "policy_loaded_timestamp_seconds",
                "When the policy in force was loaded (Unix time)"
            )
            .unwrap()
        );
        let policy_build_seconds = reg!(
            Gauge::new(
                "policy_build_seconds",
                "Time taken to compile the policy in force"
            )
            .unwrap()
        );
        let policy_stale = reg!(
            IntGauge::new(
                "policy_stale",
                "1 when the last reload failed and an older policy is still in force"
            )
            .unwrap()
        );
        let index_entries = reg!(
            IntGaugeVec::new(
                Opts::new("index_entries", "Entries in the classification indexes"),
                &["kind"],
            )
            .unwrap()
        );
        let index_bytes =
            reg!(IntGauge::new("index_bytes", "Heap bytes of the classification indexes").unwrap());
        let trace_dropped = reg!(
            IntCounter::new(
                "trace_dropped_total",
                "Trace lines dropped (writer too slow)"
            )
            .unwrap()
        );
        let trace_wait_seconds = reg!(
            Histogram::with_opts(
                HistogramOpts::new(
                    "trace_wait_seconds",
                    "Durable trace mode: time requests waited for room in the trace's queue"
                )
                .buckets(vec![0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            )
            .unwrap()
        );
        let auth_failures = reg!(
            IntCounter::new(
                "auth_failures_total",
                "Requests refused for missing or wrong credentials"
            )
            .unwrap()
        );
        let auth_challenges = reg!(
            IntCounterVec::new(
                Opts::new(
                    "auth_challenges_total",
                    "407 answers by why: no-credentials, basic-invalid, unsupported-scheme, \
                     negotiate-<refusal> (malformed, replay, expired, wrong-service, ntlm, other)"
                ),
                &["reason"]
            )
            .unwrap()
        );
        for r in [
            "no-credentials",
            "basic-invalid",
            "negotiate-malformed",
            "negotiate-replay",
            "negotiate-expired",
            "negotiate-wrong-service",
        ] {
            auth_challenges.with_label_values(&[r]);
        }
        let directory_up = reg!(
            IntGauge::new(
                "directory_up",
                "1 when the directory's last exchange succeeded (0 also before the first)"
            )
            .unwrap()
        );
        let store_up = reg!(
            IntGauge::new(
                "store_up",
                "1 when the unblock store's database answers (always 1 for SQLite); 0: \
                 filtering goes on with the approvals known, new requests are refused"
            )
            .unwrap()
        );
        let directory_lookups = reg!(
            IntCounter::new(
                "directory_lookups_total",
                "Group lookups and password checks sent to the directory"
            )
            .unwrap()
        );
        let directory_cache_hits = reg!(
            IntCounter::new(
                "directory_cache_hits_total",
                "Directory answers taken from the cache"
            )
            .unwrap()
        );
        let directory_failures = reg!(
            IntCounter::new(
                "directory_failures_total",
                "Directory lookups that ended in an error"
            )
            .unwrap()
        );
        let directory_lookup_seconds = reg!(
            Counter::new(
                "directory_lookup_seconds_total",
                "Time spent in directory lookups (divide by directory_lookups_total)"
            )
            .unwrap()
        );
        let tls_leaves_minted = reg!(
            IntCounter::new(
                "tls_leaves_minted_total",
                "Leaf certificates minted by the organisation's CA since start"
            )
            .unwrap()
        );
        let tls_leaf_cache = reg!(
            IntGauge::new(
                "tls_leaf_cache_entries",
                "Leaf certificates held in the cache"
            )
            .unwrap()
        );
        let tunnels_active = reg!(
            IntGauge::new(
                "tunnels_active",
                "Open CONNECT tunnels and upgraded connections (their client connection \
                 is no longer counted in active_connections once handed over)"
            )
            .unwrap()
        );
        // Every reason and byte direction exists from the start, so dashboards see zeros.
        for code in crate::policy::ReasonCode::ALL {
            if code.is_block() {
                blocks.with_label_values(&[code.as_str()]);
            }
        }
        let bytes_sent = bytes.with_label_values(&["sent"]);
        let bytes_received = bytes.with_label_values(&["received"]);
        let durations = REQUEST_KINDS.map(|k| (k, request_duration.with_label_values(&[k])));
        for r in ["ok", "error"] {
            reloads.with_label_values(&[r]);
        }
        let build_info = reg!(
            IntGaugeVec::new(
                Opts::new(
                    "build_info",
                    "Always 1: the version of this build and whether it has Kerberos"
                ),
                &["version", "kerberos"],
            )
            .unwrap()
        );
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                if cfg!(feature = "kerberos") {
                    "true"
                } else {
                    "false"
                },
            ])
            .set(1);
        let process = Registry::new();
        #[cfg(target_os = "linux")]
        process
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics are registered once");
        Metrics {
            registry,
            process,
            requests,
            blocks,
            active_connections,
            bytes,
            request_duration,
            upstream_errors,
            content_checks,
            connections_refused,
            reloads,
            policy_generation,
            policy_loaded_timestamp,
            policy_build_seconds,
            policy_stale,
            index_entries,
            index_bytes,
            trace_dropped,
            trace_wait_seconds,
            auth_failures,
            auth_challenges,
            directory_up,
            store_up,
            directory_lookups,
            directory_cache_hits,
            directory_failures,
            directory_lookup_seconds,
            tls_leaves_minted,
            tls_leaf_cache,
            tunnels_active,
            bytes_sent,
            bytes_received,
            durations,
        }
    }

    /// Adds a request of `kind` (`http`, `connect`, `https`) to `request_duration`.
    pub fn observe_duration(&self, kind: &str, seconds: f64) {
        match self.durations.iter().find(|(k, _)| *k == kind) {
            Some((_, h)) => h.observe(seconds),
            None => self
                .request_duration
                .with_label_values(&[kind])
                .observe(seconds),
        }
    }

    /// Copies the leaf certificate cache's counts (at scrape time).
    pub fn observe_leaves(&self, minted: u64, cached: usize) {
        catch_up(&self.tls_leaves_minted, minted);
        self.tls_leaf_cache
            .set(i64::try_from(cached).unwrap_or(i64::MAX));
    }

    /// Copies the directory's state and counters (at scrape time).
    pub fn observe_directory(&self, d: &crate::identity::directory::Directory) {
        let stats = d.stats();
        self.directory_up.set(i64::from(d.health().up));
        catch_up(&self.directory_lookups, stats.lookups);
        catch_up(&self.directory_cache_hits, stats.cache_hits);
        catch_up(&self.directory_failures, stats.failures);
        let seconds = self.directory_lookup_seconds.get();
        if stats.latency_sum_seconds > seconds {
            self.directory_lookup_seconds
                .inc_by(stats.latency_sum_seconds - seconds);
        }
    }

    /// Prometheus text exposition: the proxy's metrics, then the process's.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        families.extend(self.process.gather());
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

/// Raises counter `c` to `v`, a count kept elsewhere that only grows.
fn catch_up(c: &IntCounter, v: u64) {
    let now = c.get();
    if v > now {
        c.inc_by(v - now);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
