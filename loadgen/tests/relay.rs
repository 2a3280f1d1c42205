//! The relay baseline (`loadgen baseline --fan-out`), driven in-process: every line is
//! answered to its sender and reaches every other connection of its item exactly once (the
//! counts add up per connection), closed and open loop, with the fan-out latency recorded for
//! each copy; the report says it is a relay; `loadgen knee` reads its reports.

use loadgen::baseline::{self, Share};
use loadgen::report::Subject;
use std::collections::HashMap;
use std::time::Duration;

fn options(bidders: usize, items: usize) -> baseline::Options {
    baseline::Options {
        bidders,
        items,
        items_per_bidder: None,
        duration: Duration::from_millis(600),
        rate: None,
        fan_out: true,
        progress: false,
        seed: 3,
        echo_exe: None,
    }
}

/// Each connection read exactly the lines the other connections of its item sent, and the
/// report's totals are the sums over the connections.
fn assert_counts_add_up(r: &loadgen::Report, shares: &[Share], connections_per_item: &[usize]) {
    let n = &r.counts;
    let mut sent_on_item: HashMap<usize, u64> = HashMap::new();
    let mut conns_on_item: HashMap<usize, usize> = HashMap::new();
    for s in shares {
        *sent_on_item.entry(s.item).or_default() += s.sent;
        *conns_on_item.entry(s.item).or_default() += 1;
    }
    for (item, &expected) in connections_per_item.iter().enumerate() {
        assert_eq!(
            conns_on_item.get(&item).copied(),
            Some(expected),
            "item {item}"
        );
    }
    for s in shares {
        let others_sent = sent_on_item[&s.item] - s.sent;
        assert_eq!(
            s.relayed, others_sent,
            "bidder {} on item {} read {} copies; the others there sent {others_sent}",
            s.bidder, s.item, s.relayed
        );
    }
    assert_eq!(n.sent, shares.iter().map(|s| s.sent).sum::<u64>());
    let due: u64 = shares
        .iter()
        .map(|s| s.sent * (conns_on_item[&s.item] as u64 - 1))
        .sum();
    assert_eq!(n.relay_due, due);
    assert_eq!(n.relayed, due, "every copy due was read");
    assert_eq!(n.relayed, shares.iter().map(|s| s.relayed).sum::<u64>());
    // One fan-out latency per copy read, one round trip per answer.
    let fan_out = r.latency_us.fan_out.as_ref().expect("fan-out recorded");
    assert_eq!(fan_out.count, n.relayed);
    assert!(fan_out.p50 <= fan_out.p99 && fan_out.p99 <= fan_out.max);
    assert_eq!(
        r.latency_us.bid_round_trip.as_ref().unwrap().count,
        n.answered
    );
    assert!(!r.latency_curves_us.fan_out.is_empty());
}

/// Closed loop, uneven items (5 bidders on 2 items: 3 and 2 connections), the relay a child
/// process as `loadgen baseline --fan-out` runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_relays_every_line_to_every_other_connection_of_its_item() {
    let outcome = baseline::run(baseline::Options {
        echo_exe: Some(env!("CARGO_BIN_EXE_loadgen").into()),
        ..options(5, 2)
    })
    .await
    .unwrap();
    let r = &outcome.report;
    assert!(!r.failed(), "{}", r.table());
    assert_eq!(r.kind, "baseline");
    assert!(r.config.fan_out);
    assert_eq!(r.subject(), Subject::Relay);
    assert_eq!(r.config.mode, "closed");
    assert!(r.counts.sent > 0);
    assert_eq!(r.counts.sent, r.counts.answered);
    assert_eq!(r.counts.unanswered, 0);
    assert_counts_add_up(r, &outcome.shares, &[3, 2]);
    assert!(r.table().contains("relay fan-out"), "{}", r.table());
    // The relay, a child process: its CPU from /proc/PID/stat, per copy its connections read.
    #[cfg(target_os = "linux")]
    {
        let cpu = &r.cpu;
        let server = cpu.server_s.expect("the child's CPU");
        let per_copy = server * 1e6 / r.counts.relayed as f64;
        assert!(
            (cpu.server_us_per_delivered.unwrap() - per_copy).abs() < 0.01,
            "{cpu:?}"
        );
        assert!(cpu.loadgen_us_per_message.is_some());
        assert!(r.table().contains("per line relayed"), "{}", r.table());
    }
}

/// Open loop, every bidder on both items: no more lines than scheduled, and again every copy
/// where it belongs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_relays_every_line_and_sends_no_more_than_scheduled() {
    let outcome = baseline::run(baseline::Options {
        rate: Some(300.0),
        items_per_bidder: Some(2),
        duration: Duration::from_secs(1),
        ..options(4, 2)
    })
    .await
    .unwrap();
    let r = &outcome.report;
    assert!(!r.failed(), "{}", r.table());
    assert_eq!(r.config.mode, "open");
    assert_eq!(r.config.target_rate, Some(300.0));
    // 300/s for 1 s; each bidder's first line is due within the first interval.
    assert!(
        r.counts.sent > 0 && r.counts.sent <= 300 + 4,
        "{}",
        r.counts.sent
    );
    assert_eq!(r.counts.sent, r.counts.answered);
    let f = r.throughput.achieved_fraction.unwrap();
    assert!(f > 0.0 && f <= 1.1, "achieved fraction {f}");
    assert_counts_add_up(r, &outcome.shares, &[4, 4]);
    // The relay inside this process: neither its CPU nor loadgen's can be told apart.
    assert_eq!((r.cpu.server_s, r.cpu.loadgen_s), (None, None));
}

/// The echo sends nothing to anyone else: no copies due, none read, no fan-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_relays_nothing() {
    let outcome = baseline::run(baseline::Options {
        fan_out: false,
        rate: Some(200.0),
        ..options(4, 2)
    })
    .await
    .unwrap();
    let r = &outcome.report;
    assert!(!r.failed(), "{}", r.table());
    assert_eq!(r.subject(), Subject::Echo);
    assert_eq!(r.config.mode, "open");
    assert!(r.counts.answered > 0);
    assert_eq!((r.counts.relay_due, r.counts.relayed), (0, 0));
    assert!(r.latency_us.fan_out.is_none());
    assert!(outcome.shares.iter().all(|s| s.relayed == 0));
}

/// `loadgen knee` over relay reports at two rates: both steps in the JSON summary, in rate
/// order, and exit code 0 (no errors), whatever the latencies were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knee_reads_the_relay_reports() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for rate in [400.0, 200.0] {
        let r = baseline::run(baseline::Options {
            rate: Some(rate),
            duration: Duration::from_millis(500),
            ..options(4, 2)
        })
        .await
        .unwrap()
        .report;
        let path = dir.path().join(format!("relay-{rate}.json"));
        std::fs::write(&path, serde_json::to_string(&r).unwrap()).unwrap();
        paths.push(path);
    }
    let json = dir.path().join("knee.json");
    let out = tokio::task::spawn_blocking({
        let (paths, json) = (paths.clone(), json.clone());
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
                .arg("knee")
                .args(&paths)
                .arg("--json")
                .arg(&json)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("relay knee:"), "{text}");
    let knees: loadgen::knee::Knees =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(!knees.failed);
    let rates: Vec<f64> = knees.relay.steps.iter().map(|s| s.rate).collect();
    assert_eq!(rates, [200.0, 400.0]);
    assert!(knees.auction.steps.is_empty());
    assert_eq!(knees.ratio, None);
    assert!(knees.relay.steps.iter().all(|s| s.p99_fan_out_ms.is_some()));
}
