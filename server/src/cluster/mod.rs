//! Several nodes on one PostgreSQL database (`../shared/ARCHITECTURE.md`, "Several nodes").
//! The leader — the node holding the leader lease — runs the whole server: the registration
//! plane, the settlement desk and every item. The other nodes are standbys: each keeps its
//! heartbeat, answers every datagram with the leader's address (`redirect`), and tries for the
//! lease at every heartbeat; when the leader's lapses, the first to try fences it (bumps its
//! epoch, so it can commit nothing more) and takes the lease in the same transaction, then
//! loads the state and starts serving (`standby.rs`). Membership, epochs and the lease are
//! kept in the database (`store/postgres/nodes.rs`); nodes talk through nothing else.
//!
//! Not yet: items spread over the nodes (each owner running its items' channels); today the
//! leader runs them all, and a failover moves them all.

pub mod standby;
