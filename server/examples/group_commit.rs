//! What group commit buys: durable bids per second with the storage writer committing
//! everything waiting in one transaction, against one transaction (one fsync) per change.
//!
//! With `--postgres URL` it measures PostgreSQL with group commit too (one node; the database
//! must be a throwaway one: it is emptied before each run), e.g. on `scripts/postgres.sh start`.
//!
//! Each run starts a server in this process on a fresh SQLite database on disk, registers
//! bidders over UDP, opens their TLS channels and has every bidder bid in a closed loop (next
//! bid after the answer to the last) for a fixed time. Only BID-ACCEPTED answers count, and the
//! server sends those only once the bid is committed. The two modes alternate, several runs
//! each, and the medians and their ratio are printed.
//!
//!     cargo run --release -p auction-server --example group_commit -- --bidders 32 --runs 3
//!
//! `loadgen` (a later issue) is the full load generator; this is the one measurement the
//! storage needs.

use auction_client::{BidResult, Client};
use auction_protocol::Cents;
use auction_server::{
    postgres, Config, PostgresOptions, PostgresStorage, Server, SqliteOptions, SqliteStorage,
    Storage, TlsIdentity,
};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Simulated bidders, each on its own TLS channel.
    #[arg(long, default_value_t = 32)]
    bidders: usize,
    /// Items they spread over.
    #[arg(long, default_value_t = 4)]
    items: usize,
    /// Seconds of bidding per run.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Runs per mode.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where the databases go (must be a real disk for fsync to mean anything).
    #[arg(long, default_value = "target/group-commit-bench")]
    dir: PathBuf,
    /// Also measure PostgreSQL with group commit on this database, emptied before each run.
    #[arg(long)]
    postgres: Option<String>,
}

/// Where a run stores.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    SqliteGroup,
    SqliteSingle,
    PostgresGroup,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::SqliteGroup => "SQLite, group commit",
            Mode::SqliteSingle => "SQLite, one per change",
            Mode::PostgresGroup => "PostgreSQL, group commit",
        }
    }
}

struct RunResult {
    bids_per_sec: f64,
    answered_per_sec: f64,
    commits: u64,
    appends: u64,
}

async fn run(args: &Args, mode: Mode, dir: &Path) -> anyhow::Result<RunResult> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let tls = TlsIdentity::dev(&dir.join("certs"))?;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let (storage, snapshot): (Arc<dyn Storage>, _) = match (mode, &args.postgres) {
        (Mode::PostgresGroup, Some(url)) => {
            let client = postgres::connect(url).await?;
            client
                .batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
                .await?;
            let options = PostgresOptions {
                node: "bench".into(),
                udp: udp.local_addr()?.to_string(),
                heartbeat: Duration::from_secs(1),
                lease: Duration::from_secs(3),
                group_commit: true,
                udp_rate: 1000.0,
                udp_burst: 2000.0,
            };
            let (storage, snapshot) = PostgresStorage::open(url, options, &udp).await?;
            (Arc::new(storage), snapshot)
        }
        _ => {
            let group_commit = mode == Mode::SqliteGroup;
            let (storage, snapshot) =
                SqliteStorage::open(&dir.join("auction.db"), SqliteOptions { group_commit })?;
            (Arc::new(storage), snapshot)
        }
    };
    let config = Config {
        max_open_items: args.items,
        // One host plays every bidder, flat out: the budgets meant for strangers would
        // measure the rate limiter instead of the storage.
        bid_rate: 1e9,
        bid_burst: 1e9,
        accounts_per_hour: 1_000_000,
        ..Config::default()
    };
    let server = Server::start(udp, tls, config, storage.clone(), snapshot, None).await?;
    let addr = server.udp_addr();
    let ca = dir.join("certs/ca.pem");

    let seller = Client::new(addr, &dir.join("homes/seller"), &ca).await?;
    seller.register("seller").await?;
    let mut items = Vec::new();
    for i in 0..args.items {
        items.push(
            seller
                .offer(&format!("item {i}"), Cents(100), Some(3600))
                .await?
                .item,
        );
    }
    let mut channels = Vec::new();
    for b in 0..args.bidders {
        let name = format!("b{b}");
        let c = Client::new(addr, &dir.join("homes").join(&name), &ca).await?;
        c.register(&name).await?;
        channels.push(c.open_item(items[b % items.len()]).await?);
    }

    let before = storage.stats();
    let accepted = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (b, mut ch) in channels.into_iter().enumerate() {
        let accepted = accepted.clone();
        let answered = answered.clone();
        tasks.push(tokio::spawn(async move {
            let mut next = ch.next_min;
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let result = ch.bid(next, Some(format!("{b}-{n}"))).await;
                if result.is_ok() {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                match result {
                    Ok(BidResult::Accepted { amount, .. }) => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        next = Cents(amount.0 + 1);
                    }
                    Ok(BidResult::Rejected { next_min, .. }) => next = next_min,
                    Err(e) => {
                        eprintln!("bidder {b}: {e}");
                        return;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = storage.stats();
    server.shutdown().await?;
    Ok(RunResult {
        bids_per_sec: accepted.load(Ordering::Relaxed) as f64 / elapsed,
        answered_per_sec: answered.load(Ordering::Relaxed) as f64 / elapsed,
        commits: after.commits - before.commits,
        appends: after.appends - before.appends,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut modes = vec![Mode::SqliteGroup, Mode::SqliteSingle];
    if args.postgres.is_some() {
        modes.push(Mode::PostgresGroup);
    }
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    println!(
        "{} bidders on {} items, closed loop, {} s per run, {} runs per mode, databases in {}",
        args.bidders,
        args.items,
        args.secs,
        args.runs,
        args.dir.display()
    );
    println!(
        "{:<26} {:>4} {:>11} {:>11} {:>9} {:>15}",
        "mode", "run", "accepted/s", "answered/s", "commits", "changes/commit"
    );
    for r in 0..args.runs {
        for (m, &mode) in modes.iter().enumerate() {
            let res = run(&args, mode, &args.dir.join(format!("mode{m}"))).await?;
            println!(
                "{:<26} {:>4} {:>11.0} {:>11.0} {:>9} {:>15.1}",
                mode.name(),
                r + 1,
                res.bids_per_sec,
                res.answered_per_sec,
                res.commits,
                res.appends as f64 / res.commits.max(1) as f64
            );
            results[m].push(res.bids_per_sec);
        }
    }
    let medians: Vec<f64> = results.into_iter().map(median).collect();
    for (mode, m) in modes.iter().zip(&medians) {
        println!(
            "median accepted (durable) bids/s, {}: {m:.0} ({:.2}x SQLite group commit)",
            mode.name(),
            m / medians[0]
        );
    }
    Ok(())
}
