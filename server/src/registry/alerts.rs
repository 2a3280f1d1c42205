//! OUTBID and ENDING-SOON: reliable notices to a bidder who is not on the item's channel (a
//! channel says the same as it happens). The item task sees the moment (a bid that took the
//! lead from an account with no connection on the item; the item entering its last
//! `--ending-soon` with such an account leading) and tells the registry once that is durable
//! (`Change::Tell`); on several nodes the leader sees an outbid leader in the item's rows
//! (`remote.rs`). The registry, which owns the notices, numbers the notice in its own range
//! (from `REGISTRY_NOTICES`), appends it, and delivers it once durable, like WIN.
//!
//! An account outbid again on the same item while its OUTBID is still unacknowledged gets the
//! new one in its place (the old one is acknowledged for it): only the latest price matters.
//! What the item saw is durable before the notice is made, but the notice itself is appended a
//! moment later: a crash in between loses that notice (the bid stays; `status` shows it).

use auction_protocol::udp::{self, ServerBody};
use std::collections::{HashMap, HashSet};

use super::inbox::Alert;
use super::Registry;
use crate::accounts::AccountId;
use crate::clock::Now;
use crate::store::{NoticeRecord, Record, SETTLEMENT_NOTICES};

/// The registry's numbering of its notices, and the OUTBID each account has pending per item.
pub(super) struct Alerts {
    next: u64,
    outbid: HashMap<(AccountId, u64), u64>,
    /// OUTBIDs replaced while still waiting in the outbox: not delivered when released.
    replaced: HashSet<u64>,
}

impl Alerts {
    pub(super) fn new(next: u64) -> Alerts {
        Alerts {
            next,
            outbid: HashMap::new(),
            replaced: HashSet::new(),
        }
    }

    /// Whether notice `id` was replaced by a newer OUTBID (and so is not to be delivered).
    /// Forgets it: it is asked once, when the notice leaves the outbox.
    pub(super) fn was_replaced(&mut self, id: u64) -> bool {
        self.replaced.remove(&id)
    }

    fn take_id(&mut self) -> Option<u64> {
        (self.next < SETTLEMENT_NOTICES).then(|| {
            self.next += 1;
            self.next - 1
        })
    }
}

impl Registry {
    /// Makes `alert` about `item` a reliable notice and sends it once it is durable.
    pub(super) fn alert(&mut self, item: u64, alert: Alert, now: Now) {
        let Some(entry) = self.items.get(&item) else {
            return;
        };
        let description = entry.view.borrow().description.clone();
        let account = match &alert {
            Alert::Outbid { account, .. } | Alert::EndingSoon { account, .. } => *account,
        };
        let Some(name) = self.accounts.by_id(account).map(|a| a.handle.name.clone()) else {
            return; // deregistered meanwhile
        };
        let Some(id) = self.alerts.take_id() else {
            tracing::error!(
                "the registry's notice numbers are used up; not sending OUTBID or ENDING-SOON"
            );
            return;
        };
        let (kind, body) = match alert {
            Alert::Outbid {
                amount,
                bidder,
                next_min,
                ends_at,
                ..
            } => {
                // Only the latest price matters: an older OUTBID still pending is replaced.
                if let Some(old) = self.alerts.outbid.insert((account, item), id) {
                    // Pending, or still in the outbox (then skipped when it is released):
                    // either way it is stored, and acknowledged now for the account.
                    let held = |o: &super::Outgoing| matches!(o, super::Outgoing::Notice(n) if n.id == old);
                    if !self.drop_pending(&name, old) && self.outbox.holds(held) {
                        self.alerts.replaced.insert(old);
                    }
                    self.records.push(Record::NoticeAcked {
                        notice: old,
                        at: now.ms,
                    });
                }
                let body = ServerBody::Outbid {
                    notice: id,
                    item,
                    description,
                    amount,
                    bidder,
                    next_min,
                    ends_at,
                };
                ("outbid", body)
            }
            Alert::EndingSoon {
                amount, ends_at, ..
            } => {
                let body = ServerBody::EndingSoon {
                    notice: id,
                    item,
                    description,
                    amount,
                    ends_at,
                };
                ("ending-soon", body)
            }
        };
        tracing::info!(item, account = %name, kind, "telling a bidder who is not on the channel");
        let notice = NoticeRecord {
            id,
            account,
            item,
            kind,
            datagram: udp::encode(body),
        };
        self.records.push(Record::Notice {
            notice: notice.clone(),
            at: now.ms,
        });
        self.append_records();
        self.say_notice(notice, now);
    }

    /// The item closed: its OUTBID notices need no replacing any more.
    pub(super) fn forget_alerts(&mut self, item: u64) {
        self.alerts.outbid.retain(|&(_, i), _| i != item);
    }
}
