//! Best-effort announcements (NEW-ITEM, BID-UPDATE, PRICE-ADJUSTMENT, ITEM-CLOSED): what is
//! announced, and to whom. Each is made once, whatever the number of accounts it goes to; it
//! waits in the outbox until what it reports is durable, then in the bounded, paced queues of
//! `announce_queue.rs`, which number it per account in each server run as it is sent.

use std::sync::atomic::Ordering;

use super::announce_queue::Body;
use super::inbox::{Change, ItemUpdate};
use super::{Outgoing, Registry};
use crate::accounts::AccountId;
use crate::clock::Now;

/// An announcement and who is to get it.
pub(super) struct Announcement {
    to: Audience,
    /// Numbers to leave out before it (updates its item could not keep up with).
    skip: u64,
    body: Body,
}

enum Audience {
    Everyone,
    Accounts(Vec<AccountId>),
}

impl Registry {
    /// NEW-ITEM to every account.
    pub(super) fn announce_item(&mut self, item: u64) {
        let Some(entry) = self.items.get(&item) else {
            return;
        };
        let body = Body::NewItem(entry.view.borrow().clone());
        self.announce(Announcement {
            to: Audience::Everyone,
            skip: 0,
            body,
        });
    }

    /// Announces `body` to each subscriber of `item` (with `skip` numbers left out first, to
    /// show a gap: updates it will never get).
    pub(super) fn announce_to_subscribers(&mut self, item: u64, skip: u64, body: Body) {
        let Some(entry) = self.items.get(&item) else {
            return;
        };
        let accounts = entry
            .subscribers
            .iter()
            .filter_map(|name| self.accounts.get(name).map(|a| a.handle.id))
            .collect();
        self.announce(Announcement {
            to: Audience::Accounts(accounts),
            skip,
            body,
        });
    }

    /// Queues `a` once everything appended so far is durable: at once if it is.
    fn announce(&mut self, a: Announcement) {
        let out = Outgoing::Announcement(a);
        if let Some(Outgoing::Announcement(a)) = self.outbox.admit(&*self.ctx.storage, out) {
            self.queue_announcement(a);
        }
    }

    /// A durable announcement into the queues of those who are to get it.
    pub(super) fn queue_announcement(&mut self, a: Announcement) {
        // A new item's offer is durable now: the board shows it. (Several nodes: the nodes'
        // boards show it, from the node running it and from the database: `cluster/board.rs`.)
        if let (Body::NewItem(view), None) = (&a.body, &self.ctx.cluster) {
            self.ctx
                .board
                .offered(crate::web::BoardItem::from_view(view, Default::default()));
        }
        match a.to {
            Audience::Everyone => self.announcements.queue_for_everyone(a.body),
            Audience::Accounts(ids) => self.announcements.queue_for(&ids, a.skip, a.body),
        }
    }

    /// The next batch of announcements the pace allows, to the accounts' addresses now.
    pub(super) fn send_announcements(&mut self, now: Now) {
        let accounts = &self.accounts;
        let due = self.announcements.due(now.instant, self.epoch, |id| {
            accounts.by_id(id).map_or(&[], |a| a.devices.addrs())
        });
        self.sends.extend(due);
    }

    /// A subscribed item's new highest bid or lowered minimum, durable: BID-UPDATE or
    /// PRICE-ADJUSTMENT to each subscriber.
    pub(super) fn on_update(&mut self, update: ItemUpdate) {
        match update.change {
            Change::Tell(alert) => {
                return self.alert(update.item, alert, crate::clock::Now::read())
            }
            Change::Extended { ends_at } => return self.lot_extended(update.item, ends_at),
            Change::Highest { .. } | Change::Min { .. } => {}
        }
        let Some(entry) = self.items.get(&update.item) else {
            return;
        };
        // An update the item could not queue is a gap every subscriber must see.
        let skip = entry
            .watchers
            .as_ref()
            .is_some_and(|w| w.missed.swap(false, Ordering::Relaxed));
        let item = update.item;
        let body = match update.change {
            Change::Highest {
                amount,
                bidder,
                ends_at,
            } => Body::BidUpdate {
                item,
                highest: amount,
                bidder,
                ends_at,
            },
            Change::Min { min, ends_at } => Body::PriceAdjustment { item, min, ends_at },
            Change::Tell(_) | Change::Extended { .. } => return,
        };
        self.announce_to_subscribers(item, u64::from(skip), body);
    }
}
