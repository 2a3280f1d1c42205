//! One party's settlement connection: the handshake (its own timeout), then lines in and out
//! through the desk, like an item channel.

use auction_protocol::settle;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::cmd::DeskCmd;
use super::QUEUE;
use crate::context::ServerContext;
use crate::net::accept::handshake;
use crate::net::lines::read_lines;

/// One party's connection: the handshake (its own timeout), then lines in and out.
pub(super) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    conn: u64,
    ctx: Arc<ServerContext>,
    desk: mpsc::Sender<DeskCmd>,
    slot: crate::net::budget::Handshaking,
) {
    let Some((tls, account, _joined)) = handshake(tcp, peer, slot, &ctx).await else {
        return;
    };
    let (reader, mut writer) = tokio::io::split(tls);
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
    let read = read_lines(reader, &desk, conn, ctx.config.idle_timeout);
    tokio::select! {
        _ = read => {}
        _ = write => {}
    }
    let _ = desk.send(DeskCmd::Leave { conn }).await;
}
