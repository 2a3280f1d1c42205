//! The storage boundary. Everything the server must not forget passes through [`Storage`] as a
//! [`Record`]; what it held at the last start comes back as a [`Snapshot`].
//!
//! The contract that makes "durable before acknowledged" cheap is a log sequence number
//! ([`Lsn`]). `append` queues records and returns at once with their number; a background writer
//! commits everything queued in one transaction (group commit) and then advances `durable`.
//! Records are committed in the order their numbers were handed out, so a task that holds an
//! answer until `durable` reaches [`Storage::appended`] (read when the answer was made) never
//! shows anyone a state that a crash could take back. Tasks never wait for a disk on their own
//! path: they keep working and release held answers when `durable` moves.
//!
//! The one backend is SQLite (`sqlite.rs`); a PostgreSQL backend implements the same trait.

pub mod sqlite;

use auction_protocol::{Cents, PublicKey};
use std::collections::VecDeque;
use std::net::SocketAddr;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::accounts::AccountId;
use crate::rules::auction::Outcome;
use crate::rules::settlement::{Party, Settlement};

/// Position in the commit order. 0 means "nothing": every appended batch gets 1, 2, 3...
pub type Lsn = u64;

/// One durable fact.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    AccountCreated {
        id: AccountId,
        name: String,
        key: PublicKey,
        /// `None` for an account the server made itself (a catalog's seller).
        notify: Option<SocketAddr>,
        at: u64,
    },
    /// Announcements for the account go to `notify` from now on.
    AccountAttached {
        id: AccountId,
        notify: SocketAddr,
    },
    AccountRemoved {
        id: AccountId,
        at: u64,
    },
    /// The answer to a signed request, kept for the replay window: after a restart a
    /// retransmission still gets this answer and a number at or below `floor` is still stale.
    Replied {
        account: AccountId,
        req: u64,
        /// What the request asked for (see `replay::digest`).
        digest: [u8; 32],
        answer: Vec<u8>,
        floor: u64,
    },
    ItemOffered {
        item: u64,
        seller: AccountId,
        description: String,
        min: Cents,
        ends_at: u64,
        port: u16,
        at: u64,
        /// The `--catalog` entry it was offered for.
        catalog_id: Option<String>,
    },
    /// An open item came back after a restart: new end (grace period) and channel port.
    ItemResumed {
        item: u64,
        ends_at: u64,
        port: u16,
    },
    /// A bid: every accepted one, and every one that carried an id (so a resent id gets its
    /// first answer even after a restart).
    Bid {
        item: u64,
        bidder: AccountId,
        amount: Cents,
        bid_id: Option<String>,
        outcome: Outcome,
        /// The item's lead after the bid, when it changed (it may be another bidder's proxy
        /// answering this bid).
        lead: Option<LeadRecord>,
        at: u64,
    },
    /// The auction ended. The notices are written in the same transaction, so a crash cannot
    /// leave a closed item whose winner is never told.
    ItemClosed {
        item: u64,
        winner: Option<(AccountId, Cents)>,
        notices: Vec<NoticeRecord>,
        at: u64,
    },
    NoticeAcked {
        notice: u64,
        at: u64,
    },
    /// A bidder's channel connection joined an item (the connection log the operator's
    /// `auction-server status` shows).
    ChannelOpened {
        session: u64,
        item: u64,
        account: AccountId,
        peer: SocketAddr,
        at: u64,
    },
    ChannelClosed {
        session: u64,
        at: u64,
    },
    /// The account follows the item's bids over UDP. Subscriptions end when the item closes
    /// or the account is removed (deleted with those records).
    Subscribed {
        account: AccountId,
        item: u64,
    },
    Unsubscribed {
        account: AccountId,
        item: u64,
    },
    /// The item had no bid by half its time: its seller was sent NEGOTIATE-REQ (`notice`).
    NegotiationAsked {
        item: u64,
        notice: NoticeRecord,
        at: u64,
    },
    /// The seller answered: the new minimum (accepted) or `None` (refused). Answering also
    /// settles the NEGOTIATE-REQ notice.
    Negotiated {
        item: u64,
        min: Option<Cents>,
        at: u64,
    },
    /// A sale's settlement as it stands now (stored whole), with the notices its change sends.
    Settlement {
        settlement: Settlement,
        notices: Vec<NoticeRecord>,
        at: u64,
    },
}

/// An item's lead as stored: leader, price, the leader's private proxy maximum.
pub type LeadRecord = (AccountId, Cents, Option<Cents>);

/// A WIN / SOLD / NOT-SOLD waiting for its recipient's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRecord {
    pub id: u64,
    pub account: AccountId,
    pub item: u64,
    /// As stored: a [`NoticeKind`]'s name, or a settlement notice's type.
    pub kind: &'static str,
    /// The datagram exactly as it is sent.
    pub datagram: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Win,
    Sold,
    NotSold,
    NegotiateReq,
}

impl NoticeKind {
    /// As stored: `win`, `sold`, `not-sold`.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Win => "win",
            NoticeKind::Sold => "sold",
            NoticeKind::NotSold => "not-sold",
            NoticeKind::NegotiateReq => "negotiate-req",
        }
    }

    /// Notice ids derive from the item (item * 4 + kind), so each notice exists once however
    /// often it is built, and keeps its id across restarts. (Settlement notices, of which an
    /// item may have any number, are numbered in order from [`SETTLEMENT_NOTICES`].)
    pub fn id(self, item: u64) -> u64 {
        item * 4
            + match self {
                NoticeKind::Win => 0,
                NoticeKind::Sold => 1,
                NoticeKind::NotSold => 2,
                NoticeKind::NegotiateReq => 3,
            }
    }
}

/// The first settlement notice id: far above every item * 4 + kind, and below 2^53.
pub const SETTLEMENT_NOTICES: u64 = 1 << 52;

/// A sold item with no settlement stored yet (the server stopped between the close and the
/// settlement's first record): its settlement starts at the next start.
#[derive(Debug, Clone)]
pub struct UnsettledSale {
    pub item: u64,
    pub description: String,
    pub seller: (AccountId, String),
    pub buyer: (AccountId, String),
    pub amount: Cents,
    pub closed_at: u64,
}

/// Everything the server needs to carry on after a restart.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Live accounts, and the most recently removed ones (for their replay windows).
    pub accounts: Vec<StoredAccount>,
    /// Every item, open and closed, by id.
    pub items: Vec<StoredItem>,
    /// Notices not yet acknowledged, by id.
    pub notices: Vec<StoredNotice>,
    pub next_account: AccountId,
    pub next_item: u64,
    /// The next row of the connection log.
    pub next_session: u64,
    /// Subscriptions to open items: (account, item).
    pub subscriptions: Vec<(AccountId, u64)>,
    /// Every sale's settlement.
    pub settlements: Vec<Settlement>,
    pub unsettled: Vec<UnsettledSale>,
    /// The next settlement notice id.
    pub next_notice: u64,
}

#[derive(Debug, Clone)]
pub struct StoredAccount {
    pub id: AccountId,
    pub name: String,
    pub key: PublicKey,
    pub notify: Option<SocketAddr>,
    pub removed: bool,
    pub replay_floor: u64,
    /// The replay window, by ascending request number.
    pub replies: Vec<StoredReply>,
}

/// One replay-window entry: request number, request digest, answer.
pub type StoredReply = (u64, [u8; 32], Vec<u8>);

#[derive(Debug, Clone)]
pub struct StoredItem {
    pub id: u64,
    pub seller: AccountId,
    pub seller_name: String,
    pub description: String,
    pub min: Cents,
    pub ends_at: u64,
    pub port: u16,
    /// The leading bid: bidder, bidder's name, price, the bidder's proxy maximum.
    pub lead: Option<(AccountId, String, Cents, Option<Cents>)>,
    /// Closed items only: when it closed (Unix ms).
    pub closed_at: Option<u64>,
    /// For open items: the first answer to every bid id, to answer resends.
    pub bid_ids: Vec<(AccountId, String, Outcome)>,
    /// The `--catalog` entry it was offered for.
    pub catalog_id: Option<String>,
    pub negotiation: Negotiation,
}

/// Where an item's negotiation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiation {
    /// Not asked yet: due at this time (Unix ms) if the item has no bid by then.
    Due(u64),
    /// NEGOTIATE-REQ went out; the seller has not answered.
    Asked,
    /// The seller answered (or the item had a bid in time).
    Done,
}

#[derive(Debug, Clone)]
pub struct StoredNotice {
    pub id: u64,
    pub account: AccountId,
    pub datagram: Vec<u8>,
}

/// Commit counters since start, for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Transactions committed.
    pub commits: u64,
    /// `append` calls they carried.
    pub appends: u64,
    /// Records they carried.
    pub records: u64,
}

/// See [`Storage::observe_commits`].
pub type CommitObserver = Box<dyn Fn(usize, std::time::Duration) + Send + Sync>;

pub trait Storage: Send + Sync + 'static {
    /// Queues `records` to be made durable together, after everything appended before, and
    /// returns their sequence number. Never blocks on the disk.
    fn append(&self, records: Vec<Record>) -> Lsn;
    /// The number of the latest `append`.
    fn appended(&self) -> Lsn;
    /// Follows the highest number that is durable.
    fn durable(&self) -> watch::Receiver<Lsn>;
    /// Cancelled when a commit failed: from then on nothing becomes durable, and the server
    /// must stop rather than acknowledge anything more.
    fn failed(&self) -> CancellationToken;
    /// Why the storage failed, once it has.
    fn failure(&self) -> Option<String>;
    fn stats(&self) -> CommitStats;
    /// Each bidder's highest accepted bid on `item`, best first (earlier first among equal
    /// ones), for second-chance offers. Reads committed data; blocks: call it from a
    /// blocking context.
    fn best_bids(&self, item: u64) -> anyhow::Result<Vec<(Party, Cents)>>;
    /// Calls `observer` after every commit with the changes (`append` calls) it carried and
    /// how long it took. Set once, before the server starts; later calls are ignored.
    fn observe_commits(&self, observer: CommitObserver) {
        let _ = observer;
    }
    /// Commits everything appended so far and stops the writer. Blocks: call it from a
    /// blocking context.
    fn close(&self);
}

/// What a task has said, held until storage has made durable everything appended before it
/// was said. Owning its own subscription to storage progress from the moment it is made, it
/// cannot miss the commit that releases what it holds.
pub struct Outbox<T> {
    held: VecDeque<(Lsn, T)>,
    durable: watch::Receiver<Lsn>,
}

impl<T> Outbox<T> {
    pub fn new(storage: &dyn Storage) -> Outbox<T> {
        Outbox {
            held: VecDeque::new(),
            durable: storage.durable(),
        }
    }

    /// `out` back if it may be said at once; otherwise it is held.
    pub fn admit(&mut self, storage: &dyn Storage, out: T) -> Option<T> {
        let needed = storage.appended();
        if self.held.is_empty() && *self.durable.borrow() >= needed {
            Some(out)
        } else {
            self.held.push_back((needed, out));
            None
        }
    }

    /// The next held message storage has caught up with, in the order they were said.
    pub fn release(&mut self) -> Option<T> {
        let durable = *self.durable.borrow();
        if self.held.front().is_some_and(|(lsn, _)| *lsn <= durable) {
            self.held.pop_front().map(|(_, out)| out)
        } else {
            None
        }
    }

    /// Resolves when storage has moved on while something is held; never while nothing is.
    pub async fn progress(&mut self) {
        if self.held.is_empty() || self.durable.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Waits until `lsn` is durable; false if the storage failed first.
pub async fn wait_durable(storage: &dyn Storage, lsn: Lsn) -> bool {
    let mut durable = storage.durable();
    let failed = storage.failed();
    tokio::select! {
        done = durable.wait_for(|&d| d >= lsn) => done.is_ok(),
        _ = failed.cancelled() => false,
    }
}
