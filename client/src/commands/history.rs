//! `history ITEM`: the item's accepted bids in order (the latest 100, saying when it has older
//! ones), open or closed: number, time, bidder, amount, as every platform shows them, with the
//! operator's note on a removed bid or a cancelled item. A proxy bid outbid at once has no
//! amount: it was placed at its maximum, which stays private.

use super::Done;
use crate::render::Out;
use anyhow::Result;
use auction_client::Client;

pub async fn run(client: &Client, item: u64, out: Out) -> Result<Done> {
    out.history(item, &client.history(item).await?);
    Ok(Done::Ok)
}
