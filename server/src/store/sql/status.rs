//! The report of `auction-server status` (rendered by `status.rs`) and the SQL that fills it,
//! the same on both backends: `sqlite/status.rs` and `postgres/status.rs` open the database
//! read only, from a process beside running servers or without one, and add what only they
//! know (whether a server holds the SQLite file's lock; PostgreSQL's nodes and item owners).

use anyhow::Result;
use serde::Serialize;

use super::{collect, params, Cols, Query, RowExt};

/// Connection-log rows shown per item (the most recent).
pub const CONNECTIONS_PER_ITEM: usize = 50;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `"database"`: this view is read from the database, not asked of a server.
    pub source: &'static str,
    /// The SQLite file, or the PostgreSQL URL without its password.
    pub db: String,
    /// Whether a server runs on the database now (holds the SQLite file's lock; for
    /// PostgreSQL, a node's heartbeat is current). If so, the report is what it had committed
    /// a moment ago; if not, what it left when it stopped.
    pub server_running: bool,
    /// Unix ms when the report was read.
    pub read_at: u64,
    pub accounts: Vec<AccountRow>,
    pub open_items: Vec<ItemRow>,
    /// PostgreSQL only (empty for SQLite): the nodes sharing the database.
    pub nodes: Vec<NodeRow>,
}

/// One node of a PostgreSQL cluster.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    pub name: String,
    pub epoch: i64,
    pub udp: String,
    /// Its heartbeat is current.
    pub alive: bool,
    /// A survivor bumped its epoch after its heartbeat lapsed.
    pub fenced: bool,
    /// It holds the leader lease (runs the registration plane).
    pub leader: bool,
    /// Unix ms when its heartbeat lapses (or lapsed).
    pub expires_at: u64,
    /// Open items it runs.
    pub items: u64,
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
    /// PostgreSQL only: the node running it.
    pub owner: Option<String>,
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

/// Accounts and open items with their connection logs, read inside one read transaction the
/// caller holds (so every part is from the same commit).
pub fn read_tables(q: &mut dyn Query) -> Result<(Vec<AccountRow>, Vec<ItemRow>)> {
    let mut cols = Cols::new([
        "name",
        "created_at",
        "notify_addr",
        "open_items",
        "pending_notices",
    ]);
    let accounts = collect(
        q,
        "SELECT a.name, a.created_at, a.notify_addr,
                (SELECT count(*) FROM items i WHERE i.seller = a.id AND i.closed_at IS NULL)
                    AS open_items,
                (SELECT count(*) FROM notices n WHERE n.account = a.id AND n.acked_at IS NULL)
                    AS pending_notices
         FROM accounts a WHERE a.removed_at IS NULL ORDER BY a.name",
        params![],
        |r| {
            let [name, created_at, notify_addr, open_items, pending_notices] = cols.of(r)?;
            Ok(AccountRow {
                name: r.string(name)?,
                created_at: r.u64(created_at)?,
                notify: r.text(notify_addr)?,
                open_items: r.u64(open_items)?,
                pending_notices: r.u64(pending_notices)?,
            })
        },
    )?;
    let mut cols = Cols::new([
        "id",
        "description",
        "seller",
        "min_cents",
        "highest_cents",
        "bidder",
        "ends_at",
        "connected",
    ]);
    let mut open_items = collect(
        q,
        "SELECT i.id, i.description, s.name AS seller, i.min_cents, i.highest_cents,
                b.name AS bidder, i.ends_at,
                (SELECT count(*) FROM channel_sessions c
                 WHERE c.item = i.id AND c.disconnected_at IS NULL) AS connected
         FROM items i JOIN accounts s ON s.id = i.seller
         LEFT JOIN accounts b ON b.id = i.highest_bidder
         WHERE i.closed_at IS NULL ORDER BY i.id",
        params![],
        |r| {
            let [id, description, seller, min_cents, highest_cents, bidder, ends_at, connected] =
                cols.of(r)?;
            Ok(ItemRow {
                item: r.u64(id)?,
                description: r.string(description)?,
                seller: r.string(seller)?,
                min: r.u64(min_cents)?,
                highest: r.opt_u64(highest_cents)?,
                bidder: r.text(bidder)?,
                ends_at: r.u64(ends_at)?,
                connected: r.u64(connected)?,
                owner: None,
                connections: Vec::new(),
            })
        },
    )?;
    for item in &mut open_items {
        let mut cols = Cols::new(["bidder", "peer", "connected_at", "disconnected_at"]);
        item.connections = collect(
            q,
            "SELECT a.name AS bidder, c.peer, c.connected_at, c.disconnected_at
             FROM channel_sessions c JOIN accounts a ON a.id = c.account
             WHERE c.item = $1 ORDER BY c.id DESC LIMIT $2",
            params![item.item, CONNECTIONS_PER_ITEM as u64],
            |r| {
                let [bidder, peer, connected_at, disconnected_at] = cols.of(r)?;
                Ok(ConnectionRow {
                    bidder: r.string(bidder)?,
                    peer: r.string(peer)?,
                    connected_at: r.u64(connected_at)?,
                    disconnected_at: r.opt_u64(disconnected_at)?,
                })
            },
        )?;
    }
    Ok((accounts, open_items))
}
