//! Announcements waiting to go out, per account, bounded and paced (issue 14). Owned by the
//! registry task, and pure: the time is passed in, and what is due comes back to be sent.
//! Nothing here waits for storage: an announcement is queued only once what it reports is
//! durable (the registry's outbox releases it).
//!
//! An announcement for every account (NEW-ITEM) is kept once, in a shared log of the latest
//! `bound`, and each account has a cursor into it; one for some accounts (a subscribed item's
//! BID-UPDATE, PRICE-ADJUSTMENT, ITEM-CLOSED) goes into each of their own queues as a shared
//! pointer. So an offer costs one entry however many accounts there are, and a restart that
//! announces 15,000 items costs at most `bound` entries, not accounts × items messages.
//!
//! An account never has more than `bound` announcements waiting: past that the oldest are
//! dropped and its numbers (`seq`) skip them, so its client sees the gap and resynchronises
//! (PROTOCOL.md, "Announcement numbers"). Numbers are given when an announcement is sent,
//! not when it is queued, which is what lets a skipped one cost nothing.
//!
//! Sending is paced: at most `rate` datagrams a second in all, at most [`BATCH`] in one turn
//! of the run loop, one account after another (round robin), so requests are answered between
//! batches and one offer to thousands of accounts never holds up the UDP plane.

use auction_protocol::udp::{self, ServerBody};
use auction_protocol::{Cents, ItemView};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use crate::accounts::AccountId;

/// The most datagrams sent in one turn of the run loop.
pub(super) const BATCH: usize = 32;

/// The most accounts looked at in one turn (those with nothing waiting are passed over), so a
/// turn stays short however many accounts there are.
const MAX_VISITS: usize = 4096;

/// What an announcement says; its number and the server run are added per account when sent.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Body {
    NewItem(ItemView),
    BidUpdate {
        item: u64,
        highest: Cents,
        bidder: String,
        ends_at: u64,
    },
    PriceAdjustment {
        item: u64,
        min: Cents,
        ends_at: u64,
    },
    ItemClosed {
        item: u64,
        winner: Option<String>,
        price: Option<Cents>,
    },
}

impl Body {
    fn render(&self, seq: u64, epoch: u64) -> ServerBody {
        match self.clone() {
            Body::NewItem(item) => ServerBody::NewItem { seq, epoch, item },
            Body::BidUpdate {
                item,
                highest,
                bidder,
                ends_at,
            } => ServerBody::BidUpdate {
                seq,
                epoch,
                item,
                highest,
                bidder,
                ends_at,
            },
            Body::PriceAdjustment { item, min, ends_at } => ServerBody::PriceAdjustment {
                seq,
                epoch,
                item,
                min,
                ends_at,
            },
            Body::ItemClosed {
                item,
                winner,
                price,
            } => ServerBody::ItemClosed {
                seq,
                epoch,
                item,
                winner,
                price,
            },
        }
    }
}

/// One queued announcement.
#[derive(Debug, Clone)]
struct Entry {
    /// Order among all announcements (the log's and every account's own).
    serial: u64,
    /// Numbers to leave out before it: updates its item could not keep up with.
    skip: u64,
    body: Arc<Body>,
}

/// One account's place in the log, its own announcements and its numbering.
#[derive(Debug, Default)]
struct Queue {
    /// Index in the log of the next announcement for everyone it is to get.
    cursor: u64,
    own: VecDeque<Entry>,
    /// The last number it was given in this server run.
    seq: u64,
    /// Numbers to leave out before the next one sent (announcements dropped).
    dropped: u64,
}

pub(super) struct AnnounceQueue {
    /// The most announcements waiting for one account (and kept in the log).
    bound: usize,
    /// Announcements for everyone, oldest first; `log[i]` has index `log_first + i`.
    log: VecDeque<Entry>,
    log_first: u64,
    next_serial: u64,
    queues: BTreeMap<AccountId, Queue>,
    /// Accounts with something to send.
    waiting: usize,
    /// Where the round robin goes on.
    turn: AccountId,
    /// Datagrams a second, the bucket's size and what is in it (refilled at `refilled`).
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl AnnounceQueue {
    /// Queues of at most `bound` announcements (at least 1), sent at most `rate` a second.
    pub(super) fn new(bound: usize, rate: f64, now: Instant) -> AnnounceQueue {
        let rate = rate.max(1.0);
        // About two milliseconds' worth at once (the timer's resolution is one), within a
        // turn's batch.
        let burst = (rate / 500.0).clamp(1.0, BATCH as f64);
        AnnounceQueue {
            bound: bound.max(1),
            log: VecDeque::new(),
            log_first: 0,
            next_serial: 0,
            queues: BTreeMap::new(),
            waiting: 0,
            turn: 0,
            rate,
            burst,
            tokens: burst,
            refilled: now,
        }
    }

    fn log_end(&self) -> u64 {
        self.log_first + self.log.len() as u64
    }

    fn entry(&mut self, body: Body, skip: u64) -> Entry {
        self.next_serial += 1;
        Entry {
            serial: self.next_serial,
            skip,
            body: Arc::new(body),
        }
    }

    /// A new account: it gets the announcements made from now on, numbered from 1.
    pub(super) fn add(&mut self, account: AccountId) {
        let cursor = self.log_end();
        self.queues.entry(account).or_insert(Queue {
            cursor,
            ..Queue::default()
        });
    }

    /// A removed account: what waited for it is forgotten.
    pub(super) fn remove(&mut self, account: AccountId) {
        let log_end = self.log_end();
        if let Some(q) = self.queues.remove(&account) {
            if q.has_waiting(log_end) {
                self.waiting -= 1;
            }
        }
    }

    /// The last number given to `account` in this run (0 before its first).
    pub(super) fn seq(&self, account: AccountId) -> u64 {
        self.queues.get(&account).map_or(0, |q| q.seq)
    }

    /// Queues `body` for every account.
    pub(super) fn queue_for_everyone(&mut self, body: Body) {
        let entry = self.entry(body, 0);
        if self.log.len() >= self.bound {
            self.log.pop_front();
            self.log_first += 1;
        }
        self.log.push_back(entry);
        // Every cursor is now behind the log's end.
        self.waiting = self.queues.len();
    }

    /// Queues `body` for each of `accounts`, with `skip` numbers left out before it.
    pub(super) fn queue_for(&mut self, accounts: &[AccountId], skip: u64, body: Body) {
        let entry = self.entry(body, skip);
        let log_end = self.log_end();
        for id in accounts {
            let Some(q) = self.queues.get_mut(id) else {
                continue;
            };
            if !q.has_waiting(log_end) {
                self.waiting += 1;
            }
            if q.own.len() >= self.bound {
                if let Some(old) = q.own.pop_front() {
                    q.dropped += 1 + old.skip;
                }
            }
            q.own.push_back(entry.clone());
        }
    }

    /// Whether nothing waits to be sent.
    #[cfg(test)]
    fn is_idle(&self) -> bool {
        self.waiting == 0
    }

    /// When [`AnnounceQueue::due`] next has something to send: `None` while nothing waits.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        if self.waiting == 0 {
            return None;
        }
        let short = (1.0 - self.tokens).max(0.0);
        Some(self.refilled + Duration::from_secs_f64(short / self.rate))
    }

    /// The datagrams to send now, each to every address `addresses` gives its account (its
    /// devices; an account without any has what waited for it dropped, its numbers
    /// advancing, so that a client attaching later sees the gap): at most [`BATCH`]
    /// datagrams (one more account's worth at most), within the rate.
    pub(super) fn due<'a>(
        &mut self,
        now: Instant,
        epoch: u64,
        addresses: impl Fn(AccountId) -> &'a [SocketAddr],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
        let budget = (self.tokens.floor() as usize).min(BATCH);
        let mut out = Vec::new();
        let mut visits = 0;
        while out.len() < budget && self.waiting > 0 && visits < MAX_VISITS {
            visits += 1;
            let next = self.queues.range(self.turn..).next();
            let Some(id) = next
                .or_else(|| self.queues.iter().next())
                .map(|(&id, _)| id)
            else {
                break;
            };
            self.turn = id.saturating_add(1);
            let (log, log_first, bound) = (&self.log, self.log_first, self.bound);
            let log_end = log_first + log.len() as u64;
            let Some(q) = self.queues.get_mut(&id) else {
                continue;
            };
            if !q.has_waiting(log_end) {
                continue;
            }
            q.trim(log, log_first, bound);
            match addresses(id) {
                [] => {
                    while let Some(entry) = q.pop(log, log_first) {
                        q.seq += entry.skip + 1;
                    }
                    q.seq += std::mem::take(&mut q.dropped);
                }
                devices => {
                    if let Some(entry) = q.pop(log, log_first) {
                        q.seq += q.dropped + entry.skip + 1;
                        q.dropped = 0;
                        let datagram = udp::encode(entry.body.render(q.seq, epoch));
                        out.extend(devices.iter().map(|&to| (to, datagram.clone())));
                    }
                }
            }
            if !q.has_waiting(log_end) {
                self.waiting -= 1;
            }
        }
        self.tokens -= out.len() as f64;
        out
    }
}

impl Queue {
    fn has_waiting(&self, log_end: u64) -> bool {
        self.cursor < log_end || !self.own.is_empty()
    }

    /// Drops what the log no longer holds, then the oldest until at most `bound` wait.
    fn trim(&mut self, log: &VecDeque<Entry>, log_first: u64, bound: usize) {
        if self.cursor < log_first {
            self.dropped += log_first - self.cursor;
            self.cursor = log_first;
        }
        let log_end = log_first + log.len() as u64;
        while (log_end - self.cursor) as usize + self.own.len() > bound {
            if let Some(entry) = self.pop(log, log_first) {
                self.dropped += 1 + entry.skip;
            }
        }
    }

    /// The oldest announcement waiting (from the log or its own), taken off the queue.
    fn pop(&mut self, log: &VecDeque<Entry>, log_first: u64) -> Option<Entry> {
        let shared = self
            .cursor
            .checked_sub(log_first)
            .and_then(|i| log.get(i as usize));
        match (shared, self.own.front()) {
            (Some(s), Some(o)) if o.serial < s.serial => self.own.pop_front(),
            (Some(s), _) => {
                self.cursor += 1;
                Some(s.clone())
            }
            (None, _) => self.own.pop_front(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auction_protocol::ItemState;

    const EPOCH: u64 = 7;

    fn view(item: u64) -> ItemView {
        ItemView {
            item,
            description: format!("lot {item}"),
            seller: "s".into(),
            min: Cents(100),
            highest: None,
            bidder: None,
            ends_at: 1,
            state: ItemState::Open,
            channel: Some("127.0.0.1:1".into()),
            winner: None,
            price: None,
            settle_port: None,
            reserve_met: None,
            buy_now: None,
            cancelled: false,
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Every account `n` has one device, at port `n`. (Leaked: a few bytes per test.)
    fn to_port(id: AccountId) -> &'static [SocketAddr] {
        Box::leak(Box::new([addr(id as u16)]))
    }

    /// (port, seq, item) of each datagram.
    fn read(out: &[(SocketAddr, Vec<u8>)]) -> Vec<(u16, u64, u64)> {
        out.iter()
            .map(|(to, d)| {
                let body = udp::decode_server(d).unwrap().body;
                let (epoch, seq) = body.sequence().unwrap();
                assert_eq!(epoch, EPOCH);
                let item = match body {
                    ServerBody::NewItem { item, .. } => item.item,
                    ServerBody::BidUpdate { item, .. } | ServerBody::ItemClosed { item, .. } => {
                        item
                    }
                    other => panic!("{other:?}"),
                };
                (to.port(), seq, item)
            })
            .collect()
    }

    /// Everything waiting, a batch at a time, time moving on 10 ms between batches.
    fn drain(q: &mut AnnounceQueue, now: &mut Instant) -> Vec<(u16, u64, u64)> {
        let mut all = Vec::new();
        for _ in 0..10_000 {
            if q.is_idle() {
                return all;
            }
            *now += Duration::from_millis(10);
            all.extend(read(&q.due(*now, EPOCH, to_port)));
        }
        panic!("never idle");
    }

    #[test]
    fn an_announcement_for_everyone_goes_to_each_account_once_in_turn() {
        let mut now = Instant::now();
        let mut q = AnnounceQueue::new(64, 1e6, now);
        for id in 1..=3 {
            q.add(id);
        }
        q.queue_for_everyone(Body::NewItem(view(10)));
        q.queue_for_everyone(Body::NewItem(view(11)));
        let sent = drain(&mut q, &mut now);
        // Round robin: every account's first before anyone's second.
        assert_eq!(
            sent,
            vec![
                (1, 1, 10),
                (2, 1, 10),
                (3, 1, 10),
                (1, 2, 11),
                (2, 2, 11),
                (3, 2, 11)
            ]
        );
        // One entry for everyone, however many accounts.
        assert_eq!(q.log.len(), 2);
        // An account added later gets only what comes after.
        q.add(4);
        q.queue_for_everyone(Body::NewItem(view(12)));
        let sent = drain(&mut q, &mut now);
        assert!(
            sent.contains(&(4, 1, 12)) && sent.contains(&(1, 3, 12)),
            "{sent:?}"
        );
    }

    #[test]
    fn past_the_bound_the_oldest_are_dropped_and_the_numbers_show_the_gap() {
        let mut now = Instant::now();
        let mut q = AnnounceQueue::new(3, 1e6, now);
        q.add(1);
        q.add(2);
        for item in 1..=10 {
            q.queue_for_everyone(Body::NewItem(view(item)));
        }
        q.queue_for(
            &[2],
            0,
            Body::BidUpdate {
                item: 3,
                highest: Cents(500),
                bidder: "b".into(),
                ends_at: 1,
            },
        );
        // Memory: the log keeps `bound`, whatever was announced.
        assert_eq!(q.log.len(), 3);
        let sent = drain(&mut q, &mut now);
        let one: Vec<_> = sent.iter().filter(|s| s.0 == 1).copied().collect();
        let two: Vec<_> = sent.iter().filter(|s| s.0 == 2).copied().collect();
        // Account 1: items 8, 9, 10, numbered as the 8th to 10th: 1 to 7 were dropped.
        assert_eq!(one, vec![(1, 8, 8), (1, 9, 9), (1, 10, 10)]);
        // Account 2: at most 3 wait, the newest; its own update is the latest.
        assert_eq!(two, vec![(2, 9, 9), (2, 10, 10), (2, 11, 3)]);
    }

    #[test]
    fn own_announcements_are_bounded_and_keep_the_skips_they_carry() {
        let mut now = Instant::now();
        let mut q = AnnounceQueue::new(2, 1e6, now);
        q.add(1);
        let update = |item| Body::ItemClosed {
            item,
            winner: None,
            price: None,
        };
        q.queue_for(&[1], 0, update(1));
        // An update the item could not keep up with: one number left out before this one.
        q.queue_for(&[1], 1, update(2));
        assert_eq!(drain(&mut q, &mut now), vec![(1, 1, 1), (1, 3, 2)]);
        for item in 3..=6 {
            q.queue_for(&[1], 0, update(item));
        }
        assert_eq!(q.queues[&1].own.len(), 2);
        assert_eq!(drain(&mut q, &mut now), vec![(1, 6, 5), (1, 7, 6)]);
        // Unknown accounts are passed over.
        q.queue_for(&[99], 0, update(7));
        assert!(q.is_idle());
    }

    #[test]
    fn sending_is_paced_by_the_rate_and_the_batch() {
        let mut now = Instant::now();
        let mut q = AnnounceQueue::new(64, 10_000.0, now);
        for id in 1..=1000 {
            q.add(id);
        }
        q.queue_for_everyone(Body::NewItem(view(1)));
        // The bucket holds 2 ms' worth: 20 now, then 10 a millisecond.
        assert_eq!(q.due(now, EPOCH, to_port).len(), 20);
        assert!(q.due(now, EPOCH, to_port).is_empty());
        let wake = q.next_wake().unwrap();
        assert!(
            wake > now && wake <= now + Duration::from_micros(100),
            "{wake:?}"
        );
        now += Duration::from_millis(1);
        assert_eq!(q.due(now, EPOCH, to_port).len(), 10);
        // Never more than a batch in one turn, however long it waited.
        let mut fast = AnnounceQueue::new(64, 1e6, now);
        for id in 1..=1000 {
            fast.add(id);
        }
        fast.queue_for_everyone(Body::NewItem(view(1)));
        now += Duration::from_secs(1);
        assert_eq!(fast.due(now, EPOCH, to_port).len(), BATCH);
        // 1000 accounts at 10,000 a second: about 100 ms, not at once.
        let mut sent = 30;
        let mut turns = 0;
        while !q.is_idle() {
            now = q.next_wake().unwrap().max(now + Duration::from_millis(1));
            sent += q.due(now, EPOCH, to_port).len();
            turns += 1;
        }
        assert_eq!(sent, 1000);
        assert!((90..=100).contains(&turns), "{turns} turns");
        assert_eq!(q.next_wake(), None);
    }

    #[test]
    fn an_account_without_an_address_has_its_numbers_advance_and_removed_ones_are_forgotten() {
        let mut now = Instant::now();
        let mut q = AnnounceQueue::new(64, 1e6, now);
        q.add(1);
        q.add(2);
        q.queue_for_everyone(Body::NewItem(view(1)));
        q.queue_for_everyone(Body::NewItem(view(2)));
        now += Duration::from_millis(10);
        let two = [addr(2)];
        let sent = q.due(now, EPOCH, |id| if id == 2 { &two[..] } else { &[] });
        assert_eq!(read(&sent), vec![(2, 1, 1), (2, 2, 2)]);
        assert!(q.is_idle());
        // Account 1 had no address: nothing sent, but it has counted them.
        assert_eq!(q.seq(1), 2);
        q.queue_for_everyone(Body::NewItem(view(3)));
        q.remove(2);
        assert_eq!(drain(&mut q, &mut now), vec![(1, 3, 3)]);
    }

    #[test]
    fn every_device_of_an_account_gets_each_announcement_with_the_same_number() {
        let mut now = Instant::now();
        let mut q = AnnounceQueue::new(64, 1e6, now);
        q.add(1);
        q.add(2);
        q.queue_for_everyone(Body::NewItem(view(1)));
        q.queue_for(&[1], 0, Body::NewItem(view(2)));
        now += Duration::from_millis(10);
        let (three, one) = ([addr(10), addr(11), addr(12)], [addr(20)]);
        let devices = |id| if id == 1 { &three[..] } else { &one[..] };
        let sent = q.due(now, EPOCH, devices);
        assert_eq!(
            read(&sent),
            vec![
                (10, 1, 1),
                (11, 1, 1),
                (12, 1, 1),
                (20, 1, 1),
                (10, 2, 2),
                (11, 2, 2),
                (12, 2, 2)
            ]
        );
        assert!(q.is_idle());
    }
}
