//! `schedule` conditions through the real proxy, on a clock started just before noon
//! (`CHARTE_FAKE_NOW`): a site blocked in the morning opens at 12:00 local without a
//! reload; and deciding with a schedule allocates nothing.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use charte_proxy::classify::{Classification, Host};
use charte_proxy::config::{Diags, compile_str};
use charte_proxy::policy::{LocalTime, RequestFacts, Verdict};
use common::proxy::{Proxy, Upstream, curl, fixture_dir};

/// Gambling is blocked on weekdays, except at lunch time.
const POLICY: &str = include_str!("fixtures/schedule-policy.yaml");

/// The status and `X-Charte-Reason` of a GET through the proxy.
fn get(p: &Proxy, url: &str) -> (String, String) {
    let (code, out, err) = curl(&["-x", &p.url(), "-i", url]);
    assert_eq!(code, 0, "{err}");
    let status = out.lines().next().unwrap_or_default().to_string();
    let reason = out
        .lines()
        .find_map(|l| l.strip_prefix("x-charte-reason: "))
        .unwrap_or_default()
        .trim()
        .to_string();
    (status, reason)
}

#[test]
fn a_lunch_time_rule_opens_the_site_at_noon_local_time() {
    let up = Upstream::start();
    let dir = fixture_dir();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    // Monday 7 December 2026, 11:59:58 in Paris (winter time).
    let env = [("CHARTE_FAKE_NOW", "2026-12-07T11:59:58+01:00".into())];
    let p = Proxy::start_in_with(dir, "time_zone: Europe/Paris\n", &env, &[]);
    let url = format!("http://casino-royal.example:{}/small", up.port());

    let (status, reason) = get(&p, &url);
    assert!(status.starts_with("HTTP/1.1 403"), "{status}");
    assert_eq!(reason, "block-rule; rule=jeux");

    // The proxy's clock runs on: poll until noon has come, within a bound.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, reason) = get(&p, &url);
        if status.starts_with("HTTP/1.1 200") {
            assert_eq!(reason, "", "an allowed request has no reason header");
            break;
        }
        assert_eq!(reason, "block-rule; rule=jeux", "{status}");
        assert!(Instant::now() < deadline, "still blocked after noon");
        std::thread::sleep(Duration::from_millis(100));
    }
    let allowed = p.trace_find(|r| r["status"] == 200 && r["host"] == "casino-royal.example");
    assert_eq!(allowed["rule"], "jeux-midi", "{allowed}");
}

/// Inside an inspected tunnel, each request is decided at its own time: one connection
/// opened before noon, kept alive across it (HTTP/1.1 and HTTP/2), gets the block page,
/// then the site once noon has come, without a new connection.
#[test]
fn the_schedule_flips_inside_a_kept_alive_tunnel_in_h1_and_h2() {
    let pki = tempfile::tempdir().unwrap();
    let up = common::tls::TrustedUpstream::start(&["casino-royal.example"], pki.path());
    for proto in ["--http1.1", "--http2"] {
        // Monday 7 December 2026, 11:59:58 in Paris, for each proxy started.
        let env = [("CHARTE_FAKE_NOW", "2026-12-07T11:59:58+01:00".into())];
        let d = fixture_dir();
        std::fs::write(d.path().join("policy.yaml"), POLICY).unwrap();
        let p = Proxy::start_in_with(d, "time_zone: Europe/Paris\n", &env, &up.args());
        let org_pem = p.path("data/ca/ca.pem").display().to_string();
        let url = format!("https://casino-royal.example:{}/small", up.port());
        // Sixteen requests, four a second, one after the other on one connection: they
        // span the boundary.
        let mut args = vec![
            "-x".to_string(),
            p.url(),
            "--cacert".into(),
            org_pem,
            proto.into(),
            "-s".into(),
            "--rate".into(),
            "4/s".into(),
            "-w".into(),
            "%{http_code} %{num_connects}\\n".into(),
        ];
        for _ in 0..16 {
            args.extend(["-o".into(), "/dev/null".into(), url.clone()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = curl(&refs);
        assert_eq!(code, 0, "{proto}: {err}");
        let got: Vec<(&str, &str)> = out.lines().map(|l| l.split_once(' ').unwrap()).collect();
        assert_eq!(got.len(), 16, "{proto}: {out}");
        let statuses: Vec<&str> = got.iter().map(|g| g.0).collect();
        let flip = statuses.iter().position(|s| *s == "200");
        let flip = flip.unwrap_or_else(|| panic!("{proto}: never allowed: {out}"));
        assert!(flip > 0, "{proto}: allowed before noon: {out}");
        assert!(
            statuses[..flip].iter().all(|s| *s == "403")
                && statuses[flip..].iter().all(|s| *s == "200"),
            "{proto}: {out}"
        );
        // One connection to the proxy, made by the first request, reused by the others.
        assert_eq!(got[0].1, "1", "{proto}: {out}");
        assert!(got[1..].iter().all(|g| g.1 == "0"), "{proto}: {out}");
    }
}

/// Counts the allocations of the thread that asks.
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn deciding_with_a_schedule_allocates_nothing() {
    let dir = fixture_dir();
    let c = compile_str(POLICY, &dir.path().join("policy.yaml"), Diags::default())
        .unwrap_or_else(|d| panic!("{:#?}", d.items));
    let who = c.policy.groups.resolve("10.0.0.1".parse().unwrap(), None);
    let host = Host::parse("casino-royal.example").unwrap();
    let mut class = Classification::default();
    let mut scratch = String::new();
    // Buffers grow on the first lookup, as on a worker's first request.
    c.classifier
        .classify(&host, Some("/"), &mut scratch, &mut class);
    let before = ALLOCS.with(Cell::get);
    let mut allowed = 0;
    for minute in 0..24 * 60 {
        c.classifier
            .classify(&host, Some("/"), &mut scratch, &mut class);
        let facts = RequestFacts::for_method("GET", true).at(LocalTime { weekday: 0, minute });
        if c.policy.decide(&who, &class, &facts).verdict == Verdict::Allow {
            allowed += 1;
        }
    }
    assert_eq!(ALLOCS.with(Cell::get) - before, 0, "allocations");
    assert_eq!(allowed, 120, "12:00-14:00 on a Monday");
}
