//! A throw-away MIT Kerberos KDC for the integration tests (realm `MAIRIE.TEST`): its
//! own database, `kdc.conf` and `krb5.conf` in a temp folder, `krb5kdc` in the foreground
//! on a free loopback port (UDP and TCP), stopped when the value is dropped. Nothing here
//! reads `/etc/krb5.conf`, `/etc/krb5kdc` or DNS, so a KDC the Debian package may have
//! started on the machine is neither needed nor disturbed.
//!
//! What was checked by hand on Debian 12 (MIT krb5 1.20.1, curl 7.88.1), and why the
//! helpers are as they are:
//!
//! - **KDC address.** MIT 1.20 does not understand a `tcp/` or `udp/` prefix in
//!   `kdc = …` (it looks the prefix up as a host name). `kdc = 127.0.0.1:PORT` is tried
//!   over UDP first and then TCP on the same port; the KDC listens on both
//!   (`kdc_listen`, `kdc_tcp_listen`). `udp_preference_limit = 1` in [`Kdc::krb5_conf`]
//!   makes clients use TCP, as Windows clients do with large PACs.
//! - **Expired tickets.** MIT has no minimum lifetime: `kinit -l 1s` gives a TGT valid one
//!   second ([`Kdc::kinit_for`]). Once a ticket has expired, the *client* refuses to use
//!   it (`kvno`: "Ticket expired while getting credentials"), so curl with an expired
//!   ccache sends no `Proxy-Authorization` at all: the proxy only sees a request without
//!   credentials. An *acceptor* accepts a ticket up to `clockskew` (300 s by default)
//!   after its end time. To see the acceptor itself say "Ticket expired": take a token
//!   while the ticket is valid (e.g. from a short-lived ccache, by letting curl talk to a
//!   fake proxy that records the header), wait past the end time, then present it to an
//!   acceptor run with [`Kdc::server_env_clockskew`] (`clockskew = 1`). Checked with
//!   `gss_accept_sec_context`: default skew → accepted, skew 1 → "Ticket expired".
//!   The test-wide skew stays at the default, since a one-second skew would turn a slow
//!   moment of this 2-core machine into a spurious "Clock skew too great".
//! - **Replay cache.** MIT 1.18+ keeps a file replay cache, `krb5_<uid>.rcache2`, in
//!   `KRB5RCACHEDIR` (default `/var/tmp`); [`Kdc::server_env`] points it into the temp
//!   folder. It outlives the process: the same token presented twice (even to two
//!   processes sharing the folder) fails the second time with "Request is a replay".
//!   curl makes a new authenticator per request, so honest retries never collide.
//!   `KRB5RCACHETYPE=none` turns the check off.
//! - **curl to a proxy** ([`curl_negotiate_args`]): `--proxy-negotiate` needs `-U :`
//!   (without a user curl 7.88 never tries Negotiate); the proxy must be named by the
//!   name of its service principal (`-x http://127.0.0.1:P` makes curl ask for
//!   `HTTP/127.0.0.1@MAIRIE.TEST`: "Server not found in Kerberos database");
//!   `--resolve proxy.mairie.test:P:127.0.0.1` applies to the proxy's name, while
//!   `--connect-to` does not ("Could not resolve proxy"). With `--proxy-negotiate` alone
//!   curl sends `Proxy-Authorization: Negotiate …` on the first request already (GET and
//!   CONNECT alike); with `--proxy-anyauth` instead ([`curl_anyauth_args`]) it first
//!   sends no credentials, reads the 407's `Proxy-Authenticate: Negotiate`, then sends
//!   the token on the same connection, as browsers do.
//! - **Packages.** `kadmin.local` is in `krb5-admin-server`, not `krb5-kdc`.
//!   `kadmin.local -q` exits 0 even when the query failed, so the helpers check its
//!   output. Clients log "Error loading plugin module pkinit" under `KRB5_TRACE`
//!   (`krb5-pkinit` is not installed); it is harmless. `KRB5_TRACE=/dev/stderr` in a
//!   process's environment prints every Kerberos step, the first thing to try when a
//!   test fails.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The realm every test uses; `.mairie.test` hosts map to it.
pub const REALM: &str = "MAIRIE.TEST";

/// A running KDC.
pub struct Kdc {
    pub realm: String,
    /// Holds the database, both configuration files, the logs, keytabs and ccaches.
    pub dir: tempfile::TempDir,
    /// Loopback port of the KDC, UDP and TCP.
    pub port: u16,
    /// The client configuration (`KRB5_CONFIG`) for every process of the test.
    pub krb5_conf: PathBuf,
    /// The server configuration (`KRB5_KDC_PROFILE`) for krb5kdc and kadmin.local.
    kdc_conf: PathBuf,
    child: Child,
    /// Numbers the ccaches and extra configuration files, so that each is fresh.
    counter: AtomicU32,
}

impl Kdc {
    /// Creates the realm's database and starts the KDC, returning once it serves.
    pub fn start() -> Kdc {
        let dir = tempfile::Builder::new().prefix("kdc-").tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("kadm5.acl"), "").unwrap();
        let mut last_error = String::new();
        // A free port may be taken again between our probe and krb5kdc's bind; then the
        // KDC exits and another port is tried.
        for _ in 0..5 {
            let port = free_udp_tcp_port();
            let kdc_conf = d.join("kdc.conf");
            let krb5_conf = d.join("krb5.conf");
            std::fs::write(&kdc_conf, kdc_conf_text(d, port)).unwrap();
            std::fs::write(&krb5_conf, krb5_conf_text(port, None)).unwrap();
            if !d.join("principal").exists() {
                let out = Command::new("kdb5_util")
                    .args(["create", "-s", "-r", REALM, "-P", "master-key-pw"])
                    .env("KRB5_CONFIG", &krb5_conf)
                    .env("KRB5_KDC_PROFILE", &kdc_conf)
                    .stdin(Stdio::null())
                    .output()
                    .expect("kdb5_util runs (Debian package krb5-kdc)");
                assert_ok("kdb5_util create", &out);
            }
            let log = d.join("krb5kdc.log");
            let _ = std::fs::remove_file(&log);
            let out = std::fs::File::create(d.join("krb5kdc.out")).unwrap();
            let mut child = Command::new("krb5kdc")
                .args(["-n", "-r", REALM])
                .env("KRB5_CONFIG", &krb5_conf)
                .env("KRB5_KDC_PROFILE", &kdc_conf)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("krb5kdc runs (Debian package krb5-kdc)");
            match wait_serving(&mut child, &log, port) {
                Ok(()) => {
                    return Kdc {
                        realm: REALM.to_string(),
                        dir,
                        port,
                        krb5_conf,
                        kdc_conf,
                        child,
                        counter: AtomicU32::new(0),
                    };
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = format!(
                        "{e}\n--- krb5kdc output:\n{}\n--- log:\n{}",
                        std::fs::read_to_string(d.join("krb5kdc.out")).unwrap_or_default(),
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        }
        panic!("the KDC did not start: {last_error}");
    }

    /// `name@MAIRIE.TEST` with `password`.
    pub fn add_user(&self, name: &str, password: &str) {
        assert!(
            !password.contains(['"', ' ', '\\']),
            "kadmin.local -q cannot take this password: {password:?}"
        );
        let principal = self.principal(name);
        self.kadmin(
            &format!("addprinc -pw \"{password}\" {principal}"),
            &format!("Principal \"{principal}\" created."),
        );
    }

    /// A service principal (e.g. `HTTP/proxy.mairie.test`) with a random key, whose keys
    /// are appended to `keytab`: one keytab can hold several principals.
    pub fn add_service(&self, principal: &str, keytab: &Path) {
        let full = self.principal(principal);
        self.kadmin(
            &format!("addprinc -randkey {full}"),
            &format!("Principal \"{full}\" created."),
        );
        self.add_to_keytab(principal, keytab);
    }

    /// Appends the current keys of an existing principal to `keytab`, keeping them
    /// (`-norandkey`: a plain `ktadd` would make new keys and stale every other keytab
    /// holding the principal).
    pub fn add_to_keytab(&self, principal: &str, keytab: &Path) {
        let full = self.principal(principal);
        self.kadmin(
            &format!("ktadd -norandkey -k {} {full}", keytab.display()),
            "added to keytab",
        );
    }

    /// A fresh `FILE:` ccache in the temp folder holding `user`'s TGT (10 h).
    pub fn kinit(&self, user: &str, password: &str) -> PathBuf {
        self.kinit_for(user, password, None)
    }

    /// [`Kdc::kinit`] with `kinit -l lifetime` when given (`"1s"`, `"5s"`, `"2m"`: MIT
    /// has no minimum, so a test can hold a ticket that expires while it runs).
    pub fn kinit_for(&self, user: &str, password: &str, lifetime: Option<&str>) -> PathBuf {
        let (ccache, out) = self.run_kinit(user, password, lifetime);
        assert_ok(&format!("kinit {user}"), &out);
        ccache
    }

    /// kinit's error message, for a kinit expected to fail (a wrong password).
    pub fn kinit_error(&self, user: &str, password: &str) -> String {
        let (_, out) = self.run_kinit(user, password, None);
        assert!(
            !out.status.success(),
            "kinit {user} succeeded where it should fail"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn run_kinit(&self, user: &str, password: &str, lifetime: Option<&str>) -> (PathBuf, Output) {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let ccache = self.dir.path().join(format!("ccache-{user}-{n}"));
        let mut cmd = Command::new("kinit");
        if let Some(l) = lifetime {
            cmd.args(["-l", l]);
        }
        let mut child = cmd
            .arg(self.principal(user))
            .envs(self.env(&ccache))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kinit runs (Debian package krb5-user)");
        // kinit reads the password from standard input when it is not a terminal.
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        (ccache, child.wait_with_output().unwrap())
    }

    /// The environment of a client process (kvno, klist, curl) using `ccache`.
    pub fn env(&self, ccache: &Path) -> Vec<(&'static str, OsString)> {
        let mut cc = OsString::from("FILE:");
        cc.push(ccache);
        vec![
            ("KRB5_CONFIG", self.krb5_conf.clone().into()),
            ("KRB5CCNAME", cc),
        ]
    }

    /// The environment of an acceptor (the proxy) whose keys are in `keytab`: the test
    /// configuration, the keytab, a replay cache inside the temp folder, and a ccache of
    /// its own so that nothing touches the machine's default one.
    pub fn server_env(&self, keytab: &Path) -> Vec<(&'static str, OsString)> {
        self.server_env_with(keytab, self.krb5_conf.clone())
    }

    /// [`Kdc::server_env`] with a configuration whose `clockskew` is `secs`: with 1, the
    /// acceptor refuses a ticket as soon as its end time has passed (with the default
    /// 300 it accepts it five more minutes).
    pub fn server_env_clockskew(&self, keytab: &Path, secs: u32) -> Vec<(&'static str, OsString)> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let conf = self.dir.path().join(format!("krb5-clockskew-{n}.conf"));
        std::fs::write(&conf, krb5_conf_text(self.port, Some(secs))).unwrap();
        self.server_env_with(keytab, conf)
    }

    fn server_env_with(&self, keytab: &Path, conf: PathBuf) -> Vec<(&'static str, OsString)> {
        let rcache = self.dir.path().join("rcache");
        std::fs::create_dir_all(&rcache).unwrap();
        let mut kt = OsString::from("FILE:");
        kt.push(keytab);
        let mut cc = OsString::from("FILE:");
        cc.push(self.dir.path().join("ccache-server"));
        vec![
            ("KRB5_CONFIG", conf.into()),
            ("KRB5_KTNAME", kt),
            ("KRB5RCACHEDIR", rcache.into()),
            ("KRB5CCNAME", cc),
        ]
    }

    /// `name` with the realm appended unless it has one.
    pub fn principal(&self, name: &str) -> String {
        if name.contains('@') {
            name.to_string()
        } else {
            format!("{name}@{}", self.realm)
        }
    }

    /// Runs one kadmin.local query and checks its output for `expect` (kadmin.local
    /// exits 0 even when the query failed).
    fn kadmin(&self, query: &str, expect: &str) {
        let out = Command::new("kadmin.local")
            .args(["-r", &self.realm, "-q", query])
            .env("KRB5_CONFIG", &self.krb5_conf)
            .env("KRB5_KDC_PROFILE", &self.kdc_conf)
            .stdin(Stdio::null())
            .output()
            .expect("kadmin.local runs (Debian package krb5-admin-server)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(expect),
            "kadmin.local -q {query:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// curl's arguments to authenticate to the proxy at `proxy_host:proxy_port` with
/// Negotiate, the ticket taken from the ccache of [`Kdc::env`]. The proxy is named by
/// `proxy_host` (the name in its service principal, `HTTP/proxy_host`), resolved to
/// 127.0.0.1 by `--resolve`, which applies to the proxy's name; curl sends the token on
/// its first request.
pub fn curl_negotiate_args(proxy_host: &str, proxy_port: u16) -> Vec<String> {
    let mut args = vec!["--proxy-negotiate".to_string()];
    args.extend(proxy_name_args(proxy_host, proxy_port));
    args
}

/// [`curl_negotiate_args`] with `--proxy-anyauth`: curl first asks without credentials
/// and answers the proxy's 407 with the Negotiate token, as a browser does.
pub fn curl_anyauth_args(proxy_host: &str, proxy_port: u16) -> Vec<String> {
    let mut args = vec!["--proxy-anyauth".to_string()];
    args.extend(proxy_name_args(proxy_host, proxy_port));
    args
}

fn proxy_name_args(proxy_host: &str, proxy_port: u16) -> Vec<String> {
    vec![
        // An empty user and password: without a user curl does not try proxy auth.
        "-U".into(),
        ":".into(),
        "-x".into(),
        format!("http://{proxy_host}:{proxy_port}"),
        "--resolve".into(),
        format!("{proxy_host}:{proxy_port}:127.0.0.1"),
    ]
}

fn kdc_conf_text(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "[kdcdefaults]
 kdc_listen = 127.0.0.1:{port}
 kdc_tcp_listen = 127.0.0.1:{port}

[realms]
 {REALM} = {{
  database_name = {d}/principal
  key_stash_file = {d}/stash
  acl_file = {d}/kadm5.acl
  kdc_listen = 127.0.0.1:{port}
  kdc_tcp_listen = 127.0.0.1:{port}
  max_life = 10h
  max_renewable_life = 7d
  # Pre-authentication required, as in Active Directory: a wrong password fails at the
  # KDC instead of at the client decrypting the answer.
  default_principal_flags = +preauth
 }}

[logging]
 kdc = FILE:{d}/krb5kdc.log
 admin_server = FILE:{d}/kadmin.log
 default = FILE:{d}/krb5lib.log
"
    )
}

/// The client configuration: no DNS at all (no KDC or realm lookup, no reverse or
/// forward canonicalisation of host names), `.mairie.test` in the realm.
fn krb5_conf_text(port: u16, clockskew: Option<u32>) -> String {
    let skew = clockskew
        .map(|s| format!(" clockskew = {s}\n"))
        .unwrap_or_default();
    format!(
        "[libdefaults]
 default_realm = {REALM}
 dns_lookup_kdc = false
 dns_lookup_realm = false
 rdns = false
 dns_canonicalize_hostname = false
 udp_preference_limit = 1
 ticket_lifetime = 10h
 renew_lifetime = 7d
 forwardable = true
{skew}
[realms]
 {REALM} = {{
  kdc = 127.0.0.1:{port}
 }}

[domain_realm]
 .mairie.test = {REALM}
 mairie.test = {REALM}
"
    )
}

/// A loopback port free for both UDP and TCP right now.
fn free_udp_tcp_port() -> u16 {
    loop {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

/// Waits until krb5kdc says it serves and accepts a TCP connection, or fails.
fn wait_serving(child: &mut Child, log: &Path, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("krb5kdc exited: {status}"));
        }
        let commenced = std::fs::read_to_string(log)
            .map(|l| l.contains("commencing operation"))
            .unwrap_or(false);
        if commenced && TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("krb5kdc did not serve within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
