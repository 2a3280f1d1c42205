//! Accounts: REGISTER, DEREGISTER and ATTACH, and the replay windows of live and recently
//! deregistered accounts.

use auction_protocol::udp::{AttachMode, ServerBody};
use auction_protocol::{names, udp, PublicKey, Reason};
use std::net::SocketAddr;
use std::sync::Arc;

use super::{not_registered, Account, AfterAnswer, Answer, Registry, Tombstone, TOMBSTONES};
use crate::accounts::{AccountHandle, AccountId};
use crate::clock::unix_ms;
use crate::item::ItemCmd;
use crate::rules::replay::ReplayWindow;
use crate::store::Record;
use tokio::sync::oneshot;

impl Registry {
    /// The replay window of account `name` if `key` is its key (live or deregistered).
    pub(super) fn window_of(
        &mut self,
        name: &str,
        key: &PublicKey,
    ) -> Option<(AccountId, &mut ReplayWindow)> {
        match (self.accounts.get_mut(name), self.tombstones.get_mut(name)) {
            (Some(a), _) if a.handle.key == *key => Some((a.handle.id, &mut a.replay)),
            (None, Some(t)) if t.key == *key => Some((t.id, &mut t.replay)),
            _ => None,
        }
    }

    pub(super) fn register(
        &mut self,
        req: u64,
        name: String,
        key: PublicKey,
        src: SocketAddr,
    ) -> Answer {
        let denied = |reason, message: String| {
            Answer::one(ServerBody::RegisterDenied {
                req,
                reason,
                message,
            })
        };
        if !names::valid_name(&name) {
            return denied(
                Reason::InvalidName,
                "a name is 1 to 32 characters of A-Z a-z 0-9 _ . -".into(),
            );
        }
        if let Some(existing) = self.accounts.get_mut(&name) {
            if existing.handle.key == key {
                // Registering again with the same key succeeds and moves the announcements.
                existing.notify = Some(src);
                self.records.push(Record::AccountAttached {
                    id: existing.handle.id,
                    notify: src,
                });
                return Answer::one(ServerBody::Registered { req, name });
            }
            return denied(Reason::NameTaken, format!("the name '{name}' is taken"));
        }
        if let Some(owner) = self.ctx.keys.lookup(&key) {
            return denied(
                Reason::KeyTaken,
                format!("this key is already registered as '{}'", owner.name),
            );
        }
        self.create_account(&name, key, Some(src));
        self.ctx.metrics.registrations.inc();
        tracing::info!(%name, key = %key.fingerprint(), "registered");
        Answer::one(ServerBody::Registered { req, name })
    }

    /// A new account (its record is part of the current request's group).
    pub(super) fn create_account(
        &mut self,
        name: &str,
        key: PublicKey,
        notify: Option<SocketAddr>,
    ) {
        let id = self.next_account;
        self.next_account += 1;
        self.records.push(Record::AccountCreated {
            id,
            name: name.to_owned(),
            key,
            notify,
            at: unix_ms(),
        });
        let handle = Arc::new(AccountHandle::new(id, name.to_owned(), key));
        self.ctx.keys.insert(handle.clone());
        self.names.insert(id, name.to_owned());
        self.tombstones.remove(name);
        self.accounts.insert(
            name.to_owned(),
            Account::new(handle, ReplayWindow::default(), notify),
        );
    }

    pub(super) async fn deregister(&mut self, req: u64, name: &str) -> Answer {
        let denied = |reason, message: String| {
            Answer::one(ServerBody::DeregDenied {
                req,
                reason,
                message,
            })
        };
        let Some(account) = self.accounts.get(name) else {
            return denied(Reason::NotRegistered, not_registered(name));
        };
        if account.open_items > 0 {
            return denied(
                Reason::HasOpenItems,
                format!(
                    "'{name}' has {} open item(s); wait until they close",
                    account.open_items
                ),
            );
        }
        // Stop the account from bidding first, then ask every open item who leads: any bid
        // the item accepted before it saw the flag cleared is reflected in its answer.
        let handle = account.handle.clone();
        handle.set_live(false);
        let leads = self.leads_any(handle.id).await;
        if let Some(item) = leads {
            handle.set_live(true);
            return denied(
                Reason::LeadsAuction,
                format!("'{name}' holds the highest bid on item {item}; wait until it closes"),
            );
        }
        self.records.push(Record::AccountRemoved {
            id: handle.id,
            at: unix_ms(),
        });
        self.ctx.keys.remove(&handle.key);
        let followed: Vec<u64> = self
            .accounts
            .get(name)
            .map(|a| a.subscriptions.iter().copied().collect())
            .unwrap_or_default();
        for item in followed {
            self.remove_subscription(name, item);
        }
        if let Some(account) = self.accounts.remove(name) {
            self.with_pending.remove(name);
            self.names.remove(&handle.id);
            self.tombstones.insert(
                name.to_owned(),
                Tombstone {
                    id: handle.id,
                    key: handle.key,
                    replay: account.replay,
                },
            );
            self.tombstone_order.push_back(name.to_owned());
            while self.tombstone_order.len() > TOMBSTONES {
                if let Some(old) = self.tombstone_order.pop_front() {
                    self.tombstones.remove(&old);
                }
            }
        }
        // Its open channels close now rather than refuse its bids one by one.
        for entry in self.items.values() {
            if let Some(cmd) = &entry.cmd {
                let _ = cmd.send(ItemCmd::AccountGone { account: handle.id }).await;
            }
        }
        tracing::info!(%name, "deregistered");
        Answer::one(ServerBody::DeregConf { req })
    }

    /// The first open item `account` leads, asking each item task.
    pub(super) async fn leads_any(&self, account: AccountId) -> Option<u64> {
        let mut asks = Vec::new();
        for (&item, entry) in &self.items {
            let Some(cmd) = &entry.cmd else { continue };
            let (tx, rx) = oneshot::channel();
            if cmd.send(ItemCmd::Leader { reply: tx }).await.is_ok() {
                asks.push((item, rx));
            }
        }
        for (item, rx) in asks {
            // An item that closed meanwhile drops the question: it no longer counts.
            if let Ok(Some(leader)) = rx.await {
                if leader == account {
                    return Some(item);
                }
            }
        }
        None
    }

    /// ATTACH: moves the account's announcements to `src` (see `AttachMode`), and restarts
    /// delivery of its pending notices there.
    pub(super) fn attach(
        &mut self,
        req: u64,
        account: String,
        mode: AttachMode,
        src: SocketAddr,
    ) -> Answer {
        let Some(a) = self.accounts.get_mut(&account) else {
            return Answer::one(ServerBody::Error {
                req: Some(req),
                reason: Reason::NotRegistered,
                message: not_registered(&account),
            });
        };
        // Announcements go to another machine now (by IP).
        let elsewhere = a.notify.is_some_and(|n| n.ip() != src.ip());
        let pending = a.pending.len() as u32;
        let moves = match mode {
            AttachMode::Login => true,
            AttachMode::Keep if !elsewhere => true,
            AttachMode::Keep => {
                return Answer::one(ServerBody::Error {
                    req: Some(req),
                    reason: Reason::Moved,
                    message: format!(
                        "'{account}' has logged in from another address; its announcements go there now"
                    ),
                })
            }
            // From the IP that has them already: another client on the same machine (a
            // `watch`) keeps them.
            AttachMode::Roam => elsewhere || a.notify.is_none(),
        };
        if !moves {
            return Answer::one(ServerBody::Attached {
                req,
                pending,
                moved: false,
            });
        }
        let moved = a.notify != Some(src);
        if moved && mode == AttachMode::Roam {
            tracing::info!(%account, from = ?a.notify, to = %src, "logged in from another address");
        }
        a.notify = Some(src);
        self.records.push(Record::AccountAttached {
            id: a.handle.id,
            notify: src,
        });
        Answer {
            datagrams: vec![udp::encode(ServerBody::Attached {
                req,
                pending,
                moved,
            })],
            after: AfterAnswer::SendPending(account),
        }
    }
}
