//! Accounts as the bidding plane sees them: who owns which public key, and whether the account
//! still exists.
//!
//! The registry task is the only writer. The TLS client-certificate verifier reads the
//! directory from inside rustls' synchronous callback, which is why this is a short
//! `std::sync::RwLock` rather than a message to the registry: it is held only for one map
//! operation, never across `.await`, and never on the bid path (connections keep their
//! `Arc<AccountHandle>` and check its atomic `live` flag).

use auction_protocol::PublicKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// Identifies an account for its whole life; never reused, unlike names.
pub type AccountId = u64;

/// One account, shared by the registry and every connection authenticated as it.
#[derive(Debug)]
pub struct AccountHandle {
    pub id: AccountId,
    pub name: String,
    pub key: PublicKey,
    /// Cleared when the account is deregistered (or while a deregistration is being checked):
    /// bids from connections that still hold the handle are then refused.
    live: AtomicBool,
    /// The account's bid budget on channels (`Config::bid_rate`), shared by every item it bids
    /// on; `rules::ratelimit::take` spends it. A short lock: an item task holds it for one
    /// token, never across `.await`.
    pub bid_budget: Mutex<Budget>,
    /// Channel and settlement connections joined as this account, all items together
    /// (`net::budget::Admission::join` counts them against `Config::max_connections_per_account`).
    pub joined: AtomicUsize,
}

/// What is left of one of an account's budgets (bids a second, offers an hour): tokens, and
/// when they were last counted (`None` before the first use: a budget starts full).
#[derive(Debug, Default)]
pub struct Budget {
    pub tokens: f64,
    pub counted_at: Option<Instant>,
}

impl AccountHandle {
    pub fn new(id: AccountId, name: String, key: PublicKey) -> AccountHandle {
        AccountHandle {
            id,
            name,
            key,
            live: AtomicBool::new(true),
            bid_budget: Mutex::default(),
            joined: AtomicUsize::new(0),
        }
    }

    pub fn is_live(&self) -> bool {
        // SeqCst pairs with `set_live`: see the deregistration protocol in `registry/accounts.rs`.
        self.live.load(Ordering::SeqCst)
    }

    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::SeqCst)
    }
}

/// Live accounts by public key.
#[derive(Debug, Default)]
pub struct KeyDirectory {
    by_key: RwLock<HashMap<PublicKey, Arc<AccountHandle>>>,
    /// Several nodes: a node that runs items but not the registry learns of new accounts from
    /// the database, so a key it has not seen yet passes the handshake (whose signature still
    /// proves the client holds it) and is looked up after it (`net/accept.rs`).
    defers: bool,
}

impl KeyDirectory {
    /// A directory whose unknown keys are looked up after the handshake (see `defers`).
    pub fn deferring() -> KeyDirectory {
        KeyDirectory {
            defers: true,
            ..KeyDirectory::default()
        }
    }

    /// Whether unknown keys pass the handshake, to be looked up after it.
    pub fn defers(&self) -> bool {
        self.defers
    }

    pub fn insert(&self, account: Arc<AccountHandle>) {
        self.write().insert(account.key, account);
    }

    pub fn remove(&self, key: &PublicKey) {
        self.write().remove(key);
    }

    /// The live account that owns `key`, if any.
    pub fn lookup(&self, key: &PublicKey) -> Option<Arc<AccountHandle>> {
        let map = self
            .by_key
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(key).filter(|a| a.is_live()).cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<PublicKey, Arc<AccountHandle>>> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts and
        // removes), so a poisoned lock is still safe to use.
        self.by_key
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
