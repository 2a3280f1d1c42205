//! The measured phase: one task per bidder with channels, all bidding under one rate policy
//! ([`Pace`], shared with the baseline: closed or open loop) until one stop condition
//! ([`stop_at`]), with the live progress line meanwhile. There is one bidder loop (`bidder.rs`)
//! for every combination.
//!
//! The bidder tasks own their channels; this phase's caller waits for all of them, so every
//! count in the run's `Shared` is final when [`run`] returns. The rules here take the time as
//! an argument and are tested without a server.

use super::bidder::Bidder;
use super::{unix_ms, Options, Shared};
use crate::pace::Pace;
use auction_client::{Client, ItemChannel};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When the measured phase stops (the stop condition): `duration` after `start`, or a second
/// before the first auction ends (`earliest_end`, Unix ms; `now_ms` is the Unix time at
/// `start`) should the set-up have eaten the margin. When it is cut short, also a note saying
/// so for the report.
pub(super) fn stop_at(
    start: Instant,
    duration: Duration,
    earliest_end: u64,
    now_ms: u64,
) -> (Instant, Option<String>) {
    let stop = start + duration;
    let ms_left = earliest_end.saturating_sub(now_ms);
    let end_guard = start + Duration::from_millis(ms_left.saturating_sub(1000));
    if end_guard < stop {
        let note = format!(
            "the run was cut to {:.1} s because the auctions end then (set-up took long); pass --item-duration",
            end_guard.duration_since(start).as_secs_f64()
        );
        return (end_guard, Some(note));
    }
    (stop, None)
}

/// Runs the measured phase: a bidder task for each bidder in `per_bidder` that has channels
/// (its seed drawn from `--seed`, in bidder order), until the stop condition, then waits for
/// every one. The `stalled` channels are held open until bidding is done. Returns how long
/// the phase lasted; adds a note when it had to be cut short.
pub(super) async fn run(
    opts: &Options,
    shared: &Arc<Shared>,
    per_bidder: Vec<Vec<(usize, ItemChannel)>>,
    clients: &[Option<Arc<Client>>],
    stalled: Vec<ItemChannel>,
    earliest_end: u64,
    notes: &mut Vec<String>,
) -> Duration {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let start = Instant::now();
    let (stop, cut) = stop_at(start, opts.duration, earliest_end, unix_ms());
    notes.extend(cut);
    let pace = Pace::new(opts.rate, opts.bidders);
    let done = Arc::new(AtomicBool::new(false));
    let progress = opts.progress.then(|| {
        let shared = shared.clone();
        tokio::spawn(crate::progress::line(
            start,
            stop.saturating_duration_since(start),
            done.clone(),
            move || {
                let s = &shared.stats;
                (
                    s.answered.load(Ordering::Relaxed),
                    s.round_trip.p99(),
                    s.errors.total() + s.unanswered.load(Ordering::Relaxed),
                )
            },
        ))
    });
    let mut tasks = Vec::new();
    for (b, chans) in per_bidder.into_iter().enumerate() {
        if chans.is_empty() {
            continue;
        }
        let client = clients.get(b).cloned().flatten();
        let bidder = Bidder::new(b, client, chans, shared.clone(), rng.random(), start);
        tasks.push(tokio::spawn(bidder.run(stop, pace)));
    }
    for t in tasks {
        if let Err(e) = t.await {
            shared.stats.errors.add("bidder-task-failed");
            tracing::error!(error = %e, "a bidder task failed");
        }
    }
    let elapsed = start.elapsed();
    tracing::info!(elapsed = ?elapsed, "bidding done");
    drop(stalled);
    done.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.await;
    }
    elapsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_after_the_duration_when_the_auctions_outlast_it() {
        let start = Instant::now();
        let (stop, note) = stop_at(
            start,
            Duration::from_secs(10),
            1_000_000 + 11_000,
            1_000_000,
        );
        assert_eq!(stop, start + Duration::from_secs(10));
        assert_eq!(note, None);
    }

    #[test]
    fn stops_a_second_before_the_first_auction_ends() {
        let start = Instant::now();
        let (stop, note) = stop_at(start, Duration::from_secs(10), 1_000_000 + 2_500, 1_000_000);
        assert_eq!(stop, start + Duration::from_millis(1500));
        assert!(note.unwrap().starts_with("the run was cut to 1.5 s"));
        // An auction already over: no bidding at all.
        let (stop, note) = stop_at(start, Duration::from_secs(10), 999_000, 1_000_000);
        assert_eq!(stop, start);
        assert!(note.unwrap().starts_with("the run was cut to 0.0 s"));
    }
}
