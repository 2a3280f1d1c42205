//! What the registry task receives from the other tasks (a types-only file, so a sender imports
//! the message, never the registry): an item's close and a subscribed item's durable changes.
//! (The settlement desk's notices arrive as plain `NoticeRecord`s.)

use auction_protocol::Cents;
use std::sync::Arc;

use crate::accounts::{AccountHandle, AccountId};
use crate::store::NoticeRecord;

/// Sent to the registry when an auction has ended and its result and notices are durable.
#[derive(Debug)]
pub struct ItemClosed {
    pub item: u64,
    pub seller: Arc<AccountHandle>,
    pub notices: Vec<NoticeRecord>,
    /// Winner and price, when sold.
    pub result: Option<(String, Cents)>,
}

/// A durable change of an item that has subscribers: a new highest bid (BID-UPDATE) or a
/// lowered minimum (PRICE-ADJUSTMENT).
#[derive(Debug, Clone)]
pub struct ItemUpdate {
    pub item: u64,
    pub change: Change,
}

#[derive(Debug, Clone)]
pub enum Change {
    Highest {
        amount: Cents,
        bidder: String,
        ends_at: u64,
    },
    Min {
        min: Cents,
        ends_at: u64,
    },
    /// Not for subscribers: a bidder to tell reliably over UDP (`registry/alerts.rs`).
    Tell(Alert),
    /// Not for subscribers: a lot of a group closing in turn was extended (soft close) to
    /// `ends_at`; the later lots move with it (`registry/lots.rs`).
    Extended {
        ends_at: u64,
    },
}

/// What an item tells a bidder who is not connected to its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// `account` led and was outbid: `amount` by `bidder` leads now.
    Outbid {
        account: AccountId,
        amount: Cents,
        bidder: String,
        next_min: Cents,
        ends_at: u64,
    },
    /// `account` leads with `amount`, and the item ends at `ends_at`, soon.
    EndingSoon {
        account: AccountId,
        amount: Cents,
        ends_at: u64,
    },
}
