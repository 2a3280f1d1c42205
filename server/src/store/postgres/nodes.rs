//! Membership, fencing epochs and the leader lease, kept in the database (`../shared/
//! ARCHITECTURE.md`, "Several nodes"). Every expiry is computed from the database's `now()`, so
//! correctness never depends on the nodes' clocks; clocks only decide how fast failover happens.
//!
//! - A node **joins** with a new epoch (a node that restarts fences its own former life).
//! - It **renews** its heartbeat while its epoch is current; a false answer means it was fenced
//!   and must stop serving at once.
//! - A survivor **fences** the nodes whose heartbeat lapsed: their epoch is bumped, so nothing
//!   they still try to commit can pass [`check_epoch`], which every write batch runs in its own
//!   transaction (`FOR SHARE`: a fence waits for a batch in flight, and a batch after the fence
//!   fails).
//! - One live node at a time holds the **leader lease**, renewed with its heartbeat; whoever
//!   takes it fences the lapsed nodes first, in the same transaction.

use anyhow::Result;
use std::time::Duration;
use tokio_postgres::{Client, GenericClient};

/// Taken (per transaction) while the leader lease changes hands.
const LEADER_LOCK: i64 = 0x4155_4354_0000_0002;

/// A node's place in the cluster: its name and the epoch it joined with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub name: String,
    pub epoch: i64,
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Joins (or joins again) as `name`, reachable at `udp`, its heartbeat good for `lease`: a new
/// epoch, which fences whatever an earlier run under this name might still try.
pub async fn join(client: &Client, name: &str, udp: &str, lease: Duration) -> Result<Membership> {
    let row = client
        .query_one(
            "INSERT INTO nodes (name, epoch, udp_addr, expires_at, fenced)
             VALUES ($1, 1, $2, now() + $3 * interval '1 millisecond', FALSE)
             ON CONFLICT (name) DO UPDATE SET
                 epoch = nodes.epoch + 1, udp_addr = EXCLUDED.udp_addr,
                 expires_at = EXCLUDED.expires_at, leader_until = NULL, fenced = FALSE
             RETURNING epoch",
            &[&name, &udp, &millis(lease)],
        )
        .await?;
    Ok(Membership {
        name: name.to_owned(),
        epoch: row.get(0),
    })
}

/// Renews `node`'s heartbeat for `lease`, and its leader lease with it if it holds one. False
/// when it was fenced: it must stop serving at once.
pub async fn renew(client: &Client, node: &Membership, lease: Duration) -> Result<bool> {
    let n = client
        .execute(
            "UPDATE nodes SET expires_at = now() + $3 * interval '1 millisecond',
                              leader_until = CASE WHEN leader_until IS NOT NULL
                                                  THEN now() + $3 * interval '1 millisecond'
                                             END
             WHERE name = $1 AND epoch = $2 AND NOT fenced",
            &[&node.name, &node.epoch, &millis(lease)],
        )
        .await?;
    Ok(n == 1)
}

/// `node` stopped cleanly: its heartbeat ends now and it gives up the leader lease, so the
/// others take its place without waiting for the lease to lapse.
pub async fn leave(client: &Client, node: &Membership) -> Result<()> {
    client
        .execute(
            "UPDATE nodes SET expires_at = now(), leader_until = NULL
             WHERE name = $1 AND epoch = $2",
            &[&node.name, &node.epoch],
        )
        .await?;
    Ok(())
}

/// Fences every node but `except` whose heartbeat lapsed: bumps its epoch and drops any leader
/// lease it held. The names of those fenced now (each node is fenced once per lapse).
pub async fn fence_lapsed(client: &impl GenericClient, except: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            "UPDATE nodes SET epoch = epoch + 1, fenced = TRUE, leader_until = NULL
             WHERE expires_at < now() AND NOT fenced AND name <> $1
             RETURNING name",
            &[&except],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The fence every write batch passes first, inside its own transaction (the writer sends the
/// same statement, `storage.rs`): `node` still holds its epoch, or the transaction fails. The
/// row stays share-locked until the transaction ends, so a fence waits for it.
pub async fn check_epoch(tx: &impl GenericClient, node: &Membership) -> Result<()> {
    tx.execute(FENCE, &[&node.name, &node.epoch]).await?;
    Ok(())
}

/// The fence statement (`auction_fence`, schema migration 3).
pub const FENCE: &str = "SELECT auction_fence($1, $2)";

/// What [`lead`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lead {
    /// `node` holds the leader lease now.
    pub leading: bool,
    /// Nodes whose heartbeat had lapsed, fenced on the way.
    pub fenced: Vec<String>,
}

/// Takes the leader lease for `lease`, or renews it, unless another live node holds it. In the
/// same transaction, under a lock every taker holds, it first fences every other node whose
/// heartbeat lapsed: a leader whose lease lapsed is fenced before anyone else leads, so it can
/// commit nothing more by the time another node starts serving.
pub async fn lead(client: &mut Client, node: &Membership, lease: Duration) -> Result<Lead> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LEADER_LOCK])
        .await?;
    let fenced = fence_lapsed(&tx, &node.name).await?;
    let other = tx
        .query_opt(
            "SELECT name FROM nodes
             WHERE leader_until > now() AND NOT fenced AND name <> $1",
            &[&node.name],
        )
        .await?;
    if other.is_some() {
        tx.commit().await?;
        return Ok(Lead {
            leading: false,
            fenced,
        });
    }
    let n = tx
        .execute(
            "UPDATE nodes SET leader_until = now() + $3 * interval '1 millisecond'
             WHERE name = $1 AND epoch = $2 AND NOT fenced",
            &[&node.name, &node.epoch, &millis(lease)],
        )
        .await?;
    let mut fenced = fenced;
    if n == 1 {
        // A former leader whose lease lapsed while its heartbeat did not (a lease shorter
        // than the heartbeat's) is fenced too: nothing it still believes may commit.
        let former = tx
            .query(
                "UPDATE nodes SET epoch = epoch + 1, fenced = TRUE, leader_until = NULL
                 WHERE leader_until IS NOT NULL AND NOT fenced AND name <> $1
                 RETURNING name",
                &[&node.name],
            )
            .await?;
        fenced.extend(former.iter().map(|r| r.get::<_, String>(0)));
    }
    tx.commit().await?;
    Ok(Lead {
        leading: n == 1,
        fenced,
    })
}

/// The node holding the leader lease now, and its UDP address (where the others redirect
/// clients).
pub async fn leader(client: &Client) -> Result<Option<(String, String)>> {
    let row = client
        .query_opt(
            "SELECT name, udp_addr FROM nodes WHERE leader_until > now() AND NOT fenced",
            &[],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}
