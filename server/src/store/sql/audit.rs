//! The audit log of one item (`auction-server audit ITEM`, rendered by `audit.rs`): its offer,
//! every bid the database holds for it (accepted ones, and the rejected ones earlier versions
//! stored), every operator action, and its result, in the order they happened. Read from the
//! same tables on both backends, which keep bids and operator actions append-only (triggers
//! refuse an UPDATE or DELETE): a removed bid stays, and the action that removed it says so.
//!
//! The order is the commit order, not the clock: bids by their row number, and each action
//! right after the last bid of the item stored before it (`after_bid`), since one
//! millisecond can hold a bid and an action either way round.

use anyhow::{bail, Result};
use auction_protocol::Cents;
use serde::Serialize;

use super::{collect, params, Cols, Query, RowExt};

/// An item's audit log.
#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    pub item: u64,
    pub description: String,
    pub seller: String,
    /// The events in the order they happened: `offered` first, `closed` last once closed.
    pub events: Vec<Event>,
}

/// One entry of the log. Proxy maximums are shown: the log is the operator's, read from the
/// database; nothing bidders see carries them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    Offered {
        at: u64,
        min: Cents,
        reserve: Option<Cents>,
        buy_now: Option<Cents>,
        /// The end the auction has set by now: the offer's, moved by soft-close extensions
        /// (each bid's `ends_at` shows a move) and by its group; without a restart's grace.
        ends_at: u64,
    },
    Bid {
        at: u64,
        /// Its number (row), what `remove-bid` names.
        bid: u64,
        bidder: String,
        /// The amount as stored: a proxy bid's price, or its maximum when outbid at once.
        amount: Cents,
        max: Option<Cents>,
        accepted: bool,
        /// Why it was rejected (stored only by earlier versions).
        reason: Option<String>,
        /// The client's id for it.
        bid_id: Option<String>,
        /// The end after it (accepted bids).
        ends_at: Option<u64>,
    },
    /// `cancel-item` or `remove-bid`.
    Operator {
        at: u64,
        action: String,
        /// The bid removed.
        bid: Option<u64>,
        operator: String,
        note: String,
    },
    Closed {
        at: u64,
        winner: Option<String>,
        price: Option<Cents>,
    },
}

/// Reads item `item`'s audit log (inside the caller's read transaction).
pub fn read(q: &mut dyn Query, item: u64) -> Result<Audit> {
    let mut cols = Cols::new([
        "description",
        "seller",
        "offered_at",
        "min_cents",
        "reserve_cents",
        "buy_now_cents",
        "planned_ends_at",
        "closed_at",
        "winner",
        "price_cents",
    ]);
    let found = collect(
        q,
        "SELECT i.description, s.name AS seller, i.offered_at, i.min_cents, i.reserve_cents,
                i.buy_now_cents, coalesce(i.planned_ends_at, i.ends_at) AS planned_ends_at,
                i.closed_at, w.name AS winner, i.price_cents
         FROM items i JOIN accounts s ON s.id = i.seller
         LEFT JOIN accounts w ON w.id = i.winner
         WHERE i.id = $1",
        params![item],
        |r| {
            let [description, seller, offered_at, min, reserve, buy_now, ends_at, closed_at, winner, price] =
                cols.of(r)?;
            let offered = Event::Offered {
                at: r.u64(offered_at)?,
                min: Cents(r.u64(min)?),
                reserve: r.opt_u64(reserve)?.map(Cents),
                buy_now: r.opt_u64(buy_now)?.map(Cents),
                ends_at: r.u64(ends_at)?,
            };
            let closed = match r.opt_u64(closed_at)? {
                Some(at) => Some(Event::Closed {
                    at,
                    winner: r.text(winner)?,
                    price: r.opt_u64(price)?.map(Cents),
                }),
                None => None,
            };
            Ok((r.string(description)?, r.string(seller)?, offered, closed))
        },
    )?;
    let Some((description, seller, offered, closed)) = found.into_iter().next() else {
        bail!("there is no item {item} in this database");
    };
    let mut cols = Cols::new([
        "id",
        "at",
        "name",
        "amount_cents",
        "max_cents",
        "accepted",
        "reason",
        "bid_id",
        "ends_at",
    ]);
    let bids = collect(
        q,
        "SELECT b.id, b.at, a.name, b.amount_cents, b.max_cents, b.accepted, b.reason, b.bid_id,
                b.ends_at
         FROM bids b JOIN accounts a ON a.id = b.bidder
         WHERE b.item = $1
         ORDER BY b.id",
        params![item],
        |r| {
            let [id, at, name, amount, max, accepted, reason, bid_id, ends_at] = cols.of(r)?;
            let bid = r.u64(id)?;
            Ok((
                (bid, 0, 0),
                Event::Bid {
                    at: r.u64(at)?,
                    bid,
                    bidder: r.string(name)?,
                    amount: Cents(r.u64(amount)?),
                    max: r.opt_u64(max)?.map(Cents),
                    accepted: r.boolean(accepted)?,
                    reason: r.text(reason)?,
                    bid_id: r.text(bid_id)?,
                    ends_at: r.opt_u64(ends_at)?,
                },
            ))
        },
    )?;
    let mut cols = Cols::new(["id", "after_bid", "at", "kind", "bid", "name", "note"]);
    let actions = collect(
        q,
        "SELECT o.id, o.after_bid, o.at, o.kind, o.bid, a.name, o.note
         FROM operator_actions o JOIN accounts a ON a.id = o.operator
         WHERE o.item = $1
         ORDER BY o.id",
        params![item],
        |r| {
            let [id, after_bid, at, kind, bid, name, note] = cols.of(r)?;
            Ok((
                (r.u64(after_bid)?, 1, r.u64(id)?),
                Event::Operator {
                    at: r.u64(at)?,
                    action: r.string(kind)?,
                    bid: r.opt_u64(bid)?,
                    operator: r.string(name)?,
                    note: r.string(note)?,
                },
            ))
        },
    )?;
    let mut middle: Vec<((u64, u8, u64), Event)> = bids.into_iter().chain(actions).collect();
    middle.sort_by_key(|(order, _)| *order);
    let mut events = vec![offered];
    events.extend(middle.into_iter().map(|(_, e)| e));
    events.extend(closed);
    Ok(Audit {
        item,
        description,
        seller,
        events,
    })
}
