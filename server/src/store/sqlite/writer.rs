//! SQLite's writer thread. After `open` the thread owns the database connection; tasks only
//! touch the queue in front of it (`store/queue.rs`). The thread takes everything queued,
//! writes it in one transaction (`store/sql/write.rs`), commits (one fsync for the whole group)
//! and only then reports it durable: that is what every held answer waits for.

use anyhow::{Context, Result};
use rusqlite::{Connection, TransactionBehavior};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::sql::{Dialect, SqliteTx};
use super::SqliteOptions;
use crate::store::queue::{Batch, Shared};
use crate::store::sql::write::{describe, write};

/// Starts the writer thread on `conn`.
pub(super) fn spawn(
    conn: Connection,
    shared: Arc<Shared>,
    options: SqliteOptions,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("storage-writer".into())
        .spawn(move || write_loop(conn, &shared, options))
        .context("cannot start the storage writer thread")
}

fn write_loop(mut conn: Connection, shared: &Shared, options: SqliteOptions) {
    let mut dialect = Dialect::default();
    while let Some(batch) = shared.next_batch(options.group_commit) {
        let started = std::time::Instant::now();
        match commit(&mut conn, &mut dialect, &batch) {
            Ok(()) => shared.committed(&batch, started.elapsed()),
            Err(e) => {
                shared.fail(format!("{e:#}"));
                return;
            }
        }
    }
}

fn commit(conn: &mut Connection, dialect: &mut Dialect, batch: &Batch) -> Result<()> {
    // IMMEDIATE: take the write lock up front, so a reader elsewhere (an operator's sqlite3
    // shell) cannot turn this into a failed lock upgrade halfway through.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut exec = SqliteTx { tx: &tx, dialect };
    for (_, records) in batch {
        for record in records {
            write(&mut exec, record).with_context(|| format!("writing {}", describe(record)))?;
        }
    }
    tx.commit().context("commit")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::record_set;
    use crate::store::sqlite::{query_one, SqliteOptions, SqliteStorage};
    use crate::store::{Record, Storage};
    use rusqlite::Connection;

    #[test]
    fn a_repeated_bid_id_is_refused_by_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let (storage, _) = SqliteStorage::open(&path, SqliteOptions::default()).unwrap();
        let records = record_set();
        let first = storage.append(records.clone());
        let mut durable = storage.durable();
        while *durable.borrow_and_update() < first {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // The same bid (item, bidder, id) again: the commit fails, the storage says so, and
        // what was committed before stays.
        storage.append(vec![records[4].clone()]);
        storage.close();
        assert!(storage.failed().is_cancelled());
        assert!(
            storage.failure().unwrap().contains("UNIQUE"),
            "{:?}",
            storage.failure()
        );
        assert_eq!(
            query_one::<i64>(&path, "SELECT count(*) FROM bids").unwrap(),
            Some(2)
        );
    }

    #[test]
    fn without_group_commit_every_append_is_its_own_transaction() {
        let dir = tempfile::tempdir().unwrap();
        for (group, path) in [(true, "g.db"), (false, "n.db")] {
            let path = dir.path().join(path);
            let (storage, _) = SqliteStorage::open(
                &path,
                SqliteOptions {
                    group_commit: group,
                },
            )
            .unwrap();
            // Another connection holds the write lock while the appends arrive, so the writer
            // (waiting on SQLite's busy timeout) cannot commit them as they come.
            let blocker = Connection::open(&path).unwrap();
            blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
            storage.append(record_set());
            for i in 0..50u64 {
                storage.append(vec![Record::AccountAttached {
                    id: 1,
                    notify: vec![format!("127.0.0.1:{}", 6000 + i).parse().unwrap()],
                }]);
            }
            blocker.execute_batch("ROLLBACK").unwrap();
            storage.close();
            let stats = storage.stats();
            assert_eq!(stats.appends, 51);
            assert!(!storage.failed().is_cancelled());
            if group {
                // At most the first append alone, then everything that waited behind it.
                assert!(stats.commits <= 2, "{stats:?}");
            } else {
                assert_eq!(stats.commits, 51);
            }
        }
    }
}
