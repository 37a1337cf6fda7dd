//! The plain-HTTP pool of site connections: a connection is reused for the next request
//! to the same site (after a short answer, and after a long one once it has been read),
//! a connection the site closed is never used again (the next request gets a new one,
//! the client sees nothing), a GET sent on a kept connection that the site closes
//! without answering goes again on a new one (but not one whose answer had begun, nor a
//! request with a body), and an idle connection is closed by the proxy once
//! `upstream_keepalive_seconds` has passed.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use common::proxy::{Proxy, exchange, read_request};

/// What the site saw.
#[derive(Debug, PartialEq)]
enum Seen {
    /// Connection `n` (from 1) was opened.
    Opened(usize),
    /// The proxy closed connection `n`.
    Closed(usize),
}

/// A keep-alive site on loopback that answers every request with the number of the
/// connection it came on (`conn-N`), padded to `size` bytes when the path is `/big`.
/// With `answers_per_conn`, it closes a connection itself (a FIN, no `Connection:
/// close` announced) after that many answers, as servers do on their idle timeout.
fn site(answers_per_conn: Option<usize>) -> (u16, mpsc::Receiver<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (i, s) in l.incoming().enumerate() {
            let Ok(s) = s else { break };
            let n = i + 1;
            let tx = tx.clone();
            let _ = tx.send(Seen::Opened(n));
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let mut answered = 0;
                loop {
                    // One request head (the proxy sends no body on a GET).
                    let mut path = None;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            let _ = tx.send(Seen::Closed(n));
                            return;
                        }
                        if path.is_none() {
                            path = line.split(' ').nth(1).map(str::to_string);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = format!("conn-{n}");
                    if path.as_deref() == Some("/big") {
                        body.push_str(&".".repeat(4 << 20));
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    if w.write_all(head.as_bytes()).is_err()
                        || w.write_all(body.as_bytes()).is_err()
                    {
                        return;
                    }
                    answered += 1;
                    if Some(answered) == answers_per_conn {
                        let _ = w.shutdown(Shutdown::Write);
                        let _ = r.read_to_end(&mut Vec::new());
                        let _ = tx.send(Seen::Closed(n));
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

/// Sends a GET for `url` on the client's kept-alive connection and returns the body.
fn get(c: &mut BufReader<TcpStream>, url: &str) -> String {
    let (status, body) = exchange(c, url, "allowed.test");
    assert_eq!(status, 200, "{url}: {body}");
    body
}

fn client(p: &Proxy) -> BufReader<TcpStream> {
    let s = TcpStream::connect(p.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    BufReader::new(s)
}

fn start(keepalive_seconds: f64) -> Proxy {
    Proxy::start_with_config(
        &format!("limits:\n  upstream_keepalive_seconds: {keepalive_seconds}\n"),
        &[],
    )
}

fn next(rx: &mpsc::Receiver<Seen>, within: Duration) -> Seen {
    rx.recv_timeout(within)
        .expect("the site saw nothing more in time")
}

#[test]
fn one_site_connection_serves_request_after_request_and_is_closed_when_idle() {
    let keepalive = Duration::from_secs(1);
    let p = start(keepalive.as_secs_f64());
    let (port, seen) = site(None);
    let mut c = client(&p);
    let url = |path: &str| format!("http://allowed.test:{port}{path}");

    // A short answer, a long one (read after its head came), then short ones again:
    // all on the first connection.
    assert_eq!(get(&mut c, &url("/a")), "conn-1");
    let big = get(&mut c, &url("/big"));
    assert!(
        big.starts_with("conn-1") && big.len() > 4 << 20,
        "{}",
        big.len()
    );
    for _ in 0..3 {
        assert_eq!(get(&mut c, &url("/b")), "conn-1");
    }
    let last = Instant::now();
    assert_eq!(next(&seen, Duration::from_secs(5)), Seen::Opened(1));

    // Idle: the proxy closes it once the keep-alive has passed, not before.
    assert_eq!(next(&seen, Duration::from_secs(10)), Seen::Closed(1));
    let idle = last.elapsed();
    assert!(
        idle >= keepalive - Duration::from_millis(100),
        "closed after {idle:?}, before the keep-alive"
    );
    // And the next request opens a new one.
    assert_eq!(get(&mut c, &url("/c")), "conn-2");
    assert_eq!(next(&seen, Duration::from_secs(5)), Seen::Opened(2));
}

#[test]
fn a_connection_the_site_closed_is_not_used_again() {
    let p = start(60.0);
    let (port, seen) = site(Some(1));
    let mut c = client(&p);
    let url = format!("http://allowed.test:{port}/x");
    for n in 1..=3 {
        assert_eq!(get(&mut c, &url), format!("conn-{n}"));
        assert_eq!(next(&seen, Duration::from_secs(5)), Seen::Opened(n));
        // The site closed it after its answer; once the proxy has seen that (it closes
        // its side), the next request must go on a new connection, unharmed.
        assert_eq!(next(&seen, Duration::from_secs(5)), Seen::Closed(n));
    }
}

/// A site that answers the first request on each connection (`conn-N`) and closes the
/// connection, unanswered, on the second: what a proxy sees when the site's idle timeout
/// closes a kept connection just as a request goes out on it.
fn site_closing_on_second_request() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (i, s) in l.incoming().enumerate() {
            let Ok(s) = s else { break };
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                for answered in 0.. {
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    if answered == 1 {
                        return; // closed, unanswered
                    }
                    let body = format!("conn-{}", i + 1);
                    let _ = write!(
                        w,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
        }
    });
    port
}

#[test]
fn a_request_on_a_kept_connection_closed_unanswered_goes_on_a_new_one() {
    let p = start(60.0);
    let port = site_closing_on_second_request();
    let mut c = client(&p);
    let url = format!("http://allowed.test:{port}/x");
    assert_eq!(get(&mut c, &url), "conn-1");
    // Sent on conn-1, which the site closes without answering: the client never knows.
    assert_eq!(get(&mut c, &url), "conn-2");
    assert_eq!(get(&mut c, &url), "conn-3");
}

#[test]
fn requests_right_after_the_site_closed_its_connection_are_not_lost() {
    // No wait for the proxy to notice the close: the next request may find the kept
    // connection closed before it is sent, or while it is, and must go on a new one.
    let p = start(60.0);
    let (port, _seen) = site(Some(1));
    let mut c = client(&p);
    let url = format!("http://allowed.test:{port}/x");
    for n in 1..=20 {
        assert_eq!(get(&mut c, &url), format!("conn-{n}"));
    }
}

/// A site that answers the first request on each connection (`conn-N`) and, on the
/// second, `second` (the start of an answer, or nothing) before closing the connection.
/// Counts the connections opened and the requests read.
fn site_failing_the_second_request(
    second: &'static [u8],
) -> (u16, Arc<(AtomicUsize, AtomicUsize)>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let counts = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let c2 = counts.clone();
    std::thread::spawn(move || {
        for (i, s) in l.incoming().enumerate() {
            let Ok(s) = s else { break };
            c2.0.fetch_add(1, Ordering::SeqCst);
            let counts = c2.clone();
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                for answered in 0.. {
                    if !read_request(&mut r) {
                        return;
                    }
                    counts.1.fetch_add(1, Ordering::SeqCst);
                    if answered == 1 {
                        let _ = w.write_all(second);
                        return;
                    }
                    let body = format!("conn-{}", i + 1);
                    let _ = write!(
                        w,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
        }
    });
    (port, counts)
}

#[test]
fn a_request_whose_answer_was_cut_after_its_first_bytes_is_not_sent_again() {
    // The site began to answer: it did not close an idle connection, it failed this
    // request. A 502, and the request reached it once.
    let p = start(60.0);
    let (port, counts) = site_failing_the_second_request(b"HTTP/1.1 200 OK\r\nContent-Le");
    let mut c = client(&p);
    let url = format!("http://allowed.test:{port}/x");
    assert_eq!(get(&mut c, &url), "conn-1");
    let (status, body) = exchange(&mut c, &url, "allowed.test");
    assert_eq!(status, 502, "{body}");
    assert_eq!(counts.0.load(Ordering::SeqCst), 1, "connections opened");
    assert_eq!(counts.1.load(Ordering::SeqCst), 2, "requests read");
    assert_eq!(get(&mut c, &url), "conn-2");
}

#[test]
fn a_request_with_a_body_on_a_kept_connection_closed_unanswered_is_not_sent_again() {
    // A POST may not be sent twice: the site may have acted on it before closing.
    let p = start(60.0);
    let (port, counts) = site_failing_the_second_request(b"");
    let mut c = client(&p);
    let url = format!("http://allowed.test:{port}/x");
    assert_eq!(get(&mut c, &url), "conn-1");
    write!(
        c.get_mut(),
        "POST {url} HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5\r\n\r\nhello"
    )
    .unwrap();
    let mut status_line = String::new();
    c.read_line(&mut status_line).unwrap();
    assert!(status_line.starts_with("HTTP/1.1 502 "), "{status_line}");
    assert_eq!(counts.0.load(Ordering::SeqCst), 1, "connections opened");
    assert_eq!(counts.1.load(Ordering::SeqCst), 2, "requests read");
}
