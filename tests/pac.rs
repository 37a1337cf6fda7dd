//! Several proxies in the PAC file (issue 27): the portal lists them in the order set for
//! the network of the workstation that fetches `/proxy.pac` (`pac.by_network`), never
//! with DIRECT as a fallback, and a real headless Chromium whose first proxy does not
//! answer goes through the second.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::proxy::{Proxy, Upstream, curl};

/// A loopback port nothing listens on: bound, then let go. Connections to it are refused.
fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The PAC function's last `return`: what every site outside the internal ones gets.
fn last_return(pac: &str) -> String {
    pac.lines()
        .rev()
        .find(|l| l.trim_start().starts_with("return"))
        .unwrap_or_else(|| panic!("no return in {pac}"))
        .trim()
        .to_string()
}

/// No line that names a proxy also offers DIRECT: a workstation that cannot reach any
/// proxy must not bypass the filter.
fn assert_no_direct_fallback(pac: &str) {
    for l in pac.lines().filter(|l| l.contains("PROXY")) {
        assert!(!l.contains("DIRECT"), "DIRECT as a fallback: {l}\n{pac}");
    }
}

#[test]
fn the_pac_file_orders_the_proxies_by_the_address_that_fetches_it() {
    let p = Proxy::start_with_config(
        "pac:\n  proxies: [p1.mairie.example:3128, p2.mairie.example:3128]\n  by_network:\n    - networks: [127.0.0.3/32]\n      proxies: [p2.mairie.example:3128, p1.mairie.example:3128]\n",
        &[],
    );
    let fetch = |from: &str, path: &str| {
        let (code, out, err) = curl(&[
            "-s",
            "-i",
            "--interface",
            from,
            &format!("http://{}{path}", p.portal),
        ]);
        assert_eq!(code, 0, "{err}");
        out
    };
    let default = fetch("127.0.0.1", "/proxy.pac");
    assert_eq!(
        last_return(&default),
        "return \"PROXY p1.mairie.example:3128; PROXY p2.mairie.example:3128\";"
    );
    assert_no_direct_fallback(&default);
    // The file differs by workstation: no shared cache may keep one for all.
    assert!(
        default
            .to_ascii_lowercase()
            .contains("cache-control: private, max-age=300"),
        "{default}"
    );
    let other = fetch("127.0.0.3", "/wpad.dat");
    assert_eq!(
        last_return(&other),
        "return \"PROXY p2.mairie.example:3128; PROXY p1.mairie.example:3128\";"
    );
    assert_no_direct_fallback(&other);
    // The help page's manual proxy is the first of the workstation's order.
    assert!(
        fetch("127.0.0.3", "/").contains("<code>p2.mairie.example:3128</code>"),
        "help page for 127.0.0.3"
    );
    assert!(
        fetch("127.0.0.1", "/").contains("<code>p1.mairie.example:3128</code>"),
        "help page for 127.0.0.1"
    );
}

#[test]
fn a_wrong_pac_entry_stops_the_start_with_its_line() {
    let dir = common::proxy::fixture_dir();
    std::fs::write(
        dir.path().join("server.yaml"),
        "pac:\n  proxies:\n    - p1.mairie.example:3128\n    - 'p2.mairie.example:3128; DIRECT'\n",
    )
    .unwrap();
    let mut child = common::bin()
        .current_dir(dir.path())
        .args([
            "serve",
            "--config",
            "server.yaml",
            "--policy",
            "policy.yaml",
            "--listen",
            "127.0.0.1:0",
            "--portal-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
            "data",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A refusal ends the process at once; one still running after this has started.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        status.is_some_and(|s| !s.success()),
        "started with a broken PAC entry: {err}"
    );
    assert!(
        err.contains("server.yaml:4:") && err.contains("pac.proxies[1]"),
        "{err}"
    );
    assert!(err.contains("would break the PAC file"), "{err}");
}

/// Chromium's DOM of `url`, with its proxies from the PAC file at `pac_url`.
fn dump_dom_with_pac(pac_url: &str, url: &str) -> String {
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(common::chromium())
        .env("HOME", home.path())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!(
            "--user-data-dir={}",
            home.path().join("profile").display()
        ))
        .arg(format!("--proxy-pac-url={pac_url}"))
        .arg("--dump-dom")
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("Chromium did not finish loading {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn chromium_goes_through_the_second_proxy_of_the_pac_file_when_the_first_is_down() {
    let up = Upstream::start();
    // The proxy that answers: a real charte-proxy.
    let second = Proxy::start_pinned(&[]);
    let dead = dead_port();
    // Another instance serves the PAC file. Workstations of 127.0.0.1 get the dead proxy
    // first, then the live one; the default order (the dead one alone) would fail, so a
    // page that loads also shows that the order was chosen by the workstation's address.
    let portal = Proxy::start_with_config(
        &format!(
            "pac:\n  proxies: ['{dead}']\n  by_network:\n    - networks: [127.0.0.1/32]\n      proxies: ['{dead}', '{}']\n",
            second.proxy
        ),
        &[],
    );
    let pac_url = format!("http://{}/proxy.pac", portal.portal);
    let (code, pac, err) = curl(&["-s", &pac_url]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        last_return(&pac),
        format!("return \"PROXY {dead}; PROXY {}\";", second.proxy)
    );
    assert_no_direct_fallback(&pac);
    assert!(
        TcpStream::connect(dead).is_err(),
        "the first proxy must be down"
    );

    // `allowed.test` has no address outside the proxy's pins: the page can only arrive
    // through a proxy, never DIRECT.
    let url = format!("http://allowed.test:{}/html", up.port());
    let dom = dump_dom_with_pac(&pac_url, &url);
    assert!(
        dom.contains("bonjour"),
        "the page through the second proxy: {dom}"
    );
    let t = second.trace_find(|v| v["host"] == "allowed.test" && v["path"] == "/html");
    assert_eq!(t["status"].as_u64(), Some(200), "{t}");
    assert_eq!(t["decision"].as_str(), Some("allow"), "{t}");
}
