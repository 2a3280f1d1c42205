//! What the operator's commands and `whoami` print.

use super::Out;
use auction_protocol::Cents;
use serde_json::json;

impl Out {
    pub fn cancelled(&self, item: u64, note: &str) {
        if self.json {
            self.line(json!({"item": item, "cancelled": true, "note": note}));
        } else {
            say!("Item {item} is cancelled: it closed unsold. Its history shows your note.");
        }
    }

    /// `lead`: the highest bid and its bidder after the removal.
    pub fn bid_removed(&self, item: u64, bid: u64, lead: Option<&(Cents, String)>) {
        if self.json {
            self.line(json!({
                "item": item,
                "removed": bid,
                "highest": lead.map(|l| l.0),
                "bidder": lead.map(|l| &l.1),
            }));
            return;
        }
        match lead {
            Some((amount, bidder)) => say!(
                "Removed bid #{bid} from item {item}: the highest bid is now {amount} by {bidder}."
            ),
            None => say!("Removed bid #{bid} from item {item}: it has no bid left."),
        }
    }

    /// `key_only`: the key alone, for a script (`--operator-key "$(... whoami --key)"`).
    pub fn whoami(&self, name: Option<&str>, key: &str, key_only: bool) {
        if self.json {
            self.line(json!({"name": name, "key": key}));
            return;
        }
        if key_only {
            say!("{key}");
            return;
        }
        match name {
            Some(name) => say!("You are {name}; your public key is {key}."),
            None => say!("You have not registered yet; your public key is {key}."),
        }
    }
}
