//! The settlement desk: one task that owns every sale's settlement (`rules/settlement.rs`), its
//! mutual-TLS listener and the connections to it. Items hand it their sale when they close;
//! buyers and sellers connect to complete it. Like an item task, it never waits for the disk
//! or a connection: each change is stored whole (`Record::Settlement`) and everything said
//! about it waits in `outbox` until that is durable; notices (settled, cancelled, second
//! chance) go to the registry, which delivers them reliably over UDP once durable too.
//!
//! Nothing personal goes over UDP: notices only say that something happened, and the details
//! (a shipping address, a contact) are read here, over TLS, by the two parties.

mod channel;
pub(crate) mod cmd;
mod requests;

use auction_protocol::channel::LineError;
use auction_protocol::settle::{Role, SettleBody};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::accounts::AccountHandle;
use crate::clock::{sleep_until, unix_ms, Now};
use crate::context::ServerContext;
use crate::net::accept::admit;
use crate::net::listener::Listener;
use crate::rules::refusal::Refusal;
use crate::rules::settlement::{Sale, Settlement};
use crate::store::{NoticeRecord, Outbox, Snapshot};
use cmd::DeskCmd;

/// Messages that may wait for one settlement connection.
const QUEUE: usize = 64;

struct Conn {
    account: Arc<AccountHandle>,
    queue: mpsc::Sender<SettleBody>,
    /// Items this connection asked about: it hears what happens to them.
    items: HashSet<u64>,
}

struct Desk {
    ctx: Arc<ServerContext>,
    settlements: HashMap<u64, Settlement>,
    conns: HashMap<u64, Conn>,
    outbox: Outbox<(u64, SettleBody)>,
    /// To the registry, which delivers them.
    notices: mpsc::UnboundedSender<NoticeRecord>,
    next_notice: u64,
    timeout_ms: u64,
    self_tx: mpsc::WeakSender<DeskCmd>,
    /// The wall-clock time (Unix ms) of the event being handled: read once per event.
    now: u64,
}

/// Starts the desk on `listener`, carrying on with the settlements in `snapshot`.
pub fn spawn(
    listener: TcpListener,
    ctx: Arc<ServerContext>,
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
        now: unix_ms(),
    };
    // Sales whose settlement the server had no time to store before it stopped.
    for sale in std::mem::take(&mut snapshot.unsettled) {
        desk.open(sale);
    }
    ctx.tasks.spawn(
        desk.run(listener, rx)
            .instrument(tracing::info_span!("settlement")),
    );
}

impl Desk {
    async fn run(mut self, listener: TcpListener, mut commands: mpsc::Receiver<DeskCmd>) {
        let mut listener = Listener::new(listener);
        let mut next_conn = 0u64;
        let shutdown = self.ctx.shutdown.clone();
        loop {
            let next_deadline = self.settlements.values().filter_map(|s| s.deadline).min();
            let now = Now::read();
            let wake = next_deadline.map(|d| now.instant_of(d));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.outbox.progress() => self.flush(),
                Some(cmd) = commands.recv() => {
                    self.now = unix_ms();
                    self.handle(cmd);
                }
                _ = sleep_until(wake) => {
                    self.now = unix_ms();
                    self.expire();
                }
                accepted = listener.accept() => {
                    if let Some((tcp, peer, slot)) = admit(accepted, &self.ctx) {
                        let Some(tx) = self.self_tx.upgrade() else { break };
                        next_conn += 1;
                        self.ctx.tasks.spawn(channel::serve(tcp, peer, next_conn, self.ctx.clone(), tx, slot));
                    }
                }
            }
        }
        // Answers already given go out once durable; then the connections close.
        commands.close();
        if crate::store::wait_durable(&*self.ctx.storage, self.ctx.storage.appended()).await {
            self.flush();
        }
        self.conns.clear();
    }

    /// Starts the settlement of a sale (once: a sale handed over again is ignored).
    fn open(&mut self, sale: Sale) {
        if self.settlements.contains_key(&sale.item) {
            return;
        }
        let item = sale.item;
        self.settlements
            .insert(item, Settlement::new(sale, self.timeout_ms));
        self.store(item, vec![]);
    }

    /// One command: one line per kind.
    fn handle(&mut self, cmd: DeskCmd) {
        match cmd {
            DeskCmd::Sold(sale) => self.open(sale),
            DeskCmd::Join {
                conn,
                account,
                queue,
            } => self.join(conn, account, queue),
            DeskCmd::Leave { conn } => drop(self.conns.remove(&conn)),
            DeskCmd::BadLine { conn, error, fatal } => self.bad_line(conn, error, fatal),
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

    fn join(&mut self, conn: u64, account: Arc<AccountHandle>, queue: mpsc::Sender<SettleBody>) {
        let items = HashSet::new();
        self.conns.insert(
            conn,
            Conn {
                account,
                queue,
                items,
            },
        );
    }

    /// A line that could not be read: answered at once (it changes nothing).
    fn bad_line(&mut self, conn: u64, error: LineError, fatal: bool) {
        let body = SettleBody::Error {
            req: error.req,
            reason: error.reason,
            message: error.detail,
        };
        self.send(conn, body);
        if fatal {
            self.conns.remove(&conn);
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

    fn refuse(&mut self, conn: u64, req: u64, Refusal { reason, message }: Refusal) {
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
