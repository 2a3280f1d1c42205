//! `bid ITEM AMOUNT` / `bid ITEM --max AMOUNT`: opens the item's channel as a reconnecting
//! session, bids once (an amount, or a proxy bid's private maximum) and says how it went.
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
        follow,
    } = args;
    let (offer, asked) = match (amount, max) {
        (_, Some(max)) => (Offer::Max(max), max),
        (Some(amount), None) => (Offer::Amount(amount), amount),
        (None, None) => anyhow::bail!(ClientError::Local(
            "give an amount, or --max AMOUNT for a proxy bid".into()
        )),
    };
    let mut session = ItemSession::open(client.clone(), item, Reconnect::default()).await?;
    // The id stays the same if the bid has to be sent again after a reconnection, so
    // the server never counts it twice.
    let result = session
        .bid(offer, bid_id(), |e| out.session_event(e))
        .await?;
    out.bid(item, &result, asked);
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
