//! Reliable notices (WIN, SOLD, NOT-SOLD, NEGOTIATE-REQ, settlement notices): kept until the
//! account acknowledges them, retransmitted with backoff.

use auction_protocol::udp::ServerBody;
use auction_protocol::Reason;
use std::net::SocketAddr;

use super::{not_registered, Answer, Pending, Registry};
use crate::accounts::AccountId;
use crate::clock::unix_ms;
use crate::store::Record;
use tokio::time::Instant;

impl Registry {
    /// Keeps a durable notice for `account` until acknowledged; sent at the next retransmit.
    pub(super) fn queue_notice(&mut self, account: AccountId, id: u64, datagram: Vec<u8>) {
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

    /// Stops delivering notice `notice` to account `name`; whether it was pending.
    pub(super) fn drop_pending(&mut self, name: &str, notice: u64) -> bool {
        let Some(account) = self.accounts.get_mut(name) else {
            return false;
        };
        let was = account.pending.remove(&notice).is_some();
        if account.pending.is_empty() {
            self.with_pending.remove(name);
        }
        was
    }

    pub(super) fn ack(&mut self, req: u64, name: &str, notice: u64) -> Answer {
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

    /// Sends every pending notice of `name` now; `fresh` starts a new delivery round.
    pub(super) async fn send_pending(&mut self, name: &str, fresh: bool) {
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
    pub(super) async fn retransmit(&mut self) {
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
