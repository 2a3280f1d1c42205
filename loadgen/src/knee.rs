//! `loadgen knee`: from open-loop reports at rising rates (`scripts/knee.sh`), the knee of the
//! auction and of the relay baseline (`baseline --fan-out`): the highest rate at which the p99
//! bid round trip is within [`ROUND_TRIP_P99_US`] and the p99 fan-out within
//! [`FAN_OUT_P99_US`], and the auction's knee as a fraction of the relay's.
//!
//! Compute, then render: [`knee`] turns reports into a plain [`Knees`] (serialized as the JSON
//! summary), and [`Knees::text`] renders it for people. A rate counts only below the first
//! rate that was over the limits: a lucky step above a failed one is noise, not a knee.
//! Limits are what the issue asks of the auction, not a pass or fail: the exit code says only
//! whether a report had errors or failed verification.

use crate::report::{Report, Subject};
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// p99 bid round trip at or below this (µs) for a rate to be within the knee...
pub const ROUND_TRIP_P99_US: u64 = 5_000;
/// ...and p99 fan-out at or below this (µs).
pub const FAN_OUT_P99_US: u64 = 10_000;

pub const SCHEMA: &str = "auction-loadgen-knee/1";

/// The JSON summary of a knee run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Knees {
    pub schema: String,
    pub limits: Limits,
    pub auction: Curve,
    pub relay: Curve,
    /// The auction's knee / the relay's, when both have one.
    pub ratio: Option<f64>,
    /// A report had errors or failed verification (exit code 1).
    pub failed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    pub p99_round_trip_ms: f64,
    pub p99_fan_out_ms: f64,
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

/// One open-loop report's figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Step {
    /// Bids (lines) per second asked for.
    pub rate: f64,
    pub answered_per_s: f64,
    pub achieved_fraction: Option<f64>,
    pub p99_round_trip_ms: Option<f64>,
    pub p99_fan_out_ms: Option<f64>,
    /// Both p99s within the limits and no error.
    pub within: bool,
    /// The report had errors or failed verification.
    pub failed: bool,
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
            within: !failed
                && round_trip.is_some_and(|us| us <= ROUND_TRIP_P99_US)
                && fan_out.is_some_and(|us| us <= FAN_OUT_P99_US),
            failed,
        }
    }
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
}

/// The knees of the open-loop auction and relay reports among `reports` (others are left out).
pub fn knee(reports: &[Report]) -> Knees {
    let steps = |subject: Subject| -> Vec<Step> {
        reports
            .iter()
            .filter(|r| r.subject() == subject && r.config.target_rate.is_some())
            .map(Step::of)
            .collect()
    };
    let (auction, relay) = (
        Curve::of(steps(Subject::Auction)),
        Curve::of(steps(Subject::Relay)),
    );
    let ratio = match (auction.knee, relay.knee) {
        (Some(a), Some(r)) if r > 0.0 => Some((a / r * 1000.0).round() / 1000.0),
        _ => None,
    };
    Knees {
        schema: SCHEMA.into(),
        limits: Limits {
            p99_round_trip_ms: ROUND_TRIP_P99_US as f64 / 1000.0,
            p99_fan_out_ms: FAN_OUT_P99_US as f64 / 1000.0,
        },
        auction,
        relay,
        ratio,
        failed: reports.iter().any(Report::failed),
    }
}

impl Knees {
    /// The summary for people: each step, each knee, the ratio.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "knee: the highest rate with p99 round trip <= {} ms and p99 fan-out <= {} ms",
            self.limits.p99_round_trip_ms, self.limits.p99_fan_out_ms
        );
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
        for (name, curve) in [("auction", &self.auction), ("relay", &self.relay)] {
            let _ = writeln!(
                out,
                "\n  {name:<8} {:>9} {:>11} {:>9} {:>13} {:>12}",
                "bids/s", "answered/s", "achieved", "p99 rt (ms)", "p99 fan (ms)"
            );
            for s in &curve.steps {
                let verdict = match (s.failed, s.within) {
                    (true, _) => "ERRORS",
                    (false, true) => "within",
                    (false, false) => "over",
                };
                let _ = writeln!(
                    out,
                    "  {:<8} {:>9.0} {:>11.0} {:>9} {:>13} {:>12}  {verdict}",
                    "",
                    s.rate,
                    s.answered_per_s,
                    s.achieved_fraction
                        .map_or("-".to_owned(), |f| format!("{:.1} %", f * 100.0)),
                    ms(s.p99_round_trip_ms),
                    ms(s.p99_fan_out_ms),
                );
            }
            let _ = writeln!(
                out,
                "  {name} knee: {}{}",
                rate(
                    curve.knee,
                    "none (over the limits at the lowest rate, or no step)"
                ),
                curve
                    .first_over
                    .map(|r| format!(" (over at {r:.0} bids/s)"))
                    .unwrap_or_else(|| " (within at every rate tried: it is higher)".into())
            );
        }
        let _ = writeln!(
            out,
            "\nauction knee / relay knee: {}",
            self.ratio
                .map_or("-".to_owned(), |r| format!("{:.1} %", r * 100.0))
        );
        if self.failed {
            let _ = writeln!(out, "FAILED: a report had errors or failed verification");
        }
        out
    }
}

fn rate(r: Option<f64>, none: &str) -> String {
    r.map_or(none.to_owned(), |r| format!("{r:.0} bids/s"))
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
            within,
            failed: false,
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
}
