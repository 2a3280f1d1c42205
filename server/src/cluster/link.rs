//! The leader's side of items spread over nodes. The registry gives each new item to the
//! least loaded live node (`Record::ItemAssigned`, in the offer's own group) and keeps, for
//! every open item, a mirror in its catalogue: a view and a command queue like a local item's,
//! fed from the database. The follower task here reads what changed in the items the registry
//! follows (every `POLL`, by revision, and all of them every `RESYNC`, which also catches a
//! revision taken before one already seen but committed after it) and sends it to the registry
//! (`Remote`); every `SWEEP` it refreshes the live nodes, fences the nodes whose heartbeat
//! lapsed and gives their open items to live ones, through the leader's own fenced writer.
//!
//! What the leader asks of an item (a lower minimum, an account gone) goes into a command log
//! every node reads (`store/postgres/shard.rs`). Nothing here talks to another node directly.

use auction_protocol::{Cents, Reason};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::item::ItemCmd;
use crate::rules::refusal::Refusal;
use crate::store::postgres::nodes::{self, Membership};
use crate::store::postgres::shard::{self, Command, ItemState, LiveNode};
use crate::store::{wait_durable, NoticeRecord, Record, Storage};

/// How often the leader reads what changed in the items it follows.
const POLL: Duration = Duration::from_millis(100);
/// Every this many polls, it reads every followed item whatever its revision.
const RESYNC: u32 = 20;
/// Every this many polls, it refreshes the live nodes and gives out the items of dead ones.
const SWEEP: u32 = 2;
/// How long a lower minimum may take to reach the item's owner and be stored.
const LOWER_MIN_WAIT: Duration = Duration::from_secs(5);

/// What the follower tells the registry.
#[derive(Debug)]
pub enum Remote {
    /// An open item as the database has it now.
    State(ItemState),
    /// An item closed: its result and the notices it left to deliver.
    Closed {
        state: ItemState,
        notices: Vec<NoticeRecord>,
    },
}

/// The leader's connection to the items the nodes run.
pub struct Link {
    client: Client,
    me: Membership,
    /// The live nodes as last read, each with its open items (counted up as items are given).
    nodes: Mutex<Vec<LiveNode>>,
    /// The open items the registry mirrors.
    followed: Mutex<BTreeSet<u64>>,
}

impl Link {
    /// Connects for `me` (the leader) and reads the live nodes.
    pub async fn connect(url: &str, me: Membership) -> anyhow::Result<Link> {
        let client =
            crate::store::postgres::connect_as(url, &format!("auction-server {} link", me.name))
                .await?;
        let nodes = shard::live_nodes(&client).await?;
        Ok(Link {
            client,
            me,
            nodes: Mutex::new(nodes),
            followed: Mutex::new(BTreeSet::new()),
        })
    }

    /// The live node with the fewest open items (this one when none is known; among equals,
    /// another than the leader, which also runs the registration plane), counted as running
    /// one more: its name and epoch.
    pub fn assign(&self) -> (String, u64) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let me = self.me.name.as_str();
        match nodes
            .iter_mut()
            .min_by_key(|n| (n.open_items, n.name == me, n.name.clone()))
        {
            Some(node) => {
                node.open_items += 1;
                (node.name.clone(), node.epoch)
            }
            None => (self.me.name.clone(), self.me.epoch as u64),
        }
    }

    /// Follows `item` (open, run by some node) until it closes.
    pub fn follow(&self, item: u64) {
        self.lock_followed().insert(item);
    }

    fn lock_followed(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.followed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `item`'s channel once a live node has it open, and the item's revision then.
    pub async fn channel_of(&self, item: u64) -> Option<(String, i64)> {
        match shard::whereabouts(&self.client, item).await {
            Ok(found) => found.and_then(|(_, channel, rev)| Some((channel?, rev))),
            Err(e) => {
                tracing::warn!(item, error = %format!("{e:#}"), "could not read where an item runs");
                None
            }
        }
    }

    /// Reads the live nodes again (before an item is given out).
    pub async fn refresh_nodes(&self) {
        match shard::live_nodes(&self.client).await {
            Ok(live) => *self.nodes.lock().unwrap_or_else(|p| p.into_inner()) = live,
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not read the live nodes"),
        }
    }

    /// Tells every node that `account` is gone.
    pub async fn account_gone(&self, account: u64) {
        if let Err(e) = shard::command(&self.client, &Command::AccountGone { account }).await {
            tracing::warn!(account, error = %format!("{e:#}"), "could not tell the nodes an account is gone");
        }
    }

    /// The first open item `account` leads, as the database has it.
    pub async fn leads(&self, account: u64) -> Option<u64> {
        match self
            .client
            .query_opt(
                "SELECT id FROM items WHERE closed_at IS NULL AND highest_bidder = $1
                 ORDER BY id LIMIT 1",
                &[&(account as i64)],
            )
            .await
        {
            Ok(row) => row.map(|r| r.get::<_, i64>(0) as u64),
            Err(e) => {
                tracing::warn!(error = %e, "could not read who leads the open items");
                None
            }
        }
    }

    /// Asks `item`'s owner to lower its minimum to `min`, and waits until that is stored.
    async fn lower_min(&self, item: u64, min: Cents) -> Result<(), Refusal> {
        let unavailable = |e: anyhow::Error| {
            tracing::warn!(item, error = %format!("{e:#}"), "could not lower a remote item's minimum");
            Refusal::new(
                Reason::Unavailable,
                format!("item {item}'s node could not be reached; answer again in a moment"),
            )
        };
        shard::command(&self.client, &Command::LowerMin { item, min })
            .await
            .map_err(unavailable)?;
        let deadline = tokio::time::Instant::now() + LOWER_MIN_WAIT;
        loop {
            match shard::min_of(&self.client, item)
                .await
                .map_err(unavailable)?
            {
                Some((stored, _)) if stored == min => return Ok(()),
                Some((_, true)) | None => {
                    return Err(Refusal::new(
                        Reason::AuctionOver,
                        format!("item {item} has closed"),
                    ))
                }
                Some(_) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(unavailable(anyhow::anyhow!(
                    "the owner did not store the new minimum within {LOWER_MIN_WAIT:?}"
                )));
            }
            tokio::time::sleep(POLL / 2).await;
        }
    }
}

impl Link {
    /// Asks `item`'s owner to carry out the operator's cancellation (`bid` `None`) or removal
    /// of bid `bid`, and waits until it is stored (at most `LOWER_MIN_WAIT`). Answers the
    /// lead afterwards.
    async fn operator(
        &self,
        item: u64,
        bid: Option<u64>,
        command: Command,
    ) -> Result<Option<(Cents, String)>, Refusal> {
        let unavailable = |e: anyhow::Error| {
            tracing::warn!(item, error = %format!("{e:#}"), "could not carry out the operator's action on a remote item");
            Refusal::new(
                Reason::Unavailable,
                format!("item {item}'s node could not be reached; ask again in a moment"),
            )
        };
        let closed = || Refusal::new(Reason::AuctionOver, format!("item {item} has closed"));
        if let Some(bid) = bid {
            if !shard::bid_in_force(&self.client, item, bid)
                .await
                .map_err(unavailable)?
            {
                return Err(Refusal::new(
                    Reason::UnknownBid,
                    format!("item {item} has no bid #{bid} in force (`history {item}` numbers its bids)"),
                ));
            }
        }
        shard::command(&self.client, &command)
            .await
            .map_err(unavailable)?;
        let deadline = tokio::time::Instant::now() + LOWER_MIN_WAIT;
        loop {
            match shard::operator_done(&self.client, item, bid)
                .await
                .map_err(unavailable)?
            {
                (true, _) => {
                    return shard::lead_of(&self.client, item)
                        .await
                        .map_err(unavailable)
                }
                (false, true) => return Err(closed()),
                (false, false) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(unavailable(anyhow::anyhow!(
                    "the owner did not store the action within {LOWER_MIN_WAIT:?}"
                )));
            }
            tokio::time::sleep(POLL / 2).await;
        }
    }
}

/// The command queue of a mirrored item: what the registry asks of it is asked of its owner
/// through the database.
pub fn mirror(link: Arc<Link>, item: u64) -> mpsc::Sender<ItemCmd> {
    let (tx, mut rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                ItemCmd::Leader { reply } => {
                    let leader = shard::highest_bidder(&link.client, item)
                        .await
                        .ok()
                        .flatten();
                    let _ = reply.send(leader);
                }
                ItemCmd::LowerMin { min, reply } => {
                    let _ = reply.send(link.lower_min(item, min).await);
                }
                ItemCmd::Cancel {
                    operator,
                    note,
                    reply,
                } => {
                    let command = Command::Cancel {
                        item,
                        operator,
                        note,
                    };
                    let done = link.operator(item, None, command).await;
                    let _ = reply.send(done.map(|_| ()));
                }
                ItemCmd::RemoveBid {
                    operator,
                    bid,
                    note,
                    reply,
                } => {
                    let command = Command::RemoveBid {
                        item,
                        bid,
                        operator,
                        note,
                    };
                    let _ = reply.send(link.operator(item, Some(bid), command).await);
                }
                // Told to every node at once (`Link::account_gone`); connections never reach
                // a mirror; a group of lots is moved on one server only (`registry/lots.rs`).
                ItemCmd::AccountGone { .. }
                | ItemCmd::PushEnd { .. }
                | ItemCmd::Join { .. }
                | ItemCmd::Leave { .. }
                | ItemCmd::Request { .. }
                | ItemCmd::BadLine { .. } => {}
            }
        }
    });
    tx
}

/// Follows the items the registry mirrors and gives out the items of dead nodes, until
/// `shutdown`; see the module's text.
pub async fn follow(
    link: Arc<Link>,
    storage: Arc<dyn Storage>,
    remote: mpsc::Sender<Remote>,
    shutdown: CancellationToken,
) {
    let mut seen: i64 = 0;
    let mut tick: u32 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        if tick.is_multiple_of(SWEEP) {
            if let Err(e) = sweep(&link, &*storage).await {
                tracing::warn!(error = %format!("{e:#}"), "could not look after the nodes");
            }
        }
        let after = if tick.is_multiple_of(RESYNC) {
            -1
        } else {
            seen
        };
        tick = tick.wrapping_add(1);
        let ids: Vec<i64> = link.lock_followed().iter().map(|&i| i as i64).collect();
        if ids.is_empty() {
            continue;
        }
        let states = match shard::changed(&link.client, after, &ids).await {
            Ok(states) => states,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not read the items the nodes run");
                continue;
            }
        };
        for state in states {
            seen = seen.max(state.rev);
            let event = if state.closed.is_some() {
                match shard::notices_of(&link.client, state.id).await {
                    Ok(notices) => {
                        link.lock_followed().remove(&state.id);
                        Remote::Closed { state, notices }
                    }
                    Err(e) => {
                        tracing::warn!(item = state.id, error = %format!("{e:#}"), "could not read a closed item's notices");
                        continue;
                    }
                }
            } else {
                Remote::State(state)
            };
            if remote.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// Refreshes the live nodes, fences those whose heartbeat lapsed, and gives each open item of a
/// fenced or gone node to the least loaded live node (through this node's writer, fenced by
/// its epoch: a leader that lost its place gives out nothing).
async fn sweep(link: &Link, storage: &dyn Storage) -> anyhow::Result<()> {
    for fenced in nodes::fence_lapsed(&link.client, &link.me.name).await? {
        tracing::warn!(node = %fenced, "fenced a node whose heartbeat had lapsed; its items move");
    }
    let live = shard::live_nodes(&link.client).await?;
    *link.nodes.lock().unwrap_or_else(|p| p.into_inner()) = live;
    let orphans = shard::orphans(&link.client).await?;
    if orphans.is_empty() {
        return Ok(());
    }
    let records: Vec<Record> = orphans
        .iter()
        .map(|&item| {
            let (node, epoch) = link.assign();
            tracing::info!(item, %node, "item given to another node");
            Record::ItemAssigned { item, node, epoch }
        })
        .collect();
    let lsn = storage.append(records);
    wait_durable(storage, lsn).await;
    Ok(())
}
