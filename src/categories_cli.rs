//! `charte-proxy categories compile` and `charte-proxy classify`: the offline side of the
//! category index.
//!
//! `compile` reads a policy's category folders once and writes every domain entry into
//! one index file beside the policy (`charte.yaml` → `charte.idx`), which later loads map
//! in place. `classify` reads hosts (or URLs, or Squid helper lines) on standard input and
//! writes their categories, one line each: the lookup the proxy does, for scripts and for
//! comparison with squidGuard.

use std::io::{BufRead as _, BufWriter, Write as _};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use crate::classify::{Classification, Host, TagKind};
use crate::cli::{EXIT_CONFIG, print_diags};
use crate::config::categories::{self, Entry};
use crate::config::compiled::{self, MetaCategory};
use crate::config::{Diags, load_with};

/// `categories compile`: builds the index file of the policy's category folders.
pub fn compile(policy: &Path) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let c = match load_with(policy, false) {
        Ok(c) => c,
        Err(d) => {
            print_diags(&d);
            eprintln!("{}: the policy is not valid", policy.display());
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let folders = c.stats.category_folders.clone();
    let found = categories::discover(&folders, &mut Diags::default());
    let files = compiled::stamps(&found);
    let mut cats = Vec::new();
    let mut urls = Vec::new();
    for (id, (name, dirs)) in found.iter().enumerate() {
        let info = &c.classifier.tags[id];
        debug_assert!(info.kind == TagKind::Category && &*info.name == name);
        cats.push(MetaCategory {
            name: name.clone(),
            domains: info.domains,
            urls: info.urls,
        });
        for d in dirs {
            let Ok(text) = std::fs::read(d.join("urls")) else {
                continue;
            };
            for line in text.split(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(line);
                let t = line.trim();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                if let Ok(Entry::Url { host, path }) = categories::parse_entry(t) {
                    urls.push((host.as_str().to_string(), path, id as u16));
                }
            }
        }
    }
    let names = c.classifier.categories.len();
    let meta = compiled::meta(&folders, files, cats, urls);
    let meta = serde_json::to_vec(&meta)?;
    let ix = c.classifier.categories.with_meta(&meta);
    let out = compiled::path_for(policy);
    if let Err(e) = ix.write(&out) {
        eprintln!("error: cannot write {}: {e}", out.display());
        return Ok(ExitCode::from(crate::cli::EXIT_RUNTIME));
    }
    eprintln!(
        "compiled {names} names of {} categories from {} folder(s) into {} ({:.1} MiB) in {:.2} s",
        found.len(),
        folders.len(),
        out.display(),
        ix.heap_bytes() as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `classify`: one line out per line in: the input's host, a tab, its categories
/// (comma-separated, most specific entry first) or `-`.
///
/// A line is a host, a URL (`http://host/path`: the URL lists are searched too), or a
/// Squid helper line (`URL client user method …`: the first field is taken).
pub fn classify(policy: &Path) -> anyhow::Result<ExitCode> {
    let c = match load_with(policy, true) {
        Ok(c) => c,
        Err(d) => {
            print_diags(&d);
            eprintln!("{}: the policy is not valid", policy.display());
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let cl = &c.classifier;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut line = Vec::with_capacity(256);
    let mut result = Classification::default();
    let mut scratch = String::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        let field = text.split_ascii_whitespace().next().unwrap_or("");
        let (authority, path) = match field.split_once("://") {
            Some((_, rest)) => match rest.find('/') {
                Some(i) => (&rest[..i], Some(&rest[i..])),
                None => (rest, None),
            },
            None => (field, None),
        };
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let host = Host::parse_authority(authority)
            .map(|(h, _)| h)
            .or_else(|_| Host::parse(authority));
        let Ok(host) = host else {
            writeln!(out, "{field}\t?")?;
            continue;
        };
        cl.classify(&host, path, &mut scratch, &mut result);
        out.write_all(host.as_str().as_bytes())?;
        let mut first = true;
        for tag in result.tags() {
            let info = cl.tag(tag);
            if info.kind != TagKind::Category {
                continue;
            }
            out.write_all(if first { b"\t" } else { b"," })?;
            out.write_all(info.name.as_bytes())?;
            first = false;
        }
        out.write_all(if first { b"\t-\n" } else { b"\n" })?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
