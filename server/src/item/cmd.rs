//! What an item task receives, and what the registry holds to reach it (a types-only file, so
//! the registry and the connections import the messages, never the task).

use auction_protocol::channel::{ChannelBody, ChannelRequest, LineError};
use auction_protocol::{Cents, ItemView};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

use crate::accounts::{AccountHandle, AccountId};
use crate::rules::auction::{Lead, Outcome};
use crate::rules::refusal::Refusal;

/// The registry's view of an item to run: a new one, or one resumed after a restart.
pub struct ItemSpec {
    pub id: u64,
    pub description: String,
    pub seller: Arc<AccountHandle>,
    pub min: Cents,
    /// The reserve and buy-it-now prices.
    pub terms: crate::rules::auction::Terms,
    /// When it was offered (Unix ms): with `ends_at`, the auction's length, which scales its
    /// soft close (`rules::auction::Rules::soft_close`).
    pub offered_at: u64,
    pub ends_at: u64,
    /// Where bidders connect; `None` for an item that only has to close (its end passed
    /// while the server was down).
    pub channel: Option<String>,
    /// The leading bid, for a resumed item.
    pub lead: Option<Lead>,
    /// The first answer to every bid id, for a resumed item.
    pub bid_ids: Vec<(AccountId, String, Outcome)>,
    /// What its bids so far add to the board, for an item read from the database (a resumed
    /// one, or one given to this node): the board shows it at once. `None` for a new item,
    /// which the board shows once its offer is durable (`registry/announce.rs`).
    pub shown: Option<crate::web::BidCounts>,
    /// A lot of a group closing in turn: its soft-close extensions move the later lots
    /// (`registry/lots.rs`), so it tells the registry of them.
    pub grouped: bool,
}

/// What the registry and an item task share about the item's subscribers.
#[derive(Debug, Default)]
pub struct Watchers {
    /// How many accounts are subscribed: the task reports updates only while above zero.
    pub count: std::sync::atomic::AtomicUsize,
    /// Set when an update could not be queued (the registry is behind): the registry then
    /// skips a sequence number for each subscriber, so clients see the gap and re-read.
    pub missed: std::sync::atomic::AtomicBool,
}

/// The latest HIGHEST of an item as an encoded line, shared by every writer on the item: it is
/// serialized once per accepted bid, not once per connection.
pub type HighestRx = watch::Receiver<Option<Arc<str>>>;

pub enum ItemCmd {
    /// A connection finished its handshake as `account`.
    Join {
        conn: u64,
        peer: std::net::SocketAddr,
        account: Arc<AccountHandle>,
        queue: mpsc::Sender<ChannelBody>,
        reply: oneshot::Sender<Result<HighestRx, Refusal>>,
    },
    Leave {
        conn: u64,
    },
    Request {
        conn: u64,
        request: ChannelRequest,
    },
    /// A line that could not be decoded; `fatal` closes the connection after the error.
    BadLine {
        conn: u64,
        error: LineError,
        fatal: bool,
    },
    /// Who leads the auction now (for deregistration).
    Leader {
        reply: oneshot::Sender<Option<AccountId>>,
    },
    /// The account was deregistered: close its connections, saying why.
    AccountGone {
        account: AccountId,
    },
    /// The seller accepted a negotiation: lower the minimum to `min` (see
    /// `Auction::lower_min`). Answered once the change is appended to storage.
    LowerMin {
        min: Cents,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// An earlier lot of the item's group was extended: the item must end at `to` at the
    /// earliest (a later end stays).
    PushEnd {
        to: u64,
    },
    /// The operator (the registry checked who) cancels the item: it closes now, unsold.
    /// Answered once the cancellation is appended to storage (`item/operator.rs`).
    Cancel {
        operator: AccountId,
        note: String,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// The operator removes the accepted bid numbered `bid`; answered with the lead after it
    /// (price and bidder, `None` when no bid is left) once that is appended to storage.
    RemoveBid {
        operator: AccountId,
        bid: u64,
        note: String,
        reply: oneshot::Sender<Result<Option<(Cents, String)>, Refusal>>,
    },
}

/// How the registry reaches an item.
pub struct ItemHandle {
    pub cmd: mpsc::Sender<ItemCmd>,
    pub view: watch::Receiver<ItemView>,
    pub watchers: Arc<Watchers>,
}

impl crate::net::lines::LineCommand for ItemCmd {
    type Request = ChannelRequest;

    fn decode(line: &str) -> Result<ChannelRequest, LineError> {
        auction_protocol::channel::decode_request(line)
    }

    fn request(conn: u64, request: ChannelRequest) -> ItemCmd {
        ItemCmd::Request { conn, request }
    }

    fn bad_line(conn: u64, error: LineError, fatal: bool) -> ItemCmd {
        ItemCmd::BadLine { conn, error, fatal }
    }
}
