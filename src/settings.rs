//! Resolved server settings: what the running server reads — listeners, data folder,
//! trace, authentication, TLS interception, limits. Plain data with their defaults: no
//! YAML, no serde, no command line. `config::server` fills them from the server file and
//! the `serve` flags at start; `server/`, the pipeline, the portal and the admin pages
//! only read them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

/// The shipped policy, relative to the repository (or the container's working folder).
pub const DEFAULT_POLICY: &str = "policies/charte.yaml";

/// Where proxy authentication applies.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    pub users_file: PathBuf,
    /// Clients here must authenticate (407 otherwise).
    pub required: Vec<IpNet>,
    /// Clients here may authenticate; wrong credentials are refused, none is anonymous.
    pub optional: Vec<IpNet>,
    pub realm: String,
    /// Offer Kerberos single sign-on (`Proxy-Authenticate: Negotiate`); the build needs
    /// the `kerberos` feature, the process a keytab (`KRB5_KTNAME` or `auth.keytab`).
    pub negotiate: bool,
    /// Offer Basic (the users file, and the directory when `basic_directory`).
    pub basic: bool,
    /// Check Basic passwords against the directory (a bind as the user) after the
    /// users file.
    pub basic_directory: bool,
    /// How the trace names a Kerberos principal.
    pub user_name: UserName,
    /// The service keytab; `None`: `KRB5_KTNAME` or the system's default.
    pub keytab: Option<PathBuf>,
}

/// How a Kerberos principal is named in the trace, the Squid log and the groups'
/// `users`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UserName {
    /// `alice@MAIRIE.LOCAL`, unique across realms.
    #[default]
    Principal,
    /// `alice`, as the users file and Basic name users.
    Short,
}

/// How nested groups are found in the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nesting {
    /// Active Directory: one search, `(member:1.2.840.113556.1.4.1941:=<user dn>)` on
    /// the `group` objects, gives every group the user is in, directly or not. Checked
    /// on connection: a directory whose root DSE does not advertise Active Directory
    /// is refused (elsewhere the filter would silently match nothing).
    InChain,
    /// Any directory: the groups whose `member` is the user, then the groups whose
    /// `member` is one of those, and so on breadth-first, each group once, at most
    /// `max_depth` levels deep.
    Walk { max_depth: u32 },
}

/// The directory (LDAP, Active Directory): where it is, how to reach it, how it is
/// asked. Used by `identity::directory`.
#[derive(Clone)]
pub struct DirectorySettings {
    /// `ldaps://host[:port]` or `ldap://host[:port]`.
    pub url: String,
    /// StartTLS on an `ldap://` URL.
    pub starttls: bool,
    /// Lets an `ldap://` URL without StartTLS through: passwords then travel in clear.
    /// Only for a lab.
    pub allow_cleartext: bool,
    /// PEM file of the CA(s) that sign the directory's certificate; the system's roots
    /// when `None`.
    pub ca_file: Option<PathBuf>,
    /// Where users and groups are searched (subtree).
    pub base_dn: String,
    /// The service account that searches.
    pub bind_dn: String,
    /// Its password (read from a file of mode 0600); never printed.
    pub bind_password: String,
    /// Filter that finds a user, `{user}` standing for the name (escaped per RFC 4515).
    pub user_filter: String,
    /// `alice@MAIRIE.TEST` (a Kerberos principal) and `MAIRIE\alice` (a Windows
    /// down-level name) are looked up as `alice`.
    pub strip_realm: bool,
    pub kind: Nesting,
    /// How long a user's groups are fresh.
    pub group_ttl: Duration,
    /// The longest a request waits for a user's first group lookup.
    pub first_wait: Duration,
    /// The longest one LDAP operation (connection, bind, search) may take.
    pub timeout: Duration,
    /// How long a successful password check is remembered.
    pub bind_cache_ttl: Duration,
}

/// How a client at an address is treated for authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Off,
    Optional,
    Required,
}

impl AuthSettings {
    pub fn mode(&self, ip: IpAddr) -> AuthMode {
        let ip = ip.to_canonical();
        if self.required.iter().any(|n| n.contains(&ip)) {
            AuthMode::Required
        } else if self.optional.iter().any(|n| n.contains(&ip)) {
            AuthMode::Optional
        } else {
            AuthMode::Off
        }
    }

    pub fn enabled(&self) -> bool {
        !self.required.is_empty() || !self.optional.is_empty()
    }
}

/// TLS interception settings.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Decrypt tunnels (except `no_inspect` sites and groups with `inspect: false`).
    /// Off: every tunnel is relayed as bytes, as a plain CONNECT proxy does.
    pub inspect: bool,
    /// The CA's certificate and key; `None`: DATA/ca/ca.pem and DATA/ca/ca.key, created
    /// on first start if absent.
    pub ca_cert: Option<PathBuf>,
    pub ca_key: Option<PathBuf>,
    /// Roots trusted for upstream servers besides the system's.
    pub upstream_ca: Vec<PathBuf>,
    pub hello_timeout: Duration,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            inspect: true,
            ca_cert: None,
            ca_key: None,
            upstream_ca: Vec::new(),
            hello_timeout: Duration::from_secs(10),
        }
    }
}

/// Sizes, timeouts and connection caps. Defaults and why: README, "Limits".
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request head (request line + headers); beyond: 431.
    pub max_head_bytes: usize,
    /// Most header fields in a request head; beyond: 431.
    pub max_headers: usize,
    /// Time a client has to send a whole request head (slowloris).
    pub header_timeout: Duration,
    /// Longest wait for the next piece of a request body (slow POST); then 408.
    pub body_idle_timeout: Duration,
    /// Resolving and connecting to the site.
    pub upstream_connect_timeout: Duration,
    /// From the request sent to the response head; then 504.
    pub upstream_first_byte_timeout: Duration,
    /// Longest wait for the next piece of a response body; then the client's connection
    /// is cut (a truncated body must not look complete).
    pub upstream_idle_timeout: Duration,
    /// How long an idle pooled connection to a site is kept.
    pub upstream_keepalive: Duration,
    /// A tunnel with no byte either way for this long is closed.
    pub tunnel_idle_timeout: Duration,
    /// Open client connections on the proxy listener; beyond: 503.
    pub max_connections: usize,
    /// Open client connections from one address; beyond: 503.
    pub max_connections_per_client: usize,
    /// HTTP/2 streams at once in one inspected connection.
    pub h2_max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 64 * 1024,
            max_headers: 100,
            header_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            upstream_connect_timeout: Duration::from_secs(10),
            upstream_first_byte_timeout: Duration::from_secs(120),
            upstream_idle_timeout: Duration::from_secs(120),
            upstream_keepalive: Duration::from_secs(60),
            tunnel_idle_timeout: Duration::from_secs(900),
            max_connections: 16_384,
            max_connections_per_client: 1_024,
            h2_max_concurrent_streams: 128,
        }
    }
}

/// Resolved server settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: PathBuf,
    pub data_dir: PathBuf,
    pub proxy: SocketAddr,
    pub portal: SocketAddr,
    pub admin: SocketAddr,
    pub public_proxy: String,
    pub portal_url: String,
    pub connect_ports: Vec<u16>,
    pub hosts: BTreeMap<String, IpAddr>,
    pub internal_domains: Vec<String>,
    pub internal_networks: Vec<IpNet>,
    pub auth: AuthSettings,
    /// The directory (LDAP, Active Directory) for groups and Basic passwords.
    pub directory: Option<DirectorySettings>,
    /// `None`: standard output.
    pub trace_path: Option<PathBuf>,
    pub trace_format: String,
    pub trace_queue: usize,
    pub reverse_dns: bool,
    pub shutdown_grace: Duration,
    /// Threads serving proxy connections (`server::workers`); 0: one per CPU but one.
    pub workers: usize,
    /// A worker out of work spins this long before it sleeps (`server::workers`).
    pub worker_spin: Duration,
    /// Reload when a file under the policy changes (SIGHUP always reloads).
    pub watch: bool,
    pub tls: TlsSettings,
    pub limits: Limits,
    /// A file where `serve` writes its process id (for `reload`, `rotate`, init
    /// scripts); the data folder's lock file holds it too.
    pub pidfile: Option<PathBuf>,
    /// More outputs of the trace beside `trace_path` (`trace.outputs`).
    pub trace_outputs: Vec<TraceOutput>,
    /// How trace files rotate, are compressed and deleted (`trace.rotate`, …).
    pub trace_life: TraceLife,
    /// The town's time zone (IANA name): local midnight for rotation, dates on pages.
    pub time_zone: String,
    /// Days the unblock store keeps decided requests, their decisions and block counts
    /// (`requests.retention_days`).
    pub requests_retention_days: u32,
    /// `categories update`: the archive's address and the bounds it is checked against.
    pub categories_update: CategoriesUpdate,
    /// The pages' templates and the town's details they show (`pages`).
    pub pages: PagesSettings,
    /// The proxies the PAC file lists, in order, by the workstation's network (`pac`).
    pub pac: PacSettings,
    /// Where the unblock requests are kept (`store`): SQLite in the data folder, or a
    /// PostgreSQL database several proxies share.
    pub store: StoreSettings,
}

/// The proxies the PAC file names (`pac:` in the server file), for several proxies
/// (README, "Several proxies"). Empty: the PAC names `public_proxy` alone, as with one
/// proxy. Every entry is a checked `host:port`, safe to write inside a JS string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PacSettings {
    /// The default order (`pac.proxies`).
    pub proxies: Vec<String>,
    /// Orders by the address of the workstation that fetches the PAC file
    /// (`pac.by_network`); the first group whose networks hold it wins.
    pub by_network: Vec<PacGroup>,
}

/// One `pac.by_network` entry: the workstations of these networks get these proxies.
#[derive(Debug, Clone, PartialEq)]
pub struct PacGroup {
    pub networks: Vec<IpNet>,
    pub proxies: Vec<String>,
}

impl Settings {
    /// The proxies, in order, for the workstation at `client`: the first `pac.by_network`
    /// group that holds it, else `pac.proxies`, else `public_proxy` alone. Chosen by the
    /// portal from the address that fetches the PAC file, not by `myIpAddress()` in the
    /// script (which answers any of a multi-homed machine's addresses).
    pub fn proxies_for(&self, client: IpAddr) -> &[String] {
        let ip = client.to_canonical();
        self.pac
            .by_network
            .iter()
            .find(|g| g.networks.iter().any(|n| n.contains(&ip)))
            .map(|g| &g.proxies[..])
            .filter(|p| !p.is_empty())
            .or(Some(&self.pac.proxies[..]).filter(|p| !p.is_empty()))
            .unwrap_or(std::slice::from_ref(&self.public_proxy))
    }
}

/// `store:`: the unblock store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreSettings {
    /// `DATA_DIR/requests.db`.
    #[default]
    Sqlite,
    Postgres(PgSettings),
}

/// `store.postgres`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSettings {
    /// The file holding the database URL with its password (mode 0600 or 0400); the
    /// URL itself is read when the store opens, and never kept in the settings.
    pub url_file: PathBuf,
    /// Most connections to the database.
    pub pool_size: usize,
    /// The CA of the database's certificate: TLS on, verified against it.
    pub ca_file: Option<PathBuf>,
}

/// Reads the database URL from `path`, which only its owner may read (mode 0600 or
/// 0400): it holds a password.
pub fn read_url_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} holds the database password and is readable by others (mode {mode:04o}); \
             run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let url = text.trim();
    if url.is_empty() {
        return Err(format!(
            "{} is empty; write the database URL in it: \
             postgres://USER:PASSWORD@HOST:5432/DATABASE",
            path.display()
        ));
    }
    Ok(url.to_string())
}

impl Settings {
    /// The settings (named as in the server file) that differ between `self` and
    /// `other`: what a reload says it did not apply.
    pub fn changed_from(&self, other: &Settings) -> Vec<&'static str> {
        fn differ(a: &impl std::fmt::Debug, b: &impl std::fmt::Debug) -> bool {
            format!("{a:?}") != format!("{b:?}")
        }
        let (a, b) = (self, other);
        let mut out = Vec::new();
        let mut check = |name: &'static str, changed: bool| {
            if changed {
                out.push(name);
            }
        };
        check("policy", differ(&a.policy, &b.policy));
        check("data_dir", differ(&a.data_dir, &b.data_dir));
        check(
            "listen",
            differ(&(a.proxy, a.portal, a.admin), &(b.proxy, b.portal, b.admin)),
        );
        check("public_proxy", differ(&a.public_proxy, &b.public_proxy));
        check("portal_url", differ(&a.portal_url, &b.portal_url));
        check("pac", a.pac != b.pac);
        check("connect_ports", differ(&a.connect_ports, &b.connect_ports));
        check("hosts", differ(&a.hosts, &b.hosts));
        check(
            "internal",
            differ(
                &(&a.internal_domains, &a.internal_networks),
                &(&b.internal_domains, &b.internal_networks),
            ),
        );
        check("auth", differ(&a.auth, &b.auth));
        check("directory", differ(&a.directory, &b.directory));
        check(
            "trace",
            differ(
                &(
                    &a.trace_path,
                    &a.trace_format,
                    a.trace_queue,
                    &a.trace_outputs,
                ),
                &(
                    &b.trace_path,
                    &b.trace_format,
                    b.trace_queue,
                    &b.trace_outputs,
                ),
            ),
        );
        let mut la = a.trace_life.clone();
        let mut lb = b.trace_life.clone();
        la.readers.clear();
        lb.readers.clear();
        check("trace (life)", la != lb);
        check("reverse_dns", a.reverse_dns != b.reverse_dns);
        check(
            "shutdown_grace_seconds",
            a.shutdown_grace != b.shutdown_grace,
        );
        check(
            "workers",
            (a.workers, a.worker_spin) != (b.workers, b.worker_spin),
        );
        check("watch", a.watch != b.watch);
        check("tls", differ(&a.tls, &b.tls));
        check("limits", differ(&a.limits, &b.limits));
        check("pidfile", a.pidfile != b.pidfile);
        check(
            "time_zone (trace rotation, schedules)",
            a.time_zone != b.time_zone,
        );
        check(
            "requests",
            a.requests_retention_days != b.requests_retention_days,
        );
        check(
            "categories_update",
            differ(&a.categories_update, &b.categories_update),
        );
        check("store", a.store != b.store);
        out
    }
}

/// The life of the trace's files: rotated, compressed, deleted after the retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceLife {
    pub rotate: Rotate,
    pub compress: Compress,
    /// Rotated files older than this many days are deleted.
    pub retention_days: u32,
    /// `trace.mode: durable`: a full queue slows requests down instead of dropping
    /// lines, and files are synced after each batch.
    pub durable: bool,
    /// `trace.readers`: the administrators (names of the admins file) who may search
    /// and export the trace from the admin pages. Nobody by default.
    pub readers: Vec<String>,
    /// `trace.names_visible_to`: the administrators who see people's names on the
    /// dashboard; everyone else sees pseudonyms. Nobody by default.
    pub names_visible_to: Vec<String>,
    /// `trace.access_retention_days`: days the access audit (`trace-access.log`: every
    /// search and export) keeps a line; independent of the trace's own retention.
    pub access_retention_days: u32,
}

/// When a trace file is closed and a new one started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotate {
    /// At local midnight (the default).
    Daily,
    /// When the file reaches this many bytes (and at local midnight).
    Size(u64),
    /// Never by itself: an external tool renames the file and sends SIGUSR1
    /// (`charte-proxy rotate`). Compression and retention are then its business too.
    External,
}

/// How closed trace files are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    None,
    /// `.gz`: read by zcat, zgrep, SARG.
    Gzip,
    /// `.zst`: smaller and faster; zstdcat reads it.
    Zstd,
}

impl Compress {
    /// The file name suffix, with its dot; `""` for none.
    pub fn suffix(self) -> &'static str {
        match self {
            Compress::None => "",
            Compress::Gzip => ".gz",
            Compress::Zstd => ".zst",
        }
    }
}

/// Longest trace retention a server file may set unless it raises the bound
/// (`trace.max_retention_days`): three years.
pub const MAX_RETENTION_DAYS: u32 = 3 * 365;

impl Default for TraceLife {
    fn default() -> Self {
        TraceLife {
            rotate: Rotate::Daily,
            compress: Compress::Gzip,
            // The CARA charter (§7.2) keeps the trace one year.
            retention_days: 365,
            durable: false,
            readers: Vec::new(),
            names_visible_to: Vec::new(),
            // Who read whose trace is kept longer than the trace itself: three years.
            access_retention_days: MAX_RETENTION_DAYS,
        }
    }
}

/// Where `categories update` fetches the UT1 archive, and the bounds a new archive must
/// keep to be put in force (README, "Category updates").
#[derive(Debug, Clone, PartialEq)]
pub struct CategoriesUpdate {
    /// The archive (`blacklists.tar.gz`), HTTPS only.
    pub url: Option<String>,
    /// A `sha256sum`-format file for the archive, HTTPS only; none: no checksum.
    pub checksum_url: Option<String>,
    /// The category folder replaced; none: the policy's folder named `ut1`.
    pub folder: Option<PathBuf>,
    /// Largest archive downloaded (compressed). UT1 is about 20 MiB today.
    pub max_bytes: u64,
    /// Most bytes unpacked: a decompression bomb stops here. UT1 unpacks to ~250 MiB.
    pub max_unpacked_bytes: u64,
    /// Fewest categories a new archive must hold: an empty or truncated archive must
    /// not wipe the lists. UT1 has about 70.
    pub min_categories: usize,
}

impl Default for CategoriesUpdate {
    fn default() -> Self {
        CategoriesUpdate {
            url: None,
            checksum_url: None,
            folder: None,
            max_bytes: 256 << 20,
            max_unpacked_bytes: 2 << 30,
            min_categories: 10,
        }
    }
}

/// `pages:` in the server file: where the templates that replace the shipped ones are,
/// and what every page shows of the town (`crate::pages::templates`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagesSettings {
    /// A folder whose `.html`/`.css` files replace the shipped templates of the same
    /// name; `None`: the shipped ones only.
    pub templates: Option<PathBuf>,
    /// The town's name, above every page; empty: none shown.
    pub town: String,
    /// An image inlined above every page (a `data:` URI: a page loads nothing else).
    pub logo: Option<PathBuf>,
    /// The IT service's phone and mail, at the foot of every page; empty: not shown.
    pub support_phone: String,
    pub support_mail: String,
    /// The IANA name of the zone the pages show times in.
    pub time_zone: String,
}

impl Default for PagesSettings {
    fn default() -> Self {
        PagesSettings {
            templates: None,
            town: String::new(),
            logo: None,
            support_phone: String::new(),
            support_mail: String::new(),
            time_zone: "Europe/Paris".into(),
        }
    }
}

/// One more output of the trace, in its own format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceOutput {
    pub to: TraceTo,
    /// `json` or `squid`.
    pub format: String,
}

/// Where a trace output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceTo {
    Stdout,
    File(PathBuf),
    Syslog { to: SyslogTo, facility: u8 },
}

impl Settings {
    /// The lock file of the data folder: held by the running `serve`, which writes its
    /// process id in it.
    pub fn lock_file(&self) -> PathBuf {
        self.data_dir.join(LOCK_FILE)
    }
}

/// The name of the data folder's lock file.
pub const LOCK_FILE: &str = "charte-proxy.lock";

impl Default for Settings {
    fn default() -> Self {
        let data = PathBuf::from("data");
        Settings {
            policy: PathBuf::from(DEFAULT_POLICY),
            proxy: "127.0.0.1:3128".parse().unwrap(),
            portal: "127.0.0.1:3129".parse().unwrap(),
            admin: "127.0.0.1:3130".parse().unwrap(),
            public_proxy: "127.0.0.1:3128".into(),
            portal_url: "http://127.0.0.1:3129".into(),
            connect_ports: vec![443],
            hosts: BTreeMap::new(),
            internal_domains: Vec::new(),
            internal_networks: Vec::new(),
            auth: AuthSettings {
                users_file: data.join("users"),
                required: Vec::new(),
                optional: Vec::new(),
                realm: "charte-proxy".into(),
                negotiate: false,
                basic: true,
                basic_directory: false,
                user_name: UserName::Principal,
                keytab: None,
            },
            directory: None,
            trace_path: Some(data.join("trace.log")),
            trace_format: "json".into(),
            trace_queue: 65_536,
            reverse_dns: true,
            shutdown_grace: Duration::from_secs(10),
            workers: 0,
            worker_spin: Duration::from_micros(5),
            watch: true,
            tls: TlsSettings::default(),
            limits: Limits::default(),
            pidfile: None,
            trace_outputs: Vec::new(),
            trace_life: TraceLife::default(),
            time_zone: "Europe/Paris".into(),
            requests_retention_days: 365,
            categories_update: CategoriesUpdate::default(),
            pages: PagesSettings::default(),
            pac: PacSettings::default(),
            store: StoreSettings::default(),
            data_dir: data,
        }
    }
}

/// Where syslog messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTo {
    /// One datagram a message.
    Udp(std::net::SocketAddr),
    /// A stream, messages framed by octet counting (RFC 6587 §3.4.1); reconnected after
    /// an error.
    Tcp(std::net::SocketAddr),
    /// The local syslog daemon's datagram socket (`/dev/log`).
    Unix(PathBuf),
}

impl std::str::FromStr for SyslogTo {
    type Err = String;

    /// `udp://HOST:PORT`, `tcp://HOST:PORT` (addresses, not names: the trace must not
    /// wait on DNS) or `unix:///dev/log`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let addr = |a: &str| {
            a.parse::<std::net::SocketAddr>()
                .map_err(|_| format!("{a:?} is not an IP address with a port"))
        };
        if let Some(a) = s.strip_prefix("udp://") {
            Ok(SyslogTo::Udp(addr(a)?))
        } else if let Some(a) = s.strip_prefix("tcp://") {
            Ok(SyslogTo::Tcp(addr(a)?))
        } else if let Some(p) = s.strip_prefix("unix://") {
            if p.is_empty() {
                return Err("unix:// needs a socket path, like unix:///dev/log".into());
            }
            Ok(SyslogTo::Unix(PathBuf::from(p)))
        } else {
            Err(format!(
                "{s:?}: write udp://IP:PORT, tcp://IP:PORT or unix:///dev/log"
            ))
        }
    }
}

/// Syslog's facility by name (`local0` … `local7`, `daemon`, `user`, `authpriv`).
pub fn syslog_facility(name: &str) -> Option<u8> {
    Some(match name {
        "user" => 1,
        "daemon" => 3,
        "authpriv" => 10,
        _ => {
            let n: u8 = name.strip_prefix("local")?.parse().ok()?;
            if n > 7 {
                return None;
            }
            16 + n
        }
    })
}

/// A time zone by its IANA name, from the database built into the binary (so a host
/// without tzdata shows the same time as any other).
pub fn time_zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    static DB: std::sync::LazyLock<jiff::tz::TimeZoneDatabase> =
        std::sync::LazyLock::new(jiff::tz::TimeZoneDatabase::bundled);
    DB.get(name)
        .map_err(|_| format!("unknown time zone {name:?}"))
}
