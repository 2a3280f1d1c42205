//! The seller's answer settles its NEGOTIATE-REQ on the server's side: the request is marked
//! acknowledged in the same commit as the answer, whether or not the seller's client ever
//! acknowledges the notice itself. (The client library acknowledges every notice it reads, so
//! in `negotiation.rs` the seller's own acknowledgement could hide a missing one; here nobody
//! reads the seller's announcements.)

mod common;

use auction_protocol::Cents;
use common::{quick_config, start, within};
use std::time::Duration;

const UNSETTLED: &str =
    "SELECT count(*) FROM notices WHERE kind = 'negotiate-req' AND acked_at IS NULL";

#[tokio::test]
async fn a_refusal_and_an_acceptance_settle_their_requests() {
    let t = start(quick_config()).await;
    let [alice] = t.people(["alice"]).await;
    alice.attach().await.unwrap();
    let refused = alice.offer("Rug", Cents(2000), Some(4)).await.unwrap().item;
    let lowered = alice
        .offer("Lamp", Cents(1000), Some(4))
        .await
        .unwrap()
        .item;
    within(10, "both requests", async {
        while t.query("SELECT count(*) FROM items WHERE negotiation = 'asked'") < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(t.query(UNSETTLED), 2, "nobody acknowledged them");

    // Answers are said only once durable, so what they changed is in the database by now.
    assert_eq!(alice.negotiate(refused, None).await.unwrap(), None);
    assert_eq!(t.query(UNSETTLED), 1);
    assert_eq!(
        alice.negotiate(lowered, Some(Cents(500))).await.unwrap(),
        Some(Cents(500))
    );
    assert_eq!(t.query(UNSETTLED), 0);
}
