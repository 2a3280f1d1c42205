//! `shell`: reads commands line by line and runs each like the command line does, while a
//! task of its own prints the account's announcements as they arrive and another keeps the
//! account attached. A bid made here keeps following its item in a task too. A line that
//! fails is reported and the shell carries on; end of input, `quit` or `exit` ends it.

use super::{attach, execute, Done};
use crate::cli::ShellLine;
use crate::render::{self, Out};
use anyhow::Result;
use auction_client::{Client, ClientError};
use clap::Parser;
use std::sync::Arc;
use tokio::io::AsyncBufReadExt;

/// Runs the shell until end of input, `quit` or `exit`.
pub async fn run(client: Arc<Client>, out: Out) -> Result<Done> {
    out.shell_banner();
    let reattach = client
        .name()
        .is_ok()
        .then(|| tokio::spawn(attach::announce_moved(client.clone(), out)));
    let announcements = {
        let client = client.clone();
        tokio::spawn(async move {
            while let Some(update) = client.next_update().await {
                out.update(&update);
            }
        })
    };
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        out.shell_prompt();
        let Some(line) = lines.next_line().await? else {
            break;
        };
        let words = match shell_words::split(&line) {
            Ok(w) if w.is_empty() => continue,
            Ok(w) => w,
            Err(e) => {
                out.error("usage", &format!("cannot read that line: {e}"));
                continue;
            }
        };
        match words[0].as_str() {
            "quit" | "exit" => break,
            "help" => {
                out.shell_help();
                continue;
            }
            _ => {}
        }
        let parsed = match ShellLine::try_parse_from(&words) {
            Ok(p) => p,
            Err(e) => {
                out.shell_usage(&e);
                continue;
            }
        };
        if let Err(e) = execute(&client, parsed.command, out, true).await {
            out.error("error", &render::error_message(&e));
        }
    }
    announcements.abort();
    if let Some(reattach) = reattach {
        reattach.abort();
    }
    Ok(Done::Ok)
}

/// `watch` or `shell` typed in the shell: the shell already does what they do.
pub fn nested() -> Result<Done> {
    anyhow::bail!(ClientError::Local(
        "the shell already prints announcements as they arrive".into()
    ))
}
