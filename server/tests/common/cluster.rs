//! Nodes of a cluster as real processes on one PostgreSQL: each on its own loopback address,
//! all with one certificate naming every address, and clients that know every node.

use super::process::{server_command, spawn, Proc};
use auction_client::{Client, Identity};
use std::net::SocketAddr;
use std::path::Path;

/// A CA and one server certificate valid for each of `ips`, in `dir/certs`.
pub fn certificates_for(dir: &Path, ips: &[&str]) {
    let mut args = vec!["gen-certs".to_owned()];
    for ip in ips {
        args.extend(["--san".to_owned(), (*ip).to_owned()]);
    }
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_auction-server"))
        .args(&args)
        .arg("--out")
        .arg(dir.join("certs"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
}

/// `auction-server` on the database at `url` as node `node` on a free port of `ip`, its files
/// in `dir`, with a 1 s recovery grace and no soft close unless `extra` says otherwise.
pub async fn node_on(dir: &Path, url: &str, node: &str, ip: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "--node",
        node,
        "--recovery-grace",
        "1s",
        "--snipe-window",
        "0s",
    ];
    args.extend_from_slice(extra);
    let udp = format!("{ip}:0");
    spawn(server_command(dir, Path::new(url), &udp, &args)).await
}

/// Three nodes on `url`, n1 to n3 on 127.0.0.1 to 127.0.0.3 (certificates made for them), started
/// in that order (so n1 leads), each with `extra`.
pub async fn three_nodes(dir: &Path, url: &str, extra: &[&str]) -> [Proc; 3] {
    certificates_for(dir, &["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
    [
        node_on(dir, url, "n1", "127.0.0.1", extra).await,
        node_on(dir, url, "n2", "127.0.0.2", extra).await,
        node_on(dir, url, "n3", "127.0.0.3", extra).await,
    ]
}

/// A client of the cluster whose nodes are `nodes`, its home in `dir/homes/NAME`, not
/// registered.
pub async fn cluster_client(dir: &Path, nodes: &[SocketAddr], name: &str) -> Client {
    let identity = Identity::load_or_create(&dir.join("homes").join(name)).unwrap();
    Client::of_any(nodes.to_vec(), identity, &dir.join("certs/ca.pem"), None)
        .await
        .unwrap()
}

/// The JSON of `auction-server status --json` on `url`.
pub fn status(url: &str) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auction-server"))
        .args(["status", "--json", "--db", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
