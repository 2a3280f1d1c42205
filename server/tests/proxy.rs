//! Proxy bidding against a real server: a private maximum answers direct bids and other
//! proxies one increment above them, the earlier of equal maximums wins, others never see the
//! maximum, and it survives a restart.

mod common;

use auction_client::{BidResult, ItemChannel, Offer};
use auction_protocol::channel::ChannelBody;
use auction_protocol::udp::ServerBody;
use auction_protocol::Cents;
use auction_server::Increments;
use common::{announcement, mentions, next_matching, quick_config, start};

/// Increments of 0.50, so "one increment above" is visible in the amounts.
fn config() -> auction_server::Config {
    auction_server::Config {
        increments: std::sync::Arc::new(Increments::fixed(Cents(50))),
        ..quick_config()
    }
}

fn accepted(r: &BidResult) -> (Cents, bool, Option<Cents>) {
    match r {
        BidResult::Accepted {
            amount,
            leading,
            max,
            ..
        } => (*amount, *leading, *max),
        other => panic!("expected acceptance, got {other:?}"),
    }
}

/// The HIGHEST that shows `amount`, with its bidder.
async fn highest_at(ch: &mut ItemChannel, amount: Cents) -> String {
    next_matching(ch, "HIGHEST", |m| match m {
        ChannelBody::Highest {
            amount: a, bidder, ..
        } if *a == amount => Some(bidder.clone()),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_proxy_answers_direct_bids_and_other_proxies_and_keeps_its_maximum_private() {
    let t = start(config()).await;
    let [alice, bob, carol, dave] = t.people(["alice", "bob", "carol", "dave"]).await;
    bob.attach().await.unwrap();
    let item = alice
        .offer("Radio", Cents(1000), Some(60))
        .await
        .unwrap()
        .item;
    let mut b = bob.open_item(item).await.unwrap();
    let mut c = carol.open_item(item).await.unwrap();
    let mut d = dave.open_item(item).await.unwrap();

    // Bob's proxy starts at the minimum.
    let r = b
        .place(Offer::Max(Cents(5000)), Some("b1".into()))
        .await
        .unwrap();
    assert_eq!(accepted(&r), (Cents(1000), true, Some(Cents(5000))));
    assert_eq!(highest_at(&mut c, Cents(1000)).await, "bob");

    // Carol bids 20.00 directly: accepted, but bob's proxy answers one increment above.
    let r = c.bid(Cents(2000), Some("c1".into())).await.unwrap();
    assert_eq!(accepted(&r), (Cents(2000), false, None));
    assert_eq!(highest_at(&mut d, Cents(2050)).await, "bob");
    // What others see is the price; bob's maximum appears nowhere.
    let view = carol.status(item).await.unwrap();
    assert_eq!(
        (view.highest, view.bidder.as_deref()),
        (Some(Cents(2050)), Some("bob"))
    );
    let state = serde_json::to_value(d.status().await.unwrap()).unwrap();
    assert!(!mentions(&state, 5000), "{state}");

    // Dave's proxy with the same maximum loses to bob's earlier one, at the maximum.
    let r = d
        .place(Offer::Max(Cents(5000)), Some("d1".into()))
        .await
        .unwrap();
    assert_eq!(accepted(&r), (Cents(5000), false, Some(Cents(5000))));
    assert_eq!(highest_at(&mut c, Cents(5000)).await, "bob");

    // A higher proxy wins one increment above bob's maximum.
    let r = d
        .place(Offer::Max(Cents(9000)), Some("d2".into()))
        .await
        .unwrap();
    assert_eq!(accepted(&r), (Cents(5050), true, Some(Cents(9000))));
    assert_eq!(highest_at(&mut b, Cents(5050)).await, "dave");

    // A repeated bid id still gets its first answer.
    let again = d
        .place(Offer::Max(Cents(9000)), Some("d2".into()))
        .await
        .unwrap();
    assert_eq!(accepted(&again), (Cents(5050), true, Some(Cents(9000))));

    // The maximum survives a restart: carol's 60.00 is answered at 60.50 by dave's proxy.
    drop((b, c, d));
    let t = t.restart().await;
    let mut c = carol.open_item(item).await.unwrap();
    let r = c.bid(Cents(6000), Some("c2".into())).await.unwrap();
    assert_eq!(accepted(&r), (Cents(6000), false, None));
    let view = carol.status(item).await.unwrap();
    assert_eq!(
        (view.highest, view.bidder.as_deref()),
        (Some(Cents(6050)), Some("dave"))
    );
    assert_eq!(
        t.query("SELECT lead_max_cents FROM items WHERE id = 1"),
        9000,
        "the leader's maximum is stored"
    );
}

#[tokio::test]
async fn the_proxy_wins_at_the_second_maximum_plus_one_increment() {
    let t = start(config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    carol.attach().await.unwrap();
    let item = alice
        .offer("Kettle", Cents(500), Some(3))
        .await
        .unwrap()
        .item;
    let mut b = bob.open_item(item).await.unwrap();
    let mut c = carol.open_item(item).await.unwrap();
    b.place(Offer::Max(Cents(1200)), None).await.unwrap();
    let r = c.place(Offer::Max(Cents(3000)), None).await.unwrap();
    assert_eq!(accepted(&r), (Cents(1250), true, Some(Cents(3000))));
    // Bob raises his own... he cannot: he no longer leads, so it is a new challenge.
    let r = b.place(Offer::Max(Cents(2000)), None).await.unwrap();
    assert_eq!(accepted(&r), (Cents(2000), false, Some(Cents(2000))));
    // Carol wins at bob's maximum plus one increment, not at her own maximum.
    let (winner, amount) = announcement(&carol, "WIN", |m| match m {
        ServerBody::Win { amount, seller, .. } => Some((seller.clone(), *amount)),
        _ => None,
    })
    .await;
    assert_eq!((winner.as_str(), amount), ("alice", Cents(2050)));
    drop((b, c));
}
