//! The catalogue of items: OFFER, the house catalog (`--catalog`), item ports, and what the
//! registry learns when an item closes.

use auction_protocol::udp::ServerBody;
use auction_protocol::{udp, Cents, ItemView, PublicKey, Reason};
use std::mem;
use std::net::SocketAddr;

use super::announce_queue::Body;
use super::inbox::ItemClosed;
use super::{not_registered, AfterAnswer, Answer, Denial, Entry, Registry};
use crate::clock::Now;
use crate::item;
use crate::item::ItemSpec;
use crate::rules::auction::Terms;
use crate::rules::refusal::Refusal;
use crate::rules::{auction, offer, ratelimit};
use crate::store::{Negotiation, NoticeKind, Record};
use tokio::net::TcpListener;

/// `history` answers read from the database at once, server-wide.
pub(super) const MAX_HISTORY_READS: usize = 4;
/// `history` requests one source may make a second, and at once.
pub(super) const HISTORY_RATE: f64 = 2.0;
pub(super) const HISTORY_BURST: f64 = 10.0;

impl Registry {
    // The offer's fields, one each, as the request carries them.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn offer(
        &mut self,
        req: u64,
        name: &str,
        description: String,
        min: Cents,
        terms: Terms,
        duration: Option<u64>,
        now: Now,
    ) -> Answer {
        let denied = |reason, message| Denial::Offer.answer(req, reason, message);
        let Some(account) = self.accounts.get(name) else {
            return denied(Reason::NotRegistered, not_registered(name));
        };
        let duration = match offer::check(&description, min, duration, terms) {
            Ok(duration) => duration,
            Err(refused) => return denied(refused.reason, refused.message),
        };
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
        if self.open_items >= self.ctx.config.max_items {
            let limit = self.ctx.config.max_items;
            self.ctx.metrics.request_refused("server-busy");
            return denied(
                Reason::ServerBusy,
                format!("the server has {limit} items open, the most it takes at once; offer again when some have closed"),
            );
        }
        let per_hour = self.ctx.config.offers_per_hour;
        let spent = house
            || self.accounts.get_mut(name).is_some_and(|account| {
                let rate = f64::from(per_hour) / 3600.0;
                let now = now.instant.into_std();
                ratelimit::take(&mut account.offers, rate, f64::from(per_hour), now)
            });
        if !spent {
            self.ctx.metrics.request_refused("offers-per-hour");
            return denied(
                Reason::RateLimited,
                format!("'{name}' has offered {per_hour} items within the hour, the most one account may; offer again later"),
            );
        }
        match self.open_item(name, description, min, terms, duration, None, now) {
            Ok((item, channel, ends_at)) => Answer {
                datagrams: vec![udp::encode(ServerBody::OfferConf {
                    req,
                    item,
                    channel,
                    ends_at,
                })],
                after: if self.ctx.cluster.is_some() {
                    AfterAnswer::AwaitChannel(item)
                } else {
                    AfterAnswer::AnnounceItem(item)
                },
            },
            Err(Refusal { reason, message }) => denied(reason, message),
        }
    }

    /// Starts the auction of a new item (checked already) for the account `name`: its
    /// listener, its task and its record. Returns the item number, channel and end.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn open_item(
        &mut self,
        name: &str,
        description: String,
        min: Cents,
        terms: Terms,
        duration: u64,
        catalog_id: Option<String>,
        now: Now,
    ) -> Result<(u64, String, u64), Refusal> {
        let Some(account) = self.accounts.get(name) else {
            return Err(Refusal::new(Reason::NotRegistered, not_registered(name)));
        };
        let seller = account.handle.clone();
        if let Some(link) = self.ctx.cluster.clone() {
            return Ok(self.give_item(
                &link,
                seller,
                description,
                min,
                terms,
                duration,
                catalog_id,
                now,
            ));
        }
        let listener = match self.bind_item_port() {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "no port for a new item channel");
                return Err(Refusal::new(
                    Reason::NoChannelPort,
                    "no free port for the item's channel".into(),
                ));
            }
        };
        let port = match listener.local_addr() {
            Ok(addr) => addr.port(),
            Err(e) => return Err(Refusal::new(Reason::NoChannelPort, e.to_string())),
        };
        let channel = SocketAddr::new(self.advertise, port).to_string();
        let id = self.next_item;
        let ends_at = now.ms + duration * 1000;
        let negotiate_at = auction::negotiate_at(now.ms, ends_at);
        self.records.push(Record::ItemOffered {
            item: id,
            seller: seller.id,
            description: description.clone(),
            min,
            ends_at,
            port,
            at: now.ms,
            catalog_id: catalog_id.clone(),
            negotiate_at,
            terms,
        });
        self.next_item += 1;
        let spec = ItemSpec {
            id,
            description,
            seller,
            min,
            terms,
            offered_at: now.ms,
            ends_at,
            channel: Some(channel.clone()),
            lead: None,
            bid_ids: Vec::new(),
            shown: None,
            grouped: self
                .lots
                .as_ref()
                .is_some_and(|l| l.has(catalog_id.as_deref())),
        };
        let handle = item::spawn(spec, Some(listener), self.ctx.clone());
        let entry = Entry::running(handle, Negotiation::Due(negotiate_at));
        self.opened(id, entry, negotiate_at, name, catalog_id);
        tracing::info!(item = id, seller = %name, %channel, "item offered");
        Ok((id, channel, ends_at))
    }

    /// Several nodes: records a new item (checked already) and gives it to the least loaded
    /// live node, which opens its channel (the answer waits for that: `gate.rs`); the registry
    /// follows it. Returns the item number, no channel yet, and the end.
    #[allow(clippy::too_many_arguments)]
    fn give_item(
        &mut self,
        link: &std::sync::Arc<crate::cluster::link::Link>,
        seller: std::sync::Arc<crate::accounts::AccountHandle>,
        description: String,
        min: Cents,
        terms: Terms,
        duration: u64,
        catalog_id: Option<String>,
        now: Now,
    ) -> (u64, String, u64) {
        let id = self.next_item;
        self.next_item += 1;
        let ends_at = now.ms + duration * 1000;
        let negotiate_at = auction::negotiate_at(now.ms, ends_at);
        let (node, epoch) = link.assign();
        self.records.push(Record::ItemOffered {
            item: id,
            seller: seller.id,
            description: description.clone(),
            min,
            ends_at,
            port: 0,
            at: now.ms,
            catalog_id: catalog_id.clone(),
            negotiate_at,
            terms,
        });
        self.records.push(Record::ItemAssigned {
            item: id,
            node: node.clone(),
            epoch,
        });
        let view = ItemView {
            item: id,
            description,
            seller: seller.name.clone(),
            min,
            highest: None,
            bidder: None,
            ends_at,
            state: auction_protocol::ItemState::Open,
            channel: None,
            winner: None,
            price: None,
            settle_port: None,
            reserve_met: terms.reserve_met(None),
            buy_now: terms.buy_now(None),
            cancelled: false,
        };
        let entry = Entry::mirrored(view, link, Negotiation::Due(negotiate_at));
        self.opened(id, entry, negotiate_at, &seller.name, catalog_id);
        tracing::info!(item = id, seller = %seller.name, %node, "item offered");
        (id, String::new(), ends_at)
    }

    /// Counts a new item open, in the catalogue as `entry`: its negotiation due, its seller's
    /// and the server's open items, its `--catalog` entry taken.
    fn opened(
        &mut self,
        id: u64,
        entry: Entry,
        negotiate_at: u64,
        seller: &str,
        catalog_id: Option<String>,
    ) {
        self.negotiations.insert((negotiate_at, id));
        self.items.insert(id, entry);
        if let Some(account) = self.accounts.get_mut(seller) {
            account.open_items += 1;
        }
        if let Some(lots) = &mut self.lots {
            lots.add(catalog_id.as_deref(), id);
        }
        if let Some(catalog_id) = catalog_id {
            self.catalog_ids.insert(catalog_id);
        }
        self.ctx.metrics.open_items.inc();
        self.open_items += 1;
    }

    /// Offers the catalog's entries not offered before (`--catalog`), for its seller account
    /// (created, with a key nobody holds, when no account has that name).
    pub(super) async fn offer_catalog(&mut self, now: Now) {
        let Some(catalog) = self.ctx.config.catalog.clone() else {
            return;
        };
        if !self.accounts.contains(&catalog.seller) {
            let mut key = [0u8; 32];
            rand::fill(&mut key);
            self.create_account(&catalog.seller, PublicKey(key), None, now);
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
                entry.terms,
                entry.duration_secs,
                Some(entry.id.clone()),
                now,
            );
            match opened {
                Ok((item, _, _)) => {
                    offered += 1;
                    self.append_records();
                    if self.ctx.cluster.is_some() {
                        self.channel_of_new(item).await;
                    }
                    self.announce_item(item);
                    self.transmit().await;
                }
                Err(Refusal { reason, message }) => {
                    tracing::error!(entry = %entry.id, %reason, %message, "could not offer a catalog item")
                }
            }
        }
        self.append_records();
        tracing::info!(offered, skipped, "catalog loaded");
    }

    /// A listener for a new item, or a resumed one whose port is taken. (The ports of the
    /// items resumed at start are bound before anything else is offered: none is given away.)
    pub(super) fn bind_item_port(&mut self) -> std::io::Result<TcpListener> {
        let range = self.ctx.config.item_ports;
        crate::net::listener::bind_item_port(self.bind_ip, range, &mut self.next_port)
    }

    /// An item closed; its result and notices are durable. Deliver the notices.
    pub(super) fn on_closed(&mut self, closed: ItemClosed, now: Now) {
        if let Some(entry) = self.items.get_mut(&closed.item) {
            entry.cmd = None;
        }
        self.forget_alerts(closed.item);
        if let Some(account) = self.accounts.get_mut(&closed.seller.name) {
            account.open_items = account.open_items.saturating_sub(1);
        }
        self.ctx.metrics.open_items.dec();
        self.open_items = self.open_items.saturating_sub(1);
        // An unanswered negotiation request no longer matters (the close acknowledged it in
        // the database).
        self.drop_pending(
            &closed.seller.name,
            NoticeKind::NegotiateReq.id(closed.item),
        );
        for notice in closed.notices {
            self.queue_notice(notice.account, notice.id, notice.datagram, now);
        }
        // Subscribers hear the result; their subscriptions end (the close deleted them from
        // the database in the same transaction as the result).
        let item = closed.item;
        let (winner, price) = closed.result.unzip();
        self.announce_to_subscribers(
            item,
            0,
            Body::ItemClosed {
                item,
                winner,
                price,
            },
        );
        let subscribers = self
            .items
            .get_mut(&item)
            .map(|e| mem::take(&mut e.subscribers))
            .unwrap_or_default();
        for name in subscribers {
            if let Some(a) = self.accounts.get_mut(&name) {
                a.subscriptions.remove(&item);
            }
        }
        self.retransmit(now);
    }

    /// LIST: the open items.
    pub(super) fn list(&self, req: u64) -> Answer {
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

    /// HISTORY: the item's latest accepted bids, read from the database (committed rows
    /// only, so nothing not yet durable) by a task of its own, which sends the parts itself;
    /// the registry goes on meanwhile. Each costs a database read and anyone with a cookie
    /// may ask, so one source gets [`HISTORY_RATE`] a second (bursts of
    /// [`HISTORY_BURST`]; past it `rate-limited`), and at most [`MAX_HISTORY_READS`] are
    /// read at once, server-wide (one more is refused `server-busy`).
    pub(super) fn history(&mut self, req: u64, item: u64, src: SocketAddr, now: Now) -> Answer {
        let refuse = |reason, message| Denial::Error.answer(req, reason, message);
        if !self.items.contains_key(&item) {
            return refuse(Reason::UnknownItem, format!("there is no item {item}"));
        }
        let verdict = self.history_sources.check(src.ip(), now.instant.into_std());
        if let ratelimit::Verdict::Limited { .. } = verdict {
            self.ctx.metrics.request_refused("history-rate");
            return refuse(
                Reason::RateLimited,
                format!("at most {HISTORY_RATE} bid histories a second from one address; ask again in a moment"),
            );
        }
        let Ok(permit) = self.history_reads.clone().try_acquire_owned() else {
            self.ctx.metrics.request_refused("history-busy");
            return refuse(
                Reason::ServerBusy,
                "the server is reading as many bid histories as it takes at once; ask again in a moment".into(),
            );
        };
        let (storage, socket) = (self.ctx.storage.clone(), self.socket.clone());
        self.ctx.tasks.spawn(async move {
            let read = tokio::task::spawn_blocking(move || {
                storage.latest_bids(item, auction_protocol::limits::HISTORY_BIDS)
            })
            .await;
            drop(permit);
            let datagrams = match read {
                Ok(Ok(history)) => udp::pack_history(
                    req,
                    item,
                    history.more,
                    &history.bids,
                    history.cancelled.as_ref(),
                ),
                failed => {
                    let error = match failed {
                        Ok(Err(e)) => format!("{e:#}"),
                        _ => "the read stopped".to_owned(),
                    };
                    tracing::warn!(item, %error, "could not read an item's bids for history");
                    vec![udp::encode(ServerBody::Error {
                        req: Some(req),
                        reason: Reason::Unavailable,
                        message: "the item's bids could not be read; ask again".into(),
                    })]
                }
            };
            for datagram in datagrams {
                if let Err(e) = socket.send_to(&datagram, src).await {
                    tracing::debug!(%src, error = %e, "UDP send failed");
                }
            }
        });
        Answer {
            datagrams: Vec::new(),
            after: AfterAnswer::Nothing,
        }
    }

    /// STATUS: one item, open or closed.
    pub(super) fn status(&self, req: u64, item: u64) -> Answer {
        match self.items.get(&item) {
            Some(entry) => Answer::one(ServerBody::Status {
                req,
                item: entry.view.borrow().clone(),
            }),
            None => {
                Denial::Error.answer(req, Reason::UnknownItem, format!("there is no item {item}"))
            }
        }
    }
}
