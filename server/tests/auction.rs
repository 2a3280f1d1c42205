//! Whole auctions through the client library against a real server: bidding rules, fan-out,
//! soft close, winner notices, registration and deregistration rules.

mod common;

use auction_client::{BidResult, ClientError, ItemChannel};
use auction_protocol::channel::ChannelBody;
use auction_protocol::udp::ServerBody;
use auction_protocol::{Cents, ItemState, Reason};
use common::{announcement, next_matching, quick_config, start, within};
use std::time::Duration;

fn denied_reason<T: std::fmt::Debug>(r: Result<T, ClientError>) -> Reason {
    match r {
        Err(ClientError::Denied { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The first HIGHEST of at least `at_least`: older ones may or may not be seen first, since a
/// newer HIGHEST replaces one not yet written.
async fn highest_reaching(ch: &mut ItemChannel, at_least: Cents) -> (Cents, String) {
    next_matching(ch, "HIGHEST", |msg| match msg {
        ChannelBody::Highest { amount, bidder, .. } if *amount >= at_least => {
            Some((*amount, bidder.clone()))
        }
        _ => None,
    })
    .await
}

/// The reason of a rejected bid.
fn rejection(result: BidResult) -> Reason {
    match result {
        BidResult::Rejected { reason, .. } => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn accepted(result: BidResult) -> bool {
    matches!(result, BidResult::Accepted { .. })
}

#[tokio::test]
async fn whole_auction_with_a_seller_and_two_bidders() {
    let t = start(quick_config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    alice.attach().await.unwrap();
    carol.attach().await.unwrap();
    bob.attach().await.unwrap();

    let offered = alice
        .offer("Vintage lamp", Cents(1250), Some(2))
        .await
        .unwrap();
    // Everyone attached hears about the new item.
    match within(5, "NEW-ITEM", carol.next_announcement()).await {
        Some(ServerBody::NewItem { item, .. }) => {
            assert_eq!(item.item, offered.item);
            assert_eq!(item.channel.as_deref(), Some(offered.channel.as_str()));
        }
        other => panic!("{other:?}"),
    }
    let listed = bob.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].description, "Vintage lamp");
    assert_eq!(listed[0].min, Cents(1250));

    let mut b = bob.open_item(offered.item).await.unwrap();
    let mut c = carol.open_channel(&offered.channel).await.unwrap();
    assert_eq!(b.you, "bob");
    assert_eq!(c.item.item, offered.item);

    // Below the minimum.
    match b.bid(Cents(1249), None).await.unwrap() {
        BidResult::Rejected {
            reason, next_min, ..
        } => {
            assert_eq!(reason, Reason::TooLow);
            assert_eq!(next_min, Cents(1250));
        }
        other => panic!("{other:?}"),
    }
    assert!(accepted(b.bid(Cents(1250), None).await.unwrap()));
    // Carol sees Bob's bid.
    assert_eq!(
        highest_reaching(&mut c, Cents(1250)).await,
        (Cents(1250), "bob".to_owned())
    );
    // Not above the highest by the increment.
    match c.bid(Cents(1250), None).await.unwrap() {
        BidResult::Rejected {
            reason, highest, ..
        } => {
            assert_eq!(reason, Reason::TooLow);
            assert_eq!(highest, Some(Cents(1250)));
        }
        other => panic!("{other:?}"),
    }
    assert!(accepted(c.bid(Cents(1300), None).await.unwrap()));
    assert_eq!(
        highest_reaching(&mut b, Cents(1300)).await,
        (Cents(1300), "carol".to_owned())
    );
    // The seller may not bid.
    let mut a = alice.open_item(offered.item).await.unwrap();
    assert_eq!(
        rejection(a.bid(Cents(5000), None).await.unwrap()),
        Reason::OwnItem
    );

    // The end: BID-OVER then SOLD-TO on every channel, then a clean close.
    for ch in [&mut b, &mut c] {
        let mut saw_over = false;
        loop {
            match within(10, "the end of the auction", ch.next_event()).await {
                Some(Ok(ChannelBody::BidOver { .. })) => saw_over = true,
                Some(Ok(ChannelBody::SoldTo { winner, amount, .. })) => {
                    assert!(saw_over, "BID-OVER comes before SOLD-TO");
                    assert_eq!((winner.as_str(), amount), ("carol", Cents(1300)));
                    break;
                }
                Some(Ok(ChannelBody::Highest { .. })) => {}
                other => panic!("{other:?}"),
            }
        }
        assert!(within(5, "channel close", ch.next_event()).await.is_none());
    }

    // WIN to the winner, SOLD to the seller, over UDP.
    let win = announcement(&carol, "WIN", |msg| match msg {
        ServerBody::Win {
            item,
            amount,
            seller,
            ..
        } => Some((*item, *amount, seller.clone())),
        _ => None,
    })
    .await;
    assert_eq!(win, (offered.item, Cents(1300), "alice".to_owned()));
    let sold = announcement(&alice, "SOLD", |msg| match msg {
        ServerBody::Sold { amount, winner, .. } => Some((*amount, winner.clone())),
        _ => None,
    })
    .await;
    assert_eq!(sold, (Cents(1300), "carol".to_owned()));

    // The result stays available.
    let status = bob.status(offered.item).await.unwrap();
    assert_eq!(status.state, ItemState::Closed);
    assert_eq!(status.winner.as_deref(), Some("carol"));
    assert_eq!(status.price, Some(Cents(1300)));
    assert!(status.channel.is_none());
    assert!(bob.list().await.unwrap().is_empty());
    assert_eq!(
        denied_reason(bob.open_item(offered.item).await),
        Reason::AuctionOver
    );
}

#[tokio::test]
async fn unsold_item_sends_not_sold_and_a_bid_after_the_end_is_refused() {
    let t = start(quick_config()).await;
    let [alice, bob] = t.people(["alice", "bob"]).await;
    alice.attach().await.unwrap();
    let offered = alice
        .offer("Nobody wants this", Cents(100), Some(1))
        .await
        .unwrap();
    let mut b = bob.open_item(offered.item).await.unwrap();
    let ends_at = b.item.ends_at;
    // Wait for the end, then bid on the still-open connection.
    match within(5, "BID-OVER", b.next_event()).await {
        Some(Ok(ChannelBody::BidOver { .. })) => {}
        other => panic!("{other:?}"),
    }
    assert!(auction_server::unix_ms() >= ends_at);
    match b.bid(Cents(100), None).await {
        Ok(BidResult::Rejected { reason, .. }) => assert_eq!(reason, Reason::AuctionOver),
        Err(ClientError::Tls(_)) => {} // the server had already closed the channel
        other => panic!("a bid after the end must not be accepted: {other:?}"),
    }
    let unsold = announcement(&alice, "NOT-SOLD", |msg| match msg {
        ServerBody::NotSold { item, .. } => Some(*item),
        _ => None,
    })
    .await;
    assert_eq!(unsold, offered.item);
    let status = bob.status(offered.item).await.unwrap();
    assert_eq!(
        (status.state, status.winner, status.highest),
        (ItemState::Closed, None, None)
    );
}

#[tokio::test]
async fn soft_close_moves_the_end_and_highest_carries_it() {
    let config = auction_server::Config {
        snipe_window: Duration::from_secs(5),
        snipe_extension: Duration::from_secs(3),
        ..quick_config()
    };
    let t = start(config).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    // A 4 s auction: its window and extension are a quarter of its length, 1 s each, not the
    // configured 5 s and 3 s (which would move its end further out than it ran).
    let offered = alice.offer("Clock", Cents(100), Some(4)).await.unwrap();
    let mut c = carol.open_item(offered.item).await.unwrap();
    let mut b = bob.open_item(offered.item).await.unwrap();
    tokio::time::sleep(Duration::from_millis(
        offered
            .ends_at
            .saturating_sub(auction_server::unix_ms() + 500),
    ))
    .await;
    let before = auction_server::unix_ms();
    let BidResult::Accepted { ends_at, .. } = b.bid(Cents(100), None).await.unwrap() else {
        panic!("bid refused")
    };
    let after = auction_server::unix_ms();
    // Bid within the last second: the end is now 1 s after the bid, past the original end.
    assert!(ends_at > offered.ends_at, "end moved later");
    assert!(
        ends_at >= before + 1000 && ends_at <= after + 1000,
        "the scaled extension after the bid: {ends_at} for a bid in {before}..{after}"
    );
    match within(5, "HIGHEST", c.next_event()).await {
        Some(Ok(ChannelBody::Highest {
            ends_at: announced, ..
        })) => assert_eq!(announced, ends_at),
        other => panic!("{other:?}"),
    }
    // Past the original end the item is still open and takes bids.
    tokio::time::sleep(Duration::from_millis(
        offered.ends_at.saturating_sub(auction_server::unix_ms()) + 200,
    ))
    .await;
    assert_eq!(
        carol.status(offered.item).await.unwrap().state,
        ItemState::Open
    );
    assert!(accepted(c.bid(Cents(200), None).await.unwrap()));
}

#[tokio::test]
async fn names_are_unique_and_valid() {
    let t = start(quick_config()).await;
    let _alice = t.registered("alice").await;
    let impostor = t.client("impostor").await;
    assert_eq!(
        denied_reason(impostor.register("alice").await),
        Reason::NameTaken
    );
    // Without regard to case: "Alice" would pass for alice.
    assert_eq!(
        denied_reason(impostor.register("ALICE").await),
        Reason::NameTaken
    );
    assert_eq!(
        denied_reason(impostor.register("bad name").await),
        Reason::InvalidName
    );
    assert_eq!(
        denied_reason(impostor.register(&"x".repeat(33)).await),
        Reason::InvalidName
    );
    // One key, one account.
    let again = t.client("alice").await; // same home, so the same key
    assert_eq!(
        denied_reason(again.register("alice2").await),
        Reason::KeyTaken
    );
    // Registering again under the same name with the same key is a harmless success.
    again.register("alice").await.unwrap();
    impostor.register("alice_2").await.unwrap();
}

#[tokio::test]
async fn deregistration_waits_for_open_items_and_leads() {
    let t = start(quick_config()).await;
    let [alice, bob] = t.people(["alice", "bob"]).await;
    let offered = alice.offer("Desk", Cents(1000), Some(2)).await.unwrap();
    assert_eq!(
        denied_reason(alice.deregister().await),
        Reason::HasOpenItems
    );
    let mut b = bob.open_item(offered.item).await.unwrap();
    assert!(accepted(b.bid(Cents(1000), None).await.unwrap()));
    assert_eq!(denied_reason(bob.deregister().await), Reason::LeadsAuction);
    // Bob can still bid: the refused deregistration left the account live.
    assert!(accepted(b.bid(Cents(1100), None).await.unwrap()));
    // Once a bidder has seen SOLD-TO, the close is final everywhere: the seller may leave at
    // once (no retry), and STATUS says closed.
    next_matching(&mut b, "SOLD-TO", |msg| {
        matches!(msg, ChannelBody::SoldTo { .. }).then_some(())
    })
    .await;
    alice.deregister().await.unwrap();
    assert_eq!(
        bob.status(offered.item).await.unwrap().state,
        ItemState::Closed
    );
    bob.deregister().await.unwrap();
    // A deregistered account is gone: its name is free again, in any case.
    let newcomer = t.client("newcomer").await;
    newcomer.register("Alice").await.unwrap();
}

#[tokio::test]
async fn offers_are_validated_and_capped_per_seller() {
    let t = start(quick_config()).await;
    let alice = t.registered("alice").await;
    assert_eq!(
        denied_reason(alice.offer("", Cents(100), None).await),
        Reason::InvalidDescription
    );
    assert_eq!(
        denied_reason(alice.offer(&"x".repeat(201), Cents(100), None).await),
        Reason::InvalidDescription
    );
    // A right-to-left override would show "lamp \u{202E}001" as "lamp 100".
    assert_eq!(
        denied_reason(alice.offer("lamp \u{202E}001", Cents(100), None).await),
        Reason::InvalidDescription
    );
    assert_eq!(
        denied_reason(alice.offer("lamp\u{200B}", Cents(100), None).await),
        Reason::InvalidDescription
    );
    assert_eq!(
        denied_reason(alice.offer("ok", Cents(0), None).await),
        Reason::InvalidAmount
    );
    assert_eq!(
        denied_reason(alice.offer("ok", Cents(1), Some(0)).await),
        Reason::InvalidDuration
    );
    assert_eq!(
        denied_reason(alice.offer("ok", Cents(1), Some(30 * 86400 + 1)).await),
        Reason::InvalidDuration
    );
    for i in 0..3 {
        alice
            .offer(&format!("thing {i}"), Cents(100), Some(60))
            .await
            .unwrap();
    }
    assert_eq!(
        denied_reason(alice.offer("one too many", Cents(100), None).await),
        Reason::TooManyOpenItems
    );
    let stranger = t.client("stranger").await;
    stranger.identity.save_account_name("ghost").unwrap();
    assert_eq!(
        denied_reason(stranger.offer("x", Cents(1), None).await),
        Reason::NotRegistered
    );
}

#[tokio::test]
async fn repeated_bid_id_gets_its_first_answer_across_connections() {
    let t = start(quick_config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let offered = alice.offer("Vase", Cents(100), Some(60)).await.unwrap();
    let mut b = bob.open_item(offered.item).await.unwrap();
    let first = b.bid(Cents(500), Some("bid-1".into())).await.unwrap();
    assert!(matches!(first, BidResult::Accepted { .. }));
    let mut c = carol.open_item(offered.item).await.unwrap();
    assert!(accepted(c.bid(Cents(600), None).await.unwrap()));
    // Bob reconnects and resends the same bid: same answer, and Carol still leads.
    b.close().await;
    let mut b = bob.open_item(offered.item).await.unwrap();
    assert_eq!(
        b.bid(Cents(500), Some("bid-1".into())).await.unwrap(),
        first
    );
    let view = bob.status(offered.item).await.unwrap();
    assert_eq!(
        (view.highest, view.bidder.as_deref()),
        (Some(Cents(600)), Some("carol"))
    );
}

#[tokio::test]
async fn item_full_is_refused_with_a_reason() {
    let config = auction_server::Config {
        max_bidders_per_item: Some(1),
        ..quick_config()
    };
    let t = start(config).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let offered = alice
        .offer("Rare stamp", Cents(100), Some(60))
        .await
        .unwrap();
    let _b = bob.open_item(offered.item).await.unwrap();
    // The same account may open a second connection; another account may not.
    let _b2 = bob.open_item(offered.item).await.unwrap();
    assert_eq!(
        denied_reason(carol.open_item(offered.item).await),
        Reason::ItemFull
    );
}
