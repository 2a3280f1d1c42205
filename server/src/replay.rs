//! Per-account replay protection and response cache for signed UDP requests, in the manner of
//! the DTLS anti-replay window: the last [`REPLAY_WINDOW`] executed request numbers are kept
//! with their answers. A number in the window is a retransmission and gets the cached answer;
//! a number below the window's floor is stale and refused; anything else is new. Numbers need
//! not arrive in order, so two processes of the same account (say `watch` and `offer`) can both
//! use time-based numbers.

use auction_protocol::limits::REPLAY_WINDOW;
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct ReplayWindow {
    answers: BTreeMap<u64, Vec<u8>>,
    /// Every number at or below this was either executed and evicted, or is refused as stale.
    floor: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    New,
    Repeat(&'a [u8]),
    Stale,
}

impl ReplayWindow {
    pub fn check(&self, req: u64) -> Verdict<'_> {
        if let Some(answer) = self.answers.get(&req) {
            return Verdict::Repeat(answer);
        }
        if req <= self.floor {
            Verdict::Stale
        } else {
            Verdict::New
        }
    }

    /// A window as it was stored: its floor and its answers.
    pub fn restore(floor: u64, answers: impl IntoIterator<Item = (u64, Vec<u8>)>) -> ReplayWindow {
        let mut window = ReplayWindow {
            answers: BTreeMap::new(),
            floor,
        };
        for (req, answer) in answers {
            if req > floor {
                window.record(req, answer);
            }
        }
        window
    }

    /// Every number at or below this is stale.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Remembers the answer to a newly executed request.
    pub fn record(&mut self, req: u64, answer: Vec<u8>) {
        self.answers.insert(req, answer);
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

    #[test]
    fn repeats_are_answered_from_cache_and_old_numbers_are_stale() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.check(10), Verdict::New);
        w.record(10, b"ten".to_vec());
        assert_eq!(w.check(10), Verdict::Repeat(b"ten"));
        // Out of order is fine while inside the window.
        assert_eq!(w.check(5), Verdict::New);
        w.record(5, b"five".to_vec());
        for n in 100..100 + REPLAY_WINDOW as u64 {
            w.record(n, vec![]);
        }
        // 5 and 10 were evicted: now stale, never executed again.
        assert_eq!(w.check(5), Verdict::Stale);
        assert_eq!(w.check(10), Verdict::Stale);
        // 11 was never executed and is above every evicted number: still new.
        assert_eq!(w.check(11), Verdict::New);
        assert_eq!(w.check(100), Verdict::Repeat(b""));
        assert_eq!(w.check(1000), Verdict::New);

        // Stored and restored (as after a restart), it says the same about every number.
        let back = ReplayWindow::restore(w.floor(), w.answers.clone());
        for n in [5, 10, 11, 99, 100, 150, 1000] {
            assert_eq!(back.check(n), w.check(n), "request {n}");
        }
    }
}
