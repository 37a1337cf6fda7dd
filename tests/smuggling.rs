//! Request smuggling: ambiguous framing sent to the proxy is either refused with 400 and
//! the connection closed, or normalised so that the site parses exactly one request.
//! The site here is a strict HTTP/1.1 server that logs every request it parses; a
//! smuggled request would show up in that log as `/smuggledN`.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::proxy::{Proxy, serve_on_loopback};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

/// A site that logs `METHOD /path body-length` for every request it parses.
fn logging_site() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>, impl Drop) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    let (addr, stop) = serve_on_loopback(move |s| {
        let log = l2.clone();
        async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let line = format!("{} {}", req.method(), req.uri().path());
                        let body = req.into_body().collect().await.map(|b| b.to_bytes().len());
                        log.lock()
                            .unwrap()
                            .push(format!("{line} {}", body.map_or(-1, |n| n as i64)));
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                .await;
        }
    });
    struct Stop(Option<tokio::sync::oneshot::Sender<()>>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.take();
        }
    }
    (addr, log, Stop(Some(stop)))
}

/// Sends `raw`, half-closes, and reads everything the proxy answers until it closes.
fn send(p: &Proxy, raw: &str) -> String {
    let mut s = TcpStream::connect(p.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn statuses(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text[i + 9..].get(..3)?.parse().ok())
        .collect()
}

#[test]
fn ambiguous_framing_is_refused_or_reaches_the_site_as_one_request() {
    let (site, log, _stop) = logging_site();
    let p = Proxy::start_pinned(&[]);
    let origin = format!("allowed.test:{}", site.port());
    // (name, headers after the request line, body). Each smuggles `GET /smuggledN`.
    let cases: Vec<(&str, String, String)> = vec![
        (
            "CL+TE",
            "Content-Length: 4\r\nTransfer-Encoding: chunked".into(),
            "0\r\n\r\n".into(),
        ),
        (
            "TE+CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 60".into(),
            "0\r\n\r\n".into(),
        ),
        (
            "TE twice",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked".into(),
            "0\r\n\r\n".into(),
        ),
        (
            "TE chunked, identity",
            "Transfer-Encoding: chunked, identity".into(),
            "0\r\n\r\n".into(),
        ),
        (
            "TE xchunked",
            "Transfer-Encoding: xchunked".into(),
            "0\r\n\r\n".into(),
        ),
        (
            "TE with tab",
            "Transfer-Encoding:\tchunked".into(),
            "0\r\n\r\n".into(),
        ),
        (
            "TE space before colon",
            "Transfer-Encoding : chunked".into(),
            "0\r\n\r\n".into(),
        ),
        (
            "TE upper case",
            "Transfer-Encoding: CHUNKED".into(),
            "0\r\n\r\n".into(),
        ),
        (
            "two CL",
            "Content-Length: 0\r\nContent-Length: 40".into(),
            String::new(),
        ),
        ("CL list", "Content-Length: 0, 40".into(), String::new()),
        ("CL sign", "Content-Length: +0".into(), String::new()),
        (
            "chunk size negative",
            "Transfer-Encoding: chunked".into(),
            "-1\r\nx\r\n0\r\n\r\n".into(),
        ),
        (
            "chunk size hex prefix",
            "Transfer-Encoding: chunked".into(),
            "0x1\r\nx\r\n0\r\n\r\n".into(),
        ),
        (
            "chunk size overflow",
            "Transfer-Encoding: chunked".into(),
            "ffffffffffffffffff\r\nx\r\n0\r\n\r\n".into(),
        ),
        (
            "chunk bare LF",
            "Transfer-Encoding: chunked".into(),
            "1\nx\n0\n\n".into(),
        ),
        (
            "header bare LF",
            "X-A: 1\nContent-Length: 0".into(),
            String::new(),
        ),
        (
            "obs-fold",
            "X-A: 1\r\n Content-Length: 40".into(),
            String::new(),
        ),
        (
            "NUL in header",
            "X-A: a\0b\r\nContent-Length: 0".into(),
            String::new(),
        ),
    ];
    for (i, (name, headers, body)) in cases.iter().enumerate() {
        let smuggled = format!("GET /smuggled{i} HTTP/1.1\r\nHost: {origin}\r\n\r\n");
        let raw = format!(
            "POST http://{origin}/case{i} HTTP/1.1\r\nHost: {origin}\r\n{headers}\r\n\r\n{body}{smuggled}"
        );
        let answer = send(&p, &raw);
        let got = statuses(&answer);
        let seen: Vec<String> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&format!("/case{i} ")) || l.contains(&format!("/smuggled{i} ")))
            .cloned()
            .collect();
        eprintln!("{name}: proxy answered {got:?}; the site parsed {seen:?}");
        assert!(
            !seen.iter().any(|l| l.contains("/smuggled")),
            "{name}: the site parsed a smuggled request: {seen:?} (proxy answered {got:?})"
        );
        match got.first() {
            Some(400) => assert!(seen.is_empty(), "{name}: refused but forwarded: {seen:?}"),
            Some(_) => assert_eq!(seen.len(), 1, "{name}: {seen:?} / {answer}"),
            None => panic!("{name}: no answer at all"),
        }
        // Whatever the proxy made of the trailing bytes, it is one more request of the
        // client's own, answered on the client's connection, never a second request
        // hidden inside the first one's body.
        assert!(got.len() <= 2, "{name}: {got:?}");
    }
}
