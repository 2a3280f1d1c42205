//! `auction-server status` and `audit` on a PostgreSQL database: the report every backend gives
//! (`store/sql/status.rs`), with the nodes sharing the database and which node runs each open
//! item. Read only, in one read-only transaction, from a process beside running nodes or
//! without any; it owns no state and waits for no writer.

use anyhow::{bail, Result};

use super::sql::{Blocker, PgQuery};
use super::{connect, schema, shown};
use crate::store::sql::status::{read_tables, NodeRow, Report};
use crate::store::sql::{collect, params, Cols, Query, RowExt};

/// Reads the report from the database at `url`. Blocks: call it from a blocking context.
pub fn read(url: &str) -> Result<Report> {
    read_with(url, |q| read_report(url, q))
}

/// Runs `read` on the database at `url` in one read-only transaction (everything it reads is
/// from the same snapshot). Blocks: call it from a blocking context.
pub fn read_with<T>(url: &str, read: impl FnOnce(&mut dyn Query) -> Result<T>) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = rt.block_on(connect(url))?;
    if rt.block_on(schema::version(&client))? == 0 {
        bail!(
            "{} holds no auction database yet (start auction-server on it once)",
            shown(url)
        );
    }
    rt.block_on(client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))?;
    let mut q = PgQuery {
        rt: Blocker::Owner(&rt),
        client: &client,
    };
    let read = read(&mut q)?;
    rt.block_on(client.batch_execute("COMMIT"))?;
    Ok(read)
}

fn read_report(url: &str, q: &mut dyn Query) -> Result<Report> {
    let (accounts, mut open_items) = read_tables(q)?;
    let mut cols = Cols::new(["id", "owner"]);
    let owners = collect(
        q,
        "SELECT id, owner FROM items WHERE closed_at IS NULL ORDER BY id",
        params![],
        |r| {
            let [id, owner] = cols.of(r)?;
            Ok((r.u64(id)?, r.text(owner)?))
        },
    )?;
    for item in &mut open_items {
        item.owner = owners
            .iter()
            .find(|(id, _)| *id == item.item)
            .and_then(|(_, owner)| owner.clone());
    }
    let mut cols = Cols::new([
        "name",
        "epoch",
        "udp_addr",
        "alive",
        "fenced",
        "leader",
        "expires_ms",
        "items",
    ]);
    let nodes = collect(
        q,
        "SELECT n.name, n.epoch, n.udp_addr, n.expires_at > now() AS alive, n.fenced,
                coalesce(n.leader_until > now(), FALSE) AS leader,
                (extract(epoch FROM n.expires_at) * 1000)::BIGINT AS expires_ms,
                (SELECT count(*) FROM items i WHERE i.owner = n.name AND i.closed_at IS NULL)
                    AS items
         FROM nodes n ORDER BY n.name",
        params![],
        |r| {
            let [name, epoch, udp_addr, alive, fenced, leader, expires_ms, items] = cols.of(r)?;
            Ok(NodeRow {
                name: r.string(name)?,
                epoch: r.int(epoch)?.unwrap_or(0),
                udp: r.string(udp_addr)?,
                alive: r.boolean(alive)?,
                fenced: r.boolean(fenced)?,
                leader: r.boolean(leader)?,
                expires_at: r.u64(expires_ms)?,
                items: r.u64(items)?,
            })
        },
    )?;
    Ok(Report {
        source: "database",
        db: shown(url),
        server_running: nodes.iter().any(|n| n.alive),
        read_at: crate::clock::unix_ms(),
        accounts,
        open_items,
        nodes,
    })
}
