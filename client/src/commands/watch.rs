//! `watch`: attaches, then prints the account's announcements as they arrive until Ctrl-C,
//! staying attached through server restarts (a task of its own re-attaches, see `attach`),
//! and ends with an error when the account logs in from another address.

use super::{attach, Done};
use crate::render::Out;
use anyhow::Result;
use auction_client::Client;
use std::sync::Arc;

/// Attaches, then prints announcements, staying attached through server restarts.
pub async fn run(client: Arc<Client>, out: Out) -> Result<Done> {
    let pending = client.attach().await?;
    out.watching(&client.name()?, pending);
    let mut reattach = tokio::spawn(attach::keep_attached(client.clone(), out));
    loop {
        tokio::select! {
            update = client.next_update() => match update {
                Some(update) => out.update(&update),
                None => break,
            },
            // The account logged in elsewhere: this watch no longer gets anything.
            moved = &mut reattach => {
                let e = moved.map_err(|e| anyhow::anyhow!("{e}"))?;
                return Err(e.into());
            }
        }
    }
    reattach.abort();
    Ok(Done::Ok)
}
