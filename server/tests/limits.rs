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

/// A TLS client for `who`'s key, without the client library (so it can misbehave).
async fn tls_as(
    t: &common::TestServer,
    who: &auction_client::Client,
    channel: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let ca = auction_server::certs::load_certs(&t.ca).unwrap();
    let (chain, key) = who.identity.tls_credentials();
    let connector = auction_client::channel::connector(&ca, chain, key).unwrap();
    let tcp = tokio::net::TcpStream::connect(channel).await.unwrap();
    connector
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_silent_connection_is_dropped_at_the_handshake_timeout_and_frees_its_place() {
    let t = start(auction_server::Config {
        max_connections: 1,
        handshake_timeout: Duration::from_millis(300),
        ..quick_config()
    })
    .await;
    let [alice, bob] = t.people(["alice", "bob"]).await;
    let offered = alice.offer("Lamp", Cents(1000), Some(60)).await.unwrap();
    // Connects and never starts TLS: it holds the only place...
    let mut silent = tokio::net::TcpStream::connect(&offered.channel)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(
        bob.open_item(offered.item).await,
        Err(ClientError::Denied {
            reason: Reason::ServerFull,
            ..
        })
    ));
    // ...until the handshake timeout closes it.
    let mut buf = [0u8; 16];
    let n = within(5, "the silent connection to be closed", async {
        tokio::io::AsyncReadExt::read(&mut silent, &mut buf).await
    })
    .await;
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    within(5, "bob to get the freed place", async {
        loop {
            if bob.open_item(offered.item).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_the_others_are_served() {
    let t = start(quick_config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let offered = alice.offer("Lamp", Cents(1000), Some(60)).await.unwrap();
    // Carol asks for the state over and over and never reads an answer.
    let stuck = tls_as(&t, &carol, &offered.channel).await;
    let (_unread, mut writer) = tokio::io::split(stuck);
    let flood = tokio::spawn(async move {
        let line = auction_protocol::channel::encode_request(
            1,
            auction_protocol::channel::ChannelRequestBody::Status,
        );
        for _ in 0..100_000 {
            if tokio::io::AsyncWriteExt::write_all(&mut writer, line.as_bytes())
                .await
                .is_err()
            {
                return true; // the server closed the connection
            }
        }
        false
    });
    // Meanwhile Bob bids and is answered every time.
    let mut b = bob.open_item(offered.item).await.unwrap();
    for i in 0..50 {
        let r = within(5, "bob's answer", b.bid(Cents(1000 + i), None)).await;
        assert!(matches!(r, Ok(BidResult::Accepted { .. })), "{r:?}");
    }
    assert!(
        within(20, "carol to be disconnected", flood).await.unwrap(),
        "the server kept a client that reads nothing"
    );
    let metrics = t.server.metrics().render();
    assert!(
        metrics.contains("auction_outgoing_dropped_total{kind=\"queue-full\"} 1")
            || metrics.contains("auction_outgoing_dropped_total{kind=\"write-timeout\"} 1"),
        "{metrics}"
    );
}
