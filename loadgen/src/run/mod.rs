//! A load run against an auction server, through the client library. [`run`] is the whole
//! run as a sequence of phases, each in its own file:
//! - `setup.rs`: register sellers and bidders over UDP, offer the items, open every bidder's
//!   mutual-TLS channels (and the stalled clients' ones);
//! - `measure.rs`: the measured phase, one rate policy (closed or open loop) and one stop
//!   condition for every bidder task; `bidder.rs` is one bidder's loop;
//! - `verify.rs`: optionally, wait for the auctions to close and check their results against
//!   what the bidders saw;
//! - `cleanup.rs`: unless `--keep`, deregister every account the run made (once its items
//!   have ended), so the server is left with nothing of the run but the items' history.
//!
//! Then `run` collects what it found as plain figures and `report.rs` builds the report.
//!
//! Who owns what: the task calling `run` owns the clients, the offers and the phases; the
//! bidder tasks own their channels; the announcement readers own nothing but write the notices
//! they see. What they all record goes into `Shared`: atomics, histograms and per-item
//! ledgers behind short `std` mutexes, never held across an `.await`.

mod bidder;
mod cleanup;
mod measure;
mod setup;
mod verify;

use self::verify::verify;
use crate::plan;
use crate::report::{Counts, Machine, Report, RunFigures, Subject};
use crate::scrape::{self, Scrape, ServerFigures};
use crate::stats::{Latency, PerSecond, Tally};
use auction_client::{ClientError, Offered};
use auction_protocol::Cents;
use hdrhistogram::Histogram;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub struct Options {
    /// The server's UDP address (for a cluster, the first node given).
    pub server: SocketAddr,
    /// For a cluster: every node's UDP address, `server` among them; bidders follow redirects
    /// to the leader among these and move on when one stops answering. Empty: only `server`.
    pub cluster: Vec<SocketAddr>,
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
    /// The share of items offered with a reserve price (`setup::reserve_for`): half of them
    /// one the bidding soon passes, half one it never reaches, so `--verify` sees both a sale
    /// and a reserve not met.
    pub reserve_share: f64,
    /// The share of items offered with a buy-it-now price (`setup::buy_now_plan`), each
    /// taken by one of its bidders before the measured phase.
    pub buy_now_share: f64,
    pub progress: bool,
    pub metrics_url: Option<String>,
    /// Extra clients that join every item and then stop reading (slow-reader experiments);
    /// they are not bidders and are not measured.
    pub stalled: usize,
    /// Leave the run's accounts on the server (by default they are deregistered at the end).
    pub keep: bool,
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
    /// Sent minus scheduled (open loop).
    send_lag: Latency,
    connect: Latency,
    register: Latency,
    sent: AtomicU64,
    answered: AtomicU64,
    accepted: AtomicU64,
    low: AtomicU64,
    unanswered: AtomicU64,
    /// Channels reopened after they broke (a restart or a failover).
    reconnected: AtomicU64,
    /// HIGHEST messages read by the bidders while bidding.
    highest_received: AtomicU64,
    rejected: Tally,
    errors: Tally,
}

impl Stats {
    /// The counts so far, for the report.
    fn counts(&self) -> Counts {
        Counts {
            sent: self.sent.load(Ordering::Relaxed),
            answered: self.answered.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: self.rejected.snapshot(),
            deliberately_low: self.low.load(Ordering::Relaxed),
            unanswered: self.unanswered.load(Ordering::Relaxed),
            reconnected: self.reconnected.load(Ordering::Relaxed),
            errors: self.errors.snapshot(),
            highest_received: self.highest_received.load(Ordering::Relaxed),
            ..Counts::default()
        }
    }
}

/// What loadgen knows about one item.
struct ItemShared {
    id: u64,
    /// Bids sent, by (amount, bidder), with their send time: a HIGHEST another bidder reads
    /// is matched to its bid here. Rejected bids are removed; the rest age out.
    sent: Mutex<SentBids>,
    ledger: Mutex<Ledger>,
    /// Its reserve price, if it was offered with one: below it, not sold.
    reserve: Option<Cents>,
    /// Its buy-it-now price, if it was offered with one.
    buy_now: Option<Cents>,
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
    /// A bidder took it at its buy-it-now price: no other bid may be accepted.
    bought: bool,
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
        ClientError::NoServer { .. } => "no-server",
        ClientError::Io(_) => "io",
        ClientError::Tls(_) => "tls",
        ClientError::Protocol(_) => "protocol",
        ClientError::Local(_) => "local",
    }
}

impl Shared {
    fn new(stats: Stats, offered: &[Offered], prefix: String, opts: &Options) -> Shared {
        let buy_now = setup::buy_now_plan(offered.len(), opts.buy_now_share, opts.reserve_share);
        let items = offered
            .iter()
            .enumerate()
            .map(|(i, o)| ItemShared {
                id: o.item,
                reserve: setup::reserve_for(i, opts.reserve_share),
                buy_now: buy_now[i],
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
        Shared {
            stats,
            items,
            prefix,
            per_second: PerSecond::new(opts.duration.as_secs() as usize + 1),
            notices: Mutex::new(HashMap::new()),
        }
    }

    /// When the last of the run's items ends, as the server last said (Unix ms; 0: none).
    fn last_end(&self) -> u64 {
        self.items
            .iter()
            .map(|i| i.ledger.lock().unwrap_or_else(|p| p.into_inner()).ends_at)
            .max()
            .unwrap_or(0)
    }
}

/// A note for the report when some item has fewer than two bidders.
fn competition_note(layout: &plan::Layout) -> Option<String> {
    let per_item = &layout.per_item;
    per_item.iter().any(|&n| n < 2).then(|| {
        format!(
            "some items have fewer than two bidders ({}-{} per item): no competition there",
            per_item.iter().min().unwrap_or(&0),
            per_item.iter().max().unwrap_or(&0)
        )
    })
}

/// Runs the whole load run: set-up, the measured phase, the verification when asked for, and
/// the report. Fails only when the run cannot report at all; errors during it are counted.
pub async fn run(opts: Options) -> Result<Outcome, RunError> {
    let started_at = unix_ms() / 1000;
    // Names unique to this run, so runs against the same server do not collide.
    let prefix = format!("lg{:06x}", rand::random::<u32>() & 0xff_ffff);
    let layout = plan::Layout::new(opts.bidders, opts.items, opts.items_per_bidder);
    let channels = layout.channels;
    let mut notes: Vec<String> = competition_note(&layout).into_iter().collect();

    // --- set-up (sellers first: the first answer tells whether the server is there)
    let stats = Stats::default();
    let mut accounts = setup::register(&opts, &prefix, &stats).await?;
    let offered = setup::offer_items(&opts, &prefix, channels, &mut accounts, &stats).await?;
    let earliest_end = offered.iter().map(|o| o.ends_at).min().unwrap_or(0);
    let shared = Arc::new(Shared::new(stats, &offered, prefix, &opts));
    let drains = setup::read_announcements(&accounts, &shared);
    let scrape_before = scrape_opt(&opts, &shared).await;
    let mut per_bidder =
        setup::open_channels(&opts, &layout.assignment, &accounts, &offered, &shared).await;
    let stalled = setup::join_stalled(&opts, &offered, &shared, &mut accounts, &mut notes).await?;
    setup::take_buy_now(
        &layout.assignment,
        &accounts,
        &offered,
        &shared,
        &mut per_bidder,
    )
    .await;
    let scrape_with = scrape_opt(&opts, &shared).await;

    // --- the measured phase (the server's CPU from the scrapes around it, loadgen's own)
    let cpu_span = crate::cpu::Span::start(cpu_seconds(&scrape_with));
    let elapsed = measure::run(
        &opts,
        &shared,
        per_bidder,
        &accounts.bidders,
        stalled,
        earliest_end,
        &mut notes,
    )
    .await;
    let scrape_after = scrape_opt(&opts, &shared).await;
    let cpu = cpu_span.finish(cpu_seconds(&scrape_after));

    // --- verification, then the figures for the report
    let verify = if opts.verify {
        Some(verify(&shared, &accounts.sellers[0], &scrape_with, &scrape_after).await)
    } else {
        None
    };
    let clients = accounts.all();
    notes.push(if opts.keep {
        format!(
            "--keep: the run's {} accounts ({}-*) are left on the server",
            clients.len(),
            shared.prefix
        )
    } else {
        cleanup::remove_accounts(&clients, &shared, opts.progress).await
    });
    for d in drains {
        d.abort();
    }
    let server_figures = server_figures(
        &opts,
        [&scrape_before, &scrape_with, &scrape_after],
        channels,
    );
    let s = &shared.stats;
    let figures = RunFigures {
        subject: Subject::Auction,
        started_at,
        server: Some(opts.server),
        bidders: opts.bidders,
        items: opts.items,
        items_per_bidder: layout.per_bidder,
        duration: opts.duration,
        rate: opts.rate,
        seed: opts.seed,
        machine: Machine::this(),
        spread: layout.spread(),
        elapsed,
        counts: s.counts(),
        per_second: shared
            .per_second
            .values(elapsed.as_secs_f64().ceil() as usize),
        round_trip: s.round_trip.snapshot(),
        fan_out: s.fan_out.snapshot(),
        tls_connect: s.connect.snapshot(),
        udp_register: s.register.snapshot(),
        send_lag: s.send_lag.snapshot(),
        verify,
        server_figures,
        cpu,
        notes,
    };
    Ok(Outcome {
        report: Report::of(&figures),
        round_trip: figures.round_trip,
    })
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

/// The server's CPU seconds so far, from a scrape (`None`: no scrape, or an older server).
fn cpu_seconds(scrape: &Option<Scrape>) -> Option<f64> {
    scrape.as_ref()?.sum("process_cpu_seconds_total")
}

/// The server's own figures for the report, when `--metrics-url` was given and all three
/// scrapes (before the channels opened, with them open, after bidding) succeeded.
fn server_figures(
    opts: &Options,
    scrapes: [&Option<Scrape>; 3],
    channels: usize,
) -> Option<ServerFigures> {
    match (&opts.metrics_url, scrapes) {
        (Some(url), [Some(a), Some(b), Some(c)]) => {
            Some(ServerFigures::from_scrapes(url, a, b, c, channels))
        }
        _ => None,
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
