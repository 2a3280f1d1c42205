//! The PostgreSQL store several nodes share, against a real PostgreSQL (a throwaway instance
//! started by the test: `common/postgres.rs`). So far its schema: migrations applied once, also
//! by nodes starting together, and a newer database refused.

mod common;

use auction_server::postgres::{self, schema};
use common::postgres::Postgres;

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
