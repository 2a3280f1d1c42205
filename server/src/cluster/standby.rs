//! A node waiting to lead. It owns its UDP socket until it leads: every datagram is answered
//! with `redirect` to the leader's address (never more than `COOKIE_AMPLIFICATION` times the
//! datagram, as for a `cookie` answer, so a spoofed flood gains little by reflection), or not
//! at all while no leader is known (a failover in progress: the client's retransmission finds
//! the new leader). The per-source rate limit the leader's gate applies (`--udp-rate`,
//! `--udp-burst`) applies here too: past it, datagrams are dropped unanswered. It waits for no
//! storage: it writes nothing but its attempts at the lease.

use anyhow::Result;
use auction_protocol::limits::COOKIE_AMPLIFICATION;
use auction_protocol::udp::{self, ServerBody};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio_postgres::Client;

use crate::rules::ratelimit::{SourceLimiter, Verdict};
use crate::store::postgres::connect_as;
use crate::store::postgres::nodes::{self, Membership};

/// Returns once `me` holds the leader lease (good for `lease`), answering datagrams on `udp`
/// with the leader's address meanwhile; tries for the lease every `every`, on `client` (made
/// again from `url` after an error: the database may restart, or end this connection).
pub async fn until_leader(
    url: &str,
    client: &mut Client,
    me: &Membership,
    udp: &UdpSocket,
    every: Duration,
    lease: Duration,
    limiter: &mut SourceLimiter,
) -> Result<()> {
    let mut buf = vec![0u8; auction_protocol::limits::MAX_DATAGRAM + 1];
    let mut waiting_logged = false;
    let mut leader: Option<String> = None;
    loop {
        match attempt(client, me, lease).await {
            Ok(Attempt::Leading) => return Ok(()),
            Ok(Attempt::Led(by)) => leader = by,
            Err(e) => {
                // Redirect to the last leader known meanwhile; connect again for the next try.
                tracing::warn!(error = %format!("{e:#}"), "standing by without the database; trying again");
                if client.is_closed() {
                    if let Ok(fresh) =
                        connect_as(url, &format!("auction-server {} leader", me.name)).await
                    {
                        *client = fresh;
                    }
                }
            }
        }
        if !waiting_logged {
            let udp = udp.local_addr()?;
            let leader = leader.as_deref().unwrap_or("none yet");
            tracing::info!(%udp, leader, "auction-server standing by");
            waiting_logged = true;
        }
        let until = tokio::time::Instant::now() + every;
        loop {
            tokio::select! {
                got = udp.recv_from(&mut buf) => {
                    let Ok((n, src)) = got else { continue };
                    if !matches!(limiter.check(src.ip(), std::time::Instant::now()), Verdict::Pass) {
                        continue;
                    }
                    if let Some(reply) = leader.as_deref().and_then(|l| redirect(&buf[..n], l)) {
                        let _ = udp.send_to(&reply, src).await;
                    }
                }
                _ = tokio::time::sleep_until(until) => break,
            }
        }
    }
}

enum Attempt {
    Leading,
    /// Another node leads: its UDP address, if a live one holds the lease.
    Led(Option<String>),
}

/// One try for the lease.
async fn attempt(client: &mut Client, me: &Membership, lease: Duration) -> Result<Attempt> {
    let took = nodes::lead(client, me, lease).await?;
    for fenced in &took.fenced {
        tracing::warn!(node = %fenced, "fenced a node whose heartbeat had lapsed");
    }
    if took.leading {
        return Ok(Attempt::Leading);
    }
    Ok(Attempt::Led(
        nodes::leader(client).await?.map(|(_, udp)| udp),
    ))
}

/// The `redirect` answering `datagram` (a request, or anything with a request number), unless
/// it would amplify: never more than `COOKIE_AMPLIFICATION` times the datagram.
pub fn redirect(datagram: &[u8], leader: &str) -> Option<Vec<u8>> {
    let req = match udp::decode_request(datagram) {
        Ok(incoming) => incoming.request.req,
        Err(e) => e.req?,
    };
    let reply = udp::encode(ServerBody::Redirect {
        req,
        leader: leader.to_owned(),
    });
    (reply.len() <= datagram.len() * COOKIE_AMPLIFICATION).then_some(reply)
}

#[cfg(test)]
mod tests {
    use super::redirect;
    use auction_protocol::limits::COOKIE_AMPLIFICATION;
    use auction_protocol::udp::{self, Request, RequestBody, ServerBody};
    use auction_protocol::VERSION;

    #[test]
    fn a_request_is_redirected_with_its_number_and_never_with_gain() {
        let request = udp::encode_request(&Request {
            v: VERSION,
            req: 42,
            cookie: None,
            body: RequestBody::Status { item: 7 },
        });
        let reply = redirect(&request, "127.0.0.2:7400").unwrap();
        assert!(reply.len() <= request.len() * COOKIE_AMPLIFICATION);
        match udp::decode_server(&reply).unwrap().body {
            ServerBody::Redirect { req, leader } => {
                assert_eq!((req, leader.as_str()), (42, "127.0.0.2:7400"));
            }
            other => panic!("{other:?}"),
        }
        // A datagram too small to answer without gain, and bytes with no request number, get
        // nothing.
        assert_eq!(redirect(br#"{"v":1,"req":9}"#, "127.0.0.2:7400"), None);
        assert_eq!(redirect(b"\x00\x01", "127.0.0.2:7400"), None);
    }
}
