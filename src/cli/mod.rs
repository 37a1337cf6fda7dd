//! The command line, all of it: the arguments of every command and what each prints.
//! Commands run the real code (the server, the compile, the decision, the stores); this
//! layer only reads arguments, calls, and prints. It is the top of the library: nothing
//! imports it but `main`.
//!
//! - [`serve`]: run the proxy;
//! - [`policy`]: `check` and `explain`;
//! - [`categories`]: `categories import|list|compile|update` and `classify`;
//! - [`users`]: `users` and `admins`; [`ca`]: the organisation's CA; [`requests`]:
//!   unblock requests.
//!
//! Exit codes: 0 success, 2 usage or configuration error, 1 runtime failure.

pub mod ca;
pub mod categories;
pub mod instance;
pub mod policy;
pub mod requests;
pub mod serve;
pub mod squid;
pub mod store;
pub mod trace;
pub mod users;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Diags;
use crate::settings::DEFAULT_POLICY;
use crate::snapshot::Snapshot;

pub use categories::CategoriesCmd;
pub use policy::{ExplainArgs, LangArg};
pub use serve::ServeArgs;

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

/// Where the data folder is, the same way for every command: `--data-dir` (or
/// `CHARTE_DATA`) over the server file's `data_dir` (`--config` or `CHARTE_CONFIG`) over
/// `data`.
#[derive(Args, Debug, Clone, Default)]
pub struct DataArgs {
    /// Data folder [default: the server file's data_dir, else data].
    #[arg(long, env = "CHARTE_DATA", value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Server file: its data_dir, users_file, tls and pidfile settings apply.
    #[arg(long, env = "CHARTE_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

impl DataArgs {
    /// The settings these arguments give; a broken server file is reported.
    pub fn settings(&self) -> Result<crate::settings::Settings, ExitCode> {
        self.settings_with(crate::config::server::Flags::default())
    }

    /// The same, with more of `serve`'s flags.
    pub fn settings_with(
        &self,
        mut flags: crate::config::server::Flags,
    ) -> Result<crate::settings::Settings, ExitCode> {
        flags.data_dir = self.data_dir.clone();
        crate::config::server::resolve(self.config.as_deref(), &flags).map_err(|d| {
            print_diags(&d);
            ExitCode::from(EXIT_CONFIG)
        })
    }
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
        /// Also check this server file (listeners, authentication, the directory, the
        /// page templates).
        #[arg(long, short = 'c', env = "CHARTE_CONFIG", value_name = "FILE")]
        config: Option<std::path::PathBuf>,
    },
    /// Show what the policy decides for a client and a target, and why.
    Explain(ExplainArgs),
    /// Manage category folders (squidGuard/UT1 format).
    #[command(subcommand)]
    Categories(CategoriesCmd),
    /// Manage the users of proxy authentication (the users file).
    Users(users::UsersArgs),
    /// Manage the administrators of the admin pages (the admins file, DATA/admins).
    Admins(users::AdminsArgs),
    /// The organisation's CA for TLS inspection: create it, show how to install it.
    Ca(ca::CaArgs),
    /// Unblock requests: list, show, approve, refuse, export.
    Requests(requests::RequestsArgs),
    /// The unblock store: copy a single proxy's SQLite history into PostgreSQL.
    #[command(subcommand)]
    Store(store::StoreCmd),
    /// The trace: search it (a user, a workstation, a site, dates), export a person's
    /// data; each search and export is recorded in DATA/trace-access.log.
    #[command(subcommand)]
    Trace(trace::TraceCmd),
    /// Tell the running proxy to reload its policy, category lists and users file
    /// (SIGHUP), as `squid -k reconfigure`.
    Reload(instance::SignalArgs),
    /// Tell the running proxy to reopen its trace file after an external rotation
    /// (SIGUSR1), as `squid -k rotate`.
    Rotate(instance::SignalArgs),
    /// Read hosts, URLs or Squid helper lines on stdin; write each host and its
    /// categories (comma-separated, `-` when none, `?` for what is not a host) on
    /// stdout, tab-separated. With --squid-helper, answer as a Squid external ACL helper.
    #[command(
        long_about = "Read hosts, URLs or Squid helper lines (`URL client user \
method`) on stdin; write each host and its categories on stdout, tab-separated: \
comma-separated, `-` when none, `?` for what is not a host.

With --squid-helper, answer as a Squid external ACL helper, one answer a line, each \
flushed: `[channel-ID] URL [client [user [method]]]` in (`-` for a field not known), \
`[channel-ID] OK message=\"<reason>\" tag=<categories>` out when the policy blocks \
the request, `ERR` when it lets it through, `BH message=\"…\"` for a line that \
cannot be decided. Groups come from the policy's networks and users (the directory \
is not asked). squid.conf:

  external_acl_type charte concurrency=10 %>ru %>a %un %>rm /usr/bin/charte-proxy classify --squid-helper -p /etc/charte-proxy/charte.yaml
  acl charte_block external charte
  http_access deny charte_block"
    )]
    Classify(ClassifyArgs),
}

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub policy: PolicyArg,
    /// Answer as a Squid external ACL helper: `OK message=… tag=…` when the policy
    /// blocks the line's URL, `ERR` when it does not, `BH message=…` for a bad line.
    #[arg(long)]
    pub squid_helper: bool,
    /// The client address when a helper line gives none (or `-`).
    #[arg(
        long,
        default_value = "10.0.0.1",
        value_name = "ADDR",
        requires = "squid_helper"
    )]
    pub ip: std::net::IpAddr,
    /// Language of the helper's `message=` (the reason).
    #[arg(long, value_enum, default_value_t = LangArg::Fr, requires = "squid_helper")]
    pub lang: LangArg,
}

impl Command {
    /// Whether the command writes to network sockets. Such a command keeps SIGPIPE
    /// ignored (see [`closed_pipe_ends_the_process`]); one added later must say.
    fn uses_sockets(&self) -> bool {
        match self {
            // `store` talks to PostgreSQL. (`requests` and `trace export` may too, with
            // `store.postgres`; a reset connection there ends the command silently.)
            Command::Serve(_)
            | Command::Store(_)
            | Command::Categories(CategoriesCmd::Update(_)) => true,
            Command::Check { .. }
            | Command::Explain(_)
            | Command::Categories(_)
            | Command::Users(_)
            | Command::Admins(_)
            | Command::Ca(_)
            | Command::Requests(_)
            | Command::Trace(_)
            | Command::Reload(_)
            | Command::Rotate(_)
            | Command::Classify(_) => false,
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
    // A test's clock (CHARTE_FAKE_NOW), for every command alike.
    match crate::clock::from_env() {
        Ok(Some(_)) => tracing::warn!(
            "{} is set: the clock is shifted (for tests only)",
            crate::clock::FAKE_NOW_ENV
        ),
        Ok(None) => {}
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    let result = match cli.command {
        Command::Serve(args) => serve::serve(&args),
        Command::Check {
            policy,
            quiet,
            deny_warnings,
            config,
        } => policy::check(&policy.policy, config.as_deref(), quiet, deny_warnings),
        Command::Explain(args) => policy::explain_cmd(args),
        Command::Categories(CategoriesCmd::Import { source, dest }) => {
            categories::import(&source, &dest)
        }
        Command::Categories(CategoriesCmd::List { policy }) => {
            categories::list_categories(&policy.policy)
        }
        Command::Categories(CategoriesCmd::Compile { policy }) => {
            categories::compile(&policy.policy)
        }
        Command::Categories(CategoriesCmd::Update(a)) => categories::update(a),
        Command::Classify(a) if a.squid_helper => squid::run(&a.policy.policy, a.ip, a.lang.into()),
        Command::Classify(a) => categories::classify(&a.policy.policy),
        Command::Users(a) => users::run(a),
        Command::Admins(a) => users::run_admins(a),
        Command::Ca(a) => ca::run(a),
        Command::Requests(a) => requests::run(a),
        Command::Store(c) => store::run(c),
        Command::Trace(c) => trace::run(c),
        Command::Reload(a) => instance::signal(&a, instance::Order::Reload),
        Command::Rotate(a) => instance::signal(&a, instance::Order::Rotate),
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

/// The page templates of `settings` compiled and tried; a problem is printed as a
/// diagnostic at the template's file and line (`check --config`, `serve`).
pub(crate) fn load_pages(
    settings: &crate::settings::PagesSettings,
) -> Result<crate::pages::Pages, Diags> {
    crate::pages::Pages::load(settings).map_err(|e| {
        let mut d = Diags::default();
        let pos = crate::config::diag::Pos {
            line: e.line.unwrap_or(0),
            col: e.col.unwrap_or(0),
        };
        let help = if e.line.is_some() {
            "fix the template, or take it out of the folder to use the shipped one"
        } else {
            "see docs/deployment.md, \"Pages\""
        };
        d.error("template", &e.file, pos, None, e.message, Some(help.into()));
        d
    })
}

pub fn print_diags(d: &Diags) {
    let mut err = std::io::stderr().lock();
    for diag in d.sorted() {
        let _ = writeln!(err, "{diag}");
    }
}

pub(crate) fn load_or_report(policy: &Path) -> Result<Snapshot, ExitCode> {
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
