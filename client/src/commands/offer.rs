//! `offer DESCRIPTION --min AMOUNT [--duration DUR] [--reserve AMOUNT] [--buy-now AMOUNT]`:
//! puts an item up for auction and says where its bidding channel is and when bidding closes.

use super::Done;
use crate::cli::OfferArgs;
use crate::render::Out;
use anyhow::Result;
use auction_client::{Client, Terms};

pub async fn run(client: &Client, args: OfferArgs, out: Out) -> Result<Done> {
    let duration_secs = args.duration.map(|d| d.as_secs());
    let o = client
        .offer_with(
            &args.description,
            args.min,
            duration_secs,
            Terms {
                reserve: args.reserve,
                buy_now: args.buy_now,
            },
        )
        .await?;
    out.offered(o.item, &o.channel, o.ends_at);
    Ok(Done::Ok)
}
