//! Restarts of an in-process server on the same database and UDP port: accounts, open
//! auctions, bid ids, replay windows and undelivered notices all carry on. (Crashes of a real
//! server process are in `crash.rs`.)

mod common;

use auction_client::{BidResult, Offer};
use auction_protocol::limits::RETRANSMIT_SECS;
use auction_protocol::udp::{RequestBody, ServerBody};
use auction_protocol::{Cents, ItemState, Reason};
use common::raw::{error_reason, Raw};
use common::{announcement, quick_config, start, within};
use std::time::Duration;

fn config() -> auction_server::Config {
    auction_server::Config {
        recovery_grace: Duration::from_secs(2),
        ..quick_config()
    }
}

#[tokio::test]
async fn accounts_and_open_auctions_carry_on_after_a_restart() {
    let t = start(config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    bob.attach().await.unwrap();
    let offered = alice.offer("Clock", Cents(1000), Some(60)).await.unwrap();
    let mut b = bob.open_item(offered.item).await.unwrap();
    let mut c = carol.open_item(offered.item).await.unwrap();
    let first = b.bid(Cents(1000), Some("b-1".into())).await.unwrap();
    let BidResult::Accepted { ends_at, .. } = first else {
        panic!("{first:?}")
    };
    let low = c.bid(Cents(5), Some("c-low".into())).await.unwrap();
    assert!(matches!(
        low,
        BidResult::Rejected {
            reason: Reason::TooLow,
            ..
        }
    ));
    // The verdict and message are the first ones; `highest` and `next_min` say how things
    // stand now.
    let strip = |r: BidResult| match r {
        BidResult::Rejected {
            reason, message, ..
        } => (reason, message),
        other => panic!("expected the first rejection, got {other:?}"),
    };
    // A rejected id sent again (here on a new connection) gets its first answer, even with
    // an amount that would now be enough: the server keeps it in memory for a while.
    let mut c2 = carol.open_item(offered.item).await.unwrap();
    let again = c2.bid(Cents(5000), Some("c-low".into())).await.unwrap();
    assert_eq!(strip(again), strip(low.clone()));
    assert!(matches!(
        c.bid(Cents(1200), Some("c-1".into())).await.unwrap(),
        BidResult::Accepted { .. }
    ));
    assert_eq!(
        t.query("SELECT count(*) FROM bids WHERE bid_id = 'c-low'"),
        0,
        "a rejected bid is not stored"
    );

    let t = t.restart().await;

    // The item is open again on the same channel, with its lead, and the grace period added.
    let view = alice.status(offered.item).await.unwrap();
    assert_eq!(view.state, ItemState::Open);
    assert_eq!(view.highest, Some(Cents(1200)));
    assert_eq!(view.bidder.as_deref(), Some("carol"));
    assert_eq!(view.ends_at, ends_at + 2_000);
    assert_eq!(view.channel.as_deref(), Some(offered.channel.as_str()));
    // ...and announced again to those who listen (the first NEW-ITEM, from the offer, had no
    // bid yet).
    let again = announcement(&bob, "NEW-ITEM after the restart", |m| match m {
        ServerBody::NewItem { item, .. } if item.item == offered.item && item.highest.is_some() => {
            Some(item.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(again.highest, Some(Cents(1200)));
    assert_eq!(again.ends_at, ends_at + 2_000);

    // An accepted bid id keeps its first answer (it is stored). A rejected one, sent again
    // unchanged, is judged again after a restart: still too low (PROTOCOL.md, bid ids).
    let mut b = bob.open_item(offered.item).await.unwrap();
    assert_eq!(b.item.highest, Some(Cents(1200)));
    assert_eq!(b.bid(Cents(9999), Some("b-1".into())).await.unwrap(), first);
    let mut c = carol.open_item(offered.item).await.unwrap();
    let again = c.bid(Cents(5), Some("c-low".into())).await.unwrap();
    assert_eq!(strip(again).0, Reason::TooLow);
    assert_eq!(
        t.query("SELECT count(*) FROM bids WHERE bid_id = 'b-1'"),
        1,
        "a resent id is never recorded twice"
    );
    assert!(matches!(
        b.bid(Cents(1300), Some("b-2".into())).await.unwrap(),
        BidResult::Accepted { .. }
    ));

    // Accounts are still there: the same key registers as a no-op, the seller still has an
    // open item, and a new account gets a new id.
    alice.register("alice").await.unwrap();
    assert!(matches!(
        alice.deregister().await,
        Err(auction_client::ClientError::Denied {
            reason: Reason::HasOpenItems,
            ..
        })
    ));
    t.registered("dave").await;
    assert_eq!(
        t.query("SELECT max(id) FROM accounts WHERE name = 'dave'"),
        4
    );
}

#[tokio::test]
async fn an_auction_that_ended_while_the_server_was_down_closes_at_restart() {
    let t = start(config()).await;
    let [alice, bob] = t.people(["alice", "bob"]).await;
    alice.attach().await.unwrap();
    bob.attach().await.unwrap();
    let offered = alice.offer("Kettle", Cents(300), Some(2)).await.unwrap();
    let mut b = bob.open_item(offered.item).await.unwrap();
    assert!(matches!(
        b.bid(Cents(450), None).await.unwrap(),
        BidResult::Accepted { .. }
    ));
    // Down for longer than the auction had left.
    let t = t.restart_after(Duration::from_millis(2500)).await;

    let win = announcement(&bob, "WIN after the restart", |m| match m {
        ServerBody::Win { item, amount, .. } if *item == offered.item => Some(*amount),
        _ => None,
    })
    .await;
    assert_eq!(win, Cents(450));
    let sold = announcement(&alice, "SOLD after the restart", |m| match m {
        ServerBody::Sold { item, winner, .. } if *item == offered.item => Some(winner.clone()),
        _ => None,
    })
    .await;
    assert_eq!(sold, "bob");
    let view = alice.status(offered.item).await.unwrap();
    assert_eq!(view.state, ItemState::Closed);
    assert_eq!(view.winner.as_deref(), Some("bob"));
    assert_eq!(view.price, Some(Cents(450)));
    // No grace for an auction already over: it closed at once, with no new end.
    assert_eq!(view.ends_at, offered.ends_at);
    drop(t);
}

#[tokio::test]
async fn unacknowledged_notices_are_delivered_again_after_a_restart() {
    let t = start(config()).await;
    let [alice, bob] = t.people(["alice", "bob"]).await;
    bob.attach().await.unwrap();
    let offered = alice.offer("Radio", Cents(100), Some(1)).await.unwrap();
    let mut b = bob.open_item(offered.item).await.unwrap();
    assert!(matches!(
        b.bid(Cents(100), None).await.unwrap(),
        BidResult::Accepted { .. }
    ));
    // Read the WIN off the socket without acknowledging it.
    let unacked = loop {
        match within(10, "WIN", bob.udp.next_announcement()).await {
            Some(ServerBody::Win { notice, .. }) => break notice,
            Some(_) => continue,
            None => panic!("announcements ended"),
        }
    };
    let t = t.restart().await;
    // The server sends it again (same id) until acknowledged; this time the library acks it.
    let again = announcement(&bob, "WIN again", |m| match m {
        ServerBody::Win { notice, .. } => Some(*notice),
        _ => None,
    })
    .await;
    assert_eq!(again, unacked);
    let acked_at =
        format!("SELECT count(*) FROM notices WHERE id = {unacked} AND acked_at IS NOT NULL");
    within(5, "the acknowledgement to be stored", async {
        while t.query(&acked_at) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let t = t.restart().await;
    assert_eq!(
        t.query("SELECT count(*) FROM notices WHERE acked_at IS NULL AND account = (SELECT id FROM accounts WHERE name = 'bob')"),
        0
    );
}

#[tokio::test]
async fn the_replay_window_survives_a_restart() {
    let t = start(config()).await;
    let (mut raw, k) = Raw::account(&t, "alice", 100).await;
    let offer = |raw: &Raw| raw.lamp_offer(&k, "alice", 101);
    let first = raw.ask(&offer(&raw)).await;
    assert!(matches!(first, ServerBody::OfferConf { .. }), "{first:?}");

    let t = t.restart().await;
    // Cookies do not survive a restart: get a new one, then retransmit request 101 (as a
    // client does when the answer was lost): the first answer again, and no second item.
    raw.validate().await;
    assert_eq!(raw.ask(&offer(&raw)).await, first);
    assert_eq!(t.query("SELECT count(*) FROM items"), 1);

    // 64 newer requests do not push 101 out while a client may still resend it...
    raw.fill_window(&k, "alice", 200).await;
    assert_eq!(raw.ask(&offer(&raw)).await, first);
    // ...but once the retransmission budget has passed, the next request forgets it; after
    // another restart it is stale, never executed again.
    tokio::time::sleep(Duration::from_secs(RETRANSMIT_SECS + 1)).await;
    let next = raw.signed(
        &k,
        300,
        RequestBody::Attach {
            account: "alice".into(),
            mode: Default::default(),
        },
    );
    assert!(matches!(raw.ask(&next).await, ServerBody::Attached { .. }));
    let t = t.restart().await;
    raw.validate().await;
    assert_eq!(
        error_reason(raw.ask(&offer(&raw)).await),
        Reason::StaleRequest
    );
    assert_eq!(t.query("SELECT count(*) FROM items"), 1);
    assert_eq!(t.query("SELECT count(*) FROM replies"), 64);
}

#[tokio::test]
async fn a_session_rides_out_a_restart_and_its_bid_counts_once() {
    let t = start(config()).await;
    let [alice, bob] = t.people(["alice", "bob"]).await;
    let offered = alice.offer("Vase", Cents(1000), Some(60)).await.unwrap();
    let bob = std::sync::Arc::new(bob);
    let policy = auction_client::Reconnect {
        first_delay: Duration::from_millis(100),
        ..Default::default()
    };
    let mut session = auction_client::ItemSession::open(bob.clone(), offered.item, policy)
        .await
        .unwrap();
    let first = session
        .bid(Offer::Amount(Cents(1000)), "one".into(), |_| {})
        .await
        .unwrap();
    assert!(matches!(first, BidResult::Accepted { .. }));

    // The server goes down for a second. A bid made meanwhile waits for it, reconnects, and
    // is sent again with its id until answered.
    let restart = tokio::spawn(t.restart_after(Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut events = Vec::new();
    let second = within(
        30,
        "the bid across the restart",
        session.bid(Offer::Amount(Cents(2000)), "two".into(), |e| {
            events.push(e.clone())
        }),
    )
    .await
    .unwrap();
    assert!(
        matches!(
            second,
            BidResult::Accepted {
                amount: Cents(2000),
                ..
            }
        ),
        "{second:?}"
    );
    assert!(
        matches!(
            events.first(),
            Some(auction_client::SessionEvent::Reconnecting { .. })
        ),
        "{events:?}"
    );
    assert!(
        matches!(
            events.last(),
            Some(auction_client::SessionEvent::Reconnected { .. })
        ),
        "{events:?}"
    );
    let t = restart.await.unwrap();
    // Sent once more (as after a lost answer): the first answer, one row.
    assert_eq!(
        session
            .bid(Offer::Amount(Cents(1)), "two".into(), |_| {})
            .await
            .unwrap(),
        second
    );
    assert_eq!(t.query("SELECT count(*) FROM bids WHERE bid_id = 'two'"), 1);
    assert_eq!(t.query("SELECT count(*) FROM bids"), 2);
}

#[tokio::test]
async fn the_recovery_grace_makes_up_for_an_outage_once_not_for_every_restart() {
    let t = start(config()).await;
    let [alice, bob] = t.people(["alice", "bob"]).await;
    let offered = alice.offer("Chair", Cents(1000), Some(60)).await.unwrap();
    let planned = offered.ends_at;

    // A crash loop: three restarts in a row. The grace (2 s) is added once.
    let mut t = t;
    for _ in 0..3 {
        t = t.restart().await;
        let view = alice.status(offered.item).await.unwrap();
        assert_eq!(
            view.ends_at,
            planned + 2_000,
            "restarts within the outage add nothing"
        );
    }
    // A bid that does not move the end leaves the planned end where it was: still one grace.
    let mut b = bob.open_item(offered.item).await.unwrap();
    assert!(matches!(
        b.bid(Cents(1000), None).await.unwrap(),
        BidResult::Accepted { .. }
    ));
    drop(b);
    let t = t.restart().await;
    let view = alice.status(offered.item).await.unwrap();
    assert_eq!(view.ends_at, planned + 2_000);
    assert_eq!(
        t.query(&format!(
            "SELECT planned_ends_at FROM items WHERE id = {}",
            offered.item
        )),
        planned as i64
    );
}

#[tokio::test]
async fn a_new_item_never_takes_the_port_a_resumed_item_is_shown_on() {
    // A port range, so that after a restart new items are given its lowest free ports first:
    // the ports of the items resumed a moment later, if nothing kept them.
    let lo = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .min(65_000);
    let config = auction_server::Config {
        item_ports: auction_server::PortRange::Range(lo, lo + 30),
        ..quick_config()
    };
    let t = start(config.clone()).await;
    let [alice] = t.people(["alice"]).await;
    let mut before = Vec::new();
    for name in ["A", "B", "C"] {
        before.push(alice.offer(name, Cents(100), Some(600)).await.unwrap());
    }
    // The catalog is offered at start, before the resumed items are started.
    let catalog = auction_server::catalog::Catalog::parse(
        r#"{"items":[{"id":"lot-1","description":"Catalog lamp","min":"1.00","duration":"10m"}]}"#,
    )
    .unwrap();
    let t = t
        .restart_with(auction_server::Config {
            catalog: Some(catalog),
            ..config
        })
        .await;
    let items = alice.list().await.unwrap();
    let port_of = |item: u64| {
        items
            .iter()
            .find(|v| v.item == item)
            .and_then(|v| v.channel.clone())
            .unwrap_or_else(|| panic!("item {item} has no channel: {items:?}"))
    };
    let lot = items
        .iter()
        .find(|v| v.description == "Catalog lamp")
        .expect("the catalog item");
    for o in &before {
        assert_eq!(port_of(o.item), o.channel, "item {} kept its port", o.item);
        assert_ne!(lot.channel.as_deref(), Some(o.channel.as_str()));
        // And its channel is that item's.
        let ch = alice.open_item(o.item).await.unwrap();
        assert_eq!(ch.item.item, o.item);
    }
    drop(t);
}
