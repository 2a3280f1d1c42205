//! Starts a real server on 127.0.0.1 port 0 with freshly generated certificates, and makes
//! registered clients for it.
#![allow(dead_code)]

use auction_client::Client;
use auction_server::{Config, MemoryStorage, Server, TlsIdentity};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

pub struct TestServer {
    pub server: Server,
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
}

pub async fn start(config: Config) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = dir.path().join("certs");
    let tls = TlsIdentity::dev(&certs_dir).unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = Server::start(udp, tls, config, Arc::new(MemoryStorage), None)
        .await
        .unwrap();
    TestServer {
        server,
        ca: certs_dir.join("ca.pem"),
        dir,
    }
}

/// Auctions short enough for tests, with the soft close out of the way unless a test wants it.
pub fn quick_config() -> Config {
    Config {
        snipe_window: Duration::ZERO,
        notice_retry: Duration::from_millis(100),
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
}

/// Waits at most `secs` for `fut`, failing the test with `what` otherwise.
pub async fn within<T>(secs: u64, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
