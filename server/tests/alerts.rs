//! OUTBID and ENDING-SOON over the real protocol: a bidder who is not on the item's channel is
//! told reliably over UDP that it lost the lead, and, leading, that the item ends soon; one
//! on the channel hears it there and gets no notice; a newer OUTBID replaces an unacknowledged
//! older one; and a pending one is still delivered after a restart.

mod common;

use auction_client::{BidResult, Client};
use auction_protocol::udp::ServerBody;
use auction_protocol::Cents;
use common::{announcement, quick_config, start, within, TestServer};
use std::time::Duration;

fn accepted(r: &BidResult) {
    assert!(matches!(r, BidResult::Accepted { .. }), "{r:?}");
}

/// Bids `amount` on `item` from a channel opened for it and closed again, and waits until
/// the item has let the connection go (its connection log says so).
async fn bid_and_leave(t: &TestServer, c: &Client, item: u64, amount: u64) {
    bid_and_leave_with(t, c, item, amount, 0).await;
}

/// [`bid_and_leave`] while `others` connections stay on the item.
async fn bid_and_leave_with(t: &TestServer, c: &Client, item: u64, amount: u64, others: i64) {
    let mut ch = c.open_item(item).await.unwrap();
    accepted(&ch.bid(Cents(amount), None).await.unwrap());
    drop(ch);
    connected(t, item, others).await;
}

/// Waits until `item` has `n` connections, as its connection log has them.
async fn connected(t: &TestServer, item: u64, n: i64) {
    let sql = format!(
        "SELECT count(*) FROM channel_sessions WHERE item = {item} AND disconnected_at IS NULL"
    );
    within(10, "the connection log", async {
        while t.query(&sql) != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// The next OUTBID or ENDING-SOON for `c`: (kind, item, amount, leader, next_min).
async fn alert(c: &Client) -> (&'static str, u64, Cents, Option<String>, Option<Cents>) {
    announcement(c, "OUTBID or ENDING-SOON", |msg| match msg {
        ServerBody::Outbid {
            item,
            amount,
            bidder,
            next_min,
            ..
        } => Some((
            "outbid",
            *item,
            *amount,
            Some(bidder.clone()),
            Some(*next_min),
        )),
        ServerBody::EndingSoon { item, amount, .. } => {
            Some(("ending-soon", *item, *amount, None, None))
        }
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_leader_away_from_the_channel_is_told_it_was_outbid_and_one_on_it_is_not() {
    let t = start(quick_config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let item = alice
        .offer("Lamp", Cents(1000), Some(60))
        .await
        .unwrap()
        .item;
    bid_and_leave(&t, &bob, item, 1000).await;
    // Carol stays on the channel: bob, away, is told he lost the lead.
    let mut c = carol.open_item(item).await.unwrap();
    accepted(&c.bid(Cents(1100), None).await.unwrap());
    assert_eq!(
        alert(&bob).await,
        (
            "outbid",
            item,
            Cents(1100),
            Some("carol".to_owned()),
            Some(Cents(1101))
        )
    );
    // Bob takes the lead back while carol is on the channel: she hears it there, no notice.
    bid_and_leave_with(&t, &bob, item, 1200, 1).await;
    drop(c);
    connected(&t, item, 0).await;
    // Away, she leads again and loses it: the first notice she gets is for 14.00.
    bid_and_leave(&t, &carol, item, 1300).await;
    bid_and_leave(&t, &bob, item, 1400).await;
    assert_eq!(
        alert(&carol).await,
        (
            "outbid",
            item,
            Cents(1400),
            Some("bob".to_owned()),
            Some(Cents(1401))
        )
    );
}

#[tokio::test]
async fn a_newer_outbid_replaces_an_unacknowledged_one_and_a_pending_one_survives_a_restart() {
    let t = start(quick_config()).await;
    let [alice, bob, carol, dave] = t.people(["alice", "bob", "carol", "dave"]).await;
    let item = alice
        .offer("Vase", Cents(1000), Some(60))
        .await
        .unwrap()
        .item;
    bid_and_leave(&t, &bob, item, 1000).await;
    // Bob reads no announcements: his OUTBIDs wait unacknowledged.
    bid_and_leave(&t, &carol, item, 1100).await;
    bid_and_leave(&t, &bob, item, 1200).await;
    bid_and_leave(&t, &dave, item, 1300).await;
    let bob_id = t.query("SELECT id FROM accounts WHERE name = 'bob'");
    let count = |acked: bool| {
        t.query(&format!(
            "SELECT count(*) FROM notices WHERE account = {bob_id} AND kind = 'outbid' AND acked_at IS {}NULL",
            if acked { "NOT " } else { "" }
        ))
    };
    within(10, "both of bob's OUTBIDs stored", async {
        while count(true) + count(false) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(
        (count(false), count(true)),
        (1, 1),
        "the newer one replaced the older"
    );
    // After a restart the pending one is delivered at the next login, on a new socket (the
    // old one may hold both as they were sent): the latest price only.
    let t = t.restart().await;
    drop(bob);
    let bob = t.client("bob").await;
    bob.attach().await.unwrap();
    assert_eq!(
        alert(&bob).await,
        (
            "outbid",
            item,
            Cents(1300),
            Some("dave".to_owned()),
            Some(Cents(1301))
        )
    );
    drop(t);
}

#[tokio::test]
async fn the_leader_away_from_the_channel_is_told_the_item_ends_soon_and_one_on_it_is_not() {
    let t = start(auction_server::Config {
        ending_soon: Duration::from_secs(2),
        ..quick_config()
    })
    .await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    // 10 s items: their last 2 s (a quarter would be 2.5 s) start 8 s after the offer.
    let away = alice.offer("Clock", Cents(1000), Some(10)).await.unwrap();
    let here = alice.offer("Globe", Cents(1000), Some(10)).await.unwrap();
    bid_and_leave(&t, &bob, away.item, 1500).await;
    let mut c = carol.open_item(here.item).await.unwrap();
    accepted(&c.bid(Cents(1500), None).await.unwrap());
    assert_eq!(
        within(15, "ENDING-SOON", alert(&bob)).await,
        ("ending-soon", away.item, Cents(1500), None, None)
    );
    // Carol, on her item's channel, gets no ENDING-SOON: the first notice she gets is her WIN.
    let first = announcement(&carol, "a notice", |msg| match msg {
        ServerBody::EndingSoon { .. } => Some("ending-soon"),
        ServerBody::Win { .. } => Some("win"),
        _ => None,
    })
    .await;
    assert_eq!(first, "win");
    drop((c, t));
}

#[tokio::test]
async fn a_buy_it_now_that_takes_the_lead_sends_no_outbid() {
    let t = start(quick_config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let terms = auction_client::Terms {
        reserve: Some(Cents(5000)),
        buy_now: Some(Cents(9000)),
    };
    let clock = alice
        .offer_with("Clock", Cents(1000), Some(60), terms)
        .await
        .unwrap()
        .item;
    let lamp = alice
        .offer("Lamp", Cents(1000), Some(60))
        .await
        .unwrap()
        .item;
    // Bob leads the clock below its reserve and leaves; carol buys it at once.
    bid_and_leave(&t, &bob, clock, 1000).await;
    let mut c = carol.open_item(clock).await.unwrap();
    let r = c
        .place(auction_client::Offer::BuyNow(Cents(9000)), None)
        .await
        .unwrap();
    accepted(&r);
    drop(c);
    // Then bob loses the lamp: that is the first notice he gets.
    bid_and_leave(&t, &bob, lamp, 1000).await;
    bid_and_leave(&t, &carol, lamp, 1100).await;
    assert_eq!(
        alert(&bob).await,
        (
            "outbid",
            lamp,
            Cents(1100),
            Some("carol".to_owned()),
            Some(Cents(1101))
        )
    );
}
