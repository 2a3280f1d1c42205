//! `loadgen readme`: README's performance figures, from the JSON reports of the three sets
//! `scripts/perf.sh` runs (issue 18: the section is generated, not typed by hand):
//! - the closed loop, `ROUNDS=3 scripts/bench.sh` (auction and TLS echo, back-to-back pairs);
//! - the channels, the same with `--items-per-bidder 20` (memory per channel, 10,000 channels);
//! - the knee, `KNEE_ROUNDS=3 scripts/knee.sh` (auction and relay at each rate).
//!
//! Compute, then render: [`Perf::of`] turns the reports into plain figures (medians, pairs,
//! verdicts against the targets), `markdown.rs` renders them, and `splice.rs` puts
//! the block between README's markers (or checks that it is there unchanged). Everything but
//! [`load_dir`] is pure; the caller (`main.rs`) owns the files.

mod markdown;
mod splice;

pub use splice::{splice, SpliceError, BEGIN, END};

use crate::knee::{self, Knees};
use crate::report::{Machine, Report, Subject};
use crate::rounds::{self, median};
use anyhow::{Context, Result};
use std::path::Path;

/// The closed loop's auction throughput at least this fraction of the TLS echo's.
pub const CLOSED_LOOP_MIN_RATIO: f64 = 0.5;
/// Server memory per open channel below this (bytes).
pub const MEMORY_MAX_PER_CHANNEL: f64 = 40.0 * 1024.0;
/// Channels the every-bidder-on-every-item run must hold without errors.
pub const CHANNELS_TARGET: usize = 10_000;
/// The auction's open-loop knee at least this fraction of the relay's.
pub const KNEE_MIN_RATIO: f64 = 0.5;
/// The open-loop rate the auction must sustain within the knee's latency limits.
pub const OPEN_LOOP_RATE: f64 = 20_000.0;

/// Met, not met, or not known from these reports (and why).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Met,
    NotMet,
    Unknown(&'static str),
}

impl Verdict {
    fn of(met: Option<bool>, unknown: &'static str) -> Verdict {
        match met {
            Some(true) => Verdict::Met,
            Some(false) => Verdict::NotMet,
            None => Verdict::Unknown(unknown),
        }
    }
}

/// Every figure of the performance block.
#[derive(Debug, Clone)]
pub struct Perf {
    /// The machine the first report was measured on.
    pub machine: Option<Machine>,
    /// Unix seconds of the first and the last run.
    pub first_run: Option<u64>,
    pub last_run: Option<u64>,
    pub closed: Option<PairSet>,
    pub channels: Option<PairSet>,
    pub knee: Option<KneeSet>,
    /// Reports with errors or a failed verification, in all three sets.
    pub failed_reports: usize,
}

/// A set of auction runs each followed by its TLS echo baseline (`scripts/bench.sh`).
#[derive(Debug, Clone)]
pub struct PairSet {
    /// The command that made the set, from the reports' settings.
    pub command: String,
    pub bidders: usize,
    pub items: usize,
    /// Seconds measured per run.
    pub duration_s: f64,
    /// Channels the auction runs opened (planned).
    pub channels: usize,
    pub rounds: Vec<PairRound>,
    /// Medians over the rounds of each figure of [`PairRound`].
    pub median: PairRound,
    /// Every auction run passed its verification and had no error.
    pub all_clean: bool,
}

/// One round of a [`PairSet`]: the auction run and its echo baseline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairRound {
    pub round: u32,
    pub auction_per_s: Option<f64>,
    pub echo_per_s: Option<f64>,
    /// auction / echo, this pair's.
    pub ratio: Option<f64>,
    /// Channel connections the server had open once they were (its gauge).
    pub channels_open: Option<f64>,
    /// Errors and unanswered bids of the auction run.
    pub errors: Option<f64>,
    /// The auction run verified (`None`: not asked for).
    pub verified: Option<bool>,
    pub rss_before_mib: Option<f64>,
    pub rss_with_mib: Option<f64>,
    pub rss_per_channel_kib: Option<f64>,
    pub tls_connect_p99_ms: Option<f64>,
    pub auction_server_us_per_answer: Option<f64>,
    pub echo_server_us_per_answer: Option<f64>,
    pub auction_loadgen_us_per_message: Option<f64>,
    pub echo_loadgen_us_per_message: Option<f64>,
}

/// The knee set: `loadgen knee`'s summary of its reports, and how they were made.
#[derive(Debug, Clone)]
pub struct KneeSet {
    pub command: String,
    pub duration_s: f64,
    pub knees: Knees,
}

/// The reports (schema `auction-loadgen/1`) among the `.json` files of `dir`, by file name;
/// other JSON there (`knee.json`) is left out, and a file that does not read is an error.
pub fn load_dir(dir: &Path) -> Result<Vec<Report>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let mut reports = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        if json["schema"] != crate::report::SCHEMA {
            continue;
        }
        reports.push(
            serde_json::from_value(json)
                .with_context(|| format!("{} is not a loadgen report", path.display()))?,
        );
    }
    Ok(reports)
}

impl Perf {
    /// The figures of the three sets (each may be empty: its rows then say so).
    pub fn of(closed: &[Report], channels: &[Report], knee: &[Report]) -> Perf {
        let all = || closed.iter().chain(channels).chain(knee);
        Perf {
            machine: all().next().map(|r| r.machine.clone()),
            first_run: all().map(|r| r.started_at).min(),
            last_run: all().map(|r| r.started_at).max(),
            closed: PairSet::of(closed),
            channels: PairSet::of(channels),
            knee: KneeSet::of(knee),
            failed_reports: all().filter(|r| r.failed()).count(),
        }
    }

    /// Closed loop: the auction answers at least half as many bids per second as the echo.
    pub fn closed_loop_verdict(&self) -> Verdict {
        let ratio = self.closed.as_ref().and_then(|c| c.median.ratio);
        Verdict::of(
            ratio.map(|r| r >= CLOSED_LOOP_MIN_RATIO),
            "no closed-loop pair",
        )
    }

    /// Memory: under 40 KiB per open channel (median over the channels set's rounds).
    pub fn memory_verdict(&self) -> Verdict {
        let kib = self
            .channels
            .as_ref()
            .and_then(|c| c.median.rss_per_channel_kib);
        Verdict::of(
            kib.map(|k| k * 1024.0 < MEMORY_MAX_PER_CHANNEL),
            "no memory figure (the runs need --metrics-url)",
        )
    }

    /// 10,000 channels open without errors in every round, and verified.
    pub fn channels_verdict(&self) -> Verdict {
        let Some(c) = &self.channels else {
            return Verdict::Unknown("no channels set");
        };
        let held = c.rounds.iter().all(|r| {
            r.channels_open.is_some_and(|n| n >= CHANNELS_TARGET as f64)
                && r.errors == Some(0.0)
                && r.verified != Some(false)
        });
        Verdict::of(
            Some(c.channels >= CHANNELS_TARGET && held && !c.rounds.is_empty()),
            "",
        )
    }

    /// The auction's knee at least half the relay's. A knee that was within at every rate
    /// tried is only a lower bound, which can leave the ratio unknown.
    pub fn knee_verdict(&self) -> Verdict {
        let Some(k) = &self.knee else {
            return Verdict::Unknown("no knee set");
        };
        let (a, r) = (&k.knees.auction, &k.knees.relay);
        let Some(ratio) = k.knees.ratio else {
            return match (a.knee, r.knee) {
                // The auction was over at its lowest rate, the relay was not.
                (None, Some(_)) => Verdict::NotMet,
                (None, None) => Verdict::Unknown(
                    "neither was within the limits at the lowest rate: try lower rates",
                ),
                _ => Verdict::Unknown("no knee for the relay: try lower rates"),
            };
        };
        let met = ratio >= KNEE_MIN_RATIO;
        match (a.first_over.is_none(), r.first_over.is_none()) {
            // The relay's knee is higher than measured: the ratio is at most this.
            (false, true) if met => {
                Verdict::Unknown("the relay was within at every rate: try higher rates")
            }
            // The auction's is higher than measured: the ratio is at least this.
            (true, false) if !met => {
                Verdict::Unknown("the auction was within at every rate: try higher rates")
            }
            (true, true) => Verdict::Unknown("both were within at every rate: try higher rates"),
            _ => Verdict::of(Some(met), ""),
        }
    }

    /// Open loop at 20,000 bids/s within the knee's limits: the auction's knee reaches it.
    pub fn open_loop_verdict(&self) -> Verdict {
        let Some(k) = &self.knee else {
            return Verdict::Unknown("no knee set");
        };
        let a = &k.knees.auction;
        match (a.knee, a.first_over) {
            (Some(knee), _) if knee >= OPEN_LOOP_RATE => Verdict::Met,
            (_, Some(over)) if over <= OPEN_LOOP_RATE => Verdict::NotMet,
            _ => Verdict::Unknown("no rate at or above 20,000 bids/s was tried"),
        }
    }

    /// Server CPU per delivered line at most 1.5 times the relay's, at every rate measured.
    pub fn cpu_verdict(&self) -> Verdict {
        let within: Vec<bool> = self
            .knee
            .iter()
            .flat_map(|k| k.knees.cpu.iter().filter_map(|c| c.within))
            .collect();
        if within.is_empty() {
            return Verdict::Unknown("no CPU figures (the runs need --metrics-url and Linux)");
        }
        Verdict::of(Some(within.iter().all(|&w| w)), "")
    }
}

impl PairSet {
    fn of(reports: &[Report]) -> Option<PairSet> {
        let refs: Vec<&Report> = reports.iter().collect();
        let round_of = rounds::assign(&refs);
        let find = |subject: Subject, round: u32| {
            refs.iter()
                .zip(&round_of)
                .find(|(r, n)| **n == round && r.subject() == subject)
                .map(|(r, _)| *r)
        };
        let mut numbers: Vec<u32> = refs
            .iter()
            .zip(&round_of)
            .filter(|(r, _)| r.subject() == Subject::Auction)
            .map(|(_, n)| *n)
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        let first = find(Subject::Auction, *numbers.first()?)?;
        let rounds: Vec<PairRound> = numbers
            .iter()
            .filter_map(|&n| {
                Some(PairRound::of(
                    n,
                    find(Subject::Auction, n)?,
                    find(Subject::Echo, n),
                ))
            })
            .collect();
        let c = &first.config;
        Some(PairSet {
            command: bench_command(first, rounds.len()),
            bidders: c.bidders,
            items: c.items,
            duration_s: c.duration_s,
            channels: first.spread.channels,
            median: PairRound::median_of(&rounds),
            all_clean: numbers
                .iter()
                .filter_map(|&n| find(Subject::Auction, n))
                .all(|r| !r.failed()),
            rounds,
        })
    }
}

impl PairRound {
    fn of(round: u32, auction: &Report, echo: Option<&Report>) -> PairRound {
        let server = auction.server.as_ref();
        let auction_per_s = Some(auction.throughput.answered_per_s);
        let echo_per_s = echo.map(|e| e.throughput.answered_per_s);
        let n = &auction.counts;
        PairRound {
            round,
            auction_per_s,
            echo_per_s,
            ratio: match (auction_per_s, echo_per_s) {
                (Some(a), Some(e)) if e > 0.0 => Some(a / e),
                _ => None,
            },
            channels_open: server.and_then(|s| s.open_connections),
            errors: Some((n.errors_total() + n.unanswered) as f64),
            verified: auction.verify.as_ref().map(|v| v.passed),
            rss_before_mib: server
                .and_then(|s| s.rss_before_channels_bytes)
                .map(|b| b / 1048576.0),
            rss_with_mib: server
                .and_then(|s| s.rss_with_channels_bytes)
                .map(|b| b / 1048576.0),
            rss_per_channel_kib: server
                .and_then(|s| s.rss_per_channel_bytes)
                .map(|b| b / 1024.0),
            tls_connect_p99_ms: auction
                .latency_us
                .tls_connect
                .as_ref()
                .map(|s| s.p99 as f64 / 1000.0),
            auction_server_us_per_answer: auction.cpu.server_us_per_answer,
            echo_server_us_per_answer: echo.and_then(|e| e.cpu.server_us_per_answer),
            auction_loadgen_us_per_message: auction.cpu.loadgen_us_per_message,
            echo_loadgen_us_per_message: echo.and_then(|e| e.cpu.loadgen_us_per_message),
        }
    }

    /// Each figure's median over the rounds (the ratio too: the median of the pairs').
    fn median_of(rounds: &[PairRound]) -> PairRound {
        let m = |f: fn(&PairRound) -> Option<f64>| median(rounds.iter().filter_map(f));
        PairRound {
            round: 0,
            auction_per_s: m(|r| r.auction_per_s),
            echo_per_s: m(|r| r.echo_per_s),
            ratio: m(|r| r.ratio),
            channels_open: m(|r| r.channels_open),
            errors: m(|r| r.errors),
            verified: None,
            rss_before_mib: m(|r| r.rss_before_mib),
            rss_with_mib: m(|r| r.rss_with_mib),
            rss_per_channel_kib: m(|r| r.rss_per_channel_kib),
            tls_connect_p99_ms: m(|r| r.tls_connect_p99_ms),
            auction_server_us_per_answer: m(|r| r.auction_server_us_per_answer),
            echo_server_us_per_answer: m(|r| r.echo_server_us_per_answer),
            auction_loadgen_us_per_message: m(|r| r.auction_loadgen_us_per_message),
            echo_loadgen_us_per_message: m(|r| r.echo_loadgen_us_per_message),
        }
    }
}

impl KneeSet {
    fn of(reports: &[Report]) -> Option<KneeSet> {
        let knees = knee::knee(reports);
        let first = reports
            .iter()
            .find(|r| r.subject() != Subject::Echo && r.config.target_rate.is_some())?;
        let mut rates: Vec<f64> = knees
            .auction
            .steps
            .iter()
            .chain(&knees.relay.steps)
            .map(|s| s.rate)
            .collect();
        rates.sort_by(f64::total_cmp);
        rates.dedup();
        let c = &first.config;
        let mut command = format!(
            "KNEE_ROUNDS={} KNEE_SECONDS={} KNEE_RATES=\"{}\"",
            knees.rounds.len(),
            seconds(c.duration_s),
            rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        if (c.bidders, c.items) != (500, 20) {
            command += &format!(" KNEE_BIDDERS={} KNEE_ITEMS={}", c.bidders, c.items);
        }
        command += " scripts/knee.sh";
        Some(KneeSet {
            command,
            duration_s: c.duration_s,
            knees,
        })
    }
}

/// The `scripts/bench.sh` command that makes reports like `r`, in `rounds` rounds.
fn bench_command(r: &Report, rounds: usize) -> String {
    let c = &r.config;
    let mut env = vec![format!("ROUNDS={rounds}")];
    if c.duration_s != 10.0 {
        env.push(format!("DURATION={}s", seconds(c.duration_s)));
    }
    if (c.bidders, c.items) != (500, 20) {
        env.push(format!("BIDDERS={} ITEMS={}", c.bidders, c.items));
    }
    let mut args = Vec::new();
    if c.items_per_bidder != crate::plan::default_items_per_bidder(c.bidders, c.items) {
        args.push(format!("--items-per-bidder {}", c.items_per_bidder));
    }
    if let Some(rate) = c.target_rate {
        args.push(format!("--rate {rate:.0}"));
    }
    if !args.is_empty() {
        env.push(format!("LOADGEN_ARGS=\"{}\"", args.join(" ")));
    }
    format!("{} scripts/bench.sh", env.join(" "))
}

/// Seconds as the scripts take them: `2`, `0.5`.
fn seconds(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s}")
    }
}

/// The block for README, markers included.
pub fn render(perf: &Perf) -> String {
    markdown::render(perf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(kind: &str, round: u32, per_s: f64) -> Report {
        let mut json = crate::report::tests::report_json();
        json["kind"] = kind.into();
        json["config"]["round"] = round.into();
        json["config"]["target_rate"] = serde_json::Value::Null;
        json["throughput"]["answered_per_s"] = per_s.into();
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn pairs_are_made_by_round_and_their_ratios_medianed() {
        let reports = vec![
            report("auction", 2, 300.0),
            report("baseline", 1, 1000.0),
            report("auction", 1, 100.0),
            report("baseline", 2, 1000.0),
            report("auction", 3, 500.0),
            report("baseline", 3, 1000.0),
        ];
        let set = PairSet::of(&reports).unwrap();
        let ratios: Vec<_> = set.rounds.iter().map(|r| (r.round, r.ratio)).collect();
        assert_eq!(ratios, [(1, Some(0.1)), (2, Some(0.3)), (3, Some(0.5))]);
        assert_eq!(set.median.ratio, Some(0.3));
        assert_eq!(set.median.auction_per_s, Some(300.0));
        assert_eq!(
            set.command,
            "ROUNDS=3 DURATION=1.5s BIDDERS=8 ITEMS=2 scripts/bench.sh"
        );
        let perf = Perf::of(&reports, &[], &[]);
        assert_eq!(perf.closed_loop_verdict(), Verdict::NotMet);
        assert!(matches!(perf.memory_verdict(), Verdict::Unknown(_)));
        assert!(PairSet::of(&[]).is_none());
    }

    #[test]
    fn commands_follow_the_settings() {
        let mut r = report("auction", 1, 1.0);
        r.config.bidders = 500;
        r.config.items = 20;
        r.config.items_per_bidder = 20;
        r.config.duration_s = 2.0;
        assert_eq!(
            bench_command(&r, 3),
            "ROUNDS=3 DURATION=2s LOADGEN_ARGS=\"--items-per-bidder 20\" scripts/bench.sh"
        );
        r.config.items_per_bidder = 1;
        r.config.duration_s = 10.0;
        assert_eq!(bench_command(&r, 1), "ROUNDS=1 scripts/bench.sh");
    }
}
