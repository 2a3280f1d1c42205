//! One simulated bidder of the baseline: its own task, holding its connections (one per
//! joined item), sending one bid-sized line at a time round-robin over them when the rate
//! policy ([`Pace`], the auction run's) says, and waiting for its answer while it reads
//! everything else its connections bring (the relay's copies of the other bidders' lines).
//!
//! Each line carries, in its id, when it was sent (microseconds since the measured phase
//! began): a connection reading another's copy computes the fan-out latency from it, as the
//! auction run matches a HIGHEST to the time its bid was sent, without the relay parsing
//! anything. The answer to a bidder's own line is told apart by its bytes (the line sent).
//!
//! The task owns its connections; what the run counts it records in the run's [`Shared`]
//! (atomics, and histograms behind short `std` mutexes never held across an `.await`).

use crate::pace::Pace;
use crate::stats::{Latency, PerSecond, Tally};
use anyhow::{Context, Result};
use auction_protocol::channel::{encode_request, ChannelRequestBody};
use auction_protocol::limits::MAX_LINE;
use auction_protocol::Cents;
use futures_util::stream::{self, BoxStream, SelectAll, StreamExt};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

/// How long a line may wait for its answer before it counts as unanswered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Once it stops sending, how long a bidder reads on for copies still on their way.
const DRAIN: Duration = Duration::from_secs(2);
/// How often a draining bidder looks whether every copy due has arrived.
const DRAIN_CHECK: Duration = Duration::from_millis(20);

/// What the run's bidders count together.
pub(super) struct Shared {
    pub round_trip: Latency,
    pub fan_out: Latency,
    /// Sent minus scheduled (open loop).
    pub send_lag: Latency,
    pub sent: AtomicU64,
    pub answered: AtomicU64,
    pub unanswered: AtomicU64,
    /// Copies due to other connections of the items of the lines sent (relay only)...
    pub relay_due: AtomicU64,
    /// ...and those read.
    pub relayed: AtomicU64,
    pub errors: Tally,
    pub per_second: PerSecond,
    /// Bidders still sending: while one is, copies may yet be due.
    pub sending: AtomicUsize,
    /// When the measured phase began: lines carry their send time relative to it.
    pub start: Instant,
    /// Open connections on each item, counted before bidding starts.
    pub per_item: Vec<usize>,
    pub fan_out_mode: bool,
    /// Start of every line id: the run's seed, so runs can be told apart.
    pub prefix: String,
}

/// A client connection to the baseline server.
pub(super) struct Conn {
    item: usize,
    reader: Option<FramedRead<tokio::io::ReadHalf<TlsStream<TcpStream>>, LinesCodec>>,
    writer: WriteHalf<TlsStream<TcpStream>>,
    open: bool,
    sent: u64,
    relayed: u64,
}

impl Conn {
    /// Connects to the listener of `item`, completes the handshake and reads the server's
    /// first line.
    pub(super) async fn open(
        connector: &TlsConnector,
        addr: SocketAddr,
        item: usize,
    ) -> Result<Conn> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(addr.ip().into());
        let tls = timeout(Duration::from_secs(10), connector.connect(name, tcp))
            .await
            .context("no TLS handshake within 10 s")??;
        let (reader, writer) = tokio::io::split(tls);
        let mut reader = FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_LINE));
        reader
            .next()
            .await
            .context("the baseline server closed the connection")??;
        Ok(Conn {
            item,
            reader: Some(reader),
            writer,
            open: true,
            sent: 0,
            relayed: 0,
        })
    }
}

impl Conn {
    /// The item's index in the run.
    pub(super) fn item(&self) -> usize {
        self.item
    }
}

/// What one connection sent and read, for the counts per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub bidder: usize,
    /// The item's index in the run (its listener).
    pub item: usize,
    /// Lines it sent.
    pub sent: u64,
    /// Copies of the other connections' lines it read.
    pub relayed: u64,
}

/// A line (or the end) from one of a bidder's connections, tagged with the connection's slot.
type Tag = (usize, Option<Result<String, LinesCodecError>>);

/// What a line read turned out to be.
enum Seen {
    /// The answer to the line waited for, read at this time.
    Answer(Instant),
    /// The connection waited on is gone: no answer will come.
    Lost,
    /// Anything else (a copy, or the end of another connection).
    Other,
}

pub(super) struct Driver {
    index: usize,
    conns: Vec<Conn>,
    readers: SelectAll<BoxStream<'static, Tag>>,
    shared: Arc<Shared>,
    seq: u64,
}

impl Driver {
    pub(super) fn new(index: usize, mut conns: Vec<Conn>, shared: Arc<Shared>) -> Driver {
        let mut readers = SelectAll::new();
        for (slot, conn) in conns.iter_mut().enumerate() {
            if let Some(reader) = conn.reader.take() {
                let tagged = reader
                    .map(move |line| (slot, Some(line)))
                    .chain(stream::once(async move { (slot, None) }));
                readers.push(tagged.boxed());
            }
        }
        Driver {
            index,
            conns,
            readers,
            shared,
            seq: 0,
        }
    }

    /// Bids until `stop` as `pace` says, one line at a time round-robin over the connections
    /// still open; then reads on until every copy due has come (or [`DRAIN`] has passed) and
    /// closes. Returns when it stopped sending, and what each connection sent and read.
    pub(super) async fn run(mut self, stop: Instant, pace: Pace) -> (Instant, Vec<Share>) {
        let mut due = pace.first_due(self.shared.start, self.index);
        let mut turn = 0usize;
        'bidding: loop {
            match pace {
                Pace::Open { .. } => {
                    // Open loop: wait for the line's scheduled time, reading meanwhile.
                    while Instant::now() < due && due < stop {
                        tokio::select! {
                            _ = sleep_until(due.into()) => {}
                            tag = self.readers.next() => match tag {
                                Some(tag) => { self.handle(tag, None); }
                                None => break 'bidding,
                            },
                        }
                    }
                    if due >= stop {
                        break;
                    }
                }
                Pace::Closed => {
                    due = Instant::now();
                    if due >= stop {
                        break;
                    }
                }
            }
            let open: Vec<usize> = (0..self.conns.len())
                .filter(|&s| self.conns[s].open)
                .collect();
            if open.is_empty() {
                break;
            }
            let slot = open[turn % open.len()];
            turn += 1;
            self.bid(slot, due).await;
            if let Pace::Open { interval, .. } = pace {
                due += interval;
            }
        }
        let stopped = Instant::now();
        self.shared.sending.fetch_sub(1, Ordering::SeqCst);
        self.drain().await;
        let mut shares = Vec::new();
        for mut conn in self.conns {
            let _ = conn.writer.shutdown().await;
            shares.push(Share {
                bidder: self.index,
                item: conn.item,
                sent: conn.sent,
                relayed: conn.relayed,
            });
        }
        (stopped, shares)
    }

    /// Sends one line on `slot` and waits for its answer; latency counts from `due`.
    async fn bid(&mut self, slot: usize, due: Instant) {
        let s = self.shared.clone();
        self.seq += 1;
        s.send_lag
            .record(Instant::now().saturating_duration_since(due));
        let sent_us = s.start.elapsed().as_micros();
        // A bid's bytes, its id carrying who sent it and when.
        let line = encode_request(
            self.seq,
            ChannelRequestBody::Bid {
                amount: Cents(1000 + self.seq),
                id: Some(format!(
                    "{}-{}-{}-{sent_us}",
                    s.prefix, self.index, self.seq
                )),
            },
        );
        let conn = &mut self.conns[slot];
        let written = async {
            conn.writer.write_all(line.as_bytes()).await?;
            conn.writer.flush().await
        };
        if let Err(e) = written.await {
            tracing::warn!(error = %e, "a baseline connection broke while sending");
            s.errors.add("write");
            conn.open = false;
            return;
        }
        conn.sent += 1;
        s.sent.fetch_add(1, Ordering::Relaxed);
        if s.fan_out_mode {
            let others = s.per_item[conn.item].saturating_sub(1) as u64;
            s.relay_due.fetch_add(others, Ordering::SeqCst);
        }
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        loop {
            let seen = match tokio::time::timeout_at(deadline, self.readers.next()).await {
                Ok(Some(tag)) => self.handle(tag, Some((slot, &line))),
                Ok(None) | Err(_) => Seen::Lost,
            };
            match seen {
                Seen::Answer(at) => {
                    s.answered.fetch_add(1, Ordering::Relaxed);
                    s.round_trip.record(at.saturating_duration_since(due));
                    s.per_second.add(at.saturating_duration_since(s.start));
                    return;
                }
                Seen::Lost => {
                    s.unanswered.fetch_add(1, Ordering::Relaxed);
                    s.errors.add("no-answer");
                    tracing::warn!(bidder = self.index, "a baseline line got no answer");
                    return;
                }
                Seen::Other => {}
            }
        }
    }

    /// Handles one line (or the end) from connection `slot`; `pending` is the slot and the
    /// line whose answer is waited for.
    fn handle(&mut self, (slot, line): Tag, pending: Option<(usize, &str)>) -> Seen {
        let at = Instant::now();
        let s = &self.shared;
        let waited_here = pending.is_some_and(|(p, _)| p == slot);
        let line = match line {
            Some(Ok(line)) => line,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "a baseline connection failed");
                s.errors.add("read");
                self.conns[slot].open = false;
                return if waited_here { Seen::Lost } else { Seen::Other };
            }
            None => {
                if self.conns[slot].open {
                    s.errors.add("closed-by-server");
                }
                self.conns[slot].open = false;
                return if waited_here { Seen::Lost } else { Seen::Other };
            }
        };
        if let Some((p, sent)) = pending {
            if p == slot && sent.strip_suffix('\n') == Some(line.as_str()) {
                return Seen::Answer(at);
            }
        }
        match sent_at(&line).filter(|_| s.fan_out_mode) {
            Some(us) => {
                let sent = s.start + Duration::from_micros(us);
                s.fan_out.record(at.saturating_duration_since(sent));
                s.relayed.fetch_add(1, Ordering::Relaxed);
                self.conns[slot].relayed += 1;
            }
            None => s.errors.add("unexpected-line"),
        }
        Seen::Other
    }

    /// Reads on until no bidder sends any more and every copy due has been read, or for
    /// [`DRAIN`] at most (copies the relay skipped for a reader behind never come).
    async fn drain(&mut self) {
        if !self.shared.fan_out_mode {
            return;
        }
        let until = tokio::time::Instant::now() + DRAIN;
        loop {
            let s = &self.shared;
            let all_in = s.sending.load(Ordering::SeqCst) == 0
                && s.relayed.load(Ordering::SeqCst) >= s.relay_due.load(Ordering::SeqCst);
            if all_in || tokio::time::Instant::now() >= until {
                return;
            }
            let check = (tokio::time::Instant::now() + DRAIN_CHECK).min(until);
            match tokio::time::timeout_at(check, self.readers.next()).await {
                Ok(Some(tag)) => {
                    self.handle(tag, None);
                }
                Ok(None) => return,
                Err(_) => {}
            }
        }
    }
}

/// When the line was sent, in microseconds since the phase began: the last `-` field of its
/// `"id"` (see [`Driver::bid`]). `None` for a line that is not one of this run's.
pub(super) fn sent_at(line: &str) -> Option<u64> {
    let id = line.split_once("\"id\":\"")?.1;
    let id = &id[..id.find('"')?];
    id.rsplit_once('-')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_when_it_was_sent() {
        let line = encode_request(
            3,
            ChannelRequestBody::Bid {
                amount: Cents(1003),
                id: Some("lgbase000007-4-3-123456".into()),
            },
        );
        assert_eq!(sent_at(line.trim_end()), Some(123_456));
        assert_eq!(sent_at("{\"v\":1,\"type\":\"bid\",\"id\":\"x\"}"), None);
        assert_eq!(sent_at("hello"), None);
    }
}
