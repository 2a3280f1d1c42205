//! loadgen against a real server (in this process, real UDP, TLS and SQLite on 127.0.0.1):
//! the counts add up, the server's own figures agree, verification passes on an honest run
//! and fails when someone else wins, open loop sends no more than scheduled, a run leaves no
//! account and no pending notice behind (unless `--keep`), the report and `.hgrm` files are
//! well formed, the HTML page plots the run and holds its figures, and the exit codes hold.

use auction_client::{BidResult, Client, Identity};
use auction_protocol::Cents;
use auction_server::{Config, Server, SqliteOptions, SqliteStorage, TlsIdentity};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

struct TestServer {
    server: Server,
    db: PathBuf,
    udp: SocketAddr,
    metrics_url: String,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

async fn start() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsIdentity::dev(&dir.path().join("certs")).unwrap();
    let db = dir.path().join("auction.db");
    let (storage, snapshot) = SqliteStorage::open(&db, SqliteOptions::default()).unwrap();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        // No soft-close extension: the auctions end when loadgen planned.
        snipe_window: Duration::ZERO,
        // One address registers every simulated person.
        accounts_per_hour: 100_000,
        ..Config::default()
    };
    let server = Server::start(udp, tls, config, Arc::new(storage), snapshot, None)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = server.serve_metrics(listener).unwrap();
    TestServer {
        db,
        udp: server.udp_addr(),
        metrics_url: format!("http://{metrics}/metrics"),
        ca: dir.path().join("certs/ca.pem"),
        server,
        _dir: dir,
    }
}

fn options(t: &TestServer, bidders: usize, items: usize) -> loadgen::Options {
    loadgen::Options {
        server: t.udp,
        cluster: Vec::new(),
        ca: t.ca.clone(),
        bidders,
        items,
        items_per_bidder: None,
        duration: Duration::from_millis(1500),
        rate: None,
        verify: true,
        seed: 7,
        item_duration: Some(Duration::from_secs(4)),
        progress: false,
        metrics_url: Some(t.metrics_url.clone()),
        stalled: 0,
        keep: false,
        // With 4 items: the second has a reserve the bidding passes, the fourth one it never
        // reaches, and --verify checks both results.
        reserve_share: 0.5,
        buy_now_share: 0.0,
    }
}

/// The number the query `sql` counts in the server's database.
fn count(t: &TestServer, sql: &str) -> i64 {
    auction_server::query_one::<i64>(&t.db, sql)
        .unwrap()
        .unwrap()
}

const LIVE_ACCOUNTS: &str = "SELECT count(*) FROM accounts WHERE removed_at IS NULL";
const PENDING_NOTICES: &str = "SELECT count(*) FROM notices WHERE acked_at IS NULL";
const OPEN_ITEMS: &str = "SELECT count(*) FROM items WHERE closed_at IS NULL";

/// Without `--verify` the run ends while its items are still open (their sellers cannot be
/// deregistered yet): loadgen waits for them to end, then removes every account it made,
/// a stalled client's included; none is live afterwards and no notice waits for delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_removes_its_accounts_and_leaves_nothing_pending() {
    let t = start().await;
    let opts = loadgen::Options {
        verify: false,
        stalled: 1,
        ..options(&t, 6, 4)
    };
    let r = loadgen::run(opts).await.unwrap().report;
    assert!(!r.failed(), "{}", r.table());
    // 6 bidders, 2 sellers (3 open items each at most), 1 stalled client.
    assert!(
        r.notes
            .iter()
            .any(|n| n.starts_with("removed the run's 9 accounts (lg")),
        "{:?}",
        r.notes
    );
    assert_eq!(count(&t, "SELECT count(*) FROM accounts"), 9);
    assert_eq!(count(&t, LIVE_ACCOUNTS), 0, "an account of the run is left");
    assert_eq!(count(&t, OPEN_ITEMS), 0);
    // Some items sold (WIN and SOLD) and maybe some did not: none of their notices is pending.
    assert!(count(&t, "SELECT count(*) FROM notices") >= 4);
    assert_eq!(count(&t, PENDING_NOTICES), 0, "a notice is still pending");
    t.server.shutdown().await.unwrap();
}

/// `--keep` leaves the run's accounts; their notices were acknowledged as they came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_leaves_the_runs_accounts() {
    let t = start().await;
    let opts = loadgen::Options {
        keep: true,
        metrics_url: None,
        ..options(&t, 4, 2)
    };
    let r = loadgen::run(opts).await.unwrap().report;
    assert!(!r.failed(), "{}", r.table());
    assert!(r.verify.as_ref().unwrap().passed);
    // No metrics: no server CPU, and no figure made up for it.
    assert_eq!(r.cpu.server_s, None);
    assert_eq!(r.cpu.server_us_per_answer, None);
    assert!(
        r.notes
            .iter()
            .any(|n| n.starts_with("--keep: the run's 5 accounts (lg")),
        "{:?}",
        r.notes
    );
    // 4 bidders and 1 seller, all named after the run.
    assert_eq!(count(&t, LIVE_ACCOUNTS), 5);
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM accounts WHERE removed_at IS NULL AND name LIKE 'lg%-%'"
        ),
        5
    );
    assert_eq!(count(&t, OPEN_ITEMS), 0);
    assert_eq!(count(&t, PENDING_NOTICES), 0);
    t.server.shutdown().await.unwrap();
}

/// A share of items with a buy-it-now price: one bidder takes each before the measured
/// phase, wins it at that price alone, and --verify checks it (and SOLD and WIN with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buy_it_now_takers_win_alone_and_verify() {
    let t = start().await;
    let opts = loadgen::Options {
        // Of 6 items, 0, 2 and 4 have no reserve; a third of those (item 4) is bought.
        buy_now_share: 0.5 / 3.0,
        ..options(&t, 12, 6)
    };
    let r = loadgen::run(opts).await.unwrap().report;
    assert!(!r.failed(), "{}", r.table());
    let v = r.verify.as_ref().unwrap();
    assert!(v.passed && v.items_checked == 6, "{v:?}");
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM items WHERE buy_now_cents = 3000 AND price_cents = 3000"
        ),
        1,
        "one item sold at its buy-it-now price"
    );
    assert_eq!(
        count(&t, "SELECT count(*) FROM bids b JOIN items i ON i.id = b.item WHERE i.buy_now_cents IS NOT NULL AND b.accepted"),
        1,
        "and no other bid on it"
    );
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_run_adds_up_and_verifies() {
    let t = start().await;
    let outcome = loadgen::run(options(&t, 12, 5)).await.unwrap();
    let r = &outcome.report;
    let n = &r.counts;
    assert!(!r.failed(), "{}", r.table());
    let v = r.verify.as_ref().unwrap();
    assert!(v.passed && v.items_checked == 5, "{v:?}");
    // Every bid sent was answered, as accepted or rejected.
    assert_eq!(n.sent, n.answered);
    assert_eq!(n.answered, n.accepted + n.rejected_total());
    assert!(n.accepted > 0 && n.rejected.get("too-low").copied().unwrap_or(0) > 0);
    assert!(n.deliberately_low > 0);
    assert_eq!(n.unanswered, 0);
    // 12 bidders over 5 items: each item has 2 or more bidders competing.
    assert_eq!(r.config.items_per_bidder, 1);
    assert!(r.spread.bidders_per_item_min >= 2, "{:?}", r.spread);
    assert_eq!(r.spread.channels, 12);
    // Histograms hold what was counted.
    let rtt = r.latency_us.bid_round_trip.as_ref().unwrap();
    assert_eq!(rtt.count, n.answered);
    assert!(rtt.p50 <= rtt.p99 && rtt.p99 <= rtt.max);
    assert_eq!(r.latency_us.tls_connect.as_ref().unwrap().count, 12);
    // 12 bidders and at least 2 sellers (3 open items each at most).
    assert!(r.latency_us.udp_register.as_ref().unwrap().count >= 14);
    let fan_out = r.latency_us.fan_out.as_ref().unwrap().count;
    assert!(fan_out > 0);
    // Every HIGHEST read is counted; the fan-out latency only for other bidders' bids.
    assert!(
        n.highest_received >= fan_out,
        "{} < {fan_out}",
        n.highest_received
    );
    assert_eq!(
        r.throughput.per_second.iter().sum::<u64>(),
        n.answered,
        "every answer falls in some second"
    );
    // The server counted exactly the bids loadgen saw decided.
    let server = r.server.as_ref().unwrap();
    assert_eq!(server.bids_accepted, Some(n.accepted as f64));
    assert_eq!(server.bids_rejected, Some(n.rejected_total() as f64));
    assert_eq!(server.open_connections, Some(12.0));
    assert!(server.commits.unwrap() > 0.0);
    // CPU over the measured phase, from the server's metrics and loadgen's /proc/self/stat
    // (the server runs in this process here, so loadgen's includes it).
    #[cfg(target_os = "linux")]
    {
        let cpu = &r.cpu;
        assert!(cpu.server_s.is_some() && cpu.loadgen_s.is_some(), "{cpu:?}");
        let per = |us: f64, n: u64| (cpu.server_s.unwrap() * 1e6 / n as f64 - us).abs() < 0.01;
        assert!(
            per(cpu.server_us_per_answer.unwrap(), n.answered),
            "{cpu:?}"
        );
        assert!(per(
            cpu.server_us_per_delivered.unwrap(),
            n.highest_received
        ));
        assert!(per(
            cpu.server_us_per_message.unwrap(),
            n.answered + n.highest_received
        ));
        assert!(cpu.loadgen_us_per_message.is_some());
        assert!(
            r.table().contains("µs per HIGHEST delivered"),
            "{}",
            r.table()
        );
    }

    // The JSON report round-trips, and the .hgrm has the plotter's columns.
    let json = serde_json::to_value(r).unwrap();
    assert_eq!(json["schema"], "auction-loadgen/1");
    assert_eq!(json["kind"], "auction");
    assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
    assert_eq!(json["config"]["mode"], "closed");
    assert!(json["cpu"].is_object());
    let back: loadgen::Report = serde_json::from_value(json).unwrap();
    assert_eq!(back.counts.accepted, n.accepted);
    let hgrm = loadgen::hgrm::percentile_distribution(&outcome.round_trip);
    assert!(hgrm.contains(&format!("Total count    = {:>12}]", n.answered)));
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_no_more_than_scheduled() {
    let t = start().await;
    let opts = loadgen::Options {
        rate: Some(400.0),
        verify: false,
        ..options(&t, 8, 2)
    };
    let r = loadgen::run(opts).await.unwrap().report;
    assert!(!r.failed(), "{}", r.table());
    assert_eq!(r.config.mode, "open");
    // 400/s for 1.5 s is 600 bids; each bidder's first is due at once.
    assert!(r.counts.sent <= 600 + 8, "sent {}", r.counts.sent);
    assert!(r.counts.sent > 0);
    let f = r.throughput.achieved_fraction.unwrap();
    assert!(f > 0.0 && f <= 1.1, "achieved fraction {f}");
    t.server.shutdown().await.unwrap();
}

/// Someone outside loadgen outbids it: verification must notice the winner is not the one
/// loadgen saw accepted last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_fails_when_the_result_differs() {
    let t = start().await;
    let (udp, ca) = (t.udp, t.ca.clone());
    let outsider = tokio::spawn(async move {
        let c = Arc::new(
            Client::with_identity(udp, Identity::ephemeral().unwrap(), &ca)
                .await
                .unwrap(),
        );
        c.register("outsider").await.unwrap();
        // Wait for loadgen's item, then bid the highest amount there is: nobody can outbid it.
        let item = loop {
            let items = c.list().await.unwrap();
            if let Some(i) = items.iter().find(|i| i.description.starts_with("loadgen ")) {
                break i.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut ch = c
            .open_channel(item.channel.as_ref().unwrap())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = ch
            .bid(Cents(auction_protocol::limits::MAX_AMOUNT_CENTS), None)
            .await
            .unwrap();
        assert!(matches!(r, BidResult::Accepted { .. }), "{r:?}");
    });
    let opts = loadgen::Options {
        metrics_url: None,
        ..options(&t, 3, 1)
    };
    let r = loadgen::run(opts).await.unwrap().report;
    outsider.await.unwrap();
    let v = r.verify.as_ref().unwrap();
    assert!(!v.passed, "{}", r.table());
    assert!(r.failed());
    assert!(
        v.problems
            .iter()
            .any(|p| p.contains("the server closed it 100000000000.00 by outsider")),
        "{:?}",
        v.problems
    );
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_echoes_every_message() {
    let r = loadgen::baseline::run(loadgen::baseline::Options {
        bidders: 6,
        items: 3,
        items_per_bidder: None,
        duration: Duration::from_millis(500),
        progress: false,
        seed: 1,
        // The echo server as loadgen runs it: a child process.
        echo_exe: Some(env!("CARGO_BIN_EXE_loadgen").into()),
        rate: None,
        fan_out: false,
    })
    .await
    .unwrap()
    .report;
    assert!(!r.failed(), "{}", r.table());
    assert_eq!(r.kind, "baseline");
    assert!(r.counts.answered > 0);
    assert_eq!(r.counts.sent, r.counts.answered);
    assert_eq!(r.latency_us.tls_connect.as_ref().unwrap().count, 6);
    // The child's CPU from its /proc/PID/stat; the echo delivers no fan-out line.
    #[cfg(target_os = "linux")]
    assert!(
        r.cpu.server_s.is_some() && r.cpu.loadgen_s.is_some(),
        "{:?}",
        r.cpu
    );
    assert_eq!(r.cpu.server_us_per_delivered, None);
}

fn loadgen_bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
}

#[test]
fn exit_codes() {
    // Usage errors: 2.
    let out = loadgen_bin().args(["--items", "2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = loadgen_bin()
        .args(["--bidders", "0", "--items", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 1"));
    // Nothing listening: 3, with the reason.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let out = loadgen_bin()
        .args(["--server", &addr, "--bidders", "2", "--items", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the auction server"));
}

/// Runs `loadgen ARGS` to the end without blocking the runtime the test server runs on.
async fn loadgen_output(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || loadgen_bin().args(args).output().unwrap())
        .await
        .unwrap()
}

fn select<'a>(doc: &'a scraper::Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    doc.select(&scraper::Selector::parse(css).unwrap())
        .collect()
}

fn text(e: &scraper::ElementRef<'_>) -> String {
    e.text().collect::<String>().trim().to_owned()
}

/// The cells of the figures table's row `name`, one per report.
fn figure_row(doc: &scraper::Html, name: &str) -> Vec<String> {
    let row = select(doc, "table#figures tbody tr")
        .into_iter()
        .find(|tr| select_in(tr, "th").first().map(text).as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no row {name:?} in the figures table"));
    select_in(&row, "td").iter().map(text).collect()
}

fn select_in<'a>(e: &scraper::ElementRef<'a>, css: &str) -> Vec<scraper::ElementRef<'a>> {
    e.select(&scraper::Selector::parse(css).unwrap()).collect()
}

/// The legend names drawn in a chart (plotters writes each as an SVG `<text>`).
fn svg_texts(svg: &scraper::ElementRef<'_>) -> Vec<String> {
    select_in(svg, "text").iter().map(text).collect()
}

/// `loadgen --html --svg` on a real run, then `loadgen summarize --html` over its JSON report
/// and a baseline's: one chart per plot, the baseline's round trip overlaid, and the figures
/// table holding the JSON reports' counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_pages_plot_the_runs_and_hold_their_figures() {
    let t = start().await;
    let out = tempfile::tempdir().unwrap();
    let path = |name: &str| out.path().join(name).to_string_lossy().into_owned();
    let args: Vec<String> = [
        "--server",
        &t.udp.to_string(),
        "--ca",
        &t.ca.to_string_lossy(),
        "--bidders",
        "6",
        "--items",
        "2",
        "--duration",
        "1500ms",
        "--item-duration",
        "4s",
        "--verify",
        "--quiet",
        "--json",
        &path("auction.json"),
        "--html",
        &path("auction.html"),
        "--svg",
        &path("auction.svg"),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let run = loadgen_output(args).await;
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    let report: loadgen::Report =
        serde_json::from_str(&std::fs::read_to_string(path("auction.json")).unwrap()).unwrap();
    assert!(report.counts.answered > 0);
    // The curves the plot is drawn from are in the JSON report.
    assert_eq!(
        report
            .latency_curves_us
            .bid_round_trip
            .last()
            .map(|p| (p.percentile, p.us)),
        Some((1.0, report.latency_us.bid_round_trip.as_ref().unwrap().max))
    );

    let page =
        scraper::Html::parse_document(&std::fs::read_to_string(path("auction.html")).unwrap());
    assert_eq!(select(&page, "svg").len(), 2, "one chart per plot");
    let latency = &select(&page, "figure#latency svg")[0];
    let texts = svg_texts(latency);
    for label in [
        "percentile",
        "latency (ms)",
        "90%",
        "99%",
        "bid round trip",
        "fan-out",
    ] {
        assert!(
            texts.iter().any(|t| t == label),
            "{label:?} not in {texts:?}"
        );
    }
    let rate = svg_texts(&select(&page, "figure#rate svg")[0]);
    assert!(rate.iter().any(|t| t == "bids answered/s"), "{rate:?}");
    assert_eq!(figure_row(&page, "sent"), [report.counts.sent.to_string()]);
    assert_eq!(
        figure_row(&page, "answered"),
        [report.counts.answered.to_string()]
    );
    assert_eq!(
        figure_row(&page, "accepted"),
        [report.counts.accepted.to_string()]
    );
    assert_eq!(figure_row(&page, "unanswered, errors"), ["none"]);
    let round_trip = select(&page, "table#latencies tbody tr")
        .into_iter()
        .map(|tr| {
            select_in(&tr, "th, td")
                .iter()
                .map(text)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells[1] == "bid round trip")
        .unwrap();
    assert_eq!(round_trip[2], report.counts.answered.to_string());
    // The page needs nothing from elsewhere.
    assert!(select(&page, "script, link, img, [src]").is_empty());
    // --svg: the latency chart alone.
    let svg = std::fs::read_to_string(path("auction.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("bid round trip"),
        "{svg:.200}"
    );
    t.server.shutdown().await.unwrap();

    // A baseline, and the summary page over both reports.
    let baseline = loadgen::baseline::run(loadgen::baseline::Options {
        bidders: 4,
        items: 2,
        items_per_bidder: None,
        duration: Duration::from_millis(500),
        progress: false,
        seed: 1,
        echo_exe: None,
        rate: None,
        fan_out: false,
    })
    .await
    .unwrap()
    .report;
    std::fs::write(
        path("baseline.json"),
        serde_json::to_string(&baseline).unwrap(),
    )
    .unwrap();
    let summary = loadgen_output(
        [
            "summarize",
            &path("auction.json"),
            &path("baseline.json"),
            "--html",
            &path("summary.html"),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect(),
    )
    .await;
    assert_eq!(summary.status.code(), Some(0), "{summary:?}");
    let page =
        scraper::Html::parse_document(&std::fs::read_to_string(path("summary.html")).unwrap());
    assert_eq!(select(&page, "svg").len(), 2);
    let texts = svg_texts(&select(&page, "figure#latency svg")[0]);
    for label in [
        "bid round trip (auction)",
        "fan-out (auction)",
        "TLS echo round trip (baseline)",
    ] {
        assert!(
            texts.iter().any(|t| t == label),
            "{label:?} not in {texts:?}"
        );
    }
    assert_eq!(
        figure_row(&page, "answered"),
        [
            report.counts.answered.to_string(),
            baseline.counts.answered.to_string()
        ]
    );
    assert_eq!(
        figure_row(&page, "accepted"),
        [report.counts.accepted.to_string(), "-".to_owned()]
    );
    let medians = text(&select(&page, "pre")[0]);
    assert!(
        medians.contains("auction / baseline answered per second"),
        "{medians}"
    );
}
