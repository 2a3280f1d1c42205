//! A bidder's stay on one item that outlives dropped connections and server restarts.
//!
//! [`ItemSession`] wraps an [`ItemChannel`]. When the channel breaks (the server crashed,
//! restarted, or said it is going down), the session looks the item up again over UDP (its
//! channel may have moved to another port) and reconnects, with exponential backoff and jitter,
//! telling the caller each time through [`SessionEvent`]. A bid whose answer was lost is sent
//! again with the same id, so the server answers it with its first result instead of counting
//! it twice. An auction that ended while the session was away ends the session with the item's
//! final state.

use auction_protocol::channel::ChannelBody;
use auction_protocol::{Cents, ItemState, ItemView, Reason};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use crate::channel::{BidResult, ItemChannel};
use crate::error::{ClientError, Result};
use crate::Client;

/// How hard a session tries to get back.
#[derive(Debug, Clone, Copy)]
pub struct Reconnect {
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Gives up when the item has been unreachable this long.
    pub give_up_after: Duration,
    /// A blank line goes to the server this often while the session waits for events, so
    /// the server's idle timeout (default 300 s) does not close a channel that only listens.
    pub keepalive: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(2),
            give_up_after: Duration::from_secs(300),
            keepalive: Duration::from_secs(auction_protocol::limits::KEEPALIVE_SECS),
        }
    }
}

/// What a session reports.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// A message from the item's channel.
    Channel(ChannelBody),
    /// The channel broke; the next attempt to reconnect comes after `delay`.
    Reconnecting {
        item: u64,
        attempt: u32,
        delay: Duration,
        error: String,
    },
    /// Connected again; `item` is the state the server sent.
    Reconnected { item: ItemView },
    /// The auction ended while the session was away: its final state.
    Ended { item: ItemView },
}

pub struct ItemSession {
    client: Arc<Client>,
    item: u64,
    channel: Option<ItemChannel>,
    policy: Reconnect,
    /// Set while the channel is lost: the next attempt.
    retry: Option<Retry>,
    ended: bool,
    /// When this session last sent something on the channel (a bid or a keep-alive).
    last_sent: tokio::time::Instant,
}

struct Retry {
    attempt: u32,
    /// Before the next attempt (jitter applied).
    delay: Duration,
    /// The delay before jitter, doubled each attempt.
    base: Duration,
    since: Instant,
    error: String,
}

/// What one attempt to get back found.
enum Found {
    Channel(ItemChannel),
    Ended(ItemView),
}

/// Errors after which reconnecting can help: the connection, not the request, failed.
fn is_connection_loss(e: &ClientError) -> bool {
    match e {
        // Shutting down, or at its connection limit: both pass; try again with backoff.
        ClientError::Denied { reason, .. } => {
            matches!(reason, Reason::Unavailable | Reason::ServerFull)
        }
        // A server restarting has no port open for a moment.
        ClientError::Io(_)
        | ClientError::Tls(_)
        | ClientError::Timeout { .. }
        | ClientError::NoServer { .. } => true,
        ClientError::Protocol(_) | ClientError::Local(_) => false,
    }
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.5..1.5))
}

impl ItemSession {
    /// Looks `item` up and joins its channel. A refusal or a TLS failure is reported as is;
    /// when nothing answers at the channel's address (its node died, and the item is about to
    /// move to another: several nodes), the session looks it up again as after a lost
    /// connection, within `policy`.
    pub async fn open(client: Arc<Client>, item: u64, policy: Reconnect) -> Result<ItemSession> {
        let first = client.open_item(item).await;
        let mut session = ItemSession {
            client,
            item,
            channel: None,
            policy,
            retry: None,
            ended: false,
            last_sent: tokio::time::Instant::now(),
        };
        match first {
            Ok(channel) => session.channel = Some(channel),
            Err(e @ ClientError::Io(_)) => {
                session.lost(e.to_string());
                loop {
                    match session.step().await? {
                        SessionEvent::Reconnected { .. } => break,
                        SessionEvent::Ended { item: view } => {
                            return Err(crate::no_channel(item, &view))
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => return Err(e),
        }
        Ok(session)
    }

    /// The item as its channel last described it (STATE at connect), while connected.
    pub fn item(&self) -> Option<&auction_protocol::ItemView> {
        self.channel.as_ref().map(|c| &c.item)
    }

    /// Bids `amount` with `id`. If the connection breaks before the answer, reconnects and
    /// sends the same bid with the same id until it is answered (or the session gives up);
    /// `on_event` hears about each reconnection as it happens.
    pub async fn bid(
        &mut self,
        offer: crate::Offer,
        id: String,
        mut on_event: impl FnMut(&SessionEvent),
    ) -> Result<BidResult> {
        loop {
            match self.channel.as_mut() {
                Some(channel) => {
                    self.last_sent = tokio::time::Instant::now();
                    let sent = channel.place(offer, Some(id.clone())).await;
                    match sent {
                        Ok(result) => return Ok(result),
                        Err(e) if is_connection_loss(&e) => on_event(&self.lost(e.to_string())),
                        Err(e) => return Err(e),
                    }
                }
                None => {
                    let event = self.step().await?;
                    on_event(&event);
                    if let SessionEvent::Ended { item: view } = &event {
                        // The bid may have been accepted before the connection broke, and
                        // have ended the auction (buy it now always does): the result says.
                        let placed = match offer {
                            crate::Offer::Amount(a) | crate::Offer::BuyNow(a) => Some(a),
                            crate::Offer::Max(_) => None,
                        };
                        let me = self.client.name().ok();
                        let won = placed.filter(|a| {
                            view.price == Some(*a) && view.winner.is_some() && view.winner == me
                        });
                        if let Some(amount) = won {
                            return Ok(BidResult::Accepted {
                                amount,
                                ends_at: view.ends_at,
                                leading: true,
                                max: None,
                            });
                        }
                        return Ok(BidResult::Rejected {
                            reason: Reason::AuctionOver,
                            message: "bidding on this item has ended".into(),
                            highest: None,
                            next_min: Cents(0),
                        });
                    }
                }
            }
        }
    }

    /// The next event; `None` once the auction's result has been seen (SOLD-TO, NOT-SOLD or
    /// [`SessionEvent::Ended`]), or after the session gave up (reported as `Some(Err)` first).
    pub async fn next_event(&mut self) -> Option<Result<SessionEvent>> {
        if self.ended {
            return None;
        }
        let Some(channel) = self.channel.as_mut() else {
            let event = self.step().await;
            self.ended = matches!(event, Err(_) | Ok(SessionEvent::Ended { .. }));
            return Some(event);
        };
        // Wait for the next message, sending a keep-alive line whenever the wait gets long.
        // (Counted from the last thing sent: a channel full of HIGHEST still needs them.)
        let next = loop {
            let due = self.last_sent + self.policy.keepalive;
            tokio::select! {
                next = channel.next_event() => break next,
                _ = tokio::time::sleep_until(due) => {
                    self.last_sent = tokio::time::Instant::now();
                    if let Err(e) = channel.keepalive().await {
                        break Some(Err(e));
                    }
                }
            }
        };
        let lost = match next {
            Some(Ok(ChannelBody::Error {
                req: None,
                reason: Reason::Unavailable,
                message,
            })) => message,
            Some(Ok(body)) => {
                self.ended = matches!(
                    body,
                    ChannelBody::SoldTo { .. } | ChannelBody::NotSold { .. }
                );
                return Some(Ok(SessionEvent::Channel(body)));
            }
            Some(Err(e)) => e.to_string(),
            None => "the server closed the channel".into(),
        };
        Some(Ok(self.lost(lost)))
    }

    /// The channel broke: schedule the first attempt to get back.
    fn lost(&mut self, error: String) -> SessionEvent {
        self.channel = None;
        let base = self.policy.first_delay;
        let delay = jitter(base);
        self.retry = Some(Retry {
            attempt: 1,
            delay,
            base,
            since: Instant::now(),
            error: error.clone(),
        });
        SessionEvent::Reconnecting {
            item: self.item,
            attempt: 1,
            delay,
            error,
        }
    }

    /// Waits for the scheduled attempt and makes it: `Reconnected`, `Ended`, or `Reconnecting`
    /// with the next attempt scheduled.
    async fn step(&mut self) -> Result<SessionEvent> {
        let delay = match &self.retry {
            Some(r) => r.delay,
            None => {
                // Not connected and nothing scheduled: start now.
                let event = self.lost("not connected".into());
                if let Some(r) = self.retry.as_mut() {
                    r.delay = Duration::ZERO;
                }
                return Ok(event);
            }
        };
        tokio::time::sleep(delay).await;
        let found = self.try_once().await;
        let Some(retry) = self.retry.as_mut() else {
            unreachable!("a retry is scheduled")
        };
        match found {
            Ok(Found::Channel(ch)) => {
                let item = ch.item.clone();
                self.channel = Some(ch);
                self.last_sent = tokio::time::Instant::now();
                self.retry = None;
                Ok(SessionEvent::Reconnected { item })
            }
            Ok(Found::Ended(item)) => {
                self.retry = None;
                Ok(SessionEvent::Ended { item })
            }
            Err(e) if is_connection_loss(&e) => {
                if retry.since.elapsed() > self.policy.give_up_after {
                    return Err(ClientError::Timeout {
                        server: format!("item {}'s channel ({e})", self.item),
                        tries: retry.attempt,
                    });
                }
                retry.attempt += 1;
                retry.base = (retry.base * 2).min(self.policy.max_delay);
                retry.delay = jitter(retry.base);
                retry.error = e.to_string();
                Ok(SessionEvent::Reconnecting {
                    item: self.item,
                    attempt: retry.attempt,
                    delay: retry.delay,
                    error: retry.error.clone(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Looks the item up (its channel may have moved) and joins it if it is still open.
    async fn try_once(&self) -> Result<Found> {
        let view = self.client.status(self.item).await?;
        match (&view.state, &view.channel) {
            (ItemState::Open, Some(channel)) => Ok(Found::Channel(
                self.client.open_channel_of(self.item, channel).await?,
            )),
            // Moving between nodes: its new one opens the channel in a moment.
            (ItemState::Open, None) => Err(crate::no_channel(self.item, &view)),
            _ => Ok(Found::Ended(view)),
        }
    }

    /// Closes the channel cleanly.
    pub async fn close(mut self) {
        if let Some(channel) = self.channel.take() {
            channel.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{ANSWER_TIMEOUT, CONNECT_TIMEOUT};
    use auction_protocol::limits::REJECTED_BID_ID_SECS;

    /// The server repeats a rejected bid id's first verdict for `REJECTED_BID_ID_SECS`; a
    /// session must stop resending a bid before that, every wait at its longest.
    #[test]
    fn a_bid_is_resent_only_while_the_server_remembers_its_verdict() {
        let policy = Reconnect::default();
        // Looking the item up over UDP: every send waited out, jitter at its top (+20 %).
        let udp = crate::udp::Retry::default();
        let (mut wait, mut status) = (udp.first, Duration::ZERO);
        for _ in 0..udp.tries {
            status += wait.mul_f64(1.2);
            wait = (wait * 2).min(udp.max);
        }
        // The bid's answer waited for, then reconnecting until giving up; the last attempt
        // starts just before that (its delay jittered up by half) and takes every timeout.
        let last_attempt =
            policy.max_delay.mul_f64(1.5) + status + CONNECT_TIMEOUT + ANSWER_TIMEOUT;
        let resending = ANSWER_TIMEOUT + policy.give_up_after + last_attempt;
        assert!(
            resending < Duration::from_secs(REJECTED_BID_ID_SECS),
            "the session resends a bid for up to {resending:?}"
        );
    }
}
