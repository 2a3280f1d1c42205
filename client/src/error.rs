//! What can go wrong talking to the server, split by what the user should do about it: a
//! refusal (fix the request), a network or TLS failure (check the server), or local trouble.

use auction_protocol::Reason;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server understood and refused the request.
    #[error("{message} ({reason})")]
    Denied { reason: Reason, message: String },
    #[error("no answer from the server at {server} after {tries} tries; is it running?")]
    Timeout { server: String, tries: u32 },
    /// The port refused the datagram (ICMP port unreachable): nothing listens there.
    #[error("no server at {server}: nothing listens on that port (is auction-server running, and is --server right?)")]
    NoServer { server: String },
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the server sent something unexpected: {0}")]
    Protocol(String),
    #[error("{0}")]
    Local(String),
}

impl ClientError {
    /// True for refusals by the server (exit code 1); false for failures to reach it (3).
    pub fn is_denied(&self) -> bool {
        matches!(self, ClientError::Denied { .. })
    }

    /// True for a condition that trying again will not change: the account is gone (or
    /// this device lost its place), so a long-running command should stop, not retry.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ClientError::Denied {
                reason: Reason::NotRegistered | Reason::Moved,
                ..
            }
        )
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
