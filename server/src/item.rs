//! One task per open item. It owns the item's auction state, its TLS listener and the list of
//! connected bidders; connections and the registry talk to it only through its command
//! channel. It never waits on a connection: replies go into each connection's bounded queue
//! with `try_send`, and HIGHEST goes into one `watch` that every connection's writer reads, so
//! a reader that stops reading costs only itself.
//!
//! Nor does it wait on the disk. A bid is judged and applied at once and its record appended to
//! storage; everything the task says afterwards (the answer, HIGHEST, STATE, the view the
//! registry reads) waits in `outbox` until storage reports durable everything appended before
//! it was said. So no one learns of a bid a crash could lose, and bids arriving during one
//! commit are judged meanwhile and committed together in the next.

use auction_protocol::channel::{self, ChannelBody, ChannelRequest, ChannelRequestBody, LineError};
use auction_protocol::udp::{self, ServerBody};
use auction_protocol::{names, Cents, ItemState, ItemView, Reason};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::accounts::{AccountHandle, AccountId, KeyDirectory};
use crate::auction::{self, Auction, Decision, Lead, Offer, Outcome, Rules};
use crate::config::Config;
use crate::connection;
use crate::settlement::Party;
use crate::storage::{wait_durable, NoticeKind, NoticeRecord, Outbox, Record, Storage};
use crate::unix_ms;

/// What every item task shares.
pub struct ItemContext {
    pub config: Config,
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub keys: Arc<KeyDirectory>,
    pub storage: Arc<dyn Storage>,
    /// Where items report that they closed.
    pub closed: mpsc::Sender<ItemClosed>,
    /// Where items with subscribers report each new highest bid, once durable.
    pub updates: mpsc::Sender<ItemUpdate>,
    pub shutdown: CancellationToken,
    /// Item tasks and connections, so shutdown can wait for them to finish.
    pub tasks: TaskTracker,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// One permit per open channel connection, server-wide (`Config::max_connections`).
    pub connections: Arc<tokio::sync::Semaphore>,
    /// Refusals in progress: a refused client still gets a handshake and a `server-full`
    /// line, but only this many at once; beyond that the TCP connection is just closed.
    pub refusals: Arc<tokio::sync::Semaphore>,
    /// The next row of the connection log (`Record::ChannelOpened`).
    pub next_session: std::sync::atomic::AtomicU64,
    /// Where sold items are settled: the desk, and its address (for the item's view).
    pub desk: mpsc::Sender<crate::settle_desk::DeskCmd>,
    pub settle_port: u16,
}

/// The registry's view of an item to run: a new one, or one resumed after a restart.
pub struct ItemSpec {
    pub id: u64,
    pub description: String,
    pub seller: Arc<AccountHandle>,
    pub min: Cents,
    pub ends_at: u64,
    /// Where bidders connect; `None` for an item that only has to close (its end passed
    /// while the server was down).
    pub channel: Option<String>,
    /// The leading bid, for a resumed item.
    pub lead: Option<Lead>,
    /// The first answer to every bid id, for a resumed item.
    pub bid_ids: Vec<(AccountId, String, Outcome)>,
}

/// Sent to the registry when an auction has ended and its result and notices are durable.
#[derive(Debug)]
pub struct ItemClosed {
    pub item: u64,
    pub seller: Arc<AccountHandle>,
    pub notices: Vec<NoticeRecord>,
    /// Winner and price, when sold.
    pub result: Option<(String, Cents)>,
}

/// A durable change of an item that has subscribers: a new highest bid (BID-UPDATE) or a
/// lowered minimum (PRICE-ADJUSTMENT).
#[derive(Debug, Clone)]
pub struct ItemUpdate {
    pub item: u64,
    pub change: Change,
}

#[derive(Debug, Clone)]
pub enum Change {
    Highest {
        amount: Cents,
        bidder: String,
        ends_at: u64,
    },
    Min {
        min: Cents,
        ends_at: u64,
    },
}

/// What the registry and an item task share about the item's subscribers.
#[derive(Debug, Default)]
pub struct Watchers {
    /// How many accounts are subscribed: the task reports updates only while above zero.
    pub count: std::sync::atomic::AtomicUsize,
    /// Set when an update could not be queued (the registry is behind): the registry then
    /// skips a sequence number for each subscriber, so clients see the gap and re-read.
    pub missed: std::sync::atomic::AtomicBool,
}

/// The latest HIGHEST of an item as an encoded line, shared by every writer on the item: it is
/// serialized once per accepted bid, not once per connection.
pub type HighestRx = watch::Receiver<Option<Arc<str>>>;

pub enum ItemCmd {
    /// A connection finished its handshake as `account`.
    Join {
        conn: u64,
        peer: std::net::SocketAddr,
        account: Arc<AccountHandle>,
        queue: mpsc::Sender<ChannelBody>,
        reply: oneshot::Sender<Result<HighestRx, (Reason, String)>>,
    },
    Leave {
        conn: u64,
    },
    Request {
        conn: u64,
        request: ChannelRequest,
    },
    /// A line that could not be decoded; `fatal` closes the connection after the error.
    BadLine {
        conn: u64,
        error: LineError,
        fatal: bool,
    },
    /// Who leads the auction now (for deregistration).
    Leader {
        reply: oneshot::Sender<Option<AccountId>>,
    },
    /// The account was deregistered: close its connections, saying why.
    AccountGone {
        account: AccountId,
    },
    /// The seller accepted a negotiation: lower the minimum to `min` (see
    /// `Auction::lower_min`). Answered once the change is appended to storage.
    LowerMin {
        min: Cents,
        reply: oneshot::Sender<Result<(), (Reason, String)>>,
    },
}

/// How the registry reaches an item.
pub struct ItemHandle {
    pub cmd: mpsc::Sender<ItemCmd>,
    pub view: watch::Receiver<ItemView>,
    pub watchers: Arc<Watchers>,
}

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
    /// A new highest bid: the view and the HIGHEST broadcast.
    Highest {
        amount: Cents,
        bidder: String,
        ends_at: u64,
    },
    /// A lowered minimum: the view and PRICE-ADJUSTMENT on the channel and to subscribers.
    Min(Cents),
}

struct ItemTask {
    id: u64,
    ctx: Arc<ItemContext>,
    auction: Auction,
    /// What has been said but waits for storage.
    outbox: Outbox<Out>,
    view: watch::Sender<ItemView>,
    highest: watch::Sender<Option<Arc<str>>>,
    conns: HashMap<u64, Conn>,
    /// Connections per account, for `--max-bidders-per-item`.
    accounts: HashMap<AccountId, usize>,
    seller: Arc<AccountHandle>,
    description: String,
    watchers: Arc<Watchers>,
}

/// Starts the task of an item; it listens on `listener` if given.
pub fn spawn(spec: ItemSpec, listener: Option<TcpListener>, ctx: Arc<ItemContext>) -> ItemHandle {
    let rules = Rules {
        min_increment: ctx.config.min_increment,
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
    };
    let highest = spec.lead.as_ref().map(|l| {
        Arc::from(channel::encode_line(ChannelBody::Highest {
            item: spec.id,
            amount: l.amount,
            bidder: l.bidder.name.clone(),
            ends_at: spec.ends_at,
        }))
    });
    let (view_tx, view_rx) = watch::channel(view);
    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let auction = Auction::new(spec.min, spec.seller.id, spec.ends_at, rules)
        .restore(spec.lead, spec.bid_ids);
    let task = ItemTask {
        id: spec.id,
        auction,
        outbox: Outbox::new(&*ctx.storage),
        view: view_tx,
        highest: watch::channel(highest).0,
        conns: HashMap::new(),
        accounts: HashMap::new(),
        seller: spec.seller,
        description: spec.description,
        watchers: Arc::default(),
        ctx: ctx.clone(),
    };
    let watchers = task.watchers.clone();
    let span = tracing::info_span!("item", item = spec.id);
    ctx.tasks.spawn(
        task.run(listener, cmd_rx, cmd_tx.downgrade())
            .instrument(span),
    );
    ItemHandle {
        cmd: cmd_tx,
        view: view_rx,
        watchers,
    }
}

/// Accepts on `listener`, or never when there is none.
async fn accept(
    listener: &Option<TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
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
        let mut next_conn: u64 = 0;
        // One timer for the item's life, moved only when the end moves (soft close) or when it
        // fires early (the wall clock and the runtime's clock disagree).
        let end = tokio::time::sleep_until(self.end_instant());
        tokio::pin!(end);
        let mut armed_for = self.auction.ends_at;
        let shutdown = self.ctx.shutdown.clone();
        loop {
            if self.auction.ends_at != armed_for {
                armed_for = self.auction.ends_at;
                end.as_mut().reset(self.end_instant());
            }
            tokio::select! {
                _ = &mut end => {
                    if self.auction.is_over(unix_ms()) {
                        break;
                    }
                    end.as_mut().reset(self.end_instant());
                }
                _ = self.outbox.progress() => self.flush(),
                Some(cmd) = commands.recv() => self.handle(cmd),
                accepted = accept(&listener) => match accepted {
                    Ok((tcp, peer)) => {
                        let Some(tx) = self_tx.upgrade() else { break };
                        let _ = tcp.set_nodelay(true);
                        if let Some(size) = self.ctx.config.channel_send_buffer {
                            let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(size);
                        }
                        match self.ctx.connections.clone().try_acquire_owned() {
                            Ok(permit) => {
                                next_conn += 1;
                                self.ctx.tasks.spawn(connection::serve(tcp, peer, next_conn, self.ctx.clone(), tx, permit));
                            }
                            Err(_) => connection::refuse_full(tcp, peer, &self.ctx),
                        }
                    }
                    Err(e) => {
                        // Typically out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
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

    /// When the auction ends, on the runtime's clock.
    fn end_instant(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.auction.ends_at.saturating_sub(unix_ms()))
    }

    fn handle(&mut self, cmd: ItemCmd) {
        match cmd {
            ItemCmd::Join {
                conn,
                peer,
                account,
                queue,
                reply,
            } => {
                let result = self.join(conn, peer, account, queue);
                let _ = reply.send(result);
            }
            ItemCmd::Leave { conn } => self.remove(conn),
            ItemCmd::AccountGone { account } => {
                let gone: Vec<u64> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.account.id == account)
                    .map(|(&conn, _)| conn)
                    .collect();
                for conn in gone {
                    // Said at once (it says nothing about the auction); dropping the queue
                    // then lets the writer send it and close the connection.
                    self.send(
                        conn,
                        ChannelBody::Error {
                            req: None,
                            reason: Reason::AccountGone,
                            message: "this account has been deregistered".into(),
                        },
                    );
                    self.remove(conn);
                }
            }
            ItemCmd::Request { conn, request } => match request.body {
                ChannelRequestBody::Bid { amount, id } => {
                    self.bid(conn, request.req, Offer::Amount(amount), id)
                }
                ChannelRequestBody::ProxyBid { max, id } => {
                    self.bid(conn, request.req, Offer::Max(max), id)
                }
                ChannelRequestBody::Status => self.emit(Out::State {
                    conn,
                    req: Some(request.req),
                }),
            },
            ItemCmd::BadLine { conn, error, fatal } => {
                // Sent at once: it says nothing about the auction.
                self.send(
                    conn,
                    ChannelBody::Error {
                        req: error.req,
                        reason: error.reason,
                        message: error.detail,
                    },
                );
                if fatal {
                    self.remove(conn);
                }
            }
            ItemCmd::Leader { reply } => {
                let _ = reply.send(self.auction.lead().map(|l| l.bidder.id));
            }
            ItemCmd::LowerMin { min, reply } => {
                let now = unix_ms();
                let result = self.auction.lower_min(min, now);
                if result.is_ok() {
                    self.ctx.storage.append(vec![Record::Negotiated {
                        item: self.id,
                        min: Some(min),
                        at: now,
                    }]);
                    tracing::info!(%min, "the seller lowered the minimum");
                    self.emit(Out::Min(min));
                }
                let _ = reply.send(result);
            }
        }
    }

    fn join(
        &mut self,
        conn: u64,
        peer: std::net::SocketAddr,
        account: Arc<AccountHandle>,
        queue: mpsc::Sender<ChannelBody>,
    ) -> Result<HighestRx, (Reason, String)> {
        if !account.is_live() {
            return Err((
                Reason::AccountGone,
                "this account has been deregistered".into(),
            ));
        }
        if let Some(cap) = self.ctx.config.max_bidders_per_item {
            if !self.accounts.contains_key(&account.id) && self.accounts.len() >= cap {
                return Err((
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
        self.emit(Out::State { conn, req: None });
        // The connection log, for the operator's `auction-server status`. Appended after the
        // STATE is said, so that STATE does not wait for the log's commit.
        self.ctx.storage.append(vec![Record::ChannelOpened {
            session,
            item: self.id,
            account: account_id,
            peer,
            at: unix_ms(),
        }]);
        Ok(self.highest.subscribe())
    }

    fn remove(&mut self, conn: u64) {
        if let Some(c) = self.conns.remove(&conn) {
            self.ctx.storage.append(vec![Record::ChannelClosed {
                session: c.session,
                at: unix_ms(),
            }]);
            if let Some(n) = self.accounts.get_mut(&c.account.id) {
                *n -= 1;
                if *n == 0 {
                    self.accounts.remove(&c.account.id);
                }
            }
        }
    }

    /// STATE from the view, which shows only durable bids.
    fn state(&self, req: Option<u64>, you: &str) -> ChannelBody {
        let item = self.view.borrow().clone();
        ChannelBody::State {
            req,
            next_min: auction::next_min(item.min, item.highest, self.ctx.config.min_increment),
            item,
            you: you.to_owned(),
        }
    }

    /// Says `out` once everything appended to storage so far is durable: at once if it is.
    fn emit(&mut self, out: Out) {
        if let Some(out) = self.outbox.admit(&*self.ctx.storage, out) {
            self.deliver(out);
        }
    }

    /// Delivers what storage has caught up with.
    fn flush(&mut self) {
        while let Some(out) = self.outbox.release() {
            self.deliver(out);
        }
    }

    fn deliver(&mut self, out: Out) {
        match out {
            Out::To(conn, body) => self.send(conn, body),
            Out::State { conn, req } => {
                if let Some(c) = self.conns.get(&conn) {
                    let state = self.state(req, &c.account.name);
                    self.send(conn, state);
                }
            }
            Out::Highest {
                amount,
                bidder,
                ends_at,
            } => {
                self.view.send_modify(|v| {
                    v.highest = Some(amount);
                    v.bidder = Some(bidder.clone());
                    v.ends_at = ends_at;
                });
                let line = channel::encode_line(ChannelBody::Highest {
                    item: self.id,
                    amount,
                    bidder: bidder.clone(),
                    ends_at,
                });
                self.highest.send_replace(Some(Arc::from(line)));
                self.report(Change::Highest {
                    amount,
                    bidder,
                    ends_at,
                });
            }
            Out::Min(min) => {
                self.view.send_modify(|v| v.min = min);
                let (next_min, ends_at) = (self.auction.next_min(), self.auction.ends_at);
                let conns: Vec<u64> = self.conns.keys().copied().collect();
                for conn in conns {
                    let body = ChannelBody::PriceAdjustment {
                        item: self.id,
                        min,
                        next_min,
                    };
                    self.send(conn, body);
                }
                self.report(Change::Min { min, ends_at });
            }
        }
    }

    /// Tells the registry about a durable change, for the subscribers (if there are any).
    fn report(&mut self, change: Change) {
        if self.watchers.count.load(Ordering::Relaxed) > 0 {
            let update = ItemUpdate {
                item: self.id,
                change,
            };
            if self.ctx.updates.try_send(update).is_err() {
                self.watchers.missed.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Queues `body` for `conn`. A connection whose queue is full is not keeping up: it is
    /// dropped (its writer closes it) rather than slowing the item down.
    fn send(&mut self, conn: u64, body: ChannelBody) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = c.queue.try_send(body) {
            tracing::info!(conn, account = %c.account.name, "dropping a connection that does not read");
            self.ctx.metrics.dropped("queue-full");
            self.remove(conn);
        }
    }

    fn bid(&mut self, conn: u64, req: u64, offer: Offer, id: Option<String>) {
        let Some(bidder) = self.conns.get(&conn).map(|c| c.account.clone()) else {
            return;
        };
        let now = unix_ms();
        let decision = match id.as_deref() {
            Some(id) if !names::valid_bid_id(id) => {
                let invalid = Outcome::Rejected {
                    reason: Reason::InvalidBidId,
                    message: "a bid id is 1 to 64 printable ASCII characters, no spaces".into(),
                };
                self.ctx.metrics.bid_rejected(Reason::InvalidBidId);
                self.reply(conn, req, &invalid);
                return;
            }
            Some(id) => match self.auction.previous_outcome(bidder.id, id) {
                Some(first) => {
                    let first = first.clone();
                    self.reply(conn, req, &first);
                    return;
                }
                None => self.auction.judge(&bidder, offer, now),
            },
            None => self.auction.judge(&bidder, offer, now),
        };
        let Decision { outcome, lead, .. } = &decision;
        let accepted = matches!(outcome, Outcome::Accepted { .. });
        match outcome {
            Outcome::Accepted { .. } => {
                self.ctx.metrics.bids_accepted.inc();
            }
            Outcome::Rejected { reason, .. } => self.ctx.metrics.bid_rejected(*reason),
        }
        // Accepted bids are the auction; rejected ones are kept only when they carry an id,
        // so that the id is answered the same way after a restart.
        if accepted || id.is_some() {
            self.ctx.storage.append(vec![Record::Bid {
                item: self.id,
                bidder: bidder.id,
                amount: match outcome {
                    Outcome::Accepted { amount, .. } => *amount,
                    Outcome::Rejected { .. } => offer.ceiling(),
                },
                bid_id: id.clone(),
                outcome: outcome.clone(),
                lead: lead.as_ref().map(|l| (l.bidder.id, l.amount, l.max)),
                at: now,
            }]);
        }
        let before = self
            .auction
            .lead()
            .map(|l| (l.amount, l.bidder.id, self.auction.ends_at));
        self.auction.apply(&bidder, &decision, id.as_deref());
        self.reply(conn, req, &decision.outcome);
        // HIGHEST only when what others see moved (a new private maximum moves nothing).
        if let Some(l) = self.auction.lead() {
            if before != Some((l.amount, l.bidder.id, self.auction.ends_at)) {
                let (amount, bidder, ends_at) =
                    (l.amount, l.bidder.name.clone(), self.auction.ends_at);
                self.emit(Out::Highest {
                    amount,
                    bidder,
                    ends_at,
                });
            }
        }
    }

    fn reply(&mut self, conn: u64, req: u64, outcome: &Outcome) {
        let body = match outcome {
            Outcome::Accepted {
                amount,
                ends_at,
                leading,
                max,
            } => ChannelBody::BidAccepted {
                req,
                amount: *amount,
                ends_at: *ends_at,
                leading: *leading,
                max: *max,
            },
            Outcome::Rejected { reason, message } => ChannelBody::BidRejected {
                req,
                reason: *reason,
                message: message.clone(),
                highest: self.auction.lead().map(|l| l.amount),
                next_min: self.auction.next_min(),
            },
        };
        self.emit(Out::To(conn, body));
    }

    /// WIN and SOLD, or NOT-SOLD, for this item's result.
    fn notices(&self, lead: Option<&Lead>) -> Vec<NoticeRecord> {
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
                },
            )],
        }
    }

    /// The auction has ended: make the result durable, tell everyone on the channel, and hand
    /// the result to the registry for WIN / SOLD / NOT-SOLD.
    async fn close(mut self) {
        let lead = self.auction.lead().cloned();
        let notices = self.notices(lead.as_ref());
        let lsn = self.ctx.storage.append(vec![Record::ItemClosed {
            item: self.id,
            winner: lead.as_ref().map(|l| (l.bidder.id, l.amount)),
            notices: notices.clone(),
            at: unix_ms(),
        }]);
        if !wait_durable(&*self.ctx.storage, lsn).await {
            // The server is stopping for it; the item closes again after the restart.
            tracing::error!("could not store the auction result");
            self.conns.clear();
            return;
        }
        self.flush();
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
            let sold = crate::settle_desk::DeskCmd::Sold {
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
                closed_at: unix_ms(),
            };
            let _ = self.ctx.desk.send(sold).await;
        }
        let settle_port = lead.as_ref().map(|_| self.ctx.settle_port);
        self.view.send_modify(|v| {
            v.state = ItemState::Closed;
            v.channel = None;
            v.winner = lead.as_ref().map(|l| l.bidder.name.clone());
            v.price = lead.as_ref().map(|l| l.amount);
            v.settle_port = settle_port;
        });
        let result = match &lead {
            Some(l) => ChannelBody::SoldTo {
                item: self.id,
                winner: l.bidder.name.clone(),
                amount: l.amount,
            },
            None => ChannelBody::NotSold { item: self.id },
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
            None => tracing::info!("auction closed: not sold"),
        }
        // Dropping the queues lets each writer flush what is queued and close the channel.
        self.clear_conns();
    }

    /// The server is stopping: finish the requests already queued, wait until everything said
    /// is durable and deliver it, then tell every bidder why the channel closes.
    async fn going_down(&mut self, mut commands: mpsc::Receiver<ItemCmd>) {
        commands.close();
        while let Ok(cmd) = commands.try_recv() {
            self.handle(cmd);
        }
        if wait_durable(&*self.ctx.storage, self.ctx.storage.appended()).await {
            self.flush();
        }
        let conns: Vec<u64> = self.conns.keys().copied().collect();
        for conn in conns {
            self.send(
                conn,
                ChannelBody::Error {
                    req: None,
                    reason: Reason::Unavailable,
                    message: "the server is shutting down; reconnect when it is back".into(),
                },
            );
        }
        self.clear_conns();
    }

    /// Lets go of every connection (their writers then close them), logging it.
    fn clear_conns(&mut self) {
        let at = unix_ms();
        let closed: Vec<Record> = self
            .conns
            .drain()
            .map(|(_, c)| Record::ChannelClosed {
                session: c.session,
                at,
            })
            .collect();
        if !closed.is_empty() {
            self.ctx.storage.append(closed);
        }
        self.accounts.clear();
    }
}
