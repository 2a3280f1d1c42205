//! The SQL of `auction-server status` (the report and its rendering are in `status.rs`), and
//! [`query_one`] for tests and tools. Both open the database read only, from a process beside a
//! running server or without one: they own no state and wait for no writer (WAL lets them read
//! while the server commits).

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::Path;
use std::time::Duration;

use super::schema::lock_path;
use crate::status::{AccountRow, ConnectionRow, ItemRow, Report, CONNECTIONS_PER_ITEM};

/// Reads the report from the database at `db`.
pub(crate) fn read(db: &Path) -> Result<Report> {
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
    let accounts = conn
        .prepare(
            "SELECT a.name, a.created_at, a.notify_addr,
                    (SELECT count(*) FROM items i WHERE i.seller = a.id AND i.closed_at IS NULL),
                    (SELECT count(*) FROM notices n WHERE n.account = a.id AND n.acked_at IS NULL)
             FROM accounts a WHERE a.removed_at IS NULL ORDER BY a.name",
        )?
        .query_map([], |r| {
            Ok(AccountRow {
                name: r.get(0)?,
                created_at: r.get(1)?,
                notify: r.get(2)?,
                open_items: r.get(3)?,
                pending_notices: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut open_items = conn
        .prepare(
            "SELECT i.id, i.description, s.name, i.min_cents, i.highest_cents, b.name, i.ends_at,
                    (SELECT count(*) FROM channel_sessions c
                     WHERE c.item = i.id AND c.disconnected_at IS NULL)
             FROM items i JOIN accounts s ON s.id = i.seller
             LEFT JOIN accounts b ON b.id = i.highest_bidder
             WHERE i.closed_at IS NULL ORDER BY i.id",
        )?
        .query_map([], |r| {
            Ok(ItemRow {
                item: r.get(0)?,
                description: r.get(1)?,
                seller: r.get(2)?,
                min: r.get(3)?,
                highest: r.get(4)?,
                bidder: r.get(5)?,
                ends_at: r.get(6)?,
                connected: r.get(7)?,
                connections: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut sessions = conn.prepare(
        "SELECT a.name, c.peer, c.connected_at, c.disconnected_at
         FROM channel_sessions c JOIN accounts a ON a.id = c.account
         WHERE c.item = ?1 ORDER BY c.id DESC LIMIT ?2",
    )?;
    for item in &mut open_items {
        item.connections = sessions
            .query_map(rusqlite::params![item.item, CONNECTIONS_PER_ITEM], |r| {
                Ok(ConnectionRow {
                    bidder: r.get(0)?,
                    peer: r.get(1)?,
                    connected_at: r.get(2)?,
                    disconnected_at: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
    }
    drop(sessions);
    conn.execute_batch("COMMIT")?;
    Ok(Report {
        source: "database",
        db: db.to_owned(),
        server_running,
        read_at: crate::clock::unix_ms(),
        accounts,
        open_items,
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
