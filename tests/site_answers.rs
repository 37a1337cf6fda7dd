//! A site's answer is untrusted input, read on the plain path: through the real proxy, to
//! sites on loopback that write canned bytes. Interim answers (100, 103) are skipped and
//! the final one relayed; a `HEAD` answer has no body and leaves the site connection
//! reusable; a garbled or ambiguous answer (not HTTP, `Transfer-Encoding` with
//! `Content-Length`, two lengths, a bad length) is a 502 page traced `upstream-error`, at
//! once; an answer head over 64 KiB is refused however its bytes arrive, one under it
//! passes; up to 128 header fields pass; a chunked body that breaks its framing cuts the
//! client's connection instead of ending cleanly.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::proxy::{Proxy, read_request};

/// The largest answer head the proxy accepts from a site.
const MAX_HEAD: usize = 64 * 1024;

/// What the site writes for the `n`-th connection (from 1).
type Answer = Arc<dyn Fn(usize) -> Vec<u8> + Send + Sync>;

/// A keep-alive site that reads each request (its head, and a body by `Content-Length`)
/// and writes `answer` to it, `step` bytes at a time 1 ms apart (in one write when 0),
/// then waits for the next request on the same connection. It never closes first.
fn site(step: usize, answer: Answer) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (i, s) in l.incoming().enumerate() {
            let Ok(s) = s else { break };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                loop {
                    if !read_request(&mut r) {
                        return;
                    }
                    let bytes = answer(i + 1);
                    let pieces: Vec<&[u8]> = if step == 0 {
                        vec![&bytes[..]]
                    } else {
                        bytes.chunks(step).collect()
                    };
                    for piece in pieces {
                        if w.write_all(piece).is_err() {
                            return;
                        }
                        if step > 0 {
                            // Pacing, so that the answer arrives in many reads.
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
            });
        }
    });
    port
}

/// The same answer on every connection.
fn fixed(bytes: &[u8]) -> Answer {
    let bytes = bytes.to_vec();
    Arc::new(move |_| bytes.clone())
}

/// The request methods whose answers are checked: without a body, and with one.
#[derive(Clone, Copy, Debug)]
enum Ask {
    Get,
    Post,
}

fn request(ask: Ask, port: u16, path: &str, close: bool) -> String {
    let close = if close { "Connection: close\r\n" } else { "" };
    match ask {
        Ask::Get => format!(
            "GET http://allowed.test:{port}{path} HTTP/1.1\r\nHost: allowed.test:{port}\r\n{close}\r\n"
        ),
        Ask::Post => format!(
            "POST http://allowed.test:{port}{path} HTTP/1.1\r\nHost: allowed.test:{port}\r\n\
             Content-Length: 5\r\n{close}\r\nhello"
        ),
    }
}

/// Sends one request with `Connection: close` and reads everything until the proxy
/// closes: (status, the whole text).
fn once(p: &Proxy, ask: Ask, port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(p.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request(ask, port, path, true).as_bytes())
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Reads one answer head on a kept-alive client connection: (status, lower-case head).
fn read_head(r: &mut BufReader<TcpStream>) -> (u16, String) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "closed after {head:?}");
        head.push_str(&line.to_ascii_lowercase());
        if line == "\r\n" {
            break;
        }
    }
    (head[9..12].parse().unwrap(), head)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// The answer is the proxy's 502 page, and the trace says `upstream-error`.
fn assert_refused(p: &Proxy, (status, text): &(u16, String), path: &str, case: &str) {
    assert_eq!(*status, 502, "{case}: {text}");
    assert!(text.contains("<html"), "{case}: a page: {text}");
    let t = p.trace_find(|r| r["path"] == path);
    assert_eq!(t["status"], 502, "{case}: {t}");
    assert_eq!(t["reason_code"], "upstream-error", "{case}: {t}");
}

const ASKS: [Ask; 2] = [Ask::Get, Ask::Post];

#[test]
fn interim_answers_are_skipped_and_the_final_one_relayed() {
    let p = Proxy::start_pinned(&[]);
    let port = site(
        0,
        fixed(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ),
    );
    for ask in ASKS {
        let (status, text) = once(&p, ask, port, "/interim");
        assert_eq!(status, 200, "{ask:?}: {text}");
        assert!(text.ends_with("\r\n\r\nok"), "{ask:?}: {text}");
        assert!(
            !text.to_ascii_lowercase().contains("link:"),
            "{ask:?}: {text}"
        );
    }
}

#[test]
fn a_head_answer_has_no_body_and_leaves_the_site_connection_reusable() {
    let p = Proxy::start_pinned(&[]);
    // Announces 1000 bytes and sends none, as a HEAD answer does; names its connection.
    let port = site(
        0,
        Arc::new(|n| {
            format!("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nX-Conn: {n}\r\n\r\n").into_bytes()
        }),
    );
    let s = TcpStream::connect(p.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(s);
    for _ in 0..3 {
        let head = format!(
            "HEAD http://allowed.test:{port}/h HTTP/1.1\r\nHost: allowed.test:{port}\r\n\r\n"
        );
        r.get_mut().write_all(head.as_bytes()).unwrap();
        let (status, head) = read_head(&mut r);
        assert_eq!(status, 200, "{head}");
        assert_eq!(header(&head, "content-length"), Some("1000"), "{head}");
        // No body was waited for, and the same site connection served every one.
        assert_eq!(header(&head, "x-conn"), Some("1"), "{head}");
    }
}

#[test]
fn garbled_or_ambiguous_answers_get_a_502_at_once() {
    let p = Proxy::start_pinned(&[]);
    let answers: [(&str, &[u8]); 5] = [
        (
            "te-and-cl",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "two-lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        ),
        (
            "a-list-of-lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd",
        ),
        (
            "a-signed-length",
            b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
        ),
        // Not HTTP, and no empty line: refused on its first bytes, not at a timeout.
        ("not-http", b"SSH-2.0-OpenSSH_9.2\r\n"),
    ];
    for (name, answer) in answers {
        let port = site(0, fixed(answer));
        for ask in ASKS {
            let case = format!("{name} to {ask:?}");
            let path = format!("/{name}/{ask:?}");
            let t = Instant::now();
            let got = once(&p, ask, port, &path);
            assert_refused(&p, &got, &path, &case);
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{case}: {:?}",
                t.elapsed()
            );
        }
    }
}

/// An answer whose head is `total` bytes long: the status line, `X-Big` and the empty
/// line, then a two-byte body.
fn answer_with_head_of(total: usize) -> Vec<u8> {
    let base = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Big: \r\n\r\n".len();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Big: {}\r\n\r\n",
        "a".repeat(total - base)
    );
    assert_eq!(head.len(), total);
    let mut a = head.into_bytes();
    a.extend_from_slice(b"ok");
    a
}

#[test]
fn an_answer_head_over_64_kib_is_refused_however_it_arrives() {
    let p = Proxy::start_pinned(&[]);
    for (total, step) in [
        (MAX_HEAD + 100, 0),
        (MAX_HEAD + 100, 2048),
        (MAX_HEAD + 8 * 1024, 0),
        (MAX_HEAD + 8 * 1024, 2048),
    ] {
        let port = site(step, fixed(&answer_with_head_of(total)));
        for ask in ASKS {
            let case = format!("{total} bytes, step {step}, {ask:?}");
            let path = format!("/over/{total}/{step}/{ask:?}");
            let got = once(&p, ask, port, &path);
            assert_refused(&p, &got, &path, &case);
        }
    }
    // Cut short: over the limit and never ending, the site holding its connection.
    let mut endless = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    endless.extend(std::iter::repeat_n(b'a', MAX_HEAD));
    let port = site(0, fixed(&endless));
    for ask in ASKS {
        let path = format!("/endless/{ask:?}");
        let got = once(&p, ask, port, &path);
        assert_refused(&p, &got, &path, &format!("endless, {ask:?}"));
    }
    // Under the limit, whole or trickled: relayed.
    for step in [0, 2048] {
        let port = site(step, fixed(&answer_with_head_of(MAX_HEAD - 1024)));
        for ask in ASKS {
            let (status, text) = once(&p, ask, port, "/under");
            assert_eq!(
                status,
                200,
                "step {step}, {ask:?}: {}",
                &text[..200.min(text.len())]
            );
            assert!(text.ends_with("\r\n\r\nok"), "step {step}, {ask:?}");
        }
    }
}

/// An answer with `n` header fields (`Content-Length` and `n - 1` others).
fn answer_with_fields(n: usize) -> Vec<u8> {
    let mut a = String::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
    for i in 1..n {
        a.push_str(&format!("X-Field-{i}: {i}\r\n"));
    }
    a.push_str("\r\nok");
    a.into_bytes()
}

#[test]
fn answers_with_up_to_128_header_fields_pass() {
    let p = Proxy::start_pinned(&[]);
    let port = site(0, fixed(&answer_with_fields(128)));
    for ask in ASKS {
        let (status, text) = once(&p, ask, port, "/fields-128");
        assert_eq!(status, 200, "{ask:?}: {text}");
        assert!(text.contains("x-field-127: 127"), "{ask:?}: {text}");
    }
    let port = site(0, fixed(&answer_with_fields(129)));
    for ask in ASKS {
        let path = format!("/fields-129/{ask:?}");
        let got = once(&p, ask, port, &path);
        assert_refused(&p, &got, &path, &format!("129 fields, {ask:?}"));
    }
}

#[test]
fn a_chunked_body_that_breaks_its_framing_cuts_the_client_connection() {
    let p = Proxy::start_pinned(&[]);
    let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
    for (name, rest) in [
        ("hex-prefix", "0x1\r\nx\r\n0\r\n\r\n"),
        ("bare-lf", "1\nx\r\n0\r\n\r\n"),
        ("data-over-its-size", "1\r\nxy\r\n0\r\n\r\n"),
        ("size-overflow", "10000000000000000\r\nx\r\n"),
        ("bare-cr-in-a-trailer", "0\r\nX: 1\rY\r\n\r\n"),
    ] {
        let port = site(0, fixed(format!("{head}{rest}").as_bytes()));
        for ask in ASKS {
            let case = format!("{name}, {ask:?}");
            let (status, text) = once(&p, ask, port, "/chunked");
            assert_eq!(status, 200, "{case}: {text}");
            // The client gets no clean end: never the last chunk and its empty line.
            assert!(
                !text.ends_with("0\r\n\r\n"),
                "{case}: looks complete: {text:?}"
            );
        }
    }
}
