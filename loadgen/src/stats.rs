//! Counters and latency histograms shared by the simulated clients.
//!
//! Latencies are recorded in microseconds in HdrHistogram (3 significant digits, 1 µs to
//! 60 s; longer values count as 60 s). Each histogram sits behind its own mutex, held only to
//! record one value or to copy the histogram, never across an `.await`.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Highest value a histogram tracks, in microseconds.
pub const MAX_US: u64 = 60_000_000;
pub const SIGFIG: u8 = 3;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, SIGFIG).expect("valid histogram bounds")
}

/// A latency histogram several tasks record into.
pub struct Latency(Mutex<Histogram<u64>>);

impl Default for Latency {
    fn default() -> Latency {
        Latency(Mutex::new(new_histogram()))
    }
}

impl Latency {
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        self.lock().saturating_record(us);
    }

    pub fn snapshot(&self) -> Histogram<u64> {
        self.lock().clone()
    }

    /// The 99th percentile so far, for the progress line.
    pub fn p99(&self) -> Option<Duration> {
        let h = self.lock();
        (!h.is_empty()).then(|| Duration::from_micros(h.value_at_quantile(0.99)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Histogram<u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counts by name (rejection reasons, error kinds).
#[derive(Default)]
pub struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    pub fn add(&self, key: impl Into<String>) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.into())
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}

/// Answers per second of the measured phase, by whole second since its start.
pub struct PerSecond(Vec<AtomicU64>);

impl PerSecond {
    pub fn new(seconds: usize) -> PerSecond {
        PerSecond((0..seconds.max(1)).map(|_| AtomicU64::new(0)).collect())
    }

    pub fn add(&self, elapsed: Duration) {
        let i = (elapsed.as_secs() as usize).min(self.0.len() - 1);
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn values(&self, seconds: usize) -> Vec<u64> {
        self.0
            .iter()
            .take(seconds)
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

/// Percentiles of one histogram, in microseconds, as reports carry them.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Option<Summary> {
        if h.is_empty() {
            return None;
        }
        Some(Summary {
            count: h.len(),
            min: h.min(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_percentiles() {
        let l = Latency::default();
        for us in 1..=1000 {
            l.record(Duration::from_micros(us));
        }
        l.record(Duration::from_secs(3600)); // beyond the range: counted at the top
        let s = Summary::of(&l.snapshot()).unwrap();
        assert_eq!(s.count, 1001);
        assert_eq!(s.min, 1);
        assert_eq!(s.p50, 501);
        assert_eq!(s.p90, 901);
        assert!((MAX_US - MAX_US / 1000..=MAX_US + MAX_US / 1000).contains(&s.max));
        assert!(Summary::of(&new_histogram()).is_none());
    }

    #[test]
    fn per_second_clamps_late_answers_into_the_last_second() {
        let p = PerSecond::new(2);
        p.add(Duration::from_millis(100));
        p.add(Duration::from_millis(1500));
        p.add(Duration::from_secs(9));
        assert_eq!(p.values(2), vec![1, 2]);
    }
}
