//! The rate policy every bidder loop follows, the auction run's (`run/bidder.rs`) and the
//! baseline's (`baseline/driver.rs`): when each bid is due, closed or open loop. Pure: the
//! start time is passed in, so it is tested without a clock.

use std::time::{Duration, Instant};

/// When a bidder's bids are due (the rate policy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Closed loop: the next bid as soon as the answer to the last has come.
    Closed,
    /// Open loop at `rate` bids per second in all: each bidder bids every `interval`
    /// (bidders / rate), whether or not its last bid has been answered yet, and latency counts
    /// from when a bid was due. The bidders' first bids are spread over one interval.
    Open { rate: f64, interval: Duration },
}

impl Pace {
    /// `--rate` (bids per second across `bidders`), or closed loop without one.
    pub fn new(rate: Option<f64>, bidders: usize) -> Pace {
        match rate {
            None => Pace::Closed,
            Some(rate) => Pace::Open {
                rate,
                interval: Duration::from_secs_f64(bidders as f64 / rate.max(0.001)),
            },
        }
    }

    /// When bidder `b`'s first bid is due, the phase having started at `start`.
    pub fn first_due(self, start: Instant, b: usize) -> Instant {
        match self {
            Pace::Closed => start,
            Pace::Open { rate, .. } => start + Duration::from_secs_f64(b as f64 / rate.max(0.001)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_loop_bids_from_the_start() {
        let start = Instant::now();
        let pace = Pace::new(None, 8);
        assert_eq!(pace, Pace::Closed);
        assert_eq!(pace.first_due(start, 5), start);
    }

    #[test]
    fn open_loop_spreads_the_first_bids_over_one_interval() {
        let start = Instant::now();
        // 8 bidders at 4 bids/s in all: each bids every 2 s, bidder b first at b/4 s.
        let pace = Pace::new(Some(4.0), 8);
        assert_eq!(
            pace,
            Pace::Open {
                rate: 4.0,
                interval: Duration::from_secs(2)
            }
        );
        assert_eq!(pace.first_due(start, 0), start);
        assert_eq!(pace.first_due(start, 1), start + Duration::from_millis(250));
        assert_eq!(
            pace.first_due(start, 7),
            start + Duration::from_millis(1750)
        );
    }
}
