//! The running proxy, driven by real clients (curl, reqwest, raw sockets) against local
//! upstream servers: allowed and blocked HTTP and CONNECT, groups by source address,
//! the block page in both languages, block-upload, streaming, HTTP/1.0, WebSocket, the
//! trace of each case, PAC and help pages, metrics.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::proxy::{Proxy, Upstream, curl, http_get, tcp_echo};

fn start(extra: &[&str]) -> Proxy {
    Proxy::start_pinned(extra)
}

#[test]
fn the_site_sees_one_host_header_the_canonical_one() {
    let up = Upstream::start();
    let p = start(&[]);
    let site = format!("allowed.test:{}", up.port());
    // Already canonical and alone: kept as it is. A second Host, or one that differs from
    // the request target: replaced by the canonical one, whichever comes first.
    for (hosts, case) in [
        (vec![site.clone()], "alone"),
        (
            vec![site.clone(), "evil.test".to_string()],
            "canonical first",
        ),
        (
            vec!["evil.test".to_string(), site.clone()],
            "canonical second",
        ),
        (vec!["ALLOWED.test".to_string()], "other spelling"),
    ] {
        let mut head = format!("GET http://{site}/headers HTTP/1.1\r\n");
        for h in &hosts {
            head.push_str(&format!("Host: {h}\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        let out = common::proxy::one_response(p.proxy, &head);
        if out.starts_with("HTTP/1.1 400") {
            // Refusing an ambiguous request outright is fine too; never for the first case.
            assert_ne!(case, "alone", "{out}");
            continue;
        }
        assert!(out.starts_with("HTTP/1.1 200"), "{case}: {out}");
        let body = out.split("\r\n\r\n").nth(1).unwrap().to_ascii_lowercase();
        let seen: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("host: "))
            .collect();
        assert_eq!(seen, [site.as_str()], "{case}: {body}");
    }
}

#[test]
fn allowed_http_is_forwarded_with_via_and_without_hop_by_hop_headers() {
    let up = Upstream::start();
    let p = start(&[]);
    let url = format!("http://allowed.test:{}/headers", up.port());
    let (code, out, err) = curl(&[
        "-x",
        &p.url(),
        "--interface",
        "127.0.0.2",
        "-i",
        "-H",
        "Proxy-Connection: keep-alive",
        "-H",
        "X-Secret: s",
        "-H",
        "Connection: X-Secret",
        &url,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("via: 1.1 charte-proxy"),
        "response Via: {out}"
    );
    let body = out.split("\r\n\r\n").nth(1).unwrap().to_ascii_lowercase();
    assert!(
        body.contains("via: 1.1 charte-proxy"),
        "upstream saw Via: {body}"
    );
    assert!(!body.contains("proxy-connection"), "{body}");
    assert!(
        !body.contains("x-secret"),
        "a header named by Connection is hop-by-hop: {body}"
    );
    assert!(
        body.contains(&format!("host: allowed.test:{}", up.port())),
        "{body}"
    );
    assert!(
        body.contains("request-uri: /headers"),
        "origin-form upstream: {body}"
    );

    let t = p.trace_for("allowed.test", "GET");
    assert_eq!(t["decision"], "allow");
    assert_eq!(t["status"], 200);
    assert_eq!(t["client"], "127.0.0.2");
    assert_eq!(t["groups"], serde_json::json!(["agents"]));
    assert_eq!(t["path"], "/headers");
    assert_eq!(t["scheme"], "http");
    assert_eq!(t["port"], up.port());
    assert_eq!(t["reason_code"], "allow-default");
    assert_eq!(t["upstream"], format!("127.0.0.1:{}", up.port()));
    assert!(t["bytes_received"].as_u64().unwrap() > 0);
    assert!(t["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(
        t["time"].as_str().unwrap().ends_with('Z'),
        "RFC 3339 UTC: {t}"
    );
}

#[test]
fn two_groups_told_apart_by_source_address_and_block_page_in_both_languages() {
    let up = Upstream::start();
    let p = start(&[]);
    let url = format!("http://casino-royal.example:{}/small", up.port());
    // Agents (127.0.0.2): blocked, with the French page by default.
    let (code, out, err) = curl(&["-x", &p.url(), "--interface", "127.0.0.2", "-i", &url]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(
        out.contains("x-charte-reason: block-rule; rule=jeux-agents"),
        "{out}"
    );
    assert!(out.contains("text/html; charset=utf-8"), "{out}");
    assert!(out.contains("lang=\"fr\""), "{out}");
    assert!(out.contains("casino-royal.example"), "{out}");
    assert!(
        out.contains("Jeux d&#39;argent : usage privé (charte §6.1)")
            || out.contains("Jeux d'argent : usage privé (charte §6.1)"),
        "{out}"
    );
    assert!(out.contains("127.0.0.2"), "who was identified: {out}");
    assert!(
        out.contains(&format!("http://{}/demande?token=", p.portal)),
        "unblock button: {out}"
    );
    // Same, in English when the browser asks.
    let (_, out, _) = curl(&[
        "-x",
        &p.url(),
        "--interface",
        "127.0.0.2",
        "-H",
        "Accept-Language: en-GB,en;q=0.9,fr;q=0.5",
        &url,
    ]);
    assert!(out.contains("lang=\"en\""), "{out}");
    assert!(
        out.contains("Gambling: private use (charter §6.1)"),
        "{out}"
    );
    // Guests (127.0.0.3): the rule is for agents only.
    let (code, out, _) = curl(&["-x", &p.url(), "--interface", "127.0.0.3", &url]);
    assert_eq!((code, out.as_str()), (0, "hello"));

    let lines = p.trace(3);
    let blocked: Vec<_> = lines.iter().filter(|l| l["decision"] == "block").collect();
    assert_eq!(blocked.len(), 2, "{lines:?}");
    assert_eq!(blocked[0]["rule"], "jeux-agents");
    assert_eq!(blocked[0]["reason_code"], "block-rule");
    assert_eq!(
        blocked[0]["reason"],
        "Jeux d'argent : usage privé (charte §6.1)"
    );
    assert_eq!(blocked[0]["categories"], serde_json::json!(["gambling"]));
    assert_eq!(blocked[0]["status"], 403);
    let allowed = lines.iter().find(|l| l["decision"] == "allow").unwrap();
    assert_eq!(allowed["groups"], serde_json::json!(["invites"]));
}

#[test]
fn the_unblock_link_is_refused_when_tampered_and_not_offered_for_the_law() {
    let up = Upstream::start();
    let p = start(&[]);
    let (_, page, _) = curl(&[
        "-x",
        &p.url(),
        "--interface",
        "127.0.0.2",
        &format!("http://casino-royal.example:{}/", up.port()),
    ]);
    let start = page.find("/demande?token=").expect("a link");
    let token: String = page[start + 15..]
        .chars()
        .take_while(|c| !matches!(c, '"' | '&' | '<' | '\''))
        .collect();
    let (status, body) = http_get(p.portal, &format!("/demande?token={token}"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("casino-royal.example"), "{body}");
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (status, _) = http_get(p.portal, &format!("/demande?token={forged}"));
    assert_eq!(status, 400, "a forged token is refused");
    // A rule that is not overridable shows no button.
    let (_, page, _) = curl(&[
        "-x",
        &p.url(),
        &format!("http://hate.example:{}/", up.port()),
    ]);
    assert!(!page.contains("/demande?token="), "{page}");
}

#[test]
fn block_upload_over_plain_http_lets_reading_through() {
    let up = Upstream::start();
    let p = start(&[]);
    let base = format!("http://chat.example:{}", up.port());
    let (_, out, _) = curl(&["-x", &p.url(), &format!("{base}/small")]);
    assert_eq!(out, "hello");
    let (_, out, _) = curl(&[
        "-x",
        &p.url(),
        "-i",
        "--data-binary",
        "secret=1",
        &format!("{base}/upload"),
    ]);
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(
        out.contains("x-charte-reason: block-upload; rule=ia"),
        "{out}"
    );
    assert!(
        out.contains("Envoi de données vers une IA interdit (charte §6.5)"),
        "{out}"
    );
    let t = p.trace_for("chat.example", "POST");
    assert_eq!(t["reason_code"], "block-upload");
    assert_eq!(t["bytes_sent"], 0, "nothing was sent upstream");
}

#[test]
fn connect_is_decided_on_the_host_before_any_byte_and_counts_bytes() {
    let echo = tcp_echo("HELLO\n");
    let port = echo.port().to_string();
    // Without TLS inspection every tunnel is bytes, decided on the host alone.
    let p = start(&["--connect-port", &port, "--no-inspect"]);
    // Allowed tunnel: raw CONNECT, then bytes both ways.
    let mut s = TcpStream::connect(p.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "CONNECT allowed.test:{port} HTTP/1.1\r\nHost: allowed.test:{port}\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut got = head.split_once("\r\n\r\n").unwrap().1.to_string();
    while !got.contains("HELLO\n") {
        let n = s.read(&mut buf).unwrap();
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    s.write_all(b"ping").unwrap();
    let mut echoed = [0u8; 4];
    s.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping");
    // An open tunnel is counted in the metrics (its HTTP connection has been handed over).
    let metrics = p.admin_get("/metrics");
    assert!(
        metrics.lines().any(|l| l == "charte_tunnels_active 1"),
        "{metrics}"
    );
    drop(s);
    let t = p.trace_for("allowed.test", "CONNECT");
    assert_eq!(t["status"], 200);
    assert_eq!(t["scheme"], "tunnel");
    assert_eq!(t["path"], serde_json::Value::Null);
    assert_eq!(t["bytes_sent"], 4);
    assert_eq!(t["bytes_received"], 10);

    // Blocked tunnel: 403, reason header, nothing relayed.
    let (code, out, _) = curl(&[
        "-x",
        &p.url(),
        "-p",
        "-i",
        &format!("http://hate.example:{port}/"),
    ]);
    assert_ne!(code, 0);
    assert!(out.contains("403"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-charte-reason: block-rule; rule=haine"),
        "{out}"
    );
    // A port that is not allowed.
    let (_, out, _) = curl(&["-x", &p.url(), "-p", "-i", "http://allowed.test:25/"]);
    assert!(
        out.to_ascii_lowercase()
            .contains("x-charte-reason: block-port"),
        "{out}"
    );
    // block-upload without inspection: the whole tunnel is refused, the reason says why.
    let (_, out, _) = curl(&[
        "-x",
        &p.url(),
        "-p",
        "-i",
        &format!("http://chat.example:{port}/"),
    ]);
    assert!(
        out.to_ascii_lowercase()
            .contains("x-charte-reason: block-upload-tunnel; rule=ia"),
        "{out}"
    );
    let t = p.trace_for("chat.example", "CONNECT");
    assert_eq!(t["reason_code"], "block-upload-tunnel");
    assert!(
        t["reason"]
            .as_str()
            .unwrap()
            .contains("ne peut pas distinguer la lecture de l'envoi"),
        "{t}"
    );
    // Nothing relayed: the bytes received are those of the refusal's own short text
    // (the reason and a line feed).
    let t = p.trace_for("hate.example", "CONNECT");
    let refusal = t["reason"].as_str().unwrap().len() as u64 + 1;
    assert_eq!(
        (
            t["decision"].as_str(),
            t["status"].as_u64(),
            t["bytes_sent"].as_u64(),
            t["bytes_received"].as_u64()
        ),
        (Some("block"), Some(403), Some(0), Some(refusal))
    );
}

#[test]
fn no_inspect_sites_never_have_a_path_in_the_trace() {
    let up = Upstream::start();
    let p = start(&[]);
    let (_, out, _) = curl(&[
        "-x",
        &p.url(),
        &format!("http://mabanque.example:{}/small?account=123", up.port()),
    ]);
    assert_eq!(out, "hello");
    let t = p.trace_for("mabanque.example", "GET");
    assert_eq!(t["path"], serde_json::Value::Null, "{t}");
    assert_eq!(t["inspection"], "tunnel");
    let raw = std::fs::read_to_string(p.trace_path()).unwrap();
    assert!(!raw.contains("account=123"));
}

#[test]
fn http_1_0_clients_and_origin_form_and_pac() {
    let up = Upstream::start();
    let p = start(&["--public-proxy", "proxy.mairie.example:3128"]);
    let (code, out, err) = curl(&[
        "-x",
        &p.url(),
        "--http1.0",
        "-i",
        &format!("http://allowed.test:{}/small", up.port()),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("HTTP/1.0 200"), "{out}");
    assert!(out.ends_with("hello"), "{out}");
    // Browsing to the proxy itself: a help page, not a loop.
    let (status, body) = http_get(p.proxy, "/");
    assert_eq!(status, 200);
    assert!(body.contains("proxy.pac"), "{body}");
    // PAC file.
    let (code, out, _) = curl(&["-i", &format!("http://{}/proxy.pac", p.portal)]);
    assert_eq!(code, 0);
    assert!(out.contains("application/x-ns-proxy-autoconfig"), "{out}");
    assert!(
        out.contains("return \"PROXY proxy.mairie.example:3128\";"),
        "{out}"
    );
    let (_, wpad, _) = curl(&[&format!("http://{}/wpad.dat", p.portal)]);
    assert!(wpad.contains("FindProxyForURL"));
}

#[test]
fn websocket_upgrades_are_relayed_when_allowed_and_refused_by_block_upload() {
    let up = Upstream::start();
    let p = start(&[]);
    let hs = |host: &str| {
        let mut s = TcpStream::connect(p.proxy).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET http://{host}:{port}/ws HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            port = up.port()
        )
        .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        (s, String::from_utf8(head).unwrap())
    };
    let (mut s, head) = hs("allowed.test");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"frame").unwrap();
    let mut got = [0u8; 5];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"frame");
    let (_, head) = hs("chat.example");
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
}

#[test]
fn streamed_upload_and_download_over_100_mb_keep_memory_flat() {
    let up = Upstream::start();
    let p = start(&[]);
    let size: u64 = 120 * 1024 * 1024;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .proxy(reqwest::Proxy::http(p.url()).unwrap())
            .build()
            .unwrap();
        // Download.
        let mut res = client
            .get(format!("http://allowed.test:{}/big?n={size}", up.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let mut n = 0u64;
        while let Some(c) = res.chunk().await.unwrap() {
            n += c.len() as u64;
        }
        assert_eq!(n, size);
        // Upload, streamed from a generator.
        let chunk = bytes::Bytes::from(vec![b'y'; 256 * 1024]);
        let count = size / chunk.len() as u64;
        let stream = futures_util::stream::iter(
            (0..count).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
        );
        let res = client
            .post(format!("http://allowed.test:{}/upload", up.port()))
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.text().await.unwrap(), size.to_string());
    });
    let peak = p.peak_rss_kib();
    assert!(
        peak < 64 * 1024,
        "peak RSS {peak} KiB for 2 × 120 MiB streamed"
    );
    let up_t = p.trace_for("allowed.test", "POST");
    assert_eq!(up_t["bytes_sent"].as_u64(), Some(size));
    let down_t = p.trace_for("allowed.test", "GET");
    assert_eq!(down_t["bytes_received"].as_u64(), Some(size));
}

#[test]
fn metrics_parse_and_count_decisions() {
    let up = Upstream::start();
    let p = start(&[]);
    let _ = curl(&[
        "-x",
        &p.url(),
        "--interface",
        "127.0.0.2",
        &format!("http://casino-royal.example:{}/", up.port()),
    ]);
    let _ = curl(&[
        "-x",
        &p.url(),
        &format!("http://allowed.test:{}/small", up.port()),
    ]);
    p.trace(2);
    let text = p.admin_get("/metrics");
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            assert!(
                line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                "{line}"
            );
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.insert(name.to_string(), v);
    }
    assert_eq!(
        samples.get(r#"charte_requests_total{category="gambling",decision="block",group="agents",kind="http"}"#),
        Some(&1.0),
        "{text}"
    );
    assert_eq!(
        samples.get(r#"charte_blocks_total{reason="block-rule"}"#),
        Some(&1.0)
    );
    assert_eq!(samples.get("charte_policy_generation"), Some(&1.0));
    assert_eq!(samples.get("charte_policy_stale"), Some(&0.0));
    assert!(
        samples
            .get(r#"charte_index_entries{kind="domains"}"#)
            .copied()
            .unwrap_or(0.0)
            >= 5.0
    );
    assert!(samples.contains_key("charte_trace_dropped_total"));
    assert!(!text.contains("allowed.test"), "no host in labels");
}
