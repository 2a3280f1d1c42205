//! Per-account replay protection and response cache for signed UDP requests, in the manner of
//! the DTLS anti-replay window: the last [`REPLAY_WINDOW`] executed request numbers are kept
//! with their answers and a digest of the request. A number in the window is a retransmission
//! and gets the cached answer — if it is the same request; the same number on a different
//! request is refused (`request-reused`) rather than answered with another request's answer. A
//! number below the window's floor is stale and refused; anything else is new. Numbers need
//! not arrive in order, so two processes of the same account (say `watch` and `offer`) can both
//! use time-based numbers.

use auction_protocol::limits::REPLAY_WINDOW;
use std::collections::BTreeMap;

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
    answers: BTreeMap<u64, (RequestDigest, Vec<u8>)>,
    /// Every number at or below this was either executed and evicted, or is refused as stale.
    floor: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    New,
    Repeat(&'a [u8]),
    /// The number was executed for a different request.
    Reused,
    Stale,
}

impl ReplayWindow {
    pub fn check(&self, req: u64, digest: &RequestDigest) -> Verdict<'_> {
        if let Some((first, answer)) = self.answers.get(&req) {
            return if first == digest {
                Verdict::Repeat(answer)
            } else {
                Verdict::Reused
            };
        }
        if req <= self.floor {
            Verdict::Stale
        } else {
            Verdict::New
        }
    }

    /// A window as it was stored: its floor and its entries.
    pub fn restore(
        floor: u64,
        entries: impl IntoIterator<Item = (u64, RequestDigest, Vec<u8>)>,
    ) -> ReplayWindow {
        let mut window = ReplayWindow {
            answers: BTreeMap::new(),
            floor,
        };
        for (req, digest, answer) in entries {
            if req > floor {
                window.record(req, digest, answer);
            }
        }
        window
    }

    /// Every number at or below this is stale.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Remembers the answer to a newly executed request.
    pub fn record(&mut self, req: u64, digest: RequestDigest, answer: Vec<u8>) {
        self.answers.insert(req, (digest, answer));
        while self.answers.len() > REPLAY_WINDOW {
            if let Some((oldest, _)) = self.answers.pop_first() {
                self.floor = self.floor.max(oldest);
            }
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
        let mut w = ReplayWindow::default();
        assert_eq!(w.check(10, &A), Verdict::New);
        w.record(10, A, b"ten".to_vec());
        assert_eq!(w.check(10, &A), Verdict::Repeat(b"ten"));
        // The same number for another request is not answered with this one's answer.
        assert_eq!(w.check(10, &B), Verdict::Reused);
        // Out of order is fine while inside the window.
        assert_eq!(w.check(5, &A), Verdict::New);
        w.record(5, A, b"five".to_vec());
        for n in 100..100 + REPLAY_WINDOW as u64 {
            w.record(n, A, vec![]);
        }
        // 5 and 10 were evicted: now stale, never executed again.
        assert_eq!(w.check(5, &A), Verdict::Stale);
        assert_eq!(w.check(10, &A), Verdict::Stale);
        // 11 was never executed and is above every evicted number: still new.
        assert_eq!(w.check(11, &A), Verdict::New);
        assert_eq!(w.check(100, &A), Verdict::Repeat(b""));
        assert_eq!(w.check(1000, &A), Verdict::New);

        // Stored and restored (as after a restart), it says the same about every number.
        let entries = w.answers.iter().map(|(r, (d, a))| (*r, *d, a.clone()));
        let back = ReplayWindow::restore(w.floor(), entries.collect::<Vec<_>>());
        for n in [5, 10, 11, 99, 100, 150, 1000] {
            for d in [A, B] {
                assert_eq!(back.check(n, &d), w.check(n, &d), "request {n}");
            }
        }
    }
}
