//! `offer DESCRIPTION --min AMOUNT [--duration DUR]`: puts an item up for auction and says
//! where its bidding channel is and when bidding closes.

use super::Done;
use crate::cli::OfferArgs;
use crate::render::Out;
use anyhow::Result;
use auction_client::Client;

pub async fn run(client: &Client, args: OfferArgs, out: Out) -> Result<Done> {
    let duration_secs = args.duration.map(|d| d.as_secs());
    let o = client
        .offer(&args.description, args.min, duration_secs)
        .await?;
    out.offered(o.item, &o.channel, o.ends_at);
    Ok(Done::Ok)
}
