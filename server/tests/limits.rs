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

/// The value of an unlabelled counter on the server's metrics page.
fn counter(t: &common::TestServer, name: &str) -> f64 {
    let page = t.server.metrics().render();
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} is not on the metrics page:\n{page}"))
        .parse()
        .unwrap()
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
async fn silent_connections_hold_only_their_own_sources_handshake_slots_until_the_timeout() {
    let t = start(auction_server::Config {
        max_handshakes_per_source: 2,
        handshake_timeout: Duration::from_millis(500),
        ..quick_config()
    })
    .await;
    let [alice, bob] = t.people(["alice", "bob"]).await;
    let offered = alice.offer("Lamp", Cents(1000), Some(60)).await.unwrap();
    // Two connections from 127.0.0.1 that never start TLS hold that source's slots...
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(
            tokio::net::TcpStream::connect(&offered.channel)
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...so a third from the same source is closed before any TLS work...
    match bob.open_item(offered.item).await {
        Err(ClientError::Tls(_) | ClientError::Io(_)) => {}
        other => panic!("expected the connection to be closed, got {other:?}"),
    }
    assert!(t
        .server
        .metrics()
        .render()
        .contains("auction_channel_refused_total{reason=\"handshakes-per-source\"} 1"));
    // ...while a bidder from another address (another host) gets in and bids.
    let carol = auction_client::Client::new_from(
        t.server.udp_addr(),
        &t.dir.path().join("homes").join("carol"),
        &t.ca,
        Some("127.0.0.2".parse().unwrap()),
    )
    .await
    .unwrap();
    carol.register("carol").await.unwrap();
    let mut c = carol.open_item(offered.item).await.unwrap();
    assert!(matches!(
        c.bid(Cents(1000), None).await.unwrap(),
        BidResult::Accepted { .. }
    ));
    // The handshake timeout closes the silent ones and gives their slots back.
    for mut s in silent {
        let mut buf = [0u8; 16];
        let n = within(5, "a silent connection to be closed", async {
            tokio::io::AsyncReadExt::read(&mut s, &mut buf).await
        })
        .await;
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    within(5, "bob to get a slot back", async {
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
async fn an_account_holds_at_most_its_budget_of_connections() {
    let t = start(auction_server::Config {
        max_connections_per_account: 2,
        max_open_items: 5,
        ..quick_config()
    })
    .await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let mut items = Vec::new();
    for name in ["A", "B", "C"] {
        items.push(alice.offer(name, Cents(1000), Some(60)).await.unwrap().item);
    }
    let _b1 = bob.open_item(items[0]).await.unwrap();
    let b2 = bob.open_item(items[1]).await.unwrap();
    match bob.open_item(items[2]).await {
        Err(ClientError::Denied {
            reason: Reason::TooManyConnections,
            message,
        }) => assert!(message.contains("already has 2 connections"), "{message}"),
        other => panic!("expected too-many-connections, got {other:?}"),
    }
    // Another account is not affected.
    let mut c = carol.open_item(items[2]).await.unwrap();
    assert!(matches!(
        c.bid(Cents(1000), None).await.unwrap(),
        BidResult::Accepted { .. }
    ));
    // Closing one gives the place back.
    b2.close().await;
    within(10, "bob's place to free up", async {
        loop {
            match bob.open_item(items[2]).await {
                Ok(_) => break,
                Err(ClientError::Denied {
                    reason: Reason::TooManyConnections,
                    ..
                }) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn offers_past_the_servers_item_budget_are_refused_server_busy() {
    let t = start(auction_server::Config {
        max_items: 2,
        ..quick_config()
    })
    .await;
    let [alice, bob] = t.people(["alice", "bob"]).await;
    let first = alice.offer("A", Cents(100), Some(1)).await.unwrap();
    bob.offer("B", Cents(100), Some(60)).await.unwrap();
    match bob.offer("C", Cents(100), Some(60)).await {
        Err(ClientError::Denied {
            reason: Reason::ServerBusy,
            message,
        }) => assert!(message.contains("2 items open"), "{message}"),
        other => panic!("expected server-busy, got {other:?}"),
    }
    assert!(t
        .server
        .metrics()
        .render()
        .contains("auction_requests_refused_total{reason=\"server-busy\"} 1"));
    // When one closes, its place is free again.
    within(10, "the first item to close and free its place", async {
        loop {
            if t.client("alice")
                .await
                .status(first.item)
                .await
                .unwrap()
                .state
                == auction_protocol::ItemState::Closed
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    within(10, "an offer to be taken again", async {
        loop {
            match bob.offer("C", Cents(100), Some(60)).await {
                Ok(_) => break,
                Err(ClientError::Denied {
                    reason: Reason::ServerBusy,
                    ..
                }) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn one_account_offers_at_most_its_budget_of_items_an_hour() {
    let t = start(auction_server::Config {
        offers_per_hour: 3,
        max_open_items: 10,
        ..quick_config()
    })
    .await;
    let [alice, bob] = t.people(["alice", "bob"]).await;
    for name in ["A", "B", "C"] {
        alice.offer(name, Cents(100), Some(60)).await.unwrap();
    }
    match alice.offer("D", Cents(100), Some(60)).await {
        Err(ClientError::Denied {
            reason: Reason::RateLimited,
            message,
        }) => assert!(
            message.contains("offered 3 items within the hour"),
            "{message}"
        ),
        other => panic!("expected rate-limited, got {other:?}"),
    }
    // Another account has its own budget.
    bob.offer("E", Cents(100), Some(60)).await.unwrap();
    assert_eq!(t.query("SELECT count(*) FROM items"), 4);
}

#[tokio::test]
async fn one_address_creates_at_most_its_budget_of_accounts_an_hour() {
    let t = start(auction_server::Config {
        accounts_per_hour: 3,
        ..quick_config()
    })
    .await;
    let [alice, _bob, _carol] = t.people(["alice", "bob", "carol"]).await;
    let dave = t.client("dave").await;
    match dave.register("dave").await {
        Err(ClientError::Denied {
            reason: Reason::TooManyAccounts,
            message,
        }) => assert!(
            message.contains("created 3 accounts within the hour"),
            "{message}"
        ),
        other => panic!("expected too-many-accounts, got {other:?}"),
    }
    // Registering an existing account again (same key) creates nothing and is not refused.
    alice.register("alice").await.unwrap();
    // Another address has its own budget.
    let erin = auction_client::Client::new_from(
        t.server.udp_addr(),
        &t.dir.path().join("homes").join("erin"),
        &t.ca,
        Some("127.0.0.2".parse().unwrap()),
    )
    .await
    .unwrap();
    erin.register("erin").await.unwrap();
    assert_eq!(t.query("SELECT count(*) FROM accounts"), 4);
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

#[tokio::test]
async fn a_flooding_source_is_rate_limited_while_others_are_served() {
    let t = start(auction_server::Config {
        udp_rate: 20.0,
        udp_burst: 20.0,
        ..quick_config()
    })
    .await;
    // The flood comes from 127.0.0.2, another loopback address: the limit is per source IP.
    let flood = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let junk = format!(
        r#"{{"v":1,"req":5,"type":"nonsense","padding":"{}"}}"#,
        "x".repeat(300)
    );
    for _ in 0..200 {
        flood
            .send_to(junk.as_bytes(), t.server.udp_addr())
            .await
            .unwrap();
    }
    // Meanwhile someone else registers and offers as usual.
    let [alice] = t.people(["alice"]).await;
    alice.offer("Lamp", Cents(1000), Some(60)).await.unwrap();

    // The flooder got about a burst of answers and one rate-limited notice, not 200 answers.
    let (mut malformed, mut limited) = (0, 0);
    let mut buf = [0u8; 2048];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(300), flood.recv_from(&mut buf)).await
    {
        match auction_protocol::udp::decode_server(&buf[..n])
            .unwrap()
            .body
        {
            auction_protocol::udp::ServerBody::Error { reason, req, .. } => {
                assert_eq!(req, Some(5));
                match reason {
                    Reason::Malformed => malformed += 1,
                    Reason::RateLimited => limited += 1,
                    other => panic!("unexpected {other}"),
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!((20..=40).contains(&malformed), "{malformed} answered");
    assert_eq!(limited, 1, "told once, not for every datagram");
    let dropped = counter(&t, "auction_udp_rate_limited_total");
    assert!(
        dropped >= 100.0 && dropped + f64::from(malformed) <= 200.0,
        "{dropped}"
    );
}

#[tokio::test]
async fn a_limited_client_backs_off_and_gets_through() {
    let t = start(auction_server::Config {
        udp_rate: 4.0,
        udp_burst: 2.0,
        ..quick_config()
    })
    .await;
    // Register (with its cookie round trip) takes the burst; the next requests are limited
    // at first, and the client retries with backoff until they pass.
    let [alice] = t.people(["alice"]).await;
    for i in 0..3 {
        within(
            20,
            "the offer to get through",
            alice.offer(&format!("Item {i}"), Cents(100), Some(60)),
        )
        .await
        .unwrap();
    }
    // They were limited on the way, not merely slow.
    assert!(counter(&t, "auction_udp_rate_limited_total") >= 1.0);
}

#[tokio::test]
async fn deregistering_closes_the_accounts_open_channels_with_a_reason() {
    let t = start(quick_config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let offered = alice.offer("Lamp", Cents(1000), Some(60)).await.unwrap();
    let mut b = bob.open_item(offered.item).await.unwrap();
    let mut c = carol.open_item(offered.item).await.unwrap();
    bob.deregister().await.unwrap();
    let said = within(5, "bob's channel to be told", b.next_event()).await;
    match said {
        Some(Ok(auction_protocol::channel::ChannelBody::Error {
            reason: Reason::AccountGone,
            req: None,
            ..
        })) => {}
        other => panic!("expected account-gone, got {other:?}"),
    }
    assert!(within(5, "bob's channel to close", b.next_event())
        .await
        .is_none());
    // Carol's channel is untouched.
    assert!(matches!(
        c.bid(Cents(1000), None).await.unwrap(),
        BidResult::Accepted { .. }
    ));
}

/// TLS 1.3 session resumption skips the client-certificate check: the server must still
/// refuse a resumed session of an account deregistered since.
#[tokio::test]
async fn a_resumed_tls_session_of_a_deregistered_account_is_refused() {
    use tokio::io::AsyncBufReadExt;
    let t = start(quick_config()).await;
    let [alice, bob] = t.people(["alice", "bob"]).await;
    let offered = alice.offer("Lamp", Cents(1000), Some(60)).await.unwrap();
    let ca = auction_server::certs::load_certs(&t.ca).unwrap();
    let (chain, key) = bob.identity.tls_credentials();
    // One connector (and so one session cache) for both connections, as a client keeps.
    let connector = auction_client::channel::connector(&ca, chain, key).unwrap();
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(&offered.channel)
            .await
            .unwrap();
        let tls = connector
            .connect(
                rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
                tcp,
            )
            .await
            .unwrap();
        let kind = tls.get_ref().1.handshake_kind();
        let mut lines = tokio::io::BufReader::new(tls);
        let mut first = String::new();
        let n = within(5, "the first line", lines.read_line(&mut first)).await;
        (kind, n.map(|_| first).unwrap_or_default())
    };
    let (kind, first) = connect().await;
    assert_eq!(kind, Some(rustls::HandshakeKind::Full));
    assert!(first.contains("\"state\""), "{first}");
    let (kind, first) = connect().await;
    assert_eq!(
        kind,
        Some(rustls::HandshakeKind::Resumed),
        "the server resumes sessions"
    );
    assert!(first.contains("\"state\""), "{first}");

    bob.deregister().await.unwrap();
    let (kind, first) = connect().await;
    assert_eq!(kind, Some(rustls::HandshakeKind::Resumed));
    assert!(
        first.contains("\"account-gone\""),
        "a resumed session of a deregistered account got in: {first}"
    );
}

/// Junk datagrams at full speed from one address and connections opened and dropped in a loop,
/// each from its own thread and runtime (as other processes would be): an honest client still
/// registers, offers and bids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_and_connection_churn_do_not_starve_an_honest_client() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let t = start(quick_config()).await;
    let [alice] = t.people(["alice"]).await;
    let offered = alice.offer("Lamp", Cents(1000), Some(120)).await.unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (junk_sent, churned) = (
        std::sync::Arc::new(AtomicU64::new(0)),
        std::sync::Arc::new(AtomicU64::new(0)),
    );
    let udp = t.server.udp_addr();
    let flood = {
        let (stop, sent) = (stop.clone(), junk_sent.clone());
        std::thread::spawn(move || {
            let socket = std::net::UdpSocket::bind("127.0.0.3:0").unwrap();
            let junk = [b'{'; 900];
            while !stop.load(Ordering::Relaxed) {
                let _ = socket.send_to(&junk, udp);
                // At most about 50,000 a second (50 times its budget): enough to fill the
                // server's receive queue between reads when the machine is busy, yet a load one
                // host's honest neighbours get through (unbounded, it measures the machine).
                if sent.fetch_add(1, Ordering::Relaxed) % 50 == 49 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    let churn = {
        let (stop, churned, channel) = (stop.clone(), churned.clone(), offered.channel.clone());
        // From a host of its own (the per-source handshake budget is the point: the honest
        // client, from 127.0.0.1, is another host).
        let channel: std::net::SocketAddr = channel.parse().unwrap();
        let from = socket2::SockAddr::from("127.0.0.4:0".parse::<std::net::SocketAddr>().unwrap());
        std::thread::spawn(move || {
            let connect = || -> std::io::Result<std::net::TcpStream> {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
                s.bind(&from)?;
                s.connect(&channel.into())?;
                Ok(s.into())
            };
            while !stop.load(Ordering::Relaxed) {
                // Connect and hang up, or send garbage instead of a TLS hello.
                if let Ok(mut s) = connect() {
                    if churned.fetch_add(1, Ordering::Relaxed) % 2 == 0 {
                        let _ = std::io::Write::write_all(&mut s, b"GET / HTTP/1.0\r\n\r\n");
                    }
                }
            }
        })
    };
    // Both under way for a while before the honest client comes (and while it is served).
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let honest = within(30, "the honest client to register and bid", async {
        let bob = t.registered("bob").await;
        let mut ch = bob.open_item(offered.item).await.unwrap();
        for i in 0..20 {
            let r = ch.bid(Cents(1000 + i), None).await.unwrap();
            assert!(matches!(r, BidResult::Accepted { .. }), "{r:?}");
        }
        bob.status(offered.item).await.unwrap()
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    churn.join().unwrap();
    assert_eq!(honest.highest, Some(Cents(1019)));
    let (sent, churned) = (
        junk_sent.load(Ordering::Relaxed),
        churned.load(Ordering::Relaxed),
    );
    assert!(
        sent > 1000 && churned > 50,
        "junk {sent}, connections {churned}"
    );
    eprintln!("meanwhile: {sent} junk datagrams, {churned} connections opened and dropped");
}

#[tokio::test]
async fn a_quiet_channel_is_closed_at_the_idle_timeout_unless_kept_alive() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let t = start(auction_server::Config {
        idle_timeout: Duration::from_millis(400),
        ..quick_config()
    })
    .await;
    let [alice, bob, carol, dave] = t.people(["alice", "bob", "carol", "dave"]).await;
    let offered = alice.offer("Lamp", Cents(1000), Some(60)).await.unwrap();

    // Bob says nothing after the handshake: STATE, then idle-timeout and the close.
    let quiet = tokio::io::BufReader::new(tls_as(&t, &bob, &offered.channel).await);
    let mut lines = quiet.lines();
    let state = within(5, "STATE", lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(state.contains("\"state\""), "{state}");
    let error = within(5, "the idle timeout", lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(error.contains("\"idle-timeout\""), "{error}");
    assert!(within(5, "the close", lines.next_line())
        .await
        .map(|l| l.is_none())
        .unwrap_or(true));

    // Carol sends a blank line every 100 ms: still connected after three timeouts' worth.
    let mut kept = tls_as(&t, &carol, &offered.channel).await;
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        kept.write_all(b"\n").await.unwrap();
    }
    kept.write_all(
        auction_protocol::channel::encode_request(
            1,
            auction_protocol::channel::ChannelRequestBody::Status,
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut lines = tokio::io::BufReader::new(kept).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    assert!(first.contains("\"state\""));
    let answer = within(5, "the status answer", lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer.contains("\"state\"") && answer.contains("\"req\":1"),
        "{answer}"
    );

    // The reference client's session sends its keep-alives by itself.
    let policy = auction_client::Reconnect {
        keepalive: Duration::from_millis(100),
        ..Default::default()
    };
    let dave = std::sync::Arc::new(dave);
    let mut session = auction_client::ItemSession::open(dave.clone(), offered.item, policy)
        .await
        .unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(1500), session.next_event()).await;
    assert!(
        waited.is_err(),
        "the session reported {waited:?} instead of staying quiet"
    );
}

/// A reader that falls behind gets the newest HIGHEST, not every one: while its socket is
/// full the server keeps only the latest, so catching up costs it (and the server) little.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_the_latest_highest_not_every_one() {
    use tokio::io::AsyncBufReadExt;
    let t = start(auction_server::Config {
        // Carol must not be dropped as stuck while Bob bids; small kernel buffers so that
        // what Bob's bids produce does not all fit in them.
        write_timeout: Duration::from_secs(60),
        channel_send_buffer: Some(4096),
        // Bob bids 2000 times as fast as he can: above any account's bid budget.
        bid_rate: 1e9,
        bid_burst: 1e9,
        ..quick_config()
    })
    .await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let offered = alice.offer("Lamp", Cents(1000), Some(120)).await.unwrap();
    // Carol's receive buffer is tiny and she does not read while Bob bids 2000 times: more
    // HIGHEST than the buffers between them (TCP both ends, TLS) hold.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let tcp = socket
        .connect(offered.channel.parse().unwrap())
        .await
        .unwrap();
    let ca = auction_server::certs::load_certs(&t.ca).unwrap();
    let (chain, key) = carol.identity.tls_credentials();
    let connector = auction_client::channel::connector(&ca, chain, key).unwrap();
    let slow = connector
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let mut b = bob.open_item(offered.item).await.unwrap();
    for i in 0..2000 {
        assert!(matches!(
            b.bid(Cents(1000 + i), None).await.unwrap(),
            BidResult::Accepted { .. }
        ));
    }
    // Now Carol reads what there is: fewer than 2000 HIGHEST, the last one the latest.
    let mut lines = tokio::io::BufReader::new(slow).lines();
    let mut highest = Vec::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await
    {
        if line.contains("\"highest\"") && line.contains("\"type\":\"highest\"") {
            highest.push(line);
        }
    }
    assert!(
        highest.len() < 1500,
        "{} HIGHEST lines: nothing was coalesced",
        highest.len()
    );
    let last = highest.last().expect("at least the latest HIGHEST");
    assert!(last.contains("\"amount\":2999"), "{last}");
    eprintln!("{} of 2000 HIGHEST reached the slow reader", highest.len());
}

#[tokio::test]
async fn an_account_over_its_bid_rate_is_told_so_and_keeps_its_channel() {
    let t = start(auction_server::Config {
        bid_rate: 5.0,
        bid_burst: 5.0,
        ..quick_config()
    })
    .await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let offered = alice.offer("Lamp", Cents(100), Some(60)).await.unwrap();
    let mut b = bob.open_item(offered.item).await.unwrap();
    let mut c = carol.open_item(offered.item).await.unwrap();

    // Five at once are judged (the burst); the next is refused without being judged.
    for n in 0..5u64 {
        let bid = b.bid(Cents(100 + n), Some(format!("b-{n}"))).await.unwrap();
        assert!(matches!(bid, BidResult::Accepted { .. }), "{bid:?}");
    }
    let over = b.bid(Cents(200), Some("b-over".into())).await.unwrap();
    let BidResult::Rejected {
        reason: Reason::RateLimited,
        message,
        ..
    } = over
    else {
        panic!("{over:?}")
    };
    assert!(message.contains("5 bids a second"), "{message}");
    // Nothing about it was kept, and another account is not affected.
    let stored = t.query("SELECT count(*) FROM bids WHERE bid_id = 'b-over'");
    assert_eq!(stored, 0);
    assert!(matches!(
        c.bid(Cents(300), None).await.unwrap(),
        BidResult::Accepted { .. }
    ));
    // The channel stays; a moment later the same id is judged, once.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = b.bid(Cents(400), Some("b-over".into())).await.unwrap();
    assert!(matches!(again, BidResult::Accepted { .. }), "{again:?}");
    // Acknowledged, so already durable.
    let stored = t.query("SELECT count(*) FROM bids WHERE bid_id = 'b-over'");
    assert_eq!(stored, 1);
}
