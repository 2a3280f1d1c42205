//! The live progress line on stderr: elapsed time, answers in the last second, p99 so far.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Prints a line every second until `done`; `read` gives (answers so far, p99 so far,
/// errors so far).
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
        let p99 = p99.map_or("-".into(), |d| {
            format!("{:.3} ms", d.as_secs_f64() * 1000.0)
        });
        eprint!(
            "\r  {:>5.1} / {:.0} s   {:>8} answers/s   p99 {:>10}   errors {}   ",
            start.elapsed().as_secs_f64(),
            total.as_secs_f64(),
            answered.saturating_sub(last),
            p99,
            errors
        );
        last = answered;
    }
    eprintln!();
}
