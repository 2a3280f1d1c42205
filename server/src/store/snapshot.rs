//! What storage gives back at start: a [`Snapshot`] of everything committed, read once when the
//! database is opened, before any task runs. The registry, the item tasks it restarts and the
//! settlement desk each take their part of it; nothing here is shared or written after that.

use auction_protocol::{Cents, PublicKey};
use std::net::SocketAddr;

use crate::accounts::AccountId;
use crate::rules::auction::Outcome;
use crate::rules::settlement::{Sale, Settlement};

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
    /// Sold items with no settlement stored yet (the server stopped between the close and
    /// the settlement's first record): their settlements start at this start.
    pub unsettled: Vec<Sale>,
    /// The next settlement notice id.
    /// The next id of the registry's own notices (OUTBID, ENDING-SOON): from
    /// [`crate::store::REGISTRY_NOTICES`].
    pub next_registry_notice: u64,
    pub next_notice: u64,
    /// The key cookies derive from, when the nodes of a cluster share one (so a client's
    /// cookie holds on a new leader); `None`: a random one per run.
    pub cookie_secret: Option<[u8; 32]>,
}

#[derive(Debug, Clone)]
pub struct StoredAccount {
    pub id: AccountId,
    pub name: String,
    pub key: PublicKey,
    /// Its devices, the least recently heard from first.
    pub notify: Vec<SocketAddr>,
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
    /// When it was offered (Unix ms).
    pub offered_at: u64,
    pub ends_at: u64,
    /// The end the auction itself set (its offer, or a bid that extended it), without the
    /// recovery grace a restart may have added to `ends_at`.
    pub planned_ends_at: u64,
    /// Accepted bids so far and the extensions among them (what the board shows).
    pub counts: crate::web::BidCounts,
    pub port: u16,
    /// The leading bid: bidder, bidder's name, price, the bidder's proxy maximum.
    pub lead: Option<(AccountId, String, Cents, Option<Cents>)>,
    /// Closed items only: when it closed (Unix ms).
    pub closed_at: Option<u64>,
    /// Closed items only: whether its result names a winner (not when the operator
    /// cancelled it, whatever its lead).
    pub sold: bool,
    /// Closed items only: the operator cancelled it, with this note.
    pub cancelled: Option<String>,
    /// For open items: the first answer to every bid id, to answer resends.
    pub bid_ids: Vec<(AccountId, String, Outcome)>,
    /// The `--catalog` entry it was offered for.
    pub catalog_id: Option<String>,
    pub negotiation: Negotiation,
    /// The reserve and buy-it-now prices.
    pub terms: crate::rules::auction::Terms,
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
