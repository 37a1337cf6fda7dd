//! `Snapshot`: everything a request needs, compiled and immutable — the classifier
//! (domain and URL indexes, tag table) and the policy. A reload builds a whole new
//! snapshot and swaps it in only when it compiled; requests in flight keep the one they
//! started with.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::classify::Classifier;
use crate::config::{self, CompileStats, Diags};
use crate::policy::Policy;

pub struct Snapshot {
    pub classifier: Classifier,
    pub policy: Policy,
    /// Counts up from 1 with each successful load.
    pub generation: u64,
    pub loaded_at: SystemTime,
    pub stats: CompileStats,
    /// Warnings of the compile that produced this snapshot.
    pub warnings: Diags,
}

impl Snapshot {
    /// Loads and compiles the policy at `path` into generation `generation`.
    pub fn load(path: &Path, generation: u64) -> Result<Snapshot, Diags> {
        let c = config::load(path)?;
        Ok(Snapshot {
            classifier: c.classifier,
            policy: c.policy,
            generation,
            loaded_at: SystemTime::now(),
            stats: c.stats,
            warnings: c.diags,
        })
    }
}

/// Returns memory freed by glibc's allocator to the system (a no-op elsewhere). The
/// binary's Rust heap is mimalloc, which gives freed pages back by itself; glibc still
/// serves the C libraries (SQLite) and any build of the library without it.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How the last reload went, for `/health` and the logs.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// The last reload failed: an older policy is still in force.
    pub stale: bool,
    /// Every diagnostic of the last failed reload, one a line.
    pub last_error: Option<String>,
    pub last_attempt: Option<SystemTime>,
}

/// The snapshot in force, swapped whole on reload. Readers never wait: a request loads
/// the current `Arc<Snapshot>` once and keeps it until it is done.
pub struct Live {
    current: arc_swap::ArcSwap<Snapshot>,
    path: std::path::PathBuf,
    status: std::sync::Mutex<ReloadStatus>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Told of each snapshot put in force (the dialer's guard follows `internal_sites`
    /// this way): a callback, so that the snapshot needs nothing from the stages that
    /// use it.
    on_publish: std::sync::RwLock<Vec<OnPublish>>,
}

/// See [`Live::on_publish`].
type OnPublish = Box<dyn Fn(&Snapshot) + Send + Sync>;

impl Live {
    pub fn new(
        first: Snapshot,
        path: &Path,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Live {
        let live = Live {
            current: arc_swap::ArcSwap::from_pointee(first),
            path: path.to_path_buf(),
            status: std::sync::Mutex::new(ReloadStatus::default()),
            metrics,
            reloading: tokio::sync::Mutex::new(()),
            on_publish: std::sync::RwLock::new(Vec::new()),
        };
        live.publish(&live.get());
        live
    }

    /// The snapshot in force now.
    #[inline]
    pub fn get(&self) -> std::sync::Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The snapshot in force and how the last reload went, as one consistent view (a
    /// reload swaps both under the status lock): never a new generation with the
    /// previous reload's error.
    pub fn state(&self) -> (std::sync::Arc<Snapshot>, ReloadStatus) {
        let status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        (self.get(), status.clone())
    }

    pub fn policy_path(&self) -> &Path {
        &self.path
    }

    /// Builds a new snapshot aside and swaps it in if it compiled; otherwise keeps the
    /// one in force, logs every error and marks the policy stale.
    pub async fn reload(self: &std::sync::Arc<Self>) -> Result<u64, Diags> {
        let _one = self.reloading.lock().await;
        let next_gen = self.get().generation + 1;
        let path = self.path.clone();
        let built = tokio::task::spawn_blocking(move || Snapshot::load(&path, next_gen))
            .await
            .unwrap_or_else(|e| {
                let mut d = Diags::default();
                d.error(
                    "internal",
                    Path::new("-"),
                    Default::default(),
                    None,
                    format!("reload task failed: {e}"),
                    None,
                );
                Err(d)
            });
        let mut status = ReloadStatus {
            last_attempt: Some(SystemTime::now()),
            ..Default::default()
        };
        let result = match built {
            Ok(snap) => {
                for w in snap.warnings.warnings() {
                    tracing::warn!(target: "charte::policy", "{w}");
                }
                let snap = std::sync::Arc::new(snap);
                {
                    let mut shown = self.status.lock().unwrap_or_else(|e| e.into_inner());
                    self.current.store(snap.clone());
                    *shown = status.clone();
                }
                self.metrics.policy_stale.set(0);
                self.publish(&snap);
                self.metrics.reloads.with_label_values(&["ok"]).inc();
                tracing::info!(
                    generation = snap.generation,
                    rules = snap.policy.rules.len(),
                    "policy reloaded"
                );
                Ok(snap.generation)
            }
            Err(diags) => {
                let text: Vec<String> = diags.sorted().iter().map(|d| d.to_string()).collect();
                for line in &text {
                    tracing::error!(target: "charte::policy", "{line}");
                }
                tracing::error!(
                    generation = self.get().generation,
                    "the new policy was refused; the last good policy stays in force"
                );
                status.stale = true;
                status.last_error = Some(text.join("\n"));
                self.metrics.reloads.with_label_values(&["error"]).inc();
                Err(diags)
            }
        };
        self.metrics.policy_stale.set(i64::from(status.stale));
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
        // A compile allocates and frees tens of MiB (and the previous snapshot goes
        // when its last request ends); give the freed pages back to the system, or
        // glibc keeps them in its arenas and the resident size climbs reload after reload.
        let _ = tokio::task::spawn_blocking(release_free_memory).await;
        result
    }

    /// From now on, `f` is called with each snapshot put in force, and at once with the
    /// one in force now.
    pub fn on_publish(&self, f: impl Fn(&Snapshot) + Send + Sync + 'static) {
        f(&self.get());
        self.on_publish
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(f));
    }

    fn publish(&self, s: &Snapshot) {
        for f in self
            .on_publish
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            f(s);
        }
        let m = &self.metrics;
        m.policy_generation.set(s.generation as i64);
        m.policy_loaded_timestamp.set(
            s.loaded_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        m.policy_build_seconds.set(s.stats.build_time.as_secs_f64());
        m.index_entries
            .with_label_values(&["domains"])
            .set(s.classifier.domain_names() as i64);
        m.index_entries
            .with_label_values(&["urls"])
            .set(s.classifier.urls.len() as i64);
        m.index_bytes.set(s.classifier.index_bytes() as i64);
    }

    /// What a change reloads: the policy file, its compiled categories and its list files
    /// (watched through their folders, which may hold other files: a log, an editor's
    /// swap file), and everything under its category folders. Canonical paths, since
    /// the watcher reports events under the paths it was given.
    fn watched(&self) -> Watched {
        let s = self.get();
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let in_canon_dir = |f: &Path| match (f.parent(), f.file_name()) {
            (Some(d), Some(n)) => {
                let d = if d.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    d
                };
                canon(d).join(n)
            }
            _ => f.to_path_buf(),
        };
        let mut files = vec![
            in_canon_dir(&self.path),
            in_canon_dir(&crate::config::index_file::path_for(&self.path)),
        ];
        files.extend(s.stats.list_files.iter().map(|f| in_canon_dir(f)));
        // The category folders themselves, in their parent: `categories update` replaces
        // a folder that is a link (`ut1 -> ut1.d/<generation>`) by renaming a new link
        // over it, which no watch inside the old generation sees.
        files.extend(s.stats.category_folders.iter().map(|f| in_canon_dir(f)));
        let mut dirs: Vec<PathBuf> = files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        let mut trees: Vec<PathBuf> = s.stats.category_folders.iter().map(|d| canon(d)).collect();
        trees.sort();
        trees.dedup();
        Watched { files, dirs, trees }
    }

    /// Reloads when a watched file changes, after things have been quiet for `debounce`.
    /// After each reload the watches follow the new snapshot's folders (a category folder
    /// that is a link now leads to another generation). Runs until the returned task is
    /// dropped or the runtime stops.
    pub fn watch(
        self: &std::sync::Arc<Self>,
        debounce: std::time::Duration,
    ) -> notify::Result<tokio::task::JoinHandle<()>> {
        use notify::{EventKind, Watcher};
        let current = std::sync::Arc::new(std::sync::RwLock::new(self.watched()));
        let filter = current.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev
                && matches!(
                    ev.kind,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                )
            {
                let w = filter.read().unwrap_or_else(|p| p.into_inner());
                if ev.paths.iter().any(|p| w.relevant(p)) {
                    let _ = tx.send(());
                }
            }
        })?;
        let first = current.read().unwrap_or_else(|p| p.into_inner()).clone();
        for (p, mode) in first.watches() {
            if let Err(e) = watcher.watch(&p, mode) {
                tracing::warn!(path = %p.display(), "cannot watch for changes: {e}");
            }
        }
        let live = self.clone();
        Ok(tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Debounce: wait until no event came for `debounce`.
                while let Ok(Some(())) = tokio::time::timeout(debounce, rx.recv()).await {}
                tracing::info!("policy files changed: reloading");
                let _ = live.reload().await;
                let next = live.watched();
                let before = current.read().unwrap_or_else(|p| p.into_inner()).clone();
                if next != before {
                    let old = before.watches();
                    let new = next.watches();
                    for (p, _) in old.iter().filter(|w| !new.contains(w)) {
                        let _ = watcher.unwatch(p);
                    }
                    for (p, mode) in new.iter().filter(|w| !old.contains(w)) {
                        if let Err(e) = watcher.watch(p, *mode) {
                            tracing::warn!(path = %p.display(), "cannot watch for changes: {e}");
                        }
                    }
                    *current.write().unwrap_or_else(|p| p.into_inner()) = next;
                }
            }
        }))
    }
}

/// What the policy watcher listens to (canonical paths).
#[derive(Clone, PartialEq)]
struct Watched {
    /// Files whose change reloads: the policy, its compiled categories, its list files,
    /// and the category folders themselves (a link replaced by `categories update`).
    files: Vec<PathBuf>,
    /// Their folders, watched without their sub-folders.
    dirs: Vec<PathBuf>,
    /// Category folders, watched whole.
    trees: Vec<PathBuf>,
}

impl Watched {
    /// The paths to watch, and how.
    fn watches(&self) -> Vec<(PathBuf, notify::RecursiveMode)> {
        self.dirs
            .iter()
            .map(|d| (d.clone(), notify::RecursiveMode::NonRecursive))
            .chain(
                self.trees
                    .iter()
                    .map(|t| (t.clone(), notify::RecursiveMode::Recursive)),
            )
            .collect()
    }

    /// Whether a change at `p` should reload the policy.
    fn relevant(&self, p: &Path) -> bool {
        self.files.iter().any(|f| f == p) || self.trees.iter().any(|t| p.starts_with(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_policy_its_index_its_lists_and_category_trees_reload() {
        let w = Watched {
            files: vec![
                "/etc/charte/charte.yaml".into(),
                "/etc/charte/charte.idx".into(),
                "/etc/charte/listes/blanche.txt".into(),
            ],
            dirs: vec!["/etc/charte".into(), "/etc/charte/listes".into()],
            trees: vec!["/srv/categories/ut1".into()],
        };
        for yes in [
            "/etc/charte/charte.yaml",
            "/etc/charte/charte.idx",
            "/etc/charte/listes/blanche.txt",
            "/srv/categories/ut1/adult/domains",
        ] {
            assert!(w.relevant(Path::new(yes)), "{yes}");
        }
        for no in [
            "/etc/charte/proxy.log",
            "/etc/charte/.charte.yaml.swp",
            "/etc/charte/charte.idx.0123456789abcdef.tmp",
            "/etc/charte/listes/autre.txt",
            "/srv/categories/ut1-old/adult/domains",
        ] {
            assert!(!w.relevant(Path::new(no)), "{no}");
        }
        assert_eq!(w.dirs.len(), 2);
    }
}
