//! The pure rules: no I/O, no clock (time is passed in), unit-tested without sockets. The tasks
//! that own the state call them: the item task (`auction`, `increments`, `rejected_ids`), the settlement desk (`settlement`)
//! and the registry (`replay`, `ratelimit`).

pub mod auction;
pub mod increments;
pub mod offer;
pub mod ratelimit;
pub mod refusal;
pub mod rejected_ids;
pub mod removal;
pub mod replay;
pub mod settlement;
