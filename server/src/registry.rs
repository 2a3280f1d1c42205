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

use crate::ratelimit::{self, SourceLimiter};
use auction_protocol::limits::{
    COOKIE_AMPLIFICATION, DEFAULT_DURATION_SECS, MAX_AMOUNT_CENTS, MAX_DATAGRAM, MAX_DURATION_SECS,
    MIN_DURATION_SECS,
};
use auction_protocol::udp::{self, AttachMode, RequestBody, ServerBody};
use auction_protocol::{cookie::CookieKey, names, sign, Cents, ItemView, PublicKey, Reason};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::accounts::{AccountHandle, AccountId};
use crate::auction::{self, Lead};
use crate::config::PortRange;
use crate::item::{
    self, Change, ItemClosed, ItemCmd, ItemContext, ItemHandle, ItemSpec, ItemUpdate, Watchers,
};
use crate::replay::{self, ReplayWindow, Verdict};
use crate::storage::{Negotiation, NoticeKind, NoticeRecord, Outbox, Record, Snapshot, StoredItem};
use crate::{unix_ms, unix_secs};

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
    ctx: Arc<ItemContext>,
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
        ctx: Arc<ItemContext>,
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

    /// Accounts, replay windows, closed items and pending notices from the database. Open
    /// items are resumed by `run`, which can send their announcements.
    fn restore(&mut self, snapshot: Snapshot) {
        let (live, mut removed): (Vec<_>, Vec<_>) =
            snapshot.accounts.into_iter().partition(|a| !a.removed);
        for a in live {
            let handle = Arc::new(AccountHandle::new(a.id, a.name.clone(), a.key));
            self.ctx.keys.insert(handle.clone());
            self.names.insert(a.id, a.name.clone());
            self.accounts.insert(
                a.name,
                Account::new(
                    handle,
                    ReplayWindow::restore(a.replay_floor, a.replies),
                    a.notify,
                ),
            );
        }
        // Oldest first, so the tombstone order evicts the oldest; a name registered again
        // has no tombstone.
        removed.sort_by_key(|a| a.id);
        for a in removed {
            if self.accounts.contains_key(&a.name) {
                continue;
            }
            self.tombstones.insert(
                a.name.clone(),
                Tombstone {
                    id: a.id,
                    key: a.key,
                    replay: ReplayWindow::restore(a.replay_floor, a.replies),
                },
            );
            self.tombstone_order.push_back(a.name);
        }
        for stored in snapshot.items {
            if let Some(id) = &stored.catalog_id {
                self.catalog_ids.insert(id.clone());
            }
            if stored.closed_at.is_some() {
                let view = ItemView {
                    item: stored.id,
                    description: stored.description,
                    seller: stored.seller_name,
                    min: stored.min,
                    highest: stored.lead.as_ref().map(|l| l.2),
                    bidder: stored.lead.as_ref().map(|l| l.1.clone()),
                    ends_at: stored.ends_at,
                    state: auction_protocol::ItemState::Closed,
                    channel: None,
                    winner: stored.lead.as_ref().map(|l| l.1.clone()),
                    price: stored.lead.as_ref().map(|l| l.2),
                    settle_port: stored.lead.as_ref().map(|_| self.ctx.settle_port),
                };
                let (_, view) = tokio::sync::watch::channel(view);
                self.items.insert(
                    stored.id,
                    Entry {
                        cmd: None,
                        view,
                        watchers: None,
                        subscribers: BTreeSet::new(),
                        negotiation: Negotiation::Done,
                    },
                );
            } else {
                if let Some(account) = self.accounts.get_mut(&stored.seller_name) {
                    account.open_items += 1;
                }
                self.ctx.metrics.open_items.inc();
                self.to_resume.push(stored);
            }
        }
        for n in snapshot.notices {
            self.queue_notice(n.account, n.id, n.datagram);
        }
        self.to_subscribe = snapshot.subscriptions;
    }

    /// Keeps a durable notice for `account` until acknowledged; sent at the next retransmit.
    fn queue_notice(&mut self, account: AccountId, id: u64, datagram: Vec<u8>) {
        let Some(name) = self.names.get(&account) else {
            return;
        };
        if let Some(a) = self.accounts.get_mut(name) {
            let pending = Pending {
                datagram,
                tries: 0,
                next_at: Instant::now(),
            };
            a.pending.insert(id, pending);
            self.with_pending.insert(name.clone());
        }
    }

    /// The replay window of account `name` if `key` is its key (live or deregistered).
    fn window_of(&mut self, name: &str, key: &PublicKey) -> Option<(AccountId, &mut ReplayWindow)> {
        match (self.accounts.get_mut(name), self.tombstones.get_mut(name)) {
            (Some(a), _) if a.handle.key == *key => Some((a.handle.id, &mut a.replay)),
            (None, Some(t)) if t.key == *key => Some((t.id, &mut t.replay)),
            _ => None,
        }
    }

    /// The handle of account `id`, or a handle that cannot bid if the account is gone.
    fn handle_of(&self, id: AccountId, name: &str) -> Arc<AccountHandle> {
        match self.accounts.get(name) {
            Some(a) if a.handle.id == id => a.handle.clone(),
            _ => {
                let gone = AccountHandle::new(id, name.to_owned(), PublicKey([0; 32]));
                gone.set_live(false);
                Arc::new(gone)
            }
        }
    }

    /// Starts the items that were open when the server stopped. Those whose end passed in the
    /// meantime close at once (with their results and notices); the others get the time they
    /// had left plus the recovery grace, listen again (on the same port when it is free) and
    /// are announced again.
    async fn resume(&mut self) {
        let grace = self.ctx.config.recovery_grace.as_millis() as u64;
        let now = unix_ms();
        for stored in mem::take(&mut self.to_resume) {
            let seller = self.handle_of(stored.seller, &stored.seller_name);
            let lead = stored.lead.as_ref().map(|(id, name, amount, max)| Lead {
                amount: *amount,
                bidder: self.handle_of(*id, name),
                max: *max,
            });
            let mut spec = ItemSpec {
                id: stored.id,
                description: stored.description,
                seller,
                min: stored.min,
                ends_at: stored.ends_at,
                channel: None,
                lead,
                bid_ids: stored.bid_ids,
            };
            let mut listener = None;
            if stored.ends_at > now {
                let bound = self
                    .bind(stored.port)
                    .or_else(|_| self.bind_item_port())
                    .and_then(|l| Ok((l.local_addr()?.port(), l)));
                match bound {
                    Ok((port, l)) => {
                        spec.ends_at = stored.ends_at.saturating_add(grace);
                        spec.channel = Some(SocketAddr::new(self.advertise, port).to_string());
                        self.records.push(Record::ItemResumed {
                            item: stored.id,
                            ends_at: spec.ends_at,
                            port,
                        });
                        listener = Some(l);
                        tracing::info!(
                            item = stored.id,
                            port,
                            ends_at = spec.ends_at,
                            "item resumed"
                        );
                    }
                    Err(e) => {
                        // Without a channel no one can bid: the auction closes with what it has.
                        tracing::error!(item = stored.id, error = %e, "no port to resume the item on; closing it");
                    }
                }
            } else {
                tracing::info!(
                    item = stored.id,
                    "item ended while the server was down; closing it"
                );
            }
            let resumed = listener.is_some();
            let handle = item::spawn(spec, listener, self.ctx.clone());
            if let Negotiation::Due(at) = stored.negotiation {
                self.negotiations.insert((at, stored.id));
            }
            self.items
                .insert(stored.id, Entry::running(handle, stored.negotiation));
            if resumed {
                self.append_records();
                self.announce_item(stored.id).await;
            }
        }
        self.append_records();
        for (account, item) in mem::take(&mut self.to_subscribe) {
            if let Some(name) = self.names.get(&account).cloned() {
                self.add_subscription(&name, item);
            }
        }
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
        if crate::storage::wait_durable(&*self.ctx.storage, appended).await {
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

    async fn on_datagram(&mut self, data: &[u8], src: SocketAddr) {
        if let ratelimit::Verdict::Limited { tell } =
            self.limiter.check(src.ip(), std::time::Instant::now())
        {
            self.ctx.metrics.udp_limited.inc();
            if tell {
                tracing::info!(%src, "rate-limiting a source");
                let req = match udp::decode_request(data) {
                    Ok(incoming) => Some(incoming.request.req),
                    Err(e) => e.req,
                };
                let body = ServerBody::Error {
                    req,
                    reason: Reason::RateLimited,
                    message: format!(
                        "more than {} datagrams per second from this address; slow down",
                        self.ctx.config.udp_rate
                    ),
                };
                self.send_unvalidated(src, data.len(), body).await;
            }
            return;
        }
        let incoming = match udp::decode_request(data) {
            Ok(incoming) => incoming,
            Err(e) => {
                tracing::debug!(%src, error = %e, "refused a datagram");
                let body = ServerBody::Error {
                    req: e.req,
                    reason: e.reason,
                    message: e.detail,
                };
                self.send_unvalidated(src, data.len(), body).await;
                return;
            }
        };
        let request = incoming.request;
        let req = request.req;
        let now = unix_secs();
        let validated = request
            .cookie
            .as_deref()
            .is_some_and(|c| self.cookies.check(src, c, now));
        if !validated {
            let cookie = self.cookies.issue(src, now);
            self.send_unvalidated(src, data.len(), ServerBody::Cookie { req, cookie })
                .await;
            return;
        }

        // Signature and replay window, for requests that act for an account.
        let mut acting: Option<(String, PublicKey, replay::RequestDigest)> = None;
        if let Some(name) = request.body.account() {
            let Some(signed) = incoming.signed else {
                let msg = "this request must be signed with the account's key";
                self.refuse(src, req, Reason::SignatureRequired, msg).await;
                return;
            };
            let key = match (
                &request.body,
                self.accounts.get(name),
                self.tombstones.get(name),
            ) {
                (RequestBody::Register { key, .. }, _, _) => *key,
                (_, Some(account), _) => account.handle.key,
                (_, None, Some(tomb)) => tomb.key,
                (_, None, None) => {
                    let answer = deny(
                        &request.body,
                        req,
                        Reason::NotRegistered,
                        not_registered(name),
                    );
                    self.send(src, &answer).await;
                    return;
                }
            };
            if let Err(e) = sign::verify(&key, signed.body, signed.sig) {
                self.refuse(src, req, Reason::BadSignature, &e.to_string())
                    .await;
                return;
            }
            let digest = replay::digest(&request.body);
            match self
                .window_of(name, &key)
                .map(|(_, w)| w.check(req, &digest))
            {
                Some(Verdict::Repeat(answer)) => {
                    // The first answer may not be durable yet: it waits like the first did.
                    let answer = answer.to_vec();
                    self.emit(src, answer).await;
                    return;
                }
                Some(Verdict::Stale) => {
                    let msg = "request number is older than this account's replay window";
                    self.refuse(src, req, Reason::StaleRequest, msg).await;
                    return;
                }
                Some(Verdict::Reused) => {
                    let msg = "this request number was already used for a different request; use a new one";
                    self.refuse(src, req, Reason::RequestReused, msg).await;
                    return;
                }
                Some(Verdict::New) | None => {}
            }
            acting = Some((name.to_owned(), key, digest));
        }

        let answer = self.execute(request.body, req, src).await;
        if let (Some((name, key, digest)), Some(first)) = (acting, answer.datagrams.first()) {
            // Only into the window of the account that signed: a refused REGISTER for a taken
            // name, signed by another key, must not touch the owner's window.
            let recorded = self.window_of(&name, &key).map(|(account, window)| {
                window.record(req, digest, first.clone());
                (account, window.floor())
            });
            if let Some((account, floor)) = recorded {
                self.records.push(Record::Replied {
                    account,
                    req,
                    digest,
                    answer: first.clone(),
                    floor,
                });
            }
        }
        self.append_records();
        for datagram in answer.datagrams {
            self.emit(src, datagram).await;
        }
        match answer.after {
            AfterAnswer::Nothing => {}
            AfterAnswer::AnnounceItem(item) => self.announce_item(item).await,
            AfterAnswer::SendPending(name) => self.send_pending(&name, true).await,
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

    /// ATTACH: moves the account's announcements to `src` (see `AttachMode`), and restarts
    /// delivery of its pending notices there.
    fn attach(&mut self, req: u64, account: String, mode: AttachMode, src: SocketAddr) -> Answer {
        let Some(a) = self.accounts.get_mut(&account) else {
            return Answer::one(ServerBody::Error {
                req: Some(req),
                reason: Reason::NotRegistered,
                message: not_registered(&account),
            });
        };
        // Announcements go to another machine now (by IP).
        let elsewhere = a.notify.is_some_and(|n| n.ip() != src.ip());
        let pending = a.pending.len() as u32;
        let moves = match mode {
            AttachMode::Login => true,
            AttachMode::Keep if !elsewhere => true,
            AttachMode::Keep => {
                return Answer::one(ServerBody::Error {
                    req: Some(req),
                    reason: Reason::Moved,
                    message: format!(
                        "'{account}' has logged in from another address; its announcements go there now"
                    ),
                })
            }
            // From the IP that has them already: another client on the same machine (a
            // `watch`) keeps them.
            AttachMode::Roam => elsewhere || a.notify.is_none(),
        };
        if !moves {
            return Answer::one(ServerBody::Attached {
                req,
                pending,
                moved: false,
            });
        }
        let moved = a.notify != Some(src);
        if moved && mode == AttachMode::Roam {
            tracing::info!(%account, from = ?a.notify, to = %src, "logged in from another address");
        }
        a.notify = Some(src);
        self.records.push(Record::AccountAttached {
            id: a.handle.id,
            notify: src,
        });
        Answer {
            datagrams: vec![udp::encode(ServerBody::Attached {
                req,
                pending,
                moved,
            })],
            after: AfterAnswer::SendPending(account),
        }
    }

    fn register(&mut self, req: u64, name: String, key: PublicKey, src: SocketAddr) -> Answer {
        let denied = |reason, message: String| {
            Answer::one(ServerBody::RegisterDenied {
                req,
                reason,
                message,
            })
        };
        if !names::valid_name(&name) {
            return denied(
                Reason::InvalidName,
                "a name is 1 to 32 characters of A-Z a-z 0-9 _ . -".into(),
            );
        }
        if let Some(existing) = self.accounts.get_mut(&name) {
            if existing.handle.key == key {
                // Registering again with the same key succeeds and moves the announcements.
                existing.notify = Some(src);
                self.records.push(Record::AccountAttached {
                    id: existing.handle.id,
                    notify: src,
                });
                return Answer::one(ServerBody::Registered { req, name });
            }
            return denied(Reason::NameTaken, format!("the name '{name}' is taken"));
        }
        if let Some(owner) = self.ctx.keys.lookup(&key) {
            return denied(
                Reason::KeyTaken,
                format!("this key is already registered as '{}'", owner.name),
            );
        }
        self.create_account(&name, key, Some(src));
        self.ctx.metrics.registrations.inc();
        tracing::info!(%name, key = %key.fingerprint(), "registered");
        Answer::one(ServerBody::Registered { req, name })
    }

    /// A new account (its record is part of the current request's group).
    fn create_account(&mut self, name: &str, key: PublicKey, notify: Option<SocketAddr>) {
        let id = self.next_account;
        self.next_account += 1;
        self.records.push(Record::AccountCreated {
            id,
            name: name.to_owned(),
            key,
            notify,
            at: unix_ms(),
        });
        let handle = Arc::new(AccountHandle::new(id, name.to_owned(), key));
        self.ctx.keys.insert(handle.clone());
        self.names.insert(id, name.to_owned());
        self.tombstones.remove(name);
        self.accounts.insert(
            name.to_owned(),
            Account::new(handle, ReplayWindow::default(), notify),
        );
    }

    async fn deregister(&mut self, req: u64, name: &str) -> Answer {
        let denied = |reason, message: String| {
            Answer::one(ServerBody::DeregDenied {
                req,
                reason,
                message,
            })
        };
        let Some(account) = self.accounts.get(name) else {
            return denied(Reason::NotRegistered, not_registered(name));
        };
        if account.open_items > 0 {
            return denied(
                Reason::HasOpenItems,
                format!(
                    "'{name}' has {} open item(s); wait until they close",
                    account.open_items
                ),
            );
        }
        // Stop the account from bidding first, then ask every open item who leads: any bid
        // the item accepted before it saw the flag cleared is reflected in its answer.
        let handle = account.handle.clone();
        handle.set_live(false);
        let leads = self.leads_any(handle.id).await;
        if let Some(item) = leads {
            handle.set_live(true);
            return denied(
                Reason::LeadsAuction,
                format!("'{name}' holds the highest bid on item {item}; wait until it closes"),
            );
        }
        self.records.push(Record::AccountRemoved {
            id: handle.id,
            at: unix_ms(),
        });
        self.ctx.keys.remove(&handle.key);
        let followed: Vec<u64> = self
            .accounts
            .get(name)
            .map(|a| a.subscriptions.iter().copied().collect())
            .unwrap_or_default();
        for item in followed {
            self.remove_subscription(name, item);
        }
        if let Some(account) = self.accounts.remove(name) {
            self.with_pending.remove(name);
            self.names.remove(&handle.id);
            self.tombstones.insert(
                name.to_owned(),
                Tombstone {
                    id: handle.id,
                    key: handle.key,
                    replay: account.replay,
                },
            );
            self.tombstone_order.push_back(name.to_owned());
            while self.tombstone_order.len() > TOMBSTONES {
                if let Some(old) = self.tombstone_order.pop_front() {
                    self.tombstones.remove(&old);
                }
            }
        }
        // Its open channels close now rather than refuse its bids one by one.
        for entry in self.items.values() {
            if let Some(cmd) = &entry.cmd {
                let _ = cmd.send(ItemCmd::AccountGone { account: handle.id }).await;
            }
        }
        tracing::info!(%name, "deregistered");
        Answer::one(ServerBody::DeregConf { req })
    }

    /// The first open item `account` leads, asking each item task.
    async fn leads_any(&self, account: AccountId) -> Option<u64> {
        let mut asks = Vec::new();
        for (&item, entry) in &self.items {
            let Some(cmd) = &entry.cmd else { continue };
            let (tx, rx) = oneshot::channel();
            if cmd.send(ItemCmd::Leader { reply: tx }).await.is_ok() {
                asks.push((item, rx));
            }
        }
        for (item, rx) in asks {
            // An item that closed meanwhile drops the question: it no longer counts.
            if let Ok(Some(leader)) = rx.await {
                if leader == account {
                    return Some(item);
                }
            }
        }
        None
    }

    fn offer(
        &mut self,
        req: u64,
        name: &str,
        description: String,
        min: Cents,
        duration: Option<u64>,
    ) -> Answer {
        let denied = |reason, message: String| {
            Answer::one(ServerBody::OfferDenied {
                req,
                reason,
                message,
            })
        };
        let Some(account) = self.accounts.get(name) else {
            return denied(Reason::NotRegistered, not_registered(name));
        };
        if !names::valid_description(&description) {
            return denied(
                Reason::InvalidDescription,
                "a description is 1 to 200 characters, without control characters".into(),
            );
        }
        if min.0 == 0 || min.0 > MAX_AMOUNT_CENTS {
            return denied(
                Reason::InvalidAmount,
                "the minimum bid must be between 0.01 and 100000000000.00".into(),
            );
        }
        let duration = duration.unwrap_or(DEFAULT_DURATION_SECS);
        if !(MIN_DURATION_SECS..=MAX_DURATION_SECS).contains(&duration) {
            return denied(
                Reason::InvalidDuration,
                "the duration must be between 1 second and 30 days".into(),
            );
        }
        let max = self.ctx.config.max_open_items;
        let house = self
            .ctx
            .config
            .catalog
            .as_ref()
            .is_some_and(|c| c.seller == name);
        if account.open_items >= max && !house {
            return denied(
                Reason::TooManyOpenItems,
                format!("'{name}' already has {max} open items, the most allowed"),
            );
        }
        match self.open_item(name, description, min, duration, None) {
            Ok((item, channel, ends_at)) => Answer {
                datagrams: vec![udp::encode(ServerBody::OfferConf {
                    req,
                    item,
                    channel,
                    ends_at,
                })],
                after: AfterAnswer::AnnounceItem(item),
            },
            Err((reason, message)) => denied(reason, message),
        }
    }

    /// Starts the auction of a new item (checked already) for the account `name`: its
    /// listener, its task and its record. Returns the item number, channel and end.
    fn open_item(
        &mut self,
        name: &str,
        description: String,
        min: Cents,
        duration: u64,
        catalog_id: Option<String>,
    ) -> Result<(u64, String, u64), (Reason, String)> {
        let Some(account) = self.accounts.get(name) else {
            return Err((Reason::NotRegistered, not_registered(name)));
        };
        let seller = account.handle.clone();
        let listener = match self.bind_item_port() {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "no port for a new item channel");
                return Err((
                    Reason::NoChannelPort,
                    "no free port for the item's channel".into(),
                ));
            }
        };
        let port = match listener.local_addr() {
            Ok(addr) => addr.port(),
            Err(e) => return Err((Reason::NoChannelPort, e.to_string())),
        };
        let channel = SocketAddr::new(self.advertise, port).to_string();
        let id = self.next_item;
        let now = unix_ms();
        let ends_at = now + duration * 1000;
        self.records.push(Record::ItemOffered {
            item: id,
            seller: seller.id,
            description: description.clone(),
            min,
            ends_at,
            port,
            at: now,
            catalog_id: catalog_id.clone(),
        });
        self.next_item += 1;
        let spec = ItemSpec {
            id,
            description,
            seller,
            min,
            ends_at,
            channel: Some(channel.clone()),
            lead: None,
            bid_ids: Vec::new(),
        };
        let handle = item::spawn(spec, Some(listener), self.ctx.clone());
        let negotiate_at = auction::negotiate_at(now, ends_at);
        self.negotiations.insert((negotiate_at, id));
        self.items
            .insert(id, Entry::running(handle, Negotiation::Due(negotiate_at)));
        if let Some(account) = self.accounts.get_mut(name) {
            account.open_items += 1;
        }
        if let Some(catalog_id) = catalog_id {
            self.catalog_ids.insert(catalog_id);
        }
        self.ctx.metrics.open_items.inc();
        tracing::info!(item = id, seller = %name, %channel, "item offered");
        Ok((id, channel, ends_at))
    }

    /// Offers the catalog's entries not offered before (`--catalog`), for its seller account
    /// (created, with a key nobody holds, when no account has that name).
    async fn offer_catalog(&mut self) {
        let Some(catalog) = self.ctx.config.catalog.clone() else {
            return;
        };
        if !self.accounts.contains_key(&catalog.seller) {
            let mut key = [0u8; 32];
            rand::fill(&mut key);
            self.create_account(&catalog.seller, PublicKey(key), None);
            tracing::info!(seller = %catalog.seller, "created the catalog's seller account");
        }
        let (mut offered, mut skipped) = (0, 0);
        for entry in catalog.entries {
            if self.catalog_ids.contains(&entry.id) {
                skipped += 1;
                continue;
            }
            let opened = self.open_item(
                &catalog.seller,
                entry.description,
                entry.min,
                entry.duration_secs,
                Some(entry.id.clone()),
            );
            match opened {
                Ok((item, _, _)) => {
                    offered += 1;
                    self.append_records();
                    self.announce_item(item).await;
                }
                Err((reason, message)) => {
                    tracing::error!(entry = %entry.id, %reason, %message, "could not offer a catalog item")
                }
            }
        }
        self.append_records();
        tracing::info!(offered, skipped, "catalog loaded");
    }

    fn bind(&self, port: u16) -> std::io::Result<TcpListener> {
        let std = std::net::TcpListener::bind(SocketAddr::new(self.bind_ip, port))?;
        std.set_nonblocking(true)?;
        TcpListener::from_std(std)
    }

    fn bind_item_port(&mut self) -> std::io::Result<TcpListener> {
        match self.ctx.config.item_ports {
            PortRange::Ephemeral => self.bind(0),
            PortRange::Range(lo, hi) => {
                let span = u32::from(hi - lo) + 1;
                for _ in 0..span {
                    let port = self.next_port.clamp(lo, hi);
                    self.next_port = if port == hi { lo } else { port + 1 };
                    if let Ok(listener) = self.bind(port) {
                        return Ok(listener);
                    }
                }
                Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("every port in {lo}-{hi} is in use"),
                ))
            }
        }
    }

    async fn announce_item(&mut self, item: u64) {
        let Some(entry) = self.items.get(&item) else {
            return;
        };
        let view = entry.view.borrow().clone();
        let to: Vec<String> = self
            .accounts
            .iter()
            .filter(|(_, a)| a.notify.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        for name in to {
            self.announce(&name, 0, |seq, epoch| ServerBody::NewItem {
                seq,
                epoch,
                item: view.clone(),
            })
            .await;
        }
    }

    /// Sends a best-effort announcement to account `name` with its next number; `skip`
    /// numbers are left out first (to show the account a gap: updates it will never get).
    async fn announce(&mut self, name: &str, skip: u64, body: impl FnOnce(u64, u64) -> ServerBody) {
        let epoch = self.epoch;
        let Some(account) = self.accounts.get_mut(name) else {
            return;
        };
        account.seq += 1 + skip;
        let Some(to) = account.notify else { return };
        let datagram = udp::encode(body(account.seq, epoch));
        self.emit(to, datagram).await;
    }

    fn add_subscription(&mut self, name: &str, item: u64) {
        let (Some(account), Some(entry)) = (self.accounts.get_mut(name), self.items.get_mut(&item))
        else {
            return;
        };
        if entry.subscribers.insert(name.to_owned()) {
            account.subscriptions.insert(item);
            if let Some(w) = &entry.watchers {
                w.count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn remove_subscription(&mut self, name: &str, item: u64) -> bool {
        if let Some(account) = self.accounts.get_mut(name) {
            account.subscriptions.remove(&item);
        }
        let Some(entry) = self.items.get_mut(&item) else {
            return false;
        };
        let removed = entry.subscribers.remove(name);
        if removed {
            if let Some(w) = &entry.watchers {
                w.count.fetch_sub(1, Ordering::Relaxed);
            }
        }
        removed
    }

    fn subscribe(&mut self, req: u64, name: &str, item: u64) -> Answer {
        let denied = |reason, message: String| {
            Answer::one(ServerBody::SubscriptionDenied {
                req,
                reason,
                message,
            })
        };
        let Some(account) = self.accounts.get(name) else {
            return denied(Reason::NotRegistered, not_registered(name));
        };
        let id = account.handle.id;
        let count = account.subscriptions.len();
        let Some(entry) = self.items.get(&item) else {
            return denied(Reason::UnknownItem, format!("there is no item {item}"));
        };
        if entry.cmd.is_none() {
            return denied(
                Reason::AuctionOver,
                format!("item {item} is closed; its result is in `status`"),
            );
        }
        let view = entry.view.borrow().clone();
        if !entry.subscribers.contains(name) {
            if count >= MAX_SUBSCRIPTIONS {
                return denied(
                    Reason::TooManySubscriptions,
                    format!("'{name}' already follows {MAX_SUBSCRIPTIONS} items, the most allowed"),
                );
            }
            self.add_subscription(name, item);
            self.records.push(Record::Subscribed { account: id, item });
        }
        Answer::one(ServerBody::Subscribed { req, item: view })
    }

    fn unsubscribe(&mut self, req: u64, name: &str, item: u64) -> Answer {
        let Some(id) = self.accounts.get(name).map(|a| a.handle.id) else {
            return Answer::one(ServerBody::Error {
                req: Some(req),
                reason: Reason::NotRegistered,
                message: not_registered(name),
            });
        };
        if self.remove_subscription(name, item) {
            self.records
                .push(Record::Unsubscribed { account: id, item });
        }
        Answer::one(ServerBody::Unsubscribed { req, item })
    }

    /// A subscribed item's new highest bid, durable: BID-UPDATE to each subscriber.
    async fn on_update(&mut self, update: ItemUpdate) {
        let Some(entry) = self.items.get(&update.item) else {
            return;
        };
        // An update the item could not queue is a gap every subscriber must see.
        let skip = entry
            .watchers
            .as_ref()
            .is_some_and(|w| w.missed.swap(false, Ordering::Relaxed));
        let to: Vec<String> = entry.subscribers.iter().cloned().collect();
        let item = update.item;
        for name in to {
            self.announce(&name, u64::from(skip), |seq, epoch| match &update.change {
                Change::Highest {
                    amount,
                    bidder,
                    ends_at,
                } => ServerBody::BidUpdate {
                    seq,
                    epoch,
                    item,
                    highest: *amount,
                    bidder: bidder.clone(),
                    ends_at: *ends_at,
                },
                Change::Min { min, ends_at } => ServerBody::PriceAdjustment {
                    seq,
                    epoch,
                    item,
                    min: *min,
                    ends_at: *ends_at,
                },
            })
            .await;
        }
    }

    /// Sends NEGOTIATE-REQ to the sellers of items whose negotiation time has come without a
    /// bid (a reliable notice, durable before it is sent).
    async fn ask_negotiations(&mut self) {
        let now = unix_ms();
        while let Some(&(at, item)) = self.negotiations.first() {
            if at > now {
                break;
            }
            self.negotiations.pop_first();
            let Some(entry) = self.items.get_mut(&item) else {
                continue;
            };
            if entry.cmd.is_none() || entry.negotiation != Negotiation::Due(at) {
                continue;
            }
            let view = entry.view.borrow().clone();
            if !auction::negotiation_due(now, at, view.ends_at, view.highest.is_some()) {
                entry.negotiation = Negotiation::Done;
                continue;
            }
            let Some(seller) = self.accounts.get(&view.seller).map(|a| a.handle.id) else {
                entry.negotiation = Negotiation::Done;
                continue;
            };
            entry.negotiation = Negotiation::Asked;
            let id = NoticeKind::NegotiateReq.id(item);
            let notice = NoticeRecord {
                id,
                account: seller,
                item,
                kind: NoticeKind::NegotiateReq.as_str(),
                datagram: udp::encode(ServerBody::NegotiateReq {
                    notice: id,
                    item,
                    description: view.description.clone(),
                    min: view.min,
                    ends_at: view.ends_at,
                    time_left: view.ends_at.saturating_sub(now) / 1000,
                }),
            };
            tracing::info!(item, seller = %view.seller, "no bid by half time: asking the seller to negotiate");
            self.records.push(Record::NegotiationAsked {
                item,
                notice: notice.clone(),
                at: now,
            });
            self.append_records();
            self.say(Outgoing::Notice(notice)).await;
        }
    }

    /// NEGOTIATE: the seller's answer to NEGOTIATE-REQ. An accepted lower minimum is made by
    /// the item task (which owns the minimum and may have just taken a bid).
    async fn negotiate(
        &mut self,
        req: u64,
        name: &str,
        item: u64,
        answer: udp::NegotiateAnswer,
        min: Option<Cents>,
    ) -> Answer {
        let denied = |reason, message: String| {
            Answer::one(ServerBody::NegotiateDenied {
                req,
                reason,
                message,
            })
        };
        let Some(seller) = self.accounts.get(name).map(|a| a.handle.id) else {
            return denied(Reason::NotRegistered, not_registered(name));
        };
        let Some(entry) = self.items.get(&item) else {
            return denied(Reason::UnknownItem, format!("there is no item {item}"));
        };
        if entry.view.borrow().seller != name {
            return denied(
                Reason::NotYourItem,
                format!("item {item} is not '{name}''s to negotiate"),
            );
        }
        let Some(cmd) = entry.cmd.clone() else {
            return denied(Reason::AuctionOver, format!("item {item} has closed"));
        };
        if entry.negotiation != Negotiation::Asked {
            let message = match entry.negotiation {
                Negotiation::Due(_) => format!(
                    "item {item} has not been offered for negotiation: that happens when it has \
                     had no bid by half its time"
                ),
                _ => format!("item {item}'s negotiation has been answered already"),
            };
            return denied(Reason::NotNegotiable, message);
        }
        let result = match (answer, min) {
            (udp::NegotiateAnswer::Refuse, None) => {
                self.records.push(Record::Negotiated {
                    item,
                    min: None,
                    at: unix_ms(),
                });
                Ok(None)
            }
            (udp::NegotiateAnswer::Refuse, Some(_)) => {
                Err((Reason::Malformed, "`refuse` takes no minimum".to_owned()))
            }
            (udp::NegotiateAnswer::Accept, None) => Err((
                Reason::InvalidAmount,
                "`accept` needs the new minimum, `min`".to_owned(),
            )),
            (udp::NegotiateAnswer::Accept, Some(min)) => {
                let (reply, answer) = oneshot::channel();
                // The item appends the change itself; the answer below waits for it.
                let lowered = match cmd.send(ItemCmd::LowerMin { min, reply }).await {
                    Ok(()) => answer.await.ok(),
                    Err(_) => None,
                };
                match lowered {
                    Some(Ok(())) => Ok(Some(min)),
                    Some(Err(refused)) => Err(refused),
                    None => Err((Reason::AuctionOver, format!("item {item} has closed"))),
                }
            }
        };
        match result {
            Ok(min) => {
                if let Some(e) = self.items.get_mut(&item) {
                    e.negotiation = Negotiation::Done;
                }
                // The answer settles the request: no need to deliver it any more.
                self.drop_pending(name, NoticeKind::NegotiateReq.id(item));
                tracing::info!(item, ?min, seller, "negotiation answered");
                Answer::one(ServerBody::Negotiated { req, item, min })
            }
            Err((reason, message)) => denied(reason, message),
        }
    }

    /// Stops delivering notice `notice` to account `name`; whether it was pending.
    fn drop_pending(&mut self, name: &str, notice: u64) -> bool {
        let Some(account) = self.accounts.get_mut(name) else {
            return false;
        };
        let was = account.pending.remove(&notice).is_some();
        if account.pending.is_empty() {
            self.with_pending.remove(name);
        }
        was
    }

    fn ack(&mut self, req: u64, name: &str, notice: u64) -> Answer {
        if !self.accounts.contains_key(name) {
            return Answer::one(ServerBody::Error {
                req: Some(req),
                reason: Reason::NotRegistered,
                message: not_registered(name),
            });
        }
        // Acknowledging a notice that is already gone succeeds: the client wants it gone.
        if self.drop_pending(name, notice) {
            self.records.push(Record::NoticeAcked {
                notice,
                at: unix_ms(),
            });
        }
        Answer::one(ServerBody::Acked { req, notice })
    }

    /// An item closed; its result and notices are durable. Deliver the notices.
    async fn on_closed(&mut self, closed: ItemClosed) {
        if let Some(entry) = self.items.get_mut(&closed.item) {
            entry.cmd = None;
        }
        if let Some(account) = self.accounts.get_mut(&closed.seller.name) {
            account.open_items = account.open_items.saturating_sub(1);
        }
        self.ctx.metrics.open_items.dec();
        // An unanswered negotiation request no longer matters (the close acknowledged it in
        // the database).
        self.drop_pending(
            &closed.seller.name,
            NoticeKind::NegotiateReq.id(closed.item),
        );
        for notice in closed.notices {
            self.queue_notice(notice.account, notice.id, notice.datagram);
        }
        // Subscribers hear the result; their subscriptions end (the close deleted them from
        // the database in the same transaction as the result).
        let subscribers = self
            .items
            .get_mut(&closed.item)
            .map(|e| mem::take(&mut e.subscribers))
            .unwrap_or_default();
        let (winner, price) = closed.result.unzip();
        for name in subscribers {
            if let Some(a) = self.accounts.get_mut(&name) {
                a.subscriptions.remove(&closed.item);
            }
            self.announce(&name, 0, |seq, epoch| ServerBody::ItemClosed {
                seq,
                epoch,
                item: closed.item,
                winner: winner.clone(),
                price,
            })
            .await;
        }
        self.retransmit().await;
    }

    /// Sends every pending notice of `name` now; `fresh` starts a new delivery round.
    async fn send_pending(&mut self, name: &str, fresh: bool) {
        let Some(account) = self.accounts.get_mut(name) else {
            return;
        };
        if fresh {
            for p in account.pending.values_mut() {
                p.tries = 0;
                p.next_at = Instant::now();
            }
        }
        self.retransmit().await;
    }

    /// Sends notices whose time has come, with exponential backoff and jitter, up to
    /// `notice_tries` per delivery round.
    async fn retransmit(&mut self) {
        let now = Instant::now();
        let base = self.ctx.config.notice_retry;
        let max_tries = self.ctx.config.notice_tries;
        let mut due: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        for name in &self.with_pending {
            let Some(account) = self.accounts.get_mut(name) else {
                continue;
            };
            let Some(to) = account.notify else { continue };
            for p in account.pending.values_mut() {
                if p.tries < max_tries && p.next_at <= now {
                    p.tries += 1;
                    let backoff = base.saturating_mul(1 << (p.tries - 1).min(6));
                    let jitter = rand::random_range(0.75..1.25);
                    p.next_at = now + backoff.mul_f64(jitter);
                    due.push((to, p.datagram.clone()));
                }
            }
        }
        for (to, datagram) in due {
            self.send(to, &datagram).await;
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
