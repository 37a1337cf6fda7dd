//! The unblock flow as a user meets it, through a running proxy: the block page's link,
//! the portal's form, and the status a client gets for a site.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use super::proxy::{Proxy, curl};

/// The unblock link of the block page `url` shows to a client at `from`, as a URL on
/// `p`'s portal.
pub fn unblock_link(p: &Proxy, url: &str, from: &str) -> String {
    let (_, page, _) = curl(&["-x", &p.url(), "--interface", from, url]);
    let start = page
        .find("/demande?token=")
        .unwrap_or_else(|| panic!("no button: {page}"));
    let rest = &page[start..];
    let end = rest.find('"').unwrap();
    format!("http://{}{}", p.portal, &rest[..end].replace("&amp;", "&"))
}

pub fn token_of(link: &str) -> String {
    link.split("token=").nth(1).unwrap().to_string()
}

/// POSTs the form to `p`'s portal; returns (status, answer with its head).
pub fn submit(p: &Proxy, token: &str, why: &str) -> (u16, String) {
    let (_, out, _) = curl(&[
        "-i",
        "--data-urlencode",
        &format!("token={token}"),
        "--data-urlencode",
        &format!("justification={why}"),
        "--data-urlencode",
        "wanted=7d",
        &format!("http://{}/demande", p.portal),
    ]);
    let status = out[9..12].parse().unwrap();
    (status, out)
}

/// The status `url` gets through `p` from a client at `from`.
pub fn status_of(p: &Proxy, url: &str, from: &str) -> String {
    curl(&[
        "-x",
        &p.url(),
        "--interface",
        from,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        url,
    ])
    .1
}

/// Waits until `url` answers `want` through `p` from `from` (10 s at most); returns how
/// long it took.
pub fn wait_status(p: &Proxy, url: &str, from: &str, want: u16) -> Duration {
    let t0 = Instant::now();
    loop {
        let got = status_of(p, url, from);
        if got == want.to_string() {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{url} from {from} through {}: still {got}, want {want}",
            p.proxy
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
