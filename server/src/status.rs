//! `auction-server status`: the operator's view, read from the database (read only, beside a
//! running server or without one). It shows what the server has committed: accounts, open items
//! with their highest bids, and the connection log of each open item's channel.

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

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

/// Whether a server holds `db`'s lock file (see `sqlite.rs`).
fn lock_is_held(db: &Path) -> bool {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    match std::fs::File::open(PathBuf::from(name)) {
        Ok(f) => matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

fn time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The report as sentences and tables.
pub fn render(report: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let state = if report.server_running {
        "a server is running on it, so this is what it had committed a moment ago"
    } else {
        "no server is running on it, so this is what the last one left"
    };
    let _ = writeln!(
        s,
        "Read from the database {} at {} ({state}).\n",
        report.db.display(),
        time(report.read_at)
    );
    let _ = writeln!(s, "Accounts: {}", report.accounts.len());
    let mut rows = vec![vec![
        "NAME".to_owned(),
        "REGISTERED".into(),
        "ANNOUNCEMENTS TO".into(),
        "OPEN ITEMS".into(),
        "PENDING NOTICES".into(),
    ]];
    for a in &report.accounts {
        rows.push(vec![
            a.name.clone(),
            time(a.created_at),
            a.notify.clone().unwrap_or_else(|| "-".into()),
            a.open_items.to_string(),
            a.pending_notices.to_string(),
        ]);
    }
    table(&mut s, &rows);
    let _ = writeln!(s, "\nOpen items: {}", report.open_items.len());
    let mut rows = vec![vec![
        "ITEM".to_owned(),
        "DESCRIPTION".into(),
        "SELLER".into(),
        "MINIMUM".into(),
        "HIGHEST".into(),
        "CLOSES".into(),
        "CONNECTED".into(),
    ]];
    for i in &report.open_items {
        let cents = |c: u64| auction_protocol::Cents(c).to_string();
        rows.push(vec![
            i.item.to_string(),
            i.description.clone(),
            i.seller.clone(),
            cents(i.min),
            match (&i.highest, &i.bidder) {
                (Some(h), Some(b)) => format!("{} ({b})", cents(*h)),
                _ => "-".into(),
            },
            time(i.ends_at),
            i.connected.to_string(),
        ]);
    }
    table(&mut s, &rows);
    for i in &report.open_items {
        if i.connections.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\nItem {} channel connections (latest first):", i.item);
        let mut rows = vec![vec![
            "BIDDER".to_owned(),
            "FROM".into(),
            "CONNECTED".into(),
            "DISCONNECTED".into(),
        ]];
        for c in &i.connections {
            rows.push(vec![
                c.bidder.clone(),
                c.peer.clone(),
                time(c.connected_at),
                c.disconnected_at
                    .map(time)
                    .unwrap_or_else(|| "still connected".into()),
            ]);
        }
        table(&mut s, &rows);
    }
    s
}

fn table(s: &mut String, rows: &[Vec<String>]) {
    use std::fmt::Write;
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
        }
        let _ = writeln!(s, "{}", line.trim_end());
    }
}
