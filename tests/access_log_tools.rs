//! The Squid-format trace as the tools administrators already use read it (issue 23):
//! a real proxy writes the JSON §4.8 record and Squid's access.log at once for allowed,
//! refused (407), denied (block page), inspected (bumped) and relayed requests; the
//! lines are written as Squid writes them, and SARG and Calamaris (Debian packages,
//! installed by tests/run.sh) read every one of them.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::proxy::{Proxy, Upstream, curl, fixture_dir};
use common::tls::{HttpsUpstream, TestCa};

const AGENT: &str = "charte-test-agent/1.0 (poste 42)";

/// Waits until the file at `path` has at least `n` lines; returns them.
fn lines_of(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {} lines, expected {n}:\n{text}",
            path.display(),
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `curl` through the proxy with the test's user agent: (HTTP status, body bytes).
fn fetch(p: &Proxy, args: &[&str]) -> (u16, u64) {
    let proxy = p.url();
    let mut a = vec![
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        "-x",
        &proxy,
        "-A",
        AGENT,
    ];
    a.extend_from_slice(args);
    let (code, out, err) = curl(&a);
    assert_eq!(code, 0, "curl {args:?}: {err}");
    let (status, size) = out.split_once(' ').expect("status and size");
    (status.parse().unwrap(), size.parse().unwrap())
}

/// The one Squid line holding all of `parts`.
fn line_with<'a>(lines: &'a [String], parts: &[&str]) -> &'a str {
    let found: Vec<&String> = lines
        .iter()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "lines with {parts:?}:\n{}",
        lines.join("\n")
    );
    found[0]
}

/// Squid's ten fields: time, elapsed, client, code/status, bytes, method, URL, user,
/// hierarchy/peer, content type.
fn fields(line: &str) -> Vec<&str> {
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f.len(), 10, "not ten fields: {line}");
    f
}

#[test]
fn squid_lines_are_written_as_squid_writes_them_and_sarg_and_calamaris_read_every_one() {
    let plain = Upstream::start();
    let up_ca = TestCa::new("Test upstream root");
    let up =
        HttpsUpstream::start(&up_ca.leaf(&["allowed.test", "hate.example", "mabanque.example"]));
    let dir = fixture_dir();
    let up_pem = dir.path().join("upstream-root.pem");
    up_ca.write_pem(&up_pem);
    let up_pem = up_pem.display().to_string();
    // A user for Basic authentication, before the proxy starts (DATA/users).
    common::add_user(&dir.path().join("data/users"), "alice", "le-bon-mot");

    let server =
        "reverse_dns: false\ntrace:\n  outputs:\n    - {path: logs/access.log, format: squid}\n";
    let port = up.port().to_string();
    let p = Proxy::start_in_with(
        dir,
        server,
        &[],
        &[
            "--upstream-ca",
            &up_pem,
            "--connect-port",
            &port,
            "--auth-optional",
            "127.0.0.0/8",
        ],
    );
    let org = p.path("data/ca/ca.pem").display().to_string();
    let http = |host: &str, path: &str| format!("http://{host}:{}{path}", plain.port());
    let https = |host: &str, path: &str| format!("https://{host}:{port}{path}");

    // 1. Allowed, authenticated: the site's content type.
    let ok = fetch(
        &p,
        &["-U", "alice:le-bon-mot", &http("allowed.test", "/html")],
    );
    assert_eq!(ok.0, 200);
    // 2. Wrong password: 407, the URL asked for kept, the user name tried in the JSON.
    let refused = fetch(
        &p,
        &["-U", "alice:mauvais", &http("allowed.test", "/secret?q=1")],
    );
    assert_eq!(refused.0, 407);
    assert!(refused.1 > 0, "the 407 has a body");
    // 3. Denied: the block page's bytes.
    let denied = fetch(&p, &[&http("hate.example", "/two")]);
    assert_eq!(denied.0, 403);
    assert!(denied.1 > 500, "a block page: {denied:?}");
    // 4. Inspected: the tunnel's line, and the request's inside it.
    let bumped = fetch(&p, &["--cacert", &org, &https("allowed.test", "/html")]);
    assert_eq!(bumped.0, 200);
    // 5. Inspected and denied inside the tunnel.
    let bumped_denied = fetch(&p, &["--cacert", &org, &https("hate.example", "/x")]);
    assert_eq!(bumped_denied.0, 403);
    // 6. Never inspected (a bank): relayed as bytes, the site's own certificate.
    let relayed = fetch(
        &p,
        &["--cacert", &up_pem, &https("mabanque.example", "/small")],
    );
    assert_eq!(relayed.0, 200);

    // Eight records: 1, 2, 3, 4 (tunnel + request), 5 (tunnel + request), 6.
    let records = p.trace(8);
    let lines = lines_of(&p.path("logs/access.log"), records.len());
    assert_eq!(lines.len(), records.len(), "{}", lines.join("\n"));
    for l in &lines {
        fields(l);
    }

    let f = fields(line_with(&lines, &["TCP_MISS/200", "http://allowed.test"]));
    assert_eq!(f[7], "alice");
    assert_eq!(f[9], "text/html;%20charset=utf-8");
    assert_eq!(f[4], ok.1.to_string());

    // The 407 keeps the URL asked for; its bytes are the answer's; text/plain.
    let url = http("allowed.test", "/secret?q=1");
    let f = fields(line_with(&lines, &["TCP_DENIED/407"]));
    assert_eq!(f[6], url);
    assert_eq!(f[4], refused.1.to_string());
    assert_eq!(f[9], "text/plain;%20charset=utf-8");
    let r = p.trace_find(|r| r["status"] == 407);
    assert_eq!(r["host"], "allowed.test");
    assert_eq!(r["path"], "/secret?q=1");
    assert_eq!(r["user_tried"], "alice");
    assert!(r["user"].is_null(), "{r}");
    assert_eq!(r["user_agent"], AGENT);

    // The denial counts the page it sent.
    let f = fields(line_with(
        &lines,
        &["TCP_DENIED/403", "http://hate.example"],
    ));
    assert_eq!(f[4], denied.1.to_string());
    assert_eq!(f[9], "text/html;%20charset=utf-8");
    let r = p.trace_find(|r| r["host"] == "hate.example" && r["scheme"] == "http");
    assert_eq!(r["bytes_received"], denied.1);
    assert_eq!(r["content_type"], "text/html; charset=utf-8");

    // Inspected tunnels: the CONNECT lines count no bytes (their requests count theirs).
    for host in ["allowed.test", "hate.example"] {
        let f = fields(line_with(&lines, &["CONNECT", &format!("{host}:{port}")]));
        assert_eq!(&f[3..6], ["NONE_NONE/200", "0", "CONNECT"], "{f:?}");
        assert_eq!(f[9], "-");
        let t = p.trace_find(|r| r["host"] == host && r["decision"] == "bump");
        assert!(t["bytes_received"].as_u64().unwrap() > 0, "{t}");
    }
    let f = fields(line_with(
        &lines,
        &["TCP_MISS/200", &https("allowed.test", "/html")],
    ));
    assert_eq!(f[4], bumped.1.to_string());
    assert_eq!(f[9], "text/html;%20charset=utf-8");
    let f = fields(line_with(
        &lines,
        &["TCP_DENIED/403", &https("hate.example", "/x")],
    ));
    assert_eq!(f[4], bumped_denied.1.to_string());

    // The bank's tunnel: its bytes, no content type, no path.
    let f = fields(line_with(&lines, &["TCP_TUNNEL/200", "mabanque.example"]));
    assert!(f[4].parse::<u64>().unwrap() > 0, "{f:?}");
    assert_eq!(f[9], "-");

    // Every JSON record carries the client's user agent.
    for r in &records {
        assert_eq!(r["user_agent"], AGENT, "{r}");
    }

    // The tools read every line.
    let log = p.path("logs/access.log");
    sarg_reads_all(&log, lines.len());
    calamaris_reads_all(&log, lines.len());
}

/// SARG (`-x` prints what it read, wrote and excluded) makes its report from every line.
fn sarg_reads_all(log: &Path, n: usize) {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let tmp = work.path().join("tmp");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let conf = work.path().join("sarg.conf");
    std::fs::write(
        &conf,
        format!(
            "access_log {}\noutput_dir {}\ntemporary_dir {}\nresolve_ip no\n",
            log.display(),
            out.display(),
            tmp.display()
        ),
    )
    .unwrap();
    let run = Command::new("sarg")
        .arg("-f")
        .arg(&conf)
        .arg("-l")
        .arg(log)
        .arg("-o")
        .arg(&out)
        .arg("-w")
        .arg(&tmp)
        .arg("-x")
        .output()
        .expect("sarg is installed (tests/run.sh installs Debian's sarg)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "sarg failed:\n{said}");
    let counts = said
        .lines()
        .find(|l| l.contains("Records read:"))
        .unwrap_or_else(|| panic!("no counts from sarg:\n{said}"));
    assert!(
        counts.contains(&format!("Records read: {n}, written: {n}, excluded: 0")),
        "sarg did not take every line: {counts}\n{said}"
    );
    // The report exists, with its denied and authentication-failure pages.
    let report = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.path().join("index.html").exists())
        .unwrap_or_else(|| panic!("no SARG report:\n{said}"))
        .path();
    let denied = std::fs::read_to_string(report.join("denied.html")).unwrap();
    assert!(denied.contains("hate.example"), "{denied}");
    let authfail = std::fs::read_to_string(report.join("authfail.html")).unwrap();
    assert!(authfail.contains("allowed.test"), "{authfail}");
}

/// Calamaris parses every line and finds none invalid.
fn calamaris_reads_all(log: &Path, n: usize) {
    let run = Command::new("calamaris")
        .arg("-a")
        .stdin(std::fs::File::open(log).unwrap())
        .output()
        .expect("calamaris is installed (tests/run.sh installs Debian's calamaris)");
    let said = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "calamaris failed:\n{said}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let count = |label: &str| -> u64 {
        said.lines()
            .find(|l| l.starts_with(label))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {label:?} in calamaris' report:\n{said}"))
    };
    assert_eq!(count("lines parsed:"), n as u64, "{said}");
    assert_eq!(count("invalid lines:"), 0, "{said}");
    assert!(said.contains("TCP_DENIED"), "{said}");
}
