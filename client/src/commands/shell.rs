//! `shell`: reads commands line by line (with the line editor: editing, history, completion)
//! and runs each like the command line does, while a task of its own prints the account's
//! announcements above the prompt as they arrive and another keeps this device attached. A
//! bid made here keeps following its item in a task too. A line that fails is reported and the
//! shell carries on; `quit`, `exit`, Ctrl-D or the end of input end it, giving this device's
//! place back to the account (DETACH).

use super::{attach, execute, Done};
use crate::cli::{ShellLine, NOT_IN_SHELL};
use crate::line_editor::{KnownItems, LineEditor, Read};
use crate::render::{self, Out};
use anyhow::Result;
use auction_client::{Client, ClientError, Update};
use auction_protocol::udp::ServerBody;
use clap::Parser;
use std::path::Path;
use std::sync::Arc;

/// The history file in the client's home.
const HISTORY_FILE: &str = "shell-history";

/// Runs the shell until `quit`, `exit`, Ctrl-D or the end of input.
pub async fn run(client: Arc<Client>, out: Out, home: &Path) -> Result<Done> {
    let items = KnownItems::default();
    let editor = LineEditor::start(Some(home.join(HISTORY_FILE)), items.clone())?;
    let account = client.name().ok();
    out.shell_banner(account.as_deref(), editor.interactive);
    let contact = attach::Contact::default();
    let attached = account
        .is_some()
        .then(|| tokio::spawn(attach::stay_attached(client.clone(), out, contact.clone())));
    let announcements = tokio::spawn(print_updates(client.clone(), out, items.clone(), contact));
    // The open items, for completion (NEW-ITEM and ITEM-CLOSED keep the list up to date).
    {
        let (client, items) = (client.clone(), items.clone());
        tokio::spawn(async move {
            if let Ok(open) = client.list().await {
                items.replace(open.iter().map(|i| i.item));
            }
        });
    }
    let prompt = if out.json { "" } else { "auction> " };
    loop {
        let line = match editor.read(prompt, true).await {
            Read::Line(line) => line,
            Read::Interrupted => continue,
            Read::Eof => break,
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
                out.shell_help(words.get(1).map(String::as_str));
                continue;
            }
            "--help" | "-h" => {
                out.shell_help(None);
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
        if let Err(e) = execute(&client, parsed.command, out, Some(&editor)).await {
            out.error("error", &render::error_message(&e));
        }
    }
    announcements.abort();
    if let Some(attached) = attached {
        attached.abort();
    }
    if client.name().is_ok() {
        // Its place goes back to the account's other devices; a server that is gone or an
        // account that is gone has nothing to give back.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), client.detach()).await;
    }
    drop(editor);
    Ok(Done::Ok)
}

/// Prints every update, and keeps the item numbers for completion.
async fn print_updates(client: Arc<Client>, out: Out, items: KnownItems, contact: attach::Contact) {
    while let Some(update) = client.next_update().await {
        if contact.regained() {
            out.contact_back(None);
        }
        match &update {
            Update::Announcement(ServerBody::NewItem { item, .. }) => items.add(item.item),
            Update::Announcement(ServerBody::ItemClosed { item, .. }) => items.remove(*item),
            Update::Resynced { open, .. } => items.replace(open.iter().map(|i| i.item)),
            _ => {}
        }
        out.update(&update);
    }
}

/// `watch` or `shell` typed in the shell: the shell already does what they do.
pub fn nested() -> Result<Done> {
    let which = NOT_IN_SHELL.join(" or ");
    anyhow::bail!(ClientError::Local(format!(
        "no need for {which} here: the shell already prints announcements as they arrive"
    )))
}
