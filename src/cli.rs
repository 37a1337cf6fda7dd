//! Command line: `check`, `explain`, `categories import|list`. Each command runs the
//! real compile and decide code; this module only reads arguments and prints.
//!
//! Exit codes: 0 success, 2 usage or configuration error, 1 runtime failure.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::classify::TagKind;
use crate::config::{self, Diags, Severity};
use crate::explain::{self, Query};
use crate::policy::{Action, Lang, Mode};
use crate::settings::{DEFAULT_POLICY, Settings};
use crate::snapshot::Snapshot;

/// Exit code for usage and configuration errors.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for runtime failures.
pub const EXIT_RUNTIME: u8 = 1;

#[derive(Parser, Debug)]
#[command(
    name = "charte-proxy",
    version,
    about = "Forward web-filtering proxy that puts a local authority's IT charter into force",
    long_about = "Forward web-filtering proxy that puts a French local authority's IT charter \
(charte informatique) into force: group-based category filtering with allow and block lists, \
no upload to unapproved cloud and AI services, banking and health never inspected, and the \
reason for every block recorded."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct PolicyArg {
    /// Policy file (YAML).
    #[arg(long, short = 'p', env = "CHARTE_POLICY", default_value = DEFAULT_POLICY, value_name = "FILE")]
    pub policy: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the proxy: proxy, portal and admin listeners (loopback by default).
    Serve(Box<ServeArgs>),
    /// Validate a policy and the files it names; print a summary, or every problem.
    Check {
        #[command(flatten)]
        policy: PolicyArg,
        /// Print only problems, not the summary.
        #[arg(long, short = 'q')]
        quiet: bool,
        /// Treat warnings as errors (exit 2 if there is any).
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Show what the policy decides for a client and a target, and why.
    Explain(ExplainArgs),
    /// Manage category folders (squidGuard/UT1 format).
    #[command(subcommand)]
    Categories(CategoriesCmd),
    /// Manage the users of proxy authentication (the users file).
    Users(crate::identity::users_cli::UsersArgs),
    /// Manage the administrators of the admin pages (the admins file, DATA/admins).
    Admins(crate::identity::users_cli::AdminsArgs),
    /// The organisation's CA for TLS inspection: create it, show how to install it.
    Ca(crate::action::ca_cli::CaArgs),
    /// Unblock requests: list, show, approve, refuse, export.
    Requests(crate::unblock::cli::RequestsArgs),
    /// Read hosts, URLs or Squid helper lines on stdin; write each host and its
    /// categories (comma-separated, or `-`) on stdout, tab-separated.
    Classify {
        #[command(flatten)]
        policy: PolicyArg,
    },
}

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
    /// Data folder (trace, keys, users, requests) [default: data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Trace file, or `-` for standard output [default: DATA/trace.log].
    #[arg(long, value_name = "FILE")]
    pub trace: Option<String>,
    /// Trace format: `json` (the full §4.8 record) or `squid` (Squid's access.log).
    #[arg(long, value_name = "FORMAT")]
    pub trace_format: Option<String>,
    /// Address workstations use to reach the proxy, written in the PAC file.
    #[arg(long, value_name = "HOST:PORT")]
    pub public_proxy: Option<String>,
    /// Base URL of the portal as workstations reach it.
    #[arg(long, value_name = "URL")]
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
        config::server::resolve(self.config.as_deref(), &self.flags())
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
        }
    }
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub policy: PolicyArg,
    /// Client address (decides the groups from `networks`).
    #[arg(long, default_value = "10.0.0.1", value_name = "ADDR")]
    pub ip: IpAddr,
    /// Authenticated user name (decides the groups from `users`).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// HTTP method of the request; CONNECT explains the tunnel itself.
    #[arg(long, short = 'm', default_value = "GET", value_name = "M")]
    pub method: String,
    /// Language of the reason.
    #[arg(long, value_enum, default_value_t = LangArg::Fr)]
    pub lang: LangArg,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// A URL (https://host/path) or a host (host, host:port, host/path).
    #[arg(value_name = "TARGET")]
    pub target: String,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum LangArg {
    Fr,
    En,
}

#[derive(Subcommand, Debug)]
pub enum CategoriesCmd {
    /// Copy a downloaded UT1/squidGuard tree (one sub-folder per category) into place.
    Import {
        /// The downloaded tree (for instance the unpacked `blacklists/` folder of UT1).
        source: PathBuf,
        /// Where to copy it.
        #[arg(long, default_value = "categories/ut1", value_name = "DIR")]
        dest: PathBuf,
    },
    /// List the categories the policy loads, with their entry counts.
    List {
        #[command(flatten)]
        policy: PolicyArg,
    },
    /// Compile the policy's category folders into one index file beside it
    /// (`charte.yaml` → `charte.idx`), which the proxy then maps in place at each start
    /// and reload. Run it again after changing the lists: an outdated file is not used.
    Compile {
        #[command(flatten)]
        policy: PolicyArg,
    },
}

impl Command {
    /// Whether the command writes to network sockets. Such a command keeps SIGPIPE
    /// ignored (see [`closed_pipe_ends_the_process`]); one added later must say.
    fn uses_sockets(&self) -> bool {
        match self {
            Command::Serve(_) => true,
            Command::Check { .. }
            | Command::Explain(_)
            | Command::Categories(_)
            | Command::Users(_)
            | Command::Admins(_)
            | Command::Ca(_)
            | Command::Requests(_)
            | Command::Classify { .. } => false,
        }
    }
}

/// Puts back the default disposition of SIGPIPE, so that a write to a pipe whose reader
/// has gone ends the process silently.
///
/// Rust starts programs with SIGPIPE ignored, so such a write fails with EPIPE instead,
/// and `println!` panics on it: `charte-proxy explain … | head` printed a panic. Two
/// cures were possible: a writer that turns BrokenPipe into a quiet exit around every
/// print, or the signal's default back, which ends the process as it ends `cat` or
/// `grep` (status 141 in a shell, nothing on stderr). The signal is taken, for every
/// command but the ones that use sockets: it covers every write at once, `print!`,
/// `writeln!(stdout)?` and `eprintln!` alike, in threads too (classify writes from one),
/// and those a future command adds, where a wrapper must be remembered at each print; a
/// command ending on `?` would otherwise still say "error: Broken pipe" and exit 1. Being
/// killed at a print costs nothing here: the commands print what they have done after
/// doing it, or print as their work. `serve` keeps SIGPIPE ignored: it writes to client
/// and site sockets, where a peer gone away must be an error for that one connection,
/// never a reason to stop the proxy (a socket write raises the signal unless it is made
/// with `MSG_NOSIGNAL`, and vectored writes are not); its own lines on standard output
/// are written without panicking instead (`server::banner`).
fn closed_pipe_ends_the_process() {
    // SAFETY: SIG_DFL installs no handler, so none of our code can run in signal
    // context; the call only changes the process's disposition of SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    if !cli.command.uses_sockets() {
        closed_pipe_ends_the_process();
    }
    let result = match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Check {
            policy,
            quiet,
            deny_warnings,
        } => check(&policy.policy, quiet, deny_warnings),
        Command::Explain(args) => explain_cmd(args),
        Command::Categories(CategoriesCmd::Import { source, dest }) => import(&source, &dest),
        Command::Categories(CategoriesCmd::List { policy }) => list_categories(&policy.policy),
        Command::Categories(CategoriesCmd::Compile { policy }) => {
            crate::categories_cli::compile(&policy.policy)
        }
        Command::Classify { policy } => crate::categories_cli::classify(&policy.policy),
        Command::Users(a) => crate::identity::users_cli::run(a),
        Command::Admins(a) => crate::identity::users_cli::run_admins(a),
        Command::Ca(a) => crate::action::ca_cli::run(a),
        Command::Requests(a) => crate::unblock::cli::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Not `eprintln!`: `serve` keeps SIGPIPE ignored, and a closed stderr must
            // not turn its last words into a panic.
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = match args.resolve() {
        Ok(c) => c,
        Err(d) => {
            print_diags(&d);
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    // The main runtime accepts connections and runs the trace writer, the portal and
    // the admin pages; proxy connections are served by the worker threads
    // (`server::workers`).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match rt.block_on(crate::server::serve(cfg)) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.downcast_ref::<crate::server::ConfigError>().is_some() => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            Ok(ExitCode::from(EXIT_CONFIG))
        }
        Err(e) => Err(e),
    }
}

pub fn print_diags(d: &Diags) {
    let mut err = std::io::stderr().lock();
    for diag in d.sorted() {
        let _ = writeln!(err, "{diag}");
    }
}

fn load_or_report(policy: &Path) -> Result<Snapshot, ExitCode> {
    match Snapshot::load(policy, 1) {
        Ok(s) => Ok(s),
        Err(d) => {
            print_diags(&d);
            let n = d.errors().count();
            eprintln!(
                "{}: {n} error{} — the policy is not valid",
                policy.display(),
                if n == 1 { "" } else { "s" }
            );
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn check(policy: &Path, quiet: bool, deny_warnings: bool) -> anyhow::Result<ExitCode> {
    let snap = match load_or_report(policy) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    print_diags(&snap.warnings);
    let warnings = snap
        .warnings
        .items
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    if !quiet {
        print!("{}", summary(&snap));
    }
    println!(
        "{}: OK, {warnings} warning{}",
        policy.display(),
        if warnings == 1 { "" } else { "s" }
    );
    if deny_warnings && warnings > 0 {
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    Ok(ExitCode::SUCCESS)
}

/// The `check` summary: groups, rules, categories with their domain counts.
pub fn summary(snap: &Snapshot) -> String {
    let p = &snap.policy;
    let c = &snap.classifier;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Policy {} (version {}), compiled in {:.2} s",
        snap.stats.source.display(),
        crate::config::POLICY_VERSION,
        snap.stats.build_time.as_secs_f64()
    );
    let _ = writeln!(s, "Groups ({}):", p.groups.groups.len());
    for g in &p.groups.groups {
        let mut parts = Vec::new();
        if !g.networks.is_empty() {
            parts.push(
                g.networks
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        if !g.users.is_empty() {
            parts.push(format!(
                "{} user{}",
                g.users.len(),
                if g.users.len() == 1 { "" } else { "s" }
            ));
        }
        if !g.inspect {
            parts.push("never inspected".into());
        }
        let _ = writeln!(s, "  {:<20} {}", g.name, parts.join(", "));
    }
    let _ = writeln!(s, "Rules ({}):", p.rules.len());
    for (i, r) in p.rules.iter().enumerate() {
        let mut flags = Vec::new();
        if r.mode == Mode::Report {
            flags.push("report only");
        }
        if !r.overridable && r.action != Action::Allow {
            flags.push("not overridable");
        }
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!(" ({})", flags.join(", "))
        };
        let _ = writeln!(
            s,
            "  {:>2}. {:<32} {}{flags}",
            i + 1,
            r.id,
            r.action.as_str()
        );
    }
    let _ = writeln!(s, "  default: {}", p.default.action.as_str());
    let cats: Vec<_> = c
        .tags
        .iter()
        .filter(|t| t.kind == TagKind::Category)
        .collect();
    let total: u64 = cats.iter().map(|t| t.domains as u64).sum();
    let _ = writeln!(
        s,
        "Categories ({}, {} domain entries, {} URL entries, index of {} distinct names, {:.1} MiB):",
        cats.len(),
        total,
        cats.iter().map(|t| t.urls as u64).sum::<u64>(),
        c.domain_names(),
        c.index_bytes() as f64 / 1048576.0
    );
    match &snap.stats.compiled_index {
        Some(f) => {
            let _ = writeln!(
                s,
                "  (domains from the compiled index {}, mapped)",
                f.display()
            );
        }
        None => {
            let _ = writeln!(
                s,
                "  (read from the text lists; `charte-proxy categories compile` makes them load faster)"
            );
        }
    }
    for t in &cats {
        let _ = writeln!(
            s,
            "  {:<24} {:>9} domains {:>7} urls",
            t.name, t.domains, t.urls
        );
    }
    let lists: Vec<_> = c.tags.iter().filter(|t| t.kind == TagKind::List).collect();
    let _ = writeln!(s, "Lists ({}):", lists.len());
    for t in lists {
        let _ = writeln!(
            s,
            "  {:<24} {:>9} domains {:>7} urls",
            t.name, t.domains, t.urls
        );
    }
    let ni: Vec<&str> = p.no_inspect.iter().map(|t| &*c.tag(t).name).collect();
    let _ = writeln!(
        s,
        "Never inspected: {}",
        if ni.is_empty() {
            "-".into()
        } else {
            ni.join(", ")
        }
    );
    s
}

fn explain_cmd(a: ExplainArgs) -> anyhow::Result<ExitCode> {
    let snap = match load_or_report(&a.policy.policy) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let q = Query {
        target: a.target.clone(),
        ip: a.ip,
        user: a.user.clone(),
        method: a.method.to_ascii_uppercase(),
        lang: match a.lang {
            LangArg::Fr => Lang::Fr,
            LangArg::En => Lang::En,
        },
    };
    match explain::explain(&snap, &q) {
        Ok(e) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                print!("{}", explain::render_text(&e));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            Ok(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn list_categories(policy: &Path) -> anyhow::Result<ExitCode> {
    let snap = match load_or_report(policy) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    for t in snap
        .classifier
        .tags
        .iter()
        .filter(|t| t.kind == TagKind::Category)
    {
        println!("{}\t{}\t{}\t{}", t.name, t.domains, t.urls, t.title(false));
    }
    Ok(ExitCode::SUCCESS)
}

/// Files of a squidGuard/UT1 category folder worth copying.
const CATEGORY_FILES: &[&str] = &["domains", "urls", "usage", "expressions"];

fn import(source: &Path, dest: &Path) -> anyhow::Result<ExitCode> {
    let rd = match fs::read_dir(source) {
        Ok(rd) => rd,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", source.display());
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    fs::create_dir_all(dest)?;
    let mut copied = 0usize;
    let mut lines = 0usize;
    for d in &dirs {
        let name = d.file_name().expect("read_dir entries have names");
        let mut any = false;
        for f in CATEGORY_FILES {
            let from = d.join(f);
            if from.is_file() {
                let to_dir = dest.join(name);
                fs::create_dir_all(&to_dir)?;
                fs::copy(&from, to_dir.join(f))?;
                if *f == "domains" || *f == "urls" {
                    lines += fs::read(&from)?
                        .split(|b| *b == b'\n')
                        .filter(|l| !l.is_empty())
                        .count();
                }
                any = true;
            }
        }
        copied += usize::from(any);
    }
    for f in ["global_usage", "README.md", "README", "LICENSE"] {
        let from = source.join(f);
        if from.is_file() {
            fs::copy(&from, dest.join(f))?;
        }
    }
    if copied == 0 {
        eprintln!(
            "error: {} holds no category folder (sub-folders with a `domains` or `urls` file)",
            source.display()
        );
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    println!(
        "imported {copied} categories ({lines} lines) from {} into {}",
        source.display(),
        dest.display()
    );
    println!("name the folder under `categories:` in the policy, then run `charte-proxy check`");
    Ok(ExitCode::SUCCESS)
}
