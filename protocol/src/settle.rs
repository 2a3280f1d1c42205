//! The settlement plane: after a sale, buyer and seller complete it over one mutual-TLS
//! connection each to the server's settlement listener (its address is `settle` in the sold
//! item's state). Newline-delimited JSON, like the bidding channel: the client sends requests,
//! the server answers each in order, and pushes `shipping-info` / `settlement` when the other
//! party acts while this one is connected.
//!
//! What travels here is personal (a shipping address), which is why it never goes over UDP.
//! Payment card numbers are refused outright: see [`check_info`].

use serde::{Deserialize, Serialize};

use crate::channel::LineError;
use crate::{Cents, Reason, VERSION};

/// Longest shipping name, in characters.
pub const MAX_SHIP_NAME: usize = 100;
/// Longest shipping address, in characters (line breaks allowed).
pub const MAX_SHIP_ADDRESS: usize = 500;
/// Longest seller contact, in characters.
pub const MAX_CONTACT: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleRequest {
    pub v: u32,
    pub req: u64,
    #[serde(flatten)]
    pub body: SettleRequestBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SettleRequestBody {
    /// Where does item `item`'s settlement stand for me? Answered with `inform-req` when this
    /// account still has to give its details, otherwise `settlement`.
    Open { item: u64 },
    /// The buyer's shipping `name` and `address`, or the seller's `contact`.
    Inform {
        item: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contact: Option<String>,
    },
    /// The seller, after a cancelled sale: offer the item to the best remaining bidder at
    /// that bidder's highest bid.
    SecondChance { item: u64 },
    /// The bidder offered a second chance takes it (and becomes the buyer) or declines.
    AnswerOffer { item: u64, accept: bool },
}

impl SettleRequestBody {
    pub fn item(&self) -> u64 {
        match self {
            SettleRequestBody::Open { item }
            | SettleRequestBody::Inform { item, .. }
            | SettleRequestBody::SecondChance { item }
            | SettleRequestBody::AnswerOffer { item, .. } => *item,
        }
    }
}

/// Who an account is in a settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Buyer,
    Seller,
    /// Offered the item in a second chance, not yet answered.
    Offered,
}

/// Where a settlement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SettleState {
    /// The buyer has not given shipping details yet (by `deadline`).
    AwaitingBuyer,
    /// The buyer has; the seller has not given a contact yet.
    AwaitingSeller,
    /// Both have: complete.
    Settled,
    /// The buyer did not answer in time. The seller may make a second-chance offer.
    Cancelled,
    /// A second-chance offer waits for its bidder's answer (by `deadline`).
    Offered,
}

/// A buyer's shipping details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipping {
    pub name: String,
    pub address: String,
}

/// One party's view of a settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementView {
    pub item: u64,
    pub description: String,
    pub role: Role,
    pub state: SettleState,
    pub seller: String,
    /// The buyer now (null while a second-chance offer is open or after a cancellation).
    pub buyer: Option<String>,
    pub amount: Cents,
    /// Unix ms: when the buyer's details (or the answer to an offer) are due. Null once the
    /// buyer has answered.
    pub deadline: Option<u64>,
    /// The buyer's shipping details: shown to the seller once given (and to the buyer).
    pub shipping: Option<Shipping>,
    /// The seller's contact: shown to the buyer once given (and to the seller).
    pub contact: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleMessage {
    pub v: u32,
    #[serde(flatten)]
    pub body: SettleBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SettleBody {
    /// The server asks for this account's details: `need` names the fields of `inform`.
    InformReq {
        req: u64,
        settlement: SettlementView,
        need: Vec<String>,
    },
    /// The settlement as this account sees it: the answer to a request (`req`), or pushed
    /// (`req` null) when the other party acted.
    Settlement {
        req: Option<u64>,
        settlement: SettlementView,
    },
    /// Pushed to the seller when the buyer gives shipping details.
    ShippingInfo {
        item: u64,
        buyer: String,
        name: String,
        address: String,
    },
    /// A request that was refused, or a line that could not be read.
    Error {
        req: Option<u64>,
        reason: Reason,
        message: String,
    },
}

/// Decodes one line from a client (without its newline).
pub fn decode_request(line: &str) -> Result<SettleRequest, LineError> {
    crate::channel::decode_versioned(line)
}

pub fn encode_line(body: SettleBody) -> String {
    let mut s =
        serde_json::to_string(&SettleMessage { v: VERSION, body }).expect("messages serialize");
    s.push('\n');
    s
}

pub fn encode_request(req: u64, body: SettleRequestBody) -> String {
    let mut s = serde_json::to_string(&SettleRequest {
        v: VERSION,
        req,
        body,
    })
    .expect("requests serialize");
    s.push('\n');
    s
}

pub fn decode_message(line: &str) -> Result<SettleMessage, LineError> {
    serde_json::from_str(line).map_err(|e| LineError {
        reason: Reason::Malformed,
        req: None,
        detail: format!("unreadable server line: {e}"),
    })
}

/// Checks one settlement field: 1 to `max` characters, no control characters but line breaks
/// (where `lines` allows them), and nothing that looks like a payment card number.
pub fn check_info(
    field: &str,
    value: &str,
    max: usize,
    lines: bool,
) -> Result<(), (Reason, String)> {
    let chars = value.chars().count();
    if value.trim().is_empty() || chars > max {
        return Err((
            Reason::InvalidInfo,
            format!("{field} must be 1 to {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !(lines && c == '\n'))
    {
        return Err((
            Reason::InvalidInfo,
            format!("{field} may not contain control characters"),
        ));
    }
    if contains_card_number(value) {
        return Err((
            Reason::CardNumber,
            format!(
                "{field} looks like it contains a payment card number; never send one here: \
                 arrange payment with the other party directly"
            ),
        ));
    }
    Ok(())
}

/// Whether `text` holds a run of 13 to 19 digits (spaces and dashes between them allowed)
/// that passes the Luhn check: the shape of a payment card number. Longer runs are not cards.
pub fn contains_card_number(text: &str) -> bool {
    let mut digits: Vec<u8> = Vec::new();
    let is_card = |digits: &[u8]| (13..=19).contains(&digits.len()) && luhn(digits);
    for c in text.chars() {
        match c {
            '0'..='9' => digits.push(c as u8 - b'0'),
            ' ' | '-' if !digits.is_empty() => {}
            _ => {
                if is_card(&digits) {
                    return true;
                }
                digits.clear();
            }
        }
    }
    is_card(&digits)
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_are_recognised_with_or_without_separators() {
        // Test numbers published by card networks.
        assert!(contains_card_number("4111111111111111"));
        assert!(contains_card_number("card 4111 1111 1111 1111 thanks"));
        assert!(contains_card_number("5500-0000-0000-0004"));
        assert!(contains_card_number("378282246310005"));
        // Addresses, phone numbers, a 16-digit number that fails Luhn.
        assert!(!contains_card_number("12 Rue de la Paix, 75002 Paris"));
        assert!(!contains_card_number("+44 20 7946 0958"));
        assert!(!contains_card_number("4111111111111112"));
        assert!(!contains_card_number("123456789012"));
    }

    #[test]
    fn settlement_fields_are_bounded_and_refuse_card_numbers() {
        let ok = |v: &str| check_info("address", v, MAX_SHIP_ADDRESS, true);
        assert!(ok("1 Main St\nSpringfield").is_ok());
        assert_eq!(ok("").unwrap_err().0, Reason::InvalidInfo);
        assert_eq!(ok("   ").unwrap_err().0, Reason::InvalidInfo);
        assert_eq!(ok(&"x".repeat(501)).unwrap_err().0, Reason::InvalidInfo);
        assert_eq!(ok("a\u{7}b").unwrap_err().0, Reason::InvalidInfo);
        assert_eq!(
            check_info("name", "a\nb", MAX_SHIP_NAME, false)
                .unwrap_err()
                .0,
            Reason::InvalidInfo
        );
        assert_eq!(
            ok("pay with 4111 1111 1111 1111").unwrap_err().0,
            Reason::CardNumber
        );
    }

    #[test]
    fn requests_round_trip() {
        let line = encode_request(
            4,
            SettleRequestBody::Inform {
                item: 9,
                name: Some("Bob".into()),
                address: Some("1 Main St".into()),
                contact: None,
            },
        );
        let r = decode_request(line.trim_end()).unwrap();
        assert_eq!(r.req, 4);
        assert_eq!(r.body.item(), 9);
        assert_eq!(
            decode_request("{\"v\":1,\"req\":1,\"type\":\"pay\",\"card\":\"1\"}")
                .unwrap_err()
                .reason,
            Reason::Malformed
        );
    }
}
