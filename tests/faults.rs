//! Upstream faults give clear pages (502/504) within the configured timeouts; a body cut
//! by the site cuts the client's connection instead of looking complete; and no error
//! page reflects credentials or cookies, or anything unescaped.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::proxy::{Proxy, Upstream};

/// A site that misbehaves the same way on every connection.
#[derive(Clone, Copy)]
enum Fault {
    /// Head with `Content-Length: 1000`, ten bytes, then a clean close (FIN).
    Truncated,
    /// The same, then a reset (RST: the request is left unread).
    Reset,
    /// Not HTTP at all.
    Garbage,
}

fn faulty_site(fault: Fault) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                let full_head = !matches!(fault, Fault::Reset);
                while if full_head {
                    !head.ends_with(b"\r\n\r\n")
                } else {
                    head.is_empty()
                } {
                    if s.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let answer: &[u8] = match fault {
                    Fault::Truncated | Fault::Reset => {
                        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789"
                    }
                    Fault::Garbage => b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
                };
                let _ = s.write_all(answer);
                if matches!(fault, Fault::Truncated | Fault::Garbage) {
                    let _ = s.shutdown(Shutdown::Write);
                    let _ = s.read(&mut [0u8; 64]);
                }
                // Reset: dropped with the rest of the request unread → RST.
            });
        }
    });
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends one request (with `Connection: close`) and reads until the proxy closes.
fn request(p: &Proxy, target: &str, extra_headers: &str) -> String {
    let mut s = TcpStream::connect(p.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra_headers}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

use common::proxy::status_of as status;

fn start() -> Proxy {
    Proxy::start_with_config(
        "limits:\n  upstream_connect_timeout_seconds: 2\n  upstream_first_byte_timeout_seconds: 1\n  upstream_idle_timeout_seconds: 1\n",
        &[],
    )
}

#[test]
fn upstream_faults_give_pages_or_cut_the_connection_in_time() {
    let p = start();

    // Refused: 502 page naming the failure, at once.
    let t = Instant::now();
    let text = request(&p, &format!("http://allowed.test:{}/x", free_port()), "");
    assert_eq!(status(&text), 502, "{text}");
    assert!(text.contains("pas pu être joint"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(5));

    // Not HTTP: 502.
    let port = faulty_site(Fault::Garbage);
    let text = request(&p, &format!("http://allowed.test:{port}/x"), "");
    assert_eq!(status(&text), 502, "{text}");

    // Cut mid-body (FIN or RST): the client sees the head, the bytes that came, and then
    // its connection closed: never 1000 bytes, never a chunked end that looks complete.
    for fault in [Fault::Truncated, Fault::Reset] {
        let port = faulty_site(fault);
        let t = Instant::now();
        let text = request(&p, &format!("http://allowed.test:{port}/x"), "");
        assert!(t.elapsed() < Duration::from_secs(8));
        if status(&text) == 200 {
            assert!(
                text.to_lowercase().contains("content-length: 1000"),
                "{text}"
            );
            let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
            assert!(body.len() < 1000, "a cut body looked complete");
        } else {
            // The reset came before the head was read: a 502 page.
            assert_eq!(status(&text), 502, "{text}");
        }
    }

    // A name that does not resolve: 502 (or 504 if this machine's DNS is slow), within
    // the 2 s connect timeout.
    let t = Instant::now();
    let text = request(&p, "http://nx-charte-test.invalid/", "");
    assert!(matches!(status(&text), 502 | 504), "{text}");
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    let rec = p.trace_find(|r| r["host"] == "nx-charte-test.invalid");
    assert!(
        matches!(
            rec["reason_code"].as_str(),
            Some("upstream-dns" | "upstream-timeout")
        ),
        "{rec}"
    );
}

#[test]
fn error_pages_reflect_no_credentials_and_escape_what_they_show() {
    let up = Upstream::start();
    let p = start();
    let secrets = "Authorization: Basic QUxJQ0VTRUNSRVQ=\r\n\
                   Proxy-Authorization: Basic UFJPWFlTRUNSRVQ=\r\n\
                   Cookie: session=COOKIESECRET\r\n";
    // Raw `<` is refused by the request parser itself (400); the encoded form passes it
    // and must come out escaped wherever a page shows the address.
    let xss = "/%3Cscript%3Ealert(1)%3C/script%3E%22%27%3E%3Cimg%20src=x%20onerror=alert(1)%3E";
    let targets = [
        // 502: refused.
        format!("http://allowed.test:{}{xss}", free_port()),
        // 504: too slow.
        format!("http://allowed.test:{}/slow?ms=3000&x={xss}", up.port()),
        // 403: blocked by the policy, block page with its unblock form.
        format!("http://hate.example{xss}"),
        // 400: bad host.
        format!("http://bad_host..example{xss}"),
    ];
    for (t, want) in targets.iter().zip([502, 504, 403, 400]) {
        let text = request(&p, t, secrets);
        assert_eq!(status(&text), want, "{t}: {text}");
        for secret in [
            "QUxJQ0VTRUNSRVQ",
            "ALICESECRET",
            "UFJPWFlTRUNSRVQ",
            "PROXYSECRET",
            "COOKIESECRET",
        ] {
            assert!(
                !text.contains(secret),
                "{t}: the page shows {secret}: {text}"
            );
        }
        assert!(!text.contains("<script>alert"), "{t}: unescaped: {text}");
        assert!(!text.contains("<img"), "{t}: unescaped: {text}");
    }
}
