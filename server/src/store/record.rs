//! What tasks hand to storage: one [`Record`] per fact the server must not forget. Each task
//! builds the records of the state it owns (the registry: accounts, offers, subscriptions,
//! notices, negotiations; an item task: its bids, its close, its connection log; the settlement
//! desk: settlements) and appends them; whatever it says about them waits in its `Outbox` until
//! storage reports them durable.
//!
//! A record says what happened with every value already decided by the task that appends it:
//! a backend stores it as given and applies no rule of its own. Facts that belong together
//! (an answer and the request it settles) are appended in one call, so they are committed in
//! one transaction.

use auction_protocol::{Cents, PublicKey};
use std::net::SocketAddr;

use crate::accounts::AccountId;
use crate::rules::auction::{Outcome, Terms};
use crate::rules::settlement::Settlement;

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
    /// Announcements for the account go to each of `notify` from now on: its devices, the
    /// least recently heard from first (stored as one space-separated column).
    AccountAttached {
        id: AccountId,
        notify: Vec<SocketAddr>,
    },
    /// The account was deregistered; its notices not yet acknowledged are dropped with it
    /// (stored as acknowledged at `at`: no one is left to deliver them to).
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
        /// When its seller is to be offered a lower minimum if it has had no bid by then
        /// (Unix ms; see `rules::auction::negotiate_at`).
        negotiate_at: u64,
        /// The reserve and buy-it-now prices, if the seller set them.
        terms: Terms,
    },
    /// An open item came back after a restart: new end (grace period) and channel port. (On
    /// PostgreSQL: the node appending it runs the item now, under its epoch, and its channel is
    /// open.)
    ItemResumed {
        item: u64,
        ends_at: u64,
        port: u16,
    },
    /// An earlier lot of the item's group was extended (soft close): the item ends at
    /// `ends_at` now, as if a bid of its own had moved it.
    EndMoved {
        item: u64,
        ends_at: u64,
    },
    /// Several nodes (PostgreSQL only; SQLite stores nothing for it): the leader gave the item
    /// to `node`, then at `epoch`, to run. Appended with its offer, or when its owner was fenced.
    ItemAssigned {
        item: u64,
        node: String,
        epoch: u64,
    },
    /// An accepted bid (with its id, if it carried one, so a resent id gets its first answer
    /// even after a restart). The server no longer appends rejected bids (a rejection changes
    /// nothing; `rules/rejected_ids.rs`); the writer still takes one, as earlier versions
    /// stored them, so tests can make such a database.
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
    /// leave a closed item whose winner is never told. (The item's unanswered NEGOTIATE-REQ, if
    /// any, no longer matters: the closing item appends a [`Record::NoticeAcked`] with it.)
    ItemClosed {
        item: u64,
        winner: Option<(AccountId, Cents)>,
        notices: Vec<NoticeRecord>,
        at: u64,
    },
    /// The operator removed accepted bid number `bid` (its row) from an open item, saying
    /// why; `lead` is the item's lead without it (the remaining bids judged again in order),
    /// `None` when no bid is left. Kept in the append-only audit log.
    BidRemoved {
        item: u64,
        bid: u64,
        operator: AccountId,
        note: String,
        lead: Option<LeadRecord>,
        at: u64,
    },
    /// The operator cancelled an open item, saying why. Appended with the item's
    /// [`Record::ItemClosed`] (no winner), so the two commit together; kept in the audit log.
    ItemCancelled {
        item: u64,
        operator: AccountId,
        note: String,
        at: u64,
    },
    /// A reliable notice on its own (OUTBID, ENDING-SOON), kept until its recipient
    /// acknowledges it.
    Notice {
        notice: NoticeRecord,
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
    /// The seller answered: the new minimum (accepted) or `None` (refused). Whoever appends it
    /// appends the NEGOTIATE-REQ's [`Record::NoticeAcked`] with it: the answer settles the
    /// request.
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

impl Record {
    /// Item `item`'s NEGOTIATE-REQ no longer needs delivering: the seller answered, or the
    /// item closed. (Acknowledging a notice that does not exist, or is acknowledged already,
    /// changes nothing.)
    pub fn negotiate_req_acked(item: u64, at: u64) -> Record {
        Record::NoticeAcked {
            notice: NoticeKind::NegotiateReq.id(item),
            at,
        }
    }
}

/// An item's lead as stored: leader, price, the leader's private proxy maximum.
pub type LeadRecord = (AccountId, Cents, Option<Cents>);

/// A reliable notice (WIN, SOLD, NOT-SOLD, NEGOTIATE-REQ, or a settlement notice), kept until its
/// recipient acknowledges it.
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
    /// As stored: `win`, `sold`, `not-sold`, `negotiate-req`.
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

/// The first id of the registry's own notices (OUTBID, ENDING-SOON), numbered in order up to
/// [`SETTLEMENT_NOTICES`]: above every item * 4 + kind (items stay below 2^49).
pub const REGISTRY_NOTICES: u64 = 1 << 51;
