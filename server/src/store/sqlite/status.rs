//! `auction-server status` and `audit` on a SQLite file (the report and its SQL are shared:
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
use crate::store::sql::Query;

/// Reads the report from the database at `db`.
pub fn read(db: &Path) -> Result<Report> {
    let server_running = lock_is_held(db);
    let (accounts, open_items) = read_with(db, 5, read_tables)?;
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

/// Runs `read` on the database at `db` in one read transaction (so everything it reads is
/// from the same commit), once its schema is at least `version`.
pub fn read_with<T>(
    db: &Path,
    version: i64,
    read: impl FnOnce(&mut dyn Query) -> Result<T>,
) -> Result<T> {
    if !db.exists() {
        bail!(
            "there is no database at {} (give the server's --db)",
            db.display()
        );
    }
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", db.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found < version {
        bail!(
            "{} has schema version {found}; start this version of auction-server on it once to update it",
            db.display()
        );
    }
    conn.execute_batch("BEGIN")?;
    let read = read(&mut SqliteQuery::new(&conn))?;
    conn.execute_batch("COMMIT")?;
    Ok(read)
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
