//! `auction-server status`: the operator's view, read from the database (read only, beside a
//! running server or without one). It shows what the server has committed: accounts, open items
//! with their highest bids, and the connection log of each open item's channel.
//!
//! This file renders the report; the report and the SQL that fills it are in
//! `store/sql/status.rs` (what each backend adds: `store/sqlite/status.rs`,
//! `store/postgres/status.rs`). It runs in its own process: it shares no state with a server
//! and waits for none.

use std::time::{Duration, UNIX_EPOCH};

pub use crate::store::sql::status::{
    AccountRow, ConnectionRow, ItemRow, NodeRow, Report, CONNECTIONS_PER_ITEM,
};
pub use crate::store::sqlite::status::read;

/// The report of the database `db`: a SQLite file, or a PostgreSQL URL. Blocks.
pub fn read_any(db: &str) -> anyhow::Result<Report> {
    if crate::store::postgres::is_url(db) {
        crate::store::postgres::status::read(db)
    } else {
        read(std::path::Path::new(db))
    }
}

pub(crate) fn time(ms: u64) -> String {
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
        report.db,
        time(report.read_at)
    );
    if !report.nodes.is_empty() {
        let _ = writeln!(s, "Nodes: {}", report.nodes.len());
        let mut rows = vec![vec![
            "NODE".to_owned(),
            "UDP".into(),
            "EPOCH".into(),
            "STATE".into(),
            "HEARTBEAT UNTIL".into(),
            "OPEN ITEMS".into(),
        ]];
        for n in &report.nodes {
            let state = match (n.alive, n.fenced, n.leader) {
                (true, _, true) => "alive, leader",
                (true, _, false) => "alive",
                (false, true, _) => "dead, fenced",
                (false, false, _) => "stopped",
            };
            rows.push(vec![
                n.name.clone(),
                n.udp.clone(),
                n.epoch.to_string(),
                state.into(),
                time(n.expires_at),
                n.items.to_string(),
            ]);
        }
        table(&mut s, &rows);
        s.push('\n');
    }
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
        "NODE".into(),
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
            i.owner.clone().unwrap_or_else(|| "-".into()),
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

pub(crate) fn table(s: &mut String, rows: &[Vec<String>]) {
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
