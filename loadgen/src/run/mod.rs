//! A load run against an auction server, through the client library: register sellers and
//! bidders over UDP, offer the items, open every bidder's mutual-TLS channels, bid for the
//! measured phase (closed or open loop), then optionally wait for the auctions to close and
//! check their results against what the bidders saw.

mod bidder;
mod verify;

use self::bidder::Bidder;
use self::verify::verify;
use crate::plan;
use crate::report::{Counts, Latencies, Machine, Report, RunConfigReport, Throughput};
use crate::scrape::{self, Scrape, ServerFigures};
use crate::stats::{Latency, PerSecond, Summary, Tally};
use auction_client::{Client, ClientError, Identity, ItemChannel};
use auction_protocol::udp::ServerBody;
use auction_protocol::{Cents, Reason};
use futures_util::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Registrations and channel set-ups in flight at once.
const SETUP_CONCURRENCY: usize = 64;
/// The first bid an item accepts.
const ITEM_MIN: Cents = Cents(1000);

#[derive(Debug, Clone)]
pub struct Options {
    pub server: SocketAddr,
    pub ca: PathBuf,
    pub bidders: usize,
    pub items: usize,
    pub items_per_bidder: Option<usize>,
    pub duration: Duration,
    /// Open loop at this many bids per second in all; `None` = closed loop.
    pub rate: Option<f64>,
    pub verify: bool,
    pub seed: u64,
    /// How long the offered auctions run; default: long enough for set-up and the run.
    pub item_duration: Option<Duration>,
    pub progress: bool,
    pub metrics_url: Option<String>,
    /// Extra clients that join every item and then stop reading (slow-reader experiments);
    /// they are not bidders and are not measured.
    pub stalled: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The server does not answer at all (exit code 3).
    #[error("cannot reach the auction server at {server}: {reason}")]
    Unreachable { server: SocketAddr, reason: String },
    /// Anything else that stops the run before it can report (exit code 1).
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

pub struct Outcome {
    pub report: Report,
    /// The bid round-trip histogram, for `--hgrm`.
    pub round_trip: Histogram<u64>,
}

#[derive(Default)]
struct Stats {
    round_trip: Latency,
    fan_out: Latency,
    connect: Latency,
    register: Latency,
    sent: AtomicU64,
    answered: AtomicU64,
    accepted: AtomicU64,
    low: AtomicU64,
    unanswered: AtomicU64,
    rejected: Tally,
    errors: Tally,
}

/// What loadgen knows about one item.
struct ItemShared {
    id: u64,
    /// Bids sent, by (amount, bidder), with their send time: a HIGHEST another bidder reads
    /// is matched to its bid here. Rejected bids are removed; the rest age out.
    sent: Mutex<SentBids>,
    ledger: Mutex<Ledger>,
}

struct SentBids {
    at: HashMap<(u64, u32), Instant>,
    pruned: Instant,
}

#[derive(Default)]
struct Ledger {
    /// Highest accepted amount and its bidder.
    best: Option<(Cents, usize)>,
    amounts: HashSet<u64>,
    /// Amounts that were accepted twice (must stay empty).
    twice: Vec<u64>,
    accepted: u64,
    /// Latest end time the server announced (OFFER-CONF, BID-ACCEPTED), Unix ms.
    ends_at: u64,
}

struct Shared {
    stats: Stats,
    items: Vec<ItemShared>,
    prefix: String,
    /// Answers per second of the measured phase.
    per_second: PerSecond,
    /// Results announced over UDP: item -> (SOLD / NOT-SOLD to the seller, WIN to a bidder).
    notices: Mutex<HashMap<u64, NoticesSeen>>,
}

#[derive(Default, Debug, Clone)]
struct NoticesSeen {
    sold: Option<(String, Cents)>,
    not_sold: bool,
    win: Option<(String, Cents)>,
}

fn bidder_name(prefix: &str, b: usize) -> String {
    format!("{prefix}-b{b}")
}

/// The bidder index in a name this run made, if it is one.
fn bidder_index(prefix: &str, name: &str) -> Option<usize> {
    name.strip_prefix(prefix)?.strip_prefix("-b")?.parse().ok()
}

/// Unix time in milliseconds, the protocol's unit for `ends_at`.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn error_kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::Denied { .. } => "refused",
        ClientError::Timeout { .. } => "timeout",
        ClientError::Io(_) => "io",
        ClientError::Tls(_) => "tls",
        ClientError::Protocol(_) => "protocol",
        ClientError::Local(_) => "local",
    }
}

pub async fn run(opts: Options) -> Result<Outcome, RunError> {
    let started_at = unix_ms() / 1000;
    let mut rng = StdRng::seed_from_u64(opts.seed);
    // Names unique to this run, so runs against the same server do not collide.
    let prefix = format!("lg{:06x}", rand::random::<u32>() & 0xff_ffff);
    let layout = plan::Layout::new(opts.bidders, opts.items, opts.items_per_bidder);
    let (k, assignment, per_item, channels) = (
        layout.per_bidder,
        &layout.assignment,
        &layout.per_item,
        layout.channels,
    );
    let mut notes = Vec::new();
    if per_item.iter().any(|&n| n < 2) {
        notes.push(format!(
            "some items have fewer than two bidders ({}-{} per item): no competition there",
            per_item.iter().min().unwrap_or(&0),
            per_item.iter().max().unwrap_or(&0)
        ));
    }

    // --- registration (sellers first: the first answer tells whether the server is there)
    let stats = Stats::default();
    let first_seller = new_client(&opts).await?;
    let t = Instant::now();
    match first_seller.register(&format!("{prefix}-s0")).await {
        Ok(()) => stats.register.record(t.elapsed()),
        Err(e @ (ClientError::Timeout { .. } | ClientError::Io(_))) => {
            return Err(RunError::Unreachable {
                server: opts.server,
                reason: e.to_string(),
            })
        }
        Err(e) => {
            return Err(RunError::Failed(anyhow::anyhow!(
                "the server refused loadgen's seller: {e}"
            )))
        }
    }
    let mut sellers = vec![Arc::new(first_seller)];

    let bidder_clients: Vec<Option<Arc<Client>>> = {
        let results: Vec<(usize, Result<Client, ClientError>, Duration)> =
            stream::iter(0..opts.bidders)
                .map(|b| {
                    let opts = &opts;
                    let name = bidder_name(&prefix, b);
                    async move {
                        let client = match new_client(opts).await {
                            Ok(c) => c,
                            Err(e) => {
                                return (b, Err(ClientError::Local(e.to_string())), Duration::ZERO)
                            }
                        };
                        let t = Instant::now();
                        let r = client.register(&name).await.map(|()| client);
                        (b, r, t.elapsed())
                    }
                })
                .buffer_unordered(SETUP_CONCURRENCY)
                .collect()
                .await;
        let mut clients: Vec<Option<Arc<Client>>> = (0..opts.bidders).map(|_| None).collect();
        for (b, r, took) in results {
            match r {
                Ok(c) => {
                    stats.register.record(took);
                    clients[b] = Some(Arc::new(c));
                }
                Err(e) => {
                    tracing::warn!(bidder = b, error = %e, "registration failed");
                    stats.errors.add(format!("register-{}", error_kind(&e)));
                }
            }
        }
        clients
    };

    tracing::info!(
        registered = bidder_clients.iter().flatten().count(),
        "bidders registered"
    );
    // --- items: long enough for the channel set-up and the run, unless told otherwise
    let item_duration = opts.item_duration.unwrap_or_else(|| {
        Duration::from_secs(10) + opts.duration + Duration::from_millis(2 * channels as u64)
    });
    let mut offered = Vec::new();
    for i in 0..opts.items {
        loop {
            let seller = sellers.last().expect("one seller at least").clone();
            match seller
                .offer(
                    &format!("loadgen {prefix} item {i}"),
                    ITEM_MIN,
                    Some(item_duration.as_secs().max(1)),
                )
                .await
            {
                Ok(o) => {
                    offered.push((o, sellers.len() - 1));
                    break;
                }
                Err(ClientError::Denied {
                    reason: Reason::TooManyOpenItems,
                    ..
                }) => {
                    // The server's per-seller limit: carry on with another seller.
                    let s = new_client(&opts).await?;
                    let t = Instant::now();
                    s.register(&format!("{prefix}-s{}", sellers.len()))
                        .await
                        .map_err(|e| {
                            RunError::Failed(anyhow::anyhow!("registering a seller: {e}"))
                        })?;
                    stats.register.record(t.elapsed());
                    sellers.push(Arc::new(s));
                }
                Err(e) => return Err(RunError::Failed(anyhow::anyhow!("offering item {i}: {e}"))),
            }
        }
    }
    let items: Vec<ItemShared> = offered
        .iter()
        .map(|(o, _)| ItemShared {
            id: o.item,
            sent: Mutex::new(SentBids {
                at: HashMap::new(),
                pruned: Instant::now(),
            }),
            ledger: Mutex::new(Ledger {
                ends_at: o.ends_at,
                ..Ledger::default()
            }),
        })
        .collect();
    let earliest_end = offered.iter().map(|(o, _)| o.ends_at).min().unwrap_or(0);
    let shared = Arc::new(Shared {
        stats,
        items,
        prefix: prefix.clone(),
        per_second: PerSecond::new(opts.duration.as_secs() as usize + 1),
        notices: Mutex::new(HashMap::new()),
    });

    // Every client reads its announcements (acknowledging WIN / SOLD / NOT-SOLD).
    let mut drains = Vec::new();
    for client in sellers.iter().chain(bidder_clients.iter().flatten()) {
        drains.push(tokio::spawn(drain_announcements(
            client.clone(),
            shared.clone(),
        )));
    }

    let scrape_before = scrape_opt(&opts, &shared).await;

    // --- channels
    let pairs: Vec<(usize, usize)> = assignment
        .iter()
        .enumerate()
        .filter(|(b, _)| bidder_clients[*b].is_some())
        .flat_map(|(b, joined)| joined.iter().map(move |&i| (b, i)))
        .collect();
    let opened: Vec<(usize, usize, Result<ItemChannel, ClientError>)> = stream::iter(pairs)
        .map(|(b, i)| {
            let client = bidder_clients[b].clone().expect("filtered above");
            let channel = offered[i].0.channel.clone();
            let shared = &shared;
            async move {
                let t = Instant::now();
                let r = client.open_channel(&channel).await;
                if r.is_ok() {
                    shared.stats.connect.record(t.elapsed());
                }
                (b, i, r)
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    let mut per_bidder: Vec<Vec<(usize, ItemChannel)>> =
        (0..opts.bidders).map(|_| Vec::new()).collect();
    for (b, i, r) in opened {
        match r {
            Ok(ch) => per_bidder[b].push((i, ch)),
            Err(e) => {
                tracing::warn!(bidder = b, item = i, error = %e, "could not open a channel");
                shared
                    .stats
                    .errors
                    .add(format!("connect-{}", error_kind(&e)));
            }
        }
    }
    tracing::info!(
        channels = per_bidder.iter().map(Vec::len).sum::<usize>(),
        "channels open"
    );
    // Clients that join every item and stop reading: their channels' readers take up to
    // 1024 messages and then stop, so the server sees a full socket from then on.
    let mut stalled = Vec::new();
    for s in 0..opts.stalled {
        let client = new_client(&opts).await?;
        if let Err(e) = client.register(&format!("{prefix}-x{s}")).await {
            shared
                .stats
                .errors
                .add(format!("stalled-register-{}", error_kind(&e)));
            continue;
        }
        for (o, _) in &offered {
            match client.open_channel(&o.channel).await {
                Ok(ch) => stalled.push(ch),
                Err(e) => shared
                    .stats
                    .errors
                    .add(format!("stalled-connect-{}", error_kind(&e))),
            }
        }
    }
    if opts.stalled > 0 {
        notes.push(format!(
            "{} stalled clients joined every item and stopped reading ({} channels)",
            opts.stalled,
            stalled.len()
        ));
    }
    let scrape_with = scrape_opt(&opts, &shared).await;

    // --- the measured phase
    let start = Instant::now();
    let mut stop = start + opts.duration;
    // Stop a second before the first auction ends, should the set-up have eaten the margin.
    let ms_left = earliest_end.saturating_sub(unix_ms());
    let end_guard = start + Duration::from_millis(ms_left.saturating_sub(1000));
    if end_guard < stop {
        notes.push(format!(
            "the run was cut to {:.1} s because the auctions end then (set-up took long); pass --item-duration",
            end_guard.duration_since(start).as_secs_f64()
        ));
        stop = end_guard;
    }
    let interval = opts
        .rate
        .map(|r| Duration::from_secs_f64(opts.bidders as f64 / r.max(0.001)));
    let done = Arc::new(AtomicBool::new(false));
    let progress = opts.progress.then(|| {
        let shared = shared.clone();
        tokio::spawn(crate::progress::line(
            start,
            opts.duration,
            done.clone(),
            move || {
                let s = &shared.stats;
                (
                    s.answered.load(Ordering::Relaxed),
                    s.round_trip.p99(),
                    s.errors.total() + s.unanswered.load(Ordering::Relaxed),
                )
            },
        ))
    });
    let mut tasks = Vec::new();
    for (b, chans) in per_bidder.into_iter().enumerate() {
        if chans.is_empty() {
            continue;
        }
        let offset = match (interval, opts.rate) {
            (Some(_), Some(rate)) => Duration::from_secs_f64(b as f64 / rate.max(0.001)),
            _ => Duration::ZERO,
        };
        let bidder = Bidder::new(b, chans, shared.clone(), rng.random(), start);
        tasks.push(tokio::spawn(bidder.run(stop, interval, offset)));
    }
    for t in tasks {
        if let Err(e) = t.await {
            shared.stats.errors.add("bidder-task-failed");
            tracing::error!(error = %e, "a bidder task failed");
        }
    }
    let elapsed = start.elapsed();
    tracing::info!(elapsed = ?elapsed, "bidding done");
    drop(stalled);
    done.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.await;
    }
    let scrape_after = scrape_opt(&opts, &shared).await;

    // --- verification
    let verify = if opts.verify {
        Some(verify(&shared, &sellers[0], &scrape_with, &scrape_after).await)
    } else {
        None
    };
    for d in drains {
        d.abort();
    }

    let s = &shared.stats;
    let answered = s.answered.load(Ordering::Relaxed);
    let accepted = s.accepted.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64().max(1e-9);
    let round_trip = s.round_trip.snapshot();
    let server = match (
        &opts.metrics_url,
        &scrape_before,
        &scrape_with,
        &scrape_after,
    ) {
        (Some(url), Some(a), Some(b), Some(c)) => {
            Some(ServerFigures::from_scrapes(url, a, b, c, channels))
        }
        _ => None,
    };
    let report = Report {
        schema: crate::report::SCHEMA.into(),
        kind: "auction".into(),
        started_at,
        config: RunConfigReport {
            server: Some(opts.server.to_string()),
            bidders: opts.bidders,
            items: opts.items,
            items_per_bidder: k,
            duration_s: opts.duration.as_secs_f64(),
            mode: if opts.rate.is_some() {
                "open"
            } else {
                "closed"
            }
            .into(),
            target_rate: opts.rate,
            seed: opts.seed,
            verify: opts.verify,
        },
        machine: Machine::this(),
        spread: layout.spread(),
        elapsed_s: (secs * 1000.0).round() / 1000.0,
        counts: Counts {
            sent: s.sent.load(Ordering::Relaxed),
            answered,
            accepted,
            rejected: s.rejected.snapshot(),
            deliberately_low: s.low.load(Ordering::Relaxed),
            unanswered: s.unanswered.load(Ordering::Relaxed),
            errors: s.errors.snapshot(),
        },
        throughput: Throughput {
            answered_per_s: (answered as f64 / secs).round(),
            accepted_per_s: (accepted as f64 / secs).round(),
            target_rate: opts.rate,
            achieved_fraction: opts
                .rate
                .map(|r| ((answered as f64 / secs) / r * 1000.0).round() / 1000.0),
            per_second: shared
                .per_second
                .values(elapsed.as_secs_f64().ceil() as usize),
        },
        latency_us: Latencies {
            bid_round_trip: Summary::of(&round_trip),
            fan_out: Summary::of(&s.fan_out.snapshot()),
            tls_connect: Summary::of(&s.connect.snapshot()),
            udp_register: Summary::of(&s.register.snapshot()),
        },
        verify,
        server,
        notes,
    };
    Ok(Outcome { report, round_trip })
}

async fn new_client(opts: &Options) -> Result<Client, RunError> {
    let identity = Identity::ephemeral().map_err(RunError::Failed)?;
    Client::with_identity(opts.server, identity, &opts.ca)
        .await
        .map_err(|e| RunError::Failed(e.into()))
}

async fn scrape_opt(opts: &Options, shared: &Shared) -> Option<Scrape> {
    let url = opts.metrics_url.as_ref()?;
    match scrape::fetch(url).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(url, error = %e, "could not read the server's metrics");
            shared.stats.errors.add("metrics-scrape");
            None
        }
    }
}

async fn drain_announcements(client: Arc<Client>, shared: Arc<Shared>) {
    let me = client.name().unwrap_or_default();
    while let Some(msg) = client.next_announcement().await {
        let mut notices = shared.notices.lock().unwrap_or_else(|p| p.into_inner());
        match msg {
            ServerBody::Sold {
                item,
                amount,
                winner,
                ..
            } => notices.entry(item).or_default().sold = Some((winner, amount)),
            ServerBody::NotSold { item, .. } => notices.entry(item).or_default().not_sold = true,
            ServerBody::Win { item, amount, .. } => {
                notices.entry(item).or_default().win = Some((me.clone(), amount))
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidder_names_round_trip() {
        assert_eq!(
            bidder_index("lgabc123", &bidder_name("lgabc123", 42)),
            Some(42)
        );
        assert_eq!(bidder_index("lgabc123", "lgabc123-s0"), None);
        assert_eq!(bidder_index("lgabc123", "alice"), None);
        assert_eq!(bidder_index("lgabc123", "lgabc123-bx"), None);
    }
}
