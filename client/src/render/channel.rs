//! What a bidder sees on an item's channel after bidding (`bid --follow`, or a bid in the
//! shell): the item's messages, and the reconnecting session's own reports.

use super::{until, Out};
use auction_client::{ClientError, SessionEvent};
use auction_protocol::channel::ChannelBody;
use serde_json::json;

impl Out {
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
                reserve_met,
                ..
            } => {
                let reserve = match reserve_met {
                    Some(true) => " (reserve met)",
                    Some(false) => " (reserve not met)",
                    None => "",
                };
                say!(
                    "Item {item}: new highest bid {amount} by {bidder}{reserve}; bidding closes {}.",
                    until(*ends_at)
                )
            }
            ChannelBody::BidOver { item } => say!("Item {item}: bidding is over."),
            ChannelBody::SoldTo {
                item,
                winner,
                amount,
            } => {
                say!("Item {item}: sold to {winner} for {amount}.")
            }
            ChannelBody::NotSold {
                item,
                cancelled: Some(note),
            } => {
                say!("Item {item}: cancelled by the operator ({note}); not sold.")
            }
            ChannelBody::NotSold { item, .. } => {
                say!("Item {item}: not sold (no bids, or none reached the reserve).")
            }
            ChannelBody::BidRemoved {
                item,
                bid,
                bidder,
                amount,
                note,
            } => {
                let amount = amount.map(|a| format!(" of {a}")).unwrap_or_default();
                say!("Item {item}: the operator removed bid #{bid} by {bidder}{amount} ({note}).")
            }
            ChannelBody::PriceAdjustment { item, min, .. } => {
                say!("Item {item}: the seller lowered the minimum to {min}.")
            }
            ChannelBody::Error { message, .. } => say!("The server says: {message}."),
            ChannelBody::State { item, .. } => self.status(item),
            ChannelBody::BidAccepted {
                amount,
                leading: true,
                ..
            } => say!("Bid of {amount} accepted."),
            ChannelBody::BidAccepted { amount, .. } => {
                say!("Bid of {amount} accepted, but a proxy outbid it at once.")
            }
            ChannelBody::BidRejected { message, .. } => say!("Bid rejected: {message}."),
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
                    say!(
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
                    say!(
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
                    say!("Item {} ended while the connection was down.", item.item);
                    self.status(item);
                }
            }
        }
    }

    /// `bid --follow` (or a bid in the shell) stopped following its item.
    pub fn gave_up_following(&self, error: &ClientError) {
        say_err!("auction-client: gave up following the item: {error}");
    }
}
