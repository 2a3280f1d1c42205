//! Reliable notices (WIN, SOLD, NOT-SOLD, NEGOTIATE-REQ, settlement notices): each is kept
//! until its account acknowledges it, and retransmitted with exponential backoff and jitter,
//! up to `tries` times per delivery round; a new round starts when the account attaches.
//!
//! Owned by the registry task, and pure: the time and the random source are passed in, what
//! is due comes back to be sent, and [`Notices::next_wake`] says when something next will be,
//! so the task sleeps until then instead of ticking. A notice reaches this table only once it
//! is durable (the registry's outbox releases it), so nothing is delivered that a crash could
//! take back; acknowledging it is recorded by the registry.

use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

use super::{not_registered, Answer, Denial, Registry};
use crate::accounts::AccountId;
use crate::clock::Now;
use crate::store::Record;
use auction_protocol::udp::ServerBody;
use auction_protocol::Reason;

/// Backoff doubles for at most this many tries (then stays at `retry * 2^6`).
const MAX_DOUBLINGS: u32 = 6;

pub(super) struct Notices {
    /// Pending notices by account, then by notice id.
    pending: BTreeMap<AccountId, BTreeMap<u64, Pending>>,
    /// When each scheduled notice is next due: (at, account, notice).
    schedule: BTreeSet<(Instant, AccountId, u64)>,
    /// The first retransmission interval.
    retry: Duration,
    /// Transmissions per delivery round.
    tries: u32,
}

struct Pending {
    datagram: Vec<u8>,
    /// Transmissions in the current delivery round.
    tries: u32,
    /// When it is next due; `None` once the round is over (or while the account has no
    /// address), until a new round starts.
    next_at: Option<Instant>,
}

impl Notices {
    pub(super) fn new(retry: Duration, tries: u32) -> Notices {
        Notices {
            pending: BTreeMap::new(),
            schedule: BTreeSet::new(),
            retry,
            tries,
        }
    }

    /// Keeps notice `id` for `account` until it is acknowledged; it is due at once. A notice
    /// queued again (the same id) starts over.
    pub(super) fn queue(&mut self, account: AccountId, id: u64, datagram: Vec<u8>, now: Instant) {
        self.drop(account, id);
        let pending = Pending {
            datagram,
            tries: 0,
            next_at: Some(now),
        };
        self.pending.entry(account).or_default().insert(id, pending);
        self.schedule.insert((now, account, id));
    }

    /// Stops delivering notice `id` to `account`; whether it was pending.
    pub(super) fn drop(&mut self, account: AccountId, id: u64) -> bool {
        let Some(notices) = self.pending.get_mut(&account) else {
            return false;
        };
        let Some(p) = notices.remove(&id) else {
            return false;
        };
        if let Some(at) = p.next_at {
            self.schedule.remove(&(at, account, id));
        }
        if notices.is_empty() {
            self.pending.remove(&account);
        }
        true
    }

    /// Forgets every notice of a removed account.
    pub(super) fn forget(&mut self, account: AccountId) {
        for (id, p) in self.pending.remove(&account).unwrap_or_default() {
            if let Some(at) = p.next_at {
                self.schedule.remove(&(at, account, id));
            }
        }
    }

    /// How many notices `account` has not acknowledged.
    pub(super) fn count(&self, account: AccountId) -> usize {
        self.pending.get(&account).map_or(0, BTreeMap::len)
    }

    /// Starts a new delivery round for `account`: every notice due now, with all its tries.
    pub(super) fn restart(&mut self, account: AccountId, now: Instant) {
        self.reschedule(account, now, true, |_| true);
    }

    /// Makes the notices of `account` that waited for an address due now (it has one again),
    /// leaving the others' rounds as they are.
    pub(super) fn unpark(&mut self, account: AccountId, now: Instant) {
        let tries = self.tries;
        self.reschedule(account, now, false, |p| {
            p.next_at.is_none() && p.tries < tries
        });
    }

    /// Makes `which` of `account`'s notices due now, their tries counted afresh if `fresh`.
    fn reschedule(
        &mut self,
        account: AccountId,
        now: Instant,
        fresh: bool,
        which: impl Fn(&Pending) -> bool,
    ) {
        let Some(notices) = self.pending.get_mut(&account) else {
            return;
        };
        for (&id, p) in notices.iter_mut().filter(|(_, p)| which(p)) {
            if let Some(at) = p.next_at {
                self.schedule.remove(&(at, account, id));
            }
            if fresh {
                p.tries = 0;
            }
            p.next_at = Some(now);
            self.schedule.insert((now, account, id));
        }
    }

    /// The notices due at `now`, each with the address its account has (`address`): sent
    /// now, and scheduled again after a backoff of `retry * 2^(tries-1)` times a jitter of
    /// 0.75 to 1.25. An account without an address keeps its notices until [`Notices::unpark`].
    pub(super) fn due<'a>(
        &mut self,
        now: Instant,
        rng: &mut impl Rng,
        addresses: impl Fn(AccountId) -> &'a [SocketAddr],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(&(at, account, id)) = self.schedule.first() {
            if at > now {
                break;
            }
            self.schedule.pop_first();
            let Some(p) = self.pending.get_mut(&account).and_then(|n| n.get_mut(&id)) else {
                continue;
            };
            // Its round is over (or rounds have no tries at all), or its account has no
            // device: it waits for a new round. Each try goes to every device; the first to
            // acknowledge ends it for all.
            let devices = addresses(account);
            if devices.is_empty() || p.tries >= self.tries {
                p.next_at = None;
                continue;
            }
            p.tries += 1;
            out.extend(devices.iter().map(|&to| (to, p.datagram.clone())));
            if p.tries < self.tries {
                let backoff = self
                    .retry
                    .saturating_mul(1 << (p.tries - 1).min(MAX_DOUBLINGS));
                let next = now + backoff.mul_f64(rng.random_range(0.75..1.25));
                p.next_at = Some(next);
                self.schedule.insert((next, account, id));
            } else {
                p.next_at = None;
            }
        }
        out
    }

    /// When the next notice is due, if any is scheduled.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        self.schedule.first().map(|&(at, _, _)| at)
    }
}

impl Registry {
    /// Keeps a durable notice for `account` (if it still exists) until acknowledged.
    pub(super) fn queue_notice(
        &mut self,
        account: AccountId,
        id: u64,
        datagram: Vec<u8>,
        now: Now,
    ) {
        if self.accounts.by_id(account).is_some() {
            self.notices.queue(account, id, datagram, now.instant);
        }
    }

    /// Stops delivering notice `notice` to account `name`; whether it was pending.
    pub(super) fn drop_pending(&mut self, name: &str, notice: u64) -> bool {
        match self.accounts.get(name) {
            Some(a) => self.notices.drop(a.handle.id, notice),
            None => false,
        }
    }

    /// ACK: the account has the notice; it is not sent again (and not loaded at the next start).
    pub(super) fn ack(&mut self, req: u64, name: &str, notice: u64, now: Now) -> Answer {
        if !self.accounts.contains(name) {
            return Denial::Error.answer(req, Reason::NotRegistered, not_registered(name));
        }
        // Acknowledging a notice that is already gone succeeds: the client wants it gone.
        if self.drop_pending(name, notice) {
            self.records
                .push(Record::NoticeAcked { notice, at: now.ms });
        }
        Answer::one(ServerBody::Acked { req, notice })
    }

    /// Sends the notices due at `now` to where their accounts' announcements go.
    pub(super) fn retransmit(&mut self, now: Now) {
        let accounts = &self.accounts;
        let due = self.notices.due(now.instant, &mut rand::rng(), |id| {
            accounts.by_id(id).map_or(&[], |a| a.devices.addrs())
        });
        self.sends.extend(due);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const ALICE: AccountId = 1;
    const BOB: AccountId = 2;

    fn addr(account: AccountId) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9000 + account as u16))
    }

    /// Every account has one device. (Leaked: a few bytes per test.)
    fn devices(account: AccountId) -> &'static [SocketAddr] {
        Box::leak(Box::new([addr(account)]))
    }

    fn notices() -> Notices {
        Notices::new(Duration::from_millis(100), 4)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn retransmission_backs_off_with_jitter_and_stops_after_the_round() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut n = notices();
        let t0 = Instant::now();
        n.queue(ALICE, 10, b"win".to_vec(), t0);
        assert_eq!(n.next_wake(), Some(t0));
        let mut sent_at = vec![];
        let mut now = t0;
        while let Some(wake) = n.next_wake() {
            // Nothing is due just before the wake-up time.
            if wake > now {
                assert!(n.due(wake - ms(1), &mut rng, devices).is_empty());
            }
            now = wake;
            let out = n.due(now, &mut rng, devices);
            assert_eq!(out, vec![(addr(ALICE), b"win".to_vec())]);
            sent_at.push(now - t0);
        }
        // Four tries: at once, then after 100, 200 and 400 ms, each within the jitter.
        assert_eq!(sent_at.len(), 4);
        assert_eq!(sent_at[0], Duration::ZERO);
        for (i, base) in [100u64, 200, 400].into_iter().enumerate() {
            let gap = sent_at[i + 1] - sent_at[i];
            assert!(
                gap >= ms(base * 3 / 4) && gap <= ms(base * 5 / 4),
                "{gap:?}"
            );
        }
        // The round is over but the notice is kept until acknowledged.
        assert_eq!(n.count(ALICE), 1);
        assert!(n
            .due(now + Duration::from_secs(60), &mut rng, devices)
            .is_empty());
    }

    #[test]
    fn a_late_ack_and_a_second_ack_are_both_harmless() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut n = notices();
        let t0 = Instant::now();
        n.queue(ALICE, 10, b"win".to_vec(), t0);
        n.queue(BOB, 11, b"sold".to_vec(), t0);
        assert_eq!(n.due(t0, &mut rng, devices).len(), 2);
        // Alice's acknowledgement arrives after her retransmission went out.
        let wake = n.next_wake().unwrap();
        assert_eq!(n.due(wake + ms(50), &mut rng, devices).len(), 2);
        assert!(n.drop(ALICE, 10), "the first ack removes it");
        assert!(!n.drop(ALICE, 10), "the second finds nothing");
        assert_eq!(n.count(ALICE), 0);
        // From then on only Bob's notice goes out.
        let wake = n.next_wake().unwrap();
        let out = n.due(wake, &mut rng, devices);
        assert_eq!(out, vec![(addr(BOB), b"sold".to_vec())]);
        assert!(n.drop(BOB, 11));
        assert_eq!(n.next_wake(), None, "nothing left to wake for");
    }

    #[test]
    fn attaching_starts_a_new_round_and_an_address_unparks() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut n = Notices::new(Duration::from_millis(100), 2);
        let t0 = Instant::now();
        n.queue(ALICE, 10, b"win".to_vec(), t0);
        n.due(t0, &mut rng, devices);
        let wake = n.next_wake().unwrap();
        n.due(wake, &mut rng, devices);
        assert_eq!(n.next_wake(), None, "two tries, round over");
        let t1 = wake + Duration::from_secs(5);
        n.restart(ALICE, t1);
        assert_eq!(n.next_wake(), Some(t1));
        assert_eq!(n.due(t1, &mut rng, devices).len(), 1);

        // Bob has no address yet: his notice waits, and goes out once he has one.
        n.queue(BOB, 11, b"sold".to_vec(), t1);
        assert!(n
            .due(t1, &mut rng, |a| if a == ALICE { devices(a) } else { &[] })
            .is_empty());
        assert!(
            n.next_wake().is_some_and(|w| w > t1),
            "only Alice's retry is scheduled"
        );
        n.unpark(BOB, t1 + ms(1));
        let out = n.due(t1 + ms(1), &mut rng, devices);
        assert_eq!(out, vec![(addr(BOB), b"sold".to_vec())]);
        n.forget(BOB);
        assert_eq!(n.count(BOB), 0);
    }

    #[test]
    fn a_forgotten_account_leaves_nothing_to_send_or_wake_for() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut n = notices();
        let t0 = Instant::now();
        n.queue(BOB, 11, b"sold".to_vec(), t0);
        n.queue(BOB, 12, b"settled".to_vec(), t0);
        n.forget(BOB);
        assert_eq!(n.next_wake(), None);
        assert!(n
            .due(t0 + Duration::from_secs(60), &mut rng, devices)
            .is_empty());
        assert!(!n.drop(BOB, 11));
    }

    #[test]
    fn rounds_without_tries_send_nothing() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut n = Notices::new(Duration::from_millis(100), 0);
        let t0 = Instant::now();
        n.queue(ALICE, 10, b"win".to_vec(), t0);
        assert!(n.due(t0, &mut rng, devices).is_empty());
        assert_eq!(n.next_wake(), None);
        assert_eq!(n.count(ALICE), 1, "kept until acknowledged all the same");
    }

    #[test]
    fn each_try_goes_to_every_device_and_one_ack_ends_it_for_all() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut n = notices();
        let t0 = Instant::now();
        let two = [addr(ALICE), addr(BOB)];
        n.queue(ALICE, 10, b"win".to_vec(), t0);
        let out = n.due(t0, &mut rng, |_| &two[..]);
        assert_eq!(
            out,
            vec![(two[0], b"win".to_vec()), (two[1], b"win".to_vec())]
        );
        let wake = n.next_wake().unwrap();
        assert_eq!(n.due(wake, &mut rng, |_| &two[..]).len(), 2);
        assert!(n.drop(ALICE, 10), "the first device's ack");
        assert!(!n.drop(ALICE, 10), "the second device's ack finds it gone");
        assert_eq!(n.next_wake(), None);
    }
}
