//! A bid on the item's channel: judged by the rules (`rules/auction.rs`) at once; an accepted
//! bid's record appended to storage, and its answer and any new HIGHEST said through the
//! outbox, so they leave only once the bid is durable. A rejected bid is not stored: its answer
//! goes through the outbox too (so the item state it was judged against is durable first), and
//! its id is kept for a while in memory only (`rules/rejected_ids.rs` argues why that is
//! enough).
//! A repeated bid id gets its first answer again.

use auction_protocol::channel::ChannelBody;
use auction_protocol::{names, Reason};

use super::{ItemTask, Out};
use crate::rules::auction::{Decision, Offer, Outcome};
use crate::rules::ratelimit;
use crate::rules::rejected_ids::Rejection;
use crate::store::Record;
use crate::web::BoardBid;

impl ItemTask {
    pub(super) fn bid(&mut self, conn: u64, req: u64, offer: Offer, id: Option<String>) {
        let Some(bidder) = self.conns.get(&conn).map(|c| c.account.clone()) else {
            return;
        };
        let now = self.now;
        if let Some(id) = id.as_deref() {
            if !names::valid_bid_id(id) {
                let message = "a bid id is 1 to 64 printable ASCII characters, no spaces";
                return self.refuse(conn, req, Reason::InvalidBidId, message.into());
            }
            if let Some(first) = self.auction.previous_outcome(bidder.id, id) {
                let first = first.clone();
                return self.reply(conn, req, &first);
            }
            if let Some(first) = self.rejected.get(bidder.id, id, self.mono.into_std()) {
                let Rejection { reason, message } = first.clone();
                return self.reply(conn, req, &Outcome::Rejected { reason, message });
            }
        }
        // A new bid spends one of the account's budget. Past it the bid is not judged: nothing
        // changes and nothing is stored, so `rate-limited` is no verdict to keep for its id
        // (PROTOCOL.md says so): sent again later, the same id is judged then, once.
        let (rate, burst) = (self.ctx.config.bid_rate, self.ctx.config.bid_burst);
        let mut budget = bidder.bid_budget.lock().unwrap_or_else(|p| p.into_inner());
        let spent = ratelimit::take(&mut budget, rate, burst, self.mono.into_std());
        drop(budget);
        if !spent {
            let message = format!("more than {rate} bids a second from this account; slow down");
            return self.refuse(conn, req, Reason::RateLimited, message);
        }
        let decision = self.auction.judge(&bidder, offer, now);
        let Decision { outcome, lead, .. } = &decision;
        // Accepted bids are the auction, stored before they are said. A rejection changes
        // nothing and is not stored; its id's verdict is kept in memory for the client's resend
        // budget (`rules/rejected_ids.rs`). Either is counted once, in the metrics.
        let mut record = None;
        match outcome {
            Outcome::Accepted { amount, .. } => {
                self.ctx.metrics.bids_accepted.inc();
                record = Some(Record::Bid {
                    item: self.id,
                    bidder: bidder.id,
                    amount: *amount,
                    bid_id: id.clone(),
                    outcome: outcome.clone(),
                    lead: lead.as_ref().map(|l| (l.bidder.id, l.amount, l.max)),
                    at: now,
                });
            }
            Outcome::Rejected { reason, message } => {
                self.ctx.metrics.bid_rejected(*reason);
                if let Some(id) = id.as_deref() {
                    let first = Rejection {
                        reason: *reason,
                        message: message.clone(),
                    };
                    self.rejected
                        .remember(bidder.id, id, first, self.mono.into_std());
                }
            }
        }
        let before = self
            .auction
            .lead()
            .map(|l| (l.amount, l.bidder.id, self.auction.ends_at));
        let leader_before = before.map(|b| b.1);
        let end_before = self.auction.ends_at;
        self.auction.apply(&bidder, &decision, id.as_deref());
        if let Some(record) = record {
            let mut records = vec![record];
            // A buy-it-now ended the auction: its result goes in the same transaction as the
            // bid, so no restart can find the bid without the close (and reopen the item).
            if self.auction.is_over(now) {
                let (result, closing) = self.result();
                records.extend(closing);
                self.result = Some(result);
            }
            self.append(records);
        }
        self.reply(conn, req, &decision.outcome);
        let Outcome::Accepted {
            amount,
            leading,
            max,
            ..
        } = decision.outcome
        else {
            return;
        };
        // The board's history: who bid, and at what; a proxy outbid at once was placed at its
        // maximum, which stays private.
        let placed = BoardBid {
            at: now,
            bidder: bidder.name.clone(),
            amount: (leading || max.is_none()).then_some(amount),
            ends_at: self.auction.ends_at,
            extended: self.auction.ends_at > end_before,
        };
        // HIGHEST only when what others see moved (a new private maximum moves nothing).
        match self.auction.lead() {
            Some(l) if before != Some((l.amount, l.bidder.id, self.auction.ends_at)) => {
                let (amount, bidder, ends_at) =
                    (l.amount, l.bidder.name.clone(), self.auction.ends_at);
                self.emit(Out::Highest {
                    amount,
                    bidder,
                    ends_at,
                    next_min: self.auction.next_min(),
                    reserve_met: self.auction.reserve_met(),
                    buy_now: self.auction.buy_now(),
                    bid: placed,
                    outbid: leader_before.filter(|&was| was != l.bidder.id),
                });
            }
            _ => self.emit(Out::Counted(placed)),
        }
    }

    /// Refuses a bid before judging it: nothing changes, nothing is stored.
    fn refuse(&mut self, conn: u64, req: u64, reason: Reason, message: String) {
        self.ctx.metrics.bid_rejected(reason);
        self.reply(conn, req, &Outcome::Rejected { reason, message });
    }

    pub(super) fn reply(&mut self, conn: u64, req: u64, outcome: &Outcome) {
        let body = match outcome {
            Outcome::Accepted {
                amount,
                ends_at,
                leading,
                max,
            } => ChannelBody::BidAccepted {
                req,
                amount: *amount,
                ends_at: *ends_at,
                leading: *leading,
                max: *max,
                next_min: Some(self.auction.next_min()),
            },
            Outcome::Rejected { reason, message } => ChannelBody::BidRejected {
                req,
                reason: *reason,
                message: message.clone(),
                highest: self.auction.lead().map(|l| l.amount),
                next_min: self.auction.next_min(),
            },
        };
        // `account-gone` rests on the registry's deregistration, not on this item's records:
        // it waits for everything appended before it (see the note in `item/mod.rs`).
        let out = Out::To(conn, body);
        match outcome {
            Outcome::Rejected {
                reason: Reason::AccountGone,
                ..
            } => self.emit_after_all(out),
            _ => self.emit(out),
        }
    }
}
