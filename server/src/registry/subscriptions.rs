//! Subscriptions: accounts following an item's bids over UDP (SUBSCRIBE, UNSUBSCRIBE).

use auction_protocol::udp::{self, ServerBody};
use auction_protocol::{ItemView, Reason};

use super::{not_registered, AfterAnswer, Answer, Denial, Registry, MAX_SUBSCRIPTIONS};
use crate::store::Record;

impl Registry {
    pub(super) fn add_subscription(&mut self, name: &str, item: u64) {
        let (Some(account), Some(entry)) = (self.accounts.get_mut(name), self.items.get_mut(&item))
        else {
            return;
        };
        if entry.subscribe(name) {
            account.subscriptions.insert(item);
        }
    }

    pub(super) fn remove_subscription(&mut self, name: &str, item: u64) -> bool {
        if let Some(account) = self.accounts.get_mut(name) {
            account.subscriptions.remove(&item);
        }
        self.items
            .get_mut(&item)
            .is_some_and(|entry| entry.unsubscribe(name))
    }

    /// SUBSCRIPTIONS: the items the account follows.
    pub(super) fn subscriptions(&self, req: u64, name: &str) -> Answer {
        let views: Vec<ItemView> = self
            .accounts
            .get(name)
            .map(|a| {
                a.subscriptions
                    .iter()
                    .filter_map(|i| self.items.get(i))
                    .map(|e| e.view.borrow().clone())
                    .collect()
            })
            .unwrap_or_default();
        Answer {
            datagrams: udp::pack_items(req, &views),
            after: AfterAnswer::Nothing,
        }
    }

    pub(super) fn subscribe(&mut self, req: u64, name: &str, item: u64) -> Answer {
        let denied = |reason, message| Denial::Subscribe.answer(req, reason, message);
        let Some(account) = self.accounts.get(name) else {
            return denied(Reason::NotRegistered, not_registered(name));
        };
        let id = account.handle.id;
        let count = account.subscriptions.len();
        let Some(entry) = self.items.get(&item) else {
            return denied(Reason::UnknownItem, format!("there is no item {item}"));
        };
        if entry.cmd.is_none() {
            return denied(
                Reason::AuctionOver,
                format!("item {item} is closed; its result is in `status`"),
            );
        }
        let view = entry.view.borrow().clone();
        if !entry.subscribers.contains(name) {
            if count >= MAX_SUBSCRIPTIONS {
                return denied(
                    Reason::TooManySubscriptions,
                    format!("'{name}' already follows {MAX_SUBSCRIPTIONS} items, the most allowed"),
                );
            }
            self.add_subscription(name, item);
            self.records.push(Record::Subscribed { account: id, item });
        }
        Answer::one(ServerBody::Subscribed { req, item: view })
    }

    pub(super) fn unsubscribe(&mut self, req: u64, name: &str, item: u64) -> Answer {
        let Some(id) = self.accounts.get(name).map(|a| a.handle.id) else {
            return Denial::Error.answer(req, Reason::NotRegistered, not_registered(name));
        };
        if self.remove_subscription(name, item) {
            self.records
                .push(Record::Unsubscribed { account: id, item });
        }
        Answer::one(ServerBody::Unsubscribed { req, item })
    }
}
