//! Nodes of a cluster as real processes on one real PostgreSQL (started by the test), each on
//! its own loopback address: the node running an auction killed while four bidders stream bids,
//! the leader killed with notices pending, a node cut off from the database, one frozen past
//! its lease, loadgen with a node killed, a flooding source, and what the leader asks of an item
//! another node runs. Nothing acknowledged may be lost, and everything goes on through a node.

mod common;

use auction_client::{BidResult, Client, ItemSession, Offer, Reconnect, Update};
use auction_protocol::udp::ServerBody;
use auction_protocol::{Cents, ItemState};
use auction_server::postgres;
use common::cluster::{certificates_for, cluster_client, node_on, status, three_nodes};
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

/// The view of `item` once its channel is on the node at `node` (`127.0.0.3:`), within 40 s.
async fn moved_to(c: &Client, item: u64, node: &str) -> auction_protocol::ItemView {
    within(40, "the item to move", async {
        loop {
            let view = c.status(item).await.unwrap();
            if view
                .channel
                .as_deref()
                .is_some_and(|ch| ch.starts_with(node))
            {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await
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
    let [n1, n2, n3] = three_nodes(dir, &pg.url, &[]).await;
    let nodes = [n1.udp, n2.udp, n3.udp];

    let seller = person(dir, &nodes, "seller").await;
    let lot = seller.offer("Clock", Cents(100), Some(20)).await.unwrap();
    // n1 leads (it started first); the item goes to the least loaded of the others.
    assert_eq!(status(&pg.url)["open_items"][0]["owner"], "n2");
    assert!(lot.channel.starts_with("127.0.0.2:"), "{}", lot.channel);
    let streams = Streams::start(dir, &nodes, lot.item, &["b1", "b2", "b3", "b4"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    n2.kill_9().await;
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
    // The leader fenced the dead node; the survivor that ran the item to its end was n3
    // (the least loaded live node that does not lead).
    let db = postgres::connect(&pg.url).await.unwrap();
    let row = db
        .query_one(
            "SELECT i.owner, n.fenced FROM items i, nodes n WHERE i.id = $1 AND n.name = 'n2'",
            &[&(lot.item as i64)],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, bool>(1)),
        ("n3".into(), true)
    );
    for n in [n1, n3] {
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
async fn an_owner_cut_off_from_the_database_steps_down_and_nothing_acknowledged_is_lost() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    certificates_for(dir, &["127.0.0.1", "127.0.0.2"]);
    let n1 = node_on(dir, &pg.url, "n1", "127.0.0.1", &[]).await;
    let n2 = node_on(dir, &pg.url, "n2", "127.0.0.2", &[]).await;
    let nodes = [n1.udp, n2.udp];
    let seller = person(dir, &nodes, "seller").await;
    let lot = seller.offer("Desk", Cents(100), Some(60)).await.unwrap();
    assert_eq!(status(&pg.url)["open_items"][0]["owner"], "n2");
    let streams = Streams::start(dir, &nodes, lot.item, &["b1", "b2"]).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // PostgreSQL ends every connection of n2, the item's node (its writer's among them).
    let db = postgres::connect(&pg.url).await.unwrap();
    let ended: i64 = db
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                                   WHERE application_name LIKE 'auction-server n2 %') t",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ended >= 2, "{ended} connections of n2 ended");
    let cut = Instant::now();
    // Its next commit fails: it steps down rather than serve without its database, and joins
    // again under a new epoch; the leader gives the item to a live node meanwhile.
    within(20, "n2 to step down", async {
        while !n2.log().contains("stepped down") {
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
async fn an_owner_stopped_past_its_lease_commits_nothing_more_tells_bidders_where_the_item_went_and_rejoins(
) {
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
    assert_eq!(status(&pg.url)["open_items"][0]["owner"], "n2");
    // A bidder who only watches the channel, and two who bid.
    let watcher = person(dir, &nodes, "watcher").await;
    let mut watching = watcher.open_item(lot.item).await.unwrap();
    let told = tokio::spawn(async move {
        while let Some(event) = watching.next_event().await {
            if let Ok(auction_protocol::channel::ChannelBody::Error { message, .. }) = event {
                return Some(message);
            }
        }
        None
    });
    let streams = Streams::start(dir, &nodes, lot.item, &["b1", "b2"]).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // n2 freezes for three leases: n1 fences it and runs the item meanwhile.
    let pid = n2.child.id().unwrap().to_string();
    let signal = |sig: &str| {
        let sent = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    signal("-STOP");
    let cut = Instant::now();
    within(10, "n1 to take the item", async {
        while status(&pg.url)["open_items"][0]["owner"] != "n1" {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    signal("-CONT");
    // Back, n2 finds itself fenced: whatever it judged meanwhile cannot commit, so it
    // acknowledges none of it; it tells its bidders where the item went, and joins again
    // under a new epoch.
    let message = within(20, "n2 to tell its bidders where the item went", told)
        .await
        .unwrap()
        .expect("a message before the channel closed");
    eprintln!("n2's bidders were told: {message}");
    assert!(
        message.contains("runs on node n1") && message.contains("127.0.0.1:"),
        "{message}"
    );
    within(20, "n2 to step down and join again", async {
        while n2
            .log()
            .matches("running the items given to this node")
            .count()
            < 2
            || !n2.log().contains("stepped down")
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    streams
        .acknowledged_after(
            cut + Duration::from_secs(3),
            "bids to be acknowledged by n1",
        )
        .await;
    let seen = streams.finish().await;
    check_acknowledged(&pg.url, lot.item, &seen).await;
    let report = status(&pg.url);
    let n2_row = &report["nodes"][1];
    assert_eq!(n2_row["name"], "n2");
    assert_eq!(
        (n2_row["alive"].clone(), n2_row["fenced"].clone()),
        (true.into(), false.into()),
        "n2 joined again: {n2_row}"
    );
    assert!(n2_row["epoch"].as_i64().unwrap() >= 3, "{n2_row}");
    assert_eq!(report["nodes"][0]["leader"], true, "n1 still leads");
    for n in [n1, n2] {
        assert!(n.terminate().await.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_across_the_cluster_verifies_with_a_node_killed_mid_run() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
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
    let [n1, n2, n3] = three_nodes(dir, &pg.url, &budgets).await;
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
        keep: false,
        // Reserves (one passed, one never reached) move with their items too.
        reserve_share: 0.5,
        buy_now_share: 0.0,
    };
    let run = tokio::spawn(loadgen::run(options));
    // Well into the measured phase (set-up takes a moment), a node running items dies.
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
    let before = status(&pg.url);
    let on_n2 = before["open_items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["owner"] == "n2")
        .count();
    assert!(on_n2 >= 1, "n2 runs some of the items: {before}");
    n2.kill_9().await;
    let outcome = within(120, "loadgen to finish", run)
        .await
        .unwrap()
        .unwrap();
    let r = &outcome.report;
    eprintln!("{}", r.table());
    let v = r.verify.as_ref().unwrap();
    assert!(v.passed, "{v:?}");
    assert!(!r.failed(), "{}", r.table());
    // The channels on n2's items were reopened on their new node; the others were not.
    eprintln!(
        "{} of {} channels reopened ({on_n2} of 4 items were on n2)",
        r.counts.reconnected, r.spread.channels
    );
    assert!(r.counts.reconnected >= 1, "{}", r.table());
    assert!(
        r.counts.reconnected < r.spread.channels as u64,
        "only n2's channels move: {}",
        r.table()
    );
    assert_eq!(r.counts.unanswered, 0);
    assert_eq!(r.counts.sent, r.counts.answered);
    for n in [n1, n3] {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_key_is_refused_by_a_node_that_looks_it_up() {
    use auction_protocol::channel::ChannelBody;
    use auction_protocol::Reason;
    use common::{announcement, next_matching};
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    certificates_for(dir, &["127.0.0.1", "127.0.0.2"]);
    let n1 = node_on(dir, &pg.url, "n1", "127.0.0.1", &[]).await;
    let n2 = node_on(dir, &pg.url, "n2", "127.0.0.2", &[]).await;
    let nodes = [n1.udp, n2.udp];
    let seller = person(dir, &nodes, "seller").await;
    seller.attach().await.unwrap();
    // Half its time without a bid (5 s), the seller is asked to negotiate.
    let lot = seller.offer("Lamp", Cents(1000), Some(10)).await.unwrap();
    assert!(lot.channel.starts_with("127.0.0.2:"), "{}", lot.channel);

    // A key of no account proves it holds it, then is refused after one lookup.
    let stranger = cluster_client(dir, &nodes, "stranger").await;
    match stranger.open_channel(&lot.channel).await {
        Err(auction_client::ClientError::Denied { reason, .. }) => {
            assert_eq!(reason, Reason::AccountGone)
        }
        other => panic!("{other:?}"),
    }
    // Accounts registered a moment ago are let in by n2 (which reads them from the database),
    // and what the leader asks of the item reaches it there: a subscriber hears the item's
    // lower minimum, a bidder on the channel too.
    let watcher = person(dir, &nodes, "watcher").await;
    watcher.attach().await.unwrap();
    watcher.subscribe(lot.item).await.unwrap();
    let gone = person(dir, &nodes, "gone").await;
    let mut gone_channel = gone.open_item(lot.item).await.unwrap();
    let asked = announcement(&seller, "NEGOTIATE-REQ", |m| match m {
        ServerBody::NegotiateReq { item, .. } => Some(*item),
        _ => None,
    })
    .await;
    assert_eq!(asked, lot.item);
    assert_eq!(
        seller.negotiate(lot.item, Some(Cents(500))).await.unwrap(),
        Some(Cents(500))
    );
    let min = announcement(&watcher, "PRICE-ADJUSTMENT", |m| match m {
        ServerBody::PriceAdjustment { min, .. } => Some(*min),
        _ => None,
    })
    .await;
    assert_eq!(min, Cents(500));
    next_matching(&mut gone_channel, "the lower minimum on the channel", |m| {
        matches!(m, ChannelBody::PriceAdjustment { .. }).then_some(())
    })
    .await;
    // A deregistered account's connection on n2 closes, and it cannot come back.
    gone.deregister().await.unwrap();
    within(10, "the deregistered account's channel to close", async {
        while let Some(Ok(_)) = gone_channel.next_event().await {}
    })
    .await;
    match gone.open_channel(&lot.channel).await {
        Err(auction_client::ClientError::Denied { reason, .. }) => {
            assert_eq!(reason, Reason::AccountGone)
        }
        other => panic!("{other:?}"),
    }
    // A bid on n2 reaches the subscriber as BID-UPDATE through the leader.
    let bidder = person(dir, &nodes, "bidder").await;
    let mut channel = bidder.open_item(lot.item).await.unwrap();
    let bid = channel.bid(Cents(600), Some("x-1".into())).await.unwrap();
    assert!(matches!(bid, BidResult::Accepted { .. }), "{bid:?}");
    let highest = announcement(&watcher, "BID-UPDATE", |m| match m {
        ServerBody::BidUpdate { highest, .. } => Some(*highest),
        _ => None,
    })
    .await;
    assert_eq!(highest, Cents(600));
    for n in [n1, n2] {
        assert!(n.terminate().await.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_serves_a_board_of_every_item() {
    use common::http::get;
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    certificates_for(dir, &["127.0.0.1", "127.0.0.2"]);
    let n1 = node_on(dir, &pg.url, "n1", "127.0.0.1", &["--web", "127.0.0.1:0"]).await;
    let n2 = node_on(dir, &pg.url, "n2", "127.0.0.2", &["--web", "127.0.0.2:0"]).await;
    let nodes = [n1.udp, n2.udp];
    let boards = [n1.web(), n2.web()];
    let seller = person(dir, &nodes, "seller").await;
    let bidder = person(dir, &nodes, "bidder").await;
    // Two items: the nodes are given one each (the least loaded gets the next).
    let mut items = Vec::new();
    for name in ["Lamp", "Clock"] {
        let lot = seller.offer(name, Cents(1000), Some(60)).await.unwrap();
        let mut ch = bidder.open_item(lot.item).await.unwrap();
        let bid = ch
            .bid(Cents(1234), Some(format!("{name}-1")))
            .await
            .unwrap();
        assert!(matches!(bid, BidResult::Accepted { .. }), "{bid:?}");
        items.push((lot.item, lot.channel));
    }
    let hosts: Vec<&str> = items.iter().map(|(_, c)| &c[..9]).collect();
    assert_ne!(hosts[0], hosts[1], "one item on each node: {items:?}");
    // Each board shows both items with the bid's price: its own from the item's task, the
    // other node's from the database.
    for board in boards {
        for (item, _) in &items {
            within(10, "the price on every board", async {
                loop {
                    let page = get(board, "/").await.body;
                    let row = page
                        .split(&format!(r#"<tr data-item="{item}" "#))
                        .nth(1)
                        .and_then(|r| r.split("</tr>").next())
                        .unwrap_or("")
                        .to_owned();
                    if row.contains(r#"<td class="price">12.34</td>"#)
                        && row.contains(r#"<td class="leader">bidder</td>"#)
                        && row.contains(r#"<td class="bids">1</td>"#)
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await;
            // The item's bids come from the database on any node.
            let page = get(board, &format!("/item/{item}")).await;
            assert_eq!(page.status, 200);
            assert!(
                page.body
                    .contains(r#"<td class="bidder">bidder</td><td class="amount">12.34</td>"#),
                "{}",
                page.body
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserve_and_a_buy_it_now_price_move_with_the_item_through_a_kill_9_of_its_node() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let [n1, n2, n3] = three_nodes(dir, &pg.url, &[]).await;
    let nodes = [n1.udp, n2.udp, n3.udp];
    let seller = person(dir, &nodes, "seller").await;
    let terms = auction_client::Terms {
        reserve: Some(Cents(5000)),
        buy_now: Some(Cents(20000)),
    };
    let lot = seller
        .offer_with("Globe", Cents(1000), Some(60), terms)
        .await
        .unwrap();
    assert!(lot.channel.starts_with("127.0.0.2:"), "{}", lot.channel);
    let bidder = person(dir, &nodes, "bidder").await;
    {
        let mut ch = bidder.open_item(lot.item).await.unwrap();
        let r = ch.bid(Cents(2000), None).await.unwrap();
        assert!(matches!(r, BidResult::Accepted { .. }), "{r:?}");
    }
    // The leader's view follows the owner's rows: below the reserve, buy it now offered.
    let view = within(10, "the leader to see the bid", async {
        loop {
            let view = seller.status(lot.item).await.unwrap();
            if view.highest == Some(Cents(2000)) {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(
        (view.reserve_met, view.buy_now),
        (Some(false), Some(Cents(20000)))
    );

    n2.kill_9().await;
    let moved = moved_to(&seller, lot.item, "127.0.0.3:").await;
    assert_eq!(
        (moved.reserve_met, moved.buy_now),
        (Some(false), Some(Cents(20000)))
    );
    // The new node knows the terms: its STATE says so, and buying at the price ends it.
    let buyer = person(dir, &nodes, "buyer").await;
    let mut ch = buyer.open_item(lot.item).await.unwrap();
    assert_eq!(
        (ch.item.reserve_met, ch.item.buy_now),
        (Some(false), Some(Cents(20000)))
    );
    let r = ch.place(Offer::BuyNow(Cents(20000)), None).await.unwrap();
    assert!(matches!(r, BidResult::Accepted { .. }), "{r:?}");
    let view = within(20, "the auction to end", async {
        loop {
            let view = seller.status(lot.item).await.unwrap();
            if view.state == ItemState::Closed {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(
        (view.winner.as_deref(), view.price, view.buy_now),
        (Some("buyer"), Some(Cents(20000)), None)
    );
    for n in [n1, n3] {
        assert!(n.terminate().await.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_removes_a_bid_and_cancels_an_item_run_by_another_node() {
    use common::http::get;
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let key = auction_client::Identity::load_or_create(&dir.join("homes").join("operator"))
        .unwrap()
        .public
        .to_hex();
    let extra = ["--operator-key", &key, "--web", "127.0.0.1:0"];
    let [n1, n2, n3] = three_nodes(dir, &pg.url, &extra).await;
    let nodes = [n1.udp, n2.udp, n3.udp];
    let op = person(dir, &nodes, "operator").await;
    let seller = person(dir, &nodes, "seller").await;
    let lot = seller.offer("Globe", Cents(1000), Some(60)).await.unwrap();
    assert!(lot.channel.starts_with("127.0.0.2:"), "{}", lot.channel);
    let [bob, shill] = [
        person(dir, &nodes, "bob").await,
        person(dir, &nodes, "shill").await,
    ];
    {
        let mut b = bob.open_item(lot.item).await.unwrap();
        let r = b.place(Offer::Max(Cents(5000)), None).await.unwrap();
        assert!(matches!(r, BidResult::Accepted { .. }), "{r:?}");
        let mut s = shill.open_item(lot.item).await.unwrap();
        let r = s.bid(Cents(4000), None).await.unwrap();
        assert!(matches!(r, BidResult::Accepted { .. }), "{r:?}");
    }
    // Bob's proxy answered the shill at 40.01 (one cent steps on the nodes).
    let history = within(10, "the shill's bid in the history", async {
        loop {
            let h = op.history(lot.item).await.unwrap();
            if h.bids.len() == 2 {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let shill_bid = history
        .bids
        .iter()
        .find(|b| b.bidder == "shill")
        .unwrap()
        .bid;
    // The leader hands the removal to n2, which runs the item, and answers once it is stored.
    let lead = op
        .remove_bid(lot.item, shill_bid, "shill bidding")
        .await
        .unwrap();
    assert_eq!(lead, Some((Cents(1000), "bob".to_owned())));
    // The removal moves with the item through a kill -9 of its node, bob's maximum with it.
    n2.kill_9().await;
    let moved = moved_to(&seller, lot.item, "127.0.0.3:").await;
    assert_eq!(moved.highest, Some(Cents(1000)));
    let carol = person(dir, &nodes, "carol").await;
    let mut c = carol.open_item(lot.item).await.unwrap();
    let r = c.bid(Cents(2000), None).await.unwrap();
    assert!(
        matches!(r, BidResult::Accepted { leading: false, .. }),
        "bob's proxy answers on n3: {r:?}"
    );
    // Past bob's maximum: the leader reads the new leader in the item's row and tells bob,
    // who is not on the channel, with a reliable OUTBID.
    let r = c.bid(Cents(6000), None).await.unwrap();
    assert!(
        matches!(r, BidResult::Accepted { leading: true, .. }),
        "{r:?}"
    );
    drop(c);
    let outbid = common::announcement(&bob, "OUTBID", |msg| match msg {
        ServerBody::Outbid {
            item,
            amount,
            bidder,
            ..
        } => Some((*item, *amount, bidder.clone())),
        _ => None,
    })
    .await;
    assert_eq!(outbid, (lot.item, Cents(6000), "carol".to_owned()));
    // Cancelling through the leader closes the item on its node, unsold.
    op.cancel_item(lot.item, "the seller withdrew it")
        .await
        .unwrap();
    let view = within(20, "the cancelled item to close", async {
        loop {
            let view = seller.status(lot.item).await.unwrap();
            if view.state == ItemState::Closed {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(
        (view.winner, view.price, view.cancelled),
        (None, None, true)
    );
    // Another node's board reads the cancellation, with its note, from the database.
    let board = n1.web();
    let shown = r#"<td class="result">cancelled by the operator: the seller withdrew it</td>"#;
    within(10, "the cancellation on another node's board", async {
        while !get(board, "/").await.body.contains(shown) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let h = op.history(lot.item).await.unwrap();
    assert_eq!(
        h.cancelled.map(|c| c.note),
        Some("the seller withdrew it".to_owned())
    );
    let (url, item) = (pg.url.clone(), lot.item);
    let audit = tokio::task::spawn_blocking(move || auction_server::audit::read_any(&url, item))
        .await
        .unwrap()
        .unwrap();
    let kinds: Vec<String> = audit
        .events
        .iter()
        .map(|e| match e {
            auction_server::audit::Event::Offered { .. } => "offered".to_owned(),
            auction_server::audit::Event::Bid { bidder, .. } => bidder.clone(),
            auction_server::audit::Event::Operator { action, .. } => action.clone(),
            auction_server::audit::Event::Closed { .. } => "closed".to_owned(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "offered",
            "bob",
            "shill",
            "remove-bid",
            "carol",
            "carol",
            "cancel-item",
            "closed"
        ]
    );
    // PostgreSQL keeps the log append-only too.
    let db = postgres::connect(&pg.url).await.unwrap();
    for sql in [
        "UPDATE bids SET amount_cents = 1",
        "DELETE FROM operator_actions",
    ] {
        let e = db.execute(sql, &[]).await.unwrap_err();
        assert!(format!("{e:?}").contains("append-only"), "{sql}: {e:?}");
    }
    for n in [n1, n3] {
        assert!(n.terminate().await.success());
    }
}
