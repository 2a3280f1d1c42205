//! `items`: lists the open items.

use super::Done;
use crate::render::Out;
use anyhow::Result;
use auction_client::Client;

pub async fn run(client: &Client, out: Out) -> Result<Done> {
    out.items(&client.list().await?);
    Ok(Done::Ok)
}
