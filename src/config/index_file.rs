//! The compiled categories file beside a policy (`charte.yaml` → `charte.idx`; the
//! policy compiler, which reads it, is `compile`): every domain entry of its category
//! folders in one [`DomainIndex`] file, written by `charte-proxy categories compile` and
//! opened in place (memory-mapped) by every later load, so that six million domains are
//! ready in milliseconds instead of being parsed again at each start and reload.
//!
//! The file carries a description (JSON, in the index's meta section): the folders, the
//! size and modification time of every `domains`/`urls` file it was built from, each
//! category's counts, and the URL entries (few; put back into their table at load).
//! A load uses the file only when that description still matches the folders; otherwise
//! it says why and reads the text lists as before.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::classify::{DomainIndex, TagId};

/// Version of the description; a different one makes the file stale.
const META_VERSION: u32 = 1;

/// Where the compiled categories of the policy at `policy` live.
pub fn path_for(policy: &Path) -> PathBuf {
    policy.with_extension("idx")
}

/// One source file as it was when compiled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub path: String,
    pub len: u64,
    pub mtime_ns: u128,
}

/// A category as compiled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetaCategory {
    pub name: String,
    pub domains: u32,
    pub urls: u32,
}

/// The description stored in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub version: u32,
    pub folders: Vec<String>,
    pub files: Vec<Stamp>,
    /// In tag order (tag = position).
    pub categories: Vec<MetaCategory>,
    /// URL entries: host, path, tag.
    pub urls: Vec<(String, String, TagId)>,
}

/// The `domains` and `urls` files of the categories found, in tag order, as they are now.
pub fn stamps(found: &BTreeMap<String, Vec<PathBuf>>) -> Vec<Stamp> {
    let mut out = Vec::new();
    for dirs in found.values() {
        for d in dirs {
            for file in ["domains", "urls"] {
                let p = d.join(file);
                let Ok(m) = fs::metadata(&p) else { continue };
                if !m.is_file() {
                    continue;
                }
                let mtime_ns = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                out.push(Stamp {
                    path: p.display().to_string(),
                    len: m.len(),
                    mtime_ns,
                });
            }
        }
    }
    out
}

/// What [`open`] found: the compiled file to use, or why not.
pub enum IndexFile {
    /// No compiled file: read the text lists.
    Absent,
    /// A compiled file that matches the folders.
    Fresh(Box<DomainIndex>, Meta),
    /// A compiled file that cannot be used, and why (to tell the administrator).
    Stale(String),
}

/// Opens the compiled categories at `path` if they match `folders` and `found`.
pub fn open(path: &Path, folders: &[PathBuf], found: &BTreeMap<String, Vec<PathBuf>>) -> IndexFile {
    if !path.exists() {
        return IndexFile::Absent;
    }
    let ix = match DomainIndex::open(path) {
        Ok(ix) => ix,
        Err(e) => return IndexFile::Stale(e.to_string()),
    };
    let meta: Meta = match serde_json::from_slice(ix.meta()) {
        Ok(m) => m,
        Err(e) => {
            return IndexFile::Stale(format!(
                "{} has an unreadable description ({e})",
                path.display()
            ));
        }
    };
    if meta.version != META_VERSION {
        return IndexFile::Stale(format!(
            "{} was compiled by another version",
            path.display()
        ));
    }
    let folders: Vec<String> = folders.iter().map(|f| f.display().to_string()).collect();
    if meta.folders != folders {
        return IndexFile::Stale(format!(
            "{} was compiled from other category folders ({})",
            path.display(),
            meta.folders.join(", ")
        ));
    }
    let names: Vec<&str> = found.keys().map(String::as_str).collect();
    let compiled: Vec<&str> = meta.categories.iter().map(|c| c.name.as_str()).collect();
    if names != compiled {
        return IndexFile::Stale(format!(
            "{} was compiled with other categories",
            path.display()
        ));
    }
    let now = stamps(found);
    if now != meta.files {
        let changed = now
            .iter()
            .find(|s| !meta.files.contains(s))
            .map(|s| s.path.clone())
            .or_else(|| {
                meta.files
                    .iter()
                    .find(|s| !now.contains(s))
                    .map(|s| s.path.clone())
            })
            .unwrap_or_default();
        return IndexFile::Stale(format!(
            "{} is older than the category lists ({changed} changed)",
            path.display()
        ));
    }
    IndexFile::Fresh(Box::new(ix), meta)
}

/// The description to store for categories compiled from `folders`.
/// `files` are the [`stamps`] taken before the lists were read, so that a list changed
/// while compiling makes the file stale rather than silently out of date.
pub fn meta(
    folders: &[PathBuf],
    files: Vec<Stamp>,
    categories: Vec<MetaCategory>,
    urls: Vec<(String, String, TagId)>,
) -> Meta {
    Meta {
        version: META_VERSION,
        folders: folders.iter().map(|f| f.display().to_string()).collect(),
        files,
        categories,
        urls,
    }
}

/// A compiled categories file ready to write, and what it holds.
pub struct Built {
    /// The index with its description.
    pub index: DomainIndex,
    /// Category names (distinct domain entries) in the index.
    pub names: usize,
    /// Categories, and the category folders they came from.
    pub categories: usize,
    pub folders: usize,
    /// The categories found, by name.
    pub category_names: Vec<String>,
}

/// Compiles the category folders of the policy at `policy` into an index with its
/// description (what `categories compile` writes). With `redirect` (`(from, to)`), the
/// folder the policy names `from` is read at `to`, and the description still names
/// `from`: the file is then right for the lists once `to` is in place at `from`
/// (`categories update` builds the next index aside this way).
pub fn build(policy: &Path, redirect: Option<(&Path, &Path)>) -> Result<Built, super::Diags> {
    let c = match redirect {
        Some((from, to)) => super::load_redirected(policy, from, to)?,
        None => super::load_with(policy, false)?,
    };
    let folders = c.stats.category_folders.clone();
    let found = super::categories::discover(&folders, &mut super::Diags::default());
    let mut files = stamps(&found);
    let mut cats = Vec::new();
    let mut urls = Vec::new();
    for (id, (name, dirs)) in found.iter().enumerate() {
        let info = &c.classifier.tags[id];
        debug_assert!(info.kind == crate::classify::TagKind::Category && &*info.name == name);
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
                if let Ok(super::categories::Entry::Url { host, path }) =
                    super::categories::parse_entry(t)
                {
                    urls.push((host.as_str().to_string(), path, id as TagId));
                }
            }
        }
    }
    // The description names the folders as the policy does, the redirected one too.
    let mut named = folders.clone();
    if let Some((from, to)) = redirect {
        let real = super::category_folders(policy)
            .ok()
            .and_then(|all| all.into_iter().find(|f| super::same_place(f, from)))
            .unwrap_or_else(|| from.to_path_buf());
        for f in &mut named {
            if f == to {
                f.clone_from(&real);
            }
        }
        for s in &mut files {
            if let Ok(rest) = Path::new(&s.path).strip_prefix(to) {
                s.path = real.join(rest).display().to_string();
            }
        }
    }
    let names = c.classifier.categories.len();
    let meta = meta(&named, files, cats, urls);
    let meta = serde_json::to_vec(&meta).expect("the description serialises");
    Ok(Built {
        index: c.classifier.categories.with_meta(&meta),
        names,
        categories: found.len(),
        folders: folders.len(),
        category_names: found.keys().cloned().collect(),
    })
}
