//! `charte-proxy requests list|show|approve|refuse|export`: the administrators' side of
//! the unblock flow from the command line, on the same database as the running proxy
//! (which sees a decision within a second). Output to stdout, messages to stderr.

use std::io::Write as _;
use std::process::ExitCode;

use super::{EXIT_CONFIG, EXIT_RUNTIME};
use crate::unblock::approvals::now;
use crate::unblock::export;
use crate::unblock::parse_duration;
use crate::unblock::store::{RequestRow, Scope, Status};

#[derive(clap::Args, Debug)]
pub struct RequestsArgs {
    /// The data folder (the requests live in its requests.db), or the server file that
    /// names it (or names the PostgreSQL database of `store.postgres`).
    #[command(flatten)]
    pub data: super::DataArgs,
    #[command(subcommand)]
    pub cmd: RequestsCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum RequestsCmd {
    /// List requests, newest first (pending ones by default).
    List {
        /// `pending`, `approved`, `refused` or `all`.
        #[arg(long, default_value = "pending")]
        status: String,
    },
    /// Show one request with its justification.
    Show { id: i64 },
    /// Approve a request for a scope and a duration.
    Approve {
        id: i64,
        /// `requester`, `group:NAME` or `everyone`.
        #[arg(long, default_value = "requester")]
        scope: String,
        /// `7d`, `30d`, `1y`, `none`, or a number of seconds followed by `s`.
        #[arg(long = "for", default_value = "30d", value_name = "DURATION")]
        duration: String,
        /// Who decides (recorded in the history).
        #[arg(long, env = "USER", default_value = "admin")]
        admin: String,
        #[arg(long)]
        message: Option<String>,
    },
    /// Refuse a request with a message shown to the user.
    Refuse {
        id: i64,
        #[arg(long)]
        message: String,
        #[arg(long, env = "USER", default_value = "admin")]
        admin: String,
    },
    /// The decisions as CSV, or with --yaml the approvals in force as a policy fragment.
    Export {
        #[arg(long)]
        yaml: bool,
    },
}

fn row_line(r: &RequestRow) -> String {
    format!(
        "{:>5}  {:<8}  {:<28}  {:<24}  asked {}×  rule {}",
        r.id,
        r.status.as_str(),
        r.host,
        r.requester,
        r.asked,
        r.rule.as_deref().unwrap_or("default")
    )
}

pub fn run(a: RequestsArgs) -> anyhow::Result<ExitCode> {
    let cfg = match a.data.settings() {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let store = match crate::server::open_store(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let out = std::io::stdout();
    let mut out = out.lock();
    let result: Result<(), String> = (|| {
        match a.cmd {
            RequestsCmd::List { status } => {
                let st = match status.as_str() {
                    "all" => None,
                    s => Some(s.parse::<Status>()?),
                };
                for r in store.list(st).map_err(|e| e.to_string())? {
                    let _ = writeln!(out, "{}", row_line(&r));
                }
            }
            RequestsCmd::Show { id } => {
                let r = store.get(id).map_err(|e| e.to_string())?;
                let _ = writeln!(out, "{}", row_line(&r));
                let _ = writeln!(
                    out,
                    "url: {}\ngroups: {}\ncategories: {}",
                    r.url,
                    r.groups.join(", "),
                    r.categories.join(", ")
                );
                let _ = writeln!(out, "wanted: {}", r.wanted.as_deref().unwrap_or("-"));
                let _ = writeln!(out, "justification:\n{}", r.justification);
                if let Some(m) = &r.message {
                    let _ = writeln!(out, "message: {m}");
                }
            }
            RequestsCmd::Approve {
                id,
                scope,
                duration,
                admin,
                message,
            } => {
                let scope: Scope = scope.parse()?;
                let t = now();
                let until = parse_duration(&duration)?.map(|d| t + d);
                store
                    .approve(id, &admin, &scope, until, message.as_deref(), t)
                    .map_err(|e| e.to_string())?;
                eprintln!("request {id} approved for {scope}");
            }
            RequestsCmd::Refuse { id, message, admin } => {
                store
                    .refuse(id, &admin, &message, now())
                    .map_err(|e| e.to_string())?;
                eprintln!("request {id} refused");
            }
            RequestsCmd::Export { yaml: false } => {
                let rows = store.history().map_err(|e| e.to_string())?;
                let _ = out.write_all(export::decisions_csv(&rows).as_bytes());
            }
            RequestsCmd::Export { yaml: true } => {
                let rows = store.approvals(now()).map_err(|e| e.to_string())?;
                let _ = out.write_all(export::approvals_yaml(&rows).as_bytes());
            }
        }
        Ok(())
    })();
    Ok(match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    })
}
