//! Benchmarks of the hot path: the domain index (build and lookup), host normalisation,
//! and one whole decision with the shipped policy. See `benches/README.md`.
//!
//!     cargo bench --bench index                       # 1 000 000 domains, 200 000 queries
//!     CHARTE_BENCH_DOMAINS=6000000 cargo bench --bench index
//!     CHARTE_BENCH_UT1=/path/to/ut1 cargo bench --bench index   # real UT1 names first
//!     CHARTE_BENCH_IDX=x.idx CHARTE_BENCH_QUERY_FILE=q.txt cargo bench --bench index -- lookup_file
//!
//! The data is made here, reproducibly (fixed seeds, a splitmix64 generator), so the bench
//! needs nothing outside the crate. Every benchmark checks its answer before it is timed.
//! Figures that criterion does not give (memory, build time of one build, the latency
//! distribution of single lookups) are printed once, on stderr, before the timed runs.
//!
//! Under `cargo test --benches` (criterion's test mode) each benchmark runs once, on
//! small default sizes (20 000 domains, 10 000 queries) unless the variables say otherwise.

use std::cell::OnceCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::hash::{Hash, Hasher};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};

use charte_proxy::classify::{
    Classification, DomainIndex, DomainMatches, Host, IndexBuilder, TagId,
};
use charte_proxy::config::categories::{Entry, parse_entry};
use charte_proxy::policy::{RequestFacts, Verdict};
use charte_proxy::snapshot::Snapshot;

// ---------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------

/// Number of synthetic categories (tags) the generated names are spread over.
const TAGS: usize = 60;
/// Share of generated names that also carry a second tag (a site in two categories).
const SECOND_TAG: f64 = 0.05;
/// Skewed query stream: this share of the queries is drawn from the first
/// `HOT_FRACTION` of the host pool (popular sites asked again and again).
const HOT_SHARE: f64 = 0.20;
const HOT_FRACTION: f64 = 0.01;
/// Hosts of the shipped categories (and as many misses) for `policy/decide`.
const POLICY_HOSTS_PER_FILE: usize = 200;

struct Settings {
    domains: usize,
    queries: usize,
    ut1: Option<PathBuf>,
}

impl Settings {
    fn from_env(bench_mode: bool) -> Settings {
        let num = |var: &str, default: usize| -> usize {
            match std::env::var(var) {
                Ok(v) => v
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("{var}={v:?} is not a number")),
                Err(_) => default,
            }
        };
        let (d, q) = if bench_mode {
            (1_000_000, 200_000)
        } else {
            (20_000, 10_000)
        };
        Settings {
            domains: num("CHARTE_BENCH_DOMAINS", d).max(1),
            queries: num("CHARTE_BENCH_QUERIES", q).max(2),
            ut1: std::env::var_os("CHARTE_BENCH_UT1").map(PathBuf::from),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Deterministic generator (the same idea as shared/bench/gen_domains.py, no crates)
// ---------------------------------------------------------------------------------------

/// splitmix64: small, fast, and good enough for test data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            xs.swap(i, self.below(i + 1));
        }
    }
}

const TLDS: &[(&str, usize)] = &[
    ("com", 46),
    ("fr", 9),
    ("net", 7),
    ("org", 5),
    ("ru", 4),
    ("de", 4),
    ("co.uk", 2),
    ("info", 2),
    ("xyz", 2),
    ("io", 2),
    ("nl", 1),
    ("es", 1),
    ("it", 1),
    ("be", 1),
    ("ch", 1),
    ("pl", 1),
    ("com.br", 1),
    ("jp", 1),
    ("online", 1),
    ("site", 1),
    ("top", 1),
    ("tv", 1),
    ("eu", 1),
    ("ca", 1),
];

const SYLL: &[&str] = &[
    "ka", "ro", "mi", "to", "na", "be", "la", "vi", "de", "so", "lu", "pa", "ri", "mo", "ne", "ta",
    "co", "fi", "ga", "po", "se", "du", "chat", "blog", "shop", "net", "web", "cloud", "porn",
    "cam", "sex", "bet", "casino", "game", "tube", "vid", "free", "live", "hot", "best", "my",
    "go", "top", "pro", "online", "zone", "hub", "city", "link", "mail",
];

const SUBS: &[&str] = &[
    "www", "m", "cdn", "static", "img", "api", "mail", "shop", "blog", "fr", "en",
];

fn tld(rng: &mut Rng) -> &'static str {
    let total: usize = TLDS.iter().map(|t| t.1).sum();
    let mut x = rng.below(total);
    for &(t, w) in TLDS {
        if x < w {
            return t;
        }
        x -= w;
    }
    unreachable!()
}

/// A label of 2–4 syllables, sometimes with digits or a hyphen.
fn label(rng: &mut Rng, out: &mut String) {
    let start = out.len();
    for _ in 0..2 + rng.below(3) {
        out.push_str(SYLL[rng.below(SYLL.len())]);
    }
    if rng.unit() < 0.25 {
        out.push_str(&(1 + rng.below(999)).to_string());
    }
    if rng.unit() < 0.15 {
        let mid = start + (out.len() - start) / 2;
        out.insert(mid, '-');
    }
    out.truncate(start + (out.len() - start).min(63));
}

/// A plausible registrable name, sometimes with a `www.`/`cdn.`/… prefix.
fn synthetic_name(rng: &mut Rng) -> String {
    let mut s = String::with_capacity(32);
    if rng.unit() < 0.12 {
        s.push_str(SUBS[rng.below(SUBS.len())]);
        s.push('.');
    }
    label(rng, &mut s);
    s.push('.');
    s.push_str(tld(rng));
    s
}

/// Zipf-like weights 1/(i+1) over `TAGS` tags: tag 0 holds about 21 % of the names,
/// the 30 smallest about 1 % each or less.
struct TagDist(Vec<f64>);

impl TagDist {
    fn new() -> TagDist {
        let mut acc = 0.0;
        let mut cum: Vec<f64> = (0..TAGS)
            .map(|i| {
                acc += 1.0 / (i + 1) as f64;
                acc
            })
            .collect();
        for c in &mut cum {
            *c /= acc;
        }
        TagDist(cum)
    }

    fn sample(&self, rng: &mut Rng) -> TagId {
        let x = rng.unit();
        self.0.partition_point(|&c| c <= x).min(TAGS - 1) as TagId
    }
}

fn quick_hash(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

// ---------------------------------------------------------------------------------------
// The data set
// ---------------------------------------------------------------------------------------

/// What the index is built from and what it is asked.
struct Data {
    /// Distinct listed names (each matches itself and its subdomains).
    names: Vec<Host>,
    /// (index into `names`, tag): what goes into the builder, a name once per tag.
    entries: Vec<(u32, TagId)>,
    tag_count: usize,
    ut1_names: usize,
    ut1_categories: usize,
    ut1_skipped: usize,
    /// Skewed stream: half hits, half misses, popular hosts repeated.
    raw: Vec<String>,
    queries: Vec<Host>,
    is_hit: Vec<bool>,
    hits: usize,
    /// Every host of the pool once, shuffled (no repetition, so colder caches).
    uniform: Vec<Host>,
    uniform_hits: usize,
    gen_time: Duration,
}

/// Reads every `CATEGORY/domains` file under `root` (UT1 layout), as the product would
/// parse them. Returns the lines as hosts, tagged by category (sorted by name).
fn read_ut1(root: &Path) -> (Vec<(Host, TagId)>, usize, usize) {
    let mut cats: Vec<PathBuf> = fs::read_dir(root)
        .unwrap_or_else(|e| panic!("CHARTE_BENCH_UT1={}: {e}", root.display()))
        .filter_map(|d| d.ok().map(|d| d.path()))
        .filter(|p| p.join("domains").is_file())
        .collect();
    cats.sort();
    assert!(
        !cats.is_empty(),
        "CHARTE_BENCH_UT1={}: no CATEGORY/domains file there",
        root.display()
    );
    let mut out = Vec::new();
    let mut skipped = 0;
    for (tag, cat) in cats.iter().enumerate() {
        let bytes = fs::read(cat.join("domains")).expect("read a UT1 domains file");
        for line in String::from_utf8_lossy(&bytes).lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_entry(line) {
                Ok(Entry::Domain { host, exact: false }) => out.push((host, tag as TagId)),
                _ => skipped += 1,
            }
        }
    }
    (out, cats.len(), skipped)
}

fn covered(host: &Host, listed: &HashSet<&str>) -> bool {
    let s = host.as_str();
    host.suffix_starts().any(|i| listed.contains(&s[i..]))
}

/// A host that the index must find: a listed name, or a subdomain of one.
fn make_hit(rng: &mut Rng, names: &[Host]) -> String {
    loop {
        let d = rng.pick(names);
        if !d.is_domain() {
            // An address matches itself only.
            return d.as_str().to_string();
        }
        let r = rng.unit();
        let s = if r < 0.4 {
            d.as_str().to_string()
        } else if r < 0.8 {
            format!("{}.{}", rng.pick(SUBS), d)
        } else {
            let mut s = String::new();
            label(rng, &mut s);
            format!("{s}.{d}")
        };
        if Host::parse(&s).is_ok() {
            return s; // else too long: draw again
        }
    }
}

/// A host that no entry covers (checked by walking its suffixes).
fn make_miss(rng: &mut Rng, listed: &HashSet<&str>) -> String {
    loop {
        let mut s = String::from("q");
        label(rng, &mut s);
        s.push('.');
        s.push_str(tld(rng));
        if rng.unit() < 0.5 {
            s = format!("{}.{s}", rng.pick(SUBS));
        }
        let h = Host::parse(&s).expect("generated names are valid");
        if !covered(&h, listed) {
            return s;
        }
    }
}

impl Data {
    fn generate(set: &Settings) -> Data {
        let started = Instant::now();
        let mut rng = Rng::new(1);
        let dist = TagDist::new();
        let mut names: Vec<Host> = Vec::with_capacity(set.domains);
        let mut entries: Vec<(u32, TagId)> = Vec::with_capacity(set.domains + set.domains / 16);
        // Hashes of the names so far, to keep them distinct. A clash of two different
        // names (odds ~1e-6 at 6M) would only drop one name, never list one twice.
        let mut seen: HashMap<u64, u32> = HashMap::with_capacity(set.domains);

        let (mut ut1_names, mut ut1_categories, mut ut1_skipped, mut tag_count) = (0, 0, 0, TAGS);
        if let Some(root) = &set.ut1 {
            let (lines, cats, skipped) = read_ut1(root);
            ut1_categories = cats;
            ut1_skipped = skipped;
            tag_count = tag_count.max(cats);
            for (host, tag) in lines {
                let key = quick_hash(host.as_str());
                let idx = match seen.get(&key) {
                    Some(&i) => i,
                    None if names.len() < set.domains => {
                        names.push(host);
                        let i = (names.len() - 1) as u32;
                        seen.insert(key, i);
                        i
                    }
                    None => continue,
                };
                entries.push((idx, tag));
            }
            entries.sort_unstable();
            entries.dedup();
            ut1_names = names.len();
        }

        while names.len() < set.domains {
            let s = synthetic_name(&mut rng);
            let key = quick_hash(&s);
            if seen.contains_key(&key) {
                continue;
            }
            let host = Host::parse(&s).expect("generated names are valid");
            let i = names.len() as u32;
            seen.insert(key, i);
            names.push(host);
            let t = dist.sample(&mut rng);
            entries.push((i, t));
            if rng.unit() < SECOND_TAG {
                let t2 = dist.sample(&mut rng);
                if t2 != t {
                    entries.push((i, t2));
                }
            }
        }
        drop(seen);

        let listed: HashSet<&str> = names.iter().map(Host::as_str).collect();
        let m = set.queries;
        let half = m / 2;
        let mut rng = Rng::new(2);
        let hit_pool: Vec<String> = (0..half).map(|_| make_hit(&mut rng, &names)).collect();
        let miss_pool: Vec<String> = (0..m - half)
            .map(|_| make_miss(&mut rng, &listed))
            .collect();
        drop(listed);

        // Skewed stream: exactly `half` hits, in random order; each query comes from the
        // hottest 1 % of its pool with probability 0.2, else from the whole pool.
        let mut classes: Vec<bool> = (0..m).map(|i| i < half).collect();
        rng.shuffle(&mut classes);
        let mut raw = Vec::with_capacity(m);
        for &hit in &classes {
            let pool = if hit { &hit_pool } else { &miss_pool };
            let hot = ((pool.len() as f64 * HOT_FRACTION) as usize).max(1);
            let s = if rng.unit() < HOT_SHARE {
                &pool[rng.below(hot)]
            } else {
                rng.pick(pool)
            };
            raw.push(s.clone());
        }
        let queries: Vec<Host> = raw.iter().map(|s| Host::parse(s).unwrap()).collect();

        // Uniform stream: every pooled host once.
        let mut uniform: Vec<(bool, &String)> = hit_pool
            .iter()
            .map(|s| (true, s))
            .chain(miss_pool.iter().map(|s| (false, s)))
            .collect();
        rng.shuffle(&mut uniform);
        let uniform_hits = uniform.iter().filter(|u| u.0).count();
        let uniform = uniform
            .iter()
            .map(|(_, s)| Host::parse(s).unwrap())
            .collect();

        Data {
            names,
            entries,
            tag_count,
            ut1_names,
            ut1_categories,
            ut1_skipped,
            raw,
            queries,
            is_hit: classes,
            hits: half,
            uniform,
            uniform_hits,
            gen_time: started.elapsed(),
        }
    }

    fn fill(&self) -> IndexBuilder {
        let mut b = IndexBuilder::with_capacity(self.entries.len());
        for &(i, tag) in &self.entries {
            b.add(&self.names[i as usize], tag, false);
        }
        b
    }

    fn build(&self) -> DomainIndex {
        self.fill().build()
    }

    fn describe(&self) {
        let mut per_tag = vec![0usize; self.tag_count];
        for &(_, t) in &self.entries {
            per_tag[t as usize] += 1;
        }
        let mut sizes = per_tag.clone();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let repeats = {
            let mut seen = HashSet::new();
            self.queries.len() - self.queries.iter().filter(|h| seen.insert(*h)).count()
        };
        note(format_args!(
            "data: {} names ({} from UT1 in {} categories, {} UT1 lines skipped, {} synthetic), \
             {} entries over {} tags (largest {:?} … smallest {}), made in {:.1} s",
            self.names.len(),
            self.ut1_names,
            self.ut1_categories,
            self.ut1_skipped,
            self.names.len() - self.ut1_names,
            self.entries.len(),
            per_tag.iter().filter(|&&n| n > 0).count(),
            &sizes[..4.min(sizes.len())],
            sizes.iter().rev().find(|&&n| n > 0).unwrap_or(&0),
            self.gen_time.as_secs_f64(),
        ));
        let probes: usize = self.queries.iter().map(|h| h.suffix_starts().count()).sum();
        note(format_args!(
            "queries: {} ({} hits, {} misses); {:.0} % from the hottest {:.0} % of hosts, \
             {} repeats of an earlier query; {:.2} suffixes probed a query",
            self.queries.len(),
            self.hits,
            self.queries.len() - self.hits,
            HOT_SHARE * 100.0,
            HOT_FRACTION * 100.0,
            repeats,
            probes as f64 / self.queries.len().max(1) as f64,
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Checks and one-off measurements (outside the timed loops)
// ---------------------------------------------------------------------------------------

fn note(args: std::fmt::Arguments) {
    eprintln!("[charte-bench] {args}");
}

fn status_kib(field: &str) -> Option<u64> {
    let s = fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// Looks every query up (the timed loop of the lookup benchmarks); returns the hit count.
fn count_hits(ix: &DomainIndex, queries: &[Host], out: &mut DomainMatches) -> usize {
    let mut hits = 0usize;
    for h in queries {
        out.clear();
        ix.lookup_into(black_box(h), out);
        hits += usize::from(!out.is_empty());
    }
    hits
}

/// Looks every query up and checks hits and misses one by one. Returns the hit count.
fn check_lookups(ix: &DomainIndex, queries: &[Host], is_hit: Option<&[bool]>) -> usize {
    let mut out = DomainMatches::new();
    let mut hits = 0;
    for (n, h) in queries.iter().enumerate() {
        out.clear();
        ix.lookup_into(h, &mut out);
        if let Some(flags) = is_hit {
            assert!(
                flags[n] != out.is_empty(),
                "query #{n} {h}: generated as a {}, index says {:?}",
                if flags[n] { "hit" } else { "miss" },
                out
            );
        }
        hits += usize::from(!out.is_empty());
    }
    hits
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Median cost of an empty `Instant::now()` … `elapsed()` pair, in ns.
fn instant_overhead() -> u64 {
    let mut v: Vec<u64> = (0..100_000)
        .map(|_| {
            let t = Instant::now();
            black_box(());
            t.elapsed().as_nanos() as u64
        })
        .collect();
    v.sort_unstable();
    percentile(&v, 0.5)
}

fn latency_line(what: &str, mut ns: Vec<u64>, overhead: u64) -> String {
    ns.sort_unstable();
    let q = |p| percentile(&ns, p);
    let c = |p| q(p).saturating_sub(overhead);
    format!(
        "{what}: median {} ns, p90 {} ns, p99 {} ns, p99.9 {} ns, max {} ns \
         (raw, with timer: median {}, p99 {})",
        c(0.5),
        c(0.9),
        c(0.99),
        c(0.999),
        c(1.0),
        q(0.5),
        q(0.99)
    )
}

/// Times each lookup of the stream on its own and prints the distribution.
fn lookup_latency(ix: &DomainIndex, data: &Data) {
    let overhead = instant_overhead();
    let mut out = DomainMatches::new();
    let (mut all, mut hit, mut miss) = (Vec::new(), Vec::new(), Vec::new());
    for (h, &is_hit) in data.queries.iter().zip(&data.is_hit) {
        out.clear();
        let t = Instant::now();
        ix.lookup_into(black_box(h), &mut out);
        let ns = t.elapsed().as_nanos() as u64;
        black_box(&out);
        all.push(ns);
        if is_hit { &mut hit } else { &mut miss }.push(ns);
    }
    note(format_args!(
        "single lookups timed one by one with Instant; the median cost of an empty \
         Instant pair ({overhead} ns) is subtracted:"
    ));
    note(format_args!("  {}", latency_line("all", all, overhead)));
    note(format_args!("  {}", latency_line("hits", hit, overhead)));
    note(format_args!("  {}", latency_line("misses", miss, overhead)));
}

/// Builds the index once, with memory and timing figures, and checks it.
fn build_and_report(data: &Data) -> DomainIndex {
    data.describe();
    let rss_before = status_kib("VmRSS:").unwrap_or(0);
    // Resets VmHWM so that it shows the peak of the build (Linux ≥ 4.0).
    let hwm_reset = fs::write("/proc/self/clear_refs", "5").is_ok();
    let t0 = Instant::now();
    let b = data.fill();
    let t1 = Instant::now();
    let ix = b.build();
    let t2 = Instant::now();
    let rss_after = status_kib("VmRSS:").unwrap_or(0);
    let hwm = status_kib("VmHWM:").unwrap_or(0);
    note(format_args!(
        "one build of {} entries: add {:.0} ms + build {:.0} ms = {:.0} ms",
        data.entries.len(),
        (t1 - t0).as_secs_f64() * 1e3,
        (t2 - t1).as_secs_f64() * 1e3,
        (t2 - t0).as_secs_f64() * 1e3,
    ));
    let heap = ix.heap_bytes() as f64;
    note(format_args!(
        "index: {} distinct entries (names); heap_bytes {:.1} MiB = {:.1} bytes a name",
        ix.len(),
        mib(heap),
        heap / ix.len().max(1) as f64,
    ));
    note(format_args!(
        "VmRSS before build {:.1} MiB (bench data), after {:.1} MiB: +{:.1} MiB; \
         peak during build {}",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        (rss_after as f64 - rss_before as f64) / 1024.0,
        if hwm_reset {
            format!(
                "{:.1} MiB (+{:.1} MiB)",
                hwm as f64 / 1024.0,
                (hwm as f64 - rss_before as f64) / 1024.0
            )
        } else {
            "unknown (clear_refs refused)".to_string()
        },
    ));

    let hits = check_lookups(&ix, &data.queries, Some(&data.is_hit));
    assert_eq!(
        hits, data.hits,
        "index/lookup: {hits} hits over the stream, {} generated as hits",
        data.hits
    );
    let uniform_hits = check_lookups(&ix, &data.uniform, None);
    assert_eq!(
        uniform_hits, data.uniform_hits,
        "index/lookup_uniform: {uniform_hits} hits, {} generated as hits",
        data.uniform_hits
    );
    note(format_args!(
        "checked: {hits} hits of {} queries, as generated",
        data.queries.len()
    ));
    lookup_latency(&ix, data);
    ix
}

// ---------------------------------------------------------------------------------------
// Policy: the shipped policy, real hosts of its categories and misses
// ---------------------------------------------------------------------------------------

struct Request {
    host: Host,
    path: Option<&'static str>,
    method: &'static str,
    sends_data: bool,
    addr: IpAddr,
    user: Option<&'static str>,
}

impl Request {
    /// The facts as the proxy would give them (no approved request; a body for POST).
    #[inline]
    fn facts(&self) -> RequestFacts<'static> {
        let mut f = RequestFacts::for_method(self.method, self.path.is_some());
        f.body = self.sends_data;
        f
    }
}

struct PolicyData {
    snap: Snapshot,
    requests: Vec<Request>,
    blocks: usize,
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Up to `POLICY_HOSTS_PER_FILE` hosts evenly spread over each shipped `domains` file.
fn shipped_hosts() -> Vec<Host> {
    let mut files = Vec::new();
    for folder in ["categories/ut1", "categories/charte"] {
        let dir = manifest_dir().join(folder);
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        files.extend(
            rd.filter_map(|d| d.ok().map(|d| d.path().join("domains")))
                .filter(|p| p.is_file()),
        );
    }
    files.sort();
    let mut hosts = Vec::new();
    for f in files {
        let text = fs::read_to_string(&f).expect("read a shipped domains file");
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let step = (lines.len() / POLICY_HOSTS_PER_FILE).max(1);
        for l in lines.iter().step_by(step).take(POLICY_HOSTS_PER_FILE) {
            if let Ok(Entry::Domain { host, .. }) = parse_entry(l) {
                hosts.push(host);
            }
        }
    }
    hosts
}

/// One request through the proxy's decision path: who, what site, which verdict.
#[inline]
fn decide_one(
    snap: &Snapshot,
    r: &Request,
    scratch: &mut String,
    class: &mut Classification,
) -> Verdict {
    let who = snap.policy.groups.resolve(r.addr, r.user);
    snap.classifier.classify(&r.host, r.path, scratch, class);
    snap.policy.decide(&who, class, &r.facts()).verdict
}

fn count_blocks(pd: &PolicyData) -> usize {
    let mut scratch = String::new();
    let mut class = Classification::default();
    pd.requests
        .iter()
        .filter(|r| decide_one(&pd.snap, r, &mut scratch, &mut class) == Verdict::Block)
        .count()
}

impl PolicyData {
    fn load() -> PolicyData {
        let path = manifest_dir().join("policies/charte.yaml");
        let snap = Snapshot::load(&path, 1)
            .unwrap_or_else(|d| panic!("the shipped policy does not compile: {d:?}"));
        let mut rng = Rng::new(3);
        let real = shipped_hosts();
        assert!(
            !real.is_empty(),
            "no host read from categories/*/*/domains under {}",
            manifest_dir().display()
        );
        let mut hosts: Vec<Host> = real
            .into_iter()
            .map(|h| {
                if h.is_domain() && rng.unit() < 0.3 {
                    Host::parse(&format!("www.{h}")).unwrap_or(h)
                } else {
                    h
                }
            })
            .collect();
        let misses = hosts.len();
        let mut out = DomainMatches::new();
        while hosts.len() < 2 * misses {
            let mut s = String::from("q");
            label(&mut rng, &mut s);
            let h = Host::parse(&format!("{s}.{}", tld(&mut rng))).unwrap();
            out.clear();
            snap.classifier.domains.lookup_into(&h, &mut out);
            if out.is_empty() {
                hosts.push(h);
            }
        }
        rng.shuffle(&mut hosts);
        let requests = hosts
            .into_iter()
            .map(|host| {
                // Half tunnels (CONNECT, host only), 40 % GET and 10 % POST in clear.
                let (method, path, sends_data) = match rng.below(10) {
                    0..=4 => ("CONNECT", None, false),
                    5..=8 => ("GET", Some("/index.html"), false),
                    _ => ("POST", Some("/upload"), true),
                };
                // Mostly agents, some guests, a few authenticated users.
                let (addr, user) = match rng.below(20) {
                    0..=16 => (Ipv4Addr::new(10, 1, rng.below(256) as u8, 7), None),
                    17 | 18 => (Ipv4Addr::new(192, 168, 100, rng.below(250) as u8 + 2), None),
                    _ => (Ipv4Addr::new(10, 2, 0, 9), Some("c.martin")),
                };
                Request {
                    host,
                    path,
                    method,
                    sends_data,
                    addr: IpAddr::V4(addr),
                    user,
                }
            })
            .collect();
        let mut pd = PolicyData {
            snap,
            requests,
            blocks: 0,
        };
        let first = count_blocks(&pd);
        let second = count_blocks(&pd);
        assert!(
            first > 0,
            "policy/decide: no request of the sample was blocked"
        );
        assert_eq!(first, second, "policy/decide: two passes disagree");
        pd.blocks = first;
        pd.report();
        pd
    }

    fn report(&self) {
        let s = &self.snap;
        note(format_args!(
            "shipped policy: {} domain entries, {} URL entries, compiled in {:.0} ms; \
             domain index {:.1} MiB, URL index {:.1} MiB",
            s.stats.domain_entries,
            s.stats.url_entries,
            s.stats.build_time.as_secs_f64() * 1e3,
            mib((s.classifier.categories.heap_bytes() + s.classifier.domains.heap_bytes()) as f64),
            mib(s.classifier.urls.heap_bytes() as f64),
        ));
        note(format_args!(
            "policy sample: {} requests ({} real category hosts, as many misses), {} blocked",
            self.requests.len(),
            self.requests.len() / 2,
            self.blocks
        ));
        let overhead = instant_overhead();
        let mut scratch = String::new();
        let mut class = Classification::default();
        let mut whole = Vec::with_capacity(self.requests.len() * 5);
        for _ in 0..5 {
            for r in &self.requests {
                let t = Instant::now();
                black_box(decide_one(s, black_box(r), &mut scratch, &mut class));
                whole.push(t.elapsed().as_nanos() as u64);
            }
        }
        note(format_args!(
            "one request timed on its own (the {overhead} ns of an Instant pair subtracted):"
        ));
        note(format_args!(
            "  {}",
            latency_line("resolve + classify + decide (5 passes)", whole, overhead)
        ));
        // The same, stage by stage, to show where the time goes.
        let (mut resolve, mut tunnel, mut clear, mut decide, mut inspection) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..5 {
            for r in &self.requests {
                let t0 = Instant::now();
                let who = s.policy.groups.resolve(r.addr, black_box(r.user));
                let t1 = Instant::now();
                s.classifier
                    .classify(&r.host, black_box(r.path), &mut scratch, &mut class);
                let t2 = Instant::now();
                black_box(s.policy.decide(&who, &class, &r.facts()));
                let t3 = Instant::now();
                // The first step of decide: may TLS be decrypted for this client and site?
                black_box(s.policy.inspection(black_box(&who), &class));
                inspection.push(t3.elapsed().as_nanos() as u64);
                resolve.push((t1 - t0).as_nanos() as u64);
                if r.path.is_some() {
                    &mut clear
                } else {
                    &mut tunnel
                }
                .push((t2 - t1).as_nanos() as u64);
                decide.push((t3 - t2).as_nanos() as u64);
            }
        }
        note(format_args!(
            "  {}",
            latency_line("GroupTable::resolve", resolve, overhead)
        ));
        note(format_args!(
            "  {}",
            latency_line("classify, host only (CONNECT)", tunnel, overhead)
        ));
        note(format_args!(
            "  {}",
            latency_line("classify, host + path (GET/POST)", clear, overhead)
        ));
        note(format_args!(
            "  {}",
            latency_line("Policy::decide", decide, overhead)
        ));
        note(format_args!(
            "  {}",
            latency_line("  of which Policy::inspection", inspection, overhead)
        ));
    }
}

// ---------------------------------------------------------------------------------------
// The benchmarks
// ---------------------------------------------------------------------------------------

fn bench_index(
    c: &mut Criterion,
    data: &OnceCell<Data>,
    built: &OnceCell<DomainIndex>,
    set: &Settings,
) {
    let data = || data.get_or_init(|| Data::generate(set));
    let index = || built.get_or_init(|| build_and_report(data()));

    let mut g = c.benchmark_group("index");

    // Index the entries and build: slow, so few samples of one iteration each.
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    g.bench_function("build", |b| {
        let d = data();
        index(); // reports, and checks, before the first timing
        b.iter_with_large_drop(|| d.build());
    });

    g.sampling_mode(SamplingMode::Auto).sample_size(30);
    g.throughput(Throughput::Elements(set.queries as u64));
    g.bench_function("lookup", |b| {
        let (d, ix) = (data(), index());
        let mut out = DomainMatches::new();
        b.iter(|| {
            let hits = count_hits(ix, &d.queries, &mut out);
            assert_eq!(hits, d.hits, "index/lookup: wrong number of hits");
            hits
        });
    });
    g.bench_function("lookup_uniform", |b| {
        let (d, ix) = (data(), index());
        let mut out = DomainMatches::new();
        b.iter(|| {
            let hits = count_hits(ix, &d.uniform, &mut out);
            assert_eq!(
                hits, d.uniform_hits,
                "index/lookup_uniform: wrong number of hits"
            );
            hits
        });
    });
    // The same index written to a file (`categories compile`) and mapped in place, as
    // the proxy uses it: open time, resident memory, and lookups from the mapping.
    let file = OnceCell::new();
    let mapped = OnceCell::new();
    let file = || {
        file.get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temp dir");
            let path = dir.path().join("bench.idx");
            let t = Instant::now();
            index().write(&path).expect("the index is written");
            note(format_args!(
                "compiled file: {:.1} MiB written in {:.0} ms",
                mib(fs::metadata(&path).map_or(0, |m| m.len()) as f64),
                t.elapsed().as_secs_f64() * 1e3
            ));
            (dir, path)
        })
    };
    let mapped = || {
        mapped.get_or_init(|| {
            let (_, path) = file();
            let rss0 = status_kib("VmRSS:").unwrap_or(0);
            let t = Instant::now();
            let ix = DomainIndex::open(path).expect("the compiled index opens");
            let open = t.elapsed();
            let rss1 = status_kib("VmRSS:").unwrap_or(0);
            let d = data();
            check_lookups(&ix, &d.queries, Some(&d.is_hit));
            check_lookups(&ix, &d.uniform, None);
            let rss2 = status_kib("VmRSS:").unwrap_or(0);
            note(format_args!(
                "mapped index: open + structure check {:.1} ms; VmRSS +{:.1} MiB after open, \
                 +{:.1} MiB after every query of both streams (pages the lookups touched)",
                open.as_secs_f64() * 1e3,
                (rss1 as f64 - rss0 as f64) / 1024.0,
                (rss2 as f64 - rss0 as f64) / 1024.0,
            ));
            note(format_args!("mapped index, single lookups:"));
            lookup_latency(&ix, d);
            ix
        })
    };
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
    g.throughput(Throughput::Elements(1));
    g.bench_function("open", |b| {
        let (_, path) = file();
        mapped();
        b.iter_with_large_drop(|| DomainIndex::open(black_box(path)).expect("opens"));
    });
    g.sampling_mode(SamplingMode::Auto).sample_size(30);
    g.throughput(Throughput::Elements(set.queries as u64));
    g.bench_function("lookup_mapped", |b| {
        let (d, ix) = (data(), mapped());
        let mut out = DomainMatches::new();
        b.iter(|| {
            let hits = count_hits(ix, &d.queries, &mut out);
            assert_eq!(hits, d.hits, "index/lookup_mapped: wrong number of hits");
            hits
        });
    });
    // Reference in the same run: the obvious structure, a std HashSet of the names
    // (SipHash, membership only, no tags), walked over the same suffixes.
    let reference = OnceCell::new();
    g.bench_function("lookup_hashset_reference", |b| {
        let d = data();
        let set = reference.get_or_init(|| {
            let set: HashSet<&str> = d.names.iter().map(Host::as_str).collect();
            let text: usize = d.names.iter().map(|h| h.as_str().len()).sum();
            note(format_args!(
                "HashSet reference: table {:.1} MiB (+ {:.1} MiB of name text it points to)",
                mib((set.capacity() * 17) as f64),
                mib(text as f64)
            ));
            let hits = d.queries.iter().filter(|h| covered(h, &set)).count();
            assert_eq!(hits, d.hits, "HashSet reference: wrong number of hits");
            set
        });
        b.iter(|| {
            let mut hits = 0usize;
            for h in &d.queries {
                hits += usize::from(covered(black_box(h), set));
            }
            assert_eq!(hits, d.hits, "HashSet reference: wrong number of hits");
            hits
        });
    });
    g.finish();
}

fn bench_host(c: &mut Criterion, data: &OnceCell<Data>, set: &Settings) {
    let mut g = c.benchmark_group("host");
    g.sample_size(30);
    g.throughput(Throughput::Elements(set.queries as u64));
    let checked = OnceCell::new();
    g.bench_function("parse", |b| {
        let d = data.get_or_init(|| Data::generate(set));
        checked.get_or_init(|| {
            for (raw, host) in d.raw.iter().zip(&d.queries) {
                assert_eq!(
                    Host::parse(raw).as_ref(),
                    Ok(host),
                    "host/parse: {raw:?} parsed differently"
                );
            }
        });
        b.iter(|| {
            let mut len = 0usize;
            for s in &d.raw {
                len += Host::parse(black_box(s)).map_or(0, |h| h.as_str().len());
            }
            len
        });
    });
    g.finish();
}

fn bench_policy(c: &mut Criterion, pd: &OnceCell<PolicyData>) {
    let mut g = c.benchmark_group("policy");
    g.sample_size(30);
    let pd = pd.get_or_init(PolicyData::load);
    g.throughput(Throughput::Elements(pd.requests.len() as u64));
    g.bench_function("decide", |b| {
        let mut scratch = String::new();
        let mut class = Classification::default();
        b.iter(|| {
            let mut blocks = 0usize;
            for r in &pd.requests {
                let v = decide_one(&pd.snap, black_box(r), &mut scratch, &mut class);
                blocks += usize::from(v == Verdict::Block);
            }
            assert_eq!(blocks, pd.blocks, "policy/decide: verdicts changed");
            blocks
        });
    });
    g.finish();
}

/// Request paths as a proxy sees them: mostly ordinary (segments, a file name, a query),
/// some with escapes, a few with the spellings the canonical form exists for.
fn request_paths(n: usize) -> Vec<String> {
    let mut rng = Rng::new(11);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut p = String::new();
        for _ in 0..1 + rng.below(5) {
            p.push('/');
            label(&mut rng, &mut p);
        }
        let r = rng.unit();
        if r < 0.3 {
            p.push_str(".html");
        } else if r < 0.4 {
            p.push_str("/Mon%20Dossier/%C3%A9t%C3%A9.pdf");
        } else if r < 0.45 {
            p.insert_str(0, "/x/../.");
        } else if r < 0.5 {
            p.push_str(";jsessionid=0A1B2C//%2e%2E/y");
        }
        if rng.unit() < 0.4 {
            p.push_str("?utm_source=lettre&id=");
            p.push_str(&rng.below(1_000_000).to_string());
        }
        out.push(p);
    }
    out
}

/// `path/normalize`: the canonical form of request paths (`classify::path`), beside
/// the per-path work it replaced (a lower-cased copy) in the same run; `path/readings`:
/// what a host with URL entries costs, the canonical form plus the two other readings
/// where they can differ.
fn bench_path(c: &mut Criterion, set: &Settings) {
    use charte_proxy::classify::path::{
        Reading, append_reading, normalize_into, readings_may_differ,
    };
    let paths = request_paths(set.queries.min(100_000));
    let bytes: usize = paths.iter().map(String::len).sum();
    let mut g = c.benchmark_group("path");
    g.sample_size(30);
    g.throughput(Throughput::Elements(paths.len() as u64));
    let mut out = String::new();
    let want: usize = paths
        .iter()
        .map(|p| {
            normalize_into(p, &mut out);
            out.len()
        })
        .sum();
    eprintln!(
        "path: {} paths, {:.1} bytes on average, {:.1} % whose readings may differ",
        paths.len(),
        bytes as f64 / paths.len() as f64,
        100.0 * paths.iter().filter(|p| readings_may_differ(p)).count() as f64 / paths.len() as f64
    );
    g.bench_function("normalize", |b| {
        let mut out = String::new();
        b.iter(|| {
            let mut total = 0usize;
            for p in &paths {
                normalize_into(black_box(p), &mut out);
                total += out.len();
            }
            assert_eq!(total, want, "path/normalize: forms changed");
            total
        });
    });
    g.bench_function("readings", |b| {
        let mut out = String::new();
        b.iter(|| {
            let mut total = 0usize;
            for p in &paths {
                let p = black_box(p);
                out.clear();
                append_reading(p, Reading::Canonical, &mut out);
                if readings_may_differ(p) {
                    for r in [Reading::Rfc, Reading::Literal] {
                        out.push('\n');
                        append_reading(p, r, &mut out);
                    }
                }
                total += out.len();
            }
            total
        });
    });
    g.bench_function("lowercase_reference", |b| {
        let mut out = String::new();
        b.iter(|| {
            let mut total = 0usize;
            for p in &paths {
                let p = black_box(p);
                out.clear();
                if !p.starts_with('/') {
                    out.push('/');
                }
                out.extend(p.chars().map(|c| c.to_ascii_lowercase()));
                total += out.len();
            }
            total
        });
    });
    g.finish();
}

/// `index/lookup_file`: a compiled index file (`categories compile`, as benches/index.sh
/// makes it from gen_domains.py's list) and a query stream from a file (gen_domains.py
/// `queries`, one host a line), when CHARTE_BENCH_IDX and CHARTE_BENCH_QUERY_FILE name
/// them. Lines that are not host names are skipped and counted; the answer checked is the
/// hit count, the same before and during the timed runs.
fn bench_file(c: &mut Criterion) {
    let (Some(idx), Some(qf)) = (
        std::env::var_os("CHARTE_BENCH_IDX"),
        std::env::var_os("CHARTE_BENCH_QUERY_FILE"),
    ) else {
        return;
    };
    let ix = DomainIndex::open(Path::new(&idx)).expect("CHARTE_BENCH_IDX opens");
    let text = fs::read_to_string(&qf).expect("CHARTE_BENCH_QUERY_FILE reads");
    let mut skipped = 0usize;
    let queries: Vec<Host> = text
        .lines()
        .filter_map(|l| {
            let h = Host::parse(l.trim()).ok();
            skipped += usize::from(h.is_none());
            h
        })
        .collect();
    let hits = check_lookups(&ix, &queries, None);
    note(format_args!(
        "file index {} ({} names) and {} queries ({skipped} lines skipped): {hits} hits",
        Path::new(&idx).display(),
        ix.len(),
        queries.len()
    ));
    let overhead = instant_overhead();
    let mut out = DomainMatches::new();
    let mut all = Vec::with_capacity(queries.len());
    for h in &queries {
        out.clear();
        let t = Instant::now();
        ix.lookup_into(black_box(h), &mut out);
        all.push(t.elapsed().as_nanos() as u64);
        black_box(&out);
    }
    note(format_args!(
        "file index, single lookups (Instant pair {overhead} ns subtracted): {}",
        latency_line("all", all, overhead)
    ));
    let mut g = c.benchmark_group("index");
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(queries.len() as u64));
    g.bench_function("lookup_file", |b| {
        let mut out = DomainMatches::new();
        b.iter(|| assert_eq!(count_hits(&ix, &queries, &mut out), hits));
    });
    g.finish();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench_mode = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let set = Settings::from_env(bench_mode);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let data = OnceCell::new();
    let built = OnceCell::new();
    let policy = OnceCell::new();
    bench_index(&mut c, &data, &built, &set);
    bench_host(&mut c, &data, &set);
    bench_path(&mut c, &set);
    bench_policy(&mut c, &policy);
    bench_file(&mut c);
    c.final_summary();
}
