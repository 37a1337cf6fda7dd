//! `categories update`: the UT1 archive fetched from a local HTTPS server (a test CA
//! given as `tls.upstream_ca`), checked, and swapped in under a running proxy, which
//! reloads onto the new lists and index together; a bad download or archive changes
//! nothing. Archives are built here with `tar` and `flate2`, UT1-shaped:
//! `blacklists/<category>/{domains,urls,usage,expressions}`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::proxy::{Proxy, Upstream, one_response, serve_on_loopback};
use common::tls::{Leaf, TestCa};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::Digest as _;

/// Files served by [`ListServer`], by path; changed between runs.
type Served = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// An HTTPS server on loopback serving [`Served`] files, `404` for others.
struct ListServer {
    addr: SocketAddr,
    files: Served,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ListServer {
    fn start(leaf: &Leaf) -> ListServer {
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain.clone(), leaf.key())
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let files: Served = Arc::default();
        let served = files.clone();
        let (addr, stop) = serve_on_loopback(move |s| {
            let acceptor = acceptor.clone();
            let files = served.clone();
            async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let body = files.lock().unwrap().get(req.uri().path()).cloned();
                    async move {
                        let res = match body {
                            Some(b) => hyper::Response::new(Full::new(Bytes::from(b))),
                            None => hyper::Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        };
                        Ok::<_, Infallible>(res)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            }
        });
        ListServer {
            addr,
            files,
            _stop: stop,
        }
    }

    fn serve(&self, path: &str, body: Vec<u8>) {
        self.files.lock().unwrap().insert(path.to_string(), body);
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }
}

/// A UT1-shaped archive: `blacklists/<category>/<file>` for each `(category, file,
/// text)`, with `global_usage` at the root.
fn archive(entries: &[(&str, &str, &str)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data).unwrap();
    };
    add(
        "blacklists/global_usage",
        b"NAME: adult\nNAME FR: Adulte\nNAME EN: Adult\n",
    );
    for (cat, file, text) in entries {
        add(&format!("blacklists/{cat}/{file}"), text.as_bytes());
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// The lists of the first archive: `adult` gains `nouveau.example`; `dating` is there.
fn first_lists() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("adult", "domains", "adult-old.example\nnouveau.example\n"),
        ("adult", "urls", "photos.example/adult\n"),
        ("adult", "usage", "black\n"),
        ("adult", "expressions", "(porn|sex)\n"),
        ("dating", "domains", "dating.example\n"),
        (
            "gambling",
            "domains",
            "casino-royal.example\npoker.example\n",
        ),
        ("games", "domains", "games.example\n"),
    ]
}

/// A folder with a policy naming `categories/charte` (curated, never touched) and
/// `categories/ut1` (a plain folder, as `categories import` leaves it), and a server
/// file trusting `ca` upstream and fetching from `server`.
fn setup(ca: &TestCa, server: &ListServer, extra_update: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |rel: &str, text: &str| {
        let p = d.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "policy.yaml",
        "version: 1\n\
         categories: [categories/charte, categories/ut1]\n\
         internal_sites: [127.0.0.0/8, \"::1\"]\n\
         rules:\n\
         \x20 - id: adulte\n\
         \x20   categories: [adult]\n\
         \x20   action: block\n\
         \x20   reason: Adulte\n\
         \x20 - id: jeux\n\
         \x20   categories: [gambling]\n\
         \x20   action: block\n\
         \x20   reason: Jeux\n\
         \x20 - id: ia\n\
         \x20   categories: [ai]\n\
         \x20   action: block\n\
         \x20   reason: IA\n\
         default: allow\n",
    );
    write("categories/charte/ai/domains", "chat.example\n");
    write("categories/ut1/adult/domains", "adult-old.example\n");
    write("categories/ut1/gambling/domains", "casino-royal.example\n");
    write("categories/ut1/dating/domains", "dating.example\n");
    ca.write_pem(&d.join("ca.pem"));
    write(
        "server.yaml",
        &format!(
            "tls:\n  upstream_ca: [ca.pem]\n\
             categories_update:\n  url: {}\n  min_categories: 3\n{extra_update}",
            server.url("/blacklists.tar.gz")
        ),
    );
    dir
}

/// Runs `categories update` in `dir`; (exit code, stdout, stderr).
fn update(dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = common::bin()
        .current_dir(dir)
        .args([
            "categories",
            "update",
            "--policy",
            "policy.yaml",
            "--config",
            "server.yaml",
        ])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file under `categories/` and the index, byte for byte, links as their targets.
fn state(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, p: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        let m = std::fs::symlink_metadata(p).unwrap();
        if m.file_type().is_symlink() {
            let t = std::fs::read_link(p).unwrap();
            out.insert(rel, t.as_os_str().as_encoded_bytes().to_vec());
        } else if m.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(root, &e.unwrap().path(), out);
            }
        } else {
            out.insert(rel, std::fs::read(p).unwrap());
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &dir.join("categories"), &mut out);
    if let Ok(b) = std::fs::read(dir.join("policy.idx")) {
        out.insert("policy.idx".into(), b);
    }
    out
}

/// Status and `X-Charte-Reason` of a GET through the proxy.
fn get(p: &Proxy, host: &str, port: u16) -> (u16, String) {
    let head = format!(
        "GET http://{host}:{port}/small HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    );
    let text = one_response(p.proxy, &head);
    let status = common::proxy::status_of(&text);
    let reason = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-charte-reason:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, reason)
}

/// Waits until `host` gets `status` through the proxy.
fn wait_status(p: &Proxy, host: &str, port: u16, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (got, reason) = get(p, host, port);
        if got == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{host}: still {got} ({reason}), not {status}:\n{}",
            p.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn health(p: &Proxy) -> serde_json::Value {
    serde_json::from_str(&p.admin_get("/health")).unwrap()
}

fn start_proxy(dir: tempfile::TempDir) -> Proxy {
    let server = std::fs::read_to_string(dir.path().join("server.yaml")).unwrap();
    Proxy::start_in_with(
        dir,
        &server,
        &[],
        &[
            "--host=nouveau.example=127.0.0.1",
            "--host=games.example=127.0.0.1",
        ],
    )
}

fn sha256_line(bytes: &[u8], name: &str) -> Vec<u8> {
    let hex: String = sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{hex}  {name}\n").into_bytes()
}

#[test]
fn update_swaps_lists_and_index_under_a_running_proxy_then_refuses_a_corrupt_archive() {
    let ca = TestCa::new("Listes test CA");
    let server = ListServer::start(&ca.leaf(&["localhost"]));
    let good = archive(&first_lists());
    server.serve("/blacklists.tar.gz", good.clone());
    server.serve(
        "/blacklists.tar.gz.sha256",
        sha256_line(&good, "blacklists.tar.gz"),
    );
    let checksum = format!(
        "  checksum_url: {}\n",
        server.url("/blacklists.tar.gz.sha256")
    );
    let dir = setup(&ca, &server, &checksum);
    let up = Upstream::start();
    let port = up.port();
    let p = start_proxy(dir);
    let d = p.dir.path().to_path_buf();

    // Before: the new domain goes through, the old ones are blocked.
    assert_eq!(get(&p, "nouveau.example", port).0, 200);
    assert_eq!(get(&p, "casino-royal.example", port).0, 403);
    let gen0 = health(&p)["generation"].as_u64().unwrap();

    let (code, out, err) = update(&d, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("updated"), "{out}");
    // `expressions` files are said not to be applied, never silently dropped.
    assert!(
        out.contains("not supported") && out.contains("expressions") && out.contains("adult"),
        "{out}"
    );
    assert!(out.contains("new categories: games"), "{out}");
    // The folder is now a link to a generation; the plain folder was kept as previous.
    let link = std::fs::read_link(d.join("categories/ut1")).unwrap();
    assert!(link.starts_with("ut1.d"), "{link:?}");
    assert!(d.join("categories/ut1/games/domains").is_file());
    assert_eq!(
        std::fs::read_to_string(d.join("categories/charte/ai/domains")).unwrap(),
        "chat.example\n",
        "the curated lists are not touched"
    );

    // The running proxy reloads onto the new lists, through the fresh index.
    wait_status(&p, "nouveau.example", port, 403);
    let h = health(&p);
    assert!(
        h["compiled_index"]
            .as_str()
            .is_some_and(|f| f.ends_with("policy.idx")),
        "the index must agree with the lists: {h}"
    );
    // Once: the two renames come within one debounce. Watched for a while (an absence
    // cannot be waited for), generation stays one more than before.
    let watch_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < watch_until {
        assert_eq!(health(&p)["generation"].as_u64(), Some(gen0 + 1));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(&p, "chat.example", port).0, 403);

    // Same archive again: nothing to do.
    let (code, out, err) = update(&d, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("already up to date"), "{out}");

    // A corrupt archive (cut in the middle): refused, everything stays as it was.
    let before = state(&d);
    let cut = good[..good.len() / 2].to_vec();
    server.serve("/blacklists.tar.gz", cut.clone());
    server.serve(
        "/blacklists.tar.gz.sha256",
        sha256_line(&cut, "blacklists.tar.gz"),
    );
    let (code, out, err) = update(&d, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("damaged") && err.contains("unchanged"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line with the reason: {err}");
    assert_eq!(state(&d), before, "lists and index untouched");
    assert_eq!(get(&p, "nouveau.example", port).0, 403);
    assert_eq!(get(&p, "casino-royal.example", port).0, 403);

    // Going back by hand (docs/categories.md): the link alone replaced by a rename, no
    // index written, is seen by the running proxy, which reloads onto the old lists.
    let kept = std::fs::read_dir(d.join("categories/ut1.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with("-before-update"))
        .expect("the plain folder is kept as the previous generation");
    let tmp = d.join("categories/ut1.back");
    std::os::unix::fs::symlink(Path::new("ut1.d").join(&kept), &tmp).unwrap();
    std::fs::rename(&tmp, d.join("categories/ut1")).unwrap();
    wait_status(&p, "nouveau.example", port, 200);
    assert_eq!(get(&p, "casino-royal.example", port).0, 403);
}

#[test]
fn a_category_dropped_upstream_is_removed_and_one_the_policy_names_refuses_the_update() {
    let ca = TestCa::new("Listes test CA");
    let server = ListServer::start(&ca.leaf(&["localhost"]));
    let dir = setup(&ca, &server, "");
    let d = dir.path();
    server.serve("/blacklists.tar.gz", archive(&first_lists()));
    let (code, _, err) = update(d, &[]);
    assert_eq!(code, 0, "{err}");
    let first = std::fs::read_link(d.join("categories/ut1")).unwrap();
    assert!(d.join("categories/ut1/dating/domains").is_file());

    // `dating` dropped upstream: gone after the update, and said.
    let second: Vec<_> = first_lists()
        .into_iter()
        .filter(|(c, _, _)| *c != "dating")
        .collect();
    server.serve("/blacklists.tar.gz", archive(&second));
    let (code, out, err) = update(d, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("categories dropped upstream, removed: dating"),
        "{out}"
    );
    assert!(!d.join("categories/ut1/dating").exists());
    let list = common::bin()
        .current_dir(d)
        .args(["categories", "list", "--policy", "policy.yaml"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(!list.contains("dating") && list.contains("games"), "{list}");
    // One previous generation is kept, older ones go.
    let second_gen = std::fs::read_link(d.join("categories/ut1")).unwrap();
    assert!(d.join("categories").join(&first).is_dir());

    // `gambling`, which the policy names, dropped upstream: refused, nothing changes.
    let third: Vec<_> = second
        .into_iter()
        .filter(|(c, _, _)| *c != "gambling")
        .chain([("chat", "domains", "chat.example\n")])
        .collect();
    server.serve("/blacklists.tar.gz", archive(&third));
    let before = state(d);
    let (code, out, err) = update(d, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("gambling") && err.contains("does not compile with the new lists"),
        "{err}"
    );
    assert_eq!(state(d), before);

    // A third good update: the first generation (two back) is removed.
    let fourth: Vec<_> = first_lists()
        .into_iter()
        .chain([("chat", "domains", "chat.example\n")])
        .collect();
    server.serve("/blacklists.tar.gz", archive(&fourth));
    let (code, _, err) = update(d, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!d.join("categories").join(&first).exists());
    assert!(d.join("categories").join(&second_gen).is_dir());
    let gens = std::fs::read_dir(d.join("categories/ut1.d"))
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(gens, 2, "the generation in force and the previous one");

    // The same archive is "already up to date" only while the index matches the lists.
    let (code, out, err) = update(d, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("already up to date"), "{out}");
    std::fs::write(d.join("policy.idx"), b"damaged").unwrap();
    let (code, out, err) = update(d, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("updated"), "{out}");
    let (code, out, err) = update(d, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("already up to date"), "{out}");
}

/// An archive with one raw entry named `name` (bytes as written, no checks), of kind
/// `kind`, after a good category.
fn archive_with_raw(name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    for (cat, text) in [
        ("adult", "a.example\n"),
        ("gambling", "b.example\n"),
        ("dating", "c.example\n"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, format!("blacklists/{cat}/domains"), text.as_bytes())
            .unwrap();
    }
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, data).unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn unsafe_entries_a_bad_checksum_an_untrusted_server_and_a_bomb_are_refused() {
    let ca = TestCa::new("Listes test CA");
    let server = ListServer::start(&ca.leaf(&["localhost"]));
    let dir = setup(&ca, &server, "  max_unpacked_bytes: 1048576\n");
    let d = dir.path();
    let before = state(d);
    let refused = |what: &str, body: Vec<u8>, expect: &str| {
        server.serve("/blacklists.tar.gz", body);
        let (code, out, err) = update(d, &[]);
        assert_eq!(code, 1, "{what}: {out}{err}");
        assert!(err.contains(expect), "{what}: {err}");
        assert_eq!(state(d), before, "{what}: lists untouched");
    };
    refused(
        "traversal",
        archive_with_raw(
            b"blacklists/../../evil",
            tar::EntryType::Regular,
            b"",
            b"x\n",
        ),
        "`..`",
    );
    assert!(!d.parent().unwrap().join("evil").exists());
    refused(
        "absolute",
        archive_with_raw(b"/tmp/evil-charte", tar::EntryType::Regular, b"", b"x\n"),
        "absolute path",
    );
    refused(
        "link out",
        archive_with_raw(
            b"blacklists/adult/urls",
            tar::EntryType::Symlink,
            b"/etc/passwd",
            b"",
        ),
        "a link out of its category folder",
    );
    refused(
        "hard link",
        archive_with_raw(
            b"blacklists/porn",
            tar::EntryType::Link,
            b"blacklists/adult",
            b"",
        ),
        "hard link",
    );
    refused(
        "device",
        archive_with_raw(b"blacklists/null", tar::EntryType::Char, b"", b""),
        "special file",
    );
    // A decompression bomb: 4 MiB of zeros, a few KiB compressed, over the 1 MiB bound.
    refused(
        "bomb",
        archive_with_raw(
            b"blacklists/adult/urls",
            tar::EntryType::Regular,
            b"",
            &vec![b'\n'; 4 << 20],
        ),
        "more than 1048576 bytes",
    );
    refused(
        "too few",
        archive(&[("adult", "domains", "a.example\n")]),
        "fewer than the 3 expected",
    );
    refused(
        "garbage list",
        archive(&[
            ("adult", "domains", &"exa mple!\n".repeat(50)),
            ("gambling", "domains", "b.example\n"),
            ("dating", "domains", "c.example\n"),
        ]),
        "50 of 50 lines are not entries",
    );

    // A checksum file that does not match.
    let good = archive(&first_lists());
    server.serve("/sum", sha256_line(b"something else", "blacklists.tar.gz"));
    server.serve("/blacklists.tar.gz", good.clone());
    let (code, _, err) = update(d, &["--checksum-url", &server.url("/sum")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("checksum") && err.contains("SHA-256"), "{err}");
    assert_eq!(state(d), before);

    // A server whose certificate no trusted CA signed.
    let other = TestCa::new("Not trusted");
    let rogue = ListServer::start(&other.leaf(&["localhost"]));
    rogue.serve("/blacklists.tar.gz", good.clone());
    let (code, _, err) = update(d, &["--url", &rogue.url("/blacklists.tar.gz")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert_eq!(state(d), before);

    // Plain HTTP is not an option.
    let (code, _, err) = update(d, &["--url", "http://localhost:1/blacklists.tar.gz"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("HTTPS only"), "{err}");

    // A missing archive: the server's answer is the reason.
    let (code, _, err) = update(d, &["--url", &server.url("/missing.tar.gz")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("404"), "{err}");
    assert_eq!(state(d), before);
}

#[test]
fn no_request_fails_while_an_update_swaps_the_lists() {
    let ca = TestCa::new("Listes test CA");
    let server = ListServer::start(&ca.leaf(&["localhost"]));
    let dir = setup(&ca, &server, "");
    let up = Upstream::start();
    let port = up.port();
    let p = Arc::new(start_proxy(dir));
    let d = p.dir.path().to_path_buf();
    // Three updates in a row, the first from the plain folder, while clients hammer the
    // proxy: each answer is the decision expected whatever the lists in force.
    let expected: &[(&str, u16)] = &[
        ("casino-royal.example", 403),
        ("chat.example", 403),
        ("allowed.test", 200),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let (p, stop) = (p.clone(), stop.clone());
            let (host, want) = expected[i];
            std::thread::spawn(move || {
                let mut n = 0u32;
                let mut wrong = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let got = get(&p, host, port);
                    if got.0 != want {
                        wrong.push(got);
                    }
                    n += 1;
                }
                (host, n, wrong)
            })
        })
        .collect();
    let gen0 = health(&p)["generation"].as_u64().unwrap();
    for (i, extra) in ["one.example", "two.example", "three.example"]
        .iter()
        .enumerate()
    {
        // Different archives (one more name each time), so that each is a real update.
        let adult = format!("adult-old.example\nnouveau.example\n{extra}\n");
        let lists: Vec<(&str, &str, &str)> = first_lists()
            .into_iter()
            .map(|(c, f, t)| match (c, f) {
                ("adult", "domains") => (c, f, adult.as_str()),
                _ => (c, f, t),
            })
            .collect();
        server.serve("/blacklists.tar.gz", archive(&lists));
        let (code, out, err) = update(&d, &[]);
        assert_eq!(code, 0, "{out}{err}");
        p.wait_generation(gen0 + 1 + i as u64);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let (host, n, wrong) = c.join().unwrap();
        assert!(n > 10, "{host}: only {n} requests");
        assert!(
            wrong.is_empty(),
            "{host}: {} wrong answers: {wrong:?}",
            wrong.len()
        );
    }
    wait_status(&p, "nouveau.example", port, 403);
}
