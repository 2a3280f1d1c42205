//! `unsubscribe ITEM`: stops following an item.

use super::Done;
use crate::render::Out;
use anyhow::Result;
use auction_client::Client;

pub async fn run(client: &Client, item: u64, out: Out) -> Result<Done> {
    client.unsubscribe(item).await?;
    out.unsubscribed(item);
    Ok(Done::Ok)
}
