//! The operator's commands (`cancel-item`, `remove-bid`: refused unless this client's key is
//! the server's `--operator-key`) and `whoami`, which shows the key to give it.

use super::Done;
use crate::render::Out;
use anyhow::Result;
use auction_client::Client;

/// `cancel-item ITEM --note TEXT`.
pub async fn cancel(client: &Client, item: u64, note: &str, out: Out) -> Result<Done> {
    client.cancel_item(item, note).await?;
    out.cancelled(item, note);
    Ok(Done::Ok)
}

/// `remove-bid ITEM BID --note TEXT`.
pub async fn remove_bid(
    client: &Client,
    item: u64,
    bid: u64,
    note: &str,
    out: Out,
) -> Result<Done> {
    let lead = client.remove_bid(item, bid, note).await?;
    out.bid_removed(item, bid, lead.as_ref());
    Ok(Done::Ok)
}

/// `whoami [--key]`: answered from the client's home, without asking the server.
pub fn whoami(client: &Client, key_only: bool, out: Out) -> Result<Done> {
    let (key, name) = client.whoami();
    out.whoami(name.as_deref(), &key.to_hex(), key_only);
    Ok(Done::Ok)
}
