//! What item channels and the settlement desk share: the connection budgets (`budget.rs`),
//! accepting and refusing connections (`accept.rs`), an accept loop that never holds up its
//! task (`listener.rs`) and reading request lines (`lines.rs`).

pub(crate) mod accept;
pub(crate) mod budget;
pub(crate) mod lines;
pub(crate) mod listener;
