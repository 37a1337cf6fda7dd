//! `charte-proxy serve`: the flags, resolved with the server file into the settings, and
//! the runtime that runs the server.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{EXIT_CONFIG, print_diags};
use crate::config::{self, Diags};
use crate::settings::Settings;

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Server configuration file (YAML); flags override it.
    #[arg(long, short = 'c', env = "CHARTE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Policy file [default: policies/charte.yaml].
    #[arg(long, short = 'p', env = "CHARTE_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Proxy listener [default: 127.0.0.1:3128].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// Portal listener (block page assets, unblock requests, PAC file) [default: 127.0.0.1:3129].
    #[arg(long, value_name = "ADDR:PORT")]
    pub portal_listen: Option<std::net::SocketAddr>,
    /// Admin listener (request review pages, /metrics, /health) [default: 127.0.0.1:3130].
    #[arg(long, value_name = "ADDR:PORT")]
    pub admin_listen: Option<std::net::SocketAddr>,
    /// Data folder (trace, keys, users, requests) [default: data]: the default place of
    /// the paths the server file does not set, never a move of those it sets.
    #[arg(long, env = "CHARTE_DATA", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Write the process id to this file (for `reload`, `rotate` and init scripts; the
    /// data folder's lock file holds it too).
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Trace file, or `-` for standard output [default: DATA/trace.log].
    #[arg(long, value_name = "FILE")]
    pub trace: Option<String>,
    /// Trace format: `json` (the full §4.8 record) or `squid` (Squid's access.log).
    #[arg(long, value_name = "FORMAT")]
    pub trace_format: Option<String>,
    /// Address workstations use to reach the proxy, written in the PAC file [default: the
    /// proxy listener's; required when it is a wildcard address such as 0.0.0.0].
    #[arg(long, env = "CHARTE_PUBLIC_PROXY", value_name = "HOST:PORT")]
    pub public_proxy: Option<String>,
    /// Base URL of the portal as workstations reach it [default: from the portal
    /// listener; required when it is a wildcard address such as 0.0.0.0].
    #[arg(long, env = "CHARTE_PORTAL_URL", value_name = "URL")]
    pub portal_url: Option<String>,
    /// Port that CONNECT may reach (repeat for several) [default: 443].
    #[arg(long = "connect-port", value_name = "PORT")]
    pub connect_ports: Vec<u16>,
    /// Pin a name to an address, NAME=IP (repeatable), before the system resolver.
    #[arg(long = "host", value_name = "NAME=IP", value_parser = parse_pin)]
    pub hosts: Vec<(String, std::net::IpAddr)>,
    /// Networks whose clients must authenticate (repeatable).
    #[arg(long = "auth-required", value_name = "NET")]
    pub auth_required: Vec<ipnet::IpNet>,
    /// Networks whose clients may authenticate (repeatable).
    #[arg(long = "auth-optional", value_name = "NET")]
    pub auth_optional: Vec<ipnet::IpNet>,
    /// Users file for proxy authentication [default: DATA/users].
    #[arg(long, env = "CHARTE_USERS", value_name = "FILE")]
    pub users_file: Option<PathBuf>,
    /// Do not reload when policy files change (SIGHUP still reloads).
    #[arg(long)]
    pub no_watch: bool,
    /// Do not look up workstation names by reverse DNS.
    #[arg(long, conflicts_with = "reverse_dns")]
    pub no_reverse_dns: bool,
    /// Look up workstation names by reverse DNS (the default; overrides the file).
    #[arg(long)]
    pub reverse_dns: bool,
    /// Seconds given to exchanges in flight at shutdown [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub shutdown_grace: Option<u64>,
    /// Threads serving proxy connections [default: one per CPU but one, at least one].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// Relay every tunnel as bytes: no TLS inspection, no block page over HTTPS, and
    /// `block-upload` sites refused as a whole.
    #[arg(long)]
    pub no_inspect: bool,
    /// Certificate (PEM) of the CA that signs inspected sites [default: DATA/ca/ca.pem,
    /// created on first start]. Goes with --ca-key.
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// Private key (PEM, mode 0600) of that CA [default: DATA/ca/ca.key].
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// Extra root (PEM file) trusted for upstream servers, for an internal PKI; repeat
    /// for several. The system's roots are always trusted.
    #[arg(long = "upstream-ca", value_name = "FILE")]
    pub upstream_ca: Vec<PathBuf>,
}

fn parse_pin(s: &str) -> Result<(String, std::net::IpAddr), String> {
    let (n, ip) = s.split_once('=').ok_or("expected NAME=IP")?;
    let ip = ip.parse().map_err(|e| format!("{ip}: {e}"))?;
    Ok((n.to_ascii_lowercase(), ip))
}

impl ServeArgs {
    /// The server settings: defaults, then the file, then these flags.
    pub fn resolve(&self) -> Result<Settings, Diags> {
        config::server::resolve_serve(self.config.as_deref(), &self.flags())
    }

    /// These arguments as `config`'s plain input (`config` does not know clap).
    fn flags(&self) -> config::server::Flags {
        config::server::Flags {
            policy: self.policy.clone(),
            listen: self.listen,
            portal_listen: self.portal_listen,
            admin_listen: self.admin_listen,
            data_dir: self.data_dir.clone(),
            trace: self.trace.clone(),
            trace_format: self.trace_format.clone(),
            public_proxy: self.public_proxy.clone(),
            portal_url: self.portal_url.clone(),
            connect_ports: self.connect_ports.clone(),
            hosts: self.hosts.clone(),
            auth_required: self.auth_required.clone(),
            auth_optional: self.auth_optional.clone(),
            users_file: self.users_file.clone(),
            no_watch: self.no_watch,
            // `--reverse-dns` won over `--no-reverse-dns` (clap refuses both anyway).
            reverse_dns: if self.reverse_dns {
                Some(true)
            } else if self.no_reverse_dns {
                Some(false)
            } else {
                None
            },
            shutdown_grace_seconds: self.shutdown_grace,
            workers: self.workers.map(usize::from),
            no_inspect: self.no_inspect,
            ca: self.ca_cert.clone().zip(self.ca_key.clone()),
            upstream_ca: self.upstream_ca.clone(),
            pidfile: self.pidfile.clone(),
        }
    }
}

pub(super) fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = match args.resolve() {
        Ok(c) => c,
        Err(d) => {
            print_diags(&d);
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    if let Some(k) = &cfg.auth.keytab {
        // SAFETY: no other thread runs yet (the runtimes are built below), so nothing
        // reads the environment while it changes. MIT Kerberos reads the acceptor's
        // keytab from KRB5_KTNAME.
        unsafe { std::env::set_var("KRB5_KTNAME", format!("FILE:{}", k.display())) };
    }
    // A write past the file size limit (RLIMIT_FSIZE) fails with EFBIG, counted and
    // shown like a full disk, instead of killing the proxy (SIGXFSZ's default).
    // SAFETY: SIG_IGN installs no handler; only the disposition of SIGXFSZ changes.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    // Files the proxy creates hold personal data (trace, requests): none readable by
    // others (0640 at most; keys are written 0600 whatever the umask).
    // SAFETY: umask(2) only changes this process's file creation mask.
    unsafe { libc::umask(0o027) };
    // The main runtime accepts connections and runs the trace writer, the portal and
    // the admin pages; proxy connections are served by the worker threads
    // (`server::workers`).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let pages = match super::load_pages(&cfg.pages) {
        Ok(p) => p,
        Err(d) => {
            print_diags(&d);
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    // SIGHUP reads the server file again, with the same flags.
    let reread: crate::server::Reread = {
        let (file, flags) = (args.config.clone(), args.flags());
        Box::new(move || {
            config::server::resolve_serve(file.as_deref(), &flags).map_err(|d| {
                d.sorted()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        })
    };
    match rt.block_on(crate::server::serve(cfg, pages, reread)) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.downcast_ref::<crate::server::ConfigError>().is_some() => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            Ok(ExitCode::from(EXIT_CONFIG))
        }
        Err(e) => Err(e),
    }
}
