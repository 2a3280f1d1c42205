//! Negotiation: an item with no bid by half its time is offered to its seller for a lower
//! minimum (NEGOTIATE-REQ), and the seller's answer (NEGOTIATE).

use auction_protocol::udp::ServerBody;
use auction_protocol::{udp, Cents, ItemView, Reason};

use super::{not_registered, Answer, Denial, Registry};
use crate::accounts::AccountId;
use crate::clock::Now;
use crate::item::ItemCmd;
use crate::rules::auction;
use crate::rules::refusal::Refusal;
use crate::store::{Negotiation, NoticeKind, NoticeRecord, Record};
use tokio::sync::oneshot;

/// What to do about an item whose negotiation time `at` has come, at `now_ms`.
#[derive(Debug, PartialEq)]
pub(super) enum Due {
    /// Nothing: the item closed, or its negotiation was rescheduled or answered.
    Skip,
    /// Not to be asked any more: it had a bid in time, or its seller is gone.
    Done,
    /// Ask the seller with this notice.
    Ask(NoticeRecord),
}

/// Decides one due negotiation: an open item still `Due(at)` with no bid is offered to its
/// seller (`seller`, if the account still exists) for a lower minimum. Pure: the registry
/// reads the clock and the item's view.
pub(super) fn due(
    now_ms: u64,
    at: u64,
    state: Negotiation,
    open: bool,
    view: &ItemView,
    seller: Option<AccountId>,
) -> Due {
    if !open || state != Negotiation::Due(at) || now_ms < at {
        return Due::Skip;
    }
    if !auction::negotiation_due(now_ms, at, view.ends_at, view.highest.is_some()) {
        return Due::Done;
    }
    let Some(seller) = seller else {
        return Due::Done;
    };
    let item = view.item;
    let id = NoticeKind::NegotiateReq.id(item);
    Due::Ask(NoticeRecord {
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
            time_left: view.ends_at.saturating_sub(now_ms) / 1000,
        }),
    })
}

impl Registry {
    /// Sends NEGOTIATE-REQ to the sellers of items whose negotiation time has come without a
    /// bid (a reliable notice, durable before it is sent).
    pub(super) fn ask_negotiations(&mut self, now: Now) {
        while let Some(&(at, item)) = self.negotiations.first() {
            if at > now.ms {
                break;
            }
            self.negotiations.pop_first();
            let Some(entry) = self.items.get_mut(&item) else {
                continue;
            };
            let view = entry.view.borrow().clone();
            let seller = self.accounts.get(&view.seller).map(|a| a.handle.id);
            let open = entry.cmd.is_some();
            let notice = match due(now.ms, at, entry.negotiation, open, &view, seller) {
                Due::Skip => continue,
                Due::Done => {
                    entry.negotiation = Negotiation::Done;
                    continue;
                }
                Due::Ask(notice) => notice,
            };
            entry.negotiation = Negotiation::Asked;
            tracing::info!(item, seller = %view.seller, "no bid by half time: asking the seller to negotiate");
            self.records.push(Record::NegotiationAsked {
                item,
                notice: notice.clone(),
                at: now.ms,
            });
            self.append_records();
            self.say_notice(notice, now);
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
        now: Now,
    ) -> Answer {
        let denied = |reason, message| Denial::Negotiate.answer(req, reason, message);
        let Some(seller) = self.accounts.get(name).map(|a| a.handle.id) else {
            return denied(Reason::NotRegistered, not_registered(name));
        };
        // The item must be running to answer (right after a restart it may not be yet); one
        // whose end passed while the server was down is over.
        match self.pending.get(&item) {
            Some(p) if !p.is_open() => {
                return denied(Reason::AuctionOver, format!("item {item} has closed"))
            }
            Some(_) => self.start_pending(&[item]),
            None => {}
        }
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
                    at: now.ms,
                });
                // The answer settles the NEGOTIATE-REQ notice.
                self.records.push(Record::negotiate_req_acked(item, now.ms));
                Ok(None)
            }
            (udp::NegotiateAnswer::Refuse, Some(_)) => Err(Refusal::new(
                Reason::Malformed,
                "`refuse` takes no minimum".to_owned(),
            )),
            (udp::NegotiateAnswer::Accept, None) => Err(Refusal::new(
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
                    None => Err(Refusal::new(
                        Reason::AuctionOver,
                        format!("item {item} has closed"),
                    )),
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
            Err(Refusal { reason, message }) => denied(reason, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auction_protocol::ItemState;

    const OFFERED: u64 = 1_800_000_000_000;
    const ENDS: u64 = OFFERED + 600_000;
    const SELLER: AccountId = 4;

    fn view(highest: Option<Cents>) -> ItemView {
        ItemView {
            item: 12,
            description: "Lamp".into(),
            seller: "alice".into(),
            min: Cents(1250),
            highest,
            bidder: highest.map(|_| "bob".into()),
            ends_at: ENDS,
            state: ItemState::Open,
            channel: None,
            winner: None,
            price: None,
            settle_port: None,
            reserve_met: None,
            buy_now: None,
            cancelled: false,
        }
    }

    #[test]
    fn an_item_without_a_bid_is_offered_for_negotiation_at_half_time() {
        let at = auction::negotiate_at(OFFERED, ENDS);
        assert_eq!(at, OFFERED + 300_000, "half of its ten minutes");
        let state = Negotiation::Due(at);
        let Due::Ask(notice) = due(at, at, state, true, &view(None), Some(SELLER)) else {
            panic!("asked at half time");
        };
        assert_eq!((notice.account, notice.item), (SELLER, 12));
        assert_eq!(notice.id, NoticeKind::NegotiateReq.id(12));
        match udp::decode_server(&notice.datagram).unwrap().body {
            ServerBody::NegotiateReq { time_left, min, .. } => {
                assert_eq!((time_left, min), (300, Cents(1250)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bid_a_gone_seller_a_close_or_a_newer_schedule_means_no_request() {
        let at = auction::negotiate_at(OFFERED, ENDS);
        let state = Negotiation::Due(at);
        assert_eq!(
            due(at, at, state, true, &view(Some(Cents(1300))), Some(SELLER)),
            Due::Done
        );
        assert_eq!(due(at, at, state, true, &view(None), None), Due::Done);
        assert_eq!(
            due(at, at, state, false, &view(None), Some(SELLER)),
            Due::Skip
        );
        assert_eq!(
            due(at, at, Negotiation::Asked, true, &view(None), Some(SELLER)),
            Due::Skip
        );
        // Not before its time, whatever the caller does.
        assert_eq!(
            due(at - 1, at, state, true, &view(None), Some(SELLER)),
            Due::Skip
        );
        let rescheduled = Negotiation::Due(at + 1);
        assert_eq!(
            due(at, at, rescheduled, true, &view(None), Some(SELLER)),
            Due::Skip
        );
    }
}
