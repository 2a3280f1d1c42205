//! One task per open item. It owns the item's auction state, its TLS listener and the list of
//! connected bidders; connections and the registry talk to it only through its command
//! channel. It never waits on a connection: replies go into each connection's bounded queue
//! with `try_send`, and HIGHEST goes into one `watch` that every connection's writer reads, so
//! a reader that stops reading costs only itself.
//!
//! Nor does it wait on the disk. A bid is judged and applied at once and its record appended to
//! storage; everything the task says afterwards (the answer, HIGHEST, STATE, the view the
//! registry reads) waits in `outbox` until storage reports durable everything this item
//! appended before it was said (`own_lsn`; numbers are global, so everything anyone appended
//! before that too). So no one learns of a bid a crash could lose, and bids arriving during
//! one commit are judged meanwhile and committed together in the next. What a message says
//! is this item's state, which only this task appends once the item runs; what others
//! appended about it (the offer, a resumption, the account's registration) is covered by each
//! connection's first message, STATE, which waits for everything anyone appended before the
//! join, and which everything later on the connection follows. A rejection on an item whose
//! own bids are all durable is therefore said at once, while other items' bids are still
//! being committed. (`account-gone` also waits for everything appended before it; the
//! registry clears an account's flag before it appends the deregistration, so that verdict
//! can still precede its record, as it always could.)

mod alerts;
mod bid;
mod channel;
mod close;
pub(crate) mod cmd;
mod deliver;
mod operator;

use auction_protocol::channel::{
    self as line, ChannelBody, ChannelRequest, ChannelRequestBody, LineError,
};
use auction_protocol::{Cents, ItemState, ItemView, Reason};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

pub(crate) use cmd::{HighestRx, ItemCmd, ItemHandle, ItemSpec, Watchers};

use crate::accounts::{AccountHandle, AccountId};
use crate::clock::{unix_ms, Now};
use crate::context::ServerContext;
use crate::net::accept::admit;
use crate::net::listener::Listener;
use crate::rules::auction::{Auction, Offer, Rules};
use crate::rules::refusal::Refusal;
use crate::rules::rejected_ids::RejectedIds;
use crate::store::{Lsn, Outbox, Record};
use crate::web::{BoardBid, BoardItem};

struct Conn {
    account: Arc<AccountHandle>,
    queue: mpsc::Sender<ChannelBody>,
    /// Its row in the connection log.
    session: u64,
}

/// Something the task has said that waits for storage to catch up.
enum Out {
    /// A message for one connection.
    To(u64, ChannelBody),
    /// STATE, built when it is delivered so it shows the durable view.
    State { conn: u64, req: Option<u64> },
    /// A new highest bid: the view and the HIGHEST broadcast; `bid` is the bid that moved it,
    /// for the board. `next_min`, `reserve_met` and `buy_now` as they stand after it.
    Highest {
        amount: Cents,
        bidder: String,
        ends_at: u64,
        next_min: Cents,
        reserve_met: Option<bool>,
        buy_now: Option<Cents>,
        bid: BoardBid,
        /// The account that led before this bid, when it lost the lead: told by OUTBID if
        /// it has no connection on the item when this is said.
        outbid: Option<AccountId>,
    },
    /// An accepted bid that moved nothing others see (a leader's new maximum): the board
    /// counts it.
    Counted(BoardBid),
    /// A lowered minimum: the view and PRICE-ADJUSTMENT on the channel and to subscribers.
    Min(Cents),
    /// The operator removed a bid: BID-REMOVED and STATE on the channel, the view, HIGHEST
    /// and the board as the auction stands without it.
    Removed(operator::Removed),
    /// An earlier lot of the group moved this item's end: the view, HIGHEST and STATE, with
    /// the auction as it stood when the end moved (later bids may not be durable yet).
    EndMoved(deliver::EndMoved),
}

struct ItemTask {
    id: u64,
    ctx: Arc<ServerContext>,
    auction: Auction,
    /// The first verdicts of recently rejected bid ids (not stored; bounded and expiring).
    rejected: RejectedIds,
    /// What has been said but waits for storage.
    outbox: Outbox<Out>,
    /// The number of the last records this task appended: what its messages wait for.
    own_lsn: Lsn,
    view: watch::Sender<ItemView>,
    highest: watch::Sender<Option<Arc<str>>>,
    conns: HashMap<u64, Conn>,
    /// Connections per account, for `--max-bidders-per-item`.
    accounts: HashMap<AccountId, usize>,
    seller: Arc<AccountHandle>,
    description: String,
    watchers: Arc<Watchers>,
    /// The wall-clock time (Unix ms) of the event being handled: read once per event
    /// (`clock`), and what every record and rule of that event uses.
    now: u64,
    /// The same moment on the monotonic clock (budgets).
    mono: Instant,
    /// The auction's result, when the bid that ended it (buy it now) appended it with itself.
    result: Option<close::Closing>,
    /// The end for which the leader was last considered for ENDING-SOON, and who was told.
    ending_soon: (u64, Option<AccountId>),
    /// A lot of a group closing in turn (see `ItemSpec::grouped`).
    grouped: bool,
}

/// Starts the task of an item; it listens on `listener` if given.
pub fn spawn(spec: ItemSpec, listener: Option<TcpListener>, ctx: Arc<ServerContext>) -> ItemHandle {
    let (handle, prepared) = prepare(spec, ctx);
    prepared.start(listener);
    handle
}

/// An item's task made but not started yet: its handle already works (commands wait in its
/// queue, the view answers `status`), so a restart can list every resumed item at once and
/// start them a batch at a time between datagrams (`registry/restore.rs`).
pub struct Prepared {
    task: ItemTask,
    commands: mpsc::Receiver<ItemCmd>,
    self_tx: mpsc::WeakSender<ItemCmd>,
}

impl Prepared {
    /// Starts the task, listening on `listener` if given (the one its spec's channel names).
    pub fn start(self, listener: Option<TcpListener>) {
        let Prepared {
            task,
            commands,
            self_tx,
        } = self;
        let span = tracing::info_span!("item", item = task.id);
        let ctx = task.ctx.clone();
        ctx.tasks
            .spawn(task.run(listener, commands, self_tx).instrument(span));
    }
}

/// The task of an item and its handle, not started (see [`Prepared`]).
pub fn prepare(spec: ItemSpec, ctx: Arc<ServerContext>) -> (ItemHandle, Prepared) {
    let rules = Rules {
        increments: ctx.config.increments.clone(),
        snipe_window_ms: ctx.config.snipe_window.as_millis() as u64,
        snipe_extension_ms: ctx.config.snipe_extension.as_millis() as u64,
    };
    let view = ItemView {
        item: spec.id,
        description: spec.description.clone(),
        seller: spec.seller.name.clone(),
        min: spec.min,
        highest: spec.lead.as_ref().map(|l| l.amount),
        bidder: spec.lead.as_ref().map(|l| l.bidder.name.clone()),
        ends_at: spec.ends_at,
        state: ItemState::Open,
        channel: spec.channel.clone(),
        winner: None,
        price: None,
        settle_port: None,
        reserve_met: spec.terms.reserve_met(spec.lead.as_ref().map(|l| l.amount)),
        buy_now: spec.terms.buy_now(spec.lead.as_ref().map(|l| l.amount)),
        cancelled: false,
    };
    let highest = spec.lead.as_ref().map(|l| {
        Arc::from(line::encode_line(ChannelBody::Highest {
            item: spec.id,
            amount: l.amount,
            bidder: l.bidder.name.clone(),
            ends_at: spec.ends_at,
            next_min: Some(rules.increments.above(l.amount)),
            reserve_met: spec.terms.reserve_met(Some(l.amount)),
            buy_now: spec.terms.buy_now(Some(l.amount)),
        }))
    });
    if let Some(counts) = spec.shown {
        ctx.board.offered(BoardItem::from_view(&view, counts));
    }
    let (view_tx, view_rx) = watch::channel(view);
    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let auction = Auction::new(
        spec.min,
        spec.seller.id,
        spec.offered_at,
        spec.ends_at,
        rules,
        spec.terms,
    )
    .restore(spec.lead, spec.bid_ids);
    let task = ItemTask {
        id: spec.id,
        auction,
        rejected: RejectedIds::default(),
        outbox: Outbox::new(&*ctx.storage),
        // Whatever was appended before the task existed (its item's offer or resumption among
        // it, when that is appended first) is waited for too.
        own_lsn: ctx.storage.appended(),
        view: view_tx,
        highest: watch::channel(highest).0,
        conns: HashMap::new(),
        accounts: HashMap::new(),
        seller: spec.seller,
        description: spec.description,
        watchers: Arc::default(),
        ctx: ctx.clone(),
        now: unix_ms(),
        mono: Instant::now(),
        result: None,
        ending_soon: (0, None),
        grouped: spec.grouped,
    };
    let watchers = task.watchers.clone();
    let prepared = Prepared {
        task,
        commands: cmd_rx,
        self_tx: cmd_tx.downgrade(),
    };
    let handle = ItemHandle {
        cmd: cmd_tx,
        view: view_rx,
        watchers,
    };
    (handle, prepared)
}

/// Accepts on `listener`, or never when there is none.
async fn accept(listener: &mut Option<Listener>) -> (tokio::net::TcpStream, std::net::SocketAddr) {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

impl ItemTask {
    async fn run(
        mut self,
        listener: Option<TcpListener>,
        mut commands: mpsc::Receiver<ItemCmd>,
        self_tx: mpsc::WeakSender<ItemCmd>,
    ) {
        let mut listener = listener.map(Listener::new);
        let mut next_conn: u64 = 0;
        // One timer for the item's life, moved only when the end moves (soft close) or when it
        // fires early (the wall clock and the runtime's clock disagree).
        let end = tokio::time::sleep_until(self.end_instant());
        tokio::pin!(end);
        let mut armed_for = self.auction.ends_at;
        // ENDING-SOON: armed for the end as it stands, once per end (`alerts.rs`).
        let soon = tokio::time::sleep_until(self.ending_soon_instant());
        tokio::pin!(soon);
        let mut soon_for = self.auction.ends_at;
        let shutdown = self.ctx.shutdown.clone();
        loop {
            if self.auction.ends_at != armed_for {
                armed_for = self.auction.ends_at;
                end.as_mut().reset(self.end_instant());
            }
            if self.auction.ends_at != soon_for {
                soon_for = self.auction.ends_at;
                soon.as_mut().reset(self.ending_soon_instant());
            }
            let soon_due = self.ending_soon.0 != self.auction.ends_at
                && !self.ctx.config.ending_soon.is_zero();
            tokio::select! {
                _ = &mut soon, if soon_due => {
                    self.clock();
                    if !self.ending_soon() {
                        soon.as_mut().reset(self.ending_soon_instant());
                    }
                }
                _ = &mut end => {
                    self.clock();
                    if self.auction.is_over(self.now) {
                        break;
                    }
                    end.as_mut().reset(self.end_instant());
                }
                _ = self.outbox.progress() => {
                    self.clock();
                    self.flush();
                }
                Some(cmd) = commands.recv() => {
                    self.clock();
                    match cmd {
                        // Reads the item's bids from storage: the one command that waits.
                        ItemCmd::RemoveBid { operator, bid, note, reply } => {
                            let removed = self.remove_bid(operator, bid, note).await;
                            let _ = reply.send(removed);
                        }
                        cmd => self.handle(cmd),
                    }
                    if self.result.is_some() {
                        break; // A buy-it-now or the operator ended the auction.
                    }
                }
                accepted = accept(&mut listener) => {
                    if let Some((tcp, peer, slot)) = admit(accepted, &self.ctx) {
                        let Some(tx) = self_tx.upgrade() else { break };
                        next_conn += 1;
                        self.ctx.tasks.spawn(channel::serve(tcp, peer, next_conn, self.ctx.clone(), tx, slot));
                    }
                }
                _ = shutdown.cancelled() => {
                    drop(listener);
                    self.going_down(commands).await;
                    return;
                }
            }
        }
        drop(listener);
        self.close().await;
    }

    /// Reads the wall clock once for the event being handled (see `now`).
    fn clock(&mut self) {
        self.now = unix_ms();
        self.mono = Instant::now();
    }

    /// Appends `records` to storage; what this task says from now on waits for them.
    fn append(&mut self, records: Vec<Record>) -> Lsn {
        self.own_lsn = self.ctx.storage.append(records);
        self.own_lsn
    }

    /// When the auction ends, on the runtime's clock.
    fn end_instant(&self) -> Instant {
        Now::read().instant_of(self.auction.ends_at)
    }

    /// One command: one line per kind.
    fn handle(&mut self, cmd: ItemCmd) {
        match cmd {
            ItemCmd::Join {
                conn,
                peer,
                account,
                queue,
                reply,
            } => drop(reply.send(self.join(conn, peer, account, queue))),
            ItemCmd::Leave { conn } => self.remove(conn),
            ItemCmd::AccountGone { account } => self.account_gone(account),
            ItemCmd::Request { conn, request } => self.request(conn, request),
            ItemCmd::BadLine { conn, error, fatal } => self.bad_line(conn, error, fatal),
            ItemCmd::Leader { reply } => drop(reply.send(self.auction.lead().map(|l| l.bidder.id))),
            ItemCmd::LowerMin { min, reply } => drop(reply.send(self.lower_min(min))),
            ItemCmd::PushEnd { to } => self.push_end(to),
            ItemCmd::Cancel {
                operator,
                note,
                reply,
            } => drop(reply.send(self.cancel(operator, note))),
            // Handled by the run loop, which may wait; here only while the server stops.
            ItemCmd::RemoveBid { reply, .. } => drop(reply.send(Err(Refusal::new(
                Reason::Unavailable,
                "the server is shutting down; ask again when it is back".into(),
            )))),
        }
    }

    fn request(&mut self, conn: u64, request: ChannelRequest) {
        let req = request.req;
        match request.body {
            ChannelRequestBody::Bid { amount, id } => {
                self.bid(conn, req, Offer::Amount(amount), id)
            }
            ChannelRequestBody::ProxyBid { max, id } => self.bid(conn, req, Offer::Max(max), id),
            ChannelRequestBody::BuyNow { amount, id } => {
                self.bid(conn, req, Offer::BuyNow(amount), id)
            }
            ChannelRequestBody::Status => self.emit(Out::State {
                conn,
                req: Some(req),
            }),
        }
    }

    /// A line that could not be read: said at once (it says nothing about the auction).
    fn bad_line(&mut self, conn: u64, error: LineError, fatal: bool) {
        let body = ChannelBody::Error {
            req: error.req,
            reason: error.reason,
            message: error.detail,
        };
        self.send(conn, body);
        if fatal {
            self.remove(conn);
        }
    }

    /// The account was deregistered: its connections are told and let go.
    fn account_gone(&mut self, account: AccountId) {
        let gone: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.account.id == account)
            .map(|(&conn, _)| conn)
            .collect();
        for conn in gone {
            // Said at once (it says nothing about the auction); dropping the queue then lets
            // the writer send it and close the connection.
            let body = ChannelBody::Error {
                req: None,
                reason: Reason::AccountGone,
                message: "this account has been deregistered".into(),
            };
            self.send(conn, body);
            self.remove(conn);
        }
    }

    /// An earlier lot of the item's group was extended: the end moves to `to` if that is
    /// later, stored before it is said.
    fn push_end(&mut self, to: u64) {
        if self.auction.is_over(self.now) || to <= self.auction.ends_at {
            return;
        }
        self.auction.ends_at = to;
        self.append(vec![Record::EndMoved {
            item: self.id,
            ends_at: to,
        }]);
        tracing::info!(ends_at = to, "an earlier lot's extension moved the end");
        let moved = deliver::EndMoved {
            ends_at: to,
            lead: self
                .auction
                .lead()
                .map(|l| (l.amount, l.bidder.name.clone())),
            next_min: self.auction.next_min(),
            reserve_met: self.auction.reserve_met(),
            buy_now: self.auction.buy_now(),
        };
        self.emit(Out::EndMoved(moved));
    }

    /// The seller accepted a negotiation: the minimum goes down if the rules allow it now.
    fn lower_min(&mut self, min: Cents) -> Result<(), Refusal> {
        let now = self.now;
        self.auction.lower_min(min, now)?;
        self.append(vec![
            Record::Negotiated {
                item: self.id,
                min: Some(min),
                at: now,
            },
            // The answer settles the NEGOTIATE-REQ notice.
            Record::negotiate_req_acked(self.id, now),
        ]);
        tracing::info!(%min, "the seller lowered the minimum");
        self.emit(Out::Min(min));
        Ok(())
    }

    fn join(
        &mut self,
        conn: u64,
        peer: std::net::SocketAddr,
        account: Arc<AccountHandle>,
        queue: mpsc::Sender<ChannelBody>,
    ) -> Result<HighestRx, Refusal> {
        if !account.is_live() {
            return Err(Refusal::new(
                Reason::AccountGone,
                "this account has been deregistered".into(),
            ));
        }
        if let Some(cap) = self.ctx.config.max_bidders_per_item {
            if !self.accounts.contains_key(&account.id) && self.accounts.len() >= cap {
                return Err(Refusal::new(
                    Reason::ItemFull,
                    format!(
                        "item {} already has {cap} bidders connected; try later",
                        self.id
                    ),
                ));
            }
        }
        *self.accounts.entry(account.id).or_default() += 1;
        let session = self
            .ctx
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let account_id = account.id;
        self.conns.insert(
            conn,
            Conn {
                account,
                queue,
                session,
            },
        );
        // The first thing a connection hears, and everything after it waits behind it (the
        // outbox keeps the order): it waits for everything anyone appended so far, so a
        // connection learns nothing before the records other tasks appended about the item
        // and the account (the offer, a resumption after a restart, the registration) are
        // durable; what follows rests on this item's own records.
        self.emit_after_all(Out::State { conn, req: None });
        // The connection log, for the operator's `auction-server status`: nothing said rests
        // on it, so it is not one of the records messages wait for (`own_lsn`), and it is
        // appended after the STATE, which so does not wait for its commit either.
        self.ctx.storage.append(vec![Record::ChannelOpened {
            session,
            item: self.id,
            account: account_id,
            peer,
            at: self.now,
        }]);
        Ok(self.highest.subscribe())
    }

    fn remove(&mut self, conn: u64) {
        if let Some(c) = self.conns.remove(&conn) {
            // The connection log: nothing said rests on it (see `join`).
            self.ctx.storage.append(vec![Record::ChannelClosed {
                session: c.session,
                at: self.now,
            }]);
            if let Some(n) = self.accounts.get_mut(&c.account.id) {
                *n -= 1;
                if *n == 0 {
                    self.accounts.remove(&c.account.id);
                }
            }
        }
    }
}
