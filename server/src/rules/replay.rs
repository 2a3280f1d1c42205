//! Per-account replay protection and response cache for signed UDP requests, in the manner of
//! the DTLS anti-replay window: executed request numbers are kept with their answers and a
//! digest of the request. A number in the window is a retransmission and gets the cached answer
//! — if it is the same request; the same number on a different request is refused
//! (`request-reused`) rather than answered with another request's answer. A number below the
//! window's floor is stale and refused; anything else is new. Numbers need not arrive in order,
//! so two processes of the same account (say `watch` and `offer`) can both use time-based
//! numbers.
//!
//! What is kept: the [`REPLAY_WINDOW`] highest numbers, and every answer younger than
//! [`RETRANSMIT_SECS`] (the longest a client resends a request), however many newer requests
//! came between. So a retransmission always gets its first answer, never `stale-request`. The
//! floor rises past the lowest numbers only once they are outside both; it stops at the first
//! young one, so every kept number is above the floor (what storage relies on: it forgets the
//! answers at or below the floor). Bounded per account: at most [`REPLAY_MAX_ANSWERS`] answers
//! (each at most one datagram, 1200 bytes); a new request that would need more, because that
//! many are younger than [`RETRANSMIT_SECS`], is [`Verdict::Full`]: refused unexecuted, like a
//! rate limit. The registry task owns the windows and passes the monotonic time in.

use auction_protocol::limits::{REPLAY_MAX_ANSWERS, REPLAY_WINDOW, RETRANSMIT_SECS};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long an executed request's answer is kept at least.
pub const KEEP: Duration = Duration::from_secs(RETRANSMIT_SECS);

/// SHA-256 of what a request asks for (its decoded body, without cookie or number), so a
/// retransmission matches however its cookie changed.
pub type RequestDigest = [u8; 32];

pub fn digest(body: &auction_protocol::udp::RequestBody) -> RequestDigest {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let d = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[derive(Debug, Default)]
pub struct ReplayWindow {
    answers: BTreeMap<u64, Kept>,
    /// Every number at or below this was either executed and evicted, or is refused as stale.
    floor: u64,
}

#[derive(Debug)]
struct Kept {
    digest: RequestDigest,
    answer: Vec<u8>,
    /// When it was executed (or, after a restart, restored).
    at: Instant,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    New,
    Repeat(&'a [u8]),
    /// The number was executed for a different request.
    Reused,
    Stale,
    /// New, but the account already has [`REPLAY_MAX_ANSWERS`] answers younger than
    /// [`RETRANSMIT_SECS`]: not to be executed now.
    Full,
}

impl ReplayWindow {
    /// What request `req` asking for `digest` is, at `now`. Forgets first what has aged out.
    pub fn check(&mut self, req: u64, digest: &RequestDigest, now: Instant) -> Verdict<'_> {
        self.forget_old(now);
        if let Some(kept) = self.answers.get(&req) {
            return if &kept.digest == digest {
                Verdict::Repeat(&kept.answer)
            } else {
                Verdict::Reused
            };
        }
        if req <= self.floor {
            Verdict::Stale
        } else if self.answers.len() >= REPLAY_MAX_ANSWERS {
            Verdict::Full
        } else {
            Verdict::New
        }
    }

    /// A window as it was stored: its floor and its entries, all counted as executed at `now`
    /// (storage keeps no times; a restart only makes them last longer).
    pub fn restore(
        floor: u64,
        entries: impl IntoIterator<Item = (u64, RequestDigest, Vec<u8>)>,
        now: Instant,
    ) -> ReplayWindow {
        let mut window = ReplayWindow {
            answers: BTreeMap::new(),
            floor,
        };
        for (req, digest, answer) in entries {
            if req > floor {
                window.answers.insert(
                    req,
                    Kept {
                        digest,
                        answer,
                        at: now,
                    },
                );
            }
        }
        window
    }

    /// Every number at or below this is stale.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Remembers the answer to a request executed at `now`.
    pub fn record(&mut self, req: u64, digest: RequestDigest, answer: Vec<u8>, now: Instant) {
        self.answers.insert(
            req,
            Kept {
                digest,
                answer,
                at: now,
            },
        );
        self.forget_old(now);
    }

    /// Lowest numbers first, forgets the answers beyond the [`REPLAY_WINDOW`] highest that are
    /// older than [`KEEP`], stopping at the first younger one.
    fn forget_old(&mut self, now: Instant) {
        while self.answers.len() > REPLAY_WINDOW {
            let Some(lowest) = self.answers.first_entry() else {
                break;
            };
            if now.saturating_duration_since(lowest.get().at) < KEEP {
                break;
            }
            self.floor = self.floor.max(*lowest.key());
            lowest.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: RequestDigest = [1; 32];
    const B: RequestDigest = [2; 32];

    #[test]
    fn repeats_are_answered_from_cache_and_old_numbers_are_stale() {
        let t0 = Instant::now();
        let mut w = ReplayWindow::default();
        assert_eq!(w.check(10, &A, t0), Verdict::New);
        w.record(10, A, b"ten".to_vec(), t0);
        assert_eq!(w.check(10, &A, t0), Verdict::Repeat(b"ten"));
        // The same number for another request is not answered with this one's answer.
        assert_eq!(w.check(10, &B, t0), Verdict::Reused);
        // Out of order is fine while inside the window.
        assert_eq!(w.check(5, &A, t0), Verdict::New);
        w.record(5, A, b"five".to_vec(), t0);
        // 64 newer requests, once the retransmission budget has passed.
        let later = t0 + KEEP;
        for n in 100..100 + REPLAY_WINDOW as u64 {
            w.record(n, A, vec![], later);
        }
        // 5 and 10 were evicted: now stale, never executed again.
        assert_eq!(w.check(5, &A, later), Verdict::Stale);
        assert_eq!(w.check(10, &A, later), Verdict::Stale);
        // 11 was never executed and is above every evicted number: still new.
        assert_eq!(w.check(11, &A, later), Verdict::New);
        assert_eq!(w.check(100, &A, later), Verdict::Repeat(b""));
        assert_eq!(w.check(1000, &A, later), Verdict::New);

        // Stored and restored (as after a restart), it says the same about every number.
        let entries = w
            .answers
            .iter()
            .map(|(r, k)| (*r, k.digest, k.answer.clone()));
        let mut back = ReplayWindow::restore(w.floor(), entries.collect::<Vec<_>>(), later);
        for n in [5, 10, 11, 99, 100, 150, 1000] {
            for d in [A, B] {
                assert_eq!(
                    back.check(n, &d, later),
                    w.check(n, &d, later),
                    "request {n}"
                );
            }
        }
    }

    #[test]
    fn a_retransmission_gets_its_first_answer_for_the_whole_budget_however_many_came_between() {
        let t0 = Instant::now();
        let mut w = ReplayWindow::default();
        // An offer executed at t0 whose answer is lost...
        w.record(100, A, b"offer-conf".to_vec(), t0);
        // ...then 500 requests with higher numbers (another machine whose clock is ahead).
        for n in 0..500u64 {
            let at = t0 + Duration::from_millis(n);
            w.record(1_000_000 + n, B, vec![], at);
        }
        // Its retransmissions during the budget get the first answer, not stale-request.
        for s in [1, 9, 29] {
            let at = t0 + Duration::from_secs(s);
            assert_eq!(
                w.check(100, &A, at),
                Verdict::Repeat(b"offer-conf"),
                "after {s} s"
            );
        }
        // Once the budget has passed it is forgotten, and the window shrinks back to 64.
        let after = t0 + KEEP + Duration::from_secs(1);
        assert_eq!(w.check(100, &A, after), Verdict::Stale);
        assert_eq!(w.answers.len(), REPLAY_WINDOW);
        assert_eq!(w.floor(), 1_000_000 + 500 - REPLAY_WINDOW as u64 - 1);
    }

    #[test]
    fn an_account_is_bounded_to_its_maximum_of_young_answers() {
        let t0 = Instant::now();
        let mut w = ReplayWindow::default();
        for n in 1..=REPLAY_MAX_ANSWERS as u64 {
            assert_eq!(w.check(n, &A, t0), Verdict::New);
            w.record(n, A, vec![0; 1200], t0);
        }
        // One more within the budget is refused, unexecuted; the kept ones still answer.
        let soon = t0 + Duration::from_secs(10);
        assert_eq!(w.check(5_000, &A, soon), Verdict::Full);
        assert!(matches!(w.check(1, &A, soon), Verdict::Repeat(_)));
        assert_eq!(w.answers.len(), REPLAY_MAX_ANSWERS);
        // Once they age, there is room again.
        assert_eq!(w.check(5_000, &A, t0 + KEEP), Verdict::New);
        assert_eq!(w.answers.len(), REPLAY_WINDOW);
    }
}
