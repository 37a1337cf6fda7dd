//! `charte-proxy check` and `charte-proxy explain`: the policy as the proxy compiles it,
//! summarised or questioned, through the real compile and decide code.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::{EXIT_CONFIG, PolicyArg, load_or_report, print_diags};
use crate::classify::TagKind;
use crate::config::diag::Pos;
use crate::config::{Diags, Severity};
use crate::explain::{self, Query};
use crate::identity::DirectoryNames;
use crate::identity::directory::{Directory, Groups, NameProblem};
use crate::policy::{Action, Lang, Mode};
use crate::snapshot::Snapshot;

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub policy: PolicyArg,
    /// Client address (decides the groups from `networks`).
    #[arg(long, default_value = "10.0.0.1", value_name = "ADDR")]
    pub ip: IpAddr,
    /// Authenticated user name (decides the groups from `users`, and from the directory
    /// when the server file names one).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// The server file: its `directory` gives the user's directory groups.
    #[arg(long, short = 'c', env = "CHARTE_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Do not ask the directory (only the policy's networks and users).
    #[arg(long)]
    pub offline: bool,
    /// HTTP method of the request; CONNECT explains the tunnel itself.
    #[arg(long, short = 'm', default_value = "GET", value_name = "M")]
    pub method: String,
    /// Language of the reason.
    #[arg(long, value_enum, default_value_t = LangArg::Fr)]
    pub lang: LangArg,
    /// When: the town's local time (2026-12-07T12:30, in the server file's `time_zone`,
    /// Europe/Paris by default) or an RFC 3339 time with its offset; now by default.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
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

impl From<LangArg> for Lang {
    fn from(l: LangArg) -> Lang {
        match l {
            LangArg::Fr => Lang::Fr,
            LangArg::En => Lang::En,
        }
    }
}

pub(super) fn check(
    policy: &Path,
    config: Option<&Path>,
    quiet: bool,
    deny_warnings: bool,
) -> anyhow::Result<ExitCode> {
    let server = config.map(|c| {
        crate::config::server::load(Some(c)).and_then(|s| super::load_pages(&s.pages).map(|_| s))
    });
    if let Some(Err(d)) = &server {
        print_diags(d);
    }
    let snap = match load_or_report(policy) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    if let Some(Err(_)) = server {
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    print_diags(&snap.warnings);
    // The short group names, asked of the directory of the server file.
    if let (Some(config), Some(Ok(_))) = (config, &server) {
        let names = snap.policy.groups.directory_names();
        if !names.is_empty() {
            let answer = match ask_directory(config, None, &names) {
                Ok(a) => a,
                Err(code) => return Ok(code),
            };
            let d = name_problems(&snap, &answer.problems);
            if !d.items.is_empty() {
                print_diags(&d);
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        }
    }
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

/// What the directory the server file names says for `explain` and `check`.
#[derive(Default)]
struct DirectoryAnswer {
    /// The user's groups; `None` when not asked or not answered.
    groups: Option<Vec<Box<str>>>,
    /// The DNs of the policy's short group names.
    names: DirectoryNames,
    /// Short names that matched no group or several.
    problems: Vec<NameProblem>,
}

/// Asks the directory of the server file at `config`, if it names one, for `user`'s
/// groups and the DNs of `names`. No answer is said on stderr and leaves the answer
/// empty (groups from networks and users only); a broken server file is an error.
/// When `explain` imagines the request: `--at`, or now, on the wall clock of the server
/// file's `time_zone` (Europe/Paris without a server file).
fn explain_at(config: Option<&Path>, at: Option<&str>) -> Result<explain::At, ExitCode> {
    let zone = match config {
        Some(c) => match crate::config::server::load(Some(c)) {
            Ok(s) => s.time_zone,
            Err(d) => {
                print_diags(&d);
                return Err(ExitCode::from(EXIT_CONFIG));
            }
        },
        None => crate::clock::DEFAULT_TIME_ZONE.to_string(),
    };
    let tz = crate::clock::zone(&zone).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })?;
    match at {
        None => Ok(explain::At::now(&tz, &zone)),
        Some(s) => match explain::parse_at(s, &tz) {
            Ok(local) => Ok(explain::At {
                local,
                zone,
                given: true,
            }),
            Err(e) => {
                eprintln!("error: {e}");
                Err(ExitCode::from(EXIT_CONFIG))
            }
        },
    }
}

fn ask_directory(
    config: &Path,
    user: Option<&str>,
    names: &[Box<str>],
) -> Result<DirectoryAnswer, ExitCode> {
    let settings = match crate::config::server::load(Some(config)) {
        Ok(s) => s,
        Err(d) => {
            print_diags(&d);
            return Err(ExitCode::from(EXIT_CONFIG));
        }
    };
    let Some(d) = settings.directory else {
        return Ok(DirectoryAnswer::default());
    };
    if user.is_none() && names.is_empty() {
        return Ok(DirectoryAnswer::default());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|_| ExitCode::FAILURE)?;
    let answer = rt.block_on(async {
        let dir = Directory::new(d)?;
        // The command waits for the answer (a request would not, past `first_wait`).
        dir.probe().await?;
        let mut out = DirectoryAnswer::default();
        for name in names {
            let mut found = dir.find_group(name).await?;
            if found.len() == 1 {
                out.names.insert(name.clone(), found.remove(0));
            } else {
                out.problems.push(NameProblem {
                    name: name.clone(),
                    found,
                });
            }
        }
        if let Some(user) = user {
            match dir.groups(user).await {
                Groups::Known(g) => out.groups = Some(g.to_vec()),
                Groups::Unavailable(e) => return Err(e),
            }
        }
        Ok(out)
    });
    match answer {
        Ok(a) => Ok(a),
        Err(e) => {
            eprintln!(
                "warning: the directory did not answer ({e}): groups from networks and users only"
            );
            Ok(DirectoryAnswer::default())
        }
    }
}

/// `check`'s report of short group names the directory does not resolve to one group:
/// an error each, at the name's place in the policy.
fn name_problems(snap: &Snapshot, problems: &[NameProblem]) -> Diags {
    let mut d = Diags::default();
    for p in problems {
        let written = snap.policy.groups.groups.iter().find_map(|g| {
            let n = g.directory_names.iter().find(|n| n.name == p.name)?;
            Some((g.name.clone(), n.line, n.col))
        });
        let (group, line, col) = written.unwrap_or_else(|| ("?".into(), 0, 0));
        let (code, help) = if p.found.is_empty() {
            (
                "unknown-directory-group",
                "check the group's name in the directory (its cn or sAMAccountName), \
                 or write its full DN",
            )
        } else {
            (
                "ambiguous-directory-group",
                "write the full DN of the group meant",
            )
        };
        d.error(
            code,
            &snap.stats.source,
            Pos { line, col },
            Some(&format!("groups.{group}.directory")),
            p.to_string(),
            Some(help.into()),
        );
    }
    d
}

pub(super) fn explain_cmd(a: ExplainArgs) -> anyhow::Result<ExitCode> {
    let snap = match load_or_report(&a.policy.policy) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let answer = match (&a.config, a.offline) {
        (Some(config), false) => match ask_directory(
            config,
            a.user.as_deref(),
            &snap.policy.groups.directory_names(),
        ) {
            Ok(answer) => answer,
            Err(code) => return Ok(code),
        },
        _ => DirectoryAnswer::default(),
    };
    for p in &answer.problems {
        eprintln!("warning: {p}");
    }
    let at = match explain_at(a.config.as_deref(), a.at.as_deref()) {
        Ok(at) => at,
        Err(code) => return Ok(code),
    };
    let q = Query {
        target: a.target.clone(),
        ip: a.ip,
        user: a.user.clone(),
        directory_groups: answer.groups,
        directory_names: answer.names,
        method: a.method.to_ascii_uppercase(),
        lang: a.lang.into(),
        at,
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
