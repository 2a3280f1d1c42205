//! Sizes and bounds shared by both ends. Documented in PROTOCOL.md; change them together.

/// Most bids one `history` answer carries: the item's latest (about 9 datagrams, 15 at
/// most with the longest names, amounts and bid numbers; 51 at most when the operator removed every one
/// of them with the longest note).
pub const HISTORY_BIDS: u64 = 100;
/// Largest datagram the server sends, and the largest it accepts.
pub const MAX_DATAGRAM: usize = 1200;
/// Largest line on a TLS channel, newline excluded.
pub const MAX_LINE: usize = 64 * 1024;
/// A channel on which nothing (not even a blank line) arrives for this long is closed with
/// `idle-timeout`, unless the server is configured otherwise.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 300;
/// How often the reference client sends a blank line on a channel where it has nothing else to
/// say: well inside the idle timeout.
pub const KEEPALIVE_SECS: u64 = 60;
/// Item descriptions: 1 to this many Unicode scalar values, no control characters.
pub const MAX_DESCRIPTION_CHARS: usize = 200;
/// An operator's note on a cancelled item or a removed bid: in characters, like a description
/// (at most 4 bytes each in JSON), short enough that a history datagram holds a cancelled
/// item's note and a removed bid's note together.
pub const MAX_NOTE_CHARS: usize = 80;
/// Account names: 1 to this many of `A-Z a-z 0-9 _ . -`.
pub const MAX_NAME_LEN: usize = 32;
/// Auction duration bounds, in seconds.
pub const MIN_DURATION_SECS: u64 = 1;
pub const MAX_DURATION_SECS: u64 = 30 * 24 * 3600;
pub const DEFAULT_DURATION_SECS: u64 = 300;
/// Largest amount accepted anywhere: 10^13 cents (100 billion). Keeps every sum far from u64
/// overflow and inside the 2^53 range that JSON numbers carry exactly in every language.
pub const MAX_AMOUNT_CENTS: u64 = 10_000_000_000_000;
/// Bid ids chosen by clients: 1 to this many bytes of printable ASCII.
pub const MAX_BID_ID_LEN: usize = 64;
/// How many executed request numbers the server remembers per account (the replay window),
/// at least: answers younger than [`RETRANSMIT_SECS`] are kept as well.
pub const REPLAY_WINDOW: usize = 64;
/// A client resends a UDP request (same number) for at most this long after it first sent it.
/// The server keeps every executed request's answer at least this long, however many newer
/// requests came between. (The reference client's last resend goes out ~9.3 s after the first.)
pub const RETRANSMIT_SECS: u64 = 30;
/// Answers the server keeps per account, at most: the [`REPLAY_WINDOW`] newest numbers plus
/// the younger ones. An account with this many answers younger than [`RETRANSMIT_SECS`] is
/// refused `rate-limited` until the oldest ages.
pub const REPLAY_MAX_ANSWERS: usize = 1024;
/// A client resends an unanswered bid id for at most this long after it first sent it; the
/// server repeats a rejected id's first verdict this long. (The reference client gives up
/// reconnecting ~6.5 minutes after it first sent a bid.)
pub const REJECTED_BID_ID_SECS: u64 = 600;
/// How long a cookie stays valid after it was issued, in seconds.
pub const COOKIE_LIFETIME_SECS: u64 = 120;
/// A cookie reply is sent only if it is at most this many times the size of the request, so
/// the UDP port cannot amplify a spoofed flood.
pub const COOKIE_AMPLIFICATION: usize = 3;
/// Largest UDP request number: 2^53 - 1, so every language's JSON numbers carry it exactly and
/// the server can store it as a signed 64-bit integer. Clients use Unix microseconds, which
/// stay below this until the year 2255.
pub const MAX_REQ: u64 = (1 << 53) - 1;
