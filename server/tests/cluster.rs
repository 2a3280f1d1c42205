//! Nodes of a cluster as real processes on one real PostgreSQL (started by the test), each on
//! its own loopback address: the node running an auction killed while four bidders stream bids,
//! the leader killed with notices pending, a leader cut off from the database, and one frozen
//! past its lease. Nothing acknowledged may be lost, and everything goes on through a node.

mod common;

use auction_client::{BidResult, Client, ItemSession, Offer, Reconnect, Update};
use auction_protocol::udp::ServerBody;
use auction_protocol::{Cents, ItemState};
use auction_server::postgres;
use common::cluster::{certificates_for, cluster_client, node_on, status};
use common::postgres::Postgres;
use common::within;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A bid a client saw accepted: when, by whom, how much, with which id.
type Seen = (Instant, String, Cents, String);

/// Registers `name` through the cluster.
async fn person(dir: &std::path::Path, nodes: &[SocketAddr], name: &str) -> Arc<Client> {
    let c = cluster_client(dir, nodes, name).await;
    c.register(name).await.unwrap();
    Arc::new(c)
}

/// Bids on `item` through a reconnecting session until `stop`, each bid just above the price
/// it last heard of; every acceptance goes to `seen` with the time it arrived.
async fn stream_bids(
    client: Arc<Client>,
    item: u64,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let name = client.name().unwrap();
    let policy = Reconnect {
        give_up_after: Duration::from_secs(60),
        ..Reconnect::default()
    };
    let mut session = ItemSession::open(client, item, policy).await.unwrap();
    let mut next = Cents(100);
    for n in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let id = format!("{name}-{n}");
        let amount = Cents(next.0 + rand::random_range(0..3));
        match session.bid(Offer::Amount(amount), id.clone(), |_| {}).await {
            Ok(BidResult::Accepted { amount, .. }) => {
                seen.lock()
                    .unwrap()
                    .push((Instant::now(), name.clone(), amount, id));
                next = Cents(amount.0 + 1);
            }
            Ok(BidResult::Rejected { next_min, .. }) => next = next_min.max(next),
            Err(e) => panic!("{name}: the session gave up: {e}"),
        }
    }
}

/// Bidders streaming bids on one item ([`stream_bids`]), each registered through the cluster.
struct Streams {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Streams {
    async fn start(
        dir: &std::path::Path,
        nodes: &[SocketAddr],
        item: u64,
        names: &[&str],
    ) -> Streams {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let mut tasks = Vec::new();
        for name in names {
            let bidder = person(dir, nodes, name).await;
            tasks.push(tokio::spawn(stream_bids(
                bidder,
                item,
                stop.clone(),
                seen.clone(),
            )));
        }
        Streams { stop, seen, tasks }
    }

    /// Waits until a bid is acknowledged after `t`.
    async fn acknowledged_after(&self, t: Instant, what: &str) {
        within(30, what, async {
            while !self.seen.lock().unwrap().iter().any(|s| s.0 > t) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// Stops the bidders; every bid they saw accepted.
    async fn finish(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            within(30, "the bidders to stop", t).await.unwrap();
        }
        let seen = self.seen.lock().unwrap().clone();
        seen
    }
}

/// Every acknowledged bid is in the database once, as acknowledged.
async fn check_acknowledged(url: &str, item: u64, seen: &[Seen]) {
    let db = postgres::connect(url).await.unwrap();
    for (_, bidder, amount, id) in seen {
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM bids b JOIN accounts a ON a.id = b.bidder
                 WHERE b.item = $1 AND a.name = $2 AND b.bid_id = $3 AND b.accepted
                   AND b.amount_cents = $4",
                &[&(item as i64), bidder, id, &(amount.0 as i64)],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "accepted bid {id} ({amount}) is missing or doubled");
    }
}

/// The longest time between two acknowledgements around `cut`: the last one before it and the
/// first one after.
fn gap_around(seen: &[Seen], cut: Instant) -> Duration {
    let before = seen.iter().map(|s| s.0).filter(|t| *t <= cut).max();
    let after = seen.iter().map(|s| s.0).filter(|t| *t > cut).min();
    match (before, after) {
        (Some(b), Some(a)) => a - b,
        _ => panic!("no acknowledgement on both sides of the cut"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_bidders_stream_through_a_kill_9_of_the_node_running_the_item() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    certificates_for(dir, &["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
    let n1 = node_on(dir, &pg.url, "n1", "127.0.0.1", &[]).await;
    let n2 = node_on(dir, &pg.url, "n2", "127.0.0.2", &[]).await;
    let n3 = node_on(dir, &pg.url, "n3", "127.0.0.3", &[]).await;
    let nodes = [n1.udp, n2.udp, n3.udp];

    let seller = person(dir, &nodes, "seller").await;
    let lot = seller.offer("Clock", Cents(100), Some(20)).await.unwrap();
    assert_eq!(status(&pg.url)["open_items"][0]["owner"], "n1");
    let streams = Streams::start(dir, &nodes, lot.item, &["b1", "b2", "b3", "b4"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    n1.kill_9().await;
    let cut = Instant::now();
    streams
        .acknowledged_after(cut, "bids to be acknowledged after the kill")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = streams.finish().await;
    let gap = gap_around(&seen, cut);
    eprintln!(
        "kill -9 of the item's node: {} bids acknowledged; {gap:?} between the last \
         acknowledgement before the kill and the first after",
        seen.len()
    );
    assert!(gap < Duration::from_secs(15), "{gap:?}");
    check_acknowledged(&pg.url, lot.item, &seen).await;

    // The auction ends on the new node, won by the best acknowledged bid.
    let (_, best_bidder, best, _) = seen.iter().max_by_key(|s| s.2).unwrap().clone();
    let view = within(40, "the auction to end", async {
        loop {
            let view = seller.status(lot.item).await.unwrap();
            if view.state == ItemState::Closed {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    assert_eq!(view.winner.as_deref(), Some(best_bidder.as_str()));
    assert_eq!(view.price, Some(best));
    let report = status(&pg.url);
    let leader = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["leader"] == true)
        .unwrap()["name"]
        .clone();
    assert_ne!(leader, "n1");
    for n in [n2, n3] {
        assert!(n.terminate().await.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_delivers_pending_notices_once_and_takes_registrations_and_offers() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    certificates_for(dir, &["127.0.0.1", "127.0.0.2"]);
    let n1 = node_on(dir, &pg.url, "n1", "127.0.0.1", &[]).await;
    let n2 = node_on(dir, &pg.url, "n2", "127.0.0.2", &[]).await;
    let nodes = [n1.udp, n2.udp];

    // The winner and the seller are away when the auction ends: their WIN and SOLD wait.
    let lot = {
        let seller = person(dir, &nodes, "seller").await;
        let winner = person(dir, &nodes, "winner").await;
        let lot = seller.offer("Lamp", Cents(100), Some(2)).await.unwrap();
        let mut channel = winner.open_item(lot.item).await.unwrap();
        let bid = channel.bid(Cents(150), Some("w-1".into())).await.unwrap();
        assert!(matches!(bid, BidResult::Accepted { .. }), "{bid:?}");
        lot
    };
    let db = postgres::connect(&pg.url).await.unwrap();
    within(20, "the auction to end with its notices stored", async {
        loop {
            let pending: i64 = db
                .query_one(
                    "SELECT count(*) FROM notices WHERE item = $1 AND acked_at IS NULL",
                    &[&(lot.item as i64)],
                )
                .await
                .unwrap()
                .get(0);
            if pending == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    n1.kill_9().await;
    let killed = Instant::now();
    // Someone new registers and offers through the cluster meanwhile: the new leader takes it.
    let newcomer = cluster_client(dir, &nodes, "newcomer").await;
    newcomer.register("newcomer").await.unwrap();
    let registered = killed.elapsed();
    newcomer.offer("Vase", Cents(100), Some(60)).await.unwrap();
    eprintln!("leader killed: a registration through the cluster took {registered:?}");
    assert!(registered < Duration::from_secs(15), "{registered:?}");

    // Back, each learns its result once.
    for (name, want) in [("winner", "win"), ("seller", "sold")] {
        let c = cluster_client(dir, &nodes, name).await;
        c.attach().await.unwrap();
        let mut got = Vec::new();
        let until = tokio::time::Instant::now() + Duration::from_secs(4);
        while let Ok(Some(update)) = tokio::time::timeout_at(until, c.next_update()).await {
            if let Update::Announcement(m @ (ServerBody::Win { .. } | ServerBody::Sold { .. })) =
                update
            {
                got.push(m);
            }
        }
        assert_eq!(got.len(), 1, "{name}: {got:?}");
        let kind = match &got[0] {
            ServerBody::Win { item, .. } | ServerBody::Sold { item, .. } => {
                assert_eq!(*item, lot.item);
                if matches!(got[0], ServerBody::Win { .. }) {
                    "win"
                } else {
                    "sold"
                }
            }
            _ => unreachable!(),
        };
        assert_eq!(kind, want);
    }
    assert!(n2.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_database_steps_down_and_nothing_acknowledged_is_lost() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    certificates_for(dir, &["127.0.0.1", "127.0.0.2"]);
    let n1 = node_on(dir, &pg.url, "n1", "127.0.0.1", &[]).await;
    let n2 = node_on(dir, &pg.url, "n2", "127.0.0.2", &[]).await;
    let nodes = [n1.udp, n2.udp];
    let seller = person(dir, &nodes, "seller").await;
    let lot = seller.offer("Desk", Cents(100), Some(60)).await.unwrap();
    let streams = Streams::start(dir, &nodes, lot.item, &["b1", "b2"]).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // PostgreSQL ends every connection of n1 (its writer's among them).
    let db = postgres::connect(&pg.url).await.unwrap();
    let ended: i64 = db
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                                   WHERE application_name LIKE 'auction-server n1 %') t",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ended >= 2, "{ended} connections of n1 ended");
    let cut = Instant::now();
    // Its next commit fails: it steps down rather than serve without its database, and stands
    // by again (then whichever node takes the lease first leads).
    within(20, "n1 to step down", async {
        while !n1.log().contains("stepped down") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    streams
        .acknowledged_after(cut, "bids to be acknowledged again")
        .await;
    let seen = streams.finish().await;
    eprintln!(
        "n1's connections ended: {} bids acknowledged; {:?} without one",
        seen.len(),
        gap_around(&seen, cut)
    );
    check_acknowledged(&pg.url, lot.item, &seen).await;
    for n in [n1, n2] {
        assert!(n.terminate().await.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_past_its_lease_commits_nothing_more_and_rejoins_as_a_standby() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    certificates_for(dir, &["127.0.0.1", "127.0.0.2"]);
    let quick = ["--heartbeat", "200ms", "--lease", "1s"];
    let n1 = node_on(dir, &pg.url, "n1", "127.0.0.1", &quick).await;
    let n2 = node_on(dir, &pg.url, "n2", "127.0.0.2", &quick).await;
    let nodes = [n1.udp, n2.udp];
    let seller = person(dir, &nodes, "seller").await;
    let lot = seller.offer("Chair", Cents(100), Some(60)).await.unwrap();
    let streams = Streams::start(dir, &nodes, lot.item, &["b1", "b2"]).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // n1 freezes for three leases: n2 fences it and takes over meanwhile.
    let pid = n1.child.id().unwrap().to_string();
    let signal = |sig: &str| {
        let sent = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    signal("-STOP");
    let cut = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(status(&pg.url)["nodes"][1]["leader"], true, "n2 leads");
    signal("-CONT");
    // Back, n1 finds itself fenced: whatever it judged meanwhile cannot commit, so it
    // acknowledges none of it; it steps down and stands by again under a new epoch.
    within(20, "n1 to step down and stand by again", async {
        while n1.log().matches("auction-server standing by").count() < 1
            || !n1.log().contains("stepped down")
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    streams
        .acknowledged_after(
            cut + Duration::from_secs(3),
            "bids to be acknowledged by n2",
        )
        .await;
    let seen = streams.finish().await;
    check_acknowledged(&pg.url, lot.item, &seen).await;
    let report = status(&pg.url);
    let n1_row = &report["nodes"][0];
    assert_eq!(n1_row["name"], "n1");
    assert_eq!(
        (n1_row["alive"].clone(), n1_row["fenced"].clone()),
        (true.into(), false.into()),
        "n1 rejoined: {n1_row}"
    );
    assert!(n1_row["epoch"].as_i64().unwrap() >= 3, "{n1_row}");
    for n in [n1, n2] {
        assert!(n.terminate().await.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_across_the_cluster_verifies_with_the_leader_killed_mid_run() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    certificates_for(dir, &["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
    // One host plays every bidder: its budgets are raised as scripts/bench.sh does.
    let budgets = [
        "--bid-rate",
        "1000000",
        "--bid-burst",
        "1000000",
        "--accounts-per-hour",
        "1000000",
        "--max-handshakes-per-source",
        "1024",
    ];
    let n1 = node_on(dir, &pg.url, "n1", "127.0.0.1", &budgets).await;
    let n2 = node_on(dir, &pg.url, "n2", "127.0.0.2", &budgets).await;
    let n3 = node_on(dir, &pg.url, "n3", "127.0.0.3", &budgets).await;
    let options = loadgen::Options {
        server: n1.udp,
        cluster: vec![n1.udp, n2.udp, n3.udp],
        ca: dir.join("certs/ca.pem"),
        bidders: 24,
        items: 4,
        items_per_bidder: None,
        duration: Duration::from_secs(8),
        rate: None,
        verify: true,
        seed: 11,
        item_duration: Some(Duration::from_secs(20)),
        progress: false,
        metrics_url: None,
        stalled: 0,
    };
    let run = tokio::spawn(loadgen::run(options));
    // Well into the measured phase (set-up takes a moment), the leader dies.
    let db = postgres::connect(&pg.url).await.unwrap();
    within(30, "bids to be stored", async {
        loop {
            let bids: i64 = db
                .query_one("SELECT count(*) FROM bids", &[])
                .await
                .unwrap()
                .get(0);
            if bids > 100 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    n1.kill_9().await;
    let outcome = within(120, "loadgen to finish", run)
        .await
        .unwrap()
        .unwrap();
    let r = &outcome.report;
    eprintln!("{}", r.table());
    let v = r.verify.as_ref().unwrap();
    assert!(v.passed, "{v:?}");
    assert!(!r.failed(), "{}", r.table());
    // Every channel was on the leader that died: each was reopened, once.
    assert_eq!(r.counts.reconnected, r.spread.channels as u64);
    assert_eq!(r.counts.unanswered, 0);
    assert_eq!(r.counts.sent, r.counts.answered);
    for n in [n2, n3] {
        assert!(n.terminate().await.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_answers_a_flooding_source_only_within_its_rate() {
    use auction_protocol::udp::{self, Request, RequestBody};
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    certificates_for(dir, &["127.0.0.1", "127.0.0.2"]);
    let n1 = node_on(dir, &pg.url, "n1", "127.0.0.1", &[]).await;
    let limited = ["--udp-rate", "5", "--udp-burst", "5"];
    let n2 = node_on(dir, &pg.url, "n2", "127.0.0.2", &limited).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for req in 1..=200u64 {
        let request = udp::encode_request(&Request {
            v: auction_protocol::VERSION,
            req,
            cookie: None,
            body: RequestBody::Status { item: 1 },
        });
        sock.send_to(&request, n2.udp).await.unwrap();
    }
    let mut redirects = 0;
    let mut buf = vec![0u8; 2048];
    let until = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(until, sock.recv_from(&mut buf)).await {
        match udp::decode_server(&buf[..n]).unwrap().body {
            ServerBody::Redirect { leader, .. } => {
                assert_eq!(leader, n1.udp.to_string());
                redirects += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    // A burst of 5, then 5 a second: 200 datagrams get a handful of answers, not 200.
    assert!((1..=12).contains(&redirects), "{redirects} redirects");
    for n in [n1, n2] {
        assert!(n.terminate().await.success());
    }
}
