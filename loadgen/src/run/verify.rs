//! After the measured phase (`--verify`): wait for every auction to close, then compare the
//! server's results (winner and price from STATUS, the SOLD / NOT-SOLD / WIN notices the
//! run's clients received) with what the bidders saw accepted, and the bid counts with the
//! server's own metrics.
//!
//! Runs on the task that called `run`, after every bidder task has ended; it reads the run's
//! `Shared` (the announcement readers are still filling in the notices it waits for) and asks
//! the server over UDP.

use super::{bidder_index, bidder_name, unix_ms, Shared};
use crate::report::Verification;
use crate::scrape::Scrape;
use auction_client::Client;
use auction_protocol::{Cents, ItemState};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Waits for every item to close and compares the server's results with what the bidders saw.
pub(super) async fn verify(
    shared: &Shared,
    client: &Client,
    scrape_with: &Option<Scrape>,
    scrape_after: &Option<Scrape>,
) -> Verification {
    let mut problems = Vec::new();
    let s = &shared.stats;
    let unanswered = s.unanswered.load(Ordering::Relaxed);
    if unanswered > 0 {
        problems.push(format!("{unanswered} bids were sent and never answered"));
    }
    let sent = s.sent.load(Ordering::Relaxed);
    let answered = s.answered.load(Ordering::Relaxed);
    if sent != answered + unanswered {
        problems.push(format!(
            "{sent} bids sent but {answered} answered and {unanswered} unanswered"
        ));
    }
    let accepted = s.accepted.load(Ordering::Relaxed);
    if let (Some(a), Some(b)) = (scrape_with, scrape_after) {
        if let (Some(x), Some(y)) = (
            a.sum("auction_bids_accepted_total"),
            b.sum("auction_bids_accepted_total"),
        ) {
            let server = (y - x).round() as u64;
            if server < accepted {
                problems.push(format!(
                    "the server counted {server} accepted bids but loadgen was told {accepted}"
                ));
            }
        }
    }
    let last_end = shared.last_end();
    let deadline = Instant::now()
        + Duration::from_millis(last_end.saturating_sub(unix_ms()))
        + Duration::from_secs(30);
    let mut checked = 0;
    for item in &shared.items {
        let (best, twice, ends_at, bought, accepted) = {
            let l = item.ledger.lock().unwrap_or_else(|p| p.into_inner());
            (l.best, l.twice.clone(), l.ends_at, l.bought, l.accepted)
        };
        // Buy it now ends the auction: the taker's bid is the only one accepted.
        if bought && accepted != 1 {
            problems.push(format!(
                "item {}: bought at its buy-it-now price, yet {} bids were accepted on it",
                item.id, accepted
            ));
        }
        for amount in twice {
            problems.push(format!(
                "item {}: {} was accepted twice",
                item.id,
                Cents(amount)
            ));
        }
        let wait = Duration::from_millis(ends_at.saturating_sub(unix_ms()));
        tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
        let view = loop {
            match client.status(item.id).await {
                Ok(v) if v.state == ItemState::Closed => break Some(v),
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await
                }
                _ => break None,
            }
        };
        let Some(view) = view else {
            problems.push(format!("item {} did not close in time", item.id));
            continue;
        };
        checked += 1;
        // The best accepted bid wins (the buy-it-now taker's, when it took it), if it reached
        // the item's reserve (when it has one).
        let expected = best
            .filter(|(amount, _)| item.reserve.is_none_or(|r| *amount >= r))
            .map(|(amount, b)| (bidder_name(&shared.prefix, b), amount));
        let actual = match (view.winner.clone(), view.price) {
            (Some(w), Some(p)) => Some((w, p)),
            _ => None,
        };
        if expected != actual {
            problems.push(format!(
                "item {}: loadgen saw {} accepted last, the server closed it {}",
                item.id,
                describe(&expected),
                describe(&actual)
            ));
        }
        // The UDP notices agree with the result: SOLD / NOT-SOLD to the seller, WIN to the
        // winner (when the winner is one of loadgen's bidders, whose notices it reads).
        let ours = actual
            .as_ref()
            .is_some_and(|(w, _)| bidder_index(&shared.prefix, w).is_some());
        let seen = loop {
            let seen = shared
                .notices
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&item.id)
                .cloned()
                .unwrap_or_default();
            let complete = match &actual {
                Some(_) => seen.sold.is_some() && (seen.win.is_some() || !ours),
                None => seen.not_sold,
            };
            if complete || Instant::now() >= deadline {
                break seen;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        match &actual {
            Some(result) => {
                if seen.sold.as_ref() != Some(result) {
                    problems.push(format!(
                        "item {}: the seller's SOLD notice says {}",
                        item.id,
                        describe(&seen.sold)
                    ));
                }
                if ours && seen.win.as_ref() != Some(result) {
                    problems.push(format!(
                        "item {}: the WIN notice went to {}",
                        item.id,
                        describe(&seen.win)
                    ));
                }
            }
            None if !seen.not_sold => problems.push(format!(
                "item {}: it closed unsold but the seller got no NOT-SOLD notice",
                item.id
            )),
            None => {}
        }
    }
    Verification {
        passed: problems.is_empty(),
        items_checked: checked,
        problems,
    }
}

fn describe(result: &Option<(String, Cents)>) -> String {
    match result {
        Some((who, amount)) => format!("{amount} by {who}"),
        None => "with no winner".into(),
    }
}
