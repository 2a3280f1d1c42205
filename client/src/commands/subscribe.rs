//! `subscribe ITEM`: follows an item's bids over UDP without joining its channel; `watch` (or
//! the shell) then prints its new highest bids and its result.

use super::Done;
use crate::render::Out;
use anyhow::Result;
use auction_client::Client;

pub async fn run(client: &Client, item: u64, out: Out) -> Result<Done> {
    out.subscribed(&client.subscribe(item).await?);
    Ok(Done::Ok)
}
