//! Subscriptions: BID-UPDATE and ITEM-CLOSED over UDP without joining the channel, numbered
//! per recipient, with gaps (and restarts) noticed and re-synchronised by the client.

mod common;

use auction_client::{Client, ClientError, Update};
use auction_protocol::udp::ServerBody;
use auction_protocol::{Cents, ItemState, Reason};
use common::relay::Relay;
use common::{quick_config, start, within};

/// The next update the client library hands over.
async fn update(c: &Client) -> Update {
    within(10, "an update", c.next_update())
        .await
        .expect("updates continue")
}

/// The next BID-UPDATE or ITEM-CLOSED (skipping NEW-ITEM).
async fn item_news(c: &Client) -> ServerBody {
    loop {
        match update(c).await {
            Update::Announcement(
                m @ (ServerBody::BidUpdate { .. } | ServerBody::ItemClosed { .. }),
            ) => return m,
            Update::Announcement(ServerBody::NewItem { .. }) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn denied(r: Result<impl std::fmt::Debug, ClientError>) -> Reason {
    match r {
        Err(ClientError::Denied { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn subscribers_follow_bids_and_the_result_without_joining_the_channel() {
    let t = start(quick_config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    carol.attach().await.unwrap();
    let item = alice
        .offer("Bike", Cents(1000), Some(3))
        .await
        .unwrap()
        .item;
    let view = carol.subscribe(item).await.unwrap();
    assert_eq!((view.item, view.highest), (item, None));
    // Subscribing twice is fine; unknown items are refused with a reason.
    carol.subscribe(item).await.unwrap();
    assert_eq!(denied(carol.subscribe(999).await), Reason::UnknownItem);

    let mut b = bob.open_item(item).await.unwrap();
    b.bid(Cents(1000), None).await.unwrap();
    b.bid(Cents(1200), None).await.unwrap();
    let mut seqs = vec![];
    for want in [Cents(1000), Cents(1200)] {
        match item_news(&carol).await {
            ServerBody::BidUpdate {
                item: i,
                highest,
                bidder,
                seq,
                ..
            } => {
                assert_eq!((i, highest, bidder.as_str()), (item, want, "bob"));
                seqs.push(seq);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seqs[1], seqs[0] + 1, "numbers per recipient without gaps");
    assert_eq!(
        carol.subscriptions().await.unwrap()[0].highest,
        Some(Cents(1200))
    );

    // Unsubscribed: no update for the next bid; subscribed again: the next one comes, and
    // the numbers show nothing was skipped.
    carol.unsubscribe(item).await.unwrap();
    b.bid(Cents(1300), None).await.unwrap();
    carol.subscribe(item).await.unwrap();
    b.bid(Cents(1400), None).await.unwrap();
    match item_news(&carol).await {
        ServerBody::BidUpdate { highest, seq, .. } => {
            assert_eq!((highest, seq), (Cents(1400), seqs[1] + 1));
        }
        other => panic!("{other:?}"),
    }
    // The result, then the subscription is over.
    match item_news(&carol).await {
        ServerBody::ItemClosed {
            item: i,
            winner,
            price,
            ..
        } => assert_eq!(
            (i, winner.as_deref(), price),
            (item, Some("bob"), Some(Cents(1400)))
        ),
        other => panic!("{other:?}"),
    }
    assert!(carol.subscriptions().await.unwrap().is_empty());
    assert_eq!(denied(carol.subscribe(item).await), Reason::AuctionOver);
    assert_eq!(t.query("SELECT count(*) FROM subscriptions"), 0);
}

#[tokio::test]
async fn a_lost_update_is_noticed_and_the_client_resynchronises() {
    let t = start(quick_config()).await;
    let [alice, bob] = t.people(["alice", "bob"]).await;
    // Carol reaches the server through a relay that loses her first BID-UPDATE.
    let mut dropped = false;
    let relay = Relay::start(
        t.server.udp_addr(),
        Box::new(move |text| {
            let lose = !dropped && text.contains("\"type\":\"bid-update\"");
            dropped |= lose;
            lose
        }),
    )
    .await;
    let carol = Client::new(relay.addr, &t.dir.path().join("homes/carol"), &t.ca)
        .await
        .unwrap();
    carol.register("carol").await.unwrap();
    carol.attach().await.unwrap();
    let item = alice
        .offer("Lamp", Cents(500), Some(60))
        .await
        .unwrap()
        .item;
    carol.subscribe(item).await.unwrap();
    // The NEW-ITEM sets carol's position.
    assert!(matches!(
        update(&carol).await,
        Update::Announcement(ServerBody::NewItem { .. })
    ));

    let mut b = bob.open_item(item).await.unwrap();
    b.bid(Cents(500), None).await.unwrap(); // its BID-UPDATE is lost
    b.bid(Cents(700), None).await.unwrap();
    match update(&carol).await {
        Update::Resynced {
            missed,
            items,
            open,
        } => {
            assert_eq!(missed, Some(1));
            assert_eq!(items.len(), 1);
            assert!(open.iter().any(|v| v.item == item), "{open:?}");
            assert_eq!(
                items[0].highest,
                Some(Cents(700)),
                "the state read after the gap"
            );
        }
        other => panic!("expected a resync, got {other:?}"),
    }
    // Then the announcement that showed the gap.
    match update(&carol).await {
        Update::Announcement(ServerBody::BidUpdate { highest, .. }) => {
            assert_eq!(highest, Cents(700))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn subscriptions_survive_a_restart_and_the_new_run_is_noticed() {
    let t = start(auction_server::Config {
        recovery_grace: std::time::Duration::from_secs(1),
        ..quick_config()
    })
    .await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    carol.attach().await.unwrap();
    let item = alice
        .offer("Sofa", Cents(500), Some(60))
        .await
        .unwrap()
        .item;
    carol.subscribe(item).await.unwrap();
    assert!(matches!(
        update(&carol).await,
        Update::Announcement(ServerBody::NewItem { .. })
    ));

    let t = t.restart().await;
    // The item is announced again, in a new run: the client notices and re-reads.
    match update(&carol).await {
        Update::Resynced {
            missed: None,
            items,
            ..
        } => {
            assert_eq!(items.len(), 1, "the subscription survived");
            assert_eq!(items[0].state, ItemState::Open);
        }
        other => panic!("expected a resync after the restart, got {other:?}"),
    }
    let mut b = bob.open_item(item).await.unwrap();
    b.bid(Cents(650), None).await.unwrap();
    match item_news(&carol).await {
        ServerBody::BidUpdate { highest, .. } => assert_eq!(highest, Cents(650)),
        other => panic!("{other:?}"),
    }
    assert_eq!(t.query("SELECT count(*) FROM subscriptions"), 1);
}
