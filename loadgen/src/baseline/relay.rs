//! The relay of `loadgen baseline --fan-out`: the auction's fan-out with nothing but the wire.
//! Each line a connection sends is answered to it and written to every other connection of
//! the same listener (one listener per item, as the auction's item channels); no storage, no
//! rules, no JSON parsing: a line is bytes up to a newline.
//!
//! Who owns what: each connection's task owns its TLS stream and its queue's receiver; the
//! listener's [`Hub`] holds the senders of its connections' queues behind a short `std`
//! mutex, held only to hand one line to each queue (`try_send`, which never waits), never
//! across an `.await`. A line is one shared allocation, however many connections it goes to.
//! Nothing waits for storage: there is none.
//!
//! Bounded as the auction is, so a slow reader costs only itself:
//! - each connection has one queue of at most [`QUEUE`] lines (the auction's default
//!   `outgoing_queue`);
//! - a copy of another connection's line is dropped, not queued, when the reader's queue is
//!   full, as the auction skips the HIGHESTs a reader behind has not taken (coalescing): the
//!   driver counts what did not arrive (`relay_due` - `relayed` in the report);
//! - a connection's own answer waits for room in its own queue, which stops only that
//!   connection's reading;
//! - each write has its own timeout ([`WRITE_TIMEOUT`]); a reader that takes no bytes for
//!   that long is closed, as the auction drops it.
//!
//! The writer takes every line already queued and writes them with one `write_all` and one
//! flush (several lines per TLS record and system call): what the wire costs when a sender
//! does it well.

use super::server::{greet, handshake};
use anyhow::{Context, Result};
use auction_protocol::limits::MAX_LINE;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::{FramedRead, LinesCodec};

/// Lines a connection's queue holds at most.
pub const QUEUE: usize = 256;
/// How long one write may take before the connection is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes the writer gathers from its queue into one write at most.
const BATCH_BYTES: usize = 64 * 1024;

/// One line, newline included, shared by every queue it is in.
type Line = Arc<[u8]>;

/// The connections of one listener: where a line read from one of them is copied to.
#[derive(Default)]
pub struct Hub {
    /// Each connection's id and the sender of its queue. A `std` mutex: it is held to loop
    /// over the queues with `try_send`, which never waits, so never across an `.await`.
    conns: Mutex<Vec<(u64, mpsc::Sender<Line>)>>,
    next_id: AtomicU64,
    /// Copies dropped because a reader's queue was full.
    skipped: AtomicU64,
}

impl Hub {
    /// Adds a connection's queue; it leaves when the returned guard drops.
    fn join(self: &Arc<Hub>, queue: mpsc::Sender<Line>) -> Member {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().push((id, queue));
        Member {
            hub: self.clone(),
            id,
        }
    }

    /// Hands `line` to every connection but `from`, dropping the copy of any whose queue is
    /// full. Returns how many it dropped.
    fn relay(&self, from: u64, line: &Line) -> u64 {
        let mut skipped = 0;
        for (id, queue) in self.lock().iter() {
            if *id == from {
                continue;
            }
            if let Err(mpsc::error::TrySendError::Full(_)) = queue.try_send(line.clone()) {
                skipped += 1;
            }
        }
        if skipped > 0 {
            self.skipped.fetch_add(skipped, Ordering::Relaxed);
        }
        skipped
    }

    /// Copies dropped so far for readers behind.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, mpsc::Sender<Line>)>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A connection's place in its hub, given back when dropped (however the connection ends).
struct Member {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.hub.lock().retain(|(id, _)| *id != self.id);
    }
}

/// Serves one connection of `hub`'s listener until it closes or fails.
pub async fn serve(acceptor: TlsAcceptor, tcp: TcpStream, hub: &Arc<Hub>) -> Result<()> {
    let mut tls = handshake(&acceptor, tcp).await?;
    let (queue, queued) = mpsc::channel::<Line>(QUEUE);
    // Joined before the first line: a client that has read it gets every copy from then on.
    let member = hub.join(queue.clone());
    greet(&mut tls).await?;
    let (reader, writer) = tokio::io::split(tls);
    let reading = async {
        let mut lines = FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_LINE));
        while let Some(line) = lines.next().await {
            let mut line = line?.into_bytes();
            line.push(b'\n');
            let line: Line = Arc::from(line);
            hub.relay(member.id, &line);
            // The answer waits for room: only this connection's reading stops meanwhile.
            queue.send(line).await.context("the writer stopped")?;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        r = reading => r,
        r = write_queued(writer, queued) => r,
    }
}

/// Writes what the queue holds, every line already there in one write, until the queue
/// closes or a write fails or takes longer than [`WRITE_TIMEOUT`].
async fn write_queued<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut queued: mpsc::Receiver<Line>,
) -> Result<()> {
    let mut batch = Vec::with_capacity(4096);
    while let Some(line) = queued.recv().await {
        batch.extend_from_slice(&line);
        while batch.len() < BATCH_BYTES {
            match queued.try_recv() {
                Ok(line) => batch.extend_from_slice(&line),
                Err(_) => break,
            }
        }
        tokio::time::timeout(WRITE_TIMEOUT, async {
            writer.write_all(&batch).await?;
            writer.flush().await
        })
        .await
        .context("a reader took nothing for too long")??;
        batch.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Line {
        Arc::from(format!("{text}\n").into_bytes())
    }

    /// A line goes to every other member, not back to its sender; a full queue loses the
    /// copy and only that one; a member that left gets nothing.
    #[test]
    fn relays_to_the_others_and_drops_for_a_full_queue() {
        let hub = Arc::new(Hub::default());
        let (a_tx, mut a_rx) = mpsc::channel(QUEUE);
        let (b_tx, mut b_rx) = mpsc::channel(1);
        let (c_tx, mut c_rx) = mpsc::channel(QUEUE);
        let a = hub.join(a_tx);
        let _b = hub.join(b_tx);
        let c = hub.join(c_tx);
        assert_eq!(hub.relay(a.id, &line("one")), 0);
        assert_eq!(hub.relay(a.id, &line("two")), 1, "b's queue holds one line");
        assert_eq!(hub.skipped(), 1);
        assert!(a_rx.try_recv().is_err(), "no copy to the sender");
        assert_eq!(&*b_rx.try_recv().unwrap(), b"one\n");
        assert!(b_rx.try_recv().is_err());
        assert_eq!(&*c_rx.try_recv().unwrap(), b"one\n");
        assert_eq!(&*c_rx.try_recv().unwrap(), b"two\n");
        drop(c);
        hub.relay(a.id, &line("three"));
        assert!(c_rx.try_recv().is_err(), "c left");
        assert_eq!(&*b_rx.try_recv().unwrap(), b"three\n");
    }

    /// Everything queued is written, in order, several lines at once.
    #[tokio::test]
    async fn writes_every_queued_line_in_order() {
        let (tx, rx) = mpsc::channel(QUEUE);
        for text in ["a", "b", "c"] {
            tx.send(line(text)).await.unwrap();
        }
        drop(tx);
        let mut out = Vec::new();
        write_queued(&mut out, rx).await.unwrap();
        assert_eq!(out, b"a\nb\nc\n");
    }
}
