//! Loading squidGuard/UT1 category folders and site list files (cold path).
//!
//! A category folder holds one sub-folder per category, each with a `domains` file (a
//! domain a line: it matches itself and its subdomains) and optionally a `urls` file
//! (`host/path` prefixes). Comments (`#`) and blank lines are ignored; a bad line is
//! reported with its file and line and skipped, never fatal. The same category in two
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

/// Parses one entry: `example.com`, `=www.example.com`, `.example.com` (Squid style,
/// same as `example.com`), `example.com/path`, or an IP address.
pub fn parse_entry(s: &str) -> Result<Entry, String> {
    let s = s.trim();
    let (exact, s) = match s.strip_prefix('=') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let s = s.strip_prefix('.').unwrap_or(s);
    if s.contains("://") {
        return Err("write the site without `http://` or `https://`".into());
    }
    if let Some((host, path)) = s.split_once('/') {
        if exact {
            return Err("`=` applies to a host, not to a URL".into());
        }
        let host = parse_host_part(host)?;
        return Ok(Entry::Url {
            host,
            path: format!("/{path}"),
        });
    }
    let host = parse_host_part(s)?;
    Ok(Entry::Domain { host, exact })
}

fn parse_host_part(s: &str) -> Result<Host, String> {
    if s.contains('*') {
        return Err("wildcards are not needed: an entry already matches all subdomains".into());
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

/// How bad lines of a file are treated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BadLines {
    /// Reported as warnings and skipped (category files, often third-party).
    Warn,
    /// Reported as errors (the policy's own list files).
    Error,
}

/// Reads a `domains`, `urls` or list file into the builders under `tag`.
pub fn load_file(
    path: &Path,
    tag: TagId,
    domains: &mut IndexBuilder,
    urls: &mut UrlBuilder,
    bad_lines: BadLines,
    diags: &mut Diags,
) -> std::io::Result<FileCounts> {
    let bytes = fs::read(path)?;
    let mut counts = FileCounts::default();
    for (n, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = String::from_utf8_lossy(raw);
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        match parse_entry(t) {
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
                    let pos = Pos {
                        line: n + 1,
                        col: 1,
                    };
                    let msg = format!("bad entry {t:?}: {why}");
                    let help = Some("fix or remove the line; it is skipped".to_string());
                    match bad_lines {
                        BadLines::Warn => diags.warning("bad-line", path, pos, None, msg, help),
                        BadLines::Error => diags.error("bad-line", path, pos, None, msg, help),
                    }
                }
            }
        }
    }
    if counts.bad as usize > MAX_REPORTED_BAD_LINES {
        let msg = format!(
            "{} more bad lines in this file were skipped",
            counts.bad as usize - MAX_REPORTED_BAD_LINES
        );
        match bad_lines {
            BadLines::Warn => diags.warning("bad-line", path, Pos::default(), None, msg, None),
            BadLines::Error => diags.error("bad-line", path, Pos::default(), None, msg, None),
        }
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
        assert!(parse_entry("*.example.com").is_err());
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
