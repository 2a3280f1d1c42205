//! Per-source rate limit for the UDP port: a token bucket per source IP, in a table of bounded
//! size, so one flooding host is slowed to its rate while everyone else is served, and spoofed
//! sources cannot grow the server's memory.
//!
//! The table holds at most `max_sources` addresses. When it is full, addresses whose bucket has
//! refilled (idle ones) are swept out, at most once a second; if it is still full, unknown
//! addresses share one overflow bucket, which is what a flood of spoofed sources ends up in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::accounts::Budget;

/// The source a budget counts against: an IPv4 address (also when it arrives IPv4-mapped in
/// IPv6), or an IPv6 address's /64 (what one host or one home network is usually given, so a
/// host cannot take a fresh source for each of its addresses).
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Addresses tracked at most (about 48 bytes each).
pub const MAX_SOURCES: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// When this source was last told it is limited (at most once a second).
    told: Option<Instant>,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            last: now,
            told: None,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
    }

    fn take(&mut self, now: Instant) -> Verdict {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Pass;
        }
        let tell = self
            .told
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
        if tell {
            self.told = Some(now);
        }
        Verdict::Limited { tell }
    }
}

/// Spends one token of an account's budget (`rate` a second, `burst` at once): a bid, an
/// offer. False when it is spent. The budget itself is plain data kept with the account.
pub fn take(budget: &mut Budget, rate: f64, burst: f64, now: Instant) -> bool {
    let burst = burst.max(1.0);
    let mut bucket = match budget.counted_at {
        None => Bucket::full(burst, now),
        Some(last) => Bucket {
            tokens: budget.tokens,
            last,
            told: None,
        },
    };
    bucket.refill(rate, burst, now);
    let spent = bucket.tokens >= 1.0;
    if spent {
        bucket.tokens -= 1.0;
    }
    budget.tokens = bucket.tokens;
    budget.counted_at = Some(bucket.last);
    spent
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Over the rate: drop the datagram; `tell` at most once a second per source.
    Limited {
        tell: bool,
    },
}

pub struct SourceLimiter {
    rate: f64,
    burst: f64,
    max_sources: usize,
    sources: HashMap<IpAddr, Bucket>,
    overflow: Bucket,
    last_sweep: Option<Instant>,
}

impl SourceLimiter {
    /// `rate` tokens per second per source, up to `burst` at once.
    pub fn new(rate: f64, burst: f64, max_sources: usize) -> SourceLimiter {
        let now = Instant::now();
        let burst = burst.max(1.0);
        SourceLimiter {
            rate: rate.max(0.0),
            burst,
            max_sources,
            sources: HashMap::new(),
            overflow: Bucket::full(burst, now),
            last_sweep: None,
        }
    }

    /// Spends one token of the source of `ip` (see [`source_of`]).
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        let ip = source_of(ip);
        let (rate, burst) = (self.rate, self.burst);
        if !self.sources.contains_key(&ip) && self.sources.len() >= self.max_sources {
            self.sweep(now);
        }
        let bucket = if self.sources.contains_key(&ip) || self.sources.len() < self.max_sources {
            self.sources
                .entry(ip)
                .or_insert_with(|| Bucket::full(burst, now))
        } else {
            &mut self.overflow
        };
        bucket.refill(rate, burst, now);
        bucket.take(now)
    }

    /// Forgets sources whose bucket has refilled: they have been quiet long enough that a
    /// fresh full bucket is the same thing.
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        let (rate, burst) = (self.rate, self.burst);
        self.sources.retain(|_, b| {
            let mut b = *b;
            b.refill(rate, burst, now);
            b.tokens < burst
        });
    }

    /// Sources tracked now.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bid_budget_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = Budget::default();
        assert!((0..3).all(|_| take(&mut b, 2.0, 3.0, t0)), "it starts full");
        assert!(!take(&mut b, 2.0, 3.0, t0), "the burst is spent");
        let later = t0 + Duration::from_millis(500);
        assert!(take(&mut b, 2.0, 3.0, later), "one more after 1/rate");
        assert!(!take(&mut b, 2.0, 3.0, later));
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn a_burst_passes_then_the_rate_and_the_source_is_told_once_a_second() {
        let mut l = SourceLimiter::new(10.0, 5.0, 100);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(l.check(ip(1), t0), Verdict::Pass);
        }
        assert_eq!(l.check(ip(1), t0), Verdict::Limited { tell: true });
        assert_eq!(l.check(ip(1), t0), Verdict::Limited { tell: false });
        // Another source is not affected.
        assert_eq!(l.check(ip(2), t0), Verdict::Pass);
        // 10 per second: one more after 100 ms.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(l.check(ip(1), t1), Verdict::Pass);
        assert_eq!(l.check(ip(1), t1), Verdict::Limited { tell: false });
        // A second later the bucket is full again (5, not 10: the burst caps it), and the
        // source may be told again.
        let t2 = t0 + Duration::from_millis(1100);
        for _ in 0..5 {
            assert_eq!(l.check(ip(1), t2), Verdict::Pass);
        }
        assert_eq!(l.check(ip(1), t2), Verdict::Limited { tell: true });
    }

    #[test]
    fn spoofed_sources_cannot_grow_the_table() {
        let mut l = SourceLimiter::new(1.0, 2.0, 1000);
        let t0 = Instant::now();
        for n in 0..100_000 {
            l.check(ip(n), t0);
        }
        assert_eq!(l.tracked(), 1000);
        // The flood beyond the table shares one bucket: it is limited as a whole.
        assert!(matches!(l.check(ip(200_000), t0), Verdict::Limited { .. }));
        // A source already tracked keeps its own bucket.
        assert_eq!(l.check(ip(5), t0), Verdict::Pass);
        // Once the flood stops, idle sources are swept and new ones get their own bucket.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(l.check(ip(300_000), later), Verdict::Pass);
        assert!(l.tracked() <= 1000);
    }
}
