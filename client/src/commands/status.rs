//! `status ITEM`: shows one item, open or closed.

use super::Done;
use crate::render::Out;
use anyhow::Result;
use auction_client::Client;

pub async fn run(client: &Client, item: u64, out: Out) -> Result<Done> {
    out.status(&client.status(item).await?);
    Ok(Done::Ok)
}
