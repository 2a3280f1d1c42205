//! Several nodes: the items run on the nodes, and the registry follows them through the
//! database (`cluster/link.rs`). What the follower reads becomes what a local item would have
//! told the registry: the view `status` and `list` show, BID-UPDATE and PRICE-ADJUSTMENT for
//! subscribers, and at the close the notices (WIN / SOLD / NOT-SOLD, durable already: the
//! owner stored them with the result) and the sale for the settlement desk.

use auction_protocol::udp::{self, ServerBody};
use auction_protocol::ItemState;
use std::time::Duration;

use super::inbox::{Change, ItemClosed, ItemUpdate};
use super::{AfterAnswer, Answer, Registry};
use crate::clock::Now;
use crate::cluster::link::Remote;
use crate::rules::settlement::{Party, Sale};
use crate::settle::cmd::DeskCmd;
use crate::store::postgres::shard::ItemState as Stored;
use crate::store::wait_durable;

/// How long a new item's answer waits for its node to open the channel.
const OPEN_WAIT: Duration = Duration::from_secs(5);
/// How often it looks meanwhile.
const OPEN_POLL: Duration = Duration::from_millis(10);

impl Registry {
    pub(super) fn on_remote(&mut self, event: Remote, now: Now) {
        match event {
            Remote::State(state) => self.remote_state(state),
            Remote::Closed { state, notices } => {
                let item = state.id;
                let Some(entry) = self.items.get(&item) else {
                    return;
                };
                let Some(mirror) = &entry.mirror else { return };
                if entry.cmd.is_none() {
                    return; // closed already
                }
                let result = state.closed.clone().flatten();
                let settle_port = self.ctx.settle_port;
                mirror.send_modify(|v| {
                    v.state = ItemState::Closed;
                    v.channel = None;
                    v.highest = state.highest.as_ref().map(|h| h.0);
                    v.bidder = state.highest.as_ref().map(|h| h.1.clone());
                    v.winner = result.as_ref().map(|r| r.1.clone());
                    v.price = result.as_ref().map(|r| r.2);
                    v.settle_port = result.as_ref().map(|_| settle_port);
                    v.reserve_met = state.terms.reserve_met(v.highest);
                    v.buy_now = None;
                    v.cancelled = state.cancelled;
                });
                let view = entry.view.borrow().clone();
                let seller = self.accounts.get(&view.seller).map(|a| a.handle.clone());
                let Some(seller) = seller else {
                    tracing::warn!(item, seller = %view.seller, "a closed item's seller is gone");
                    return;
                };
                if let Some((buyer, name, amount)) = &result {
                    let sold = DeskCmd::Sold(Sale {
                        item,
                        description: view.description.clone(),
                        seller: Party {
                            id: seller.id,
                            name: seller.name.clone(),
                        },
                        buyer: Party {
                            id: *buyer,
                            name: name.clone(),
                        },
                        amount: *amount,
                        closed_at: state.closed_at.unwrap_or(now.ms),
                    });
                    let desk = self.ctx.desk.clone();
                    tokio::spawn(async move {
                        let _ = desk.send(sold).await;
                    });
                }
                tracing::info!(
                    item,
                    sold = result.is_some(),
                    "an item run by a node closed"
                );
                self.on_closed(
                    ItemClosed {
                        item,
                        seller,
                        notices,
                        result: result.map(|(_, name, amount)| (name, amount)),
                    },
                    now,
                );
            }
        }
    }

    /// An open item's state as its node stored it: the view follows, and subscribers hear of
    /// a new highest bid or a lower minimum.
    fn remote_state(&mut self, state: Stored) {
        let Some(entry) = self.items.get_mut(&state.id) else {
            return;
        };
        if entry.mirror.is_none() || entry.cmd.is_none() || state.rev <= entry.rev {
            return;
        }
        entry.rev = state.rev;
        let Some(mirror) = &entry.mirror else { return };
        let before = entry.view.borrow().clone();
        let highest = state.highest.as_ref().map(|h| h.0);
        let bidder = state.highest.as_ref().map(|h| h.1.clone());
        if before.highest == highest
            && before.bidder == bidder
            && before.min == state.min
            && before.ends_at == state.ends_at
            && before.channel == state.channel
        {
            return;
        }
        mirror.send_modify(|v| {
            v.highest = highest;
            v.bidder = bidder.clone();
            v.min = state.min;
            v.ends_at = state.ends_at;
            v.channel = state.channel.clone();
            v.reserve_met = state.terms.reserve_met(highest);
            v.buy_now = state.terms.buy_now(highest);
        });
        let subscribed = !entry.subscribers.is_empty();
        // The leader that lost the lead is told (connected to the channel or not: the leader
        // does not know), once the owner stored the bid.
        // (Not when the price fell: an operator removed a bid.)
        if let (Some(was), Some(amount), Some(now_leads)) = (&before.bidder, highest, &bidder) {
            if was != now_leads && before.highest.is_some_and(|h| amount > h) {
                if let Some(account) = self.accounts.get(was).map(|a| a.handle.id) {
                    let alert = super::inbox::Alert::Outbid {
                        account,
                        amount,
                        bidder: now_leads.clone(),
                        next_min: self.ctx.config.increments.above(amount),
                        ends_at: state.ends_at,
                    };
                    self.alert(state.id, alert, Now::read());
                }
            }
        }
        if !subscribed {
            return;
        }
        if let (Some(amount), Some(bidder)) = (highest, bidder) {
            if before.highest != highest || before.bidder.as_deref() != Some(bidder.as_str()) {
                self.on_update(ItemUpdate {
                    item: state.id,
                    change: Change::Highest {
                        amount,
                        bidder,
                        ends_at: state.ends_at,
                    },
                });
            }
        }
        if before.min != state.min {
            self.on_update(ItemUpdate {
                item: state.id,
                change: Change::Min {
                    min: state.min,
                    ends_at: state.ends_at,
                },
            });
        }
    }

    /// Waits until the new item `item` is stored and its node has opened its channel (at most
    /// `OPEN_WAIT`), and returns the offer's answer naming the channel (empty if it did not
    /// open in time: `status` shows it once it does).
    pub(super) async fn await_channel(&mut self, req: u64, item: u64) -> Answer {
        let channel = self.channel_of_new(item).await;
        let ends_at = self
            .items
            .get(&item)
            .map(|e| e.view.borrow().ends_at)
            .unwrap_or_default();
        Answer {
            datagrams: vec![udp::encode(ServerBody::OfferConf {
                req,
                item,
                channel: channel.unwrap_or_default(),
                ends_at,
            })],
            after: AfterAnswer::AnnounceItem(item),
        }
    }

    /// The channel of a new item once its node has opened it (see [`Registry::await_channel`]),
    /// shown in its view from then on.
    pub(super) async fn channel_of_new(&mut self, item: u64) -> Option<String> {
        let storage = self.ctx.storage.clone();
        if !wait_durable(&*storage, storage.appended()).await {
            return None;
        }
        let link = self.ctx.cluster.clone()?;
        let deadline = tokio::time::Instant::now() + OPEN_WAIT;
        let opened = loop {
            match link.channel_of(item).await {
                Some(opened) => break Some(opened),
                None if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(item, "no node opened the new item's channel in time");
                    break None;
                }
                None => tokio::time::sleep(OPEN_POLL).await,
            }
        };
        let (channel, rev) = opened?;
        if let Some(entry) = self.items.get_mut(&item) {
            if let (Some(mirror), true) = (&entry.mirror, rev > entry.rev) {
                entry.rev = rev;
                mirror.send_modify(|v| v.channel = Some(channel.clone()));
            }
        }
        Some(channel)
    }
}
