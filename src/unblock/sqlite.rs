//! The embedded store: one SQLite file in the data folder, WAL, `synchronous=FULL` so that
//! a request acknowledged to its user survives a crash or a power cut, schema migrations
//! numbered in `user_version` and applied at start. Other processes (the `requests`
//! command) may use the same file at the same time.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior, params};

use super::store::{
    ApprovalRow, DecisionRow, Dim, NewRequest, Purged, RequestRow, Scope, Status, Store,
    StoreError, Submitted, Tallied, week_of, week_start,
};

/// Schema migrations; migration `i` brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: requests, decisions, block counts.
    "CREATE TABLE requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created INTEGER NOT NULL,
        updated INTEGER NOT NULL,
        requester TEXT NOT NULL,
        user TEXT,
        ip TEXT NOT NULL,
        groups TEXT NOT NULL,
        host TEXT NOT NULL,
        url TEXT NOT NULL,
        categories TEXT NOT NULL,
        rule TEXT,
        reason_code TEXT NOT NULL,
        justification TEXT NOT NULL,
        wanted TEXT,
        asked INTEGER NOT NULL DEFAULT 1,
        status TEXT NOT NULL DEFAULT 'pending',
        scope TEXT,
        until INTEGER,
        decided_by TEXT,
        decided_at INTEGER,
        message TEXT
     );
     CREATE UNIQUE INDEX one_pending ON requests(requester, host) WHERE status = 'pending';
     CREATE INDEX by_status ON requests(status, id);
     CREATE TABLE decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        request INTEGER NOT NULL REFERENCES requests(id),
        at INTEGER NOT NULL,
        admin TEXT NOT NULL,
        status TEXT NOT NULL,
        scope TEXT,
        until INTEGER,
        message TEXT
     );
     CREATE TABLE blocks (
        requester TEXT NOT NULL,
        host TEXT NOT NULL,
        day INTEGER NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (requester, host, day)
     ) WITHOUT ROWID;",
    // 2: the dashboard's counters (`Dim`: `bucket` is an hour or a day number, by
    // dimension), and what its weekly unblock figures read by time.
    "CREATE TABLE counts (
        dim TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        key TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (dim, bucket, key)
     ) WITHOUT ROWID;
     CREATE INDEX requests_created ON requests(created);
     CREATE INDEX decisions_at ON decisions(at);",
];

pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Commits made through this store (PRAGMA data_version only sees other connections').
    writes: AtomicI64,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let shown = path.display().to_string();
        let map = |e: rusqlite::Error| classify(&shown, e);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(map)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(map)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(map)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(map)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(map)?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(map)?;
        if check != "ok" {
            return Err(StoreError::Corrupt {
                path: shown,
                source: rusqlite::Error::InvalidQuery,
            });
        }
        let store = SqliteStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            writes: AtomicI64::new(0),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let shown = self.path.display().to_string();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| classify(&shown, e))?;
        let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if current > known {
            return Err(StoreError::TooNew {
                path: shown,
                found: current,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tracing::info!(version = i + 1, "request database migrated");
        }
        tx.commit()?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        classify(&self.path.display().to_string(), e)
    }
}

fn classify(path: &str, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked {
            path: path.to_string(),
            source: e,
        },
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt {
            path: path.to_string(),
            source: e,
        },
        _ => StoreError::Sql(e),
    }
}

const COLUMNS: &str = "id, created, updated, requester, user, ip, groups, host, url, categories, \
     rule, reason_code, justification, wanted, asked, status, scope, until, decided_by, \
     decided_at, message";

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn from_json(s: String) -> Vec<String> {
    serde_json::from_str(&s).unwrap_or_default()
}

fn request_row(r: &Row<'_>) -> rusqlite::Result<RequestRow> {
    let status: String = r.get(15)?;
    Ok(RequestRow {
        id: r.get(0)?,
        created: r.get(1)?,
        updated: r.get(2)?,
        requester: r.get(3)?,
        user: r.get(4)?,
        ip: r.get(5)?,
        groups: from_json(r.get(6)?),
        host: r.get(7)?,
        url: r.get(8)?,
        categories: from_json(r.get(9)?),
        rule: r.get(10)?,
        reason_code: r.get(11)?,
        justification: r.get(12)?,
        wanted: r.get(13)?,
        asked: r.get(14)?,
        status: status.parse().unwrap_or(Status::Pending),
        scope: r.get(16)?,
        until: r.get(17)?,
        decided_by: r.get(18)?,
        decided_at: r.get(19)?,
        message: r.get(20)?,
    })
}

impl Store for SqliteStore {
    fn submit(&self, r: &NewRequest, now: i64) -> Result<Submitted, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let pending: Option<i64> = tx
            .query_row(
                "SELECT id FROM requests WHERE requester = ?1 AND host = ?2 AND status = 'pending'",
                params![r.requester, r.host],
                |row| row.get(0),
            )
            .optional()?;
        let out = match pending {
            Some(id) => {
                let stamp = time::OffsetDateTime::from_unix_timestamp(now)
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_default();
                tx.execute(
                    "UPDATE requests SET justification = justification || ?2, asked = asked + 1,
                     updated = ?3, wanted = COALESCE(?4, wanted) WHERE id = ?1",
                    params![
                        id,
                        format!("\n\n[{stamp}] {}", r.justification),
                        now,
                        r.wanted
                    ],
                )?;
                Submitted::Merged(id)
            }
            None => {
                tx.execute(
                    "INSERT INTO requests (created, updated, requester, user, ip, groups, host,
                     url, categories, rule, reason_code, justification, wanted)
                     VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![
                        now,
                        r.requester,
                        r.user,
                        r.ip,
                        json_list(&r.groups),
                        r.host,
                        r.url,
                        json_list(&r.categories),
                        r.rule,
                        r.reason_code,
                        r.justification,
                        r.wanted
                    ],
                )?;
                Submitted::Created(tx.last_insert_rowid())
            }
        };
        tx.commit().map_err(|e| self.err(e))?;
        self.wrote();
        Ok(out)
    }

    fn get(&self, id: i64) -> Result<RequestRow, StoreError> {
        let conn = self.lock();
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM requests WHERE id = ?1"),
            [id],
            request_row,
        )
        .optional()
        .map_err(|e| self.err(e))?
        .ok_or(StoreError::NotFound(id))
    }

    fn list(&self, status: Option<Status>) -> Result<Vec<RequestRow>, StoreError> {
        let conn = self.lock();
        let mut st = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM requests WHERE ?1 IS NULL OR status = ?1 ORDER BY id DESC"
        ))?;
        let rows = st
            .query_map([status.map(Status::as_str)], request_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn list_for(&self, requester: &str) -> Result<Vec<RequestRow>, StoreError> {
        let conn = self.lock();
        let mut st = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM requests WHERE requester = ?1 ORDER BY id DESC"
        ))?;
        let rows = st
            .query_map([requester], request_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn approve(
        &self,
        id: i64,
        admin: &str,
        scope: &Scope,
        until: Option<i64>,
        message: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.decide(
            id,
            admin,
            Status::Approved,
            Some(scope),
            until,
            message,
            now,
        )
    }

    fn refuse(&self, id: i64, admin: &str, message: &str, now: i64) -> Result<(), StoreError> {
        self.decide(id, admin, Status::Refused, None, None, Some(message), now)
    }

    fn history(&self) -> Result<Vec<DecisionRow>, StoreError> {
        let conn = self.lock();
        let mut st = conn.prepare(
            "SELECT d.id, d.request, d.at, d.admin, d.status, d.scope, d.until, d.message,
                    r.host, r.requester
             FROM decisions d JOIN requests r ON r.id = d.request ORDER BY d.id",
        )?;
        let rows = st
            .query_map([], |r| {
                let status: String = r.get(4)?;
                Ok(DecisionRow {
                    id: r.get(0)?,
                    request: r.get(1)?,
                    at: r.get(2)?,
                    admin: r.get(3)?,
                    status: status.parse().unwrap_or(Status::Pending),
                    scope: r.get(5)?,
                    until: r.get(6)?,
                    message: r.get(7)?,
                    host: r.get(8)?,
                    requester: r.get(9)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn approvals(&self, now: i64) -> Result<Vec<ApprovalRow>, StoreError> {
        let conn = self.lock();
        let mut st = conn.prepare(
            "SELECT id, host, requester, scope, until FROM requests
             WHERE status = 'approved' AND (until IS NULL OR until > ?1)",
        )?;
        let rows = st
            .query_map([now], |r| {
                Ok(ApprovalRow {
                    request: r.get(0)?,
                    host: r.get(1)?,
                    requester: r.get(2)?,
                    scope: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    until: r.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn count_blocks(&self, counts: &[(String, String, i64, i64)]) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut st = tx.prepare(
                "INSERT INTO blocks (requester, host, day, n) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (requester, host, day) DO UPDATE SET n = n + excluded.n",
            )?;
            for (who, host, day, n) in counts {
                st.execute(params![who, host, day, n])?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(())
    }

    fn purge(&self, before: i64, now: i64, batch: usize) -> Result<Purged, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let batch = batch as i64;
        // Requests whose life is over: decided, last changed before the cutoff, and not
        // an approval still in force.
        tx.execute(
            "CREATE TEMP TABLE IF NOT EXISTS purging (id INTEGER PRIMARY KEY)",
            [],
        )?;
        tx.execute("DELETE FROM purging", [])?;
        tx.execute(
            "INSERT INTO purging (id)
             SELECT id FROM requests
             WHERE updated < ?1 AND status != 'pending'
               AND NOT (status = 'approved' AND (until IS NULL OR until > ?2))
             ORDER BY id LIMIT ?3",
            params![before, now, batch],
        )?;
        let decisions = tx.execute(
            "DELETE FROM decisions WHERE request IN (SELECT id FROM purging)",
            [],
        )? as u64;
        let requests = tx.execute(
            "DELETE FROM requests WHERE id IN (SELECT id FROM purging)",
            [],
        )? as u64;
        let before_day = before.div_euclid(86_400);
        let blocks = tx.execute(
            "DELETE FROM blocks WHERE (requester, host, day) IN
               (SELECT requester, host, day FROM blocks WHERE day < ?1 LIMIT ?2)",
            params![before_day, batch],
        )? as u64;
        let mut counts = 0;
        for dim in Dim::ALL {
            counts += tx.execute(
                "DELETE FROM counts WHERE (dim, bucket, key) IN
                   (SELECT dim, bucket, key FROM counts WHERE dim = ?1 AND bucket < ?2 LIMIT ?3)",
                params![dim.as_str(), dim.bucket(before), batch],
            )? as u64;
        }
        tx.commit().map_err(|e| self.err(e))?;
        let done = Purged {
            requests,
            decisions,
            blocks,
            counts,
        };
        if !done.is_empty() {
            self.wrote();
        }
        Ok(done)
    }

    fn blocks(&self, requester: &str, host: &str, since_day: i64) -> Result<i64, StoreError> {
        let conn = self.lock();
        let n: Option<i64> = conn.query_row(
            "SELECT SUM(n) FROM blocks WHERE requester = ?1 AND host = ?2 AND day >= ?3",
            params![requester, host, since_day],
            |r| r.get(0),
        )?;
        Ok(n.unwrap_or(0))
    }

    fn describe(&self) -> (&'static str, String) {
        ("sqlite", self.path.display().to_string())
    }

    fn version(&self) -> Result<i64, StoreError> {
        let conn = self.lock();
        let v: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        Ok(v + self.writes.load(Ordering::SeqCst))
    }

    fn add_counts(&self, counts: &[Tallied]) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO counts (dim, bucket, key, n) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (dim, bucket, key) DO UPDATE SET n = n + excluded.n",
            )?;
            for c in counts {
                st.execute(params![c.dim.as_str(), c.bucket, c.key, c.n])?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(())
    }

    fn counts(&self, dim: Dim, from: i64, to: i64) -> Result<Vec<(i64, String, i64)>, StoreError> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT bucket, key, n FROM counts WHERE dim = ?1 AND bucket >= ?2 AND bucket < ?3
             ORDER BY bucket, key",
        )?;
        let rows = st
            .query_map(params![dim.as_str(), from, to], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn top(
        &self,
        dim: Dim,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT key, SUM(n) AS total FROM counts
             WHERE dim = ?1 AND bucket >= ?2 AND bucket < ?3
             GROUP BY key ORDER BY total DESC, key LIMIT ?4",
        )?;
        let rows = st
            .query_map(params![dim.as_str(), from, to, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn weekly_requests(&self, from_week: i64) -> Result<Vec<(i64, i64, i64, i64)>, StoreError> {
        let conn = self.lock();
        let since = week_start(from_week);
        let mut weeks = std::collections::BTreeMap::<i64, (i64, i64, i64)>::new();
        let mut st = conn.prepare_cached("SELECT created FROM requests WHERE created >= ?1")?;
        for t in st.query_map([since], |r| r.get::<_, i64>(0))? {
            weeks.entry(week_of(t?)).or_default().0 += 1;
        }
        let mut st = conn.prepare_cached("SELECT at, status FROM decisions WHERE at >= ?1")?;
        for row in st.query_map([since], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })? {
            let (at, status) = row?;
            let w = weeks.entry(week_of(at)).or_default();
            match status.as_str() {
                "approved" => w.1 += 1,
                "refused" => w.2 += 1,
                _ => {}
            }
        }
        Ok(weeks
            .into_iter()
            .map(|(w, (o, a, r))| (w, o, a, r))
            .collect())
    }
}

impl SqliteStore {
    /// Every block count, (requester, host, day, n): for copying a single proxy's store
    /// into PostgreSQL (`store migrate-from-sqlite`).
    pub fn all_blocks(&self) -> Result<Vec<(String, String, i64, i64)>, StoreError> {
        let conn = self.lock();
        let mut st = conn.prepare("SELECT requester, host, day, n FROM blocks ORDER BY 1, 2, 3")?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        id: i64,
        admin: &str,
        status: Status,
        scope: Option<&Scope>,
        until: Option<i64>,
        message: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let current: Option<String> = tx
            .query_row("SELECT status FROM requests WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        match current.as_deref() {
            None => return Err(StoreError::NotFound(id)),
            Some("refused") if status == Status::Refused => {
                return Err(StoreError::AlreadyDecided(id));
            }
            _ => {}
        }
        let scope = scope.map(ToString::to_string);
        tx.execute(
            "UPDATE requests SET status = ?2, scope = ?3, until = ?4, decided_by = ?5,
             decided_at = ?6, message = ?7, updated = ?6 WHERE id = ?1",
            params![id, status.as_str(), scope, until, admin, now, message],
        )
        .map_err(|e| match e.sqlite_error_code() {
            // Another pending request of the same person for the same site cannot exist;
            // reopening is not offered, so this is a decided request.
            Some(ErrorCode::ConstraintViolation) => StoreError::AlreadyDecided(id),
            _ => StoreError::Sql(e),
        })?;
        tx.execute(
            "INSERT INTO decisions (request, at, admin, status, scope, until, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![id, now, admin, status.as_str(), scope, until, message],
        )?;
        tx.commit().map_err(|e| self.err(e))?;
        self.wrote();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(who: &str, host: &str) -> NewRequest {
        NewRequest {
            requester: who.into(),
            user: None,
            ip: "10.0.0.1".into(),
            groups: vec!["agents".into()],
            host: host.into(),
            url: format!("https://{host}/"),
            categories: vec!["gambling".into()],
            rule: Some("jeux".into()),
            reason_code: "block-rule".into(),
            justification: "besoin".into(),
            wanted: None,
        }
    }

    #[test]
    fn merge_approve_expire_history_and_migrations_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.db");
        let s = SqliteStore::open(&path).unwrap();
        let a = s.submit(&req("ip:10.0.0.1", "a.example"), 100).unwrap();
        assert_eq!(a, Submitted::Created(1));
        assert_eq!(
            s.submit(&req("ip:10.0.0.1", "a.example"), 101).unwrap(),
            Submitted::Merged(1)
        );
        assert_eq!(s.get(1).unwrap().asked, 2);
        let v = s.version().unwrap();
        s.approve(
            1,
            "admin",
            &Scope::Group("agents".into()),
            Some(200),
            None,
            150,
        )
        .unwrap();
        assert!(s.version().unwrap() > v);
        assert_eq!(s.approvals(199).unwrap().len(), 1);
        assert!(s.approvals(200).unwrap().is_empty(), "expired");
        // Once approved, asking again makes a new request.
        assert_eq!(
            s.submit(&req("ip:10.0.0.1", "a.example"), 300).unwrap(),
            Submitted::Created(2)
        );
        s.refuse(2, "admin", "non", 301).unwrap();
        assert_eq!(s.history().unwrap().len(), 2);
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.list(None).unwrap().len(), 2);
        s.count_blocks(&[("ip:10.0.0.1".into(), "a.example".into(), 10, 3)])
            .unwrap();
        s.count_blocks(&[("ip:10.0.0.1".into(), "a.example".into(), 11, 2)])
            .unwrap();
        assert_eq!(s.blocks("ip:10.0.0.1", "a.example", 11).unwrap(), 2);
        assert_eq!(s.blocks("ip:10.0.0.1", "a.example", 0).unwrap(), 5);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.db");
        std::fs::write(&path, vec![b'x'; 8192]).unwrap();
        let e = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
        assert!(e.to_string().contains(".recover"));
    }
}
