//! The server-wide context every task gets: configuration, the TLS acceptor and the accounts'
//! keys (for handshakes), storage, where item tasks report to the registry and the desk, the
//! connection budgets, shutdown and metrics. It is built once in `Server::start` and shared as
//! an `Arc`; nothing in it is owned by one task, so importing it imports no task.

use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accounts::KeyDirectory;
use crate::config::Config;
use crate::registry::inbox::{ItemClosed, ItemUpdate};
use crate::settle::cmd::DeskCmd;
use crate::store::Storage;

/// What every task shares: configuration, the TLS acceptor, the key directory, storage, the
/// channels to the registry and the desk, the connection budgets and shutdown.
pub struct ServerContext {
    pub config: Config,
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub keys: Arc<KeyDirectory>,
    pub storage: Arc<dyn Storage>,
    /// Where items report that they closed.
    pub closed: mpsc::Sender<ItemClosed>,
    /// Where items with subscribers report each new highest bid, once durable.
    pub updates: mpsc::Sender<ItemUpdate>,
    pub shutdown: CancellationToken,
    /// Item tasks and connections, so shutdown can wait for them to finish.
    pub tasks: TaskTracker,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The handshake and joined-connection budgets every listener admits through.
    pub admission: crate::net::budget::Admission,
    /// The next row of the connection log (`Record::ChannelOpened`).
    pub next_session: std::sync::atomic::AtomicU64,
    /// Where sold items are settled: the desk, and its address (for the item's view).
    pub desk: mpsc::Sender<DeskCmd>,
    pub settle_port: u16,
    /// Several nodes: how the leader's registry reaches the items the nodes run
    /// (`cluster/link.rs`); `None` on a single server, whose registry runs its items itself.
    pub cluster: Option<Arc<crate::cluster::link::Link>>,
    /// Items this node lost to another (it was fenced), with what their bidders are told as
    /// the channel closes: where the item went.
    pub moved: std::sync::Mutex<std::collections::HashMap<u64, String>>,
    /// Several nodes: where a node that does not run the registry looks up a key it has not
    /// seen yet (`cluster/host.rs`).
    pub key_lookup: Option<crate::cluster::host::KeyLookup>,
    /// The live board: what is durable and public about the items this server runs
    /// (`web/board.rs`).
    pub board: Arc<crate::web::Board>,
}
