//! Negotiation: an item with no bid by half its time is offered to its seller for a lower
//! minimum (NEGOTIATE-REQ), and the seller's answer (NEGOTIATE).

use auction_protocol::udp::ServerBody;
use auction_protocol::{udp, Cents, Reason};

use super::{not_registered, Answer, Outgoing, Registry};
use crate::clock::unix_ms;
use crate::item::ItemCmd;
use crate::rules::auction;
use crate::store::{Negotiation, NoticeKind, NoticeRecord, Record};
use tokio::sync::oneshot;

impl Registry {
    /// Sends NEGOTIATE-REQ to the sellers of items whose negotiation time has come without a
    /// bid (a reliable notice, durable before it is sent).
    pub(super) async fn ask_negotiations(&mut self) {
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
    pub(super) async fn negotiate(
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
                let at = unix_ms();
                self.records.push(Record::Negotiated {
                    item,
                    min: None,
                    at,
                });
                self.records.push(Record::negotiate_req_acked(item, at));
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
}
