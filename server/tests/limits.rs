//! Server-wide limits: each refuses with a reason the client can show, and everyone inside the
//! limit keeps being served.

mod common;

use auction_client::{BidResult, ClientError};
use auction_protocol::{Cents, Reason};
use common::{quick_config, start, within};
use std::time::Duration;

#[tokio::test]
async fn one_connection_over_the_limit_is_told_the_server_is_full() {
    let t = start(auction_server::Config {
        max_connections: 2,
        ..quick_config()
    })
    .await;
    let [alice, bob, carol, dave] = t.people(["alice", "bob", "carol", "dave"]).await;
    let offered = alice.offer("Lamp", Cents(1000), Some(60)).await.unwrap();
    let mut b = bob.open_item(offered.item).await.unwrap();
    let c = carol.open_item(offered.item).await.unwrap();

    match dave.open_item(offered.item).await {
        Err(ClientError::Denied {
            reason: Reason::ServerFull,
            message,
        }) => assert!(message.contains("limit of 2 connections"), "{message}"),
        other => panic!("expected server-full, got {other:?}"),
    }
    // Those inside the limit carry on.
    assert!(matches!(
        b.bid(Cents(1000), None).await.unwrap(),
        BidResult::Accepted { .. }
    ));
    assert!(t
        .server
        .metrics()
        .render()
        .contains("auction_channel_refused_total{reason=\"server-full\"} 1"));

    // A connection that leaves frees its place.
    c.close().await;
    within(10, "a place to free up", async {
        loop {
            match dave.open_item(offered.item).await {
                Ok(_) => break,
                Err(ClientError::Denied {
                    reason: Reason::ServerFull,
                    ..
                }) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
}
