//! Tenant restrictions through the running proxy (issue 25): the headers Microsoft and
//! Google read arrive at the site, replacing the client's own; YouTube's and SafeSearch's
//! only for the groups named; nothing for hosts not concerned. And the approved cloud is
//! the town's tenant only: another company's SharePoint takes no upload.
//!
//! The sites are a local HTTPS upstream (a throw-away CA the proxy trusts with
//! `--upstream-ca`) that echoes the request head it received (`/headers`, `/search`),
//! every name pinned to loopback; clients are curl, trusting the organisation CA the
//! proxy creates, from 127.0.0.1 (no group), 127.0.0.2 (`agents`) or 127.0.0.3
//! (`eleves`).

mod common;

use common::proxy::{Proxy, Upstream, copy_dir, curl};
use common::tls::{HttpsUpstream, TestCa};

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const POLICY: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

/// Every name the tests ask for, pinned to the upstream.
const NAMES: &[&str] = &[
    "login.microsoftonline.com",
    "login.microsoft.com",
    "login.live.com",
    "accounts.google.com",
    "www.google.com",
    "www.youtube.com",
    "allowed.test",
    "cu-arras.sharepoint.com",
    "other.sharepoint.com",
];

/// The policy's groups, rules and categories (the shipped `charte` folder, with the
/// shipped order of `cloud-approuve` before `cloud-personnel`), and `tenant`.
fn policy(tenant: &str) -> String {
    format!(
        r#"version: 1
categories: [charte]
groups:
  agents:
    networks: [127.0.0.2/32]
  eleves:
    networks: [127.0.0.3/32]
internal_sites: [127.0.0.0/8]
tenant_restrictions:
{tenant}
rules:
  - id: cloud-approuve
    categories: [approved-cloud]
    action: allow
  - id: cloud-personnel
    categories: [cloud-storage, paste]
    action: block-upload
    reason: "Envoi de données vers un cloud personnel interdit (charte §5.9)"
default: allow
"#
    )
}

const V2: &str = r#"  microsoft:
    tenant_id: 11111111-2222-3333-4444-555555555555
    policy_id: AAAAAAAA-bbbb-cccc-dddd-eeeeeeeeeeee
  google:
    allowed_domains: [arras.fr, cu-arras.fr]
  youtube:
    restrict: strict
    groups: [eleves]
  safe_search:
    groups: [eleves]
"#;

struct Setup {
    p: Proxy,
    _ca: TestCa,
    up: HttpsUpstream,
    org_pem: String,
    _pem_dir: tempfile::TempDir,
}

impl Setup {
    fn start(tenant: &str) -> Setup {
        let ca = TestCa::new("Test upstream root");
        let up = HttpsUpstream::start(&ca.leaf(NAMES));
        let pem_dir = tempfile::tempdir().unwrap();
        let up_pem = pem_dir.path().join("upstream-root.pem");
        ca.write_pem(&up_pem);
        let dir = tempfile::tempdir().unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        copy_dir(&root.join("categories/charte"), &dir.path().join("charte"));
        std::fs::write(dir.path().join("policy.yaml"), policy(tenant)).unwrap();
        let mut args: Vec<String> = NAMES
            .iter()
            .map(|h| format!("--host={h}=127.0.0.1"))
            .collect();
        args.extend([
            "--upstream-ca".into(),
            up_pem.display().to_string(),
            "--connect-port".into(),
            up.port().to_string(),
        ]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = Proxy::start_in(dir, &refs);
        let org_pem = p.path("data/ca/ca.pem").display().to_string();
        Setup {
            p,
            _ca: ca,
            up,
            org_pem,
            _pem_dir: pem_dir,
        }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.up.port())
    }

    /// curl through the proxy from `from`, trusting the organisation CA only.
    fn curl_from(&self, from: &str, args: &[&str]) -> String {
        let proxy = self.p.url();
        let mut a = vec![
            "-x",
            &proxy,
            "--http1.1",
            "--interface",
            from,
            "--cacert",
            &self.org_pem,
        ];
        a.extend_from_slice(args);
        let (code, out, err) = curl(&a);
        assert_eq!(code, 0, "curl {args:?}: {err}");
        out
    }

    /// The echoed request head of a GET to `host` (`path`: `/headers` or `/search…`).
    fn echo(&self, from: &str, host: &str, path: &str, extra: &[&str]) -> String {
        let url = self.url(host, path);
        let mut a = extra.to_vec();
        a.push(&url);
        self.curl_from(from, &a)
    }
}

/// The values of header `name` (lower-case) in an echoed head.
fn values(echo: &str, name: &str) -> Vec<String> {
    echo.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .collect()
}

/// The site's answer in `curl -i` output, after the proxy's answer to CONNECT.
fn last_answer(out: &str) -> &str {
    &out[out.rfind("HTTP/1.1 ").unwrap_or(0)..]
}

const TRV2: &str = "sec-restrict-tenant-access-policy";
const GOOGLE: &str = "x-googapps-allowed-domains";
const YOUTUBE: &str = "youtube-restrict";

#[test]
fn tenant_restriction_v2_reaches_the_sign_in_hosts_and_replaces_the_clients_copy() {
    let s = Setup::start(V2);
    let ours = format!("{TENANT}:{POLICY}");
    for host in [
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.live.com",
    ] {
        let e = s.echo("127.0.0.1", host, "/headers", &[]);
        assert_eq!(values(&e, TRV2), [ours.as_str()], "{host}: {e}");
        // A copy the client sent, in another case, is replaced: one value, ours.
        let e = s.echo(
            "127.0.0.1",
            host,
            "/headers",
            &[
                "-H",
                "sec-Restrict-Tenant-Access-Policy: evil:1",
                "-H",
                "SEC-RESTRICT-TENANT-ACCESS-POLICY: evil:2",
            ],
        );
        assert_eq!(values(&e, TRV2), [ours.as_str()], "{host}: {e}");
    }
}

#[test]
fn google_header_reaches_google_hosts_and_youtube_restrict_only_the_group_named() {
    let s = Setup::start(V2);
    for from in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        let e = s.echo(
            from,
            "accounts.google.com",
            "/headers",
            &["-H", "X-GoogApps-Allowed-Domains: gmail.com"],
        );
        assert_eq!(values(&e, GOOGLE), ["arras.fr,cu-arras.fr"], "{from}: {e}");
    }
    // `eleves` (127.0.0.3) is restricted; `agents` (127.0.0.2) and no group are not.
    let e = s.echo("127.0.0.3", "www.youtube.com", "/headers", &[]);
    assert_eq!(values(&e, YOUTUBE), ["Strict"], "{e}");
    for from in ["127.0.0.1", "127.0.0.2"] {
        let e = s.echo(from, "www.youtube.com", "/headers", &[]);
        assert!(values(&e, YOUTUBE).is_empty(), "{from}: {e}");
    }
}

#[test]
fn safe_search_rewrites_the_query_for_the_group_named_only() {
    let s = Setup::start(V2);
    // The upstream client sends the absolute form: compare the path and query.
    let path = |e: &str| {
        let uri = values(e, "request-uri");
        assert_eq!(uri.len(), 1, "{e}");
        let uri = &uri[0];
        uri[uri.find("/search").unwrap_or(0)..].to_string()
    };
    let e = s.echo("127.0.0.3", "www.google.com", "/search?q=x&safe=off", &[]);
    assert_eq!(path(&e), "/search?q=x&safe=active", "{e}");
    let e = s.echo("127.0.0.2", "www.google.com", "/search?q=x&safe=off", &[]);
    assert_eq!(path(&e), "/search?q=x&safe=off", "{e}");
    // Plain HTTP too: the request in clear goes to the site rewritten.
    let plain = Upstream::start();
    let url = format!("http://www.google.com:{}/search?safe=off&q=y", plain.port());
    let e = s.curl_from("127.0.0.3", &[&url]);
    assert_eq!(path(&e), "/search?q=y&safe=active", "{e}");
    assert_eq!(values(&e, GOOGLE), ["arras.fr,cu-arras.fr"], "{e}");
}

#[test]
fn hosts_not_concerned_get_none_of_the_headers() {
    let s = Setup::start(V2);
    for host in ["allowed.test", "cu-arras.sharepoint.com"] {
        let e = s.echo("127.0.0.3", host, "/headers", &[]);
        for h in [
            TRV2,
            GOOGLE,
            YOUTUBE,
            "restrict-access-to-tenants",
            "restrict-access-context",
        ] {
            assert!(values(&e, h).is_empty(), "{host} {h}: {e}");
        }
        assert!(!e.contains("safe=active"), "{host}: {e}");
    }
}

#[test]
fn tenant_restriction_v1_and_restrict_msa_go_to_their_own_hosts() {
    let s = Setup::start(
        r#"  microsoft:
    allowed_tenants: [cu-arras.onmicrosoft.com, 11111111-2222-3333-4444-555555555555]
    context: 11111111-2222-3333-4444-555555555555
    restrict_msa: true
"#,
    );
    let e = s.echo("127.0.0.1", "login.microsoftonline.com", "/headers", &[]);
    assert_eq!(
        values(&e, "restrict-access-to-tenants"),
        [format!("cu-arras.onmicrosoft.com,{TENANT}")],
        "{e}"
    );
    assert_eq!(values(&e, "restrict-access-context"), [TENANT], "{e}");
    assert!(values(&e, TRV2).is_empty(), "{e}");
    let e = s.echo(
        "127.0.0.1",
        "login.live.com",
        "/headers",
        &["-H", "sec-Restrict-Tenant-Access-Policy: evil:1"],
    );
    assert_eq!(values(&e, TRV2), ["restrict-msa"], "{e}");
    assert!(values(&e, "restrict-access-to-tenants").is_empty(), "{e}");
}

#[test]
fn another_tenants_sharepoint_takes_no_upload_the_towns_does() {
    let s = Setup::start(V2);
    let out = s.curl_from(
        "127.0.0.2",
        &[
            "-i",
            "-d",
            "secret=1",
            &s.url("other.sharepoint.com", "/upload"),
        ],
    );
    let out = last_answer(&out);
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(
        out.contains("x-charte-reason: block-upload; rule=cloud-personnel"),
        "{out}"
    );
    assert!(
        out.contains("Envoi de données vers un cloud personnel interdit"),
        "{out}"
    );
    // Reading it is allowed.
    let e = s.echo("127.0.0.2", "other.sharepoint.com", "/headers", &[]);
    assert!(
        e.contains("request-uri: ") && e.contains("/headers\n"),
        "{e}"
    );
    // The town's tenant takes the upload.
    let out = s.curl_from(
        "127.0.0.2",
        &[
            "-i",
            "-d",
            "secret=1",
            &s.url("cu-arras.sharepoint.com", "/upload"),
        ],
    );
    let out = last_answer(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("\r\n\r\n8"), "{out}");
}
