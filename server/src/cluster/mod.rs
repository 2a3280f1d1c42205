//! Several nodes on one PostgreSQL database (`../shared/ARCHITECTURE.md`, "Several nodes").
//!
//! Every node runs the items given to it (`host.rs`): their tasks and TLS listeners on its own
//! address, their writes fenced by its epoch. The node holding the leader lease also runs the
//! registration plane and the settlement desk: it gives each new item to the least loaded live
//! node, follows the items through the database, and gives the items of a node whose heartbeat
//! lapsed to live ones once it has fenced it (`link.rs`). The other nodes answer every datagram
//! with the leader's address (`standby.rs`) and try for the lease at every heartbeat; when the
//! leader's lapses, the first to try fences it and takes the lease in the same transaction.
//! Membership, epochs and the lease are kept in the database (`store/postgres/nodes.rs`, the
//! items' SQL in `store/postgres/shard.rs`); nodes talk through nothing else. Each node's live
//! board shows its own items from their tasks and the others' from the database (`board.rs`).

pub mod board;
pub mod host;
pub mod link;
pub mod standby;
