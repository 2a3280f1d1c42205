//! The registration plane: one JSON object per UDP datagram.
//!
//! Requests carry `v`, `type`, `req` and, once the client has one, `cookie`. Requests that act
//! for an account (all but `list` and `status`) are wrapped in the signed layout of
//! [`crate::sign`]. Answers echo `req`; announcements (`new-item`, `bid-update`,
//! `price-adjustment`, `item-closed`) and notices (`win`, `sold`, `not-sold`, `negotiate-req`)
//! carry none.
//!
//! One piece at ~750 lines: every message of the plane is one enum pair (requests, answers),
//! and the decoder, the packing of `items` into datagrams and their round-trip tests need all
//! of it; 180 lines are tests.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::limits::{MAX_DATAGRAM, MAX_REQ};
use crate::{Cents, ItemView, PublicKey, Reason, VERSION};

/// A client request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    /// Chosen by the client. Echoed in the answer; a repeat is answered from the server's cache.
    pub req: u64,
    /// The address-validation cookie from the server's last `cookie` answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    #[serde(flatten)]
    pub body: RequestBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum RequestBody {
    /// Create an account. Signed with the key it registers (proof of possession).
    Register { name: String, key: PublicKey },
    /// Delete the account. Signed.
    Deregister { account: String },
    /// Put an item up for auction. Signed.
    Offer {
        account: String,
        description: String,
        min: Cents,
        /// Seconds; absent means the default (300).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration: Option<u64>,
        /// The reserve price: the lowest the seller accepts, never shown to bidders (they see
        /// whether it is met). At least `min`. Absent: no reserve.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reserve: Option<Cents>,
        /// The buy-it-now price: a bidder may take the item at once at this price until the
        /// first bid (or, with a reserve, until the reserve is met). At least `min` and the
        /// reserve. Absent: none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        buy_now: Option<Cents>,
    },
    /// The open items. Anyone.
    List,
    /// One item, open or closed. Anyone.
    Status { item: u64 },
    /// An item's latest accepted bids, open or closed. Anyone.
    History { item: u64 },
    /// Send this account's announcements to the address this datagram came from too (a
    /// device: a `watch`, a shell, another machine). Signed. `mode` (default `login`) says
    /// when: see [`AttachMode`]. An account has a few devices at once (the server's
    /// `--devices`); one more evicts the one heard from least recently, which is told so
    /// ([`ServerBody::Evicted`]).
    Attach {
        account: String,
        #[serde(default, skip_serializing_if = "AttachMode::is_login")]
        mode: AttachMode,
    },
    /// Stop sending this account's announcements to the address this datagram came from (a
    /// `watch` or shell that ends). Signed.
    Detach { account: String },
    /// The notice `notice` (a WIN, SOLD or NOT-SOLD) arrived. Signed.
    Ack { account: String, notice: u64 },
    /// Send BID-UPDATE and ITEM-CLOSED of `item` to this account, without joining its channel.
    /// Signed.
    Subscribe { account: String, item: u64 },
    /// Stop them. Signed.
    Unsubscribe { account: String, item: u64 },
    /// The current state of every item this account is subscribed to, answered like `list`
    /// (after a gap in announcement numbers). Signed.
    Subscriptions { account: String },
    /// The seller's answer to NEGOTIATE-REQ: `accept` with a new, lower minimum `min`, or
    /// `refuse`. Signed.
    Negotiate {
        account: String,
        item: u64,
        answer: NegotiateAnswer,
        /// The new minimum; required with `accept`, absent with `refuse`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<Cents>,
    },
    /// The operator (the account whose key the server was given with `--operator-key`) ends
    /// an open item at once, unsold, saying why in `note` (shown in its history, to its
    /// bidders and to its seller). Signed.
    CancelItem {
        account: String,
        item: u64,
        note: String,
    },
    /// The operator removes an accepted bid (`bid`: its number, as `history` shows it) from an
    /// open item, saying why in `note`: the auction falls back to the bids that remain, proxy
    /// maximums answering each other again. Signed.
    RemoveBid {
        account: String,
        item: u64,
        bid: u64,
        note: String,
    },
}

/// How a seller answers NEGOTIATE-REQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NegotiateAnswer {
    Accept,
    Refuse,
}

impl RequestBody {
    /// The account the request acts for, which must have signed it. `None` for requests anyone
    /// may send unsigned.
    pub fn account(&self) -> Option<&str> {
        match self {
            RequestBody::Register { name, .. } => Some(name),
            RequestBody::Deregister { account }
            | RequestBody::Offer { account, .. }
            | RequestBody::Attach { account, .. }
            | RequestBody::Detach { account }
            | RequestBody::Ack { account, .. }
            | RequestBody::Subscribe { account, .. }
            | RequestBody::Unsubscribe { account, .. }
            | RequestBody::Subscriptions { account }
            | RequestBody::Negotiate { account, .. }
            | RequestBody::CancelItem { account, .. }
            | RequestBody::RemoveBid { account, .. } => Some(account),
            RequestBody::List | RequestBody::Status { .. } | RequestBody::History { .. } => None,
        }
    }

    /// Whether the request must arrive signed.
    pub fn needs_signature(&self) -> bool {
        self.account().is_some()
    }
}

/// When `attach` makes the sender one of the account's devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachMode {
    /// Always (a long-running client starting: `watch`, `shell`).
    #[default]
    Login,
    /// Only if the sender is one of the devices already: a long-running client saying it is
    /// still there. Refused with `moved` once it was evicted (or detached), so a device that
    /// lost its place does not take one back from a newer device.
    Keep,
    /// Only if no device is on the sender's IP: any command run on a machine the identity was
    /// copied to makes that machine get the announcements too (a login from another machine),
    /// and changes nothing on a machine that gets them already.
    Roam,
}

impl AttachMode {
    pub fn is_login(&self) -> bool {
        *self == AttachMode::Login
    }
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerMessage {
    pub v: u32,
    #[serde(flatten)]
    pub body: ServerBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerBody {
    /// Send the request again with this cookie (address validation).
    Cookie {
        req: u64,
        cookie: String,
    },
    /// This node does not run the registration plane: send the request (the same datagram,
    /// the same `req`) to `leader`, the address of the node that does. A client follows it
    /// only to an address it was given itself; anyone can send this, so it proves nothing.
    Redirect {
        req: u64,
        leader: String,
    },
    Registered {
        req: u64,
        name: String,
    },
    RegisterDenied {
        req: u64,
        reason: Reason,
        message: String,
    },
    DeregConf {
        req: u64,
    },
    DeregDenied {
        req: u64,
        reason: Reason,
        message: String,
    },
    OfferConf {
        req: u64,
        item: u64,
        channel: String,
        ends_at: u64,
    },
    OfferDenied {
        req: u64,
        reason: Reason,
        message: String,
    },
    /// One part of the answer to `list`; `part` counts from 1 to `parts`.
    Items {
        req: u64,
        part: u32,
        parts: u32,
        items: Vec<ItemView>,
    },
    Status {
        req: u64,
        item: ItemView,
    },
    /// One part of the answer to `history`: the item's latest accepted bids (at most
    /// [`crate::limits::HISTORY_BIDS`]), oldest first across the parts; `more`: it has older
    /// ones, not shown.
    History {
        req: u64,
        item: u64,
        part: u32,
        parts: u32,
        more: bool,
        bids: Vec<HistoryBid>,
        /// The operator cancelled the item (on the first part).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cancelled: Option<Cancellation>,
    },
    /// Announcements now go to the sender's address too (unless `moved` is false for a
    /// `roam` that found a device on this IP already); `pending` notices follow.
    Attached {
        req: u64,
        /// How many notices wait for the account (they follow as announcements).
        pending: u32,
        /// The sender's address became one of the account's devices just now.
        #[serde(default)]
        moved: bool,
        /// How many devices get the account's announcements now, this one included (0 from a
        /// server that does not say).
        #[serde(default)]
        devices: u32,
        /// The last announcement number given to the account in this server run (0: none
        /// yet), and the run (`epoch`; 0 from a server that does not say): the next
        /// announcement is `seq + 1`, so a client starting now sees a gap from here on.
        #[serde(default)]
        seq: u64,
        #[serde(default)]
        epoch: u64,
    },
    Acked {
        req: u64,
        notice: u64,
    },
    /// The sender's address no longer gets the account's announcements.
    Detached {
        req: u64,
    },
    /// Unsolicited, to a device of `account` that no longer gets its announcements: newer
    /// devices took its place (`reason` `moved`), or the account was deregistered
    /// (`not-registered`). Not numbered and not retransmitted (a `keep` attach is refused from
    /// then on with the same reason, so a device that missed this learns it there).
    Evicted {
        account: String,
        reason: Reason,
        message: String,
    },
    /// Subscribed; `item` is its state now. Updates follow as announcements.
    Subscribed {
        req: u64,
        item: ItemView,
    },
    SubscriptionDenied {
        req: u64,
        reason: Reason,
        message: String,
    },
    Unsubscribed {
        req: u64,
        item: u64,
    },
    /// The answer to `negotiate` was taken: `min` is the new minimum (accepted), or null
    /// (refused).
    Negotiated {
        req: u64,
        item: u64,
        min: Option<Cents>,
    },
    NegotiateDenied {
        req: u64,
        reason: Reason,
        message: String,
    },
    /// The operator's `cancel-item` is done: the item is closed, unsold.
    ItemCancelled {
        req: u64,
        item: u64,
    },
    /// The operator's `remove-bid` is done: the item's highest bid and its bidder now (both
    /// null when no bid is left).
    BidRemoved {
        req: u64,
        item: u64,
        bid: u64,
        highest: Option<Cents>,
        bidder: Option<String>,
    },
    /// `cancel-item` or `remove-bid` refused.
    OperatorDenied {
        req: u64,
        reason: Reason,
        message: String,
    },
    /// A request that could not be taken at all (malformed, bad signature, unknown item...).
    Error {
        req: Option<u64>,
        reason: Reason,
        message: String,
    },
    /// `seq` and `epoch` (on every best-effort announcement): see [`ServerBody::sequence`].
    NewItem {
        #[serde(default)]
        seq: u64,
        #[serde(default)]
        epoch: u64,
        item: ItemView,
    },
    /// A subscribed item has a new highest bid.
    BidUpdate {
        seq: u64,
        epoch: u64,
        item: u64,
        highest: Cents,
        bidder: String,
        ends_at: u64,
    },
    /// A subscribed item has closed: sold (`winner`, `price`) or not (both null). The
    /// subscription ends with it.
    ItemClosed {
        seq: u64,
        epoch: u64,
        item: u64,
        winner: Option<String>,
        price: Option<Cents>,
    },
    Win {
        notice: u64,
        item: u64,
        description: String,
        amount: Cents,
        seller: String,
    },
    Sold {
        notice: u64,
        item: u64,
        description: String,
        amount: Cents,
        winner: String,
    },
    NotSold {
        notice: u64,
        item: u64,
        description: String,
        /// The operator cancelled the item (its note is in the item's `history`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cancelled: bool,
    },
    /// To a bidder who led the item and was outbid while not connected to its channel:
    /// `amount` by `bidder` is the highest bid now, `next_min` the least that beats it.
    Outbid {
        notice: u64,
        item: u64,
        description: String,
        amount: Cents,
        bidder: String,
        next_min: Cents,
        ends_at: u64,
    },
    /// To the bidder leading the item, not connected to its channel, when it enters its last
    /// moments (the server's `--ending-soon`): `amount` is the leading bid.
    EndingSoon {
        notice: u64,
        item: u64,
        description: String,
        amount: Cents,
        ends_at: u64,
    },
    /// To the seller: the item has had no bid by half its time. Answer with `negotiate`.
    NegotiateReq {
        notice: u64,
        item: u64,
        description: String,
        /// The minimum now.
        min: Cents,
        ends_at: u64,
        /// Seconds left when the request was made (`ends_at` is the exact end).
        time_left: u64,
    },
    /// A sale is settled: both sides have given their details. Read them with `settle`.
    Settled {
        notice: u64,
        item: u64,
        description: String,
    },
    /// A sale's settlement was cancelled or an offer lapsed: `why` is `buyer-timeout` (the
    /// buyer gave no shipping details in time), `offer-lapsed` (a second-chance offer was not
    /// answered in time) or `offer-declined`.
    SettleCancelled {
        notice: u64,
        item: u64,
        description: String,
        why: String,
    },
    /// To a bidder: the seller offers the item at `amount` (its highest bid) after the sale
    /// to the winner was cancelled. Answer with `settle` by `deadline`.
    SecondChance {
        notice: u64,
        item: u64,
        description: String,
        amount: Cents,
        seller: String,
        deadline: u64,
    },
    /// A subscribed item's seller lowered its minimum (an accepted negotiation).
    PriceAdjustment {
        seq: u64,
        epoch: u64,
        item: u64,
        min: Cents,
        ends_at: u64,
    },
}

impl ServerBody {
    /// The request number this message answers, if it answers one.
    pub fn req(&self) -> Option<u64> {
        use ServerBody::*;
        match self {
            Cookie { req, .. }
            | Redirect { req, .. }
            | Registered { req, .. }
            | RegisterDenied { req, .. }
            | DeregConf { req }
            | DeregDenied { req, .. }
            | OfferConf { req, .. }
            | OfferDenied { req, .. }
            | Items { req, .. }
            | History { req, .. }
            | Status { req, .. }
            | Attached { req, .. }
            | Acked { req, .. }
            | Detached { req }
            | Subscribed { req, .. }
            | SubscriptionDenied { req, .. }
            | Unsubscribed { req, .. }
            | Negotiated { req, .. }
            | NegotiateDenied { req, .. }
            | ItemCancelled { req, .. }
            | BidRemoved { req, .. }
            | OperatorDenied { req, .. } => Some(*req),
            Error { req, .. } => *req,
            NewItem { .. }
            | BidUpdate { .. }
            | ItemClosed { .. }
            | PriceAdjustment { .. }
            | Win { .. }
            | Sold { .. }
            | NotSold { .. }
            | Outbid { .. }
            | EndingSoon { .. }
            | NegotiateReq { .. }
            | Settled { .. }
            | SettleCancelled { .. }
            | SecondChance { .. }
            | Evicted { .. } => None,
        }
    }

    /// `(epoch, seq)` of a best-effort announcement. `seq` counts the announcements sent to one
    /// account: 1, 2, 3... without gaps, so a jump shows the recipient that it missed some.
    /// `epoch` identifies the server run (it changes at every start, and `seq` starts again at
    /// 1). A gap or a new epoch means: ask for the current state (`subscriptions`).
    pub fn sequence(&self) -> Option<(u64, u64)> {
        match self {
            ServerBody::NewItem { seq, epoch, .. }
            | ServerBody::BidUpdate { seq, epoch, .. }
            | ServerBody::ItemClosed { seq, epoch, .. }
            | ServerBody::PriceAdjustment { seq, epoch, .. } => Some((*epoch, *seq)),
            _ => None,
        }
    }

    /// The notice id of a reliable announcement, which the client must acknowledge.
    pub fn notice(&self) -> Option<u64> {
        match self {
            ServerBody::Win { notice, .. }
            | ServerBody::Sold { notice, .. }
            | ServerBody::NotSold { notice, .. }
            | ServerBody::Outbid { notice, .. }
            | ServerBody::EndingSoon { notice, .. }
            | ServerBody::NegotiateReq { notice, .. }
            | ServerBody::Settled { notice, .. }
            | ServerBody::SettleCancelled { notice, .. }
            | ServerBody::SecondChance { notice, .. } => Some(*notice),
            _ => None,
        }
    }
}

/// Where an announcement numbered `next` = (epoch, seq) stands after `last`, the last one seen
/// (see [`ServerBody::sequence`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// The next one (or the first seen): nothing was missed.
    InOrder,
    /// At or below the last one in the same run: it arrived late and is older than what the
    /// recipient has. Drop it.
    Late,
    /// Some were missed: `Some(n)` numbers skipped in this run, `None` the server restarted.
    Missed(Option<u64>),
}

pub fn check_sequence(last: Option<(u64, u64)>, next: (u64, u64)) -> SeqCheck {
    let (epoch, seq) = next;
    match last {
        None => SeqCheck::InOrder,
        Some((e, _)) if e != epoch => SeqCheck::Missed(None),
        Some((_, s)) if seq <= s => SeqCheck::Late,
        Some((_, s)) if seq == s + 1 => SeqCheck::InOrder,
        Some((_, s)) => SeqCheck::Missed(Some(seq - s - 1)),
    }
}

/// Why a datagram could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct DecodeError {
    pub reason: Reason,
    /// The request number, when it could be read, so the refusal can echo it.
    pub req: Option<u64>,
    pub detail: String,
}

/// The signed part of a datagram, as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPart<'a> {
    /// The exact bytes of the `signed` object.
    pub body: &'a [u8],
    /// The `sig` field: 128 hex digits, unchecked.
    pub sig: &'a str,
}

/// A decoded request and, when it came signed, what the signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming<'a> {
    pub request: Request,
    pub signed: Option<SignedPart<'a>>,
}

#[derive(Deserialize)]
struct Outer<'a> {
    #[serde(borrow, default)]
    signed: Option<&'a RawValue>,
    #[serde(default)]
    sig: Option<&'a str>,
}

#[derive(Deserialize)]
struct Header {
    v: Option<u32>,
    req: Option<u64>,
}

/// Decodes one datagram from a client. Never panics; every failure names its reason.
pub fn decode_request(datagram: &[u8]) -> Result<Incoming<'_>, DecodeError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(DecodeError {
            reason: Reason::TooLarge,
            req: None,
            detail: format!("datagrams are limited to {MAX_DATAGRAM} bytes"),
        });
    }
    let malformed = |req, detail: String| DecodeError {
        reason: Reason::Malformed,
        req,
        detail,
    };
    let outer: Outer<'_> = serde_json::from_slice(datagram)
        .map_err(|e| malformed(None, format!("not a JSON object: {e}")))?;
    let (body, signed) = match (outer.signed, outer.sig) {
        (Some(raw), Some(sig)) => {
            let body = raw.get().as_bytes();
            (body, Some(SignedPart { body, sig }))
        }
        (Some(_), None) => return Err(malformed(None, "\"signed\" without \"sig\"".into())),
        (None, _) => (datagram, None),
    };
    let header: Header = serde_json::from_slice(body)
        .map_err(|e| malformed(None, format!("not a request object: {e}")))?;
    match header.v {
        Some(VERSION) => {}
        Some(other) => {
            return Err(DecodeError {
                reason: Reason::UnsupportedVersion,
                req: header.req,
                detail: format!("this server speaks protocol version {VERSION}, not {other}"),
            })
        }
        None => return Err(malformed(header.req, "missing \"v\"".into())),
    }
    if let Some(req) = header.req.filter(|&r| r > MAX_REQ) {
        return Err(malformed(
            None,
            format!("request number {req} is larger than {MAX_REQ} (2^53 - 1)"),
        ));
    }
    let request: Request = serde_json::from_slice(body)
        .map_err(|e| malformed(header.req, format!("not a valid request: {e}")))?;
    Ok(Incoming { request, signed })
}

/// Encodes a server message. The caller guarantees the size bound by validating what goes in
/// (see `limits`); this is checked in tests for the largest possible messages.
pub fn encode(body: ServerBody) -> Vec<u8> {
    serde_json::to_vec(&ServerMessage { v: VERSION, body }).expect("server messages serialize")
}

/// Decodes a datagram from the server (client side).
pub fn decode_server(datagram: &[u8]) -> Result<ServerMessage, DecodeError> {
    let msg: ServerMessage = serde_json::from_slice(datagram).map_err(|e| DecodeError {
        reason: Reason::Malformed,
        req: None,
        detail: format!("unreadable server datagram: {e}"),
    })?;
    if msg.v != VERSION {
        return Err(DecodeError {
            reason: Reason::UnsupportedVersion,
            req: msg.body.req(),
            detail: format!("server speaks protocol version {}", msg.v),
        });
    }
    Ok(msg)
}

/// Encodes a request body (the bytes a client signs).
pub fn encode_request(request: &Request) -> Vec<u8> {
    serde_json::to_vec(request).expect("requests serialize")
}

/// One accepted bid as `history` shows it: when, who, the amount it was placed at (`None`
/// for a proxy bid another proxy outbid at once: it was placed at its maximum, which stays
/// private), the end after it, and whether it moved the end later (soft close).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryBid {
    pub at: u64,
    pub bidder: String,
    pub amount: Option<Cents>,
    pub ends_at: u64,
    pub extended: bool,
    /// The bid's number (what `remove-bid` names); 0 from a server that does not say.
    #[serde(default)]
    pub bid: u64,
    /// The operator removed it: why, and when (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<Cancellation>,
}

/// An operator's action as `history` shows it: when (Unix ms) and the operator's note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    pub at: u64,
    pub note: String,
}

/// Splits the answer to `history` into datagrams of at most [`MAX_DATAGRAM`] bytes, in bid
/// order. Always at least one datagram.
pub fn pack_history(
    req: u64,
    item: u64,
    more: bool,
    bids: &[HistoryBid],
    cancelled: Option<&Cancellation>,
) -> Vec<Vec<u8>> {
    let make = |part: u32, parts: u32, bids: Vec<HistoryBid>| {
        encode(ServerBody::History {
            req,
            item,
            part,
            parts,
            more,
            bids,
            cancelled: cancelled.filter(|_| part == 1).cloned(),
        })
    };
    pack(bids, make)
}

/// Splits the answer to `list` into datagrams of at most [`MAX_DATAGRAM`] bytes, in item order.
/// Always at least one datagram (an empty list is one datagram with no items).
pub fn pack_items(req: u64, items: &[ItemView]) -> Vec<Vec<u8>> {
    let make = |part: u32, parts: u32, items: Vec<ItemView>| {
        encode(ServerBody::Items {
            req,
            part,
            parts,
            items,
        })
    };
    pack(items, make)
}

/// Groups `all` into as few datagrams as fit, each made by `make(part, parts, group)`.
fn pack<T: Serialize + Clone>(
    all: &[T],
    make: impl Fn(u32, u32, Vec<T>) -> Vec<u8>,
) -> Vec<Vec<u8>> {
    // Envelope size with the widest possible part numbers, so the real one is never larger;
    // the first part's apart, as it may carry more (`history`'s cancellation).
    let envelope = make(u32::MAX, u32::MAX, vec![]).len();
    let first = envelope.max(make(1, u32::MAX, vec![]).len());
    let mut groups: Vec<Vec<T>> = vec![vec![]];
    let mut used = first;
    for one in all {
        let size = serde_json::to_vec(one)
            .map(|v| v.len())
            .unwrap_or(MAX_DATAGRAM)
            + 1;
        let group = groups.last_mut().expect("one group at least");
        if !group.is_empty() && used + size > MAX_DATAGRAM {
            groups.push(vec![one.clone()]);
            used = envelope + size;
        } else {
            group.push(one.clone());
            used += size;
        }
    }
    let parts = groups.len() as u32;
    groups
        .into_iter()
        .enumerate()
        .map(|(i, group)| make(i as u32 + 1, parts, group))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{MAX_DESCRIPTION_CHARS, MAX_NAME_LEN};
    use crate::ItemState;

    /// The largest item a server can describe: 2^53 item numbers, 4-byte characters, longest
    /// names and amounts, an end time 250 years out. Open items have a channel and no result;
    /// closed ones the reverse, and the settlement desk's address. The longest open item has a
    /// bid below its reserve and a buy-it-now price: `min` <= `highest` < reserve <=
    /// `buy_now` <= the largest amount, so the bid has one digit less than the price.
    fn worst_item(n: u64) -> ItemView {
        ItemView {
            item: (1 << 53) - n,
            // 4-byte characters: the longest encoding a valid description can have.
            description: "𝄞".repeat(MAX_DESCRIPTION_CHARS),
            seller: "s".repeat(MAX_NAME_LEN),
            min: Cents(crate::limits::MAX_AMOUNT_CENTS - 1),
            highest: Some(Cents(crate::limits::MAX_AMOUNT_CENTS - 1)),
            bidder: Some("b".repeat(MAX_NAME_LEN)),
            ends_at: 9_999_999_999_999,
            state: ItemState::Open,
            channel: Some("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535".into()),
            winner: None,
            price: None,
            settle_port: None,
            reserve_met: Some(false),
            buy_now: Some(Cents(crate::limits::MAX_AMOUNT_CENTS)),
            cancelled: false,
        }
    }

    fn worst_closed_item() -> ItemView {
        ItemView {
            min: Cents(crate::limits::MAX_AMOUNT_CENTS),
            highest: Some(Cents(crate::limits::MAX_AMOUNT_CENTS)),
            state: ItemState::Closed,
            channel: None,
            winner: Some("w".repeat(MAX_NAME_LEN)),
            price: Some(Cents(crate::limits::MAX_AMOUNT_CENTS)),
            settle_port: Some(65535),
            reserve_met: Some(true),
            buy_now: None,
            cancelled: false,
            ..worst_item(0)
        }
    }

    #[test]
    fn announcement_numbers_reveal_gaps_restarts_and_late_arrivals() {
        use SeqCheck::*;
        assert_eq!(check_sequence(None, (7, 40)), InOrder);
        assert_eq!(check_sequence(Some((7, 4)), (7, 5)), InOrder);
        assert_eq!(check_sequence(Some((7, 4)), (7, 7)), Missed(Some(2)));
        assert_eq!(check_sequence(Some((7, 4)), (7, 4)), Late);
        assert_eq!(check_sequence(Some((7, 4)), (7, 2)), Late);
        assert_eq!(check_sequence(Some((7, 4)), (9, 1)), Missed(None));
    }

    #[test]
    fn request_round_trip_and_flat_layout() {
        let r = Request {
            v: 1,
            req: 42,
            cookie: Some("ab".into()),
            body: RequestBody::Offer {
                account: "alice".into(),
                description: "lamp".into(),
                min: Cents(500),
                duration: Some(60),
                reserve: Some(Cents(900)),
                buy_now: None,
            },
        };
        let bytes = encode_request(&r);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains("\"type\":\"offer\""), "{text}");
        assert!(text.contains("\"reserve\":900"), "{text}");
        assert!(
            !text.contains("buy_now"),
            "an absent price is left out: {text}"
        );
        assert_eq!(decode_request(&bytes).unwrap().request, r);
        let list = decode_request(br#"{"v":1,"type":"list","req":3}"#).unwrap();
        assert_eq!(list.request.body, RequestBody::List);
        assert!(list.signed.is_none());
    }

    #[test]
    fn signed_layout_exposes_exact_body() {
        let raw = br#"{"signed":{"v":1, "type":"deregister","req":9,"account":"bob"},"sig":"00"}"#;
        let inc = decode_request(raw).unwrap();
        let s = inc.signed.unwrap();
        assert_eq!(
            s.body,
            br#"{"v":1, "type":"deregister","req":9,"account":"bob"}"#
        );
        assert_eq!(s.sig, "00");
        assert_eq!(inc.request.req, 9);
    }

    #[test]
    fn bad_datagrams_name_their_reason() {
        let cases: [(&[u8], Reason); 9] = [
            (b"", Reason::Malformed),
            // One above 2^53 - 1.
            (
                b"{\"v\":1,\"type\":\"list\",\"req\":9007199254740992}",
                Reason::Malformed,
            ),
            (b"\n", Reason::Malformed),
            (b"[1,2]", Reason::Malformed),
            (b"{\"v\":1,\"req\":1}", Reason::Malformed),
            (b"{\"v\":1,\"type\":\"nope\",\"req\":1}", Reason::Malformed),
            (
                b"{\"v\":2,\"type\":\"nope\",\"req\":5}",
                Reason::UnsupportedVersion,
            ),
            (b"{\"signed\":{\"v\":1}}", Reason::Malformed),
            (b"\xff\xfe", Reason::Malformed),
        ];
        for (bytes, reason) in cases {
            let err = decode_request(bytes).unwrap_err();
            assert_eq!(err.reason, reason, "{:?}", String::from_utf8_lossy(bytes));
        }
        let err = decode_request(b"{\"v\":2,\"type\":\"list\",\"req\":5}").unwrap_err();
        assert_eq!(err.req, Some(5));
        assert!(decode_request(b"{\"v\":1,\"type\":\"list\",\"req\":9007199254740991}").is_ok());
        let big = vec![b' '; MAX_DATAGRAM + 1];
        assert_eq!(decode_request(&big).unwrap_err().reason, Reason::TooLarge);
    }

    #[test]
    fn largest_messages_fit_in_a_datagram() {
        for item in [worst_item(0), worst_closed_item()] {
            let status = encode(ServerBody::Status {
                req: u64::MAX,
                item,
            });
            assert!(
                status.len() <= MAX_DATAGRAM,
                "status is {} bytes",
                status.len()
            );
        }
        // A run's `epoch` is its start in Unix ms and `seq` counts its announcements to one
        // account: both stay below 2^53 (PROTOCOL.md), like every number a JSON reader must
        // read exactly.
        let new_item = encode(ServerBody::NewItem {
            seq: (1 << 53) - 1,
            epoch: (1 << 53) - 1,
            item: worst_item(0),
        });
        assert!(
            new_item.len() <= MAX_DATAGRAM,
            "new-item is {} bytes",
            new_item.len()
        );
        let win = encode(ServerBody::Win {
            notice: u64::MAX,
            item: u64::MAX,
            description: "𝄞".repeat(MAX_DESCRIPTION_CHARS),
            amount: Cents(u64::MAX),
            seller: "s".repeat(MAX_NAME_LEN),
        });
        assert!(win.len() <= MAX_DATAGRAM);
        let outbid = encode(ServerBody::Outbid {
            notice: (1 << 53) - 1,
            item: (1 << 53) - 1,
            description: "𝄞".repeat(MAX_DESCRIPTION_CHARS),
            amount: Cents(crate::limits::MAX_AMOUNT_CENTS),
            bidder: "b".repeat(MAX_NAME_LEN),
            next_min: Cents(crate::limits::MAX_AMOUNT_CENTS),
            ends_at: 9_999_999_999_999,
        });
        assert!(
            outbid.len() <= MAX_DATAGRAM,
            "outbid is {} bytes",
            outbid.len()
        );
    }

    /// An operator's note whose JSON is as long as a note's can be.
    fn worst_note() -> Cancellation {
        Cancellation {
            at: 9_999_999_999_999,
            note: "𝄞".repeat(crate::limits::MAX_NOTE_CHARS),
        }
    }

    #[test]
    fn history_is_split_into_datagrams_that_fit_and_keep_order() {
        let bids: Vec<HistoryBid> = (0..crate::limits::HISTORY_BIDS)
            .map(|i| HistoryBid {
                at: 9_999_999_999_999 - i,
                bidder: "b".repeat(MAX_NAME_LEN),
                amount: (i % 2 == 0).then_some(Cents(crate::limits::MAX_AMOUNT_CENTS)),
                ends_at: 9_999_999_999_999,
                extended: true,
                bid: (1 << 53) - 1,
                removed: Some(worst_note()),
            })
            .collect();
        // The worst case: every bid removed with the longest note, and the item cancelled.
        let parts = pack_history(u64::MAX, (1 << 53) - 1, true, &bids, Some(&worst_note()));
        assert!(
            parts.len() > 1 && parts.len() <= 51,
            "{} parts",
            parts.len()
        );
        // Without notes (no operator action): at most 15.
        let plain: Vec<HistoryBid> = bids
            .iter()
            .cloned()
            .map(|b| HistoryBid { removed: None, ..b })
            .collect();
        let n = pack_history(1, 2, true, &plain, None).len();
        assert!(n <= 15, "{n} parts");
        let mut seen = vec![];
        for (i, p) in parts.iter().enumerate() {
            assert!(p.len() <= MAX_DATAGRAM, "part {i} is {} bytes", p.len());
            match decode_server(p).unwrap().body {
                ServerBody::History {
                    part,
                    parts: n,
                    more,
                    bids,
                    ..
                } => {
                    assert_eq!((part, n as usize, more), (i as u32 + 1, parts.len(), true));
                    seen.extend(bids);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen, bids);
        // No bids: one part, empty.
        let empty = pack_history(1, 2, false, &[], None);
        assert_eq!(empty.len(), 1);
    }

    #[test]
    fn list_is_split_into_datagrams_that_fit_and_keep_order() {
        let items: Vec<ItemView> = (0..7).map(worst_item).collect();
        let parts = pack_items(u64::MAX, &items);
        assert_eq!(parts.len(), 7, "one worst-case item per datagram");
        let mut seen = vec![];
        for (i, p) in parts.iter().enumerate() {
            assert!(p.len() <= MAX_DATAGRAM, "part {i} is {} bytes", p.len());
            match decode_server(p).unwrap().body {
                ServerBody::Items {
                    part,
                    parts: n,
                    items,
                    ..
                } => {
                    assert_eq!((part, n), (i as u32 + 1, 7));
                    seen.extend(items);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen, items);
        let small: Vec<ItemView> = (0..20)
            .map(|i| ItemView {
                description: "lamp".into(),
                seller: "al".into(),
                channel: Some("127.0.0.1:40000".into()),
                winner: None,
                price: None,
                settle_port: None,
                reserve_met: None,
                buy_now: None,
                cancelled: false,
                bidder: None,
                highest: None,
                state: ItemState::Open,
                ..worst_item(i)
            })
            .collect();
        let parts = pack_items(1, &small);
        assert!(parts.len() < 20 && parts.len() > 1, "{} parts", parts.len());
        assert!(parts.iter().all(|p| p.len() <= MAX_DATAGRAM));
        assert_eq!(pack_items(1, &[]).len(), 1);
    }
}
