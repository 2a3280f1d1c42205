//! The SQLite backend: one file (bundled SQLite, nothing to install), WAL journal with
//! `synchronous=FULL`, so a commit has reached the disk when it returns.
//!
//! One writer thread owns the connection. `append` puts records on its queue; the thread takes
//! everything queued, writes it in one transaction, commits (one fsync for the whole group) and
//! advances `durable`. Opening checks the file before changing anything: a file that is not an
//! auction database, is damaged, or comes from a newer version is refused and left as it was.
//! A lock file next to the database keeps a second server off it.
//!
//! By file: `schema.rs` checks and migrates the file and holds the lock; `writer.rs` is the
//! writer thread (its queue is `store/queue.rs`); `sql.rs` runs the SQL both backends share
//! (`store/sql/`: how each record is written and the snapshot read back) on SQLite;
//! `status.rs` reads for `auction-server status`, from another process.

pub mod care;
mod disk;
mod schema;
mod sql;
pub(crate) mod status;
mod wal;
mod writer;

pub use status::query_one;

use anyhow::{Context, Result};
use auction_protocol::Cents;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::rules::settlement::Party;
use crate::store::queue::Shared;
use crate::store::sql::load::load;
use crate::store::{CommitObserver, CommitStats, Lsn, Record, Snapshot, Storage};
use schema::{lock_file, migrate, open_checked};

/// How the writer commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Commit everything waiting in one transaction (the default). Off, every `append` is its
    /// own transaction and fsync: only for measuring what group commit buys.
    pub group_commit: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { group_commit: true }
    }
}

/// The SQLite [`Storage`]: the writer thread's queue, and the thread itself. Dropping it
/// commits what is queued and stops the thread.
pub struct SqliteStorage {
    shared: Arc<Shared>,
    /// For reads beside the writer (`best_bids`).
    path: PathBuf,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Held (locked) for as long as this storage is open.
    _lock: File,
}

impl SqliteStorage {
    /// Opens (or creates) the database at `path` and reads what the server needs to resume.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<(SqliteStorage, Snapshot)> {
        Self::open_here(path, options).map_err(|e| disk::explain(path, e))
    }

    fn open_here(path: &Path, options: SqliteOptions) -> Result<(SqliteStorage, Snapshot)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the folder {}", dir.display()))?;
        }
        let lock = lock_file(path)?;
        let mut conn = open_checked(path)?;
        disk::ensure_room(path)?;
        migrate(&mut conn)
            .with_context(|| format!("cannot update the schema of {}", path.display()))?;
        // Connections still open in the log belong to a server that stopped without closing
        // them (a crash): they ended then, at the latest.
        conn.execute(
            "UPDATE channel_sessions SET disconnected_at = ?1 WHERE disconnected_at IS NULL",
            [crate::clock::unix_ms()],
        )
        .with_context(|| format!("cannot update {}", path.display()))?;
        let snapshot = load(&mut sql::SqliteQuery::new(&conn))
            .with_context(|| format!("cannot read {}", path.display()))?;
        // Started: a clean stop may fold the log into the file again (see `open_checked`).
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)?;
        let shared = Arc::new(Shared::new());
        let writer = writer::spawn(conn, shared.clone(), options)?;
        Ok((
            SqliteStorage {
                shared,
                path: path.to_owned(),
                writer: Mutex::new(Some(writer)),
                _lock: lock,
            },
            snapshot,
        ))
    }
}

impl Storage for SqliteStorage {
    fn append(&self, records: Vec<Record>) -> Lsn {
        self.shared.append(records)
    }

    fn appended(&self) -> Lsn {
        self.shared.appended()
    }

    fn durable(&self) -> watch::Receiver<Lsn> {
        self.shared.durable()
    }

    fn failed(&self) -> CancellationToken {
        self.shared.failed()
    }

    fn failure(&self) -> Option<String> {
        self.shared.failure()
    }

    fn observe_commits(&self, observer: CommitObserver) {
        self.shared.observe(observer);
    }

    fn best_bids(&self, item: u64) -> Result<Vec<(Party, Cents)>> {
        let conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        crate::store::sql::best_bids(&mut sql::SqliteQuery::new(&conn), item)
    }

    fn history(&self, item: u64, limit: u64) -> Result<Vec<crate::web::BoardBid>> {
        let conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        crate::store::sql::history(&mut sql::SqliteQuery::new(&conn), item, limit)
    }

    fn latest_bids(&self, item: u64, limit: u64) -> Result<crate::store::sql::BidHistory> {
        let conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        crate::store::sql::latest_bids(&mut sql::SqliteQuery::new(&conn), item, limit)
    }

    fn item_bids(&self, item: u64) -> Result<Vec<crate::store::sql::StoredBid>> {
        let conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        crate::store::sql::item_bids(&mut sql::SqliteQuery::new(&conn), item)
    }

    fn stats(&self) -> CommitStats {
        self.shared.stats()
    }

    fn close(&self) {
        self.shared.close();
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

impl Drop for SqliteStorage {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::rules::auction::{Outcome, Terms};
    use crate::store::NoticeRecord;
    use auction_protocol::{PublicKey, Reason};

    /// A little of everything: two accounts, a reply, an item, an accepted and a rejected bid.
    pub(super) fn record_set() -> Vec<Record> {
        let key = PublicKey([7; 32]);
        vec![
            Record::AccountCreated {
                id: 1,
                name: "ann".into(),
                key,
                notify: Some("127.0.0.1:5000".parse().unwrap()),
                at: 1,
            },
            Record::AccountCreated {
                id: 2,
                name: "bob".into(),
                key: PublicKey([8; 32]),
                notify: Some("127.0.0.1:5001".parse().unwrap()),
                at: 1,
            },
            Record::Replied {
                account: 1,
                req: 10,
                digest: [3; 32],
                answer: b"ten".to_vec(),
                floor: 0,
            },
            Record::ItemOffered {
                item: 1,
                seller: 1,
                description: "lamp".into(),
                min: Cents(100),
                ends_at: 1_000,
                port: 4000,
                at: 1,
                catalog_id: Some("lot-1".into()),
                negotiate_at: 500,
                terms: Terms::default(),
            },
            Record::Bid {
                item: 1,
                bidder: 2,
                amount: Cents(150),
                bid_id: Some("b1".into()),
                outcome: Outcome::Accepted {
                    amount: Cents(150),
                    ends_at: 2_000,
                    leading: true,
                    max: Some(Cents(400)),
                },
                lead: Some((2, Cents(150), Some(Cents(400)))),
                at: 2,
            },
            Record::Bid {
                item: 1,
                bidder: 2,
                amount: Cents(10),
                bid_id: Some("b2".into()),
                outcome: Outcome::Rejected {
                    reason: Reason::TooLow,
                    message: "low".into(),
                },
                lead: None,
                at: 3,
            },
        ]
    }

    #[test]
    fn records_come_back_in_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/a.db");
        {
            let (storage, snap) = SqliteStorage::open(&path, SqliteOptions::default()).unwrap();
            assert!(snap.accounts.is_empty());
            assert_eq!((snap.next_account, snap.next_item), (1, 1));
            let lsn = storage.append(record_set());
            storage.close();
            assert_eq!(*storage.durable().borrow(), lsn);
        }
        let (storage, snap) = SqliteStorage::open(&path, SqliteOptions::default()).unwrap();
        assert_eq!(snap.accounts.len(), 2);
        assert_eq!(
            snap.accounts[0].replies,
            vec![(10, [3; 32], b"ten".to_vec())]
        );
        assert_eq!((snap.next_account, snap.next_item), (3, 2));
        let item = &snap.items[0];
        assert_eq!(
            item.lead,
            Some((2, "bob".to_owned(), Cents(150), Some(Cents(400))))
        );
        assert_eq!(item.ends_at, 2_000);
        assert_eq!(item.offered_at, 1);
        assert_eq!(item.closed_at, None);
        assert_eq!(item.bid_ids.len(), 2);
        assert_eq!(
            item.bid_ids[1].2,
            Outcome::Rejected {
                reason: Reason::TooLow,
                message: "low".into()
            }
        );
        // Close it with a notice; the notice is pending until acknowledged.
        let notice = NoticeRecord {
            id: 4,
            account: 2,
            item: 1,
            kind: crate::store::NoticeKind::Win.as_str(),
            datagram: b"{}".to_vec(),
        };
        storage.append(vec![Record::ItemClosed {
            item: 1,
            winner: Some((2, Cents(150))),
            notices: vec![notice],
            at: 5,
        }]);
        storage.close();
        drop(storage);
        let (storage, snap) = SqliteStorage::open(&path, SqliteOptions::default()).unwrap();
        assert_eq!(snap.items[0].closed_at, Some(5));
        assert!(
            snap.items[0].bid_ids.is_empty(),
            "closed items need no bid ids"
        );
        assert_eq!(snap.notices.len(), 1);
        storage.append(vec![Record::NoticeAcked { notice: 4, at: 6 }]);
        drop(storage);
        let (_storage, snap) = SqliteStorage::open(&path, SqliteOptions::default()).unwrap();
        assert!(snap.notices.is_empty());
    }

    /// Waits (a real commit, so up to a few seconds) until `lsn` is durable.
    fn until_durable(storage: &SqliteStorage, lsn: crate::store::Lsn) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while *storage.durable().borrow() < lsn {
            assert!(
                std::time::Instant::now() < deadline,
                "{lsn} never became durable"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn an_outbox_holds_what_is_not_durable_and_keeps_the_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let (storage, _) = SqliteStorage::open(&path, SqliteOptions::default()).unwrap();
        let first = storage.append(record_set());
        until_durable(&storage, first);
        // Another connection holds the write lock: nothing appended now becomes durable.
        let blocker = rusqlite::Connection::open(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let mut outbox = crate::store::Outbox::new(&storage);
        assert_eq!(
            outbox.admit_after(first, "a"),
            Some("a"),
            "durable: said at once"
        );
        let second = storage.append(vec![Record::NoticeAcked { notice: 99, at: 7 }]);
        assert_eq!(outbox.admit_after(second, "b"), None, "held for the commit");
        // "c" needs only what is durable, but goes after "b".
        assert_eq!(
            outbox.admit_after(first, "c"),
            None,
            "overtook a held message"
        );
        assert_eq!(outbox.admit(&storage, "d"), None);
        assert_eq!(outbox.release(), None);
        blocker.execute_batch("ROLLBACK").unwrap();
        until_durable(&storage, second);
        assert_eq!(outbox.release(), Some("b"));
        assert_eq!(outbox.release(), Some("c"));
        assert_eq!(outbox.release(), Some("d"));
        assert_eq!(outbox.release(), None);
    }

    #[test]
    fn a_deregistered_accounts_notices_are_no_longer_pending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let (storage, _) = SqliteStorage::open(&path, SqliteOptions::default()).unwrap();
        storage.append(record_set());
        let notice = |id, account| NoticeRecord {
            id,
            account,
            item: 1,
            kind: crate::store::NoticeKind::Win.as_str(),
            datagram: b"{}".to_vec(),
        };
        storage.append(vec![Record::ItemClosed {
            item: 1,
            winner: Some((2, Cents(150))),
            notices: vec![notice(4, 2), notice(5, 1)],
            at: 5,
        }]);
        storage.append(vec![Record::AccountRemoved { id: 2, at: 7 }]);
        storage.close();
        drop(storage);
        // Account 2's notice is dropped with it (stored as acknowledged then); 1's still waits.
        let (_storage, snap) = SqliteStorage::open(&path, SqliteOptions::default()).unwrap();
        assert_eq!(snap.notices.len(), 1);
        assert_eq!((snap.notices[0].id, snap.notices[0].account), (5, 1));
        assert_eq!(
            query_one::<i64>(&path, "SELECT acked_at FROM notices WHERE id = 4").unwrap(),
            Some(7)
        );
    }
}
