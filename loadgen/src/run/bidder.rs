//! One simulated bidder: its own task, holding its channels (one per joined item), sending
//! one bid at a time round-robin over them and waiting for its answer while it reads every
//! other message (HIGHEST from the other bidders, the end of an auction).
//!
//! The bidder task owns its channels and its choice of amounts; what the run as a whole
//! counts (stats, each item's ledger of accepted bids, answers per second) it records in the
//! run's `Shared`, whose locks are held only to update one entry, never across an `.await`.
//! When bids are due is the measured phase's rate policy (`measure.rs`).
//!
//! A channel that breaks while its auction is open (the server restarted, or a cluster's node
//! died and another took its items) is looked up again over UDP and reopened, with backoff,
//! like the reference client's session: a bid whose answer was lost is sent again with the
//! same id (so it is counted once, and its latency runs from when it was first due), and the
//! reconnection is counted (`counts.reconnected`), not taken for an error unless it gives up.

use super::{bidder_index, error_kind, Shared};
use crate::pace::Pace;
use auction_client::{ChannelReader, ChannelWriter, Client, ItemChannel, Received};
use auction_protocol::channel::ChannelBody;
use auction_protocol::{Cents, ItemState, Reason};
use futures_util::stream::{SelectAll, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::time::{sleep_until, timeout};

/// How long a bid may wait for its answer before it counts as unanswered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a sent bid is remembered for matching other bidders' HIGHEST to it.
const FAN_OUT_MEMORY: Duration = Duration::from_secs(10);
/// Share of bids sent below the current price on purpose.
const LOW_BID_SHARE: f64 = 0.05;
/// A lost channel is looked up again after this, doubling up to `RECONNECT_MAX`...
const RECONNECT_FIRST: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// ...and given up (an error) when it has been lost this long.
const RECONNECT_GIVE_UP: Duration = Duration::from_secs(60);

/// One reader of a bidder's channels, tagged with its slot and the slot's channel generation
/// (a reopened channel is the next one, so what an earlier reader still yields is told apart);
/// ends with one `None` when the server closes the channel.
struct Tagged {
    slot: usize,
    generation: u64,
    reader: Option<ChannelReader>,
}

/// A message (or the end) from one channel: its slot, its generation, the message.
type Tag = (usize, u64, Option<auction_client::Result<Received>>);

impl futures_util::Stream for Tagged {
    type Item = Tag;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(reader) = this.reader.as_mut() else {
            return Poll::Ready(None);
        };
        match reader.poll_recv(cx) {
            Poll::Ready(Some(m)) => Poll::Ready(Some((this.slot, this.generation, Some(m)))),
            Poll::Ready(None) => {
                this.reader = None;
                Poll::Ready(Some((this.slot, this.generation, None)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

struct Slot {
    item: usize,
    writer: Option<ChannelWriter>,
    /// Smallest bid the server would accept, as far as this bidder knows.
    next_min: Cents,
    increment: u64,
    /// Its auction is over for this bidder: no more bids, no reconnection.
    ended: bool,
    /// Set while its channel is lost and the auction may still be open.
    lost: Option<Lost>,
    /// Which of its channels is current: each reopening makes the next.
    generation: u64,
}

impl Slot {
    /// A bid of `amount` was accepted or became the highest: the next acceptable bid is the
    /// server's `next_min` when it said it (the increment depends on the price band; the
    /// step it implies is kept for the bids it plans), or one step above `amount`.
    fn raise(&mut self, amount: Cents, next_min: Option<Cents>) {
        let next = match next_min {
            Some(n) if n > amount => {
                self.increment = n.0 - amount.0;
                n
            }
            _ => Cents(amount.0 + self.increment),
        };
        self.next_min = self.next_min.max(next);
    }
}

/// A channel to reopen.
struct Lost {
    since: Instant,
    retry_at: Instant,
    delay: Duration,
    /// The bid that was waiting for its answer when the channel broke: sent again, same id.
    resend: Option<Pending>,
}

/// The bid a bidder waits for.
#[derive(Clone)]
struct Pending {
    slot: usize,
    req: u64,
    amount: Cents,
    id: String,
    sent: Instant,
    /// When it was due (open loop) or sent (closed loop): latency counts from here.
    due: Instant,
}

pub(super) struct Bidder {
    index: usize,
    /// Its client, to look an item up again when a channel is lost.
    client: Option<Arc<Client>>,
    slots: Vec<Slot>,
    readers: SelectAll<Tagged>,
    shared: Arc<Shared>,
    rng: StdRng,
    seq: u64,
    /// When the measured phase started (answers per second count from here).
    start: Instant,
}

impl Bidder {
    pub(super) fn new(
        index: usize,
        client: Option<Arc<Client>>,
        chans: Vec<(usize, ItemChannel)>,
        shared: Arc<Shared>,
        seed: u64,
        start: Instant,
    ) -> Bidder {
        let mut slots = Vec::new();
        let mut readers = SelectAll::new();
        for (slot, (item, ch)) in chans.into_iter().enumerate() {
            let increment = match ch.item.highest {
                Some(h) if ch.next_min.0 > h.0 => ch.next_min.0 - h.0,
                _ => 1,
            };
            let next_min = ch.next_min;
            let (writer, reader) = ch.split();
            slots.push(Slot {
                item,
                writer: Some(writer),
                next_min,
                increment,
                ended: false,
                lost: None,
                generation: 0,
            });
            readers.push(Tagged {
                slot,
                generation: 0,
                reader: Some(reader),
            });
        }
        Bidder {
            index,
            client,
            slots,
            readers,
            shared,
            rng: StdRng::seed_from_u64(seed),
            seq: 0,
            start,
        }
    }

    /// Bids until `stop`, when `pace` says, one bid at a time round-robin over the channels
    /// still open; stops early when none is left.
    pub(super) async fn run(mut self, stop: Instant, pace: Pace) {
        let mut due = pace.first_due(self.start, self.index);
        let mut turn = 0usize;
        loop {
            match pace {
                Pace::Open { .. } => {
                    // Open loop: wait for the bid's scheduled time, reading meanwhile.
                    while Instant::now() < due && due < stop {
                        let deadline = tokio::time::Instant::from_std(due);
                        tokio::select! {
                            _ = sleep_until(deadline) => {}
                            msg = self.readers.next() => match msg {
                                Some(tag) => { self.handle(tag, None); }
                                None => return self.close().await,
                            },
                        }
                    }
                    if due >= stop {
                        break;
                    }
                }
                Pace::Closed => {
                    due = Instant::now();
                    if due >= stop {
                        break;
                    }
                }
            }
            self.recover().await;
            let open: Vec<usize> = (0..self.slots.len())
                .filter(|&s| self.slots[s].writer.is_some())
                .collect();
            if open.is_empty() {
                // Nothing to bid on until a lost channel is back (or given up).
                match self
                    .slots
                    .iter()
                    .filter_map(|s| s.lost.as_ref())
                    .map(|l| l.retry_at)
                    .min()
                {
                    Some(retry_at) if retry_at < stop => {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(retry_at)).await;
                        continue;
                    }
                    _ => break,
                }
            }
            let slot = open[turn % open.len()];
            turn += 1;
            if let Some(pending) = self.send(slot, due).await {
                self.await_answer(pending).await;
            }
            if let Pace::Open { interval, .. } = pace {
                due += interval;
            }
        }
        self.close().await
    }

    async fn close(self) {
        for slot in self.slots {
            if let Some(w) = slot.writer {
                w.close().await;
            }
        }
    }

    fn choose_amount(&mut self, slot: usize) -> (Cents, bool) {
        let s = &self.slots[slot];
        if s.next_min.0 > 1 && self.rng.random_bool(LOW_BID_SHARE) {
            let below = self.rng.random_range(1..=(s.next_min.0 - 1).min(100));
            return (Cents(s.next_min.0 - below), true);
        }
        let steps = self.rng.random_range(0..3);
        (Cents(s.next_min.0 + steps * s.increment), false)
    }

    async fn send(&mut self, slot: usize, due: Instant) -> Option<Pending> {
        let (amount, low) = self.choose_amount(slot);
        self.seq += 1;
        let id = format!("{}-{}-{}", self.shared.prefix, self.index, self.seq);
        let item = &self.shared.items[self.slots[slot].item];
        let sent = Instant::now();
        {
            let mut bids = item.sent.lock().unwrap_or_else(|p| p.into_inner());
            if sent.duration_since(bids.pruned) > Duration::from_secs(1) {
                bids.at
                    .retain(|_, t| sent.duration_since(*t) < FAN_OUT_MEMORY);
                bids.pruned = sent;
            }
            bids.at.insert((amount.0, self.index as u32), sent);
        }
        let writer = self.slots[slot].writer.as_mut()?;
        match writer.send_bid(amount, Some(id.clone())).await {
            Ok(req) => {
                let s = &self.shared.stats;
                s.sent.fetch_add(1, Ordering::Relaxed);
                s.send_lag.record(sent.saturating_duration_since(due));
                if low {
                    s.low.fetch_add(1, Ordering::Relaxed);
                }
                Some(Pending {
                    slot,
                    req,
                    amount,
                    id,
                    sent,
                    due,
                })
            }
            Err(e) => {
                // Not sent: the channel is lost; the bid is simply not made.
                tracing::debug!(bidder = self.index, error = %e, "a channel broke while sending");
                self.lose(slot, None);
                None
            }
        }
    }

    /// The channel of `slot` broke: it is looked up again later (with `pending`, the bid that
    /// waited for its answer on it), unless its auction is over.
    fn lose(&mut self, slot: usize, pending: Option<&Pending>) {
        let s = &mut self.slots[slot];
        s.writer = None;
        if s.ended || s.lost.is_some() {
            return;
        }
        let now = Instant::now();
        s.lost = Some(Lost {
            since: now,
            retry_at: now + RECONNECT_FIRST,
            delay: RECONNECT_FIRST,
            resend: pending.cloned(),
        });
    }

    /// Tries to reopen every lost channel whose time has come; sends a lost bid again (same
    /// id) on the reopened channel and waits for its answer.
    async fn recover(&mut self) {
        let now = Instant::now();
        for slot in 0..self.slots.len() {
            let due = self.slots[slot]
                .lost
                .as_ref()
                .is_some_and(|l| l.retry_at <= now);
            if !due {
                continue;
            }
            match self.reopen(slot).await {
                Ok(true) => {
                    self.shared
                        .stats
                        .reconnected
                        .fetch_add(1, Ordering::Relaxed);
                    let resend = self.slots[slot].lost.take().and_then(|l| l.resend);
                    if let Some(p) = resend {
                        self.resend(p).await;
                    }
                }
                Ok(false) => {
                    // The auction ended meanwhile: a bid left waiting will never be answered.
                    let lost = self.slots[slot].lost.take();
                    self.slots[slot].ended = true;
                    if lost.is_some_and(|l| l.resend.is_some()) {
                        let s = &self.shared.stats;
                        s.unanswered.fetch_add(1, Ordering::Relaxed);
                        s.errors.add("closed-with-bid-unanswered");
                    }
                }
                Err(e) => {
                    let lost = self.slots[slot].lost.as_mut().expect("checked above");
                    if lost.since.elapsed() >= RECONNECT_GIVE_UP {
                        let resend = lost.resend.is_some();
                        self.slots[slot].lost = None;
                        self.slots[slot].ended = true;
                        let s = &self.shared.stats;
                        s.errors.add(format!("channel-lost-{}", error_kind(&e)));
                        if resend {
                            s.unanswered.fetch_add(1, Ordering::Relaxed);
                        }
                        tracing::warn!(bidder = self.index, error = %e, "gave up a lost channel");
                    } else {
                        lost.delay = (lost.delay * 2).min(RECONNECT_MAX);
                        lost.retry_at = Instant::now() + lost.delay;
                    }
                }
            }
        }
    }

    /// Looks the item of `slot` up and opens its channel again: true when it is open, false
    /// when the auction has ended.
    async fn reopen(&mut self, slot: usize) -> auction_client::Result<bool> {
        let Some(client) = self.client.clone() else {
            return Err(auction_client::ClientError::Local("no client".into()));
        };
        let item = self.shared.items[self.slots[slot].item].id;
        let view = client.status(item).await?;
        let channel = match (view.state, view.channel) {
            (ItemState::Open, Some(channel)) => channel,
            (ItemState::Open, None) => {
                return Err(auction_client::ClientError::Protocol(
                    "the item has no channel yet".into(),
                ))
            }
            _ => return Ok(false),
        };
        let ch = client.open_channel_of(item, &channel).await?;
        let s = &mut self.slots[slot];
        s.next_min = s.next_min.max(ch.next_min);
        let (writer, reader) = ch.split();
        s.writer = Some(writer);
        s.generation += 1;
        self.readers.push(Tagged {
            slot,
            generation: s.generation,
            reader: Some(reader),
        });
        Ok(true)
    }

    /// Sends `p` again on its reopened channel, with its id (the server answers it with its
    /// first verdict if it had judged it), and waits for the answer.
    async fn resend(&mut self, p: Pending) {
        let Some(writer) = self.slots[p.slot].writer.as_mut() else {
            return;
        };
        match writer.send_bid(p.amount, Some(p.id.clone())).await {
            Ok(req) => {
                self.await_answer(Pending {
                    req,
                    sent: Instant::now(),
                    ..p
                })
                .await
            }
            Err(_) => self.lose(p.slot, Some(&p)),
        }
    }

    async fn await_answer(&mut self, pending: Pending) {
        let deadline = tokio::time::Instant::from_std(pending.sent + ANSWER_TIMEOUT);
        loop {
            match timeout(
                deadline.saturating_duration_since(tokio::time::Instant::now()),
                self.readers.next(),
            )
            .await
            {
                Ok(Some(tag)) => {
                    if self.handle(tag, Some(&pending)) {
                        return;
                    }
                }
                Ok(None) | Err(_) => {
                    let s = &self.shared.stats;
                    s.unanswered.fetch_add(1, Ordering::Relaxed);
                    s.errors.add("no-answer");
                    tracing::warn!(bidder = self.index, item = self.shared.items[self.slots[pending.slot].item].id,
                        amount = %pending.amount, "a bid got no answer");
                    return;
                }
            }
        }
    }

    /// Handles one message; true when it answers `pending`. What a replaced channel still
    /// yields (its end, above all) is ignored: it must not take the reopened one down.
    fn handle(&mut self, (slot, generation, msg): Tag, pending: Option<&Pending>) -> bool {
        if generation != self.slots[slot].generation {
            return false;
        }
        let ours = |req: u64| pending.is_some_and(|p| p.slot == slot && p.req == req);
        let item_ix = self.slots[slot].item;
        let item = &self.shared.items[item_ix];
        let stats = &self.shared.stats;
        let waiting_here = pending.filter(|p| p.slot == slot);
        let Some(msg) = msg else {
            // The channel closed: its auction may be over (then `ended` is set already), or
            // the server went away; then the channel is looked up again, and a bid waiting
            // here is sent again.
            self.lose(slot, waiting_here);
            return waiting_here.is_some();
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(bidder = self.index, item = item.id, error = %e, "channel failed");
                self.lose(slot, waiting_here);
                return waiting_here.is_some();
            }
        };
        match msg.body {
            ChannelBody::Highest {
                amount,
                bidder,
                next_min,
                ..
            } => {
                stats.highest_received.fetch_add(1, Ordering::Relaxed);
                let s = &mut self.slots[slot];
                s.raise(amount, next_min);
                if let Some(b) = bidder_index(&self.shared.prefix, &bidder) {
                    if b != self.index {
                        let sent = item
                            .sent
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .at
                            .get(&(amount.0, b as u32))
                            .copied();
                        if let Some(sent) = sent {
                            stats.fan_out.record(msg.at.saturating_duration_since(sent));
                        }
                    }
                }
                false
            }
            ChannelBody::BidAccepted {
                req,
                amount,
                ends_at,
                next_min,
                ..
            } if ours(req) => {
                let p = pending.expect("ours");
                self.answered(p, msg.at);
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                self.slots[slot].raise(amount, next_min);
                let mut ledger = item.ledger.lock().unwrap_or_else(|p| p.into_inner());
                ledger.accepted += 1;
                ledger.ends_at = ledger.ends_at.max(ends_at);
                if !ledger.amounts.insert(amount.0) {
                    ledger.twice.push(amount.0);
                }
                if ledger.best.is_none_or(|(best, _)| amount > best) {
                    ledger.best = Some((amount, self.index));
                }
                true
            }
            ChannelBody::BidRejected {
                req,
                reason,
                next_min,
                ..
            } if ours(req) => {
                let p = pending.expect("ours");
                self.answered(p, msg.at);
                stats.rejected.add(reason.code());
                item.sent
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .at
                    .remove(&(p.amount.0, self.index as u32));
                if next_min.0 > 0 {
                    self.slots[slot].next_min = next_min;
                }
                if reason == Reason::AuctionOver {
                    self.slots[slot].writer = None;
                    self.slots[slot].ended = true;
                }
                true
            }
            ChannelBody::Error {
                req: Some(req),
                reason,
                ..
            } if ours(req) => {
                stats.errors.add(format!("bid-error-{}", reason.code()));
                true
            }
            ChannelBody::Error {
                req: None, reason, ..
            } => {
                stats.errors.add(format!("channel-error-{}", reason.code()));
                false
            }
            ChannelBody::BidOver { .. }
            | ChannelBody::SoldTo { .. }
            | ChannelBody::NotSold { .. } => {
                self.slots[slot].writer = None;
                self.slots[slot].ended = true;
                false
            }
            _ => false,
        }
    }

    fn answered(&self, p: &Pending, at: Instant) {
        let s = &self.shared.stats;
        s.answered.fetch_add(1, Ordering::Relaxed);
        s.round_trip.record(at.saturating_duration_since(p.due));
        self.shared
            .per_second
            .add(at.saturating_duration_since(self.start));
    }
}
