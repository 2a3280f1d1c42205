//! Best-effort announcements (NEW-ITEM, BID-UPDATE, PRICE-ADJUSTMENT, ITEM-CLOSED), numbered
//! per account in each server run.

use auction_protocol::udp;
use auction_protocol::udp::ServerBody;
use std::sync::atomic::Ordering;

use super::inbox::{Change, ItemUpdate};
use super::Registry;

impl Registry {
    pub(super) async fn announce_item(&mut self, item: u64) {
        let Some(entry) = self.items.get(&item) else {
            return;
        };
        let view = entry.view.borrow().clone();
        let to: Vec<String> = self
            .accounts
            .iter()
            .filter(|(_, a)| a.notify.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        for name in to {
            self.announce(&name, 0, |seq, epoch| ServerBody::NewItem {
                seq,
                epoch,
                item: view.clone(),
            })
            .await;
        }
    }

    /// Sends a best-effort announcement to account `name` with its next number; `skip`
    /// numbers are left out first (to show the account a gap: updates it will never get).
    pub(super) async fn announce(
        &mut self,
        name: &str,
        skip: u64,
        body: impl FnOnce(u64, u64) -> ServerBody,
    ) {
        let epoch = self.epoch;
        let Some(account) = self.accounts.get_mut(name) else {
            return;
        };
        account.seq += 1 + skip;
        let Some(to) = account.notify else { return };
        let datagram = udp::encode(body(account.seq, epoch));
        self.emit(to, datagram).await;
    }

    /// A subscribed item's new highest bid, durable: BID-UPDATE to each subscriber.
    pub(super) async fn on_update(&mut self, update: ItemUpdate) {
        let Some(entry) = self.items.get(&update.item) else {
            return;
        };
        // An update the item could not queue is a gap every subscriber must see.
        let skip = entry
            .watchers
            .as_ref()
            .is_some_and(|w| w.missed.swap(false, Ordering::Relaxed));
        let to: Vec<String> = entry.subscribers.iter().cloned().collect();
        let item = update.item;
        for name in to {
            self.announce(&name, u64::from(skip), |seq, epoch| match &update.change {
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
            })
            .await;
        }
    }
}
