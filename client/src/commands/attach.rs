//! Where the account's announcements go: a login from another machine for a command run
//! there, and the task that keeps `watch` and the shell one of the account's devices through
//! server restarts, until the account is gone or newer devices took this one's place. That
//! task keeps only its retry delay; the announcements themselves are read by whoever calls
//! `Client::next_update`.

use crate::render::Out;
use anyhow::Result;
use auction_client::{Client, ClientError};
use auction_protocol::udp::AttachMode;
use auction_protocol::Reason;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Whether contact with the server is lost, shared by the task that keeps this device
/// attached (which finds out) and the one printing announcements (which may hear from the
/// server again first: the first announcement after a restart says it is back).
#[derive(Clone, Default)]
pub(super) struct Contact(Arc<AtomicBool>);

impl Contact {
    fn lose(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether contact was lost until now (it is not any more).
    pub(super) fn regained(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

/// A login from another machine: a command run with an account on a machine none of whose
/// devices gets the account's announcements makes it get them too (`attach` in `roam` mode;
/// pending notices follow to the next `watch` or `shell` there). On a machine that gets them
/// already it changes nothing.
pub(super) async fn roam(client: &Client, out: Out) -> Result<()> {
    if client.identity.account_name().is_none() {
        return Ok(());
    }
    match client.attach_as(AttachMode::Roam).await {
        Ok(info) if info.moved => {
            out.logged_in(&client.name()?, info.pending, info.devices);
            Ok(())
        }
        Ok(_) => Ok(()),
        // Gone, say: the command itself will say what is wrong.
        Err(ClientError::Denied { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Keeps this client one of the account's devices: says so every 10 s (`keep` mode; the
/// server then also retries pending notices). When the server stops answering, says so, and
/// keeps trying with backoff until it is back. Returns the permanent condition that ends it:
/// the account is gone, or newer devices took this one's place.
pub(super) async fn keep_attached(client: Arc<Client>, out: Out, contact: Contact) -> ClientError {
    let mut delay = Duration::from_secs(1);
    loop {
        match client.attach_as(AttachMode::Keep).await {
            Ok(info) => {
                if contact.regained() {
                    out.contact_back(Some(info.pending));
                }
                delay = Duration::from_secs(1);
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Err(e) => {
                let e = match permanent(e) {
                    Ok(end) => return end,
                    Err(transient) => transient,
                };
                let wait = delay.mul_f64(rand::random_range(0.5..1.5));
                contact.lose();
                out.contact_lost(&e, wait);
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Whether an attach failure ends the attachment for good, and with which error: the account
/// was deregistered (by the server's word, or this home no longer names one), or this device
/// lost its place (`Ok`). Anything else (no answer, no server for now) is worth retrying
/// (`Err`, handed back).
fn permanent(e: ClientError) -> Result<ClientError, ClientError> {
    match e {
        e if e.is_permanent() => Ok(e),
        ClientError::Local(_) => Ok(ClientError::Denied {
            reason: Reason::NotRegistered,
            message: "the account of this home directory was deregistered; `register NAME` makes a new one".into(),
        }),
        e => Err(e),
    }
}

/// `keep_attached` for the shell: logs in first, and says so when this shell no longer gets
/// the announcements.
pub(super) async fn stay_attached(client: Arc<Client>, out: Out, contact: Contact) {
    // Starting is a login: this shell becomes one of the account's devices.
    if let Err(e) = client.attach().await {
        out.attach_failed(&e);
    }
    let e = keep_attached(client, out, contact).await;
    out.moved_away(&e);
}
