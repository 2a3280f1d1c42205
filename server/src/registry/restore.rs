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
        for handle in self.accounts.restore(
            snapshot.accounts,
            self.ctx.config.devices,
            now.instant.into_std(),
        ) {
            self.announcements.add(handle.id);
            self.ctx.keys.insert(handle);
        }
        // The board's recent results: the latest closes before the restart.
        let mut closed: Vec<&crate::store::StoredItem> = snapshot
            .items
            .iter()
            .filter(|i| i.closed_at.is_some())
            .collect();
        closed.sort_by_key(|i| (i.closed_at, i.id));
        let skip = closed
            .len()
            .saturating_sub(crate::web::board::RECENT_RESULTS);
        let settle_port = self.ctx.settle_port;
        for stored in &closed[skip..] {
            let view = closed_view(stored, settle_port);
            let mut shown = crate::web::BoardItem::from_view(&view, stored.counts);
            shown.closed_at = stored.closed_at;
            shown.cancelled = stored.cancelled.clone();
            self.ctx.board.offered(shown);
        }
        for stored in snapshot.items {
            if let Some(id) = &stored.catalog_id {
                self.catalog_ids.insert(id.clone());
            }
            if stored.closed_at.is_some() {
                let view = closed_view(&stored, settle_port);
                let (_, view) = tokio::sync::watch::channel(view);
                self.items.insert(
                    stored.id,
                    Entry {
                        cmd: None,
                        view,
                        watchers: None,
                        subscribers: BTreeSet::new(),
                        negotiation: Negotiation::Done,
                        mirror: None,
                        rev: 0,
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

    /// Makes the items that were open when the server stopped, without starting their tasks:
    /// each is in the catalogue at once (`status`, `list` and subscriptions see it, commands
    /// wait in its queue) and listens again already (on the same port when it is free), so a
    /// bidder who connects is queued by the system, not refused; it has the time it had left
    /// plus the recovery grace. One group records where they listen, and their announcements
    /// follow it. The run loop then starts the tasks a batch at a time between datagrams
    /// ([`Registry::resume_some`]), so the UDP plane answers within moments of a start
    /// however many items there are.
    pub(super) fn resume(&mut self, now: Now) {
        if let Some(link) = self.ctx.cluster.clone() {
            return self.follow_open_items(&link);
        }
        let grace = self.ctx.config.recovery_grace.as_millis() as u64;
        let mut resumed = Vec::new();
        // Every open item's former port at once, on every core (a taken one gets another below).
        let ports: Vec<Option<u16>> = self
            .to_resume
            .iter()
            .map(|s| (s.ends_at > now.ms).then_some(s.port))
            .collect();
        let mut prebound = crate::net::listener::bind_all(self.bind_ip, &ports).into_iter();
        for stored in mem::take(&mut self.to_resume) {
            let former = prebound.next().flatten();
            let seller = self.handle_of(stored.seller, &stored.seller_name);
            let lead = stored.lead.as_ref().map(|(id, name, amount, max)| Lead {
                amount: *amount,
                bidder: self.handle_of(*id, name),
                max: *max,
            });
            let open = stored.ends_at > now.ms;
            // The grace makes up for one outage: a restart within it (a crash loop) adds
            // nothing more.
            let ends_at = if open {
                stored
                    .ends_at
                    .max(stored.planned_ends_at.saturating_add(grace))
            } else {
                stored.ends_at
            };
            let mut listener = None;
            if open {
                let bound = match former {
                    Some(Ok(l)) => Ok(l),
                    _ => self.bind_item_port().and_then(|l| l.into_std()),
                }
                .and_then(|l| Ok((l.local_addr()?.port(), l)));
                match bound {
                    Ok((port, l)) => {
                        self.records.push(Record::ItemResumed {
                            item: stored.id,
                            ends_at,
                            port,
                        });
                        listener = Some((port, l));
                        resumed.push(stored.id);
                    }
                    Err(e) => {
                        // Without a channel no one can bid: the auction ends at its end with
                        // what it has (`status` shows it open without a channel until then).
                        tracing::error!(item = stored.id, error = %e, "no port to resume the item on; it takes no more bids and closes at its end");
                        self.resume_counts.2 += 1;
                    }
                }
            }
            let spec = ItemSpec {
                id: stored.id,
                description: stored.description,
                seller,
                min: stored.min,
                terms: stored.terms,
                offered_at: stored.offered_at,
                ends_at,
                channel: listener
                    .as_ref()
                    .map(|(port, _)| SocketAddr::new(self.advertise, *port).to_string()),
                lead,
                bid_ids: stored.bid_ids,
                shown: Some(stored.counts),
                grouped: self
                    .lots
                    .as_ref()
                    .is_some_and(|l| l.has(stored.catalog_id.as_deref())),
            };
            if let Some(lots) = &mut self.lots {
                lots.add(stored.catalog_id.as_deref(), stored.id);
            }
            let leader = spec.lead.as_ref().map(|l| l.bidder.id);
            let (handle, prepared) = item::prepare(spec, self.ctx.clone());
            if let Negotiation::Due(at) = stored.negotiation {
                self.negotiations.insert((at, stored.id));
            }
            self.items
                .insert(stored.id, Entry::running(handle, stored.negotiation));
            self.pending.insert(
                stored.id,
                Pending {
                    prepared,
                    listener: listener.map(|(_, l)| l),
                    open,
                    leader,
                },
            );
        }
        // One group for every resumed item, then their announcements (after it, so they wait
        // until it is durable): one entry each in the announcement log, whatever the number of
        // accounts (see `announce_queue.rs`).
        self.append_records();
        for &item in &resumed {
            self.announce_item(item);
        }
        self.resume_counts.0 += resumed.len();
        for (account, item) in mem::take(&mut self.to_subscribe) {
            if let Some(name) = self.accounts.by_id(account).map(|a| a.handle.name.clone()) {
                self.add_subscription(&name, item);
            }
        }
    }

    /// Several nodes: the open items run on the nodes (those of a dead node are given to live
    /// ones by the leader's sweep), so the registry only follows them: their views fill in
    /// from the database within a poll (`cluster/link.rs`).
    fn follow_open_items(&mut self, link: &Arc<crate::cluster::link::Link>) {
        let mut followed = 0;
        for stored in mem::take(&mut self.to_resume) {
            let view = stored_view(&stored);
            if let Negotiation::Due(at) = stored.negotiation {
                self.negotiations.insert((at, stored.id));
            }
            self.items
                .insert(stored.id, Entry::mirrored(view, link, stored.negotiation));
            followed += 1;
        }
        for (account, item) in mem::take(&mut self.to_subscribe) {
            if let Some(name) = self.accounts.by_id(account).map(|a| a.handle.name.clone()) {
                self.add_subscription(&name, item);
            }
        }
        tracing::info!(followed, "following the open items the nodes run");
    }

    /// Starts the tasks of up to `max` of the items made by [`Registry::resume`]: those whose
    /// end passed while the server was down close at once (with their results and notices);
    /// the others take the bidders waiting on their listeners.
    pub(super) fn resume_some(&mut self, max: usize) {
        self.since_resume = 0;
        let ids: Vec<u64> = self.pending.keys().take(max).copied().collect();
        self.start_pending(&ids);
    }

    /// Starts the pending items among `ids` (see [`Registry::resume_some`]).
    pub(super) fn start_pending(&mut self, ids: &[u64]) {
        let mut started = 0;
        for id in ids {
            let Some(p) = self.pending.remove(id) else {
                continue;
            };
            started += 1;
            if !p.open {
                tracing::info!(
                    item = id,
                    "item ended while the server was down; closing it"
                );
                self.resume_counts.1 += 1;
            }
            let listener = p.listener.and_then(|l| match tokio::net::TcpListener::from_std(l) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::error!(item = id, error = %e, "cannot take the item's listener; it takes no more bids and closes at its end");
                    None
                }
            });
            p.prepared.start(listener);
        }
        if self.pending.is_empty() && started > 0 {
            let (resumed, closed, without_port) = mem::take(&mut self.resume_counts);
            tracing::info!(resumed, closed, without_port, "resumed the open items");
        }
    }
}

/// The view of a stored item as open, with no channel (yet): what both a closed item's view
/// and a followed item's start from.
fn stored_view(stored: &crate::store::StoredItem) -> ItemView {
    ItemView {
        item: stored.id,
        description: stored.description.clone(),
        seller: stored.seller_name.clone(),
        min: stored.min,
        highest: stored.lead.as_ref().map(|l| l.2),
        bidder: stored.lead.as_ref().map(|l| l.1.clone()),
        ends_at: stored.ends_at,
        state: auction_protocol::ItemState::Open,
        channel: None,
        winner: None,
        price: None,
        settle_port: None,
        reserve_met: stored.terms.reserve_met(stored.lead.as_ref().map(|l| l.2)),
        buy_now: stored.terms.buy_now(stored.lead.as_ref().map(|l| l.2)),
        cancelled: false,
    }
}

/// The view of a closed item: sold when its result names a winner (its lead).
fn closed_view(stored: &crate::store::StoredItem, settle_port: u16) -> ItemView {
    let mut view = stored_view(stored);
    view.state = auction_protocol::ItemState::Closed;
    view.buy_now = None;
    view.cancelled = stored.cancelled.is_some();
    if stored.sold && view.highest.is_some() {
        view.winner = view.bidder.clone();
        view.price = view.highest;
        view.settle_port = Some(settle_port);
    }
    view
}

/// An item made at start and not started yet (see [`Registry::resume`]).
pub(super) struct Pending {
    prepared: item::Prepared,
    /// Listening already (bidders wait in its queue until the task starts); handed to the
    /// runtime when the task starts.
    listener: Option<std::net::TcpListener>,
    /// Whether it is still open (its end has not passed).
    open: bool,
    /// Who leads it: it takes no bid before it starts, so this is who leads it now.
    leader: Option<AccountId>,
}

impl Pending {
    pub(super) fn is_open(&self) -> bool {
        self.open
    }

    pub(super) fn leader(&self) -> Option<AccountId> {
        self.leader
    }
}
