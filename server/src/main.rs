//! `auction-server`: parses arguments, sets up logging, makes sure certificates exist, opens the
//! database, binds the UDP socket and runs [`auction_server::Server`] until Ctrl-C or SIGTERM.

use anyhow::{bail, Context, Result};
use auction_protocol::Cents;
use auction_server::cluster::host::Host;
use auction_server::{
    certs, postgres, Config, Increments, PortRange, PostgresOptions, PostgresStorage, Server,
    SqliteOptions, SqliteStorage, Storage, TlsIdentity,
};
use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};

#[derive(Parser, Debug)]
#[command(
    name = "auction-server",
    version,
    about = "Live auction server: UDP registration, one mutual-TLS channel per item"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// UDP address of the registration plane. Item channels listen on the same IP.
    #[arg(long, env = "AUCTION_UDP", default_value = "127.0.0.1:7400")]
    udp: SocketAddr,
    /// IP announced for item channels (needed when --udp binds 0.0.0.0 or ::).
    #[arg(long)]
    advertise: Option<IpAddr>,
    /// Ports for item channels, LO-HI, or 0 for any free port.
    #[arg(long, default_value = "0")]
    item_ports: PortRange,
    /// Server certificate chain (PEM). With --key; both are generated when both are missing.
    #[arg(long, default_value = "certs/server.pem")]
    cert: PathBuf,
    /// Server private key (PEM).
    #[arg(long, default_value = "certs/server.key")]
    key: PathBuf,
    /// Where everything is stored: a SQLite file (created with its folder if missing; see
    /// README "Data and recovery"), or a PostgreSQL database, postgres://USER@HOST:PORT/DB
    /// (README "Several nodes"). Not global: `gen-certs` touches no database, so it must not
    /// list a `--db` that would do nothing there; the subcommands that read one take their own
    /// ([`DbChoice`]).
    #[arg(long, env = "AUCTION_DB", default_value = "data/auction.db")]
    db: PathBuf,
    /// Added to the remaining time of every auction still open after a restart, once per
    /// outage: restarts in a row add it to the auction's own end, not to the last grace.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    recovery_grace: Duration,
    /// How long a buyer has to give shipping details after a sale (and a bidder to answer a
    /// second-chance offer) before it is cancelled.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    settle_timeout: Duration,
    /// Port of the settlement listener (TLS, same IP as --udp); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    settle_port: u16,
    /// Commit every change in its own transaction instead of in groups. Much slower; only
    /// for measuring what group commit buys.
    #[arg(long)]
    no_group_commit: bool,
    /// Open items one seller may have at once.
    #[arg(long, default_value_t = 3)]
    max_open_items: usize,
    /// Announcements (NEW-ITEM, BID-UPDATE, ...) that may wait for one account; past it the
    /// oldest are dropped and the client sees a gap in their numbers and re-reads the state.
    #[arg(long, default_value_t = auction_server::config::DEFAULT_ANNOUNCE_QUEUE,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=65_536))]
    announce_queue: usize,
    /// Addresses that get one account's announcements at once (a `watch`, a shell, another
    /// machine); one more evicts the one heard from least recently.
    #[arg(long, default_value_t = auction_server::config::DEFAULT_DEVICES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=16))]
    devices: usize,
    /// Announcement datagrams sent per second, all accounts together (paced, so requests
    /// are answered in between).
    #[arg(long, default_value_t = auction_server::config::DEFAULT_ANNOUNCE_RATE)]
    announce_rate: f64,
    /// The smallest raise over the highest bid by price band: FROM:STEP,... (amounts as
    /// 12.50; the first FROM is 0). From a highest bid of FROM up to the next band's FROM,
    /// the next bid must be at least STEP higher. Default: 0:0.05,1:0.25,5:0.50,25:1,
    /// 100:2.50,250:5,500:10,1000:25,2500:50,5000:100.
    #[arg(long, value_parser = parse_increments, conflicts_with = "min_increment")]
    increments: Option<Increments>,
    /// One step at every price instead of the table, e.g. 0.01 (the same as --increments 0:STEP).
    #[arg(long, value_parser = parse_amount)]
    min_increment: Option<Cents>,
    /// How long before its end an item sends its leading bidder, when not connected to the
    /// item's channel, a reliable ENDING-SOON notice (at most a quarter of the auction's
    /// length); 0s: never.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    ending_soon: Duration,
    /// The operator's Ed25519 public key (64 hex digits, as `auction-client whoami` shows
    /// it): the account registered with this key may cancel open items and remove bids
    /// (`auction-client cancel-item`, `remove-bid`). Without it no one may.
    #[arg(long, value_parser = parse_key)]
    operator_key: Option<auction_protocol::PublicKey>,
    /// A bid accepted this close to the end extends the auction...
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    snipe_window: Duration,
    /// ...to this long after that bid.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    snipe_extension: Duration,
    /// Distinct accounts connected to one item at once (default: no cap).
    #[arg(long)]
    max_bidders_per_item: Option<usize>,
    /// The live board, a read-only web page of the open items and the latest results, at
    /// http://ADDR/: "auto" is port 7480 on the --udp IP (any free port if that one is taken;
    /// the address is logged at start), "off" serves none.
    #[arg(long, env = "AUCTION_WEB", default_value = "auto", value_parser = parse_web)]
    web: Web,
    /// Board pages following the auction live at once (one event stream each); one more is
    /// refused with 503 and falls back to re-reading the page.
    #[arg(long, default_value_t = auction_server::web::DEFAULT_STREAMS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=65_536))]
    web_streams: usize,
    /// Connections to the board (and the metrics) one source, an IPv4 address or an IPv6 /64,
    /// may hold at once; one more is answered 503 and closed.
    #[arg(long, default_value_t = auction_server::web::DEFAULT_PER_SOURCE,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=65_536))]
    web_per_source: usize,
    /// Serve Prometheus metrics at http://ADDR/metrics (off unless given; the same address
    /// as --web serves both from one server; e.g.
    /// 127.0.0.1:9400, or port 0 for any free port, logged at start).
    #[arg(long, env = "AUCTION_METRICS")]
    metrics: Option<SocketAddr>,
    /// Joined connections to item channels and the settlement desk at once, server-wide (a
    /// handshake in progress does not count); one more is told `server-full` and closed.
    #[arg(long, default_value_t = auction_server::config::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Joined connections one account may hold at once, all items together; one more is told
    /// `too-many-connections`.
    #[arg(long, default_value_t = 128)]
    max_connections_per_account: usize,
    /// TLS handshakes in progress at once, server-wide; past it a new connection is closed at
    /// once.
    #[arg(long, default_value_t = 1024)]
    max_handshakes: usize,
    /// TLS handshakes in progress at once from one source (an IPv4 address, an IPv6 /64).
    #[arg(long, default_value_t = 64)]
    max_handshakes_per_source: usize,
    /// Items open at once, all sellers together; an offer past it is refused `server-busy`.
    #[arg(long, default_value_t = 2048)]
    max_items: usize,
    /// Accounts one source (IPv4 address, IPv6 /64) may create in an hour; past it `register` is refused
    /// `too-many-accounts`.
    #[arg(long, default_value_t = 100)]
    accounts_per_hour: u32,
    /// Items one account may offer in an hour; past it `offer` is refused `rate-limited`.
    #[arg(long, default_value_t = 100)]
    offers_per_hour: u32,
    /// UDP datagrams per second accepted from one source (IPv4 address, IPv6 /64); more are dropped and the source
    /// is told `rate-limited` (at most once a second).
    #[arg(long, default_value_t = 1000.0)]
    udp_rate: f64,
    /// How many datagrams one source may send at once before --udp-rate applies.
    #[arg(long, default_value_t = 2000.0)]
    udp_burst: f64,
    /// Bids per second one account may send on its channels (all items together); more are
    /// refused with rate-limited, the connection kept.
    #[arg(long, default_value_t = 50.0)]
    bid_rate: f64,
    /// How many bids one account may send at once before --bid-rate applies.
    #[arg(long, default_value_t = 100.0)]
    bid_burst: f64,
    /// A channel connection on which nothing arrives (not even the reference client's blank
    /// keep-alive line) for this long is closed with idle-timeout.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Kernel send buffer of each channel connection in bytes (default: the system's). Smaller
    /// bounds what a client that does not read holds in the kernel.
    #[arg(long)]
    channel_send_buffer: Option<usize>,
    /// Offer the items of this catalog at start, as its house seller, skipping entries already
    /// offered in this database (format: README "Catalog"; sample: scripts/catalog.json).
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// With a PostgreSQL --db: this node's name, unique among the nodes sharing the database
    /// (default: the machine's host name). A node started again under its name fences its
    /// former life.
    #[arg(long, env = "AUCTION_NODE")]
    node: Option<String>,
    /// With a PostgreSQL --db: how often the node renews its heartbeat.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    heartbeat: Duration,
    /// With a PostgreSQL --db: how long a heartbeat holds. A node that has not renewed it for
    /// this long is dead to the others, and stops serving by itself.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    lease: Duration,
    /// Time a client gets to finish its TLS handshake.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    handshake_timeout: Duration,
}

/// `--db` of the subcommands that read the database (`status`, `check`, `backup`); given after
/// the subcommand's name, it overrides the server's `--db` (given before it, or
/// `AUCTION_DB`, or the default).
#[derive(Args, Debug)]
struct DbChoice {
    /// The database to read, as the server's --db [default: $AUCTION_DB, else data/auction.db].
    #[arg(long = "db", value_name = "DB")]
    db: Option<PathBuf>,
}

impl Command {
    /// The subcommand's own `--db`, for those that read the database.
    fn db(&mut self) -> Option<&mut DbChoice> {
        match self {
            Command::Status { db, .. }
            | Command::Audit { db, .. }
            | Command::Check { db }
            | Command::Backup { db, .. } => Some(db),
            Command::GenCerts { .. } => None,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The operator's view: accounts, open items with their highest bids, and who connected to
    /// each item's channel and when. Read from the database (--db), beside a running server or
    /// without one; the report says which.
    Status {
        /// One JSON object instead of tables.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbChoice,
    },
    /// An item's audit log: its offer, every bid (with its number), every operator action with
    /// its note, and its result, in the order they happened. Read from the database (--db),
    /// beside a running server or without one.
    Audit {
        /// The item's number.
        item: u64,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbChoice,
    },
    /// Read the whole database (--db) with SQLite's full integrity check and its foreign-key
    /// check; exit 1 if anything is wrong. Read only, beside a running server or without one.
    Check {
        #[command(flatten)]
        db: DbChoice,
    },
    /// Copy the database (--db) to FILE as one consistent snapshot, beside a running server or
    /// without one. FILE must not exist; the copy is checked before it takes that name.
    Backup {
        /// Where the copy goes.
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        db: DbChoice,
    },
    /// Write a development CA and a server certificate signed by it.
    GenCerts {
        /// Folder for ca.pem, ca.key, server.pem, server.key.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Names and IPs the server certificate is valid for (repeatable).
        #[arg(long = "san", default_values_t = certs::DEFAULT_SANS.map(String::from))]
        sans: Vec<String>,
    },
}

/// The machine's host name (a node's default name), or `node` when it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("'{s}': {e} (write it like 30s, 5m, 2h)"))
}

/// The increment table the flags ask for: `--increments`, one `--min-increment` step, or the
/// default table.
fn increments(cli: &Cli) -> Increments {
    match (&cli.increments, cli.min_increment) {
        (Some(table), _) => table.clone(),
        (None, Some(step)) => Increments::fixed(step),
        (None, None) => Increments::default(),
    }
}

fn parse_key(s: &str) -> Result<auction_protocol::PublicKey, String> {
    auction_protocol::PublicKey::from_hex(s.trim())
        .ok_or_else(|| "an Ed25519 public key is 64 hex digits".to_owned())
}

fn parse_increments(s: &str) -> Result<Increments, String> {
    Increments::parse(s)
}

fn parse_amount(s: &str) -> Result<Cents, String> {
    Cents::parse_decimal(s).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("auction-server: {e:#}");
        std::process::exit(1);
    }
}

async fn run(mut cli: Cli) -> Result<()> {
    if let Some(db) = cli.command.as_mut().and_then(Command::db) {
        if let Some(path) = db.db.take() {
            cli.db = path;
        }
    }
    let postgres_url = cli
        .db
        .to_str()
        .filter(|db| postgres::is_url(db))
        .map(str::to_owned);
    if let (Some(url), Some(Command::Check { .. } | Command::Backup { .. })) =
        (&postgres_url, &cli.command)
    {
        bail!(
            "{} is a PostgreSQL database: check and back it up with PostgreSQL's own tools \
             (amcheck, pg_dump); `check` and `backup` are for SQLite files",
            postgres::shown(url)
        );
    }
    if let Some(Command::Audit { item, json, .. }) = &cli.command {
        let (db, item) = (cli.db.to_string_lossy().into_owned(), *item);
        let audit = tokio::task::spawn_blocking(move || auction_server::audit::read_any(&db, item))
            .await??;
        if *json {
            println!("{}", serde_json::to_string(&audit)?);
        } else {
            print!("{}", auction_server::audit::render(&audit));
        }
        return Ok(());
    }
    if let Some(Command::Status { json, .. }) = &cli.command {
        let db = cli.db.to_string_lossy().into_owned();
        let report =
            tokio::task::spawn_blocking(move || auction_server::status::read_any(&db)).await??;
        if *json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{}", auction_server::status::render(&report));
        }
        return Ok(());
    }
    if let Some(Command::Check { .. }) = &cli.command {
        let report = auction_server::care::check(&cli.db)?;
        print!("{}", report.render());
        if !report.problems.is_empty() {
            bail!("{} is damaged", cli.db.display());
        }
        return Ok(());
    }
    if let Some(Command::Backup { to, .. }) = &cli.command {
        let report = auction_server::care::backup(&cli.db, to)?;
        println!("Backed up {} to {}.", cli.db.display(), to.display());
        print!("{}", report.render());
        return Ok(());
    }
    let open_files = raise_open_files_limit();
    if let Some(Command::GenCerts { out, sans }) = &cli.command {
        certs::generate_dev_certs(out, sans)?;
        println!(
            "Wrote {0}/ca.pem, {0}/ca.key, {0}/server.pem and {0}/server.key (valid for {1}).",
            out.display(),
            sans.join(", ")
        );
        return Ok(());
    }
    let tls = load_or_generate_tls(&cli)?;
    let catalog = cli
        .catalog
        .as_deref()
        .map(auction_server::catalog::Catalog::load)
        .transpose()?;
    let mut config = Config {
        catalog,
        max_open_items: cli.max_open_items,
        announce_queue: cli.announce_queue,
        devices: cli.devices,
        announce_rate: cli.announce_rate,
        increments: Arc::new(increments(&cli)),
        operator_key: cli.operator_key,
        snipe_window: cli.snipe_window,
        snipe_extension: cli.snipe_extension,
        ending_soon: cli.ending_soon,
        max_bidders_per_item: cli.max_bidders_per_item,
        max_connections: cli.max_connections,
        max_connections_per_account: cli.max_connections_per_account,
        max_handshakes: cli.max_handshakes,
        max_handshakes_per_source: cli.max_handshakes_per_source,
        max_items: cli.max_items,
        accounts_per_hour: cli.accounts_per_hour,
        offers_per_hour: cli.offers_per_hour,
        udp_rate: cli.udp_rate,
        udp_burst: cli.udp_burst,
        bid_rate: cli.bid_rate,
        bid_burst: cli.bid_burst,
        item_ports: cli.item_ports,
        handshake_timeout: cli.handshake_timeout,
        idle_timeout: cli.idle_timeout,
        channel_send_buffer: cli.channel_send_buffer,
        recovery_grace: cli.recovery_grace,
        settle_timeout: cli.settle_timeout,
        settle_port: cli.settle_port,
        web_streams: cli.web_streams,
        web_per_source: cli.web_per_source,
        ..Config::default()
    };
    match config.fit_to_open_files(open_files) {
        Some(lowered) => tracing::warn!("{lowered}"),
        None => tracing::info!(
            open_files,
            connections = config.max_connections,
            handshakes = config.max_handshakes,
            items = config.max_items,
            "budgets fit the open files limit"
        ),
    }
    // From here SIGINT and SIGTERM stop the server cleanly, also while a node stands by.
    let stopping = auction_server::CancellationToken::new();
    {
        let stop = shutdown_signal()?;
        let stopping = stopping.clone();
        tokio::spawn(async move {
            stop.await;
            stopping.cancel();
        });
    }
    let udp = UdpSocket::bind(cli.udp)
        .await
        .with_context(|| format!("cannot bind UDP {}", cli.udp))?;
    let bound = udp.local_addr()?;
    // Where the other nodes send clients to reach this one: its UDP address as clients see it.
    let reachable = SocketAddr::new(cli.advertise.unwrap_or(bound.ip()), bound.port());
    if postgres_url.is_some() && reachable.ip().is_unspecified() {
        bail!(
            "--udp {bound} listens on every address: give --advertise IP, the address clients \
             reach this node at, so the other nodes can send them here"
        );
    }
    let group_commit = !cli.no_group_commit;
    if let Some(url) = &postgres_url {
        if cli.lease <= cli.heartbeat {
            bail!(
                "--lease ({:?}) must be longer than --heartbeat ({:?}), or the node's heartbeat lapses between renewals",
                cli.lease,
                cli.heartbeat
            );
        }
        let node = Node {
            url,
            cli: &cli,
            config,
            tls,
            bound,
            reachable,
            group_commit,
            stopping,
        };
        return node.run(udp).await;
    }
    let (storage, snapshot) = SqliteStorage::open(&cli.db, SqliteOptions { group_commit })?;
    let storage: Arc<dyn Storage> = Arc::new(storage);
    log_opened(&cli.db.display().to_string(), &snapshot, group_commit);
    let server = Server::start(udp, tls, config, storage.clone(), snapshot, cli.advertise).await?;
    serve_http(&cli, server.udp_addr().ip(), &server).await?;
    tracing::info!(udp = %server.udp_addr(), item_ports = ?cli.item_ports, settle_port = server.settle_port(), "auction-server listening");
    let ran = server.run_until(stopping.cancelled_owned()).await;
    let stats = storage.stats();
    ran?;
    tracing::info!(
        commits = stats.commits,
        appends = stats.appends,
        records = stats.records,
        "auction-server stopped; everything acknowledged is in the database"
    );
    Ok(())
}

fn log_opened(db: &str, snapshot: &auction_server::Snapshot, group_commit: bool) {
    let open_items = snapshot
        .items
        .iter()
        .filter(|i| i.closed_at.is_none())
        .count();
    tracing::info!(
        db,
        accounts = snapshot.accounts.iter().filter(|a| !a.removed).count(),
        open_items,
        pending_notices = snapshot.notices.len(),
        group_commit,
        "database opened"
    );
}

/// `--web`: where the live board is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Web {
    Auto,
    Off,
    At(SocketAddr),
}

/// The port `--web auto` tries first.
const WEB_PORT: u16 = 7480;

fn parse_web(s: &str) -> Result<Web, String> {
    match s {
        "auto" => Ok(Web::Auto),
        "off" => Ok(Web::Off),
        _ => s.parse().map(Web::At).map_err(|_| {
            format!("'{s}' is not an address like 127.0.0.1:7480, nor \"auto\" or \"off\"")
        }),
    }
}

/// What serves HTTP: the single server, or a node's host (its own items).
trait Http {
    fn serve_web(&self, listener: TcpListener, with_metrics: bool) -> Result<SocketAddr>;
    fn serve_metrics(&self, listener: TcpListener) -> Result<SocketAddr>;
}

impl Http for Server {
    fn serve_web(&self, listener: TcpListener, with_metrics: bool) -> Result<SocketAddr> {
        Server::serve_web(self, listener, with_metrics)
    }
    fn serve_metrics(&self, listener: TcpListener) -> Result<SocketAddr> {
        Server::serve_metrics(self, listener)
    }
}

impl Http for Host {
    fn serve_web(&self, listener: TcpListener, with_metrics: bool) -> Result<SocketAddr> {
        Host::serve_web(self, listener, with_metrics)
    }
    fn serve_metrics(&self, listener: TcpListener) -> Result<SocketAddr> {
        Host::serve_metrics(self, listener)
    }
}

/// Starts the live board (`--web`) and the metrics (`--metrics`): one server when they share
/// an address. An address given explicitly must be free; `auto` falls back to any free port.
async fn serve_http(cli: &Cli, ip: IpAddr, server: &impl Http) -> Result<()> {
    let web = match cli.web {
        Web::Off => None,
        Web::At(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot serve the board on {addr} (--web)"))?,
        ),
        Web::Auto => Some(match TcpListener::bind((ip, WEB_PORT)).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "port {WEB_PORT} is taken: the board gets a free port");
                TcpListener::bind((ip, 0))
                    .await
                    .with_context(|| format!("cannot serve the board on {ip} (--web)"))?
            }
        }),
    };
    // One server for both when --metrics names the address the board is served on (given, or
    // the one `auto` took).
    let web_addr = web.as_ref().and_then(|l| l.local_addr().ok());
    let shared = match (cli.web, cli.metrics) {
        (Web::At(w), Some(m)) => w == m,
        (Web::Auto, Some(m)) => web_addr == Some(m),
        _ => false,
    };
    if let Some(listener) = web {
        let addr = server.serve_web(listener, shared)?;
        tracing::info!("live board at http://{addr}/");
        if shared {
            tracing::info!("metrics at http://{addr}/metrics");
        }
    }
    if let (Some(addr), false) = (cli.metrics, shared) {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind the metrics address {addr}"))?;
        let addr = server.serve_metrics(listener)?;
        tracing::info!("metrics at http://{addr}/metrics");
    }
    Ok(())
}

/// A node of a cluster on PostgreSQL (`--db postgres://...`): it runs the items given to it
/// from the moment it joins, stands by answering datagrams with the leader's address, and runs
/// the registration plane while it holds the leader lease. A node that steps down (fenced, or
/// cut off from the database) joins again under a new epoch.
struct Node<'a> {
    url: &'a str,
    cli: &'a Cli,
    config: Config,
    tls: TlsIdentity,
    bound: SocketAddr,
    reachable: SocketAddr,
    group_commit: bool,
    stopping: auction_server::CancellationToken,
}

/// How one membership of a node ended.
enum Ended {
    Stopped,
    SteppedDown(String),
}

impl Node<'_> {
    async fn run(self, mut udp: UdpSocket) -> Result<()> {
        let mut rejoining = false;
        loop {
            let ended = match self.membership(udp).await {
                Ok(ended) => ended,
                // A node that stepped down keeps trying to rejoin (the database may be back in
                // a moment); at the first start a failure is reported at once.
                Err(e) if rejoining => Ended::SteppedDown(format!("{e:#}")),
                Err(e) => return Err(e),
            };
            match ended {
                Ended::Stopped => return Ok(()),
                Ended::SteppedDown(why) => {
                    tracing::warn!(error = %why, "stepped down: joining again under a new epoch");
                    tokio::select! {
                        _ = tokio::time::sleep(self.cli.heartbeat) => {}
                        _ = self.stopping.cancelled() => return Ok(()),
                    }
                    // The socket and listeners of the last membership are closed: the same
                    // addresses are free.
                    udp = UdpSocket::bind(self.bound)
                        .await
                        .with_context(|| format!("cannot bind UDP {} again", self.bound))?;
                    rejoining = true;
                }
            }
        }
    }

    /// One membership: join, host the items given to this node, stand by, lead.
    async fn membership(&self, udp: UdpSocket) -> Result<Ended> {
        let options = PostgresOptions {
            node: self.cli.node.clone().unwrap_or_else(host_name),
            udp: self.reachable.to_string(),
            heartbeat: self.cli.heartbeat,
            lease: self.cli.lease,
            group_commit: self.group_commit,
            udp_rate: self.cli.udp_rate,
            udp_burst: self.cli.udp_burst,
        };
        let node = tokio::select! {
            joined = PostgresStorage::join(self.url, options) => Arc::new(joined?),
            _ = self.stopping.cancelled() => return Ok(Ended::Stopped),
        };
        let metrics = Arc::new(auction_server::Metrics::new());
        let host = Host::start(
            node.clone(),
            self.tls.clone(),
            self.config.clone(),
            self.bound.ip(),
            metrics.clone(),
        )
        .await;
        let host = match host {
            Ok(host) => host,
            Err(e) => {
                close(&node).await;
                return Err(e);
            }
        };
        if let Err(e) = serve_http(self.cli, self.bound.ip(), &host).await {
            host.stop().await;
            close(&node).await;
            return Err(e);
        }
        tracing::info!(node = %node.membership().name, udp = %self.bound, "running the items given to this node");
        let led = tokio::select! {
            led = node.lead(&udp) => led,
            _ = self.stopping.cancelled() => {
                host.stop().await;
                close(&node).await;
                return Ok(Ended::Stopped);
            }
        };
        let snapshot = match led {
            Ok(snapshot) => snapshot,
            Err(e) => {
                host.stop().await;
                close(&node).await;
                return Ok(Ended::SteppedDown(format!("{e:#}")));
            }
        };
        log_opened(&postgres::shown(self.url), &snapshot, self.group_commit);
        let server = Server::start_leader(
            udp,
            self.tls.clone(),
            self.config.clone(),
            node.clone(),
            snapshot,
            self.cli.advertise,
            metrics,
        )
        .await;
        let server = match server {
            Ok(server) => server,
            Err(e) => {
                host.stop().await;
                close(&node).await;
                return Err(e);
            }
        };
        tracing::info!(udp = %server.udp_addr(), settle_port = server.settle_port(), leading = true, "auction-server listening");
        let failed = node.failed();
        tokio::select! {
            _ = self.stopping.cancelled() => {}
            _ = failed.cancelled() => {}
        }
        // The items first (what they still say waits for the writer), then the registration
        // plane, which closes the storage.
        host.stop().await;
        let stats = node.stats();
        let ran = server.shutdown().await;
        drop(node);
        match ran {
            Err(e) if !self.stopping.is_cancelled() => Ok(Ended::SteppedDown(format!("{e:#}"))),
            ran => {
                ran?;
                tracing::info!(
                    commits = stats.commits,
                    appends = stats.appends,
                    records = stats.records,
                    "auction-server stopped; everything acknowledged is in the database"
                );
                Ok(Ended::Stopped)
            }
        }
    }
}

/// Closes a node's storage (its writer finishes what is queued, and the node leaves).
async fn close(node: &Arc<PostgresStorage>) {
    let node = node.clone();
    let _ = tokio::task::spawn_blocking(move || node.close()).await;
}

fn load_or_generate_tls(cli: &Cli) -> Result<TlsIdentity> {
    match (cli.cert.exists(), cli.key.exists()) {
        (true, true) => {}
        (false, false) => {
            let dir = cli.cert.parent().filter(|p| !p.as_os_str().is_empty());
            let dir = dir.map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
            if cli.cert != dir.join("server.pem") || cli.key != dir.join("server.key") {
                bail!(
                    "{} and {} do not exist; create them with `auction-server gen-certs --out DIR`",
                    cli.cert.display(),
                    cli.key.display()
                );
            }
            let sans: Vec<String> = certs::DEFAULT_SANS.map(String::from).to_vec();
            certs::generate_dev_certs(&dir, &sans)?;
            tracing::info!(
                dir = %dir.display(),
                "no server certificate found: generated a development CA and server certificate (clients trust {}/ca.pem)",
                dir.display()
            );
        }
        _ => bail!(
            "only one of {} and {} exists; give both, or neither to generate development ones",
            cli.cert.display(),
            cli.key.display()
        ),
    }
    TlsIdentity::load(&cli.cert, &cli.key)
}

/// Every channel connection and item listener is a file descriptor: take the hard limit, not
/// the (often 1024) soft one, and return what the limit now is (the budgets are fitted to it).
fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
            tracing::warn!(error = %e, open_files = soft, "could not raise the open files limit");
            soft
        }
    }
}

/// Resolves at the first SIGTERM or Ctrl-C. The handlers are installed here, at once, not when
/// the future is first polled: a signal that arrives right after "listening" is logged must
/// stop the server gracefully, not kill it.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        )
    };
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("auction-server").chain(args.iter().copied()))
    }

    #[test]
    fn the_increment_table_is_the_default_and_either_flag_replaces_it() {
        assert_eq!(increments(&parse(&[]).unwrap()), Increments::default());
        assert_eq!(
            increments(&parse(&["--min-increment", "0.50"]).unwrap()),
            Increments::fixed(Cents(50))
        );
        assert_eq!(
            increments(&parse(&["--increments", "0:0.10,10:1"]).unwrap()).to_string(),
            "0.00:0.10,10.00:1.00"
        );
        let both = parse(&["--increments", "0:1", "--min-increment", "1"]);
        assert!(both.is_err(), "the two flags conflict");
        let bad = parse(&["--increments", "5:1"]).unwrap_err().to_string();
        assert!(bad.contains("starts at 0"), "{bad}");
    }
}
