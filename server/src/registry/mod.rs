//! The registration plane: one task owns the UDP socket, the accounts and the catalogue of
//! items, and answers one datagram at a time.
//!
//! Every datagram goes through the same gate (`gate.rs`), in this order:
//! 1. the per-source rate limit;
//! 2. decode (bounded, never panics) — refusals are `error` with a reason;
//! 3. address validation — without a valid cookie the only answer is a `cookie`, and no answer
//!    to an unvalidated address is more than `COOKIE_AMPLIFICATION` times the request;
//! 4. signature — requests that act for an account must be signed by its key;
//! 5. replay window — a repeated request number gets the cached answer, an old one is refused;
//! 6. the request itself, dispatched by `execute` to the file of its concern.
//!
//! Each event reads the clock once (`Now`) and passes it to what handles it; the task sleeps
//! until the next notice retransmission or negotiation is due (no fixed tick), or until the
//! pace lets the next batch of announcements go (`announce_queue.rs`): they never go out all
//! at once, so requests are answered between batches.
//!
//! What a request changes is appended to storage as one group with the request's answer (for
//! the replay window), so a restart cannot keep one without the other. Answers and
//! announcements wait in `outbox` until storage has made durable everything appended before
//! them (see `store/mod.rs`); the task itself never waits for the disk. Handlers do no I/O:
//! what is ready to send collects in `sends`, and the run loop sends it after each event.

mod accounts;
mod alerts;
mod announce;
mod announce_queue;
mod devices;
mod gate;
pub(crate) mod inbox;
mod items;
mod lots;
mod negotiation;
mod notices;
mod operator;
mod remote;
mod restore;
mod subscriptions;

use auction_protocol::limits::MAX_DATAGRAM;
use auction_protocol::udp::{self, RequestBody, ServerBody};
use auction_protocol::{ItemView, Reason};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::accounts::AccountId;
use crate::clock::Now;
use crate::config::PortRange;
use crate::context::ServerContext;
use crate::item::{ItemCmd, ItemHandle, Watchers};
use crate::rules::ratelimit::{self, SourceLimiter};
use crate::store::{Negotiation, NoticeRecord, Outbox, Record, Snapshot, StoredItem};
use accounts::Accounts;
use announce_queue::AnnounceQueue;
use gate::Gate;
use inbox::{ItemClosed, ItemUpdate};
use notices::Notices;

/// Items started per turn of the run loop after a restart (see `restore.rs`)...
const RESUME_BATCH: usize = 128;
/// ...and at the latest after this many datagrams.
const RESUME_EVERY: usize = 64;

/// Items one account may follow at once.
pub(super) const MAX_SUBSCRIPTIONS: usize = 256;

/// One item in the catalogue, open or closed.
struct Entry {
    /// `None` once the item has closed.
    cmd: Option<mpsc::Sender<ItemCmd>>,
    view: watch::Receiver<ItemView>,
    /// Shared with the item task; absent for items closed before this run.
    watchers: Option<Arc<Watchers>>,
    /// Accounts subscribed to the item, by name.
    subscribers: BTreeSet<String>,
    negotiation: Negotiation,
    /// Several nodes: the item runs on a node (this one or another) and the registry keeps
    /// its view from the database (`remote.rs`).
    mirror: Option<watch::Sender<ItemView>>,
    /// The item's revision the mirrored view shows (an older read is not applied).
    rev: i64,
}

impl Entry {
    fn running(handle: ItemHandle, negotiation: Negotiation) -> Entry {
        Entry {
            cmd: Some(handle.cmd),
            view: handle.view,
            watchers: Some(handle.watchers),
            subscribers: BTreeSet::new(),
            negotiation,
            mirror: None,
            rev: 0,
        }
    }

    /// An open item run by a node of the cluster, followed through `link`.
    fn mirrored(
        view: ItemView,
        link: &Arc<crate::cluster::link::Link>,
        negotiation: Negotiation,
    ) -> Entry {
        let item = view.item;
        let (mirror, view) = watch::channel(view);
        link.follow(item);
        Entry {
            cmd: Some(crate::cluster::link::mirror(link.clone(), item)),
            view,
            watchers: None,
            subscribers: BTreeSet::new(),
            negotiation,
            mirror: Some(mirror),
            rev: 0,
        }
    }

    /// Adds a subscriber; whether it was new.
    fn subscribe(&mut self, name: &str) -> bool {
        let added = self.subscribers.insert(name.to_owned());
        if let (true, Some(w)) = (added, &self.watchers) {
            w.count.fetch_add(1, Ordering::Relaxed);
        }
        added
    }

    /// Removes a subscriber; whether it was one.
    fn unsubscribe(&mut self, name: &str) -> bool {
        let removed = self.subscribers.remove(name);
        if let (true, Some(w)) = (removed, &self.watchers) {
            w.count.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }
}

/// Something the registry has said that waits for storage (see `Outbox`).
enum Outgoing {
    Datagram(SocketAddr, Vec<u8>),
    /// A reliable notice: queued for delivery (and retransmission) once durable.
    Notice(NoticeRecord),
    /// A best-effort announcement: queued (see `announce_queue.rs`) once durable.
    Announcement(announce::Announcement),
}

pub struct Registry {
    socket: Arc<UdpSocket>,
    ctx: Arc<ServerContext>,
    /// Rate limit, decoding, cookies, signatures and replay windows (see `gate.rs`).
    gate: Gate,
    /// Item listeners bind here (the UDP socket's IP)...
    bind_ip: IpAddr,
    /// ...and are announced with this host.
    advertise: IpAddr,
    accounts: Accounts,
    items: BTreeMap<u64, Entry>,
    /// Reliable notices waiting for their acknowledgement.
    notices: Notices,
    /// Best-effort announcements waiting to go out, bounded per account and paced.
    announcements: AnnounceQueue,
    next_item: u64,
    /// Rotates through the item port range so a just-closed port is not reused at once.
    next_port: u16,
    /// What the request being handled changed, appended as one group when it is answered.
    records: Vec<Record>,
    /// Datagrams and notices waiting for storage to catch up.
    outbox: Outbox<Outgoing>,
    /// Datagrams ready to go, sent by the run loop after each event.
    sends: Vec<(SocketAddr, Vec<u8>)>,
    /// Open items from the database, made when the task starts (`restore.rs`)...
    to_resume: Vec<StoredItem>,
    /// ...and started a batch at a time between datagrams, by item.
    pending: BTreeMap<u64, restore::Pending>,
    /// Items resumed, closed, and left without a port at start so far, for the log line when
    /// all are started.
    resume_counts: (usize, usize, usize),
    /// Datagrams handled since the last batch of items was started (so a flood cannot hold
    /// the resume back: see `run`).
    since_resume: usize,
    /// Catalog entries offered so far (`--catalog`), by entry id.
    catalog_ids: HashSet<String>,
    /// Identifies this server run in announcements (its start, Unix ms): announcement numbers
    /// start again at 1 in every run.
    epoch: u64,
    /// Subscriptions from the database, applied once their items run.
    to_subscribe: Vec<(AccountId, u64)>,
    /// Open items not yet offered for negotiation: (due at, item).
    negotiations: BTreeSet<(u64, u64)>,
    /// Items open now, all sellers together (`Config::max_items`).
    open_items: usize,
    /// Accounts each source may still create (`Config::accounts_per_hour`).
    new_accounts: SourceLimiter,
    /// `history` answers being read from the database at once (`items.rs`, `MAX_HISTORY_READS`).
    history_reads: Arc<tokio::sync::Semaphore>,
    /// `history` requests each source may still make (`items.rs`, `HISTORY_RATE`).
    history_sources: SourceLimiter,
    /// OUTBID and ENDING-SOON (`alerts.rs`).
    alerts: alerts::Alerts,
    /// The catalog's lots closing in turn as one group, if it asks for that (`lots.rs`).
    lots: Option<lots::Lots>,
}

/// The result of one request: datagrams to send back (the first is kept in the signing
/// account's replay window), and what to send after them.
struct Answer {
    datagrams: Vec<Vec<u8>>,
    /// Announcements to send after the answer (NEW-ITEM, pending notices).
    after: AfterAnswer,
}

enum AfterAnswer {
    Nothing,
    AnnounceItem(u64),
    /// Several nodes: a new item waits for its node to open its channel before the answer
    /// (which names the channel) goes out, then is announced (see `gate.rs`).
    AwaitChannel(u64),
    /// The sender became one of the account's devices (or said it still is, or the account
    /// was deregistered): the devices that no longer get its announcements are told so
    /// (`evicted`), and (`pending`) a new delivery round of its pending notices starts.
    Attached {
        account: AccountId,
        evicted: Vec<(SocketAddr, Vec<u8>)>,
        pending: bool,
    },
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
        let master = snapshot.cookie_secret.unwrap_or_else(|| {
            let mut master = [0u8; 32];
            rand::fill(&mut master);
            master
        });
        let first_port = match ctx.config.item_ports {
            PortRange::Range(lo, _) => lo,
            PortRange::Ephemeral => 0,
        };
        let now = Now::read();
        let mut registry = Registry {
            gate: Gate::new(&master, ctx.config.udp_rate, ctx.config.udp_burst),
            notices: Notices::new(ctx.config.notice_retry, ctx.config.notice_tries),
            announcements: AnnounceQueue::new(
                ctx.config.announce_queue,
                ctx.config.announce_rate,
                now.instant,
            ),
            outbox: Outbox::new(&*ctx.storage),
            socket,
            ctx: ctx.clone(),
            bind_ip,
            advertise,
            accounts: Accounts::new(snapshot.next_account),
            items: BTreeMap::new(),
            next_item: snapshot.next_item.max(1),
            next_port: first_port,
            records: Vec::new(),
            sends: Vec::new(),
            to_resume: Vec::new(),
            pending: BTreeMap::new(),
            resume_counts: (0, 0, 0),
            since_resume: 0,
            catalog_ids: HashSet::new(),
            epoch: now.ms,
            to_subscribe: Vec::new(),
            negotiations: BTreeSet::new(),
            open_items: 0,
            new_accounts: {
                let per_hour = f64::from(ctx.config.accounts_per_hour);
                SourceLimiter::new(per_hour / 3600.0, per_hour, ratelimit::MAX_SOURCES)
            },
            history_reads: Arc::new(tokio::sync::Semaphore::new(items::MAX_HISTORY_READS)),
            history_sources: SourceLimiter::new(
                items::HISTORY_RATE,
                items::HISTORY_BURST,
                ratelimit::MAX_SOURCES,
            ),
            alerts: alerts::Alerts::new(snapshot.next_registry_notice),
            lots: lots::Lots::of(ctx.config.catalog.as_ref()),
        };
        registry.restore(snapshot, now);
        registry
    }

    pub async fn run(
        mut self,
        mut closed: mpsc::Receiver<ItemClosed>,
        mut updates: mpsc::Receiver<ItemUpdate>,
        mut notices: mpsc::UnboundedReceiver<NoticeRecord>,
        mut remote: mpsc::Receiver<crate::cluster::link::Remote>,
    ) {
        self.resume(Now::read());
        self.realign_lots();
        self.offer_catalog(Now::read()).await;
        // One byte more than the limit, so an oversized datagram is seen as such.
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let shutdown = self.ctx.shutdown.clone();
        loop {
            self.transmit().await;
            let wake = self.next_wake(Now::read());
            let pace = self.announcements.next_wake();
            tokio::select! {
                // In this order: closes queued by item tasks are applied before the next
                // datagram (see `ItemTask::close`), and a flood of datagrams cannot starve
                // notice retransmission.
                biased;
                _ = shutdown.cancelled() => break,
                _ = self.outbox.progress() => self.flush(Now::read()),
                Some(done) = closed.recv() => self.on_closed(done, Now::read()),
                Some(update) = updates.recv() => self.on_update(update),
                // The settlement desk's notices (appended already: sent once durable).
                Some(notice) = notices.recv() => self.say_notice(notice, Now::read()),
                // What the items the nodes run did (several nodes only).
                Some(event) = remote.recv() => self.on_remote(event, Now::read()),
                _ = crate::clock::sleep_until(wake) => {
                    let now = Now::read();
                    self.ask_negotiations(now);
                    self.retransmit(now);
                }
                // A batch of announcements when the pace allows one; then datagrams are read
                // again before the next (the batch used up what the pace allowed).
                _ = crate::clock::sleep_until(pace) => {
                    self.send_announcements(Now::read());
                }
                received = self.socket.recv_from(&mut buf) => {
                    match received {
                        Ok((n, src)) => self.on_datagram(&buf[..n], src, Now::read()).await,
                        // ICMP errors from earlier sends surface here on some systems.
                        Err(e) => tracing::debug!(error = %e, "UDP receive error"),
                    }
                    // A socket that always has a datagram waiting (a flood, even dropped
                    // unread) must not keep the resumed items from starting.
                    if !self.pending.is_empty() {
                        self.since_resume += 1;
                        if self.since_resume >= RESUME_EVERY {
                            self.resume_some(RESUME_BATCH);
                        }
                    }
                }
                // Last: items made at start are started a batch at a time, when nothing above
                // is ready, so requests are answered between batches.
                _ = std::future::ready(()), if !self.pending.is_empty() => {
                    self.resume_some(RESUME_BATCH);
                }
            }
        }
        // Answers to requests already handled go out once they are durable.
        let appended = self.ctx.storage.appended();
        if crate::store::wait_durable(&*self.ctx.storage, appended).await {
            self.flush(Now::read());
            self.transmit().await;
        }
    }

    /// When the task next has something to do without being asked: a notice to retransmit or
    /// a negotiation to offer.
    fn next_wake(&self, now: Now) -> Option<tokio::time::Instant> {
        let negotiation = self.negotiations.first().map(|&(at, _)| now.instant_of(at));
        match (self.notices.next_wake(), negotiation) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Appends what the current request changed, as one group.
    fn append_records(&mut self) {
        if !self.records.is_empty() {
            self.ctx.storage.append(std::mem::take(&mut self.records));
        }
    }

    /// Sends `datagram` once everything appended so far is durable: at once if it is.
    fn emit(&mut self, to: SocketAddr, datagram: Vec<u8>) {
        let out = Outgoing::Datagram(to, datagram);
        if let Some(Outgoing::Datagram(to, datagram)) = self.outbox.admit(&*self.ctx.storage, out) {
            self.sends.push((to, datagram));
        }
    }

    /// Delivers a reliable notice once everything appended so far is durable.
    fn say_notice(&mut self, notice: NoticeRecord, now: Now) {
        if let Some(out) = self
            .outbox
            .admit(&*self.ctx.storage, Outgoing::Notice(notice))
        {
            self.deliver(out, now);
        }
    }

    /// Releases what storage has caught up with.
    fn flush(&mut self, now: Now) {
        while let Some(out) = self.outbox.release() {
            self.deliver(out, now);
        }
    }

    fn deliver(&mut self, out: Outgoing, now: Now) {
        match out {
            Outgoing::Datagram(to, datagram) => self.sends.push((to, datagram)),
            Outgoing::Notice(n) => {
                if self.alerts.was_replaced(n.id) {
                    return;
                }
                self.queue_notice(n.account, n.id, n.datagram, now);
                self.retransmit(now);
            }
            Outgoing::Announcement(a) => self.queue_announcement(a),
        }
    }

    /// Sends every datagram that is ready.
    async fn transmit(&mut self) {
        for (to, datagram) in std::mem::take(&mut self.sends) {
            debug_assert!(datagram.len() <= MAX_DATAGRAM);
            if let Err(e) = self.socket.send_to(&datagram, to).await {
                tracing::debug!(%to, error = %e, "UDP send failed");
            }
        }
    }

    /// One request that passed the gate: one line per kind.
    async fn execute(&mut self, body: RequestBody, req: u64, src: SocketAddr, now: Now) -> Answer {
        match body {
            RequestBody::Register { name, key } => self.register(req, name, key, src, now),
            RequestBody::Deregister { account } => self.deregister(req, &account, now).await,
            RequestBody::Offer {
                account,
                description,
                min,
                duration,
                reserve,
                buy_now,
            } => {
                if let Some(link) = &self.ctx.cluster {
                    link.refresh_nodes().await;
                }
                let terms = crate::rules::auction::Terms { reserve, buy_now };
                self.offer(req, &account, description, min, terms, duration, now)
            }
            RequestBody::List => self.list(req),
            RequestBody::Status { item } => self.status(req, item),
            RequestBody::History { item } => self.history(req, item, src, now),
            RequestBody::Attach { account, mode } => self.attach(req, account, mode, src),
            RequestBody::Detach { account } => self.detach(req, &account, src),
            RequestBody::Ack { account, notice } => self.ack(req, &account, notice, now),
            RequestBody::Subscribe { account, item } => self.subscribe(req, &account, item),
            RequestBody::Unsubscribe { account, item } => self.unsubscribe(req, &account, item),
            RequestBody::Negotiate {
                account,
                item,
                answer,
                min,
            } => self.negotiate(req, &account, item, answer, min, now).await,
            RequestBody::Subscriptions { account } => self.subscriptions(req, &account),
            RequestBody::CancelItem {
                account,
                item,
                note,
            } => self.cancel_item(req, &account, item, note).await,
            RequestBody::RemoveBid {
                account,
                item,
                bid,
                note,
            } => self.remove_bid(req, &account, item, bid, note).await,
        }
    }
}

fn not_registered(name: &str) -> String {
    format!("there is no account '{name}'")
}

/// How a request of each kind is refused: with its own denial message, or `error`.
#[derive(Debug, Clone, Copy)]
enum Denial {
    Register,
    Deregister,
    Offer,
    Subscribe,
    Negotiate,
    Operator,
    Error,
}

impl Denial {
    /// How a request of this kind is refused (PROTOCOL.md, "Requests").
    fn of(body: &RequestBody) -> Denial {
        match body {
            RequestBody::Register { .. } => Denial::Register,
            RequestBody::Deregister { .. } => Denial::Deregister,
            RequestBody::Offer { .. } => Denial::Offer,
            RequestBody::Subscribe { .. } => Denial::Subscribe,
            RequestBody::Negotiate { .. } => Denial::Negotiate,
            RequestBody::CancelItem { .. } | RequestBody::RemoveBid { .. } => Denial::Operator,
            _ => Denial::Error,
        }
    }

    fn body(self, req: u64, reason: Reason, message: String) -> ServerBody {
        match self {
            Denial::Register => ServerBody::RegisterDenied {
                req,
                reason,
                message,
            },
            Denial::Deregister => ServerBody::DeregDenied {
                req,
                reason,
                message,
            },
            Denial::Offer => ServerBody::OfferDenied {
                req,
                reason,
                message,
            },
            Denial::Subscribe => ServerBody::SubscriptionDenied {
                req,
                reason,
                message,
            },
            Denial::Negotiate => ServerBody::NegotiateDenied {
                req,
                reason,
                message,
            },
            Denial::Operator => ServerBody::OperatorDenied {
                req,
                reason,
                message,
            },
            Denial::Error => ServerBody::Error {
                req: Some(req),
                reason,
                message,
            },
        }
    }

    /// The answer refusing request `req`.
    fn answer(self, req: u64, reason: Reason, message: String) -> Answer {
        Answer::one(self.body(req, reason, message))
    }
}

/// The refusal that matches the request's kind.
fn deny(body: &RequestBody, req: u64, reason: Reason, message: String) -> Vec<u8> {
    udp::encode(Denial::of(body).body(req, reason, message))
}
