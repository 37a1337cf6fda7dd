//! Audit trail (§4.8 of the charter): "every access is traced: user id, date and time,
//! IP and workstation, sites visited, volume sent and received, duration, failed or
//! refused attempts and the reason for every block".
//!
//! This module owns the fixed-schema [`Record`] (one per request or tunnel, emitted by the
//! pipeline at the end) and the way it reaches disk, kept off the request path:
//!
//! ```text
//! connections ── AuditSink::record() ──try_send──▶ bounded mpsc ──▶ writer task ──▶ file | stdout
//!                (never blocks, never fails)                      (encodes, batches, appends)
//! ```
//!
//! - **Full queue**: the record is dropped, the `dropped` counter given to
//!   [`AuditWriter::start`] is incremented, and a warning says how many were dropped —
//!   at most one line per 10 s. A slow disk must slow the trace, never the users.
//!   Records that could not be encoded or written (I/O error) count there too: the
//!   counter is "records that never reached the trace".
//! - **Batching**: the writer encodes what is queued into one buffer and writes it when
//!   the queue is empty or the buffer holds 64 KiB, so an idle proxy's trace is always
//!   up to date and a busy one makes few, large writes. No fsync.
//! - **Rotation**: [`AuditWriter::reopen`] (the server calls it on SIGUSR1) closes the file
//!   and opens it again at the same path — logrotate renames, then signals. Every record
//!   given to a sink after `reopen()` returned goes to the new file; earlier ones go to
//!   either file; none is lost.
//! - **Shutdown**: [`AuditWriter::shutdown`] closes the queue, writes everything already in
//!   it and returns. Records given after that are dropped and counted.
//!
//! Formats: [`Format::Json`] is the complete §4.8 record, one object per line.
//! [`Format::Squid`] is Squid's native `access.log` line for existing analysers (SARG,
//! LightSquid) and carries only Squid's fields — appending ours would break their parsers.

pub mod files;
pub mod record;
pub mod search;
mod writer;

#[cfg(test)]
mod tests;

pub use record::{Format, Outcome, Record, Scheme, UnknownFormat};
pub use writer::{AuditSink, AuditWriter, Destination, Life, LifeStatus, Observer, TraceStatus};
