//! The commands, one file each, and the dispatch from a parsed [`Command`] to its file: one
//! line per command. Each command runs through the client library, hands its result to
//! [`Out`] and says how it ended ([`Done`]); `main` turns that, or the error, into the exit
//! code. `watch` and `shell` run until stopped; every other command is short, and the shell
//! runs those same short commands through [`execute`].

mod attach;
mod bid;
mod deregister;
mod history;
mod items;
mod negotiate;
mod offer;
mod operator;
mod register;
mod settle;
mod shell;
mod status;
mod subscribe;
mod unsubscribe;
mod watch;

use crate::cli::{Cli, Command};
use crate::line_editor::LineEditor;
use crate::render::Out;
use anyhow::Result;
use auction_client::Client;
use std::sync::Arc;

/// How a command ended, for the exit code.
pub enum Done {
    Ok,
    Refused,
}

/// Connects, takes the account's announcements when run from a new address (most commands),
/// and runs the command.
pub async fn run(cli: Cli, out: Out) -> Result<Done> {
    let client = Arc::new(connect(&cli).await?);
    if !matches!(
        cli.command,
        Command::Register { .. }
            | Command::Deregister
            | Command::Watch
            | Command::Shell
            | Command::Whoami { .. }
    ) {
        attach::roam(&client, out).await?;
    }
    match cli.command {
        Command::Watch => watch::run(client, out).await,
        Command::Shell => shell::run(client, out, &cli.home).await,
        command => execute(&client, command, out, None).await,
    }
}

/// A client of the server named on the command line, with the identity in its home.
async fn connect(cli: &Cli) -> Result<Client> {
    let servers = auction_client::resolve_all(&cli.server).await?;
    let identity = auction_client::identity::Identity::load_or_create(&cli.home)?;
    Ok(Client::of_any(servers, identity, &cli.ca, cli.bind).await?)
}

/// Runs one short command. In the shell (`shell`, its line editor), a bid keeps following its
/// item in the background and `settle` asks for what is missing through the editor.
async fn execute(
    client: &Arc<Client>,
    command: Command,
    out: Out,
    shell: Option<&LineEditor>,
) -> Result<Done> {
    let in_shell = shell.is_some();
    match command {
        Command::Register { name } => register::run(client, &name, out, in_shell).await,
        Command::Deregister => deregister::run(client, out).await,
        Command::Offer(args) => offer::run(client, args, out).await,
        Command::Items => items::run(client, out).await,
        Command::Status { item } => status::run(client, item, out).await,
        Command::History { item } => history::run(client, item, out).await,
        Command::Subscribe { item } => subscribe::run(client, item, out).await,
        Command::Unsubscribe { item } => unsubscribe::run(client, item, out).await,
        Command::Negotiate { item, accept, .. } => negotiate::run(client, item, accept, out).await,
        Command::Settle(args) => settle::run(client, args, out, shell).await,
        Command::Bid(args) => bid::run(client, args, out, in_shell).await,
        Command::CancelItem { item, note } => operator::cancel(client, item, &note, out).await,
        Command::RemoveBid { item, bid, note } => {
            operator::remove_bid(client, item, bid, &note, out).await
        }
        Command::Whoami { key } => operator::whoami(client, key, out),
        // Long-running modes are started by `run`; inside the shell they make no sense.
        Command::Watch | Command::Shell => shell::nested(),
    }
}
