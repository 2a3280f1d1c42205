//! `loadgen`: hundreds of simulated bidders against an auction server, or (`loadgen baseline`)
//! against a bare TLS echo server or relay, with honest latency histograms.
//!
//! Exit codes: 0 ok, 1 errors or a failed verification, 2 usage, 3 cannot reach the server.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use loadgen::html::Labelled;
use loadgen::report::Subject;
use loadgen::{baseline, hgrm, Report, RunError};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for the auction server: simulated bidders over the real protocol, HdrHistogram latencies",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    shape: Shape,
    /// The server's UDP address; for a cluster, its nodes' addresses separated by commas
    /// (bidders follow the leader among them).
    #[arg(long, env = "AUCTION_SERVER", default_value = "127.0.0.1:7400")]
    server: String,
    /// CA certificate that signed the server's channel certificates.
    #[arg(long, env = "AUCTION_CA", default_value = "certs/ca.pem")]
    ca: PathBuf,
    /// Open loop: this many bids per second across all bidders, latency measured from each
    /// bid's scheduled time. Without it: closed loop (next bid after the answer to the last).
    #[arg(long)]
    rate: Option<f64>,
    /// Write the bid round-trip percentile distribution (HdrHistogram text format, ms) here.
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// After the run, wait for every auction to close and check winners and prices.
    #[arg(long)]
    verify: bool,
    /// Seed of the bidders' choices (amounts, deliberately low bids).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long the offered auctions run (default: set-up allowance + --duration).
    #[arg(long, value_parser = parse_duration)]
    item_duration: Option<Duration>,
    /// The share of items offered with a reserve price (0 to 1): half of them one the bidding
    /// soon passes, half one it never reaches; --verify expects those unsold.
    #[arg(long, default_value_t = 0.2)]
    reserve_share: f64,
    /// The share of items offered with a buy-it-now price (0 to 1), among those without a
    /// reserve: one of each item's bidders takes it before the measured phase, which ends
    /// that auction at once; --verify expects the taker to win at that price, alone.
    #[arg(long, default_value_t = 0.05)]
    buy_now_share: f64,
    /// Extra clients that join every item and then stop reading, to see what slow readers
    /// cost the others (they are not measured).
    #[arg(long, default_value_t = 0)]
    stalled: usize,
    /// The server's Prometheus metrics, e.g. http://127.0.0.1:9400/metrics, read before and
    /// after the run; their figures go into the report.
    #[arg(long)]
    metrics_url: Option<String>,
    /// Leave the run's accounts (lgXXXXXX-*) on the server. By default loadgen waits for its
    /// items to end and deregisters every account it made.
    #[arg(long)]
    keep: bool,
}

/// Flags the auction run and the baseline share.
#[derive(Args, Debug, Clone)]
struct Shape {
    /// Simulated bidders (each its own account, UDP socket and TLS channels).
    #[arg(long, required = true)]
    bidders: Option<usize>,
    /// Items offered (by as many seller accounts as the server's per-seller limit needs).
    #[arg(long, required = true)]
    items: Option<usize>,
    /// Items each bidder joins (default: the fewest that give every item two bidders or more).
    #[arg(long)]
    items_per_bidder: Option<usize>,
    /// Length of the measured phase.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Write the report as JSON here (schema in README).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write one self-contained HTML page here: latency percentile curves and answers per
    /// second as inline SVG, and the report's figures as tables.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Write the latency percentile plot alone here, as an SVG file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
    /// Which round of a set of back-to-back runs this is (`scripts/bench.sh`,
    /// `scripts/knee.sh`): kept in the report (`config.round`) so that medians over rounds
    /// pair each run with the one it was measured beside.
    #[arg(long)]
    round: Option<u32>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Drive a bare TLS echo server (or, with --fan-out, relay) inside loadgen with the same
    /// connections and message sizes: the physical limit the auction is compared with.
    Baseline {
        #[command(flatten)]
        shape: Shape,
        /// Seed of the message ids.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Open loop: this many lines per second across all bidders, latency measured from
        /// each line's scheduled time. Without it: closed loop (next line after the answer).
        #[arg(long)]
        rate: Option<f64>,
        /// A relay in the auction's shape instead of the echo: each line is answered to its
        /// sender AND written to every other connection of the same listener (one listener per
        /// item), with no storage, rules or JSON parsing. Measures the fan-out latency too
        /// (a line's send -> its copy read by each other connection of the item). A reader
        /// that falls behind has copies dropped, not queued without end (a bounded queue of
        /// 256 lines per connection); the report counts copies due and read.
        #[arg(long)]
        fan_out: bool,
    },
    /// The TLS echo server or relay of `loadgen baseline`, run as a child process (internal).
    #[command(hide = true)]
    EchoServer {
        #[arg(long)]
        listeners: usize,
        #[arg(long)]
        fan_out: bool,
    },
    /// Medians over JSON reports and the auction / baseline ratio (pairs in the order given).
    /// Exits 1 when any report had errors or failed verification.
    Summarize {
        /// Reports written with --json.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Write one self-contained HTML page here: every report's latency percentile curves
        /// (the baseline's echo round trip overlaid) and answers per second as inline SVG,
        /// the summary, and each report's figures as tables.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Write the latency percentile plot of every report alone here, as an SVG file.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// The knee of open-loop auction and relay reports (`scripts/knee.sh`): for each, the
    /// highest rate with p99 bid round trip <= 5 ms and p99 fan-out <= 10 ms, and the ratio
    /// auction / relay. Exits 1 when any report had errors or failed verification, never
    /// because of a rate.
    Knee {
        /// Open-loop reports written with --json, auction and `baseline --fan-out`.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Write the summary as JSON here (schema `auction-loadgen-knee/1`).
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// README's performance figures from the JSON reports of `scripts/perf.sh`: prints the
    /// block, or puts it between the README's `<!-- perf:begin -->` and `<!-- perf:end -->`
    /// (--write), or exits 1 when the README's block is not what the reports give (--check).
    Readme {
        /// The closed loop's reports (`ROUNDS=3 scripts/bench.sh`).
        #[arg(long)]
        bench: Option<PathBuf>,
        /// The channels set's reports (`ROUNDS=3 LOADGEN_ARGS="--items-per-bidder 20"
        /// scripts/bench.sh`).
        #[arg(long)]
        channels: Option<PathBuf>,
        /// The knee's reports (`KNEE_ROUNDS=3 scripts/knee.sh`).
        #[arg(long)]
        knee: Option<PathBuf>,
        /// Rewrite the block of this README.
        #[arg(long, conflicts_with = "check")]
        write: Option<PathBuf>,
        /// Compare the block of this README with the reports' (exit 1 when they differ).
        #[arg(long)]
        check: Option<PathBuf>,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("'{s}': {e} (write it like 30s, 5m)"))
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // Every channel is a file descriptor: take the hard limit, not the (often 1024) soft one.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open files limit");
    }
    std::process::exit(match run(cli).await {
        Ok(report) if report.failed() => 1,
        Ok(_) => 0,
        Err(Failure::Usage(e)) => {
            eprintln!("loadgen: {e}");
            2
        }
        Err(Failure::Unreachable(e)) => {
            eprintln!("loadgen: {e}");
            3
        }
        Err(Failure::Other(e)) => {
            eprintln!("loadgen: {e:#}");
            1
        }
    });
}

enum Failure {
    Usage(String),
    Unreachable(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Other(e)
    }
}

fn check_shape(shape: &Shape) -> Result<(usize, usize), Failure> {
    let (bidders, items) = (shape.bidders.unwrap_or(0), shape.items.unwrap_or(0));
    if bidders == 0 || items == 0 {
        return Err(Failure::Usage(
            "--bidders and --items must be at least 1".into(),
        ));
    }
    if shape.items_per_bidder.is_some_and(|k| k == 0 || k > items) {
        return Err(Failure::Usage(format!(
            "--items-per-bidder must be between 1 and --items ({items})"
        )));
    }
    if shape.duration.is_zero() {
        return Err(Failure::Usage("--duration must be more than 0".into()));
    }
    Ok((bidders, items))
}

fn check_rate(rate: Option<f64>) -> Result<(), Failure> {
    if rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(Failure::Usage(
            "--rate must be a positive number of bids per second".into(),
        ));
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<Report, Failure> {
    if let Some(Command::EchoServer { listeners, fan_out }) = &cli.command {
        let listeners = *listeners;
        let mode = if *fan_out {
            baseline::Mode::Relay
        } else {
            baseline::Mode::Echo
        };
        tokio::task::spawn_blocking(move || {
            baseline::serve_echo_until_stdin_closes(listeners, mode)
        })
        .await
        .map_err(|e| Failure::Other(e.into()))??;
        std::process::exit(0);
    }
    if let Some(Command::Readme {
        bench,
        channels,
        knee,
        write,
        check,
    }) = &cli.command
    {
        std::process::exit(readme(
            [bench, channels, knee].map(Option::as_deref),
            write.as_deref(),
            check.as_deref(),
        )?);
    }
    if let Some(Command::Knee { reports, json }) = &cli.command {
        let knees = loadgen::knee::knee(&read_reports(reports)?);
        print!("{}", knees.text());
        if let Some(path) = json {
            let text = serde_json::to_string_pretty(&knees).context("encoding the summary")?;
            std::fs::write(path, text + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        std::process::exit(i32::from(knees.failed));
    }
    if let Some(Command::Summarize { reports, html, svg }) = &cli.command {
        let all = read_reports(reports)?;
        let (text, failed) = loadgen::summary::summarize(&all);
        print!("{text}");
        // Each report goes by its file's name on the page.
        let labels: Vec<String> = reports
            .iter()
            .map(|p| {
                p.file_stem()
                    .unwrap_or(p.as_os_str())
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let runs: Vec<Labelled> = labels
            .iter()
            .zip(&all)
            .map(|(label, report)| Labelled { label, report })
            .collect();
        let title = format!("loadgen summary of {} report(s)", all.len());
        write_plots(html.as_deref(), svg.as_deref(), &title, &runs, Some(&text))?;
        std::process::exit(i32::from(failed));
    }
    if let Some(Command::Baseline {
        shape,
        seed,
        rate,
        fan_out,
    }) = cli.command
    {
        let (bidders, items) = check_shape(&shape)?;
        check_rate(rate)?;
        let outcome = baseline::run(baseline::Options {
            bidders,
            items,
            items_per_bidder: shape.items_per_bidder,
            duration: shape.duration,
            rate,
            fan_out,
            progress: !shape.quiet && std::io::stderr().is_terminal(),
            seed,
            echo_exe: std::env::current_exe().ok(),
        })
        .await?;
        let mut report = outcome.report;
        report.config.round = shape.round;
        print!("{}", report.table());
        write_json(shape.json.as_deref(), &report)?;
        write_run_plots(&shape, &report)?;
        return Ok(report);
    }
    let shape = cli.shape;
    let (bidders, items) = check_shape(&shape)?;
    check_rate(cli.rate)?;
    let cluster = auction_client::resolve_all(&cli.server)
        .await
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let server: SocketAddr = cluster[0];
    let outcome = loadgen::run(loadgen::Options {
        server,
        cluster: if cluster.len() > 1 {
            cluster
        } else {
            Vec::new()
        },
        ca: cli.ca,
        bidders,
        items,
        items_per_bidder: shape.items_per_bidder,
        duration: shape.duration,
        rate: cli.rate,
        verify: cli.verify,
        seed: cli.seed,
        item_duration: cli.item_duration,
        reserve_share: cli.reserve_share,
        buy_now_share: cli.buy_now_share,
        progress: !shape.quiet && std::io::stderr().is_terminal(),
        metrics_url: cli.metrics_url,
        stalled: cli.stalled,
        keep: cli.keep,
    })
    .await
    .map_err(|e| match e {
        RunError::Unreachable { .. } => Failure::Unreachable(e.to_string()),
        RunError::Failed(e) => Failure::Other(e),
    })?;
    let mut report = outcome.report;
    report.config.round = shape.round;
    print!("{}", report.table());
    write_json(shape.json.as_deref(), &report)?;
    write_run_plots(&shape, &report)?;
    if let Some(path) = &cli.hgrm {
        std::fs::write(path, hgrm::percentile_distribution(&outcome.round_trip))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(report)
}

/// `loadgen readme`: the block from the three sets' folders; printed, written into a README,
/// or compared with a README's. Returns the exit code.
fn readme(
    dirs: [Option<&Path>; 3],
    write: Option<&Path>,
    check: Option<&Path>,
) -> Result<i32, Failure> {
    if dirs.iter().all(Option::is_none) {
        return Err(Failure::Usage(
            "give at least one of --bench, --channels, --knee (folders of JSON reports)".into(),
        ));
    }
    let [bench, channels, knee] = dirs.map(|d| match d {
        Some(dir) => loadgen::readme::load_dir(dir),
        None => Ok(Vec::new()),
    });
    let perf = loadgen::readme::Perf::of(&bench?, &channels?, &knee?);
    let block = loadgen::readme::render(&perf);
    let Some(path) = write.or(check) else {
        print!("{block}");
        return Ok(0);
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let new =
        loadgen::readme::splice(&text, &block).with_context(|| format!("in {}", path.display()))?;
    if check.is_some() {
        if new == text {
            return Ok(0);
        }
        eprintln!(
            "loadgen: the performance figures in {} are not what the reports give: run scripts/perf-readme.sh",
            path.display()
        );
        return Ok(1);
    }
    if new != text {
        std::fs::write(path, new).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(0)
}

fn read_reports(paths: &[PathBuf]) -> Result<Vec<Report>, Failure> {
    let mut all = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let report: Report = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a loadgen report", path.display()))?;
        all.push(report);
    }
    Ok(all)
}

fn write_json(path: Option<&Path>, report: &Report) -> Result<(), Failure> {
    if let Some(path) = path {
        let text = serde_json::to_string_pretty(report).context("encoding the report")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// `--html` and `--svg` of one run (an auction or a baseline).
fn write_run_plots(shape: &Shape, report: &Report) -> Result<(), Failure> {
    let c = &report.config;
    let (label, what) = match report.subject() {
        Subject::Auction => ("auction", "auction run"),
        subject => ("baseline", subject.title()),
    };
    let title = format!("loadgen: {what}, {} bidders, {} items", c.bidders, c.items);
    let runs = [Labelled { label, report }];
    write_plots(
        shape.html.as_deref(),
        shape.svg.as_deref(),
        &title,
        &runs,
        None,
    )
}

fn write_plots(
    html: Option<&Path>,
    svg: Option<&Path>,
    title: &str,
    runs: &[Labelled],
    summary: Option<&str>,
) -> Result<(), Failure> {
    if let Some(path) = html {
        let page = loadgen::html::page(title, runs, summary).context("rendering the HTML page")?;
        std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = svg {
        let svg = loadgen::html::latency_svg(runs).context("rendering the latency plot")?;
        std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
