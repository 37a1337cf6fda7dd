//! charte-proxy: a forward web-filtering proxy that puts a French local authority's IT
//! charter ("charte informatique") into force on the wire.
//!
//! Data flows one way; a stage may use the types of the stages before it and never
//! calls the ones after it:
//!
//! ```text
//! request → identity → classification → decision (+ reason) → action → audit record
//!            identity/   classify/         policy/              action/   audit/
//! ```
//!
//! The modules, from the top layer down (a module imports only from lower layers;
//! `tests/layering.rs` checks it):
//!
//! - [`cli`]: every command's arguments and output; `main` only calls it.
//! - [`update`]: `categories update`, the UT1 lists downloaded, checked and swapped in
//!   whole (generation folders behind a link, the index renamed with them).
//! - [`server`]: the listeners, the worker threads, start, reload and shutdown; builds
//!   the state of each listener's handler.
//! - [`pipeline`] (proxy listener), [`portal`] and [`admin`]: one handler per listener.
//!   The pipeline composes the stages for each request or tunnel and emits its record.
//! - [`pages`]: the HTML of every listener (block, help and error pages; the unblock
//!   form; the administrators' pages), French by default, English on request.
//! - [`report`]: the dashboard's counters, fed by the trace's writer (an
//!   [`audit::Observer`]) and kept in the unblock store.
//! - [`action`] (forward, tunnel, bump, CA, dial, pool, answers), [`unblock`] (the
//!   request flow's token, store and approvals) and [`audit`] (the trace record and its
//!   writer).
//! - [`snapshot`] (the compiled policy in force, swapped whole on reload) and
//!   [`explain`] (a decision shown step by step, through the very same code).
//! - [`config`], the cold path only: parses the YAML policy, the category folders and
//!   the server file, and compiles them into a snapshot and [`settings`].
//! - [`metrics`]: every metric, declared in one place.
//! - [`policy`]: decides, purely: first matching rule, with a [`policy::Reason`].
//! - [`classify`] (the host normalised once, [`classify::Host`], and every tag of a
//!   request found in one pass: the hot path, synchronous, pure, no allocation per
//!   lookup), [`content`] (upload content checks, DLP: a request body scanned as it
//!   streams for keyword dictionaries and validated identifiers; synchronous, pure,
//!   bounded memory) and [`identity`] (which groups a client is in: address, user).
//! - Small helpers below everything: [`settings`] (resolved server settings, plain
//!   data), [`head`] (a request head's size), [`per_worker`], [`tracker`],
//!   [`atomic_file`], [`clock`] (the proxy's now and the town's local dates).

pub mod action;
pub mod admin;
pub mod atomic_file;
pub mod audit;
pub mod classify;
pub mod cli;
pub mod clock;
pub mod config;
pub mod content;
pub mod explain;
pub mod head;
pub mod identity;
pub mod metrics;
pub mod pages;
pub mod per_worker;
pub mod pipeline;
pub mod policy;
pub mod portal;
pub mod report;
pub mod server;
pub mod settings;
pub mod snapshot;
pub mod tracker;
pub mod unblock;
pub mod update;
