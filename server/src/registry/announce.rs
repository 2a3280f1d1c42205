//! Best-effort announcements (NEW-ITEM, BID-UPDATE, PRICE-ADJUSTMENT, ITEM-CLOSED), numbered
//! per account in each server run.

use auction_protocol::udp;
use auction_protocol::udp::ServerBody;
use std::sync::atomic::Ordering;

use super::accounts::Account;
use super::inbox::{Change, ItemUpdate};
use super::Registry;
use std::net::SocketAddr;

impl Registry {
    /// NEW-ITEM to every account that has an address.
    pub(super) fn announce_item(&mut self, item: u64) {
        let Some(entry) = self.items.get(&item) else {
            return;
        };
        let view = entry.view.borrow().clone();
        let epoch = self.epoch;
        let mut out = Vec::new();
        for account in self.accounts.values_mut().filter(|a| a.notify.is_some()) {
            out.extend(numbered(account, 0, |seq| ServerBody::NewItem {
                seq,
                epoch,
                item: view.clone(),
            }));
        }
        for (to, datagram) in out {
            self.emit(to, datagram);
        }
    }

    /// Announces to each subscriber of `item` (with `skip` numbers left out first, to show
    /// a gap: updates it will never get).
    pub(super) fn announce_to_subscribers(
        &mut self,
        item: u64,
        skip: u64,
        body: impl Fn(u64, u64) -> ServerBody,
    ) {
        let Some(entry) = self.items.get(&item) else {
            return;
        };
        let epoch = self.epoch;
        let mut out = Vec::new();
        for name in &entry.subscribers {
            if let Some(account) = self.accounts.get_mut(name) {
                out.extend(numbered(account, skip, |seq| body(seq, epoch)));
            }
        }
        for (to, datagram) in out {
            self.emit(to, datagram);
        }
    }

    /// A subscribed item's new highest bid or lowered minimum, durable: BID-UPDATE or
    /// PRICE-ADJUSTMENT to each subscriber.
    pub(super) fn on_update(&mut self, update: ItemUpdate) {
        let Some(entry) = self.items.get(&update.item) else {
            return;
        };
        // An update the item could not queue is a gap every subscriber must see.
        let skip = entry
            .watchers
            .as_ref()
            .is_some_and(|w| w.missed.swap(false, Ordering::Relaxed));
        let item = update.item;
        self.announce_to_subscribers(item, u64::from(skip), |seq, epoch| match &update.change {
            Change::Highest {
                amount,
                bidder,
                ends_at,
            } => ServerBody::BidUpdate {
                seq,
                epoch,
                item,
                highest: *amount,
                bidder: bidder.clone(),
                ends_at: *ends_at,
            },
            Change::Min { min, ends_at } => ServerBody::PriceAdjustment {
                seq,
                epoch,
                item,
                min: *min,
                ends_at: *ends_at,
            },
        });
    }
}

/// The account's next announcement (numbers `skip` left out first), if it has an address:
/// numbers advance even without one, so a client that attaches later sees the gap.
fn numbered(
    account: &mut Account,
    skip: u64,
    body: impl FnOnce(u64) -> ServerBody,
) -> Option<(SocketAddr, Vec<u8>)> {
    account.seq += 1 + skip;
    let to = account.notify?;
    Some((to, udp::encode(body(account.seq))))
}
