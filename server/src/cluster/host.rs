//! The items a node runs. Every node of a cluster, the leader too, hosts the items given to it
//! (`items.owner`, under its epoch): every `POLL` it reads the items given to it whose channel
//! it has not opened, loads each from the database (after it was given: its former owner, if
//! any, was fenced first, so nothing it committed is missing), opens its channel on this node
//! and records that (`Record::ItemResumed`, fenced: the leader then tells bidders the channel),
//! and runs its task as a single server would. An item taken over from a dead node gets the
//! recovery grace, as after a restart.
//!
//! Its channels authenticate bidders against the accounts in the database (new ones are read
//! every poll), and it applies the leader's commands (`store/postgres/shard.rs`). When the node
//! is fenced it can commit nothing more: it tells each connected bidder where the item went,
//! closes, and the node rejoins.

use anyhow::{Context, Result};
use auction_protocol::PublicKey;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accounts::{AccountHandle, AccountId, KeyDirectory};
use crate::config::{Config, PortRange};
use crate::context::ServerContext;
use crate::item::{self, ItemCmd, ItemSpec};
use crate::metrics::Metrics;
use crate::registry::inbox::ItemClosed;
use crate::rules::auction::Lead;
use crate::store::postgres::shard::{self, Command};
use crate::store::postgres::PostgresStorage;
use crate::store::{Record, Storage, StoredItem};
use crate::TlsIdentity;

/// How often a node looks for items given to it, new accounts and commands.
const POLL: Duration = Duration::from_millis(50);

/// How long stopping waits for the items' connections to finish.
const DRAIN: Duration = Duration::from_secs(3);

/// The items one node runs.
pub struct Host {
    /// Asks the host to stop (it then stops its items: see `Hosting::run`).
    stop: CancellationToken,
    tasks: TaskTracker,
    task: tokio::task::JoinHandle<()>,
    /// What the node's live board serves: its own items from their tasks, the others' from the
    /// database (`cluster/board.rs`).
    site: crate::web::BoardSite,
    metrics: Arc<crate::metrics::Metrics>,
    per_source: usize,
}

impl Host {
    /// Starts hosting the items given to the node `storage` joined as. Item channels listen on
    /// `bind_ip`.
    pub async fn start(
        storage: Arc<PostgresStorage>,
        tls: TlsIdentity,
        config: Config,
        bind_ip: IpAddr,
        metrics: Arc<Metrics>,
    ) -> Result<Host> {
        let me = storage.membership().clone();
        let client = Arc::new(
            crate::store::postgres::connect_as(
                storage.url(),
                &format!("auction-server {} host", me.name),
            )
            .await?,
        );
        let keys = Arc::new(KeyDirectory::deferring());
        let tls_config = crate::tls::server_config(tls.chain, tls.key, keys.clone())
            .context("the server certificate or key is not usable")?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (closed_tx, closed_rx) = mpsc::channel(1024);
        // Nobody subscribes on this node (the leader follows the items through the database),
        // and sales are settled by the leader's desk: what the items send there is dropped.
        let (updates, _) = mpsc::channel(1);
        let (desk, _) = mpsc::channel(1);
        let admission = crate::net::budget::Admission::of(&config);
        let sessions = crate::store::postgres::session_block(&client).await?;
        let last_command = shard::last_command(&client).await?;
        let first_port = match config.item_ports {
            PortRange::Range(lo, _) => lo,
            PortRange::Ephemeral => 0,
        };
        let ctx = Arc::new(ServerContext {
            config,
            acceptor: tokio_rustls::TlsAcceptor::from(tls_config),
            keys,
            storage: storage.clone(),
            closed: closed_tx,
            updates,
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
            metrics,
            admission,
            next_session: std::sync::atomic::AtomicU64::new(sessions),
            desk,
            settle_port: 0,
            cluster: None,
            moved: Default::default(),
            key_lookup: Some(KeyLookup {
                client: client.clone(),
            }),
            board: Arc::new(crate::web::Board::new(crate::clock::unix_ms())),
        });
        let site = crate::web::BoardSite {
            board: ctx.board.clone(),
            storage: storage.clone(),
            streams: Arc::new(tokio::sync::Semaphore::new(ctx.config.web_streams)),
            stream_cap: ctx.config.web_streams,
        };
        let metrics = ctx.metrics.clone();
        let per_source = ctx.config.web_per_source;
        let stop = CancellationToken::new();
        tasks.spawn(super::board::follow(
            client.clone(),
            me.clone(),
            ctx.board.clone(),
            stop.clone(),
        ));
        let mut hosting = Hosting {
            ctx,
            stop: stop.clone(),
            client,
            storage,
            bind_ip,
            accounts: HashMap::new(),
            last_account: 0,
            last_command,
            running: HashMap::new(),
            next_port: first_port,
        };
        hosting.read_accounts().await?;
        let task = tokio::spawn(hosting.run(closed_rx));
        Ok(Host {
            stop,
            tasks,
            task,
            site,
            metrics,
            per_source,
        })
    }

    /// Serves this node's live board (every item: its own from their tasks, the others' from
    /// the database) on `listener`, with the node's metrics when `with_metrics`, until the host
    /// stops.
    pub fn serve_web(
        &self,
        listener: tokio::net::TcpListener,
        with_metrics: bool,
    ) -> Result<std::net::SocketAddr> {
        let site = crate::web::Site {
            board: Some(self.site.clone()),
            metrics: with_metrics.then(|| self.metrics.clone()),
            per_source: self.per_source,
        };
        crate::web::serve(listener, site, self.stop.clone(), &self.tasks)
    }

    /// Serves the node's metrics alone on `listener` until the host stops.
    pub fn serve_metrics(&self, listener: tokio::net::TcpListener) -> Result<std::net::SocketAddr> {
        let site = crate::web::Site {
            board: None,
            metrics: Some(self.metrics.clone()),
            per_source: self.per_source,
        };
        crate::web::serve(listener, site, self.stop.clone(), &self.tasks)
    }

    /// Stops the items (their bidders are told why) and waits for their connections.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
        self.tasks.close();
        if tokio::time::timeout(DRAIN, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some item connections did not finish within {DRAIN:?}");
        }
    }
}

/// Looks up, in the database, the live account of a key the node has not seen yet (one
/// registered since its last read): a query per such handshake, which the handshake budgets
/// bound.
pub struct KeyLookup {
    client: Arc<Client>,
}

impl KeyLookup {
    /// The live account holding `key`, remembered in `keys` once found.
    pub async fn find(&self, keys: &KeyDirectory, key: PublicKey) -> Option<Arc<AccountHandle>> {
        match shard::account_by_key(&self.client, &key).await {
            Ok(Some((id, name))) => {
                let handle = Arc::new(AccountHandle::new(id, name, key));
                keys.insert(handle.clone());
                Some(handle)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not look a key up in the database");
                None
            }
        }
    }
}

struct Hosting {
    /// The items' context: its shutdown token stops them, cancelled by `run` alone.
    ctx: Arc<ServerContext>,
    stop: CancellationToken,
    client: Arc<Client>,
    storage: Arc<PostgresStorage>,
    bind_ip: IpAddr,
    /// Every live account read so far, by number.
    accounts: HashMap<AccountId, Arc<AccountHandle>>,
    last_account: AccountId,
    last_command: i64,
    /// The items running here.
    running: HashMap<u64, mpsc::Sender<ItemCmd>>,
    next_port: u16,
}

impl Hosting {
    async fn run(mut self, mut closed: mpsc::Receiver<ItemClosed>) {
        let failed = self.storage.failed();
        let stop = self.stop.clone();
        loop {
            tokio::select! {
                biased;
                _ = failed.cancelled() => break,
                _ = stop.cancelled() => {
                    if !failed.is_cancelled() {
                        self.ctx.shutdown.cancel();
                        return;
                    }
                    break;
                }
                Some(done) = closed.recv() => {
                    self.running.remove(&done.item);
                    continue;
                }
                _ = tokio::time::sleep(POLL) => {}
            }
            if let Err(e) = self.poll().await {
                tracing::warn!(error = %format!("{e:#}"), "could not read the items given to this node");
            }
        }
        // Fenced (or cut off): nothing more can commit. Each bidder hears where its item went
        // before the channels close.
        for &item in self.running.keys() {
            let told = match shard::whereabouts(&self.client, item).await {
                Ok(Some((node, Some(channel), _))) => format!(
                    "this node lost item {item} (it was fenced): the item runs on node {node} now, \
                     channel {channel}; reconnect there"
                ),
                Ok(Some((node, None, _))) => format!(
                    "this node lost item {item} (it was fenced): the item runs on node {node} now; \
                     ask the registration plane (status) for its channel"
                ),
                _ => format!(
                    "this node lost item {item}: ask the registration plane (status) where it runs now"
                ),
            };
            self.ctx
                .moved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(item, told);
        }
        self.ctx.shutdown.cancel();
    }

    async fn poll(&mut self) -> Result<()> {
        self.read_accounts().await?;
        for (id, command) in shard::commands_after(&self.client, self.last_command).await? {
            self.last_command = id;
            self.apply(command).await;
        }
        let me = self.storage.membership().clone();
        for (item, port) in shard::assigned(&self.client, &me).await? {
            if self.running.contains_key(&item) {
                continue;
            }
            if let Err(e) = self.open(item, port).await {
                tracing::warn!(item, error = %format!("{e:#}"), "could not open an item given to this node; trying again");
            }
        }
        Ok(())
    }

    /// Reads the accounts registered since the last look, for the channels' handshakes.
    async fn read_accounts(&mut self) -> Result<()> {
        for (id, name, key) in shard::accounts_after(&self.client, self.last_account).await? {
            self.last_account = self.last_account.max(id);
            let handle = Arc::new(AccountHandle::new(id, name, key));
            self.ctx.keys.insert(handle.clone());
            self.accounts.insert(id, handle);
        }
        Ok(())
    }

    /// Hands `cmd` to item `item` if this node runs it (its answer goes nowhere: the leader
    /// reads the outcome from the database).
    async fn tell(&self, item: u64, cmd: ItemCmd) {
        if let Some(queue) = self.running.get(&item) {
            let _ = queue.send(cmd).await;
        }
    }

    async fn apply(&mut self, command: Command) {
        match command {
            Command::LowerMin { item, min } => {
                if let Some(cmd) = self.running.get(&item) {
                    let (reply, _) = tokio::sync::oneshot::channel();
                    let _ = cmd.send(ItemCmd::LowerMin { min, reply }).await;
                }
            }
            Command::Cancel {
                item,
                operator,
                note,
            } => {
                let (reply, _) = tokio::sync::oneshot::channel();
                self.tell(
                    item,
                    ItemCmd::Cancel {
                        operator,
                        note,
                        reply,
                    },
                )
                .await;
            }
            Command::RemoveBid {
                item,
                bid,
                operator,
                note,
            } => {
                let (reply, _) = tokio::sync::oneshot::channel();
                self.tell(
                    item,
                    ItemCmd::RemoveBid {
                        operator,
                        bid,
                        note,
                        reply,
                    },
                )
                .await;
            }
            Command::AccountGone { account } => {
                if let Some(handle) = self.accounts.remove(&account) {
                    handle.set_live(false);
                    self.ctx.keys.remove(&handle.key);
                }
                for cmd in self.running.values() {
                    let _ = cmd.send(ItemCmd::AccountGone { account }).await;
                }
            }
        }
    }

    /// The handle of account `id`, read from the database when this node has not seen it, or
    /// one that cannot bid if the account is gone.
    async fn handle_of(&mut self, id: AccountId, name: &str) -> Arc<AccountHandle> {
        if let Some(handle) = self.accounts.get(&id) {
            return handle.clone();
        }
        if let Ok(Some((name, key))) = shard::account(&self.client, id).await {
            let handle = Arc::new(AccountHandle::new(id, name, key));
            self.ctx.keys.insert(handle.clone());
            self.accounts.insert(id, handle.clone());
            return handle;
        }
        let gone = AccountHandle::new(id, name.to_owned(), PublicKey([0; 32]));
        gone.set_live(false);
        Arc::new(gone)
    }

    /// Opens the channel of `item`, given to this node, and starts its task. `port` is where
    /// its former owner listened (0 for a new item).
    async fn open(&mut self, item: u64, port: u16) -> Result<()> {
        let Some(stored) = shard::load_item(self.client.clone(), item).await? else {
            anyhow::bail!("item {item} is not in the database");
        };
        let now = crate::clock::unix_ms();
        let taken_over = port != 0;
        let StoredItem {
            id,
            seller,
            seller_name,
            description,
            min,
            offered_at,
            ends_at,
            planned_ends_at,
            lead,
            bid_ids,
            counts,
            terms,
            ..
        } = stored;
        let grace = self.ctx.config.recovery_grace.as_millis() as u64;
        let open = ends_at > now;
        // As after a restart: the grace makes up for one outage.
        let ends_at = if open && taken_over {
            ends_at.max(planned_ends_at.saturating_add(grace))
        } else {
            ends_at
        };
        let seller = self.handle_of(seller, &seller_name).await;
        let lead = match lead {
            Some((bidder, name, amount, max)) => Some(Lead {
                amount,
                bidder: self.handle_of(bidder, &name).await,
                max,
            }),
            None => None,
        };
        let listener = if open {
            let listener = self.bind(port)?;
            let port = listener.local_addr()?.port();
            shard::close_sessions(&self.client, id, now).await?;
            self.storage.append(vec![Record::ItemResumed {
                item: id,
                ends_at,
                port,
            }]);
            Some(listener)
        } else {
            None
        };
        let channel = listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.to_string());
        tracing::info!(
            item = id,
            channel = channel.as_deref().unwrap_or("none"),
            taken_over,
            "running an item given to this node"
        );
        let spec = ItemSpec {
            id,
            description,
            seller,
            min,
            terms,
            offered_at,
            ends_at,
            channel,
            lead,
            bid_ids,
            shown: Some(counts),
            // A group of lots is the leader's registry's to move, on one server only.
            grouped: false,
        };
        let handle = item::spawn(spec, listener, self.ctx.clone());
        self.running.insert(id, handle.cmd);
        Ok(())
    }

    /// A listener for an item: on `port` when it is free, otherwise in the item port range.
    fn bind(&mut self, port: u16) -> std::io::Result<tokio::net::TcpListener> {
        if port != 0 {
            if let Ok(listener) = crate::net::listener::bind(SocketAddr::new(self.bind_ip, port)) {
                return Ok(listener);
            }
        }
        let range = self.ctx.config.item_ports;
        crate::net::listener::bind_item_port(self.bind_ip, range, &mut self.next_port)
    }
}
