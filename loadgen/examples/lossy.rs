//! How long the UDP plane takes to complete requests and deliver notices over a lossy network:
//! for each loss rate, a fresh in-process server behind loadgen's LossyProxy (the given share
//! of datagrams lost each way, 10 % of the rest duplicated, up to 30 ms of delay), clients that
//! register, offer and deregister, and auctions whose WIN the winners must receive. Prints the
//! median and p99 of each, from HdrHistogram.
//!
//!     cargo run --release -p loadgen --example lossy -- --clients 100 --loss 0,0.1,0.3

use auction_client::udp::Retry;
use auction_client::{Client, Identity};
use auction_protocol::udp::ServerBody;
use auction_protocol::Cents;
use auction_server::{Config, Server, SqliteOptions, SqliteStorage, TlsIdentity};
use clap::Parser;
use loadgen::lossy::{Loss, LossyProxy};
use loadgen::stats::Latency;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Clients per loss rate (each registers, then offers or deregisters).
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Loss rates to measure, each way.
    #[arg(long, value_delimiter = ',', default_value = "0,0.1,0.3")]
    loss: Vec<f64>,
    /// Auctions per loss rate whose WIN is timed.
    #[arg(long, default_value_t = 20)]
    auctions: usize,
}

fn ms(l: &Latency) -> String {
    let h = l.snapshot();
    if h.is_empty() {
        return "-".into();
    }
    format!(
        "median {:>7.1} ms, p99 {:>7.1} ms, max {:>7.1} ms ({} done)",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
        h.len()
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "{} clients and {} auctions per loss rate; 10 % duplicates, 0-30 ms delay; client retries: 100 ms doubling to 800 ms, 30 sends",
        args.clients, args.auctions
    );
    for &drop in &args.loss {
        let dir = tempfile::tempdir()?;
        let tls = TlsIdentity::dev(&dir.path().join("certs"))?;
        let (storage, snapshot) =
            SqliteStorage::open(&dir.path().join("auction.db"), SqliteOptions::default())?;
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let config = Config {
            snipe_window: Duration::ZERO,
            max_open_items: args.auctions.max(1),
            // One address registers every simulated person.
            accounts_per_hour: 100_000,
            ..Config::default()
        };
        let server = Server::start(udp, tls, config, Arc::new(storage), snapshot, None).await?;
        let loss = Loss {
            drop,
            duplicate: 0.1,
            max_delay: Duration::from_millis(30),
            seed: 7,
        };
        let proxy = LossyProxy::start(server.udp_addr(), loss).await?;
        let ca = dir.path().join("certs/ca.pem");
        let new_client = || async {
            let mut c = Client::with_identity(proxy.addr, Identity::ephemeral()?, &ca).await?;
            c.udp.retry = Retry {
                first: Duration::from_millis(100),
                max: Duration::from_millis(800),
                tries: 30,
            };
            anyhow::Ok(c)
        };

        let (register, offer, deregister, win) = (
            Arc::new(Latency::default()),
            Arc::new(Latency::default()),
            Arc::new(Latency::default()),
            Arc::new(Latency::default()),
        );
        let mut tasks = Vec::new();
        for i in 0..args.clients {
            let c = new_client().await?;
            let (register, offer, deregister) =
                (register.clone(), offer.clone(), deregister.clone());
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                c.register(&format!("u{i}")).await?;
                register.record(t.elapsed());
                let t = Instant::now();
                if i % 2 == 0 {
                    c.offer("thing", Cents(100), Some(600)).await?;
                    offer.record(t.elapsed());
                } else {
                    c.deregister().await?;
                    deregister.record(t.elapsed());
                }
                anyhow::Ok(())
            }));
        }
        let mut failed = 0;
        for t in tasks {
            if !matches!(t.await, Ok(Ok(()))) {
                failed += 1;
            }
        }

        // WIN delivery: from the auction's end to the winner's application having it.
        let seller = new_client().await?;
        seller.register("house").await?;
        let mut waits = Vec::new();
        for i in 0..args.auctions {
            let bidder = Arc::new(new_client().await?);
            // Set-up over the lossy network can take seconds: 10 s auctions leave room.
            let setup = async {
                bidder.register(&format!("w{i}")).await?;
                let offered = seller
                    .offer(&format!("lot {i}"), Cents(100), Some(10))
                    .await?;
                let mut ch = bidder.open_channel(&offered.channel).await?;
                match ch.bid(Cents(200), None).await? {
                    auction_client::BidResult::Accepted { .. } => Ok(offered),
                    other => Err(anyhow::anyhow!("bid not accepted: {other:?}")),
                }
            };
            let offered = match setup.await {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("auction {i} could not be set up: {e:#}");
                    failed += 1;
                    continue;
                }
            };
            let win = win.clone();
            waits.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        msg = bidder.next_announcement() => match msg {
                            Some(ServerBody::Win { .. }) => {
                                let now = auction_server::unix_ms();
                                win.record(Duration::from_millis(now.saturating_sub(offered.ends_at)));
                                return;
                            }
                            Some(_) => {}
                            None => return,
                        },
                        // The reference client re-attaches every 10 s.
                        _ = tokio::time::sleep(Duration::from_secs(10)) => { let _ = bidder.attach().await; }
                    }
                }
            }));
        }
        for w in waits {
            let _ = tokio::time::timeout(Duration::from_secs(90), w).await;
        }
        let stats = &proxy.stats;
        use std::sync::atomic::Ordering::Relaxed;
        println!(
            "\nloss {:.0} % each way ({} datagrams, {} lost, {} duplicated){}",
            drop * 100.0,
            stats.seen.load(Relaxed),
            stats.dropped.load(Relaxed),
            stats.duplicated.load(Relaxed),
            if failed > 0 {
                format!("; {failed} clients FAILED")
            } else {
                String::new()
            }
        );
        println!("  register (cookie round trip included)  {}", ms(&register));
        println!("  offer                                  {}", ms(&offer));
        println!(
            "  deregister                             {}",
            ms(&deregister)
        );
        println!("  WIN delivered after the auction's end  {}", ms(&win));
        drop_server(server).await;
    }
    Ok(())
}

async fn drop_server(server: Server) {
    let _ = server.shutdown().await;
}
