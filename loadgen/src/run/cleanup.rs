//! After the run (and the verification): remove every account the run registered, so that a
//! server is left as loadgen found it, apart from the closed items' history (`--keep` leaves
//! the accounts, to look at them).
//!
//! The server refuses to deregister a seller while one of its items is open
//! (`has-open-items`) and a bidder while it leads an open item (`leads-auction`), so this waits
//! for the run's items to end first and tries a refused account again until they have closed.
//! Deregistration drops the account's pending notices on the server; the announcement readers
//! run until this is done, so the notices that came in meanwhile are acknowledged anyway.
//!
//! Runs on the task that called `run`, after the bidder tasks ended; deregistrations go up to
//! `SETUP_CONCURRENCY` at a time. Failures are counted in the run's errors and told in a note.

use super::setup::SETUP_CONCURRENCY;
use super::{error_kind, unix_ms, Shared};
use auction_client::{Client, ClientError};
use auction_protocol::Reason;
use futures_util::stream::{self, StreamExt};
use std::sync::Arc;
use std::time::Duration;

/// How long after the last end loadgen knows of it keeps trying a refused deregistration (an
/// item closes a moment after its end; a bid loadgen did not see may have moved it).
const CLOSE_MARGIN: Duration = Duration::from_secs(30);
/// Between two tries of a refused deregistration.
const RETRY: Duration = Duration::from_millis(250);

/// Deregisters `clients`, the run's accounts, once the run's items have ended; returns a note
/// for the report saying what was removed and what is left.
pub(super) async fn remove_accounts(
    clients: &[Arc<Client>],
    shared: &Shared,
    progress: bool,
) -> String {
    let prefix = &shared.prefix;
    let last_end = shared.last_end();
    let wait = Duration::from_millis(last_end.saturating_sub(unix_ms()));
    if progress && !wait.is_zero() {
        eprintln!(
            "  waiting {:.0} s for the run's items to end, then removing its {} accounts ({prefix}-*; --keep leaves them)",
            wait.as_secs_f64().ceil(),
            clients.len()
        );
    }
    tokio::time::sleep(wait).await;
    let give_up = last_end.max(unix_ms()) + CLOSE_MARGIN.as_millis() as u64;
    // Owned clients, not references: `run`'s future stays `Send` for callers that spawn it.
    let results: Vec<Result<(), (String, ClientError)>> = stream::iter(clients.to_vec())
        .map(|c| async move { deregister(&c, give_up).await })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    let left: Vec<(String, ClientError)> = results.into_iter().filter_map(Result::err).collect();
    for (name, e) in &left {
        tracing::warn!(account = %name, error = %e, "could not remove the account");
        shared
            .stats
            .errors
            .add(format!("deregister-{}", error_kind(e)));
    }
    match left.first() {
        None => format!(
            "removed the run's {} accounts ({prefix}-*) after the run",
            clients.len()
        ),
        Some((name, e)) => format!(
            "{} of the run's {} accounts ({prefix}-*) are left on the server; {name}: {e}",
            left.len(),
            clients.len()
        ),
    }
}

/// Deregisters one account, trying again while an item keeps it (until `give_up`, Unix ms).
async fn deregister(client: &Client, give_up: u64) -> Result<(), (String, ClientError)> {
    let name = client.name().unwrap_or_default();
    loop {
        match client.deregister().await {
            Ok(()) => return Ok(()),
            Err(ClientError::Denied {
                reason: Reason::HasOpenItems | Reason::LeadsAuction,
                ..
            }) if unix_ms() < give_up => tokio::time::sleep(RETRY).await,
            Err(e) => return Err((name, e)),
        }
    }
}
