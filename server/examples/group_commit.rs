//! What group commit buys: durable bids per second with the storage writer committing
//! everything waiting in one transaction, against one transaction (one fsync) per change.
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
use auction_server::{Config, Server, SqliteOptions, SqliteStorage, Storage, TlsIdentity};
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
}

struct RunResult {
    bids_per_sec: f64,
    answered_per_sec: f64,
    commits: u64,
    appends: u64,
}

async fn run(args: &Args, group_commit: bool, dir: &Path) -> anyhow::Result<RunResult> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let tls = TlsIdentity::dev(&dir.join("certs"))?;
    let (storage, snapshot) =
        SqliteStorage::open(&dir.join("auction.db"), SqliteOptions { group_commit })?;
    let storage = Arc::new(storage);
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let config = Config {
        max_open_items: args.items,
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
    let mut grouped = Vec::new();
    let mut single = Vec::new();
    println!(
        "{} bidders on {} items, closed loop, {} s per run, {} runs per mode, databases in {}",
        args.bidders,
        args.items,
        args.secs,
        args.runs,
        args.dir.display()
    );
    println!(
        "{:<16} {:>4} {:>11} {:>11} {:>9} {:>15}",
        "mode", "run", "accepted/s", "answered/s", "commits", "changes/commit"
    );
    for r in 0..args.runs {
        for group in [true, false] {
            let mode = if group {
                "group commit"
            } else {
                "one per change"
            };
            let res = run(
                &args,
                group,
                &args.dir.join(if group { "group" } else { "single" }),
            )
            .await?;
            println!(
                "{mode:<16} {:>4} {:>11.0} {:>11.0} {:>9} {:>15.1}",
                r + 1,
                res.bids_per_sec,
                res.answered_per_sec,
                res.commits,
                res.appends as f64 / res.commits.max(1) as f64
            );
            if group {
                grouped.push(res.bids_per_sec);
            } else {
                single.push(res.bids_per_sec);
            }
        }
    }
    let (g, s) = (median(grouped), median(single));
    println!(
        "median accepted (durable) bids/s: group commit {g:.0}, one commit per change {s:.0}, ratio {:.1}x",
        g / s
    );
    Ok(())
}
