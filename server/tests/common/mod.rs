//! Starts a real server on 127.0.0.1 port 0 with freshly generated certificates, and makes
//! registered clients for it.
#![allow(dead_code)]

pub mod cluster;
pub mod http;
pub mod postgres;
pub mod process;
pub mod raw;
pub mod relay;
pub mod spy;

use auction_client::{Client, ItemChannel};
use auction_protocol::channel::ChannelBody;
use auction_protocol::udp::ServerBody;
use auction_server::{Config, Server, SqliteOptions, SqliteStorage, TlsIdentity};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

pub struct TestServer {
    pub server: Server,
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub db: PathBuf,
    pub config: Config,
}

/// A server on a fresh database in a temporary folder.
pub async fn start(config: Config) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    start_in(dir, config, "127.0.0.1:0".parse().unwrap()).await
}

/// A server in `dir`: certificates made on first use, database `dir/auction.db`.
async fn start_in(dir: tempfile::TempDir, config: Config, udp: SocketAddr) -> TestServer {
    let certs_dir = dir.path().join("certs");
    let tls = if certs_dir.join("server.pem").exists() {
        TlsIdentity::load(&certs_dir.join("server.pem"), &certs_dir.join("server.key")).unwrap()
    } else {
        TlsIdentity::dev(&certs_dir).unwrap()
    };
    let db = dir.path().join("auction.db");
    let (storage, snapshot) = SqliteStorage::open(&db, SqliteOptions::default()).unwrap();
    let udp = UdpSocket::bind(udp).await.unwrap();
    let server = Server::start(udp, tls, config.clone(), Arc::new(storage), snapshot, None)
        .await
        .unwrap();
    TestServer {
        server,
        ca: certs_dir.join("ca.pem"),
        db,
        dir,
        config,
    }
}

impl TestServer {
    /// Stops the server gracefully and starts it again on the same UDP port and database.
    pub async fn restart(self) -> TestServer {
        self.restart_after(Duration::ZERO).await
    }

    /// Stops the server gracefully, waits `down`, and starts it again on the same UDP port and
    /// database.
    pub async fn restart_after(self, down: Duration) -> TestServer {
        let udp = self.server.udp_addr();
        self.server.shutdown().await.unwrap();
        tokio::time::sleep(down).await;
        start_in(self.dir, self.config, udp).await
    }

    /// Stops the server gracefully and starts it again on the same UDP port and database with
    /// another configuration.
    pub async fn restart_with(self, config: Config) -> TestServer {
        let udp = self.server.udp_addr();
        self.server.shutdown().await.unwrap();
        start_in(self.dir, config, udp).await
    }

    /// One number from the database (read-only, beside the running server).
    pub fn query(&self, sql: &str) -> i64 {
        auction_server::query_one::<i64>(&self.db, sql)
            .unwrap()
            .unwrap_or_else(|| panic!("no row for {sql}"))
    }
}

/// Auctions short enough for tests, with the soft close out of the way unless a test wants it.
pub fn quick_config() -> Config {
    Config {
        snipe_window: Duration::ZERO,
        notice_retry: Duration::from_millis(100),
        // Every test's people register from 127.0.0.1: one address plays many people.
        accounts_per_hour: 10_000,
        ..Config::default()
    }
}

impl TestServer {
    /// A client with its own home directory (identity created there), not registered.
    pub async fn client(&self, home: &str) -> Client {
        let home = self.dir.path().join("homes").join(home);
        Client::new(self.server.udp_addr(), &home, &self.ca)
            .await
            .unwrap()
    }

    /// A client registered as `name`.
    pub async fn registered(&self, name: &str) -> Client {
        let c = self.client(name).await;
        c.register(name).await.unwrap();
        c
    }

    /// Clients registered under each of `names`, in order.
    pub async fn people<const N: usize>(&self, names: [&str; N]) -> [Client; N] {
        let mut clients = Vec::with_capacity(N);
        for name in names {
            clients.push(self.registered(name).await);
        }
        clients
            .try_into()
            .unwrap_or_else(|_| unreachable!("one client per name"))
    }
}

/// Whether any number anywhere in `v` equals `n` (a private figure must appear nowhere).
pub fn mentions(v: &serde_json::Value, n: u64) -> bool {
    match v {
        serde_json::Value::Number(x) => x.as_u64() == Some(n),
        serde_json::Value::Array(a) => a.iter().any(|v| mentions(v, n)),
        serde_json::Value::Object(o) => o.values().any(|v| mentions(v, n)),
        _ => false,
    }
}

/// Reads channel messages until `pick` accepts one; the ones it passes over are skipped.
pub async fn next_matching<T>(
    ch: &mut ItemChannel,
    what: &str,
    mut pick: impl FnMut(&ChannelBody) -> Option<T>,
) -> T {
    loop {
        match within(10, what, ch.next_event()).await {
            Some(Ok(msg)) => {
                if let Some(found) = pick(&msg) {
                    return found;
                }
            }
            other => panic!("the channel ended while waiting for {what}: {other:?}"),
        }
    }
}

/// Reads announcements until `pick` accepts one; the ones it passes over (NEW-ITEM, say) are
/// skipped.
pub async fn announcement<T>(
    client: &Client,
    what: &str,
    mut pick: impl FnMut(&ServerBody) -> Option<T>,
) -> T {
    loop {
        match within(10, what, client.next_announcement()).await {
            Some(msg) => {
                if let Some(found) = pick(&msg) {
                    return found;
                }
            }
            None => panic!("announcements ended while waiting for {what}"),
        }
    }
}

/// Waits at most `secs` for `fut`, failing the test with `what` otherwise.
pub async fn within<T>(secs: u64, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
