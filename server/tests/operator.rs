//! The operator over the real protocol: an account registered with the server's
//! `--operator-key` removes a shill bid (the auction falls back to the other bids, proxy
//! maximums answering each other again, and stays so across a restart) and cancels an item
//! (its bidders and seller told why); everyone else is refused with the reason; and the audit
//! log lists every bid and action in the order they happened.

mod common;

use auction_client::{BidResult, Client, ClientError, Offer, Terms};
use auction_protocol::channel::ChannelBody;
use auction_protocol::udp::ServerBody;
use auction_protocol::{Cents, ItemState, Reason};
use auction_server::audit::Event;
use auction_server::Increments;
use common::{announcement, next_matching, quick_config, start, TestServer};
use std::sync::Arc;

/// Steps of 0.50, so amounts read easily.
fn config() -> auction_server::Config {
    auction_server::Config {
        increments: Arc::new(Increments::fixed(Cents(50))),
        ..quick_config()
    }
}

/// A server whose operator is the returned client's key (registered as `operator`).
async fn with_operator() -> (TestServer, Client) {
    let t = start(config()).await;
    let op = t.client("operator").await;
    let key = op.whoami().0;
    let t = t
        .restart_with(auction_server::Config {
            operator_key: Some(key),
            ..config()
        })
        .await;
    op.register("operator").await.unwrap();
    (t, op)
}

async fn offer(seller: &Client, what: &str, secs: u64) -> u64 {
    seller
        .offer_with(what, Cents(1000), Some(secs), Terms::default())
        .await
        .unwrap()
        .item
}

fn accepted(r: &BidResult) {
    assert!(matches!(r, BidResult::Accepted { .. }), "{r:?}");
}

fn denied(e: ClientError) -> Reason {
    match e {
        ClientError::Denied { reason, .. } => reason,
        other => panic!("expected a refusal, got {other}"),
    }
}

/// The number `history` gives `who`'s latest bid on `item`.
async fn bid_number(c: &Client, item: u64, who: &str) -> u64 {
    let h = c.history(item).await.unwrap();
    h.bids.iter().rev().find(|b| b.bidder == who).unwrap().bid
}

#[tokio::test]
async fn removing_a_shill_bid_lets_the_proxies_answer_each_other_again_also_after_a_restart() {
    let (t, op) = with_operator().await;
    let [alice, bob, carol, mallory] = t.people(["alice", "bob", "carol", "mallory"]).await;
    let item = offer(&alice, "Clock", 60).await;
    let mut b = bob.open_item(item).await.unwrap();
    let mut c = carol.open_item(item).await.unwrap();
    let mut m = mallory.open_item(item).await.unwrap();
    // Bob's proxy up to 50.00 against carol's up to 30.00: bob leads at 30.50. Mallory, the
    // seller's shill, bids 45.00: bob's proxy answers at 45.50.
    accepted(&b.place(Offer::Max(Cents(5000)), None).await.unwrap());
    accepted(&c.place(Offer::Max(Cents(3000)), None).await.unwrap());
    accepted(&m.bid(Cents(4500), None).await.unwrap());
    assert_eq!(bob.status(item).await.unwrap().highest, Some(Cents(4550)));
    let shill = bid_number(&op, item, "mallory").await;
    let lead = op
        .remove_bid(item, shill, "shill bidding for the seller")
        .await
        .unwrap();
    assert_eq!(lead, Some((Cents(3050), "bob".to_owned())));
    // Everyone on the channel hears of it, then the state without it.
    let removed = next_matching(&mut c, "BID-REMOVED", |msg| match msg {
        ChannelBody::BidRemoved {
            bid, bidder, note, ..
        } => Some((*bid, bidder.clone(), note.clone())),
        _ => None,
    })
    .await;
    assert_eq!(
        removed,
        (
            shill,
            "mallory".to_owned(),
            "shill bidding for the seller".to_owned()
        )
    );
    let state = next_matching(&mut c, "STATE", |msg| match msg {
        ChannelBody::State { item, next_min, .. } => Some((item.highest, *next_min)),
        _ => None,
    })
    .await;
    assert_eq!(state, (Some(Cents(3050)), Cents(3100)));
    // The history keeps the bid, marked with the operator's note; no maximum anywhere.
    let h = carol.history(item).await.unwrap();
    let marked = h.bids.iter().find(|b| b.bid == shill).unwrap();
    assert_eq!(
        marked.removed.as_ref().map(|r| r.note.as_str()),
        Some("shill bidding for the seller")
    );
    assert_eq!(h.bids.iter().filter(|b| b.removed.is_some()).count(), 1);
    let text = serde_json::to_string(&h.bids).unwrap();
    assert!(!text.contains("5000"), "bob's maximum leaked: {text}");
    // The same bid cannot be removed twice.
    let again = op.remove_bid(item, shill, "again").await.unwrap_err();
    assert_eq!(denied(again), Reason::UnknownBid);
    drop((b, c, m));
    // After a restart the auction stands without it, and bob's maximum still answers.
    let t = t.restart().await;
    let view = carol.status(item).await.unwrap();
    assert_eq!(
        (view.highest, view.bidder.as_deref()),
        (Some(Cents(3050)), Some("bob"))
    );
    let mut c = carol.open_item(item).await.unwrap();
    accepted(&c.bid(Cents(4000), None).await.unwrap());
    assert_eq!(
        carol.status(item).await.unwrap().highest,
        Some(Cents(4050)),
        "bob's proxy answers carol's 40.00"
    );
    // The audit log: every bid and the action, in the order they happened.
    let audit = auction_server::audit::read_any(t.db.to_str().unwrap(), item).unwrap();
    let shown: Vec<String> = audit
        .events
        .iter()
        .map(|e| match e {
            Event::Offered { .. } => "offered".to_owned(),
            Event::Bid { bidder, amount, .. } => format!("{bidder} {amount}"),
            Event::Operator {
                action, operator, ..
            } => format!("{operator} {action}"),
            Event::Closed { .. } => "closed".to_owned(),
        })
        .collect();
    assert_eq!(
        shown,
        [
            "offered",
            "bob 10.00",
            "carol 30.00",
            "mallory 45.00",
            "operator remove-bid",
            "carol 40.00"
        ]
    );
    match &audit.events[4] {
        Event::Operator { bid, note, .. } => {
            assert_eq!(
                (*bid, note.as_str()),
                (Some(shill), "shill bidding for the seller")
            )
        }
        other => panic!("{other:?}"),
    }
    // The table the operator reads says the same.
    let table = auction_server::audit::render(&audit);
    assert!(table.contains(&format!("remove-bid #{shill}")), "{table}");
    assert!(
        table.contains("by operator: shill bidding for the seller"),
        "{table}"
    );
    drop(t);
}

#[tokio::test]
async fn removing_the_leading_bid_hands_the_lead_to_the_next_and_the_last_leaves_none() {
    let (t, op) = with_operator().await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let item = offer(&alice, "Lamp", 60).await;
    let mut b = bob.open_item(item).await.unwrap();
    let mut c = carol.open_item(item).await.unwrap();
    accepted(&c.bid(Cents(1200), None).await.unwrap());
    accepted(&b.place(Offer::Max(Cents(2000)), None).await.unwrap());
    assert_eq!(bob.status(item).await.unwrap().highest, Some(Cents(1250)));
    let bobs = bid_number(&op, item, "bob").await;
    let lead = op.remove_bid(item, bobs, "payment fraud").await.unwrap();
    assert_eq!(lead, Some((Cents(1200), "carol".to_owned())));
    let carols = bid_number(&op, item, "carol").await;
    assert_eq!(
        op.remove_bid(item, carols, "same card").await.unwrap(),
        None
    );
    let view = bob.status(item).await.unwrap();
    assert_eq!((view.highest, view.bidder), (None, None));
    // The minimum asks again.
    let r = b.bid(Cents(1000), None).await.unwrap();
    accepted(&r);
    drop((b, c, t));
}

#[tokio::test]
async fn a_cancelled_item_closes_unsold_and_its_bidders_and_seller_learn_why() {
    let (t, op) = with_operator().await;
    let [alice, bob] = t.people(["alice", "bob"]).await;
    let item = offer(&alice, "Painting", 60).await;
    let mut b = bob.open_item(item).await.unwrap();
    accepted(&b.bid(Cents(5000), None).await.unwrap());
    op.cancel_item(item, "reported as stolen").await.unwrap();
    let note = next_matching(&mut b, "NOT-SOLD", |msg| match msg {
        ChannelBody::NotSold { cancelled, .. } => Some(cancelled.clone()),
        _ => None,
    })
    .await;
    assert_eq!(note.as_deref(), Some("reported as stolen"));
    let cancelled = announcement(&alice, "NOT-SOLD", |msg| match msg {
        ServerBody::NotSold {
            item: i, cancelled, ..
        } if *i == item => Some(*cancelled),
        _ => None,
    })
    .await;
    assert!(cancelled, "the seller is told the operator cancelled it");
    let view = bob.status(item).await.unwrap();
    assert_eq!(
        (view.state, view.winner, view.cancelled),
        (ItemState::Closed, None, true)
    );
    // Closed: nothing more to cancel or remove.
    let again = op.cancel_item(item, "again").await.unwrap_err();
    assert_eq!(denied(again), Reason::AuctionOver);
    // After a restart: still closed unsold, and the history says why.
    let t = t.restart().await;
    let view = bob.status(item).await.unwrap();
    assert_eq!(
        (view.state, view.winner, view.cancelled),
        (ItemState::Closed, None, true)
    );
    let h = bob.history(item).await.unwrap();
    assert_eq!(
        h.cancelled.map(|c| c.note),
        Some("reported as stolen".to_owned())
    );
    assert_eq!(h.bids.len(), 1);
    let audit = auction_server::audit::read_any(t.db.to_str().unwrap(), item).unwrap();
    let kinds: Vec<&str> = audit
        .events
        .iter()
        .map(|e| match e {
            Event::Offered { .. } => "offered",
            Event::Bid { .. } => "bid",
            Event::Operator { .. } => "cancel",
            Event::Closed { winner: None, .. } => "closed unsold",
            Event::Closed { .. } => "closed sold",
        })
        .collect();
    assert_eq!(kinds, ["offered", "bid", "cancel", "closed unsold"]);
    drop(t);
}

#[tokio::test]
async fn only_the_operator_may_act_and_only_with_a_note_on_a_bid_in_force() {
    let (t, op) = with_operator().await;
    let [alice, bob] = t.people(["alice", "bob"]).await;
    let item = offer(&alice, "Chair", 60).await;
    let mut b = bob.open_item(item).await.unwrap();
    accepted(&b.bid(Cents(1000), None).await.unwrap());
    let bobs = bid_number(&op, item, "bob").await;
    // Anyone else, the seller included: not the operator.
    for who in [&alice, &bob] {
        let e = who.remove_bid(item, bobs, "mine").await.unwrap_err();
        assert_eq!(denied(e), Reason::NotOperator);
        let e = who.cancel_item(item, "mine").await.unwrap_err();
        assert_eq!(denied(e), Reason::NotOperator);
    }
    // A note is required, short, and prints safely.
    for note in ["", "   ", "a\u{202E}b", &"x".repeat(81)] {
        let e = op.remove_bid(item, bobs, note).await.unwrap_err();
        assert_eq!(denied(e), Reason::InvalidNote, "{note:?}");
    }
    // A bid that is not this item's, or an item that does not exist.
    let e = op
        .remove_bid(item, bobs + 100, "no such")
        .await
        .unwrap_err();
    assert_eq!(denied(e), Reason::UnknownBid);
    let e = op.cancel_item(9_999, "no such").await.unwrap_err();
    assert_eq!(denied(e), Reason::UnknownItem);
    // Nothing changed.
    assert_eq!(bob.status(item).await.unwrap().highest, Some(Cents(1000)));
    drop(b);
    // A server started without --operator-key has no operator at all.
    let t = t.restart_with(config()).await;
    let e = op.cancel_item(item, "fraud").await.unwrap_err();
    assert_eq!(denied(e), Reason::NotOperator);
    assert_eq!(bob.status(item).await.unwrap().state, ItemState::Open);
    drop(t);
}

#[tokio::test]
async fn the_audit_log_refuses_to_be_rewritten() {
    let (t, op) = with_operator().await;
    let [alice, bob] = t.people(["alice", "bob"]).await;
    let item = offer(&alice, "Desk", 60).await;
    let mut b = bob.open_item(item).await.unwrap();
    accepted(&b.bid(Cents(1000), None).await.unwrap());
    let bobs = bid_number(&op, item, "bob").await;
    op.remove_bid(item, bobs, "test").await.unwrap();
    drop(b);
    let db = t.db.clone();
    t.server.shutdown().await.unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    for sql in [
        "UPDATE bids SET amount_cents = 1",
        "DELETE FROM bids",
        "UPDATE operator_actions SET note = 'nothing happened'",
        "DELETE FROM operator_actions",
    ] {
        let e = conn.execute(sql, []).unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    drop(t.dir);
}
