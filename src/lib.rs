//! charte-proxy: a forward web-filtering proxy that puts a French local authority's IT
//! charter ("charte informatique") into force on the wire.
//!
//! Data flows one way; a stage may use the types of the stages before it and never
//! calls the ones after it:
//!
//! ```text
//! request → identity → classification → decision (+ reason) → action → audit record
//!            identity/   classify/         policy/
//! ```
//!
//! - [`config`] (cold path only) parses the YAML policy and the category folders and
//!   compiles them into a [`snapshot::Snapshot`]: a [`classify::Classifier`] (domain and
//!   URL indexes over tags) and a [`policy::Policy`] (groups, rules, default).
//! - [`settings`] holds the resolved server settings (listeners, authentication, TLS,
//!   limits): plain data that `config::server` fills at start, and the only settings the
//!   server, the pipeline and the listeners read.
//! - [`identity`] says which groups a client is in (address, user).
//! - [`classify`] normalises the host once ([`classify::Host`]) and finds every tag of
//!   a request in one pass over the host's suffixes — the hot path: synchronous, pure,
//!   no allocation per lookup.
//! - [`policy`] decides, purely: first matching rule, with a [`policy::Reason`].
//! - [`explain`] shows a decision step by step, through the very same code.

pub mod action;
pub mod admin;
pub mod atomic_file;
pub mod audit;
pub mod classify;
pub mod cli;
pub mod config;
pub mod explain;
pub mod head;
pub mod identity;
pub mod metrics;
pub mod pages;
pub mod per_worker;
pub mod pipeline;
pub mod policy;
pub mod portal;
pub mod server;
pub mod settings;
pub mod snapshot;
pub mod tracker;
pub mod unblock;
