//! `loadgen readme` (what `scripts/perf-readme.sh` runs) over fixture reports of the three sets:
//! every figure in the block is the one the JSON reports give (recomputed here from the JSON:
//! medians, pairs, knees, CPU ratios), `--write` changes nothing outside the markers, and
//! `--check` fails as soon as a report's figure or the README's block is altered.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Output;

/// A report as `loadgen --json` writes it: `kind` "auction", "echo" or "relay".
fn report(kind: &str, round: u32, rate: Option<f64>, per_channel: usize) -> Value {
    let (bidders, items) = (500, 20);
    json!({
        "schema": "auction-loadgen/1",
        "kind": if kind == "auction" { "auction" } else { "baseline" },
        "started_at": 1_767_225_600u64 + u64::from(round) * 60,
        "config": {
            "server": if kind == "auction" { json!("127.0.0.1:7400") } else { Value::Null },
            "bidders": bidders, "items": items, "items_per_bidder": per_channel,
            "duration_s": 2.0, "mode": if rate.is_some() { "open" } else { "closed" },
            "target_rate": rate, "seed": 1, "verify": kind == "auction",
            "fan_out": kind == "relay", "round": round
        },
        "machine": {"cores": 2, "os": "linux", "arch": "x86_64", "loadgen_version": "0.1.0",
                    "kernel": "6.1.0", "memory_bytes": 25_769_803_776u64, "cpu_model": "Test CPU"},
        "spread": {"channels": bidders * per_channel, "bidders_per_item_min": 25 * per_channel,
                   "bidders_per_item_max": 25 * per_channel},
        "elapsed_s": 2.0,
        "counts": {"sent": 1000, "answered": 1000, "accepted": 100, "rejected": {"too-low": 900},
                   "deliberately_low": 50, "unanswered": 0, "errors": {}},
        "throughput": {"answered_per_s": 500.0, "accepted_per_s": 50.0, "target_rate": rate,
                       "achieved_fraction": rate.map(|_| 0.998), "per_second": [500, 500]},
        "latency_us": {
            "bid_round_trip": {"count": 1000, "min": 100, "mean": 900.0, "p50": 800, "p90": 1500,
                               "p99": 3000, "p999": 4000, "max": 5000},
            "fan_out": null,
            "tls_connect": {"count": 500, "min": 1000, "mean": 9000.0, "p50": 8000, "p90": 15000,
                            "p99": 30000, "p999": 31000, "max": 32000},
            "udp_register": null,
            "send_lag": rate.map(|_| json!({"count": 1000, "min": 1, "mean": 900.0, "p50": 800,
                "p90": 1500, "p99": 2000, "p999": 2500, "max": 3000}))
        },
        "verify": if kind == "auction" {
            json!({"passed": true, "items_checked": items, "problems": []})
        } else { Value::Null },
        "server": if kind == "auction" {
            json!({"url": "http://127.0.0.1:9400/metrics", "open_connections": bidders * per_channel,
                   "rss_before_channels_bytes": 10_485_760.0, "rss_with_channels_bytes": 20_971_520.0,
                   "rss_per_channel_bytes": 20_480.0})
        } else { Value::Null },
        "cpu": {"server_s": 1.0, "loadgen_s": 1.0, "server_us_per_answer": 100.0,
                "server_us_per_delivered": if kind == "echo" { Value::Null } else { json!(10.0) },
                "server_us_per_message": 9.0, "loadgen_us_per_message": 5.0},
        "notes": []
    })
}

/// The three sets, with figures that differ from round to round and rate to rate.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for set in ["bench", "channels", "knee"] {
            std::fs::create_dir(dir.path().join(set)).unwrap();
        }
        let f = Fixture { dir };
        for round in 1..=3u32 {
            let r = f64::from(round);
            // The closed loop: auction and echo, pair by pair.
            let mut a = report("auction", round, None, 1);
            a["throughput"]["answered_per_s"] =
                json!([31_234.0, 36_230.0, 29_151.0][round as usize - 1]);
            a["cpu"]["server_us_per_answer"] = json!(40.0 + r);
            a["cpu"]["loadgen_us_per_message"] = json!(7.5 + r / 10.0);
            f.write("bench", &format!("auction-{round}.json"), &a);
            let mut e = report("echo", round, None, 1);
            e["throughput"]["answered_per_s"] =
                json!([118_810.0, 110_393.0, 125_000.0][round as usize - 1]);
            e["cpu"]["server_us_per_answer"] = json!(9.0 + r);
            e["cpu"]["loadgen_us_per_message"] = json!(4.0 + r / 10.0);
            f.write("bench", &format!("baseline-{round}.json"), &e);
            // Every bidder on every item.
            let mut a = report("auction", round, None, 20);
            a["server"]["rss_per_channel_bytes"] = json!(25_000.0 + 300.0 * r);
            a["server"]["rss_with_channels_bytes"] = json!(260_000_000.0 + r * 1e6);
            a["throughput"]["answered_per_s"] = json!(3_700.0 + r);
            f.write("channels", &format!("auction-{round}.json"), &a);
            let e = report("echo", round, None, 20);
            f.write("channels", &format!("baseline-{round}.json"), &e);
            // The knee: auction within at 500 only (round 2: at both), relay at both.
            for rate in [500.0, 1000.0] {
                let over = rate == 1000.0 && round != 2;
                let mut a = report("auction", round, Some(rate), 1);
                a["latency_us"]["bid_round_trip"]["p99"] = json!(if over {
                    9_000 + round * 100
                } else {
                    3_000 + round * 100
                });
                a["latency_us"]["fan_out"] = json!({"count": 10, "min": 1, "mean": 1.0, "p50": 1,
                    "p90": 1, "p99": 2_000 + round * 10, "p999": 1, "max": 1});
                a["latency_us"]["send_lag"]["p99"] = json!(1_500 + round * 100);
                a["cpu"]["server_us_per_delivered"] = json!(12.0 + r + rate / 1000.0);
                a["cpu"]["loadgen_us_per_message"] = json!(6.0 + r);
                f.write("knee", &format!("auction-{rate}-round{round}.json"), &a);
                let mut l = report("relay", round, Some(rate), 1);
                l["latency_us"]["bid_round_trip"]["p99"] = json!(2_000 + round * 100);
                l["latency_us"]["fan_out"] = json!({"count": 10, "min": 1, "mean": 1.0, "p50": 1,
                    "p90": 1, "p99": 900 + round * 10, "p999": 1, "max": 1});
                l["cpu"]["server_us_per_delivered"] = json!(8.0 + r / 2.0);
                l["cpu"]["loadgen_us_per_message"] = json!(4.0 + r);
                f.write("knee", &format!("relay-{rate}-round{round}.json"), &l);
            }
        }
        // A knee summary beside the reports is not a report: left out.
        f.write(
            "knee",
            "knee.json",
            &json!({"schema": "auction-loadgen-knee/1"}),
        );
        f
    }

    fn path(&self, set: &str, name: &str) -> PathBuf {
        self.dir.path().join(set).join(name)
    }

    fn write(&self, set: &str, name: &str, v: &Value) {
        std::fs::write(
            self.path(set, name),
            serde_json::to_string_pretty(v).unwrap(),
        )
        .unwrap();
    }

    fn read(&self, set: &str, name: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.path(set, name)).unwrap()).unwrap()
    }

    /// `loadgen readme` over the three sets, with `extra` flags.
    fn readme(&self, extra: &[&str]) -> Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"));
        cmd.arg("readme");
        for set in ["bench", "channels", "knee"] {
            cmd.arg(format!("--{set}")).arg(self.dir.path().join(set));
        }
        cmd.args(extra).output().unwrap()
    }

    fn block(&self) -> String {
        let out = self.readme(&[]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }
}

// Formatting as the block does: computed here from the JSON, independently of loadgen.
fn thousands(v: f64) -> String {
    let s = (v.round() as u64).to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

/// The table row of the block starting with `| {first} |`.
fn row<'a>(block: &'a str, first: &str) -> Vec<&'a str> {
    let start = format!("| {first} |");
    let line = block
        .lines()
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("no row {start} in\n{block}"));
    line.trim_matches('|').split('|').map(str::trim).collect()
}

/// All table rows of the block starting with `| {first} |`, in order.
fn rows<'a>(block: &'a str, first: &str) -> Vec<Vec<&'a str>> {
    let start = format!("| {first} |");
    block
        .lines()
        .filter(|l| l.starts_with(&start))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect()
}

#[test]
fn the_block_holds_the_reports_figures() {
    let fx = Fixture::new();
    let block = fx.block();
    assert!(block.starts_with("<!-- perf:begin -->\n"), "{block}");
    assert!(block.ends_with("<!-- perf:end -->\n"));
    assert!(
        block.contains(
            "Measured 2026-01-01 (UTC) on 2 cores (Test CPU), 24.0 GiB, Linux 6.1.0 (x86_64)"
        ),
        "{block}"
    );
    assert!(
        block.contains("`ROUNDS=3 DURATION=2s scripts/bench.sh`"),
        "{block}"
    );
    assert!(block.contains(
        "`ROUNDS=3 DURATION=2s LOADGEN_ARGS=\"--items-per-bidder 20\" scripts/bench.sh`"
    ));
    assert!(
        block.contains("`KNEE_ROUNDS=3 KNEE_SECONDS=2 KNEE_RATES=\"500 1000\" scripts/knee.sh`")
    );

    // The closed loop: each pair, then the medians.
    let mut ratios = Vec::new();
    let (mut auction, mut echo) = (Vec::new(), Vec::new());
    let closed = rows(&block, "1");
    assert_eq!(
        closed.len(),
        2,
        "round 1 of the closed loop and of the channels"
    );
    for round in 1..=3 {
        let a = fx.read("bench", &format!("auction-{round}.json"));
        let e = fx.read("bench", &format!("baseline-{round}.json"));
        let (ap, ep) = (
            f(&a["throughput"]["answered_per_s"]),
            f(&e["throughput"]["answered_per_s"]),
        );
        let r = &rows(&block, &round.to_string())[0];
        assert_eq!(r[1], thousands(ap));
        assert_eq!(r[2], thousands(ep));
        assert_eq!(r[3], format!("{:.1} %", ap / ep * 100.0));
        assert_eq!(
            r[4],
            format!(
                "{:.2} µs / {:.2} µs",
                f(&a["cpu"]["server_us_per_answer"]),
                f(&e["cpu"]["server_us_per_answer"])
            )
        );
        assert_eq!(
            r[5],
            format!(
                "{:.2} µs / {:.2} µs",
                f(&a["cpu"]["loadgen_us_per_message"]),
                f(&e["cpu"]["loadgen_us_per_message"])
            )
        );
        ratios.push(ap / ep);
        auction.push(ap);
        echo.push(ep);
    }
    let m = &rows(&block, "median")[0];
    assert_eq!(m[1], thousands(median(auction.clone())));
    assert_eq!(m[2], thousands(median(echo.clone())));
    assert_eq!(m[3], format!("{:.1} %", median(ratios.clone()) * 100.0));
    let bench_median = |name: &str, field: &str| {
        median(
            (1..=3)
                .map(|n| f(&fx.read("bench", &format!("{name}-{n}.json"))["cpu"][field]))
                .collect(),
        )
    };
    assert_eq!(
        m[4],
        format!(
            "{:.2} µs / {:.2} µs",
            bench_median("auction", "server_us_per_answer"),
            bench_median("baseline", "server_us_per_answer")
        )
    );
    let (lg_auction, lg_echo) = (
        bench_median("auction", "loadgen_us_per_message"),
        bench_median("baseline", "loadgen_us_per_message"),
    );
    assert_eq!(m[5], format!("{lg_auction:.2} µs / {lg_echo:.2} µs"));
    assert_eq!(
        row(&block, "closed loop")[1..],
        [
            format!("{lg_auction:.2} µs"),
            format!("{lg_echo:.2} µs (TLS echo)"),
            format!("{:.2}", lg_auction / lg_echo)
        ]
    );
    let target = row(&block, "closed loop ≥ 50 % of the TLS echo baseline");
    assert!(
        target[1].contains(&format!("**{:.1} %**", median(ratios.clone()) * 100.0)),
        "{target:?}"
    );
    // The figures beside it are the median pair's, one round's, not medians of each column.
    let m = median(ratios.clone());
    let pair = ratios.iter().position(|&r| r == m).unwrap();
    assert!(
        target[1].starts_with(&format!(
            "round {}: {} bids answered/s vs {} echoes/s",
            pair + 1,
            thousands(auction[pair]),
            thousands(echo[pair])
        )),
        "{target:?}"
    );
    assert_eq!(target[2], "no");

    // Memory per channel and the 10,000 channels.
    let kib: Vec<f64> = (1..=3)
        .map(|n| {
            f(
                &fx.read("channels", &format!("auction-{n}.json"))["server"]
                    ["rss_per_channel_bytes"],
            ) / 1024.0
        })
        .collect();
    let target = row(&block, "server memory < 40 KiB per open channel");
    assert_eq!(
        target[1],
        format!(
            "**{:.1} KiB** ({:.1}, {:.1}, {:.1}) with 10,000 channels",
            median(kib.clone()),
            kib[0],
            kib[1],
            kib[2]
        )
    );
    assert_eq!(target[2], "yes");
    assert_eq!(
        row(
            &block,
            "10,000 channels (every bidder on every item) without errors"
        )[2],
        "yes"
    );
    let channels_round_2 = &rows(&block, "2")[1];
    let a2 = fx.read("channels", "auction-2.json");
    assert_eq!(channels_round_2[1], "10,000");
    assert_eq!(channels_round_2[3], "yes");
    assert_eq!(
        channels_round_2[5],
        format!(
            "{:.1} MiB",
            f(&a2["server"]["rss_with_channels_bytes"]) / 1048576.0
        )
    );
    assert_eq!(channels_round_2[6], format!("{:.1} KiB", kib[1]));
    assert_eq!(
        channels_round_2[8],
        thousands(f(&a2["throughput"]["answered_per_s"]))
    );
    let channels_median = &rows(&block, "median")[1];
    assert_eq!(
        channels_median[6],
        format!("{:.1} KiB", median(kib.clone()))
    );
    let with: Vec<f64> = (1..=3)
        .map(|n| {
            f(&fx.read("channels", &format!("auction-{n}.json"))["server"]
                ["rss_with_channels_bytes"])
                / 1048576.0
        })
        .collect();
    assert_eq!(channels_median[5], format!("{:.1} MiB", median(with)));

    // The knee table: each rate's medians over the rounds.
    for rate in [500.0, 1000.0] {
        let r = row(&block, &thousands(rate));
        let p99 = |kind: &str, field: &str| -> String {
            let v: Vec<f64> = (1..=3)
                .map(|n| {
                    f(
                        &fx.read("knee", &format!("{kind}-{rate}-round{n}.json"))["latency_us"]
                            [field]["p99"],
                    ) / 1000.0
                })
                .collect();
            format!("{:.1} ms", median(v))
        };
        assert_eq!(
            r[1..],
            [
                p99("auction", "bid_round_trip"),
                p99("auction", "fan_out"),
                p99("auction", "send_lag"),
                p99("relay", "bid_round_trip"),
                p99("relay", "fan_out"),
                p99("relay", "send_lag"),
            ],
            "{rate}"
        );
    }
    // Round knees 500, 1000, 500: the median 500, over at 1,000; the relay within everywhere.
    assert!(block.contains("auction 500 bids/s (over at 1,000); rounds: 500, 1,000, 500; relay ≥ 1,000 bids/s (within at every rate tried)"), "{block}");
    // CPU per delivered line: the median of each round's pair at the same rate.
    for rate in [500.0, 1000.0] {
        let cpu = |kind: &str, n: u32| {
            f(
                &fx.read("knee", &format!("{kind}-{rate}-round{n}.json"))["cpu"]
                    ["server_us_per_delivered"],
            )
        };
        let pairs: Vec<f64> = (1..=3)
            .map(|n| ((cpu("auction", n) / cpu("relay", n)) * 1000.0).round() / 1000.0)
            .collect();
        let cpu_rows = rows(&block, &thousands(rate));
        let r = &cpu_rows[1];
        assert_eq!(
            r[1],
            format!(
                "{:.2} µs",
                median((1..=3).map(|n| cpu("auction", n)).collect())
            )
        );
        assert_eq!(
            r[2],
            format!(
                "{:.2} µs",
                median((1..=3).map(|n| cpu("relay", n)).collect())
            )
        );
        assert_eq!(
            r[3],
            format!(
                "{:.2} ({:.2}, {:.2}, {:.2})",
                median(pairs.clone()),
                pairs[0],
                pairs[1],
                pairs[2]
            )
        );
        assert_eq!(r[4], if median(pairs) <= 1.5 { "yes" } else { "no" });
    }
    // loadgen's own cost, auction run against relay run.
    let lg = |kind: &str| {
        median(
            (1..=3)
                .map(|n| {
                    f(
                        &fx.read("knee", &format!("{kind}-1000-round{n}.json"))["cpu"]
                            ["loadgen_us_per_message"],
                    )
                })
                .collect(),
        )
    };
    let r = row(&block, "1,000 bids/s");
    assert_eq!(r[1], format!("{:.2} µs", lg("auction")));
    assert_eq!(r[2], format!("{:.2} µs (TLS relay)", lg("relay")));
    assert_eq!(r[3], format!("{:.2}", lg("auction") / lg("relay")));
}

#[test]
fn write_touches_only_the_block_and_check_catches_any_alteration() {
    let fx = Fixture::new();
    let readme = fx.dir.path().join("README.md");
    let around = ("# Title\n\nProse before.\n\n", "\nProse after, kept.\n");
    std::fs::write(
        &readme,
        format!(
            "{}<!-- perf:begin -->\nhand-typed figures\n<!-- perf:end -->\n{}",
            around.0, around.1
        ),
    )
    .unwrap();
    let path = readme.to_str().unwrap();
    assert_eq!(
        fx.readme(&["--check", path]).status.code(),
        Some(1),
        "the hand-typed block differs"
    );
    assert_eq!(fx.readme(&["--write", path]).status.code(), Some(0));
    let written = std::fs::read_to_string(&readme).unwrap();
    assert_eq!(written, format!("{}{}{}", around.0, fx.block(), around.1));
    assert_eq!(fx.readme(&["--check", path]).status.code(), Some(0));

    // A figure altered in the README by hand: the check fails.
    let median_row = written
        .lines()
        .find(|l| l.starts_with("| median |"))
        .unwrap();
    let altered = written.replacen(
        median_row,
        &median_row.replacen("| median | ", "| median | 9", 1),
        1,
    );
    std::fs::write(&readme, &altered).unwrap();
    let out = fx.readme(&["--check", path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run scripts/perf-readme.sh"));
    std::fs::write(&readme, &written).unwrap();

    // A report's figure altered: the README no longer matches, and the new block has it.
    let mut a = fx.read("bench", "auction-2.json");
    a["throughput"]["answered_per_s"] = json!(12_345.0);
    fx.write("bench", "auction-2.json", &a);
    assert_eq!(fx.readme(&["--check", path]).status.code(), Some(1));
    let block = fx.block();
    assert_eq!(rows(&block, "2")[0][1], "12,345");
    let mut k = fx.read("knee", "relay-500-round3.json");
    k["cpu"]["server_us_per_delivered"] = json!(1.0);
    fx.write("knee", "relay-500-round3.json", &k);
    assert_ne!(fx.block(), block, "a CPU figure of the knee shows");

    // No markers: an error that says where they go, and the file is left alone.
    let plain = fx.dir.path().join("PLAIN.md");
    std::fs::write(&plain, "no markers\n").unwrap();
    let out = fx.readme(&["--write", plain.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("<!-- perf:begin -->"),
        "{out:?}"
    );
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), "no markers\n");
}

#[test]
fn a_missing_set_says_not_measured() {
    let fx = Fixture::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["readme", "--bench"])
        .arg(fx.dir.path().join("bench"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let block = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        row(&block, "server memory < 40 KiB per open channel")[1],
        "not measured"
    );
    assert!(row(
        &block,
        "server CPU per HIGHEST delivered ≤ 1.5 × the relay's per line relayed, at the same rate"
    )[2]
    .starts_with("not known"));
    // Nothing given at all: a usage error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("readme")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
