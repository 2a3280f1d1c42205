//! An account's devices: the same identity used from another machine makes it get the
//! account's announcements too, pending notices go to every device and one acknowledgement
//! ends them, one device more than `--devices` evicts the least recently heard from (told at
//! once, and refused from then on), and a device that detaches gives its place back.

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

    // The same identity files, used from another machine: any command's roam logs in there.
    let b = Client::new_from(t.server.udp_addr(), &home, &t.ca, Some(second))
        .await
        .unwrap();
    assert_eq!(b.name().unwrap(), "alice");
    let info = b.attach_as(AttachMode::Roam).await.unwrap();
    assert_eq!((info.pending, info.moved, info.devices), (1, true, 2));
    // The pending notice goes to the new device, and is acknowledged from there.
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
    // Both devices are stored, the older first.
    assert_eq!(
        t.query(
            "SELECT count(*) FROM accounts WHERE name = 'alice'
             AND notify_addr LIKE '127.0.0.1:% 127.0.0.2:%'"
        ),
        1
    );
    // The first machine keeps getting them: its refresh is accepted.
    assert!(!a.attach_as(AttachMode::Keep).await.unwrap().moved);
    // Another client on the new machine changes nothing (that machine gets them already).
    let b2 = Client::new_from(t.server.udp_addr(), &home, &t.ca, Some(second))
        .await
        .unwrap();
    let info = b2.attach_as(AttachMode::Roam).await.unwrap();
    assert_eq!((info.pending, info.moved, info.devices), (0, false, 2));

    // A new item is announced to both devices, with the same number.
    let bob = t.registered("bob").await;
    bob.offer("Rug", Cents(100), Some(30)).await.unwrap();
    let rug = async |c: &Client| loop {
        match c.next_announcement().await {
            Some(ann @ ServerBody::NewItem { .. }) if format!("{ann:?}").contains("Rug") => {
                return ann
            }
            Some(_) => continue,
            None => panic!("announcements ended"),
        }
    };
    let on_a = within(10, "NEW-ITEM on the first device", rug(&a)).await;
    let on_b = within(10, "NEW-ITEM on the second device", rug(&b)).await;
    assert_eq!(on_a, on_b);
}

#[tokio::test]
async fn one_device_too_many_evicts_the_least_recent_and_a_detached_one_frees_its_place() {
    let t = start(auction_server::Config {
        devices: 2,
        ..quick_config()
    })
    .await;
    let home = t.dir.path().join("homes/alice");
    let device = async |port_ip: &str| {
        Client::new_from(
            t.server.udp_addr(),
            &home,
            &t.ca,
            Some(port_ip.parse().unwrap()),
        )
        .await
        .unwrap()
    };
    let first = device("127.0.0.1").await;
    first.register("alice").await.unwrap();
    let second = device("127.0.0.2").await;
    assert_eq!(
        second.attach_as(AttachMode::Login).await.unwrap().devices,
        2
    );
    // The first says it is still there: the second is now the least recent.
    first.attach_as(AttachMode::Keep).await.unwrap();
    let third = device("127.0.0.3").await;
    let info = third.attach_as(AttachMode::Login).await.unwrap();
    assert_eq!((info.moved, info.devices), (true, 2));
    // The evicted device is told at once...
    match within(10, "the eviction", second.next_announcement()).await {
        Some(ServerBody::Evicted {
            account, message, ..
        }) => {
            assert_eq!(account, "alice");
            assert!(message.contains("newer"), "{message}");
        }
        other => panic!("expected evicted, got {other:?}"),
    }
    // ...and its refresh is refused from then on, so it cannot take a place back.
    match second.attach_as(AttachMode::Keep).await {
        Err(ClientError::Denied { reason, .. }) => assert_eq!(reason, Reason::Moved),
        other => panic!("expected moved, got {other:?}"),
    }
    assert!(first.attach_as(AttachMode::Keep).await.is_ok());
    // A device that ends detaches: its place is free, and the next login evicts nobody.
    third.detach().await.unwrap();
    assert_eq!(
        second.attach_as(AttachMode::Login).await.unwrap().devices,
        2
    );
    assert!(first.attach_as(AttachMode::Keep).await.is_ok());
    // What a device that detached says next is refused like an evicted one's.
    match third.attach_as(AttachMode::Keep).await {
        Err(ClientError::Denied { reason, .. }) => assert_eq!(reason, Reason::Moved),
        other => panic!("expected moved, got {other:?}"),
    }
}
