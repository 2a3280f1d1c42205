//! The server as a real process (`auction-server`), for tests that kill it, time its start or
//! read its memory: started on a database in a folder, its log kept for the test to read.

use super::within;
use auction_client::Client;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A client with its home in `dir/homes/NAME`, registered as `name` on the server at `udp`.
pub async fn client(dir: &Path, udp: SocketAddr, name: &str) -> Client {
    let c = Client::new(
        udp,
        &dir.join("homes").join(name),
        &dir.join("certs/ca.pem"),
    )
    .await
    .unwrap();
    c.register(name).await.unwrap();
    c
}

/// A running `auction-server` process and what it has logged.
pub struct Proc {
    pub child: Child,
    pub udp: SocketAddr,
    log: Arc<Mutex<String>>,
}

/// The command of a server on `db` in `dir`. Unless `extra` sets the increments, bids go up a
/// cent at a time, as with the library's test `Config`: these tests bid by the cent (the
/// default band table has its own tests: `terms.rs`, and `main.rs` for the flags).
pub fn server_command(dir: &Path, db: &Path, udp: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_auction-server"));
    if !extra
        .iter()
        .any(|a| *a == "--increments" || *a == "--min-increment")
    {
        c.args(["--min-increment", "0.01"]);
    }
    c.arg("--udp")
        .arg(udp)
        .arg("--db")
        .arg(db)
        .arg("--cert")
        .arg(dir.join("certs/server.pem"))
        .arg("--key")
        .arg(dir.join("certs/server.key"))
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Starts the server and waits until it listens.
pub async fn spawn_server(dir: &Path, udp: &str, extra: &[&str]) -> Proc {
    spawn_server_on(dir, &dir.join("auction.db"), udp, extra).await
}

/// Starts the server on the database `db` and waits until it listens.
pub async fn spawn_server_on(dir: &Path, db: &Path, udp: &str, extra: &[&str]) -> Proc {
    spawn(server_command(dir, db, udp, extra)).await
}

/// Starts `command` (a [`server_command`], perhaps wrapped) and waits until the server listens
/// (or, a node of a cluster, stands by).
pub async fn spawn(mut command: Command) -> Proc {
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = Arc::new(Mutex::new(String::new()));
    let addr = within(20, "the server to listen", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            log.lock().unwrap().push_str(&format!("{line}\n"));
            // A standby node of a cluster answers on its UDP address too (with redirects).
            let listening = line
                .split("auction-server listening udp=")
                .nth(1)
                .or_else(|| line.split("auction-server standing by udp=").nth(1));
            if let Some(rest) = listening {
                let addr = rest.split_whitespace().next().unwrap();
                return addr.parse::<SocketAddr>().unwrap();
            }
        }
        panic!("the server exited:\n{}", log.lock().unwrap());
    })
    .await;
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push_str(&format!("{line}\n"));
            if std::env::var_os("SHOW_SERVER_LOG").is_some() {
                eprintln!("server: {line}");
            }
        }
    });
    Proc {
        child,
        udp: addr,
        log,
    }
}

impl Proc {
    pub async fn kill_9(mut self) {
        self.child.start_kill().unwrap();
        let status = within(10, "the killed server to exit", self.child.wait())
            .await
            .unwrap();
        assert!(!status.success());
    }

    /// SIGTERM, then the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        within(20, "the server to stop after SIGTERM", self.child.wait())
            .await
            .unwrap()
    }

    /// Where the live board is served, as logged at start.
    pub fn web(&self) -> SocketAddr {
        let log = self.log();
        let rest = log
            .split("live board at http://")
            .nth(1)
            .unwrap_or_else(|| panic!("no live board in the log:\n{log}"));
        rest.split('/').next().unwrap().parse().unwrap()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The process's peak resident memory so far (`VmHWM` in `/proc/PID/status`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.status_kib("VmHWM:") * 1024
    }

    /// A figure of `/proc/PID/status` given in kB.
    fn status_kib(&self, field: &str) -> u64 {
        let pid = self.child.id().expect("the server is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
    }

    /// The process's resident memory now (`VmRSS`), in bytes.
    pub fn rss(&self) -> u64 {
        self.status_kib("VmRSS:") * 1024
    }
}
