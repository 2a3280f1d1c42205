//! The registration plane: one task owns the UDP socket, the accounts and the catalogue of
//! items, and answers one datagram at a time.
//!
//! Every datagram goes through the same gate, in this order:
//! 1. decode (bounded, never panics) — refusals are `error` with a reason;
//! 2. address validation — without a valid cookie the only answer is a `cookie`, and no answer
//!    to an unvalidated address is more than [`COOKIE_AMPLIFICATION`] times the request;
//! 3. signature — requests that act for an account must be signed by its key;
//! 4. replay window — a repeated request number gets the cached answer, an old one is refused;
//! 5. the request itself.
//!
//! What a request changes is appended to storage as one group with the request's answer (for
//! the replay window), so a restart cannot keep one without the other. Answers and
//! announcements wait in `outbox` until storage has made durable everything appended before
//! them (see `storage.rs`); the task itself never waits for the disk.

mod accounts;
mod announce;
mod gate;
pub(crate) mod inbox;
mod items;
mod negotiation;
mod notices;
mod restore;
mod subscriptions;

use crate::rules::ratelimit::{self, SourceLimiter};
use auction_protocol::limits::{COOKIE_AMPLIFICATION, MAX_DATAGRAM};
use auction_protocol::udp::{self, RequestBody, ServerBody};
use auction_protocol::{cookie::CookieKey, ItemView, PublicKey, Reason};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::accounts::{AccountHandle, AccountId};
use crate::clock::unix_ms;
use crate::config::PortRange;
use crate::context::ServerContext;
use crate::item::{ItemCmd, ItemHandle, Watchers};
use crate::rules::replay::ReplayWindow;
use crate::store::{Negotiation, NoticeRecord, Outbox, Record, Snapshot, StoredItem};
use inbox::{ItemClosed, ItemUpdate};

/// Items one account may follow at once.
pub const MAX_SUBSCRIPTIONS: usize = 256;

/// Deregistered accounts remembered so a retransmitted DEREGISTER still gets DEREG-CONF.
const TOMBSTONES: usize = 1024;

struct Account {
    handle: Arc<AccountHandle>,
    replay: ReplayWindow,
    /// Where announcements go: the address of the latest REGISTER or ATTACH (always one that
    /// presented a valid cookie).
    notify: Option<SocketAddr>,
    open_items: usize,
    /// WIN / SOLD / NOT-SOLD not yet acknowledged, by notice id.
    pending: BTreeMap<u64, Pending>,
    /// The last announcement number sent to this account in this server run.
    seq: u64,
    /// Open items it is subscribed to.
    subscriptions: BTreeSet<u64>,
}

impl Account {
    fn new(
        handle: Arc<AccountHandle>,
        replay: ReplayWindow,
        notify: Option<SocketAddr>,
    ) -> Account {
        Account {
            handle,
            replay,
            notify,
            open_items: 0,
            pending: BTreeMap::new(),
            seq: 0,
            subscriptions: BTreeSet::new(),
        }
    }
}

struct Pending {
    datagram: Vec<u8>,
    /// Transmissions in the current delivery round.
    tries: u32,
    next_at: Instant,
}

struct Tombstone {
    id: AccountId,
    key: PublicKey,
    replay: ReplayWindow,
}

struct Entry {
    /// `None` once the item has closed.
    cmd: Option<mpsc::Sender<ItemCmd>>,
    view: tokio::sync::watch::Receiver<ItemView>,
    /// Shared with the item task; absent for items closed before this run.
    watchers: Option<Arc<Watchers>>,
    /// Accounts subscribed to the item, by name.
    subscribers: BTreeSet<String>,
    negotiation: Negotiation,
}

impl Entry {
    fn running(handle: ItemHandle, negotiation: Negotiation) -> Entry {
        Entry {
            cmd: Some(handle.cmd),
            view: handle.view,
            watchers: Some(handle.watchers),
            subscribers: BTreeSet::new(),
            negotiation,
        }
    }
}

/// Something the registry has said that waits for storage (see `Outbox`).
enum Outgoing {
    Datagram(SocketAddr, Vec<u8>),
    /// A reliable notice: queued for delivery (and retransmission) once durable.
    Notice(NoticeRecord),
}

pub struct Registry {
    socket: Arc<UdpSocket>,
    ctx: Arc<ServerContext>,
    cookies: CookieKey,
    /// Per-source rate limit, checked before anything else (see `ratelimit.rs`).
    limiter: SourceLimiter,
    /// Item listeners bind here (the UDP socket's IP)...
    bind_ip: IpAddr,
    /// ...and are announced with this host.
    advertise: IpAddr,
    accounts: HashMap<String, Account>,
    names: HashMap<AccountId, String>,
    tombstones: HashMap<String, Tombstone>,
    tombstone_order: VecDeque<String>,
    items: BTreeMap<u64, Entry>,
    /// Accounts with notices waiting, so retransmission does not scan everyone.
    with_pending: BTreeSet<String>,
    next_account: AccountId,
    next_item: u64,
    /// Rotates through the item port range so a just-closed port is not reused at once.
    next_port: u16,
    /// What the request being handled changed, appended as one group when it is answered.
    records: Vec<Record>,
    /// Datagrams waiting for storage: (to, datagram).
    outbox: Outbox<Outgoing>,
    /// Open items from the database, resumed when the task starts.
    to_resume: Vec<StoredItem>,
    /// Catalog entries offered so far (`--catalog`), by entry id.
    catalog_ids: HashSet<String>,
    /// Identifies this server run in announcements (its start, Unix ms): announcement numbers
    /// start again at 1 in every run.
    epoch: u64,
    /// Subscriptions from the database, applied once their items run.
    to_subscribe: Vec<(AccountId, u64)>,
    /// Open items not yet offered for negotiation: (due at, item).
    negotiations: BTreeSet<(u64, u64)>,
}

/// The result of one request: datagrams to send back, and whether to remember them in the
/// account's replay window.
struct Answer {
    datagrams: Vec<Vec<u8>>,
    /// Announcements to send after the answer (NEW-ITEM, pending notices).
    after: AfterAnswer,
}

enum AfterAnswer {
    Nothing,
    AnnounceItem(u64),
    SendPending(String),
}

impl Answer {
    fn one(body: ServerBody) -> Answer {
        Answer {
            datagrams: vec![udp::encode(body)],
            after: AfterAnswer::Nothing,
        }
    }
}

impl Registry {
    /// The registry of a server that starts from `snapshot` (empty for a new database).
    pub fn new(
        socket: Arc<UdpSocket>,
        ctx: Arc<ServerContext>,
        bind_ip: IpAddr,
        advertise: IpAddr,
        snapshot: Snapshot,
    ) -> Registry {
        let mut master = [0u8; 32];
        rand::fill(&mut master);
        let first_port = match ctx.config.item_ports {
            PortRange::Range(lo, _) => lo,
            PortRange::Ephemeral => 0,
        };
        let outbox = Outbox::new(&*ctx.storage);
        let limiter = SourceLimiter::new(
            ctx.config.udp_rate,
            ctx.config.udp_burst,
            ratelimit::MAX_SOURCES,
        );
        let mut registry = Registry {
            socket,
            ctx,
            cookies: CookieKey::new(&master),
            limiter,
            bind_ip,
            advertise,
            accounts: HashMap::new(),
            names: HashMap::new(),
            tombstones: HashMap::new(),
            tombstone_order: VecDeque::new(),
            items: BTreeMap::new(),
            with_pending: BTreeSet::new(),
            next_account: snapshot.next_account.max(1),
            next_item: snapshot.next_item.max(1),
            next_port: first_port,
            records: Vec::new(),
            outbox,
            to_resume: Vec::new(),
            catalog_ids: HashSet::new(),
            epoch: unix_ms(),
            to_subscribe: Vec::new(),
            negotiations: BTreeSet::new(),
        };
        registry.restore(snapshot);
        registry
    }

    pub async fn run(
        mut self,
        mut closed: mpsc::Receiver<ItemClosed>,
        mut updates: mpsc::Receiver<ItemUpdate>,
        mut notices: mpsc::UnboundedReceiver<NoticeRecord>,
    ) {
        self.resume().await;
        self.offer_catalog().await;
        // One byte more than the limit, so an oversized datagram is seen as such.
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = self.ctx.shutdown.clone();
        loop {
            tokio::select! {
                // In this order: closes queued by item tasks are applied before the next
                // datagram (see `ItemTask::close`), and a flood of datagrams cannot starve
                // notice retransmission.
                biased;
                _ = shutdown.cancelled() => break,
                _ = self.outbox.progress() => self.flush().await,
                Some(done) = closed.recv() => self.on_closed(done).await,
                Some(update) = updates.recv() => self.on_update(update).await,
                // The settlement desk's notices (appended already: sent once durable).
                Some(notice) = notices.recv() => self.say(Outgoing::Notice(notice)).await,
                _ = tick.tick() => {
                    self.ask_negotiations().await;
                    self.retransmit().await;
                }
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((n, src)) => self.on_datagram(&buf[..n], src).await,
                    // ICMP errors from earlier sends surface here on some systems; not fatal.
                    Err(e) => tracing::debug!(error = %e, "UDP receive error"),
                },
            }
        }
        // Answers to requests already handled go out once they are durable.
        let appended = self.ctx.storage.appended();
        if crate::store::wait_durable(&*self.ctx.storage, appended).await {
            self.flush().await;
        }
    }

    /// Appends what the current request changed, as one group.
    fn append_records(&mut self) {
        if !self.records.is_empty() {
            self.ctx.storage.append(mem::take(&mut self.records));
        }
    }

    /// Sends `datagram` once everything appended so far is durable: at once if it is.
    async fn emit(&mut self, to: SocketAddr, datagram: Vec<u8>) {
        self.say(Outgoing::Datagram(to, datagram)).await;
    }

    async fn say(&mut self, out: Outgoing) {
        if let Some(out) = self.outbox.admit(&*self.ctx.storage, out) {
            self.deliver(out).await;
        }
    }

    /// Sends what storage has caught up with.
    async fn flush(&mut self) {
        while let Some(out) = self.outbox.release() {
            self.deliver(out).await;
        }
    }

    async fn deliver(&mut self, out: Outgoing) {
        match out {
            Outgoing::Datagram(to, datagram) => self.send(to, &datagram).await,
            Outgoing::Notice(n) => {
                self.queue_notice(n.account, n.id, n.datagram);
                self.retransmit().await;
            }
        }
    }

    async fn send(&self, to: SocketAddr, datagram: &[u8]) {
        debug_assert!(datagram.len() <= MAX_DATAGRAM);
        if let Err(e) = self.socket.send_to(datagram, to).await {
            tracing::debug!(%to, error = %e, "UDP send failed");
        }
    }

    /// Answers a datagram whose source has not proven it receives: only if the answer is small
    /// relative to the request, so the server cannot amplify a spoofed flood.
    async fn send_unvalidated(&self, to: SocketAddr, request_len: usize, body: ServerBody) {
        let datagram = udp::encode(body);
        if datagram.len() <= request_len * COOKIE_AMPLIFICATION {
            self.send(to, &datagram).await;
        } else {
            tracing::debug!(%to, "dropped a reply that would amplify an unvalidated request");
        }
    }

    async fn refuse(&self, to: SocketAddr, req: u64, reason: Reason, message: &str) {
        let body = ServerBody::Error {
            req: Some(req),
            reason,
            message: message.to_owned(),
        };
        self.send(to, &udp::encode(body)).await;
    }

    async fn execute(&mut self, body: RequestBody, req: u64, src: SocketAddr) -> Answer {
        match body {
            RequestBody::Register { name, key } => self.register(req, name, key, src),
            RequestBody::Deregister { account } => self.deregister(req, &account).await,
            RequestBody::Offer {
                account,
                description,
                min,
                duration,
            } => self.offer(req, &account, description, min, duration),
            RequestBody::List => {
                let views: Vec<ItemView> = self
                    .items
                    .values()
                    .filter(|e| e.cmd.is_some())
                    .map(|e| e.view.borrow().clone())
                    .collect();
                Answer {
                    datagrams: udp::pack_items(req, &views),
                    after: AfterAnswer::Nothing,
                }
            }
            RequestBody::Status { item } => match self.items.get(&item) {
                Some(entry) => Answer::one(ServerBody::Status {
                    req,
                    item: entry.view.borrow().clone(),
                }),
                None => Answer::one(ServerBody::Error {
                    req: Some(req),
                    reason: Reason::UnknownItem,
                    message: format!("there is no item {item}"),
                }),
            },
            RequestBody::Attach { account, mode } => self.attach(req, account, mode, src),
            RequestBody::Ack { account, notice } => self.ack(req, &account, notice),
            RequestBody::Subscribe { account, item } => self.subscribe(req, &account, item),
            RequestBody::Unsubscribe { account, item } => self.unsubscribe(req, &account, item),
            RequestBody::Negotiate {
                account,
                item,
                answer,
                min,
            } => self.negotiate(req, &account, item, answer, min).await,
            RequestBody::Subscriptions { account } => {
                let views: Vec<ItemView> = self
                    .accounts
                    .get(&account)
                    .map(|a| {
                        a.subscriptions
                            .iter()
                            .filter_map(|i| self.items.get(i))
                            .map(|e| e.view.borrow().clone())
                            .collect()
                    })
                    .unwrap_or_default();
                Answer {
                    datagrams: udp::pack_items(req, &views),
                    after: AfterAnswer::Nothing,
                }
            }
        }
    }
}

fn not_registered(name: &str) -> String {
    format!("there is no account '{name}'")
}

/// The refusal that matches the request's kind.
fn deny(body: &RequestBody, req: u64, reason: Reason, message: String) -> Vec<u8> {
    udp::encode(match body {
        RequestBody::Register { .. } => ServerBody::RegisterDenied {
            req,
            reason,
            message,
        },
        RequestBody::Deregister { .. } => ServerBody::DeregDenied {
            req,
            reason,
            message,
        },
        RequestBody::Offer { .. } => ServerBody::OfferDenied {
            req,
            reason,
            message,
        },
        _ => ServerBody::Error {
            req: Some(req),
            reason,
            message,
        },
    })
}
