//! Prometheus metrics (`auction-server --metrics ADDR`): the counters and gauges the server
//! keeps, and a small HTTP endpoint that serves them at `/metrics` in the OpenMetrics text
//! format. Each server has its own registry (tests run several servers in one process).
//!
//! Recording is a handful of atomic operations. Counters labelled by a reason the server
//! picks (a rejected bid's, a budget's) are looked up through [`ByReason`]: after the first use
//! a read lock and an atomic add, no label built, which matters on the bid path and under a
//! connection flood.
//!
//! The process figures (`process_resident_memory_bytes`, `process_cpu_seconds_total`) are read
//! from /proc when the page is rendered, on the metrics endpoint's task: nothing on the bid path
//! waits for them, and nothing here waits for storage.

use auction_protocol::Reason;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// A family of counters labelled `reason`, with the counter of each reason kept by a key the
/// caller already has (a `Reason`, a `&'static str`), so recording builds no label string after
/// the first time.
pub struct ByReason<K> {
    family: Family<ReasonLabel, Counter>,
    by_key: std::sync::RwLock<std::collections::HashMap<K, Counter>>,
}

impl<K: std::hash::Hash + Eq + Copy> ByReason<K> {
    fn new() -> ByReason<K> {
        ByReason {
            family: Family::default(),
            by_key: Default::default(),
        }
    }

    /// Counts one for `key`, whose label is `label(key)`.
    fn inc(&self, key: K, label: impl FnOnce(K) -> String) {
        let known = self
            .by_key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        let counter = known.unwrap_or_else(|| {
            let counter = self
                .family
                .get_or_create(&ReasonLabel { reason: label(key) })
                .clone();
            self.by_key
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, counter.clone());
            counter
        });
        counter.inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

pub struct Metrics {
    registry: Registry,
    pub bids_accepted: Counter,
    bids_rejected: ByReason<Reason>,
    pub open_items: Gauge,
    pub connections: Gauge,
    pub connections_total: Counter,
    pub registrations: Counter,
    pub commit_batch: Histogram,
    pub commit_duration: Histogram,
    pub outgoing_dropped: Family<KindLabel, Counter>,
    /// Channel and settlement connections refused by a connection budget.
    refused: ByReason<&'static str>,
    /// Registration-plane requests refused by a budget (items, accounts, offers).
    requests_refused: ByReason<&'static str>,
    pub udp_limited: Counter,
    resident_memory: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            bids_accepted: Counter::default(),
            bids_rejected: ByReason::new(),
            open_items: Gauge::default(),
            connections: Gauge::default(),
            connections_total: Counter::default(),
            registrations: Counter::default(),
            // 1, 2, 4, ... 4096 changes per commit.
            commit_batch: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            // 50 us .. ~1.6 s.
            commit_duration: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            outgoing_dropped: Family::default(),
            refused: ByReason::new(),
            requests_refused: ByReason::new(),
            udp_limited: Counter::default(),
            resident_memory: Gauge::default(),
            registry: Registry::default(),
        };
        let registry = &mut m.registry;
        registry.register(
            "auction_bids_accepted",
            "Bids accepted (each bid once; a resent bid id is not counted again)",
            m.bids_accepted.clone(),
        );
        registry.register(
            "auction_bids_rejected",
            "Bids rejected, by reason",
            m.bids_rejected.family.clone(),
        );
        registry.register(
            "auction_open_items",
            "Auctions open for bidding",
            m.open_items.clone(),
        );
        registry.register(
            "auction_channel_connections",
            "Bidding channel connections open (handshake done, joined the item)",
            m.connections.clone(),
        );
        registry.register(
            "auction_channel_connections_accepted",
            "Bidding channel connections that completed the handshake and joined",
            m.connections_total.clone(),
        );
        registry.register(
            "auction_registrations",
            "Accounts registered (not counting repeated registrations of the same key)",
            m.registrations.clone(),
        );
        registry.register(
            "auction_commit_batch_changes",
            "Changes (one request's or one bid's records) per database commit",
            m.commit_batch.clone(),
        );
        registry.register(
            "auction_commit_duration_seconds",
            "Time per database commit, fsync included",
            m.commit_duration.clone(),
        );
        registry.register(
            "auction_outgoing_dropped",
            "Connections dropped for not reading: queue full, or a write that timed out",
            m.outgoing_dropped.clone(),
        );
        registry.register(
            "auction_channel_refused",
            "Channel and settlement connections refused by a connection budget, by reason",
            m.refused.family.clone(),
        );
        registry.register(
            "auction_requests_refused",
            "Registration requests refused by a budget, by reason",
            m.requests_refused.family.clone(),
        );
        registry.register(
            "auction_udp_rate_limited",
            "UDP datagrams dropped by the per-source rate limit",
            m.udp_limited.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the server process (Linux; 0 elsewhere)",
            m.resident_memory.clone(),
        );
        registry.register_collector(Box::new(ProcessCpu));
        m
    }

    /// Counts a rejected bid (on the bid path: no label built after the first time).
    pub fn bid_rejected(&self, reason: Reason) {
        self.bids_rejected.inc(reason, Reason::code);
    }

    /// Counts a connection refused by a connection budget (`net::budget::Over::label`).
    pub fn refused(&self, reason: &'static str) {
        self.refused.inc(reason, str::to_owned);
    }

    /// Counts a registration-plane request refused by a budget.
    pub fn request_refused(&self, reason: &'static str) {
        self.requests_refused.inc(reason, str::to_owned);
    }

    pub fn dropped(&self, kind: &str) {
        self.outgoing_dropped
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub fn commit(&self, changes: usize, took: Duration) {
        self.commit_batch.observe(changes as f64);
        self.commit_duration.observe(took.as_secs_f64());
    }

    /// The metrics page (OpenMetrics text).
    pub fn render(&self) -> String {
        self.resident_memory
            .set(resident_memory_bytes().unwrap_or(0));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// VmRSS of this process from /proc (Linux).
fn resident_memory_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `process_cpu_seconds_total`: the user and system CPU time of the whole process (every
/// thread), read on each scrape. Where it cannot be read (not Linux) the sample is left out
/// rather than reported as 0: a reader must not take a missing figure for an idle server.
#[derive(Debug)]
struct ProcessCpu;

impl Collector for ProcessCpu {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(seconds) = cpu_seconds() else {
            return Ok(());
        };
        let counter = ConstCounter::new(seconds);
        let metric = encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time of the server process, seconds (Linux)",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

/// User + system CPU seconds of this process: /proc/self/stat's clock ticks over the tick
/// rate (Linux; 1/100 s resolution on common kernels).
fn cpu_seconds() -> Option<f64> {
    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let hz = rustix::param::clock_ticks_per_second();
        let ticks = cpu_ticks(&stat)?;
        (hz > 0).then(|| ticks as f64 / hz as f64)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// utime + stime (fields 14 and 15, in clock ticks) of a /proc/PID/stat line. Field 2, the
/// command name, is in parentheses and may itself hold spaces and parentheses, so fields are
/// counted from the last `)`. `None` for anything that is not such a line.
///
/// loadgen reads the same line for its own CPU and the baseline server's (`loadgen/src/cpu.rs`):
/// the two crates share no library but the wire protocol's, which is no place for this.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: state (3), ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt,
    // majflt, cmajflt (13), then utime (14) and stime (15).
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_its_values() {
        let m = Metrics::new();
        m.bids_accepted.inc();
        m.bids_accepted.inc();
        m.bid_rejected(Reason::TooLow);
        m.commit(12, Duration::from_micros(300));
        m.dropped("queue-full");
        let text = m.render();
        assert!(text.contains("auction_bids_accepted_total 2"), "{text}");
        assert!(text.contains("auction_bids_rejected_total{reason=\"too-low\"} 1"));
        assert!(text.contains("auction_commit_batch_changes_sum 12.0"));
        assert!(text.contains("auction_commit_batch_changes_count 1"));
        assert!(text.contains("auction_outgoing_dropped_total{kind=\"queue-full\"} 1"));
        assert!(text.contains("process_resident_memory_bytes "));
        #[cfg(target_os = "linux")]
        assert!(resident_memory_bytes().unwrap() > 0);
        assert!(text.ends_with("# EOF\n"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reports_the_process_cpu_time() {
        // Burn a little CPU so the counter has moved past 0 even at 1/100 s resolution.
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let text = Metrics::new().render();
        assert!(
            text.contains("# TYPE process_cpu_seconds counter"),
            "{text}"
        );
        let line = text
            .lines()
            .find(|l| l.starts_with("process_cpu_seconds_total "))
            .expect("the sample");
        let seconds: f64 = line.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(seconds > 0.0 && seconds < 1e7, "{line}");
        assert!(cpu_seconds().unwrap() >= seconds);
    }

    #[test]
    fn reads_cpu_ticks_from_a_stat_line() {
        // A command name with spaces and parentheses; utime 1234, stime 56.
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 900 0 2 0 1234 56 0 0 20 0 9 0 100 200000 300";
        assert_eq!(cpu_ticks(line), Some(1290));
        for odd in [
            "",
            ")",
            "4242 (x",
            "4242 (x) S 1 2 3",
            "4242 (x) S 1 4242 4242 0 -1 4194560 900 0 2 0 -5 56",
            "4242 (x) S 1 4242 4242 0 -1 4194560 900 0 2 0 12é4 56",
            "4242 (x) S 1 4242 4242 0 -1 4194560 900 0 2 0 18446744073709551615 1",
        ] {
            assert_eq!(cpu_ticks(odd), None, "{odd:?}");
        }
    }
}
