//! Several nodes: what a node's live board shows of the items the other nodes run. Its own
//! items reach its board from their tasks as they happen (`item/`); the others are read from
//! the database, which is where nodes meet: every `POLL` the items whose revision moved
//! (`items.rev`, bumped by every write to the row), and every `RESYNC` polls all open items
//! and the latest results, which also catches a revision taken before one already seen but
//! committed after it. Everything read is committed, so the board still shows only what is
//! durable; a change on another node shows here within about one `POLL`.
//!
//! Who owns what: this task owns its cursor and its database connection (shared with the
//! host); the board is shared (see `web/board.rs`).

use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::store::postgres::nodes::Membership;
use crate::store::postgres::shard;
use crate::web::board::{Board, RECENT_RESULTS};

/// How often the node reads the items changed on other nodes.
const POLL: Duration = Duration::from_millis(100);
/// Every this many polls, it reads every open item whatever its revision.
const RESYNC: u32 = 50;
/// Revisions read again at each poll, for commits that land out of revision order.
const OVERLAP: i64 = 64;

/// Follows the other nodes' items into `board` until `stop`.
pub async fn follow(
    client: Arc<Client>,
    me: Membership,
    board: Arc<Board>,
    stop: CancellationToken,
) {
    let mut last_rev: i64 = 0;
    let mut polls: u32 = 0;
    let mut failing = false;
    loop {
        // A revision is taken before its commit, so a lower one may commit after a higher one
        // was read: the poll reads back `OVERLAP` revisions (unchanged items cost nothing
        // more), and the resync catches anything older.
        let after = if polls.is_multiple_of(RESYNC) {
            None
        } else {
            Some(last_rev.saturating_sub(OVERLAP))
        };
        polls = polls.wrapping_add(1);
        match shard::board_items(&client, &me, after, RECENT_RESULTS as i64).await {
            Ok(rows) => {
                failing = false;
                for row in rows {
                    last_rev = last_rev.max(row.rev);
                    board.mirror(row.item, row.last);
                }
            }
            Err(e) => {
                // Said once per run of failures (the host's own polls say when the database
                // is gone).
                if !failing {
                    tracing::warn!(error = %format!("{e:#}"), "could not read the other nodes' items for the board");
                }
                failing = true;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.cancelled() => return,
        }
    }
}
