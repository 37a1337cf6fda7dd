//! `Snapshot`: everything a request needs, compiled and immutable — the classifier
//! (domain and URL indexes, tag table) and the policy. A reload builds a whole new
//! snapshot and swaps it in only when it compiled; requests in flight keep the one they
//! started with.

use std::path::Path;
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
