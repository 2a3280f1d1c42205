//! What the client's tests share: a real server on port 0 (SQLite in a temporary directory,
//! dev certificates made at start) and the `auction-client` binary run against it, each
//! person with a home of their own.
#![allow(dead_code)]

use auction_server::{Config, Server, SqliteOptions, SqliteStorage, TlsIdentity};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UdpSocket;
use tokio::process::Command;

pub struct Env {
    pub server: Server,
    pub dir: tempfile::TempDir,
    pub config: Config,
}

pub async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        snipe_window: Duration::ZERO,
        notice_retry: Duration::from_millis(100),
        recovery_grace: Duration::from_secs(1),
        ..Config::default()
    };
    start_in(dir, config, "127.0.0.1:0").await
}

/// A server whose operator is the account registered from the home `operator` (not
/// registered yet), and that home's public key as `whoami --key` prints it.
pub async fn start_with_operator() -> (Env, String) {
    let mut env = start().await;
    let (code, key, stderr) = env.run("operator", &["whoami", "--key"]).await;
    assert_eq!(code, 0, "{stderr}");
    let key = key.trim().to_owned();
    env.config.operator_key = auction_protocol::PublicKey::from_hex(&key);
    assert!(env.config.operator_key.is_some(), "not a key: {key}");
    (env.restart_after(Duration::ZERO).await, key)
}

pub async fn start_in(dir: tempfile::TempDir, config: Config, udp: &str) -> Env {
    let certs = dir.path().join("certs");
    let tls = if certs.join("server.pem").exists() {
        TlsIdentity::load(&certs.join("server.pem"), &certs.join("server.key")).unwrap()
    } else {
        TlsIdentity::dev(&certs).unwrap()
    };
    let udp = UdpSocket::bind(udp).await.unwrap();
    let (storage, snapshot) =
        SqliteStorage::open(&dir.path().join("auction.db"), SqliteOptions::default()).unwrap();
    let server = Server::start(udp, tls, config.clone(), Arc::new(storage), snapshot, None)
        .await
        .unwrap();
    Env {
        server,
        dir,
        config,
    }
}

impl Env {
    /// Stops the server gracefully, waits `down`, and starts it again on the same port and
    /// database.
    pub async fn restart_after(self, down: Duration) -> Env {
        let udp = self.server.udp_addr().to_string();
        self.server.shutdown().await.unwrap();
        tokio::time::sleep(down).await;
        start_in(self.dir, self.config, &udp).await
    }

    pub fn cmd(&self, who: &str, args: &[&str]) -> Command {
        self.cmd_to(&self.server.udp_addr().to_string(), who, args)
    }

    pub fn cmd_to(&self, server: &str, who: &str, args: &[&str]) -> Command {
        let mut c = Command::from(self.std_cmd_to(server, who, args));
        c.stdin(Stdio::null()).kill_on_drop(true);
        c
    }

    /// `auction-client` for `who` as a blocking process (a pseudo-terminal takes one).
    pub fn std_cmd(&self, who: &str, args: &[&str]) -> std::process::Command {
        self.std_cmd_to(&self.server.udp_addr().to_string(), who, args)
    }

    fn std_cmd_to(&self, server: &str, who: &str, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_auction-client"));
        c.arg("--server")
            .arg(server)
            .arg("--ca")
            .arg(self.dir.path().join("certs/ca.pem"))
            .arg("--home")
            .arg(self.home(who))
            .args(args);
        c
    }

    pub fn home(&self, who: &str) -> PathBuf {
        self.dir.path().join("homes").join(who)
    }

    /// Starts a long-running command with its stdout read line by line.
    pub fn spawn_lines(
        &self,
        who: &str,
        args: &[&str],
    ) -> (
        tokio::process::Child,
        tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    ) {
        let mut child = self.cmd(who, args).stdout(Stdio::piped()).spawn().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        (child, lines)
    }

    /// Runs to completion: (exit code, stdout, stderr).
    pub async fn run(&self, who: &str, args: &[&str]) -> (i32, String, String) {
        let out = tokio::time::timeout(Duration::from_secs(20), self.cmd(who, args).output())
            .await
            .expect("the client finished")
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Registers each name from its own home.
    pub async fn register(&self, names: &[&str]) {
        for who in names {
            assert_eq!(
                self.run(who, &["register", who]).await.0,
                0,
                "register {who}"
            );
        }
    }

    pub async fn json(&self, who: &str, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = self.run(who, &all).await;
        assert_eq!(code, 0, "{args:?}: {stderr}");
        serde_json::from_str(stdout.lines().next().unwrap_or(""))
            .unwrap_or_else(|e| panic!("{stdout}: {e}"))
    }
}

/// Reads JSON lines from `lines` until one has `"type": kind`; returns it and everything read.
pub async fn until_type(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    kind: &str,
    seen: &mut Vec<Value>,
) -> Value {
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            seen.push(v.clone());
            if v["type"] == kind {
                return v;
            }
        }
        panic!("output ended before a '{kind}' line: {seen:?}")
    })
    .await
    .unwrap_or_else(|_| panic!("no '{kind}' line within 30 s: {seen:?}"))
}
