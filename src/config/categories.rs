//! Loading squidGuard/UT1 category folders and site list files (cold path).
//!
//! A category folder holds one sub-folder per category, each with a `domains` file (a
//! domain a line: it matches itself and its subdomains) and optionally a `urls` file
//! (`host/path` prefixes). Comments (`#`) and blank lines are ignored; a bad line is
//! reported with its file and line (a warning) and skipped, never fatal, in category
//! files and in the policy's list files alike, as squidGuard does. `*.example.com` and
//! `.example.com` (Squid's and squidGuard's spellings) are read as `example.com` with a
//! note. The same category in two
//! folders is the union of both. An optional `global_usage` file at the folder's root
//! (UT1's catalogue) gives each category's name in French and English.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use crate::classify::{Host, IndexBuilder, TagId, UrlBuilder};

use super::diag::{Diags, Pos};

/// Most bad lines reported one by one per file; the rest are counted.
const MAX_REPORTED_BAD_LINES: usize = 5;

/// One site entry of a list or category file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A domain and its subdomains, or (`exact`) this host only.
    Domain { host: Host, exact: bool },
    /// A host (and its subdomains) with a path prefix.
    Url { host: Host, path: String },
}

/// Parses one entry: `example.com`, `=www.example.com`, `example.com/path`, or an IP
/// address; `.example.com` and `*.example.com` (Squid style) are read as `example.com`.
pub fn parse_entry(s: &str) -> Result<Entry, String> {
    parse_entry_noted(s).map(|(e, _)| e)
}

/// [`parse_entry`], with a note when the entry was read otherwise than written (a
/// leading `.` or `*.`, which an entry does not need: it already covers subdomains).
pub fn parse_entry_noted(s: &str) -> Result<(Entry, Option<String>), String> {
    let s = s.trim();
    let (exact, s) = match s.strip_prefix('=') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (s, note) = match (s.strip_prefix("*."), s.strip_prefix('.')) {
        (Some(rest), _) | (None, Some(rest)) if !exact => {
            let written = &s[..s.len() - rest.len()];
            let host = rest.split('/').next().unwrap_or(rest);
            (
                rest,
                Some(format!(
                    "`{written}{rest}` is read as `{rest}`, which covers `{host}` and all its subdomains"
                )),
            )
        }
        _ => (s.strip_prefix('.').unwrap_or(s), None),
    };
    if s.contains("://") {
        return Err("write the site without `http://` or `https://`".into());
    }
    if let Some((host, path)) = s.split_once('/') {
        if exact {
            return Err("`=` applies to a host, not to a URL".into());
        }
        let host = parse_host_part(host)?;
        let e = Entry::Url {
            host,
            path: format!("/{path}"),
        };
        return Ok((e, note));
    }
    let host = parse_host_part(s)?;
    Ok((Entry::Domain { host, exact }, note))
}

fn parse_host_part(s: &str) -> Result<Host, String> {
    if s.contains('*') {
        return Err(
            "a `*` can only lead the entry (`*.example.com`, read as `example.com`)".into(),
        );
    }
    // The port, if any, is ignored: an entry covers every port.
    let (host, _port) = Host::parse_written(s).map_err(|e| e.to_string())?;
    Ok(host)
}

/// Names and folders of the categories found in `folders`, sorted by name.
pub fn discover(folders: &[PathBuf], diags: &mut Diags) -> BTreeMap<String, Vec<PathBuf>> {
    let mut found: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for folder in folders {
        let rd = match fs::read_dir(folder) {
            Ok(rd) => rd,
            Err(e) => {
                diags.error(
                    "category-folder",
                    folder,
                    Pos::default(),
                    None,
                    format!("cannot read category folder: {e}"),
                    None,
                );
                continue;
            }
        };
        let mut subs: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir() && (p.join("domains").is_file() || p.join("urls").is_file()))
            .collect();
        subs.sort();
        for sub in subs {
            let Some(name) = sub.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            found.entry(name.to_string()).or_default().push(sub);
        }
    }
    found
}

/// French and English names of categories, from a folder's `global_usage`.
pub fn read_titles(folders: &[PathBuf]) -> HashMap<String, (Option<String>, Option<String>)> {
    let mut titles: HashMap<String, (Option<String>, Option<String>)> = HashMap::new();
    for folder in folders {
        let Ok(bytes) = fs::read(folder.join("global_usage")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let mut current: Option<String> = None;
        for line in text.lines() {
            let line = line.trim();
            if let Some(v) = line.strip_prefix("NAME:") {
                current = Some(v.trim().to_string());
            } else if let Some(cat) = &current {
                let e = titles.entry(cat.clone()).or_default();
                if let Some(v) = line.strip_prefix("NAME FR:") {
                    e.0 = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("NAME EN:") {
                    e.1 = Some(v.trim().to_string());
                }
            }
        }
    }
    titles
}

/// Counts of what one file contributed.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileCounts {
    pub domains: u32,
    pub urls: u32,
    pub bad: u32,
}

/// Reads a `domains`, `urls` or list file into the builders under `tag`. A bad line is
/// a warning (the first few one by one, then a count) and is skipped; a line read
/// otherwise than written is a note (the first few, then a count).
pub fn load_file(
    path: &Path,
    tag: TagId,
    domains: &mut IndexBuilder,
    urls: &mut UrlBuilder,
    diags: &mut Diags,
) -> std::io::Result<FileCounts> {
    let mut noted = 0usize;
    let bytes = fs::read(path)?;
    let mut counts = FileCounts::default();
    for (n, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = String::from_utf8_lossy(raw);
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let pos = Pos {
            line: n + 1,
            col: 1,
        };
        let entry = parse_entry_noted(t).map(|(entry, note)| {
            if let Some(note) = note {
                noted += 1;
                if noted <= MAX_REPORTED_BAD_LINES {
                    diags.note("read-as", path, pos, None, note, None);
                }
            }
            entry
        });
        match entry {
            Ok(Entry::Domain { host, exact }) => {
                domains.add(&host, tag, exact);
                counts.domains += 1;
            }
            Ok(Entry::Url { host, path }) => {
                urls.add(&host, &path, tag);
                counts.urls += 1;
            }
            Err(why) => {
                counts.bad += 1;
                if counts.bad as usize <= MAX_REPORTED_BAD_LINES {
                    let msg = format!("bad entry {t:?}: {why}; the line is skipped");
                    let help = Some("fix or remove the line".to_string());
                    diags.warning("bad-line", path, pos, None, msg, help);
                }
            }
        }
    }
    if counts.bad as usize > MAX_REPORTED_BAD_LINES {
        let msg = format!(
            "{} more bad lines in this file were skipped",
            counts.bad as usize - MAX_REPORTED_BAD_LINES
        );
        diags.warning("bad-line", path, Pos::default(), None, msg, None);
    }
    if noted > MAX_REPORTED_BAD_LINES {
        let msg = format!(
            "{} more lines in this file were read without their leading `.` or `*.`",
            noted - MAX_REPORTED_BAD_LINES
        );
        diags.note("read-as", path, Pos::default(), None, msg, None);
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        let d = |s: &str, e: bool| Entry::Domain {
            host: Host::parse(s).unwrap(),
            exact: e,
        };
        assert_eq!(parse_entry("Example.COM").unwrap(), d("example.com", false));
        assert_eq!(
            parse_entry(".example.com").unwrap(),
            d("example.com", false)
        );
        assert_eq!(
            parse_entry("=www.example.com").unwrap(),
            d("www.example.com", true)
        );
        assert_eq!(parse_entry("10.1.2.3").unwrap(), d("10.1.2.3", false));
        assert_eq!(
            parse_entry("example.com/a/b").unwrap(),
            Entry::Url {
                host: Host::parse("example.com").unwrap(),
                path: "/a/b".into()
            }
        );
        assert_eq!(
            parse_entry("*.example.com").unwrap(),
            d("example.com", false)
        );
        let (_, note) = parse_entry_noted("*.example.com/a").unwrap();
        assert_eq!(
            note.as_deref(),
            Some(
                "`*.example.com/a` is read as `example.com/a`, which covers `example.com` and all its subdomains"
            )
        );
        assert_eq!(parse_entry_noted("example.com").unwrap().1, None);
        assert!(parse_entry("www.*.example.com").is_err());
        assert!(parse_entry("=*.example.com").is_err());
        assert!(parse_entry("https://example.com").is_err());
        assert!(parse_entry("=example.com/x").is_err());
        assert!(parse_entry("exa mple.com").is_err());
        // Bare IPv6 entries are whole addresses, never `address:port` guesses
        // (fuzz finding F2: `2001:db8::1:80` used to become `2001:db8::1`).
        assert_eq!(parse_entry("::1").unwrap(), d("::1", false));
        assert_eq!(
            parse_entry("2001:db8::1:80").unwrap(),
            d("2001:db8::1:80", false)
        );
        assert_eq!(
            parse_entry("[2001:db8::1]:443").unwrap(),
            d("2001:db8::1", false)
        );
        assert_eq!(parse_entry("=2001:DB8::1").unwrap(), d("2001:db8::1", true));
        assert!(parse_entry("2001:db8::1::2").is_err());
    }
}
