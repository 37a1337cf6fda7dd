//! `categories update`: the UT1 lists fetched, checked and put in force in one step.
//!
//! The archive is downloaded over HTTPS with the proxy's upstream trust ([`fetch`]),
//! checked against an optional `sha256sum` file, unpacked into a new generation folder
//! beside the category folder with every entry and size bounded ([`archive`]), its lists
//! read with the proxy's own entry parser, and the policy compiled against it with the
//! proxy's own compile, which also writes the next index aside. Nothing in force is
//! touched until all of that succeeded. Then the category folder, a symbolic link
//! `ut1 -> ut1.d/<generation>`, is replaced by `rename(2)` of a new link, and the index
//! is renamed over the old one right after: a running proxy sees both changes within its
//! debounce and reloads once. Between the two renames the index and the lists disagree,
//! which the index's own staleness check (sizes and times of every list) detects: a load
//! in that instant reads the text lists, never the wrong index. The previous generation
//! is kept (to go back by hand); older ones are removed.
//!
//! A first update of a plain folder exchanges it with the link atomically
//! (`renameat2(RENAME_EXCHANGE)`) and keeps it as the previous generation.

pub mod archive;
pub mod fetch;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use crate::config::{self, Diags, categories};

/// The folder of generations beside the category folder `ut1`: `ut1.d`.
pub fn generations_dir(folder: &Path) -> PathBuf {
    let mut name = folder.file_name().unwrap_or_default().to_os_string();
    name.push(".d");
    folder.with_file_name(name)
}

/// Name of the file, in a generation folder, holding the archive's SHA-256.
const ARCHIVE_SUM: &str = ".archive.sha256";
/// A list with more bad lines than this share (and more than [`BAD_LINES_FLOOR`]) is
/// refused: it is damaged, not merely untidy.
const BAD_LINES_PERCENT: usize = 1;
const BAD_LINES_FLOOR: usize = 10;
/// Most entries an archive may hold (UT1: about 250).
const MAX_ENTRIES: usize = 100_000;

/// What to update and from where.
#[derive(Debug, Clone)]
pub struct Options {
    pub policy: PathBuf,
    /// The category folder to replace; `None`: the policy's folder named `ut1`.
    pub folder: Option<PathBuf>,
    pub url: String,
    pub checksum_url: Option<String>,
    pub upstream_ca: Vec<PathBuf>,
    pub max_bytes: u64,
    pub max_unpacked_bytes: u64,
    pub min_categories: usize,
}

/// How an update went.
#[derive(Debug)]
pub enum Outcome {
    /// The archive is the one in force already (same SHA-256): nothing changed.
    UpToDate {
        folder: PathBuf,
    },
    Updated(Report),
}

/// What an update put in force.
#[derive(Debug)]
pub struct Report {
    pub folder: PathBuf,
    pub generation: PathBuf,
    pub index: PathBuf,
    /// Categories of the new folder; names in the whole index (every folder).
    pub categories: usize,
    pub names: usize,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Categories with an `expressions` file, which is not applied.
    pub expressions: Vec<String>,
    pub aliases: Vec<(String, String)>,
    /// Bad lines skipped, all lists together.
    pub bad_lines: usize,
    pub previous: Option<PathBuf>,
}

/// Why an update was refused; the lists in force are untouched.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("{0}")]
    Setup(String),
    #[error("download of {url} failed: {why}")]
    Download { url: String, why: String },
    #[error("checksum: {0}")]
    Checksum(String),
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    #[error("the archive was refused: {0}")]
    Refused(String),
    #[error("the policy does not compile with the new lists")]
    Policy(Diags),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl UpdateError {
    /// A configuration problem (exit 2) rather than a failure of this run (exit 1).
    pub fn is_config(&self) -> bool {
        matches!(self, UpdateError::Setup(_))
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> UpdateError {
    let what = what.into();
    move |source| UpdateError::Io { what, source }
}

/// The category folder to replace: `wanted` if the policy names it, else the policy's
/// folder named `ut1`.
pub fn target_folder(policy: &Path, wanted: Option<&Path>) -> Result<PathBuf, UpdateError> {
    let folders = config::category_folders(policy)
        .map_err(|e| UpdateError::Setup(format!("{}: {e}", policy.display())))?;
    let found = match wanted {
        Some(w) => folders.into_iter().find(|f| config::same_place(f, w)),
        None => folders
            .into_iter()
            .find(|f| f.file_name().is_some_and(|n| n == "ut1")),
    };
    found.ok_or_else(|| {
        UpdateError::Setup(match wanted {
            Some(w) => format!(
                "{} is not one of the category folders of {}",
                w.display(),
                policy.display()
            ),
            None => format!(
                "{} names no category folder `ut1`: say which folder to replace with --folder",
                policy.display()
            ),
        })
    })
}

/// Runs the whole update; see the module's description.
pub async fn run(o: &Options) -> Result<Outcome, UpdateError> {
    let folder = target_folder(&o.policy, o.folder.as_deref())?;
    let fetcher = fetch::Fetcher::new(&o.upstream_ca)?;
    let archive = fetcher.get(&o.url, o.max_bytes).await?;
    let sum: [u8; 32] = sha2::Sha256::digest(&archive).into();
    if let Some(cu) = &o.checksum_url {
        let text = fetcher.get(cu, 64 * 1024).await?;
        let name = url::Url::parse(&o.url)
            .ok()
            .and_then(|u| u.path_segments()?.next_back().map(str::to_string))
            .unwrap_or_default();
        let want = fetch::expected_sha256(&String::from_utf8_lossy(&text), &name)
            .map_err(UpdateError::Checksum)?;
        if want != sum {
            return Err(UpdateError::Checksum(format!(
                "the archive's SHA-256 is {}, the checksum file says {}",
                fetch::hex(&sum),
                fetch::hex(&want)
            )));
        }
    }
    let sum = fetch::hex(&sum);
    if fs::read_to_string(folder.join(ARCHIVE_SUM)).is_ok_and(|s| s.trim() == sum)
        && index_is_fresh(&o.policy)
    {
        return Ok(Outcome::UpToDate { folder });
    }
    let policy = o.policy.clone();
    let limits = archive::Limits {
        max_bytes: o.max_unpacked_bytes,
        max_entries: MAX_ENTRIES,
    };
    let min = o.min_categories;
    tokio::task::spawn_blocking(move || install(&policy, &folder, &archive, &sum, limits, min))
        .await
        .map_err(|e| UpdateError::Setup(format!("the update task failed: {e}")))?
        .map(Outcome::Updated)
}

/// Whether the policy's compiled index matches its lists now (an update stopped between
/// its two renames, or an index damaged since, is not "up to date").
fn index_is_fresh(policy: &Path) -> bool {
    let Ok(folders) = config::category_folders(policy) else {
        return false;
    };
    let folders: Vec<PathBuf> = folders.into_iter().filter(|f| f.is_dir()).collect();
    let found = categories::discover(&folders, &mut Diags::default());
    let index = config::index_file::path_for(policy);
    matches!(
        config::index_file::open(&index, &folders, &found),
        config::index_file::IndexFile::Fresh(..)
    )
}

/// Unpacks, checks, compiles and swaps (blocking).
fn install(
    policy: &Path,
    folder: &Path,
    archive: &[u8],
    sum: &str,
    limits: archive::Limits,
    min_categories: usize,
) -> Result<Report, UpdateError> {
    let gens = generations_dir(folder);
    let parent = folder.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_err(format!("cannot create {}", parent.display())))?;
    let _lock = lock(parent)?;
    let name = folder.file_name().unwrap_or_default().to_string_lossy();
    remove_leftovers(parent, &name);
    // Staged beside the folder (same file system, so renames are atomic), hidden, and
    // in no folder the proxy watches; `ut1.d` is created only once all checks passed.
    let staged = parent.join(format!(".{name}.new-{:016x}", rand::random::<u64>()));
    let mut cleanup = Cleanup(vec![staged.clone()]);
    let unpacked = archive::unpack(archive, &staged, limits)?;
    if unpacked.categories.len() < min_categories {
        return Err(UpdateError::Refused(format!(
            "{} categories, fewer than the {min_categories} expected (min_categories): an empty or cut archive does not replace the lists",
            unpacked.categories.len()
        )));
    }
    let bad_lines = check_lists(&staged, &unpacked)?;
    fs::write(staged.join(ARCHIVE_SUM), format!("{sum}\n"))
        .map_err(io_err("cannot write the archive's checksum"))?;

    // The policy against the new lists, with the proxy's compile; the index for them.
    let built =
        config::index_file::build(policy, Some((folder, &staged))).map_err(UpdateError::Policy)?;
    let index = config::index_file::path_for(policy);
    let index_tmp = built
        .index
        .write_aside(&index)
        .map_err(io_err(format!("cannot write beside {}", index.display())))?;
    cleanup.0.push(index_tmp.clone());

    let before = category_names(folder);
    fs::create_dir_all(&gens).map_err(io_err(format!("cannot create {}", gens.display())))?;
    let generation = gens.join(next_generation_name(&gens));
    fs::rename(&staged, &generation).map_err(io_err(format!(
        "cannot rename into {}",
        generation.display()
    )))?;
    cleanup.0[0] = generation.clone();
    let previous = swap_link(folder, &gens, &generation)?;
    cleanup.0.clear();
    // From here the new lists are in force: the index follows at once.
    fs::rename(&index_tmp, &index)
        .map_err(io_err(format!("cannot put {} in place", index.display())))?;
    sync_dir(folder.parent().unwrap_or(Path::new(".")));
    sync_dir(index.parent().unwrap_or(Path::new(".")));
    remove_old_generations(&gens, &generation, previous.as_deref());

    let after: Vec<String> = built.category_names.clone();
    Ok(Report {
        folder: folder.to_path_buf(),
        generation,
        index,
        categories: unpacked.categories.len(),
        names: built.names,
        added: after
            .iter()
            .filter(|c| !before.contains(c) && unpacked.categories.contains_key(*c))
            .cloned()
            .collect(),
        removed: before
            .iter()
            .filter(|c| !unpacked.categories.contains_key(*c))
            .cloned()
            .collect(),
        expressions: unpacked.expressions,
        aliases: unpacked.aliases,
        bad_lines,
        previous,
    })
}

/// Every `domains` and `urls` file read with the proxy's entry parser: one with too many
/// bad lines (or not text) refuses the archive. Returns the bad lines skipped.
fn check_lists(staged: &Path, unpacked: &archive::Unpacked) -> Result<usize, UpdateError> {
    let mut total_bad = 0usize;
    for cat in unpacked.categories.keys() {
        for file in ["domains", "urls"] {
            let p = staged.join(cat).join(file);
            let Ok(bytes) = fs::read(&p) else { continue };
            if bytes.contains(&0) {
                return Err(UpdateError::Refused(format!(
                    "{cat}/{file} is not a text list (it holds NUL bytes)"
                )));
            }
            let (mut lines, mut bad) = (0usize, 0usize);
            for raw in bytes.split(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(raw);
                let t = line.trim();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                lines += 1;
                bad += usize::from(categories::parse_entry(t).is_err());
            }
            if bad > BAD_LINES_FLOOR && bad * 100 > lines * BAD_LINES_PERCENT {
                return Err(UpdateError::Refused(format!(
                    "{cat}/{file}: {bad} of {lines} lines are not entries"
                )));
            }
            total_bad += bad;
        }
    }
    Ok(total_bad)
}

/// The categories of `folder` now (none if it does not exist).
fn category_names(folder: &Path) -> Vec<String> {
    categories::discover(&[folder.to_path_buf()], &mut Diags::default())
        .into_keys()
        .collect()
}

/// `20261205T063000Z`, or with `-2`, `-3`… if that one exists.
fn next_generation_name(gens: &Path) -> String {
    let now = time::OffsetDateTime::now_utc();
    let base = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| "generation".into());
    let mut name = base.clone();
    let mut n = 1;
    while gens.join(&name).exists() {
        n += 1;
        name = format!("{base}-{n}");
    }
    name
}

/// Points `folder` at `generation` in one step; returns the generation it pointed at
/// before, if any (a plain folder is moved into `gens` and becomes that).
fn swap_link(
    folder: &Path,
    gens: &Path,
    generation: &Path,
) -> Result<Option<PathBuf>, UpdateError> {
    let parent = folder.parent().unwrap_or(Path::new("."));
    let name = folder.file_name().unwrap_or_default();
    // Relative, so that the tree can be moved or mounted elsewhere whole.
    let target = Path::new(gens.file_name().unwrap_or_default())
        .join(generation.file_name().unwrap_or_default());
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".link-{:016x}", rand::random::<u64>()));
    let tmp = parent.join(tmp_name);
    std::os::unix::fs::symlink(&target, &tmp)
        .map_err(io_err(format!("cannot create the link {}", tmp.display())))?;
    let meta = fs::symlink_metadata(folder);
    let previous = match meta {
        Ok(m) if m.file_type().is_symlink() => {
            let before = fs::read_link(folder).ok().map(|t| parent.join(t));
            if let Err(e) = fs::rename(&tmp, folder) {
                let _ = fs::remove_file(&tmp);
                return Err(io_err(format!("cannot replace {}", folder.display()))(e));
            }
            before
        }
        Ok(m) if m.is_dir() => {
            // First update: the plain folder and the link change places at once.
            if let Err(e) = exchange(&tmp, folder) {
                let _ = fs::remove_file(&tmp);
                return Err(io_err(format!("cannot replace {}", folder.display()))(e));
            }
            let kept = gens.join(format!(
                "{}-before-update",
                generation.file_name().unwrap_or_default().to_string_lossy()
            ));
            fs::rename(&tmp, &kept).map_err(io_err(format!(
                "cannot keep the old lists in {}",
                kept.display()
            )))?;
            Some(kept)
        }
        Ok(_) => {
            let _ = fs::remove_file(&tmp);
            return Err(UpdateError::Setup(format!(
                "{} is neither a folder nor a link",
                folder.display()
            )));
        }
        Err(_) => {
            fs::rename(&tmp, folder)
                .map_err(io_err(format!("cannot create {}", folder.display())))?;
            None
        }
    };
    Ok(previous)
}

/// Exchanges two paths atomically (Linux `renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a path"))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Removes every generation but `current` and `previous`.
fn remove_old_generations(gens: &Path, current: &Path, previous: Option<&Path>) {
    let Ok(rd) = fs::read_dir(gens) else { return };
    for e in rd.filter_map(Result::ok) {
        let p = e.path();
        let name = e.file_name();
        if p == current
            || previous.is_some_and(|k| k.file_name() == Some(&name))
            || name.to_string_lossy().starts_with('.')
        {
            continue;
        }
        if let Err(e) = fs::remove_dir_all(&p) {
            tracing::warn!(path = %p.display(), "cannot remove an old generation: {e}");
        }
    }
}

/// Staging folders a killed update left behind (`.ut1.new-…`, `.ut1.link-…`).
fn remove_leftovers(parent: &Path, name: &str) {
    let Ok(rd) = fs::read_dir(parent) else { return };
    let (new, link) = (format!(".{name}.new-"), format!(".{name}.link-"));
    for e in rd.filter_map(Result::ok) {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(&new) {
            let _ = fs::remove_dir_all(e.path());
        } else if n.starts_with(&link) && e.file_type().is_ok_and(|t| t.is_symlink()) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// One update at a time: an exclusive `flock` on the folder holding the category
/// folder (no lock file to leave behind), held until dropped.
fn lock(parent: &Path) -> Result<fs::File, UpdateError> {
    use std::os::fd::AsRawFd as _;
    let f = fs::File::open(parent).map_err(io_err(format!("cannot open {}", parent.display())))?;
    // SAFETY: flock on a descriptor this function owns.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        return Err(UpdateError::Setup(format!(
            "another update is running ({} is locked)",
            parent.display()
        )));
    }
    Ok(f)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Paths removed on drop unless cleared: what a failed update created.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            if p.is_dir() {
                let _ = fs::remove_dir_all(p);
            } else {
                let _ = fs::remove_file(p);
            }
        }
    }
}
