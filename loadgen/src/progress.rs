//! The live progress line on stderr: elapsed time, answers in the last second, p99 so far.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Prints a line every second until `done`; `total` is how long bidding lasts (the stop
/// condition); `read` gives (answers so far, p99 so far, errors so far).
pub async fn line(
    start: Instant,
    total: Duration,
    done: Arc<AtomicBool>,
    read: impl Fn() -> (u64, Option<Duration>, u64),
) {
    let mut last = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while !done.load(Ordering::Relaxed) {
        tick.tick().await;
        let (answered, p99, errors) = read();
        eprint!(
            "\r{}",
            render(
                start.elapsed(),
                total,
                answered.saturating_sub(last),
                p99,
                errors
            )
        );
        last = answered;
    }
    eprintln!();
}

/// One progress line. The time shown never passes `total`: after it, bidding has stopped and
/// the phase only waits for the answers to bids already sent, which the line says instead.
fn render(
    elapsed: Duration,
    total: Duration,
    per_second: u64,
    p99: Option<Duration>,
    errors: u64,
) -> String {
    let p99 = p99.map_or("-".into(), |d| {
        format!("{:.3} ms", d.as_secs_f64() * 1000.0)
    });
    let time = if elapsed > total {
        format!(
            "{:>5.1} / {:.1} s, last answers",
            total.as_secs_f64(),
            total.as_secs_f64()
        )
    } else {
        format!(
            "{:>5.1} / {:.1} s",
            elapsed.as_secs_f64(),
            total.as_secs_f64()
        )
    };
    format!("  {time}   {per_second:>8} answers/s   p99 {p99:>10}   errors {errors}   ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_shown_never_passes_the_duration() {
        let five = Duration::from_secs(5);
        let line = render(Duration::from_millis(2500), five, 120, None, 0);
        assert!(line.starts_with("    2.5 / 5.0 s   "), "{line}");
        assert!(line.contains("120 answers/s") && line.contains("p99          -"));
        // Past the stop the phase waits for the last answers: 5.0 / 5.0, and it says so.
        let line = render(Duration::from_millis(6000), five, 3, None, 0);
        assert!(
            line.starts_with("    5.0 / 5.0 s, last answers   "),
            "{line}"
        );
        assert!(!line.contains("6.0"));
    }
}
