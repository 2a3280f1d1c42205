//! What the desk does with a request from a party (open, inform, second chance, answer an
//! offer) and with a deadline that passes: the rules are in `rules/settlement.rs`; here each
//! change is stored whole with the notices it sends, and answered once durable.

use auction_protocol::settle::{Role, SettleBody, SettleRequest, SettleRequestBody};
use auction_protocol::udp::{self, ServerBody};
use auction_protocol::{Cents, Reason};

use super::cmd::DeskCmd;
use super::Desk;
use crate::rules::refusal::Refusal;
use crate::rules::settlement::{Lapsed, Party, Settlement};
use crate::store::{NoticeRecord, Record};

impl Desk {
    pub(super) fn request(&mut self, conn: u64, request: SettleRequest) {
        let Some(account) = self.conns.get(&conn).map(|c| c.account.clone()) else {
            return;
        };
        let (req, item) = (request.req, request.body.item());
        let Some(s) = self.settlements.get_mut(&item) else {
            let message = format!(
                "item {item} has no sale to settle: it is unknown, still open, or closed without a bid"
            );
            return self.refuse(conn, req, Refusal::new(Reason::UnknownItem, message));
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
                let now = self.now;
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
    pub(super) fn second_chance(
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
                return self.refuse(conn, req, Refusal::new(Reason::Unavailable, message));
            }
        };
        let Some(s) = self.settlements.get_mut(&item) else {
            return;
        };
        let now = self.now;
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
    pub(super) fn expire(&mut self) {
        let now = self.now;
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
    pub(super) fn notice(
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
    pub(super) fn store(&mut self, item: u64, notices: Vec<NoticeRecord>) {
        let Some(s) = self.settlements.get(&item) else {
            return;
        };
        self.ctx.storage.append(vec![Record::Settlement {
            settlement: s.clone(),
            notices: notices.clone(),
            at: self.now,
        }]);
        for n in notices {
            let _ = self.notices.send(n);
        }
    }
}
