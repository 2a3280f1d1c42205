//! Accounts: the table of live and recently deregistered accounts (with their replay windows),
//! and the requests that change it: REGISTER, DEREGISTER and ATTACH. Owned by the registry
//! task; each change is a record appended with the request's answer.

use auction_protocol::udp::{AttachMode, ServerBody};
use auction_protocol::{names, udp, PublicKey, Reason};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

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
    /// Where announcements go: the address of the latest REGISTER or ATTACH (always one that
    /// presented a valid cookie).
    pub(super) notify: Option<SocketAddr>,
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
        now: std::time::Instant,
    ) -> Vec<Arc<AccountHandle>> {
        let (live, mut removed): (Vec<_>, Vec<_>) = stored.into_iter().partition(|a| !a.removed);
        let mut handles = Vec::with_capacity(live.len());
        for a in live {
            let handle = Arc::new(AccountHandle::new(a.id, a.name.clone(), a.key));
            let replay = ReplayWindow::restore(a.replay_floor, a.replies, now);
            self.insert(handle.clone(), replay, a.notify);
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
        self.insert(handle.clone(), ReplayWindow::default(), notify);
        handle
    }

    fn insert(
        &mut self,
        handle: Arc<AccountHandle>,
        replay: ReplayWindow,
        notify: Option<SocketAddr>,
    ) {
        self.names.insert(handle.id, handle.name.clone());
        self.folded
            .insert(names::name_key(&handle.name), handle.name.clone());
        let account = Account {
            handle,
            replay,
            notify,
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
                // Registering again with the same key succeeds and moves the announcements.
                existing.notify = Some(src);
                let id = existing.handle.id;
                self.records
                    .push(Record::AccountAttached { id, notify: src });
                self.notices.unpark(id, now.instant);
                return Answer::one(ServerBody::Registered { req, name });
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
        if let Some(account) = self.accounts.remove(name) {
            for item in account.subscriptions {
                if let Some(entry) = self.items.get_mut(&item) {
                    entry.unsubscribe(name);
                }
            }
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
        Answer::one(ServerBody::DeregConf { req })
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

    /// ATTACH: moves the account's announcements to `src` (see `AttachMode`), and restarts
    /// delivery of its pending notices there.
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
        // Announcements go to another machine now (by IP).
        let elsewhere = a.notify.is_some_and(|n| n.ip() != src.ip());
        let pending = self.notices.count(a.handle.id) as u32;
        // Where its announcement numbers stand: a client starting now knows what it misses
        // from here on (PROTOCOL.md, "Announcement numbers").
        let (seq, epoch) = (self.announcements.seq(a.handle.id), self.epoch);
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
                seq,
                epoch,
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
                seq,
                epoch,
            })],
            after: AfterAnswer::SendPending(a.handle.id),
        }
    }
}
