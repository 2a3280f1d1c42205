//! Negotiation: an item without a bid by half its time makes the server ask its seller
//! (NEGOTIATE-REQ, a reliable notice); an accepted lower minimum reaches the item's channel
//! and its subscribers as PRICE-ADJUSTMENT. The due time itself is a sans-IO rule with its own
//! unit test (`auction::negotiation_due`); here the auctions are a few seconds long.

mod common;

use auction_client::{BidResult, Client, ClientError};
use auction_protocol::channel::ChannelBody;
use auction_protocol::udp::ServerBody;
use auction_protocol::{Cents, Reason};
use common::{announcement, next_matching, quick_config, start};

fn denied(r: Result<impl std::fmt::Debug, ClientError>) -> Reason {
    match r {
        Err(ClientError::Denied { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn accepted(r: BidResult) -> bool {
    matches!(r, BidResult::Accepted { .. })
}

/// The next NEGOTIATE-REQ: (item, min, ends_at, time_left).
async fn negotiate_req(c: &Client) -> (u64, Cents, u64, u64) {
    announcement(c, "NEGOTIATE-REQ", |m| match m {
        ServerBody::NegotiateReq {
            item,
            min,
            ends_at,
            time_left,
            ..
        } => Some((*item, *min, *ends_at, *time_left)),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn an_unbid_item_is_offered_for_negotiation_and_the_lower_minimum_is_announced() {
    let t = start(quick_config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    alice.attach().await.unwrap();
    carol.attach().await.unwrap();
    let offered = alice.offer("Lamp", Cents(1000), Some(4)).await.unwrap();
    let item = offered.item;
    // Bob waits on the channel, Carol follows over UDP.
    let mut b = bob.open_item(item).await.unwrap();
    carol.subscribe(item).await.unwrap();
    // Before half time there is nothing to answer.
    assert_eq!(
        denied(alice.negotiate(item, Some(Cents(500))).await),
        Reason::NotNegotiable
    );

    let (i, min, ends_at, time_left) = negotiate_req(&alice).await;
    assert_eq!((i, min, ends_at), (item, Cents(1000), offered.ends_at));
    assert!(time_left <= 2, "asked at half of 4 s: {time_left} s left");
    assert_eq!(
        t.query("SELECT count(*) FROM items WHERE negotiation = 'asked'"),
        1
    );

    // Only the seller answers, only with a lower minimum.
    assert_eq!(
        denied(bob.negotiate(item, Some(Cents(500))).await),
        Reason::NotYourItem
    );
    assert_eq!(
        denied(alice.negotiate(item, Some(Cents(1000))).await),
        Reason::InvalidAmount
    );
    assert_eq!(
        alice.negotiate(item, Some(Cents(600))).await.unwrap(),
        Some(Cents(600))
    );
    // Answered once.
    assert_eq!(
        denied(alice.negotiate(item, None).await),
        Reason::NotNegotiable
    );

    let adjusted = next_matching(&mut b, "PRICE-ADJUSTMENT", |m| match m {
        ChannelBody::PriceAdjustment { min, next_min, .. } => Some((*min, *next_min)),
        _ => None,
    })
    .await;
    assert_eq!(adjusted, (Cents(600), Cents(600)));
    let told = announcement(&carol, "PRICE-ADJUSTMENT", |m| match m {
        ServerBody::PriceAdjustment { item: i, min, .. } => Some((*i, *min)),
        _ => None,
    })
    .await;
    assert_eq!(told, (item, Cents(600)));
    assert_eq!(alice.status(item).await.unwrap().min, Cents(600));

    // The lower minimum is the rule now: 5.99 is too low, 6.00 is taken.
    assert!(!accepted(b.bid(Cents(599), None).await.unwrap()));
    assert!(accepted(b.bid(Cents(600), None).await.unwrap()));
    assert_eq!(
        t.query("SELECT min_cents FROM items WHERE negotiation = 'accepted'"),
        600
    );
    assert_eq!(
        t.query("SELECT count(*) FROM notices WHERE kind = 'negotiate-req' AND acked_at IS NULL"),
        0
    );
}

#[tokio::test]
async fn items_with_a_bid_are_not_offered_and_a_refusal_keeps_the_minimum() {
    let t = start(quick_config()).await;
    let [alice, bob] = t.people(["alice", "bob"]).await;
    alice.attach().await.unwrap();
    // The unbid item runs twice as long: its request comes (at 3 s) after the other item's
    // half time (1.5 s), and the refusal is made while it is still open.
    let bid_on = alice
        .offer("Vase", Cents(1000), Some(3))
        .await
        .unwrap()
        .item;
    let unbid = alice.offer("Rug", Cents(2000), Some(6)).await.unwrap().item;
    let mut b = bob.open_item(bid_on).await.unwrap();
    assert!(accepted(b.bid(Cents(1000), None).await.unwrap()));

    // The first request is for the item without a bid; the one with a bid gets none.
    let (asked, ..) = negotiate_req(&alice).await;
    assert_eq!(asked, unbid);
    assert_eq!(alice.negotiate(unbid, None).await.unwrap(), None);
    assert_eq!(
        denied(alice.negotiate(unbid, Some(Cents(100))).await),
        Reason::NotNegotiable,
        "answered once"
    );
    assert_eq!(alice.status(unbid).await.unwrap().min, Cents(2000));
    assert_eq!(
        t.query("SELECT count(*) FROM items WHERE negotiation = 'refused' AND min_cents = 2000"),
        1
    );
    assert_eq!(
        t.query("SELECT count(*) FROM notices WHERE kind = 'negotiate-req'"),
        1,
        "no request for the item with a bid"
    );
    assert_eq!(
        t.query("SELECT count(*) FROM notices WHERE kind = 'negotiate-req' AND acked_at IS NULL"),
        0
    );
}

#[tokio::test]
async fn a_request_made_before_a_restart_is_answered_after_it() {
    let t = start(quick_config()).await;
    let [alice] = t.people(["alice"]).await;
    alice.attach().await.unwrap();
    let item = alice
        .offer("Clock", Cents(1000), Some(6))
        .await
        .unwrap()
        .item;
    let (i, ..) = negotiate_req(&alice).await;
    assert_eq!(i, item);

    let t = t.restart().await;
    // Asked once: the restart does not ask again, and the answer is still taken.
    assert_eq!(
        alice.negotiate(item, Some(Cents(700))).await.unwrap(),
        Some(Cents(700))
    );
    assert_eq!(alice.status(item).await.unwrap().min, Cents(700));
    let t = t.restart().await;
    assert_eq!(alice.status(item).await.unwrap().min, Cents(700));
    assert_eq!(
        t.query("SELECT count(*) FROM notices WHERE kind = 'negotiate-req'"),
        1
    );
}
