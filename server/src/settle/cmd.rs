//! What the settlement desk receives (a types-only file, so items and connections import the
//! message, never the desk).

use auction_protocol::channel::LineError;
use auction_protocol::settle::{SettleBody, SettleRequest};
use auction_protocol::Cents;
use std::sync::Arc;
use tokio::sync::mpsc;

use crate::accounts::AccountHandle;
use crate::rules::settlement::{Party, Sale};

pub enum DeskCmd {
    /// An item was sold; its result is durable.
    Sold(Sale),
    Join {
        conn: u64,
        account: Arc<AccountHandle>,
        queue: mpsc::Sender<SettleBody>,
    },
    Leave {
        conn: u64,
    },
    Request {
        conn: u64,
        request: SettleRequest,
    },
    /// A line that could not be read; `fatal` closes the connection after the error.
    BadLine {
        conn: u64,
        error: LineError,
        fatal: bool,
    },
    /// The bids read for a second-chance offer (a read beside the writer, off this task).
    Bids {
        conn: u64,
        req: u64,
        item: u64,
        seller: u64,
        bids: Result<Vec<(Party, Cents)>, String>,
    },
}

impl crate::net::lines::LineCommand for DeskCmd {
    type Request = SettleRequest;

    fn decode(line: &str) -> Result<SettleRequest, LineError> {
        auction_protocol::settle::decode_request(line)
    }

    fn request(conn: u64, request: SettleRequest) -> DeskCmd {
        DeskCmd::Request { conn, request }
    }

    fn bad_line(conn: u64, error: LineError, fatal: bool) -> DeskCmd {
        DeskCmd::BadLine { conn, error, fatal }
    }
}
