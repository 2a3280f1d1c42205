//! The report: a stable JSON document (schema `auction-loadgen/1`, described in README
//! "Load generator") and the summary table printed at the end of a run.

use crate::scrape::ServerFigures;
use crate::stats::Summary;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

pub const SCHEMA: &str = "auction-loadgen/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    /// `"auction"` (the server under test) or `"baseline"` (the TLS echo server).
    pub kind: String,
    /// Unix seconds when the run started.
    pub started_at: u64,
    pub config: RunConfigReport,
    pub machine: Machine,
    pub spread: Spread,
    /// Seconds the measured phase lasted.
    pub elapsed_s: f64,
    pub counts: Counts,
    pub throughput: Throughput,
    /// Microseconds. `null` for a histogram with no values.
    pub latency_us: Latencies,
    pub verify: Option<Verification>,
    pub server: Option<ServerFigures>,
    /// Things the reader should know (a shortened run, no competition, ...).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfigReport {
    pub server: Option<String>,
    pub bidders: usize,
    pub items: usize,
    pub items_per_bidder: usize,
    pub duration_s: f64,
    /// `"closed"` (next bid after the answer to the last) or `"open"` (bids on a schedule).
    pub mode: String,
    pub target_rate: Option<f64>,
    pub seed: u64,
    pub verify: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub os: String,
    pub arch: String,
    pub loadgen_version: String,
}

impl Machine {
    pub fn this() -> Machine {
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            loadgen_version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spread {
    /// TLS channels opened (bidder x item pairs).
    pub channels: usize,
    pub bidders_per_item_min: usize,
    pub bidders_per_item_max: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Bids (or echo messages) sent in the measured phase.
    pub sent: u64,
    /// Sent and answered (accepted + rejected, or echoed).
    pub answered: u64,
    pub accepted: u64,
    /// Rejected bids by the server's reason.
    pub rejected: BTreeMap<String, u64>,
    /// Of the bids sent, how many were below the price on purpose.
    pub deliberately_low: u64,
    /// Sent and never answered.
    pub unanswered: u64,
    /// Failures by kind (connect, channel, timeout, ...).
    pub errors: BTreeMap<String, u64>,
}

impl Counts {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Throughput {
    pub answered_per_s: f64,
    pub accepted_per_s: f64,
    /// Open loop only: the rate asked for, and the answered rate as a fraction of it.
    pub target_rate: Option<f64>,
    pub achieved_fraction: Option<f64>,
    /// Answers in each whole second of the measured phase.
    pub per_second: Vec<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latencies {
    /// Send of a bid (or its scheduled time, open loop) -> its BID-ACCEPTED / BID-REJECTED.
    pub bid_round_trip: Option<Summary>,
    /// Send of an accepted bid -> the HIGHEST for it read by each other bidder on the item.
    pub fan_out: Option<Summary>,
    /// TCP connect + TLS handshake + the server's first line (STATE).
    pub tls_connect: Option<Summary>,
    /// REGISTER including the cookie round trip.
    pub udp_register: Option<Summary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verification {
    pub passed: bool,
    pub items_checked: usize,
    /// Each difference found, as a sentence.
    pub problems: Vec<String>,
}

impl Report {
    /// True when the run had errors or a verification failed (exit code 1).
    pub fn failed(&self) -> bool {
        self.counts.errors_total() > 0
            || self.counts.unanswered > 0
            || self.verify.as_ref().is_some_and(|v| !v.passed)
    }

    /// The summary table for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let c = &self.config;
        let what = if self.kind == "baseline" {
            "TLS echo baseline"
        } else {
            "auction"
        };
        let _ = writeln!(
            out,
            "{what}: {} bidders, {} items, {} channels ({}-{} bidders per item), {} loop{}, {:.1} s measured",
            c.bidders,
            c.items,
            self.spread.channels,
            self.spread.bidders_per_item_min,
            self.spread.bidders_per_item_max,
            c.mode,
            c.target_rate
                .map(|r| format!(" at {r:.0}/s target"))
                .unwrap_or_default(),
            self.elapsed_s
        );
        let n = &self.counts;
        if self.kind == "baseline" {
            let _ = writeln!(
                out,
                "  echoed {} of {} messages: {:.0}/s",
                n.answered, n.sent, self.throughput.answered_per_s
            );
        } else {
            let rejected: Vec<String> =
                n.rejected.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(
                out,
                "  bids sent {}, answered {} ({:.0}/s), accepted {} ({:.0}/s), rejected {}{}; {} sent below the price on purpose",
                n.sent,
                n.answered,
                self.throughput.answered_per_s,
                n.accepted,
                self.throughput.accepted_per_s,
                n.rejected_total(),
                if rejected.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", rejected.join(", "))
                },
                n.deliberately_low
            );
        }
        if let (Some(target), Some(f)) = (
            self.throughput.target_rate,
            self.throughput.achieved_fraction,
        ) {
            let _ = writeln!(
                out,
                "  achieved {:.0}/s of the {target:.0}/s asked for ({:.1} %)",
                self.throughput.answered_per_s,
                f * 100.0
            );
        }
        if n.errors_total() > 0 || n.unanswered > 0 {
            let errors: Vec<String> = n.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(
                out,
                "  ERRORS: {} unanswered, {}",
                n.unanswered,
                errors.join(", ")
            );
        } else {
            let _ = writeln!(out, "  no errors, every message answered");
        }
        let _ = writeln!(
            out,
            "\n  {:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        let rows = [
            ("bid round trip", &self.latency_us.bid_round_trip),
            ("fan-out", &self.latency_us.fan_out),
            ("TLS connect", &self.latency_us.tls_connect),
            ("UDP register", &self.latency_us.udp_register),
        ];
        for (name, s) in rows {
            let name = if self.kind == "baseline" && name == "bid round trip" {
                "echo round trip"
            } else {
                name
            };
            if let Some(s) = s {
                let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
                let _ = writeln!(
                    out,
                    "  {:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    name,
                    s.count,
                    ms(s.p50),
                    ms(s.p90),
                    ms(s.p99),
                    ms(s.p999),
                    ms(s.max)
                );
            }
        }
        if let Some(server) = &self.server {
            let _ = writeln!(out, "\n  server ({}):", server.url);
            for line in server.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
        if let Some(v) = &self.verify {
            if v.passed {
                let _ = writeln!(
                    out,
                    "\n  verified: {} items closed with the winner and price loadgen saw accepted; every bid answered",
                    v.items_checked
                );
            } else {
                let _ = writeln!(out, "\n  VERIFICATION FAILED:");
                for p in &v.problems {
                    let _ = writeln!(out, "    - {p}");
                }
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        out
    }
}
