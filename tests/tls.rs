//! TLS inspection through the running proxy, with local HTTPS upstreams signed by a test
//! CA that the proxy is told to trust (`--upstream-ca`) and the organisation CA the proxy
//! creates in its data folder on first start. Clients: curl, reqwest, rustls over a raw
//! CONNECT, and openssl for an upstream that only speaks TLS 1.1.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::proxy::{Proxy, curl};
use common::tls::{HttpsUpstream, TestCa, h1_exchange, self_signed, tls_through};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Names the upstream's good certificate covers (all pinned to loopback by the harness).
const SITE_NAMES: &[&str] = &[
    "allowed.test",
    "chat.example",
    "mabanque.example",
    "hate.example",
    "casino-royal.example",
];

struct Setup {
    p: Proxy,
    _up_ca: TestCa,
    up: HttpsUpstream,
    /// The organisation CA the proxy created (PEM path).
    org_pem: String,
    /// The upstream test root (PEM path).
    up_pem: String,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn start(extra: &[&str]) -> Setup {
        let up_ca = TestCa::new("Test upstream root");
        let up = HttpsUpstream::start(&up_ca.leaf(SITE_NAMES));
        let dir = tempfile::tempdir().unwrap();
        let up_pem = dir.path().join("upstream-root.pem");
        up_ca.write_pem(&up_pem);
        let up_pem = up_pem.display().to_string();
        let port = up.port().to_string();
        let mut args = vec!["--upstream-ca", &up_pem, "--connect-port", &port];
        args.extend_from_slice(extra);
        let p = Proxy::start_pinned(&args);
        let org_pem = p.path("data/ca/ca.pem").display().to_string();
        Setup {
            p,
            _up_ca: up_ca,
            up,
            org_pem,
            up_pem,
            _dir: dir,
        }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.up.port())
    }

    fn authority(&self, host: &str) -> String {
        format!("{host}:{}", self.up.port())
    }

    /// A TLS session (HTTP/1.1) to `host` through a CONNECT tunnel, trusting the
    /// organisation CA only.
    fn bump_h1(
        &self,
        host: &str,
    ) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>, String> {
        tls_through(
            self.p.proxy,
            &self.authority(host),
            host,
            &[self.org_der()],
            &[b"http/1.1"],
        )
    }

    fn org_der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(&self.org_pem).unwrap()
    }

    /// curl through the proxy, trusting the organisation CA only.
    fn curl(&self, args: &[&str]) -> (i32, String, String) {
        let proxy = self.p.url();
        let mut a = vec!["-x", &proxy, "--cacert", &self.org_pem];
        a.extend_from_slice(args);
        curl(&a)
    }
}

/// The subject and issuer of a DER certificate, and its DNS names.
fn cert_names(der: &[u8]) -> (String, String, Vec<String>) {
    let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
    let sans = c
        .subject_alternative_name()
        .unwrap()
        .map(|s| {
            s.value
                .general_names
                .iter()
                .map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .unwrap_or_default();
    (c.subject().to_string(), c.issuer().to_string(), sans)
}

#[test]
fn bumped_hosts_carry_the_organisation_ca_and_no_inspect_hosts_their_own_certificate() {
    let s = Setup::start(&[]);
    let org_subject = cert_names(&s.org_der()).0;

    // curl trusting only the organisation CA reads a bumped site.
    let (code, out, err) = s.curl(&[&s.url("allowed.test", "/small")]);
    assert_eq!((code, out.as_str()), (0, "hello"), "{err}");
    // The same site is not trusted with the site's own root: the proxy answered.
    let (code, _, err) = curl(&[
        "-x",
        &s.p.url(),
        "--cacert",
        &s.up_pem,
        &s.url("allowed.test", "/small"),
    ]);
    assert_eq!(code, 60, "expected a certificate error: {err}");

    // A bank is never inspected: the site's own certificate comes through, and the
    // organisation CA does not vouch for it.
    let (code, out, err) = curl(&[
        "-x",
        &s.p.url(),
        "--cacert",
        &s.up_pem,
        &s.url("mabanque.example", "/small?account=42"),
    ]);
    assert_eq!((code, out.as_str()), (0, "hello"), "{err}");
    let (code, _, _) = s.curl(&[&s.url("mabanque.example", "/small")]);
    assert_eq!(code, 60);

    // An HTTP client crate: reqwest trusting the organisation CA only reads the site,
    // and trusting the site's own root only does not.
    let reqwest_with = |pem: &str| {
        reqwest::blocking::Client::builder()
            .proxy(reqwest::Proxy::all(s.p.url()).unwrap())
            .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(pem).unwrap()).unwrap()])
            .build()
            .unwrap()
    };
    let res = reqwest_with(&s.org_pem)
        .get(s.url("allowed.test", "/small"))
        .send()
        .unwrap();
    assert_eq!(res.text().unwrap(), "hello");
    let err = reqwest_with(&s.up_pem)
        .get(s.url("allowed.test", "/small"))
        .send()
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    // …and on a no_inspect host it sees the site's own certificate.
    let res = reqwest_with(&s.up_pem)
        .get(s.url("mabanque.example", "/small"))
        .send()
        .unwrap();
    assert_eq!(res.text().unwrap(), "hello");

    // A raw rustls client sees the same, and the chain ends at the organisation CA.
    let mut tls = s.bump_h1("allowed.test").unwrap();
    let chain = tls.conn.peer_certificates().unwrap().to_vec();
    assert_eq!(chain.len(), 2);
    let (_, issuer, sans) = cert_names(&chain[0]);
    assert_eq!(issuer, org_subject);
    assert_eq!(
        sans,
        vec!["allowed.test".to_string()],
        "SAN is the name only"
    );
    assert_eq!(chain[1].as_ref(), s.org_der().as_ref());
    let out = h1_exchange(
        &mut tls,
        "GET /small HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");

    // The trace: the inspected request has its path, the bank's tunnel has none.
    let t = s.p.trace_for("allowed.test", "GET");
    assert_eq!(
        (t["scheme"].as_str(), t["path"].as_str()),
        (Some("https"), Some("/small"))
    );
    assert_eq!(t["inspection"], "inspect");
    let t = s.p.trace_for("mabanque.example", "CONNECT");
    assert_eq!(t["inspection"], "tunnel");
    assert_eq!(t["path"], serde_json::Value::Null);
    assert!(t["bytes_received"].as_u64().unwrap() > 0, "{t}");
    let all = std::fs::read_to_string(s.p.trace_path()).unwrap();
    assert!(
        !all.contains("account=42"),
        "a no_inspect path leaked: {all}"
    );
    let tunnel = |v: &serde_json::Value| v["host"] == "allowed.test" && v["method"] == "CONNECT";
    s.p.trace_find(|v| {
        tunnel(v) && v["decision"] == "bump" && v["bytes_received"].as_u64() > Some(0)
    });
    // The client that did not trust the organisation CA is named as such.
    let refused =
        s.p.trace_find(|v| tunnel(v) && v["reason_code"] == "client-untrusted-ca");
    assert!(
        refused["error"].as_str().unwrap().contains("ca show"),
        "{refused}"
    );
}

#[test]
fn http2_and_http1_both_work_inside_a_bump() {
    let s = Setup::start(&[]);
    for (flag, want) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let (code, out, err) = s.curl(&[
            flag,
            "-w",
            "\n%{http_version}",
            &s.url("allowed.test", "/small"),
        ]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, format!("hello\n{want}"), "{flag}");
    }
    // The upstream is reached over HTTP/2 when it offers it (ALPN), whatever the client.
    let (_, out, _) = s.curl(&["--http1.1", &s.url("allowed.test", "/version")]);
    assert_eq!(out, "HTTP/2.0");
    let t = s.p.trace_for("allowed.test", "GET");
    assert_eq!(t["status"], 200);
}

/// A proxy trusting `up_pem` for upstreams, allowing CONNECT to `ports`, with `hosts`
/// pinned to loopback; and the path of the organisation CA it created.
fn proxy_for(up_pem: &str, ports: &[u16], hosts: &[&str]) -> (Proxy, String) {
    let mut args = vec!["--upstream-ca".to_string(), up_pem.to_string()];
    for p in ports {
        args.push("--connect-port".into());
        args.push(p.to_string());
    }
    for h in hosts {
        args.push(format!("--host={h}=127.0.0.1"));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = Proxy::start_pinned(&refs);
    let org = p.path("data/ca/ca.pem").display().to_string();
    (p, org)
}

#[test]
fn upstreams_with_bad_certificates_are_refused_with_a_page_naming_the_problem() {
    let up_ca = TestCa::new("Test upstream root");
    let dir = tempfile::tempdir().unwrap();
    let up_pem = dir.path().join("root.pem");
    up_ca.write_pem(&up_pem);
    let rogue = TestCa::new("Rogue root");
    let cases = [
        (
            "expired.test",
            up_ca.leaf_valid(&["expired.test"], -60, -1),
            "upstream-cert-expired",
            "a expiré",
        ),
        (
            "wrongname.test",
            up_ca.leaf(&["other.test"]),
            "upstream-cert-name",
            "autre nom",
        ),
        (
            "selfsigned.test",
            self_signed(&["selfsigned.test"]),
            "upstream-cert-self-signed",
            "auto-signé",
        ),
        (
            "unknownca.test",
            rogue.leaf(&["unknownca.test"]),
            "upstream-cert-unknown-ca",
            "autorité de certification inconnue",
        ),
    ];
    let ups: Vec<HttpsUpstream> = cases.iter().map(|c| HttpsUpstream::start(&c.1)).collect();
    let ports: Vec<u16> = ups.iter().map(HttpsUpstream::port).collect();
    let hosts: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let (p, org) = proxy_for(&up_pem.display().to_string(), &ports, &hosts);
    for ((host, _, code_want, text), up) in cases.iter().zip(&ups) {
        let url = format!("https://{host}:{}/small", up.port());
        let (code, out, err) = curl(&["-x", &p.url(), "--cacert", &org, "-i", &url]);
        assert_eq!(code, 0, "{host}: {err}");
        assert!(out.contains(" 502 "), "{host}: {out}");
        assert!(
            out.contains(&format!("x-charte-error: {code_want}")),
            "{host}: {out}"
        );
        assert!(
            out.contains(text),
            "{host}: the page names the problem: {out}"
        );
        assert!(
            !out.contains("hello"),
            "{host}: nothing from the site: {out}"
        );
        let t = p.trace_for(host, "GET");
        assert_eq!(t["reason_code"], *code_want, "{t}");
        assert_eq!(t["status"], 502);
        assert!(t["error"].as_str().unwrap().contains(code_want), "{t}");
        // English when the browser asks.
        let (_, out, _) = curl(&[
            "-x",
            &p.url(),
            "--cacert",
            &org,
            "-H",
            "Accept-Language: en",
            &url,
        ]);
        assert!(
            out.contains("certificate") && out.contains("lang=\"en\""),
            "{out}"
        );
    }
}

/// An upstream that offers only TLS 1.0 and 1.1 (openssl s_server), refused as obsolete.
#[test]
fn an_upstream_offering_only_tls_1_1_is_refused() {
    let up_ca = TestCa::new("Test upstream root");
    let dir = tempfile::tempdir().unwrap();
    let up_pem = dir.path().join("root.pem");
    up_ca.write_pem(&up_pem);
    let leaf = up_ca.leaf(&["oldtls.test"]);
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, pem_block("CERTIFICATE", leaf.chain[0].as_ref())).unwrap();
    std::fs::write(&key, pem_block("PRIVATE KEY", &leaf.key_der)).unwrap();
    // Port 0, and the port read back from openssl's "ACCEPT" line.
    let mut child = Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            "127.0.0.1:0",
            "-tls1_1",
            "-www",
            "-cert",
        ])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .args(["-cipher", "DEFAULT:@SECLEVEL=0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl is installed (tests/run.sh installs it)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = loop {
        let l = lines.next().expect("openssl prints ACCEPT").unwrap();
        if let Some(a) = l.strip_prefix("ACCEPT ") {
            break a.rsplit(':').next().unwrap().trim().parse().unwrap();
        }
    };
    let (p, org) = proxy_for(&up_pem.display().to_string(), &[port], &["oldtls.test"]);
    let (code, out, err) = curl(&[
        "-x",
        &p.url(),
        "--cacert",
        &org,
        "-i",
        &format!("https://oldtls.test:{port}/"),
    ]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(" 502 "), "{out}");
    assert!(
        out.contains("x-charte-error: upstream-tls-version"),
        "{out}"
    );
    assert!(out.contains("version obsolète de TLS"), "{out}");
    let t = p.trace_for("oldtls.test", "GET");
    assert_eq!(t["reason_code"], "upstream-tls-version");
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

#[test]
fn an_sni_other_than_the_connect_host_and_a_host_other_than_the_sni_are_refused() {
    let s = Setup::start(&[]);
    // CONNECT allowed.test, then TLS naming hate.example: refused, nothing served.
    let r = tls_through(
        s.p.proxy,
        &s.authority("allowed.test"),
        "hate.example",
        &[s.org_der()],
        &[b"http/1.1"],
    );
    assert!(r.is_err(), "the handshake must fail");
    let t = s.p.trace_for("allowed.test", "CONNECT");
    assert_eq!(t["decision"], "block");
    assert_eq!(t["reason_code"], "sni-mismatch");
    assert!(
        t["reason"]
            .as_str()
            .unwrap()
            .contains("Le nom annoncé au proxy"),
        "{t}"
    );
    assert!(t["error"].as_str().unwrap().contains("hate.example"), "{t}");

    // No SNI at all (a client naming an IP address sends none): the CONNECT host is
    // used, here an address, and the leaf is for that address.
    let tls = tls_through(
        s.p.proxy,
        "127.0.0.1:443",
        "127.0.0.1",
        &[s.org_der()],
        &[b"http/1.1"],
    );
    // Port 443 is not allowed by this proxy: refused before any TLS.
    assert!(tls.unwrap_err().contains("403"));
    let ip = format!("127.0.0.1:{}", s.up.port());
    let tls = tls_through(s.p.proxy, &ip, "127.0.0.1", &[s.org_der()], &[b"http/1.1"]).unwrap();
    let leaf = tls.conn.peer_certificates().unwrap()[0].clone();
    let (_, c) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let san = c
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .clone();
    assert_eq!(
        san,
        vec![x509_parser::extensions::GeneralName::IPAddress(&[
            127, 0, 0, 1
        ])]
    );

    // Inside a tunnel to allowed.test, a request for hate.example: 421.
    let mut tls = s.bump_h1("allowed.test").unwrap();
    let out = h1_exchange(
        &mut tls,
        "GET /small HTTP/1.1\r\nHost: hate.example\r\nConnection: close\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 421"), "{out}");
    assert!(out.contains("x-charte-reason: host-mismatch"), "{out}");
    assert!(!out.contains("hello"), "{out}");
    // The same over HTTP/2 (curl sends a Host header as :authority).
    let (code, out, err) = s.curl(&[
        "--http2",
        "-i",
        "-H",
        &format!("Host: {}", s.authority("hate.example")),
        &s.url("allowed.test", "/small"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("HTTP/2 421"), "{out}");
    let t = s.p.trace_for("allowed.test", "GET");
    assert_eq!(t["reason_code"], "host-mismatch");
    // A tunnel that must be inspected but carries no TLS is refused too.
    let mut raw = std::net::TcpStream::connect(s.p.proxy).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    use std::io::{Read, Write};
    write!(
        raw,
        "CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\nGET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
        s.authority("casino-royal.example")
    )
    .unwrap();
    let mut got = String::new();
    let _ = raw.read_to_string(&mut got);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(!got.contains("hello"), "{got}");
    let t = s.p.trace_for("casino-royal.example", "CONNECT");
    assert_eq!(t["reason_code"], "tls-required");
}

#[test]
fn block_upload_over_https_lets_reading_pass_and_refuses_sending_in_h1_and_h2() {
    let s = Setup::start(&[]);
    let chat = s.url("chat.example", "/small");
    let upload = s.url("chat.example", "/upload");
    for proto in ["--http1.1", "--http2"] {
        let (code, out, err) = s.curl(&[proto, &chat]);
        assert_eq!((code, out.as_str()), (0, "hello"), "{proto}: {err}");
        // A POST with a body: 403, block page, reason.
        let (code, out, err) = s.curl(&[proto, "-i", "-d", "secret=1", &upload]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(" 403"), "{proto}: {out}");
        assert!(
            out.contains("x-charte-reason: block-upload; rule=ia"),
            "{proto}: {out}"
        );
        assert!(
            out.contains("Envoi de données vers une IA interdit"),
            "{proto}: {out}"
        );
        // Multipart form.
        let (_, out, _) = s.curl(&[proto, "-i", "-F", "file=@Cargo.toml", &upload]);
        assert!(out.contains(" 403"), "{proto} multipart: {out}");
        // Streamed body of unknown length (chunked in HTTP/1.1, plain DATA in HTTP/2).
        let (_, out, _) = s.curl(&[
            proto,
            "-i",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "@Cargo.toml",
            &upload,
        ]);
        assert!(out.contains(" 403"), "{proto} streamed: {out}");
    }
    // A WebSocket upgrade is sending too.
    let mut tls = s.bump_h1("chat.example").unwrap();
    let out = h1_exchange(
        &mut tls,
        "GET /ws HTTP/1.1\r\nHost: chat.example\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    // The trace of the refused POST holds the path and the reason.
    let t = s.p.trace_for("chat.example", "POST");
    assert_eq!(t["reason_code"], "block-upload");
    assert_eq!(t["path"], "/upload");
    assert_eq!(t["decision"], "block");
}

#[test]
fn a_blocked_host_is_bumped_to_show_the_block_page_with_its_unblock_button() {
    let s = Setup::start(&[]);
    // Agents (127.0.0.2) may not gamble: the block page, with a button.
    let (code, out, err) = s.curl(&[
        "--interface",
        "127.0.0.2",
        "-i",
        &s.url("casino-royal.example", "/small"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(" 403"), "{out}");
    assert!(
        out.contains("x-charte-reason: block-rule; rule=jeux-agents"),
        "{out}"
    );
    assert!(out.contains("/demande?token="), "the unblock button: {out}");
    assert!(out.contains("https://casino-royal.example"), "{out}");
    // The law is not negotiable: page without a button.
    let (_, out, _) = s.curl(&["-i", &s.url("hate.example", "/small")]);
    assert!(out.contains(" 403"), "{out}");
    assert!(!out.contains("/demande?token="), "{out}");
    // Without inspection the same host is refused at CONNECT (no page possible).
    let t = s.p.trace_for("casino-royal.example", "GET");
    assert_eq!(
        (t["decision"].as_str(), t["scheme"].as_str()),
        (Some("block"), Some("https"))
    );
}

/// A client that opens a new tunnel to a site it visited resumes its TLS session there
/// (no new certificate, no new signature), as browsers do many times a page; the
/// request inside works the same.
#[test]
fn a_new_tunnel_to_the_same_site_resumes_the_tls_session() {
    use rustls::HandshakeKind;
    let s = Setup::start(&[]);
    let cfg = common::tls::client_config(&[s.org_der()], &[b"http/1.1"]);
    let get = format!(
        "GET /small HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        s.authority("allowed.test")
    );
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let mut t = common::tls::tls_through_with(
            s.p.proxy,
            &s.authority("allowed.test"),
            "allowed.test",
            cfg.clone(),
        )
        .unwrap();
        // Reading the whole answer also reads the session tickets sent after the
        // handshake, for the next connection.
        let out = h1_exchange(&mut t, &get);
        assert!(out.ends_with("hello"), "{out}");
        kinds.push(t.conn.handshake_kind());
    }
    assert_eq!(
        kinds,
        [
            Some(HandshakeKind::Full),
            Some(HandshakeKind::Resumed),
            Some(HandshakeKind::Resumed)
        ]
    );
    // Another site: its own certificate, a full handshake.
    let mut t =
        common::tls::tls_through_with(s.p.proxy, &s.authority("chat.example"), "chat.example", cfg)
            .unwrap();
    assert_eq!(t.conn.handshake_kind(), Some(HandshakeKind::Full));
    let names = cert_names(t.conn.peer_certificates().unwrap()[0].as_ref()).2;
    assert_eq!(names, ["chat.example"]);
    let _ = h1_exchange(&mut t, &get.replace("allowed.test", "chat.example"));
}

#[test]
fn concurrent_tunnels_to_twenty_hosts_mint_twenty_leaves() {
    let s = Setup::start(&["--connect-port", "443"]);
    let org = s.org_der();
    let proxy = s.p.proxy;
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let org = org.clone();
            std::thread::spawn(move || {
                let host = format!("h{}.test", i % 20);
                tls_through(proxy, &format!("{host}:443"), &host, &[org], &[b"h2"])
                    .map(|t| t.conn.peer_certificates().unwrap()[0].clone())
            })
        })
        .collect();
    let mut leaves = std::collections::HashMap::new();
    for (i, t) in threads.into_iter().enumerate() {
        let leaf = t
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("tunnel {i}: {e}"));
        leaves.entry(i % 20).or_insert_with(Vec::new).push(leaf);
    }
    for (host, certs) in &leaves {
        assert!(
            certs.windows(2).all(|w| w[0] == w[1]),
            "h{host}: one leaf shared"
        );
    }
    let m = s.p.admin_get("/metrics");
    assert!(m.contains("charte_tls_leaves_minted_total 20\n"), "{m}");
    assert!(m.contains("charte_tls_leaf_cache_entries 20\n"), "{m}");
}

#[test]
fn serve_refuses_a_ca_key_readable_by_others() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = common::bin()
        .args(["ca", "init", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = data.join("ca/ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = common::bin()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--portal-listen",
            "127.0.0.1:0",
        ])
        .args(["--admin-listen", "127.0.0.1:0", "--no-watch", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("chmod 600"), "says how to fix it: {err}");
    // An existing CA (here another one made by `ca init`) named with --ca-cert/--ca-key.
    let other = dir.path().join("other");
    let out = common::bin()
        .args([
            "ca",
            "init",
            "--name",
            "Mairie de Test — sous-CA",
            "--data-dir",
        ])
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success());
    let up_ca = TestCa::new("Test upstream root");
    let up = HttpsUpstream::start(&up_ca.leaf(SITE_NAMES));
    let up_pem = dir.path().join("up.pem");
    up_ca.write_pem(&up_pem);
    let (cert, key) = (other.join("ca/ca.pem"), other.join("ca/ca.key"));
    let p = Proxy::start_pinned(&[
        "--ca-cert",
        cert.to_str().unwrap(),
        "--ca-key",
        key.to_str().unwrap(),
        "--upstream-ca",
        up_pem.to_str().unwrap(),
        "--connect-port",
        &up.port().to_string(),
    ]);
    let (code, out, err) = curl(&[
        "-x",
        &p.url(),
        "--cacert",
        cert.to_str().unwrap(),
        &format!("https://allowed.test:{}/small", up.port()),
    ]);
    assert_eq!((code, out.as_str()), (0, "hello"), "{err}");
    assert!(
        !p.path("data/ca/ca.pem").exists(),
        "no CA created when one is named"
    );
    // With --no-inspect the CA is not needed and the proxy starts.
    let mut p = Command::new(env!("CARGO_BIN_EXE_charte-proxy"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--portal-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--admin-listen",
            "127.0.0.1:0",
            "--no-watch",
            "--no-inspect",
            "--data-dir",
        ])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(p.stdout.take().unwrap()).lines();
    let started = lines.any(|l| l.unwrap().starts_with("listening "));
    let _ = p.kill();
    let _ = p.wait();
    assert!(started);
}

/// A CONNECT to `authority`, answered 200, and the bytes of a ClientHello naming `sni`
/// (not sent yet).
fn connect_then_hello(p: &Proxy, authority: &str, sni: &str) -> (std::net::TcpStream, Vec<u8>) {
    let s = common::wire::connect(p.proxy, authority)
        .unwrap_or_else(|head| panic!("the CONNECT was refused: {head}"));
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    (s, hello)
}

#[test]
fn a_tunnel_not_inspected_is_dialled_only_once_its_client_hello_names_the_connect_host() {
    use std::io::Write;
    let trap = common::proxy::Trap::new();
    let port = trap.port().to_string();
    // mabanque.example is a bank: never inspected, relayed as bytes once its TLS name is
    // checked.
    let p = Proxy::start_pinned(&["--connect-port", &port]);
    let authority = format!("mabanque.example:{port}");
    let (mut s, hello) = connect_then_hello(&p, &authority, "allowed.test");
    s.write_all(&hello).unwrap();
    let t = p.trace_find(|r| r["host"] == "mabanque.example" && r["method"] == "CONNECT");
    assert_eq!(t["reason_code"], "sni-mismatch", "{t}");
    assert_eq!(t["inspection"], "tunnel", "{t}");
    // The kernel completes a connection to a listening socket by itself: had the proxy
    // dialled before refusing, it would be waiting here.
    assert!(!trap.connected(), "the site was dialled before the refusal");
    assert!(t["upstream"].is_null(), "no site address: {t}");

    // The right name: the site is dialled once the hello is read.
    let (mut s, hello) = connect_then_hello(&p, &authority, "mabanque.example");
    s.write_all(&hello).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !trap.connected() {
        assert!(
            std::time::Instant::now() < deadline,
            "the site was never dialled"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // Without inspection nothing is read before the site answers (a server may speak
    // first): the site is dialled before the CONNECT's 200, as before.
    let p = Proxy::start_pinned(&["--connect-port", &port, "--no-inspect"]);
    let (_s, _hello) = connect_then_hello(&p, &authority, "allowed.test");
    assert!(
        trap.connected(),
        "--no-inspect dials before answering the CONNECT"
    );
}
