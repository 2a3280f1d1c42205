//! The bidding plane: newline-delimited JSON over one TLS 1.3 connection per item.
//!
//! Lines are at most [`crate::limits::MAX_LINE`] bytes. The server speaks first (a `state`
//! line), then answers each client request in order; `highest`, `bid-over`, `sold-to` and
//! `not-sold` arrive whenever they happen.

use serde::{Deserialize, Serialize};

use crate::{Cents, ItemView, Reason, VERSION};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRequest {
    pub v: u32,
    pub req: u64,
    #[serde(flatten)]
    pub body: ChannelRequestBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ChannelRequestBody {
    /// Bid `amount`. `id`, when given, makes the bid idempotent: the same id sent again by the
    /// same account on this item is answered with the first result and never counted twice.
    Bid {
        amount: Cents,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Proxy bid: the server bids for this account, one increment above any competitor, up
    /// to `max`, which no one else sees. Sent again by the leader, it raises the maximum
    /// without moving the price. `id` works as for `bid`.
    ProxyBid {
        max: Cents,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Buy the item at once at its buy-it-now price, `amount` (the price the client saw and
    /// agrees to pay; any other amount is refused). Accepted, it ends the auction. `id` works
    /// as for `bid`.
    BuyNow {
        amount: Cents,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Send the item's state again.
    Status,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMessage {
    pub v: u32,
    #[serde(flatten)]
    pub body: ChannelBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ChannelBody {
    /// The item's state: first line after the handshake (`req` null) and the answer to `status`.
    State {
        req: Option<u64>,
        item: ItemView,
        /// The smallest bid that would be accepted now.
        next_min: Cents,
        /// Who this connection is authenticated as.
        you: String,
    },
    BidAccepted {
        req: u64,
        /// The bid as placed: a direct bid's amount, the price a proxy bid reached, or the
        /// maximum of a proxy bid another proxy outbid at once.
        amount: Cents,
        ends_at: u64,
        /// False when a competitor's proxy outbid this bid at once (it counted: the price
        /// rose). Absent means true.
        #[serde(default = "yes")]
        leading: bool,
        /// A proxy bid's maximum, echoed to its own bidder only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<Cents>,
        /// The smallest bid accepted now (as in `bid-rejected`, how the auction stands when
        /// this answer is sent). Absent from servers before the increment table.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_min: Option<Cents>,
    },
    BidRejected {
        req: u64,
        reason: Reason,
        message: String,
        highest: Option<Cents>,
        next_min: Cents,
    },
    /// A new highest bid; sent to every connection on the item. Coalesced for slow readers:
    /// a newer HIGHEST replaces an older one not yet written.
    Highest {
        item: u64,
        amount: Cents,
        bidder: String,
        ends_at: u64,
        /// The smallest bid accepted now (the increment depends on the price). Absent from
        /// servers before the increment table.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_min: Option<Cents>,
        /// On an item with a reserve only: whether this bid reached it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reserve_met: Option<bool>,
        /// The buy-it-now price, while the item still offers it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        buy_now: Option<Cents>,
    },
    /// The seller lowered the minimum (an accepted negotiation); `next_min` is the smallest
    /// bid accepted now.
    PriceAdjustment {
        item: u64,
        min: Cents,
        next_min: Cents,
    },
    /// Bidding has ended. `sold-to` or `not-sold` follows, then the server closes the channel.
    BidOver { item: u64 },
    SoldTo {
        item: u64,
        winner: String,
        amount: Cents,
    },
    NotSold {
        item: u64,
        /// The operator cancelled the item: its note.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cancelled: Option<String>,
    },
    /// The operator removed an accepted bid (`bid`: its number in `history`; `amount` absent
    /// for a proxy bid outbid at once, whose amount stays private), saying why in `note`. A
    /// STATE follows with the auction as it stands without it.
    BidRemoved {
        item: u64,
        bid: u64,
        bidder: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        amount: Option<Cents>,
        note: String,
    },
    /// A line that could not be taken (malformed, too long), or why the server is closing the
    /// connection (`item-full`, `account-gone`, `unavailable`).
    Error {
        req: Option<u64>,
        reason: Reason,
        message: String,
    },
}

fn yes() -> bool {
    true
}

/// Why a line could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct LineError {
    pub reason: Reason,
    pub req: Option<u64>,
    pub detail: String,
}

#[derive(Deserialize)]
struct Header {
    v: Option<u32>,
    req: Option<u64>,
}

/// Decodes one line from a client (without its newline).
///
/// Bids come by the tens of thousands a second, so the usual lines take a fast path: one pass
/// for the version, the number and the type (borrowed, nothing allocated), one for the
/// variant's fields straight into their types. Anything else, and any line the fast path
/// cannot take, goes the general way ([`decode_versioned`]), which also names what is wrong:
/// the answer is the same either way, only its cost differs.
pub fn decode_request(line: &str) -> Result<ChannelRequest, LineError> {
    fast_request(line).unwrap_or_else(|| decode_versioned(line))
}

/// The fields every line has, without building anything.
#[derive(Deserialize)]
struct Head<'a> {
    v: Option<u32>,
    req: Option<u64>,
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a serde_json::value::RawValue>,
}

/// The head of an object line; `None` for anything else (a derived struct would also take a
/// JSON array, field by field, which the general way refuses).
fn head(line: &str) -> Option<Head<'_>> {
    if !line.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str(line).ok()
}

#[derive(Deserialize)]
struct AmountFields {
    amount: Cents,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct MaxFields {
    max: Cents,
    #[serde(default)]
    id: Option<String>,
}

/// `bid`, `proxy-bid` and `status` of the current version; `None` for the general way.
fn fast_request(line: &str) -> Option<Result<ChannelRequest, LineError>> {
    let head = head(line)?;
    let (Some(VERSION), Some(req), Some(kind)) = (head.v, head.req, head.kind) else {
        return None;
    };
    let body = match kind.get() {
        "\"bid\"" => {
            let f: AmountFields = serde_json::from_str(line).ok()?;
            ChannelRequestBody::Bid {
                amount: f.amount,
                id: f.id,
            }
        }
        "\"proxy-bid\"" => {
            let f: MaxFields = serde_json::from_str(line).ok()?;
            ChannelRequestBody::ProxyBid {
                max: f.max,
                id: f.id,
            }
        }
        "\"status\"" => ChannelRequestBody::Status,
        _ => return None,
    };
    Some(Ok(ChannelRequest {
        v: VERSION,
        req,
        body,
    }))
}

/// Decodes one client line of any TLS plane (the channel, settlement): version first, so an
/// unknown version is named as such, then the request.
pub fn decode_versioned<T: serde::de::DeserializeOwned>(line: &str) -> Result<T, LineError> {
    let header: Header = serde_json::from_str(line).map_err(|e| LineError {
        reason: Reason::Malformed,
        req: None,
        detail: format!("not a JSON object: {e}"),
    })?;
    if header.v != Some(VERSION) {
        return Err(LineError {
            reason: Reason::UnsupportedVersion,
            req: header.req,
            detail: format!("this server speaks protocol version {VERSION}"),
        });
    }
    serde_json::from_str(line).map_err(|e| LineError {
        reason: Reason::Malformed,
        req: header.req,
        detail: format!("not a valid request: {e}"),
    })
}

/// Encodes a server line, newline included.
pub fn encode_line(body: ChannelBody) -> String {
    let mut s =
        serde_json::to_string(&ChannelMessage { v: VERSION, body }).expect("messages serialize");
    s.push('\n');
    s
}

/// Encodes a client request line, newline included.
pub fn encode_request(req: u64, body: ChannelRequestBody) -> String {
    let mut s = serde_json::to_string(&ChannelRequest {
        v: VERSION,
        req,
        body,
    })
    .expect("requests serialize");
    s.push('\n');
    s
}

/// Decodes a line from the server (client side). As for requests, the lines that come most
/// (`highest`, `bid-accepted`, `bid-rejected`) take a fast path, and everything else, errors
/// included, the general way; the result is the same.
pub fn decode_message(line: &str) -> Result<ChannelMessage, LineError> {
    if let Some(body) = fast_message(line) {
        return Ok(ChannelMessage { v: VERSION, body });
    }
    serde_json::from_str(line).map_err(|e| LineError {
        reason: Reason::Malformed,
        req: None,
        detail: format!("unreadable server line: {e}"),
    })
}

#[derive(Deserialize)]
struct HighestFields {
    item: u64,
    amount: Cents,
    bidder: String,
    ends_at: u64,
    #[serde(default)]
    next_min: Option<Cents>,
    #[serde(default)]
    reserve_met: Option<bool>,
    #[serde(default)]
    buy_now: Option<Cents>,
}

#[derive(Deserialize)]
struct AcceptedFields {
    req: u64,
    amount: Cents,
    ends_at: u64,
    #[serde(default = "yes")]
    leading: bool,
    #[serde(default)]
    max: Option<Cents>,
    #[serde(default)]
    next_min: Option<Cents>,
}

#[derive(Deserialize)]
struct RejectedFields {
    req: u64,
    reason: Reason,
    message: String,
    highest: Option<Cents>,
    next_min: Cents,
}

/// `highest`, `bid-accepted` and `bid-rejected` of the current version; `None` for the
/// general way.
fn fast_message(line: &str) -> Option<ChannelBody> {
    let head = head(line)?;
    let (Some(VERSION), Some(kind)) = (head.v, head.kind) else {
        return None;
    };
    Some(match kind.get() {
        "\"highest\"" => {
            let f: HighestFields = serde_json::from_str(line).ok()?;
            ChannelBody::Highest {
                item: f.item,
                amount: f.amount,
                bidder: f.bidder,
                ends_at: f.ends_at,
                next_min: f.next_min,
                reserve_met: f.reserve_met,
                buy_now: f.buy_now,
            }
        }
        "\"bid-accepted\"" => {
            let f: AcceptedFields = serde_json::from_str(line).ok()?;
            ChannelBody::BidAccepted {
                req: f.req,
                amount: f.amount,
                ends_at: f.ends_at,
                leading: f.leading,
                max: f.max,
                next_min: f.next_min,
            }
        }
        "\"bid-rejected\"" => {
            let f: RejectedFields = serde_json::from_str(line).ok()?;
            ChannelBody::BidRejected {
                req: f.req,
                reason: f.reason,
                message: f.message,
                highest: f.highest,
                next_min: f.next_min,
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bid_round_trip() {
        let line = encode_request(
            3,
            ChannelRequestBody::Bid {
                amount: Cents(1250),
                id: Some("x1".into()),
            },
        );
        assert_eq!(
            line,
            "{\"v\":1,\"req\":3,\"type\":\"bid\",\"amount\":1250,\"id\":\"x1\"}\n"
        );
        let r = decode_request(line.trim_end()).unwrap();
        assert_eq!(r.req, 3);
        assert!(matches!(
            r.body,
            ChannelRequestBody::Bid {
                amount: Cents(1250),
                ..
            }
        ));
    }

    /// The fast paths give what the general way gives, for good lines and bad.
    #[test]
    fn the_fast_paths_agree_with_the_general_way() {
        let general_request = |line: &str| decode_versioned::<ChannelRequest>(line);
        let mut requests = vec![
            encode_request(1, ChannelRequestBody::Status),
            encode_request(
                2,
                ChannelRequestBody::Bid {
                    amount: Cents(1250),
                    id: None,
                },
            ),
            encode_request(
                3,
                ChannelRequestBody::Bid {
                    amount: Cents(7),
                    id: Some("a\"b".into()),
                },
            ),
            encode_request(
                4,
                ChannelRequestBody::ProxyBid {
                    max: Cents(9000),
                    id: Some("p".into()),
                },
            ),
        ];
        requests.extend(
            [
                "{\"v\":1,\"req\":5,\"type\":\"bid\",\"amount\":10,\"extra\":[1,{}]}",
                "{\"type\":\"bi\\u0064\",\"v\":1,\"req\":6,\"amount\":10}",
                "{\"v\":1,\"req\":7,\"type\":\"bid\"}",
                "{\"v\":1,\"req\":8,\"type\":\"bid\",\"amount\":\"10\"}",
                "{\"v\":1,\"req\":9,\"type\":\"bid\",\"amount\":1,\"amount\":2}",
                "{\"v\":1,\"req\":10,\"type\":\"proxy-bid\",\"amount\":1}",
                "{\"v\":1,\"req\":11,\"type\":7}",
                "{\"v\":1,\"type\":\"status\"}",
                "{\"v\":2,\"req\":12,\"type\":\"status\"}",
                "{\"v\":1,\"req\":13,\"type\":\"status\",\"type\":\"bid\"}",
                "{\"v\":1,\"req\":14,\"type\":\"bid\",\"amount\":5,\"id\":null}",
                "[1,2]",
                "[1,7,\"status\"]",
                "[1,7,\"bid\",10]",
                " {\"v\":1,\"req\":15,\"type\":\"status\"}",
            ]
            .map(String::from),
        );
        for line in &requests {
            let line = line.trim_end();
            assert_eq!(decode_request(line), general_request(line), "{line}");
        }
        assert!(
            fast_request(requests[1].trim_end()).is_some(),
            "bids take the fast path"
        );

        let general_message = |line: &str| -> Result<ChannelMessage, String> {
            serde_json::from_str(line).map_err(|e| e.to_string())
        };
        let mut messages: Vec<String> = [
            ChannelBody::Highest {
                item: 3,
                amount: Cents(1500),
                bidder: "bob".into(),
                ends_at: 99,
                next_min: Some(Cents(1550)),
                reserve_met: None,
                buy_now: None,
            },
            ChannelBody::Highest {
                item: 3,
                amount: Cents(1500),
                bidder: "bob".into(),
                ends_at: 99,
                next_min: None,
                reserve_met: Some(false),
                buy_now: Some(Cents(9000)),
            },
            ChannelBody::BidAccepted {
                req: 4,
                amount: Cents(1500),
                ends_at: 99,
                leading: false,
                max: Some(Cents(2000)),
                next_min: Some(Cents(2050)),
            },
            ChannelBody::BidAccepted {
                req: 4,
                amount: Cents(1500),
                ends_at: 99,
                leading: true,
                max: None,
                next_min: None,
            },
            ChannelBody::BidRejected {
                req: 5,
                reason: Reason::TooLow,
                message: "at least \"15.10\"".into(),
                highest: Some(Cents(1500)),
                next_min: Cents(1510),
            },
            ChannelBody::BidRejected {
                req: 5,
                reason: Reason::AuctionOver,
                message: "over".into(),
                highest: None,
                next_min: Cents(0),
            },
            ChannelBody::BidOver { item: 3 },
        ]
        .into_iter()
        .map(encode_line)
        .collect();
        messages.extend(
            [
                "{\"v\":1,\"type\":\"bid-accepted\",\"req\":1,\"amount\":5,\"ends_at\":9}",
                "{\"v\":1,\"type\":\"highest\",\"item\":1,\"amount\":5,\"bidder\":\"x\"}",
                "{\"v\":1,\"type\":\"bid-rejected\",\"req\":1,\"reason\":\"no-such\",\"message\":\"m\",\"next_min\":1}",
                "{\"v\":1,\"type\":\"bid-rejected\",\"req\":1,\"reason\":\"too-low\",\"message\":\"m\",\"next_min\":1}",
                "{\"type\":\"highest\",\"item\":1,\"amount\":5,\"bidder\":\"x\",\"ends_at\":2}",
                "[1,\"highest\",1,5,\"x\",2]",
                "[1,null,\"highest\"]",
            ]
            .map(String::from),
        );
        for line in &messages {
            let line = line.trim_end();
            let fast = decode_message(line).map_err(|e| e.detail);
            let general = general_message(line).map_err(|e| format!("unreadable server line: {e}"));
            assert_eq!(fast, general, "{line}");
        }
        assert!(
            fast_message(messages[0].trim_end()).is_some(),
            "HIGHEST takes the fast path"
        );
    }

    #[test]
    fn bad_lines_name_their_reason() {
        for (line, reason) in [
            ("", Reason::Malformed),
            ("hello", Reason::Malformed),
            ("{}", Reason::UnsupportedVersion),
            (
                "{\"v\":1,\"req\":1,\"type\":\"bid\",\"amount\":-5}",
                Reason::Malformed,
            ),
            (
                "{\"v\":1,\"req\":1,\"type\":\"bid\",\"amount\":12.5}",
                Reason::Malformed,
            ),
            ("{\"v\":1,\"req\":1,\"type\":\"steal\"}", Reason::Malformed),
        ] {
            assert_eq!(decode_request(line).unwrap_err().reason, reason, "{line}");
        }
        assert_eq!(
            decode_request("{\"v\":1,\"req\":4,\"type\":\"x\"}")
                .unwrap_err()
                .req,
            Some(4)
        );
    }
}
