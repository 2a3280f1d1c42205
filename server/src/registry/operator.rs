//! `cancel-item` and `remove-bid`: the operator's requests. The registry checks who asks (the
//! account registered with the server's `--operator-key`) and the note, and hands the action
//! to the item's task, which owns the auction and appends the action with its effect
//! (`item/operator.rs`); on several nodes, to the item's node through the database
//! (`cluster/link.rs`). The answer is stored with the request (the replay window) after the
//! action's records, so it leaves only once the action is durable.

use auction_protocol::udp::ServerBody;
use auction_protocol::{names, Reason};
use tokio::sync::oneshot;

use super::{not_registered, Answer, Denial, Registry};

/// How long a cancellation's answer waits for the item to show as closed.
const SHOWN_CLOSED_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
use crate::accounts::AccountId;
use crate::item::ItemCmd;
use crate::rules::refusal::Refusal;

impl Registry {
    /// CANCEL-ITEM: the operator ends an open item now, unsold.
    pub(super) async fn cancel_item(
        &mut self,
        req: u64,
        name: &str,
        item: u64,
        note: String,
    ) -> Answer {
        let asked = self
            .ask_item(name, item, &note, |operator, reply| ItemCmd::Cancel {
                operator,
                note: note.clone(),
                reply,
            })
            .await;
        match asked {
            Ok(()) => {
                self.shown_closed(item).await;
                Answer::one(ServerBody::ItemCancelled { req, item })
            }
            Err(Refusal { reason, message }) => Denial::Operator.answer(req, reason, message),
        }
    }

    /// REMOVE-BID: the operator removes an accepted bid from an open item.
    pub(super) async fn remove_bid(
        &mut self,
        req: u64,
        name: &str,
        item: u64,
        bid: u64,
        note: String,
    ) -> Answer {
        let asked = self
            .ask_item(name, item, &note, |operator, reply| ItemCmd::RemoveBid {
                operator,
                bid,
                note: note.clone(),
                reply,
            })
            .await;
        match asked {
            Ok(lead) => Answer::one(ServerBody::BidRemoved {
                req,
                item,
                bid,
                highest: lead.as_ref().map(|l| l.0),
                bidder: lead.map(|l| l.1),
            }),
            Err(Refusal { reason, message }) => Denial::Operator.answer(req, reason, message),
        }
    }

    /// Waits (a moment at most) until the cancelled item `item` shows as closed, so whoever
    /// asks after the operator's answer sees it so. The item closes on its own (its records
    /// are appended already); the wait is bounded because the item hands its close to this
    /// task, which is not reading meanwhile. Several nodes: the view follows the database, not
    /// waited for here.
    async fn shown_closed(&mut self, item: u64) {
        let Some(entry) = self.items.get(&item).filter(|e| e.mirror.is_none()) else {
            return;
        };
        let mut view = entry.view.clone();
        let closed = view.wait_for(|v| v.state == auction_protocol::ItemState::Closed);
        let _ = tokio::time::timeout(SHOWN_CLOSED_WAIT, closed).await;
    }

    /// Checks the operator's request, hands `make(operator, reply)` to the item's task and
    /// waits for its answer (a task that has gone closed the item meanwhile).
    async fn ask_item<T>(
        &mut self,
        name: &str,
        item: u64,
        note: &str,
        make: impl FnOnce(AccountId, oneshot::Sender<Result<T, Refusal>>) -> ItemCmd,
    ) -> Result<T, Refusal> {
        let (operator, cmd) = self.operator_target(name, item, note)?;
        let (reply, answer) = oneshot::channel();
        let closed = || Refusal::new(Reason::AuctionOver, format!("item {item} has closed"));
        if cmd.send(make(operator, reply)).await.is_err() {
            return Err(closed());
        }
        answer.await.unwrap_or_else(|_| Err(closed()))
    }

    /// The operator's account and the open item's queue, or why the request is refused.
    fn operator_target(
        &mut self,
        name: &str,
        item: u64,
        note: &str,
    ) -> Result<(AccountId, tokio::sync::mpsc::Sender<ItemCmd>), Refusal> {
        let Some(account) = self.accounts.get(name) else {
            return Err(Refusal::new(Reason::NotRegistered, not_registered(name)));
        };
        let operator = account.handle.id;
        match self.ctx.config.operator_key {
            Some(key) if key == account.handle.key => {}
            Some(_) => {
                return Err(Refusal::new(
                    Reason::NotOperator,
                    format!("'{name}' is not this server's operator"),
                ))
            }
            None => {
                return Err(Refusal::new(
                    Reason::NotOperator,
                    "this server has no operator (it was started without --operator-key)".into(),
                ))
            }
        }
        if !names::valid_note(note) {
            return Err(Refusal::new(
                Reason::InvalidNote,
                format!(
                    "the note must be 1 to {} characters, not only blanks, without control or \
                     invisible characters",
                    auction_protocol::limits::MAX_NOTE_CHARS
                ),
            ));
        }
        // The item must be running (right after a restart it may not be yet); one whose end
        // passed while the server was down is over.
        match self.pending.get(&item) {
            Some(p) if !p.is_open() => {
                return Err(Refusal::new(
                    Reason::AuctionOver,
                    format!("item {item} has closed"),
                ))
            }
            Some(_) => self.start_pending(&[item]),
            None => {}
        }
        let Some(entry) = self.items.get(&item) else {
            return Err(Refusal::new(
                Reason::UnknownItem,
                format!("there is no item {item}"),
            ));
        };
        match entry.cmd.clone() {
            Some(cmd) => Ok((operator, cmd)),
            None => Err(Refusal::new(
                Reason::AuctionOver,
                format!("item {item} has closed"),
            )),
        }
    }
}
