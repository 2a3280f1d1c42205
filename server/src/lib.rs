//! `auction-server` as a library: [`Server::start`] takes a bound UDP socket, a TLS identity,
//! a policy, a storage backend and what that storage held at start, and runs until its
//! shutdown token is cancelled. `main.rs` only parses arguments, sets up logging, opens the
//! database and binds; tests start the same server on port 0.
//!
//! Where things happen, by folder (each file opens saying what it owns and what waits for
//! storage):
//! - `registry/` is the UDP task: the gate every datagram passes (`gate.rs`), accounts,
//!   offers and the item catalogue, subscriptions, announcements, reliable notices and
//!   negotiation; `registry/inbox.rs` holds the messages other tasks send it;
//! - `item/` is one task per open item: its listener, bids (`bid.rs`), what it says and when
//!   (`deliver.rs`), its close (`close.rs`), one bidder's TLS channel (`channel.rs`) and the
//!   commands it receives (`cmd.rs`);
//! - `settle/` is the settlement desk: its listener, requests and deadlines, and `cmd.rs`;
//! - `net/` is what both TLS listeners share: admission within the connection budget, the
//!   handshake, refusals (`accept.rs`) and reading request lines (`lines.rs`);
//! - `rules/` holds the rules, with no I/O and the time passed in: bidding (`auction.rs`),
//!   settlement, offers, the replay window, the rate limit and `Refusal`;
//! - `store/` is the durability boundary (`Storage`, `Record`, `Snapshot`, `Outbox`) and its
//!   SQLite backend (`store/sqlite/`);
//! - `web/` is the read-only HTTP side: the live board (`board.rs`, `pages.rs`, `events.rs`)
//!   and `/metrics`;
//! - `context.rs` is what every task shares; `clock.rs` the one place time is read; `tls.rs`
//!   decides which client certificates are accepted; `status.rs` renders the operator's view.

pub(crate) mod accounts;
pub mod audit;
pub mod catalog;
pub mod certs;
pub(crate) mod clock;
pub mod cluster;
pub mod config;
pub(crate) mod context;
pub(crate) mod item;
pub mod metrics;
pub(crate) mod net;
pub(crate) mod registry;
pub(crate) mod rules;
pub(crate) mod settle;
pub mod status;
pub(crate) mod store;
pub(crate) mod tls;
pub mod web;

use anyhow::{Context, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
pub use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use clock::unix_ms;
pub use config::{Config, PortRange};
pub use metrics::Metrics;
pub use rules::auction::Terms;
pub use rules::increments::Increments;
pub use rules::settlement::Party;
pub use store::postgres;
pub use store::postgres::{PostgresOptions, PostgresStorage};
pub use store::sql::{BidHistory, StoredBid};
pub use store::sqlite::{care, query_one, SqliteOptions, SqliteStorage};
pub use store::{CommitObserver, CommitStats, Lsn, Record, Snapshot, Storage};

/// New highest bids of subscribed items waiting for the registry; beyond this the items mark
/// the update missed (subscribers see a gap and re-read the state).
const UPDATES_QUEUED: usize = 8192;

/// How long shutdown waits for item tasks and connections to finish their work.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The certificate chain and key the item channels present.
pub struct TlsIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> TlsIdentity {
        TlsIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsIdentity {
    /// Reads a PEM certificate chain and a PEM private key.
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsIdentity> {
        Ok(TlsIdentity {
            chain: certs::load_certs(cert)?,
            key: certs::load_key(key)?,
        })
    }

    /// Writes a fresh development CA and server certificate into `dir` (see
    /// [`certs::generate_dev_certs`]) and loads the server's half; clients trust `dir/ca.pem`.
    pub fn dev(dir: &std::path::Path) -> Result<TlsIdentity> {
        let sans: Vec<String> = certs::DEFAULT_SANS.map(String::from).to_vec();
        certs::generate_dev_certs(dir, &sans)?;
        TlsIdentity::load(&dir.join("server.pem"), &dir.join("server.key"))
    }
}

/// A running server.
pub struct Server {
    /// Keeps the registry's channel from the cluster follower open (unused on one server).
    _remote: mpsc::Sender<cluster::link::Remote>,
    udp_addr: SocketAddr,
    settle_port: u16,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    tasks: TaskTracker,
    storage: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
    board: Arc<web::Board>,
    web_streams: usize,
    web_per_source: usize,
}

impl Server {
    /// Starts serving on `udp`, carrying on from `snapshot` (what `storage` held when it was
    /// opened). Item channels listen on the same IP; they are announced with `advertise` when
    /// given (needed when `udp` is bound to an unspecified address).
    pub async fn start(
        udp: UdpSocket,
        tls: TlsIdentity,
        config: Config,
        storage: Arc<dyn Storage>,
        snapshot: Snapshot,
        advertise: Option<IpAddr>,
    ) -> Result<Server> {
        let metrics = Arc::new(Metrics::new());
        Server::start_with(
            udp, tls, config, storage, snapshot, advertise, metrics, None,
        )
        .await
    }

    /// Several nodes: starts the registration plane and the settlement desk of `node`, which
    /// holds the leader lease, carrying on from `snapshot` (read when it took the lease). The
    /// items run on the nodes' hosts (`cluster/host.rs`, this node's too); the registry gives
    /// them out and follows them through the database (`cluster/link.rs`).
    pub async fn start_leader(
        udp: UdpSocket,
        tls: TlsIdentity,
        config: Config,
        node: Arc<PostgresStorage>,
        snapshot: Snapshot,
        advertise: Option<IpAddr>,
        metrics: Arc<Metrics>,
    ) -> Result<Server> {
        let link = cluster::link::Link::connect(node.url(), node.membership().clone()).await?;
        // The desk's connection log shares the table with the nodes' items.
        let mut snapshot = snapshot;
        snapshot.next_session = node.session_block().await?;
        Server::start_with(
            udp,
            tls,
            config,
            node,
            snapshot,
            advertise,
            metrics,
            Some(Arc::new(link)),
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_with(
        udp: UdpSocket,
        tls: TlsIdentity,
        config: Config,
        storage: Arc<dyn Storage>,
        snapshot: Snapshot,
        advertise: Option<IpAddr>,
        metrics: Arc<Metrics>,
        cluster: Option<Arc<cluster::link::Link>>,
    ) -> Result<Server> {
        let udp_addr = udp
            .local_addr()
            .context("UDP socket has no local address")?;
        let advertise = advertise.unwrap_or(udp_addr.ip());
        if advertise.is_unspecified() {
            anyhow::bail!(
                "the UDP address {udp_addr} is unspecified: pass --advertise with the IP clients should connect to"
            );
        }
        let keys = Arc::new(accounts::KeyDirectory::default());
        let tls_config = tls::server_config(tls.chain, tls.key, keys.clone())
            .context("the server certificate or key is not usable")?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (closed_tx, closed_rx) = mpsc::channel(1024);
        let (updates_tx, updates_rx) = mpsc::channel(UPDATES_QUEUED);
        let admission = net::budget::Admission::of(&config);
        {
            let metrics = metrics.clone();
            storage.observe_commits(Box::new(move |changes, took| metrics.commit(changes, took)));
        }
        // The settlement desk listens beside the item channels, with the same TLS setup.
        let settle_listener =
            net::listener::bind(SocketAddr::new(udp_addr.ip(), config.settle_port)).with_context(
                || {
                    format!(
                        "cannot listen for settlements on {}:{}",
                        udp_addr.ip(),
                        config.settle_port
                    )
                },
            )?;
        let settle_port = settle_listener.local_addr()?.port();
        let desk = mpsc::channel(1024);
        let (notices_tx, notices_rx) = mpsc::unbounded_channel();
        let mut snapshot = snapshot;
        let board = Arc::new(web::Board::new(unix_ms()));
        let (web_streams, web_per_source) = (config.web_streams, config.web_per_source);
        let ctx = Arc::new(context::ServerContext {
            config,
            acceptor: tokio_rustls::TlsAcceptor::from(tls_config),
            keys,
            storage: storage.clone(),
            closed: closed_tx,
            updates: updates_tx,
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
            metrics: metrics.clone(),
            admission,
            next_session: std::sync::atomic::AtomicU64::new(snapshot.next_session.max(1)),
            desk: desk.0.clone(),
            settle_port,
            cluster: cluster.clone(),
            moved: Default::default(),
            key_lookup: None,
            board: board.clone(),
        });
        settle::spawn(
            settle_listener,
            ctx.clone(),
            desk,
            &mut snapshot,
            notices_tx,
        );
        let (remote_tx, remote_rx) = mpsc::channel(1024);
        if let Some(link) = &cluster {
            tokio::spawn(cluster::link::follow(
                link.clone(),
                storage.clone(),
                remote_tx.clone(),
                shutdown.clone(),
            ));
        }
        let registry =
            registry::Registry::new(Arc::new(udp), ctx, udp_addr.ip(), advertise, snapshot);
        let task = tokio::spawn(registry.run(closed_rx, updates_rx, notices_rx, remote_rx));
        Ok(Server {
            _remote: remote_tx,
            udp_addr,
            settle_port,
            shutdown,
            task,
            tasks,
            storage,
            metrics,
            board,
            web_streams,
            web_per_source,
        })
    }

    /// This server's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Serves the metrics at `http://ADDR/metrics` on `listener` until shutdown; returns the
    /// address.
    pub fn serve_metrics(&self, listener: tokio::net::TcpListener) -> Result<SocketAddr> {
        let site = web::Site {
            board: None,
            metrics: Some(self.metrics.clone()),
            per_source: self.web_per_source,
        };
        web::serve(listener, site, self.shutdown.clone(), &self.tasks)
    }

    /// Serves the live board at `http://ADDR/` on `listener` (and the metrics at `/metrics`
    /// when `with_metrics`) until shutdown; returns the address.
    pub fn serve_web(
        &self,
        listener: tokio::net::TcpListener,
        with_metrics: bool,
    ) -> Result<SocketAddr> {
        let site = web::Site {
            board: Some(web::BoardSite {
                board: self.board.clone(),
                storage: self.storage.clone(),
                streams: Arc::new(tokio::sync::Semaphore::new(self.web_streams)),
                stream_cap: self.web_streams,
            }),
            metrics: with_metrics.then(|| self.metrics.clone()),
            per_source: self.web_per_source,
        };
        web::serve(listener, site, self.shutdown.clone(), &self.tasks)
    }

    /// The UDP address the registration plane answers on.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The settlement desk's TCP port (on the UDP address's IP).
    pub fn settle_port(&self) -> u16 {
        self.settle_port
    }

    /// Cancelling this token stops the server.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops gracefully: no new datagrams or connections; requests already received are
    /// handled; everything is committed and delivered; bidders are told the server is going
    /// down; then the storage closes. Fails if the storage failed at any point.
    pub async fn shutdown(self) -> Result<()> {
        self.shutdown.cancel();
        let _ = self.task.await;
        self.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "some connections did not finish within {DRAIN_TIMEOUT:?}; closing anyway"
            );
        }
        let storage = self.storage.clone();
        let _ = tokio::task::spawn_blocking(move || storage.close()).await;
        match self.storage.failure() {
            Some(e) => anyhow::bail!("storage failed: {e}"),
            None => Ok(()),
        }
    }

    /// Runs until `signal` completes (or the storage fails), then shuts down.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) -> Result<()> {
        let failed = self.storage.failed();
        tokio::select! {
            _ = signal => {}
            _ = self.shutdown.cancelled() => {}
            _ = failed.cancelled() => {
                tracing::error!("the database failed: stopping without acknowledging anything more");
            }
        }
        self.shutdown().await
    }
}
