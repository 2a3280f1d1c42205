//! `deregister`: deletes this client's account (the server refuses while it has open items or
//! leads an auction) and forgets the name kept in the home directory.

use super::Done;
use crate::render::Out;
use anyhow::Result;
use auction_client::Client;

pub async fn run(client: &Client, out: Out) -> Result<Done> {
    let name = client.name()?;
    client.deregister().await?;
    out.deregistered(&name);
    Ok(Done::Ok)
}
