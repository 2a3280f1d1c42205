//! Restarting: accounts, replay windows, closed items and pending notices come back from the
//! snapshot; open items are resumed (with the recovery grace) and announced again (queued once
//! for all accounts, bounded and paced: `announce_queue.rs`).

use auction_protocol::{ItemView, PublicKey};
use std::collections::BTreeSet;
use std::mem;
use std::net::SocketAddr;
use std::sync::Arc;

use super::{Entry, Registry};
use crate::accounts::{AccountHandle, AccountId};
use crate::clock::Now;
use crate::item::{self, ItemSpec};
use crate::rules::auction::Lead;
use crate::store::{Negotiation, Record, Snapshot};

impl Registry {
    /// Accounts, replay windows, closed items and pending notices from the database. Open
    /// items are resumed by `run`, which can send their announcements.
    pub(super) fn restore(&mut self, snapshot: Snapshot, now: Now) {
        for handle in self.accounts.restore(snapshot.accounts) {
            self.announcements.add(handle.id);
            self.ctx.keys.insert(handle);
        }
        for stored in snapshot.items {
            if let Some(id) = &stored.catalog_id {
                self.catalog_ids.insert(id.clone());
            }
            if stored.closed_at.is_some() {
                let view = ItemView {
                    item: stored.id,
                    description: stored.description,
                    seller: stored.seller_name,
                    min: stored.min,
                    highest: stored.lead.as_ref().map(|l| l.2),
                    bidder: stored.lead.as_ref().map(|l| l.1.clone()),
                    ends_at: stored.ends_at,
                    state: auction_protocol::ItemState::Closed,
                    channel: None,
                    winner: stored.lead.as_ref().map(|l| l.1.clone()),
                    price: stored.lead.as_ref().map(|l| l.2),
                    settle_port: stored.lead.as_ref().map(|_| self.ctx.settle_port),
                };
                let (_, view) = tokio::sync::watch::channel(view);
                self.items.insert(
                    stored.id,
                    Entry {
                        cmd: None,
                        view,
                        watchers: None,
                        subscribers: BTreeSet::new(),
                        negotiation: Negotiation::Done,
                    },
                );
            } else {
                if let Some(account) = self.accounts.get_mut(&stored.seller_name) {
                    account.open_items += 1;
                }
                self.ctx.metrics.open_items.inc();
                self.open_items += 1;
                self.to_resume.push(stored);
            }
        }
        for n in snapshot.notices {
            self.queue_notice(n.account, n.id, n.datagram, now);
        }
        self.to_subscribe = snapshot.subscriptions;
    }

    /// The handle of account `id`, or a handle that cannot bid if the account is gone.
    pub(super) fn handle_of(&self, id: AccountId, name: &str) -> Arc<AccountHandle> {
        match self.accounts.get(name) {
            Some(a) if a.handle.id == id => a.handle.clone(),
            _ => {
                let gone = AccountHandle::new(id, name.to_owned(), PublicKey([0; 32]));
                gone.set_live(false);
                Arc::new(gone)
            }
        }
    }

    /// Starts the items that were open when the server stopped. Those whose end passed in the
    /// meantime close at once (with their results and notices); the others get the time they
    /// had left plus the recovery grace, listen again (on the same port when it is free) and
    /// are announced again.
    pub(super) fn resume(&mut self, now: Now) {
        let grace = self.ctx.config.recovery_grace.as_millis() as u64;
        let mut resumed = Vec::new();
        let mut closed_items = 0;
        for stored in mem::take(&mut self.to_resume) {
            let seller = self.handle_of(stored.seller, &stored.seller_name);
            let lead = stored.lead.as_ref().map(|(id, name, amount, max)| Lead {
                amount: *amount,
                bidder: self.handle_of(*id, name),
                max: *max,
            });
            let mut spec = ItemSpec {
                id: stored.id,
                description: stored.description,
                seller,
                min: stored.min,
                ends_at: stored.ends_at,
                channel: None,
                lead,
                bid_ids: stored.bid_ids,
            };
            let mut listener = None;
            if stored.ends_at > now.ms {
                let bound = self
                    .bind(stored.port)
                    .or_else(|_| self.bind_item_port())
                    .and_then(|l| Ok((l.local_addr()?.port(), l)));
                match bound {
                    Ok((port, l)) => {
                        // The grace makes up for one outage: a restart within it (a crash
                        // loop) adds nothing more.
                        spec.ends_at = stored
                            .ends_at
                            .max(stored.planned_ends_at.saturating_add(grace));
                        spec.channel = Some(SocketAddr::new(self.advertise, port).to_string());
                        self.records.push(Record::ItemResumed {
                            item: stored.id,
                            ends_at: spec.ends_at,
                            port,
                        });
                        listener = Some(l);
                        tracing::debug!(
                            item = stored.id,
                            port,
                            ends_at = spec.ends_at,
                            "item resumed"
                        );
                    }
                    Err(e) => {
                        // Without a channel no one can bid: the auction closes with what it has.
                        tracing::error!(item = stored.id, error = %e, "no port to resume the item on; closing it");
                    }
                }
            } else {
                tracing::info!(
                    item = stored.id,
                    "item ended while the server was down; closing it"
                );
            }
            let running = listener.is_some();
            let handle = item::spawn(spec, listener, self.ctx.clone());
            if let Negotiation::Due(at) = stored.negotiation {
                self.negotiations.insert((at, stored.id));
            }
            self.items
                .insert(stored.id, Entry::running(handle, stored.negotiation));
            if running {
                resumed.push(stored.id);
            } else {
                closed_items += 1;
            }
        }
        // One group for every resumed item, then their announcements (after it, so they wait
        // until it is durable): one entry each in the announcement log, whatever the number of
        // accounts (the log keeps the latest `--announce-queue`; see `announce_queue.rs`).
        self.append_records();
        for &item in &resumed {
            self.announce_item(item);
        }
        tracing::info!(
            resumed = resumed.len(),
            closed = closed_items,
            "resumed the open items"
        );
        for (account, item) in mem::take(&mut self.to_subscribe) {
            if let Some(name) = self.accounts.by_id(account).map(|a| a.handle.name.clone()) {
                self.add_subscription(&name, item);
            }
        }
    }
}
