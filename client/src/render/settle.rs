//! What `settle` prints: the desk's messages and where a sale stands for each side, the
//! notice that a flag was not needed, and the question asked for a missing field.

use super::{until, Out};
use auction_protocol::settle::{Role, SettleBody, SettleState, SettlementView};
use std::io::Write;

impl Out {
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
            } => say!(
                "Item {item}: {buyer} gave the shipping details. Ship to: {name}, {}.",
                address.replace('\n', ", ")
            ),
            SettleBody::Error { message, .. } => say!("The server says: {message}."),
        }
    }

    fn settlement(&self, s: &SettlementView) {
        let item = s.item;
        let head = format!("Item {item} \"{}\"", s.description);
        let due = s.deadline.map(until).unwrap_or_default();
        match (s.role, s.state) {
            (Role::Offered, SettleState::Offered) => say!(
                "{head}: {} offers it to you for {} (second chance), answer {due}: \
                 `settle {item} --accept-offer` or `--decline-offer`.",
                s.seller,
                s.amount
            ),
            (Role::Offered, _) => say!("{head}: the offer is no longer open to you."),
            (Role::Buyer, _) => {
                say!("{head}: you bought it from {} for {}.", s.seller, s.amount);
                match &s.shipping {
                    Some(ship) => say!(
                        "  Shipping to: {}, {}.",
                        ship.name,
                        ship.address.replace('\n', ", ")
                    ),
                    None => say!(
                        "  Give your shipping name and address {due} (`settle {item} --name N --address A`), or the sale is cancelled."
                    ),
                }
                match &s.contact {
                    Some(c) => say!("  The seller's contact: {c}. Arrange payment with them directly; never send a card number."),
                    None => say!("  Waiting for the seller's contact."),
                }
                if s.state == SettleState::Settled {
                    say!("  Settled.");
                }
            }
            (Role::Seller, SettleState::Cancelled) => say!(
                "{head}: cancelled; the buyer did not answer in time (or the offer lapsed). \
                 `settle {item} --second-chance` offers it to the best remaining bidder."
            ),
            (Role::Seller, SettleState::Offered) => {
                say!(
                    "{head}: offered to another bidder for {} (second chance); waiting for the answer.",
                    s.amount
                );
                if s.contact.is_none() {
                    say!("  Give a contact for the buyer meanwhile: `settle {item} --contact C`.");
                }
            }
            (Role::Seller, _) => {
                let buyer = s.buyer.as_deref().unwrap_or("-");
                say!("{head}: sold to {buyer} for {}.", s.amount);
                match &s.shipping {
                    Some(ship) => say!(
                        "  Ship to: {}, {}.",
                        ship.name,
                        ship.address.replace('\n', ", ")
                    ),
                    None => say!("  Waiting for the buyer's shipping details ({due})."),
                }
                match &s.contact {
                    Some(c) => say!("  Your contact, given to the buyer: {c}."),
                    None => say!(
                        "  Give a contact for the buyer (e-mail or phone): `settle {item} --contact C`."
                    ),
                }
                if s.state == SettleState::Settled {
                    say!("  Settled.");
                }
            }
        }
    }

    /// A flag given for a field the server did not ask for: it changes nothing.
    pub fn flag_ignored(&self, field: &str) {
        say_err!(
            "auction-client: --{field} ignored: the server did not ask for it (given already, or not for your role)."
        );
    }

    /// Asks for one settlement field at the terminal (the answer is read by the caller).
    pub fn prompt_field(&self, field: &str) -> std::io::Result<()> {
        print!("{}", field_prompt(field));
        std::io::stdout().flush()
    }
}

/// The question asked for one settlement field, at the terminal or in the shell.
pub fn field_prompt(field: &str) -> &'static str {
    match field {
        "name" => "Name to ship to: ",
        "address" => "Address to ship to (one line): ",
        _ => "How the buyer reaches you (e-mail or phone): ",
    }
}
