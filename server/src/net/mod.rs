//! What item channels and the settlement desk share: accepting and refusing connections
//! (`accept.rs`) and reading request lines (`lines.rs`).

pub(crate) mod accept;
pub(crate) mod lines;
pub(crate) mod listener;
