//! The report: a stable JSON document (schema `auction-loadgen/1`, described in README
//! "Load generator") and the summary table printed at the end of a run.
//!
//! Compute, then render: a run (the auction's or a baseline's) hands over what it found as
//! plain data (`RunFigures`), `Report::of` builds the report from it (rates, rounding,
//! percentiles), and the report renders itself as the table ([`Report::table`]) or, through
//! serde, as JSON. The `cpu` block is in `cpu.rs`.

mod cpu;

pub use self::cpu::{delivered, Cpu};

use crate::scrape::ServerFigures;
use crate::stats::Summary;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

pub const SCHEMA: &str = "auction-loadgen/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    /// `"auction"` (the server under test) or `"baseline"` (the TLS echo server, or with
    /// `config.fan_out` the TLS relay).
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
    /// The percentile distributions behind the latency plots (`--html`), in microseconds.
    /// Empty lists in reports written before loadgen kept them.
    #[serde(default)]
    pub latency_curves_us: LatencyCurves,
    pub verify: Option<Verification>,
    pub server: Option<ServerFigures>,
    /// CPU time of the server and of loadgen over the measured phase, and per message. All
    /// `null` in reports written before loadgen measured it.
    #[serde(default)]
    pub cpu: Cpu,
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
    /// A baseline report of the TLS relay (`loadgen baseline --fan-out`): each line is
    /// answered and written to every other connection of its item. False for the echo, for
    /// an auction run and in reports written before the relay existed.
    #[serde(default)]
    pub fan_out: bool,
    /// `--round N`: which round of a set of back-to-back runs this was (`scripts/bench.sh`,
    /// `scripts/knee.sh`), so medians over rounds pair each run with its partner. Absent when
    /// not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
}

/// What a report measured: the server under test or one of the two baselines. Every label
/// that differs between them comes from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Auction,
    /// `loadgen baseline`: each line echoed to its sender.
    Echo,
    /// `loadgen baseline --fan-out`: each line answered and relayed to the item's others.
    Relay,
}

impl Subject {
    /// The report's `kind`.
    pub fn kind(self) -> &'static str {
        match self {
            Subject::Auction => "auction",
            Subject::Echo | Subject::Relay => "baseline",
        }
    }

    /// What the run was, for titles and the first line of the table.
    pub fn title(self) -> &'static str {
        match self {
            Subject::Auction => "auction",
            Subject::Echo => "TLS echo baseline",
            Subject::Relay => "TLS relay baseline",
        }
    }

    /// The name of `latency_us.bid_round_trip` in tables.
    pub fn round_trip(self) -> &'static str {
        match self {
            Subject::Auction => "bid round trip",
            Subject::Echo => "echo round trip",
            Subject::Relay => "relay round trip",
        }
    }

    /// The name of `latency_us.fan_out` in tables.
    pub fn fan_out(self) -> &'static str {
        match self {
            Subject::Relay => "relay fan-out",
            Subject::Auction | Subject::Echo => "fan-out",
        }
    }

    /// What `throughput.per_second` counts.
    pub fn answers_per_s(self) -> &'static str {
        match self {
            Subject::Auction => "bids answered/s",
            Subject::Echo => "TLS echoes/s",
            Subject::Relay => "relay answers/s",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub os: String,
    pub arch: String,
    pub loadgen_version: String,
    /// The kernel's release (Linux: /proc/sys/kernel/osrelease); absent where unknown and in
    /// older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Physical memory (Linux: MemTotal of /proc/meminfo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// The processor's model name (Linux: /proc/cpuinfo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
}

impl Machine {
    pub fn this() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            loadgen_version: env!("CARGO_PKG_VERSION").into(),
            kernel: read("/proc/sys/kernel/osrelease").map(|k| k.trim().to_owned()),
            memory_bytes: read("/proc/meminfo").and_then(|m| {
                let kib = m.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
                Some(kib.split_whitespace().next()?.parse::<u64>().ok()? * 1024)
            }),
            cpu_model: read("/proc/cpuinfo").and_then(|c| {
                let line = c.lines().find(|l| l.starts_with("model name"))?;
                Some(line.split_once(':')?.1.trim().to_owned())
            }),
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
    /// Channels a bidder reopened after they broke (a server restart, a cluster's failover);
    /// a bid waiting on one was sent again with its id.
    #[serde(default)]
    pub reconnected: u64,
    /// Failures by kind (connect, channel, timeout, ...).
    pub errors: BTreeMap<String, u64>,
    /// Relay baseline only: copies of the lines sent that were due to the other connections
    /// of their items (each line goes to every other connection of its listener)...
    #[serde(default)]
    pub relay_due: u64,
    /// ...and how many of them the connections read. The difference is what the relay
    /// skipped for a reader whose queue was full, or what was still in flight when the run
    /// stopped waiting for it: not an error, as coalesced HIGHESTs are not in an auction run.
    #[serde(default)]
    pub relayed: u64,
    /// Auction run only: HIGHEST messages the bidders read in the measured phase (for their own
    /// bids too: the server writes each to every connection of the item; coalesced ones a
    /// reader skipped never arrive). The fan-out lines the server delivered, for `cpu`.
    #[serde(default)]
    pub highest_received: u64,
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
    /// Send of an accepted bid -> the HIGHEST for it read by each other bidder on the item
    /// (relay baseline: send of a line -> its copy read by each other connection of the item).
    pub fan_out: Option<Summary>,
    /// TCP connect + TLS handshake + the server's first line (STATE).
    pub tls_connect: Option<Summary>,
    /// REGISTER including the cookie round trip.
    pub udp_register: Option<Summary>,
    /// Open loop: how late loadgen sent each bid after its scheduled time (a timer's
    /// granularity, and loadgen waiting for its share of the CPU). The round trip counts from
    /// the scheduled time and includes it; the fan-out counts from the send and does not.
    /// Absent in closed loop and in older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lag: Option<Summary>,
}

/// Curves of the classic HdrHistogram plot: the steps of the `.hgrm` distribution
/// ([`crate::hgrm::percentile_steps`]), enough to draw a run again from its JSON report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencyCurves {
    /// Of `latency_us.bid_round_trip` (the echo round trip in a baseline report).
    #[serde(default)]
    pub bid_round_trip: Vec<CurvePoint>,
    #[serde(default)]
    pub fan_out: Vec<CurvePoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// 0 to 1.
    pub percentile: f64,
    /// The highest latency at or below which `percentile` of the values fall.
    pub us: u64,
}

impl LatencyCurves {
    pub fn of(round_trip: &Histogram<u64>, fan_out: &Histogram<u64>) -> LatencyCurves {
        let curve = |h| {
            crate::hgrm::percentile_steps(h)
                .into_iter()
                .map(|s| CurvePoint {
                    percentile: s.percentile,
                    us: s.value_us,
                })
                .collect()
        };
        LatencyCurves {
            bid_round_trip: curve(round_trip),
            fan_out: curve(fan_out),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verification {
    pub passed: bool,
    pub items_checked: usize,
    /// Each difference found, as a sentence.
    pub problems: Vec<String>,
}

/// What a run (an auction run or a baseline) found, as plain data: the run as asked for, and
/// its counts, histograms, verification and server figures once every bidder has stopped.
/// [`Report::of`] builds the report from it.
#[derive(Debug, Clone)]
pub(crate) struct RunFigures {
    pub subject: Subject,
    /// Unix seconds when the run started.
    pub started_at: u64,
    /// The auction server's UDP address (`None` for a baseline: its server is loadgen's own).
    pub server: Option<SocketAddr>,
    pub bidders: usize,
    pub items: usize,
    /// As planned (`--items-per-bidder` or the default spread).
    pub items_per_bidder: usize,
    /// The measured phase asked for (`--duration`).
    pub duration: Duration,
    /// `--rate`: open loop at this many bids per second; `None` = closed loop.
    pub rate: Option<f64>,
    pub seed: u64,
    pub machine: Machine,
    pub spread: Spread,
    /// How long the measured phase really lasted.
    pub elapsed: Duration,
    pub counts: Counts,
    /// Answers in each second of the measured phase, as many seconds as it lasted (rounded up).
    pub per_second: Vec<u64>,
    pub round_trip: Histogram<u64>,
    pub fan_out: Histogram<u64>,
    pub tls_connect: Histogram<u64>,
    pub udp_register: Histogram<u64>,
    /// Sent minus scheduled, per bid (reported in open loop only).
    pub send_lag: Histogram<u64>,
    /// `None` when `--verify` was not given.
    pub verify: Option<Verification>,
    /// `None` without `--metrics-url` or when a scrape failed.
    pub server_figures: Option<ServerFigures>,
    /// CPU seconds the server and loadgen used over the measured phase.
    pub cpu: crate::cpu::Spent,
    pub notes: Vec<String>,
}

impl Report {
    /// The report of a run.
    pub(crate) fn of(run: &RunFigures) -> Report {
        let secs = run.elapsed.as_secs_f64().max(1e-9);
        let (answered, accepted) = (run.counts.answered, run.counts.accepted);
        Report {
            schema: SCHEMA.into(),
            kind: run.subject.kind().into(),
            started_at: run.started_at,
            config: RunConfigReport {
                server: run.server.map(|s| s.to_string()),
                bidders: run.bidders,
                items: run.items,
                items_per_bidder: run.items_per_bidder,
                duration_s: run.duration.as_secs_f64(),
                mode: if run.rate.is_some() { "open" } else { "closed" }.into(),
                target_rate: run.rate,
                seed: run.seed,
                verify: run.verify.is_some(),
                fan_out: run.subject == Subject::Relay,
                round: None,
            },
            machine: run.machine.clone(),
            spread: run.spread.clone(),
            elapsed_s: (secs * 1000.0).round() / 1000.0,
            counts: run.counts.clone(),
            throughput: Throughput {
                answered_per_s: (answered as f64 / secs).round(),
                accepted_per_s: (accepted as f64 / secs).round(),
                target_rate: run.rate,
                achieved_fraction: run
                    .rate
                    .map(|r| ((answered as f64 / secs) / r * 1000.0).round() / 1000.0),
                per_second: run.per_second.clone(),
            },
            latency_us: Latencies {
                bid_round_trip: Summary::of(&run.round_trip),
                fan_out: Summary::of(&run.fan_out),
                tls_connect: Summary::of(&run.tls_connect),
                udp_register: Summary::of(&run.udp_register),
                send_lag: run.rate.and_then(|_| Summary::of(&run.send_lag)),
            },
            latency_curves_us: LatencyCurves::of(&run.round_trip, &run.fan_out),
            verify: run.verify.clone(),
            server: run.server_figures.clone(),
            cpu: Cpu::of(run.subject, run.cpu.server, run.cpu.loadgen, &run.counts),
            notes: run.notes.clone(),
        }
    }
}

impl Report {
    /// What the report measured.
    pub fn subject(&self) -> Subject {
        match (self.kind.as_str(), self.config.fan_out) {
            ("baseline", true) => Subject::Relay,
            ("baseline", false) => Subject::Echo,
            _ => Subject::Auction,
        }
    }

    /// True when the run had errors or a verification failed (exit code 1).
    pub fn failed(&self) -> bool {
        self.counts.errors_total() > 0
            || self.counts.unanswered > 0
            || self.verify.as_ref().is_some_and(|v| !v.passed)
    }

    /// The summary table for people.
    /// The latency table's rows, named for the report's subject: one list for every format
    /// (the text table here, `html.rs`'s).
    pub fn latency_rows(&self) -> [(&'static str, &Option<Summary>); 5] {
        let (l, subject) = (&self.latency_us, self.subject());
        [
            (subject.round_trip(), &l.bid_round_trip),
            (subject.fan_out(), &l.fan_out),
            ("TLS connect", &l.tls_connect),
            ("UDP register", &l.udp_register),
            ("send lag", &l.send_lag),
        ]
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let c = &self.config;
        let subject = self.subject();
        let what = subject.title();
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
        if subject == Subject::Echo {
            let _ = writeln!(
                out,
                "  echoed {} of {} messages: {:.0}/s",
                n.answered, n.sent, self.throughput.answered_per_s
            );
        } else if subject == Subject::Relay {
            let _ = writeln!(
                out,
                "  answered {} of {} lines ({:.0}/s); relayed {} of the {} copies due to the other connections of their items{}",
                n.answered,
                n.sent,
                self.throughput.answered_per_s,
                n.relayed,
                n.relay_due,
                match n.relay_due.saturating_sub(n.relayed) {
                    0 => String::new(),
                    skipped => format!(" ({skipped} skipped for readers behind, or still in flight at the end)"),
                }
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
        if n.reconnected > 0 {
            let _ = writeln!(
                out,
                "  {} channel(s) reopened after they broke (a bid waiting on one was sent again with its id)",
                n.reconnected
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
        for (name, s) in self.latency_rows() {
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
        let _ = writeln!(out, "\n  CPU over the measured phase (user + system):");
        for line in self.cpu.lines(subject) {
            let _ = writeln!(out, "    {line}");
        }
        if let Some(v) = &self.verify {
            if v.passed {
                let _ = writeln!(
                    out,
                    "\n  verified: {} items closed with the winner and price loadgen saw accepted (unsold where that was below a reserve); every bid answered",
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stats::new_histogram;

    /// An open-loop auction report as JSON, for other modules' tests to vary.
    pub(crate) fn report_json() -> serde_json::Value {
        serde_json::to_value(Report::of(&figures())).unwrap()
    }

    fn figures() -> RunFigures {
        let mut round_trip = new_histogram();
        for us in 1..=300 {
            round_trip.record(us).unwrap();
        }
        let mut send_lag = new_histogram();
        send_lag.record(1000).unwrap();
        RunFigures {
            subject: Subject::Auction,
            started_at: 1_700_000_000,
            server: Some("127.0.0.1:7400".parse().unwrap()),
            bidders: 8,
            items: 2,
            items_per_bidder: 1,
            duration: Duration::from_millis(1500),
            rate: Some(400.0),
            seed: 7,
            machine: Machine::this(),
            spread: Spread {
                channels: 8,
                bidders_per_item_min: 4,
                bidders_per_item_max: 4,
            },
            elapsed: Duration::from_millis(1500),
            counts: Counts {
                sent: 300,
                answered: 300,
                accepted: 150,
                ..Counts::default()
            },
            per_second: vec![200, 100],
            round_trip,
            fan_out: new_histogram(),
            tls_connect: new_histogram(),
            udp_register: new_histogram(),
            send_lag,
            verify: None,
            server_figures: None,
            cpu: crate::cpu::Spent {
                server: Some(0.3),
                loadgen: None,
            },
            notes: vec!["a note".into()],
        }
    }

    #[test]
    fn auction_report_from_figures() {
        let r = Report::of(&figures());
        assert_eq!((r.schema.as_str(), r.kind.as_str()), (SCHEMA, "auction"));
        assert_eq!(r.config.server.as_deref(), Some("127.0.0.1:7400"));
        assert_eq!(r.config.mode, "open");
        assert!(!r.config.verify);
        assert_eq!(r.config.duration_s, 1.5);
        assert_eq!(r.elapsed_s, 1.5);
        assert_eq!(r.throughput.answered_per_s, 200.0);
        assert_eq!(r.throughput.accepted_per_s, 100.0);
        // 200/s answered of the 400/s asked for.
        assert_eq!(r.throughput.achieved_fraction, Some(0.5));
        assert_eq!(r.throughput.per_second, vec![200, 100]);
        assert_eq!(r.latency_us.bid_round_trip.as_ref().unwrap().count, 300);
        assert!(r.latency_us.fan_out.is_none());
        // The curve climbs to every value recorded.
        let curve = &r.latency_curves_us.bid_round_trip;
        assert_eq!(curve.last().map(|p| (p.percentile, p.us)), Some((1.0, 300)));
        assert!(curve.windows(2).all(|w| w[0].us <= w[1].us));
        assert!(r.latency_curves_us.fan_out.is_empty());
        assert_eq!(r.notes, vec!["a note".to_string()]);
        assert!(!r.failed());
        // 0.3 s of server CPU over 300 answers; loadgen's not measured.
        assert_eq!(r.cpu.server_us_per_answer, Some(1000.0));
        assert_eq!(r.cpu.loadgen_us_per_message, None);
        let table = r.table();
        assert!(
            table.contains("server 0.30 s: 1000.00 µs per answer"),
            "{table}"
        );
        assert!(table.contains("loadgen: not measured"), "{table}");
    }

    /// Reports written before the curves were kept still read, with no curve to draw.
    #[test]
    fn reports_without_curves_still_read() {
        let mut json = serde_json::to_value(Report::of(&figures())).unwrap();
        assert!(json["latency_curves_us"]["bid_round_trip"].is_array());
        json.as_object_mut().unwrap().remove("latency_curves_us");
        // Nor had they the CPU block, the machine's details or the HIGHEST count.
        json.as_object_mut().unwrap().remove("cpu");
        json["machine"].as_object_mut().unwrap().remove("kernel");
        json["counts"]
            .as_object_mut()
            .unwrap()
            .remove("highest_received");
        let r: Report = serde_json::from_value(json).unwrap();
        assert_eq!(r.cpu, Cpu::default());
        assert!(r.latency_curves_us.bid_round_trip.is_empty());
        assert_eq!(r.counts.sent, 300);
    }

    #[test]
    fn closed_loop_with_verification() {
        let r = Report::of(&RunFigures {
            rate: None,
            send_lag: new_histogram(),
            verify: Some(Verification {
                passed: true,
                items_checked: 2,
                problems: vec![],
            }),
            ..figures()
        });
        assert_eq!(r.config.mode, "closed");
        assert!(r.config.verify);
        assert_eq!(r.throughput.target_rate, None);
        assert_eq!(r.throughput.achieved_fraction, None);
        assert!(
            r.latency_us.send_lag.is_none(),
            "no schedule to be late for"
        );
    }

    #[test]
    fn open_loop_reports_how_late_bids_were_sent() {
        let r = Report::of(&figures());
        assert_eq!(r.latency_us.send_lag.as_ref().map(|s| s.count), Some(1));
        assert!(r.table().contains("send lag"), "{}", r.table());
    }
}
