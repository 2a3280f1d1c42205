//! What item channels and the settlement desk share about a new connection: the TLS handshake
//! with its own timeout, the account its client certificate names, and how a connection is
//! refused (over TLS, with a reason) when the server is at its connection limit or the account
//! is gone.

use auction_protocol::channel::{self, ChannelBody};
use auction_protocol::Reason;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::timeout;

use crate::accounts::AccountHandle;
use crate::context::ServerContext;
use crate::tls::key_from_cert;

/// A client over the server's connection limit: finish the handshake (the client can only
/// read a reason over TLS) and say `server-full`, if few refusals are in progress; otherwise
/// just close the TCP connection. Either way it holds no connection permit.
fn refuse_full(tcp: TcpStream, peer: SocketAddr, ctx: &Arc<ServerContext>) {
    ctx.metrics.refused("server-full");
    let Ok(permit) = ctx.refusals.clone().try_acquire_owned() else {
        tracing::debug!(%peer, "server full; closing without a handshake");
        return;
    };
    tracing::info!(%peer, limit = ctx.config.max_connections, "server full: refusing a connection");
    let ctx2 = ctx.clone();
    ctx.tasks.spawn(async move {
        let _permit = permit;
        let Some(mut tls) = tls_accept(tcp, peer, &ctx2).await else {
            return;
        };
        let message = format!(
            "the server is at its limit of {} connections; try again later",
            ctx2.config.max_connections
        );
        say_and_close(
            &mut tls,
            Reason::ServerFull,
            message,
            ctx2.config.write_timeout,
        )
        .await;
    });
}

/// The TLS handshake of a channel or settlement connection, bounded by the handshake timeout
/// and given up at shutdown, and the live account whose key signed the client certificate.
/// `None` when the handshake failed, or when there is no such account (deregistered since the
/// verifier accepted the key, or a resumed TLS session, which skips the certificate check):
/// that client is told `account-gone` and the connection closed.
pub(crate) async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: &ServerContext,
) -> Option<(ServerTls, Arc<AccountHandle>)> {
    let mut tls = tls_accept(tcp, peer, ctx).await?;
    let account = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| key_from_cert(cert))
        .and_then(|key| ctx.keys.lookup(&key));
    match account {
        Some(account) => Some((tls, account)),
        None => {
            let message = "this account has been deregistered".to_owned();
            say_and_close(
                &mut tls,
                Reason::AccountGone,
                message,
                ctx.config.write_timeout,
            )
            .await;
            None
        }
    }
}

/// The TLS handshake alone, bounded by the handshake timeout and given up at shutdown: the one
/// way every listener (and a `server-full` refusal) takes a client through it.
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

/// Admits a connection a listener accepted (see `listener.rs`), within the server-wide
/// connection budget: its socket options set, and the permit it holds for as long as it is
/// open. Over the budget it is refused (see [`refuse_full`]) and `None` comes back.
pub(crate) fn admit(
    (tcp, peer): (TcpStream, SocketAddr),
    ctx: &Arc<ServerContext>,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let _ = tcp.set_nodelay(true);
    if let Some(size) = ctx.config.channel_send_buffer {
        let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(size);
    }
    match ctx.connections.clone().try_acquire_owned() {
        Ok(permit) => Some((tcp, peer, permit)),
        Err(_) => {
            refuse_full(tcp, peer, ctx);
            None
        }
    }
}
