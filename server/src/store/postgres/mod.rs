//! PostgreSQL, the store several nodes share (`../shared/ARCHITECTURE.md`, "Several nodes").
//!
//! By file: `schema.rs` creates and migrates the schema, safe when several nodes start at once;
//! `nodes.rs` keeps membership, fencing epochs and the leader lease; `storage.rs` is the
//! [`Storage`](crate::store::Storage) (one writer connection per node doing group commit,
//! every batch fenced by the node's epoch); `sql.rs` runs the SQL both backends share
//! (`store/sql/`) on tokio-postgres; `status.rs` reads `auction-server status`.

pub mod nodes;
pub mod schema;
pub mod shard;
mod sql;
pub mod status;
mod storage;
/// The integration tests' throwaway PostgreSQL, for the unit tests too.
#[cfg(test)]
#[path = "../../../tests/common/postgres.rs"]
pub(crate) mod throwaway;

pub use storage::{session_block, PostgresOptions, PostgresStorage};

use anyhow::{Context, Result};

/// Whether `db` (the `--db` value) names a PostgreSQL database rather than a SQLite file.
pub fn is_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// A connection to the database at `url`, its connection task running on the current runtime
/// (it ends when the client is dropped).
pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    connect_as(url, "auction-server").await
}

/// [`connect`], naming the connection `name` in PostgreSQL (`application_name`, as
/// `pg_stat_activity` shows it): each node's connections say which node and what for.
pub async fn connect_as(url: &str, name: &str) -> Result<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("{} is not a PostgreSQL URL", shown(url)))?;
    config.application_name(name);
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot connect to {}", shown(url)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// `url` without its password, for messages and logs.
pub fn shown(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths_and_shown_without_passwords() {
        assert!(is_url("postgres://auction@127.0.0.1:5432/auction"));
        assert!(is_url("postgresql://a@h/db"));
        assert!(!is_url("data/auction.db"));
        assert!(!is_url("/var/lib/postgres.db"));
        assert_eq!(
            shown("postgres://ann:secret@db.example:5432/auction"),
            "postgres://ann:***@db.example:5432/auction"
        );
        assert_eq!(shown("postgres://ann@h/db"), "postgres://ann@h/db");
    }
}
