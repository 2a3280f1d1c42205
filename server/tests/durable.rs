//! Nothing leaves the server before what it reports is on disk. The test holds SQLite's write
//! lock from another connection, so the server's storage writer cannot commit, and checks that
//! answers (first sends and retransmissions alike) and channel messages wait until it can.

mod common;

use auction_client::BidResult;
use auction_protocol::udp::{self, ServerBody};
use auction_protocol::Cents;
use common::raw::Raw;
use common::{quick_config, start, within};
use std::time::Duration;

/// Holds the database's write lock until dropped (or `release`d).
struct WriteLock(rusqlite::Connection);

impl WriteLock {
    fn take(db: &std::path::Path) -> WriteLock {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        WriteLock(conn)
    }

    fn release(self) {
        self.0.execute_batch("ROLLBACK").unwrap();
    }
}

/// The next datagram within `ms`, if any.
async fn answer_within(raw: &Raw, ms: u64) -> Option<ServerBody> {
    let mut buf = vec![0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_millis(ms), raw.sock.recv_from(&mut buf))
        .await
        .ok()?
        .unwrap();
    Some(udp::decode_server(&buf[..n]).unwrap().body)
}

#[tokio::test]
async fn answers_and_retransmissions_wait_for_the_commit() {
    let t = start(quick_config()).await;
    let (raw, k) = Raw::account(&t, "alice", 100).await;
    let offer = raw.lamp_offer(&k, "alice", 101);
    let lock = WriteLock::take(&t.db);
    raw.send(&offer).await;
    assert_eq!(
        answer_within(&raw, 400).await,
        None,
        "answered before the commit"
    );
    // A retransmission finds the answer in the replay window; it must wait just the same.
    raw.send(&offer).await;
    assert_eq!(
        answer_within(&raw, 400).await,
        None,
        "a retransmission was answered before the commit"
    );
    lock.release();
    let first = within(5, "OFFER-CONF", raw.recv()).await;
    assert!(matches!(first, ServerBody::OfferConf { .. }), "{first:?}");
    assert_eq!(t.query("SELECT count(*) FROM items"), 1);
}

#[tokio::test]
async fn a_bid_is_acknowledged_and_broadcast_only_once_committed() {
    let t = start(quick_config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let offered = alice.offer("Clock", Cents(1000), Some(60)).await.unwrap();
    let mut b = bob.open_item(offered.item).await.unwrap();
    let mut c = carol.open_item(offered.item).await.unwrap();

    let lock = WriteLock::take(&t.db);
    let bid = tokio::spawn(async move { (b.bid(Cents(1500), Some("x".into())).await, b) });
    // Carol sees no HIGHEST, and bob no answer, while the bid cannot be committed.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), c.next_event())
            .await
            .is_err(),
        "HIGHEST went out before the commit"
    );
    assert!(
        !bid.is_finished(),
        "BID-ACCEPTED went out before the commit"
    );
    assert_eq!(t.query("SELECT count(*) FROM bids"), 0);
    lock.release();
    let (result, _b) = within(5, "BID-ACCEPTED", bid).await.unwrap();
    assert!(matches!(
        result.unwrap(),
        BidResult::Accepted {
            amount: Cents(1500),
            ..
        }
    ));
    assert_eq!(t.query("SELECT count(*) FROM bids"), 1);
}
