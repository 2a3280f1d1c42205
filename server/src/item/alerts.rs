//! What the item tells the registry for bidders who are not on its channel (the registry makes
//! them reliable notices: `registry/alerts.rs`): OUTBID when a bid takes the lead from one,
//! said once the bid is durable (`deliver.rs`), and ENDING-SOON when the item enters its last
//! `--ending-soon` (at most a quarter of its length, like the soft close) with one leading.
//! A bidder with a connection on the item hears both there already. On several nodes the
//! leader makes OUTBID from the items' rows instead (`registry/remote.rs`), and ENDING-SOON is
//! not sent.

use tokio::time::Instant;

use super::ItemTask;
use crate::clock::Now;
use crate::registry::inbox::{Alert, Change};

impl ItemTask {
    /// When ENDING-SOON is due for the end as it stands, on the runtime's clock.
    pub(super) fn ending_soon_instant(&self) -> Instant {
        Now::read().instant_of(self.ending_soon_at())
    }

    /// When the item enters its last `--ending-soon` (Unix ms); its end with none.
    fn ending_soon_at(&self) -> u64 {
        let ends_at = self.auction.ends_at;
        let length = ends_at.saturating_sub(self.auction.offered_at());
        let window = (self.ctx.config.ending_soon.as_millis() as u64)
            .min(length / crate::rules::auction::SOFT_CLOSE_SHARE);
        ends_at - window
    }

    /// The ENDING-SOON timer fired: the leader is told, once per end and leader, if it has no
    /// connection on the item. False when it fired early (the wall clock and the runtime's
    /// disagree): the caller arms it again.
    pub(super) fn ending_soon(&mut self) -> bool {
        let ends_at = self.auction.ends_at;
        if self.now < self.ending_soon_at() {
            return false;
        }
        self.ending_soon.0 = ends_at;
        if self.auction.is_over(self.now) {
            return true;
        }
        let Some(lead) = self.auction.lead() else {
            return true;
        };
        if self.ending_soon.1 == Some(lead.bidder.id) {
            return true;
        }
        let (account, amount) = (lead.bidder.id, lead.amount);
        self.ending_soon.1 = Some(account);
        self.alert_if_away(Alert::EndingSoon {
            account,
            amount,
            ends_at,
        });
        true
    }

    /// Hands `alert` to the registry when its account has no connection on the item.
    pub(super) fn alert_if_away(&mut self, alert: Alert) {
        let account = match &alert {
            Alert::Outbid { account, .. } | Alert::EndingSoon { account, .. } => *account,
        };
        if self.accounts.contains_key(&account) {
            return;
        }
        self.tell_registry(Change::Tell(alert));
    }
}
