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
    },
    /// The seller lowered the minimum (an accepted negotiation); `next_min` is the smallest
    /// bid accepted now.
    PriceAdjustment {
        item: u64,
        min: Cents,
        next_min: Cents,
    },
    /// Bidding has ended. `sold-to` or `not-sold` follows, then the server closes the channel.
    BidOver {
        item: u64,
    },
    SoldTo {
        item: u64,
        winner: String,
        amount: Cents,
    },
    NotSold {
        item: u64,
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
pub fn decode_request(line: &str) -> Result<ChannelRequest, LineError> {
    decode_versioned(line)
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

/// Decodes a line from the server (client side).
pub fn decode_message(line: &str) -> Result<ChannelMessage, LineError> {
    serde_json::from_str(line).map_err(|e| LineError {
        reason: Reason::Malformed,
        req: None,
        detail: format!("unreadable server line: {e}"),
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
