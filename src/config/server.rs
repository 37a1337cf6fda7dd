//! The server file and the `serve` flags, read into [`Settings`]: listeners, data
//! folder, trace, authentication, name pinning, PAC settings, TLS, limits. Optional YAML
//! file (`--config`), every setting also a `serve` flag; flags win over the file, the
//! file over the defaults. Cold path only: the resolved [`Settings`] live outside
//! `config/` (`crate::settings`), and the running server reads only them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::diag::{Diags, Pos};
use super::positions::Positions;
use crate::settings::{
    Compress, DirectorySettings, Limits, MAX_RETENTION_DAYS, Nesting, Rotate, Settings, SyslogTo,
    TraceOutput, TraceTo, UserName, syslog_facility,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub policy: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<RawListen>,
    /// Address workstations use to reach the proxy (for the PAC file).
    pub public_proxy: Option<String>,
    /// Base URL of the portal as workstations reach it (block page links, PAC DIRECT).
    pub portal_url: Option<String>,
    pub connect_ports: Option<Vec<u16>>,
    /// Names pinned to addresses, before the system resolver.
    pub hosts: Option<BTreeMap<String, IpAddr>>,
    pub internal: Option<RawInternal>,
    pub auth: Option<RawAuth>,
    pub directory: Option<RawDirectory>,
    pub trace: Option<RawTrace>,
    pub reverse_dns: Option<bool>,
    pub shutdown_grace_seconds: Option<u64>,
    /// Threads serving proxy connections; 0 or absent: one per CPU but one.
    pub workers: Option<usize>,
    /// How long a worker with nothing to do spins before it sleeps; 0: sleeps at once.
    pub worker_spin_microseconds: Option<u64>,
    pub watch: Option<bool>,
    pub tls: Option<RawTls>,
    pub limits: Option<RawLimits>,
    /// Where `serve` writes its process id.
    pub pidfile: Option<PathBuf>,
    /// The town's time zone (IANA name, default Europe/Paris).
    pub time_zone: Option<String>,
    /// The unblock store (`retention_days`).
    pub requests: Option<RawRequests>,
    /// `categories update`: where the UT1 archive comes from, and its bounds.
    pub categories_update: Option<RawCategoriesUpdate>,
    pub pages: Option<RawPages>,
    /// The proxies the PAC file lists, by the workstation's network.
    pub pac: Option<RawPac>,
    /// Where the unblock requests are kept: SQLite in the data folder (the default), or
    /// `postgres:` for several proxies sharing one database.
    pub store: Option<RawStore>,
}

/// `pac:`: several proxies in the PAC file, in order, with orders by network.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPac {
    /// The default order; absent: `public_proxy` alone.
    pub proxies: Option<Vec<String>>,
    #[serde(default)]
    pub by_network: Vec<RawPacGroup>,
}

/// One `pac.by_network` entry. Networks as text, so that a wrong one is reported with
/// its place and the others still read.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPacGroup {
    #[serde(default)]
    pub networks: Vec<String>,
    #[serde(default)]
    pub proxies: Vec<String>,
}

/// `store:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub postgres: Option<RawPostgres>,
}

/// `store.postgres:` (README, "Several proxies: PostgreSQL").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    /// A file holding `postgres://USER:PASSWORD@HOST:PORT/DATABASE`, mode 0600.
    pub url_file: Option<PathBuf>,
    /// Most connections to the database (default 8).
    pub pool_size: Option<usize>,
    /// The CA of the database's certificate (turns TLS on).
    pub ca_file: Option<PathBuf>,
}

/// `requests:`: the unblock store.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequests {
    /// Days decided requests, their decisions and block counts are kept (default 365).
    pub retention_days: Option<u32>,
}

/// `categories_update:` (README, "Category updates").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCategoriesUpdate {
    pub url: Option<String>,
    pub checksum_url: Option<String>,
    pub folder: Option<PathBuf>,
    pub max_bytes: Option<u64>,
    pub max_unpacked_bytes: Option<u64>,
    pub min_categories: Option<usize>,
}

/// `pages:`: the templates that replace the shipped ones and the town's details the
/// pages show (README, "Pages").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPages {
    /// Folder of templates replacing the shipped ones of the same name.
    pub templates: Option<PathBuf>,
    pub town: Option<String>,
    /// Image file, inlined in every page.
    pub logo: Option<PathBuf>,
    pub support: Option<RawSupport>,
}

/// `pages.support`: how to reach the IT service.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSupport {
    pub phone: Option<String>,
    pub mail: Option<String>,
}

/// `limits:`: sizes, timeouts and connection caps (README, "Limits").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_head_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub header_timeout_seconds: Option<f64>,
    pub body_idle_timeout_seconds: Option<f64>,
    pub upstream_connect_timeout_seconds: Option<f64>,
    pub upstream_first_byte_timeout_seconds: Option<f64>,
    pub upstream_idle_timeout_seconds: Option<f64>,
    pub upstream_keepalive_seconds: Option<f64>,
    pub tunnel_idle_timeout_seconds: Option<f64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_client: Option<usize>,
    pub h2_max_concurrent_streams: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Decrypt tunnels with the organisation's CA (default true).
    pub inspect: Option<bool>,
    /// CA certificate (PEM) instead of DATA/ca/ca.pem.
    pub ca_cert: Option<PathBuf>,
    /// CA private key (PEM, mode 0600) instead of DATA/ca/ca.key.
    pub ca_key: Option<PathBuf>,
    /// Extra trusted roots for upstream servers (internal PKI), PEM files.
    #[serde(default)]
    pub upstream_ca: Vec<PathBuf>,
    /// Seconds a client has to send its whole ClientHello.
    pub hello_timeout_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    pub proxy: Option<SocketAddr>,
    pub portal: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInternal {
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub networks: Vec<IpNet>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub users_file: Option<PathBuf>,
    #[serde(default)]
    pub required: Vec<IpNet>,
    #[serde(default)]
    pub optional: Vec<IpNet>,
    pub realm: Option<String>,
    /// Offer Kerberos single sign-on (Negotiate); needs a build with `kerberos`.
    pub negotiate: Option<bool>,
    /// Offer Basic (default: yes).
    pub basic: Option<bool>,
    /// The service keytab (`HTTP/proxy.fqdn@REALM`, several principals allowed); else
    /// `KRB5_KTNAME` or the system's default keytab.
    pub keytab: Option<PathBuf>,
    /// `principal` (`alice@MAIRIE.LOCAL`, the default) or `short` (`alice`).
    pub user_name: Option<String>,
}

/// `directory:`: the LDAP / Active Directory server for groups and Basic passwords.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDirectory {
    pub url: String,
    #[serde(default)]
    pub starttls: bool,
    #[serde(default)]
    pub allow_cleartext: bool,
    pub ca_file: Option<PathBuf>,
    pub base_dn: String,
    pub bind_dn: String,
    /// A file (mode 0600) holding the service account's password.
    pub bind_password_file: PathBuf,
    pub user_filter: Option<String>,
    /// `active-directory` (nested groups in one search, the default) or `walk`.
    pub nesting: Option<String>,
    pub group_ttl_seconds: Option<u64>,
    pub first_wait_milliseconds: Option<u64>,
    pub timeout_seconds: Option<u64>,
    /// Check Basic passwords with a bind as the user (default: yes).
    pub basic: Option<bool>,
    /// Look up `alice@REALM` and `REALM\alice` as `alice` (default: yes).
    pub strip_realm: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrace {
    /// File path, or `-` for standard output.
    pub path: Option<String>,
    pub format: Option<String>,
    pub queue: Option<usize>,
    /// More outputs, each with its own format.
    pub outputs: Option<Vec<RawTraceOutput>>,
    /// `daily` (default), `size` or `external`.
    pub rotate: Option<String>,
    /// With `rotate: size`: the size at which a file is closed, in MiB.
    pub max_size_mb: Option<u64>,
    /// `gzip` (default), `zstd` or `none`.
    pub compress: Option<String>,
    /// Days rotated files are kept (default 365).
    pub retention_days: Option<u32>,
    /// The bound `retention_days` may not pass (default 3 years).
    pub max_retention_days: Option<u32>,
    /// `fast` (default: never slow the proxy) or `durable` (never drop a line).
    pub mode: Option<String>,
    /// Administrators who may search and export the trace from the admin pages.
    pub readers: Option<Vec<String>>,
    /// Administrators who see people's names on the dashboard (others: pseudonyms).
    pub names_visible_to: Option<Vec<String>>,
    /// Days the access audit keeps a line (default 3 years).
    pub access_retention_days: Option<u32>,
}

/// `trace.outputs[i]`: a file (`path`) or a syslog collector (`syslog`), in a format.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTraceOutput {
    pub path: Option<String>,
    /// `udp://IP:PORT`, `tcp://IP:PORT` or `unix:///dev/log`.
    pub syslog: Option<String>,
    /// `local0` (the default) … `local7`, `daemon`, `user`, `authpriv`.
    pub facility: Option<String>,
    pub format: Option<String>,
}

/// Reads the optional YAML file over the defaults; every problem is reported with its
/// place.
pub fn load(path: Option<&Path>) -> Result<Settings, Diags> {
    load_file(path).map(|(cfg, _)| cfg)
}

/// What the server file itself set, for the steps that must know whether a value was
/// given or defaulted.
#[derive(Debug, Default, Clone, Copy)]
struct Given {
    /// The data folder's paths the file names: a `--data-dir` flag is the default of
    /// the others, and never moves these.
    users_file: bool,
    trace: bool,
    /// The addresses workstations use.
    public_proxy: bool,
    portal_url: bool,
    /// Where `listen.proxy` and `listen.portal` are written, when they are.
    proxy_listen: Option<Pos>,
    portal_listen: Option<Pos>,
}

/// [`load`], and what the file gave.
fn load_file(path: Option<&Path>) -> Result<(Settings, Given), Diags> {
    let mut cfg = Settings::default();
    let Some(path) = path else {
        return Ok((cfg, Given::default()));
    };
    let mut diags = Diags::default();
    let Some((mut raw, pos)) = read(path, &mut diags) else {
        return Err(diags);
    };
    let mut file = File {
        path,
        base: path.parent().unwrap_or(Path::new(".")),
        pos,
        diags,
    };
    if let Some(p) = raw.pidfile.take() {
        cfg.pidfile = Some(file.rel(p));
    }
    if let Some(tz) = raw.time_zone.take() {
        if let Err(e) = crate::clock::zone(&tz) {
            let pos = file.pos.value("time_zone");
            file.invalid(
                pos,
                "time_zone",
                e,
                Some(
                    "the town's IANA time zone, e.g. Europe/Paris (the default), \
                     America/Cayenne, Indian/Reunion",
                ),
            );
        }
        cfg.pages.time_zone = tz.clone();
        cfg.time_zone = tz;
    }
    if let Some(days) = raw.requests.take().and_then(|r| r.retention_days) {
        let bound = raw
            .trace
            .as_ref()
            .and_then(|t| t.max_retention_days)
            .unwrap_or(MAX_RETENTION_DAYS);
        if days == 0 || days > bound {
            let pos = file.pos.value("requests.retention_days");
            file.invalid(
                pos,
                "requests.retention_days",
                format!("a retention of {days} days is outside 1 to {bound}"),
                Some("decided unblock requests are kept 365 days by default"),
            );
        } else {
            cfg.requests_retention_days = days;
        }
    }
    let listen = raw.listen.as_ref();
    let given = Given {
        users_file: raw.auth.as_ref().is_some_and(|a| a.users_file.is_some()),
        trace: raw.trace.as_ref().is_some_and(|t| t.path.is_some()),
        public_proxy: raw.public_proxy.is_some(),
        portal_url: raw.portal_url.is_some(),
        proxy_listen: listen
            .and_then(|l| l.proxy)
            .map(|_| file.pos.value("listen.proxy")),
        portal_listen: listen
            .and_then(|l| l.portal)
            .map(|_| file.pos.value("listen.portal")),
    };
    // Section by section; the diagnostics come out in this order.
    file.paths(&mut cfg, raw.policy.take(), raw.data_dir.take());
    file.listeners(
        &mut cfg,
        raw.listen.take(),
        raw.public_proxy.take(),
        raw.portal_url.take(),
    );
    file.names(
        &mut cfg,
        raw.connect_ports.take(),
        raw.hosts.take(),
        raw.internal.take(),
    );
    if let Some(a) = raw.auth.take() {
        file.auth(&mut cfg, a);
    }
    if let Some(d) = raw.directory.take() {
        file.directory(&mut cfg, d);
    }
    if let Some(t) = raw.trace.take() {
        file.trace(&mut cfg, t);
    }
    file.runtime(&mut cfg, &raw);
    if let Some(t) = raw.tls {
        file.tls(&mut cfg, t);
    }
    if let Some(l) = raw.limits {
        file.limits(&mut cfg.limits, l);
    }
    if let Some(u) = raw.categories_update {
        file.categories_update(&mut cfg.categories_update, u);
    }
    if let Some(p) = raw.pages {
        file.pages(&mut cfg, p);
    }
    if let Some(p) = raw.pac {
        file.pac(&mut cfg, p);
    }
    if let Some(s) = raw.store {
        file.store(&mut cfg, s);
    }
    if file.diags.has_errors() {
        Err(file.diags)
    } else {
        Ok((cfg, given))
    }
}

/// The file's text, parsed: its serde mirror and where each key stands. `None` (with
/// the diagnostic) when it cannot be read, is not YAML, or does not fit the mirror.
fn read(path: &Path, diags: &mut Diags) -> Option<(RawServer, Positions)> {
    let src = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            diags.error(
                "io",
                path,
                Pos::default(),
                None,
                format!("cannot read the server configuration: {e}"),
                None,
            );
            return None;
        }
    };
    let pos = match Positions::parse(&src) {
        Ok(p) => p,
        Err(e) => {
            diags.error(
                "yaml-syntax",
                path,
                e.pos,
                None,
                format!("YAML syntax error: {}", e.message),
                None,
            );
            return None;
        }
    };
    let de = serde_yaml::Deserializer::from_str(&src);
    match serde_path_to_error::deserialize(de) {
        Ok(raw) => Some((raw, pos)),
        Err(e) => {
            let key = e.path().to_string();
            let msg = e.into_inner().to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            diags.error("invalid-value", path, pos.key(&key), Some(&key), msg, None);
            None
        }
    }
}

/// The server file being read: where it is, where its keys stand, what is wrong so far.
/// One method per section, each putting its values over the defaults.
struct File<'a> {
    path: &'a Path,
    /// The file's folder: relative paths in the file start there.
    base: &'a Path,
    pos: Positions,
    diags: Diags,
}

impl File<'_> {
    /// A path of the file, relative to the file's folder.
    fn rel(&self, p: PathBuf) -> PathBuf {
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
    }

    /// An `invalid-value` error at `pos`, for `key`.
    fn invalid(&mut self, pos: Pos, key: &str, msg: String, help: Option<&str>) {
        self.diags.error(
            "invalid-value",
            self.path,
            pos,
            Some(key),
            msg,
            help.map(Into::into),
        );
    }

    /// `policy` and `data_dir` (which moves the users file and the trace with it).
    fn paths(&self, cfg: &mut Settings, policy: Option<PathBuf>, data_dir: Option<PathBuf>) {
        if let Some(p) = policy {
            cfg.policy = self.rel(p);
        }
        if let Some(d) = data_dir {
            cfg.data_dir = self.rel(d);
            cfg.auth.users_file = cfg.data_dir.join("users");
            cfg.trace_path = Some(cfg.data_dir.join("trace.log"));
        }
    }

    /// `listen`, and the addresses workstations use (`public_proxy`, `portal_url`),
    /// which default to the listeners'.
    fn listeners(
        &self,
        cfg: &mut Settings,
        listen: Option<RawListen>,
        public_proxy: Option<String>,
        portal_url: Option<String>,
    ) {
        if let Some(l) = listen {
            cfg.proxy = l.proxy.unwrap_or(cfg.proxy);
            cfg.portal = l.portal.unwrap_or(cfg.portal);
            cfg.admin = l.admin.unwrap_or(cfg.admin);
        }
        cfg.public_proxy = public_proxy.unwrap_or_else(|| cfg.proxy.to_string());
        cfg.portal_url = portal_url.unwrap_or_else(|| format!("http://{}", cfg.portal));
    }

    /// `connect_ports`, `hosts` (pinned names) and `internal` (sent DIRECT by the PAC).
    fn names(
        &self,
        cfg: &mut Settings,
        connect_ports: Option<Vec<u16>>,
        hosts: Option<BTreeMap<String, IpAddr>>,
        internal: Option<RawInternal>,
    ) {
        if let Some(p) = connect_ports {
            cfg.connect_ports = p;
        }
        if let Some(h) = hosts {
            cfg.hosts = h
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
        }
        if let Some(i) = internal {
            cfg.internal_domains = i.domains;
            cfg.internal_networks = i.networks;
        }
    }

    /// `auth`: the users file and where authentication applies.
    fn auth(&mut self, cfg: &mut Settings, a: RawAuth) {
        if let Some(f) = a.users_file {
            cfg.auth.users_file = self.rel(f);
        }
        cfg.auth.required = a.required;
        cfg.auth.optional = a.optional;
        if let Some(r) = a.realm {
            cfg.auth.realm = r;
        }
        cfg.auth.negotiate = a.negotiate.unwrap_or(false);
        if cfg.auth.negotiate && !cfg!(feature = "kerberos") {
            let pos = self.pos.value("auth.negotiate");
            self.invalid(
                pos,
                "auth.negotiate",
                "this build has no Kerberos (it was built without the `kerberos` feature)".into(),
                Some("use the Docker image or the service build, or `cargo build --release --features kerberos`"),
            );
        }
        cfg.auth.basic = a.basic.unwrap_or(true);
        cfg.auth.keytab = a.keytab.map(|k| self.rel(k));
        if let Some(k) = &cfg.auth.keytab
            && !k.is_file()
        {
            let pos = self.pos.value("auth.keytab");
            self.invalid(
                pos,
                "auth.keytab",
                format!("no keytab at {}", k.display()),
                Some("make it with ktpass (Active Directory) or kadmin's ktadd, mode 0600, owned by the proxy's user"),
            );
        }
        match a.user_name.as_deref() {
            None | Some("principal") => cfg.auth.user_name = UserName::Principal,
            Some("short") => cfg.auth.user_name = UserName::Short,
            Some(other) => {
                let pos = self.pos.value("auth.user_name");
                self.invalid(
                    pos,
                    "auth.user_name",
                    format!("unknown user name form {other:?}"),
                    Some("use `principal` (alice@MAIRIE.LOCAL) or `short` (alice)"),
                );
            }
        }
    }

    /// `directory`: checked here as far as can be without asking the server (URL,
    /// DNs, the password file and its mode); `check` and `serve` report it all at once.
    fn directory(&mut self, cfg: &mut Settings, d: RawDirectory) {
        let tls = d.url.starts_with("ldaps://");
        if !tls && !d.url.starts_with("ldap://") {
            let pos = self.pos.value("directory.url");
            self.invalid(
                pos,
                "directory.url",
                format!("not an LDAP URL: {:?}", d.url),
                Some("write ldaps://dc1.mairie.local or ldap://dc1.mairie.local with `starttls: true`"),
            );
        } else if !tls && !d.starttls && !d.allow_cleartext {
            let pos = self.pos.value("directory.url");
            self.invalid(
                pos,
                "directory.url",
                "passwords would travel in clear: ldap:// without StartTLS".into(),
                Some("use ldaps://, or `starttls: true`; `allow_cleartext: true` only for a lab"),
            );
        }
        for (key, dn) in [
            ("directory.base_dn", &d.base_dn),
            ("directory.bind_dn", &d.bind_dn),
        ] {
            if crate::identity::directory::normalize_dn(dn).is_none() {
                let pos = self.pos.value(key);
                self.invalid(
                    pos,
                    key,
                    format!("not a distinguished name: {dn:?}"),
                    Some("like DC=mairie,DC=local or CN=svc-proxy,OU=Services,DC=mairie,DC=local"),
                );
            }
        }
        let password_file = self.rel(d.bind_password_file);
        let bind_password = match crate::identity::directory::read_secret_file(&password_file) {
            Ok(p) => p,
            Err(e) => {
                let pos = self.pos.value("directory.bind_password_file");
                self.invalid(
                    pos,
                    "directory.bind_password_file",
                    e.to_string(),
                    Some("one line with the service account's password, mode 0600, owned by the proxy's user"),
                );
                String::new()
            }
        };
        let kind = match d.nesting.as_deref() {
            None | Some("active-directory") => Nesting::InChain,
            Some("walk") => Nesting::Walk {
                max_depth: crate::identity::directory::DEFAULT_WALK_DEPTH,
            },
            Some(other) => {
                let pos = self.pos.value("directory.nesting");
                self.invalid(
                    pos,
                    "directory.nesting",
                    format!("unknown nesting {other:?}"),
                    Some("use `active-directory` (one search, LDAP_MATCHING_RULE_IN_CHAIN) or `walk` (OpenLDAP: member, group by group)"),
                );
                Nesting::InChain
            }
        };
        let user_filter = d
            .user_filter
            .unwrap_or_else(|| crate::identity::directory::DEFAULT_USER_FILTER.into());
        if !user_filter.contains("{user}") {
            let pos = self.pos.value("directory.user_filter");
            self.invalid(
                pos,
                "directory.user_filter",
                format!("the filter {user_filter:?} does not name `{{user}}`"),
                Some("like (sAMAccountName={user})"),
            );
        }
        let secs = |v: Option<u64>, default: u64| Duration::from_secs(v.unwrap_or(default));
        cfg.auth.basic_directory = d.basic.unwrap_or(true);
        cfg.directory = Some(DirectorySettings {
            url: d.url,
            starttls: d.starttls,
            allow_cleartext: d.allow_cleartext,
            ca_file: d.ca_file.map(|f| self.rel(f)),
            base_dn: d.base_dn,
            bind_dn: d.bind_dn,
            bind_password,
            user_filter,
            strip_realm: d.strip_realm.unwrap_or(true),
            kind,
            group_ttl: secs(d.group_ttl_seconds, 300),
            first_wait: Duration::from_millis(d.first_wait_milliseconds.unwrap_or(2000)),
            timeout: secs(d.timeout_seconds, 5),
            bind_cache_ttl: Duration::from_secs(60),
        });
    }

    /// `trace`: where (`-`: standard output), in which format, with how long a queue.
    fn trace(&mut self, cfg: &mut Settings, t: RawTrace) {
        if let Some(p) = t.path {
            cfg.trace_path = if p == "-" {
                None
            } else {
                Some(self.rel(PathBuf::from(p)))
            };
        }
        if let Some(f) = t.format {
            if f != "json" && f != "squid" {
                let pos = self.pos.value("trace.format");
                self.invalid(
                    pos,
                    "trace.format",
                    format!("unknown trace format {f:?}"),
                    Some("use `json` (the full §4.8 record) or `squid` (Squid's access.log)"),
                );
            }
            cfg.trace_format = f;
        }
        if let Some(q) = t.queue {
            cfg.trace_queue = q.max(1);
        }
        for (i, o) in t.outputs.unwrap_or_default().into_iter().enumerate() {
            if let Some(out) = self.trace_output(i, o) {
                cfg.trace_outputs.push(out);
            }
        }
        let life = &mut cfg.trace_life;
        match (t.rotate.as_deref(), t.max_size_mb) {
            (None | Some("daily"), None) => {}
            (Some("size"), Some(mb)) if mb > 0 => life.rotate = Rotate::Size(mb << 20),
            (Some("size"), _) => {
                let pos = self.pos.value("trace.rotate");
                self.invalid(
                    pos,
                    "trace.rotate",
                    "`rotate: size` needs `max_size_mb`".into(),
                    Some("add `max_size_mb: 100` (a whole number of MiB, over 0)"),
                );
            }
            (Some("external"), None) => life.rotate = Rotate::External,
            (_, Some(_)) => {
                let pos = self.pos.value("trace.max_size_mb");
                self.invalid(
                    pos,
                    "trace.max_size_mb",
                    "`max_size_mb` applies only with `rotate: size`".into(),
                    Some("set `rotate: size`, or remove `max_size_mb`"),
                );
            }
            (Some(other), None) => {
                let pos = self.pos.value("trace.rotate");
                self.invalid(
                    pos,
                    "trace.rotate",
                    format!("unknown rotation {other:?}"),
                    Some(
                        "use `daily` (at local midnight), `size` (with `max_size_mb`) or \
                         `external` (logrotate renames the file and runs `charte-proxy rotate`)",
                    ),
                );
            }
        }
        if let Some(c) = t.compress {
            life.compress = match c.as_str() {
                "gzip" => Compress::Gzip,
                "zstd" => Compress::Zstd,
                "none" => Compress::None,
                other => {
                    let pos = self.pos.value("trace.compress");
                    self.invalid(
                        pos,
                        "trace.compress",
                        format!("unknown compression {other:?}"),
                        Some("use `gzip`, `zstd` or `none`"),
                    );
                    life.compress
                }
            };
        }
        match t.mode.as_deref() {
            None | Some("fast") => {}
            Some("durable") => cfg.trace_life.durable = true,
            Some(other) => {
                let pos = self.pos.value("trace.mode");
                self.invalid(
                    pos,
                    "trace.mode",
                    format!("unknown trace mode {other:?}"),
                    Some(
                        "use `fast` (never slows the proxy; a full queue drops lines, counted) \
                         or `durable` (never drops a line; a full queue slows requests down)",
                    ),
                );
            }
        }
        let bound = t.max_retention_days.unwrap_or(MAX_RETENTION_DAYS);
        if let Some(days) = t.retention_days {
            if days == 0 || days > bound {
                let pos = self.pos.value("trace.retention_days");
                self.invalid(
                    pos,
                    "trace.retention_days",
                    format!("a retention of {days} days is outside 1 to {bound}"),
                    Some(
                        "the CNIL recommends 6 months to 1 year for access logs; the CARA \
                         charter (§7.2) keeps them 1 year (365). To keep them longer, raise \
                         `trace.max_retention_days` knowingly",
                    ),
                );
            } else {
                cfg.trace_life.retention_days = days;
            }
        }
        if let Some(days) = t.access_retention_days {
            if days == 0 || days > bound {
                let pos = self.pos.value("trace.access_retention_days");
                self.invalid(
                    pos,
                    "trace.access_retention_days",
                    format!("a retention of {days} days is outside 1 to {bound}"),
                    Some(
                        "the access audit says who searched or exported whose trace; keep it \
                         at least as long as the trace (default 3 years)",
                    ),
                );
            } else {
                cfg.trace_life.access_retention_days = days;
            }
        }
        if let Some(r) = t.readers {
            cfg.trace_life.readers = r;
        }
        if let Some(n) = t.names_visible_to {
            cfg.trace_life.names_visible_to = n;
        }
    }

    /// `trace.outputs[i]`, checked.
    fn trace_output(&mut self, i: usize, o: RawTraceOutput) -> Option<TraceOutput> {
        let key = format!("trace.outputs[{i}]");
        let format = o.format.unwrap_or_else(|| "json".into());
        if format != "json" && format != "squid" {
            let k = format!("{key}.format");
            let pos = self.pos.value(&k);
            self.invalid(
                pos,
                &k,
                format!("unknown trace format {format:?}"),
                Some("use `json` (the full §4.8 record) or `squid` (Squid's access.log)"),
            );
            return None;
        }
        let to = match (o.path, o.syslog) {
            (Some(p), None) if p == "-" => TraceTo::Stdout,
            (Some(p), None) => TraceTo::File(self.rel(PathBuf::from(p))),
            (None, Some(url)) => {
                let k = format!("{key}.syslog");
                let to = match url.parse::<SyslogTo>() {
                    Ok(t) => t,
                    Err(e) => {
                        let pos = self.pos.value(&k);
                        self.invalid(pos, &k, e, None);
                        return None;
                    }
                };
                let name = o.facility.as_deref().unwrap_or("local0");
                let Some(facility) = syslog_facility(name) else {
                    let k = format!("{key}.facility");
                    let pos = self.pos.value(&k);
                    self.invalid(
                        pos,
                        &k,
                        format!("unknown syslog facility {name:?}"),
                        Some("use local0 … local7, daemon, user or authpriv"),
                    );
                    return None;
                };
                TraceTo::Syslog { to, facility }
            }
            _ => {
                let pos = self.pos.key(&key);
                self.invalid(
                    pos,
                    &key,
                    "an output is a file (`path`) or a collector (`syslog`), one of the two".into(),
                    Some(
                        "write `path: /var/log/charte/access.log` or `syslog: udp://10.0.0.5:514`",
                    ),
                );
                return None;
            }
        };
        Some(TraceOutput { to, format })
    }

    /// `pages`: the settings and the zone name; the templates themselves are compiled by
    /// `crate::pages` (for `check` and `serve`, which report them with their own file).
    fn pages(&mut self, cfg: &mut Settings, p: RawPages) {
        let s = &mut cfg.pages;
        s.templates = p.templates.map(|t| self.rel(t));
        s.town = p.town.unwrap_or_default();
        s.logo = p.logo.map(|l| self.rel(l));
        if let Some(sup) = p.support {
            s.support_phone = sup.phone.unwrap_or_default();
            s.support_mail = sup.mail.unwrap_or_default();
        }
    }

    /// `pac`: the proxies the PAC file lists, each a `host:port` safe inside the
    /// script's strings, every list non-empty, every network parsed.
    fn pac(&mut self, cfg: &mut Settings, p: RawPac) {
        if let Some(list) = p.proxies {
            cfg.pac.proxies = self.pac_proxies("pac.proxies", list);
        }
        for (i, g) in p.by_network.into_iter().enumerate() {
            let at = format!("pac.by_network[{i}]");
            let mut networks = Vec::new();
            if g.networks.is_empty() {
                let key = format!("{at}.networks");
                let pos = self.pos.key(&at);
                self.invalid(
                    pos,
                    &key,
                    "this group of networks names no network".into(),
                    Some("list the workstations' networks, e.g. `networks: [10.2.0.0/16]`"),
                );
            }
            for (j, n) in g.networks.iter().enumerate() {
                let parsed = n
                    .parse::<IpNet>()
                    .or_else(|_| n.parse::<IpAddr>().map(IpNet::from));
                match parsed {
                    Ok(net) => networks.push(net),
                    Err(_) => {
                        let key = format!("{at}.networks[{j}]");
                        let pos = self.pos.value(&key);
                        self.invalid(
                            pos,
                            &key,
                            format!("{n:?} is not a network"),
                            Some("write ADDRESS/PREFIX, e.g. 10.2.0.0/16, or one address"),
                        );
                    }
                }
            }
            let proxies = self.pac_proxies(&format!("{at}.proxies"), g.proxies);
            cfg.pac
                .by_network
                .push(crate::settings::PacGroup { networks, proxies });
        }
    }

    /// One list of `pac` proxies: at least one, each checked by [`pac_proxy_error`].
    fn pac_proxies(&mut self, key: &str, list: Vec<String>) -> Vec<String> {
        if list.is_empty() {
            let pos = self.pos.key(key);
            self.invalid(
                pos,
                key,
                "the list of proxies is empty".into(),
                Some(
                    "name at least one proxy as HOST:PORT, e.g. [p1.mairie.example:3128]; \
                     the PAC file never falls back to DIRECT",
                ),
            );
        }
        for (i, p) in list.iter().enumerate() {
            if let Some(why) = pac_proxy_error(p) {
                let k = format!("{key}[{i}]");
                let pos = self.pos.value(&k);
                self.invalid(
                    pos,
                    &k,
                    format!("{p:?} is not a proxy address: {why}"),
                    Some("write HOST:PORT, e.g. p1.mairie.example:3128 or 10.1.0.5:3128"),
                );
            }
        }
        list
    }

    /// `store`: SQLite unless `postgres` is given; its URL file must exist and be
    /// readable by its owner only (it holds the password; read again when the store
    /// opens, never kept in the settings).
    fn store(&mut self, cfg: &mut Settings, s: RawStore) {
        let Some(pg) = s.postgres else {
            return;
        };
        let Some(url_file) = pg.url_file.map(|p| self.rel(p)) else {
            let pos = self.pos.key("store.postgres");
            self.invalid(
                pos,
                "store.postgres.url_file",
                "store.postgres needs url_file".into(),
                Some("a file, mode 0600, holding postgres://USER:PASSWORD@HOST:5432/DATABASE"),
            );
            return;
        };
        if let Err(e) = crate::settings::read_url_file(&url_file) {
            let pos = self.pos.value("store.postgres.url_file");
            self.invalid(pos, "store.postgres.url_file", e, None);
        }
        let pool_size = pg.pool_size.unwrap_or(8);
        if !(1..=200).contains(&pool_size) {
            let pos = self.pos.value("store.postgres.pool_size");
            self.invalid(
                pos,
                "store.postgres.pool_size",
                format!("a pool of {pool_size} connections is outside 1 to 200"),
                Some("8, the default, is plenty for a proxy"),
            );
        }
        let ca_file = pg.ca_file.map(|p| self.rel(p));
        if let Some(ca) = &ca_file
            && !ca.is_file()
        {
            let pos = self.pos.value("store.postgres.ca_file");
            self.invalid(
                pos,
                "store.postgres.ca_file",
                format!("no file {}", ca.display()),
                None,
            );
        }
        cfg.store = crate::settings::StoreSettings::Postgres(crate::settings::PgSettings {
            url_file,
            pool_size,
            ca_file,
        });
    }

    /// The top-level switches of the running server: `reverse_dns`,
    /// `shutdown_grace_seconds`, `workers`, `worker_spin_microseconds`, `watch`.
    fn runtime(&mut self, cfg: &mut Settings, raw: &RawServer) {
        if let Some(r) = raw.reverse_dns {
            cfg.reverse_dns = r;
        }
        if let Some(s) = raw.shutdown_grace_seconds {
            cfg.shutdown_grace = Duration::from_secs(s);
        }
        if let Some(w) = raw.workers {
            if w > 1024 {
                let pos = self.pos.value("workers");
                self.invalid(
                    pos,
                    "workers",
                    format!("{w} worker threads is more than 1024"),
                    Some("use at most the number of CPUs, or 0 for one per CPU but one (the default)"),
                );
            }
            cfg.workers = w;
        }
        if let Some(us) = raw.worker_spin_microseconds {
            if us > 1000 {
                let pos = self.pos.value("worker_spin_microseconds");
                self.invalid(
                    pos,
                    "worker_spin_microseconds",
                    format!("a spin of {us} µs is more than 1000"),
                    Some("use 0 (never spin) to 100; the default, 5, suits most servers"),
                );
            }
            cfg.worker_spin = Duration::from_micros(us.min(1000));
        }
        if let Some(w) = raw.watch {
            cfg.watch = w;
        }
    }

    /// `categories_update`: HTTPS addresses only (the lists decide what is blocked: they
    /// come authenticated or not at all), sizes of at least 1 KiB, a folder beside the
    /// file.
    fn categories_update(
        &mut self,
        c: &mut crate::settings::CategoriesUpdate,
        u: RawCategoriesUpdate,
    ) {
        for (key, v, into) in [
            ("categories_update.url", u.url, &mut c.url),
            (
                "categories_update.checksum_url",
                u.checksum_url,
                &mut c.checksum_url,
            ),
        ] {
            let Some(v) = v else { continue };
            match url::Url::parse(&v) {
                Ok(parsed) if parsed.scheme() == "https" && parsed.host().is_some() => {
                    *into = Some(v);
                }
                Ok(_) => {
                    let pos = self.pos.value(key);
                    self.invalid(
                        pos,
                        key,
                        format!("{v:?} is not an https:// address"),
                        Some("the lists decide what is blocked: they are fetched over HTTPS only"),
                    );
                }
                Err(e) => {
                    let pos = self.pos.value(key);
                    self.invalid(pos, key, format!("{v:?} is not an address: {e}"), None);
                }
            }
        }
        c.folder = u.folder.map(|p| self.rel(p));
        for (key, v, into) in [
            ("categories_update.max_bytes", u.max_bytes, &mut c.max_bytes),
            (
                "categories_update.max_unpacked_bytes",
                u.max_unpacked_bytes,
                &mut c.max_unpacked_bytes,
            ),
        ] {
            let Some(v) = v else { continue };
            if v < 1024 {
                let pos = self.pos.value(key);
                self.invalid(pos, key, format!("{v} bytes is less than 1 KiB"), None);
            } else {
                *into = v;
            }
        }
        if let Some(n) = u.min_categories {
            c.min_categories = n.max(1);
        }
    }

    /// `tls`: inspection, the CA's files (both or neither), upstream roots, hello timeout.
    fn tls(&mut self, cfg: &mut Settings, t: RawTls) {
        if let Some(i) = t.inspect {
            cfg.tls.inspect = i;
        }
        cfg.tls.ca_cert = t.ca_cert.map(|p| self.rel(p));
        cfg.tls.ca_key = t.ca_key.map(|p| self.rel(p));
        if cfg.tls.ca_cert.is_some() != cfg.tls.ca_key.is_some() {
            let pos = self.pos.key("tls");
            self.invalid(
                pos,
                "tls",
                "`ca_cert` and `ca_key` go together".into(),
                Some("name both the CA certificate and its key, or neither (DATA/ca)"),
            );
        }
        cfg.tls.upstream_ca = t.upstream_ca.into_iter().map(|p| self.rel(p)).collect();
        if let Some(s) = t.hello_timeout_seconds {
            cfg.tls.hello_timeout = Duration::from_secs(s.max(1));
        }
    }

    /// `limits`: every timeout within (0, 86400] seconds, every size and cap at least
    /// its minimum; a value out of range is reported and the default kept.
    fn limits(&mut self, c: &mut Limits, l: RawLimits) {
        for (v, key, into) in [
            (
                l.header_timeout_seconds,
                "header_timeout_seconds",
                &mut c.header_timeout,
            ),
            (
                l.body_idle_timeout_seconds,
                "body_idle_timeout_seconds",
                &mut c.body_idle_timeout,
            ),
            (
                l.upstream_connect_timeout_seconds,
                "upstream_connect_timeout_seconds",
                &mut c.upstream_connect_timeout,
            ),
            (
                l.upstream_first_byte_timeout_seconds,
                "upstream_first_byte_timeout_seconds",
                &mut c.upstream_first_byte_timeout,
            ),
            (
                l.upstream_idle_timeout_seconds,
                "upstream_idle_timeout_seconds",
                &mut c.upstream_idle_timeout,
            ),
            (
                l.upstream_keepalive_seconds,
                "upstream_keepalive_seconds",
                &mut c.upstream_keepalive,
            ),
            (
                l.tunnel_idle_timeout_seconds,
                "tunnel_idle_timeout_seconds",
                &mut c.tunnel_idle_timeout,
            ),
        ] {
            self.seconds(v, key, into);
        }
        for (v, key, min, into) in [
            (
                l.max_head_bytes,
                "max_head_bytes",
                8192,
                &mut c.max_head_bytes,
            ),
            (l.max_headers, "max_headers", 1, &mut c.max_headers),
            (
                l.max_connections,
                "max_connections",
                1,
                &mut c.max_connections,
            ),
            (
                l.max_connections_per_client,
                "max_connections_per_client",
                1,
                &mut c.max_connections_per_client,
            ),
        ] {
            self.count(v, key, min, into);
        }
        if let Some(n) = l.h2_max_concurrent_streams {
            c.h2_max_concurrent_streams = n.max(1);
        }
    }

    /// A `limits.*_seconds` value into `into`, if given and within (0, 86400].
    fn seconds(&mut self, v: Option<f64>, key: &str, into: &mut Duration) {
        let Some(v) = v else { return };
        if v.is_finite() && v > 0.0 && v <= 86_400.0 {
            *into = Duration::from_secs_f64(v);
        } else {
            let key = format!("limits.{key}");
            let pos = self.pos.value(&key);
            self.invalid(
                pos,
                &key,
                format!("`{key}` must be a number of seconds above 0 and at most 86400, not {v}"),
                None,
            );
        }
    }

    /// A `limits.*` size or cap into `into`, if given and at least `min`.
    fn count(&mut self, v: Option<usize>, key: &str, min: usize, into: &mut usize) {
        let Some(v) = v else { return };
        if v >= min {
            *into = v;
        } else {
            let key = format!("limits.{key}");
            let pos = self.pos.value(&key);
            self.invalid(
                pos,
                &key,
                format!("`{key}` must be at least {min}, not {v}"),
                None,
            );
        }
    }
}

/// Why `p` cannot stand as one proxy of the PAC file (`PROXY p`), or `None`. It is
/// written inside a JavaScript string and a `;`-separated list: a quote, backslash,
/// semicolon or space would break the script or add to the list.
fn pac_proxy_error(p: &str) -> Option<String> {
    if let Some(c) = p
        .chars()
        .find(|c| matches!(c, '"' | '\'' | '\\' | ';') || c.is_whitespace())
    {
        return Some(format!(
            "{c:?} would break the PAC file (no quotes, backslashes, semicolons or spaces)"
        ));
    }
    let Some((host, port)) = p.rsplit_once(':') else {
        return Some("the port is missing".into());
    };
    if !port.parse::<u16>().is_ok_and(|n| n > 0) {
        return Some(format!("{port:?} is not a port (1 to 65535)"));
    }
    let ok_host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
        }
    };
    if !ok_host {
        return Some(format!(
            "{host:?} is not a host name or an address (an IPv6 address goes in brackets)"
        ));
    }
    None
}

/// The `serve` flags, as plain data: `cli` turns its command-line arguments into this,
/// so that `config` never depends on the command line. `None` or empty: not given.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub policy: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub portal_listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    /// File path, or `-` for standard output.
    pub trace: Option<String>,
    pub trace_format: Option<String>,
    pub public_proxy: Option<String>,
    pub portal_url: Option<String>,
    /// Replace the file's ports when not empty.
    pub connect_ports: Vec<u16>,
    /// Added to the file's pins (a flag wins for the same name).
    pub hosts: Vec<(String, IpAddr)>,
    /// Added to the file's networks.
    pub auth_required: Vec<IpNet>,
    pub auth_optional: Vec<IpNet>,
    pub users_file: Option<PathBuf>,
    pub no_watch: bool,
    pub reverse_dns: Option<bool>,
    pub shutdown_grace_seconds: Option<u64>,
    pub workers: Option<usize>,
    pub no_inspect: bool,
    /// The CA's certificate and key, named together.
    pub ca: Option<(PathBuf, PathBuf)>,
    /// Added to the file's extra roots.
    pub upstream_ca: Vec<PathBuf>,
    pub pidfile: Option<PathBuf>,
}

/// The server settings: defaults, then the file at `file` (if any), then `flags`. Every
/// command that uses the data folder resolves it here, so that `CHARTE_DATA`,
/// `--data-dir` and the server file mean the same for all of them.
pub fn resolve(file: Option<&Path>, flags: &Flags) -> Result<Settings, Diags> {
    let (mut c, given) = load_file(file)?;
    apply_flags(&mut c, flags, &given);
    Ok(c)
}

/// [`resolve`] for `serve`, which also refuses a wildcard listener that workstations
/// would be told to use (see [`check_public_addresses`]); other commands only need the
/// paths.
pub fn resolve_serve(file: Option<&Path>, flags: &Flags) -> Result<Settings, Diags> {
    let (mut c, given) = load_file(file)?;
    apply_flags(&mut c, flags, &given);
    let diags = check_public_addresses(&c, file, &given, flags);
    if diags.has_errors() {
        return Err(diags);
    }
    Ok(c)
}

/// A listener on a wildcard address (`0.0.0.0`, `::`) says nothing of how workstations
/// reach it: without `public_proxy` (for the proxy listener) or `portal_url` (for the
/// portal's), the PAC file and the pages would send them to `0.0.0.0`. Refused here,
/// before anything is created on disk.
fn check_public_addresses(c: &Settings, file: Option<&Path>, given: &Given, f: &Flags) -> Diags {
    let mut diags = Diags::default();
    // A flag (or its environment variable) has no place in a file: the file, else the
    // command line, is where the error points.
    let place = |pos: Option<Pos>, flag: bool| match (file, pos) {
        (Some(path), Some(pos)) if !flag => (path.to_path_buf(), pos),
        (Some(path), _) => (path.to_path_buf(), Pos::default()),
        (None, _) => (PathBuf::from("serve"), Pos::default()),
    };
    // With `pac.proxies`, the PAC file and the help page name those, not the listener.
    if c.proxy.ip().is_unspecified()
        && !given.public_proxy
        && f.public_proxy.is_none()
        && c.pac.proxies.is_empty()
    {
        let (path, pos) = place(given.proxy_listen, f.listen.is_some());
        diags.error(
            "public-proxy-missing",
            &path,
            pos,
            Some("public_proxy"),
            format!(
                "the proxy listens on the wildcard address {} (`--listen` / `listen.proxy`), \
                 which workstations cannot use: the PAC file and the pages need the \
                 address they reach the proxy at",
                c.proxy
            ),
            Some(
                "set `public_proxy: HOST:PORT` in the server file, or `--public-proxy \
                 HOST:PORT` (environment: CHARTE_PUBLIC_PROXY), or listen on one address"
                    .into(),
            ),
        );
    }
    if c.portal.ip().is_unspecified() && !given.portal_url && f.portal_url.is_none() {
        let (path, pos) = place(given.portal_listen, f.portal_listen.is_some());
        diags.error(
            "portal-url-missing",
            &path,
            pos,
            Some("portal_url"),
            format!(
                "the portal listens on the wildcard address {} (`--portal-listen` / \
                 `listen.portal`), which workstations cannot use: the PAC file and the \
                 block page need the URL they reach the portal at",
                c.portal
            ),
            Some(
                "set `portal_url: http://HOST:PORT` in the server file, or `--portal-url \
                 http://HOST:PORT` (environment: CHARTE_PORTAL_URL), or listen on one address"
                    .into(),
            ),
        );
    }
    diags
}

/// Puts the flags given over the settings read from the file. Paths given as flags are
/// taken as they are (relative to the working folder), not beside the file.
fn apply_flags(c: &mut Settings, f: &Flags, set: &Given) {
    if let Some(p) = &f.policy {
        c.policy = p.clone();
    }
    if let Some(d) = &f.data_dir {
        // The folder of the paths the file left to their default; a path the file
        // names stays where it is.
        c.data_dir = d.clone();
        if !set.users_file {
            c.auth.users_file = d.join("users");
        }
        if !set.trace {
            c.trace_path = Some(d.join("trace.log"));
        }
    }
    if let Some(p) = &f.pidfile {
        c.pidfile = Some(p.clone());
    }
    if let Some(a) = f.listen {
        if c.public_proxy == c.proxy.to_string() {
            c.public_proxy = a.to_string();
        }
        c.proxy = a;
    }
    if let Some(a) = f.portal_listen {
        if c.portal_url == format!("http://{}", c.portal) {
            c.portal_url = format!("http://{a}");
        }
        c.portal = a;
    }
    if let Some(a) = f.admin_listen {
        c.admin = a;
    }
    if let Some(t) = &f.trace {
        c.trace_path = if t == "-" {
            None
        } else {
            Some(PathBuf::from(t))
        };
    }
    if let Some(t) = &f.trace_format {
        c.trace_format = t.clone();
    }
    if let Some(p) = &f.public_proxy {
        c.public_proxy = p.clone();
    }
    if let Some(u) = &f.portal_url {
        c.portal_url = u.trim_end_matches('/').to_string();
    }
    if !f.connect_ports.is_empty() {
        c.connect_ports = f.connect_ports.clone();
    }
    c.hosts.extend(f.hosts.iter().cloned());
    c.auth.required.extend(f.auth_required.iter().cloned());
    c.auth.optional.extend(f.auth_optional.iter().cloned());
    if let Some(u) = &f.users_file {
        c.auth.users_file = u.clone();
    }
    if f.no_watch {
        c.watch = false;
    }
    if f.no_inspect {
        c.tls.inspect = false;
    }
    if let Some((cert, key)) = &f.ca {
        c.tls.ca_cert = Some(cert.clone());
        c.tls.ca_key = Some(key.clone());
    }
    c.tls.upstream_ca.extend(f.upstream_ca.iter().cloned());
    if let Some(r) = f.reverse_dns {
        c.reverse_dns = r;
    }
    if let Some(g) = f.shutdown_grace_seconds {
        c.shutdown_grace = Duration::from_secs(g);
    }
    if let Some(w) = f.workers {
        c.workers = w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<Settings, Diags> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("server.yaml");
        std::fs::write(&path, yaml).expect("written");
        super::load(Some(&path))
    }

    #[test]
    fn the_store_is_sqlite_by_default_and_postgres_needs_a_private_url_file() {
        use crate::settings::{PgSettings, StoreSettings};
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            load("workers: 1\n").expect("valid").store,
            StoreSettings::Sqlite
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let url = dir.path().join("pg-url");
        std::fs::write(&url, "postgres://charte:secret@db:5432/charte\n").expect("written");
        std::fs::set_permissions(&url, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let yaml = format!(
            "store:\n  postgres:\n    url_file: {}\n    pool_size: 4\n",
            url.display()
        );
        assert_eq!(
            load(&yaml).expect("valid").store,
            StoreSettings::Postgres(PgSettings {
                url_file: url.clone(),
                pool_size: 4,
                ca_file: None,
            })
        );
        std::fs::set_permissions(&url, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let diags = load(&yaml).expect_err("refused");
        let text: Vec<String> = diags.errors().map(|d| d.to_string()).collect();
        assert_eq!(text.len(), 1, "{text:?}");
        assert!(text[0].contains(":3:"), "{}", text[0]);
        assert!(
            text[0].contains(&format!("chmod 600 {}", url.display())),
            "{}",
            text[0]
        );
        assert!(!text[0].contains("secret"), "{}", text[0]);
        let diags = load("store:\n  postgres:\n    url: postgres://x\n").expect_err("refused");
        let text: Vec<String> = diags.errors().map(|d| d.to_string()).collect();
        assert!(text[0].contains("url"), "{text:?}");
    }

    #[test]
    fn worker_spin_defaults_to_5_us_and_can_be_turned_off() {
        assert_eq!(
            load("workers: 1\n").expect("valid").worker_spin,
            Duration::from_micros(5)
        );
        assert_eq!(
            load("worker_spin_microseconds: 0\n")
                .expect("valid")
                .worker_spin,
            Duration::ZERO
        );
        assert_eq!(
            load("worker_spin_microseconds: 50\n")
                .expect("valid")
                .worker_spin,
            Duration::from_micros(50)
        );
    }

    #[test]
    fn a_worker_spin_above_a_millisecond_is_refused_with_its_line() {
        let diags = load("workers: 1\nworker_spin_microseconds: 5000\n").expect_err("refused");
        let text: Vec<String> = diags.errors().map(|d| d.to_string()).collect();
        assert_eq!(text.len(), 1, "{text:?}");
        assert!(text[0].contains(":2:"), "{}", text[0]);
        assert!(text[0].contains("worker_spin_microseconds"), "{}", text[0]);
        assert!(text[0].contains("5000"), "{}", text[0]);
    }

    #[test]
    fn pages_paths_are_relative_to_the_file_and_an_unknown_zone_is_refused_with_its_line() {
        let cfg = load(
            "pages:\n  templates: gabarits\n  logo: blason.png\n  town: Arras\n  support: {phone: '03 21', mail: s@arras.fr}\n",
        )
        .expect("valid");
        assert!(
            cfg.pages
                .templates
                .as_ref()
                .expect("set")
                .ends_with("gabarits")
        );
        assert!(cfg.pages.templates.as_ref().expect("set").is_absolute());
        assert!(
            cfg.pages
                .logo
                .as_ref()
                .expect("set")
                .ends_with("blason.png")
        );
        assert_eq!(
            (
                cfg.pages.town.as_str(),
                cfg.pages.support_phone.as_str(),
                cfg.pages.time_zone.as_str()
            ),
            ("Arras", "03 21", "Europe/Paris")
        );
        let diags = load("pages:\n  town: Arras\ntime_zone: Europe/Arras\n").expect_err("refused");
        let text: Vec<String> = diags.errors().map(|d| d.to_string()).collect();
        assert_eq!(text.len(), 1, "{text:?}");
        assert!(text[0].contains(":3:"), "{}", text[0]);
        assert!(
            text[0].contains("unknown time zone \"Europe/Arras\""),
            "{}",
            text[0]
        );
        let diags = load("pages:\n  colour: red\n").expect_err("refused");
        assert!(diags.errors().any(|d| d.to_string().contains("colour")));
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_the_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("server.yaml");
        let yaml = "data_dir: d\nlisten:\n  proxy: 127.0.0.1:4128\nreverse_dns: false\n";
        std::fs::write(&path, yaml).expect("written");
        let flags = Flags {
            listen: Some("127.0.0.1:5128".parse().expect("address")),
            reverse_dns: Some(true),
            ..Flags::default()
        };
        let s = resolve(Some(&path), &flags).expect("valid");
        assert_eq!(s.proxy, "127.0.0.1:5128".parse().expect("address"));
        assert_eq!(s.public_proxy, "127.0.0.1:5128", "follows the listener");
        assert!(s.reverse_dns);
        assert_eq!(s.auth.users_file, dir.path().join("d").join("users"));
        assert_eq!(s.portal, Settings::default().portal);
    }

    #[test]
    fn a_wildcard_listener_needs_the_address_workstations_use() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("server.yaml");
        let yaml = "listen:\n  proxy: 0.0.0.0:3128\n  portal: '[::]:3129'\n";
        std::fs::write(&path, yaml).expect("written");
        let diags = resolve_serve(Some(&path), &Flags::default()).expect_err("refused");
        // Other commands only read paths: the same file is fine for them.
        resolve(Some(&path), &Flags::default()).expect("paths only");
        let text: Vec<String> = diags.errors().map(|d| d.to_string()).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text[0].contains(":2:") && text[0].contains("public_proxy"),
            "{text:?}"
        );
        assert!(
            text[1].contains(":3:") && text[1].contains("portal_url"),
            "{text:?}"
        );
        let flags = Flags {
            public_proxy: Some("proxy.mairie.example:3128".into()),
            portal_url: Some("http://proxy.mairie.example:3129".into()),
            ..Flags::default()
        };
        let s = resolve_serve(Some(&path), &flags).expect("valid");
        assert_eq!(s.public_proxy, "proxy.mairie.example:3128");
        // Without a file, the flags alone.
        let flags = Flags {
            listen: Some("0.0.0.0:3128".parse().expect("address")),
            ..Flags::default()
        };
        let diags = resolve_serve(None, &flags).expect_err("refused");
        let text: Vec<String> = diags.errors().map(|d| d.to_string()).collect();
        assert_eq!(text.len(), 1, "{text:?}");
        assert!(text[0].contains("--public-proxy"), "{text:?}");
    }

    #[test]
    fn pac_proxies_and_orders_by_network_are_read() {
        let s = load(
            "pac:\n  proxies: [p1.mairie.example:3128, '10.0.0.2:3128']\n  by_network:\n    - networks: [10.2.0.0/16, 10.3.0.7]\n      proxies: ['[2001:db8::1]:3128', p1.mairie.example:3128]\n",
        )
        .expect("valid");
        assert_eq!(s.pac.proxies, ["p1.mairie.example:3128", "10.0.0.2:3128"]);
        assert_eq!(s.pac.by_network.len(), 1);
        let g = &s.pac.by_network[0];
        assert_eq!(
            g.networks,
            [
                "10.2.0.0/16".parse::<IpNet>().unwrap(),
                "10.3.0.7/32".parse().unwrap()
            ]
        );
        assert_eq!(
            s.proxies_for("10.3.0.7".parse().unwrap())[0],
            "[2001:db8::1]:3128"
        );
        assert_eq!(
            s.proxies_for("10.3.0.8".parse().unwrap())[0],
            "p1.mairie.example:3128"
        );
        // Without `pac`, `public_proxy` alone, as with one proxy.
        let s = load("public_proxy: proxy.mairie.example:3128\n").expect("valid");
        assert_eq!(
            s.proxies_for("10.3.0.7".parse().unwrap()),
            ["proxy.mairie.example:3128"]
        );
    }

    #[test]
    fn a_pac_entry_that_would_break_the_script_is_refused_with_its_line() {
        let yaml = "pac:\n  proxies:\n    - p1.mairie.example:3128\n    - 'p2.mairie.example:3128\"; DIRECT'\n    - p3.mairie.example\n    - p4 .example:3128\n    - 'p5\\.example:3128'\n  by_network:\n    - networks: [10.2.0.0/33]\n      proxies: []\n    - proxies: [p1.mairie.example:0]\n";
        let diags = load(yaml).expect_err("refused");
        let text: Vec<String> = diags.errors().map(|d| d.to_string()).collect();
        let want = [
            (":4:", "pac.proxies[1]", "would break the PAC file"),
            (":5:", "pac.proxies[2]", "the port is missing"),
            (":6:", "pac.proxies[3]", "would break the PAC file"),
            (":7:", "pac.proxies[4]", "would break the PAC file"),
            (":9:", "pac.by_network[0].networks[0]", "is not a network"),
            (
                ":10:",
                "pac.by_network[0].proxies",
                "the list of proxies is empty",
            ),
            (":11:", "pac.by_network[1].networks", "names no network"),
            (":11:", "pac.by_network[1].proxies[0]", "is not a port"),
        ];
        assert_eq!(text.len(), want.len(), "{text:#?}");
        for (t, (line, key, msg)) in text.iter().zip(want) {
            assert!(
                t.contains(line) && t.contains(&format!("(at `{key}`)")) && t.contains(msg),
                "{t}\nwanted {line} {key} {msg}"
            );
            assert!(t.contains("help: "), "says what to fix: {t}");
        }
        let diags = load("pac:\n  proxies: []\n").expect_err("refused");
        let t = diags.errors().next().unwrap().to_string();
        assert!(
            t.contains(":2:") && t.contains("never falls back to DIRECT"),
            "{t}"
        );
    }

    #[test]
    fn pac_proxies_stand_for_public_proxy_on_a_wildcard_listener() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("server.yaml");
        let yaml = "listen:\n  proxy: 0.0.0.0:3128\nportal_url: http://portail.mairie.example:3129\npac:\n  proxies: [p1.mairie.example:3128, p2.mairie.example:3128]\n";
        std::fs::write(&path, yaml).expect("written");
        let s = resolve_serve(Some(&path), &Flags::default()).expect("valid");
        assert_eq!(
            s.proxies_for("10.0.0.1".parse().unwrap())[0],
            "p1.mairie.example:3128"
        );
    }
}
