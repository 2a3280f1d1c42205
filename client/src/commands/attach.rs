//! Where the account's announcements go: a roaming login for a command run from a new
//! address, and the task that keeps `watch` and the shell attached through server restarts
//! until the account logs in somewhere else. That task keeps only its retry delay; the
//! announcements themselves are read by whoever calls `Client::next_update`.

use crate::render::Out;
use anyhow::Result;
use auction_client::{Client, ClientError};
use auction_protocol::udp::AttachMode;
use auction_protocol::Reason;
use std::sync::Arc;
use std::time::Duration;

/// Roaming login: a command run with an account on a machine whose IP does not get the
/// account's announcements takes them (`attach` in `roam` mode; pending notices follow to the
/// next `watch` or `shell` here). From the IP that has them it changes nothing.
pub(super) async fn roam(client: &Client, out: Out) -> Result<()> {
    if client.identity.account_name().is_none() {
        return Ok(());
    }
    match client.attach_as(AttachMode::Roam).await {
        Ok((pending, true)) => {
            out.logged_in(&client.name()?, pending);
            Ok(())
        }
        Ok((_, false)) => Ok(()),
        // Gone, say: the command itself will say what is wrong.
        Err(ClientError::Denied { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Keeps the server sending this account's announcements here: re-attaches every 10 s in
/// `keep` mode (the server then also retries pending notices). When the server stops
/// answering, says so, and keeps trying with backoff until it is back. Returns when the
/// account has logged in from another address (`moved`): the announcements went there.
pub(super) async fn keep_attached(client: Arc<Client>, out: Out) -> ClientError {
    let mut lost_since: Option<std::time::Instant> = None;
    let mut delay = Duration::from_secs(1);
    loop {
        match client.attach_as(AttachMode::Keep).await {
            Ok((pending, _)) => {
                if lost_since.take().is_some() {
                    out.contact_back(pending);
                }
                delay = Duration::from_secs(1);
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Err(
                e @ ClientError::Denied {
                    reason: Reason::Moved,
                    ..
                },
            ) => return e,
            Err(e) => {
                let wait = delay.mul_f64(rand::random_range(0.5..1.5));
                if lost_since.is_none() {
                    lost_since = Some(std::time::Instant::now());
                }
                out.contact_lost(&e, wait);
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// `keep_attached` for the shell: says so when the account logged in elsewhere.
pub(super) async fn announce_moved(client: Arc<Client>, out: Out) {
    // Starting is a login: announcements come here, wherever they went before.
    if let Err(e) = client.attach().await {
        out.attach_failed(&e);
    }
    let e = keep_attached(client, out).await;
    out.moved_away(&e);
}
