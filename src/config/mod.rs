//! Configuration — COLD PATH ONLY. Nothing on the request path imports this module.
//!
//! `raw` mirrors the YAML with serde; `positions` knows where each key stands;
//! `compile` turns raw into a runtime [`crate::policy::Policy`] and
//! [`crate::classify::Classifier`], with every cross-check; `diag` words the problems;
//! `categories` reads squidGuard/UT1 folders and list files.

pub mod categories;
pub mod compile;
pub mod compiled;
pub mod diag;
pub mod positions;
pub mod raw;
pub mod server;

pub use compile::{CompileStats, Compiled, POLICY_VERSION, compile_str, load, load_with};
pub use diag::{Diag, Diags, Severity};
