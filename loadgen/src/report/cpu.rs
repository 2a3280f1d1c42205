//! The report's `cpu` block: what the server and loadgen spent in CPU time over the measured
//! phase, and per message. Issue 18 compares the auction server's CPU per HIGHEST delivered with
//! the relay's per line relayed at the same rate, and loadgen's own cost per message in both
//! (the driver shares the cores with the server it measures).
//!
//! Compute, then render: [`Cpu::of`] derives the figures from the CPU seconds measured
//! (`crate::cpu`, the metrics scrapes) and the report's counts; [`Cpu::lines`] says them.

use super::{Counts, Subject};
use serde::{Deserialize, Serialize};

/// CPU time (user + system, every thread) over the measured phase: from the start of bidding
/// until every bidder task has stopped (for the relay, with the copies still read after the
/// last send). Each figure is `null` when it could not be measured: no `--metrics-url`, a
/// server without `process_cpu_seconds_total`, the baseline server inside loadgen's own process,
/// not Linux. Clock-tick resolution (1/100 s on common kernels).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// The server's CPU seconds: the auction server's from its metrics (with the channels open
    /// -> after bidding), the baseline server's (a child process) from /proc/PID/stat.
    pub server_s: Option<f64>,
    /// loadgen's own CPU seconds (its process, the baseline server not included).
    pub loadgen_s: Option<f64>,
    /// Server µs per answer (`counts.answered`: BID-ACCEPTED / BID-REJECTED, or the echo).
    pub server_us_per_answer: Option<f64>,
    /// Server µs per fan-out line delivered: per HIGHEST the bidders read
    /// (`counts.highest_received`), or per copy the relay's connections read (`counts.relayed`).
    /// `null` for the echo, which delivers none.
    pub server_us_per_delivered: Option<f64>,
    /// Server µs per message it wrote and loadgen read: answers + delivered lines.
    pub server_us_per_message: Option<f64>,
    /// loadgen µs per message: sent + read (answers + delivered lines).
    pub loadgen_us_per_message: Option<f64>,
}

impl Cpu {
    /// The block from the CPU seconds measured and the run's counts.
    pub fn of(subject: Subject, server_s: Option<f64>, loadgen_s: Option<f64>, n: &Counts) -> Cpu {
        let delivered = delivered(subject, n);
        let written = n.answered + delivered;
        Cpu {
            server_s,
            loadgen_s,
            server_us_per_answer: per(server_s, n.answered),
            server_us_per_delivered: per(server_s, delivered),
            server_us_per_message: per(server_s, written),
            loadgen_us_per_message: per(loadgen_s, n.sent + written),
        }
    }

    /// The text report's lines (also the HTML page's).
    pub fn lines(&self, subject: Subject) -> Vec<String> {
        let us = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2} µs"));
        let server = match self.server_s {
            None => "server: not measured (needs --metrics-url and a server exporting \
                     process_cpu_seconds_total, or the baseline server in a child process; Linux)"
                .to_owned(),
            Some(s) => {
                let (delivered, written) = match subject {
                    Subject::Echo => (String::new(), "answers"),
                    Subject::Auction => (
                        format!(
                            ", {} per HIGHEST delivered",
                            us(self.server_us_per_delivered)
                        ),
                        "answers + HIGHEST",
                    ),
                    Subject::Relay => (
                        format!(", {} per line relayed", us(self.server_us_per_delivered)),
                        "answers + copies",
                    ),
                };
                format!(
                    "server {s:.2} s: {} per answer{delivered}, {} per message written ({written})",
                    us(self.server_us_per_answer),
                    us(self.server_us_per_message),
                )
            }
        };
        let loadgen = match self.loadgen_s {
            None => "loadgen: not measured (not Linux, or the baseline server ran inside loadgen)"
                .to_owned(),
            Some(s) => format!(
                "loadgen {s:.2} s: {} per message (sent + read)",
                us(self.loadgen_us_per_message)
            ),
        };
        vec![server, loadgen]
    }
}

/// The fan-out lines a run delivered: HIGHEST read by the bidders, or the relay's copies read.
pub fn delivered(subject: Subject, n: &Counts) -> u64 {
    match subject {
        Subject::Auction => n.highest_received,
        Subject::Relay => n.relayed,
        Subject::Echo => 0,
    }
}

/// Microseconds of `seconds` per one of `n`, to 0.01 µs; `None` without seconds or messages.
fn per(seconds: Option<f64>, n: u64) -> Option<f64> {
    let s = seconds?;
    (n > 0).then(|| (s * 1e6 / n as f64 * 100.0).round() / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts() -> Counts {
        Counts {
            sent: 1000,
            answered: 1000,
            highest_received: 3000,
            relayed: 5000,
            ..Counts::default()
        }
    }

    #[test]
    fn per_message_figures_follow_the_subject() {
        let a = Cpu::of(Subject::Auction, Some(0.04), Some(0.05), &counts());
        assert_eq!(a.server_us_per_answer, Some(40.0));
        assert_eq!(a.server_us_per_delivered, Some(13.33));
        assert_eq!(a.server_us_per_message, Some(10.0));
        // 1000 sent + 1000 answers + 3000 HIGHEST read.
        assert_eq!(a.loadgen_us_per_message, Some(10.0));
        let r = Cpu::of(Subject::Relay, Some(0.06), Some(0.07), &counts());
        assert_eq!(r.server_us_per_delivered, Some(12.0));
        assert_eq!(r.server_us_per_message, Some(10.0));
        assert_eq!(r.loadgen_us_per_message, Some(10.0));
        let e = Cpu::of(Subject::Echo, Some(0.01), Some(0.02), &counts());
        assert_eq!(e.server_us_per_delivered, None, "the echo delivers nothing");
        assert_eq!(e.server_us_per_message, Some(10.0));
        assert_eq!(e.loadgen_us_per_message, Some(10.0));
        assert!(e.lines(Subject::Echo)[0].starts_with(
            "server 0.01 s: 10.00 µs per answer, 10.00 µs per message written (answers)"
        ));
    }

    #[test]
    fn nothing_is_made_up() {
        let c = Cpu::of(Subject::Auction, None, None, &counts());
        assert_eq!(c, Cpu::default());
        assert!(c.lines(Subject::Auction)[0].contains("not measured"));
        let c = Cpu::of(Subject::Auction, Some(1.0), Some(1.0), &Counts::default());
        assert_eq!(
            c.server_us_per_answer, None,
            "no message, no figure per message"
        );
        assert_eq!(c.server_s, Some(1.0));
    }
}
