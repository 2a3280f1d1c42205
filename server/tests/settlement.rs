//! Settlement over TLS: after a sale, buyer and seller give their details to the settlement
//! desk, each sees the other's, and both are told; a buyer who does not answer in time loses
//! the sale, and the seller offers it to the next bidders (second chance). Card numbers are
//! refused and never stored.

mod common;

use auction_client::{Client, ClientError, SettleConnection};
use auction_protocol::settle::{Role, SettleBody, SettleRequestBody, SettleState, SettlementView};
use auction_protocol::udp::ServerBody;
use auction_protocol::{Cents, Reason};
use common::{announcement, quick_config, start, within};
use std::time::Duration;

fn denied<T: std::fmt::Debug>(r: Result<T, ClientError>) -> Reason {
    match r {
        Err(ClientError::Denied { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The view in an answer or a push, and what the server asks for (empty: nothing).
fn view(body: SettleBody) -> (SettlementView, Vec<String>) {
    match body {
        SettleBody::InformReq {
            settlement, need, ..
        } => (settlement, need),
        SettleBody::Settlement { settlement, .. } => (settlement, vec![]),
        other => panic!("expected a settlement, got {other:?}"),
    }
}

async fn open(c: &Client, item: u64) -> (SettleConnection, SettlementView, Vec<String>) {
    let mut conn = c.open_settlement(item).await.unwrap();
    let (v, need) = view(
        conn.request(SettleRequestBody::Open { item })
            .await
            .unwrap(),
    );
    (conn, v, need)
}

fn shipping(item: u64, name: &str, address: &str) -> SettleRequestBody {
    SettleRequestBody::Inform {
        item,
        name: Some(name.into()),
        address: Some(address.into()),
        contact: None,
    }
}

fn contact(item: u64, contact: &str) -> SettleRequestBody {
    SettleRequestBody::Inform {
        item,
        name: None,
        address: None,
        contact: Some(contact.into()),
    }
}

async fn push(conn: &mut SettleConnection) -> SettleBody {
    within(10, "a pushed message", conn.next_push())
        .await
        .expect("the connection stays open")
        .unwrap()
}

/// Offers an item for 1 s and has each `(bidder, amount)` bid on it; returns the item once
/// its SOLD reached the seller.
async fn sell(seller: &Client, bids: &[(&Client, u64)]) -> u64 {
    let item = seller
        .offer("Lamp", Cents(500), Some(2))
        .await
        .unwrap()
        .item;
    for (bidder, amount) in bids {
        let mut ch = bidder.open_item(item).await.unwrap();
        ch.bid(Cents(*amount), None).await.unwrap();
    }
    announcement(seller, "SOLD", |m| match m {
        ServerBody::Sold { item: i, .. } if *i == item => Some(()),
        _ => None,
    })
    .await;
    item
}

#[tokio::test]
async fn buyer_and_seller_exchange_details_and_both_are_told() {
    let t = start(quick_config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    alice.attach().await.unwrap();
    bob.attach().await.unwrap();
    let item = sell(&alice, &[(&bob, 1200)]).await;
    assert!(alice.status(item).await.unwrap().settle_port.is_some());

    // Only the two parties.
    let mut c = carol.open_settlement(item).await.unwrap();
    assert_eq!(
        denied(c.request(SettleRequestBody::Open { item }).await),
        Reason::NotAParty
    );
    let (mut a, v, need) = open(&alice, item).await;
    assert_eq!(
        (v.role, v.state, need),
        (
            Role::Seller,
            SettleState::AwaitingBuyer,
            vec!["contact".to_string()]
        )
    );
    let (mut b, v, need) = open(&bob, item).await;
    assert_eq!(
        (v.role, v.amount, v.seller.as_str()),
        (Role::Buyer, Cents(1200), "alice")
    );
    assert_eq!(need, ["name", "address"]);
    assert!(v.deadline.is_some());

    // A card number is refused, wherever it is put; nothing is stored.
    let card = shipping(item, "Bob", "4111 1111 1111 1111");
    assert_eq!(denied(b.request(card).await), Reason::CardNumber);
    assert_eq!(
        denied(b.request(shipping(item, "", "1 Main St")).await),
        Reason::InvalidInfo
    );
    let (v, _) = view(
        b.request(shipping(item, "Bob Baker", "1 Main St\nSpringfield"))
            .await
            .unwrap(),
    );
    assert_eq!((v.state, v.deadline), (SettleState::AwaitingSeller, None));

    // The seller, connected, is handed the shipping details at once.
    match push(&mut a).await {
        SettleBody::ShippingInfo {
            buyer,
            name,
            address,
            ..
        } => assert_eq!(
            (buyer.as_str(), name.as_str(), address.as_str()),
            ("bob", "Bob Baker", "1 Main St\nSpringfield")
        ),
        other => panic!("{other:?}"),
    }
    let (v, _) = view(a.request(contact(item, "alice@example.org")).await.unwrap());
    assert_eq!(v.state, SettleState::Settled);
    assert_eq!(v.shipping.unwrap().name, "Bob Baker");
    // The buyer sees the contact (pushed), and both get the SETTLED notice over UDP.
    loop {
        let (v, _) = view(push(&mut b).await);
        if v.state == SettleState::Settled {
            assert_eq!(v.contact.as_deref(), Some("alice@example.org"));
            break;
        }
    }
    for who in [&alice, &bob] {
        announcement(who, "SETTLED", |m| match m {
            ServerBody::Settled { item: i, .. } if *i == item => Some(()),
            _ => None,
        })
        .await;
    }
    assert_eq!(
        t.query("SELECT count(*) FROM settlements WHERE state = 'settled'"),
        1
    );
    assert_eq!(
        t.query("SELECT count(*) FROM settlements WHERE ship_address LIKE '%4111%'"),
        0
    );

    // Durable: after a restart the buyer reads the same.
    drop((a, b));
    let _t = t.restart().await;
    let (_, v, need) = open(&bob, item).await;
    assert!(need.is_empty());
    assert_eq!(
        (v.state, v.contact.as_deref()),
        (SettleState::Settled, Some("alice@example.org"))
    );
}

#[tokio::test]
async fn a_silent_winner_loses_the_sale_and_the_runners_up_get_second_chances() {
    let config = auction_server::Config {
        settle_timeout: Duration::from_secs(1),
        ..quick_config()
    };
    let t = start(config).await;
    let [alice, bob, carol, dan] = t.people(["alice", "bob", "carol", "dan"]).await;
    for c in [&alice, &bob, &carol, &dan] {
        c.attach().await.unwrap();
    }
    let item = sell(&alice, &[(&dan, 900), (&bob, 1000), (&carol, 1200)]).await;

    // Carol won and says nothing: a second later both are told it is cancelled.
    for who in [&alice, &carol] {
        let why = announcement(who, "SETTLE-CANCELLED", |m| match m {
            ServerBody::SettleCancelled { item: i, why, .. } if *i == item => Some(why.clone()),
            _ => None,
        })
        .await;
        assert_eq!(why, "buyer-timeout");
    }
    let mut c = carol.open_settlement(item).await.unwrap();
    // Her time passed: she is told so, not that she never was the buyer.
    assert_eq!(
        denied(c.request(shipping(item, "Carol", "2 Elm St")).await),
        Reason::TooLate
    );

    // Second chance: bob, the best remaining bid, at his own bid.
    let (mut a, v, _) = open(&alice, item).await;
    assert_eq!(v.state, SettleState::Cancelled);
    let (v, _) = view(
        a.request(SettleRequestBody::SecondChance { item })
            .await
            .unwrap(),
    );
    assert_eq!(v.state, SettleState::Offered);
    let amount = announcement(&bob, "SECOND-CHANCE", |m| match m {
        ServerBody::SecondChance {
            item: i, amount, ..
        } if *i == item => Some(*amount),
        _ => None,
    })
    .await;
    assert_eq!(amount, Cents(1000));
    let (mut b, v, _) = open(&bob, item).await;
    assert_eq!(
        (v.role, v.amount, v.contact),
        (Role::Offered, Cents(1000), None)
    );
    view(
        b.request(SettleRequestBody::AnswerOffer {
            item,
            accept: false,
        })
        .await
        .unwrap(),
    );
    let why = announcement(&alice, "SETTLE-CANCELLED", |m| match m {
        ServerBody::SettleCancelled { item: i, why, .. } if *i == item => Some(why.clone()),
        _ => None,
    })
    .await;
    assert_eq!(why, "offer-declined");

    // Then dan, who accepts and becomes the buyer at his bid.
    view(
        a.request(SettleRequestBody::SecondChance { item })
            .await
            .unwrap(),
    );
    let (mut d, v, _) = open(&dan, item).await;
    assert_eq!((v.role, v.amount), (Role::Offered, Cents(900)));
    let (v, need) = view(
        d.request(SettleRequestBody::AnswerOffer { item, accept: true })
            .await
            .unwrap(),
    );
    assert_eq!(
        (v.role, v.buyer.as_deref(), need.len()),
        (Role::Buyer, Some("dan"), 2)
    );
    view(d.request(shipping(item, "Dan", "3 Oak St")).await.unwrap());
    let (v, _) = view(a.request(contact(item, "+1 555 0100")).await.unwrap());
    assert_eq!((v.state, v.amount), (SettleState::Settled, Cents(900)));
    // Nobody is left for another offer (and the sale is settled anyway).
    assert_eq!(
        denied(a.request(SettleRequestBody::SecondChance { item }).await),
        Reason::WrongState
    );
    assert_eq!(
        t.query("SELECT amount_cents FROM settlements WHERE state = 'settled'"),
        900
    );
}
