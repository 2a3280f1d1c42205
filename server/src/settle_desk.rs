//! The settlement desk: one task that owns every sale's settlement (`settlement.rs`), its
//! mutual-TLS listener and the connections to it. Items hand it their sale when they close;
//! buyers and sellers connect to complete it. Like an item task, it never waits for the disk
//! or a connection: each change is stored whole (`Record::Settlement`) and everything said
//! about it waits in `outbox` until that is durable; notices (settled, cancelled, second
//! chance) go to the registry, which delivers them reliably over UDP once durable too.
//!
//! Nothing personal goes over UDP: notices only say that something happened, and the details
//! (a shipping address, a contact) are read here, over TLS, by the two parties.

use auction_protocol::channel::LineError;
use auction_protocol::limits::MAX_LINE;
use auction_protocol::settle::{self, Role, SettleBody, SettleRequest, SettleRequestBody};
use auction_protocol::udp::{self, ServerBody};
use auction_protocol::{Cents, Reason};
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tracing::Instrument;

use crate::accounts::AccountHandle;
use crate::item::ItemContext;
use crate::settlement::{Lapsed, Party, Settlement};
use crate::storage::{NoticeRecord, Outbox, Record, Snapshot};
use crate::unix_ms;

/// Messages that may wait for one settlement connection.
const QUEUE: usize = 64;

pub enum DeskCmd {
    /// An item was sold; its result is durable.
    Sold {
        item: u64,
        description: String,
        seller: Party,
        buyer: Party,
        amount: Cents,
        closed_at: u64,
    },
    Join {
        conn: u64,
        account: Arc<AccountHandle>,
        queue: mpsc::Sender<SettleBody>,
    },
    Leave {
        conn: u64,
    },
    Request {
        conn: u64,
        request: SettleRequest,
    },
    /// A line that could not be read; `fatal` closes the connection after the error.
    BadLine {
        conn: u64,
        error: LineError,
        fatal: bool,
    },
    /// The bids read for a second-chance offer (a read beside the writer, off this task).
    Bids {
        conn: u64,
        req: u64,
        item: u64,
        seller: u64,
        bids: Result<Vec<(Party, Cents)>, String>,
    },
}

struct Conn {
    account: Arc<AccountHandle>,
    queue: mpsc::Sender<SettleBody>,
    /// Items this connection asked about: it hears what happens to them.
    items: HashSet<u64>,
}

struct Desk {
    ctx: Arc<ItemContext>,
    settlements: HashMap<u64, Settlement>,
    conns: HashMap<u64, Conn>,
    outbox: Outbox<(u64, SettleBody)>,
    /// To the registry, which delivers them.
    notices: mpsc::UnboundedSender<NoticeRecord>,
    next_notice: u64,
    timeout_ms: u64,
    self_tx: mpsc::WeakSender<DeskCmd>,
}

/// Starts the desk on `listener`, carrying on with the settlements in `snapshot`.
pub fn spawn(
    listener: TcpListener,
    ctx: Arc<ItemContext>,
    commands: (mpsc::Sender<DeskCmd>, mpsc::Receiver<DeskCmd>),
    snapshot: &mut Snapshot,
    notices: mpsc::UnboundedSender<NoticeRecord>,
) {
    let (tx, rx) = commands;
    let mut desk = Desk {
        timeout_ms: ctx.config.settle_timeout.as_millis() as u64,
        outbox: Outbox::new(&*ctx.storage),
        settlements: std::mem::take(&mut snapshot.settlements)
            .into_iter()
            .map(|s| (s.item, s))
            .collect(),
        conns: HashMap::new(),
        notices,
        next_notice: snapshot.next_notice,
        self_tx: tx.downgrade(),
        ctx: ctx.clone(),
    };
    // Sales whose settlement the server had no time to store before it stopped.
    for sale in std::mem::take(&mut snapshot.unsettled) {
        let (seller, buyer) = (sale.seller, sale.buyer);
        desk.open(
            sale.item,
            sale.description,
            Party {
                id: seller.0,
                name: seller.1,
            },
            Party {
                id: buyer.0,
                name: buyer.1,
            },
            sale.amount,
            sale.closed_at,
        );
    }
    ctx.tasks.spawn(
        desk.run(listener, rx)
            .instrument(tracing::info_span!("settlement")),
    );
}

impl Desk {
    async fn run(mut self, listener: TcpListener, mut commands: mpsc::Receiver<DeskCmd>) {
        let mut next_conn = 0u64;
        let shutdown = self.ctx.shutdown.clone();
        loop {
            let next_deadline = self.settlements.values().filter_map(|s| s.deadline).min();
            let wake = next_deadline
                .map(|d| Instant::now() + Duration::from_millis(d.saturating_sub(unix_ms())));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.outbox.progress() => self.flush(),
                Some(cmd) = commands.recv() => self.handle(cmd),
                _ = sleep_until(wake) => self.expire(unix_ms()),
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let Some(tx) = self.self_tx.upgrade() else { break };
                        match self.ctx.connections.clone().try_acquire_owned() {
                            Ok(permit) => {
                                next_conn += 1;
                                self.ctx.tasks.spawn(serve(tcp, peer, next_conn, self.ctx.clone(), tx, permit));
                            }
                            Err(_) => crate::connection::refuse_full(tcp, peer, &self.ctx),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        // Answers already given go out once durable; then the connections close.
        commands.close();
        if crate::storage::wait_durable(&*self.ctx.storage, self.ctx.storage.appended()).await {
            self.flush();
        }
        self.conns.clear();
    }

    /// Starts the settlement of a sale closed at `closed_at`.
    fn open(
        &mut self,
        item: u64,
        description: String,
        seller: Party,
        buyer: Party,
        amount: Cents,
        closed_at: u64,
    ) {
        if self.settlements.contains_key(&item) {
            return;
        }
        let deadline = closed_at + self.timeout_ms;
        let s = Settlement::new(item, description, seller, buyer, amount, deadline);
        self.settlements.insert(item, s);
        self.store(item, vec![]);
    }

    fn handle(&mut self, cmd: DeskCmd) {
        match cmd {
            DeskCmd::Sold {
                item,
                description,
                seller,
                buyer,
                amount,
                closed_at,
            } => self.open(item, description, seller, buyer, amount, closed_at),
            DeskCmd::Join {
                conn,
                account,
                queue,
            } => {
                self.conns.insert(
                    conn,
                    Conn {
                        account,
                        queue,
                        items: HashSet::new(),
                    },
                );
            }
            DeskCmd::Leave { conn } => {
                self.conns.remove(&conn);
            }
            DeskCmd::BadLine { conn, error, fatal } => {
                self.send(
                    conn,
                    SettleBody::Error {
                        req: error.req,
                        reason: error.reason,
                        message: error.detail,
                    },
                );
                if fatal {
                    self.conns.remove(&conn);
                }
            }
            DeskCmd::Request { conn, request } => self.request(conn, request),
            DeskCmd::Bids {
                conn,
                req,
                item,
                seller,
                bids,
            } => self.second_chance(conn, req, item, seller, bids),
        }
    }

    fn request(&mut self, conn: u64, request: SettleRequest) {
        let Some(account) = self.conns.get(&conn).map(|c| c.account.clone()) else {
            return;
        };
        let (req, item) = (request.req, request.body.item());
        let Some(s) = self.settlements.get_mut(&item) else {
            let message = format!(
                "item {item} has no sale to settle: it is unknown, still open, or closed without a bid"
            );
            return self.refuse(conn, req, (Reason::UnknownItem, message));
        };
        let role = match s.role(account.id) {
            Ok(role) => role,
            Err(e) => return self.refuse(conn, req, e),
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.items.insert(item);
        }
        match request.body {
            SettleRequestBody::Open { .. } => self.answer(conn, req, item, role),
            SettleRequestBody::Inform {
                name,
                address,
                contact,
                ..
            } => {
                let informed = match s.inform(account.id, name, address, contact) {
                    Ok(informed) => informed,
                    Err(e) => return self.refuse(conn, req, e),
                };
                let (seller, buyer) = (s.seller.clone(), s.buyer.clone());
                let shipping = s.shipping.clone();
                let mut notices = vec![];
                if informed.settled {
                    let parties = std::iter::once(seller.id).chain(buyer.as_ref().map(|b| b.id));
                    for party in parties {
                        let n =
                            self.notice(party, item, "settled", |notice, s| ServerBody::Settled {
                                notice,
                                item,
                                description: s.description.clone(),
                            });
                        notices.extend(n);
                    }
                    tracing::info!(item, "sale settled");
                }
                self.store(item, notices);
                self.answer(conn, req, item, role);
                if let (true, Some(shipping), Some(buyer)) = (informed.shipping, shipping, buyer) {
                    self.push(item, seller.id, |_| SettleBody::ShippingInfo {
                        item,
                        buyer: buyer.name.clone(),
                        name: shipping.name.clone(),
                        address: shipping.address.clone(),
                    });
                }
                self.push_views(item, account.id);
            }
            SettleRequestBody::SecondChance { .. } => {
                // Refused at once when it cannot be made; checked again once the bids are read.
                if let Err(e) = s.may_offer(account.id) {
                    return self.refuse(conn, req, e);
                }
                let storage = self.ctx.storage.clone();
                let Some(tx) = self.self_tx.upgrade() else {
                    return;
                };
                let seller = account.id;
                tokio::task::spawn_blocking(move || {
                    let bids = storage.best_bids(item).map_err(|e| format!("{e:#}"));
                    let _ = tx.blocking_send(DeskCmd::Bids {
                        conn,
                        req,
                        item,
                        seller,
                        bids,
                    });
                });
            }
            SettleRequestBody::AnswerOffer { accept, .. } => {
                let now = unix_ms();
                if let Err(e) = s.answer_offer(account.id, accept, now, self.timeout_ms) {
                    return self.refuse(conn, req, e);
                }
                let seller = s.seller.id;
                let notices = if accept {
                    tracing::info!(item, buyer = %account.name, "second-chance offer accepted");
                    vec![]
                } else {
                    self.notice(seller, item, "settle-cancelled", |notice, s| {
                        ServerBody::SettleCancelled {
                            notice,
                            item,
                            description: s.description.clone(),
                            why: "offer-declined".into(),
                        }
                    })
                    .into_iter()
                    .collect()
                };
                self.store(item, notices);
                // Accepted: now the buyer, asked for its details. Declined: out of it, shown
                // where the sale stands.
                let role = if accept { Role::Buyer } else { Role::Offered };
                self.answer(conn, req, item, role);
                self.push_views(item, account.id);
            }
        }
    }

    /// The seller's second-chance offer, once the bids are read.
    fn second_chance(
        &mut self,
        conn: u64,
        req: u64,
        item: u64,
        seller: u64,
        bids: Result<Vec<(Party, Cents)>, String>,
    ) {
        let bids = match bids {
            Ok(bids) => bids,
            Err(e) => {
                tracing::error!(item, error = %e, "could not read the bids for a second chance");
                let message = "the server could not read the bids; try again".to_owned();
                return self.refuse(conn, req, (Reason::Unavailable, message));
            }
        };
        let Some(s) = self.settlements.get_mut(&item) else {
            return;
        };
        let now = unix_ms();
        let (party, amount) = match s.second_chance(seller, &bids, now, self.timeout_ms) {
            Ok(offer) => offer,
            Err(e) => return self.refuse(conn, req, e),
        };
        let (seller_name, deadline) = (s.seller.name.clone(), s.deadline.unwrap_or(now));
        tracing::info!(item, to = %party.name, %amount, "second-chance offer");
        let notice = self.notice(party.id, item, "second-chance", |notice, s| {
            ServerBody::SecondChance {
                notice,
                item,
                description: s.description.clone(),
                amount,
                seller: seller_name.clone(),
                deadline,
            }
        });
        self.store(item, notice.into_iter().collect());
        self.answer(conn, req, item, Role::Seller);
    }

    /// Applies every deadline that has passed.
    fn expire(&mut self, now: u64) {
        let due: Vec<u64> = self
            .settlements
            .values()
            .filter(|s| s.deadline.is_some_and(|d| d <= now))
            .map(|s| s.item)
            .collect();
        for item in due {
            let Some(s) = self.settlements.get_mut(&item) else {
                continue;
            };
            let seller = s.seller.id;
            let (party, why) = match s.expire(now) {
                Some(Lapsed::Buyer(p)) => (p, "buyer-timeout"),
                Some(Lapsed::Offer(p)) => (p, "offer-lapsed"),
                None => continue,
            };
            tracing::info!(item, party = %party.name, why, "settlement deadline passed");
            let mut notices = vec![];
            for to in [party.id, seller] {
                let n = self.notice(to, item, "settle-cancelled", |notice, s| {
                    ServerBody::SettleCancelled {
                        notice,
                        item,
                        description: s.description.clone(),
                        why: why.into(),
                    }
                });
                notices.extend(n);
            }
            self.store(item, notices);
            self.push_views(item, party.id);
        }
    }

    /// A numbered notice about `item` for `account`.
    fn notice(
        &mut self,
        account: u64,
        item: u64,
        kind: &'static str,
        body: impl FnOnce(u64, &Settlement) -> ServerBody,
    ) -> Option<NoticeRecord> {
        let s = self.settlements.get(&item)?;
        let id = self.next_notice;
        self.next_notice += 1;
        Some(NoticeRecord {
            id,
            account,
            item,
            kind,
            datagram: udp::encode(body(id, s)),
        })
    }

    /// Stores the settlement of `item` as it is now, with `notices`, and hands the notices to
    /// the registry (which sends them once this is durable).
    fn store(&mut self, item: u64, notices: Vec<NoticeRecord>) {
        let Some(s) = self.settlements.get(&item) else {
            return;
        };
        self.ctx.storage.append(vec![Record::Settlement {
            settlement: s.clone(),
            notices: notices.clone(),
            at: unix_ms(),
        }]);
        for n in notices {
            let _ = self.notices.send(n);
        }
    }

    /// The answer to a request about `item`: `inform-req` while `role` has details to give,
    /// otherwise the settlement.
    fn answer(&mut self, conn: u64, req: u64, item: u64, role: Role) {
        let Some(s) = self.settlements.get(&item) else {
            return;
        };
        let settlement = s.view(role);
        let need = s.need(role);
        let body = if need.is_empty() {
            SettleBody::Settlement {
                req: Some(req),
                settlement,
            }
        } else {
            SettleBody::InformReq {
                req,
                settlement,
                need,
            }
        };
        self.emit(conn, body);
    }

    /// Tells every other party connected about `item` where it stands now.
    fn push_views(&mut self, item: u64, except: u64) {
        let Some(s) = self.settlements.get(&item) else {
            return;
        };
        let mut parties = vec![s.seller.id];
        parties.extend(s.buyer.as_ref().map(|b| b.id));
        parties.extend(s.offer.as_ref().map(|(p, _)| p.id));
        for account in parties.into_iter().filter(|&a| a != except) {
            self.push(item, account, |s| {
                let role = s.role(account).unwrap_or(Role::Offered);
                SettleBody::Settlement {
                    req: None,
                    settlement: s.view(role),
                }
            });
        }
    }

    /// Sends `body` to each connection of `account` that asked about `item`.
    fn push(&mut self, item: u64, account: u64, body: impl Fn(&Settlement) -> SettleBody) {
        let Some(s) = self.settlements.get(&item) else {
            return;
        };
        let to: Vec<(u64, SettleBody)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.account.id == account && c.items.contains(&item))
            .map(|(&conn, _)| (conn, body(s)))
            .collect();
        for (conn, body) in to {
            self.emit(conn, body);
        }
    }

    fn refuse(&mut self, conn: u64, req: u64, (reason, message): (Reason, String)) {
        self.emit(
            conn,
            SettleBody::Error {
                req: Some(req),
                reason,
                message,
            },
        );
    }

    /// Says `body` once everything appended so far is durable.
    fn emit(&mut self, conn: u64, body: SettleBody) {
        if let Some((conn, body)) = self.outbox.admit(&*self.ctx.storage, (conn, body)) {
            self.send(conn, body);
        }
    }

    fn flush(&mut self) {
        while let Some((conn, body)) = self.outbox.release() {
            self.send(conn, body);
        }
    }

    /// Queues `body` for `conn`; a connection that does not read is dropped.
    fn send(&mut self, conn: u64, body: SettleBody) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.queue.try_send(body).is_err() {
            self.conns.remove(&conn);
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One party's connection: the handshake (its own timeout), then lines in and out.
async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    conn: u64,
    ctx: Arc<ItemContext>,
    desk: mpsc::Sender<DeskCmd>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let Some((tls, account)) = crate::connection::handshake(tcp, peer, &ctx).await else {
        return;
    };
    let (reader, mut writer) = tokio::io::split(tls);
    let Some(account) = account else {
        let line = settle::encode_line(SettleBody::Error {
            req: None,
            reason: Reason::AccountGone,
            message: "this account has been deregistered".into(),
        });
        let _ = timeout(ctx.config.write_timeout, writer.write_all(line.as_bytes())).await;
        let _ = timeout(ctx.config.write_timeout, writer.shutdown()).await;
        return;
    };
    let (queue_tx, mut queue_rx) = mpsc::channel(QUEUE);
    let join = DeskCmd::Join {
        conn,
        account,
        queue: queue_tx,
    };
    if desk.send(join).await.is_err() {
        return;
    }
    let write_timeout = ctx.config.write_timeout;
    let write = async move {
        while let Some(body) = queue_rx.recv().await {
            let line = settle::encode_line(body);
            let write = async {
                writer.write_all(line.as_bytes()).await?;
                writer.flush().await
            };
            if !matches!(timeout(write_timeout, write).await, Ok(Ok(()))) {
                return;
            }
        }
        let _ = timeout(write_timeout, writer.shutdown()).await;
    };
    let read = async {
        let mut lines = FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_LINE));
        loop {
            let next = match timeout(ctx.config.idle_timeout, lines.next()).await {
                Ok(Some(next)) => next,
                Ok(None) | Err(_) => return,
            };
            let cmd = match next {
                Ok(line) if line.trim().is_empty() => continue,
                Ok(line) => match settle::decode_request(line.trim_end_matches('\r')) {
                    Ok(request) => DeskCmd::Request { conn, request },
                    Err(error) => DeskCmd::BadLine {
                        conn,
                        error,
                        fatal: false,
                    },
                },
                Err(e) => {
                    let (reason, detail) = match e {
                        LinesCodecError::MaxLineLengthExceeded => (
                            Reason::TooLarge,
                            format!("lines are limited to {MAX_LINE} bytes"),
                        ),
                        LinesCodecError::Io(_) => (Reason::Malformed, "lines must be UTF-8".into()),
                    };
                    let error = LineError {
                        reason,
                        req: None,
                        detail,
                    };
                    let _ = desk
                        .send(DeskCmd::BadLine {
                            conn,
                            error,
                            fatal: true,
                        })
                        .await;
                    // The writer sends the error and closes.
                    return std::future::pending().await;
                }
            };
            if desk.send(cmd).await.is_err() {
                return std::future::pending().await;
            }
        }
    };
    tokio::select! {
        _ = read => {}
        _ = write => {}
    }
    let _ = desk.send(DeskCmd::Leave { conn }).await;
}
