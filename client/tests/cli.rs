//! The `auction-client` binary end to end against a real server on port 0: a whole auction in
//! JSON mode, human output, exit codes, and `watch` receiving the winner notices.

mod common;

use common::{start, until_type};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UdpSocket;

fn key_exists(home: &Path) -> bool {
    home.join("identity.key").exists() && home.join("identity.pem").exists()
}

#[tokio::test]
async fn whole_auction_through_the_binary() {
    let env = start().await;
    for who in ["alice", "bob", "carol"] {
        let (code, stdout, _) = env.run(who, &["register", who]).await;
        assert_eq!(code, 0);
        assert_eq!(stdout.trim(), format!("Registered as {who}."));
        assert!(key_exists(&env.home(who)), "identity created on first use");
    }
    // Alice watches for her announcements from a long-running process.
    let (mut watch, mut watch_lines) = env.spawn_lines("alice", &["--json", "watch"]);

    let offer = env
        .json(
            "alice",
            &[
                "offer",
                "Vintage lamp",
                "--min",
                "12.50",
                "--duration",
                "3s",
            ],
        )
        .await;
    let item = offer["item"].as_u64().unwrap();
    assert!(offer["channel"].as_str().unwrap().starts_with("127.0.0.1:"));
    let item_s = item.to_string();

    // Too low: exit 1, with the reason.
    let (code, stdout, stderr) = env.run("bob", &["--json", "bid", &item_s, "12.49"]).await;
    assert_eq!(code, 1, "{stderr}");
    let rejected: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(rejected["accepted"], false);
    assert_eq!(rejected["reason"], "too-low");
    assert_eq!(rejected["amount"], 1249);
    assert!(stderr.contains("rejected"), "{stderr}");

    let bid = env.json("bob", &["bid", &item_s, "12.50"]).await;
    assert_eq!(
        (bid["accepted"].clone(), bid["amount"].clone()),
        (Value::Bool(true), Value::from(1250))
    );
    let (code, stdout, _) = env.run("carol", &["bid", &item_s, "13"]).await;
    assert_eq!(code, 0);
    assert!(stdout.starts_with("Bid of 13.00 on item"), "{stdout}");

    let status = env.json("bob", &["status", &item_s]).await;
    assert_eq!(status["state"], "open");
    assert_eq!(status["highest"], 1300);
    assert_eq!(status["bidder"], "carol");

    let items = env.json("bob", &["items"]).await;
    assert_eq!(items["item"], item);
    let (_, table, _) = env.run("bob", &["items"]).await;
    assert!(table.starts_with("ITEM"), "{table}");
    assert!(
        table.contains("Vintage lamp") && table.contains("13.00 (carol)"),
        "{table}"
    );

    // Bob follows the channel to the end with a last bid.
    let (code, stdout, _) = env.run("bob", &["bid", &item_s, "14", "--follow"]).await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!("Item {item}: sold to bob for 14.00.")),
        "{stdout}"
    );

    let status = env.json("carol", &["status", &item_s]).await;
    assert_eq!(status["state"], "closed");
    assert_eq!(status["winner"], "bob");
    assert_eq!(status["highest"], 1400);

    // Alice's watch printed the new item and then SOLD.
    let sold = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = watch_lines.next_line().await.unwrap() {
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["type"] == "sold" {
                return v;
            }
        }
        panic!("watch ended")
    })
    .await
    .expect("SOLD reached watch");
    assert_eq!(
        (sold["winner"].clone(), sold["amount"].clone()),
        (Value::from("bob"), Value::from(1400))
    );
    watch.kill().await.unwrap();
}

#[tokio::test]
async fn exit_codes_say_what_went_wrong() {
    let env = start().await;
    // Usage: a bad amount, an unknown command.
    assert_eq!(env.run("x", &["bid", "1", "12.345"]).await.0, 2);
    assert_eq!(env.run("x", &["fly"]).await.0, 2);
    // Acting before registering is a usage error with a hint.
    let (code, _, stderr) = env.run("x", &["offer", "lamp", "--min", "1"]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("register"), "{stderr}");
    // Refused by the server: 1.
    env.run("a", &["register", "alice"]).await;
    let (code, _, stderr) = env.run("b", &["register", "alice"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("taken"), "{stderr}");
    let (code, _, _) = env.run("b", &["status", "999"]).await;
    assert_eq!(code, 1);
    // Nobody answering: 3.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        env.cmd_to(&addr, "b", &["items"]).output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no answer"));
}

#[tokio::test]
async fn follow_and_watch_carry_on_through_a_server_restart() {
    let env = start().await;
    env.register(&["alice", "bob", "carol"]).await;
    let (mut watch, mut watch_lines) = env.spawn_lines("alice", &["--json", "watch"]);
    let offer = env
        .json(
            "alice",
            &["offer", "Globe", "--min", "10", "--duration", "6s"],
        )
        .await;
    let item = offer["item"].as_u64().unwrap().to_string();

    let (mut follow, mut lines) =
        env.spawn_lines("bob", &["--json", "bid", &item, "10", "--follow"]);
    let mut seen = Vec::new();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["accepted"], true, "{first}");

    // The server goes down for a second and comes back on the same port and database.
    let env = env.restart_after(Duration::from_secs(1)).await;
    let lost = until_type(&mut lines, "reconnecting", &mut seen).await;
    assert_eq!(
        lost["item"].as_u64().map(|i| i.to_string()),
        Some(item.clone())
    );
    let back = until_type(&mut lines, "reconnected", &mut seen).await;
    assert_eq!(back["item"]["highest"], 1000, "{back}");

    // Bidding goes on; bob's follow sees carol's bid and the end of the auction.
    assert_eq!(env.run("carol", &["bid", &item, "11"]).await.0, 0);
    let highest = until_type(&mut lines, "highest", &mut seen).await;
    assert_eq!(highest["bidder"], "carol");
    let sold = until_type(&mut lines, "sold-to", &mut seen).await;
    assert_eq!(sold["winner"], "carol");
    let status = tokio::time::timeout(Duration::from_secs(10), follow.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());

    // alice's watch, started before the restart, still gets the SOLD that came after it.
    let mut watched = Vec::new();
    let sold = until_type(&mut watch_lines, "sold", &mut watched).await;
    assert_eq!(sold["winner"], "carol");
    assert_eq!(sold["amount"], 1100);
    watch.kill().await.unwrap();
}

#[tokio::test]
async fn the_shell_keeps_following_a_bid_through_a_server_restart() {
    use tokio::io::AsyncWriteExt;
    let env = start().await;
    env.register(&["alice", "bob", "carol"]).await;
    let offer = env
        .json(
            "alice",
            &["offer", "Map", "--min", "10", "--duration", "30s"],
        )
        .await;
    let item = offer["item"].as_u64().unwrap().to_string();
    let mut shell = env
        .cmd("bob", &["shell"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = shell.stdin.take().unwrap();
    let mut lines = BufReader::new(shell.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let mut read_until = async |needle: &str, seen: &mut String| {
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(needle) {
                    return;
                }
            }
            panic!("the shell ended before '{needle}':\n{seen}");
        })
        .await
        .unwrap_or_else(|_| panic!("no '{needle}' within 30 s:\n{seen}"));
    };
    stdin
        .write_all(format!("bid {item} 10\n").as_bytes())
        .await
        .unwrap();
    read_until("accepted", &mut seen).await;

    let env = env.restart_after(Duration::from_millis(500)).await;
    read_until(&format!("Lost the channel to item {item}"), &mut seen).await;
    read_until(&format!("Reconnected to item {item}"), &mut seen).await;
    assert_eq!(env.run("carol", &["bid", &item, "11"]).await.0, 0);
    read_until("new highest bid 11.00 by carol", &mut seen).await;
    stdin.write_all(b"quit\n").await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), shell.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{seen}");
}

#[tokio::test]
async fn proxy_bids_from_the_command_line() {
    let env = start().await;
    env.register(&["alice", "bob", "carol"]).await;
    let offer = env
        .json("alice", &["offer", "Typewriter", "--min", "10"])
        .await;
    let item = offer["item"].as_u64().unwrap().to_string();

    let bid = env.json("bob", &["bid", &item, "--max", "30"]).await;
    assert_eq!(bid["accepted"], true);
    assert_eq!(bid["leading"], true);
    assert_eq!(
        (bid["amount"].clone(), bid["max"].clone()),
        (Value::from(1000), Value::from(3000))
    );

    // Carol's direct bid is accepted but outbid at once, and says so.
    let (code, stdout, stderr) = env.run("carol", &["bid", &item, "20"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("outbid it at once"), "{stdout}");
    let status = env.json("carol", &["status", &item]).await;
    assert_eq!(
        (status["highest"].clone(), status["bidder"].clone()),
        (Value::from(2001), Value::from("bob"))
    );

    // Human output for a winning proxy; an amount and --max together is a usage error.
    let (code, stdout, _) = env.run("carol", &["bid", &item, "--max", "45.50"]).await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains("you lead at 30.01") && stdout.contains("up to 45.50"),
        "{stdout}"
    );
    let (code, _, stderr) = env.run("carol", &["bid", &item, "40", "--max", "50"]).await;
    assert_eq!(code, 2, "{stderr}");
}

#[tokio::test]
async fn subscribe_and_watch_follow_an_item_without_its_channel() {
    let env = start().await;
    env.register(&["alice", "bob", "carol"]).await;
    let offer = env
        .json(
            "alice",
            &["offer", "Globe", "--min", "3", "--duration", "4s"],
        )
        .await;
    let item = offer["item"].as_u64().unwrap().to_string();
    let (code, stdout, _) = env.run("carol", &["subscribe", &item]).await;
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with(&format!("Subscribed to item {item}")),
        "{stdout}"
    );
    let (code, _, stderr) = env.run("carol", &["subscribe", "77"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("there is no item 77"), "{stderr}");

    let (mut watch, mut lines) = env.spawn_lines("carol", &["--json", "watch"]);
    let mut seen = vec![];
    // Announcements go to watch once it has attached (it says so first).
    until_type(&mut lines, "watching", &mut seen).await;
    assert_eq!(env.run("bob", &["bid", &item, "3.50"]).await.0, 0);
    let update = until_type(&mut lines, "bid-update", &mut seen).await;
    assert_eq!(
        (update["highest"].clone(), update["bidder"].clone()),
        (Value::from(350), Value::from("bob"))
    );
    let closed = until_type(&mut lines, "item-closed", &mut seen).await;
    assert_eq!(
        (closed["winner"].clone(), closed["price"].clone()),
        (Value::from("bob"), Value::from(350))
    );
    assert!(closed["seq"].as_u64().unwrap() > update["seq"].as_u64().unwrap());
    watch.kill().await.unwrap();
}

#[tokio::test]
async fn any_command_from_another_address_logs_in_there() {
    let env = start().await;
    assert_eq!(env.run("alice", &["register", "alice"]).await.0, 0);
    // Same machine (same IP): nothing moves, nothing is said.
    let (code, _, stderr) = env.run("alice", &["items"]).await;
    assert_eq!(code, 0);
    assert!(!stderr.contains("logged in"), "{stderr}");
    // The identity used from another address (127.0.0.2 stands in for a second machine).
    let (code, stdout, stderr) = env.run("alice", &["--bind", "127.0.0.2", "items"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("No items are open"), "{stdout}");
    assert!(
        stderr.contains("logged in as alice from this address"),
        "{stderr}"
    );
    let (_, _, stderr) = env.run("alice", &["--bind", "127.0.0.2", "items"]).await;
    assert!(
        !stderr.contains("logged in"),
        "only the first command moves them: {stderr}"
    );
}

#[tokio::test]
async fn the_seller_sees_the_negotiation_request_in_watch_and_answers_it() {
    let env = start().await;
    env.register(&["alice", "bob"]).await;
    let (mut watch, mut lines) = env.spawn_lines("alice", &["--json", "watch"]);
    let mut seen = vec![];
    until_type(&mut lines, "watching", &mut seen).await;
    let offer = env
        .json(
            "alice",
            &["offer", "Kite", "--min", "8", "--duration", "4s"],
        )
        .await;
    let item = offer["item"].as_u64().unwrap().to_string();
    // Neither answer, or both, is a usage error; bob cannot answer for alice's item.
    assert_eq!(env.run("alice", &["negotiate", &item]).await.0, 2);
    let both = ["negotiate", &item, "--accept", "5", "--refuse"];
    assert_eq!(env.run("alice", &both).await.0, 2);
    let (code, _, stderr) = env.run("alice", &["negotiate", &item, "--refuse"]).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("has not been offered for negotiation"),
        "{stderr}"
    );

    let req = until_type(&mut lines, "negotiate-req", &mut seen).await;
    assert_eq!(req["item"].as_u64().unwrap().to_string(), item);
    assert_eq!(req["min"], Value::from(800));
    let (code, _, stderr) = env.run("bob", &["negotiate", &item, "--accept", "5"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("is not 'bob''s"), "{stderr}");
    let (code, stdout, _) = env
        .run("alice", &["negotiate", &item, "--accept", "5.50"])
        .await;
    assert_eq!(code, 0);
    assert_eq!(
        stdout.trim(),
        format!("Item {item}: the minimum is now 5.50; bidders have been told.")
    );
    let status = env.json("bob", &["status", &item]).await;
    assert_eq!(status["min"], Value::from(550));
    watch.kill().await.unwrap();
}

#[tokio::test]
async fn settle_from_the_command_line_with_flags() {
    let env = start().await;
    env.register(&["alice", "bob", "carol"]).await;
    let offer = env
        .json(
            "alice",
            &["offer", "Chair", "--min", "4", "--duration", "1s"],
        )
        .await;
    let item = offer["item"].as_u64().unwrap().to_string();
    assert_eq!(env.run("bob", &["bid", &item, "4.50"]).await.0, 0);
    tokio::time::timeout(Duration::from_secs(10), async {
        while env.json("bob", &["status", &item]).await["state"] != "closed" {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the item closes");

    // Not a party; the details missing without a terminal to ask in; a card number.
    let (code, _, stderr) = env.run("carol", &["settle", &item]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("not the buyer or the seller"), "{stderr}");
    let (code, _, stderr) = env.run("bob", &["settle", &item]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("give --name"), "{stderr}");
    let card = [
        "settle",
        &item,
        "--name",
        "Bob",
        "--address",
        "5500-0000-0000-0004",
    ];
    let (code, _, stderr) = env.run("bob", &card).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("payment card number"), "{stderr}");

    let ship = [
        "settle",
        &item,
        "--name",
        "Bob Baker",
        "--address",
        "1 Main St",
    ];
    let (code, stdout, _) = env.run("bob", &ship).await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains("you bought it from alice for 4.50"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Waiting for the seller's contact"),
        "{stdout}"
    );
    let done = env
        .json(
            "alice",
            &["settle", &item, "--contact", "alice@example.org"],
        )
        .await;
    // The first line is the request for the contact, the answer follows.
    assert_eq!(done["type"], "inform-req");
    let (code, stdout, _) = env.run("alice", &["--json", "settle", &item]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["settlement"]["state"], "settled");
    assert_eq!(v["settlement"]["shipping"]["name"], "Bob Baker");
    let (_, stdout, _) = env.run("bob", &["settle", &item]).await;
    assert!(
        stdout.contains("The seller's contact: alice@example.org"),
        "{stdout}"
    );
}

#[tokio::test]
async fn reserve_and_buy_it_now_from_the_command_line() {
    let env = start().await;
    env.register(&["alice", "bob", "carol"]).await;
    // A reserve below the minimum is refused with the reason, exit code 1.
    let (code, _, stderr) = env
        .run(
            "alice",
            &["offer", "Clock", "--min", "20", "--reserve", "10"],
        )
        .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("reserve price must be at least the minimum bid"),
        "{stderr}"
    );
    let offer = env
        .json(
            "alice",
            &[
                "offer",
                "Clock",
                "--min",
                "20",
                "--reserve",
                "60",
                "--buy-now",
                "150",
                "--duration",
                "60s",
            ],
        )
        .await;
    let item = offer["item"].as_u64().unwrap().to_string();
    let bid = env.json("bob", &["bid", &item, "30"]).await;
    assert_eq!(bid["accepted"], true);
    // People read the reserve's state and the price; scripts get the fields.
    let (code, stdout, _) = env.run("carol", &["status", &item]).await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains("the highest bid is 30.00 by bob (reserve not met); buy it now for 150.00"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("60.00"),
        "the reserve is not shown: {stdout}"
    );
    let status = env.json("carol", &["status", &item]).await;
    assert_eq!(
        (status["reserve_met"].clone(), status["buy_now"].clone()),
        (Value::Bool(false), Value::from(15000))
    );
    let (code, stdout, _) = env.run("carol", &["items"]).await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains("reserve not met, buy now 150.00"),
        "{stdout}"
    );

    let (code, stdout, stderr) = env.run("carol", &["bid", &item, "--buy-now"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.trim(),
        format!("You bought item {item} for 150.00: the auction has ended.")
    );
    let (code, stdout, _) = env.run("bob", &["status", &item]).await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains("is closed: sold to carol for 150.00."),
        "{stdout}"
    );
    // The bids in order, for people and for scripts.
    let (code, stdout, _) = env.run("alice", &["history", &item]).await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("BID ") && lines[0].contains("BIDDER"),
        "{stdout}"
    );
    assert!(
        lines[1].contains(" UTC  bob") && lines[1].contains("30.00"),
        "{stdout}"
    );
    assert!(
        lines[2].contains("carol") && lines[2].contains("150.00"),
        "{stdout}"
    );
    let (code, stdout, _) = env.run("alice", &["--json", "history", &item]).await;
    assert_eq!(code, 0);
    let bids: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        bids.iter()
            .map(|b| (b["bidder"].clone(), b["amount"].clone()))
            .collect::<Vec<_>>(),
        [
            (Value::from("bob"), Value::from(3000)),
            (Value::from("carol"), Value::from(15000))
        ]
    );
    // Nothing to buy any more: a clear refusal, exit code 1.
    let (code, _, stderr) = env.run("bob", &["bid", &item, "--buy-now"]).await;
    assert_eq!(code, 1, "{stderr}");
    // `bid` needs one of an amount, --max or --buy-now.
    let (code, _, stderr) = env.run("bob", &["bid", &item]).await;
    assert_eq!(code, 2, "{stderr}");
}

#[tokio::test]
async fn the_operator_removes_a_bid_and_cancels_an_item_from_the_command_line() {
    // The key the server is given, read from the operator's home.
    let (env, key) = common::start_with_operator().await;
    assert_eq!(key.len(), 64, "{key}");
    env.register(&["operator", "alice", "bob", "mallory"]).await;
    let (code, stdout, _) = env.run("operator", &["whoami"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        stdout.trim(),
        format!("You are operator; your public key is {key}.")
    );
    let item = env
        .json(
            "alice",
            &["offer", "Guitar", "--min", "50", "--duration", "1m"],
        )
        .await["item"]
        .to_string();
    assert_eq!(env.run("bob", &["bid", &item, "60"]).await.0, 0);
    assert_eq!(env.run("mallory", &["bid", &item, "90"]).await.0, 0);
    let bids = env.json("operator", &["history", &item]).await;
    let first = bids["bid"].as_u64().unwrap();
    let (code, stdout, _) = env.run("operator", &["--json", "history", &item]).await;
    assert_eq!(code, 0);
    let shill: Value = serde_json::from_str(stdout.lines().nth(1).unwrap()).unwrap();
    assert_eq!(shill["bidder"], "mallory");
    let shill = shill["bid"].as_u64().unwrap();
    assert!(shill > first);
    // Anyone else is refused, with exit code 1.
    let (code, _, stderr) = env
        .run(
            "alice",
            &["remove-bid", &item, &shill.to_string(), "--note", "x"],
        )
        .await;
    assert_eq!(code, 1);
    assert!(stderr.contains("is not this server's operator"), "{stderr}");
    let (code, stdout, stderr) = env
        .run(
            "operator",
            &[
                "remove-bid",
                &item,
                &shill.to_string(),
                "--note",
                "shill bidding",
            ],
        )
        .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.trim(),
        format!("Removed bid #{shill} from item {item}: the highest bid is now 60.00 by bob.")
    );
    let (code, stdout, _) = env.run("bob", &["history", &item]).await;
    assert_eq!(code, 0);
    let marked = stdout
        .lines()
        .find(|l| l.contains("mallory"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        marked.starts_with(&format!("#{shill}"))
            && marked.contains("REMOVED by the operator at")
            && marked.ends_with(": shill bidding"),
        "{stdout}"
    );
    // Cancelling: the item closes unsold and its history says why.
    let (code, stdout, stderr) = env
        .run(
            "operator",
            &["cancel-item", &item, "--note", "stolen goods"],
        )
        .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with(&format!("Item {item} is cancelled")),
        "{stdout}"
    );
    let (_, stdout, _) = env.run("bob", &["status", &item]).await;
    assert_eq!(
        stdout.trim(),
        format!("Item {item} \"Guitar\" by alice was cancelled by the operator: not sold (`history {item}` says why).")
    );
    let status = env.json("bob", &["status", &item]).await;
    assert_eq!(
        (&status["state"], &status["winner"], &status["cancelled"]),
        (&json!("closed"), &Value::Null, &json!(true))
    );
    let (_, stdout, _) = env.run("bob", &["history", &item]).await;
    assert!(
        stdout.trim_end().ends_with(": stolen goods."),
        "the history ends with the cancellation: {stdout}"
    );
    let (code, _, stderr) = env
        .run("operator", &["cancel-item", &item, "--note", "again"])
        .await;
    assert_eq!(code, 1);
    assert!(stderr.contains("has closed"), "{stderr}");
}
