//! `negotiate ITEM --accept AMOUNT | --refuse`: the seller's answer to the server's request to
//! negotiate, sent when an item has had no bid by half its time.

use super::Done;
use crate::render::Out;
use anyhow::Result;
use auction_client::Client;
use auction_protocol::Cents;

/// `accept` is the new, lower minimum; `None` keeps the minimum as it is.
pub async fn run(client: &Client, item: u64, accept: Option<Cents>, out: Out) -> Result<Done> {
    out.negotiated(item, client.negotiate(item, accept).await?);
    Ok(Done::Ok)
}
