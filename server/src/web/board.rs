//! What the live board shows: every open item and the latest results, as the registration
//! plane already makes them public (names, prices, times; never a proxy maximum, a key, an
//! address or a settlement detail).
//!
//! Who owns it: no task. The item tasks and the registry write into it as they deliver what is
//! durable (a new item, a new highest bid, a lowered minimum, a close), so nothing here is ahead
//! of storage; the web pages and event streams read it. The state sits behind a
//! `std::sync::Mutex` held only to copy an entry in or out, never across an `.await`, so a
//! writer (an item task) waits at most for another short copy, never for a browser.
//!
//! Each change gets the next sequence number, and `changed` carries the latest. An event stream
//! keeps only a cursor (the last number it sent) and, when woken, sends the current state of
//! each entry changed since: a page that reads slowly gets the latest price of each item, not a
//! backlog, and the memory a stream costs does not grow with how far behind it is.

use auction_protocol::{Cents, ItemState, ItemView};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::watch;

/// How many closed items the board keeps as "recent results".
pub const RECENT_RESULTS: usize = 50;

/// One item as the board shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoardItem {
    pub item: u64,
    pub description: String,
    pub seller: String,
    #[serde(serialize_with = "decimal")]
    pub min: Cents,
    /// The highest bid, while open; the price paid once sold.
    #[serde(serialize_with = "optional_decimal")]
    pub price: Option<Cents>,
    /// Who leads, while open; who won, once sold.
    pub leader: Option<String>,
    /// Accepted bids so far.
    pub bids: u64,
    /// When bidding ends (or ended), Unix ms.
    pub ends_at: u64,
    /// Soft-close extensions: bids that moved the end later than the bid before them had
    /// (counted from the database after a restart, like the history's notes).
    pub extensions: u32,
    /// The end before the first bid, when known (an item seen offered, or resumed without
    /// bids): what the first bid's extension is measured against.
    #[serde(skip)]
    pub first_end: Option<u64>,
    pub open: bool,
    /// Once closed: when.
    pub closed_at: Option<u64>,
    /// On an item with a reserve price only: whether the price reached it (the reserve
    /// itself is never shown).
    pub reserve_met: Option<bool>,
    /// The buy-it-now price, while it is offered.
    #[serde(serialize_with = "optional_decimal")]
    pub buy_now: Option<Cents>,
    /// Closed because the operator cancelled it: the operator's note (why).
    pub cancelled: Option<String>,
}

impl BoardItem {
    /// An item's public view (as LIST and NEW-ITEM carry it) with what its bids add.
    pub fn from_view(view: &ItemView, counts: BidCounts) -> BoardItem {
        let open = view.state == ItemState::Open;
        BoardItem {
            item: view.item,
            description: view.description.clone(),
            seller: view.seller.clone(),
            min: view.min,
            price: if open { view.highest } else { view.price },
            leader: if open {
                view.bidder.clone()
            } else {
                view.winner.clone()
            },
            bids: counts.bids,
            ends_at: view.ends_at,
            extensions: counts.extensions,
            first_end: (counts.bids == 0).then_some(view.ends_at),
            open,
            closed_at: None,
            reserve_met: view.reserve_met,
            buy_now: view.buy_now.filter(|_| open),
            cancelled: None,
        }
    }

    /// The seller's terms as the board shows them: "reserve not met · buy now 150.00", or
    /// empty (`board.js` `terms` says the same).
    pub fn terms(&self) -> String {
        let mut parts = Vec::new();
        match self.reserve_met {
            Some(true) => parts.push("reserve met".to_owned()),
            Some(false) => parts.push("reserve not met".to_owned()),
            None => {}
        }
        if let Some(price) = self.buy_now {
            parts.push(format!("buy now {price}"));
        }
        parts.join(" · ")
    }

    /// "sold to X for 12.50", "not sold: the reserve was not met", "cancelled by the
    /// operator: NOTE" or "not sold".
    pub fn result(&self) -> String {
        if let Some(note) = &self.cancelled {
            return format!("cancelled by the operator: {note}");
        }
        match (&self.leader, self.price) {
            (Some(winner), Some(price)) => format!("sold to {winner} for {price}"),
            _ if self.bids > 0 && self.reserve_met == Some(false) => {
                "not sold: the reserve was not met".to_owned()
            }
            _ => "not sold".to_owned(),
        }
    }
}

/// What an item's accepted bids add to its view: how many, and how many extended the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BidCounts {
    pub bids: u64,
    pub extensions: u32,
}

/// One accepted bid, as the item's history shows it: who placed it and the amount it was
/// placed at (a direct bid's amount, or the price a leading proxy bid set), never a proxy
/// bid's maximum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoardBid {
    pub at: u64,
    pub bidder: String,
    /// `None` for a proxy bid that another proxy outbid at once: its amount was its maximum,
    /// which stays private.
    #[serde(serialize_with = "optional_decimal")]
    pub amount: Option<Cents>,
    /// The end after this bid.
    pub ends_at: u64,
    /// It moved the end later (soft close). Read from the database, a first bid's extension
    /// is not known (the end before it is not stored); the page then compares it with
    /// `BoardItem::first_end`.
    pub extended: bool,
}

/// What a stream sends for one changed item: its state and, for a bid, the bid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub seq: u64,
    pub item: BoardItem,
    /// The bid behind this change, if it was the last thing that happened to the item.
    pub bid: Option<BoardBid>,
}

struct Entry {
    item: BoardItem,
    seq: u64,
    bid: Option<BoardBid>,
}

#[derive(Default)]
struct Inner {
    seq: u64,
    items: BTreeMap<u64, Entry>,
    /// Each entry's item by its sequence number: a stream finds what changed after its cursor
    /// without looking at the rest.
    by_seq: BTreeMap<u64, u64>,
    /// Closed items on the board, oldest first (trimmed to `RECENT_RESULTS`).
    results: VecDeque<u64>,
    /// The latest sequence number of an entry no longer on the board: a stream whose cursor is
    /// older may have missed its change, so its page re-reads the whole board.
    forgotten: u64,
}

impl Inner {
    /// Gives the entry of `id` the next sequence number.
    fn stamp(&mut self, id: u64) -> u64 {
        self.seq += 1;
        let seq = self.seq;
        if let Some(e) = self.items.get_mut(&id) {
            self.by_seq.remove(&e.seq);
            e.seq = seq;
            self.by_seq.insert(seq, id);
        }
        seq
    }

    /// Puts `item` on the board (replacing its entry, if any) under the next sequence number.
    fn put(&mut self, item: BoardItem) -> u64 {
        let id = item.item;
        let entry = Entry {
            item,
            seq: 0,
            bid: None,
        };
        if let Some(old) = self.items.insert(id, entry) {
            self.by_seq.remove(&old.seq);
        }
        self.stamp(id)
    }

    /// Takes `id` off the board.
    fn remove(&mut self, id: u64) {
        if let Some(e) = self.items.remove(&id) {
            self.by_seq.remove(&e.seq);
            self.forgotten = self.forgotten.max(e.seq);
        }
    }
}

/// What follows a stream's cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The oldest change after it.
    Change(Box<Change>),
    /// Nothing has changed since.
    UpToDate,
    /// The board can no longer tell what changed since (something changed after it has left
    /// the board, or the cursor is not from this run): the page must re-read it.
    Lost,
}

/// The live board (see the module header).
pub struct Board {
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
    /// Distinguishes this server run's sequence numbers from an earlier run's (a page that
    /// reconnects after a restart re-reads the board).
    pub boot: u64,
}

impl Board {
    pub fn new(boot: u64) -> Board {
        Board {
            inner: Mutex::new(Inner::default()),
            changed: watch::channel(0).0,
            boot,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `f` to the entry of `item` (if the board has it) under a new sequence number.
    fn change(&self, item: u64, f: impl FnOnce(&mut Entry)) {
        let mut inner = self.lock();
        let Some(entry) = inner.items.get_mut(&item) else {
            return;
        };
        f(entry);
        let seq = inner.stamp(item);
        drop(inner);
        self.changed.send_replace(seq);
    }

    /// A durable item, new or resumed: shown unless it is already.
    pub fn offered(&self, item: BoardItem) {
        let mut inner = self.lock();
        if inner.items.contains_key(&item.item) {
            return;
        }
        let (id, open) = (item.item, item.open);
        let seq = inner.put(item);
        if !open {
            inner.results.push_back(id);
            trim(&mut inner);
        }
        drop(inner);
        self.changed.send_replace(seq);
    }

    /// Several nodes: an item another node runs, as the database has it now (read in order
    /// of its revisions, so never older than what the board shows of it). It is shown, or its
    /// entry brought up to date; a close moves it to the results.
    /// `last` is its latest bid: shown with the change when it is the one bid since the board
    /// last read the item.
    pub fn mirror(&self, item: BoardItem, last: Option<BoardBid>) {
        let mut inner = self.lock();
        let id = item.item;
        let closes = !item.open;
        let mut bid = None;
        if let Some(e) = inner.items.get(&id) {
            // A result does not change; an open item changes only when something did.
            if !e.item.open || e.item == item {
                return;
            }
            if item.bids == e.item.bids + 1 {
                bid = last;
            }
        }
        let seq = inner.put(item);
        if let Some(e) = inner.items.get_mut(&id) {
            e.bid = bid;
        }
        if closes {
            inner.results.push_back(id);
            trim(&mut inner);
        }
        drop(inner);
        self.changed.send_replace(seq);
    }

    /// A durable accepted bid that moved what others see: the new price, leader and end, and
    /// `terms` after it (whether the reserve is met, the buy-it-now price if still offered).
    pub fn bid(
        &self,
        item: u64,
        bid: BoardBid,
        price: Cents,
        leader: String,
        terms: (Option<bool>, Option<Cents>),
    ) {
        self.change(item, |e| {
            e.item.extensions += u32::from(bid.extended);
            e.item.ends_at = bid.ends_at;
            e.item.price = Some(price);
            e.item.leader = Some(leader);
            (e.item.reserve_met, e.item.buy_now) = terms;
            e.item.bids += 1;
            e.bid = Some(bid);
        });
    }

    /// A durable accepted bid that changed nothing others see (a leader's higher maximum): it
    /// counts, and the history shows it, at the price it stands at.
    pub fn counted(&self, item: u64, bid: BoardBid) {
        self.change(item, |e| {
            e.item.bids += 1;
            e.bid = Some(bid);
        });
    }

    /// A durable removal of a bid by the operator: the price, leader and terms without it,
    /// one bid fewer.
    pub fn bid_removed(
        &self,
        item: u64,
        price: Option<Cents>,
        leader: Option<String>,
        terms: (Option<bool>, Option<Cents>),
    ) {
        self.change(item, |e| {
            e.item.price = price;
            e.item.leader = leader;
            (e.item.reserve_met, e.item.buy_now) = terms;
            e.item.bids = e.item.bids.saturating_sub(1);
            e.bid = None;
        });
    }

    /// A durable end moved by an earlier lot of the item's group.
    pub fn end_moved(&self, item: u64, ends_at: u64) {
        self.change(item, |e| {
            e.item.ends_at = ends_at;
            e.bid = None;
        });
    }

    /// A durable lowered minimum.
    pub fn min_lowered(&self, item: u64, min: Cents) {
        self.change(item, |e| {
            e.item.min = min;
            e.bid = None;
        });
    }

    /// A durable result (`cancelled`: by the operator, with the operator's note): the item
    /// moves to the recent results.
    pub fn closed(
        &self,
        item: u64,
        winner: Option<(String, Cents)>,
        at: u64,
        cancelled: Option<String>,
    ) {
        let mut inner = self.lock();
        let Some(e) = inner.items.get_mut(&item).filter(|e| e.item.open) else {
            return;
        };
        e.item.open = false;
        e.item.cancelled = cancelled;
        e.item.closed_at = Some(at);
        e.item.buy_now = None;
        e.item.price = winner.as_ref().map(|w| w.1);
        e.item.leader = winner.map(|w| w.0);
        e.bid = None;
        let seq = inner.stamp(item);
        inner.results.push_back(item);
        trim(&mut inner);
        drop(inner);
        self.changed.send_replace(seq);
    }

    /// Everything on the board now, and the sequence number it is as of: open items by end
    /// (soonest first), then results (latest first).
    pub fn snapshot(&self) -> (u64, Vec<BoardItem>, Vec<BoardItem>) {
        let inner = self.lock();
        let mut open: Vec<BoardItem> = inner
            .items
            .values()
            .filter(|e| e.item.open)
            .map(|e| e.item.clone())
            .collect();
        open.sort_by_key(|i| (i.ends_at, i.item));
        let results = inner
            .results
            .iter()
            .rev()
            .filter_map(|id| inner.items.get(id).map(|e| e.item.clone()))
            .collect();
        (inner.seq, open, results)
    }

    /// One item, and the sequence number it is as of.
    pub fn item(&self, item: u64) -> (u64, Option<BoardItem>) {
        let inner = self.lock();
        (inner.seq, inner.items.get(&item).map(|e| e.item.clone()))
    }

    /// The latest sequence number.
    pub fn seq(&self) -> u64 {
        self.lock().seq
    }

    /// The oldest change after `since` (of `only` that item, if given): what a stream sends
    /// next, one at a time, so it never holds more than one event.
    pub fn next_after(&self, since: u64, only: Option<u64>) -> Next {
        let inner = self.lock();
        if since < inner.forgotten || since > inner.seq {
            return Next::Lost;
        }
        let entry = match only {
            Some(id) => inner.items.get(&id).filter(|e| e.seq > since),
            None => inner
                .by_seq
                .range(since + 1..)
                .next()
                .and_then(|(_, id)| inner.items.get(id)),
        };
        match entry {
            Some(e) => Next::Change(Box::new(Change {
                seq: e.seq,
                item: e.item.clone(),
                bid: e.bid.clone(),
            })),
            None => Next::UpToDate,
        }
    }

    /// Every change after `since` at once (see [`Board::next_after`]); `None` when the board
    /// can no longer tell.
    #[cfg(test)]
    pub fn since(&self, since: u64, only: Option<u64>) -> Option<(u64, Vec<Change>)> {
        let inner = self.lock();
        if since < inner.forgotten || since > inner.seq {
            return None;
        }
        let pick = |e: &Entry| Change {
            seq: e.seq,
            item: e.item.clone(),
            bid: e.bid.clone(),
        };
        let changes: Vec<Change> = match only {
            Some(id) => inner
                .items
                .get(&id)
                .filter(|e| e.seq > since)
                .map(pick)
                .into_iter()
                .collect(),
            None => inner
                .by_seq
                .range(since + 1..)
                .filter_map(|(_, id)| inner.items.get(id).map(pick))
                .collect(),
        };
        Some((inner.seq, changes))
    }

    /// Follows the latest sequence number.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// Amounts go to the page as the decimals every other view prints ("12.50"), so the script
/// formats nothing.
fn decimal<S: serde::Serializer>(c: &Cents, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(c)
}

fn optional_decimal<S: serde::Serializer>(c: &Option<Cents>, s: S) -> Result<S::Ok, S::Error> {
    match c {
        Some(c) => s.collect_str(c),
        None => s.serialize_none(),
    }
}

/// Keeps the latest `RECENT_RESULTS` results.
fn trim(inner: &mut Inner) {
    while inner.results.len() > RECENT_RESULTS {
        if let Some(old) = inner.results.pop_front() {
            inner.remove(old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: u64, ends_at: u64) -> BoardItem {
        BoardItem {
            item: id,
            description: format!("lot {id}"),
            seller: "sam".into(),
            min: Cents(1000),
            price: None,
            leader: None,
            bids: 0,
            ends_at,
            extensions: 0,
            first_end: Some(ends_at),
            open: true,
            closed_at: None,
            reserve_met: None,
            buy_now: None,
            cancelled: None,
        }
    }

    fn bid(at: u64, amount: u64, ends_at: u64) -> BoardBid {
        BoardBid {
            at,
            bidder: "alice".into(),
            amount: Some(Cents(amount)),
            ends_at,
            extended: false,
        }
    }

    #[test]
    fn a_slow_reader_gets_the_latest_price_of_each_item_once() {
        let board = Board::new(1);
        board.offered(item(1, 10_000));
        board.offered(item(2, 20_000));
        let (cursor, _, _) = board.snapshot();
        for amount in [1000, 1100, 1200] {
            board.bid(
                1,
                bid(5, amount, 10_000),
                Cents(amount),
                "alice".into(),
                (None, None),
            );
        }
        board.min_lowered(2, Cents(500));
        let (now, changes) = board.since(cursor, None).unwrap();
        assert_eq!(now, cursor + 4);
        assert_eq!(changes.len(), 2, "one change per item: {changes:?}");
        assert_eq!(changes[0].item.price, Some(Cents(1200)));
        assert_eq!(changes[0].item.bids, 3);
        assert_eq!(changes[1].item.min, Cents(500));
        assert!(board.since(now, None).unwrap().1.is_empty());
        let (_, only) = board.since(cursor, Some(2)).unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].item.item, 2);
    }

    #[test]
    fn a_later_end_counts_as_an_extension_and_a_close_moves_to_results() {
        let board = Board::new(1);
        board.offered(item(1, 10_000));
        let late = BoardBid {
            extended: true,
            ..bid(9_000, 1000, 12_000)
        };
        board.bid(1, late, Cents(1000), "alice".into(), (None, None));
        board.closed(1, Some(("alice".into(), Cents(1000))), 12_000, None);
        let (_, open, results) = board.snapshot();
        assert!(open.is_empty());
        assert_eq!(results[0].extensions, 1);
        assert_eq!(results[0].ends_at, 12_000);
        assert_eq!(results[0].result(), "sold to alice for 10.00");
    }

    #[test]
    fn results_are_trimmed_and_a_cursor_from_before_the_trim_must_re_read() {
        let board = Board::new(1);
        let (start, _, _) = board.snapshot();
        for id in 1..=(RECENT_RESULTS as u64 + 1) {
            board.offered(item(id, 1));
            board.closed(id, None, 2, None);
        }
        let (now, open, results) = board.snapshot();
        assert!(open.is_empty());
        assert_eq!(results.len(), RECENT_RESULTS);
        assert_eq!(results[0].item, RECENT_RESULTS as u64 + 1, "latest first");
        assert!(board.since(start, None).is_none());
        assert!(board.since(now, None).is_some());
        assert!(
            board.since(now + 1, None).is_none(),
            "a cursor from the future"
        );
    }

    #[test]
    fn changes_to_unknown_items_are_ignored() {
        let board = Board::new(1);
        board.bid(7, bid(1, 100, 5), Cents(100), "alice".into(), (None, None));
        let (seq, open, _) = board.snapshot();
        assert_eq!(seq, 0);
        assert!(open.is_empty());
    }
}
