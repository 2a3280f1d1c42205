//! The live board over real HTTP on port 0: the page lists what is open and what closed, an
//! item's page lists its bids, the event stream delivers each durable change with the
//! server's time and resumes from `Last-Event-ID`, no page or event ever shows a proxy
//! maximum, and one stream past the cap is refused with a reason.

mod common;

use auction_client::Offer;
use auction_protocol::Cents;
use auction_server::Config;
use common::http::{get, serve_board, stream};
use common::{quick_config, start, within};
use scraper::{Html, Selector};

/// The text of the first element matching `css` in `html`.
fn text(html: &str, css: &str) -> Option<String> {
    let doc = Html::parse_document(html);
    let sel = Selector::parse(css).unwrap();
    doc.select(&sel)
        .next()
        .map(|e| e.text().collect::<String>().trim().to_owned())
}

fn count(html: &str, css: &str) -> usize {
    let doc = Html::parse_document(html);
    let sel = Selector::parse(css).unwrap();
    doc.select(&sel).count()
}

#[tokio::test]
async fn the_board_lists_an_offered_item_and_its_page_lists_its_bids() {
    let t = start(quick_config()).await;
    let web = serve_board(&t).await;
    let [sam, ann] = t.people(["sam", "ann"]).await;
    let empty = get(web, "/").await;
    assert_eq!(empty.status, 200);
    assert_eq!(
        text(&empty.body, "#none-open").as_deref(),
        Some("No item is open right now.")
    );

    let item = sam
        .offer("Brass <lamp> & shade", Cents(1000), Some(60))
        .await
        .unwrap()
        .item;
    let page = get(web, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let row = format!(r#"#open tr[data-item="{item}"]"#);
    assert_eq!(
        text(&page.body, &format!("{row} td.description")).as_deref(),
        Some("Brass <lamp> & shade"),
        "the description, escaped in the HTML and intact in the text"
    );
    assert!(page.body.contains("Brass &lt;lamp&gt; &amp; shade"));
    assert_eq!(
        text(&page.body, &format!("{row} td.seller")).as_deref(),
        Some("sam")
    );
    assert_eq!(
        text(&page.body, &format!("{row} td.min")).as_deref(),
        Some("10.00")
    );
    assert_eq!(
        text(&page.body, &format!("{row} td.bids")).as_deref(),
        Some("0")
    );
    let left = text(&page.body, &format!("{row} td.left")).unwrap();
    assert!(
        left == "1m 00s" || (left.ends_with('s') && left.len() <= 3),
        "about a minute left: {left}"
    );
    // Without JavaScript the page re-reads itself.
    assert!(page
        .body
        .contains(r#"<noscript><meta http-equiv="refresh""#));

    let mut ch = ann.open_item(item).await.unwrap();
    ch.bid(Cents(1200), None).await.unwrap();
    ch.bid(Cents(1500), None).await.unwrap();
    let page = get(web, &format!("/item/{item}")).await;
    assert_eq!(page.status, 200);
    assert_eq!(count(&page.body, "#history tbody tr"), 2);
    assert_eq!(
        text(&page.body, "#history tbody tr:last-child td.amount").as_deref(),
        Some("15.00")
    );
    assert_eq!(
        text(&page.body, "#history tbody tr td.bidder").as_deref(),
        Some("ann")
    );
    assert_eq!(
        text(&page.body, "#facts dd.price").as_deref(),
        Some("15.00")
    );
    assert_eq!(text(&page.body, "#facts dd.leader").as_deref(), Some("ann"));
    assert_eq!(text(&page.body, "#facts dd.bids").as_deref(), Some("2"));
    // The projector views show the same item in large type.
    let projector = get(web, "/projector").await;
    assert!(projector.body.contains(r#"class="projector""#));
    assert_eq!(
        text(&projector.body, &format!("{row} td.price")).as_deref(),
        Some("15.00")
    );
    assert_eq!(get(web, &format!("/projector/{item}")).await.status, 200);
    let missing = get(web, "/item/999").await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.body.contains("item 999 is not on this board"),
        "{}",
        missing.body
    );
    // The metrics share the server when asked to.
    let metrics = get(web, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("auction_bids_accepted_total 2"),
        "{}",
        metrics.body
    );
}

#[tokio::test]
async fn the_stream_delivers_a_new_price_with_the_server_time_and_a_close_with_its_result() {
    let t = start(quick_config()).await;
    let web = serve_board(&t).await;
    let [sam, ann] = t.people(["sam", "ann"]).await;
    let page = get(web, "/").await;
    let since = Html::parse_document(&page.body)
        .select(&Selector::parse("body").unwrap())
        .next()
        .unwrap()
        .value()
        .attr("data-since")
        .unwrap()
        .to_owned();
    let mut events = stream(web, &format!("/events?since={since}"), &[]).await;
    assert_eq!(events.status, 200);
    assert!(events
        .headers
        .iter()
        .any(|(n, v)| n == "content-type" && v.starts_with("text/event-stream")));

    // The new item, from the state the page was rendered with.
    let item = sam.offer("Clock", Cents(500), Some(2)).await.unwrap().item;
    let offered = events
        .item_event(item, "the new item", |v| v["item"]["open"] == true)
        .await;
    assert_eq!(offered.json()["item"]["description"], "Clock");

    let before = auction_server::unix_ms();
    let mut ch = ann.open_item(item).await.unwrap();
    ch.bid(Cents(700), None).await.unwrap();
    let e = events
        .item_event(item, "the bid's price", |v| v["item"]["price"] == "7.00")
        .await;
    let after = auction_server::unix_ms();
    let v = e.json();
    assert_eq!(v["item"]["leader"], "ann");
    assert_eq!(v["item"]["bids"], 1);
    assert_eq!(v["bid"]["bidder"], "ann");
    assert_eq!(v["bid"]["amount"], "7.00");
    let now = v["now"].as_u64().expect("the server's time on every event");
    assert!(
        before <= now && now <= after,
        "{before} <= {now} <= {after}"
    );
    assert!(e.id.contains('-'), "BOOT-SEQ ids: {}", e.id);

    // The close, with its result.
    let closed = events
        .item_event(item, "the close", |v| v["item"]["open"] == false)
        .await;
    let v = closed.json();
    assert_eq!(v["item"]["leader"], "ann");
    assert_eq!(v["item"]["price"], "7.00");
    let page = get(web, "/").await;
    assert_eq!(
        text(
            &page.body,
            &format!(r#"#results tr[data-item="{item}"] td.result"#)
        )
        .as_deref(),
        Some("sold to ann for 7.00")
    );
    assert_eq!(count(&page.body, "#open tbody tr"), 0);

    // A browser that reconnects with the id of the offer gets what changed since: the item
    // as it is now, once.
    let mut resumed = stream(web, "/events", &[("Last-Event-ID", &offered.id)]).await;
    let again = resumed.next(5).await.expect("the change since the offer");
    assert_eq!(again.event, "item");
    assert_eq!(again.json()["item"]["open"], false);
    assert_eq!(again.id, closed.id);
    // An id from another server run cannot be resumed: the page is told to re-read.
    let mut stale = stream(web, "/events", &[("Last-Event-ID", "1-5")]).await;
    assert_eq!(stale.next(5).await.expect("reload").event, "reload");
}

/// A unique maximum, so that its digits cannot appear by chance.
const MAX: Cents = Cents(98_765);
/// Another, below it.
const CAT_MAX: Cents = Cents(45_678);

#[tokio::test]
async fn a_proxy_maximum_appears_in_no_page_and_no_event() {
    let t = start(quick_config()).await;
    let web = serve_board(&t).await;
    let [sam, ann, bob, cat] = t.people(["sam", "ann", "bob", "cat"]).await;
    let mut events = stream(web, "/events", &[]).await;
    let item = sam.offer("Vase", Cents(1000), Some(2)).await.unwrap().item;
    let mut a = ann.open_item(item).await.unwrap();
    a.place(Offer::Max(MAX), None).await.unwrap();
    let mut b = bob.open_item(item).await.unwrap();
    b.bid(Cents(2000), None).await.unwrap();
    b.bid(Cents(3000), None).await.unwrap();
    // ann raises her own maximum: counted, and still private.
    a.place(Offer::Max(Cents(MAX.0 + 100)), None).await.unwrap();
    // cat's proxy is outbid at once by ann's: it was placed at its maximum, which stays
    // private too (the price says only that it was beaten).
    let mut c = cat.open_item(item).await.unwrap();
    c.place(Offer::Max(CAT_MAX), None).await.unwrap();
    let mut pages = Vec::new();
    for path in ["/", "/projector"] {
        pages.push(get(web, path).await.body);
    }
    for path in [format!("/item/{item}"), format!("/projector/{item}")] {
        pages.push(get(web, &path).await.body);
    }
    assert!(
        pages[2].contains("a proxy bid, outbid at once"),
        "{}",
        pages[2]
    );
    events
        .item_event(item, "the close", |v| v["item"]["open"] == false)
        .await;
    pages.push(get(web, &format!("/item/{item}")).await.body);
    for max in [MAX, Cents(MAX.0 + 100), CAT_MAX] {
        let (decimal, cents) = (max.to_string(), max.0.to_string());
        for (i, page) in pages.iter().enumerate() {
            assert!(
                !page.contains(&decimal) && !page.contains(&cents),
                "page {i} shows {decimal}"
            );
        }
        assert!(!events.seen.contains(&decimal) && !events.seen.contains(&cents));
    }
    // The stream was read, and cat's bid in it has no amount.
    assert!(
        events.seen.contains(r#""bidder":"cat","amount":null"#),
        "{}",
        events.seen
    );
}

#[tokio::test]
async fn one_stream_past_the_cap_is_refused_with_the_reason() {
    let t = start(Config {
        web_streams: 2,
        ..quick_config()
    })
    .await;
    let web = serve_board(&t).await;
    let first = stream(web, "/events", &[]).await;
    let second = stream(web, "/events", &[]).await;
    assert_eq!((first.status, second.status), (200, 200));
    let refused = get(web, "/events").await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("10"));
    assert!(
        refused.body.contains("already has 2 live streams open"),
        "{}",
        refused.body
    );
    // The page itself is still served, and a closed stream frees its place.
    assert_eq!(get(web, "/").await.status, 200);
    drop(first);
    within(10, "a freed stream place", async {
        loop {
            let s = stream(web, "/events", &[]).await;
            if s.status == 200 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_silent_or_oversized_request_is_cut_off_and_the_board_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = start(quick_config()).await;
    let web = serve_board(&t).await;
    // A connection that never sends its request (slowloris) is closed at the header deadline.
    let mut silent = tokio::net::TcpStream::connect(web).await.unwrap();
    assert_eq!(get(web, "/").await.status, 200, "served meanwhile");
    let mut buf = Vec::new();
    // (A reset or an end of stream: either way it finished within the deadline.)
    let _ = within(
        15,
        "the silent connection to be closed",
        silent.read_to_end(&mut buf),
    )
    .await;
    // A request head of a megabyte is refused, not buffered.
    let mut big = tokio::net::TcpStream::connect(web).await.unwrap();
    let head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let _ = big.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = within(
        15,
        "the oversized request's answer",
        big.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "refused or cut: {answer}"
    );
    // An unreadable Last-Event-ID gets a re-read, not an error.
    let mut junk = stream(web, "/events", &[("Last-Event-ID", "<script>")]).await;
    assert_eq!(junk.status, 200);
    assert_eq!(junk.next(5).await.expect("reload").event, "reload");
    assert_eq!(get(web, "/").await.status, 200);
}

#[tokio::test]
async fn the_board_comes_back_after_a_restart_with_bids_and_results() {
    let t = start(quick_config()).await;
    let [sam, ann, bob] = t.people(["sam", "ann", "bob"]).await;
    let open = sam
        .offer("Mirror", Cents(1000), Some(600))
        .await
        .unwrap()
        .item;
    let sold = sam.offer("Chair", Cents(500), Some(1)).await.unwrap().item;
    {
        let mut a = ann.open_item(open).await.unwrap();
        a.bid(Cents(1100), None).await.unwrap();
        let mut b = bob.open_item(open).await.unwrap();
        b.bid(Cents(1300), None).await.unwrap();
        let mut c = bob.open_item(sold).await.unwrap();
        c.bid(Cents(600), None).await.unwrap();
    }
    within(10, "the chair to close", async {
        while sam.status(sold).await.unwrap().channel.is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    let t = t.restart().await;
    let web = serve_board(&t).await;
    let page = get(web, "/").await.body;
    let row = format!(r#"#open tr[data-item="{open}"]"#);
    assert_eq!(
        text(&page, &format!("{row} td.price")).as_deref(),
        Some("13.00")
    );
    assert_eq!(
        text(&page, &format!("{row} td.leader")).as_deref(),
        Some("bob")
    );
    assert_eq!(
        text(&page, &format!("{row} td.bids")).as_deref(),
        Some("2"),
        "counted from the database"
    );
    assert_eq!(
        text(
            &page,
            &format!(r#"#results tr[data-item="{sold}"] td.result"#)
        )
        .as_deref(),
        Some("sold to bob for 6.00")
    );
    let item = get(web, &format!("/item/{open}")).await.body;
    assert_eq!(count(&item, "#history tbody tr"), 2);
    assert_eq!(
        text(&item, "#facts").map(|f| f.contains("13.00")),
        Some(true)
    );
}

#[tokio::test]
async fn one_source_holds_at_most_its_share_of_connections_and_others_get_in() {
    let t = start(Config {
        web_per_source: 3,
        ..quick_config()
    })
    .await;
    let web = serve_board(&t).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(stream(web, "/events", &[]).await);
    }
    assert!(held.iter().all(|s| s.status == 200));
    // One more from the same address is told why and closed, before its request is read.
    let refused = get(web, "/").await;
    assert_eq!(refused.status, 503);
    assert!(
        refused
            .body
            .contains("your address already holds 3 connections"),
        "{}",
        refused.body
    );
    // Another address is served meanwhile.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(web).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    other
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    within(
        10,
        "the other address's page",
        other.read_to_string(&mut answer),
    )
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A closed connection gives its place back.
    held.pop();
    within(10, "a freed place", async {
        while get(web, "/").await.status != 200 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_stream_that_does_not_read_gets_the_latest_price_not_every_bid() {
    let t = start(Config {
        bid_rate: 100_000.0,
        bid_burst: 100_000.0,
        ..quick_config()
    })
    .await;
    let web = serve_board(&t).await;
    let [sam, ann] = t.people(["sam", "ann"]).await;
    let item = sam.offer("Lamp", Cents(100), Some(60)).await.unwrap().item;
    // A stream opened and then not read while the bids come.
    let mut slow = stream(web, "/events", &[]).await;
    let mut ch = ann.open_item(item).await.unwrap();
    const BIDS: u64 = 600;
    for n in 0..BIDS {
        ch.bid(Cents(200 + n), None).await.unwrap();
    }
    let last = format!("{}", Cents(200 + BIDS - 1));
    let mut events = 0;
    loop {
        let e = slow.next(10).await.expect("the stream catches up");
        events += 1;
        let v = e.json();
        if v["item"]["price"] == last.as_str() {
            assert_eq!(v["item"]["bids"], BIDS);
            break;
        }
    }
    // What waited in the buffers is bounded (hyper's 16 KiB and the kernel's send buffer),
    // so the rest were never made: the stream got far fewer events than bids, the last one
    // the latest price.
    assert!(events < BIDS / 2, "{events} events for {BIDS} bids");
    assert!(slow.seen.len() < 200 * 1024, "{} bytes", slow.seen.len());
}

#[tokio::test]
async fn a_bid_in_the_soft_close_window_is_shown_as_extending_the_auction() {
    let t = start(Config {
        snipe_window: std::time::Duration::from_secs(60),
        snipe_extension: std::time::Duration::from_secs(60),
        ..quick_config()
    })
    .await;
    let web = serve_board(&t).await;
    let [sam, ann] = t.people(["sam", "ann"]).await;
    // 8 s: the soft close scales down to a quarter of it (2 s window, 2 s extension).
    let item = sam.offer("Clock", Cents(100), Some(8)).await.unwrap().item;
    let mut ch = ann.open_item(item).await.unwrap();
    let ends = ch.status().await.unwrap().ends_at;
    let wait = ends
        .saturating_sub(auction_server::unix_ms())
        .saturating_sub(1000);
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    ch.bid(Cents(150), None).await.unwrap();
    let page = get(web, &format!("/item/{item}")).await.body;
    assert_eq!(text(&page, "#facts dd.extensions").as_deref(), Some("1"));
    let note = text(&page, "#history tbody tr td.note").unwrap();
    assert!(note.starts_with("extended the end to "), "{note}");
}

#[tokio::test]
async fn the_board_shows_whether_the_reserve_is_met_and_the_buy_it_now_price_never_the_reserve() {
    let t = start(quick_config()).await;
    let web = serve_board(&t).await;
    let [sam, ann] = t.people(["sam", "ann"]).await;
    // A reserve no digit elsewhere can match by chance.
    let reserve = Cents(7_654);
    let terms = auction_client::Terms {
        reserve: Some(reserve),
        buy_now: Some(Cents(20_000)),
    };
    let item = sam
        .offer_with("Globe", Cents(1000), Some(2), terms)
        .await
        .unwrap()
        .item;
    let row = format!(r#"#open tr[data-item="{item}"]"#);
    let page = get(web, "/").await.body;
    assert_eq!(
        text(&page, &format!("{row} td.terms")).as_deref(),
        Some("reserve not met · buy now 200.00")
    );
    let mut events = stream(web, "/events", &[]).await;
    let mut ch = ann.open_item(item).await.unwrap();
    ch.bid(Cents(3000), None).await.unwrap();
    // Below the reserve: buy it now stays offered.
    let e = events
        .item_event(item, "the bid", |v| v["item"]["price"] == "30.00")
        .await;
    let v = e.json();
    assert_eq!(
        (
            v["item"]["reserve_met"].clone(),
            v["item"]["buy_now"].clone()
        ),
        (serde_json::json!(false), serde_json::json!("200.00"))
    );
    let page = get(web, &format!("/item/{item}")).await.body;
    assert_eq!(
        text(&page, "#facts dd.terms").as_deref(),
        Some("reserve not met · buy now 200.00")
    );
    // The close: the highest bid did not reach the reserve.
    let closed = events
        .item_event(item, "the close", |v| v["item"]["open"] == false)
        .await;
    assert_eq!(closed.json()["item"]["buy_now"], serde_json::Value::Null);
    let page = get(web, "/").await.body;
    let result = format!(r#"#results tr[data-item="{item}"] td.result"#);
    assert_eq!(
        text(&page, &result).as_deref(),
        Some("not sold: the reserve was not met")
    );
    // The reserve itself is on no page and in no event.
    for path in [
        "/".to_owned(),
        format!("/item/{item}"),
        "/projector".to_owned(),
    ] {
        let body = get(web, &path).await.body;
        assert!(!body.contains("76.54") && !body.contains("7654"), "{path}");
    }
    assert!(
        !e.data.contains("76.54") && !e.data.contains("7654"),
        "{}",
        e.data
    );
    // After a restart the result reads the same, from the database.
    let t = t.restart().await;
    let web = serve_board(&t).await;
    let page = get(web, "/").await.body;
    assert_eq!(
        text(&page, &result).as_deref(),
        Some("not sold: the reserve was not met")
    );
}

#[tokio::test]
async fn a_cancelled_item_is_shown_as_cancelled_also_after_a_restart() {
    let t = start(quick_config()).await;
    let op = t.client("operator").await;
    let config = Config {
        operator_key: Some(op.whoami().0),
        ..quick_config()
    };
    let t = t.restart_with(config).await;
    op.register("operator").await.unwrap();
    let web = serve_board(&t).await;
    let [sam, ann] = t.people(["sam", "ann"]).await;
    let item = sam.offer("Vase", Cents(1000), Some(60)).await.unwrap().item;
    {
        let mut ch = ann.open_item(item).await.unwrap();
        ch.bid(Cents(1500), None).await.unwrap();
    }
    op.cancel_item(item, "reported stolen").await.unwrap();
    // The operator's answer follows the close: the board has it already.
    let result = format!(r#"#results tr[data-item="{item}"] td.result"#);
    let page = get(web, "/").await.body;
    assert_eq!(
        text(&page, &result).as_deref(),
        Some("cancelled by the operator: reported stolen")
    );
    let t = t.restart().await;
    let web = serve_board(&t).await;
    let page = get(web, "/").await.body;
    assert_eq!(
        text(&page, &result).as_deref(),
        Some("cancelled by the operator: reported stolen")
    );
}
