//! The queue in front of a backend's writer thread, shared by SQLite and PostgreSQL. Any task
//! appends (through [`Storage`](crate::store::Storage)) under a short `std::sync::Mutex` that
//! `append` holds to push and number its records, never across anything slow; the writer
//! thread takes everything queued ([`Shared::next_batch`]), commits it in one transaction and
//! only then reports it ([`Shared::committed`]), which advances `durable`: that is what every
//! held answer waits for.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::{CommitObserver, CommitStats, Lsn, Record};

/// A batch the writer commits together: each `append`'s number and records.
pub type Batch = Vec<(Lsn, Vec<Record>)>;

struct Queue {
    last: Lsn,
    pending: VecDeque<(Lsn, Vec<Record>)>,
    closing: bool,
    /// The writer is waiting on `wake` (not committing): only then does `append` need to wake
    /// it, which saves a futex system call per change while the writer is busy.
    idle: bool,
}

/// What a storage (any task, through `Storage`) and its writer thread share.
pub struct Shared {
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
    pub fn new() -> Shared {
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
    pub fn append(&self, records: Vec<Record>) -> Lsn {
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

    pub fn appended(&self) -> Lsn {
        self.appended.load(Ordering::Acquire)
    }

    pub fn durable(&self) -> watch::Receiver<Lsn> {
        self.durable.subscribe()
    }

    pub fn failed(&self) -> CancellationToken {
        self.failed.clone()
    }

    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn observe(&self, observer: CommitObserver) {
        let _ = self.observer.set(observer);
    }

    pub fn stats(&self) -> CommitStats {
        CommitStats {
            commits: self.commits.load(Ordering::Relaxed),
            appends: self.appends.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
        }
    }

    /// Tells the writer to commit what is queued and return.
    pub fn close(&self) {
        self.queue().closing = true;
        self.wake.notify_one();
    }

    /// Waits for something to commit: everything queued (group commit) or the oldest append
    /// alone. `None` once [`Shared::close`] was called and nothing is left.
    pub fn next_batch(&self, group_commit: bool) -> Option<Batch> {
        let mut q = self.queue();
        while q.pending.is_empty() {
            if q.closing {
                return None;
            }
            q.idle = true;
            q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            q.idle = false;
        }
        Some(if group_commit {
            q.pending.drain(..).collect()
        } else {
            q.pending.pop_front().into_iter().collect()
        })
    }

    /// `batch` is committed (it took `took`): it is durable now.
    pub fn committed(&self, batch: &Batch, took: Duration) {
        let Some(&(last, _)) = batch.last() else {
            return;
        };
        if let Some(observe) = self.observer.get() {
            observe(batch.len(), took);
        }
        let records: usize = batch.iter().map(|(_, r)| r.len()).sum();
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.appends
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.records.fetch_add(records as u64, Ordering::Relaxed);
        self.durable.send_replace(last);
    }

    /// A commit failed: nothing more becomes durable, and the server must stop.
    pub fn fail(&self, message: String) {
        tracing::error!(error = %message, "a commit failed; nothing more will be stored");
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
        self.failed.cancel();
    }
}
