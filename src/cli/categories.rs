//! `charte-proxy categories compile` and `charte-proxy classify`: the offline side of the
//! category index.
//!
//! `compile` reads a policy's category folders once and writes every domain entry into
//! one index file beside the policy (`charte.yaml` → `charte.idx`), which later loads map
//! in place. `classify` reads hosts (or URLs, or Squid helper lines) on standard input and
//! writes their categories, one line each: the lookup the proxy does, for scripts and for
//! comparison with squidGuard.

use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Mutex, mpsc};
use std::time::Instant;

use crate::classify::{Classification, Classifier, Host, TagKind};
use clap::Subcommand;

use super::{EXIT_CONFIG, EXIT_RUNTIME, PolicyArg, print_diags};
use crate::config::index_file;
use crate::config::{Compiled, load_with};

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
    /// Download the UT1 archive (HTTPS), check it, and put it in force in one step: the
    /// policy's `ut1` folder and its compiled index are replaced together, and a running
    /// proxy reloads once. A failed download or a bad archive changes nothing.
    Update(UpdateArgs),
}

/// `categories update`; the server file's `categories_update` gives the defaults.
#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// Policy file [default: the server file's `policy`, else policies/charte.yaml].
    #[arg(long, short = 'p', env = "CHARTE_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The archive's address (https://) [default: categories_update.url].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// A sha256sum-format file for the archive (https://) [default:
    /// categories_update.checksum_url; none: no checksum].
    #[arg(long, value_name = "URL")]
    pub checksum_url: Option<String>,
    /// The category folder to replace, one the policy names [default:
    /// categories_update.folder, else the policy's folder named `ut1`].
    #[arg(long, value_name = "DIR")]
    pub folder: Option<PathBuf>,
    #[command(flatten)]
    pub data: super::DataArgs,
}

/// Loads the policy, or prints its problems and returns `None`.
fn compile_or_report(policy: &Path, use_compiled: bool) -> Option<Compiled> {
    match load_with(policy, use_compiled) {
        Ok(c) => Some(c),
        Err(d) => {
            print_diags(&d);
            eprintln!("{}: the policy is not valid", policy.display());
            None
        }
    }
}

/// `categories compile`: builds the index file of the policy's category folders.
pub fn compile(policy: &Path) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let built = match index_file::build(policy, None) {
        Ok(b) => b,
        Err(d) => {
            print_diags(&d);
            eprintln!("{}: the policy is not valid", policy.display());
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let out = index_file::path_for(policy);
    if let Err(e) = built.index.write(&out) {
        eprintln!("error: cannot write {}: {e}", out.display());
        return Ok(ExitCode::from(EXIT_RUNTIME));
    }
    eprintln!(
        "compiled {} names of {} categories from {} folder(s) into {} ({:.1} MiB) in {:.2} s",
        built.names,
        built.categories,
        built.folders,
        out.display(),
        built.index.heap_bytes() as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `classify`: one line out per line in: the input's host, a tab, its categories
/// (comma-separated, most specific entry first) or `-`.
///
/// A line is a host, a URL (`http://host/path`: the URL lists are searched too), or a
/// Squid helper line (`URL client user method …`: the first field is taken). Input is
/// read in chunks of whole lines that one worker a core classifies; the answers are
/// written in the input's order.
pub fn classify(policy: &Path) -> anyhow::Result<ExitCode> {
    let Some(c) = compile_or_report(policy, true) else {
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    let cl = &c.classifier;
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let (job_tx, job_rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(workers * 2);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(workers * 2);
    std::thread::scope(|s| -> anyhow::Result<()> {
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let job_rx = &job_rx;
            s.spawn(move || {
                let mut result = Classification::default();
                let mut scratch = String::new();
                loop {
                    let job = job_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((n, input)) = job else { break };
                    let mut out = Vec::with_capacity(input.len() + input.len() / 2);
                    classify_lines(cl, &input, &mut out, &mut scratch, &mut result);
                    if done_tx.send((n, out)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        // Writes the answers in input order.
        let writer = s.spawn(move || -> std::io::Result<()> {
            let stdout = std::io::stdout();
            let mut w = stdout.lock();
            let mut next = 0u64;
            let mut waiting = std::collections::BTreeMap::new();
            for (n, out) in done_rx {
                waiting.insert(n, out);
                while let Some(out) = waiting.remove(&next) {
                    w.write_all(&out)?;
                    next += 1;
                }
            }
            w.flush()
        });
        // Reads chunks of whole lines.
        let mut input = std::io::stdin().lock();
        let mut carry: Vec<u8> = Vec::new();
        let mut n = 0u64;
        let mut eof = false;
        while !eof {
            let mut buf = std::mem::take(&mut carry);
            buf.reserve(CHUNK);
            // At least one read, so that a line longer than a chunk still advances.
            loop {
                let at = buf.len();
                buf.resize(at + CHUNK / 4, 0);
                let got = input.read(&mut buf[at..])?;
                buf.truncate(at + got);
                if got == 0 {
                    eof = true;
                    break;
                }
                if buf.len() >= CHUNK {
                    break;
                }
            }
            if !eof {
                match buf.iter().rposition(|&b| b == b'\n') {
                    Some(i) => carry = buf.split_off(i + 1),
                    None => {
                        carry = buf;
                        continue;
                    }
                }
            }
            if buf.is_empty() {
                continue;
            }
            if job_tx.send((n, buf)).is_err() {
                break;
            }
            n += 1;
        }
        drop(job_tx);
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("the output thread panicked"))??;
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Bytes of input a worker takes at a time.
const CHUNK: usize = 256 * 1024;

/// Classifies every line of `input` into `out`.
fn classify_lines(
    cl: &Classifier,
    input: &[u8],
    out: &mut Vec<u8>,
    scratch: &mut String,
    result: &mut Classification,
) {
    for line in input.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(line);
        let mut fields = text.split_ascii_whitespace();
        let mut field = fields.next().unwrap_or("");
        // A Squid channel ID (`0 http://…`, helpers with concurrency) is not the URL.
        if field.bytes().all(|b| b.is_ascii_digit())
            && let Some(next) = fields.next()
        {
            field = next;
        }
        let (authority, path) = match field.split_once("://") {
            Some((_, rest)) => match rest.find('/') {
                Some(i) => (&rest[..i], Some(&rest[i..])),
                None => (rest, None),
            },
            None => (field, None),
        };
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let host = Host::parse_written(authority).map(|(h, _)| h);
        let Ok(host) = host.ok().filter(is_site_name).ok_or(()) else {
            out.extend_from_slice(field.as_bytes());
            out.extend_from_slice(b"\t?\n");
            continue;
        };
        cl.classify(&host, path, scratch, result);
        out.extend_from_slice(host.as_str().as_bytes());
        let mut first = true;
        for tag in result.tags() {
            let info = cl.tag(tag);
            if info.kind != TagKind::Category {
                continue;
            }
            out.push(if first { b'\t' } else { b',' });
            out.extend_from_slice(info.name.as_bytes());
            first = false;
        }
        out.extend_from_slice(if first { b"\t-\n" } else { b"\n" });
    }
}

/// Whether `host` is one a site can have: the labels of a name neither begin nor end
/// with `-` (RFC 1123), so that `-`, a Squid field not known, is not taken for a host.
fn is_site_name(host: &Host) -> bool {
    !host.is_domain()
        || host
            .as_str()
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
}

pub(super) fn list_categories(policy: &Path) -> anyhow::Result<ExitCode> {
    let snap = match super::load_or_report(policy) {
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

pub(super) fn import(source: &Path, dest: &Path) -> anyhow::Result<ExitCode> {
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

/// `categories update`: one line on success (and one per thing to know), one line with
/// the reason on failure; exit 0 (updated or already up to date), 1 (the update failed,
/// nothing changed), 2 (configuration).
pub fn update(a: UpdateArgs) -> anyhow::Result<ExitCode> {
    let settings = match a.data.settings() {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let u = &settings.categories_update;
    let Some(url) = a.url.or_else(|| u.url.clone()) else {
        eprintln!(
            "error: no archive to fetch: give --url or set categories_update.url in the server file"
        );
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    for (flag, v) in [
        ("--url", Some(&url)),
        ("--checksum-url", a.checksum_url.as_ref()),
    ] {
        if let Some(v) = v
            && !v.starts_with("https://")
        {
            eprintln!("error: {flag} {v}: the lists are fetched over HTTPS only");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    }
    let opts = crate::update::Options {
        policy: a.policy.unwrap_or_else(|| settings.policy.clone()),
        folder: a.folder.or_else(|| u.folder.clone()),
        url,
        checksum_url: a.checksum_url.or_else(|| u.checksum_url.clone()),
        upstream_ca: settings.tls.upstream_ca.clone(),
        max_bytes: u.max_bytes,
        max_unpacked_bytes: u.max_unpacked_bytes,
        min_categories: u.min_categories,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    match rt.block_on(crate::update::run(&opts)) {
        Ok(crate::update::Outcome::UpToDate { folder }) => {
            println!("{}: already up to date", folder.display());
            Ok(ExitCode::SUCCESS)
        }
        Ok(crate::update::Outcome::Updated(r)) => {
            println!(
                "updated {}: {} categories, now {} (index {}: {} names) in {:.1} s",
                r.folder.display(),
                r.categories,
                r.generation.display(),
                r.index.display(),
                r.names,
                started.elapsed().as_secs_f64()
            );
            if !r.added.is_empty() {
                println!("new categories: {}", r.added.join(", "));
            }
            if !r.removed.is_empty() {
                println!(
                    "categories dropped upstream, removed: {}",
                    r.removed.join(", ")
                );
            }
            for (alias, target) in &r.aliases {
                println!("{alias}: a link to {target} in the archive, copied");
            }
            if !r.expressions.is_empty() {
                println!(
                    "not supported: the `expressions` files (regular expressions on URLs) of {} are not applied",
                    r.expressions.join(", ")
                );
            }
            if r.bad_lines > 0 {
                println!(
                    "{} bad lines skipped (`charte-proxy check` shows where)",
                    r.bad_lines
                );
            }
            if let Some(p) = r.previous {
                println!("previous lists kept in {}", p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(crate::update::UpdateError::Policy(d)) => {
            print_diags(&d);
            eprintln!(
                "error: update refused: {} does not compile with the new lists (a category it names was dropped upstream?); the lists in force are unchanged",
                opts.policy.display()
            );
            Ok(ExitCode::from(EXIT_RUNTIME))
        }
        Err(e) => {
            eprintln!("error: update refused: {e}; the lists in force are unchanged");
            Ok(ExitCode::from(if e.is_config() {
                EXIT_CONFIG
            } else {
                EXIT_RUNTIME
            }))
        }
    }
}
