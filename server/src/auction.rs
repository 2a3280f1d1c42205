//! The rules of one auction, without I/O or clocks: what bid is acceptable, when the auction
//! ends (including soft-close extensions), who won. The item task (`item.rs`) owns one of these
//! and passes the current time in.

use auction_protocol::{Cents, Reason};
use std::collections::HashMap;
use std::sync::Arc;

use crate::accounts::{AccountHandle, AccountId};

/// Policy that every auction on this server follows.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub min_increment: Cents,
    /// An accepted bid this close to the end (ms)...
    pub snipe_window_ms: u64,
    /// ...moves the end to this long after the bid (ms).
    pub snipe_extension_ms: u64,
}

/// The smallest acceptable bid: the minimum, or the highest bid plus the increment.
pub fn next_min(min: Cents, highest: Option<Cents>, increment: Cents) -> Cents {
    match highest {
        None => min,
        Some(h) => Cents(h.0.saturating_add(increment.0)),
    }
}

/// The leading bid.
#[derive(Debug, Clone)]
pub struct Lead {
    pub amount: Cents,
    pub bidder: Arc<AccountHandle>,
}

/// The answer to one bid; kept per bid id so a repeated id gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted { amount: Cents, ends_at: u64 },
    Rejected { reason: Reason, message: String },
}

#[derive(Debug)]
pub struct Auction {
    pub min: Cents,
    pub seller: AccountId,
    /// Unix ms.
    pub ends_at: u64,
    rules: Rules,
    lead: Option<Lead>,
    /// First outcome of every bid that carried an id, by (account, id).
    by_bid_id: HashMap<(AccountId, String), Outcome>,
}

impl Auction {
    pub fn new(min: Cents, seller: AccountId, ends_at: u64, rules: Rules) -> Auction {
        Auction {
            min,
            seller,
            ends_at,
            rules,
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

    /// The smallest amount that would be accepted now.
    pub fn next_min(&self) -> Cents {
        next_min(
            self.min,
            self.lead.as_ref().map(|l| l.amount),
            self.rules.min_increment,
        )
    }

    pub fn is_over(&self, now_ms: u64) -> bool {
        now_ms >= self.ends_at
    }

    /// The first outcome of a bid id this account already used, if any.
    pub fn previous_outcome(&self, bidder: AccountId, id: &str) -> Option<&Outcome> {
        self.by_bid_id.get(&(bidder, id.to_owned()))
    }

    /// Judges and applies a bid in one step: the item task's sequence (`previous_outcome`,
    /// `judge`, make durable, `apply`) without the storage step, for the rule tests.
    #[cfg(test)]
    pub fn bid(
        &mut self,
        bidder: &Arc<AccountHandle>,
        amount: Cents,
        id: Option<&str>,
        now_ms: u64,
    ) -> Outcome {
        if let Some(first) = id.and_then(|id| self.previous_outcome(bidder.id, id)) {
            return first.clone();
        }
        let outcome = self.judge(bidder, amount, now_ms);
        self.apply(bidder, &outcome, id);
        outcome
    }

    /// Makes a judged outcome take effect: the bidder leads and the end moves, and the bid id
    /// remembers its answer. Separate from `judge` so the caller can make an acceptance durable
    /// in between.
    pub fn apply(&mut self, bidder: &Arc<AccountHandle>, outcome: &Outcome, id: Option<&str>) {
        if let Outcome::Accepted { amount, ends_at } = outcome {
            self.lead = Some(Lead {
                amount: *amount,
                bidder: bidder.clone(),
            });
            self.ends_at = *ends_at;
        }
        if let Some(id) = id {
            self.by_bid_id
                .insert((bidder.id, id.to_owned()), outcome.clone());
        }
    }

    /// What a bid at `now_ms` would get, without changing anything.
    pub fn judge(&self, bidder: &Arc<AccountHandle>, amount: Cents, now_ms: u64) -> Outcome {
        let reject = |reason, message: String| Outcome::Rejected { reason, message };
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
        if amount.0 > auction_protocol::limits::MAX_AMOUNT_CENTS {
            return reject(
                Reason::InvalidAmount,
                "the amount is larger than allowed".into(),
            );
        }
        let next = self.next_min();
        if amount < next {
            let message = match &self.lead {
                None => format!("the minimum bid is {next}"),
                Some(l) => format!("the highest bid is {}; bid at least {next}", l.amount),
            };
            return reject(Reason::TooLow, message);
        }
        let ends_at = if self.ends_at.saturating_sub(now_ms) < self.rules.snipe_window_ms {
            self.ends_at
                .max(now_ms.saturating_add(self.rules.snipe_extension_ms))
        } else {
            self.ends_at
        };
        Outcome::Accepted { amount, ends_at }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auction_protocol::PublicKey;

    const RULES: Rules = Rules {
        min_increment: Cents(50),
        snipe_window_ms: 30_000,
        snipe_extension_ms: 30_000,
    };

    fn who(id: AccountId) -> Arc<AccountHandle> {
        Arc::new(AccountHandle::new(
            id,
            format!("u{id}"),
            PublicKey([id as u8; 32]),
        ))
    }

    fn auction() -> Auction {
        // Seller 1, minimum 10.00, ends at t = 300 s.
        Auction::new(Cents(1000), 1, 300_000, RULES)
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
    fn first_bid_must_reach_the_minimum_and_later_ones_the_increment() {
        let mut a = auction();
        let (b, c) = (who(2), who(3));
        assert_eq!(
            reason(&a.bid(&b, Cents(999), None, 0)),
            Some(Reason::TooLow)
        );
        assert!(accepted(&a.bid(&b, Cents(1000), None, 0)));
        assert_eq!(a.next_min(), Cents(1050));
        assert_eq!(
            reason(&a.bid(&c, Cents(1049), None, 1)),
            Some(Reason::TooLow)
        );
        assert!(accepted(&a.bid(&c, Cents(1050), None, 1)));
        assert_eq!(a.lead().unwrap().bidder.id, 3);
    }

    #[test]
    fn seller_dead_accounts_and_late_bids_are_refused() {
        let mut a = auction();
        assert_eq!(
            reason(&a.bid(&who(1), Cents(5000), None, 0)),
            Some(Reason::OwnItem)
        );
        let gone = who(4);
        gone.set_live(false);
        assert_eq!(
            reason(&a.bid(&gone, Cents(5000), None, 0)),
            Some(Reason::AccountGone)
        );
        assert_eq!(
            reason(&a.bid(&who(2), Cents(5000), None, 300_000)),
            Some(Reason::AuctionOver)
        );
        assert!(a.lead().is_none());
    }

    #[test]
    fn bids_in_the_snipe_window_extend_the_end() {
        let mut a = auction();
        // 100 s before the end: no change.
        assert_eq!(
            a.bid(&who(2), Cents(1000), None, 200_000),
            Outcome::Accepted {
                amount: Cents(1000),
                ends_at: 300_000
            }
        );
        // 10 s before the end: the end moves to 30 s after the bid.
        assert_eq!(
            a.bid(&who(3), Cents(2000), None, 290_000),
            Outcome::Accepted {
                amount: Cents(2000),
                ends_at: 320_000
            }
        );
        // A bid just before the new end extends again; the old end no longer applies.
        assert!(!a.is_over(300_000));
        assert!(accepted(&a.bid(&who(2), Cents(3000), None, 319_999)));
        assert_eq!(a.ends_at, 349_999);
        assert!(a.is_over(349_999));
    }

    #[test]
    fn a_repeated_bid_id_gets_its_first_answer_and_counts_once() {
        let mut a = auction();
        let (b, c) = (who(2), who(3));
        let first = a.bid(&b, Cents(1000), Some("x"), 0);
        assert!(accepted(&first));
        assert!(accepted(&a.bid(&c, Cents(2000), None, 1)));
        // b resends "x" after c outbid: same answer as before, and c still leads.
        assert_eq!(a.bid(&b, Cents(1000), Some("x"), 2), first);
        assert_eq!(a.lead().unwrap().bidder.id, 3);
        // A rejection is remembered too, even once the amount would now be acceptable.
        let low = a.bid(&b, Cents(10), Some("y"), 3);
        assert_eq!(reason(&low), Some(Reason::TooLow));
        assert_eq!(a.bid(&b, Cents(10), Some("y"), 4), low);
        // Ids are per account: c may use "x" too.
        assert!(accepted(&a.bid(&c, Cents(3000), Some("x"), 5)));
    }
}
