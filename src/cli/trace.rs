//! `charte-proxy trace search|export`: one person's, one workstation's or one site's
//! lines of the JSON trace, across the closed (compressed) files and the live one, in
//! time order; and the file to hand to a person who asks for their data (GDPR art. 15,
//! Arras charter §4.9): their lines, their unblock requests and the decisions on them.
//! Every search and export is itself recorded in `DATA/trace-access.log` (who, when,
//! what was asked, how many lines), which the trace's retention does not touch.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use super::{DataArgs, EXIT_CONFIG};
use crate::audit::search::{self, Criteria, Found};
use crate::settings::Settings;

#[derive(Subcommand, Debug)]
pub enum TraceCmd {
    /// Lines of the JSON trace matching every criterion given, oldest first, from the
    /// closed files (compressed or not) and the live one.
    Search(SearchArgs),
    /// The file to hand to a person who asks for their data: their trace lines, their
    /// unblock requests and the decisions on them (JSON).
    Export(ExportArgs),
}

#[derive(Args, Debug)]
pub struct Filters {
    /// Lines of this user (as the trace names them).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Lines of this client address (a workstation).
    #[arg(long, value_name = "IP")]
    pub client: Option<std::net::IpAddr>,
    /// Lines for this site or any of its subdomains.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// From this day (YYYY-MM-DD, in the town's time zone) or instant (RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Up to this day, included (YYYY-MM-DD), or this instant, excluded (RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub filters: Filters,
    /// Output: the JSON lines as written, or CSV with a header line.
    #[arg(long, value_enum, default_value_t = OutFormat::Json)]
    pub format: OutFormat,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The person whose data is exported.
    #[arg(long, value_name = "USER")]
    pub user: String,
    /// Write the export to this file (mode 0600) instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    Json,
    Csv,
}

pub fn run(cmd: TraceCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TraceCmd::Search(a) => search_cmd(&a),
        TraceCmd::Export(a) => export_cmd(&a),
    }
}

/// The settings, and the live JSON trace file; an error said and its exit code
/// otherwise.
fn trace_of(data: &DataArgs) -> Result<(Settings, PathBuf), ExitCode> {
    let cfg = data.settings()?;
    let Some(live) = cfg.trace_path.clone() else {
        eprintln!("error: the trace goes to standard output (trace.path: -): no file to search");
        return Err(ExitCode::from(EXIT_CONFIG));
    };
    if cfg.trace_format != "json" {
        eprintln!(
            "error: the trace of record ({}) is in the {} format; search reads the JSON \
             trace (set trace.format: json and keep the Squid log as an output)",
            live.display(),
            cfg.trace_format
        );
        return Err(ExitCode::from(EXIT_CONFIG));
    }
    Ok((cfg, live))
}

fn criteria(f: &Filters, cfg: &Settings) -> Result<Criteria, String> {
    let tz = crate::clock::zone(&cfg.time_zone)?;
    let client = f.client.map(|ip| ip.to_string());
    Criteria::parse(
        f.user.as_deref(),
        client.as_deref(),
        f.host.as_deref(),
        f.from.as_deref(),
        f.to.as_deref(),
        &tz,
    )
    .map_err(|e| {
        e.replace(
            "the start is not before the end",
            "--from is not before --to",
        )
    })
}

fn search_cmd(a: &SearchArgs) -> anyhow::Result<ExitCode> {
    let (cfg, live) = match trace_of(&a.data) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let c = match criteria(&a.filters, &cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    if !c.is_narrowed() {
        eprintln!("error: say what to look for: --user, --client, --host or --from");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let tz = crate::clock::zone(&cfg.time_zone).map_err(anyhow::Error::msg)?;
    let paths = c.files(&live, &tz)?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    if a.format == OutFormat::Csv {
        writeln!(out, "{}", search::csv_header())?;
    }
    let mut cells = Vec::new();
    let (_, matched, skipped) = search::search(&paths, &c, |f: &Found| match a.format {
        OutFormat::Json => writeln!(out, "{}", f.line),
        OutFormat::Csv => {
            search::csv_line(&f.line, &mut cells);
            writeln!(out, "{}", cells.join(","))
        }
    })?;
    out.flush()?;
    drop(out);
    note(&cfg, "search", &c, matched)?;
    if skipped > 0 {
        eprintln!("note: {skipped} line(s) that are not trace records were skipped");
    }
    eprintln!("{matched} line(s)");
    Ok(ExitCode::SUCCESS)
}

fn export_cmd(a: &ExportArgs) -> anyhow::Result<ExitCode> {
    let (cfg, live) = match trace_of(&a.data) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let c = Criteria {
        user: Some(a.user.clone()),
        ..Default::default()
    };
    let paths = search::files_between(&live, None, None)?;
    let mut lines = Vec::new();
    search::search(&paths, &c, |f| {
        lines.push(serde_json::from_str::<serde_json::Value>(&f.line).unwrap_or_default());
        Ok(())
    })?;
    let db = cfg.data_dir.join("requests.db");
    let shared = !matches!(cfg.store, crate::settings::StoreSettings::Sqlite);
    let requests = if shared || db.exists() {
        let store = crate::server::open_store(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
        let key =
            crate::unblock::approvals::Requester::new(Some(&a.user), [0, 0, 0, 0].into()).key();
        store.list_for(&key).map_err(|e| anyhow::anyhow!("{e}"))?
    } else {
        Vec::new()
    };
    let n = lines.len() as u64;
    let doc = crate::unblock::export::subject_document(&a.user, lines, &requests);
    let text = serde_json::to_string_pretty(&doc)? + "\n";
    match &a.out {
        Some(p) => write_private(p, text.as_bytes())?,
        None => io::stdout().lock().write_all(text.as_bytes())?,
    }
    note(&cfg, "export", &c, n)?;
    eprintln!(
        "{n} trace line(s), {} unblock request(s)",
        doc["unblock_requests"].as_array().map_or(0, Vec::len)
    );
    Ok(ExitCode::SUCCESS)
}

/// A new file only its owner reads (it holds a person's data).
fn write_private(p: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(p)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Appends what was asked and by whom to the access audit (`DATA/trace-access.log`).
fn note(cfg: &Settings, what: &str, c: &Criteria, lines: u64) -> io::Result<()> {
    let who = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| format!("uid {}", unsafe_uid()));
    search::note_access(&cfg.data_dir, &format!("cli:{who}"), what, c, lines).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot record this {what} in the access audit: {e}"),
        )
    })
}

fn unsafe_uid() -> u32 {
    // SAFETY: getuid cannot fail and touches no memory.
    unsafe { libc::getuid() }
}
