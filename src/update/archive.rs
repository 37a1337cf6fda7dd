//! Unpacking a UT1-shaped archive (`blacklists/<category>/{domains,urls,usage,expressions}`
//! in a `.tar.gz`) into a new folder, refusing what could write elsewhere or without
//! bound: absolute paths, `..`, links other than UT1's category aliases (never created
//! on disk: the alias gets a copy of its target's files), hard links, devices, more
//! bytes or files than allowed. The gzip checksum is checked to the last byte.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// The files of a category folder kept from the archive.
const CATEGORY_FILES: &[&str] = &["domains", "urls", "usage", "expressions"];
/// Files at the archive's root kept (UT1's catalogue of categories and its notes).
const ROOT_FILES: &[&str] = &["global_usage", "README", "README.md", "LICENSE"];

/// Bounds on what an archive may unpack to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of files, all together.
    pub max_bytes: u64,
    /// Entries in the archive.
    pub max_entries: usize,
}

/// What was unpacked.
#[derive(Debug, Default)]
pub struct Unpacked {
    /// Each category with a `domains` or `urls` file, and which of the two it has.
    pub categories: BTreeMap<String, (bool, bool)>,
    /// Categories with an `expressions` file (regular expressions on URLs), which the
    /// proxy does not apply.
    pub expressions: Vec<String>,
    /// Categories that are links to another (UT1's English aliases): copied.
    pub aliases: Vec<(String, String)>,
    /// Entries neither kept nor refused (other files of UT1's folders), counted.
    pub ignored: usize,
    pub bytes: u64,
}

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the archive is damaged: {0}")]
    Damaged(String),
    #[error("the archive holds an unsafe entry {path:?}: {why}")]
    Unsafe { path: String, why: &'static str },
    #[error("the archive unpacks to more than {0} bytes (max_unpacked_bytes)")]
    TooBig(u64),
    #[error("the archive holds more than {0} entries")]
    TooManyEntries(usize),
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Unpacks the gzip'd tar `archive` into `into` (which must not exist yet).
pub fn unpack(archive: &[u8], into: &Path, limits: Limits) -> Result<Unpacked, ArchiveError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ArchiveError::Io { path, source }
    };
    fs::create_dir(into).map_err(io_err(into))?;
    let mut out = Unpacked::default();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let damaged = |e: io::Error| ArchiveError::Damaged(e.to_string());
    let mut seen = 0usize;
    for entry in tar.entries().map_err(damaged)? {
        let mut entry = entry.map_err(damaged)?;
        seen += 1;
        if seen > limits.max_entries {
            return Err(ArchiveError::TooManyEntries(limits.max_entries));
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let unsafe_ = |why| ArchiveError::Unsafe {
            path: shown.clone(),
            why,
        };
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let parts = safe_parts(&raw).map_err(unsafe_)?;
        // The first part is the archive's root folder (UT1: `blacklists`).
        let rel: Vec<&str> = parts.iter().skip(1).map(String::as_str).collect();
        match kind {
            k if k.is_dir() => {
                if let [cat] = rel.as_slice() {
                    let d = into.join(cat);
                    fs::create_dir_all(&d).map_err(io_err(&d))?;
                }
            }
            k if k.is_file() => {
                let size = entry.header().size().map_err(damaged)?;
                if out.bytes + size > limits.max_bytes {
                    return Err(ArchiveError::TooBig(limits.max_bytes));
                }
                let target = match rel.as_slice() {
                    [f] if ROOT_FILES.contains(f) => into.join(f),
                    [cat, f] if CATEGORY_FILES.contains(f) => {
                        let d = into.join(cat);
                        fs::create_dir_all(&d).map_err(io_err(&d))?;
                        match *f {
                            "domains" => {
                                out.categories.entry(cat.to_string()).or_default().0 = true
                            }
                            "urls" => out.categories.entry(cat.to_string()).or_default().1 = true,
                            "expressions" => out.expressions.push(cat.to_string()),
                            _ => {}
                        }
                        d.join(f)
                    }
                    _ => {
                        out.ignored += 1;
                        continue;
                    }
                };
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(io_err(&target))?;
                // The header's size bounds the copy; a short entry is a damaged archive.
                let copied = io::copy(&mut (&mut entry).take(size), &mut f).map_err(damaged)?;
                if copied != size {
                    return Err(ArchiveError::Damaged(format!("{shown} is cut short")));
                }
                out.bytes += size;
            }
            k if k.is_symlink() => {
                let link = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                // UT1's aliases: `blacklists/porn -> adult`, a sibling category.
                let target = safe_parts(&link)
                    .ok()
                    .filter(|p| p.len() == 1 && !p[0].starts_with('.'));
                match (rel.as_slice(), target) {
                    ([alias], Some(t)) => out.aliases.push((alias.to_string(), t[0].clone())),
                    _ => return Err(unsafe_("a link out of its category folder")),
                }
            }
            k if k.is_hard_link() => return Err(unsafe_("a hard link")),
            _ => return Err(unsafe_("a device, pipe or other special file")),
        }
    }
    // Reads to the end, so that the gzip trailer (CRC and length) is checked too.
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(damaged)?;
    copy_aliases(into, &mut out)?;
    out.expressions.sort();
    out.expressions.dedup();
    Ok(out)
}

/// The normal parts of an entry's path, or why it is refused.
fn safe_parts(raw: &[u8]) -> Result<Vec<String>, &'static str> {
    let s = std::str::from_utf8(raw).map_err(|_| "a name that is not UTF-8")?;
    let mut parts = Vec::new();
    for c in Path::new(s).components() {
        match c {
            Component::Normal(p) => {
                let p = p.to_str().ok_or("a name that is not UTF-8")?;
                if p.starts_with('.') {
                    return Err("a hidden name");
                }
                parts.push(p.to_string());
            }
            Component::CurDir => {}
            Component::ParentDir => return Err("a `..` in its path"),
            Component::RootDir | Component::Prefix(_) => return Err("an absolute path"),
        }
    }
    if parts.is_empty() {
        return Err("an empty path");
    }
    Ok(parts)
}

/// Gives each alias a copy of its target's files (no link is ever made on disk).
fn copy_aliases(into: &Path, out: &mut Unpacked) -> Result<(), ArchiveError> {
    for (alias, target) in &out.aliases {
        let Some(&files) = out.categories.get(target) else {
            continue;
        };
        let (from, to) = (into.join(target), into.join(alias));
        fs::create_dir_all(&to).map_err(|source| ArchiveError::Io {
            path: to.clone(),
            source,
        })?;
        for f in CATEGORY_FILES {
            let src = from.join(f);
            if src.is_file() {
                fs::copy(&src, to.join(f)).map_err(|source| ArchiveError::Io {
                    path: to.join(f),
                    source,
                })?;
            }
        }
        out.categories.insert(alias.clone(), files);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_names_are_safe() {
        assert_eq!(
            safe_parts(b"blacklists/adult/domains").unwrap(),
            ["blacklists", "adult", "domains"]
        );
        assert_eq!(safe_parts(b"./blacklists/x").unwrap(), ["blacklists", "x"]);
        assert!(safe_parts(b"/etc/passwd").is_err());
        assert!(safe_parts(b"blacklists/../../x").is_err());
        assert!(safe_parts(b"blacklists/.hidden").is_err());
        assert!(safe_parts(b"").is_err());
    }
}
