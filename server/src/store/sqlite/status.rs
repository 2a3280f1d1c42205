//! The report of `auction-server status` and the SQL that fills it (its rendering is in
//! `status.rs`), and [`query_one`] for tests and tools. Both open the database read only, from a process beside a
//! running server or without one: they own no state and wait for no writer (WAL lets them read
//! while the server commits).

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::schema::lock_path;

/// Connection-log rows shown per item (the most recent).
pub const CONNECTIONS_PER_ITEM: usize = 50;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `"database"`: this view is read from the database file, not asked of the server.
    pub source: &'static str,
    pub db: PathBuf,
    /// Whether a server holds the database's lock file now. If so, the report is what it had
    /// committed a moment ago; if not, what it left when it stopped.
    pub server_running: bool,
    /// Unix ms when the report was read.
    pub read_at: u64,
    pub accounts: Vec<AccountRow>,
    pub open_items: Vec<ItemRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountRow {
    pub name: String,
    pub created_at: u64,
    /// Where its announcements go (`null` for a catalog's house account).
    pub notify: Option<String>,
    pub open_items: u64,
    pub pending_notices: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ItemRow {
    pub item: u64,
    pub description: String,
    pub seller: String,
    pub min: u64,
    pub highest: Option<u64>,
    pub bidder: Option<String>,
    pub ends_at: u64,
    pub connected: u64,
    /// The most recent channel connections first (at most [`CONNECTIONS_PER_ITEM`]).
    pub connections: Vec<ConnectionRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionRow {
    pub bidder: String,
    pub peer: String,
    pub connected_at: u64,
    /// `null` while connected.
    pub disconnected_at: Option<u64>,
}

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
    let accounts = conn
        .prepare(
            "SELECT a.name, a.created_at, a.notify_addr,
                    (SELECT count(*) FROM items i WHERE i.seller = a.id AND i.closed_at IS NULL)
                        AS open_items,
                    (SELECT count(*) FROM notices n WHERE n.account = a.id AND n.acked_at IS NULL)
                        AS pending_notices
             FROM accounts a WHERE a.removed_at IS NULL ORDER BY a.name",
        )?
        .query_map([], |r| {
            Ok(AccountRow {
                name: r.get("name")?,
                created_at: r.get("created_at")?,
                notify: r.get("notify_addr")?,
                open_items: r.get("open_items")?,
                pending_notices: r.get("pending_notices")?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut open_items = conn
        .prepare(
            "SELECT i.id, i.description, s.name AS seller, i.min_cents, i.highest_cents,
                    b.name AS bidder, i.ends_at,
                    (SELECT count(*) FROM channel_sessions c
                     WHERE c.item = i.id AND c.disconnected_at IS NULL) AS connected
             FROM items i JOIN accounts s ON s.id = i.seller
             LEFT JOIN accounts b ON b.id = i.highest_bidder
             WHERE i.closed_at IS NULL ORDER BY i.id",
        )?
        .query_map([], |r| {
            Ok(ItemRow {
                item: r.get("id")?,
                description: r.get("description")?,
                seller: r.get("seller")?,
                min: r.get("min_cents")?,
                highest: r.get("highest_cents")?,
                bidder: r.get("bidder")?,
                ends_at: r.get("ends_at")?,
                connected: r.get("connected")?,
                connections: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut sessions = conn.prepare(
        "SELECT a.name AS bidder, c.peer, c.connected_at, c.disconnected_at
         FROM channel_sessions c JOIN accounts a ON a.id = c.account
         WHERE c.item = ?1 ORDER BY c.id DESC LIMIT ?2",
    )?;
    for item in &mut open_items {
        item.connections = sessions
            .query_map(rusqlite::params![item.item, CONNECTIONS_PER_ITEM], |r| {
                Ok(ConnectionRow {
                    bidder: r.get("bidder")?,
                    peer: r.get("peer")?,
                    connected_at: r.get("connected_at")?,
                    disconnected_at: r.get("disconnected_at")?,
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
