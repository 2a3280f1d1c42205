//! Sans-IO wire protocol of the auction server.
//!
//! Everything both ends must agree on lives here and nowhere else: message types and their JSON
//! encoding, validation rules, size limits, the byte layout that UDP signatures cover, and the
//! stateless address-validation cookie. Nothing in this crate touches a socket or reads a clock:
//! callers pass the current time in, so every rule is unit-testable.

pub mod channel;
pub mod cookie;
pub mod limits;
pub mod money;
pub mod names;
pub mod settle;
pub mod sign;
pub mod udp;

pub use money::Cents;
pub use sign::PublicKey;

/// The protocol version every message carries in its `v` field.
pub const VERSION: u32 = 1;

use serde::{Deserialize, Serialize};

/// Why a request was refused. Serialized in kebab-case (`name-taken`); clients must treat a code
/// they do not know as a generic refusal, which is what [`Reason::Other`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    // --- any request ---
    /// The datagram or line is not a JSON object of a known message type.
    Malformed,
    /// The `v` field names a protocol version this server does not speak.
    UnsupportedVersion,
    /// The datagram or line is longer than the limit.
    TooLarge,
    /// A request that must be signed carried no signature.
    SignatureRequired,
    /// The signature does not verify with the account's registered key.
    BadSignature,
    /// The request number is below the account's replay window: an old or replayed request.
    StaleRequest,
    /// The request number was already used by this account for a different request: pick
    /// another number (a retransmission must repeat the request exactly).
    RequestReused,
    /// The named account does not exist (never registered, or deregistered).
    NotRegistered,
    /// The server is shutting down or otherwise cannot take the request now; retry later.
    Unavailable,
    /// Too many datagrams from this address; the server drops them for a while. Retry later.
    RateLimited,
    // --- register ---
    NameTaken,
    InvalidName,
    KeyTaken,
    /// This address created as many accounts this hour as the server allows
    /// (`--accounts-per-hour`); try again later.
    TooManyAccounts,
    // --- deregister ---
    HasOpenItems,
    LeadsAuction,
    // --- offer ---
    TooManyOpenItems,
    InvalidDescription,
    InvalidAmount,
    InvalidDuration,
    NoChannelPort,
    /// The server has as many items open as it may (`--max-items`); offer again later.
    ServerBusy,
    // --- status, subscribe ---
    UnknownItem,
    /// The account follows as many items as the server allows.
    TooManySubscriptions,
    // --- bids ---
    TooLow,
    AuctionOver,
    OwnItem,
    ItemFull,
    /// The server is at its limit of open connections (`--max-connections`).
    ServerFull,
    /// The account holds as many channel and settlement connections as one account may
    /// (`--max-connections-per-account`).
    TooManyConnections,
    /// Nothing was received on a channel for the server's idle timeout.
    IdleTimeout,
    AccountGone,
    InvalidBidId,
    /// `buy-now` on an item that has no buy-it-now price, or no longer offers it (it had a
    /// bid, or its reserve was met).
    BuyNowUnavailable,
    // --- settlement ---
    /// The account is neither the buyer, the seller nor the bidder offered a second chance.
    NotAParty,
    /// The request does not fit where the settlement stands (the message says where).
    WrongState,
    /// A settlement field is empty, too long or holds control characters.
    InvalidInfo,
    /// A settlement field looks like a payment card number: never sent, never stored.
    CardNumber,
    /// No bidder is left to offer a second chance to.
    NoRunnerUp,
    /// The account was the buyer, or was offered a second chance, and its time to settle or
    /// to answer passed (or it declined): the item is no longer its to settle.
    TooLate,
    // --- negotiate ---
    /// The account is not the item's seller.
    NotYourItem,
    /// No negotiation request is open for the item (none was sent, or it was answered).
    NotNegotiable,
    /// The item has a bid now: its minimum no longer matters.
    HasBids,
    // --- cancel-item, remove-bid ---
    /// The account is not the server's operator (`--operator-key`), or the server has none.
    NotOperator,
    /// The item has no accepted bid of that number that is still in force.
    UnknownBid,
    /// The operator's note is empty, too long, or holds control or invisible characters.
    InvalidNote,
    /// `attach` in `keep` mode: this address is no longer one of the account's devices (newer
    /// ones took its place, or it detached).
    Moved,
    /// A code this build does not know (sent by a newer peer).
    #[serde(other)]
    Other,
}

impl Reason {
    /// The kebab-case code as it appears on the wire.
    pub fn code(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "other".into())
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.code())
    }
}

/// Whether an item still takes bids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemState {
    Open,
    Closed,
}

/// Everything public about one item: what LIST, STATUS, NEW-ITEM and the channel's STATE carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemView {
    /// Item number: positive, at most 2^53 so that every JSON parser reads it exactly.
    pub item: u64,
    pub description: String,
    pub seller: String,
    /// Smallest acceptable first bid.
    pub min: Cents,
    pub highest: Option<Cents>,
    pub bidder: Option<String>,
    /// When bidding ends (or ended), Unix time in milliseconds. Moves later on a soft-close
    /// extension.
    pub ends_at: u64,
    pub state: ItemState,
    /// `host:port` of the item's TLS channel while the item is open; null once closed.
    pub channel: Option<String>,
    /// Present once closed and sold: the winner's name. Absent while open or when unsold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// Present once closed and sold: the price paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Cents>,
    /// Present once closed and sold: the TCP port of the server's settlement desk (on the
    /// host the client sends UDP to), where buyer and seller complete the sale (see
    /// `settle`). A port, not `host:port`, so the largest closed item still fits a datagram.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_port: Option<u16>,
    /// Present only on an item with a reserve price (the seller's hidden lowest acceptable
    /// price): whether the highest bid has reached it. Below it, the item is not sold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve_met: Option<bool>,
    /// Present while the item can be bought at once at this price (`buy-now` on its channel):
    /// until its first bid, or, with a reserve, until the reserve is met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buy_now: Option<Cents>,
    /// Present (true) once the item is closed because the operator cancelled it: not sold;
    /// its `history` gives the operator's note.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_are_kebab_case_and_unknown_codes_decode_as_other() {
        assert_eq!(Reason::TooManyOpenItems.code(), "too-many-open-items");
        let r: Reason = serde_json::from_str("\"from-the-future\"").unwrap();
        assert_eq!(r, Reason::Other);
    }
}
