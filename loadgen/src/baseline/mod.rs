//! The physical limits to compare against: a bare TLS 1.3 server inside loadgen, driven like
//! the auction. `loadgen baseline` echoes each line to its sender; `loadgen baseline
//! --fan-out` relays it too, to every other connection of the same listener (`relay.rs`), as
//! the auction tells every bidder on an item about a new highest bid.
//!
//! Same shape as an auction run: one listener per item, each bidder holds a mutual-TLS
//! connection (Ed25519 client certificate, handshake signature checked) to each of its items,
//! the server speaks first with one line, and each bidder sends bid-sized lines round-robin
//! over its connections, closed loop or open loop (`--rate`) under the auction run's rate
//! policy, waiting for the answer before its next line. No storage, no bidding rules, no
//! JSON parsing in the server: what is left is TCP, TLS, the line framing and (relay) the
//! copies, so the auction's throughput and latency can be stated as a fraction of what TLS on
//! this machine does at all.
//!
//! The phases, each in its own file: `server.rs` (the server, in this process or a child),
//! then here the connections, `driver.rs` (one task per bidder) and the report. The task
//! calling [`run`] owns the server and the phases; the bidder tasks own their connections.

mod driver;
mod relay;
mod server;

pub use driver::Share;
pub use server::{serve_echo_until_stdin_closes, Mode};

use self::driver::{Conn, Driver, Shared};
use crate::pace::Pace;
use crate::plan;
use crate::report::{Counts, Machine, Report, RunFigures, Subject};
use crate::stats::{new_histogram, Latency, PerSecond, Tally};
use anyhow::Result;
use auction_client::Identity;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub struct Options {
    pub bidders: usize,
    pub items: usize,
    pub items_per_bidder: Option<usize>,
    pub duration: Duration,
    /// Open loop at this many lines per second in all; `None` = closed loop.
    pub rate: Option<f64>,
    /// The relay (each line also to every other connection of its item) instead of the echo.
    pub fan_out: bool,
    pub progress: bool,
    pub seed: u64,
    /// Run the server as a child process of this executable (`loadgen echo-server`), as
    /// the auction server is a process of its own; `None` runs it in this process (on its own
    /// runtime). A child also has its own open-files limit: 10,000 connections need 20,000
    /// descriptors when both ends live in one process.
    pub echo_exe: Option<std::path::PathBuf>,
}

pub struct Outcome {
    pub report: Report,
    pub round_trip: Histogram<u64>,
    /// What each connection sent and read (a relay's copies), in bidder order.
    pub shares: Vec<Share>,
}

pub async fn run(opts: Options) -> Result<Outcome> {
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let layout = plan::Layout::new(opts.bidders, opts.items, opts.items_per_bidder);
    let mode = if opts.fan_out {
        Mode::Relay
    } else {
        Mode::Echo
    };

    // The server, and a client config per bidder trusting its certificate.
    let server = server::Server::start(opts.echo_exe.as_deref(), opts.items, mode)?;
    let (addrs, server_chain) = (server.addrs().to_vec(), vec![server.cert().clone()]);
    let errors = Tally::default();
    let connect = Arc::new(Latency::default());
    let mut connectors = Vec::new();
    for _ in 0..opts.bidders {
        let identity = Identity::ephemeral()?;
        let (chain, key) = identity.tls_credentials();
        connectors.push(auction_client::channel::connector(
            &server_chain,
            chain,
            key,
        )?);
    }

    // Connections, as many at once as the auction run opens.
    let pairs: Vec<(usize, usize)> = layout
        .assignment
        .iter()
        .enumerate()
        .flat_map(|(b, joined)| joined.iter().map(move |&i| (b, i)))
        .collect();
    let opened: Vec<(usize, Result<Conn>)> = futures_util::stream::iter(pairs)
        .map(|(b, i)| {
            let connector = connectors[b].clone();
            let addr = addrs[i];
            let connect = connect.clone();
            async move {
                let t = Instant::now();
                let r = Conn::open(&connector, addr, i).await;
                if r.is_ok() {
                    connect.record(t.elapsed());
                }
                (b, r)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut per_bidder: Vec<Vec<Conn>> = (0..opts.bidders).map(|_| Vec::new()).collect();
    let mut per_item = vec![0; opts.items];
    for (b, r) in opened {
        match r {
            Ok(c) => {
                per_item[c.item()] += 1;
                per_bidder[b].push(c);
            }
            Err(e) => {
                tracing::warn!(error = %e, "baseline connection failed");
                errors.add("connect");
            }
        }
    }

    // The measured phase.
    let start = Instant::now();
    let stop = start + opts.duration;
    let bidding = per_bidder.iter().filter(|c| !c.is_empty()).count();
    let shared = Arc::new(Shared {
        round_trip: Latency::default(),
        fan_out: Latency::default(),
        send_lag: Latency::default(),
        sent: AtomicU64::new(0),
        answered: AtomicU64::new(0),
        unanswered: AtomicU64::new(0),
        relay_due: AtomicU64::new(0),
        relayed: AtomicU64::new(0),
        errors,
        per_second: PerSecond::new(opts.duration.as_secs() as usize + 1),
        sending: AtomicUsize::new(bidding),
        start,
        per_item,
        fan_out_mode: opts.fan_out,
        prefix: format!("lgbase{:06x}", opts.seed & 0xff_ffff),
    });
    let done = Arc::new(AtomicBool::new(false));
    let progress = opts.progress.then(|| {
        let shared = shared.clone();
        tokio::spawn(crate::progress::line(
            start,
            opts.duration,
            done.clone(),
            move || {
                (
                    shared.answered.load(Ordering::Relaxed),
                    shared.round_trip.p99(),
                    shared.errors.total(),
                )
            },
        ))
    });
    let pace = Pace::new(opts.rate, opts.bidders);
    let cpu_span = crate::cpu::Span::start(server.cpu_seconds());
    let mut tasks = Vec::new();
    for (b, conns) in per_bidder.into_iter().enumerate() {
        if conns.is_empty() {
            continue;
        }
        let driver = Driver::new(b, conns, shared.clone());
        tasks.push(tokio::spawn(driver.run(stop, pace)));
    }
    let mut stopped = start;
    let mut shares = Vec::new();
    for t in tasks {
        match t.await {
            Ok((at, mut s)) => {
                stopped = stopped.max(at);
                shares.append(&mut s);
            }
            Err(e) => {
                shared.errors.add("bidder-task-failed");
                tracing::error!(error = %e, "a baseline bidder task failed");
            }
        }
    }
    // The CPU spent until every copy read was read: the counts include those copies.
    let mut cpu = cpu_span.finish(server.cpu_seconds());
    if server.in_process() {
        // loadgen's own CPU includes the server's here: no honest figure for either.
        cpu.loadgen = None;
    }
    // Bidding ended when the last bidder stopped sending; reading the copies still on
    // their way afterwards is not part of the measured phase.
    let elapsed = stopped.duration_since(start);
    done.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.await;
    }
    drop(server);

    let s = &shared;
    let counts = Counts {
        sent: s.sent.load(Ordering::Relaxed),
        answered: s.answered.load(Ordering::Relaxed),
        unanswered: s.unanswered.load(Ordering::Relaxed),
        errors: s.errors.snapshot(),
        relay_due: s.relay_due.load(Ordering::Relaxed),
        relayed: s.relayed.load(Ordering::Relaxed),
        ..Counts::default()
    };
    let figures = RunFigures {
        subject: if opts.fan_out {
            Subject::Relay
        } else {
            Subject::Echo
        },
        started_at,
        server: None,
        bidders: opts.bidders,
        items: opts.items,
        items_per_bidder: layout.per_bidder,
        duration: opts.duration,
        rate: opts.rate,
        seed: opts.seed,
        machine: Machine::this(),
        spread: layout.spread(),
        elapsed,
        counts,
        per_second: s.per_second.values(elapsed.as_secs_f64().ceil() as usize),
        round_trip: s.round_trip.snapshot(),
        fan_out: s.fan_out.snapshot(),
        send_lag: s.send_lag.snapshot(),
        tls_connect: connect.snapshot(),
        udp_register: new_histogram(),
        verify: None,
        server_figures: None,
        cpu,
        notes: vec![],
    };
    Ok(Outcome {
        report: Report::of(&figures),
        round_trip: figures.round_trip,
        shares,
    })
}
