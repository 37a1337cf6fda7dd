//! `charte-proxy trace search` over a year-sized trace (issue 24): generates a year of
//! closed daily files, zstd-compressed as the proxy writes them (50 million lines by
//! default, about 137 000 a day, 500 users, 3 000 sites), then times the real binary
//! searching one user's lines over the whole year, and beside it, in the same run, the
//! reference a Unix administrator would use: `zstdcat … | grep -F '"user":"…"'`. The
//! figures that count are the ratios (the machines are shared and noisy).
//!
//! ```sh
//! cargo bench --bench trace_search                       # 50 million lines (about 1.3 GB)
//! CHARTE_BENCH_TRACE_LINES=5000000 cargo bench --bench trace_search
//! ```
//!
//! Without `--bench` (`cargo test --benches`) it runs on 200 000 lines, as a check that
//! it works. The files are kept in `target/trace-bench/` and reused when they are
//! already there with the same size (`CHARTE_BENCH_TRACE_DIR` to put them elsewhere).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// splitmix64: fixed seeds, same data every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const USERS: u64 = 500;
const SITES: u64 = 3_000;
const DAYS: u64 = 365;

fn generate(dir: &Path, lines: u64) -> u64 {
    let stamp = dir.join("generated");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(&lines.to_string()) {
        eprintln!("reusing the {lines} lines in {}", dir.display());
        return std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .sum();
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let t0 = Instant::now();
    let mut rng = Rng(0x5eed);
    let per_day = lines / DAYS;
    let start = jiff::civil::date(2025, 12, 1);
    let mut bytes = 0;
    let mut line = String::with_capacity(512);
    for d in 0..DAYS {
        let day = start.checked_add(jiff::Span::new().days(d as i64)).unwrap();
        let path = dir.join(format!("trace.log-{day}.zst"));
        let f = std::fs::File::create(&path).unwrap();
        let mut z = zstd::Encoder::new(std::io::BufWriter::new(f), 3).unwrap();
        let n = if d == DAYS - 1 {
            lines - per_day * (DAYS - 1)
        } else {
            per_day
        };
        for i in 0..n {
            let secs = 7 * 3600 + i * (11 * 3600) / n.max(1);
            let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
            let user = rng.below(USERS);
            let site = rng.below(SITES);
            let blocked = rng.below(20) == 0;
            line.clear();
            use std::fmt::Write as _;
            let _ = write!(
                line,
                r#"{{"time":"{day}T{h:02}:{m:02}:{s:02}.{ms:03}Z","client":"10.1.{a}.{b}","workstation":null,"user":"agent{user:03}","groups":["agents"],"method":"GET","scheme":"http","host":"www.site{site}.example","port":80,"path":"/page/{p}","categories":[{cat}],"decision":"{dec}","rule":{rule},"reason_code":{rc},"reason":{reason},"would_block":false,"inspection":"plain","status":{st},"bytes_sent":{sent},"bytes_received":{recv},"duration_ms":{dur},"upstream":"192.0.2.{a}:80","error":null,"user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/132.0","content_type":"text/html","user_tried":null}}"#,
                ms = rng.below(1000),
                a = user / 250,
                b = user % 250,
                p = rng.below(100_000),
                cat = if blocked { r#""jeux""# } else { "" },
                dec = if blocked { "block" } else { "allow" },
                rule = if blocked { r#""jeux""# } else { "null" },
                rc = if blocked { r#""category""# } else { "null" },
                reason = if blocked {
                    r#""Jeux d'argent en ligne""#
                } else {
                    "null"
                },
                st = if blocked { 403 } else { 200 },
                sent = 300 + rng.below(2000),
                recv = rng.below(200_000),
                dur = rng.below(800),
            );
            line.push('\n');
            z.write_all(line.as_bytes()).unwrap();
            bytes += line.len() as u64;
        }
        z.finish().unwrap().flush().unwrap();
    }
    std::fs::write(&stamp, lines.to_string()).unwrap();
    eprintln!(
        "generated {lines} lines ({:.1} GB uncompressed) in {:.0} s",
        bytes as f64 / 1e9,
        t0.elapsed().as_secs_f64()
    );
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Runs `cmd`, returns (seconds, lines on standard output).
fn timed(cmd: &mut Command) -> (f64, u64) {
    let t0 = Instant::now();
    let out = cmd.stderr(Stdio::inherit()).output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed");
    let n = out.stdout.iter().filter(|&&b| b == b'\n').count() as u64;
    (t0.elapsed().as_secs_f64(), n)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let lines: u64 = std::env::var("CHARTE_BENCH_TRACE_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 50_000_000 } else { 200_000 });
    let dir = std::env::var_os("CHARTE_BENCH_TRACE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(if full {
                "target/trace-bench"
            } else {
                "target/trace-bench-check"
            })
        });
    let data = dir.join("data");
    let on_disk = generate(&data, lines);
    let files: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&data)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "zst"))
            .collect();
        v.sort();
        v
    };
    let who = "agent123";

    // The product: every file, one user, in time order, the access recorded.
    let (t_proxy, n_proxy) = timed(
        Command::new(env!("CARGO_BIN_EXE_charte-proxy"))
            .args(["trace", "search", "--user", who, "--data-dir"])
            .arg(&data)
            .env("CHARTE_LOG", "warn"),
    );
    // The reference: decompress and grep, no parsing, no ordering.
    let (t_ref, n_ref) = timed(Command::new("sh").arg("-c").arg(format!(
                "zstdcat {} | grep -F '\"user\":\"{who}\"'",
                files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            )));
    assert_eq!(n_proxy, n_ref, "the search and grep disagree");
    // A narrower search: one user on one week (only the files of those days are read).
    let (t_week, n_week) = timed(
        Command::new(env!("CARGO_BIN_EXE_charte-proxy"))
            .args([
                "trace",
                "search",
                "--user",
                who,
                "--from",
                "2026-03-02",
                "--to",
                "2026-03-08",
                "--data-dir",
            ])
            .arg(&data)
            .env("CHARTE_LOG", "warn"),
    );
    println!(
        "trace search over {lines} lines in {} zstd files ({:.2} GB on disk), user {who}:",
        files.len(),
        on_disk as f64 / 1e9
    );
    println!(
        "  charte-proxy trace search --user   {t_proxy:8.1} s  {:>12.0} lines/s  {n_proxy} found",
        lines as f64 / t_proxy
    );
    println!(
        "  zstdcat | grep -F (reference)      {t_ref:8.1} s  {:>12.0} lines/s  {n_ref} found",
        lines as f64 / t_ref
    );
    println!(
        "  ratio product / reference time     {:8.2}",
        t_proxy / t_ref
    );
    println!("  one week (--from/--to)             {t_week:8.2} s  {n_week} found");
}
