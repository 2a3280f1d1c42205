//! `loadgen summarize`: medians over several reports and the auction/baseline ratio, for
//! `scripts/bench.sh` and for people comparing runs.
//!
//! Reports are paired in the order given (the first auction report with the first baseline
//! report of each kind, echo or relay, ...): each pair was measured back to back, so its ratio
//! is the fairest on a noisy machine; the summary gives each pair's ratio and their median.

use crate::report::{Report, Subject};
use crate::rounds::median;
use std::fmt::Write;

/// One figure of a report, when it has it.
type Figure = fn(&Report) -> Option<f64>;

fn list(v: &[f64], unit: &str) -> String {
    v.iter()
        .map(|x| format!("{x:.0}{unit}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ms(us: Option<u64>) -> Option<f64> {
    us.map(|us| us as f64 / 1000.0)
}

/// The summary text, and whether any report failed (errors or verification).
pub fn summarize(reports: &[Report]) -> (String, bool) {
    let auction: Vec<&Report> = reports.iter().filter(|r| r.kind == "auction").collect();
    let of = |subject: Subject| -> Vec<&Report> {
        reports.iter().filter(|r| r.subject() == subject).collect()
    };
    let (echo, relay) = (of(Subject::Echo), of(Subject::Relay));
    let mut out = String::new();
    let failed = reports.iter().any(|r| r.failed());
    let mut describe = |name: &str, runs: &[&Report]| {
        if runs.is_empty() {
            return;
        }
        let rates: Vec<f64> = runs.iter().map(|r| r.throughput.answered_per_s).collect();
        let _ = writeln!(
            out,
            "{name}: {} run(s), answered/s median {:.0} ({})",
            runs.len(),
            median(rates.clone()).unwrap_or(0.0),
            list(&rates, "")
        );
        let p = |f: &dyn Fn(&Report) -> Option<f64>, what: &str| {
            let v: Vec<f64> = runs.iter().filter_map(|r| f(r)).collect();
            median(v.clone()).map(|m| {
                format!(
                    "  {what} median {m:.3} ms ({})\n",
                    v.iter()
                        .map(|x| format!("{x:.3}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
        };
        let rows = [
            p(
                &|r| ms(r.latency_us.bid_round_trip.as_ref().map(|s| s.p50)),
                "p50 round trip",
            ),
            p(
                &|r| ms(r.latency_us.bid_round_trip.as_ref().map(|s| s.p99)),
                "p99 round trip",
            ),
            p(
                &|r| ms(r.latency_us.fan_out.as_ref().map(|s| s.p99)),
                "p99 fan-out",
            ),
            p(
                &|r| ms(r.latency_us.tls_connect.as_ref().map(|s| s.p99)),
                "p99 TLS connect",
            ),
        ];
        for row in rows.into_iter().flatten() {
            out.push_str(&row);
        }
        let per_channel: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.server.as_ref()?.rss_per_channel_bytes)
            .map(|b| b / 1024.0)
            .collect();
        if let Some(m) = median(per_channel.clone()) {
            let _ = writeln!(
                out,
                "  server memory per channel median {m:.1} KiB ({})",
                per_channel
                    .iter()
                    .map(|x| format!("{x:.1}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let cpu: [(&str, Figure); 4] = [
            ("server CPU per answer", |r| r.cpu.server_us_per_answer),
            ("server CPU per delivered line", |r| {
                r.cpu.server_us_per_delivered
            }),
            ("server CPU per message written", |r| {
                r.cpu.server_us_per_message
            }),
            ("loadgen CPU per message", |r| r.cpu.loadgen_us_per_message),
        ];
        for (what, figure) in cpu {
            let v: Vec<f64> = runs.iter().filter_map(|r| figure(r)).collect();
            if let Some(m) = median(v.clone()) {
                let _ = writeln!(
                    out,
                    "  {what} median {m:.2} µs ({})",
                    v.iter()
                        .map(|x| format!("{x:.2}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        let achieved: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.throughput.achieved_fraction)
            .collect();
        if let Some(m) = median(achieved) {
            let _ = writeln!(out, "  achieved / target rate median {:.1} %", m * 100.0);
        }
    };
    describe("auction", &auction);
    describe("baseline (TLS echo)", &echo);
    describe("baseline (TLS relay)", &relay);
    for (name, baseline) in [("baseline", &echo), ("relay baseline", &relay)] {
        let ratios: Vec<f64> = auction
            .iter()
            .zip(baseline)
            .filter(|(_, b)| b.throughput.answered_per_s > 0.0)
            .map(|(a, b)| a.throughput.answered_per_s / b.throughput.answered_per_s)
            .collect();
        if let Some(m) = median(ratios.clone()) {
            let _ = writeln!(
                out,
                "auction / {name} answered per second: median {:.1} % (pairs: {})",
                m * 100.0,
                ratios
                    .iter()
                    .map(|r| format!("{:.1} %", r * 100.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    if failed {
        let _ = writeln!(
            out,
            "FAILED: {} report(s) had errors or failed verification",
            reports.iter().filter(|r| r.failed()).count()
        );
    }
    (out, failed)
}
