//! Graceful shutdown under load: on SIGTERM the listener closes, every exchange and
//! tunnel in flight finishes, every record is written, and the process exits 0.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::proxy::{Proxy, Upstream, tcp_echo};

#[test]
fn sigterm_under_load_finishes_every_exchange_and_tunnel_in_flight() {
    let up = Upstream::start();
    let echo = tcp_echo("");
    let port = echo.port().to_string();
    let mut p = Proxy::start_pinned(&["--connect-port", &port, "--no-inspect"]);
    const N: usize = 24;
    let url = format!("http://allowed.test:{}/slow?ms=1500", up.port());
    let proxy = p.proxy;
    let clients: Vec<_> = (0..N)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                common::proxy::one_response(
                    proxy,
                    &format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                )
            })
        })
        .collect();
    // A tunnel in flight too: it keeps relaying until its client closes it.
    let mut tunnel = TcpStream::connect(p.proxy).unwrap();
    tunnel
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    tunnel
        .write_all(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n").as_bytes())
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tunnel.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    // Wait until every request is in flight (a condition, not a sleep): the site has
    // begun to answer all of them. (Counting the proxy's open connections was flaky
    // under load: the tunnel counts too, and a connection accepted but not yet read
    // is idle, which a graceful shutdown closes at once.)
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::proxy::slow_started() < N {
        assert!(Instant::now() < deadline, "the requests never all arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    p.signal("TERM");

    // New connections are refused once the listener is closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(p.proxy).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The tunnel still relays after the signal.
    tunnel.write_all(b"still here").unwrap();
    let mut got = Vec::new();
    while got.len() < 10 {
        let n = tunnel.read(&mut buf).unwrap();
        assert!(n > 0, "the tunnel was cut");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"still here");
    drop(tunnel);

    for c in clients {
        let text = c.join().unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with("slow done"), "{text}");
    }
    assert_eq!(p.wait_exit(Duration::from_secs(20)), 0);
    let trace = std::fs::read_to_string(p.trace_path()).unwrap();
    assert_eq!(
        trace.matches("/slow?ms=1500").count(),
        N,
        "one record per exchange, all flushed"
    );
    assert!(
        trace.contains("\"method\":\"CONNECT\""),
        "the tunnel's record"
    );
}
