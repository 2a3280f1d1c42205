//! One party's settlement connection: the handshake (its own timeout), then lines in and out
//! through the desk, like an item channel.

use auction_protocol::channel::LineError;
use auction_protocol::limits::MAX_LINE;
use auction_protocol::settle::{self, SettleBody};
use auction_protocol::Reason;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use super::cmd::DeskCmd;
use super::QUEUE;
use crate::context::ServerContext;

/// One party's connection: the handshake (its own timeout), then lines in and out.
pub(super) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    conn: u64,
    ctx: Arc<ServerContext>,
    desk: mpsc::Sender<DeskCmd>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let Some((tls, account)) = crate::net::accept::handshake(tcp, peer, &ctx).await else {
        return;
    };
    let (reader, mut writer) = tokio::io::split(tls);
    let Some(account) = account else {
        let line = settle::encode_line(SettleBody::Error {
            req: None,
            reason: Reason::AccountGone,
            message: "this account has been deregistered".into(),
        });
        let _ = timeout(ctx.config.write_timeout, writer.write_all(line.as_bytes())).await;
        let _ = timeout(ctx.config.write_timeout, writer.shutdown()).await;
        return;
    };
    let (queue_tx, mut queue_rx) = mpsc::channel(QUEUE);
    let join = DeskCmd::Join {
        conn,
        account,
        queue: queue_tx,
    };
    if desk.send(join).await.is_err() {
        return;
    }
    let write_timeout = ctx.config.write_timeout;
    let write = async move {
        while let Some(body) = queue_rx.recv().await {
            let line = settle::encode_line(body);
            let write = async {
                writer.write_all(line.as_bytes()).await?;
                writer.flush().await
            };
            if !matches!(timeout(write_timeout, write).await, Ok(Ok(()))) {
                return;
            }
        }
        let _ = timeout(write_timeout, writer.shutdown()).await;
    };
    let read = async {
        let mut lines = FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_LINE));
        loop {
            let next = match timeout(ctx.config.idle_timeout, lines.next()).await {
                Ok(Some(next)) => next,
                Ok(None) | Err(_) => return,
            };
            let cmd = match next {
                Ok(line) if line.trim().is_empty() => continue,
                Ok(line) => match settle::decode_request(line.trim_end_matches('\r')) {
                    Ok(request) => DeskCmd::Request { conn, request },
                    Err(error) => DeskCmd::BadLine {
                        conn,
                        error,
                        fatal: false,
                    },
                },
                Err(e) => {
                    let (reason, detail) = match e {
                        LinesCodecError::MaxLineLengthExceeded => (
                            Reason::TooLarge,
                            format!("lines are limited to {MAX_LINE} bytes"),
                        ),
                        LinesCodecError::Io(_) => (Reason::Malformed, "lines must be UTF-8".into()),
                    };
                    let error = LineError {
                        reason,
                        req: None,
                        detail,
                    };
                    let _ = desk
                        .send(DeskCmd::BadLine {
                            conn,
                            error,
                            fatal: true,
                        })
                        .await;
                    // The writer sends the error and closes.
                    return std::future::pending().await;
                }
            };
            if desk.send(cmd).await.is_err() {
                return std::future::pending().await;
            }
        }
    };
    tokio::select! {
        _ = read => {}
        _ = write => {}
    }
    let _ = desk.send(DeskCmd::Leave { conn }).await;
}
