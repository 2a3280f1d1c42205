//! The end of an item task: the auction's result made durable with its notices (WIN / SOLD /
//! NOT-SOLD in the same transaction), then handed to the registry and the settlement desk, and
//! told on the channel; or, at shutdown, the queued requests finished and the bidders told why
//! the channel closes.

use auction_protocol::channel::ChannelBody;
use auction_protocol::udp::{self, ServerBody};
use auction_protocol::{ItemState, Reason};
use tokio::sync::mpsc;

use super::cmd::ItemCmd;
use super::ItemTask;
use crate::accounts::AccountId;
use crate::registry::inbox::ItemClosed;
use crate::rules::auction::Lead;
use crate::rules::settlement::{Party, Sale};
use crate::settle::cmd::DeskCmd;
use crate::store::{wait_durable, NoticeKind, NoticeRecord, Record};

/// An auction's result, once its records are appended.
pub(super) struct Closing {
    /// The lead, when it met the reserve (if any): the buyer.
    pub winner: Option<Lead>,
    /// WIN and SOLD, or NOT-SOLD.
    pub notices: Vec<NoticeRecord>,
    /// When it closed (Unix ms).
    pub at: u64,
    /// The operator cancelled it: the operator's note.
    pub cancelled: Option<String>,
}

impl ItemTask {
    /// WIN and SOLD, or NOT-SOLD (saying whether the operator cancelled the item), for this
    /// item's result.
    pub(super) fn notices(&self, lead: Option<&Lead>, cancelled: bool) -> Vec<NoticeRecord> {
        let item = self.id;
        let description = self.description.clone();
        let notice = |account: AccountId, kind: NoticeKind, body: ServerBody| NoticeRecord {
            id: kind.id(item),
            account,
            item,
            kind: kind.as_str(),
            datagram: udp::encode(body),
        };
        match lead {
            Some(l) => vec![
                notice(
                    l.bidder.id,
                    NoticeKind::Win,
                    ServerBody::Win {
                        notice: NoticeKind::Win.id(item),
                        item,
                        description: description.clone(),
                        amount: l.amount,
                        seller: self.seller.name.clone(),
                    },
                ),
                notice(
                    self.seller.id,
                    NoticeKind::Sold,
                    ServerBody::Sold {
                        notice: NoticeKind::Sold.id(item),
                        item,
                        description,
                        amount: l.amount,
                        winner: l.bidder.name.clone(),
                    },
                ),
            ],
            None => vec![notice(
                self.seller.id,
                NoticeKind::NotSold,
                ServerBody::NotSold {
                    notice: NoticeKind::NotSold.id(item),
                    item,
                    description,
                    cancelled,
                },
            )],
        }
    }

    /// The result of the auction as it stands at `self.now` (the winner: the lead, if it met
    /// the reserve), and its records: to append with the bid that ended it (buy it now), or
    /// alone at the end (`close`).
    pub(super) fn result(&self) -> (Closing, Vec<Record>) {
        let winner = self.auction.winner().cloned();
        let notices = self.notices(winner.as_ref(), false);
        let at = self.now;
        let records = vec![
            Record::ItemClosed {
                item: self.id,
                winner: winner.as_ref().map(|l| (l.bidder.id, l.amount)),
                notices: notices.clone(),
                at,
            },
            // An unanswered negotiation request no longer matters.
            Record::negotiate_req_acked(self.id, at),
        ];
        let result = Closing {
            winner,
            notices,
            at,
            cancelled: None,
        };
        (result, records)
    }

    /// The auction has ended: make the result durable (appended already when a buy-it-now
    /// ended it), tell everyone on the channel, and hand the result to the registry for WIN /
    /// SOLD / NOT-SOLD.
    pub(super) async fn close(mut self) {
        let result = match self.result.take() {
            Some(result) => result,
            None => {
                self.clock();
                let (result, records) = self.result();
                self.append(records);
                result
            }
        };
        let Closing {
            winner: lead,
            notices,
            at,
            cancelled,
        } = result;
        let lsn = self.own_lsn;
        if !wait_durable(&*self.ctx.storage, lsn).await {
            // The server is stopping for it; the item closes again after the restart.
            tracing::error!("could not store the auction result");
            self.conns.clear();
            return;
        }
        self.flush();
        let winner = lead.as_ref().map(|l| (l.bidder.name.clone(), l.amount));
        self.ctx
            .board
            .closed(self.id, winner, at, cancelled.clone());
        // The registry hears first: by the time anyone can see the item closed (STATUS, or
        // SOLD-TO on a channel), the registry has the close queued, and it handles queued closes
        // before the next datagram, so the seller's open-item count is already right.
        let closed = ItemClosed {
            item: self.id,
            seller: self.seller.clone(),
            notices,
            result: lead.as_ref().map(|l| (l.bidder.name.clone(), l.amount)),
        };
        let _ = self.ctx.closed.send(closed).await;
        if let Some(l) = &lead {
            let sold = DeskCmd::Sold(Sale {
                item: self.id,
                description: self.description.clone(),
                seller: Party {
                    id: self.seller.id,
                    name: self.seller.name.clone(),
                },
                buyer: Party {
                    id: l.bidder.id,
                    name: l.bidder.name.clone(),
                },
                amount: l.amount,
                closed_at: at,
            });
            let _ = self.ctx.desk.send(sold).await;
        }
        let settle_port = lead.as_ref().map(|_| self.ctx.settle_port);
        self.view.send_modify(|v| {
            v.state = ItemState::Closed;
            v.channel = None;
            v.winner = lead.as_ref().map(|l| l.bidder.name.clone());
            v.price = lead.as_ref().map(|l| l.amount);
            v.settle_port = settle_port;
            v.buy_now = None;
            v.cancelled = cancelled.is_some();
        });
        let result = match &lead {
            Some(l) => ChannelBody::SoldTo {
                item: self.id,
                winner: l.bidder.name.clone(),
                amount: l.amount,
            },
            None => ChannelBody::NotSold {
                item: self.id,
                cancelled: cancelled.clone(),
            },
        };
        let conns: Vec<u64> = self.conns.keys().copied().collect();
        for conn in conns {
            self.send(conn, ChannelBody::BidOver { item: self.id });
            self.send(conn, result.clone());
        }
        match &lead {
            Some(l) => {
                tracing::info!(winner = %l.bidder.name, amount = %l.amount, "auction closed: sold")
            }
            None => match &cancelled {
                Some(note) => tracing::info!(note, "auction closed: cancelled by the operator"),
                None => tracing::info!("auction closed: not sold"),
            },
        }
        // Dropping the queues lets each writer flush what is queued and close the channel.
        self.clear_conns();
    }

    /// The server is stopping: finish the requests already queued, wait until everything said
    /// is durable and deliver it, then tell every bidder why the channel closes.
    pub(super) async fn going_down(&mut self, mut commands: mpsc::Receiver<ItemCmd>) {
        commands.close();
        self.clock();
        while let Ok(cmd) = commands.try_recv() {
            self.handle(cmd);
        }
        if wait_durable(&*self.ctx.storage, self.ctx.storage.appended()).await {
            self.clock();
            self.flush();
        }
        let moved = self
            .ctx
            .moved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&self.id)
            .cloned();
        let message = moved
            .unwrap_or_else(|| "the server is shutting down; reconnect when it is back".into());
        let conns: Vec<u64> = self.conns.keys().copied().collect();
        for conn in conns {
            self.send(
                conn,
                ChannelBody::Error {
                    req: None,
                    reason: Reason::Unavailable,
                    message: message.clone(),
                },
            );
        }
        self.clear_conns();
    }

    /// Lets go of every connection (their writers then close them), logging it.
    pub(super) fn clear_conns(&mut self) {
        let at = self.now;
        let closed: Vec<Record> = self
            .conns
            .drain()
            .map(|(_, c)| Record::ChannelClosed {
                session: c.session,
                at,
            })
            .collect();
        if !closed.is_empty() {
            // The connection log: nothing said rests on it (see `join`).
            self.ctx.storage.append(closed);
        }
        self.accounts.clear();
    }
}
