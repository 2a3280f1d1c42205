//! `bid ITEM AMOUNT` / `bid ITEM --max AMOUNT` / `bid ITEM --buy-now`: opens the item's channel
//! as a reconnecting session, bids once (an amount, a proxy bid's private maximum, or the
//! buy-it-now price the channel's state shows) and says how it went.
//! With `--follow`, and always in the shell, it then keeps printing the item's events until
//! the auction has a result; in the shell that runs in its own task, which owns the session,
//! while the shell takes more commands.

use super::Done;
use crate::cli::BidArgs;
use crate::render::Out;
use anyhow::Result;
use auction_client::{BidResult, Client, ClientError, ItemSession, Offer, Reconnect, SessionEvent};
use auction_protocol::channel::ChannelBody;
use auction_protocol::Cents;
use std::sync::Arc;

pub async fn run(client: &Arc<Client>, args: BidArgs, out: Out, in_shell: bool) -> Result<Done> {
    let BidArgs {
        item,
        amount,
        max,
        buy_now,
        follow,
    } = args;
    let mut session = ItemSession::open(client.clone(), item, Reconnect::default()).await?;
    let (offer, asked) = match (amount, max, buy_now) {
        (_, _, true) => {
            // The price the item shows now: the server refuses any other.
            let Some(price) = session.item().and_then(|v| v.buy_now) else {
                session.close().await;
                // What the server would answer, said without asking it.
                anyhow::bail!(ClientError::Denied {
                    reason: auction_protocol::Reason::BuyNowUnavailable,
                    message: format!(
                        "item {item} cannot be bought now: it has no buy-it-now price, or it had a bid (or met its reserve)"
                    ),
                });
            };
            (Offer::BuyNow(price), price)
        }
        (_, Some(max), false) => (Offer::Max(max), max),
        (Some(amount), None, false) => (Offer::Amount(amount), amount),
        (None, None, false) => anyhow::bail!(ClientError::Local(
            "give an amount, --max AMOUNT for a proxy bid, or --buy-now".into()
        )),
    };
    // The id stays the same if the bid has to be sent again after a reconnection, so
    // the server never counts it twice.
    let result = session
        .bid(offer, bid_id(), |e| out.session_event(e))
        .await?;
    out.bid(item, &result, asked, buy_now);
    let accepted = matches!(result, BidResult::Accepted { .. });
    // The broadcast of this very bid says again what the answer just said.
    let said = match (&result, client.name()) {
        (BidResult::Accepted { amount, .. }, Ok(me)) => Some((*amount, me)),
        _ => None,
    };
    if in_shell {
        // Updates print as they arrive while the shell takes more commands.
        tokio::spawn(async move { follow_session(&mut session, out, said).await });
    } else if follow {
        follow_session(&mut session, out, said).await;
    } else {
        session.close().await;
    }
    Ok(if accepted { Done::Ok } else { Done::Refused })
}

/// A fresh id for a bid, so a resent bid is never counted twice.
fn bid_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Prints the item's events until its auction has a result, reconnecting through server
/// restarts. `said`: this client's own accepted bid (amount, name), whose broadcast is not
/// printed a second time.
async fn follow_session(session: &mut ItemSession, out: Out, mut said: Option<(Cents, String)>) {
    while let Some(event) = session.next_event().await {
        match event {
            Ok(SessionEvent::Channel(ChannelBody::Highest { amount, bidder, .. }))
                if said
                    .take()
                    .is_some_and(|(a, me)| a == amount && me == bidder) => {}
            Ok(event) => out.session_event(&event),
            Err(e) => {
                out.gave_up_following(&e);
                break;
            }
        }
    }
}
