//! The storage boundary. Everything the server must not forget passes through [`Storage`] as a
//! [`Record`], and the server waits for `commit` before it acknowledges what the record
//! describes. This build keeps state in memory ([`MemoryStorage`]); a durable backend plugs in
//! behind the same trait without touching the auction logic.

use auction_protocol::{Cents, PublicKey};
use std::future::Future;
use std::pin::Pin;

use crate::accounts::AccountId;

/// One durable fact.
#[derive(Debug, Clone)]
pub enum Record {
    AccountCreated {
        id: AccountId,
        name: String,
        key: PublicKey,
    },
    AccountRemoved {
        id: AccountId,
    },
    ItemOffered {
        item: u64,
        seller: AccountId,
        description: String,
        min: Cents,
        ends_at: u64,
    },
    BidAccepted {
        item: u64,
        bidder: AccountId,
        amount: Cents,
        bid_id: Option<String>,
        ends_at: u64,
    },
    ItemClosed {
        item: u64,
        winner: Option<AccountId>,
        price: Option<Cents>,
    },
    NoticeQueued {
        notice: u64,
        account: AccountId,
    },
    NoticeAcked {
        notice: u64,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("storage failed: {0}")]
pub struct StorageError(pub String);

pub type Commit = Pin<Box<dyn Future<Output = Result<(), StorageError>> + Send + 'static>>;

pub trait Storage: Send + Sync + 'static {
    /// Makes `records` durable, all or none; the future resolves once they are.
    fn commit(&self, records: Vec<Record>) -> Commit;
}

/// Keeps nothing beyond the process: state lives in the registry and item tasks, so every
/// commit succeeds at once.
#[derive(Debug, Default)]
pub struct MemoryStorage;

impl Storage for MemoryStorage {
    fn commit(&self, _records: Vec<Record>) -> Commit {
        Box::pin(std::future::ready(Ok(())))
    }
}
