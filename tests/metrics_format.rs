//! `/metrics` as Prometheus reads it, from the running proxy after allowed, blocked and
//! inspected requests: `promtool check metrics` (Debian's `prometheus` package, installed
//! by tests/run.sh) finds no problem, the process and build metrics are there, and no
//! byte is counted twice.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::proxy::{Proxy, Upstream, curl};
use common::tls::{HttpsUpstream, TestCa, h1_exchange, tls_through};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// `promtool check metrics` on `text`: its exit code and everything it printed.
fn promtool_check(text: &str) -> (i32, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (tests/run.sh installs Debian's `prometheus`)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), said)
}

/// The value of the sample named exactly `series` (name and labels as exposed).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series}:\n{metrics}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_pass_promtool_and_count_each_byte_once() {
    let plain = Upstream::start();
    let up_ca = TestCa::new("Test upstream root");
    let up = HttpsUpstream::start(&up_ca.leaf(&["allowed.test", "hate.example"]));
    let dir = tempfile::tempdir().unwrap();
    let up_pem = dir.path().join("upstream-root.pem");
    up_ca.write_pem(&up_pem);
    let up_pem = up_pem.display().to_string();
    let port = up.port().to_string();
    let p = Proxy::start_pinned(&["--upstream-ca", &up_pem, "--connect-port", &port]);
    let org = CertificateDer::from_pem_file(p.path("data/ca/ca.pem")).unwrap();

    // Plain HTTP: one allowed, one blocked.
    for (host, status) in [("allowed.test", "200"), ("hate.example", "403")] {
        let url = format!("http://{host}:{}/small", plain.port());
        let (code, out, err) = curl(&[
            "-x",
            &p.url(),
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ]);
        assert_eq!((code, out.as_str()), (0, status), "{host}: {err}");
    }
    // Inspected HTTPS: one allowed, one blocked (its block page inside the tunnel).
    for (host, status) in [("allowed.test", " 200 "), ("hate.example", " 403 ")] {
        let mut tls = tls_through(
            p.proxy,
            &format!("{host}:{port}"),
            host,
            std::slice::from_ref(&org),
            &[b"http/1.1"],
        )
        .unwrap_or_else(|e| panic!("{host}: {e}"));
        let answer = h1_exchange(
            &mut tls,
            &format!("GET /small HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert!(
            answer.starts_with("HTTP/1.1") && answer.contains(status),
            "{answer}"
        );
    }
    // Four requests and two tunnels; a record is written after its metrics are counted.
    let records = p.trace(6);
    assert_eq!(
        records.iter().filter(|r| r["method"] == "CONNECT").count(),
        2,
        "{records:?}"
    );

    let m = p.admin_get("/metrics");
    let (code, said) = promtool_check(&m);
    assert!(
        code == 0 && said.trim().is_empty(),
        "promtool check metrics: exit {code}\n{said}\n{m}"
    );
    for name in [
        "process_resident_memory_bytes ",
        "process_start_time_seconds ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_max_fds ",
    ] {
        assert!(m.lines().any(|l| l.starts_with(name)), "{name}\n{m}");
    }
    assert!(sample(&m, "process_resident_memory_bytes") > 0.0, "{m}");
    assert!(sample(&m, "process_start_time_seconds") > 1.0e9, "{m}");
    let kerberos = cfg!(feature = "kerberos");
    let info = format!(
        "charte_build_info{{kerberos=\"{kerberos}\",version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&m, &info), 1.0, "{m}");
    assert!(!m.contains("charte_tls_leaves_minted "), "renamed: {m}");
    assert_eq!(sample(&m, "charte_tls_leaves_minted_total"), 2.0, "{m}");

    // The bytes of an inspected tunnel are those of the requests inside it: the tunnel's
    // own record (TLS bytes) is not added to the counter again.
    let sum = |field: &str| -> f64 {
        records
            .iter()
            .filter(|r| r["method"] != "CONNECT")
            .map(|r| r[field].as_u64().unwrap() as f64)
            .sum()
    };
    assert!(sum("bytes_received") > 0.0, "{records:?}");
    assert_eq!(
        sample(&m, "charte_bytes_total{direction=\"received\"}"),
        sum("bytes_received"),
        "{records:?}\n{m}"
    );
    assert_eq!(
        sample(&m, "charte_bytes_total{direction=\"sent\"}"),
        sum("bytes_sent"),
        "{records:?}\n{m}"
    );
}
