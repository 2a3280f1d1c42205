//! The operator's actions on an open item, which its task carries out (the registry checked
//! that the operator asked, `registry/operator.rs`):
//! - **cancel**: the item closes now, unsold, whatever its bids. The cancellation and the
//!   result are appended in one call, so they commit together; the close then runs as for a
//!   buy-it-now (`close.rs`), NOT-SOLD saying the operator cancelled it.
//! - **remove a bid**: the one command that makes the task wait. Everything the item appended
//!   is made durable, its bids in force are read back from storage, and all but the removed
//!   one are judged again (`rules::removal`); the lead that gives is appended with the
//!   removal. Bids queue meanwhile (one commit and one read, at an operator's pace).
//!
//! What the task says about either waits for its records like everything else (`Outbox`).

use auction_protocol::channel::{self, ChannelBody};
use auction_protocol::{Cents, Reason};
use std::sync::Arc;

use super::close::Closing;
use super::{ItemTask, Out};
use crate::accounts::{AccountHandle, AccountId};
use crate::rules::auction::Offer;
use crate::rules::refusal::Refusal;
use crate::rules::removal::{self, Placed};
use crate::store::sql::StoredBid;
use crate::store::{wait_durable, Record};

/// A removal as the channel, the view and the board hear of it, with the auction as it stood
/// right after it (later bids may have moved it by the time it is said).
pub(crate) struct Removed {
    bid: u64,
    bidder: String,
    /// The removed bid's amount, unless it was a proxy bid outbid at once (private).
    amount: Option<Cents>,
    note: String,
    /// Price and leader without it; `None` when no bid is left.
    lead: Option<(Cents, String)>,
    next_min: Cents,
    ends_at: u64,
    reserve_met: Option<bool>,
    buy_now: Option<Cents>,
}

impl ItemTask {
    /// The operator cancels the item: it ends now, unsold.
    pub(super) fn cancel(&mut self, operator: AccountId, note: String) -> Result<(), Refusal> {
        if self.auction.is_over(self.now) {
            return Err(closed(self.id));
        }
        let at = self.now;
        let notices = self.notices(None, true);
        self.append(vec![
            Record::ItemCancelled {
                item: self.id,
                operator,
                note: note.clone(),
                at,
            },
            Record::ItemClosed {
                item: self.id,
                winner: None,
                notices: notices.clone(),
                at,
            },
            // An unanswered negotiation request no longer matters.
            Record::negotiate_req_acked(self.id, at),
        ]);
        tracing::info!(operator, note, "the operator cancelled the item");
        self.result = Some(Closing {
            winner: None,
            notices,
            at,
            cancelled: Some(note),
        });
        Ok(())
    }

    /// The operator removes bid `bid`: the lead becomes what the other bids make it. Answers
    /// the price and leader after it.
    pub(super) async fn remove_bid(
        &mut self,
        operator: AccountId,
        bid: u64,
        note: String,
    ) -> Result<Option<(Cents, String)>, Refusal> {
        if self.auction.is_over(self.now) {
            return Err(closed(self.id));
        }
        let unavailable = |why: String| {
            tracing::warn!(bid, why, "could not read the item's bids to remove one");
            Refusal::new(
                Reason::Unavailable,
                "the item's bids could not be read; ask again".into(),
            )
        };
        // Every bid this item took must be in the database before its bids are read, and so
        // must everything anyone appended before (a deregistration, which decides whether
        // that account's bids still count).
        if !wait_durable(&*self.ctx.storage, self.ctx.storage.appended()).await {
            return Err(unavailable("storage stopped".into()));
        }
        let (storage, item) = (self.ctx.storage.clone(), self.id);
        let bids = tokio::task::spawn_blocking(move || storage.item_bids(item))
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .map_err(|e| unavailable(format!("{e:#}")))?;
        self.clock();
        self.flush();
        if self.auction.is_over(self.now) {
            return Err(closed(self.id));
        }
        let Some(removed) = bids.iter().find(|b| b.id == bid).cloned() else {
            return Err(Refusal::new(
                Reason::UnknownBid,
                format!(
                    "item {} has no bid #{bid} in force (`history {}` numbers its bids)",
                    self.id, self.id
                ),
            ));
        };
        let placed: Vec<Placed> = bids
            .iter()
            .filter(|b| b.id != bid)
            .map(|b| Placed {
                bidder: self.handle_of(b),
                offer: b.max.map_or(Offer::Amount(b.amount), Offer::Max),
                at: b.at,
            })
            .collect();
        let lead = removal::lead_without(&self.auction, placed);
        self.append(vec![Record::BidRemoved {
            item: self.id,
            bid,
            operator,
            note: note.clone(),
            lead: lead.as_ref().map(|l| (l.bidder.id, l.amount, l.max)),
            at: self.now,
        }]);
        self.auction.replace_lead(lead.clone());
        let answer = lead.as_ref().map(|l| (l.amount, l.bidder.name.clone()));
        tracing::info!(
            operator,
            bid,
            bidder = %removed.name,
            note,
            lead = ?answer,
            "the operator removed a bid"
        );
        self.emit(Out::Removed(Removed {
            bid,
            bidder: removed.name,
            amount: removed.shown,
            note,
            lead: answer.clone(),
            next_min: self.auction.next_min(),
            ends_at: self.auction.ends_at,
            reserve_met: self.auction.reserve_met(),
            buy_now: self.auction.buy_now(),
        }));
        // The answer goes out once the removal is said here (the view updated), so whoever
        // reads the item after the operator's answer sees it.
        if wait_durable(&*self.ctx.storage, self.own_lsn).await {
            self.clock();
            self.flush();
        }
        Ok(answer)
    }

    /// The account behind a stored bid: the server's own handle while the account exists
    /// (so a deregistration reaches it), else one that cannot bid.
    fn handle_of(&self, bid: &StoredBid) -> Arc<AccountHandle> {
        if let Some(h) = self
            .ctx
            .keys
            .lookup(&bid.key)
            .filter(|h| h.id == bid.bidder)
        {
            return h;
        }
        let handle = AccountHandle::new(bid.bidder, bid.name.clone(), bid.key);
        handle.set_live(bid.live);
        Arc::new(handle)
    }

    /// Says a durable removal: the view, HIGHEST and the board as the auction stands without
    /// the bid, BID-REMOVED and a fresh STATE to every connection, BID-UPDATE to subscribers.
    pub(super) fn removed(&mut self, r: Removed) {
        let (highest, leader) = match &r.lead {
            Some((amount, bidder)) => (Some(*amount), Some(bidder.clone())),
            None => (None, None),
        };
        self.view.send_modify(|v| {
            v.highest = highest;
            v.bidder = leader.clone();
            v.reserve_met = r.reserve_met;
            v.buy_now = r.buy_now;
        });
        self.ctx
            .board
            .bid_removed(self.id, highest, leader.clone(), (r.reserve_met, r.buy_now));
        let line = r.lead.as_ref().map(|(amount, bidder)| {
            Arc::from(channel::encode_line(ChannelBody::Highest {
                item: self.id,
                amount: *amount,
                bidder: bidder.clone(),
                ends_at: r.ends_at,
                next_min: Some(r.next_min),
                reserve_met: r.reserve_met,
                buy_now: r.buy_now,
            }))
        });
        self.highest.send_replace(line);
        let conns: Vec<u64> = self.conns.keys().copied().collect();
        for conn in conns {
            self.send(
                conn,
                ChannelBody::BidRemoved {
                    item: self.id,
                    bid: r.bid,
                    bidder: r.bidder.clone(),
                    amount: r.amount,
                    note: r.note.clone(),
                },
            );
            if let Some(c) = self.conns.get(&conn) {
                let state = self.state(None, &c.account.name);
                self.send(conn, state);
            }
        }
        if let Some((amount, bidder)) = r.lead {
            self.report(crate::registry::inbox::Change::Highest {
                amount,
                bidder,
                ends_at: r.ends_at,
            });
        }
    }
}

fn closed(item: u64) -> Refusal {
    Refusal::new(Reason::AuctionOver, format!("item {item} has closed"))
}
