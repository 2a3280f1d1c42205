//! `loadgen knee`: from open-loop reports at rising rates (`scripts/knee.sh`), the knee of the
//! auction and of the relay baseline (`baseline --fan-out`): the highest rate at which the p99
//! bid round trip is within [`ROUND_TRIP_P99_US`] and the p99 fan-out within
//! [`FAN_OUT_P99_US`], and the auction's knee as a fraction of the relay's. Beside it, at each
//! rate, the server's CPU per delivered line of the auction against the relay's (issue 18:
//! at most [`CPU_RATIO_MAX`] times) and loadgen's own CPU per message in both.
//!
//! Several rounds of the whole ladder (`KNEE_ROUNDS`): each round's knees and ratio are found
//! on their own ([`Round`]), then the median knee of each and their ratio, with the
//! per-round values; each rate's figures are the medians over the rounds, and each CPU ratio
//! is the median of the rounds' pairs (an auction step and the relay step run right after it).
//!
//! Compute, then render: [`knee`] turns reports into a plain [`Knees`] (serialized as the JSON
//! summary), and [`Knees::text`] (`text.rs`) renders it for people. A rate counts only below
//! the first rate that was over the limits: a lucky step above a failed one is noise, not a
//! knee. Limits are what the issue asks of the auction, not a pass or fail: the exit code says
//! only whether a report had errors or failed verification.

mod text;

use crate::report::{Report, Subject};
use crate::rounds::{self, lower_median, median};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// p99 bid round trip at or below this (µs) for a rate to be within the knee...
pub const ROUND_TRIP_P99_US: u64 = 5_000;
/// ...and p99 fan-out at or below this (µs).
pub const FAN_OUT_P99_US: u64 = 10_000;
/// The auction server's CPU per HIGHEST delivered at most this many times the relay's per line
/// relayed, at the same rate (issue 18).
pub const CPU_RATIO_MAX: f64 = 1.5;

pub const SCHEMA: &str = "auction-loadgen-knee/1";

/// The JSON summary of a knee run (fields are only ever added within the schema).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Knees {
    pub schema: String,
    pub limits: Limits,
    /// Each rate's figures: with one round, that round's; with several, the medians over the
    /// rounds, and `knee` / `first_over` the medians of the rounds' (each round's in `rounds`).
    pub auction: Curve,
    pub relay: Curve,
    /// The auction's median knee / the relay's median knee; `None` when either is none (the
    /// median round was over the limits at the lowest rate). Each round's own ratio is in
    /// `rounds`, for information: a round where one side had no knee has none.
    pub ratio: Option<f64>,
    /// A report had errors or failed verification (exit code 1).
    pub failed: bool,
    /// Each round's own curves, knees and ratio, in round order. Empty in older summaries.
    #[serde(default)]
    pub rounds: Vec<Round>,
    /// Server CPU per delivered line and loadgen's per message, auction against relay, at each
    /// rate both were run. Empty in older summaries.
    #[serde(default)]
    pub cpu: Vec<CpuAtRate>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    pub p99_round_trip_ms: f64,
    pub p99_fan_out_ms: f64,
    /// [`CPU_RATIO_MAX`]; absent in older summaries.
    #[serde(default)]
    pub cpu_ratio_max: Option<f64>,
}

/// One system's steps, by rate, and its knee.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Curve {
    pub steps: Vec<Step>,
    /// The highest rate within the limits below the first rate over them (bids/s); `None`
    /// when the lowest rate was over them already, or there was no step.
    pub knee: Option<f64>,
    /// The first rate over the limits: the knee lies between `knee` and this.
    pub first_over: Option<f64>,
}

/// One open-loop report's figures, or at one rate the medians over the rounds' reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Step {
    /// Bids (lines) per second asked for.
    pub rate: f64,
    pub answered_per_s: f64,
    pub achieved_fraction: Option<f64>,
    pub p99_round_trip_ms: Option<f64>,
    pub p99_fan_out_ms: Option<f64>,
    /// How late loadgen sent the bids (p99, `latency_us.send_lag`); absent in older summaries.
    #[serde(default)]
    pub p99_send_lag_ms: Option<f64>,
    /// Both p99s within the limits and no error.
    pub within: bool,
    /// The report had errors or failed verification.
    pub failed: bool,
    /// `cpu.server_us_per_delivered` of the report: µs of server CPU per HIGHEST read
    /// (auction) or per copy read (relay).
    #[serde(default)]
    pub server_us_per_delivered: Option<f64>,
    /// `cpu.server_us_per_message`: per answer or delivered line.
    #[serde(default)]
    pub server_us_per_message: Option<f64>,
    /// `cpu.loadgen_us_per_message`: loadgen's CPU per message sent or read.
    #[serde(default)]
    pub loadgen_us_per_message: Option<f64>,
    /// How many reports (rounds) the figures are the medians of.
    #[serde(default = "one")]
    pub reports: usize,
}

fn one() -> usize {
    1
}

/// One round of the ladder on its own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Round {
    pub round: u32,
    pub auction: Curve,
    pub relay: Curve,
    /// This round's auction knee / relay knee.
    pub ratio: Option<f64>,
}

/// At one rate: the server's CPU per delivered line, auction against relay, and loadgen's per
/// message, each the median over the rounds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CpuAtRate {
    pub rate: f64,
    /// Server µs per HIGHEST the bidders read.
    pub auction_server_us_per_delivered: Option<f64>,
    /// Relay server µs per copy its connections read.
    pub relay_server_us_per_delivered: Option<f64>,
    /// The median of the rounds' auction / relay at this rate...
    pub ratio: Option<f64>,
    /// ...and each round's (only rounds where both were measured).
    pub ratios: Vec<f64>,
    /// `ratio` <= [`CPU_RATIO_MAX`]; `None` without a ratio.
    pub within: Option<bool>,
    /// Server µs per message written (answers + delivered lines), auction and relay.
    pub auction_server_us_per_message: Option<f64>,
    pub relay_server_us_per_message: Option<f64>,
    /// loadgen µs per message sent or read, in the auction run and in the relay run.
    pub auction_loadgen_us_per_message: Option<f64>,
    pub relay_loadgen_us_per_message: Option<f64>,
}

impl Step {
    fn of(r: &Report) -> Step {
        let p99 = |s: &Option<crate::stats::Summary>| s.as_ref().map(|s| s.p99);
        let (round_trip, fan_out) = (
            p99(&r.latency_us.bid_round_trip),
            p99(&r.latency_us.fan_out),
        );
        let failed = r.failed();
        Step {
            rate: r.config.target_rate.unwrap_or(0.0),
            answered_per_s: r.throughput.answered_per_s,
            achieved_fraction: r.throughput.achieved_fraction,
            p99_round_trip_ms: round_trip.map(|us| us as f64 / 1000.0),
            p99_fan_out_ms: fan_out.map(|us| us as f64 / 1000.0),
            p99_send_lag_ms: p99(&r.latency_us.send_lag).map(|us| us as f64 / 1000.0),
            within: within(failed, round_trip, fan_out),
            failed,
            server_us_per_delivered: r.cpu.server_us_per_delivered,
            server_us_per_message: r.cpu.server_us_per_message,
            loadgen_us_per_message: r.cpu.loadgen_us_per_message,
            reports: 1,
        }
    }

    /// At one rate, the medians of the rounds' steps; within the limits when the median p99s
    /// are and no round failed.
    fn median_of(steps: &[&Step]) -> Step {
        let m = |f: fn(&Step) -> Option<f64>| median(steps.iter().filter_map(|s| f(s)));
        let failed = steps.iter().any(|s| s.failed);
        let (round_trip, fan_out) = (m(|s| s.p99_round_trip_ms), m(|s| s.p99_fan_out_ms));
        let us = |ms: Option<f64>| ms.map(|ms| (ms * 1000.0).round() as u64);
        Step {
            rate: steps.first().map_or(0.0, |s| s.rate),
            answered_per_s: m(|s| Some(s.answered_per_s)).unwrap_or(0.0),
            achieved_fraction: m(|s| s.achieved_fraction),
            p99_round_trip_ms: round_trip,
            p99_fan_out_ms: fan_out,
            p99_send_lag_ms: m(|s| s.p99_send_lag_ms),
            within: within(failed, us(round_trip), us(fan_out)),
            failed,
            server_us_per_delivered: m(|s| s.server_us_per_delivered),
            server_us_per_message: m(|s| s.server_us_per_message),
            loadgen_us_per_message: m(|s| s.loadgen_us_per_message),
            reports: steps.len(),
        }
    }
}

fn within(failed: bool, round_trip_us: Option<u64>, fan_out_us: Option<u64>) -> bool {
    !failed
        && round_trip_us.is_some_and(|us| us <= ROUND_TRIP_P99_US)
        && fan_out_us.is_some_and(|us| us <= FAN_OUT_P99_US)
}

impl Curve {
    fn of(mut steps: Vec<Step>) -> Curve {
        steps.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let first_over = steps.iter().position(|s| !s.within);
        let below = &steps[..first_over.unwrap_or(steps.len())];
        Curve {
            knee: below.last().map(|s| s.rate),
            first_over: first_over.map(|i| steps[i].rate),
            steps,
        }
    }

    /// The rounds' curves in one: at each rate the medians over the rounds that ran it; the
    /// knee is the median of the rounds' knees and so is the first rate over the limits.
    fn median_of(rounds: &[&Curve]) -> Curve {
        if let [only] = rounds {
            return (*only).clone();
        }
        let mut rates: Vec<f64> = rounds
            .iter()
            .flat_map(|c| c.steps.iter().map(|s| s.rate))
            .collect();
        rates.sort_by(f64::total_cmp);
        rates.dedup();
        let steps = rates
            .iter()
            .map(|&rate| {
                let at: Vec<&Step> = rounds
                    .iter()
                    .filter_map(|c| c.steps.iter().find(|s| s.rate == rate))
                    .collect();
                Step::median_of(&at)
            })
            .collect();
        let knees: Vec<Option<f64>> = rounds.iter().map(|c| c.knee).collect();
        let overs: Vec<Option<f64>> = rounds.iter().map(|c| c.first_over).collect();
        Curve {
            steps,
            knee: median_knee(&knees),
            first_over: median_first_over(&overs),
        }
    }

    fn step_at(&self, rate: f64) -> Option<&Step> {
        self.steps.iter().find(|s| s.rate == rate)
    }
}

/// The median of the rounds' knees: a round without one (over the limits at the lowest rate)
/// counts as lower than any rate; for an even count, the lower of the middle two (a rate that
/// was tried). `None` when that is a round without a knee, or there is no round.
pub fn median_knee(knees: &[Option<f64>]) -> Option<f64> {
    // None sorts first: lower than any rate.
    lower_median(knees, |a, b| match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(b),
        (a, b) => a.is_some().cmp(&b.is_some()),
    })
    .flatten()
}

/// The median of the rounds' first rates over the limits: a round within at every rate counts
/// as higher than any rate (`None`); for an even count, the lower of the middle two.
pub fn median_first_over(overs: &[Option<f64>]) -> Option<f64> {
    // None sorts last: higher than any rate.
    lower_median(overs, |a, b| match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(b),
        (a, b) => b.is_some().cmp(&a.is_some()),
    })
    .flatten()
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some((a / b * 1000.0).round() / 1000.0),
        _ => None,
    }
}

/// The knees of the open-loop auction and relay reports among `reports` (others are left out),
/// round by round (`config.round`, or the order given: see [`rounds::assign`]).
pub fn knee(reports: &[Report]) -> Knees {
    let open: Vec<&Report> = reports
        .iter()
        .filter(|r| r.subject() != Subject::Echo && r.config.target_rate.is_some())
        .collect();
    let round_of = rounds::assign(&open);
    let mut numbers = round_of.clone();
    numbers.sort_unstable();
    numbers.dedup();
    let rounds: Vec<Round> = numbers
        .iter()
        .map(|&round| {
            let steps = |subject: Subject| -> Vec<Step> {
                open.iter()
                    .zip(&round_of)
                    .filter(|(r, n)| **n == round && r.subject() == subject)
                    .map(|(r, _)| Step::of(r))
                    .collect()
            };
            let (auction, relay) = (
                Curve::of(steps(Subject::Auction)),
                Curve::of(steps(Subject::Relay)),
            );
            Round {
                round,
                ratio: ratio(auction.knee, relay.knee),
                auction,
                relay,
            }
        })
        .collect();
    let curves = |f: fn(&Round) -> &Curve| -> Curve {
        let all: Vec<&Curve> = rounds.iter().map(f).collect();
        match all.as_slice() {
            [] => Curve::of(Vec::new()),
            all => Curve::median_of(all),
        }
    };
    let (auction, relay) = (curves(|r| &r.auction), curves(|r| &r.relay));
    Knees {
        schema: SCHEMA.into(),
        limits: Limits {
            p99_round_trip_ms: ROUND_TRIP_P99_US as f64 / 1000.0,
            p99_fan_out_ms: FAN_OUT_P99_US as f64 / 1000.0,
            cpu_ratio_max: Some(CPU_RATIO_MAX),
        },
        // The median knees' ratio, not the median of the rounds' ratios: those leave out the
        // rounds where a side had no knee, and one lucky round would then decide the verdict.
        ratio: ratio(auction.knee, relay.knee),
        cpu: cpu_at_rates(&rounds, &auction, &relay),
        auction,
        relay,
        failed: reports.iter().any(Report::failed),
        rounds,
    }
}

/// At each rate both were run: the CPU figures (medians over rounds) and the median of the
/// rounds' auction / relay ratios.
fn cpu_at_rates(rounds: &[Round], auction: &Curve, relay: &Curve) -> Vec<CpuAtRate> {
    auction
        .steps
        .iter()
        .filter_map(|a| {
            let r = relay.step_at(a.rate)?;
            let ratios: Vec<f64> = rounds
                .iter()
                .filter_map(|round| {
                    ratio(
                        round.auction.step_at(a.rate)?.server_us_per_delivered,
                        round.relay.step_at(a.rate)?.server_us_per_delivered,
                    )
                })
                .collect();
            let ratio = median(ratios.iter().copied()).map(|r| (r * 1000.0).round() / 1000.0);
            Some(CpuAtRate {
                rate: a.rate,
                auction_server_us_per_delivered: a.server_us_per_delivered,
                relay_server_us_per_delivered: r.server_us_per_delivered,
                ratio,
                ratios,
                within: ratio.map(|x| x.partial_cmp(&CPU_RATIO_MAX) != Some(Ordering::Greater)),
                auction_server_us_per_message: a.server_us_per_message,
                relay_server_us_per_message: r.server_us_per_message,
                auction_loadgen_us_per_message: a.loadgen_us_per_message,
                relay_loadgen_us_per_message: r.loadgen_us_per_message,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(rate: f64, within: bool) -> Step {
        Step {
            rate,
            answered_per_s: rate,
            achieved_fraction: Some(1.0),
            p99_round_trip_ms: Some(if within { 1.0 } else { 9.0 }),
            p99_fan_out_ms: Some(1.0),
            p99_send_lag_ms: Some(1.0),
            within,
            failed: false,
            server_us_per_delivered: None,
            server_us_per_message: None,
            loadgen_us_per_message: None,
            reports: 1,
        }
    }

    #[test]
    fn the_knee_is_the_last_rate_within_below_the_first_over() {
        let c = Curve::of(vec![
            step(4000.0, false),
            step(1000.0, true),
            step(8000.0, true), // noise above a failed step: not the knee
            step(2000.0, true),
        ]);
        assert_eq!(c.knee, Some(2000.0));
        assert_eq!(c.first_over, Some(4000.0));
        assert_eq!(c.steps[0].rate, 1000.0);
        let c = Curve::of(vec![step(1000.0, false)]);
        assert_eq!((c.knee, c.first_over), (None, Some(1000.0)));
        let c = Curve::of(vec![step(1000.0, true), step(2000.0, true)]);
        assert_eq!((c.knee, c.first_over), (Some(2000.0), None));
        assert_eq!(Curve::of(vec![]).knee, None);
    }

    #[test]
    fn median_knees_rank_missing_ones_below_or_above_every_rate() {
        // No knee: below every rate.
        assert_eq!(
            median_knee(&[Some(2000.0), None, Some(1000.0)]),
            Some(1000.0)
        );
        assert_eq!(median_knee(&[None, None, Some(1000.0)]), None);
        assert_eq!(median_knee(&[Some(4000.0), Some(1000.0)]), Some(1000.0));
        assert_eq!(median_knee(&[]), None);
        // Never over: above every rate.
        assert_eq!(median_first_over(&[None, Some(4000.0), None]), None);
        assert_eq!(
            median_first_over(&[None, Some(4000.0), Some(2000.0)]),
            Some(4000.0)
        );
        assert_eq!(median_first_over(&[None, Some(4000.0)]), Some(4000.0));
    }

    /// A report at `rate` (open loop) of `subject` in `round` with these p99s (ms) and CPU.
    fn report(subject: Subject, rate: f64, round: u32, p99_ms: f64, cpu_us: f64) -> Report {
        let mut json = crate::report::tests::report_json();
        json["kind"] = subject.kind().into();
        json["config"]["fan_out"] = (subject == Subject::Relay).into();
        json["config"]["target_rate"] = rate.into();
        json["config"]["round"] = round.into();
        let us = (p99_ms * 1000.0) as u64;
        json["latency_us"]["bid_round_trip"]["p99"] = us.into();
        json["latency_us"]["fan_out"] = json["latency_us"]["bid_round_trip"].clone();
        json["cpu"]["server_us_per_delivered"] = cpu_us.into();
        json["cpu"]["loadgen_us_per_message"] = (cpu_us / 2.0).into();
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn rounds_give_median_knees_ratios_and_cpu() {
        use Subject::{Auction, Relay};
        let reports = vec![
            // Round 1: auction within at 1000 only, relay at both.
            report(Auction, 1000.0, 1, 4.0, 3.0),
            report(Relay, 1000.0, 1, 1.0, 2.0),
            report(Auction, 2000.0, 1, 9.0, 4.0),
            report(Relay, 2000.0, 1, 2.0, 2.0),
            // Round 2: auction within at both.
            report(Auction, 1000.0, 2, 3.0, 3.3),
            report(Relay, 1000.0, 2, 1.0, 3.0),
            report(Auction, 2000.0, 2, 4.5, 5.0),
            report(Relay, 2000.0, 2, 2.0, 2.5),
            // Round 3: the auction over at the lowest rate already.
            report(Auction, 1000.0, 3, 6.0, 1.5),
            report(Relay, 1000.0, 3, 1.0, 1.0),
            report(Auction, 2000.0, 3, 8.0, 6.0),
            report(Relay, 2000.0, 3, 2.0, 3.0),
        ];
        let k = knee(&reports);
        assert!(!k.failed);
        let knees: Vec<_> = k
            .rounds
            .iter()
            .map(|r| (r.round, r.auction.knee, r.ratio))
            .collect();
        assert_eq!(
            knees,
            [
                (1, Some(1000.0), Some(0.5)),
                (2, Some(2000.0), Some(1.0)),
                (3, None, None)
            ]
        );
        // The median knee ranks round 3's missing knee lowest.
        assert_eq!(k.auction.knee, Some(1000.0));
        assert_eq!(k.auction.first_over, Some(2000.0));
        assert_eq!(k.relay.knee, Some(2000.0));
        assert_eq!(k.relay.first_over, None);
        // The median knees' ratio (the rounds' own ratios, 0.5 and 1.0, would give 0.75 while
        // round 3's auction had no knee at all).
        assert_eq!(k.ratio, Some(0.5));
        // Each rate's p99 is the median over the rounds.
        let a = &k.auction.steps;
        assert_eq!((a[0].p99_round_trip_ms, a[0].reports), (Some(4.0), 3));
        assert_eq!(a[1].p99_round_trip_ms, Some(8.0));
        assert!(a[0].within && !a[1].within);
        // CPU: each round's pair, then the median.
        let c = &k.cpu;
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].ratios, [1.5, 1.1, 1.5]);
        assert_eq!((c[0].ratio, c[0].within), (Some(1.5), Some(true)));
        assert_eq!(c[0].auction_server_us_per_delivered, Some(3.0));
        assert_eq!(c[0].relay_server_us_per_delivered, Some(2.0));
        assert_eq!(c[0].auction_loadgen_us_per_message, Some(1.5));
        assert_eq!(c[1].ratios, [2.0, 2.0, 2.0]);
        assert_eq!((c[1].ratio, c[1].within), (Some(2.0), Some(false)));
        let text = k.text();
        assert!(text.contains("rounds: 1000, 2000, none"), "{text}");
        assert!(text.contains("(rounds: 50.0 %, 100.0 %, -)"), "{text}");
    }

    /// When the median round had no knee, no median ratio is given, though a round had one.
    #[test]
    fn no_median_ratio_without_median_knees() {
        use Subject::{Auction, Relay};
        let reports = vec![
            report(Auction, 1000.0, 1, 9.0, 1.0),
            report(Relay, 1000.0, 1, 9.0, 1.0),
            report(Auction, 1000.0, 2, 1.0, 1.0),
            report(Relay, 1000.0, 2, 1.0, 1.0),
            report(Auction, 1000.0, 3, 9.0, 1.0),
            report(Relay, 1000.0, 3, 9.0, 1.0),
        ];
        let k = knee(&reports);
        assert_eq!(k.rounds[1].ratio, Some(1.0));
        assert_eq!((k.auction.knee, k.relay.knee, k.ratio), (None, None, None));
        let text = k.text();
        assert!(
            text.contains(
                "auction knee / relay knee (of the median knees): - (rounds: -, 100.0 %, -)"
            ),
            "{text}"
        );
    }

    /// One round gives what `loadgen knee` gave before rounds existed.
    #[test]
    fn one_round_is_that_round() {
        let reports = vec![
            report(Subject::Auction, 1000.0, 1, 4.0, 3.0),
            report(Subject::Relay, 1000.0, 1, 1.0, 2.0),
        ];
        let k = knee(&reports);
        assert_eq!(k.rounds.len(), 1);
        assert_eq!(k.auction, k.rounds[0].auction);
        assert_eq!(
            (k.auction.knee, k.relay.knee, k.ratio),
            (Some(1000.0), Some(1000.0), Some(1.0))
        );
        assert_eq!(k.cpu[0].ratio, Some(1.5));
        assert!(!k.text().contains("rounds:"), "{}", k.text());
        // Reports without a round number are round 1 in the order given.
        let mut unnumbered = reports.clone();
        for r in &mut unnumbered {
            r.config.round = None;
        }
        assert_eq!(knee(&unnumbered), k);
    }
}
