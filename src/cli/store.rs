//! `charte-proxy store migrate-from-sqlite PATH`: copies a single proxy's SQLite store
//! (requests, decisions, block counts, dashboard counters) into the PostgreSQL database
//! the server file names (`store.postgres`). Idempotent: what is already there is
//! skipped, so it may be run again (after a failure, or to catch up before switching).

use std::path::PathBuf;
use std::process::ExitCode;

use super::{EXIT_CONFIG, EXIT_RUNTIME};
use crate::settings::StoreSettings;
use crate::unblock::postgres::{Copied, PgOptions, PgStore};
use crate::unblock::sqlite::SqliteStore;

#[derive(clap::Subcommand, Debug)]
pub enum StoreCmd {
    /// Copy a SQLite request database (DATA/requests.db) into the PostgreSQL database of
    /// the server file's `store.postgres`; prints what was copied and skipped.
    MigrateFromSqlite {
        /// The SQLite file, e.g. /var/lib/charte-proxy/requests.db.
        path: PathBuf,
        /// The server file naming the database (`store.postgres.url_file`).
        #[command(flatten)]
        data: super::DataArgs,
    },
}

pub fn run(c: StoreCmd) -> anyhow::Result<ExitCode> {
    match c {
        StoreCmd::MigrateFromSqlite { path, data } => migrate_from_sqlite(&path, &data),
    }
}

fn migrate_from_sqlite(path: &std::path::Path, data: &super::DataArgs) -> anyhow::Result<ExitCode> {
    let cfg = match data.settings() {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let StoreSettings::Postgres(pg) = &cfg.store else {
        eprintln!(
            "error: the server file names no PostgreSQL database: give --config FILE with \
             store: {{postgres: {{url_file: …}}}}"
        );
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    if !path.is_file() {
        eprintln!("error: no SQLite file {}", path.display());
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let src = match SqliteStore::open(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let url = match crate::settings::read_url_file(&pg.url_file) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let mut o = PgOptions::new(url);
    o.pool_size = 2;
    o.ca_file = pg.ca_file.clone();
    let dest = match PgStore::open(&o) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_RUNTIME));
        }
    };
    let done = match dest.import_sqlite(&src) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: nothing copied: {e}");
            return Ok(ExitCode::from(EXIT_RUNTIME));
        }
    };
    println!("{} → {}", path.display(), dest.db());
    let line = |what: &str, c: Copied| {
        let mut s = format!(
            "{what:<10} {:>8} copied, {:>8} already there",
            c.copied, c.skipped
        );
        if c.conflicts > 0 {
            s.push_str(&format!(
                ", {} not copied: their number is another request's here",
                c.conflicts
            ));
        }
        println!("{s}");
    };
    line("requests", done.requests);
    line("decisions", done.decisions);
    line("blocks", done.blocks);
    line("counters", done.counts);
    Ok(ExitCode::SUCCESS)
}
