//! The rules of one auction, without I/O or clocks: what bid is acceptable, when the auction
//! ends (including soft-close extensions), who won, and how proxy bids answer each other. The
//! item task (`item/`) owns one of these and passes the current time in.
//!
//! Proxy bidding (eBay-style): a bid may name a private maximum instead of an amount. The
//! server then bids for that account, one increment above whoever challenges it, up to the
//! maximum. Only the leader's maximum can matter (a proxy that was outbid is below the price,
//! and prices only rise), so the state is the lead plus the leader's maximum. Visible prices
//! follow the second-highest maximum plus one increment; between equal maximums the earlier
//! one wins.
//!
//! One piece at ~700 lines: 370 lines of rules, the rest their unit tests, which exercise how
//! the rules interact (proxies against soft close, bid ids against restarts) and read best
//! beside them.

use auction_protocol::{Cents, Reason};
use std::collections::HashMap;
use std::sync::Arc;

use crate::accounts::{AccountHandle, AccountId};
use crate::rules::increments::Increments;
use crate::rules::refusal::Refusal;

/// Policy that every auction on this server follows.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The smallest raise over the highest bid, by the band that bid is in.
    pub increments: Arc<Increments>,
    /// An accepted bid this close to the end (ms)...
    pub snipe_window_ms: u64,
    /// ...moves the end to this long after the bid (ms). Both are scaled down for short
    /// auctions: [`Rules::soft_close`].
    pub snipe_extension_ms: u64,
}

/// The soft-close window and extension of an auction are each at most this fraction of its
/// length (1 / `SOFT_CLOSE_SHARE`).
pub const SOFT_CLOSE_SHARE: u64 = 4;

impl Rules {
    /// The soft-close window and extension (ms) of an auction `length_ms` long (from its offer
    /// to its end as it stands): the configured ones, each at most a quarter of the length.
    /// Without the cap a 20 s auction's first bid would move its end 30 s out, longer than
    /// the auction itself; with it, auctions of four windows or more (2 min with the defaults)
    /// keep the configured figures.
    pub fn soft_close(&self, length_ms: u64) -> (u64, u64) {
        let cap = length_ms / SOFT_CLOSE_SHARE;
        (
            self.snipe_window_ms.min(cap),
            self.snipe_extension_ms.min(cap),
        )
    }
}

/// The smallest acceptable bid: the minimum, or the highest bid plus its band's increment.
pub fn next_min(min: Cents, highest: Option<Cents>, increments: &Increments) -> Cents {
    match highest {
        None => min,
        Some(h) => increments.above(h),
    }
}

/// When an item with no bid is offered to its seller for negotiation: half its time after it
/// was offered (Unix ms).
pub fn negotiate_at(offered_at: u64, ends_at: u64) -> u64 {
    offered_at + ends_at.saturating_sub(offered_at) / 2
}

/// Whether a negotiation request is due for an item: its time has come, it has had no bid, and
/// it is still open.
pub fn negotiation_due(now: u64, negotiate_at: u64, ends_at: u64, has_bid: bool) -> bool {
    !has_bid && now >= negotiate_at && now < ends_at
}

/// The leading bid.
#[derive(Debug, Clone)]
pub struct Lead {
    /// The visible price.
    pub amount: Cents,
    pub bidder: Arc<AccountHandle>,
    /// The leader's private proxy maximum, when it bid by proxy and the maximum is above the
    /// price. Never shown to anyone else.
    pub max: Option<Cents>,
}

impl Lead {
    /// The most the leader has agreed to pay.
    pub fn ceiling(&self) -> Cents {
        self.max.map_or(self.amount, |m| m.max(self.amount))
    }
}

/// The answer to one bid; an accepted bid's is kept per bid id so a repeated id gets the same
/// answer (a rejected one's, for a while, in `rejected_ids`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted {
        /// The bid as placed: the amount of a direct bid, the price a proxy bid reached (or
        /// its maximum, when another proxy outbid it at once).
        amount: Cents,
        ends_at: u64,
        /// False when a competitor's proxy outbid this bid at once: it counted (the price
        /// rose) but someone else leads.
        leading: bool,
        /// The maximum of a proxy bid, echoed to its bidder only.
        max: Option<Cents>,
    },
    Rejected {
        reason: Reason,
        message: String,
    },
}

/// A judged bid: the answer, and the lead afterwards when the bid changed it. (The end
/// afterwards is in an accepted outcome; a rejected bid leaves it.)
#[derive(Debug, Clone)]
pub struct Decision {
    pub outcome: Outcome,
    /// The new lead (price, leader, leader's maximum); `None` when nothing changed.
    pub lead: Option<Lead>,
}

/// What a bid offers: a fixed amount, a proxy maximum, or the buy-it-now price (as the bidder
/// saw it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Amount(Cents),
    Max(Cents),
    BuyNow(Cents),
}

impl Offer {
    /// The most this bid will pay.
    pub fn ceiling(self) -> Cents {
        match self {
            Offer::Amount(a) | Offer::Max(a) | Offer::BuyNow(a) => a,
        }
    }
}

/// What the seller set besides the minimum: a reserve price (the lowest it accepts, hidden
/// from bidders, who see whether it is met) and a buy-it-now price (open until the first bid,
/// or with a reserve until the reserve is met). `rules::offer` checks them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Terms {
    pub reserve: Option<Cents>,
    pub buy_now: Option<Cents>,
}

impl Terms {
    /// With `highest` the highest bid: whether it met the reserve (on an item with one).
    pub fn reserve_met(&self, highest: Option<Cents>) -> Option<bool> {
        let reserve = self.reserve?;
        Some(highest.is_some_and(|h| h >= reserve))
    }

    /// With `highest` the highest bid of an open item: the buy-it-now price while it is
    /// offered (until the first bid, or, on an item with a reserve, until the reserve is met).
    pub fn buy_now(&self, highest: Option<Cents>) -> Option<Cents> {
        let price = self.buy_now?;
        let open = match self.reserve_met(highest) {
            Some(met) => !met,
            None => highest.is_none(),
        };
        open.then_some(price)
    }
}

#[derive(Debug)]
pub struct Auction {
    pub min: Cents,
    pub seller: AccountId,
    /// When it was offered (Unix ms): with `ends_at`, its length, which scales soft close.
    offered_at: u64,
    /// Unix ms.
    pub ends_at: u64,
    rules: Rules,
    terms: Terms,
    lead: Option<Lead>,
    /// First outcome of every accepted bid that carried an id, by (account, id), until the
    /// item closes: these are stored, so a restart loads them back. (Also the rejected ones
    /// that earlier versions of the server stored: their rows hold the id's place in the database, so the
    /// id must never be accepted under another row.) Rejected ids are not here: see
    /// `rules/rejected_ids.rs`.
    by_bid_id: HashMap<(AccountId, String), Outcome>,
}

impl Auction {
    pub fn new(
        min: Cents,
        seller: AccountId,
        offered_at: u64,
        ends_at: u64,
        rules: Rules,
        terms: Terms,
    ) -> Auction {
        Auction {
            min,
            seller,
            offered_at,
            ends_at,
            rules,
            terms,
            lead: None,
            by_bid_id: HashMap::new(),
        }
    }

    /// An auction as it was stored: its lead and the first answer to every bid id.
    pub fn restore(
        mut self,
        lead: Option<Lead>,
        bid_ids: impl IntoIterator<Item = (AccountId, String, Outcome)>,
    ) -> Auction {
        self.lead = lead;
        self.by_bid_id = bid_ids
            .into_iter()
            .map(|(bidder, id, outcome)| ((bidder, id), outcome))
            .collect();
        self
    }

    pub fn lead(&self) -> Option<&Lead> {
        self.lead.as_ref()
    }

    /// When it was offered (Unix ms).
    pub fn offered_at(&self) -> u64 {
        self.offered_at
    }

    /// The same auction (minimum, terms, rules, end) without any bid: where the bids still in
    /// force are judged again after the operator removed one (`rules::removal`).
    pub fn unbid(&self) -> Auction {
        Auction::new(
            self.min,
            self.seller,
            self.offered_at,
            self.ends_at,
            self.rules.clone(),
            self.terms,
        )
    }

    /// The operator removed a bid: the lead becomes `lead` (the remaining bids judged again),
    /// the end stays. The answers to bid ids stay too: a resent id gets its first answer.
    pub fn replace_lead(&mut self, lead: Option<Lead>) {
        self.lead = lead;
    }

    /// On an item with a reserve: whether the highest bid reached it.
    pub fn reserve_met(&self) -> Option<bool> {
        self.terms.reserve_met(self.lead.as_ref().map(|l| l.amount))
    }

    /// The buy-it-now price while it is offered (see [`Terms::buy_now`]).
    pub fn buy_now(&self) -> Option<Cents> {
        self.terms.buy_now(self.lead.as_ref().map(|l| l.amount))
    }

    /// Who wins if the auction ends now: the lead, when it reached the reserve (if any).
    pub fn winner(&self) -> Option<&Lead> {
        self.lead
            .as_ref()
            .filter(|l| self.terms.reserve.is_none_or(|r| l.amount >= r))
    }

    /// The smallest amount that would be accepted now.
    pub fn next_min(&self) -> Cents {
        next_min(
            self.min,
            self.lead.as_ref().map(|l| l.amount),
            &self.rules.increments,
        )
    }

    pub fn is_over(&self, now_ms: u64) -> bool {
        now_ms >= self.ends_at
    }

    /// The seller accepted a negotiation: the minimum becomes `min`. Only while no one has
    /// bid, the auction runs, and `min` is lower than the minimum now (and not zero).
    pub fn lower_min(&mut self, min: Cents, now_ms: u64) -> Result<(), Refusal> {
        if self.is_over(now_ms) {
            return Err(Refusal::new(
                Reason::AuctionOver,
                "the auction has ended".into(),
            ));
        }
        if let Some(l) = &self.lead {
            return Err(Refusal::new(
                Reason::HasBids,
                format!(
                    "the item has a bid of {} now; its minimum no longer matters",
                    l.amount
                ),
            ));
        }
        if min.0 == 0 || min >= self.min {
            return Err(Refusal::new(
                Reason::InvalidAmount,
                format!(
                    "the new minimum must be above 0 and below the minimum now, {}",
                    self.min
                ),
            ));
        }
        self.min = min;
        Ok(())
    }

    /// The first outcome of a bid id this account already had accepted (or, from an old
    /// database, rejected), if any.
    pub fn previous_outcome(&self, bidder: AccountId, id: &str) -> Option<&Outcome> {
        self.by_bid_id.get(&(bidder, id.to_owned()))
    }

    /// Judges and applies a bid in one step: the item task's sequence (`previous_outcome`,
    /// `judge`, append to storage, `apply`), for the rule tests.
    #[cfg(test)]
    pub fn bid(
        &mut self,
        bidder: &Arc<AccountHandle>,
        offer: Offer,
        id: Option<&str>,
        now_ms: u64,
    ) -> Outcome {
        if let Some(first) = id.and_then(|id| self.previous_outcome(bidder.id, id)) {
            return first.clone();
        }
        let decision = self.judge(bidder, offer, now_ms);
        self.apply(bidder, &decision, id);
        decision.outcome
    }

    /// Makes a judged bid take effect: the new lead and end, and an accepted bid id's answer.
    /// A rejected bid changes nothing here.
    pub fn apply(&mut self, bidder: &Arc<AccountHandle>, decision: &Decision, id: Option<&str>) {
        if let Some(lead) = &decision.lead {
            self.lead = Some(lead.clone());
        }
        if let Outcome::Accepted { ends_at, .. } = decision.outcome {
            self.ends_at = ends_at;
            if let Some(id) = id {
                self.by_bid_id
                    .insert((bidder.id, id.to_owned()), decision.outcome.clone());
            }
        }
    }

    /// What a bid at `now_ms` would get, without changing anything.
    pub fn judge(&self, bidder: &Arc<AccountHandle>, offer: Offer, now_ms: u64) -> Decision {
        let reject = |reason, message: String| Decision {
            outcome: Outcome::Rejected { reason, message },
            lead: None,
        };
        if self.is_over(now_ms) {
            return reject(Reason::AuctionOver, "bidding on this item has ended".into());
        }
        if bidder.id == self.seller {
            return reject(
                Reason::OwnItem,
                "sellers cannot bid on their own items".into(),
            );
        }
        if !bidder.is_live() {
            return reject(
                Reason::AccountGone,
                "this account has been deregistered".into(),
            );
        }
        let ceiling = offer.ceiling();
        if ceiling.0 > auction_protocol::limits::MAX_AMOUNT_CENTS {
            return reject(
                Reason::InvalidAmount,
                "the amount is larger than allowed".into(),
            );
        }
        if let Offer::BuyNow(amount) = offer {
            return self.buy_now_decision(bidder, amount, now_ms);
        }
        let next = self.next_min();
        if ceiling < next {
            let message = match &self.lead {
                None => format!("the minimum bid is {next}"),
                Some(l) => format!("the highest bid is {}; bid at least {next}", l.amount),
            };
            return reject(Reason::TooLow, message);
        }
        let plus_inc = |c: Cents| self.rules.increments.above(c);
        let proxy_max = |price: Cents| match offer {
            Offer::Max(m) if m > price => Some(m),
            _ => None,
        };
        // The lead after the bid, and whether the bidder holds it.
        let (lead, leading) = match &self.lead {
            // The leader raises its own bid, or its maximum.
            Some(l) if l.bidder.id == bidder.id => match offer {
                Offer::Amount(a) | Offer::BuyNow(a) => {
                    let max = l.max.filter(|&m| m > a);
                    (
                        Lead {
                            amount: a,
                            bidder: bidder.clone(),
                            max,
                        },
                        true,
                    )
                }
                Offer::Max(m) if m <= l.ceiling() => {
                    return reject(
                        Reason::TooLow,
                        format!("you already lead with a maximum of {}", l.ceiling()),
                    );
                }
                Offer::Max(m) => (
                    Lead {
                        max: Some(m),
                        ..l.clone()
                    },
                    true,
                ),
            },
            None => {
                let price = match offer {
                    Offer::Amount(a) | Offer::BuyNow(a) => a,
                    Offer::Max(_) => next,
                };
                let lead = Lead {
                    amount: price,
                    bidder: bidder.clone(),
                    max: proxy_max(price),
                };
                (lead, true)
            }
            // A challenger that beats the leader's ceiling leads, one increment above it.
            Some(l) if ceiling > l.ceiling() => {
                let price = match offer {
                    Offer::Amount(a) | Offer::BuyNow(a) => a,
                    Offer::Max(m) => m.min(plus_inc(l.ceiling())),
                };
                let lead = Lead {
                    amount: price,
                    bidder: bidder.clone(),
                    max: proxy_max(price),
                };
                (lead, true)
            }
            // The leader's proxy answers: it stays ahead, one increment above the challenger
            // (or at its maximum; at equal maximums the earlier one wins).
            Some(l) => {
                let top = l.ceiling();
                let price = top.min(plus_inc(ceiling));
                let lead = Lead {
                    amount: price,
                    bidder: l.bidder.clone(),
                    max: Some(top).filter(|&m| m > price),
                };
                (lead, false)
            }
        };
        // A proxy whose maximum reaches the reserve bids the reserve at once (a price below
        // it would not sell the item, and the maximum says the bidder would pay it).
        let mut lead = lead;
        if let Some(reserve) = self.terms.reserve {
            if lead.amount < reserve && lead.ceiling() >= reserve {
                lead.amount = reserve;
                lead.max = lead.max.filter(|&m| m > reserve);
            }
        }
        let price_moved = self
            .lead
            .as_ref()
            .is_none_or(|l| l.amount != lead.amount || l.bidder.id != lead.bidder.id);
        let (window, extension) = self
            .rules
            .soft_close(self.ends_at.saturating_sub(self.offered_at));
        let ends_at = if price_moved && self.ends_at.saturating_sub(now_ms) < window {
            self.ends_at.max(now_ms.saturating_add(extension))
        } else {
            self.ends_at
        };
        let (amount, max) = match (offer, leading) {
            (Offer::Amount(a) | Offer::BuyNow(a), _) => (a, None),
            (Offer::Max(m), true) => (lead.amount, Some(m)),
            (Offer::Max(m), false) => (m, Some(m)),
        };
        Decision {
            outcome: Outcome::Accepted {
                amount,
                ends_at,
                leading,
                max,
            },
            lead: Some(lead),
        }
    }
}

impl Auction {
    /// `buy-now` at `amount`: the bidder takes the item at the buy-it-now price, and the
    /// auction ends now (inside a soft-close extension too).
    fn buy_now_decision(
        &self,
        bidder: &Arc<AccountHandle>,
        amount: Cents,
        now_ms: u64,
    ) -> Decision {
        let reject = |reason, message: String| Decision {
            outcome: Outcome::Rejected { reason, message },
            lead: None,
        };
        let Some(price) = self.buy_now() else {
            let message = match (self.terms.buy_now, self.terms.reserve) {
                (None, _) => "this item has no buy-it-now price",
                (Some(_), None) => "buy it now ended with the first bid",
                (Some(_), Some(_)) => "buy it now ended when the reserve was met",
            };
            return reject(Reason::BuyNowUnavailable, message.into());
        };
        if amount != price {
            return reject(
                Reason::InvalidAmount,
                format!("the buy-it-now price is {price}, not {amount}"),
            );
        }
        Decision {
            outcome: Outcome::Accepted {
                amount: price,
                ends_at: now_ms,
                leading: true,
                max: None,
            },
            lead: Some(Lead {
                amount: price,
                bidder: bidder.clone(),
                max: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auction_protocol::PublicKey;

    fn rules() -> Rules {
        Rules {
            increments: Arc::new(Increments::fixed(Cents(50))),
            snipe_window_ms: 30_000,
            snipe_extension_ms: 30_000,
        }
    }

    fn who(id: AccountId) -> Arc<AccountHandle> {
        Arc::new(AccountHandle::new(
            id,
            format!("u{id}"),
            PublicKey([id as u8; 32]),
        ))
    }

    fn auction() -> Auction {
        // Seller 1, minimum 10.00, offered at t = 0, ends at t = 300 s.
        Auction::new(Cents(1000), 1, 0, 300_000, rules(), Terms::default())
    }

    fn accepted(o: &Outcome) -> bool {
        matches!(o, Outcome::Accepted { .. })
    }

    fn reason(o: &Outcome) -> Option<Reason> {
        match o {
            Outcome::Rejected { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    #[test]
    fn negotiation_is_due_at_half_the_time_only_without_bids() {
        // Offered at t = 100 s for 300 s: due at 250 s.
        let at = negotiate_at(100_000, 400_000);
        assert_eq!(at, 250_000);
        assert!(!negotiation_due(249_999, at, 400_000, false));
        assert!(negotiation_due(250_000, at, 400_000, false));
        assert!(!negotiation_due(250_000, at, 400_000, true), "it has a bid");
        assert!(
            !negotiation_due(400_000, at, 400_000, false),
            "it has ended"
        );
    }

    #[test]
    fn only_a_lower_minimum_of_an_unbid_running_auction_is_taken() {
        let mut a = auction();
        let refused = |r: Result<(), Refusal>| r.unwrap_err().reason;
        assert_eq!(refused(a.lower_min(Cents(1000), 1)), Reason::InvalidAmount);
        assert_eq!(refused(a.lower_min(Cents(0), 1)), Reason::InvalidAmount);
        assert_eq!(
            refused(a.lower_min(Cents(500), 300_000)),
            Reason::AuctionOver
        );
        a.lower_min(Cents(600), 1).unwrap();
        assert_eq!(a.next_min(), Cents(600));
        assert_eq!(
            reason(&a.bid(&who(2), Offer::Amount(Cents(599)), None, 2)),
            Some(Reason::TooLow)
        );
        assert!(accepted(&a.bid(
            &who(2),
            Offer::Amount(Cents(600)),
            None,
            2
        )));
        assert_eq!(refused(a.lower_min(Cents(500), 3)), Reason::HasBids);
    }

    #[test]
    fn first_bid_must_reach_the_minimum_and_later_ones_the_increment() {
        let mut a = auction();
        let (b, c) = (who(2), who(3));
        assert_eq!(
            reason(&a.bid(&b, Offer::Amount(Cents(999)), None, 0)),
            Some(Reason::TooLow)
        );
        assert!(accepted(&a.bid(&b, Offer::Amount(Cents(1000)), None, 0)));
        assert_eq!(a.next_min(), Cents(1050));
        assert_eq!(
            reason(&a.bid(&c, Offer::Amount(Cents(1049)), None, 1)),
            Some(Reason::TooLow)
        );
        assert!(accepted(&a.bid(&c, Offer::Amount(Cents(1050)), None, 1)));
        assert_eq!(a.lead().unwrap().bidder.id, 3);
    }

    #[test]
    fn seller_dead_accounts_and_late_bids_are_refused() {
        let mut a = auction();
        assert_eq!(
            reason(&a.bid(&who(1), Offer::Amount(Cents(5000)), None, 0)),
            Some(Reason::OwnItem)
        );
        let gone = who(4);
        gone.set_live(false);
        assert_eq!(
            reason(&a.bid(&gone, Offer::Amount(Cents(5000)), None, 0)),
            Some(Reason::AccountGone)
        );
        assert_eq!(
            reason(&a.bid(&who(2), Offer::Amount(Cents(5000)), None, 300_000)),
            Some(Reason::AuctionOver)
        );
        assert!(a.lead().is_none());
    }

    #[test]
    fn a_short_auction_gets_a_quarter_of_its_length_as_window_and_extension() {
        // 20 s long with a 30 s window: a bid 8 s before the end is outside the 5 s window.
        let mut a = Auction::new(Cents(1000), 1, 100_000, 120_000, rules(), Terms::default());
        assert_eq!(rules().soft_close(20_000), (5_000, 5_000));
        assert_eq!(rules().soft_close(300_000), (30_000, 30_000));
        assert_eq!(
            a.bid(&who(2), Offer::Amount(Cents(1000)), None, 112_000),
            Outcome::Accepted {
                amount: Cents(1000),
                ends_at: 120_000,
                leading: true,
                max: None,
            }
        );
        // 2 s before the end: the end moves 5 s after the bid, not 30 s.
        assert_eq!(
            a.bid(&who(3), Offer::Amount(Cents(2000)), None, 118_000),
            Outcome::Accepted {
                amount: Cents(2000),
                ends_at: 123_000,
                leading: true,
                max: None,
            }
        );
        // The length is now 23 s: the window grows with it, still a quarter (5.75 s).
        assert!(accepted(&a.bid(
            &who(2),
            Offer::Amount(Cents(3000)),
            None,
            118_500
        )));
        assert_eq!(a.ends_at, 124_250);
    }

    #[test]
    fn bids_in_the_snipe_window_extend_the_end() {
        let mut a = auction();
        // 100 s before the end: no change.
        assert_eq!(
            a.bid(&who(2), Offer::Amount(Cents(1000)), None, 200_000),
            Outcome::Accepted {
                amount: Cents(1000),
                ends_at: 300_000,
                leading: true,
                max: None,
            }
        );
        // 10 s before the end: the end moves to 30 s after the bid.
        assert_eq!(
            a.bid(&who(3), Offer::Amount(Cents(2000)), None, 290_000),
            Outcome::Accepted {
                amount: Cents(2000),
                ends_at: 320_000,
                leading: true,
                max: None,
            }
        );
        // A bid just before the new end extends again; the old end no longer applies.
        assert!(!a.is_over(300_000));
        assert!(accepted(&a.bid(
            &who(2),
            Offer::Amount(Cents(3000)),
            None,
            319_999
        )));
        assert_eq!(a.ends_at, 349_999);
        assert!(a.is_over(349_999));
    }

    #[test]
    fn a_repeated_bid_id_gets_its_first_answer_and_counts_once() {
        let mut a = auction();
        let (b, c) = (who(2), who(3));
        let first = a.bid(&b, Offer::Amount(Cents(1000)), Some("x"), 0);
        assert!(accepted(&first));
        assert!(accepted(&a.bid(&c, Offer::Amount(Cents(2000)), None, 1)));
        // b resends "x" after c outbid: same answer as before, and c still leads.
        assert_eq!(a.bid(&b, Offer::Amount(Cents(1000)), Some("x"), 2), first);
        assert_eq!(a.lead().unwrap().bidder.id, 3);
        // A rejection changes nothing, its id included: the same id is judged again (the
        // item task keeps recent rejections apart, in `rejected_ids`).
        let low = a.bid(&b, Offer::Amount(Cents(10)), Some("y"), 3);
        assert_eq!(reason(&low), Some(Reason::TooLow));
        assert!(a.previous_outcome(2, "y").is_none());
        assert!(accepted(&a.bid(
            &b,
            Offer::Amount(Cents(9000)),
            Some("y"),
            4
        )));
        assert_eq!(a.lead().unwrap().bidder.id, 2);
        // Ids are per account: c may use "x" too.
        assert!(accepted(&a.bid(
            &c,
            Offer::Amount(Cents(10000)),
            Some("x"),
            5
        )));
    }

    #[test]
    fn a_rejected_id_stored_by_an_earlier_version_keeps_its_first_answer() {
        // Its row holds the id's place in the database (UNIQUE (item, bidder, bid_id)): were
        // it judged again and accepted, the accepted row could not be written.
        let old = Outcome::Rejected {
            reason: Reason::TooLow,
            message: "the minimum bid is 10.00".into(),
        };
        let mut a = auction().restore(None, [(2, "old".to_string(), old.clone())]);
        assert_eq!(
            a.bid(&who(2), Offer::Amount(Cents(5000)), Some("old"), 0),
            old
        );
        assert!(a.lead().is_none());
    }

    /// The price and leader now, and the leader's private maximum.
    fn state(a: &Auction) -> (Cents, AccountId, Option<Cents>) {
        let l = a.lead().unwrap();
        (l.amount, l.bidder.id, l.max)
    }

    fn leading(o: &Outcome) -> bool {
        matches!(o, Outcome::Accepted { leading: true, .. })
    }

    #[test]
    fn a_proxy_bid_starts_at_the_minimum_and_keeps_its_maximum_private() {
        let mut a = auction();
        let o = a.bid(&who(2), Offer::Max(Cents(5000)), None, 0);
        assert_eq!(
            o,
            Outcome::Accepted {
                amount: Cents(1000),
                ends_at: 300_000,
                leading: true,
                max: Some(Cents(5000)),
            }
        );
        assert_eq!(state(&a), (Cents(1000), 2, Some(Cents(5000))));
        // What others see is the price: the next acceptable bid is one increment above it.
        assert_eq!(a.next_min(), Cents(1050));
        // A maximum below the minimum is too low, like a bid.
        let mut b = auction();
        assert_eq!(
            reason(&b.bid(&who(2), Offer::Max(Cents(999)), None, 0)),
            Some(Reason::TooLow)
        );
    }

    #[test]
    fn a_direct_bid_below_the_proxy_maximum_is_answered_one_increment_above() {
        let mut a = auction();
        a.bid(&who(2), Offer::Max(Cents(5000)), None, 0);
        let o = a.bid(&who(3), Offer::Amount(Cents(2000)), None, 1);
        // It counted (the price rose) but the proxy leads.
        assert!(accepted(&o) && !leading(&o), "{o:?}");
        assert_eq!(state(&a), (Cents(2050), 2, Some(Cents(5000))));
        // A bid just under the maximum: the proxy can only go to its maximum.
        let o = a.bid(&who(3), Offer::Amount(Cents(4990)), None, 2);
        assert!(!leading(&o));
        assert_eq!(state(&a), (Cents(5000), 2, None));
        // Above the maximum: the direct bidder leads at its amount.
        let o = a.bid(&who(3), Offer::Amount(Cents(5050)), None, 3);
        assert!(leading(&o));
        assert_eq!(state(&a), (Cents(5050), 3, None));
    }

    #[test]
    fn a_bid_equal_to_the_proxy_maximum_loses_to_the_earlier_maximum() {
        let mut a = auction();
        a.bid(&who(2), Offer::Max(Cents(5000)), None, 0);
        let o = a.bid(&who(3), Offer::Amount(Cents(5000)), None, 1);
        assert!(accepted(&o) && !leading(&o));
        assert_eq!(state(&a), (Cents(5000), 2, None));
    }

    #[test]
    fn two_proxies_the_higher_maximum_leads_at_the_second_maximum_plus_one_increment() {
        let mut a = auction();
        a.bid(&who(2), Offer::Max(Cents(3000)), None, 0);
        let o = a.bid(&who(3), Offer::Max(Cents(8000)), None, 1);
        assert_eq!(
            o,
            Outcome::Accepted {
                amount: Cents(3050),
                ends_at: 300_000,
                leading: true,
                max: Some(Cents(8000)),
            }
        );
        assert_eq!(state(&a), (Cents(3050), 3, Some(Cents(8000))));
        // A lower proxy arriving later is answered at once: it shows its maximum as its bid.
        let o = a.bid(&who(4), Offer::Max(Cents(6000)), None, 2);
        assert_eq!(
            o,
            Outcome::Accepted {
                amount: Cents(6000),
                ends_at: 300_000,
                leading: false,
                max: Some(Cents(6000)),
            }
        );
        assert_eq!(state(&a), (Cents(6050), 3, Some(Cents(8000))));
    }

    #[test]
    fn equal_maximums_the_earlier_proxy_wins() {
        let mut a = auction();
        a.bid(&who(2), Offer::Max(Cents(4000)), None, 0);
        let o = a.bid(&who(3), Offer::Max(Cents(4000)), None, 1);
        assert!(accepted(&o) && !leading(&o));
        assert_eq!(state(&a), (Cents(4000), 2, None));
        // One cent more does beat it, at that amount (an increment would exceed the maximum).
        let o = a.bid(&who(3), Offer::Max(Cents(4060)), None, 2);
        assert!(leading(&o));
        assert_eq!(state(&a), (Cents(4050), 3, Some(Cents(4060))));
    }

    #[test]
    fn the_leader_may_raise_its_maximum_without_moving_the_price() {
        let mut a = auction();
        a.bid(&who(2), Offer::Max(Cents(2000)), None, 0);
        let o = a.bid(&who(2), Offer::Max(Cents(9000)), None, 1);
        assert!(leading(&o));
        assert_eq!(state(&a), (Cents(1000), 2, Some(Cents(9000))));
        // Lowering it, or repeating it, is refused and changes nothing.
        assert_eq!(
            reason(&a.bid(&who(2), Offer::Max(Cents(5000)), None, 2)),
            Some(Reason::TooLow)
        );
        assert_eq!(state(&a), (Cents(1000), 2, Some(Cents(9000))));
    }

    #[test]
    fn a_proxy_answer_in_the_snipe_window_extends_the_end_but_a_new_maximum_does_not() {
        let mut a = auction();
        a.bid(&who(2), Offer::Max(Cents(5000)), None, 0);
        a.bid(&who(2), Offer::Max(Cents(6000)), None, 290_000);
        assert_eq!(a.ends_at, 300_000, "only the private maximum changed");
        a.bid(&who(3), Offer::Amount(Cents(2000)), None, 295_000);
        assert_eq!(a.ends_at, 325_000, "the price moved");
    }

    #[test]
    fn proxy_bids_never_pass_their_maximum_or_lose_to_a_lower_ceiling() {
        // Many mixed bids: the price never exceeds the leader's ceiling, and the leader's
        // ceiling is the highest any bidder offered (earliest on ties).
        let mut a = auction();
        let mut best: Option<(Cents, AccountId)> = None;
        let mut seed = 7u64;
        for t in 0..2000u64 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let who_id = 2 + (seed >> 33) % 5;
            let amount = Cents(1000 + (seed >> 40) % 20_000);
            let offer = if seed & 1 == 0 {
                Offer::Amount(amount)
            } else {
                Offer::Max(amount)
            };
            let o = a.bid(&who(who_id), offer, None, t);
            if accepted(&o) && best.is_none_or(|(b, _)| amount > b) {
                best = Some((amount, who_id));
            }
            if let Some(l) = a.lead() {
                assert!(l.amount <= l.ceiling());
                assert_eq!(
                    Some((l.ceiling(), l.bidder.id)).map(|x| x.0),
                    best.map(|b| b.0)
                );
            }
        }
    }

    /// Seller 1, minimum 10.00, 300 s, increments 0.50, with these terms.
    fn with_terms(reserve: Option<u64>, buy_now: Option<u64>) -> Auction {
        let terms = Terms {
            reserve: reserve.map(Cents),
            buy_now: buy_now.map(Cents),
        };
        Auction::new(Cents(1000), 1, 0, 300_000, rules(), terms)
    }

    fn price(a: &Auction) -> Option<(u64, AccountId)> {
        a.lead().map(|l| (l.amount.0, l.bidder.id))
    }

    #[test]
    fn below_the_reserve_bids_are_taken_but_nothing_is_sold() {
        let mut a = with_terms(Some(5000), None);
        assert_eq!(a.reserve_met(), Some(false));
        assert!(accepted(&a.bid(
            &who(2),
            Offer::Amount(Cents(1000)),
            None,
            0
        )));
        assert!(accepted(&a.bid(
            &who(3),
            Offer::Amount(Cents(4000)),
            None,
            1
        )));
        assert_eq!(a.reserve_met(), Some(false));
        assert!(a.winner().is_none(), "not sold below the reserve");
        assert!(accepted(&a.bid(
            &who(2),
            Offer::Amount(Cents(5000)),
            None,
            2
        )));
        assert_eq!(a.reserve_met(), Some(true));
        assert_eq!(a.winner().map(|l| l.bidder.id), Some(2));
        // Without a reserve, nothing is said about one, and the lead wins.
        let mut plain = auction();
        assert_eq!(plain.reserve_met(), None);
        plain.bid(&who(2), Offer::Amount(Cents(1000)), None, 0);
        assert_eq!(plain.winner().map(|l| l.bidder.id), Some(2));
    }

    #[test]
    fn a_proxy_jumps_to_the_reserve_when_its_maximum_allows() {
        let mut a = with_terms(Some(5000), None);
        // First bid by proxy: at the reserve, not at the minimum.
        let o = a.bid(&who(2), Offer::Max(Cents(8000)), None, 0);
        assert_eq!(
            o,
            Outcome::Accepted {
                amount: Cents(5000),
                ends_at: 300_000,
                leading: true,
                max: Some(Cents(8000))
            }
        );
        assert_eq!(a.reserve_met(), Some(true));
        // A proxy whose maximum is below the reserve bids as usual.
        let mut b = with_terms(Some(5000), None);
        b.bid(&who(2), Offer::Max(Cents(3000)), None, 0);
        assert_eq!(price(&b), Some((1000, 2)));
        // A challenger's proxy passing the leader's maximum (30.00, below the reserve) leads at
        // the reserve, not one increment above 30.00. (A leading proxy whose maximum reaches
        // the reserve is at it already, so it never has to jump when it answers.)
        b.bid(&who(3), Offer::Max(Cents(9000)), None, 1);
        assert_eq!(
            price(&b),
            Some((5000, 3)),
            "one increment above 30.00 is below it"
        );
        let mut c = with_terms(Some(5000), None);
        c.bid(&who(2), Offer::Max(Cents(9000)), None, 0);
        let o = c.bid(&who(3), Offer::Amount(Cents(6000)), None, 1);
        assert!(matches!(o, Outcome::Accepted { leading: false, .. }));
        assert_eq!(price(&c), Some((6050, 2)));
        // The leader raising its maximum past the reserve moves the price to it.
        let mut d = with_terms(Some(5000), None);
        d.bid(&who(2), Offer::Max(Cents(2000)), None, 0);
        d.bid(&who(2), Offer::Max(Cents(7000)), None, 1);
        assert_eq!(price(&d), Some((5000, 2)));
        assert_eq!(d.lead().unwrap().max, Some(Cents(7000)));
    }

    #[test]
    fn buy_it_now_takes_the_item_and_ends_the_auction_at_once() {
        let mut a = with_terms(None, Some(20_000));
        assert_eq!(a.buy_now(), Some(Cents(20_000)));
        // The wrong amount is refused with the price.
        let o = a.bid(&who(2), Offer::BuyNow(Cents(19_999)), None, 10);
        assert_eq!(reason(&o), Some(Reason::InvalidAmount));
        let o = a.bid(&who(2), Offer::BuyNow(Cents(20_000)), None, 10);
        assert_eq!(
            o,
            Outcome::Accepted {
                amount: Cents(20_000),
                ends_at: 10,
                leading: true,
                max: None
            }
        );
        assert!(a.is_over(10));
        assert_eq!(
            a.winner().map(|l| (l.amount, l.bidder.id)),
            Some((Cents(20_000), 2))
        );
        let late = a.bid(&who(3), Offer::BuyNow(Cents(20_000)), None, 10);
        assert_eq!(reason(&late), Some(Reason::AuctionOver));
        // The seller cannot buy its own item.
        let mut b = with_terms(None, Some(20_000));
        assert_eq!(
            reason(&b.bid(&who(1), Offer::BuyNow(Cents(20_000)), None, 0)),
            Some(Reason::OwnItem)
        );
        // No price: unavailable.
        let mut c = auction();
        assert_eq!(
            reason(&c.bid(&who(2), Offer::BuyNow(Cents(1000)), None, 0)),
            Some(Reason::BuyNowUnavailable)
        );
    }

    #[test]
    fn buy_it_now_ends_with_the_first_bid_or_when_the_reserve_is_met() {
        let mut a = with_terms(None, Some(20_000));
        a.bid(&who(2), Offer::Amount(Cents(1000)), None, 0);
        assert_eq!(a.buy_now(), None);
        let o = a.bid(&who(3), Offer::BuyNow(Cents(20_000)), None, 1);
        assert_eq!(reason(&o), Some(Reason::BuyNowUnavailable));
        // With a reserve, it stays through bids below the reserve, to the leader too.
        let mut b = with_terms(Some(5000), Some(20_000));
        b.bid(&who(2), Offer::Amount(Cents(1000)), None, 0);
        b.bid(&who(3), Offer::Amount(Cents(4000)), None, 1);
        assert_eq!(b.buy_now(), Some(Cents(20_000)));
        assert!(accepted(&b.bid(
            &who(3),
            Offer::BuyNow(Cents(20_000)),
            None,
            2
        )));
        assert_eq!(b.winner().map(|l| l.bidder.id), Some(3));
        let mut c = with_terms(Some(5000), Some(20_000));
        c.bid(&who(2), Offer::Max(Cents(6000)), None, 0);
        assert_eq!(c.reserve_met(), Some(true));
        assert_eq!(c.buy_now(), None, "the reserve was met by the proxy's jump");
    }

    #[test]
    fn buy_it_now_inside_a_soft_close_extension_ends_the_auction() {
        let mut a = with_terms(Some(5000), Some(20_000));
        // A bid below the reserve 10 s before the end extends the auction to 320 s.
        a.bid(&who(2), Offer::Amount(Cents(1000)), None, 290_000);
        assert_eq!(a.ends_at, 320_000);
        let o = a.bid(&who(3), Offer::BuyNow(Cents(20_000)), None, 300_500);
        assert!(matches!(
            o,
            Outcome::Accepted {
                ends_at: 300_500,
                ..
            }
        ));
        assert!(a.is_over(300_500));
        assert_eq!(a.winner().map(|l| l.bidder.id), Some(3));
    }

    #[test]
    fn the_increment_follows_the_band_of_the_highest_bid() {
        let rules = Rules {
            increments: Arc::new(Increments::parse("0:0.05,1:0.25,5:0.50").unwrap()),
            ..rules()
        };
        let mut a = Auction::new(Cents(50), 1, 0, 300_000, rules, Terms::default());
        a.bid(&who(2), Offer::Amount(Cents(95)), None, 0);
        assert_eq!(a.next_min(), Cents(100), "0.95 + 0.05");
        a.bid(&who(3), Offer::Amount(Cents(100)), None, 1);
        // At the boundary, the upper band's step.
        assert_eq!(a.next_min(), Cents(125));
        let low = a.bid(&who(2), Offer::Amount(Cents(124)), None, 2);
        assert_eq!(reason(&low), Some(Reason::TooLow));
        // A proxy answers one step of the challenger's band above it.
        a.bid(&who(2), Offer::Max(Cents(1000)), None, 3);
        assert_eq!(price(&a), Some((125, 2)));
        a.bid(&who(3), Offer::Amount(Cents(500)), None, 4);
        assert_eq!(price(&a), Some((550, 2)), "5.00 is in the 0.50 band");
    }
}
