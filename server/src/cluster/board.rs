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

/// Follows the other nodes' items into `board` until `stop`.
pub async fn follow(
    client: Arc<Client>,
    me: Membership,
    board: Arc<Board>,
    stop: CancellationToken,
) {
    let mut last_rev: i64 = 0;
    let mut polls: u32 = 0;
    loop {
        let after = if polls.is_multiple_of(RESYNC) {
            None
        } else {
            Some(last_rev)
        };
        polls = polls.wrapping_add(1);
        match shard::board_items(&client, &me, after, RECENT_RESULTS as i64).await {
            Ok(items) => {
                for (rev, item) in items {
                    last_rev = last_rev.max(rev);
                    board.mirror(item);
                }
            }
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "could not read the other nodes' items for the board")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.cancelled() => return,
        }
    }
}
