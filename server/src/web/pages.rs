//! The board's pages as server-rendered HTML (maud: checked at compile time, every value
//! escaped). Each page is complete without JavaScript; `board.js` then follows `/events` and
//! updates the same cells in place, finding them by the classes and `data-` attributes set
//! here (the two files change together).

use maud::{html, Markup, DOCTYPE};

use super::board::{Board, BoardBid, BoardItem};
use super::{event_id, HISTORY_SHOWN};
use crate::clock::unix_ms;

/// The whole board (`projector`: the large-type view of the open items).
pub(super) fn board(board: &Board, projector: bool) -> Markup {
    let (seq, open, results) = board.snapshot();
    let now = unix_ms();
    let title = if projector {
        "Live auction: projector"
    } else {
        "Live auction"
    };
    page(
        title,
        board,
        seq,
        None,
        projector,
        now,
        html! {
            h2 { "Open items" }
            table #open {
                thead { tr {
                    th { "Item" } th { "Description" } th.seller { "Seller" } th.min { "Minimum" }
                    th { "Price" } th.terms { "Terms" } th { "Leader" } th.bids { "Bids" }
                    th { "Time left" }
                } }
                tbody {
                    @for item in &open { (open_row(item, now, projector)) }
                }
            }
            p #none-open hidden[!open.is_empty()] { "No item is open right now." }
            @if !projector {
                h2 { "Recent results" }
                table #results {
                    thead { tr { th { "Item" } th { "Description" } th { "Result" } th { "Closed" } } }
                    tbody {
                        @for item in &results { (result_row(item)) }
                    }
                }
            }
        },
    )
}

/// One open item's row; `board.js` builds the same for a new item.
fn open_row(item: &BoardItem, now: u64, projector: bool) -> Markup {
    let link = if projector {
        format!("/projector/{}", item.item)
    } else {
        format!("/item/{}", item.item)
    };
    html! {
        tr data-item=(item.item) data-ends=(item.ends_at) {
            td.item { a href=(link) { (item.item) } }
            td.description { (item.description) }
            td.seller { (item.seller) }
            td.min { (item.min) }
            td.price { (price(item)) }
            td.terms { (item.terms()) }
            td.leader { (item.leader.as_deref().unwrap_or("")) }
            td.bids { (item.bids) }
            td.left data-ends=(item.ends_at) { (time_left(item.ends_at, now)) }
        }
    }
}

fn result_row(item: &BoardItem) -> Markup {
    html! {
        tr data-item=(item.item) {
            td.item { a href={"/item/" (item.item)} { (item.item) } }
            td.description { (item.description) }
            td.result { (item.result()) }
            td.closed { (item.closed_at.map(clock).unwrap_or_default()) }
        }
    }
}

/// One item with its accepted bids in order, the soft-close extensions and the result.
pub(super) fn item(
    board: &Board,
    seq: u64,
    item: &BoardItem,
    history: &[BoardBid],
    projector: bool,
) -> Markup {
    let now = unix_ms();
    let title = format!("Item {}: {}", item.item, item.description);
    let shown = &history[..history.len().min(HISTORY_SHOWN as usize)];
    // A bid extended the auction when the end after it is later than before it: the database
    // says so from the second bid on; the first is compared with the end the board saw before
    // any bid, when it did.
    let rows: Vec<(&BoardBid, String)> = shown
        .iter()
        .enumerate()
        .map(|(i, bid)| {
            let first = i == 0 && item.first_end.is_some_and(|end| bid.ends_at > end);
            (bid, note(bid, bid.extended || first))
        })
        .collect();
    // The bids the page accounts for; when the list is cut, all of them, so that the script
    // appends new ones instead of re-reading the page.
    let accounted = if history.len() > shown.len() {
        item.bids
    } else {
        shown.len() as u64
    };
    page(
        &title,
        board,
        seq,
        Some(item.item),
        projector,
        now,
        html! {
            dl #facts data-item=(item.item) data-shown=(accounted) {
                dt { "Seller" } dd.seller { (item.seller) }
                dt { "Minimum" } dd.min { (item.min) }
                dt { "Price" } dd.price { (price(item)) }
                dt { "Terms" } dd.terms { (item.terms()) }
                dt { "Leader" } dd.leader { (item.leader.as_deref().unwrap_or("")) }
                dt { "Bids" } dd.bids { (item.bids) }
                dt { "Ends" } dd.ends { (clock(item.ends_at)) }
                dt { "Time left" } dd.left data-ends=(item.ends_at) data-open=(item.open) {
                    (if item.open { time_left(item.ends_at, now) } else { "closed".to_owned() })
                }
                dt { "Soft-close extensions" } dd.extensions { (item.extensions) }
                dt { "Result" } dd.result { (if item.open { "open".to_owned() } else { item.result() }) }
            }
            h2 { "Bids" }
            table #history {
                thead { tr { th { "Time" } th { "Bidder" } th { "Amount" } th { "" } } }
                tbody {
                    @for (bid, note) in rows {
                        tr data-ends=(bid.ends_at) {
                            td.at { (clock(bid.at)) }
                            td.bidder { (bid.bidder) }
                            td.amount { (bid.amount.map(|a| a.to_string()).unwrap_or_default()) }
                            td.note { (note) }
                        }
                    }
                }
            }
            @if history.len() > shown.len() {
                p { "Showing the first " (shown.len()) " bids." }
            }
            p #no-bids hidden[!history.is_empty()] { "No bids yet." }
            p { a href="/" { "All items" } }
        },
    )
}

#[allow(clippy::too_many_arguments)]
fn page(
    title: &str,
    board: &Board,
    seq: u64,
    item: Option<u64>,
    projector: bool,
    now: u64,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href="/board.css";
                // Without JavaScript the page re-reads itself instead.
                noscript { meta http-equiv="refresh" content="5"; }
            }
            body class=(if projector { "projector" } else { "board" })
                data-since=(event_id(board.boot, seq)) data-now=(now)
                data-item=[item] {
                header {
                    h1 { (title) }
                    p {
                        "Server time " span #clock { (clock(now)) }
                        " · "
                        @if projector { a href="/" { "full board" } }
                        @else { a href=(item.map_or("/projector".to_owned(), |i| format!("/projector/{i}"))) { "projector view" } }
                        span #live { "" }
                    }
                }
                main { (body) }
                script src="/board.js" defer {}
            }
        }
    }
}

/// What a bid's row says beside its amount; `board.js` says the same.
fn note(bid: &BoardBid, extended: bool) -> String {
    let mut parts = Vec::new();
    if bid.amount.is_none() {
        parts.push("a proxy bid, outbid at once (its maximum stays private)".to_owned());
    }
    if extended {
        parts.push(format!("extended the end to {}", clock(bid.ends_at)));
    }
    parts.join("; ")
}

fn price(item: &BoardItem) -> String {
    item.price.map(|p| p.to_string()).unwrap_or_default()
}

/// "1h 02m", "4m 05s", "12s" (whole seconds left, as the client says them), or "ending" in
/// the last second and once the end has passed (the close follows).
pub(super) fn time_left(ends_at: u64, now: u64) -> String {
    let s = ends_at.saturating_sub(now) / 1000;
    match s {
        0 => "ending".to_owned(),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

/// A time of day in UTC, "14:05:09 UTC".
pub(super) fn clock(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    let stamp = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} UTC", stamp.get(11..19).unwrap_or("--:--:--"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_reads_like_a_clock() {
        assert_eq!(time_left(1_000, 2_000), "ending");
        assert_eq!(time_left(2_000, 2_000), "ending");
        assert_eq!(time_left(2_999, 2_000), "ending");
        assert_eq!(time_left(3_000, 2_000), "1s");
        assert_eq!(time_left(65_999, 0), "1m 05s");
        assert_eq!(time_left(3_660_000, 0), "1h 01m");
        assert_eq!(clock(0), "00:00:00 UTC");
        assert_eq!(clock(45_296_000), "12:34:56 UTC");
    }
}
