//! Saying things on the item's channel: `emit` holds a message in the outbox until storage has
//! made durable everything this item appended before it (`emit_after_all`: everything anyone
//! appended), `deliver` turns a released message into queue
//! entries, the HIGHEST watch and the view, and `send` drops a connection whose queue is full
//! rather than wait for it.

use auction_protocol::channel::{self, ChannelBody};
use auction_protocol::Cents;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

use super::{ItemTask, Out};
use crate::registry::inbox::{Alert, Change, ItemUpdate};
use crate::rules::auction;

/// An end moved by the group, with the auction as it stood then (see `Out::EndMoved`).
pub(crate) struct EndMoved {
    pub ends_at: u64,
    pub lead: Option<(Cents, String)>,
    pub next_min: Cents,
    pub reserve_met: Option<bool>,
    pub buy_now: Option<Cents>,
}

impl ItemTask {
    /// STATE from the view, which shows only durable bids.
    pub(super) fn state(&self, req: Option<u64>, you: &str) -> ChannelBody {
        let item = self.view.borrow().clone();
        ChannelBody::State {
            req,
            next_min: auction::next_min(item.min, item.highest, &self.ctx.config.increments),
            item,
            you: you.to_owned(),
        }
    }

    /// Says `out` once everything this item appended to storage so far is durable (and what
    /// it said before has been said): at once if it is.
    pub(super) fn emit(&mut self, out: Out) {
        if let Some(out) = self.outbox.admit_after(self.own_lsn, out) {
            self.deliver(out);
        }
    }

    /// Says `out` once everything anyone appended to storage so far is durable: for what
    /// rests on another task's records (a deregistration, stored by the registry).
    pub(super) fn emit_after_all(&mut self, out: Out) {
        if let Some(out) = self.outbox.admit(&*self.ctx.storage, out) {
            self.deliver(out);
        }
    }

    /// Delivers what storage has caught up with.
    pub(super) fn flush(&mut self) {
        while let Some(out) = self.outbox.release() {
            self.deliver(out);
        }
    }

    pub(super) fn deliver(&mut self, out: Out) {
        match out {
            Out::To(conn, body) => self.send(conn, body),
            Out::State { conn, req } => {
                if let Some(c) = self.conns.get(&conn) {
                    let state = self.state(req, &c.account.name);
                    self.send(conn, state);
                }
            }
            Out::Highest {
                amount,
                bidder,
                ends_at,
                next_min,
                reserve_met,
                buy_now,
                bid,
                outbid,
            } => {
                // (Not once the auction is over, as after a buy-it-now: the result says it all.
                // `result` is taken by then, the end has passed.)
                if let (Some(account), false) = (outbid, self.auction.is_over(self.now)) {
                    self.alert_if_away(Alert::Outbid {
                        account,
                        amount,
                        bidder: bidder.clone(),
                        next_min,
                        ends_at,
                    });
                }
                let terms = (reserve_met, buy_now);
                if self.grouped && bid.extended {
                    self.tell_registry(Change::Extended { ends_at });
                }
                self.ctx
                    .board
                    .bid(self.id, bid, amount, bidder.clone(), terms);
                self.view.send_modify(|v| {
                    v.highest = Some(amount);
                    v.bidder = Some(bidder.clone());
                    v.ends_at = ends_at;
                    v.reserve_met = reserve_met;
                    v.buy_now = buy_now;
                });
                let line = channel::encode_line(ChannelBody::Highest {
                    item: self.id,
                    amount,
                    bidder: bidder.clone(),
                    ends_at,
                    next_min: Some(next_min),
                    reserve_met,
                    buy_now,
                });
                self.highest.send_replace(Some(Arc::from(line)));
                self.report(Change::Highest {
                    amount,
                    bidder,
                    ends_at,
                });
            }
            Out::Counted(bid) => self.ctx.board.counted(self.id, bid),
            Out::Removed(removed) => self.removed(removed),
            Out::EndMoved(moved) => self.end_moved(moved),
            Out::Min(min) => {
                self.view.send_modify(|v| v.min = min);
                self.ctx.board.min_lowered(self.id, min);
                let (next_min, ends_at) = (self.auction.next_min(), self.auction.ends_at);
                let conns: Vec<u64> = self.conns.keys().copied().collect();
                for conn in conns {
                    let body = ChannelBody::PriceAdjustment {
                        item: self.id,
                        min,
                        next_min,
                    };
                    self.send(conn, body);
                }
                self.report(Change::Min { min, ends_at });
            }
        }
    }

    /// Says a durable end moved by the group: the view, the board, HIGHEST (when there is a
    /// lead) and STATE on the channel, BID-UPDATE to subscribers.
    fn end_moved(&mut self, moved: EndMoved) {
        let ends_at = moved.ends_at;
        self.view.send_modify(|v| v.ends_at = ends_at);
        self.ctx.board.end_moved(self.id, ends_at);
        if let Some((amount, bidder)) = moved.lead.clone() {
            let line = channel::encode_line(ChannelBody::Highest {
                item: self.id,
                amount,
                bidder,
                ends_at,
                next_min: Some(moved.next_min),
                reserve_met: moved.reserve_met,
                buy_now: moved.buy_now,
            });
            self.highest.send_replace(Some(Arc::from(line)));
        }
        let conns: Vec<u64> = self.conns.keys().copied().collect();
        for conn in conns {
            if let Some(c) = self.conns.get(&conn) {
                let state = self.state(None, &c.account.name);
                self.send(conn, state);
            }
        }
        if let Some((amount, bidder)) = moved.lead {
            self.report(Change::Highest {
                amount,
                bidder,
                ends_at,
            });
        }
    }

    /// Tells the registry something that is not for subscribers only (an alert, a group's
    /// extension). The task never waits for the registry: when its queue is full, a task of
    /// its own delivers it.
    pub(super) fn tell_registry(&mut self, change: Change) {
        let update = ItemUpdate {
            item: self.id,
            change,
        };
        match self.ctx.updates.try_send(update) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(update)) => {
                let updates = self.ctx.updates.clone();
                self.ctx.tasks.spawn(async move {
                    let _ = updates.send(update).await;
                });
            }
            // A node running items for a leader elsewhere: nothing listens here.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Tells the registry about a durable change, for the subscribers (if there are any).
    pub(super) fn report(&mut self, change: Change) {
        if self.watchers.count.load(Ordering::Relaxed) > 0 {
            let update = ItemUpdate {
                item: self.id,
                change,
            };
            if self.ctx.updates.try_send(update).is_err() {
                self.watchers.missed.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Queues `body` for `conn`. A connection whose queue is full is not keeping up: it is
    /// dropped (its writer closes it) rather than slowing the item down.
    pub(super) fn send(&mut self, conn: u64, body: ChannelBody) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = c.queue.try_send(body) {
            tracing::info!(conn, account = %c.account.name, "dropping a connection that does not read");
            self.ctx.metrics.dropped("queue-full");
            self.remove(conn);
        }
    }
}
