//! A refusal: the machine-readable reason every refused request carries, and the sentence that
//! tells a person what went wrong. The rules return it; each plane turns it into its own
//! message (`error`, `offer-denied`, `bid-rejected` ...).

use auction_protocol::Reason;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: Reason, message: String) -> Refusal {
        Refusal { reason, message }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.reason)
    }
}

/// The protocol crate's checks (`settle::check_info`) return `(reason, message)` pairs.
impl From<(Reason, String)> for Refusal {
    fn from((reason, message): (Reason, String)) -> Refusal {
        Refusal::new(reason, message)
    }
}
