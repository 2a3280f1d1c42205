//! One task per open item. It owns the item's auction state, its TLS listener and the list of
//! connected bidders; connections and the registry talk to it only through its command
//! channel. It never waits on a connection: replies go into each connection's bounded queue
//! with `try_send`, and HIGHEST goes into one `watch` that every connection's writer reads, so
//! a reader that stops reading costs only itself.

use auction_protocol::channel::{self, ChannelBody, ChannelRequest, ChannelRequestBody, LineError};
use auction_protocol::{names, Cents, ItemState, ItemView, Reason};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::accounts::{AccountHandle, AccountId, KeyDirectory};
use crate::auction::{Auction, Lead, Outcome, Rules};
use crate::config::Config;
use crate::connection;
use crate::storage::{Record, Storage};
use crate::unix_ms;

/// What every item task shares.
pub struct ItemContext {
    pub config: Config,
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub keys: Arc<KeyDirectory>,
    pub storage: Arc<dyn Storage>,
    /// Where items report that they closed.
    pub closed: mpsc::Sender<ItemClosed>,
    pub shutdown: CancellationToken,
}

/// The registry's view of a new item.
pub struct ItemSpec {
    pub id: u64,
    pub description: String,
    pub seller: Arc<AccountHandle>,
    pub min: Cents,
    pub ends_at: u64,
    pub channel: String,
}

/// Sent to the registry when an auction has ended and its result is durable.
#[derive(Debug)]
pub struct ItemClosed {
    pub item: u64,
    pub description: String,
    pub seller: Arc<AccountHandle>,
    pub winner: Option<Lead>,
}

/// The latest HIGHEST of an item as an encoded line, shared by every writer on the item: it is
/// serialized once per accepted bid, not once per connection.
pub type HighestRx = watch::Receiver<Option<Arc<str>>>;

pub enum ItemCmd {
    /// A connection finished its handshake as `account`.
    Join {
        conn: u64,
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
}

/// How the registry reaches an item.
pub struct ItemHandle {
    pub cmd: mpsc::Sender<ItemCmd>,
    pub view: watch::Receiver<ItemView>,
}

struct Conn {
    account: Arc<AccountHandle>,
    queue: mpsc::Sender<ChannelBody>,
}

struct ItemTask {
    id: u64,
    ctx: Arc<ItemContext>,
    auction: Auction,
    view: watch::Sender<ItemView>,
    highest: watch::Sender<Option<Arc<str>>>,
    conns: HashMap<u64, Conn>,
    /// Connections per account, for `--max-bidders-per-item`.
    accounts: HashMap<AccountId, usize>,
    seller: Arc<AccountHandle>,
    description: String,
}

/// Starts the task of a new item on `listener`.
pub fn spawn(spec: ItemSpec, listener: TcpListener, ctx: Arc<ItemContext>) -> ItemHandle {
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
        highest: None,
        bidder: None,
        ends_at: spec.ends_at,
        state: ItemState::Open,
        channel: Some(spec.channel.clone()),
        winner: None,
        price: None,
    };
    let (view_tx, view_rx) = watch::channel(view);
    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let task = ItemTask {
        id: spec.id,
        auction: Auction::new(spec.min, spec.seller.id, spec.ends_at, rules),
        view: view_tx,
        highest: watch::channel(None).0,
        conns: HashMap::new(),
        accounts: HashMap::new(),
        seller: spec.seller,
        description: spec.description,
        ctx,
    };
    let span = tracing::info_span!("item", item = spec.id);
    tokio::spawn(
        task.run(listener, cmd_rx, cmd_tx.downgrade())
            .instrument(span),
    );
    ItemHandle {
        cmd: cmd_tx,
        view: view_rx,
    }
}

impl ItemTask {
    async fn run(
        mut self,
        listener: TcpListener,
        mut commands: mpsc::Receiver<ItemCmd>,
        self_tx: mpsc::WeakSender<ItemCmd>,
    ) {
        let mut next_conn: u64 = 0;
        // One timer for the item's life, moved only when the end moves (soft close) or when it
        // fires early (the wall clock and the runtime's clock disagree).
        let end = tokio::time::sleep_until(self.end_instant());
        tokio::pin!(end);
        let mut armed_for = self.auction.ends_at;
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
                Some(cmd) = commands.recv() => self.handle(cmd).await,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let Some(tx) = self_tx.upgrade() else { break };
                        next_conn += 1;
                        let _ = tcp.set_nodelay(true);
                        tokio::spawn(connection::serve(tcp, peer, next_conn, self.ctx.clone(), tx));
                    }
                    Err(e) => {
                        // Typically out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = self.ctx.shutdown.cancelled() => {
                    self.going_down();
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

    async fn handle(&mut self, cmd: ItemCmd) {
        match cmd {
            ItemCmd::Join {
                conn,
                account,
                queue,
                reply,
            } => {
                let result = self.join(conn, account, queue);
                let _ = reply.send(result);
            }
            ItemCmd::Leave { conn } => self.remove(conn),
            ItemCmd::Request { conn, request } => match request.body {
                ChannelRequestBody::Bid { amount, id } => {
                    self.bid(conn, request.req, amount, id).await
                }
                ChannelRequestBody::Status => {
                    if let Some(c) = self.conns.get(&conn) {
                        let state = self.state(Some(request.req), &c.account.name);
                        self.send(conn, state);
                    }
                }
            },
            ItemCmd::BadLine { conn, error, fatal } => {
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
        }
    }

    fn join(
        &mut self,
        conn: u64,
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
        let state = self.state(None, &account.name);
        self.conns.insert(conn, Conn { account, queue });
        self.send(conn, state);
        Ok(self.highest.subscribe())
    }

    fn remove(&mut self, conn: u64) {
        if let Some(c) = self.conns.remove(&conn) {
            if let Some(n) = self.accounts.get_mut(&c.account.id) {
                *n -= 1;
                if *n == 0 {
                    self.accounts.remove(&c.account.id);
                }
            }
        }
    }

    fn state(&self, req: Option<u64>, you: &str) -> ChannelBody {
        ChannelBody::State {
            req,
            item: self.view.borrow().clone(),
            next_min: self.auction.next_min(),
            you: you.to_owned(),
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
            self.remove(conn);
        }
    }

    async fn bid(&mut self, conn: u64, req: u64, amount: Cents, id: Option<String>) {
        let Some(bidder) = self.conns.get(&conn).map(|c| c.account.clone()) else {
            return;
        };
        let now = unix_ms();
        let outcome = match id.as_deref() {
            Some(id) if !names::valid_bid_id(id) => Outcome::Rejected {
                reason: Reason::InvalidBidId,
                message: "a bid id is 1 to 64 printable ASCII characters, no spaces".into(),
            },
            Some(id) => match self.auction.previous_outcome(bidder.id, id) {
                Some(first) => {
                    let first = first.clone();
                    self.reply(conn, req, &first);
                    return;
                }
                None => self.auction.judge(&bidder, amount, now),
            },
            None => self.auction.judge(&bidder, amount, now),
        };
        if let Outcome::Accepted { amount, ends_at } = &outcome {
            let record = Record::BidAccepted {
                item: self.id,
                bidder: bidder.id,
                amount: *amount,
                bid_id: id.clone(),
                ends_at: *ends_at,
            };
            if let Err(e) = self.ctx.storage.commit(vec![record]).await {
                tracing::error!(error = %e, "could not store an accepted bid; refusing it");
                let refused = Outcome::Rejected {
                    reason: Reason::Unavailable,
                    message: "the server could not store the bid; try again".into(),
                };
                self.reply(conn, req, &refused);
                return;
            }
        }
        self.auction.apply(&bidder, &outcome, id.as_deref());
        self.reply(conn, req, &outcome);
        if let Outcome::Accepted { amount, ends_at } = outcome {
            self.view.send_modify(|v| {
                v.highest = Some(amount);
                v.bidder = Some(bidder.name.clone());
                v.ends_at = ends_at;
            });
            let line = channel::encode_line(ChannelBody::Highest {
                item: self.id,
                amount,
                bidder: bidder.name.clone(),
                ends_at,
            });
            self.highest.send_replace(Some(Arc::from(line)));
        }
    }

    fn reply(&mut self, conn: u64, req: u64, outcome: &Outcome) {
        let body = match outcome {
            Outcome::Accepted { amount, ends_at } => ChannelBody::BidAccepted {
                req,
                amount: *amount,
                ends_at: *ends_at,
            },
            Outcome::Rejected { reason, message } => ChannelBody::BidRejected {
                req,
                reason: *reason,
                message: message.clone(),
                highest: self.auction.lead().map(|l| l.amount),
                next_min: self.auction.next_min(),
            },
        };
        self.send(conn, body);
    }

    /// The auction has ended: make the result durable, tell everyone on the channel, and hand
    /// the result to the registry for WIN / SOLD / NOT-SOLD.
    async fn close(mut self) {
        let lead = self.auction.lead().cloned();
        let record = Record::ItemClosed {
            item: self.id,
            winner: lead.as_ref().map(|l| l.bidder.id),
            price: lead.as_ref().map(|l| l.amount),
        };
        if let Err(e) = self.ctx.storage.commit(vec![record]).await {
            tracing::error!(error = %e, "could not store the auction result");
        }
        // The registry hears first: by the time anyone can see the item closed (STATUS, or
        // SOLD-TO on a channel), the registry has the close queued, and it handles queued closes
        // before the next datagram, so the seller's open-item count is already right.
        let closed = ItemClosed {
            item: self.id,
            description: self.description.clone(),
            seller: self.seller.clone(),
            winner: lead.clone(),
        };
        let _ = self.ctx.closed.send(closed).await;
        self.view.send_modify(|v| {
            v.state = ItemState::Closed;
            v.channel = None;
            v.winner = lead.as_ref().map(|l| l.bidder.name.clone());
            v.price = lead.as_ref().map(|l| l.amount);
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
        self.conns.clear();
    }

    fn going_down(&mut self) {
        let conns: Vec<u64> = self.conns.keys().copied().collect();
        for conn in conns {
            self.send(
                conn,
                ChannelBody::Error {
                    req: None,
                    reason: Reason::Unavailable,
                    message: "the server is shutting down".into(),
                },
            );
        }
        self.conns.clear();
    }
}
