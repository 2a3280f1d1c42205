//! What item channels and the settlement desk share about a new connection: admission within
//! the handshake budgets, the TLS handshake with its own timeout, the account its client
//! certificate names and its place in the joined-connection budgets (`budget.rs`), and how a
//! connection is refused over TLS with a reason once its handshake is done.

use auction_protocol::channel::{self, ChannelBody};
use auction_protocol::Reason;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::budget::{Handshaking, Joined, Over};
use crate::accounts::AccountHandle;
use crate::context::ServerContext;
use crate::tls::key_from_cert;

/// The TLS handshake of a channel or settlement connection, bounded by the handshake timeout
/// and given up at shutdown; then the live account whose key signed the client certificate,
/// and the connection's place in the joined-connection budgets (`budget.rs`). The handshake
/// slot is given back as soon as the handshake ends.
///
/// `None` when the handshake failed, or when the connection was refused after it: no such
/// account (deregistered since the verifier accepted the key, or a resumed TLS session, which
/// skips the certificate check) is told `account-gone`; a server or account at its budget is
/// told `server-full` or `too-many-connections`. Then the connection is closed.
pub(crate) async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Handshaking,
    ctx: &ServerContext,
) -> Option<(ServerTls, Arc<AccountHandle>, Joined)> {
    let tls = tls_accept(tcp, peer, ctx).await;
    drop(slot);
    let mut tls = tls?;
    let key = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| key_from_cert(cert));
    let mut account = key.and_then(|key| ctx.keys.lookup(&key));
    // Several nodes: a key this node has not seen yet may be a new account's.
    if let (None, Some(key), Some(lookup)) = (&account, key, &ctx.key_lookup) {
        account = lookup.find(&ctx.keys, key).await;
    }
    let (reason, message) = match account {
        Some(account) => match ctx.admission.join(&account) {
            Ok(joined) => return Some((tls, account, joined)),
            Err(over) => {
                ctx.metrics.refused(over.label());
                let limits = ctx.admission.limits();
                match over {
                    Over::ConnectionsPerAccount => (
                        Reason::TooManyConnections,
                        format!(
                            "'{}' already has {} connections open, the most one account may hold; close one first",
                            account.name, limits.connections_per_account
                        ),
                    ),
                    _ => {
                        tracing::info!(%peer, limit = limits.connections, "server full: refusing a connection");
                        (
                            Reason::ServerFull,
                            format!(
                                "the server is at its limit of {} connections; try again later",
                                limits.connections
                            ),
                        )
                    }
                }
            }
        },
        None => (
            Reason::AccountGone,
            "this key belongs to no live account: it was never registered, or deregistered"
                .to_owned(),
        ),
    };
    say_and_close(&mut tls, reason, message, ctx.config.write_timeout).await;
    None
}

/// The TLS handshake alone, bounded by the handshake timeout and given up at shutdown: the one
/// way every listener takes a client through it.
async fn tls_accept(tcp: TcpStream, peer: SocketAddr, ctx: &ServerContext) -> Option<ServerTls> {
    let handshake = timeout(ctx.config.handshake_timeout, ctx.acceptor.accept(tcp));
    let done = tokio::select! {
        done = handshake => done,
        _ = ctx.shutdown.cancelled() => return None,
    };
    match done {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// A server-side TLS connection.
pub(crate) type ServerTls = tokio_rustls::server::TlsStream<TcpStream>;

/// Writes one `error` line (`req` null) and closes the TLS session, each step bounded by the
/// write timeout: how a connection is refused once its handshake is done.
pub(crate) async fn say_and_close<W: AsyncWrite + Unpin>(
    writer: &mut W,
    reason: Reason,
    message: String,
    write_timeout: Duration,
) {
    let line = channel::encode_line(ChannelBody::Error {
        req: None,
        reason,
        message,
    });
    let _ = timeout(write_timeout, writer.write_all(line.as_bytes())).await;
    let _ = timeout(write_timeout, writer.shutdown()).await;
}

/// Admits a connection a listener accepted (see `listener.rs`) within the handshake budgets:
/// its socket options set, and the handshake slot it holds until its handshake ends. Over a
/// budget it is closed at once, before any TLS work, and `None` comes back: a TLS refusal
/// would cost the server the very handshake the budget is there to bound.
pub(crate) fn admit(
    (tcp, peer): (TcpStream, SocketAddr),
    ctx: &ServerContext,
) -> Option<(TcpStream, SocketAddr, Handshaking)> {
    match ctx.admission.start_handshake(peer.ip()) {
        Ok(slot) => {
            let _ = tcp.set_nodelay(true);
            if let Some(size) = ctx.config.channel_send_buffer {
                let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(size);
            }
            Some((tcp, peer, slot))
        }
        Err(over) => {
            ctx.metrics.refused(over.label());
            tracing::debug!(%peer, budget = over.label(), "handshake budget spent; closing a new connection");
            None
        }
    }
}
