//! The PostgreSQL [`Storage`]: the same contract as SQLite's (durable before said, group
//! commit, exactly once), with one writer connection per node and every batch fenced by the
//! node's epoch in its own transaction.
//!
//! Who owns what: the writer thread owns its connection and a single-threaded runtime that
//! drives it, and commits what tasks queue (`store/queue.rs`) from the moment the node joins:
//! the items the node runs (`cluster/host.rs`), and the registration plane's records once it
//! leads. A connection of its own keeps the node's heartbeat; another, on the server's runtime,
//! answers the rare reads beside the writer (`best_bids`, the session blocks); [`lead`] reads
//! the snapshot the registration plane resumes from when the node takes the leader lease. A
//! node that learns it was fenced (its heartbeat finds another epoch) or cannot renew its
//! heartbeat within its lease fails the storage, and the node steps down: by then the leader
//! may have given its items to others, and nothing it still tried to commit could pass the
//! fence anyway.
//!
//! [`lead`]: PostgresStorage::lead

use anyhow::{bail, Context, Result};
use auction_protocol::Cents;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::nodes::{self, Membership};
use super::sql::{Blocker, PgBatch, PgQuery, Prepared};
use super::{connect_as, schema, shown};
use crate::cluster::standby;
use crate::rules::ratelimit::{self, SourceLimiter};
use crate::rules::settlement::Party;
use crate::store::queue::{Batch, Shared};
use crate::store::sql::write::{describe, write};
use crate::store::sql::{self, params, Exec};
use crate::store::{CommitObserver, CommitStats, Lsn, Record, Snapshot, Storage};

/// How a node takes part.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The node's name, unique among the nodes sharing the database.
    pub node: String,
    /// Where clients reach it (its `--udp` address), as other nodes would tell them.
    pub udp: String,
    /// How often it renews its heartbeat.
    pub heartbeat: Duration,
    /// How long a heartbeat holds: past it without renewal, the node is dead to the others
    /// (and stops itself).
    pub lease: Duration,
    /// As [`crate::SqliteOptions::group_commit`].
    pub group_commit: bool,
    /// Datagrams per second (and burst) a standby answers per source: `--udp-rate`,
    /// `--udp-burst`, as the leader's gate.
    pub udp_rate: f64,
    pub udp_burst: f64,
}

/// The storage of one node on a PostgreSQL database.
pub struct PostgresStorage {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// For reads beside the writer; lives on the server's runtime.
    reader: Arc<Client>,
    runtime: tokio::runtime::Handle,
    membership: Membership,
    heartbeat: tokio::task::JoinHandle<()>,
    url: String,
    options: PostgresOptions,
}

impl PostgresStorage {
    /// Connects to `url`, brings its schema up to date and joins as `options.node` (with a
    /// new epoch, which fences whatever an earlier run under that name might still try); keeps
    /// the node's heartbeat from then on, and starts the writer, which commits what this node
    /// appends (the items it runs; the registration plane's too once it leads: [`Self::lead`]).
    pub async fn join(url: &str, options: PostgresOptions) -> Result<PostgresStorage> {
        let name = |what: &str| format!("auction-server {} {what}", options.node);
        let mut client = connect_as(url, &name("reader")).await?;
        schema::migrate(&mut client)
            .await
            .with_context(|| format!("cannot update the schema of {}", shown(url)))?;
        let membership = nodes::join(&client, &options.node, &options.udp, options.lease).await?;
        tracing::info!(node = %membership.name, epoch = membership.epoch, "joined the cluster");
        let shared = Arc::new(Shared::new());
        let heartbeat = tokio::spawn(keep_heartbeat(
            url.to_owned(),
            name("heartbeat"),
            membership.clone(),
            options.heartbeat,
            options.lease,
            shared.clone(),
        ));
        let stop_heartbeat = AbortOnDrop(heartbeat.abort_handle());
        let (ready, connected) = oneshot::channel();
        let writer = {
            let (url, shared, membership) = (url.to_owned(), shared.clone(), membership.clone());
            let group_commit = options.group_commit;
            std::thread::Builder::new()
                .name("storage-writer".into())
                .spawn(move || writer_thread(&url, &shared, &membership, group_commit, ready))
                .context("cannot start the storage writer thread")?
        };
        match connected.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.context(format!("cannot write to {}", shown(url)))),
            Err(_) => bail!(
                "the storage writer stopped before connecting to {}",
                shown(url)
            ),
        }
        stop_heartbeat.disarm();
        Ok(PostgresStorage {
            shared,
            writer: Mutex::new(Some(writer)),
            reader: Arc::new(client),
            runtime: tokio::runtime::Handle::current(),
            membership,
            heartbeat,
            url: url.to_owned(),
            options,
        })
    }

    /// While another node leads, stands by on `udp` (answering datagrams with the leader's
    /// address: `cluster/standby.rs`) until this node holds the leader lease; then reads what
    /// the registration plane needs to resume. Fails when the node fails (fenced, or cut off
    /// from the database for a lease).
    pub async fn lead(&self, udp: &UdpSocket) -> Result<Snapshot> {
        let url = self.url.as_str();
        let name = format!("auction-server {} leader", self.membership.name);
        let mut client = connect_as(url, &name).await?;
        let failed = self.shared.failed();
        let mut limiter = SourceLimiter::new(
            self.options.udp_rate,
            self.options.udp_burst,
            ratelimit::MAX_SOURCES,
        );
        tokio::select! {
            led = standby::until_leader(url, &mut client, &self.membership, udp, self.options.heartbeat, self.options.lease, &mut limiter) => led?,
            _ = failed.cancelled() => bail!(
                "{}",
                self.shared.failure().unwrap_or_else(|| "the node stopped".into())
            ),
        }
        tracing::info!(node = %self.membership.name, "leading: this node runs the registration plane now");
        let cookie_secret = cookie_secret(&client).await?;
        let client = Arc::new(client);
        let handle = tokio::runtime::Handle::current();
        let reading = client.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            sql::load::load(&mut PgQuery {
                rt: Blocker::Handle(&handle),
                client: &reading,
            })
        })
        .await
        .context("the snapshot reader stopped")?;
        let mut snapshot = loaded.with_context(|| format!("cannot read {}", shown(url)))?;
        snapshot.cookie_secret = Some(cookie_secret);
        Ok(snapshot)
    }

    /// [`Self::join`], then [`Self::lead`]: a node that runs the whole server itself once it
    /// leads, its registry running the items too (`Server::start`), as the benchmarks do.
    pub async fn open(
        url: &str,
        options: PostgresOptions,
        udp: &UdpSocket,
    ) -> Result<(PostgresStorage, Snapshot)> {
        let storage = PostgresStorage::join(url, options).await?;
        let snapshot = storage.lead(udp).await?;
        Ok((storage, snapshot))
    }

    /// The node's name and the epoch it joined with.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// A block of channel-session numbers no other node's run uses (see [`session_block`]).
    pub async fn session_block(&self) -> Result<u64> {
        session_block(&self.reader).await
    }

    /// The database this node shares.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How this node takes part.
    pub fn options(&self) -> &PostgresOptions {
        &self.options
    }
}

/// The first of a block of 2^32 channel-session numbers no other node's run uses.
pub async fn session_block(client: &Client) -> Result<u64> {
    let block: i64 = client
        .query_one("SELECT nextval('session_blocks')", &[])
        .await?
        .get(0);
    Ok((block as u64) << 32)
}

/// Aborts a task when dropped (an `open` that fails or is cancelled stops its heartbeat).
struct AbortOnDrop(tokio::task::AbortHandle);

impl AbortOnDrop {
    /// The task runs on.
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The key cookies derive from, shared by every node: made by the first node to lead.
async fn cookie_secret(client: &Client) -> Result<[u8; 32]> {
    let mut fresh = [0u8; 32];
    rand::fill(&mut fresh);
    client
        .execute(
            "INSERT INTO cluster (one, cookie_secret) VALUES (TRUE, $1) ON CONFLICT DO NOTHING",
            &[&&fresh[..]],
        )
        .await?;
    let stored: Vec<u8> = client
        .query_one("SELECT cookie_secret FROM cluster", &[])
        .await?
        .get(0);
    stored
        .try_into()
        .map_err(|_| anyhow::anyhow!("the stored cookie secret is not 32 bytes"))
}

/// The writer thread: connects (and says so on `ready`), then commits batches until the queue
/// closes.
fn writer_thread(
    url: &str,
    shared: &Shared,
    me: &Membership,
    group_commit: bool,
    ready: oneshot::Sender<Result<()>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    let mut client = match rt.block_on(connect_as(
        url,
        &format!("auction-server {} writer", me.name),
    )) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready.send(Ok(())).is_err() {
        return;
    }
    let mut prepared = Prepared::default();
    while let Some(batch) = shared.next_batch(group_commit) {
        let started = Instant::now();
        match rt.block_on(commit(&mut client, &mut prepared, me, &batch)) {
            Ok(()) => shared.committed(&batch, started.elapsed()),
            Err(e) => {
                shared.fail(format!("{e:#}"));
                return;
            }
        }
    }
    // Stopped cleanly, everything committed: the others need not wait for the lease to lapse
    // to take the node's place.
    if let Err(e) = rt.block_on(nodes::leave(&client, me)) {
        tracing::warn!(error = %format!("{e:#}"), "could not record that the node left");
    }
}

/// One transaction: the fence, then every record of the batch, then the commit, sent at once.
async fn commit(
    client: &mut Client,
    prepared: &mut Prepared,
    me: &Membership,
    batch: &Batch,
) -> Result<()> {
    let mut statements = PgBatch::default();
    // First, the fence: it fails the transaction (so nothing after it is stored) unless the
    // node still holds its epoch, and share-locks the node's row until the commit, so a
    // survivor's fence waits for this batch.
    statements.exec(nodes::FENCE, params![me.name.as_str(), me.epoch as u64])?;
    for (_, records) in batch {
        for record in records {
            write(&mut statements, record)
                .with_context(|| format!("writing {}", describe(record)))?;
            own(&mut statements, record, me)?;
        }
    }
    statements.run_committed(client, prepared).await
}

/// Where items run: the node that offers an item owns it until the leader gives it to a node
/// (`ItemAssigned`, in the same batch as the offer, or when its owner was fenced), and the node
/// that opens an item's channel (`ItemResumed`) runs it, under its epoch.
fn own(statements: &mut PgBatch, record: &Record, me: &Membership) -> Result<()> {
    match record {
        Record::ItemOffered { item, .. } => statements.exec(
            "UPDATE items SET owner = $2, owner_epoch = $3 WHERE id = $1",
            params![*item, me.name.as_str(), me.epoch as u64],
        ),
        Record::ItemResumed { item, .. } => statements.exec(
            "UPDATE items SET owner = $2, owner_epoch = $3, channel_open = TRUE WHERE id = $1",
            params![*item, me.name.as_str(), me.epoch as u64],
        ),
        Record::ItemAssigned { item, node, epoch } => statements.exec(
            "UPDATE items SET owner = $2, owner_epoch = $3, channel_open = FALSE WHERE id = $1",
            params![*item, node.as_str(), *epoch],
        ),
        _ => Ok(()),
    }
}

/// Renews the node's heartbeat every `every` until the server stops, on a connection of its own
/// (made again after an error); fails the storage (which stops the server) when the node was
/// fenced, or when no renewal succeeded for a whole lease.
async fn keep_heartbeat(
    url: String,
    name: String,
    me: Membership,
    every: Duration,
    lease: Duration,
    shared: Arc<Shared>,
) {
    let mut last_renewed = Instant::now();
    let mut client: Option<Client> = None;
    loop {
        tokio::time::sleep(every).await;
        let renewed = match &client {
            Some(c) => nodes::renew(c, &me, lease).await,
            None => match connect_as(&url, &name).await {
                Ok(c) => nodes::renew(client.insert(c), &me, lease).await,
                Err(e) => Err(e),
            },
        };
        match renewed {
            Ok(true) => last_renewed = Instant::now(),
            Ok(false) => {
                shared.fail(format!(
                    "node {} was fenced (epoch {} is no longer current): another node took its \
                     place, so it stops serving",
                    me.name, me.epoch
                ));
                return;
            }
            Err(e) if last_renewed.elapsed() >= lease => {
                shared.fail(format!(
                    "node {} could not renew its heartbeat for {} ms ({e:#}): the others may \
                     have taken its place, so it stops serving",
                    me.name,
                    lease.as_millis()
                ));
                return;
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not renew the heartbeat; trying again");
                client = None;
            }
        }
    }
}

impl Storage for PostgresStorage {
    fn append(&self, records: Vec<Record>) -> Lsn {
        self.shared.append(records)
    }

    fn appended(&self) -> Lsn {
        self.shared.appended()
    }

    fn durable(&self) -> watch::Receiver<Lsn> {
        self.shared.durable()
    }

    fn failed(&self) -> CancellationToken {
        self.shared.failed()
    }

    fn failure(&self) -> Option<String> {
        self.shared.failure()
    }

    fn observe_commits(&self, observer: CommitObserver) {
        self.shared.observe(observer);
    }

    fn best_bids(&self, item: u64) -> Result<Vec<(Party, Cents)>> {
        sql::best_bids(
            &mut PgQuery {
                rt: Blocker::Handle(&self.runtime),
                client: &self.reader,
            },
            item,
        )
    }

    fn history(&self, item: u64, limit: u64) -> Result<Vec<crate::web::BoardBid>> {
        sql::history(
            &mut PgQuery {
                rt: Blocker::Handle(&self.runtime),
                client: &self.reader,
            },
            item,
            limit,
        )
    }

    fn latest_bids(&self, item: u64, limit: u64) -> Result<sql::BidHistory> {
        sql::latest_bids(
            &mut PgQuery {
                rt: Blocker::Handle(&self.runtime),
                client: &self.reader,
            },
            item,
            limit,
        )
    }

    fn item_bids(&self, item: u64) -> Result<Vec<sql::StoredBid>> {
        sql::item_bids(
            &mut PgQuery {
                rt: Blocker::Handle(&self.runtime),
                client: &self.reader,
            },
            item,
        )
    }

    fn stats(&self) -> CommitStats {
        self.shared.stats()
    }

    fn close(&self) {
        self.shared.close();
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(writer) = writer else {
            return;
        };
        self.heartbeat.abort();
        let _ = writer.join();
    }
}

impl Drop for PostgresStorage {
    fn drop(&mut self) {
        self.close();
    }
}
