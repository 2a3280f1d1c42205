//! The PostgreSQL store several nodes share, against a real PostgreSQL (a throwaway instance
//! started by the test: `common/postgres.rs`). So far its schema (migrations applied once, also
//! by nodes starting together; a newer database refused) and membership: epochs, fencing and the
//! leader lease.

mod common;

use auction_server::postgres::{self, nodes, schema};
use common::postgres::Postgres;
use std::time::Duration;

#[tokio::test]
async fn the_schema_is_created_once_even_by_nodes_starting_together() {
    let pg = Postgres::start();
    // Four nodes start at once on an empty database.
    let mut starts = Vec::new();
    for _ in 0..4 {
        let url = pg.url.clone();
        starts.push(tokio::spawn(async move {
            let mut client = postgres::connect(&url).await.unwrap();
            schema::migrate(&mut client).await.unwrap()
        }));
    }
    for s in starts {
        assert_eq!(s.await.unwrap(), schema::MIGRATIONS.len());
    }
    let client = postgres::connect(&pg.url).await.unwrap();
    assert_eq!(
        schema::version(&client).await.unwrap(),
        schema::MIGRATIONS.len()
    );
    let tables: Vec<String> = client
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for table in [
        "accounts",
        "bids",
        "channel_sessions",
        "items",
        "nodes",
        "notices",
        "replies",
        "schema_version",
        "settlements",
        "subscriptions",
    ] {
        assert!(tables.iter().any(|t| t == table), "{table} in {tables:?}");
    }
    // Names are unique without regard to case, as in SQLite's accounts (registry/accounts.rs).
    client
        .execute(
            "INSERT INTO accounts (id, name, public_key, created_at) VALUES (1, 'alice', 'k1', 0)",
            &[],
        )
        .await
        .unwrap();
    let again = client
        .execute(
            "INSERT INTO accounts (id, name, public_key, created_at) VALUES (2, 'Alice', 'k2', 0)",
            &[],
        )
        .await;
    assert!(again.is_err(), "Alice beside alice");
}

#[tokio::test]
async fn a_database_of_a_newer_build_is_refused() {
    let pg = Postgres::start();
    let mut client = postgres::connect(&pg.url).await.unwrap();
    schema::migrate(&mut client).await.unwrap();
    let newer = schema::MIGRATIONS.len() as i32 + 1;
    client
        .execute("UPDATE schema_version SET version = $1", &[&newer])
        .await
        .unwrap();
    let err = format!("{:#}", schema::migrate(&mut client).await.unwrap_err());
    assert!(err.contains("newer than this build's"), "{err}");
}

#[tokio::test]
async fn a_postgres_url_is_not_taken_for_a_file() {
    // Until the storage is in place, the server says so instead of creating `postgres:/...`.
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_auction-server"))
        .args([
            "--udp",
            "127.0.0.1:0",
            "--db",
            "postgres://auction:pw@127.0.0.1:1/auction",
        ])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a PostgreSQL database"), "{err}");
    assert!(!err.contains(":pw@"), "the password is not shown: {err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing created"
    );
}

/// A fresh database with the schema, and a connection to it.
async fn migrated(pg: &Postgres) -> tokio_postgres::Client {
    let mut client = postgres::connect(&pg.url).await.unwrap();
    schema::migrate(&mut client).await.unwrap();
    client
}

#[tokio::test]
async fn a_node_that_joins_again_fences_its_former_life() {
    let pg = Postgres::start();
    let client = migrated(&pg).await;
    let lease = Duration::from_secs(5);
    let first = nodes::join(&client, "a", "127.0.0.1:7400", lease)
        .await
        .unwrap();
    assert!(nodes::renew(&client, &first, lease).await.unwrap());
    let second = nodes::join(&client, "a", "127.0.0.1:7400", lease)
        .await
        .unwrap();
    assert_eq!(second.epoch, first.epoch + 1);
    assert!(!nodes::renew(&client, &first, lease).await.unwrap());
    assert!(nodes::check_epoch(&client, &first).await.is_err());
    nodes::check_epoch(&client, &second).await.unwrap();
}

#[tokio::test]
async fn a_node_whose_heartbeat_lapsed_is_fenced_once_and_commits_nothing_more() {
    let pg = Postgres::start();
    let mut client = migrated(&pg).await;
    let a = nodes::join(&client, "a", "127.0.0.1:7400", Duration::from_millis(200))
        .await
        .unwrap();
    let b = nodes::join(&client, "b", "127.0.0.2:7400", Duration::from_secs(30))
        .await
        .unwrap();
    // Not lapsed yet: nothing to fence.
    assert!(nodes::fence_lapsed(&client, "b").await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(nodes::fence_lapsed(&client, "b").await.unwrap(), ["a"]);
    assert!(
        nodes::fence_lapsed(&client, "b").await.unwrap().is_empty(),
        "once"
    );
    // A wakes up: its heartbeat and its writes are refused; B carries on.
    assert!(!nodes::renew(&client, &a, Duration::from_secs(30))
        .await
        .unwrap());
    let err = nodes::check_epoch(&client, &a)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("was fenced"), "{err}");
    nodes::check_epoch(&client, &b).await.unwrap();
    // Nor can it take the leader lease, which nobody holds.
    assert!(!nodes::lead(&mut client, &a, Duration::from_secs(30))
        .await
        .unwrap());
    assert_eq!(nodes::leader(&client).await.unwrap(), None);
    // It can join again, with a new epoch.
    let again = nodes::join(&client, "a", "127.0.0.1:7400", Duration::from_secs(30))
        .await
        .unwrap();
    assert!(again.epoch > a.epoch);
}

#[tokio::test]
async fn a_fence_waits_for_a_batch_in_flight_and_stops_the_next() {
    let pg = Postgres::start();
    let mut writer = migrated(&pg).await;
    let a = nodes::join(&writer, "a", "127.0.0.1:7400", Duration::from_millis(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A's write batch checked its epoch before the fence...
    let batch = writer.transaction().await.unwrap();
    nodes::check_epoch(&batch, &a).await.unwrap();
    // ...so the survivor's fence waits until that batch is over.
    let url = pg.url.clone();
    let fence = tokio::spawn(async move {
        let survivor = postgres::connect(&url).await.unwrap();
        nodes::fence_lapsed(&survivor, "b").await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !fence.is_finished(),
        "the fence waited for the batch in flight"
    );
    batch.commit().await.unwrap();
    assert_eq!(fence.await.unwrap(), ["a"]);
    // The next batch fails.
    let batch = writer.transaction().await.unwrap();
    assert!(nodes::check_epoch(&batch, &a).await.is_err());
}

#[tokio::test]
async fn one_live_node_holds_the_leader_lease_until_it_lapses() {
    let pg = Postgres::start();
    let mut ca = migrated(&pg).await;
    let mut cb = postgres::connect(&pg.url).await.unwrap();
    let long = Duration::from_secs(30);
    let a = nodes::join(&ca, "a", "127.0.0.1:7400", long).await.unwrap();
    let b = nodes::join(&cb, "b", "127.0.0.2:7400", long).await.unwrap();
    let short = Duration::from_millis(300);
    assert!(nodes::lead(&mut ca, &a, short).await.unwrap());
    assert!(!nodes::lead(&mut cb, &b, short).await.unwrap());
    assert!(nodes::lead(&mut ca, &a, short).await.unwrap(), "renewed");
    assert_eq!(
        nodes::leader(&cb).await.unwrap(),
        Some(("a".into(), "127.0.0.1:7400".into()))
    );
    // A stops renewing: once the lease lapses, B takes it, and A cannot take it back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(nodes::lead(&mut cb, &b, long).await.unwrap());
    assert!(!nodes::lead(&mut ca, &a, short).await.unwrap());
    assert_eq!(
        nodes::leader(&ca).await.unwrap(),
        Some(("b".into(), "127.0.0.2:7400".into()))
    );
}
