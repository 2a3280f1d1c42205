//! What the operator's removal of a bid does to an auction, without I/O: the bids still in
//! force are judged again, in their order and each at its own time, by the same rules that
//! judged them first (`Auction::judge`), on the auction as it was before any bid. So the
//! price falls back to what the others' bids make it, and proxy maximums answer each other
//! again: a proxy that led only because of the removed bid may lose the lead, one that was
//! outbid by it leads again.
//!
//! The end stays where it is (an extension the removed bid caused is kept: bidders planned on
//! it). A bid the rules would no longer accept counts for nothing: a bid of an account deregistered
//! since (its ceiling no longer pushes the price). The item task (`item/operator.rs`) reads
//! the bids from storage and owns the result.

use std::sync::Arc;

use crate::accounts::AccountHandle;
use crate::rules::auction::{Auction, Lead, Offer};

/// A stored bid to judge again: who placed it, what it offered, and when (Unix ms).
#[derive(Debug, Clone)]
pub struct Placed {
    pub bidder: Arc<AccountHandle>,
    pub offer: Offer,
    pub at: u64,
}

/// The lead `auction` has with only `bids` (in force, in commit order) placed.
pub fn lead_without(auction: &Auction, bids: impl IntoIterator<Item = Placed>) -> Option<Lead> {
    let mut again = auction.unbid();
    for bid in bids {
        let decision = again.judge(&bid.bidder, bid.offer, bid.at);
        again.apply(&bid.bidder, &decision, None);
    }
    again.lead().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::AccountId;
    use crate::rules::auction::{Rules, Terms};
    use crate::rules::increments::Increments;
    use auction_protocol::{Cents, PublicKey};

    fn who(id: AccountId) -> Arc<AccountHandle> {
        Arc::new(AccountHandle::new(
            id,
            format!("u{id}"),
            PublicKey([id as u8; 32]),
        ))
    }

    /// Seller 1, minimum 10.00, increments of 0.50, ends at t = 300 s.
    fn auction(reserve: Option<u64>) -> Auction {
        let rules = Rules {
            increments: Arc::new(Increments::fixed(Cents(50))),
            snipe_window_ms: 30_000,
            snipe_extension_ms: 30_000,
        };
        let terms = Terms {
            reserve: reserve.map(Cents),
            buy_now: None,
        };
        Auction::new(Cents(1000), 1, 0, 300_000, rules, terms)
    }

    fn placed(bidder: AccountId, offer: Offer, at: u64) -> Placed {
        Placed {
            bidder: who(bidder),
            offer,
            at,
        }
    }

    /// Places `bids` on `a` as the item task does, and returns them as stored.
    fn run(a: &mut Auction, bids: &[(AccountId, Offer)]) -> Vec<Placed> {
        let mut out = Vec::new();
        for (i, &(bidder, offer)) in bids.iter().enumerate() {
            let p = placed(bidder, offer, 1_000 * (i as u64 + 1));
            let d = a.judge(&p.bidder, offer, p.at);
            a.apply(&p.bidder, &d, None);
            out.push(p);
        }
        out
    }

    fn lead(l: &Option<Lead>) -> Option<(u64, AccountId, Option<u64>)> {
        l.as_ref()
            .map(|l| (l.amount.0, l.bidder.id, l.max.map(|m| m.0)))
    }

    #[test]
    fn removing_a_shill_bid_lets_the_price_fall_back_to_the_proxies() {
        let mut a = auction(None);
        // u2 proxies up to 50.00, u3 up to 30.00 (u2 leads at 30.50), the shill u9 bids 45.00
        // (u2's proxy answers at 45.50).
        let bids = run(
            &mut a,
            &[
                (2, Offer::Max(Cents(5000))),
                (3, Offer::Max(Cents(3000))),
                (9, Offer::Amount(Cents(4500))),
            ],
        );
        assert_eq!(lead(&a.lead().cloned()), Some((4550, 2, Some(5000))));
        let kept = bids.into_iter().filter(|b| b.bidder.id != 9);
        assert_eq!(lead(&lead_without(&a, kept)), Some((3050, 2, Some(5000))));
    }

    #[test]
    fn removing_the_leading_proxy_bid_gives_the_lead_to_the_next_ceiling() {
        let mut a = auction(None);
        let bids = run(
            &mut a,
            &[
                (2, Offer::Max(Cents(5000))),
                (3, Offer::Max(Cents(3000))),
                (4, Offer::Amount(Cents(2000))),
            ],
        );
        assert_eq!(lead(&a.lead().cloned()), Some((3050, 2, Some(5000))));
        // Without u2: u3's proxy (30.00) against u4's 20.00 leads at 20.50.
        let kept: Vec<Placed> = bids.into_iter().filter(|b| b.bidder.id != 2).collect();
        assert_eq!(
            lead(&lead_without(&a, kept.clone())),
            Some((2050, 3, Some(3000)))
        );
        // Without u3 too: u4's direct bid alone.
        let kept = kept.into_iter().filter(|b| b.bidder.id != 3);
        assert_eq!(lead(&lead_without(&a, kept)), Some((2000, 4, None)));
    }

    #[test]
    fn removing_the_only_bid_leaves_no_lead_and_the_end_stays() {
        let mut a = auction(None);
        // A bid 10 s before the end moves it to 30 s after the bid.
        let p = placed(2, Offer::Amount(Cents(1000)), 290_000);
        let d = a.judge(&p.bidder, p.offer, p.at);
        a.apply(&p.bidder, &d, None);
        assert_eq!(a.ends_at, 320_000);
        assert!(lead_without(&a, []).is_none());
        a.replace_lead(None);
        assert_eq!((a.ends_at, a.next_min()), (320_000, Cents(1000)));
    }

    #[test]
    fn a_proxy_jumps_to_the_reserve_again_without_the_removed_bid() {
        let mut a = auction(Some(4000));
        // u2 proxies to 50.00: it bids the reserve, 40.00, at once; u9 then bids 45.00 and
        // u2's proxy answers at 45.50.
        let bids = run(
            &mut a,
            &[
                (2, Offer::Max(Cents(5000))),
                (9, Offer::Amount(Cents(4500))),
            ],
        );
        assert_eq!(lead(&a.lead().cloned()), Some((4550, 2, Some(5000))));
        let kept = bids.into_iter().filter(|b| b.bidder.id != 9);
        assert_eq!(lead(&lead_without(&a, kept)), Some((4000, 2, Some(5000))));
    }

    #[test]
    fn a_bid_of_an_account_gone_since_counts_for_nothing() {
        let mut a = auction(None);
        let bids = run(
            &mut a,
            &[
                (2, Offer::Max(Cents(5000))),
                (3, Offer::Amount(Cents(3000))),
                (9, Offer::Amount(Cents(4500))),
            ],
        );
        bids[1].bidder.set_live(false);
        let kept = bids.into_iter().filter(|b| b.bidder.id != 9);
        // u3's 30.00 no longer pushes u2's proxy: it leads at the minimum.
        assert_eq!(lead(&lead_without(&a, kept)), Some((1000, 2, Some(5000))));
    }
}
