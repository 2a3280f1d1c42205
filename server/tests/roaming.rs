//! Roaming login: the same identity used from another address takes the account's
//! announcements there, pending notices follow, and the old address is told it moved.

mod common;

use auction_client::{Client, ClientError};
use auction_protocol::udp::{AttachMode, ServerBody};
use auction_protocol::{Cents, Reason};
use common::{quick_config, start, within};
use std::net::IpAddr;

#[tokio::test]
async fn a_copied_identity_logs_in_from_another_address_and_notices_follow() {
    let t = start(quick_config()).await;
    let home = t.dir.path().join("homes/alice");
    let first: IpAddr = "127.0.0.1".parse().unwrap();
    let second: IpAddr = "127.0.0.2".parse().unwrap();
    let a = Client::new_from(t.server.udp_addr(), &home, &t.ca, Some(first))
        .await
        .unwrap();
    a.register("alice").await.unwrap();
    a.attach().await.unwrap();
    // An item that closes unsold: its NOT-SOLD goes to the first address, which never
    // acknowledges it (nobody reads there).
    let item = a.offer("Vase", Cents(100), Some(1)).await.unwrap().item;
    within(10, "the item to close", async {
        while a.status(item).await.unwrap().channel.is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(
        t.query("SELECT count(*) FROM notices WHERE acked_at IS NULL"),
        1
    );

    // The same identity files, used from another address: any command's roam logs in there.
    let b = Client::new_from(t.server.udp_addr(), &home, &t.ca, Some(second))
        .await
        .unwrap();
    assert_eq!(b.name().unwrap(), "alice");
    let (pending, moved) = b.attach_as(AttachMode::Roam).await.unwrap();
    assert_eq!((pending, moved), (1, true));
    // The pending notice follows to the new address, and is acknowledged from there.
    let notice = within(10, "NOT-SOLD at the new address", b.next_announcement())
        .await
        .unwrap();
    assert!(
        matches!(notice, ServerBody::NotSold { item: i, .. } if i == item),
        "{notice:?}"
    );
    within(10, "the acknowledgement", async {
        while t.query("SELECT count(*) FROM notices WHERE acked_at IS NULL") > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        t.query(
            "SELECT count(*) FROM accounts WHERE name = 'alice' AND notify_addr LIKE '127.0.0.2:%'"
        ) == 1
    );

    // The first address's long-running refresh is told the account moved...
    match a.attach_as(AttachMode::Keep).await {
        Err(ClientError::Denied { reason, .. }) => assert_eq!(reason, Reason::Moved),
        other => panic!("expected moved, got {other:?}"),
    }
    // ...while another client on the new address's machine leaves the announcements where
    // they are (roaming only moves them between IPs).
    let b2 = Client::new_from(t.server.udp_addr(), &home, &t.ca, Some(second))
        .await
        .unwrap();
    assert_eq!(b2.attach_as(AttachMode::Roam).await.unwrap(), (0, false));
    assert!(!b.attach_as(AttachMode::Keep).await.unwrap().1);

    // A new item is announced at the new address.
    let bob = t.registered("bob").await;
    bob.offer("Rug", Cents(100), Some(30)).await.unwrap();
    let ann = within(10, "NEW-ITEM at the new address", b.next_announcement())
        .await
        .unwrap();
    assert!(matches!(ann, ServerBody::NewItem { .. }), "{ann:?}");
}
