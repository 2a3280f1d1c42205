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
