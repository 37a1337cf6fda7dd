//! Upload and download checks through the real proxy, against a local site that records
//! every request it receives (head and body bytes): uploads carrying two valid social
//! security numbers (NIR) or a classification marking are refused before any byte of
//! them reaches the site; one NIR, or one with a wrong key, passes; a marking split
//! across two chunks is found; a long upload refused on its way reaches the site
//! incomplete only; a compressed bomb is refused unread; an executable renamed `.pdf`
//! is refused on download, with the block page for a browser and a short text for
//! curl. The trace says what was found, never the text.

mod common;

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::proxy::{Proxy, curl, fixture_dir, serve_on_loopback};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

const POLICY: &str = include_str!("fixtures/content-policy.yaml");

/// Two valid NIRs (keys 91 and 43) and one whose key is wrong (22 would be right).
const NIR_A: &str = "1 85 05 78 006 084 91";
const NIR_B: &str = "2 93 03 75 120 005 43";
const NIR_BAD_KEY: &str = "1 76 04 99 351 234 23";

/// A request as the site received it: path, and the body bytes that arrived (all of
/// them, or those before the body failed).
#[derive(Clone, Debug)]
struct Got {
    #[allow(dead_code)] // shown when an assertion prints what the site got
    path: String,
    body: Vec<u8>,
    complete: bool,
}

/// The local site: records each request; `/setup.pdf` is a Windows program served as
/// a PDF, `/doc.pdf` a real PDF head, anything else "ok".
struct Site {
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
    /// Connections accepted, and those still open.
    conns: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Site {
    fn start() -> Site {
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let conns = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (g, c, o) = (got.clone(), conns.clone(), open.clone());
        let (addr, stop) = serve_on_loopback(move |s| {
            let g = g.clone();
            c.fetch_add(1, Ordering::SeqCst);
            o.fetch_add(1, Ordering::SeqCst);
            let o = o.clone();
            async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let g = g.clone();
                    async move { Ok::<_, Infallible>(answer(req, g).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
                o.fetch_sub(1, Ordering::SeqCst);
            }
        });
        Site {
            port: addr.port(),
            got,
            conns,
            open,
            _stop: stop,
        }
    }

    /// What the site received so far.
    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// What the site received, once every connection the proxy opened to it is closed
    /// (the proxy closes one it cut a refused upload on).
    fn got_when_closed(&self) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.got()
    }

    /// Whether the proxy never even connected to the site.
    fn untouched(&self) -> bool {
        self.conns.load(Ordering::SeqCst) == 0 && self.got_when_closed().is_empty()
    }

    fn url(&self, path: &str) -> String {
        format!("http://depot.example:{}{path}", self.port)
    }
}

async fn answer(req: Request<Incoming>, got: Arc<Mutex<Vec<Got>>>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let mut body = req.into_body();
    let mut bytes = Vec::new();
    let mut complete = true;
    while let Some(f) = body.frame().await {
        match f {
            Ok(f) => {
                if let Ok(d) = f.into_data() {
                    bytes.extend_from_slice(&d);
                }
            }
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    got.lock().unwrap().push(Got {
        path: path.clone(),
        body: bytes,
        complete,
    });
    let (ctype, data): (&str, &[u8]) = match path.as_str() {
        "/setup.pdf" => ("application/pdf", common::proxy::PE_AS_PDF),
        "/doc.pdf" => ("application/pdf", b"%PDF-1.7\n%\xe2\xe3 a document"),
        _ => ("text/plain", b"ok"),
    };
    let mut r = Response::new(Full::new(Bytes::from_static(data)));
    r.headers_mut()
        .insert("content-type", ctype.parse().unwrap());
    r
}

fn start() -> (Proxy, Site) {
    let site = Site::start();
    let dir = fixture_dir();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let p = Proxy::start_in_with(dir, "", &[], &["--host=depot.example=127.0.0.1"]);
    (p, site)
}

/// A multipart upload of `text` as a file through the proxy: status, headers and body.
fn upload(p: &Proxy, site: &Site, text: &str) -> (u16, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.csv");
    std::fs::write(&file, text).unwrap();
    let form = format!("fichier=@{};type=text/csv", file.display());
    let (code, out, err) = curl(&[
        "-x",
        &p.url(),
        "-s",
        "-i",
        "-H",
        "Accept: text/html",
        "-F",
        &form,
        "-F",
        "objet=Export du fichier",
        &site.url("/upload"),
    ]);
    assert_eq!(code, 0, "{err}");
    (status(&out), out)
}

/// The final status of an answer (after any `100 Continue`).
fn status(out: &str) -> u16 {
    out.lines()
        .filter(|l| l.starts_with("HTTP/"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .rfind(|s| *s != 100)
        .unwrap_or(0)
}

fn reason(out: &str) -> &str {
    out.lines()
        .find_map(|l| l.strip_prefix("x-charte-reason: "))
        .unwrap_or_default()
        .trim()
}

fn rows(nirs: &[&str]) -> String {
    let mut s = String::from("nom;prenom;numero_securite_sociale\n");
    for (i, n) in nirs.iter().enumerate() {
        s.push_str(&format!("Agent{i};Prenom{i};{n}\n"));
    }
    s
}

#[test]
fn an_upload_with_two_valid_nirs_is_refused_before_any_byte_reaches_the_site() {
    let (p, site) = start();
    let (st, out) = upload(&p, &site, &rows(&[NIR_A, NIR_B]));
    assert_eq!(st, 403, "{out}");
    assert_eq!(reason(&out), "block-content; rule=donnees-sensibles");
    // The page says what was found and how many times, never the numbers.
    assert!(out.contains("NIR"), "{out}");
    assert!(out.contains("« nir ») : 2"), "{out}");
    assert!(!out.contains("006 084"), "the page shows no number: {out}");
    assert!(site.untouched(), "the site received {:?}", site.got());
    let r = p.trace_for("depot.example", "POST");
    assert_eq!(r["reason_code"], "block-content", "{r}");
    assert_eq!(r["found"], "nir:2", "{r}");
    let line = r.to_string();
    assert!(
        !line.contains("006 084") && !line.contains("120 005"),
        "{line}"
    );
}

/// A site that is never inspected (§6.3: banking and health) is not read, even over
/// plain HTTP: the same upload passes whole, and nothing is found or counted.
#[test]
fn an_upload_to_a_never_inspected_site_is_not_read() {
    let site = Site::start();
    let dir = fixture_dir();
    let policy = format!("{POLICY}no_inspect:\n  domains: [depot.example]\n");
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    let p = Proxy::start_in_with(dir, "", &[], &["--host=depot.example=127.0.0.1"]);
    let text = rows(&[NIR_A, NIR_B]);
    let (st, out) = upload(&p, &site, &text);
    assert_eq!(st, 200, "{out}");
    let got = site.got();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].complete);
    assert!(String::from_utf8_lossy(&got[0].body).contains(&text));
    let r = p.trace_for("depot.example", "POST");
    assert_eq!(r["status"], 200, "{r}");
    assert!(r["found"].is_null() || r["found"] == "", "{r}");
    let m = p.admin_get("/metrics");
    assert!(
        !m.contains("charte_content_checks_total{"),
        "nothing scanned: {m}"
    );
}

#[test]
fn one_nir_or_a_wrong_key_stays_below_the_threshold_and_the_upload_goes_through() {
    let (p, site) = start();
    let text = rows(&[NIR_A, NIR_BAD_KEY]);
    let (st, out) = upload(&p, &site, &text);
    assert_eq!(st, 200, "{out}");
    let got = site.got();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].complete);
    let body = String::from_utf8_lossy(&got[0].body);
    assert!(body.contains(&text), "the site got the whole file: {body}");
    let r = p.trace_for("depot.example", "POST");
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["found"], serde_json::Value::Null, "{r}");
}

#[test]
fn a_marking_split_across_two_chunks_is_found() {
    let (p, site) = start();
    let mut s = TcpStream::connect(p.proxy).unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: depot.example:{}\r\nContent-Type: text/plain\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        site.url("/note"),
        site.port
    );
    s.write_all(head.as_bytes()).unwrap();
    let (a, b) = (
        "Note interne. DIFFUSION RESTR",
        "EINTE : ne pas transmettre.",
    );
    s.write_all(format!("{:x}\r\n{a}\r\n", a.len()).as_bytes())
        .unwrap();
    s.flush().unwrap();
    // The second chunk in a write of its own, after a pause, so that it arrives as a
    // frame of its own.
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(format!("{:x}\r\n{b}\r\n0\r\n\r\n", b.len()).as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert_eq!(status(&out), 403, "{out}");
    assert_eq!(reason(&out), "block-content; rule=donnees-sensibles");
    assert!(site.untouched(), "{:?}", site.got());
    let r = p.trace_for("depot.example", "POST");
    assert_eq!(r["found"], "diffusion-restreinte:1", "{r}");
}

#[test]
fn a_long_upload_refused_on_its_way_reaches_the_site_incomplete_only() {
    let (p, site) = start();
    // 6 MiB of ordinary lines (past the 4 MiB hold), then the two numbers.
    let mut text = "ligne ordinaire du tableau, sans rien de personnel\n".repeat(130_000);
    text.push_str(&rows(&[NIR_A, NIR_B]));
    let (st, out) = upload(&p, &site, &text);
    assert_eq!(st, 403, "{}", &out[..out.len().min(2000)]);
    assert_eq!(reason(&out), "block-content; rule=donnees-sensibles");
    for g in site.got_when_closed() {
        assert!(!g.complete, "the site never gets a complete request");
        assert!(g.body.len() < text.len(), "{} bytes", g.body.len());
    }
}

#[test]
fn a_compressed_bomb_is_refused_unread() {
    use flate2::{Compression, write::GzEncoder};
    let (p, site) = start();
    // 512 MiB of zeros, about 500 KiB compressed.
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..512 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bomb.gz");
    std::fs::write(&file, &bomb).unwrap();
    let data = format!("@{}", file.display());
    let (code, out, err) = curl(&[
        "-x",
        &p.url(),
        "-s",
        "-i",
        "-H",
        "Content-Encoding: gzip",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &data,
        &site.url("/api"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(status(&out), 403, "{out}");
    assert_eq!(reason(&out), "block-content-unchecked");
    assert!(site.untouched(), "{:?}", site.got());
    let r = p.trace_for("depot.example", "POST");
    assert_eq!(r["error"], "too-large", "{r}");
}

#[test]
fn an_executable_renamed_pdf_is_refused_on_download() {
    let (p, site) = start();
    // curl: a short text, 403.
    let (code, out, err) = curl(&["-x", &p.url(), "-s", "-i", &site.url("/setup.pdf")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(status(&out), 403, "{out}");
    assert_eq!(reason(&out), "block-file-type; rule=logiciels");
    assert!(out.contains("programme exécutable"), "{out}");
    assert!(!out.contains("PE program"), "nothing of the file: {out}");
    let r = p.trace_for("depot.example", "GET");
    assert_eq!(r["found"], "executable(magic)", "{r}");
    assert_eq!(r["reason_code"], "block-file-type", "{r}");
    // A browser: the block page, in English when asked.
    let (_, out, _) = curl(&[
        "-x",
        &p.url(),
        "-s",
        "-i",
        "-H",
        "Accept: text/html,application/xhtml+xml",
        "-H",
        "Accept-Language: en",
        &site.url("/setup.pdf"),
    ]);
    assert_eq!(status(&out), 403);
    assert!(
        out.contains("<!doctype html") || out.contains("<!DOCTYPE html"),
        "{out}"
    );
    assert!(out.contains("file type: executable program"), "{out}");
    // A real PDF passes, whole.
    let (_, out, _) = curl(&["-x", &p.url(), "-s", &site.url("/doc.pdf")]);
    assert!(out.starts_with("%PDF-1.7"), "{out}");
    assert!(out.ends_with("a document"), "{out}");
}

/// What `block-upload` counts as sending, through the proxy and in `explain`, with the
/// same answers: a POST without a body, a long query string.
#[test]
fn a_bodiless_post_and_a_long_query_send_data_to_a_block_upload_site_in_explain_and_in_the_proxy() {
    let up = common::proxy::Upstream::start();
    let dir = fixture_dir();
    let policy = dir.path().join("policy.yaml").display().to_string();
    let p = Proxy::start_in_with(dir, "", &[], &[]);
    let base = format!("http://chat.example:{}", up.port());
    let long = format!("/small?q={}", "mot+".repeat(200));
    let cases: [(&str, String, &[&str], u16); 5] = [
        ("GET", "/small?q=bonjour".into(), &[], 200),
        ("GET", long.clone(), &[], 403),
        ("POST", "/small".into(), &["-X", "POST"], 403),
        (
            "POST",
            "/small".into(),
            &["-X", "POST", "-H", "Content-Length: 0"],
            403,
        ),
        ("HEAD", "/small".into(), &["-I"], 200),
    ];
    for (method, path, args, want) in cases {
        let url = format!("{base}{path}");
        let mut a = vec!["-x".to_string(), p.url(), "-s".into(), "-i".into()];
        a.extend(args.iter().map(|s| s.to_string()));
        a.push(url.clone());
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let (code, out, err) = curl(&refs);
        assert_eq!(code, 0, "{err}");
        assert_eq!(status(&out), want, "{method} {path}: {out}");
        let e = common::explain_json(
            &["--policy", &policy, "--method", method, "--ip", "127.0.0.1"],
            &format!("http://chat.example{path}"),
        );
        let blocked = e["decision"] == "block";
        assert_eq!(blocked, want == 403, "explain {method} {path}: {e}");
    }
}

/// Inside an inspected tunnel, in HTTP/1.1 and HTTP/2: the same checks, the same
/// answers (the site's `/upload` answers the byte count it read; its `/setup.pdf` is a
/// program named and typed as a PDF).
#[test]
fn uploads_and_downloads_inside_an_inspected_tunnel_are_checked_in_h1_and_h2() {
    let dir = fixture_dir();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let up = common::tls::TrustedUpstream::start(&["allowed.test"], dir.path());
    let p = Proxy::start_in_with(dir, "", &[], &up.args());
    let org_pem = p.path("data/ca/ca.pem").display().to_string();
    let files = tempfile::tempdir().unwrap();
    let two = files.path().join("two.csv");
    std::fs::write(&two, rows(&[NIR_A, NIR_B])).unwrap();
    let one = files.path().join("one.csv");
    let one_text = rows(&[NIR_B]);
    std::fs::write(&one, &one_text).unwrap();
    let url = format!("https://allowed.test:{}/upload", up.port());
    for proto in ["--http1.1", "--http2"] {
        let curl_up = |file: &std::path::Path| {
            let form = format!("f=@{}", file.display());
            let (code, out, err) = curl(&[
                "-x",
                &p.url(),
                "--cacert",
                &org_pem,
                proto,
                "-s",
                "-i",
                "-F",
                &form,
                &url,
            ]);
            assert_eq!(code, 0, "{proto}: {err}");
            out
        };
        let out = curl_up(&two);
        assert_eq!(status(&out), 403, "{proto}: {out}");
        assert_eq!(
            reason(&out),
            "block-content; rule=donnees-sensibles",
            "{proto}"
        );
        let out = curl_up(&one);
        assert_eq!(status(&out), 200, "{proto}: {out}");
        // The site read the whole multipart body (the file and the form around it).
        let n: usize = out
            .rsplit("\r\n\r\n")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(n > one_text.len(), "{proto}: the site read {n} bytes");
        // Downloads: the program is refused, nothing of it reaches the client; a
        // page of the same site passes.
        let get = |path: &str| {
            let url = format!("https://allowed.test:{}{path}", up.port());
            let (code, out, err) = curl(&[
                "-x",
                &p.url(),
                "--cacert",
                &org_pem,
                proto,
                "-s",
                "-i",
                &url,
            ]);
            assert_eq!(code, 0, "{proto}: {err}");
            out
        };
        let out = get("/setup.pdf");
        assert_eq!(status(&out), 403, "{proto}: {out}");
        assert_eq!(reason(&out), "block-file-type; rule=logiciels", "{proto}");
        assert!(!out.contains("PE program"), "{proto}: {out}");
        if proto == "--http1.1" {
            // The first GET of the test: its trace line says what was found.
            let r = p.trace_for("allowed.test", "GET");
            assert_eq!(r["found"], "executable(magic)", "{r}");
        }
        let out = get("/small");
        assert_eq!(status(&out), 200, "{proto}: {out}");
        assert!(out.ends_with("hello"), "{proto}: {out}");
    }
}
