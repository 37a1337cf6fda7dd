//! Configuration — COLD PATH ONLY. Nothing on the request path imports this module.
//!
//! Read at start and at each reload, never by a handler: `server` reads the server file
//! and the `serve` flags into [`crate::settings::Settings`], the only settings the
//! running server sees; the policy is compiled into what [`crate::snapshot::Snapshot`]
//! holds.
//!
//! - `raw` mirrors the policy YAML with serde; `positions` knows where each key stands;
//! - `compile` (the compiler, one part per policy section) turns raw into a runtime
//!   [`crate::policy::Policy`] and [`crate::classify::Classifier`], with every
//!   cross-check;
//! - `diag` words the problems;
//! - `categories` reads squidGuard/UT1 folders and list files;
//! - `index_file` is the compiled categories file beside a policy (`charte.idx`, written
//!   by `categories compile`), which `compile` uses instead of the text lists when fresh.

pub mod categories;
pub mod compile;
pub mod diag;
pub mod index_file;
pub mod positions;
pub mod raw;
pub mod server;

pub use compile::{
    CompileStats, Compiled, POLICY_VERSION, category_folders, compile_str, load, load_redirected,
    load_with, same_place,
};
pub use diag::{Diag, Diags, Severity};
