//! `auction-server status` on a SQLite file (the report and its SQL are shared:
//! `store/sql/status.rs`), and [`query_one`] for tests and tools. Both open the database read
//! only, from a process beside a running server or without one: they own no state and wait for
//! no writer (WAL lets them read while the server commits).

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::Path;
use std::time::Duration;

use super::schema::lock_path;
use super::sql::SqliteQuery;
use crate::store::sql::status::{read_tables, Report};

/// Reads the report from the database at `db`.
pub fn read(db: &Path) -> Result<Report> {
    if !db.exists() {
        bail!(
            "there is no database at {} (give the server's --db)",
            db.display()
        );
    }
    let server_running = lock_is_held(db);
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", db.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    // Schema 5 brought the connection log (channel_sessions) this reads.
    if version < 5 {
        bail!(
            "{} has schema version {version}; start this version of auction-server on it once to update it",
            db.display()
        );
    }
    // One read transaction: every part of the report is from the same commit.
    conn.execute_batch("BEGIN")?;
    let (accounts, open_items) = read_tables(&mut SqliteQuery::new(&conn))?;
    conn.execute_batch("COMMIT")?;
    Ok(Report {
        source: "database",
        db: db.display().to_string(),
        server_running,
        read_at: crate::clock::unix_ms(),
        accounts,
        open_items,
        nodes: Vec::new(),
    })
}

/// Whether a server holds `db`'s lock file (see `schema.rs`).
fn lock_is_held(db: &Path) -> bool {
    match std::fs::File::open(lock_path(db)) {
        Ok(f) => matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

/// Reads one value, for tests and tools that inspect a database.
pub fn query_one<T: rusqlite::types::FromSql>(path: &Path, sql: &str) -> Result<Option<T>> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(conn.query_row(sql, [], |r| r.get(0)).optional()?)
}
