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
//! This file holds the trait and what every task uses with it ([`Outbox`], [`wait_durable`]);
//! `record.rs` what goes in, `snapshot.rs` what comes back, `queue.rs` the queue in front of a
//! backend's writer thread. Two backends: SQLite (`sqlite/`, the default: one file) and
//! PostgreSQL (`postgres/`, for several nodes sharing one database), running the same SQL
//! (`sql/`).

pub mod postgres;
mod queue;
mod record;
mod snapshot;
pub mod sql;
pub mod sqlite;

pub use record::{NoticeKind, NoticeRecord, Record, REGISTRY_NOTICES, SETTLEMENT_NOTICES};
pub use snapshot::{Negotiation, Snapshot, StoredAccount, StoredItem, StoredNotice, StoredReply};

use auction_protocol::Cents;
use std::collections::VecDeque;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::rules::settlement::Party;

/// Position in the commit order. 0 means "nothing": every appended batch gets 1, 2, 3...
pub type Lsn = u64;

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

/// Where the server's durable facts go (see the module header for the contract). Implemented by
/// [`sqlite::SqliteStorage`].
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
    /// The first `limit` accepted bids on `item`, in commit order, as the board shows them.
    /// Reads committed data; blocks: call it from a blocking context.
    fn history(&self, item: u64, limit: u64) -> anyhow::Result<Vec<crate::web::BoardBid>>;
    /// The latest `limit` accepted bids on `item` in commit order (removed ones marked, with
    /// the operator's note), whether it has older ones, and the item's cancellation (what
    /// `history` over UDP answers). Reads committed data; blocks: call it from a blocking
    /// context.
    fn latest_bids(&self, item: u64, limit: u64) -> anyhow::Result<sql::BidHistory>;
    /// The accepted bids on `item` still in force, in commit order, for judging them again
    /// after the operator removed one. Reads committed data; blocks: call it from a blocking
    /// context.
    fn item_bids(&self, item: u64) -> anyhow::Result<Vec<sql::StoredBid>>;
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
    /// Whether something held matches `f`.
    pub fn holds(&self, f: impl Fn(&T) -> bool) -> bool {
        self.held.iter().any(|(_, t)| f(t))
    }

    pub fn new(storage: &dyn Storage) -> Outbox<T> {
        Outbox {
            held: VecDeque::new(),
            durable: storage.durable(),
        }
    }

    /// `out` back if it may be said at once; otherwise it is held until everything appended
    /// so far (by anyone) is durable.
    pub fn admit(&mut self, storage: &dyn Storage, out: T) -> Option<T> {
        self.admit_after(storage.appended(), out)
    }

    /// `out` back if it may be said at once; otherwise it is held until `needed` (and
    /// everything before it) is durable, and after whatever is held already: nothing said
    /// later overtakes something said earlier.
    pub fn admit_after(&mut self, needed: Lsn, out: T) -> Option<T> {
        let needed = self
            .held
            .back()
            .map_or(needed, |&(last, _)| needed.max(last));
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
