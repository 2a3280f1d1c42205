//! `--catalog`: the house offers a catalog's items at start, once, across restarts.

mod common;

use auction_protocol::Cents;
use auction_server::catalog::Catalog;
use common::{quick_config, start};

fn catalog(extra: &str) -> Catalog {
    Catalog::parse(&format!(
        r#"{{"seller": "house", "items": [
            {{"id": "lot-1", "description": "Desk lamp", "min": "12.50", "duration": "10m"}},
            {{"id": "lot-2", "description": "Tea set", "min": "40"}},
            {{"id": "lot-3", "description": "Typewriter", "min": "25"}},
            {{"id": "lot-4", "description": "Bookshelf", "min": "60"}}{extra}
        ]}}"#
    ))
    .unwrap()
}

#[tokio::test]
async fn the_catalog_is_offered_once_across_restarts() {
    let t = start(auction_server::Config {
        catalog: Some(catalog("")),
        ..quick_config()
    })
    .await;
    let bob = t.registered("bob").await;
    // Four items for one seller: the house is not held to the per-seller limit (3).
    let items = bob.list().await.unwrap();
    let mut shown: Vec<(&str, &str, Cents)> = items
        .iter()
        .map(|i| (i.description.as_str(), i.seller.as_str(), i.min))
        .collect();
    shown.sort();
    assert_eq!(
        shown,
        vec![
            ("Bookshelf", "house", Cents(6000)),
            ("Desk lamp", "house", Cents(1250)),
            ("Tea set", "house", Cents(4000)),
            ("Typewriter", "house", Cents(2500)),
        ]
    );
    // Bidding on a catalog item works like on any other.
    let lamp = items.iter().find(|i| i.description == "Desk lamp").unwrap();
    let mut ch = bob.open_item(lamp.item).await.unwrap();
    ch.bid(Cents(1300), None).await.unwrap();
    drop(ch);

    // Restarted with the same catalog: nothing is offered again.
    let t = t.restart().await;
    assert_eq!(bob.list().await.unwrap().len(), 4);
    assert_eq!(t.query("SELECT count(*) FROM items"), 4);
    assert_eq!(
        t.query("SELECT count(*) FROM accounts WHERE name = 'house'"),
        1
    );

    // One entry added: only it is offered.
    let mut t = t;
    t.config.catalog = Some(catalog(
        r#", {"id": "lot-5", "description": "Globe", "min": "15"}"#,
    ));
    let t = t.restart().await;
    let items = bob.list().await.unwrap();
    assert_eq!(items.len(), 5);
    assert!(items.iter().any(|i| i.description == "Globe"));
    assert_eq!(t.query("SELECT count(*) FROM items"), 5);
    assert_eq!(
        t.query("SELECT highest_cents FROM items WHERE catalog_id = 'lot-1'"),
        1300
    );
}

#[tokio::test]
async fn lots_close_in_turn_one_after_another() {
    let lots = Catalog::parse(
        r#"{"close_in_turn": "1s", "items": [
            {"description": "Lot A", "min": "5", "duration": "2s"},
            {"description": "Lot B", "min": "5", "reserve": "8", "buy_now": "50"},
            {"description": "Lot C", "min": "5"}
        ]}"#,
    )
    .unwrap();
    let t = start(auction_server::Config {
        catalog: Some(lots),
        ..quick_config()
    })
    .await;
    let bob = t.registered("bob").await;
    let mut items = bob.list().await.unwrap();
    items.sort_by_key(|i| i.item);
    let names: Vec<&str> = items.iter().map(|i| i.description.as_str()).collect();
    assert_eq!(names, ["Lot A", "Lot B", "Lot C"]);
    // Each closes a second after the one before it (offered a few ms apart at start).
    for pair in items.windows(2) {
        let gap = pair[1].ends_at - pair[0].ends_at;
        assert!((1000..1100).contains(&gap), "{gap} ms between lots");
    }
    // A catalog lot takes the seller's terms like an offer.
    assert_eq!(
        (items[1].reserve_met, items[1].buy_now),
        (Some(false), Some(Cents(5000)))
    );
    // And they close in that order.
    let mut closed = Vec::new();
    common::within(15, "the lots to close", async {
        while closed.len() < 3 {
            for i in &items {
                let view = bob.status(i.item).await.unwrap();
                if view.state == auction_protocol::ItemState::Closed && !closed.contains(&i.item) {
                    closed.push(i.item);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    let ids: Vec<u64> = items.iter().map(|i| i.item).collect();
    assert_eq!(closed, ids);
}

#[tokio::test]
async fn a_soft_close_extension_moves_the_later_lots_of_the_group_and_they_still_close_in_turn() {
    let lots = Catalog::parse(
        r#"{"close_in_turn": "2s", "group_soft_close": true, "items": [
            {"id": "a", "description": "Lot A", "min": "5", "duration": "8s"},
            {"id": "b", "description": "Lot B", "min": "5"},
            {"id": "c", "description": "Lot C", "min": "5"}
        ]}"#,
    )
    .unwrap();
    // The server's soft close (30 s), which an 8 s auction scales to 2 s and 2 s.
    let config = auction_server::Config {
        catalog: Some(lots),
        snipe_window: std::time::Duration::from_secs(30),
        snipe_extension: std::time::Duration::from_secs(30),
        // No grace at a restart: a moved end comes back exactly as it was stored.
        recovery_grace: std::time::Duration::ZERO,
        ..quick_config()
    };
    let t = start(config).await;
    let bob = t.registered("bob").await;
    let mut items = bob.list().await.unwrap();
    items.sort_by_key(|i| i.item);
    let [a, b, c] = [items[0].item, items[1].item, items[2].item];
    // A bid in lot A's last second and a half extends it...
    let planned = items[0].ends_at;
    tokio::time::sleep(std::time::Duration::from_millis(
        planned.saturating_sub(auction_server::unix_ms() + 1500),
    ))
    .await;
    let mut ch = bob.open_item(a).await.unwrap();
    let r = ch.bid(Cents(500), None).await.unwrap();
    let auction_client::BidResult::Accepted { ends_at: a_end, .. } = r else {
        panic!("{r:?}");
    };
    drop(ch);
    assert!(a_end > planned, "lot A was extended");
    // ...and lots B and C move with it: still 2 s apart, after it.
    let ends = common::within(10, "the later lots to move", async {
        loop {
            let b_end = bob.status(b).await.unwrap().ends_at;
            let c_end = bob.status(c).await.unwrap().ends_at;
            if b_end >= a_end + 2000 && c_end >= a_end + 4000 {
                return (b_end, c_end);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(ends, (a_end + 2000, a_end + 4000));
    // The moved ends are stored: a restart brings them back.
    let t = t.restart().await;
    assert_eq!(bob.status(b).await.unwrap().ends_at, a_end + 2000);
    assert_eq!(bob.status(c).await.unwrap().ends_at, a_end + 4000);
    // And the lots close in turn.
    let mut closed = Vec::new();
    common::within(30, "the lots to close", async {
        while closed.len() < 3 {
            for i in [a, b, c] {
                let view = bob.status(i).await.unwrap();
                if view.state == auction_protocol::ItemState::Closed && !closed.contains(&i) {
                    closed.push(i);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(closed, [a, b, c]);
    drop(t);
}
