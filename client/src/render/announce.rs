//! What `watch` and the shell print for the registration plane's announcements: new items,
//! bids on subscribed items, wins, sales, negotiation requests and settlement news.

use super::{render_secs, until, Out};
use auction_client::Update;
use auction_protocol::udp::ServerBody;
use serde_json::json;

impl Out {
    pub fn announcement(&self, msg: &ServerBody) {
        if self.json {
            self.line(serde_json::to_value(msg).unwrap_or_default());
            return;
        }
        match msg {
            ServerBody::NewItem { item, .. } => say!(
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
            } => say!(
                "You won item {item} \"{description}\" for {amount}. The seller is {seller}. Give your shipping details with `settle {item}`."
            ),
            ServerBody::Outbid {
                item,
                description,
                amount,
                bidder,
                next_min,
                ends_at,
                ..
            } => say!(
                "You were outbid on item {item} \"{description}\": {bidder} leads with {amount}. Bid at least {next_min} with `bid {item} {next_min}`; bidding closes {}.",
                until(*ends_at)
            ),
            ServerBody::EndingSoon {
                item,
                description,
                amount,
                ends_at,
                ..
            } => say!(
                "Item {item} \"{description}\" ends soon: bidding closes {}, and you lead with {amount}.",
                until(*ends_at)
            ),
            ServerBody::Sold {
                item,
                description,
                amount,
                winner,
                ..
            } => {
                say!("Your item {item} \"{description}\" sold to {winner} for {amount}. Give the buyer a contact with `settle {item}`.")
            }
            ServerBody::NotSold {
                item,
                description,
                cancelled: true,
                ..
            } => {
                say!("Your item {item} \"{description}\" was cancelled by the operator: not sold. `history {item}` shows why.")
            }
            ServerBody::NotSold {
                item, description, ..
            } => {
                say!("Your item {item} \"{description}\" closed without a sale: not sold.")
            }
            ServerBody::BidUpdate {
                item,
                highest,
                bidder,
                ends_at,
                ..
            } => say!(
                "Item {item}: new highest bid {highest} by {bidder}; bidding closes {}.",
                until(*ends_at)
            ),
            ServerBody::ItemClosed {
                item,
                winner: Some(winner),
                price: Some(price),
                ..
            } => say!("Item {item} closed: sold to {winner} for {price}."),
            ServerBody::ItemClosed { item, .. } => {
                say!("Item {item} closed: not sold.")
            }
            ServerBody::NegotiateReq {
                item,
                description,
                min,
                time_left,
                ..
            } => say!(
                "Your item {item} \"{description}\" has had no bid in half its time ({} left, \
                 minimum {min}). Lower the minimum with `negotiate {item} --accept AMOUNT`, or \
                 keep it with `negotiate {item} --refuse`.",
                render_secs(*time_left)
            ),
            ServerBody::PriceAdjustment { item, min, .. } => {
                say!("Item {item}: the seller lowered the minimum to {min}.")
            }
            ServerBody::Settled {
                item, description, ..
            } => say!(
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
                say!(
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
            } => say!(
                "{seller} offers you item {item} \"{description}\" for {amount}, your highest bid (second chance); answer {}: `settle {item} --accept-offer` or `--decline-offer`.",
                until(*deadline)
            ),
            ServerBody::Evicted { message, .. } => say_err!("auction-client: {message}."),
            other => say!("{other:?}"),
        }
    }

    /// What `watch` prints for an [`Update`].
    pub fn update(&self, update: &Update) {
        match update {
            Update::Announcement(msg) => self.announcement(msg),
            Update::Resynced {
                missed,
                items,
                open,
            } => {
                if self.json {
                    self.line(
                        json!({"type": "resynced", "missed": missed, "items": items, "open": open}),
                    );
                    return;
                }
                match missed {
                    Some(n) => {
                        say!("Missed {n} announcement(s); re-synchronised with the server:")
                    }
                    None => say!("The server restarted; re-synchronised with it:"),
                }
                if items.is_empty() {
                    say!("  (no subscribed items are open)");
                }
                for item in items {
                    say!("  {}", super::status_line(item));
                }
                // Every open item may be thousands: the count, and where to see them.
                say!("  {} item(s) open now; `items` lists them.", open.len());
            }
        }
    }
}
