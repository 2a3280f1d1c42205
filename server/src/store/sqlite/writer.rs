//! The writer thread and the queue in front of it. After `open` the thread owns the database
//! connection; tasks only touch the queue, under a short `std::sync::Mutex` that `append` holds
//! to push and number its records, never across anything slow. The thread takes everything
//! queued, writes it in one transaction (`write.rs`), commits (one fsync for the whole group)
//! and only then advances `durable`: that is what every held answer waits for.

use anyhow::{Context, Result};
use rusqlite::{Connection, TransactionBehavior};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::write::write;
use super::SqliteOptions;
use crate::store::{CommitObserver, CommitStats, Lsn, Record};

struct Queue {
    last: Lsn,
    pending: VecDeque<(Lsn, Vec<Record>)>,
    closing: bool,
    /// The writer is waiting on `wake` (not committing): only then does `append` need to wake
    /// it, which saves a futex system call per change while the writer is busy.
    idle: bool,
}

/// What `SqliteStorage` (any task, through `Storage`) and the writer thread share.
pub(super) struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    appended: AtomicU64,
    durable: watch::Sender<Lsn>,
    failed: CancellationToken,
    failure: Mutex<Option<String>>,
    commits: AtomicU64,
    appends: AtomicU64,
    records: AtomicU64,
    observer: OnceLock<CommitObserver>,
}

impl Shared {
    pub(super) fn new() -> Shared {
        let last = 0;
        Shared {
            queue: Mutex::new(Queue {
                last,
                pending: VecDeque::new(),
                closing: false,
                idle: false,
            }),
            wake: Condvar::new(),
            appended: AtomicU64::new(last),
            durable: watch::channel(last).0,
            failed: CancellationToken::new(),
            failure: Mutex::new(None),
            commits: AtomicU64::new(0),
            appends: AtomicU64::new(0),
            records: AtomicU64::new(0),
            observer: OnceLock::new(),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `records` for the writer; their number.
    pub(super) fn append(&self, records: Vec<Record>) -> Lsn {
        let (lsn, wake) = {
            let mut q = self.queue();
            q.last += 1;
            let lsn = q.last;
            q.pending.push_back((lsn, records));
            self.appended.store(lsn, Ordering::Release);
            (lsn, std::mem::take(&mut q.idle))
        };
        if wake {
            self.wake.notify_one();
        }
        lsn
    }

    pub(super) fn appended(&self) -> Lsn {
        self.appended.load(Ordering::Acquire)
    }

    pub(super) fn durable(&self) -> watch::Receiver<Lsn> {
        self.durable.subscribe()
    }

    pub(super) fn failed(&self) -> CancellationToken {
        self.failed.clone()
    }

    pub(super) fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn observe(&self, observer: CommitObserver) {
        let _ = self.observer.set(observer);
    }

    pub(super) fn stats(&self) -> CommitStats {
        CommitStats {
            commits: self.commits.load(Ordering::Relaxed),
            appends: self.appends.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
        }
    }

    /// Tells the writer to commit what is queued and return.
    pub(super) fn close(&self) {
        self.queue().closing = true;
        self.wake.notify_one();
    }
}

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
    loop {
        let batch: Vec<(Lsn, Vec<Record>)> = {
            let mut q = shared.queue();
            while q.pending.is_empty() {
                if q.closing {
                    return;
                }
                q.idle = true;
                q = shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                q.idle = false;
            }
            if options.group_commit {
                q.pending.drain(..).collect()
            } else {
                q.pending.pop_front().into_iter().collect()
            }
        };
        let Some(&(last, _)) = batch.last() else {
            continue;
        };
        let started = std::time::Instant::now();
        match commit(&mut conn, &batch) {
            Ok(()) => {
                if let Some(observe) = shared.observer.get() {
                    observe(batch.len(), started.elapsed());
                }
                let records: usize = batch.iter().map(|(_, r)| r.len()).sum();
                shared.commits.fetch_add(1, Ordering::Relaxed);
                shared
                    .appends
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                shared.records.fetch_add(records as u64, Ordering::Relaxed);
                shared.durable.send_replace(last);
            }
            Err(e) => {
                let message = format!("{e:#}");
                tracing::error!(error = %message, "a commit failed; nothing more will be stored");
                *shared.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
                shared.failed.cancel();
                return;
            }
        }
    }
}

fn commit(conn: &mut Connection, batch: &[(Lsn, Vec<Record>)]) -> Result<()> {
    // IMMEDIATE: take the write lock up front, so a reader elsewhere (an operator's sqlite3
    // shell) cannot turn this into a failed lock upgrade halfway through.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for (_, records) in batch {
        for record in records {
            write(&tx, record).with_context(|| format!("writing {}", describe(record)))?;
        }
    }
    tx.commit().context("commit")?;
    Ok(())
}

fn describe(record: &Record) -> &'static str {
    match record {
        Record::AccountCreated { .. } => "a new account",
        Record::AccountAttached { .. } => "an account's address",
        Record::AccountRemoved { .. } => "a deregistration",
        Record::Replied { .. } => "a reply",
        Record::ItemOffered { .. } => "an offer",
        Record::ItemResumed { .. } => "a resumed item",
        Record::Bid { .. } => "a bid",
        Record::ItemClosed { .. } => "an auction result",
        Record::NoticeAcked { .. } => "an acknowledgement",
        Record::ChannelOpened { .. } | Record::ChannelClosed { .. } => "the connection log",
        Record::Subscribed { .. } | Record::Unsubscribed { .. } => "a subscription",
        Record::NegotiationAsked { .. } | Record::Negotiated { .. } => "a negotiation",
        Record::Settlement { .. } => "a settlement",
    }
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
                    notify: format!("127.0.0.1:{}", 6000 + i).parse().unwrap(),
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
