//! `auction-server status`: the operator's view read from the database beside a running server,
//! through the library and through the binary.

mod common;

use auction_protocol::Cents;
use auction_server::status;
use common::{quick_config, start, within};
use std::time::Duration;

#[tokio::test]
async fn status_shows_accounts_open_items_and_who_is_connected() {
    let t = start(quick_config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let item = alice
        .offer("Clock", Cents(1000), Some(60))
        .await
        .unwrap()
        .item;
    let mut b = bob.open_item(item).await.unwrap();
    b.bid(Cents(1500), None).await.unwrap();
    let c = carol.open_item(item).await.unwrap();
    c.close().await;

    // The log is committed shortly after the events (it holds nothing else up).
    let report = within(10, "the connection log", async {
        loop {
            let r = status::read(&t.db).unwrap();
            let item = &r.open_items[0];
            if item.connections.len() == 2
                && item.connections.iter().any(|c| c.disconnected_at.is_some())
            {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(report.source, "database");
    assert!(report.server_running, "the test's server holds the lock");
    let names: Vec<&str> = report.accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
    assert_eq!(report.accounts[0].open_items, 1);
    let it = &report.open_items[0];
    assert_eq!((it.item, it.seller.as_str()), (item, "alice"));
    assert_eq!(
        (it.highest, it.bidder.as_deref()),
        (Some(1500), Some("bob"))
    );
    assert_eq!(it.connected, 1);
    // Latest first: carol came and went, bob is still there.
    assert_eq!(it.connections[0].bidder, "carol");
    assert!(it.connections[0].disconnected_at.is_some());
    assert_eq!(it.connections[1].bidder, "bob");
    assert_eq!(it.connections[1].disconnected_at, None);
    assert!(it.connections[1].peer.starts_with("127.0.0.1:"));

    // The binary, in JSON and for people.
    let bin = env!("CARGO_BIN_EXE_auction-server");
    let db = t.db.to_str().unwrap();
    let out = std::process::Command::new(bin)
        .args(["status", "--db", db, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["source"], "database");
    assert_eq!(v["server_running"], true);
    assert_eq!(v["open_items"][0]["bidder"], "bob");
    assert_eq!(
        v["open_items"][0]["connections"][1]["disconnected_at"],
        serde_json::Value::Null
    );
    // `--db` before the subcommand's name works too (the server's own flag).
    let out = std::process::Command::new(bin)
        .args(["--db", db, "status"])
        .env_remove("AUCTION_DB")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("15.00 (bob)"), "{text}");
    let out = std::process::Command::new(bin)
        .args(["status", "--db", db])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("Read from the database"), "{text}");
    assert!(text.contains("a server is running on it"), "{text}");
    assert!(
        text.contains("15.00 (bob)") && text.contains("still connected"),
        "{text}"
    );

    // After the server stops, every connection is closed in the log and the report says no
    // server is running.
    drop(b);
    let db_path = t.db.clone();
    let dir = t.dir;
    t.server.shutdown().await.unwrap();
    let r = status::read(&db_path).unwrap();
    assert!(!r.server_running);
    assert!(r.open_items[0]
        .connections
        .iter()
        .all(|c| c.disconnected_at.is_some()));
    // A missing database is an error that says so.
    let err = status::read(&dir.path().join("nope.db")).unwrap_err();
    assert!(err.to_string().contains("there is no database"), "{err}");
}

/// `gen-certs` touches no database: it does not offer a `--db` that would do nothing.
#[test]
fn gen_certs_takes_no_db() {
    let bin = env!("CARGO_BIN_EXE_auction-server");
    let out = std::process::Command::new(bin)
        .args(["gen-certs", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--out") && !help.contains("--db"), "{help}");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin)
        .args(["gen-certs", "--db", "x.db", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(!dir.path().join("ca.pem").exists());
}
