//! Accounts: the table of live and recently deregistered accounts (with their replay windows),
//! and the requests that change it: REGISTER, DEREGISTER, ATTACH and DETACH. Owned by the
//! registry task; each change is a record appended with the request's answer.

use auction_protocol::udp::{AttachMode, ServerBody};
use auction_protocol::{names, udp, PublicKey, Reason};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

use super::devices::{Attached, Devices};
use super::gate::Signers;
use super::{not_registered, AfterAnswer, Answer, Denial, Registry};
use crate::accounts::{AccountHandle, AccountId, Budget};
use crate::clock::Now;
use crate::item::ItemCmd;
use crate::rules::ratelimit::Verdict;
use crate::rules::replay::ReplayWindow;
use crate::store::{Record, StoredAccount};

/// Deregistered accounts remembered so a retransmitted DEREGISTER still gets DEREG-CONF.
const TOMBSTONES: usize = 1024;

pub(super) struct Account {
    pub(super) handle: Arc<AccountHandle>,
    pub(super) replay: ReplayWindow,
    /// Where announcements go: the addresses of its latest REGISTER and ATTACHes (each one
    /// that presented a valid cookie), at most `Config::devices`.
    pub(super) devices: Devices,
    pub(super) open_items: usize,
    /// Its offer budget (`Config::offers_per_hour`), counted in this run.
    pub(super) offers: Budget,
    /// Open items it is subscribed to.
    pub(super) subscriptions: BTreeSet<u64>,
}

struct Tombstone {
    id: AccountId,
    key: PublicKey,
    replay: ReplayWindow,
}

/// Live accounts by name and by id, and the most recently deregistered ones.
pub(super) struct Accounts {
    live: HashMap<String, Account>,
    names: HashMap<AccountId, String>,
    /// Live names by `names::name_key` (case folded): names are unique without regard to case.
    folded: HashMap<String, String>,
    tombstones: HashMap<String, Tombstone>,
    /// Oldest first, so the oldest tombstone goes when there are too many.
    tombstone_order: VecDeque<String>,
    next_id: AccountId,
}

impl Accounts {
    pub(super) fn new(next_id: AccountId) -> Accounts {
        Accounts {
            live: HashMap::new(),
            names: HashMap::new(),
            folded: HashMap::new(),
            tombstones: HashMap::new(),
            tombstone_order: VecDeque::new(),
            next_id: next_id.max(1),
        }
    }

    /// The accounts of a snapshot: the live ones (whose handles come back, for the key
    /// directory) and the tombstones of removed ones.
    pub(super) fn restore(
        &mut self,
        stored: Vec<StoredAccount>,
        devices: usize,
        now: std::time::Instant,
    ) -> Vec<Arc<AccountHandle>> {
        let (live, mut removed): (Vec<_>, Vec<_>) = stored.into_iter().partition(|a| !a.removed);
        let mut handles = Vec::with_capacity(live.len());
        for a in live {
            let handle = Arc::new(AccountHandle::new(a.id, a.name.clone(), a.key));
            let replay = ReplayWindow::restore(a.replay_floor, a.replies, now);
            self.insert(handle.clone(), replay, Devices::restore(a.notify, devices));
            handles.push(handle);
        }
        // Oldest first, so the tombstone order evicts the oldest; a name registered again
        // has no tombstone.
        removed.sort_by_key(|a| a.id);
        for a in removed {
            if self.live.contains_key(&a.name) {
                continue;
            }
            let replay = ReplayWindow::restore(a.replay_floor, a.replies, now);
            self.bury(a.name, a.id, a.key, replay);
        }
        handles
    }

    /// A new account with the next id.
    pub(super) fn create(
        &mut self,
        name: &str,
        key: PublicKey,
        notify: Option<SocketAddr>,
    ) -> Arc<AccountHandle> {
        let id = self.next_id;
        self.next_id += 1;
        let handle = Arc::new(AccountHandle::new(id, name.to_owned(), key));
        self.tombstones.remove(name);
        let devices = Devices::restore(notify.into_iter().collect(), 1);
        self.insert(handle.clone(), ReplayWindow::default(), devices);
        handle
    }

    fn insert(&mut self, handle: Arc<AccountHandle>, replay: ReplayWindow, devices: Devices) {
        self.names.insert(handle.id, handle.name.clone());
        self.folded
            .insert(names::name_key(&handle.name), handle.name.clone());
        let account = Account {
            handle,
            replay,
            devices,
            open_items: 0,
            offers: Budget::default(),
            subscriptions: BTreeSet::new(),
        };
        self.live.insert(account.handle.name.clone(), account);
    }

    /// Removes a live account, keeping its replay window in a tombstone.
    pub(super) fn remove(&mut self, name: &str) -> Option<Account> {
        let mut account = self.live.remove(name)?;
        self.names.remove(&account.handle.id);
        if self.same_name(name) == Some(name) {
            self.folded.remove(&names::name_key(name));
        }
        let replay = std::mem::take(&mut account.replay);
        let (id, key) = (account.handle.id, account.handle.key);
        self.bury(name.to_owned(), id, key, replay);
        Some(account)
    }

    fn bury(&mut self, name: String, id: AccountId, key: PublicKey, replay: ReplayWindow) {
        self.tombstones
            .insert(name.clone(), Tombstone { id, key, replay });
        self.tombstone_order.push_back(name);
        while self.tombstone_order.len() > TOMBSTONES {
            if let Some(old) = self.tombstone_order.pop_front() {
                self.tombstones.remove(&old);
            }
        }
    }

    pub(super) fn get(&self, name: &str) -> Option<&Account> {
        self.live.get(name)
    }

    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut Account> {
        self.live.get_mut(name)
    }

    /// The live account whose name is `name` without regard to case, if any.
    pub(super) fn same_name(&self, name: &str) -> Option<&str> {
        self.folded.get(&names::name_key(name)).map(String::as_str)
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        self.live.contains_key(name)
    }

    pub(super) fn by_id(&self, id: AccountId) -> Option<&Account> {
        self.names.get(&id).and_then(|name| self.live.get(name))
    }

    /// The replay window of account `name` if `key` is its key (live or deregistered).
    pub(super) fn window_of(
        &mut self,
        name: &str,
        key: &PublicKey,
    ) -> Option<(AccountId, &mut ReplayWindow)> {
        match (self.live.get_mut(name), self.tombstones.get_mut(name)) {
            (Some(a), _) if a.handle.key == *key => Some((a.handle.id, &mut a.replay)),
            (None, Some(t)) if t.key == *key => Some((t.id, &mut t.replay)),
            _ => None,
        }
    }
}

impl Signers for Accounts {
    fn key(&self, name: &str) -> Option<PublicKey> {
        match (self.live.get(name), self.tombstones.get(name)) {
            (Some(a), _) => Some(a.handle.key),
            (None, Some(t)) => Some(t.key),
            (None, None) => None,
        }
    }

    fn window(&mut self, name: &str, key: &PublicKey) -> Option<&mut ReplayWindow> {
        self.window_of(name, key).map(|(_, w)| w)
    }
}

impl Registry {
    pub(super) fn register(
        &mut self,
        req: u64,
        name: String,
        key: PublicKey,
        src: SocketAddr,
        now: Now,
    ) -> Answer {
        let denied = |reason, message| Denial::Register.answer(req, reason, message);
        if !names::valid_name(&name) {
            return denied(
                Reason::InvalidName,
                "a name is 1 to 32 characters of A-Z a-z 0-9 _ . -".into(),
            );
        }
        if let Some(existing) = self.accounts.get_mut(&name) {
            if existing.handle.key == key {
                // Registering again with the same key succeeds and makes the sender a device,
                // as a login does.
                let id = existing.handle.id;
                let evicted = self.add_device(&name, src).into_iter().collect();
                self.notices.unpark(id, now.instant);
                return Answer {
                    datagrams: vec![udp::encode(ServerBody::Registered { req, name })],
                    after: AfterAnswer::Attached {
                        account: id,
                        evicted,
                        pending: false,
                    },
                };
            }
            return denied(Reason::NameTaken, format!("the name '{name}' is taken"));
        }
        if let Some(taken) = self.accounts.same_name(&name) {
            let message = format!("the name '{name}' is taken (as '{taken}'; case does not count)");
            return denied(Reason::NameTaken, message);
        }
        if let Some(owner) = self.ctx.keys.lookup(&key) {
            return denied(
                Reason::KeyTaken,
                format!("this key is already registered as '{}'", owner.name),
            );
        }
        if let Verdict::Limited { .. } = self.new_accounts.check(src.ip(), now.instant.into_std()) {
            let per_hour = self.ctx.config.accounts_per_hour;
            self.ctx.metrics.request_refused("too-many-accounts");
            return denied(
                Reason::TooManyAccounts,
                format!("this address has created {per_hour} accounts within the hour, the most the server allows; try again later"),
            );
        }
        self.create_account(&name, key, Some(src), now);
        self.ctx.metrics.registrations.inc();
        tracing::info!(%name, key = %key.fingerprint(), "registered");
        Answer::one(ServerBody::Registered { req, name })
    }

    /// A new account (its record is part of the current request's group).
    pub(super) fn create_account(
        &mut self,
        name: &str,
        key: PublicKey,
        notify: Option<SocketAddr>,
        now: Now,
    ) {
        let handle = self.accounts.create(name, key, notify);
        self.announcements.add(handle.id);
        self.records.push(Record::AccountCreated {
            id: handle.id,
            name: name.to_owned(),
            key,
            notify,
            at: now.ms,
        });
        self.ctx.keys.insert(handle);
    }

    pub(super) async fn deregister(&mut self, req: u64, name: &str, now: Now) -> Answer {
        let denied = |reason, message| Denial::Deregister.answer(req, reason, message);
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
            at: now.ms,
        });
        self.ctx.keys.remove(&handle.key);
        // Its devices are told, so a `watch` ends at once rather than at its next refresh.
        let mut told = Vec::new();
        if let Some(account) = self.accounts.remove(name) {
            for item in account.subscriptions {
                if let Some(entry) = self.items.get_mut(&item) {
                    entry.unsubscribe(name);
                }
            }
            let gone = udp::encode(ServerBody::Evicted {
                account: name.to_owned(),
                reason: Reason::NotRegistered,
                message: format!("the account '{name}' was deregistered"),
            });
            told = (account.devices.addrs().iter())
                .map(|&to| (to, gone.clone()))
                .collect();
        }
        self.notices.forget(handle.id);
        self.announcements.remove(handle.id);
        // Its open channels close now rather than refuse its bids one by one (on every node,
        // when the items run on several).
        if let Some(link) = &self.ctx.cluster {
            link.account_gone(handle.id).await;
        }
        for entry in self.items.values() {
            if let Some(cmd) = &entry.cmd {
                let _ = cmd.send(ItemCmd::AccountGone { account: handle.id }).await;
            }
        }
        tracing::info!(%name, "deregistered");
        Answer {
            datagrams: vec![udp::encode(ServerBody::DeregConf { req })],
            after: AfterAnswer::Attached {
                account: handle.id,
                evicted: told,
                pending: false,
            },
        }
    }

    /// The first open item `account` leads, asking each item task (an item resumed at start
    /// and not started yet, which has taken no bid, answers from what it was resumed with:
    /// asking it would wait for a task that is not running).
    pub(super) async fn leads_any(&self, account: AccountId) -> Option<u64> {
        if let Some(link) = &self.ctx.cluster {
            return link.leads(account).await;
        }
        let mut asks = Vec::new();
        for (&item, entry) in &self.items {
            if let Some(pending) = self.pending.get(&item) {
                if pending.is_open() && pending.leader() == Some(account) {
                    return Some(item);
                }
                continue;
            }
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

    /// ATTACH: makes `src` one of the account's devices (see `AttachMode`), and restarts
    /// delivery of its pending notices.
    pub(super) fn attach(
        &mut self,
        req: u64,
        account: String,
        mode: AttachMode,
        src: SocketAddr,
    ) -> Answer {
        let Some(a) = self.accounts.get_mut(&account) else {
            return Denial::Error.answer(req, Reason::NotRegistered, not_registered(&account));
        };
        let id = a.handle.id;
        let pending = self.notices.count(id) as u32;
        // Where its announcement numbers stand: a client starting now knows what it misses
        // from here on (PROTOCOL.md, "Announcement numbers").
        let (seq, epoch) = (self.announcements.seq(id), self.epoch);
        let joins = match mode {
            AttachMode::Login => true,
            // A list emptied by DETACH (or an account registered without one): nothing to
            // take a place from.
            AttachMode::Keep if a.devices.is_empty() => true,
            AttachMode::Keep if a.devices.contains(src) => {
                // Still there: it stays the last to be evicted. Stored only when that changes
                // the order (a lone device refreshing every few seconds writes nothing).
                if a.devices.addrs().last() != Some(&src) {
                    a.devices.refresh(src);
                    self.records.push(Record::AccountAttached {
                        id,
                        notify: a.devices.addrs().to_vec(),
                    });
                }
                false
            }
            AttachMode::Keep => {
                return Answer::one(ServerBody::Error {
                    req: Some(req),
                    reason: Reason::Moved,
                    message: format!(
                        "this device no longer gets the announcements of '{account}': newer ones took its place (the server keeps {} per account)",
                        self.ctx.config.devices
                    ),
                })
            }
            // A machine that gets them already (another client on it, say a `watch`) changes
            // nothing; another machine becomes a device too.
            AttachMode::Roam => !a.devices.on_ip(src.ip()),
        };
        let (moved, evicted) = if joins {
            let moved = !a.devices.contains(src);
            if moved && mode == AttachMode::Roam {
                tracing::info!(%account, device = %src, "logged in from another machine");
            }
            (moved, self.add_device(&account, src).into_iter().collect())
        } else {
            (false, Vec::new())
        };
        let devices = self.accounts.get(&account).map_or(0, |a| a.devices.len()) as u32;
        Answer {
            datagrams: vec![udp::encode(ServerBody::Attached {
                req,
                pending,
                moved,
                devices,
                seq,
                epoch,
            })],
            after: AfterAnswer::Attached {
                account: id,
                evicted,
                // Every accepted `keep` retries the pending notices; a `roam` that changed
                // nothing starts no new delivery round.
                pending: joins || mode == AttachMode::Keep,
            },
        }
    }

    /// Makes `src` the newest device of `account` and records the list; the address it
    /// evicted, if any, with the message to tell it (sent once the list is durable).
    fn add_device(&mut self, account: &str, src: SocketAddr) -> Option<(SocketAddr, Vec<u8>)> {
        let cap = self.ctx.config.devices;
        let a = self.accounts.get_mut(account)?;
        let attached = a.devices.attach(src, cap);
        self.records.push(Record::AccountAttached {
            id: a.handle.id,
            notify: a.devices.addrs().to_vec(),
        });
        let Attached::New {
            evicted: Some(evicted),
        } = attached
        else {
            return None;
        };
        tracing::info!(%account, %evicted, device = %src, "evicted the least recent device");
        let message = format!(
            "this device no longer gets the announcements of '{account}': a newer one took its place (the server keeps {cap} per account)"
        );
        let told = ServerBody::Evicted {
            account: account.to_owned(),
            reason: Reason::Moved,
            message,
        };
        Some((evicted, udp::encode(told)))
    }

    /// DETACH: `src` no longer gets the account's announcements.
    pub(super) fn detach(&mut self, req: u64, account: &str, src: SocketAddr) -> Answer {
        let Some(a) = self.accounts.get_mut(account) else {
            return Denial::Error.answer(req, Reason::NotRegistered, not_registered(account));
        };
        if a.devices.detach(src) {
            self.records.push(Record::AccountAttached {
                id: a.handle.id,
                notify: a.devices.addrs().to_vec(),
            });
        }
        Answer::one(ServerBody::Detached { req })
    }
}
