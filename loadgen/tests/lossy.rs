//! The UDP plane over a faulty network (loadgen's LossyProxy: 30 % of datagrams lost each
//! way, 10 % duplicated, up to 30 ms of delay so they reorder, seeded): registrations, offers
//! and deregistrations happen exactly once, and WIN / SOLD / NOT-SOLD reach the application
//! exactly once each.

use auction_client::udp::Retry;
use auction_client::{BidResult, Client, Identity};
use auction_protocol::udp::ServerBody;
use auction_protocol::Cents;
use auction_server::{Config, Server, SqliteOptions, SqliteStorage, TlsIdentity};
use loadgen::lossy::{Loss, LossyProxy};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const LOSSY: Loss = Loss {
    drop: 0.3,
    duplicate: 0.1,
    max_delay: Duration::from_millis(30),
    seed: 42,
};

/// Persistent enough for 30 % loss each way (a round trip gets through about half the time):
/// 30 sends, not the default 7.
const PATIENT: Retry = Retry {
    first: Duration::from_millis(100),
    max: Duration::from_millis(800),
    tries: 30,
};

struct Setup {
    server: Server,
    db: PathBuf,
    ca: PathBuf,
    proxy: LossyProxy,
    _dir: tempfile::TempDir,
}

async fn setup(loss: Loss) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsIdentity::dev(&dir.path().join("certs")).unwrap();
    let db = dir.path().join("auction.db");
    let (storage, snapshot) = SqliteStorage::open(&db, SqliteOptions::default()).unwrap();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        snipe_window: Duration::ZERO,
        notice_retry: Duration::from_millis(100),
        // One address registers every simulated person.
        accounts_per_hour: 100_000,
        ..Config::default()
    };
    let server = Server::start(udp, tls, config, Arc::new(storage), snapshot, None)
        .await
        .unwrap();
    let proxy = LossyProxy::start(server.udp_addr(), loss).await.unwrap();
    Setup {
        server,
        db,
        ca: dir.path().join("certs/ca.pem"),
        proxy,
        _dir: dir,
    }
}

async fn client(to: SocketAddr, ca: &std::path::Path) -> Client {
    let mut c = Client::with_identity(to, Identity::ephemeral().unwrap(), ca)
        .await
        .unwrap();
    c.udp.retry = PATIENT;
    c
}

fn count(db: &std::path::Path, sql: &str) -> i64 {
    auction_server::query_one::<i64>(db, sql).unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_offers_and_deregistrations_happen_exactly_once() {
    let s = setup(LOSSY).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (proxy, ca) = (s.proxy.addr, s.ca.clone());
        tasks.push(tokio::spawn(async move {
            let c = client(proxy, &ca).await;
            c.register(&format!("user{i}")).await.unwrap();
            if i % 2 == 0 {
                // Sellers: one item each.
                c.offer(&format!("item of user{i}"), Cents(100), Some(600))
                    .await
                    .unwrap();
            } else {
                // The others leave again; a retransmitted deregistration is confirmed, not
                // refused as "not registered".
                c.deregister().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(count(&s.db, "SELECT count(*) FROM accounts"), 12);
    assert_eq!(
        count(&s.db, "SELECT count(*) FROM items"),
        6,
        "an offer ran twice"
    );
    assert_eq!(
        count(
            &s.db,
            "SELECT count(*) FROM accounts WHERE removed_at IS NOT NULL"
        ),
        6
    );
    let stats = &s.proxy.stats;
    let dropped = stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
    let duplicated = stats.duplicated.load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped > 10 && duplicated > 3, "{dropped} {duplicated}");
    s.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn win_sold_and_not_sold_reach_the_application_exactly_once() {
    let s = setup(LOSSY).await;
    let seller = Arc::new(client(s.proxy.addr, &s.ca).await);
    seller.register("seller").await.unwrap();
    let mut bidders = Vec::new();
    for name in ["b1", "b2"] {
        let b = Arc::new(client(s.proxy.addr, &s.ca).await);
        b.register(name).await.unwrap();
        bidders.push(b);
    }
    // Two items get a bid (channels are TCP, not through the proxy); the third gets none.
    let mut items = Vec::new();
    for i in 0..3 {
        items.push(
            seller
                .offer(&format!("item {i}"), Cents(100), Some(8))
                .await
                .unwrap()
                .item,
        );
    }
    for (b, &item) in bidders.iter().zip(&items) {
        let mut ch = b.open_item(item).await.unwrap();
        assert!(matches!(
            ch.bid(Cents(500), None).await.unwrap(),
            BidResult::Accepted { .. }
        ));
    }

    // Everyone reads announcements (acknowledging notices) and re-attaches every 2 s, as the
    // reference client does, until it has what it expects; then listens 2 s more for repeats.
    let collect = |c: Arc<Client>, expected: usize| async move {
        let mut got: Vec<ServerBody> = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut quiet_until: Option<tokio::time::Instant> = None;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline || quiet_until.is_some_and(|q| now >= q) {
                return got;
            }
            tokio::select! {
                msg = c.next_announcement() => {
                    // The result notices (not NEGOTIATE-REQ for the unbid item, nor OUTBID or
                    // ENDING-SOON for a leader off the channel).
                    let result = |m: &ServerBody| {
                        matches!(
                            m,
                            ServerBody::Win { .. } | ServerBody::Sold { .. } | ServerBody::NotSold { .. }
                        )
                    };
                    if let Some(m) = msg.filter(result) {
                        got.push(m);
                        if got.len() >= expected && quiet_until.is_none() {
                            quiet_until = Some(tokio::time::Instant::now() + Duration::from_secs(2));
                        }
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(2)) => {
                    let _ = c.attach().await;
                }
            }
        }
    };
    let (sold, w1, w2) = tokio::join!(
        collect(seller.clone(), 3),
        collect(bidders[0].clone(), 1),
        collect(bidders[1].clone(), 1)
    );
    let mut by_item: HashMap<u64, usize> = HashMap::new();
    for m in &sold {
        match m {
            ServerBody::Sold { item, winner, .. } => {
                *by_item.entry(*item).or_default() += 1;
                assert!(winner == "b1" || winner == "b2");
            }
            ServerBody::NotSold { item, .. } => {
                *by_item.entry(*item).or_default() += 1;
                assert_eq!(*item, items[2]);
            }
            other => panic!("the seller got {other:?}"),
        }
    }
    assert_eq!(by_item.len(), 3, "{sold:?}");
    assert!(
        by_item.values().all(|&n| n == 1),
        "a notice shown twice: {sold:?}"
    );
    for (got, item) in [(w1, items[0]), (w2, items[1])] {
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(matches!(got[0], ServerBody::Win { item: i, .. } if i == item));
    }
    // The server saw every notice acknowledged: none is left pending.
    let pending = count(&s.db, "SELECT count(*) FROM notices WHERE acked_at IS NULL");
    assert_eq!(pending, 0);
    s.server.shutdown().await.unwrap();
}
