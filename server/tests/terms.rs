//! The seller's terms and the increment table over the real protocol: a reserve price (bids
//! below it taken, nothing sold below it, a proxy jumping to it), buy it now (the auction ends
//! at once, inside a soft-close extension too, and stays ended across a restart), and the
//! increment by price band, with `next_min` in every HIGHEST.

mod common;

use auction_client::{BidResult, Client, ItemChannel, Offer, Terms};
use auction_protocol::channel::ChannelBody;
use auction_protocol::udp::{RequestBody, ServerBody};
use auction_protocol::{Cents, ItemState, Reason};
use auction_server::{Increments, Record};
use common::{announcement, mentions, next_matching, quick_config, start, within};
use std::sync::Arc;
use std::time::Duration;

/// Steps of 0.50, so amounts read easily.
fn config() -> auction_server::Config {
    auction_server::Config {
        increments: Arc::new(Increments::fixed(Cents(50))),
        ..quick_config()
    }
}

/// [`config`] with the server's default soft close (30 s), which a 4 s auction scales to a
/// window and an extension of 1 s each.
fn soft_close_config() -> auction_server::Config {
    auction_server::Config {
        snipe_window: Duration::from_secs(30),
        snipe_extension: Duration::from_secs(30),
        ..config()
    }
}

fn terms(reserve: Option<u64>, buy_now: Option<u64>) -> Terms {
    Terms {
        reserve: reserve.map(Cents),
        buy_now: buy_now.map(Cents),
    }
}

async fn offer(seller: &Client, what: &str, min: u64, secs: u64, t: Terms) -> u64 {
    seller
        .offer_with(what, Cents(min), Some(secs), t)
        .await
        .unwrap()
        .item
}

fn rejected(r: &BidResult) -> (Reason, String) {
    match r {
        BidResult::Rejected {
            reason, message, ..
        } => (*reason, message.clone()),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn accepted(r: &BidResult) -> (Cents, u64) {
    match r {
        BidResult::Accepted {
            amount, ends_at, ..
        } => (*amount, *ends_at),
        other => panic!("expected acceptance, got {other:?}"),
    }
}

/// The next HIGHEST: amount, bidder, next_min, reserve_met, buy_now.
type Highest = (Cents, String, Option<Cents>, Option<bool>, Option<Cents>);

async fn highest(ch: &mut ItemChannel) -> Highest {
    next_matching(ch, "HIGHEST", |m| match m {
        ChannelBody::Highest {
            amount,
            bidder,
            next_min,
            reserve_met,
            buy_now,
            ..
        } => Some((*amount, bidder.clone(), *next_min, *reserve_met, *buy_now)),
        _ => None,
    })
    .await
}

/// The HIGHEST at `amount` (earlier ones, the reader's own among them, are skipped).
async fn highest_at(ch: &mut ItemChannel, at: Cents) -> Highest {
    loop {
        let h = highest(ch).await;
        if h.0 == at {
            return h;
        }
    }
}

/// Waits for the channel's result: `Some((winner, price))` or `None` for not sold.
async fn result(ch: &mut ItemChannel) -> Option<(String, Cents)> {
    next_matching(ch, "the result", |m| match m {
        ChannelBody::SoldTo { winner, amount, .. } => Some(Some((winner.clone(), *amount))),
        ChannelBody::NotSold { .. } => Some(None),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn the_increment_follows_the_price_band_and_highest_says_the_next_minimum() {
    let t = start(auction_server::Config {
        increments: Arc::new(Increments::parse("0:0.05,1:0.25,5:0.50").unwrap()),
        ..quick_config()
    })
    .await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let item = offer(&alice, "Postcard", 50, 60, Terms::default()).await;
    let mut b = bob.open_item(item).await.unwrap();
    let mut c = carol.open_item(item).await.unwrap();
    assert_eq!(c.next_min, Cents(50));

    accepted(&b.bid(Cents(95), None).await.unwrap());
    let h = highest(&mut c).await;
    assert_eq!((h.0, h.2), (Cents(95), Some(Cents(100))), "0.95 + 0.05");
    // 1.00 is the first price of the 0.25 band.
    accepted(&c.bid(Cents(100), None).await.unwrap());
    let h = highest_at(&mut b, Cents(100)).await;
    assert_eq!(h.2, Some(Cents(125)));
    let r = b.bid(Cents(124), None).await.unwrap();
    assert_eq!(rejected(&r).0, Reason::TooLow);
    match r {
        BidResult::Rejected { next_min, .. } => assert_eq!(next_min, Cents(125)),
        _ => unreachable!(),
    }
    // A proxy answers one step of the band of the price it answers.
    accepted(&b.place(Offer::Max(Cents(1000)), None).await.unwrap());
    highest_at(&mut c, Cents(125)).await;
    accepted(&c.bid(Cents(500), None).await.unwrap());
    let h = next_matching(&mut c, "HIGHEST at 5.50", |m| match m {
        ChannelBody::Highest {
            amount, next_min, ..
        } if *amount == Cents(550) => Some(*next_min),
        _ => None,
    })
    .await;
    assert_eq!(h, Some(Cents(600)), "5.00 and up: steps of 0.50");
    // The STATE of a new connection says the same.
    let d = carol.open_item(item).await.unwrap();
    assert_eq!(d.next_min, Cents(600));
}

#[tokio::test]
async fn offers_with_terms_that_do_not_fit_are_refused_with_the_reason() {
    let t = start(config()).await;
    let [alice] = t.people(["alice"]).await;
    for (t_, says) in [
        (
            terms(Some(999), None),
            "reserve price must be at least the minimum",
        ),
        (
            terms(None, Some(999)),
            "buy-it-now price must be at least the minimum",
        ),
        (terms(Some(5000), Some(4000)), "at least the reserve price"),
    ] {
        let e = alice
            .offer_with("Lamp", Cents(1000), Some(60), t_)
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains(says), "{text}");
        assert!(matches!(
            e,
            auction_client::ClientError::Denied {
                reason: Reason::InvalidAmount,
                ..
            }
        ));
    }
}

#[tokio::test]
async fn below_the_reserve_bids_count_but_nothing_is_sold_and_the_reserve_stays_hidden() {
    let t = start(config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    alice.attach().await.unwrap();
    let item = offer(&alice, "Clock", 1000, 3, terms(Some(5000), None)).await;
    let view = bob.status(item).await.unwrap();
    assert_eq!((view.reserve_met, view.buy_now), (Some(false), None));
    let mut b = bob.open_item(item).await.unwrap();
    let mut c = carol.open_item(item).await.unwrap();
    assert_eq!(b.item.reserve_met, Some(false));

    accepted(&b.bid(Cents(2000), None).await.unwrap());
    let h = highest(&mut c).await;
    assert_eq!((h.0, h.3), (Cents(2000), Some(false)));
    accepted(&c.bid(Cents(4000), None).await.unwrap());
    assert_eq!(highest_at(&mut b, Cents(4000)).await.3, Some(false));
    // The reserve appears nowhere a bidder can read.
    let state = serde_json::to_value(c.status().await.unwrap()).unwrap();
    assert!(!mentions(&state, 5000), "{state}");
    let listed = serde_json::to_value(bob.list().await.unwrap()).unwrap();
    assert!(!mentions(&listed, 5000), "{listed}");

    // The end: the highest bid did not reach the reserve, so no one won.
    assert_eq!(result(&mut b).await, None);
    assert_eq!(result(&mut c).await, None);
    let notice = announcement(&alice, "NOT-SOLD", |m| match m {
        ServerBody::NotSold { item: i, .. } => Some(*i),
        ServerBody::Sold { .. } => panic!("sold below the reserve: {m:?}"),
        _ => None,
    })
    .await;
    assert_eq!(notice, item);
    let view = bob.status(item).await.unwrap();
    assert_eq!(view.state, ItemState::Closed);
    assert_eq!((view.winner, view.price), (None, None));
    assert_eq!(
        (view.highest, view.reserve_met),
        (Some(Cents(4000)), Some(false))
    );
    assert_eq!(
        t.query(&format!(
            "SELECT count(*) FROM items WHERE id = {item} AND winner IS NULL"
        )),
        1
    );
    // And so it stays after a restart.
    let t = t.restart().await;
    let view = bob.status(item).await.unwrap();
    assert_eq!(
        (view.state, view.winner, view.reserve_met, view.cancelled),
        (ItemState::Closed, None, Some(false), false)
    );
    drop(t);
}

#[tokio::test]
async fn a_proxy_jumps_to_the_reserve_and_the_reserve_survives_a_restart() {
    let t = start(config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let item = offer(&alice, "Radio", 1000, 60, terms(Some(5000), None)).await;
    let mut b = bob.open_item(item).await.unwrap();
    let mut c = carol.open_item(item).await.unwrap();
    // Carol's direct 20.00 first; bob's proxy up to 80.00 then leads at the reserve, not at
    // 20.50.
    accepted(&c.bid(Cents(2000), None).await.unwrap());
    let r = b.place(Offer::Max(Cents(8000)), None).await.unwrap();
    assert_eq!(accepted(&r).0, Cents(5000));
    let h = next_matching(&mut c, "HIGHEST at the reserve", |m| match m {
        ChannelBody::Highest {
            amount,
            reserve_met,
            ..
        } if *amount == Cents(5000) => Some(*reserve_met),
        _ => None,
    })
    .await;
    assert_eq!(h, Some(true));
    drop((b, c));

    // After a restart the reserve still decides: carol's 60.00 is answered by bob's proxy.
    let t = t.restart().await;
    assert_eq!(bob.status(item).await.unwrap().reserve_met, Some(true));
    let mut c = carol.open_item(item).await.unwrap();
    assert_eq!(c.item.reserve_met, Some(true));
    accepted(&c.bid(Cents(6000), None).await.unwrap());
    let h = next_matching(&mut c, "bob's answer", |m| match m {
        ChannelBody::Highest { amount, bidder, .. } if *amount == Cents(6050) => {
            Some(bidder.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(h, "bob");
    drop(t);
}

#[tokio::test]
async fn buy_it_now_ends_the_auction_at_once_and_it_stays_ended_after_a_restart() {
    let t = start(config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    alice.attach().await.unwrap();
    bob.attach().await.unwrap();
    let item = offer(&alice, "Bicycle", 1000, 600, terms(None, Some(15000))).await;
    assert_eq!(
        carol.status(item).await.unwrap().buy_now,
        Some(Cents(15000))
    );
    let mut b = bob.open_item(item).await.unwrap();
    let mut c = carol.open_item(item).await.unwrap();
    assert_eq!(b.item.buy_now, Some(Cents(15000)));

    // Another amount than the price is refused, with the price.
    let r = c.place(Offer::BuyNow(Cents(14000)), None).await.unwrap();
    let (reason, message) = rejected(&r);
    assert_eq!(reason, Reason::InvalidAmount);
    assert!(message.contains("150.00"), "{message}");
    // The seller cannot buy its own item.
    let mut a = alice.open_item(item).await.unwrap();
    let r = a.place(Offer::BuyNow(Cents(15000)), None).await.unwrap();
    assert_eq!(rejected(&r).0, Reason::OwnItem);

    let before = auction_server::unix_ms();
    let r = b
        .place(Offer::BuyNow(Cents(15000)), Some("bin-1".into()))
        .await
        .unwrap();
    let (amount, ends_at) = accepted(&r);
    assert_eq!(amount, Cents(15000));
    assert!(
        ends_at >= before && ends_at < before + 10 * 60 * 1000,
        "it ended now, not at the planned end: {ends_at}"
    );
    let h = highest(&mut c).await;
    assert_eq!((h.0, h.1.as_str(), h.4), (Cents(15000), "bob", None));
    assert_eq!(result(&mut c).await, Some(("bob".into(), Cents(15000))));
    assert_eq!(result(&mut b).await, Some(("bob".into(), Cents(15000))));
    let won = announcement(&bob, "WIN", |m| match m {
        ServerBody::Win {
            item: i, amount, ..
        } if *i == item => Some(*amount),
        _ => None,
    })
    .await;
    assert_eq!(won, Cents(15000));
    let view = carol.status(item).await.unwrap();
    assert_eq!(
        (view.state, view.winner.as_deref(), view.price, view.buy_now),
        (ItemState::Closed, Some("bob"), Some(Cents(15000)), None)
    );
    // The bid and the close were stored together.
    assert_eq!(
        t.query(&format!(
            "SELECT count(*) FROM items WHERE id = {item} AND closed_at IS NOT NULL AND price_cents = 15000"
        )),
        1
    );
    // A restart finds it closed: it is not reopened with the recovery grace.
    let t = t.restart().await;
    let view = carol.status(item).await.unwrap();
    assert_eq!(
        (view.state, view.winner.as_deref()),
        (ItemState::Closed, Some("bob"))
    );
    assert!(carol.open_item(item).await.is_err(), "its channel is gone");
    drop(t);
}

#[tokio::test]
async fn buy_it_now_ends_with_the_first_bid_or_stays_until_the_reserve_is_met() {
    let t = start(config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    // Without a reserve: the first bid ends it.
    let plain = offer(&alice, "Kettle", 1000, 60, terms(None, Some(5000))).await;
    let mut b = bob.open_item(plain).await.unwrap();
    let mut c = carol.open_item(plain).await.unwrap();
    accepted(&b.bid(Cents(1000), None).await.unwrap());
    assert_eq!(highest(&mut c).await.4, None, "HIGHEST says it is gone");
    let r = c.place(Offer::BuyNow(Cents(5000)), None).await.unwrap();
    let (reason, message) = rejected(&r);
    assert_eq!(reason, Reason::BuyNowUnavailable);
    assert!(message.contains("first bid"), "{message}");
    assert_eq!(carol.status(plain).await.unwrap().buy_now, None);
    // No price at all.
    let none = offer(&alice, "Spoon", 1000, 60, Terms::default()).await;
    let mut c2 = carol.open_item(none).await.unwrap();
    let r = c2.place(Offer::BuyNow(Cents(1000)), None).await.unwrap();
    assert_eq!(rejected(&r).0, Reason::BuyNowUnavailable);

    // With a reserve: bids below it leave buy it now offered, to the leader too.
    let [dave] = t.people(["dave"]).await;
    let item = dave
        .offer_with(
            "Chair",
            Cents(1000),
            Some(60),
            terms(Some(4000), Some(9000)),
        )
        .await
        .unwrap()
        .item;
    let mut b = bob.open_item(item).await.unwrap();
    let mut c = carol.open_item(item).await.unwrap();
    accepted(&b.bid(Cents(2000), None).await.unwrap());
    let h = highest(&mut c).await;
    assert_eq!((h.3, h.4), (Some(false), Some(Cents(9000))));
    accepted(&b.place(Offer::BuyNow(Cents(9000)), None).await.unwrap());
    assert_eq!(result(&mut c).await, Some(("bob".into(), Cents(9000))));
    drop(t);
}

#[tokio::test]
async fn buy_it_now_inside_a_soft_close_extension_ends_the_auction() {
    let t = start(soft_close_config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let item = offer(&alice, "Mirror", 1000, 4, terms(Some(8000), Some(20000))).await;
    let planned = bob.status(item).await.unwrap().ends_at;
    let mut b = bob.open_item(item).await.unwrap();
    let mut c = carol.open_item(item).await.unwrap();
    // Bob bids (below the reserve) in the last second: the end moves out.
    let wait = planned.saturating_sub(auction_server::unix_ms() + 500);
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let (_, extended) = accepted(&b.bid(Cents(1000), None).await.unwrap());
    assert!(extended > planned, "the bid extended the auction");
    // Carol buys it inside the extension: it ends at once, hers.
    tokio::time::sleep(Duration::from_millis(
        planned.saturating_sub(auction_server::unix_ms()) + 100,
    ))
    .await;
    let (_, ended) = accepted(&c.place(Offer::BuyNow(Cents(20000)), None).await.unwrap());
    assert!(
        ended > planned && ended < extended,
        "{planned} < {ended} < {extended}"
    );
    assert_eq!(result(&mut b).await, Some(("carol".into(), Cents(20000))));
    drop(t);
}

#[tokio::test]
async fn history_lists_the_accepted_bids_in_order_without_any_maximum_open_and_closed() {
    let t = start(soft_close_config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let item = offer(&alice, "Vase", 1000, 4, Terms::default()).await;
    let auction_client::History {
        more, bids: none, ..
    } = carol.history(item).await.unwrap();
    assert_eq!((more, none.len()), (false, 0));
    let mut b = bob.open_item(item).await.unwrap();
    let mut c = carol.open_item(item).await.unwrap();
    accepted(&b.place(Offer::Max(Cents(9_876)), None).await.unwrap());
    // Carol's proxy below bob's maximum is outbid at once: placed at its maximum, private.
    accepted(&c.place(Offer::Max(Cents(4_321)), None).await.unwrap());
    accepted(&c.bid(Cents(5000), None).await.unwrap());
    let auction_client::History { more, bids, .. } = carol.history(item).await.unwrap();
    assert!(!more);
    let shown: Vec<(&str, Option<Cents>)> =
        bids.iter().map(|b| (b.bidder.as_str(), b.amount)).collect();
    assert_eq!(
        shown,
        [
            ("bob", Some(Cents(1000))),
            ("carol", None),
            ("carol", Some(Cents(5000)))
        ]
    );
    assert!(bids.windows(2).all(|w| w[0].at <= w[1].at), "in order");
    let text = serde_json::to_string(&bids).unwrap();
    assert!(!text.contains("9876") && !text.contains("4321"), "{text}");
    // A bid in the last second extends the end, and says so.
    let planned = bob.status(item).await.unwrap().ends_at;
    tokio::time::sleep(Duration::from_millis(
        planned.saturating_sub(auction_server::unix_ms() + 500),
    ))
    .await;
    accepted(&c.bid(Cents(10_000), None).await.unwrap());
    let bids = bob.history(item).await.unwrap().bids;
    let last = bids.last().unwrap();
    assert!(last.extended && last.ends_at > planned, "{last:?}");
    drop((b, c));
    // Closed, and after a restart: the same bids.
    let t = within(15, "the close", async {
        while bob.status(item).await.unwrap().state != ItemState::Closed {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        t
    })
    .await;
    let t = t.restart().await;
    let auction_client::History {
        more, bids: again, ..
    } = bob.history(item).await.unwrap();
    assert_eq!((more, again.len()), (false, 4));
    assert_eq!(again[..3], bids[..3]);
    // An unknown item: refused with the reason.
    let e = bob.history(9_999).await.unwrap_err();
    assert!(
        matches!(
            e,
            auction_client::ClientError::Denied {
                reason: Reason::UnknownItem,
                ..
            }
        ),
        "{e}"
    );
    drop(t);
}

#[tokio::test]
async fn history_answers_the_latest_hundred_bids_and_says_there_are_older_ones() {
    let t = start(auction_server::Config {
        bid_rate: 1000.0,
        bid_burst: 1000.0,
        ..config()
    })
    .await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let item = offer(&alice, "Stamp", 100, 60, Terms::default()).await;
    let mut b = bob.open_item(item).await.unwrap();
    let mut amount = 100;
    for _ in 0..101 {
        accepted(&b.bid(Cents(amount), None).await.unwrap());
        amount += 50;
    }
    let auction_client::History { more, bids, .. } = carol.history(item).await.unwrap();
    assert_eq!((more, bids.len()), (true, 100));
    assert_eq!(
        bids[0].amount,
        Some(Cents(150)),
        "the latest 100: the first is left out"
    );
    assert_eq!(bids[99].amount, Some(Cents(100 + 100 * 50)));
    drop(t);
}

#[tokio::test]
async fn history_reads_at_most_four_at_once_and_one_source_at_its_rate() {
    let (t, spy) = common::spy::start_spied(config()).await;
    let [alice] = t.people(["alice"]).await;
    let item = offer(&alice, "Stamp", 100, 60, Terms::default()).await;
    let mut raw = common::raw::Raw::new(&t).await;
    raw.validate().await;
    // Four reads held in the database: a fifth is refused at once, without a read.
    let held = spy.hold();
    for req in 10..14 {
        raw.send(&raw.body(req, RequestBody::History { item }))
            .await;
    }
    within(5, "four reads to start", async {
        while spy.reading() < 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    raw.send(&raw.body(14, RequestBody::History { item })).await;
    match raw.recv().await {
        ServerBody::Error {
            req: Some(14),
            reason: Reason::ServerBusy,
            ..
        } => {}
        other => panic!("expected server-busy for the fifth, got {other:?}"),
    }
    assert_eq!(spy.reading(), 4, "the fifth did not read");
    drop(held);
    let mut answered = Vec::new();
    for _ in 10..14 {
        match raw.recv().await {
            ServerBody::History { req, .. } => answered.push(req),
            other => panic!("expected history, got {other:?}"),
        }
    }
    answered.sort();
    assert_eq!(answered, [10, 11, 12, 13]);
    // One source: 10 at once (5 spent above), then 2 a second.
    let mut limited = 0;
    for req in 20..30 {
        raw.send(&raw.body(req, RequestBody::History { item }))
            .await;
        match raw.recv().await {
            ServerBody::History { .. } => {}
            ServerBody::Error {
                reason: Reason::RateLimited,
                ..
            } => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!((4..=6).contains(&limited), "{limited} refused rate-limited");
    // Another address is not held to that source's rate.
    let other = auction_client::Client::new_from(
        t.server.udp_addr(),
        &t.dir.path().join("homes/other"),
        &t.ca,
        Some("127.0.0.2".parse().unwrap()),
    )
    .await
    .unwrap();
    assert!(other.history(item).await.is_ok());
}

#[tokio::test]
async fn a_buy_it_now_bid_and_the_items_result_are_appended_together() {
    let (t, spy) = common::spy::start_spied(config()).await;
    let [alice, bob] = t.people(["alice", "bob"]).await;
    let plain = offer(&alice, "Kettle", 1000, 60, Terms::default()).await;
    let item = offer(&alice, "Bicycle", 1000, 60, terms(None, Some(15000))).await;
    let mut k = bob.open_item(plain).await.unwrap();
    accepted(&k.bid(Cents(1000), None).await.unwrap());
    let mut b = bob.open_item(item).await.unwrap();
    accepted(&b.place(Offer::BuyNow(Cents(15000)), None).await.unwrap());
    assert_eq!(result(&mut b).await, Some(("bob".into(), Cents(15000))));
    let appends = spy.appends.lock().unwrap().clone();
    let with_bid = |of: u64| {
        appends
            .iter()
            .find(|a| {
                a.iter()
                    .any(|r| matches!(r, Record::Bid { item, .. } if *item == of))
            })
            .cloned()
            .expect("the bid was appended")
    };
    let closes = |a: &[Record], of: u64| {
        a.iter()
            .any(|r| matches!(r, Record::ItemClosed { item, .. } if *item == of))
    };
    // The buy-it-now bid came with its result, in one call: one transaction.
    assert!(closes(&with_bid(item), item), "{:?}", with_bid(item));
    // An ordinary bid does not.
    assert!(!closes(&with_bid(plain), plain));
    // And the result was not appended a second time.
    let results = appends.iter().filter(|a| closes(a, item)).count();
    assert_eq!(results, 1);
}
