//! Several trace outputs at once (issue 23): the JSON §4.8 record and Squid's access.log
//! each in its own file, and syslog (RFC 5424) to collectors over UDP and TCP on
//! loopback, all fed the same records.

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{TcpListener, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::proxy::{Proxy, Upstream, fixture_dir};

/// Waits until `f` gives `Some`.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `<PRI>1 TIMESTAMP HOST charte-proxy PID trace - MSG`: the message, if `m` is one with
/// priority `pri`.
fn rfc5424(m: &str, pri: u16) -> Option<&str> {
    let rest = m.strip_prefix(&format!("<{pri}>1 "))?;
    let mut parts = rest.splitn(7, ' ');
    let ts = parts.next()?;
    let ok_ts = ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T';
    let host = parts.next()?;
    let app = parts.next()?;
    let pid = parts.next()?;
    let msgid = parts.next()?;
    let sd = parts.next()?;
    let msg = parts.next()?;
    (ok_ts
        && !host.is_empty()
        && app == "charte-proxy"
        && pid.parse::<u32>().is_ok()
        && msgid == "trace"
        && sd == "-")
        .then_some(msg)
}

#[test]
fn json_squid_and_syslog_outputs_get_the_same_records() {
    let up = Upstream::start();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    // The TCP collector: octet-counted frames (RFC 6587), each sent on.
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let (s, _) = tcp.accept().unwrap();
        let mut r = BufReader::new(s);
        loop {
            let mut len = Vec::new();
            if r.read_until(b' ', &mut len).unwrap_or(0) == 0 {
                return;
            }
            let n: usize = String::from_utf8_lossy(&len).trim().parse().unwrap();
            let mut m = vec![0; n];
            r.read_exact(&mut m).unwrap();
            let _ = tx.send(String::from_utf8(m).unwrap());
        }
    });
    let server = format!(
        "reverse_dns: false
trace:
  outputs:
    - {{path: logs/access.log, format: squid}}
    - {{path: logs/copy.json, format: json}}
    - {{syslog: udp://{udp}, format: squid, facility: local3}}
    - {{syslog: tcp://{tcp_addr}, format: json}}
",
        udp = udp.local_addr().unwrap()
    );
    let p = Proxy::start_in_with(fixture_dir(), &server, &[], &[]);
    let urls = [
        format!("http://allowed.test:{}/one", up.port()),
        format!("http://hate.example:{}/two", up.port()),
        format!("http://allowed.test:{}/three", up.port()),
    ];
    for u in &urls {
        common::proxy::curl(&["-s", "-o", "/dev/null", "-x", &p.url(), u]);
    }
    let trace = p.trace(3);
    assert_eq!(trace.len(), 3);

    // The JSON copy holds the same bytes as the trace of record.
    let main = std::fs::read_to_string(p.trace_path()).unwrap();
    let copy = wait_for("the JSON copy", || {
        let c = std::fs::read_to_string(p.path("logs/copy.json")).ok()?;
        (c.lines().count() >= 3).then_some(c)
    });
    assert_eq!(copy, main);

    // Squid's access.log: one line each, in order, the denial with its 403.
    let access = wait_for("access.log", || {
        let a = std::fs::read_to_string(p.path("logs/access.log")).ok()?;
        (a.lines().count() >= 3).then_some(a)
    });
    let lines: Vec<&str> = access.lines().collect();
    assert_eq!(lines.len(), 3, "{access}");
    for (l, u) in lines.iter().zip(&urls) {
        assert!(l.contains(u.as_str()), "{l} lacks {u}");
    }
    assert!(lines[1].contains("/403 "), "{}", lines[1]);

    // Syslog over UDP: local3 (19) informational (6) = 158, the Squid lines as messages.
    let mut buf = [0u8; 65536];
    let mut got = Vec::new();
    while got.len() < 3 {
        let n = udp.recv(&mut buf).expect("a syslog datagram");
        got.push(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    for (m, line) in got.iter().zip(&lines) {
        let msg = rfc5424(m, 158).unwrap_or_else(|| panic!("not RFC 5424: {m}"));
        assert_eq!(msg, *line);
    }

    // Syslog over TCP: local0 (16) = 134, the JSON records.
    for (i, want) in main.lines().enumerate() {
        let m = rx
            .recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|_| panic!("TCP message {i}"));
        let msg = rfc5424(&m, 134).unwrap_or_else(|| panic!("not RFC 5424: {m}"));
        assert_eq!(msg, want);
    }
}

#[test]
fn a_bad_output_is_reported_with_its_line() {
    let dir = fixture_dir();
    let server = dir.path().join("server.yaml");
    std::fs::write(
        &server,
        "trace:\n  outputs:\n    - {path: a.log, format: squid}\n    - {syslog: udp://collector:514}\n    - {path: b.log, syslog: udp://10.0.0.1:514}\n    - {syslog: udp://10.0.0.1:514, facility: local9}\n",
    )
    .unwrap();
    let r = common::run(&[
        "check",
        "--policy",
        dir.path().join("policy.yaml").to_str().unwrap(),
        "--config",
        server.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    for want in [
        "server.yaml:4:",
        "not an IP address with a port",
        "server.yaml:5:",
        "one of the two",
        "server.yaml:6:",
        "unknown syslog facility",
    ] {
        assert!(r.stderr.contains(want), "{want}: {}", r.stderr);
    }
}
