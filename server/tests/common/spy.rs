//! A storage that watches what the server does with it: the SQLite storage underneath, every
//! `append` call kept as it came (to check what is committed together), and `latest_bids`
//! held on demand (to fill the server's budget of history reads at a known moment).

use super::TestServer;
use auction_protocol::Cents;
use auction_server::web::BoardBid;
use auction_server::{BidHistory, StoredBid};
use auction_server::{
    CommitObserver, CommitStats, Config, Lsn, Party, Record, Server, SqliteOptions, SqliteStorage,
    Storage, TlsIdentity,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub struct Spy {
    inner: SqliteStorage,
    /// Every `append` call's records, in order.
    pub appends: Mutex<Vec<Vec<Record>>>,
    held: Mutex<bool>,
    released: Condvar,
    /// `latest_bids` calls in progress.
    reading: AtomicUsize,
}

impl Spy {
    /// From now on `latest_bids` waits until the returned guard is dropped (also when the
    /// test fails first, so no read stays blocked and the runtime can stop).
    pub fn hold(&self) -> Held<'_> {
        *self.held.lock().unwrap() = true;
        Held(self)
    }

    /// How many `latest_bids` calls are in progress (held ones included).
    pub fn reading(&self) -> usize {
        self.reading.load(Ordering::SeqCst)
    }
}

/// Holds `latest_bids` while it lives.
pub struct Held<'a>(&'a Spy);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        *self.0.held.lock().unwrap() = false;
        self.0.released.notify_all();
    }
}

impl Storage for Spy {
    fn append(&self, records: Vec<Record>) -> Lsn {
        self.appends.lock().unwrap().push(records.clone());
        self.inner.append(records)
    }
    fn appended(&self) -> Lsn {
        self.inner.appended()
    }
    fn durable(&self) -> watch::Receiver<Lsn> {
        self.inner.durable()
    }
    fn failed(&self) -> CancellationToken {
        self.inner.failed()
    }
    fn failure(&self) -> Option<String> {
        self.inner.failure()
    }
    fn stats(&self) -> CommitStats {
        self.inner.stats()
    }
    fn best_bids(&self, item: u64) -> anyhow::Result<Vec<(Party, Cents)>> {
        self.inner.best_bids(item)
    }
    fn history(&self, item: u64, limit: u64) -> anyhow::Result<Vec<BoardBid>> {
        self.inner.history(item, limit)
    }
    fn latest_bids(&self, item: u64, limit: u64) -> anyhow::Result<BidHistory> {
        self.reading.fetch_add(1, Ordering::SeqCst);
        let mut held = self.held.lock().unwrap();
        while *held {
            held = self.released.wait(held).unwrap();
        }
        drop(held);
        let read = self.inner.latest_bids(item, limit);
        self.reading.fetch_sub(1, Ordering::SeqCst);
        read
    }
    fn item_bids(&self, item: u64) -> anyhow::Result<Vec<StoredBid>> {
        self.inner.item_bids(item)
    }
    fn observe_commits(&self, observer: CommitObserver) {
        self.inner.observe_commits(observer)
    }
    fn close(&self) {
        self.inner.close()
    }
}

/// A server on a fresh database whose storage is a [`Spy`] (it is not restarted).
pub async fn start_spied(config: Config) -> (TestServer, Arc<Spy>) {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = dir.path().join("certs");
    let tls = TlsIdentity::dev(&certs_dir).unwrap();
    let db = dir.path().join("auction.db");
    let (inner, snapshot) = SqliteStorage::open(&db, SqliteOptions::default()).unwrap();
    let spy = Arc::new(Spy {
        inner,
        appends: Mutex::new(Vec::new()),
        held: Mutex::new(false),
        released: Condvar::new(),
        reading: AtomicUsize::new(0),
    });
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let storage: Arc<dyn Storage> = spy.clone();
    let server = Server::start(udp, tls, config.clone(), storage, snapshot, None)
        .await
        .unwrap();
    let t = TestServer {
        server,
        ca: certs_dir.join("ca.pem"),
        db,
        dir,
        config,
    };
    (t, spy)
}
