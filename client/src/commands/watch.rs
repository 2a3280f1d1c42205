//! `watch`: becomes one of the account's devices, then prints its announcements as they
//! arrive until Ctrl-C, staying attached through server restarts (a task of its own says it
//! is still there, see `attach`). It ends with exit code 1 and a sentence when the account is
//! deregistered or newer devices take its place; on Ctrl-C it gives its place back (DETACH).

use super::{attach, Done};
use crate::render::Out;
use anyhow::Result;
use auction_client::{Client, ClientError, Update};
use auction_protocol::udp::ServerBody;
use std::sync::Arc;
use std::time::Duration;

/// Attaches, then prints announcements until Ctrl-C or a permanent end.
pub async fn run(client: Arc<Client>, out: Out) -> Result<Done> {
    // Listening for Ctrl-C before saying it watches: from then on Ctrl-C detaches rather
    // than kills.
    let mut ctrl_c = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let pending = client.attach().await?;
    out.watching(&client.name()?, pending);
    let contact = attach::Contact::default();
    let mut attached = tokio::spawn(attach::keep_attached(client.clone(), out, contact.clone()));
    let ended = loop {
        tokio::select! {
            update = client.next_update() => match update {
                // Newer devices took this one's place: told at once (the next `keep` would
                // say so too).
                Some(Update::Announcement(ServerBody::Evicted { reason, message, .. })) => {
                    break Some(ClientError::Denied { reason, message });
                }
                Some(update) => {
                    if contact.regained() {
                        out.contact_back(None);
                    }
                    out.update(&update)
                }
                None => break None,
            },
            // The account is gone, or this device lost its place.
            end = &mut attached => {
                break Some(end.map_err(|e| anyhow::anyhow!("{e}"))?);
            }
            _ = ctrl_c.recv() => {
                attached.abort();
                // Its place goes back to the account's other devices.
                let _ = tokio::time::timeout(Duration::from_secs(2), client.detach()).await;
                return Ok(Done::Ok);
            }
        }
    };
    attached.abort();
    match ended {
        Some(e) => Err(e.into()),
        None => Ok(Done::Ok),
    }
}
