//! The verdicts of recently rejected bid ids, per item: bounded, expiring, in memory only. The
//! item task owns one (beside its `Auction`) and passes the monotonic time in; nothing here
//! waits for storage, because nothing here is stored.
//!
//! # Why a rejection need not be durable, and what a resent id gets
//!
//! A rejected bid changes nothing, so it is not stored: one bidder sending thousands of
//! rejected bids a second costs CPU, not disk (accepted bids are stored and remembered by the
//! `Auction` until the item closes, as before). A client resends a bid id only when it did not
//! get the answer (PROTOCOL.md, "bid ids"), so it sees the verdict of whichever judgement
//! reaches it; the question is whether judging a rejected id again can give another verdict.
//!
//! Every rejection is said through the item's outbox, so the state it was judged against (the
//! lead, the end, the account) was durable before the client could see it, and a restart
//! cannot take that state back. From that state, each reason stays true:
//! - `auction-over`, `own-item`, `invalid-amount`, `invalid-bid-id`: the end only moves later
//!   through accepted bids *before* it; an item whose end passed is closed at the next start;
//!   the seller and the limits do not change.
//! - `account-gone`: a deregistered account never comes back (a new one under the name is
//!   another account, with another key). But the registry stops an account bidding before it
//!   asks the items whether it leads one; if it does, the deregistration is refused and the
//!   account stays, so a bid judged in between got `account-gone` for an account that
//!   remains (PROTOCOL.md lists this with the exception below).
//! - `too-low` with a bid on the item: the price only rises, so an amount below the next
//!   minimum stays below it; a leader's proxy maximum not above its own ceiling stays below
//!   any later price plus the increment.
//! - `too-low` on an item without a bid: **this one can change**. A seller who accepts a
//!   negotiation lowers the minimum, and the same amount may then be accepted.
//! - `rate-limited` is not a verdict (the bid was not judged; PROTOCOL.md says so), and is not
//!   kept here.
//!
//! So the one case where judging again could differ is a `too-low` bid under a minimum that
//! is lowered afterwards. For it (and to repeat the first `message` exactly), this cache
//! answers a resent rejected id with its first verdict for [`KEEP`] after it was given, which
//! covers the reference client's whole resend budget (`limits::REJECTED_BID_ID_SECS`, checked
//! against the client's timeouts by a test in `client/src/session.rs`). Beyond
//! that — after a restart, after [`KEEP`], or when the bounds below pushed the id out — the
//! bid is judged again: the same verdict, except in that one case, where the bid may now be
//! accepted. Never is anything counted twice: a rejected bid was counted nowhere.
//!
//! # Bounds
//! At most [`PER_ACCOUNT`] ids per account (a new one pushes that account's oldest out, so a
//! flooding bidder only forgets its own) and [`IN_ALL`] per item (the oldest overall goes),
//! each entry about 250 bytes: at most ~256 KiB per item, however fast anyone bids.

use auction_protocol::limits::REJECTED_BID_ID_SECS;
use auction_protocol::Reason;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::accounts::AccountId;

/// How long a rejected id's first verdict is kept.
pub const KEEP: Duration = Duration::from_secs(REJECTED_BID_ID_SECS);
/// Rejected ids kept per account on one item. The reference client has one bid in flight per
/// item; this leaves room for a program that pipelines a few.
pub const PER_ACCOUNT: usize = 32;
/// Rejected ids kept per item, all accounts together.
pub const IN_ALL: usize = 1024;

/// A rejection as first said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub message: String,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    rejection: Rejection,
}

/// The hasher of the maps keyed by what clients send (bid ids): keyed at random per map
/// (foldhash), far cheaper than SipHash on the bid path; the maps are bounded (below), so even
/// keys chosen to collide cost at most a scan of [`PER_ACCOUNT`] or [`IN_ALL`] entries.
type Hasher = foldhash::fast::RandomState;

/// One account's held ids on the item.
#[derive(Debug, Default)]
struct Held {
    by_id: HashMap<Box<str>, Entry, Hasher>,
    /// Its entries' numbers, oldest first.
    seqs: VecDeque<u64>,
}

#[derive(Debug)]
pub struct RejectedIds {
    accounts: HashMap<AccountId, Held, Hasher>,
    /// Every entry by the order it came in (so by age): when it expires, and its key.
    order: BTreeMap<u64, (Instant, AccountId, Box<str>)>,
    next_seq: u64,
    keep: Duration,
    per_account_cap: usize,
    in_all_cap: usize,
}

impl Default for RejectedIds {
    fn default() -> Self {
        RejectedIds::new(KEEP, PER_ACCOUNT, IN_ALL)
    }
}

impl RejectedIds {
    pub fn new(keep: Duration, per_account_cap: usize, in_all_cap: usize) -> RejectedIds {
        RejectedIds {
            accounts: HashMap::default(),
            order: BTreeMap::new(),
            next_seq: 0,
            keep,
            per_account_cap: per_account_cap.max(1),
            in_all_cap: in_all_cap.max(1),
        }
    }

    /// The first verdict on `id` from `bidder`, if it was rejected less than `keep` ago and is
    /// still held.
    pub fn get(&self, bidder: AccountId, id: &str, now: Instant) -> Option<&Rejection> {
        let entry = self.accounts.get(&bidder)?.by_id.get(id)?;
        let (expires, ..) = self.order.get(&entry.seq)?;
        (now < *expires).then_some(&entry.rejection)
    }

    /// Remembers that `id` from `bidder` was rejected at `now`.
    pub fn remember(&mut self, bidder: AccountId, id: &str, rejection: Rejection, now: Instant) {
        self.expire(now);
        if let Some(held) = self.accounts.get(&bidder) {
            if let Some(old) = held.by_id.get(id).map(|e| e.seq) {
                self.forget(old);
            }
        }
        if let Some(held) = self.accounts.get(&bidder) {
            if held.seqs.len() >= self.per_account_cap {
                if let Some(&oldest) = held.seqs.front() {
                    self.forget(oldest);
                }
            }
        }
        if self.order.len() >= self.in_all_cap {
            if let Some(oldest) = self.order.keys().next().copied() {
                self.forget(oldest);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = Box::<str>::from(id);
        self.order
            .insert(seq, (now + self.keep, bidder, id.clone()));
        let held = self.accounts.entry(bidder).or_default();
        held.seqs.push_back(seq);
        held.by_id.insert(id, Entry { seq, rejection });
    }

    /// How many ids are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        let held: usize = self.accounts.values().map(|h| h.by_id.len()).sum();
        assert_eq!(held, self.order.len(), "every held id is in the order");
        held
    }

    /// Forgets the ids whose time is up (the oldest come first).
    fn expire(&mut self, now: Instant) {
        while let Some((&seq, (expires, ..))) = self.order.first_key_value() {
            if *expires > now {
                break;
            }
            self.forget(seq);
        }
    }

    fn forget(&mut self, seq: u64) {
        let Some((_, bidder, id)) = self.order.remove(&seq) else {
            return;
        };
        let Some(held) = self.accounts.get_mut(&bidder) else {
            return;
        };
        held.by_id.remove(&id);
        // Nearly always the account's oldest (expired, or pushed out by age); a replaced id
        // can be anywhere.
        if held.seqs.front() == Some(&seq) {
            held.seqs.pop_front();
        } else {
            held.seqs.retain(|&s| s != seq);
        }
        if held.seqs.is_empty() {
            self.accounts.remove(&bidder);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no(message: &str) -> Rejection {
        Rejection {
            reason: Reason::TooLow,
            message: message.into(),
        }
    }

    #[test]
    fn a_rejected_id_gets_its_first_verdict_until_it_expires() {
        let t0 = Instant::now();
        let mut ids = RejectedIds::new(Duration::from_secs(600), 4, 16);
        assert_eq!(ids.get(2, "a", t0), None);
        ids.remember(2, "a", no("first"), t0);
        assert_eq!(
            ids.get(2, "a", t0 + Duration::from_secs(599)),
            Some(&no("first"))
        );
        // Ids are per account.
        assert_eq!(ids.get(3, "a", t0), None);
        // Past its time it is judged again (and swept at the next rejection).
        let later = t0 + Duration::from_secs(600);
        assert_eq!(ids.get(2, "a", later), None);
        ids.remember(3, "b", no("other"), later);
        assert_eq!(ids.len(), 1);
    }

    #[test]
    fn a_flooding_account_pushes_out_only_its_own_ids() {
        let t0 = Instant::now();
        let mut ids = RejectedIds::new(Duration::from_secs(600), 4, 16);
        ids.remember(7, "honest", no("kept"), t0);
        for n in 0..100_000u32 {
            ids.remember(
                2,
                &n.to_string(),
                no("flood"),
                t0 + Duration::from_micros(n.into()),
            );
        }
        assert_eq!(ids.len(), 5, "4 of the flooder's and the honest one");
        assert_eq!(ids.get(7, "honest", t0), Some(&no("kept")));
        // The flooder's newest are held, its older ones judged again.
        assert!(ids.get(2, "99999", t0).is_some());
        assert!(ids.get(2, "99995", t0).is_none());
    }

    #[test]
    fn many_accounts_together_stay_within_the_bound_for_the_item() {
        let t0 = Instant::now();
        let mut ids = RejectedIds::new(Duration::from_secs(600), 4, 16);
        for account in 0..100u64 {
            for n in 0..4 {
                ids.remember(account, &format!("{n}"), no("x"), t0);
            }
        }
        assert_eq!(ids.len(), 16);
        // The 16 newest: accounts 96..100.
        assert!(ids.get(96, "0", t0).is_some());
        assert!(ids.get(95, "3", t0).is_none());
        assert!(ids.accounts.len() <= 16 && ids.order.len() == 16);
    }

    #[test]
    fn a_repeated_remember_replaces_rather_than_duplicates() {
        let t0 = Instant::now();
        let mut ids = RejectedIds::new(Duration::from_secs(10), 4, 16);
        ids.remember(2, "a", no("first"), t0);
        ids.remember(2, "a", no("second"), t0 + Duration::from_secs(5));
        assert_eq!(ids.len(), 1);
        assert_eq!(ids.accounts[&2].seqs.len(), 1);
        assert_eq!(
            ids.get(2, "a", t0 + Duration::from_secs(12)),
            Some(&no("second"))
        );
    }
}
