//! Everything `auction-client` prints: sentences and tables for people, one JSON object per
//! line with `--json`. Commands compute plain values; these functions only render them.
//! This file holds the answers to the short commands and the error line; what belongs to one
//! concern (an item's channel, announcements, settlement, attachment, the shell) is in the
//! files under `render/`, each another `impl Out`.

/// Prints a line to stdout, or above the shell's prompt while it reads one (see [`emit`]).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::render::emit(format_args!($($arg)*), false)
    };
}

/// Like [`say!`], for stderr.
macro_rules! say_err {
    ($($arg:tt)*) => {
        $crate::render::emit(format_args!($($arg)*), true)
    };
}

mod announce;
mod attach;
mod channel;
mod operator;
mod settle;
mod shell;

pub use settle::field_prompt;

use auction_client::{BidResult, ClientError};
use auction_protocol::{Cents, ItemState, ItemView};
use serde_json::json;
use std::sync::Mutex;

/// Where a line goes while the shell's line editor is on a terminal: above the prompt, so a
/// live message never breaks the line being typed. `None`: straight to stdout or stderr.
type Sink = Box<dyn FnMut(String) + Send>;

/// A std mutex: held while one line is handed over, never across `.await`.
static ABOVE_PROMPT: Mutex<Option<Sink>> = Mutex::new(None);

/// Sends every line printed from now on through `sink` (the shell's line editor), or again
/// straight to the terminal with `None`.
pub fn print_above_prompt(sink: Option<Sink>) {
    *ABOVE_PROMPT.lock().unwrap_or_else(|p| p.into_inner()) = sink;
}

/// Prints one line (see [`say!`]).
pub fn emit(line: std::fmt::Arguments<'_>, to_stderr: bool) {
    let mut sink = ABOVE_PROMPT.lock().unwrap_or_else(|p| p.into_inner());
    match sink.as_mut() {
        Some(print) => print(format!("{line}\n")),
        None if to_stderr => eprintln!("{line}"),
        None => println!("{line}"),
    }
}

/// Where every command's output goes: sentences for people, or with `json` one JSON object
/// per line.
#[derive(Clone, Copy)]
pub struct Out {
    pub json: bool,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// "in 4m 12s" / "ending now".
pub fn until(ends_at: u64) -> String {
    let left = ends_at.saturating_sub(now_ms()) / 1000;
    if left == 0 {
        return "ending now".into();
    }
    format!("in {}", render_secs(left))
}

/// A moment as the server's clock tells it: "14:05:09 UTC" (the date is the same for an
/// auction's bids but for the rare one that runs past midnight).
pub fn clock(ms: u64) -> String {
    // humantime formats years up to 9999 and panics past them: a time from a server is
    // anything it says, so one that far out is shown as unknown.
    const YEAR_10000_MS: u64 = 253_402_300_800_000;
    if ms >= YEAR_10000_MS {
        return "--:--:-- UTC".into();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    let stamp = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} UTC", stamp.get(11..19).unwrap_or("--:--:--"))
}

/// Prints a table: the header, then the rows, each column padded to its widest cell (cells
/// cut at 40 characters), except the last, which is free text.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count().min(40));
        }
    }
    let print = |cells: &[String]| {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i + 1 == N {
                    c.clone()
                } else {
                    let c: String = c.chars().take(40).collect();
                    format!("{c:<w$}")
                }
            })
            .collect();
        say!("{}", line.join("  ").trim_end());
    };
    print(&header.map(String::from));
    for row in rows {
        print(row);
    }
}

/// "4m 12s", "2h 05m", "1d 3h".
pub fn render_secs(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m"),
        _ => format!("{d}d {h}h"),
    }
}

impl Out {
    pub fn line(&self, value: serde_json::Value) {
        say!("{value}");
    }

    pub fn registered(&self, name: &str) {
        if self.json {
            self.line(json!({"registered": true, "name": name}));
        } else {
            say!("Registered as {name}.");
        }
    }

    pub fn deregistered(&self, name: &str) {
        if self.json {
            self.line(json!({"deregistered": true, "name": name}));
        } else {
            say!("Deregistered {name}.");
        }
    }

    pub fn offered(&self, item: u64, channel: &str, ends_at: u64) {
        if self.json {
            self.line(json!({"item": item, "channel": channel, "ends_at": ends_at}));
        } else {
            say!(
                "Item {item} is up for auction; bidding closes {}. Its channel is {channel}.",
                until(ends_at)
            );
        }
    }

    pub fn items(&self, items: &[ItemView]) {
        if self.json {
            for item in items {
                self.line(serde_json::to_value(item).unwrap_or_default());
            }
            return;
        }
        if items.is_empty() {
            say!("No items are open.");
            return;
        }
        let rows: Vec<[String; 7]> = items
            .iter()
            .map(|i| {
                [
                    i.item.to_string(),
                    i.description.clone(),
                    i.seller.clone(),
                    i.min.to_string(),
                    match (&i.highest, &i.bidder) {
                        (Some(a), Some(b)) => format!("{a} ({b})"),
                        _ => "-".into(),
                    },
                    terms_cell(i),
                    until(i.ends_at),
                ]
            })
            .collect();
        let header = [
            "ITEM",
            "DESCRIPTION",
            "SELLER",
            "MINIMUM",
            "HIGHEST",
            "TERMS",
            "CLOSES",
        ];
        table(&header, &rows);
    }

    /// An item's bids, oldest first: one JSON object per bid, or a table.
    pub fn history(&self, item: u64, history: &auction_client::History) {
        let bids = &history.bids;
        if self.json {
            for bid in bids {
                self.line(serde_json::to_value(bid).unwrap_or_default());
            }
            if let Some(c) = &history.cancelled {
                self.line(json!({"item": item, "cancelled": c}));
            }
            return;
        }
        let cancelled = history.cancelled.as_ref().map(|c| {
            format!(
                "The operator cancelled item {item} at {}: {}.",
                clock(c.at),
                c.note
            )
        });
        if bids.is_empty() {
            say!("Item {item} has no bids yet.");
            if let Some(c) = cancelled {
                say!("{c}");
            }
            return;
        }
        if history.more {
            say!(
                "Item {item}: its latest {} bids (it has older ones).",
                bids.len()
            );
        }
        let rows: Vec<[String; 5]> = bids
            .iter()
            .map(|b| {
                let mut notes = Vec::new();
                if let Some(r) = &b.removed {
                    notes.push(format!(
                        "REMOVED by the operator at {}: {}",
                        clock(r.at),
                        r.note
                    ));
                }
                if b.amount.is_none() {
                    notes
                        .push("a proxy bid, outbid at once (its maximum stays private)".to_owned());
                }
                if b.extended {
                    notes.push(format!("extended the end to {}", clock(b.ends_at)));
                }
                [
                    format!("#{}", b.bid),
                    clock(b.at),
                    b.bidder.clone(),
                    b.amount.map(|a| a.to_string()).unwrap_or_default(),
                    notes.join("; "),
                ]
            })
            .collect();
        table(&["BID", "TIME", "BIDDER", "AMOUNT", "NOTE"], &rows);
        if let Some(c) = cancelled {
            say!("{c}");
        }
    }

    pub fn status(&self, item: &ItemView) {
        if self.json {
            let mut v = serde_json::to_value(item).unwrap_or_default();
            if item.state == ItemState::Closed {
                v["winner"] = json!(item.winner);
                v["price"] = json!(item.price);
                v["cancelled"] = json!(item.cancelled);
            }
            self.line(v);
            return;
        }
        say!("{}", status_line(item));
    }

    /// A bid's answer; `bought`: it was `--buy-now`.
    pub fn bid(&self, item: u64, result: &BidResult, asked: auction_protocol::Cents, bought: bool) {
        match result {
            BidResult::Accepted {
                amount,
                ends_at,
                leading,
                max,
            } => {
                if self.json {
                    self.line(json!({
                        "accepted": true, "item": item, "amount": amount, "ends_at": ends_at,
                        "leading": leading, "max": max, "buy_now": bought
                    }));
                    return;
                }
                if bought {
                    say!("You bought item {item} for {amount}: the auction has ended.");
                    return;
                }
                let closes = until(*ends_at);
                match (max, leading) {
                    (None, true) => say!(
                        "Bid of {amount} on item {item} accepted: you are the highest bidder; bidding closes {closes}."
                    ),
                    (None, false) => say!(
                        "Bid of {amount} on item {item} accepted, but another bidder's proxy outbid it at once; bidding closes {closes}."
                    ),
                    (Some(max), true) => say!(
                        "Proxy bid on item {item} accepted: you lead at {amount}; the server will bid for you up to {max} (no one else sees it); bidding closes {closes}."
                    ),
                    (Some(max), false) => say!(
                        "Proxy bid up to {max} on item {item} accepted, but another bidder's higher (or earlier) maximum outbid it at once; bidding closes {closes}."
                    ),
                }
            }
            BidResult::Rejected {
                reason,
                message,
                highest,
                next_min,
            } => {
                if self.json {
                    self.line(json!({
                        "accepted": false, "item": item, "amount": asked, "reason": reason,
                        "message": message, "highest": highest, "next_min": next_min,
                        "buy_now": bought
                    }));
                }
                if bought {
                    say_err!("Buying item {item} for {asked} was refused: {message}.");
                } else {
                    say_err!("Bid of {asked} on item {item} rejected: {message}.");
                }
            }
        }
    }

    pub fn subscribed(&self, item: &ItemView) {
        if self.json {
            self.line(json!({"subscribed": true, "item": item}));
            return;
        }
        say!(
            "Subscribed to item {}: `watch` prints its new highest bids and its result.",
            item.item
        );
        self.status(item);
    }

    pub fn unsubscribed(&self, item: u64) {
        if self.json {
            self.line(json!({"subscribed": false, "item": item}));
        } else {
            say!("Unsubscribed from item {item}.");
        }
    }

    pub fn negotiated(&self, item: u64, min: Option<Cents>) {
        if self.json {
            self.line(json!({"item": item, "accepted": min.is_some(), "min": min}));
            return;
        }
        match min {
            Some(min) => say!("Item {item}: the minimum is now {min}; bidders have been told."),
            None => say!("Item {item}: you kept the minimum."),
        }
    }

    /// A failed command: the line every error ends in, and with `--json` an object saying so.
    pub fn error(&self, reason: &str, message: &str) {
        if self.json {
            self.line(json!({"ok": false, "reason": reason, "message": message}));
        }
        say_err!("auction-client: {message}");
    }
}

/// The items table's TERMS cell: the reserve's state and the buy-it-now price, "-" for
/// neither.
fn terms_cell(item: &ItemView) -> String {
    let mut parts = Vec::new();
    match item.reserve_met {
        Some(true) => parts.push("reserve met".to_owned()),
        Some(false) => parts.push("reserve not met".to_owned()),
        None => {}
    }
    if let Some(price) = item.buy_now {
        parts.push(format!("buy now {price}"));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// One item's state in a sentence.
fn status_line(item: &ItemView) -> String {
    let lead = match (&item.highest, &item.bidder) {
        (Some(a), Some(b)) => format!("the highest bid is {a} by {b}"),
        _ => format!("no bids yet (minimum {})", item.min),
    };
    let reserve = match item.reserve_met {
        Some(true) => " (reserve met)",
        Some(false) => " (reserve not met)",
        None => "",
    };
    let buy_now = match item.buy_now {
        Some(price) => format!("; buy it now for {price} (`bid {} --buy-now`)", item.item),
        None => String::new(),
    };
    let (n, what, seller) = (item.item, &item.description, &item.seller);
    match (item.state, &item.winner, &item.price) {
        (ItemState::Open, _, _) => format!(
            "Item {n} \"{what}\" by {seller} is open: {lead}{reserve}{buy_now}; bidding closes {}.",
            until(item.ends_at)
        ),
        (ItemState::Closed, _, _) if item.cancelled => format!(
            "Item {n} \"{what}\" by {seller} was cancelled by the operator: not sold (`history {n}` says why)."
        ),
        (ItemState::Closed, Some(w), Some(p)) => {
            format!("Item {n} \"{what}\" by {seller} is closed: sold to {w} for {p}.")
        }
        (ItemState::Closed, _, _) if item.reserve_met == Some(false) && item.highest.is_some() => {
            format!(
                "Item {n} \"{what}\" by {seller} is closed: not sold (the reserve was not met)."
            )
        }
        (ItemState::Closed, _, _) => {
            format!("Item {n} \"{what}\" by {seller} is closed: not sold.")
        }
    }
}

/// The sentence shown for a failed command: the server's own words for a refusal, otherwise
/// the error with its whole context chain.
pub fn error_message(e: &anyhow::Error) -> String {
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Denied { message, .. }) => message.clone(),
        _ => format!("{e:#}"),
    }
}
