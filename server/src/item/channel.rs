//! One bidder's TLS connection to one item: after the handshake (`net/accept.rs`), a reader
//! that turns lines into item commands (`net/lines.rs`) and a writer that drains the
//! connection's queue and the item's latest HIGHEST, each write with its own timeout.

use auction_protocol::channel::{self, ChannelBody};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

use super::cmd::{HighestRx, ItemCmd};
use crate::context::ServerContext;
use crate::net::accept::{handshake, say_and_close};
use crate::net::lines::read_lines;
use crate::rules::refusal::Refusal;

/// Serves one bidder's connection until it closes; `slot` is its place in the handshake budget
/// (given back when the handshake ends), `_joined` its place in the joined-connection budget
/// (given back when it closes).
pub(super) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    conn: u64,
    ctx: Arc<ServerContext>,
    item: mpsc::Sender<ItemCmd>,
    slot: crate::net::budget::Handshaking,
) {
    let Some((tls, account, _joined)) = handshake(tcp, peer, slot, &ctx).await else {
        return;
    };
    tracing::debug!(%peer, conn, account = %account.name, "bidder connected");

    let (queue_tx, queue_rx) = mpsc::channel(ctx.config.outgoing_queue);
    let (reply_tx, reply_rx) = oneshot::channel();
    let join = ItemCmd::Join {
        conn,
        peer,
        account,
        queue: queue_tx,
        reply: reply_tx,
    };
    if item.send(join).await.is_err() {
        return; // The auction closed while we were handshaking.
    }
    let (reader, mut writer) = tokio::io::split(tls);
    let highest = match reply_rx.await {
        Ok(Ok(highest)) => highest,
        Ok(Err(Refusal { reason, message })) => {
            say_and_close(&mut writer, reason, message, ctx.config.write_timeout).await;
            return;
        }
        Err(_) => return,
    };
    ctx.metrics.connections.inc();
    ctx.metrics.connections_total.inc();
    tokio::select! {
        _ = read_lines(reader, &item, conn, ctx.config.idle_timeout) => {}
        stuck = write_messages(writer, queue_rx, highest, ctx.config.write_timeout) => {
            if stuck == Err(Stuck) {
                ctx.metrics.dropped("write-timeout");
            }
        }
    }
    ctx.metrics.connections.dec();
    let _ = item.send(ItemCmd::Leave { conn }).await;
}

/// Most bytes gathered into one write: a backlog goes out in a few large TLS records instead
/// of one record and one system call per message.
const WRITE_BATCH: usize = 16 * 1024;

/// A write to the peer took longer than the write timeout: it is not reading.
#[derive(Debug, PartialEq, Eq)]
struct Stuck;

/// Writes queued messages and the latest HIGHEST until the item drops the queue, then closes
/// the TLS session cleanly (close_notify). Whatever is ready is written in one batch.
async fn write_messages<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut queue: mpsc::Receiver<ChannelBody>,
    mut highest: HighestRx,
    write_timeout: Duration,
) -> Result<(), Stuck> {
    let mut highest_open = true;
    let mut queue_open = true;
    // The item's first message (STATE) goes before any HIGHEST: the server speaks first
    // with the state, and STATE waits for storage while HIGHEST may already have moved on.
    let mut started = false;
    let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
    while queue_open {
        // Wait for something to write. HIGHEST first: a newer one replaces any older one not
        // yet written, and it is always written before the BID-OVER that follows it.
        tokio::select! {
            biased;
            changed = highest.changed(), if highest_open && started => match changed {
                Ok(()) => push_highest(&mut batch, &mut highest),
                Err(_) => highest_open = false,
            },
            queued = queue.recv() => match queued {
                Some(body) => {
                    batch.extend_from_slice(channel::encode_line(body).as_bytes());
                    started = true;
                }
                None => queue_open = false,
            },
        }
        // Then take whatever else is ready without waiting, in the same order of preference.
        while queue_open && started && batch.len() < WRITE_BATCH {
            if highest_open {
                match highest.has_changed() {
                    Ok(true) => push_highest(&mut batch, &mut highest),
                    Ok(false) => {}
                    Err(_) => highest_open = false,
                }
            }
            match queue.try_recv() {
                Ok(body) => batch.extend_from_slice(channel::encode_line(body).as_bytes()),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => queue_open = false,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let write = async {
            writer.write_all(&batch).await?;
            writer.flush().await
        };
        match timeout(write_timeout, write).await {
            Ok(Ok(())) => batch.clear(),
            Ok(Err(_)) => return Ok(()),
            Err(_) => {
                tracing::info!("a bidder stopped reading; closing its connection");
                return Err(Stuck);
            }
        }
    }
    let _ = timeout(write_timeout, writer.shutdown()).await;
    Ok(())
}

fn push_highest(batch: &mut Vec<u8>, highest: &mut HighestRx) {
    if let Some(line) = highest.borrow_and_update().as_deref() {
        batch.extend_from_slice(line.as_bytes());
    }
}
