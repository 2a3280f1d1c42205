//! `loadgen knee`'s text: each rate's figures, each knee (with the rounds' when there were
//! several), the ratio, and the CPU per delivered line of the auction against the relay's.

use super::{Curve, Knees};
use std::fmt::Write;

fn ms(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.3}"))
}

fn us(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.2}"))
}

fn percent(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |r| format!("{:.1} %", r * 100.0))
}

fn rate(r: Option<f64>, none: &str) -> String {
    r.map_or(none.to_owned(), |r| format!("{r:.0} bids/s"))
}

impl Knees {
    /// The summary for people: each step, each knee, the ratio, the CPU.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let several = self.rounds.len() > 1;
        let _ = writeln!(
            out,
            "knee: the highest rate with p99 round trip <= {} ms and p99 fan-out <= {} ms{}",
            self.limits.p99_round_trip_ms,
            self.limits.p99_fan_out_ms,
            if several {
                format!(
                    "; {} rounds, each rate's figures the medians over them",
                    self.rounds.len()
                )
            } else {
                String::new()
            }
        );
        for (name, curve, of_round) in [
            (
                "auction",
                &self.auction,
                (|r| &r.auction) as fn(&super::Round) -> &Curve,
            ),
            ("relay", &self.relay, |r| &r.relay),
        ] {
            let _ = writeln!(
                out,
                "\n  {name:<8} {:>9} {:>11} {:>9} {:>13} {:>12} {:>12} {:>13} {:>12}",
                "bids/s",
                "answered/s",
                "achieved",
                "p99 rt (ms)",
                "p99 fan (ms)",
                "p99 lag (ms)",
                "srv µs/line",
                "lg µs/msg"
            );
            for s in &curve.steps {
                let verdict = match (s.failed, s.within) {
                    (true, _) => "ERRORS",
                    (false, true) => "within",
                    (false, false) => "over",
                };
                let _ = writeln!(
                    out,
                    "  {:<8} {:>9.0} {:>11.0} {:>9} {:>13} {:>12} {:>12} {:>13} {:>12}  {verdict}",
                    "",
                    s.rate,
                    s.answered_per_s,
                    s.achieved_fraction
                        .map_or("-".to_owned(), |f| format!("{:.1} %", f * 100.0)),
                    ms(s.p99_round_trip_ms),
                    ms(s.p99_fan_out_ms),
                    ms(s.p99_send_lag_ms),
                    us(s.server_us_per_delivered),
                    us(s.loadgen_us_per_message),
                );
            }
            let _ = writeln!(
                out,
                "  {name} knee{}: {}{}",
                if several { " (median)" } else { "" },
                rate(
                    curve.knee,
                    "none (over the limits at the lowest rate, or no step)"
                ),
                curve
                    .first_over
                    .map(|r| format!(" (over at {r:.0} bids/s)"))
                    .unwrap_or_else(|| " (within at every rate tried: it is higher)".into())
            );
            if several {
                let knees: Vec<String> = self
                    .rounds
                    .iter()
                    .map(|r| {
                        of_round(r)
                            .knee
                            .map_or("none".into(), |k| format!("{k:.0}"))
                    })
                    .collect();
                let _ = writeln!(out, "    rounds: {}", knees.join(", "));
            }
        }
        let _ = writeln!(
            out,
            "\nauction knee / relay knee{}: {}{}",
            if several {
                " (of the median knees)"
            } else {
                ""
            },
            percent(self.ratio),
            if several {
                let each: Vec<String> = self.rounds.iter().map(|r| percent(r.ratio)).collect();
                format!(" (rounds: {})", each.join(", "))
            } else {
                String::new()
            }
        );
        if !self.cpu.is_empty() {
            let _ = writeln!(
                out,
                "\nserver CPU per delivered line (auction: per HIGHEST read; relay: per copy read), \
                 same rate; target auction <= {} x relay",
                self.limits.cpu_ratio_max.unwrap_or(super::CPU_RATIO_MAX)
            );
            let _ = writeln!(
                out,
                "  {:>9} {:>12} {:>12} {:>7}  {:<28} {:>14} {:>14}",
                "bids/s", "auction µs", "relay µs", "ratio", "", "auction lg µs", "relay lg µs"
            );
            for c in &self.cpu {
                let pairs = if c.ratios.len() > 1 {
                    let each: Vec<String> = c.ratios.iter().map(|r| format!("{r:.2}")).collect();
                    format!("({})", each.join(", "))
                } else {
                    String::new()
                };
                let verdict = match c.within {
                    Some(true) => "met",
                    Some(false) => "not met",
                    None => "-",
                };
                let _ = writeln!(
                    out,
                    "  {:>9.0} {:>12} {:>12} {:>7}  {:<28} {:>14} {:>14}",
                    c.rate,
                    us(c.auction_server_us_per_delivered),
                    us(c.relay_server_us_per_delivered),
                    c.ratio.map_or("-".into(), |r| format!("{r:.2}")),
                    format!("{verdict} {pairs}"),
                    us(c.auction_loadgen_us_per_message),
                    us(c.relay_loadgen_us_per_message),
                );
            }
            let _ = writeln!(out, "  (lg µs: loadgen's own CPU per message sent or read)");
        }
        if self.failed {
            let _ = writeln!(out, "FAILED: a report had errors or failed verification");
        }
        out
    }
}
