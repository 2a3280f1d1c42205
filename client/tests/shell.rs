//! The shell under a pseudo-terminal, as a person uses it: Up recalls the previous command
//! (and the history is kept in the home), a live HIGHEST printed while a line is half typed
//! leaves that line intact, and `quit` ends it.

mod common;

use common::start;
use rexpect::session::PtySession;
use std::time::Duration;

/// `auction-client shell` for `who` in a pseudo-terminal.
fn shell(env: &common::Env, who: &str) -> PtySession {
    let mut cmd = env.std_cmd(who, &["shell"]);
    cmd.env("TERM", "xterm");
    rexpect::session::spawn_command(cmd, Some(30_000)).expect("the shell starts")
}

/// Runs `auction-client` to the end without a terminal: its exit code.
fn run(env: &common::Env, who: &str, args: &[&str]) -> i32 {
    env.std_cmd(who, args)
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread")]
async fn up_recalls_a_command_and_a_live_bid_leaves_a_half_typed_line_intact() {
    let env = start().await;
    env.register(&["alice", "bob", "carol"]).await;
    let offer = env
        .json(
            "alice",
            &["offer", "Globe", "--min", "10", "--duration", "60s"],
        )
        .await;
    let item = offer["item"].as_u64().unwrap().to_string();
    let history = env.home("bob").join("shell-history");
    let env = std::sync::Arc::new(env);
    let e = env.clone();
    tokio::task::spawn_blocking(move || {
        let env = &*e;
        let mut p = shell(env, "bob");
        p.exp_string("auction-client shell as bob").unwrap();
        p.exp_string("auction> ").unwrap();

        // A command, then Up and Enter: the same command again.
        p.send_line(&format!("status {item}")).unwrap();
        p.exp_string("no bids yet (minimum 10.00)").unwrap();
        p.exp_string("auction> ").unwrap();
        p.send("\x1b[A").unwrap();
        p.send("\r").unwrap();
        p.flush().unwrap();
        p.exp_string("no bids yet (minimum 10.00)").unwrap();
        p.exp_string("auction> ").unwrap();

        // A bid: the shell follows the item from then on.
        p.send_line(&format!("bid {item} 10")).unwrap();
        p.exp_string("accepted").unwrap();
        p.exp_string("auction> ").unwrap();
        // Half a command typed, then another bidder's bid arrives and is printed...
        p.send("stat").unwrap();
        p.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(run(env, "carol", &["bid", &item, "11"]), 0);
        p.exp_string("new highest bid 11.00 by carol").unwrap();
        // ...and the line goes on where it was: the rest typed makes `status ITEM`.
        p.send(&format!("us {item}\r")).unwrap();
        p.flush().unwrap();
        p.exp_string("the highest bid is 11.00 by carol").unwrap();
        p.exp_string("auction> ").unwrap();

        p.send_line("quit").unwrap();
        p.exp_eof().unwrap();
    })
    .await
    .unwrap();
    // The commands are in the history file of bob's home, for the next shell.
    let kept = std::fs::read_to_string(&history).unwrap();
    assert!(kept.contains("bid "), "{kept}");
    assert!(kept.contains("status "), "{kept}");
}
