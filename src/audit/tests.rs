//! Record encodings (exact lines for a fixed time) and the writer's guarantees: everything
//! queued is written by shutdown, a full queue drops and counts, reopen after rename
//! loses nothing. No sleeps: every wait is on `shutdown()`.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::IntCounter;
use serde_json::Value;

use super::record::FIELDS;
use super::writer::Throttle;
use super::*;
use crate::policy::{Inspection, ReasonCode};

/// 2023-11-14T22:13:20.123Z
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
}

fn counter() -> IntCounter {
    IntCounter::new("audit_records_dropped_total", "test").expect("valid metric")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn sock(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn s(v: &str) -> Arc<str> {
    Arc::from(v)
}

fn allowed_get() -> Record {
    Record {
        time: t0(),
        client: ip("10.0.0.5"),
        workstation: Some(s("pc-accueil-01.mairie.local")),
        user: Some(s("c.martin")),
        groups: vec![s("agents")],
        method: s("GET"),
        scheme: Scheme::Http,
        host: s("example.com"),
        port: 80,
        path: Some(s("/page")),
        categories: vec![],
        decision: Outcome::Allow,
        rule: None,
        reason_code: Some(ReasonCode::DefaultAllow),
        reason: None,
        would_block: None,
        inspection: Inspection::Inspect,
        status: 200,
        bytes_sent: 0,
        bytes_received: 5120,
        duration: Duration::from_millis(157),
        upstream: Some(sock("93.184.216.34:80")),
        error: None,
        user_agent: Some(s("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")),
        content_type: Some(s("text/html; charset=utf-8")),
        user_tried: None,
        found: None,
    }
}

/// Every optional field filled in.
fn blocked() -> Record {
    Record {
        time: t0(),
        client: ip("10.0.0.5"),
        workstation: Some(s("pc-accueil-01.mairie.local")),
        user: Some(s("c.martin")),
        groups: vec![s("agents"), s("accueil")],
        method: s("GET"),
        scheme: Scheme::Http,
        host: s("jeux.example"),
        port: 8080,
        path: Some(s("/partie?id=1")),
        categories: vec![s("jeux"), s("loisirs")],
        decision: Outcome::Block,
        rule: Some(s("pas-de-jeux")),
        reason_code: Some(ReasonCode::RuleBlock),
        reason: Some(s("Les jeux en ligne sont interdits (charte §3.2).")),
        would_block: Some(s("essai-reseaux-sociaux")),
        inspection: Inspection::Inspect,
        status: 403,
        bytes_sent: 12,
        bytes_received: 1234,
        duration: Duration::from_micros(2_500),
        upstream: Some(sock("[2001:db8::1]:8080")),
        error: Some(s("aucune")),
        user_agent: Some(s("curl/8.5.0")),
        content_type: Some(s("text/html; charset=utf-8")),
        user_tried: Some(s("c.mart1n")),
        found: Some(s("nir:2")),
    }
}

fn tunnel() -> Record {
    Record {
        method: s("CONNECT"),
        scheme: Scheme::Tunnel,
        host: s("example.com"),
        port: 443,
        path: None,
        inspection: Inspection::Tunnel,
        status: 200,
        bytes_sent: 4321,
        bytes_received: 987_654,
        duration: Duration::from_secs(60),
        upstream: Some(sock("93.184.216.34:443")),
        content_type: None,
        ..allowed_get()
    }
}

fn json(r: &Record) -> Value {
    serde_json::from_str(&r.to_json().expect("encodes")).expect("valid JSON")
}

/// The lines people and tools read, whole: a change to any of them shows here.
#[test]
fn trace_lines_as_written() {
    for (name, r) in [
        ("allowed_get", allowed_get()),
        ("blocked", blocked()),
        ("tunnel", tunnel()),
    ] {
        insta::assert_snapshot!(format!("json_{name}"), r.to_json().expect("encodes"));
        insta::assert_snapshot!(format!("squid_{name}"), r.to_squid());
    }
}

#[test]
fn json_line_has_every_field_with_its_type() {
    let v = json(&blocked());
    let obj = v.as_object().expect("an object");
    let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys, FIELDS.into_iter().collect::<BTreeSet<_>>());

    assert_eq!(v["time"], "2023-11-14T22:13:20.123Z");
    assert_eq!(v["client"], "10.0.0.5");
    assert_eq!(v["workstation"], "pc-accueil-01.mairie.local");
    assert_eq!(v["user"], "c.martin");
    assert_eq!(v["groups"], serde_json::json!(["agents", "accueil"]));
    assert_eq!(v["method"], "GET");
    assert_eq!(v["scheme"], "http");
    assert_eq!(v["host"], "jeux.example");
    assert_eq!(v["port"].as_u64(), Some(8080));
    assert_eq!(v["path"], "/partie?id=1");
    assert_eq!(v["categories"], serde_json::json!(["jeux", "loisirs"]));
    assert_eq!(v["decision"], "block");
    assert_eq!(v["rule"], "pas-de-jeux");
    assert_eq!(v["reason_code"], "block-rule");
    assert_eq!(
        v["reason"],
        "Les jeux en ligne sont interdits (charte §3.2)."
    );
    assert_eq!(v["would_block"], "essai-reseaux-sociaux");
    assert_eq!(v["inspection"], "inspect");
    assert_eq!(v["status"].as_u64(), Some(403));
    assert_eq!(v["bytes_sent"].as_u64(), Some(12));
    assert_eq!(v["bytes_received"].as_u64(), Some(1234));
    assert!(v["duration_ms"].is_f64(), "{}", v["duration_ms"]);
    assert_eq!(v["duration_ms"].as_f64(), Some(2.5));
    assert_eq!(v["upstream"], "[2001:db8::1]:8080");
    assert_eq!(v["error"], "aucune");
}

#[test]
fn json_absent_values_are_null_not_missing() {
    let r = Record {
        workstation: None,
        user: None,
        groups: vec![],
        path: None,
        upstream: None,
        user_agent: None,
        ..tunnel()
    };
    let v = json(&r);
    assert_eq!(v.as_object().map(|o| o.len()), Some(FIELDS.len()));
    for key in [
        "workstation",
        "user",
        "path",
        "rule",
        "reason",
        "would_block",
        "upstream",
        "error",
        "user_agent",
        "content_type",
        "user_tried",
        "found",
    ] {
        assert!(v[key].is_null(), "{key} = {}", v[key]);
    }
    assert_eq!(v["groups"], serde_json::json!([]));
    assert_eq!(v["duration_ms"].as_f64(), Some(60_000.0));
}

#[test]
fn json_time_is_utc_with_milliseconds_truncated() {
    let r = Record {
        time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_999_999_999),
        ..allowed_get()
    };
    assert_eq!(json(&r)["time"], "2023-11-14T22:13:20.999Z");
    let r = Record {
        time: UNIX_EPOCH,
        ..allowed_get()
    };
    assert_eq!(json(&r)["time"], "1970-01-01T00:00:00.000Z");
    let r = Record {
        time: UNIX_EPOCH - Duration::from_millis(1),
        ..allowed_get()
    };
    assert_eq!(json(&r)["time"], "1969-12-31T23:59:59.999Z");
    let r = Record {
        time: UNIX_EPOCH + Duration::from_secs(253_402_300_799),
        ..allowed_get()
    };
    assert_eq!(json(&r)["time"], "9999-12-31T23:59:59.000Z");
    let r = Record {
        time: UNIX_EPOCH + Duration::from_secs(253_402_300_800),
        ..allowed_get()
    };
    let mut out = b"kept".to_vec();
    assert!(Format::Json.write_line(&r, &mut out).is_err());
    assert_eq!(out, b"kept", "a failed line leaves nothing behind");
}

#[test]
fn json_addresses_are_written_as_std_writes_them() {
    // The encoder writes IPv4 addresses by hand: every octet width and port width.
    for (client, upstream) in [
        ("0.0.0.0", "0.0.0.0:0"),
        ("1.2.3.4", "9.10.99.100:1"),
        ("10.0.0.5", "127.0.0.1:80"),
        ("100.200.255.9", "255.255.255.255:65535"),
        ("192.168.1.10", "172.16.0.1:8080"),
        ("::ffff:10.0.0.1", "[::1]:443"),
    ] {
        let r = Record {
            client: ip(client),
            upstream: Some(sock(upstream)),
            ..allowed_get()
        };
        let v = json(&r);
        assert_eq!(v["client"], ip(client).to_string());
        assert_eq!(v["upstream"], sock(upstream).to_string());
    }
}

#[test]
fn the_hand_written_json_line_is_byte_for_byte_the_derives() {
    // The encoder writes keys and values by hand; the `Serialize` derive is the schema.
    // Every string field gets values from a pool that covers every byte serde_json
    // escapes (control characters, `"`, `\\`) and the ones it leaves alone (DEL,
    // non-ASCII, U+2028), over many mixes of present and absent fields.
    let pool: Vec<String> = [
        "",
        "a",
        "allowed.test",
        "/1k?x=1&y=%20",
        "Accès refusé : catégorie « jeux »",
        "quote \" and \\ backslash",
        "C:\\back\\slash",
        "\"quoted\"",
        "tab\there",
        "nul\u{0}",
        "\u{1f}\u{7f}\u{80}",
        "line\u{2028}sep",
        "emoji 😀",
        "ctl \u{1}\u{8}\u{c}\n\r",
        "é",
    ]
    .iter()
    .map(|v| v.to_string())
    .chain((0u8..0x20).map(|b| format!("x{}y", char::from(b))))
    .collect();
    let seed = std::cell::Cell::new(0x9e37_79b9_7f4a_7c15u64);
    let next = || {
        let mut x = seed.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        seed.set(x);
        x
    };
    for i in 0..2_000u64 {
        let pick = || s(&pool[(next() % pool.len() as u64) as usize]);
        let some = |on: u64, v: Arc<str>| (on % 3 != 0).then_some(v);
        let base = [allowed_get(), blocked(), tunnel()][(i % 3) as usize].clone();
        let r = Record {
            time: UNIX_EPOCH
                + Duration::from_millis(next() % 253_402_300_799_000)
                + Duration::from_nanos(next() % 1_000_000),
            client: if i % 5 == 0 {
                ip("2001:db8::7")
            } else {
                ip("10.1.2.3")
            },
            workstation: some(next(), pick()),
            user: some(next(), pick()),
            groups: (0..next() % 3).map(|_| pick()).collect(),
            method: pick(),
            host: pick(),
            port: (next() % 65_536) as u16,
            path: some(next(), pick()),
            categories: (0..next() % 4).map(|_| pick()).collect(),
            rule: some(next(), pick()),
            reason: some(next(), pick()),
            would_block: some(next(), pick()),
            status: (next() % 600) as u16,
            bytes_sent: next() >> (next() % 64),
            bytes_received: next(),
            duration: Duration::from_nanos(next() >> (next() % 64)),
            upstream: match next() % 3 {
                0 => None,
                1 => Some(sock("[2001:db8::1]:8443")),
                _ => Some(SocketAddr::from((
                    (next() as u32).to_be_bytes(),
                    next() as u16,
                ))),
            },
            error: some(next(), pick()),
            ..base
        };
        let want = serde_json::to_string(&r).expect("the derive encodes");
        assert_eq!(r.to_json().expect("encodes"), want, "record {i}: {r:?}");
    }
}

#[test]
fn no_field_can_split_a_line() {
    let r = Record {
        reason: Some(s("ligne 1\nligne 2\r\n")),
        user: Some(s("a\nb")),
        path: Some(s("/a\nb c")),
        ..blocked()
    };
    for format in [Format::Json, Format::Squid] {
        let mut out = Vec::new();
        format.write_line(&r, &mut out).expect("encodes");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(text.matches('\n').count(), 1, "{format}: {text:?}");
        assert!(!text.contains('\r'), "{format}: {text:?}");
        assert!(text.ends_with('\n'));
    }
}

#[test]
fn squid_allowed_get() {
    assert_eq!(
        allowed_get().to_squid(),
        "1700000000.123    157 10.0.0.5 TCP_MISS/200 5120 GET http://example.com/page c.martin HIER_DIRECT/93.184.216.34 text/html;%20charset=utf-8"
    );
}

#[test]
fn squid_blocked_request() {
    let r = Record {
        user: None,
        upstream: None,
        ..blocked()
    };
    assert_eq!(
        r.to_squid(),
        "1700000000.123      2 10.0.0.5 TCP_DENIED/403 1234 GET http://jeux.example:8080/partie?id=1 - HIER_NONE/- text/html;%20charset=utf-8"
    );
    let r = Record {
        decision: Outcome::AuthRequired,
        status: 407,
        ..r
    };
    assert!(
        r.to_squid().contains(" TCP_DENIED/407 "),
        "{}",
        r.to_squid()
    );
}

#[test]
fn squid_connect_tunnel() {
    assert_eq!(
        tunnel().to_squid(),
        "1700000000.123  60000 10.0.0.5 TCP_TUNNEL/200 987654 CONNECT example.com:443 c.martin HIER_DIRECT/93.184.216.34 -"
    );
}

/// An inspected tunnel's line counts no bytes in the Squid format (its requests count
/// theirs), as Squid logs a bumped CONNECT; the JSON record keeps the tunnel's bytes.
#[test]
fn squid_bumped_connect_counts_no_bytes() {
    let r = Record {
        decision: Outcome::Bump,
        reason_code: Some(ReasonCode::Bump),
        inspection: Inspection::Inspect,
        upstream: None,
        ..tunnel()
    };
    assert_eq!(
        r.to_squid(),
        "1700000000.123  60000 10.0.0.5 NONE_NONE/200 0 CONNECT example.com:443 c.martin HIER_NONE/- -"
    );
    assert_eq!(json(&r)["bytes_received"], 987_654);
}

/// Every line has Squid's ten fields, whatever is missing: an analyser splits on spaces.
#[test]
fn squid_lines_always_have_ten_fields() {
    let bare = Record {
        user: None,
        upstream: None,
        content_type: None,
        user_agent: None,
        path: None,
        ..allowed_get()
    };
    let spaced = Record {
        content_type: Some(s("multipart/form-data; boundary=x y")),
        user: Some(s("a b")),
        ..allowed_get()
    };
    for r in [bare, spaced, blocked(), tunnel()] {
        let line = r.to_squid();
        assert_eq!(line.split_whitespace().count(), 10, "{line}");
    }
}

#[test]
fn squid_inspected_https_error_and_escaping() {
    let r = Record {
        scheme: Scheme::Https,
        host: s("example.com"),
        port: 443,
        path: Some(s("/caf%C3%A9 noël")),
        user: Some(s("Jean Dupont%")),
        decision: Outcome::Error,
        reason_code: Some(ReasonCode::UpstreamConnect),
        status: 502,
        bytes_received: 0,
        upstream: None,
        ..allowed_get()
    };
    assert_eq!(
        r.to_squid(),
        "1700000000.123    157 10.0.0.5 NONE_NONE/502 0 GET https://example.com/caf%C3%A9%20no%C3%ABl Jean%20Dupont%25 HIER_NONE/- text/html;%20charset=utf-8"
    );
}

#[test]
fn squid_url_ports_and_missing_paths() {
    let https_8443 = Record {
        scheme: Scheme::Https,
        port: 8443,
        ..allowed_get()
    };
    assert!(
        https_8443
            .to_squid()
            .contains(" https://example.com:8443/page ")
    );
    let http_443 = Record {
        port: 443,
        ..allowed_get()
    };
    assert!(
        http_443
            .to_squid()
            .contains(" http://example.com:443/page ")
    );
    let never_seen = Record {
        path: None,
        ..allowed_get()
    };
    assert!(
        never_seen
            .to_squid()
            .contains(" GET http://example.com:80 ")
    );
    let ipv6_connect = Record {
        host: s("2001:db8::2"),
        ..tunnel()
    };
    assert!(
        ipv6_connect
            .to_squid()
            .contains(" CONNECT [2001:db8::2]:443 ")
    );
}

#[test]
fn squid_time_before_1970_is_clamped() {
    let r = Record {
        time: UNIX_EPOCH - Duration::from_secs(5),
        ..allowed_get()
    };
    assert!(
        r.to_squid().starts_with("0.000    157 "),
        "{}",
        r.to_squid()
    );
}

#[test]
fn format_parses_its_two_names() {
    assert_eq!("json".parse::<Format>(), Ok(Format::Json));
    assert_eq!("squid".parse::<Format>(), Ok(Format::Squid));
    let err = "csv".parse::<Format>().expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "unknown audit format \"csv\": expected \"json\" or \"squid\""
    );
}

#[test]
fn throttle_reports_at_most_once_per_ten_seconds() {
    let base = Instant::now();
    let t = Throttle::new(base);
    assert_eq!(t.due(base), None, "nothing pending");
    t.add(1);
    assert_eq!(t.due(base), Some(1), "the first event is reported at once");
    t.add(1);
    t.add(2);
    assert_eq!(t.due(base + Duration::from_secs(1)), None);
    assert_eq!(t.due(base + Duration::from_millis(9_999)), None);
    assert_eq!(t.due(base + Duration::from_secs(10)), Some(3));
    t.add(1);
    assert_eq!(t.due(base + Duration::from_secs(15)), None);
    assert_eq!(t.take(), 1, "the rest is reported at the end");
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("readable")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn numbered(prefix: &str, i: usize) -> Record {
    Record {
        path: Some(Arc::from(format!("/{prefix}{i}"))),
        ..allowed_get()
    }
}

#[tokio::test]
async fn writer_writes_every_record_and_shutdown_flushes() {
    const N: usize = 1000;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sous-dossier").join("trace.log");
    let dropped = counter();
    let (sink, writer) = AuditWriter::start(
        Destination::File(path.clone()),
        Format::Json,
        N,
        dropped.clone(),
    )
    .expect("starts");
    for i in 0..N {
        sink.clone().record(numbered("p", i));
    }
    writer.shutdown().await;

    let lines = lines(&path);
    assert_eq!(lines.len(), N);
    for (i, line) in lines.iter().enumerate() {
        let v: Value = serde_json::from_str(line).expect("JSON line");
        assert_eq!(v["path"], format!("/p{i}"), "in order");
    }
    assert_eq!(dropped.get(), 0);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777 & !0o640, 0, "mode {mode:o} is at most 0640");
    }
}

/// A safety net against a hang, not a synchronisation: the condition is what is awaited.
async fn within_10s<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("condition reached within 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_connections_while_the_writer_runs() {
    const TASKS: usize = 8;
    const EACH: usize = 250;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("trace.log");
    let dropped = counter();
    let (sink, writer) = AuditWriter::start(
        Destination::File(path.clone()),
        Format::Json,
        TASKS * EACH,
        dropped.clone(),
    )
    .expect("starts");
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let sink = sink.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                sink.record(numbered(&format!("t{t}-"), i));
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let total = (TASKS * EACH) as u64;
    within_10s(writer.wait_written(total)).await;
    assert_eq!(writer.written(), total);
    // Written means on disk, before any shutdown.
    let on_disk = lines(&path);
    assert_eq!(on_disk.len(), TASKS * EACH);
    let distinct: BTreeSet<&String> = on_disk.iter().collect();
    assert_eq!(distinct.len(), TASKS * EACH);
    writer.shutdown().await;
    assert_eq!(dropped.get(), 0);
}

#[tokio::test]
async fn writer_appends_to_an_existing_file_in_squid_format() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("access.log");
    std::fs::write(&path, "ancienne ligne\n").expect("writable");
    let (sink, writer) =
        AuditWriter::start(Destination::File(path.clone()), Format::Squid, 8, counter())
            .expect("starts");
    sink.record(allowed_get());
    sink.record(tunnel());
    writer.shutdown().await;
    assert_eq!(
        lines(&path),
        [
            "ancienne ligne".to_owned(),
            allowed_get().to_squid(),
            tunnel().to_squid()
        ]
    );
}

#[tokio::test]
async fn full_queue_drops_and_counts_without_blocking() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("trace.log");
    let dropped = counter();
    // The writer task is not running yet, so nothing drains the one slot.
    let (sink, unstarted) = AuditWriter::open(
        Destination::File(path.clone()),
        Format::Json,
        1,
        dropped.clone(),
    )
    .expect("opens");
    sink.record(numbered("kept", 0));
    sink.record(numbered("dropped", 1));
    sink.record(numbered("dropped", 2));
    assert_eq!(dropped.get(), 2);

    let writer = unstarted.spawn(&tokio::runtime::Handle::current());
    writer.shutdown().await;
    let written = lines(&path);
    assert_eq!(written.len(), 1);
    assert!(written[0].contains("\"/kept0\""), "{}", written[0]);

    // After shutdown the queue is closed: still no block, no panic, one more counted.
    sink.record(numbered("late", 3));
    assert_eq!(dropped.get(), 3);
    assert_eq!(lines(&path).len(), 1);
}

#[tokio::test]
async fn reopen_after_rename_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("trace.log");
    let rotated = dir.path().join("trace.log.1");
    let dropped = counter();
    let (sink, writer) = AuditWriter::start(
        Destination::File(path.clone()),
        Format::Json,
        64,
        dropped.clone(),
    )
    .expect("starts");
    for i in 0..10 {
        sink.record(numbered("avant", i));
    }
    // So that the old file really holds something when it is renamed.
    within_10s(writer.wait_written(10)).await;
    // logrotate: rename, then signal.
    std::fs::rename(&path, &rotated).expect("rename");
    writer.reopen();
    for i in 0..10 {
        sink.record(numbered("apres", i));
    }
    writer.shutdown().await;

    let new = lines(&path);
    let old = lines(&rotated);
    let path_of = |line: &String| -> String {
        let v: Value = serde_json::from_str(line).expect("JSON line");
        v["path"].as_str().expect("path").to_owned()
    };
    let new_paths: Vec<String> = new.iter().map(path_of).collect();
    let old_paths: Vec<String> = old.iter().map(path_of).collect();
    let expected =
        |prefix: &str| -> Vec<String> { (0..10).map(|i| format!("/{prefix}{i}")).collect() };
    // What was written before stays in the renamed file; everything given after
    // reopen() went to a new file at the original path; nothing lost or doubled.
    assert_eq!(old_paths, expected("avant"));
    assert_eq!(new_paths, expected("apres"));
    assert_eq!(dropped.get(), 0);
}

#[tokio::test]
async fn reopen_and_shutdown_on_stdout_are_harmless() {
    let (_sink, writer) =
        AuditWriter::start(Destination::Stdout, Format::Json, 4, counter()).expect("starts");
    writer.reopen();
    writer.shutdown().await;
}

#[tokio::test]
async fn start_fails_when_the_file_cannot_be_opened() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A folder is not a file.
    let err = AuditWriter::start(
        Destination::File(dir.path().to_owned()),
        Format::Json,
        4,
        counter(),
    )
    .expect_err("cannot open a folder");
    assert!(err.to_string().contains("cannot open audit file"), "{err}");
}

#[test]
fn start_outside_a_runtime_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = AuditWriter::start(
        Destination::File(dir.path().join("trace.log")),
        Format::Json,
        4,
        counter(),
    )
    .expect_err("no runtime");
    assert!(!err.to_string().is_empty());
}

#[tokio::test]
async fn capture_and_disabled_sinks() {
    let dropped = counter();
    let (sink, mut rx) = AuditSink::capture(1, dropped.clone());
    sink.record(allowed_get());
    sink.record(tunnel());
    assert_eq!(dropped.get(), 1);
    let got = rx.recv().await.expect("one record");
    assert_eq!(got.to_squid(), allowed_get().to_squid());

    AuditSink::disabled().record(allowed_get());
}
