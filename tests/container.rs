//! What the container image relies on, tested as processes (no container engine here):
//! a listener on a wildcard address needs the address workstations use, or the proxy
//! refuses to start before creating anything; given it, the PAC file and the pages name
//! it; the Dockerfile's command starts with the environment variables it documents and
//! refuses clearly without them; its health check answers on the admin listener.

mod common;

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::proxy::{Proxy, Upstream, curl, fixture_dir, http_get};

const PUBLIC_PROXY: &str = "proxy.mairie.example:3128";
const PORTAL_URL: &str = "http://portail.mairie.example:3129";

/// The binary, started in `dir` without any of the environment variables it reads.
fn serve_in(dir: &Path) -> Command {
    let mut c = common::bin();
    c.current_dir(dir)
        .env_remove("CHARTE_CONFIG")
        .env_remove("CHARTE_USERS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Waits for `child` to exit (a refusal comes at once; 20 s is a hung start).
fn exit_of(mut child: Child) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return (
                out.status.code().expect("exited normally"),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after 20 s, where it should have refused to start:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The files under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_wildcard_proxy_listener_without_public_proxy_refuses_to_start_and_creates_nothing() {
    let dir = fixture_dir();
    let before = files(dir.path());
    let child = serve_in(dir.path())
        .args(["serve", "--policy", "policy.yaml", "--data-dir", "data"])
        .args(["--listen", "0.0.0.0:0", "--portal-listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0"])
        .spawn()
        .unwrap();
    let (code, stderr) = exit_of(child);
    assert_eq!(code, 2, "{stderr}");
    for said in [
        "public-proxy-missing",
        "0.0.0.0:0",
        "`--listen`",
        "public_proxy",
        "--public-proxy",
        "CHARTE_PUBLIC_PROXY",
    ] {
        assert!(stderr.contains(said), "{said:?} in:\n{stderr}");
    }
    assert!(
        !stderr.contains("portal_url"),
        "the portal is on loopback:\n{stderr}"
    );
    assert!(!dir.path().join("data").exists(), "{stderr}");
    assert_eq!(files(dir.path()), before, "nothing created");
}

#[test]
fn wildcard_listeners_in_the_server_file_are_refused_together_with_their_lines() {
    let dir = fixture_dir();
    std::fs::write(
        dir.path().join("server.yaml"),
        "policy: policy.yaml\ndata_dir: data\nlisten:\n  proxy: 0.0.0.0:0\n  portal: '[::]:0'\n  admin: 127.0.0.1:0\n",
    )
    .unwrap();
    let child = serve_in(dir.path())
        .args(["serve", "--config", "server.yaml"])
        .spawn()
        .unwrap();
    let (code, stderr) = exit_of(child);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("server.yaml:4:") && stderr.contains("public_proxy"),
        "{stderr}"
    );
    assert!(
        stderr.contains("server.yaml:5:") && stderr.contains("portal_url"),
        "{stderr}"
    );
    assert!(stderr.contains("--portal-url"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "{stderr}");
}

#[test]
fn with_the_addresses_given_the_pac_file_and_the_pages_name_them_not_the_wildcard() {
    let up = Upstream::start();
    let env = [
        ("CHARTE_PUBLIC_PROXY", OsString::from(PUBLIC_PROXY)),
        ("CHARTE_PORTAL_URL", OsString::from(PORTAL_URL)),
    ];
    let p = Proxy::start_pinned_env(
        &["--listen", "0.0.0.0:0", "--portal-listen", "0.0.0.0:0"],
        &env,
    );
    assert!(p.proxy.ip().is_unspecified(), "{}", p.proxy);
    let loopback = |a: SocketAddr| SocketAddr::from((Ipv4Addr::LOCALHOST, a.port()));

    let (status, pac) = http_get(loopback(p.portal), "/proxy.pac");
    assert_eq!(status, 200, "{pac}");
    assert!(pac.contains(&format!("\"PROXY {PUBLIC_PROXY}\"")), "{pac}");
    assert!(!pac.contains("0.0.0.0"), "{pac}");

    let (status, help) = http_get(loopback(p.proxy), "/");
    assert_eq!(status, 200, "{help}");
    assert!(help.contains(PUBLIC_PROXY), "{help}");
    assert!(help.contains(&format!("{PORTAL_URL}/proxy.pac")), "{help}");
    assert!(!help.contains("0.0.0.0"), "{help}");

    // The block page's links go to the portal's public URL (gambling: blocked for the
    // agents' network, with an unblock button).
    let proxy = format!("http://{}", loopback(p.proxy));
    let url = format!("http://casino-royal.example:{}/small", up.port());
    let (code, page, err) = curl(&["-x", &proxy, "--interface", "127.0.0.2", "-i", &url]);
    assert_eq!(code, 0, "{err}");
    assert!(page.starts_with("HTTP/1.1 403"), "{page}");
    assert!(page.contains("portail.mairie.example:3129"), "{page}");
    assert!(!page.contains("0.0.0.0"), "{page}");
}

/// The JSON array of the Dockerfile instruction `instruction` (`CMD`, `HEALTHCHECK`…),
/// continuation lines joined; for `HEALTHCHECK`, that of its `CMD`.
fn dockerfile_array(instruction: &str) -> Vec<String> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let line = joined
        .lines()
        .find(|l| l.starts_with(&format!("{instruction} ")))
        .unwrap_or_else(|| panic!("no {instruction} in the Dockerfile"));
    let json = &line[line.find('[').expect("exec form")..];
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// The image's command with `port → 0` for each of its fixed ports.
fn image_command() -> Vec<String> {
    let cmd = dockerfile_array("CMD");
    assert_eq!(cmd[0], "serve", "{cmd:?}");
    cmd.into_iter()
        .map(|a| {
            ["3128", "3129", "3130"]
                .iter()
                .fold(a, |a, port| a.replace(&format!(":{port}"), ":0"))
        })
        .collect()
}

#[test]
fn the_images_command_refuses_without_its_environment_and_starts_with_it() {
    // As in the image: the policy from CHARTE_POLICY, the data folder `data` beside it.
    let dir = fixture_dir();
    let cmd = image_command();
    let child = serve_in(dir.path())
        .env("CHARTE_POLICY", "policy.yaml")
        .args(&cmd)
        .spawn()
        .unwrap();
    let (code, stderr) = exit_of(child);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("CHARTE_PUBLIC_PROXY"), "{stderr}");
    assert!(stderr.contains("CHARTE_PORTAL_URL"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "{stderr}");

    let mut child = serve_in(dir.path())
        .env("CHARTE_POLICY", "policy.yaml")
        .env("CHARTE_PUBLIC_PROXY", PUBLIC_PROXY)
        .env("CHARTE_PORTAL_URL", PORTAL_URL)
        .args(&cmd)
        .spawn()
        .unwrap();
    let listening = listening_line(&mut child);
    let addr = |k: &str| -> SocketAddr {
        listening
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    let admin = addr("admin");
    assert!(
        admin.ip().is_loopback(),
        "the admin listener stays on loopback: {admin}"
    );
    let (_, pac) = http_get(
        SocketAddr::from((Ipv4Addr::LOCALHOST, addr("portal").port())),
        "/proxy.pac",
    );
    assert!(pac.contains(PUBLIC_PROXY), "{pac}");

    // The image's health check, run as a process against this admin port.
    let check = dockerfile_array("HEALTHCHECK");
    let run = |port: u16| {
        let args: Vec<String> = check
            .iter()
            .map(|a| a.replace("/3130", &format!("/{port}")))
            .collect();
        Command::new(&args[0]).args(&args[1..]).status().unwrap()
    };
    assert!(run(admin.port()).success(), "{check:?}");
    // And it fails where nothing answers (the portal answers 404 to /healthz).
    assert!(!run(addr("portal").port()).success(), "{check:?}");

    let _ = child.kill();
    let _ = child.wait();
}

/// The `listening proxy=… portal=… admin=…` line of a starting proxy (waited for, not
/// slept for); its standard error is drained meanwhile.
fn listening_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("listening ") {
                let _ = tx.send(rest.to_string());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the proxy did not start:\n{}", log.join().unwrap());
        }
    }
}
