//! The SQLite backend: one file (bundled SQLite, nothing to install), WAL journal with
//! `synchronous=FULL`, so a commit has reached the disk when it returns.
//!
//! One writer thread owns the connection. `append` puts records on its queue; the thread takes
//! everything queued, writes it in one transaction, commits (one fsync for the whole group) and
//! advances `durable`. Opening checks the file before changing anything: a file that is not an
//! auction database, is damaged, or comes from a newer version is refused and left as it was.
//! A lock file next to the database keeps a second server off it.
//!
//! The schema, the checks on opening and the lock file are in `schema.rs`.

use anyhow::{Context, Result};
use auction_protocol::Cents;
use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};
use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::rules::auction::Outcome;
use crate::rules::settlement::Party;
use crate::store::{
    CommitObserver, CommitStats, Lsn, NoticeKind, NoticeRecord, Record, Snapshot, Storage,
};

use super::load::load;
use super::schema::{lock_file, migrate, open_checked};

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

struct Queue {
    last: Lsn,
    pending: VecDeque<(Lsn, Vec<Record>)>,
    closing: bool,
    /// The writer is waiting on `wake` (not committing): only then does `append` need to wake
    /// it, which saves a futex system call per change while the writer is busy.
    idle: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    appended: AtomicU64,
    durable: watch::Sender<Lsn>,
    failed: CancellationToken,
    failure: Mutex<Option<String>>,
    commits: AtomicU64,
    appends: AtomicU64,
    records: AtomicU64,
    observer: std::sync::OnceLock<CommitObserver>,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

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
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the folder {}", dir.display()))?;
        }
        let lock = lock_file(path)?;
        let mut conn = open_checked(path)?;
        migrate(&mut conn)
            .with_context(|| format!("cannot update the schema of {}", path.display()))?;
        // Connections still open in the log belong to a server that stopped without closing
        // them (a crash): they ended then, at the latest.
        conn.execute(
            "UPDATE channel_sessions SET disconnected_at = ?1 WHERE disconnected_at IS NULL",
            [crate::clock::unix_ms()],
        )
        .with_context(|| format!("cannot update {}", path.display()))?;
        let snapshot = load(&conn).with_context(|| format!("cannot read {}", path.display()))?;
        let last = 0;
        let shared = Arc::new(Shared {
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
            observer: std::sync::OnceLock::new(),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("storage-writer".into())
                .spawn(move || write_loop(conn, &shared, options))
                .context("cannot start the storage writer thread")?
        };
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
        let (lsn, wake) = {
            let mut q = self.shared.queue();
            q.last += 1;
            let lsn = q.last;
            q.pending.push_back((lsn, records));
            self.shared.appended.store(lsn, Ordering::Release);
            (lsn, std::mem::take(&mut q.idle))
        };
        if wake {
            self.shared.wake.notify_one();
        }
        lsn
    }

    fn appended(&self) -> Lsn {
        self.shared.appended.load(Ordering::Acquire)
    }

    fn durable(&self) -> watch::Receiver<Lsn> {
        self.shared.durable.subscribe()
    }

    fn failed(&self) -> CancellationToken {
        self.shared.failed.clone()
    }

    fn failure(&self) -> Option<String> {
        self.shared
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn observe_commits(&self, observer: CommitObserver) {
        let _ = self.shared.observer.set(observer);
    }

    fn best_bids(&self, item: u64) -> Result<Vec<(Party, Cents)>> {
        let conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let mut stmt = conn.prepare(
            "SELECT b.bidder, a.name, max(b.amount_cents) AS best, min(b.id) AS first
             FROM bids b JOIN accounts a ON a.id = b.bidder
             WHERE b.item = ?1 AND b.accepted = 1
             GROUP BY b.bidder
             ORDER BY best DESC, first ASC",
        )?;
        let rows = stmt.query_map([item], |r| {
            Ok((
                Party {
                    id: r.get(0)?,
                    name: r.get(1)?,
                },
                Cents(r.get(2)?),
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn stats(&self) -> CommitStats {
        CommitStats {
            commits: self.shared.commits.load(Ordering::Relaxed),
            appends: self.shared.appends.load(Ordering::Relaxed),
            records: self.shared.records.load(Ordering::Relaxed),
        }
    }

    fn close(&self) {
        self.shared.queue().closing = true;
        self.shared.wake.notify_one();
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

fn write(tx: &Transaction<'_>, record: &Record) -> rusqlite::Result<()> {
    match record {
        Record::AccountCreated {
            id,
            name,
            key,
            notify,
            at,
        } => {
            tx.prepare_cached(
                "INSERT INTO accounts (id, name, public_key, created_at, notify_addr)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                id,
                name,
                key.to_hex(),
                at,
                notify.map(|n| n.to_string())
            ])?;
        }
        Record::AccountAttached { id, notify } => {
            tx.prepare_cached("UPDATE accounts SET notify_addr = ?2 WHERE id = ?1")?
                .execute(params![id, notify.to_string()])?;
        }
        Record::AccountRemoved { id, at } => {
            tx.prepare_cached("UPDATE accounts SET removed_at = ?2 WHERE id = ?1")?
                .execute(params![id, at])?;
            tx.prepare_cached("DELETE FROM subscriptions WHERE account = ?1")?
                .execute(params![id])?;
        }
        Record::Replied {
            account,
            req,
            digest,
            answer,
            floor,
        } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO replies (account, req, digest, answer)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![account, req, digest, answer])?;
            if *floor > 0 {
                tx.prepare_cached("DELETE FROM replies WHERE account = ?1 AND req <= ?2")?
                    .execute(params![account, floor])?;
                tx.prepare_cached(
                    "UPDATE accounts SET replay_floor = max(replay_floor, ?2) WHERE id = ?1",
                )?
                .execute(params![account, floor])?;
            }
        }
        Record::ItemOffered {
            item,
            seller,
            description,
            min,
            ends_at,
            port,
            at,
            catalog_id,
        } => {
            tx.prepare_cached(
                "INSERT INTO items (id, seller, description, min_cents, ends_at, port, offered_at,
                                    catalog_id, negotiate_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                item,
                seller,
                description,
                min.0,
                ends_at,
                port,
                at,
                catalog_id,
                crate::rules::auction::negotiate_at(*at, *ends_at)
            ])?;
        }
        Record::ItemResumed {
            item,
            ends_at,
            port,
        } => {
            tx.prepare_cached("UPDATE items SET ends_at = ?2, port = ?3 WHERE id = ?1")?
                .execute(params![item, ends_at, port])?;
        }
        Record::Bid {
            item,
            bidder,
            amount,
            bid_id,
            outcome,
            lead,
            at,
        } => {
            let (accepted, reason, message, ends_at, leading, max) = match outcome {
                Outcome::Accepted {
                    ends_at,
                    leading,
                    max,
                    ..
                } => (true, None, None, Some(*ends_at), Some(*leading), *max),
                Outcome::Rejected { reason, message } => (
                    false,
                    Some(reason.code()),
                    Some(message.as_str()),
                    None,
                    None,
                    None,
                ),
            };
            tx.prepare_cached(
                "INSERT INTO bids (item, bidder, amount_cents, bid_id, accepted, reason, message,
                                   ends_at, leading, max_cents, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                item,
                bidder,
                amount.0,
                bid_id,
                accepted,
                reason,
                message,
                ends_at,
                leading,
                max.map(|m| m.0),
                at
            ])?;
            if let (Some((leader, price, lead_max)), Some(ends_at)) = (lead, ends_at) {
                tx.prepare_cached(
                    "UPDATE items SET highest_cents = ?2, highest_bidder = ?3, ends_at = ?4,
                                      lead_max_cents = ?5
                     WHERE id = ?1",
                )?
                .execute(params![
                    item,
                    price.0,
                    leader,
                    ends_at,
                    lead_max.map(|m| m.0)
                ])?;
            }
        }
        Record::ItemClosed {
            item,
            winner,
            notices,
            at,
        } => {
            tx.prepare_cached(
                "UPDATE items SET closed_at = ?2, winner = ?3, price_cents = ?4 WHERE id = ?1",
            )?
            .execute(params![
                item,
                at,
                winner.map(|(w, _)| w),
                winner.map(|(_, p)| p.0)
            ])?;
            tx.prepare_cached("DELETE FROM subscriptions WHERE item = ?1")?
                .execute(params![item])?;
            // An unanswered negotiation request no longer matters.
            ack_notice(tx, NoticeKind::NegotiateReq.id(*item), *at)?;
            for n in notices {
                insert_notice(tx, n, *at)?;
            }
        }
        Record::NegotiationAsked { item, notice, at } => {
            tx.prepare_cached("UPDATE items SET negotiation = 'asked' WHERE id = ?1")?
                .execute(params![item])?;
            insert_notice(tx, notice, *at)?;
        }
        Record::Negotiated { item, min, at } => {
            tx.prepare_cached(
                "UPDATE items SET negotiation = ?2, min_cents = coalesce(?3, min_cents)
                 WHERE id = ?1",
            )?
            .execute(params![
                item,
                if min.is_some() { "accepted" } else { "refused" },
                min.map(|m| m.0)
            ])?;
            ack_notice(tx, NoticeKind::NegotiateReq.id(*item), *at)?;
        }
        Record::Settlement {
            settlement: st,
            notices,
            at,
        } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO settlements
                    (item, state, buyer, amount_cents, deadline, ship_name, ship_address,
                     seller_contact, offer_to, offer_cents, passed, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                st.item,
                serde_json::to_value(st.state())
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned)),
                st.buyer.as_ref().map(|b| b.id),
                st.amount.0,
                st.deadline,
                st.shipping.as_ref().map(|s| &s.name),
                st.shipping.as_ref().map(|s| &s.address),
                st.contact,
                st.offer.as_ref().map(|(p, _)| p.id),
                st.offer.as_ref().map(|(_, a)| a.0),
                serde_json::to_string(&st.passed).unwrap_or_else(|_| "[]".into()),
                at
            ])?;
            for n in notices {
                insert_notice(tx, n, *at)?;
            }
        }
        Record::NoticeAcked { notice, at } => ack_notice(tx, *notice, *at)?,
        Record::ChannelOpened {
            session,
            item,
            account,
            peer,
            at,
        } => {
            tx.prepare_cached(
                "INSERT INTO channel_sessions (id, item, account, peer, connected_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![session, item, account, peer.to_string(), at])?;
        }
        Record::Subscribed { account, item } => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO subscriptions (account, item) VALUES (?1, ?2)",
            )?
            .execute(params![account, item])?;
        }
        Record::Unsubscribed { account, item } => {
            tx.prepare_cached("DELETE FROM subscriptions WHERE account = ?1 AND item = ?2")?
                .execute(params![account, item])?;
        }
        Record::ChannelClosed { session, at } => {
            tx.prepare_cached(
                "UPDATE channel_sessions SET disconnected_at = ?2
                 WHERE id = ?1 AND disconnected_at IS NULL",
            )?
            .execute(params![session, at])?;
        }
    }
    Ok(())
}

/// Marks a notice delivered (or no longer to be delivered): it is not loaded again.
fn ack_notice(tx: &Transaction<'_>, notice: u64, at: u64) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE notices SET acked_at = ?2 WHERE id = ?1 AND acked_at IS NULL")?
        .execute(params![notice, at])?;
    Ok(())
}

fn insert_notice(tx: &Transaction<'_>, n: &NoticeRecord, at: u64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO notices (id, account, item, kind, datagram, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![n.id, n.account, n.item, n.kind, n.datagram, at])?;
    Ok(())
}

/// Reads one value, for tests and tools that inspect a database.
pub fn query_one<T: rusqlite::types::FromSql>(path: &Path, sql: &str) -> Result<Option<T>> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(conn.query_row(sql, [], |r| r.get(0)).optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use auction_protocol::{PublicKey, Reason};

    fn record_set() -> Vec<Record> {
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
