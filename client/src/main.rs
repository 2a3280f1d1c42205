//! `auction-client`: the command line for people and scripts. Parses arguments, runs one
//! command (or the interactive shell) through the client library, renders the result and
//! exits with 0 (done), 1 (refused by the server), 2 (usage) or 3 (network or TLS failure).
//! The commands are in `commands/`, their grammar in `cli.rs`, and everything printed in
//! `render.rs`; the exit codes are decided here, in one place.

mod cli;
mod commands;
#[macro_use]
mod render;
mod line_editor;

use auction_client::ClientError;
use clap::Parser;
use cli::Cli;
use commands::Done;
use render::Out;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let out = Out { json: cli.json };
    let code = match commands::run(cli, out).await {
        Ok(Done::Ok) => 0,
        Ok(Done::Refused) => 1,
        Err(e) => {
            let (code, reason) = match e.downcast_ref::<ClientError>() {
                Some(ClientError::Denied { reason, .. }) => (1, reason.code()),
                Some(ClientError::Local(_)) => (2, "usage".into()),
                Some(_) => (3, "network".into()),
                None => (3, "local".into()),
            };
            out.error(&reason, &render::error_message(&e));
            code
        }
    };
    std::process::exit(code);
}
