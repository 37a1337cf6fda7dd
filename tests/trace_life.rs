//! The trace's life (issue 24) through the real binary, on a clock the test sets
//! (`CHARTE_FAKE_NOW`): the files rotate at local midnight (Europe/Paris), closed files
//! are compressed, a file left from a day the proxy was not running is closed at start,
//! and files older than the retention are deleted, each purge logged.

mod common;

use std::ffi::OsString;
use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::proxy::{Proxy, Upstream, curl, fixture_dir};

/// Waits until `f` gives `Some`.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn gunzip(path: &Path) -> String {
    let mut s = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s
}

fn get(p: &Proxy, url: &str) {
    let (code, out, err) = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-x",
        &p.url(),
        url,
    ]);
    assert_eq!((code, out.as_str()), (0, "200"), "{url}: {err}");
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("trace.log") || n.starts_with("access.log"))
        .collect();
    v.sort();
    v
}

#[test]
fn files_rotate_at_local_midnight_are_compressed_and_deleted_after_the_retention() {
    let up = Upstream::start();
    let dir = fixture_dir();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // A closed file past the retention (365 days before 2026-12-31 is 2025-12-31), one
    // within it not compressed yet, and the live file last written on 30 December.
    std::fs::write(data.join("trace.log-2025-12-30"), "{\"old\":1}\n").unwrap();
    std::fs::write(data.join("trace.log-2026-06-01"), "{\"june\":1}\n").unwrap();
    std::fs::write(data.join("trace.log"), "{\"dec30\":1}\n").unwrap();
    let dec30 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_628_400); // 2026-12-30T12:00:00+01:00
    std::fs::File::options()
        .append(true)
        .open(data.join("trace.log"))
        .unwrap()
        .set_modified(dec30)
        .unwrap();

    let server = "reverse_dns: false
time_zone: Europe/Paris
trace:
  retention_days: 365
  outputs:
    - {path: data/access.log, format: squid}
";
    // Two seconds before midnight in Paris (22:59:58 UTC).
    let env: [(&'static str, OsString); 1] =
        [("CHARTE_FAKE_NOW", "2026-12-31T23:59:58+01:00".into())];
    let p = Proxy::start_in_with(dir, server, &env, &[]);

    // At start: the stale live file closed under its day, the old one deleted and the
    // purge logged, the closed ones compressed.
    wait_for("the files kept, compressed", || {
        let n = names(&data);
        (n.contains(&"trace.log-2026-06-01.gz".to_string())
            && n.contains(&"trace.log-2026-12-30.gz".to_string()))
        .then_some(())
    });
    assert!(
        !data.join("trace.log-2025-12-30").exists(),
        "{:?}",
        names(&data)
    );
    assert_eq!(
        gunzip(&data.join("trace.log-2026-12-30.gz")),
        "{\"dec30\":1}\n"
    );
    assert_eq!(
        gunzip(&data.join("trace.log-2026-06-01.gz")),
        "{\"june\":1}\n"
    );
    wait_for("the purge's log line", || {
        let log = p.stderr.lock().unwrap().clone();
        (log.contains("trace purge") && log.contains("2025-12-31")).then_some(())
    });

    // A request on 31 December, then midnight passes on the proxy's clock.
    get(
        &p,
        &format!("http://allowed.test:{}/small?before", up.port()),
    );
    let before = p.trace(1);
    assert!(
        before[0]["time"]
            .as_str()
            .unwrap()
            .starts_with("2026-12-31T22:59:5"),
        "{before:?}"
    );
    let closed = wait_for("the day's files closed and compressed at midnight", || {
        let n = names(&data);
        (n.contains(&"trace.log-2026-12-31.gz".to_string())
            && n.contains(&"access.log-2026-12-31.gz".to_string()))
        .then_some(n)
    });
    assert!(closed.contains(&"trace.log".to_string()), "{closed:?}");
    let day = gunzip(&data.join("trace.log-2026-12-31.gz"));
    assert_eq!(day.lines().count(), 1, "{day}");
    assert!(day.contains("small?before"), "{day}");
    let squid_day = gunzip(&data.join("access.log-2026-12-31.gz"));
    assert!(squid_day.contains("small?before"), "{squid_day}");

    // The next request is the new year's, in the new live files.
    get(
        &p,
        &format!("http://allowed.test:{}/small?after", up.port()),
    );
    let after = p.trace(1);
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(
        after[0]["time"]
            .as_str()
            .unwrap()
            .starts_with("2026-12-31T23:00:0")
    );
    assert!(after[0]["path"].as_str().unwrap().contains("after"));
    let squid = wait_for("the new access.log", || {
        let a = std::fs::read_to_string(data.join("access.log")).ok()?;
        (!a.is_empty()).then_some(a)
    });
    assert!(
        squid.contains("small?after") && !squid.contains("before"),
        "{squid}"
    );
    // /health says when the files were last rotated and purged.
    let health: serde_json::Value = serde_json::from_str(&p.admin_get("/health")).unwrap();
    let t = &health["trace"];
    assert!(t["last_rotation"].is_string(), "{health}");
    assert_eq!(t["last_purge"]["files_deleted"], 1, "{health}");
    assert_eq!(t["last_purge"]["kept_from"], "2025-12-31", "{health}");
    assert!(
        t["last_error"].is_null() && t["write_error"].is_null(),
        "{health}"
    );

    // Search reads the compressed day and the live file, oldest first, skipping the
    // lines that are not records; the search itself is recorded in the access audit.
    let out = common::bin()
        .args([
            "trace",
            "search",
            "--host",
            "allowed.test",
            "--client",
            "127.0.0.1",
        ])
        .arg("--data-dir")
        .arg(&data)
        .env("USER", "r.admin")
        .env("CHARTE_FAKE_NOW", "2027-01-01T00:00:05+01:00")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = String::from_utf8(out.stdout).unwrap();
    let paths: Vec<String> = found
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["path"].to_string())
        .collect();
    assert_eq!(paths.len(), 2, "{found}");
    assert!(
        paths[0].contains("before") && paths[1].contains("after"),
        "{paths:?}"
    );
    let csv = common::bin()
        .args([
            "trace",
            "search",
            "--host",
            "allowed.test",
            "--format",
            "csv",
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let csv = String::from_utf8(csv.stdout).unwrap();
    assert!(csv.starts_with("time,client,workstation,user,"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let audit = std::fs::read_to_string(data.join("trace-access.log")).unwrap();
    let first: serde_json::Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(first["who"], "cli:r.admin");
    assert_eq!(first["what"], "search");
    assert_eq!(first["lines"], 2);
    assert_eq!(first["criteria"]["host"], "allowed.test");
    assert_eq!(first["criteria"]["client"], "127.0.0.1");
    assert!(
        first["time"]
            .as_str()
            .unwrap()
            .starts_with("2026-12-31T23:00:0"),
        "{first}"
    );
    assert_eq!(audit.lines().count(), 2, "{audit}");

    // Closed files are no more readable by others than the live ones.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(data.join("trace.log-2026-12-31.gz"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o007, 0, "{mode:o}");
}

#[test]
fn a_retention_over_the_bound_or_an_unknown_time_zone_is_refused_with_its_line() {
    for (yaml, key, said) in [
        (
            "trace:\n  retention_days: 4000\n",
            "trace.retention_days",
            "outside 1 to 1095",
        ),
        (
            "time_zone: Europe/Arras\n",
            "time_zone",
            "unknown time zone",
        ),
        (
            "trace:\n  rotate: hourly\n",
            "trace.rotate",
            "unknown rotation",
        ),
        (
            "trace:\n  access_retention_days: 0\n",
            "trace.access_retention_days",
            "outside 1 to 1095",
        ),
        ("trace:\n  readers: dsi\n", "trace.readers", "a sequence"),
    ] {
        let dir = fixture_dir();
        std::fs::write(dir.path().join("server.yaml"), yaml).unwrap();
        let out = common::bin()
            .current_dir(dir.path())
            .args([
                "check",
                "--config",
                "server.yaml",
                "--policy",
                "policy.yaml",
            ])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{yaml}: {text}");
        assert!(text.contains("server.yaml:"), "{yaml}: {text}");
        assert!(text.contains(key) && text.contains(said), "{yaml}: {text}");
    }
}

#[test]
fn an_export_holds_the_persons_lines_and_nobody_elses_and_is_recorded() {
    let up = Upstream::start();
    let dir = fixture_dir();
    let data = dir.path().join("data");
    for (user, pw) in [("alice", "pw-alice"), ("bob", "pw-bob")] {
        common::add_user(&data.join("users"), user, pw);
    }
    let mut args = common::proxy::pins();
    args.extend(["--auth-required".to_string(), "127.0.0.0/8".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = Proxy::start_in(dir, &args);
    for (who, path) in [
        ("alice:pw-alice", "/small?a1"),
        ("bob:pw-bob", "/small?b1"),
        ("alice:pw-alice", "/small?a2"),
    ] {
        let url = format!("http://allowed.test:{}{path}", up.port());
        let (code, out, err) = curl(&[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-x",
            &p.url(),
            "-U",
            who,
            &url,
        ]);
        assert_eq!((code, out.as_str()), (0, "200"), "{err}");
    }
    p.trace(3);
    let file = data.join("export-alice.json");
    let out = common::bin()
        .args(["trace", "export", "--user", "alice", "-o"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(doc["subject"], "alice");
    let lines = doc["trace"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "{doc}");
    for l in lines {
        assert_eq!(l["user"], "alice", "{l}");
    }
    assert!(
        !doc.to_string().contains("b1"),
        "bob's line in alice's export: {doc}"
    );
    assert!(doc["unblock_requests"].as_array().unwrap().is_empty());
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let audit = std::fs::read_to_string(data.join("trace-access.log")).unwrap();
    let last: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(last["what"], "export");
    assert_eq!(last["criteria"]["user"], "alice");
    assert_eq!(last["lines"], 2);
}

/// A burst of `threads` × `each` requests through the proxy, each thread on its own
/// kept-alive connection.
fn burst(p: &Proxy, up: &Upstream, threads: usize, each: usize) {
    let proxy = p.url();
    let port = up.port();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let proxy = proxy.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .proxy(reqwest::Proxy::http(&proxy).unwrap())
                    .build()
                    .unwrap();
                for i in 0..each {
                    let url = format!("http://allowed.test:{port}/small?t={t}&i={i}");
                    let r = client.get(&url).send().unwrap();
                    assert_eq!(r.status(), 200);
                    r.bytes().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// `threads` × `each` requests whose head is over a 16 KiB `limits.max_head_bytes`:
/// each is refused (431) and traced.
fn burst_oversized(p: &Proxy, up: &Upstream, threads: usize, each: usize) {
    let proxy = p.url();
    let port = up.port();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let proxy = proxy.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .proxy(reqwest::Proxy::http(&proxy).unwrap())
                    .build()
                    .unwrap();
                for i in 0..each {
                    let url = format!("http://allowed.test:{port}/small?big={t}-{i}");
                    let r = client
                        .get(&url)
                        .header("x-big", "a".repeat(17_000))
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 431);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

fn metric(p: &Proxy, name: &str) -> f64 {
    p.admin_get("/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn the_durable_mode_loses_no_line_under_a_burst_bigger_than_the_queue() {
    let (threads, each) = (32, 25);
    let n = threads * each;
    // The same burst in the default mode with a queue of 2: lines are dropped (counted),
    // which is what the durable mode is for.
    let up = Upstream::start();
    let fast = Proxy::start_in_with(
        fixture_dir(),
        "trace:\n  queue: 2\n",
        &[],
        &common::proxy::pins()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    burst(&fast, &up, threads, each);
    let dropped = metric(&fast, "charte_trace_dropped_total");
    assert!(
        dropped > 0.0,
        "the burst fits a queue of 2: the test would prove nothing"
    );

    let pins = common::proxy::pins();
    let pins: Vec<&str> = pins.iter().map(String::as_str).collect();
    let durable = Proxy::start_in_with(
        fixture_dir(),
        "trace:\n  queue: 2\n  mode: durable\nlimits:\n  max_head_bytes: 16384\n",
        &[],
        &pins,
    );
    burst(&durable, &up, threads, each);
    // Refusals of heads over the limit are records too, and wait for room as well.
    let (big_threads, big_each) = (16, 10);
    burst_oversized(&durable, &up, big_threads, big_each);
    let lines = durable.trace(n + big_threads * big_each);
    assert_eq!(lines.len(), n + big_threads * big_each);
    assert_eq!(
        lines.iter().filter(|l| l["status"] == 431).count(),
        big_threads * big_each
    );
    assert_eq!(metric(&durable, "charte_trace_dropped_total"), 0.0);
    // How long requests waited for room is measured.
    assert!(metric(&durable, "charte_trace_wait_seconds_count") > 0.0);
}

#[test]
fn a_full_disk_keeps_the_proxy_serving_and_says_so() {
    let up = Upstream::start();
    let pins = common::proxy::pins();
    let pins: Vec<&str> = pins.iter().map(String::as_str).collect();
    // Files of at most 64 KiB: the trace fills up after about a hundred lines.
    let p = Proxy::start_in_limited(fixture_dir(), "reverse_dns: false\n", &pins, 64 * 1024);
    burst(&p, &up, 4, 100);
    // Every request was served; the lines that did not fit are counted, and /health
    // says why.
    let dropped = metric(&p, "charte_trace_dropped_total");
    assert!(dropped > 0.0, "the trace did not fill up");
    let health: serde_json::Value = serde_json::from_str(&p.admin_get("/health")).unwrap();
    let err = health["trace"]["write_error"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(err.contains("trace.log"), "{health}");
    // (The writer may still be losing the burst's last lines: at least as many.)
    assert!(
        health["trace"]["lines_dropped"].as_f64() >= Some(dropped),
        "{health}"
    );
    assert!(std::fs::metadata(p.trace_path()).unwrap().len() <= 64 * 1024);
    // And it still serves.
    get(
        &p,
        &format!("http://allowed.test:{}/small?still", up.port()),
    );
}

#[test]
fn the_unblock_store_purges_what_is_past_its_retention_and_keeps_what_is_in_force() {
    use charte_proxy::unblock::sqlite::SqliteStore;
    use charte_proxy::unblock::store::{NewRequest, Scope, Store as _};
    let dir = fixture_dir();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("requests.db");
    // 2025-06-01 and 2026-11-01 (unix seconds); the proxy will think it is 2026-12-31.
    let (old, recent) = (1_748_736_000_i64, 1_793_491_200_i64);
    {
        let store = SqliteStore::open(&db).unwrap();
        let req = |host: &str, who: &str| NewRequest {
            requester: format!("user:{who}"),
            user: Some(who.into()),
            ip: "10.0.0.5".into(),
            groups: vec![],
            host: host.into(),
            url: format!("http://{host}/"),
            categories: vec![],
            rule: None,
            reason_code: "block-rule".into(),
            justification: "pour le travail".into(),
            wanted: None,
        };
        // Refused long ago: gone. Approved long ago without end: in force, kept.
        // Approved long ago until long ago: gone. Pending long ago: kept. Recent: kept.
        let refused = store
            .submit(&req("refuse.example", "alice"), old)
            .unwrap()
            .id();
        store.refuse(refused, "admin", "non", old).unwrap();
        let forever = store
            .submit(&req("toujours.example", "alice"), old)
            .unwrap()
            .id();
        store
            .approve(forever, "admin", &Scope::Requester, None, None, old)
            .unwrap();
        let ended = store.submit(&req("fini.example", "bob"), old).unwrap().id();
        store
            .approve(
                ended,
                "admin",
                &Scope::Requester,
                Some(old + 86_400),
                None,
                old,
            )
            .unwrap();
        store.submit(&req("attente.example", "bob"), old).unwrap();
        let fresh = store
            .submit(&req("recent.example", "carol"), recent)
            .unwrap()
            .id();
        store.refuse(fresh, "admin", "non", recent).unwrap();
        store
            .count_blocks(&[
                ("user:alice".into(), "a.example".into(), old / 86_400, 3),
                ("user:alice".into(), "a.example".into(), recent / 86_400, 2),
            ])
            .unwrap();
    }
    let env: [(&'static str, OsString); 1] =
        [("CHARTE_FAKE_NOW", "2026-12-31T12:00:00+01:00".into())];
    let p = Proxy::start_in_with(dir, "requests:\n  retention_days: 365\n", &env, &[]);
    wait_for("the store's purge", || {
        let log = p.stderr.lock().unwrap().clone();
        log.contains("unblock store purge").then_some(log)
    });
    let log = p.stderr.lock().unwrap().clone();
    assert!(
        log.contains("2 request(s), 2 decision(s) and 1 block count(s)"),
        "{log}"
    );
    let store = SqliteStore::open(&db).unwrap();
    let mut hosts: Vec<String> = store
        .list(None)
        .unwrap()
        .into_iter()
        .map(|r| r.host)
        .collect();
    hosts.sort();
    assert_eq!(
        hosts,
        ["attente.example", "recent.example", "toujours.example"]
    );
    assert_eq!(store.blocks("user:alice", "a.example", 0).unwrap(), 2);
    assert_eq!(
        store.history().unwrap().len(),
        2,
        "the decisions of what is kept"
    );
}

#[test]
fn rotate_size_closes_a_file_when_it_reaches_its_size() {
    let up = Upstream::start();
    let pins = common::proxy::pins();
    let pins: Vec<&str> = pins.iter().map(String::as_str).collect();
    let dir = fixture_dir();
    let data = dir.path().join("data");
    let env: [(&'static str, OsString); 1] =
        [("CHARTE_FAKE_NOW", "2026-12-04T10:00:00+01:00".into())];
    let p = Proxy::start_in_with(
        dir,
        "trace:\n  rotate: size\n  max_size_mb: 1\n  compress: zstd\n",
        &env,
        &pins,
    );
    // About 1.5 MiB of trace lines.
    burst(&p, &up, 16, 200);
    let closed = wait_for("the first file of the day closed at 1 MiB", || {
        let n = names(&data);
        n.contains(&"trace.log-2026-12-04.zst".to_string())
            .then_some(n)
    });
    assert!(closed.contains(&"trace.log".to_string()), "{closed:?}");
    // The closed file holds whole lines, about 1 MiB of them; with the live one, every
    // request's line.
    let mut text = String::new();
    zstd::stream::read::Decoder::new(
        std::fs::File::open(data.join("trace.log-2026-12-04.zst")).unwrap(),
    )
    .unwrap()
    .read_to_string(&mut text)
    .unwrap();
    assert!(text.len() >= 1 << 20, "{}", text.len());
    assert!(text.ends_with('\n'));
    let live = wait_for("every line written", || {
        let live = std::fs::read_to_string(data.join("trace.log")).ok()?;
        (text.lines().count() + live.lines().count() >= 16 * 200).then_some(live)
    });
    for l in text.lines().chain(live.lines()) {
        serde_json::from_str::<serde_json::Value>(l).expect("whole lines");
    }
    assert_eq!(text.lines().count() + live.lines().count(), 16 * 200);
}

/// Requests of alice (two) and bob (one), each authenticated with its password.
fn alice_and_bob(p: &Proxy, up: &Upstream) {
    for (who, path) in [
        ("alice:pw-alice", "/small?a1"),
        ("bob:pw-bob", "/small?b1"),
        ("alice:pw-alice", "/small?a2"),
    ] {
        let url = format!("http://allowed.test:{}{path}", up.port());
        let (code, out, err) = curl(&[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-x",
            &p.url(),
            "-U",
            who,
            &url,
        ]);
        assert_eq!((code, out.as_str()), (0, "200"), "{err}");
    }
    p.trace(3);
}

fn last_access(p: &Proxy) -> serde_json::Value {
    let audit = std::fs::read_to_string(p.path("data/trace-access.log")).unwrap_or_default();
    audit
        .lines()
        .last()
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or_default()
}

#[test]
fn the_admin_search_is_for_the_trace_readers_only_and_every_access_is_recorded() {
    use common::admin::{AdminClient, add_admin};
    let up = Upstream::start();
    let dir = fixture_dir();
    let data = dir.path().join("data");
    for (user, pw) in [("alice", "pw-alice"), ("bob", "pw-bob")] {
        common::add_user(&data.join("users"), user, pw);
    }
    std::fs::write(
        dir.path().join("server.yaml"),
        "trace:\n  readers: [lecteur]\n",
    )
    .unwrap();
    let mut args = common::proxy::pins();
    args.extend(["--auth-required", "127.0.0.0/8", "--config", "server.yaml"].map(str::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = Proxy::start_in(dir, &args);
    alice_and_bob(&p, &up);
    add_admin(&p, "lecteur", "pw-lecteur-0123");
    add_admin(&p, "stagiaire", "pw-stagiaire-0123");

    // Not logged in: the login page.
    let mut anon = AdminClient::new(&p);
    assert_eq!(anon.get("/traces?user=alice").location, "/connexion");

    // An administrator who is not a reader sees why, and gets no line by any route.
    let mut other = AdminClient::new(&p);
    assert_eq!(other.login("stagiaire", "pw-stagiaire-0123").status, 303);
    let a = other.get("/traces?user=alice");
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.body.contains("seuls les administrateurs désignés"),
        "{}",
        a.body
    );
    assert!(!a.body.contains("/small?a1"), "{}", a.body);
    for path in [
        "/traces.csv?user=alice",
        "/traces.json?user=alice",
        "/traces/export?user=alice",
    ] {
        let a = other.get(path);
        assert_eq!(a.status, 403, "{path}: {}", a.body);
        assert!(!a.body.contains("/small?a1"), "{path}: {}", a.body);
    }
    assert!(
        !p.path("data/trace-access.log").exists(),
        "nothing was read"
    );

    // A reader finds alice's lines and nobody else's; the search is recorded.
    let mut reader = AdminClient::new(&p);
    assert_eq!(reader.login("lecteur", "pw-lecteur-0123").status, 303);
    let a = reader.get("/traces?user=alice");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("2 ligne(s) trouvée(s)"), "{}", a.body);
    assert!(
        a.body.contains("/small?a1") && a.body.contains("/small?a2"),
        "{}",
        a.body
    );
    assert!(!a.body.contains("/small?b1"), "{}", a.body);
    let last = last_access(&p);
    assert_eq!(last["who"], "admin:lecteur");
    assert_eq!(last["what"], "search");
    assert_eq!(last["criteria"]["user"], "alice");
    assert_eq!(last["lines"], 2);

    // The downloads: every line, recorded with the number handed over.
    let a = reader.get("/traces.csv?user=alice");
    assert_eq!(a.status, 200);
    let rows: Vec<&str> = a.body.lines().collect();
    assert_eq!(rows.len(), 3, "{}", a.body);
    assert!(rows[0].starts_with("time,client,"), "{}", a.body);
    assert!(
        rows[1].contains(",alice,") && rows[2].contains(",alice,"),
        "{}",
        a.body
    );
    let last = last_access(&p);
    assert_eq!(
        (last["what"].as_str(), last["lines"].as_u64()),
        (Some("download csv"), Some(2))
    );
    let a = reader.get("/traces.json?host=allowed.test");
    let users: Vec<String> = a
        .body
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["user"].to_string())
        .collect();
    assert_eq!(users, ["\"alice\"", "\"bob\"", "\"alice\""], "{}", a.body);
    assert_eq!(last_access(&p)["criteria"]["host"], "allowed.test");

    // The person's export, as `trace export` makes it, recorded.
    let a = reader.get("/traces/export?user=bob");
    assert_eq!(a.status, 200);
    let doc: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(doc["subject"], "bob");
    assert_eq!(doc["trace"].as_array().unwrap().len(), 1, "{doc}");
    assert!(!a.body.contains("/small?a1"), "{doc}");
    let last = last_access(&p);
    assert_eq!(
        (last["what"].as_str(), last["lines"].as_u64()),
        (Some("export"), Some(1))
    );

    // A criterion that is not one is said, in the browser's language.
    let a = reader.get("/traces?client=not-an-address");
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("Critères invalides"), "{}", a.body);
}

#[test]
fn the_access_audit_keeps_its_own_retention() {
    let dir = fixture_dir();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let line = |time: &str, who: &str| {
        serde_json::json!({"time": time, "who": who, "what": "search",
            "criteria": {"user": "alice"}, "lines": 1})
        .to_string()
    };
    // The trace's retention is 10 days; the audit's is 100: a search 50 days old stays,
    // one 200 days old goes.
    std::fs::write(
        data.join("trace-access.log"),
        [
            line("2026-05-20T10:00:00.000Z", "cli:old"),
            line("2026-10-16T10:00:00.000Z", "cli:kept"),
            "not json, kept as it is".to_string(),
        ]
        .join("\n")
            + "\n",
    )
    .unwrap();
    let env = [(
        "CHARTE_FAKE_NOW",
        OsString::from("2026-12-05T12:00:00+01:00"),
    )];
    let p = Proxy::start_in_with(
        dir,
        "trace:\n  retention_days: 10\n  access_retention_days: 100\n",
        &env,
        &[],
    );
    let text = wait_for("the old search purged", || {
        let t = std::fs::read_to_string(p.path("data/trace-access.log")).unwrap();
        (!t.contains("cli:old")).then_some(t)
    });
    assert!(text.contains("cli:kept"), "{text}");
    assert!(text.contains("not json, kept as it is"), "{text}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(p.path("data/trace-access.log"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
}
