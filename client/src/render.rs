//! Everything `auction-client` prints: sentences and tables for people, one JSON object per
//! line with `--json`. Commands compute plain values; these functions only render them.

use auction_client::{BidResult, SessionEvent, Update};
use auction_protocol::channel::ChannelBody;
use auction_protocol::settle::{Role, SettleBody, SettleState, SettlementView};
use auction_protocol::udp::ServerBody;
use auction_protocol::{Cents, ItemState, ItemView};
use serde_json::json;

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
        println!("{value}");
    }

    pub fn registered(&self, name: &str) {
        if self.json {
            self.line(json!({"registered": true, "name": name}));
        } else {
            println!("Registered as {name}.");
        }
    }

    pub fn deregistered(&self, name: &str) {
        if self.json {
            self.line(json!({"deregistered": true, "name": name}));
        } else {
            println!("Deregistered {name}.");
        }
    }

    pub fn offered(&self, item: u64, channel: &str, ends_at: u64) {
        if self.json {
            self.line(json!({"item": item, "channel": channel, "ends_at": ends_at}));
        } else {
            println!(
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
            println!("No items are open.");
            return;
        }
        let rows: Vec<[String; 6]> = items
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
            "CLOSES",
        ];
        let mut widths = header.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count().min(40));
            }
        }
        let print = |cells: &[String]| {
            let line: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| {
                    let c: String = c.chars().take(40).collect();
                    format!("{c:<w$}")
                })
                .collect();
            println!("{}", line.join("  ").trim_end());
        };
        print(&header.map(String::from));
        for row in &rows {
            print(row);
        }
    }

    pub fn status(&self, item: &ItemView) {
        if self.json {
            let mut v = serde_json::to_value(item).unwrap_or_default();
            if item.state == ItemState::Closed {
                v["winner"] = json!(item.winner);
                v["price"] = json!(item.price);
            }
            self.line(v);
            return;
        }
        let lead = match (&item.highest, &item.bidder) {
            (Some(a), Some(b)) => format!("the highest bid is {a} by {b}"),
            _ => format!("no bids yet (minimum {})", item.min),
        };
        match item.state {
            ItemState::Open => println!(
                "Item {} \"{}\" by {} is open: {lead}; bidding closes {}.",
                item.item,
                item.description,
                item.seller,
                until(item.ends_at)
            ),
            ItemState::Closed => match (&item.winner, &item.price) {
                (Some(w), Some(p)) => println!(
                    "Item {} \"{}\" by {} is closed: sold to {w} for {p}.",
                    item.item, item.description, item.seller
                ),
                _ => println!(
                    "Item {} \"{}\" by {} is closed: not sold.",
                    item.item, item.description, item.seller
                ),
            },
        }
    }

    pub fn bid(&self, item: u64, result: &BidResult, asked: auction_protocol::Cents) {
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
                        "leading": leading, "max": max
                    }));
                    return;
                }
                let closes = until(*ends_at);
                match (max, leading) {
                    (None, true) => println!(
                        "Bid of {amount} on item {item} accepted: you are the highest bidder; bidding closes {closes}."
                    ),
                    (None, false) => println!(
                        "Bid of {amount} on item {item} accepted, but another bidder's proxy outbid it at once; bidding closes {closes}."
                    ),
                    (Some(max), true) => println!(
                        "Proxy bid on item {item} accepted: you lead at {amount}; the server will bid for you up to {max} (no one else sees it); bidding closes {closes}."
                    ),
                    (Some(max), false) => println!(
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
                        "message": message, "highest": highest, "next_min": next_min
                    }));
                }
                eprintln!("Bid of {asked} on item {item} rejected: {message}.");
            }
        }
    }

    /// A message on an item channel after the bid (with `--follow` or in the shell).
    pub fn channel_event(&self, event: &ChannelBody) {
        if self.json {
            self.line(serde_json::to_value(event).unwrap_or_default());
            return;
        }
        match event {
            ChannelBody::Highest {
                item,
                amount,
                bidder,
                ends_at,
            } => println!(
                "Item {item}: new highest bid {amount} by {bidder}; bidding closes {}.",
                until(*ends_at)
            ),
            ChannelBody::BidOver { item } => println!("Item {item}: bidding is over."),
            ChannelBody::SoldTo {
                item,
                winner,
                amount,
            } => {
                println!("Item {item}: sold to {winner} for {amount}.")
            }
            ChannelBody::NotSold { item } => println!("Item {item}: not sold (no bids)."),
            ChannelBody::PriceAdjustment { item, min, .. } => {
                println!("Item {item}: the seller lowered the minimum to {min}.")
            }
            ChannelBody::Error { message, .. } => println!("The server says: {message}."),
            ChannelBody::State { item, .. } => self.status(item),
            ChannelBody::BidAccepted {
                amount,
                leading: true,
                ..
            } => println!("Bid of {amount} accepted."),
            ChannelBody::BidAccepted { amount, .. } => {
                println!("Bid of {amount} accepted, but a proxy outbid it at once.")
            }
            ChannelBody::BidRejected { message, .. } => println!("Bid rejected: {message}."),
        }
    }

    /// What a reconnecting item session reports.
    pub fn session_event(&self, event: &SessionEvent) {
        match event {
            SessionEvent::Channel(body) => self.channel_event(body),
            SessionEvent::Reconnecting {
                item,
                attempt,
                delay,
                error,
            } => {
                if self.json {
                    self.line(json!({
                        "type": "reconnecting",
                        "item": item,
                        "attempt": attempt,
                        "delay_ms": delay.as_millis() as u64,
                        "error": error,
                    }));
                } else {
                    println!(
                        "Lost the channel to item {item} ({error}); reconnecting in {:.1} s (attempt {attempt}).",
                        delay.as_secs_f64()
                    );
                }
            }
            SessionEvent::Reconnected { item } => {
                if self.json {
                    self.line(json!({ "type": "reconnected", "item": item }));
                } else {
                    let lead = match (&item.highest, &item.bidder) {
                        (Some(h), Some(b)) => format!("highest bid {h} by {b}"),
                        _ => format!("no bids yet, minimum {}", item.min),
                    };
                    println!(
                        "Reconnected to item {}: {lead}; bidding closes {}.",
                        item.item,
                        until(item.ends_at)
                    );
                }
            }
            SessionEvent::Ended { item } => {
                if self.json {
                    self.line(json!({ "type": "ended", "item": item }));
                } else {
                    println!("Item {} ended while the connection was down.", item.item);
                    self.status(item);
                }
            }
        }
    }

    pub fn announcement(&self, msg: &ServerBody) {
        if self.json {
            self.line(serde_json::to_value(msg).unwrap_or_default());
            return;
        }
        match msg {
            ServerBody::NewItem { item, .. } => println!(
                "New item {}: \"{}\" by {}, minimum {}, closes {}. Channel {}.",
                item.item,
                item.description,
                item.seller,
                item.min,
                until(item.ends_at),
                item.channel.as_deref().unwrap_or("-")
            ),
            ServerBody::Win {
                item,
                description,
                amount,
                seller,
                ..
            } => println!(
                "You won item {item} \"{description}\" for {amount}. The seller is {seller}. Give your shipping details with `settle {item}`."
            ),
            ServerBody::Sold {
                item,
                description,
                amount,
                winner,
                ..
            } => {
                println!("Your item {item} \"{description}\" sold to {winner} for {amount}. Give the buyer a contact with `settle {item}`.")
            }
            ServerBody::NotSold {
                item, description, ..
            } => {
                println!("Your item {item} \"{description}\" closed without a bid: not sold.")
            }
            ServerBody::BidUpdate {
                item,
                highest,
                bidder,
                ends_at,
                ..
            } => println!(
                "Item {item}: new highest bid {highest} by {bidder}; bidding closes {}.",
                until(*ends_at)
            ),
            ServerBody::ItemClosed {
                item,
                winner: Some(winner),
                price: Some(price),
                ..
            } => println!("Item {item} closed: sold to {winner} for {price}."),
            ServerBody::ItemClosed { item, .. } => {
                println!("Item {item} closed: not sold.")
            }
            ServerBody::NegotiateReq {
                item,
                description,
                min,
                time_left,
                ..
            } => println!(
                "Your item {item} \"{description}\" has had no bid in half its time ({} left, \
                 minimum {min}). Lower the minimum with `negotiate {item} --accept AMOUNT`, or \
                 keep it with `negotiate {item} --refuse`.",
                render_secs(*time_left)
            ),
            ServerBody::PriceAdjustment { item, min, .. } => {
                println!("Item {item}: the seller lowered the minimum to {min}.")
            }
            ServerBody::Settled {
                item, description, ..
            } => println!(
                "The sale of item {item} \"{description}\" is settled: `settle {item}` shows the details."
            ),
            ServerBody::SettleCancelled {
                item,
                description,
                why,
                ..
            } => {
                let what = match why.as_str() {
                    "buyer-timeout" => "the buyer gave no shipping details in time, so the sale is cancelled",
                    "offer-lapsed" => "the second-chance offer was not answered in time",
                    "offer-declined" => "the second-chance offer was declined",
                    _ => "the settlement was cancelled",
                };
                println!(
                    "Item {item} \"{description}\": {what}. The seller may offer it to another bidder: `settle {item} --second-chance`."
                )
            }
            ServerBody::SecondChance {
                item,
                description,
                amount,
                seller,
                deadline,
                ..
            } => println!(
                "{seller} offers you item {item} \"{description}\" for {amount}, your highest bid (second chance); answer {}: `settle {item} --accept-offer` or `--decline-offer`.",
                until(*deadline)
            ),
            other => println!("{other:?}"),
        }
    }

    /// What `watch` prints for an [`Update`].
    pub fn update(&self, update: &Update) {
        match update {
            Update::Announcement(msg) => self.announcement(msg),
            Update::Resynced { missed, items } => {
                if self.json {
                    self.line(json!({"type": "resynced", "missed": missed, "items": items}));
                    return;
                }
                match missed {
                    Some(n) => {
                        println!("Missed {n} announcement(s); re-synchronised with the server:")
                    }
                    None => println!("The server restarted; re-synchronised with it:"),
                }
                if items.is_empty() {
                    println!("  (no subscribed items are open)");
                }
                for item in items {
                    print!("  ");
                    self.status(item);
                }
            }
        }
    }

    pub fn subscribed(&self, item: &ItemView) {
        if self.json {
            self.line(json!({"subscribed": true, "item": item}));
            return;
        }
        println!(
            "Subscribed to item {}: `watch` prints its new highest bids and its result.",
            item.item
        );
        self.status(item);
    }

    pub fn unsubscribed(&self, item: u64) {
        if self.json {
            self.line(json!({"subscribed": false, "item": item}));
        } else {
            println!("Unsubscribed from item {item}.");
        }
    }

    /// A message from the settlement desk.
    pub fn settle_message(&self, msg: &SettleBody) {
        if self.json {
            self.line(serde_json::to_value(msg).unwrap_or_default());
            return;
        }
        match msg {
            SettleBody::InformReq { settlement, .. }
            | SettleBody::Settlement { settlement, .. } => self.settlement(settlement),
            SettleBody::ShippingInfo {
                item,
                buyer,
                name,
                address,
            } => println!(
                "Item {item}: {buyer} gave the shipping details. Ship to: {name}, {}.",
                address.replace('\n', ", ")
            ),
            SettleBody::Error { message, .. } => println!("The server says: {message}."),
        }
    }

    fn settlement(&self, s: &SettlementView) {
        let item = s.item;
        let head = format!("Item {item} \"{}\"", s.description);
        let due = s.deadline.map(until).unwrap_or_default();
        match (s.role, s.state) {
            (Role::Offered, SettleState::Offered) => println!(
                "{head}: {} offers it to you for {} (second chance), answer {due}: \
                 `settle {item} --accept-offer` or `--decline-offer`.",
                s.seller, s.amount
            ),
            (Role::Offered, _) => println!("{head}: the offer is no longer open to you."),
            (Role::Buyer, _) => {
                println!("{head}: you bought it from {} for {}.", s.seller, s.amount);
                match &s.shipping {
                    Some(ship) => println!(
                        "  Shipping to: {}, {}.",
                        ship.name,
                        ship.address.replace('\n', ", ")
                    ),
                    None => println!(
                        "  Give your shipping name and address {due}, or the sale is cancelled."
                    ),
                }
                match &s.contact {
                    Some(c) => println!("  The seller's contact: {c}. Arrange payment with them directly; never send a card number."),
                    None => println!("  Waiting for the seller's contact."),
                }
                if s.state == SettleState::Settled {
                    println!("  Settled.");
                }
            }
            (Role::Seller, SettleState::Cancelled) => println!(
                "{head}: cancelled; the buyer did not answer in time (or the offer lapsed). \
                 `settle {item} --second-chance` offers it to the best remaining bidder."
            ),
            (Role::Seller, SettleState::Offered) => println!(
                "{head}: offered to another bidder for {} (second chance); waiting for the answer.",
                s.amount
            ),
            (Role::Seller, _) => {
                let buyer = s.buyer.as_deref().unwrap_or("-");
                println!("{head}: sold to {buyer} for {}.", s.amount);
                match &s.shipping {
                    Some(ship) => println!(
                        "  Ship to: {}, {}.",
                        ship.name,
                        ship.address.replace('\n', ", ")
                    ),
                    None => println!("  Waiting for the buyer's shipping details ({due})."),
                }
                match &s.contact {
                    Some(c) => println!("  Your contact, given to the buyer: {c}."),
                    None => println!("  Give a contact for the buyer (e-mail or phone)."),
                }
                if s.state == SettleState::Settled {
                    println!("  Settled.");
                }
            }
        }
    }

    pub fn negotiated(&self, item: u64, min: Option<Cents>) {
        if self.json {
            self.line(json!({"item": item, "accepted": min.is_some(), "min": min}));
            return;
        }
        match min {
            Some(min) => println!("Item {item}: the minimum is now {min}; bidders have been told."),
            None => println!("Item {item}: you kept the minimum."),
        }
    }

    pub fn error(&self, reason: &str, message: &str) {
        if self.json {
            self.line(json!({"ok": false, "reason": reason, "message": message}));
        }
        eprintln!("auction-client: {message}");
    }
}
