//! The PostgreSQL store several nodes share, against a real PostgreSQL (a throwaway instance
//! started by the test: `common/postgres.rs`): its schema (migrations applied once, also by
//! nodes starting together; a newer database refused), membership (epochs, fencing, the leader
//! lease), and the server on it as a real process: bids acknowledged before a `kill -9` are all
//! there after it, exactly once; a fenced node steps down and rejoins; `status` shows the nodes.

mod common;

use auction_client::{BidResult, Client};
use auction_protocol::Cents;
use auction_server::postgres::{self, nodes, schema};
use common::cluster::{certificates_for, cluster_client, node_on, status};
use common::postgres::Postgres;
use common::process::{client, Proc};
use common::within;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn the_schema_is_created_once_even_by_nodes_starting_together() {
    let pg = Postgres::start();
    // Four nodes start at once on an empty database.
    let mut starts = Vec::new();
    for _ in 0..4 {
        let url = pg.url.clone();
        starts.push(tokio::spawn(async move {
            let mut client = postgres::connect(&url).await.unwrap();
            schema::migrate(&mut client).await.unwrap()
        }));
    }
    for s in starts {
        assert_eq!(s.await.unwrap(), schema::MIGRATIONS.len());
    }
    let client = postgres::connect(&pg.url).await.unwrap();
    assert_eq!(
        schema::version(&client).await.unwrap(),
        schema::MIGRATIONS.len()
    );
    let tables: Vec<String> = client
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for table in [
        "accounts",
        "bids",
        "channel_sessions",
        "items",
        "nodes",
        "notices",
        "replies",
        "schema_version",
        "settlements",
        "subscriptions",
    ] {
        assert!(tables.iter().any(|t| t == table), "{table} in {tables:?}");
    }
    // Names are unique without regard to case, as in SQLite's accounts (registry/accounts.rs).
    client
        .execute(
            "INSERT INTO accounts (id, name, public_key, created_at) VALUES (1, 'alice', 'k1', 0)",
            &[],
        )
        .await
        .unwrap();
    let again = client
        .execute(
            "INSERT INTO accounts (id, name, public_key, created_at) VALUES (2, 'Alice', 'k2', 0)",
            &[],
        )
        .await;
    assert!(again.is_err(), "Alice beside alice");
}

#[tokio::test]
async fn a_database_of_a_newer_build_is_refused() {
    let pg = Postgres::start();
    let mut client = postgres::connect(&pg.url).await.unwrap();
    schema::migrate(&mut client).await.unwrap();
    let newer = schema::MIGRATIONS.len() as i32 + 1;
    client
        .execute("UPDATE schema_version SET version = $1", &[&newer])
        .await
        .unwrap();
    let err = format!("{:#}", schema::migrate(&mut client).await.unwrap_err());
    assert!(err.contains("newer than this build's"), "{err}");
}

/// Runs `auction-server --udp UDP --db DB` in the folder `dir`, which must refuse to start:
/// what it said.
async fn refused(dir: &Path, udp: &str, db: &str) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_auction-server"))
        .args(["--udp", udp, "--db", db])
        .current_dir(dir)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn an_unreachable_database_is_named_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let db = "postgres://auction:pw@127.0.0.1:1/auction";
    let err = refused(dir.path(), "127.0.0.1:0", db).await;
    assert!(
        err.contains("cannot connect to postgres://auction:***@127.0.0.1:1/auction"),
        "{err}"
    );
    assert!(!err.contains(":pw@"), "the password is not shown: {err}");
    assert!(
        !dir.path().join("postgres:").exists(),
        "a URL is not taken for a folder"
    );
}

#[tokio::test]
async fn a_node_listening_on_every_address_must_say_where_clients_reach_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(
        dir.path(),
        "0.0.0.0:0",
        "postgres://auction@127.0.0.1:1/auction",
    )
    .await;
    assert!(err.contains("give --advertise IP"), "{err}");
}

/// `auction-server` on the database at `url` as node `node` on 127.0.0.1, its files in `dir`.
async fn node(dir: &Path, url: &str, node: &str, extra: &[&str]) -> Proc {
    node_on(dir, url, node, "127.0.0.1", extra).await
}

/// A bid a client saw accepted: (item, bidder, amount, bid id).
type Seen = (u64, String, Cents, String);

/// Bids on `item` as fast as answers come back until the connection breaks; every acceptance
/// is written to `seen` before the next bid.
async fn bid_until_cut_off(client: Arc<Client>, item: u64, seen: Arc<Mutex<Vec<Seen>>>) {
    let name = client.name().unwrap();
    let mut channel = client.open_item(item).await.unwrap();
    let mut next = channel.next_min;
    for n in 0u64.. {
        let id = format!("{name}-{n}");
        match channel.bid(next, Some(id.clone())).await {
            Ok(BidResult::Accepted { amount, .. }) => {
                seen.lock().unwrap().push((item, name.clone(), amount, id));
                next = Cents(amount.0 + 1);
            }
            Ok(BidResult::Rejected { next_min, .. }) => next = next_min,
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bids_acknowledged_before_a_kill_9_are_in_postgres_exactly_once() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let server = node(dir, &pg.url, "n1", &[]).await;
    let seller = client(dir, server.udp, "seller").await;
    let lot = seller.offer("Lamp", Cents(100), Some(30)).await.unwrap();
    let mut bidders = Vec::new();
    for name in ["b1", "b2", "b3"] {
        bidders.push(Arc::new(client(dir, server.udp, name).await));
    }
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let streams: Vec<_> = bidders
        .iter()
        .map(|b| tokio::spawn(bid_until_cut_off(b.clone(), lot.item, seen.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill_9().await;
    for s in streams {
        within(40, "the bidders to notice the crash", s)
            .await
            .unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() > 20, "only {} bids acknowledged", seen.len());

    let db = postgres::connect(&pg.url).await.unwrap();
    for (item, bidder, amount, id) in &seen {
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM bids b JOIN accounts a ON a.id = b.bidder
                 WHERE b.item = $1 AND a.name = $2 AND b.bid_id = $3 AND b.accepted
                   AND b.amount_cents = $4",
                &[&(*item as i64), bidder, id, &(amount.0 as i64)],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "accepted bid {id} ({amount}) is missing or doubled");
    }
    let highest: i64 = db
        .query_one(
            "SELECT highest_cents FROM items WHERE id = $1",
            &[&(lot.item as i64)],
        )
        .await
        .unwrap()
        .get(0);
    let seen_max = seen.iter().map(|s| s.2 .0 as i64).max().unwrap();
    assert!(highest >= seen_max, "{highest} < {seen_max}");

    // Started again (on another UDP port): the lead is there, and a bid id sent again gets
    // its first answer.
    let server = node(dir, &pg.url, "n1", &[]).await;
    let again = |name: &str| {
        let home = dir.join("homes").join(name);
        let ca = dir.join("certs/ca.pem");
        async move { Client::new(server.udp, &home, &ca).await.unwrap() }
    };
    let (_, bidder, amount, id) = seen.last().unwrap().clone();
    let mut channel = again(&bidder).await.open_item(lot.item).await.unwrap();
    match channel.bid(Cents(1), Some(id.clone())).await.unwrap() {
        BidResult::Accepted { amount: a, .. } => assert_eq!(a, amount, "{id}"),
        other => panic!("{id} sent again: {other:?}"),
    }
    let status = again("seller").await.status(lot.item).await.unwrap();
    assert_eq!(status.highest, Some(Cents(highest as u64)));
    assert!(server.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_node_steps_down_and_rejoins_and_status_shows_the_nodes_and_owners() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let server = node(
        dir,
        &pg.url,
        "n1",
        &["--heartbeat", "200ms", "--lease", "1s"],
    )
    .await;
    let seller = client(dir, server.udp, "seller").await;
    let lot = seller.offer("Vase", Cents(100), Some(60)).await.unwrap();

    let report = status(&pg.url);
    assert_eq!(report["server_running"], true);
    assert_eq!(report["nodes"][0]["name"], "n1");
    assert_eq!(report["nodes"][0]["alive"], true);
    assert_eq!(report["nodes"][0]["items"], 1);
    assert_eq!(report["open_items"][0]["item"], lot.item);
    assert_eq!(report["open_items"][0]["owner"], "n1");

    // Another node fences it (as a survivor would after its heartbeat lapsed): it notices at
    // its next heartbeat, steps down saying why, and joins again under a new epoch; alone in
    // the cluster, it leads again and the item is open again.
    let db = postgres::connect(&pg.url).await.unwrap();
    db.execute(
        "UPDATE nodes SET epoch = epoch + 1, fenced = TRUE WHERE name = 'n1'",
        &[],
    )
    .await
    .unwrap();
    within(15, "the fenced node to step down and lead again", async {
        while server.log().matches("auction-server listening").count() < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let log = server.log();
    assert!(
        log.contains("was fenced") && log.contains("stepped down"),
        "{log}"
    );
    let report = status(&pg.url);
    assert_eq!(
        report["nodes"][0]["epoch"], 3,
        "joined, fenced, joined again"
    );
    assert_eq!(report["nodes"][0]["leader"], true);
    assert_eq!(report["open_items"][0]["owner"], "n1");
    assert!(server.terminate().await.success());
}

/// A fresh database with the schema, and a connection to it.
async fn migrated(pg: &Postgres) -> tokio_postgres::Client {
    let mut client = postgres::connect(&pg.url).await.unwrap();
    schema::migrate(&mut client).await.unwrap();
    client
}

#[tokio::test]
async fn a_node_that_joins_again_fences_its_former_life() {
    let pg = Postgres::start();
    let client = migrated(&pg).await;
    let lease = Duration::from_secs(5);
    let first = nodes::join(&client, "a", "127.0.0.1:7400", lease)
        .await
        .unwrap();
    assert!(nodes::renew(&client, &first, lease).await.unwrap());
    let second = nodes::join(&client, "a", "127.0.0.1:7400", lease)
        .await
        .unwrap();
    assert_eq!(second.epoch, first.epoch + 1);
    assert!(!nodes::renew(&client, &first, lease).await.unwrap());
    assert!(nodes::check_epoch(&client, &first).await.is_err());
    nodes::check_epoch(&client, &second).await.unwrap();
}

#[tokio::test]
async fn a_node_whose_heartbeat_lapsed_is_fenced_once_and_commits_nothing_more() {
    let pg = Postgres::start();
    let mut client = migrated(&pg).await;
    let a = nodes::join(&client, "a", "127.0.0.1:7400", Duration::from_millis(200))
        .await
        .unwrap();
    let b = nodes::join(&client, "b", "127.0.0.2:7400", Duration::from_secs(30))
        .await
        .unwrap();
    // Not lapsed yet: nothing to fence.
    assert!(nodes::fence_lapsed(&client, "b").await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(nodes::fence_lapsed(&client, "b").await.unwrap(), ["a"]);
    assert!(
        nodes::fence_lapsed(&client, "b").await.unwrap().is_empty(),
        "once"
    );
    // A wakes up: its heartbeat and its writes are refused; B carries on.
    assert!(!nodes::renew(&client, &a, Duration::from_secs(30))
        .await
        .unwrap());
    let err = format!("{:#}", nodes::check_epoch(&client, &a).await.unwrap_err());
    assert!(err.contains("was fenced"), "{err}");
    nodes::check_epoch(&client, &b).await.unwrap();
    // Nor can it take the leader lease, which nobody holds.
    assert!(
        !nodes::lead(&mut client, &a, Duration::from_secs(30))
            .await
            .unwrap()
            .leading
    );
    assert_eq!(nodes::leader(&client).await.unwrap(), None);
    // It can join again, with a new epoch.
    let again = nodes::join(&client, "a", "127.0.0.1:7400", Duration::from_secs(30))
        .await
        .unwrap();
    assert!(again.epoch > a.epoch);
}

#[tokio::test]
async fn a_fence_waits_for_a_batch_in_flight_and_stops_the_next() {
    let pg = Postgres::start();
    let mut writer = migrated(&pg).await;
    let a = nodes::join(&writer, "a", "127.0.0.1:7400", Duration::from_millis(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A's write batch checked its epoch before the fence...
    let batch = writer.transaction().await.unwrap();
    nodes::check_epoch(&batch, &a).await.unwrap();
    // ...so the survivor's fence waits until that batch is over.
    let url = pg.url.clone();
    let fence = tokio::spawn(async move {
        let survivor = postgres::connect(&url).await.unwrap();
        nodes::fence_lapsed(&survivor, "b").await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !fence.is_finished(),
        "the fence waited for the batch in flight"
    );
    batch.commit().await.unwrap();
    assert_eq!(fence.await.unwrap(), ["a"]);
    // The next batch fails.
    let batch = writer.transaction().await.unwrap();
    assert!(nodes::check_epoch(&batch, &a).await.is_err());
}

#[tokio::test]
async fn one_live_node_holds_the_leader_lease_until_it_lapses() {
    let pg = Postgres::start();
    let mut ca = migrated(&pg).await;
    let mut cb = postgres::connect(&pg.url).await.unwrap();
    let long = Duration::from_secs(30);
    let a = nodes::join(&ca, "a", "127.0.0.1:7400", long).await.unwrap();
    let b = nodes::join(&cb, "b", "127.0.0.2:7400", long).await.unwrap();
    let short = Duration::from_millis(300);
    assert!(nodes::lead(&mut ca, &a, short).await.unwrap().leading);
    assert!(!nodes::lead(&mut cb, &b, short).await.unwrap().leading);
    assert!(
        nodes::lead(&mut ca, &a, short).await.unwrap().leading,
        "renewed"
    );
    assert_eq!(
        nodes::leader(&cb).await.unwrap(),
        Some(("a".into(), "127.0.0.1:7400".into()))
    );
    // A stops renewing: once the lease lapses, B takes it and fences A (whose heartbeat had
    // not lapsed), and A can neither take it back nor renew its heartbeat.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let took = nodes::lead(&mut cb, &b, long).await.unwrap();
    assert_eq!((took.leading, took.fenced), (true, vec!["a".to_owned()]));
    assert!(!nodes::lead(&mut ca, &a, short).await.unwrap().leading);
    assert!(!nodes::renew(&ca, &a, long).await.unwrap(), "A is fenced");
    assert_eq!(
        nodes::leader(&ca).await.unwrap(),
        Some(("b".into(), "127.0.0.2:7400".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_from_a_killed_leader_and_bidding_goes_on() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // Two nodes on two addresses of this machine, with one certificate naming both.
    certificates_for(dir, &["127.0.0.1", "127.0.0.2"]);
    let quick = ["--heartbeat", "200ms", "--lease", "1s"];
    let n1 = node_on(dir, &pg.url, "n1", "127.0.0.1", &quick).await;
    assert!(
        n1.log().contains("auction-server listening"),
        "{}",
        n1.log()
    );
    let n2 = node_on(dir, &pg.url, "n2", "127.0.0.2", &quick).await;
    assert!(
        n2.log().contains("auction-server standing by"),
        "{}",
        n2.log()
    );

    // A client that knows both nodes but asks the standby first is redirected to the leader.
    let nodes = [n2.udp, n1.udp];
    let seller = cluster_client(dir, &nodes, "seller").await;
    seller.register("seller").await.unwrap();
    assert_eq!(seller.udp.server(), n1.udp, "followed the redirect");
    // A client that does not know the leader is not led anywhere by a redirect.
    let mut stranger = cluster_client(dir, &[n2.udp], "stranger").await;
    stranger.udp.retry = auction_client::udp::Retry {
        first: Duration::from_millis(100),
        max: Duration::from_millis(200),
        tries: 3,
    };
    let refused = stranger.status(1).await;
    assert!(refused.is_err(), "{refused:?}");

    let lot = seller.offer("Clock", Cents(100), Some(60)).await.unwrap();
    let bidder = Arc::new(cluster_client(dir, &nodes, "bidder").await);
    bidder.register("bidder").await.unwrap();
    let mut session = auction_client::ItemSession::open(
        bidder.clone(),
        lot.item,
        auction_client::Reconnect::default(),
    )
    .await
    .unwrap();
    let first = session
        .bid(
            auction_client::Offer::Amount(Cents(150)),
            "b-1".into(),
            |_| {},
        )
        .await
        .unwrap();
    assert!(matches!(first, BidResult::Accepted { .. }), "{first:?}");

    // The leader dies. The item runs on n2 (the leader gives items to the others first), which
    // takes the lease too; the session's next bid is accepted, and the first is still there.
    assert!(lot.channel.starts_with("127.0.0.2:"), "{}", lot.channel);
    n1.kill_9().await;
    let killed = std::time::Instant::now();
    let second = within(
        30,
        "the bid after the failover",
        session.bid(
            auction_client::Offer::Amount(Cents(200)),
            "b-2".into(),
            |_| {},
        ),
    )
    .await
    .unwrap();
    let took = killed.elapsed();
    assert!(matches!(second, BidResult::Accepted { .. }), "{second:?}");
    eprintln!("the leader killed: a bid on n2's item was accepted after {took:?}");
    within(10, "n2 to take the lease", async {
        while !n2.log().contains("leading") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let view = bidder.status(lot.item).await.unwrap();
    assert_eq!(view.highest, Some(Cents(200)));
    assert_eq!(
        view.channel,
        Some(lot.channel.clone()),
        "the item stayed on n2"
    );
    // Sent again, the first bid's id gets its first answer.
    let again = session
        .bid(
            auction_client::Offer::Amount(Cents(999)),
            "b-1".into(),
            |_| {},
        )
        .await
        .unwrap();
    match again {
        BidResult::Accepted { amount, .. } => assert_eq!(amount, Cents(150)),
        other => panic!("{other:?}"),
    }

    let report = status(&pg.url);
    let node = |name: &str| {
        report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(node("n1")["fenced"], true);
    assert_eq!(node("n2")["leader"], true);
    assert_eq!(report["open_items"][0]["owner"], "n2");
    assert!(n2.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_after_the_fence_commits_nothing_and_the_storage_says_why() {
    use auction_server::{PostgresOptions, PostgresStorage, Record, Storage};
    let pg = Postgres::start();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // A heartbeat too slow to notice the fence first: the write batch must.
    let options = PostgresOptions {
        node: "n1".into(),
        udp: udp.local_addr().unwrap().to_string(),
        heartbeat: Duration::from_secs(60),
        lease: Duration::from_secs(120),
        group_commit: true,
        udp_rate: 1000.0,
        udp_burst: 2000.0,
    };
    let (storage, _) = PostgresStorage::open(&pg.url, options, &udp).await.unwrap();
    let account = |id: u64| Record::AccountCreated {
        id,
        name: format!("a{id}"),
        key: auction_protocol::PublicKey([id as u8; 32]),
        notify: None,
        at: id,
    };
    let mut durable = storage.durable();
    let first = storage.append(vec![account(1)]);
    within(
        10,
        "the first batch to commit",
        durable.wait_for(|&d| d >= first),
    )
    .await
    .unwrap();

    let db = postgres::connect(&pg.url).await.unwrap();
    db.execute(
        "UPDATE nodes SET epoch = epoch + 1, fenced = TRUE WHERE name = 'n1'",
        &[],
    )
    .await
    .unwrap();
    let second = storage.append(vec![account(2), account(3)]);
    within(10, "the storage to fail", storage.failed().cancelled()).await;
    assert!(*storage.durable().borrow() < second);
    let why = storage.failure().unwrap();
    assert!(why.contains("was fenced"), "{why}");
    let accounts: i64 = db
        .query_one("SELECT count(*) FROM accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(accounts, 1, "nothing of the fenced batch was stored");
    tokio::task::spawn_blocking(move || storage.close())
        .await
        .unwrap();
}
