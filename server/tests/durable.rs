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

/// A message waits for what its own item stored, not for other items' commits: while one
/// item's accepted bid cannot be committed, a rejection on another item (whose bids are all
/// durable) is answered at once, and a rejection on the first item waits behind its bid.
#[tokio::test]
async fn a_rejection_waits_only_for_its_own_items_records() {
    let t = start(quick_config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let lamp = alice.offer("Lamp", Cents(1000), Some(60)).await.unwrap();
    let clock = alice.offer("Clock", Cents(1000), Some(60)).await.unwrap();
    let mut bob_lamp = bob.open_item(lamp.item).await.unwrap();
    let mut carol_lamp = carol.open_item(lamp.item).await.unwrap();
    let mut carol_clock = carol.open_item(clock.item).await.unwrap();
    // The clock has a durable bid: its state is bob's 20.00.
    let mut bob_clock = bob.open_item(clock.item).await.unwrap();
    assert!(matches!(
        bob_clock.bid(Cents(2000), None).await.unwrap(),
        BidResult::Accepted { .. }
    ));

    let lock = WriteLock::take(&t.db);
    let stuck = tokio::spawn(async move { (bob_lamp.bid(Cents(1500), None).await, bob_lamp) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !stuck.is_finished(),
        "BID-ACCEPTED went out before the commit"
    );

    // Another item's rejection does not wait for the lamp's commit.
    let other = within(
        2,
        "a rejection on the clock",
        carol_clock.bid(Cents(1500), None),
    )
    .await;
    match other.unwrap() {
        BidResult::Rejected {
            highest, next_min, ..
        } => {
            assert_eq!(highest, Some(Cents(2000)));
            assert!(next_min > Cents(2000), "{next_min:?}");
        }
        other => panic!("expected too-low on the clock, got {other:?}"),
    }

    // A rejection on the lamp tells of bob's 15.00, which is not durable: it waits.
    let same = tokio::spawn(async move { (carol_lamp.bid(Cents(1200), None).await, carol_lamp) });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !same.is_finished(),
        "a rejection showing an uncommitted price went out before the commit"
    );
    assert_eq!(t.query("SELECT count(*) FROM bids"), 1);

    lock.release();
    let (accepted, _b) = within(5, "BID-ACCEPTED", stuck).await.unwrap();
    assert!(matches!(
        accepted.unwrap(),
        BidResult::Accepted {
            amount: Cents(1500),
            ..
        }
    ));
    let (rejected, _c) = within(5, "the lamp's rejection", same).await.unwrap();
    match rejected.unwrap() {
        BidResult::Rejected { highest, .. } => assert_eq!(highest, Some(Cents(1500))),
        other => panic!("expected too-low on the lamp, got {other:?}"),
    }
    assert_eq!(t.query("SELECT count(*) FROM bids"), 2);
}
