//! A bidder's TLS 1.3 channel to one item, authenticated with the client's account key.

use auction_protocol::channel::{self, ChannelBody, ChannelRequestBody};
use auction_protocol::limits::MAX_LINE;
use auction_protocol::{Cents, ItemView, Reason};
use futures_util::StreamExt;
use rustls::pki_types::ServerName;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::codec::{FramedRead, LinesCodec};

use crate::error::{ClientError, Result};

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// What a bid offers: a fixed amount, or a private maximum the server bids up to for you
/// (proxy bidding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Amount(Cents),
    Max(Cents),
    /// Buy it now at this price (the item's, as last seen).
    BuyNow(Cents),
}

impl Offer {
    fn request(self, id: Option<String>) -> ChannelRequestBody {
        match self {
            Offer::Amount(amount) => ChannelRequestBody::Bid { amount, id },
            Offer::Max(max) => ChannelRequestBody::ProxyBid { max, id },
            Offer::BuyNow(amount) => ChannelRequestBody::BuyNow { amount, id },
        }
    }
}

/// The answer to a bid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BidResult {
    Accepted {
        /// The bid as placed (for a proxy bid: the price it reached, or its maximum when
        /// another proxy outbid it at once).
        amount: Cents,
        ends_at: u64,
        /// False when someone's proxy outbid this bid at once.
        leading: bool,
        /// A proxy bid's maximum.
        max: Option<Cents>,
    },
    Rejected {
        reason: Reason,
        message: String,
        highest: Option<Cents>,
        next_min: Cents,
    },
}

/// A message from the server and the moment it was read off the connection (by whoever polls
/// the reader: see [`ChannelReader`]).
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub body: ChannelBody,
}

/// Connects to `addr` (`host:port`) and completes the mutual-TLS handshake, within 10 s.
/// Connects to `addr` (`host:port`) from the local IP `local` when given (else the system's
/// choice) and completes the TLS handshake, all within [`CONNECT_TIMEOUT`].
pub(crate) async fn tls_connect(
    connector: &TlsConnector,
    addr: &str,
    local: Option<IpAddr>,
) -> Result<TlsStream<TcpStream>> {
    let (host, _) = addr
        .rsplit_once(':')
        .ok_or_else(|| ClientError::Protocol(format!("'{addr}' is not host:port")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| ClientError::Protocol(format!("'{host}' is not a valid server name")))?;
    let connect = async {
        let tcp = match local {
            None => TcpStream::connect(addr).await?,
            Some(local) => {
                let mut last = None;
                let mut connected = None;
                for remote in tokio::net::lookup_host(addr).await? {
                    if remote.is_ipv4() != local.is_ipv4() {
                        continue;
                    }
                    let socket = match local {
                        IpAddr::V4(_) => TcpSocket::new_v4()?,
                        IpAddr::V6(_) => TcpSocket::new_v6()?,
                    };
                    socket.bind(SocketAddr::new(local, 0))?;
                    match socket.connect(remote).await {
                        Ok(tcp) => {
                            connected = Some(tcp);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                connected.ok_or_else(|| {
                    last.unwrap_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::AddrNotAvailable,
                            format!("{addr} has no address of the same family as {local}"),
                        )
                    })
                })?
            }
        };
        tcp.set_nodelay(true)?;
        connector.connect(name, tcp).await
    };
    match timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(tls_error(e)),
        Err(_) => Err(ClientError::Tls(format!(
            "no TLS handshake with {addr} within 10 s"
        ))),
    }
}

pub struct ItemChannel {
    writer: ChannelWriter,
    reader: ChannelReader,
    /// The item as it was when the channel opened.
    pub item: ItemView,
    pub next_min: Cents,
    /// The account the server authenticated this connection as.
    pub you: String,
}

impl ItemChannel {
    /// Connects to `channel` (`host:port`) from the local IP `local` when given, completes the
    /// mutual-TLS handshake and reads the item's state.
    pub async fn open(
        connector: &TlsConnector,
        channel: &str,
        local: Option<IpAddr>,
    ) -> Result<ItemChannel> {
        let tls = tls_connect(connector, channel, local).await?;
        let (reader, writer) = tokio::io::split(tls);
        let mut ch = ItemChannel {
            writer: ChannelWriter {
                writer,
                next_req: 1,
            },
            reader: ChannelReader {
                lines: FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_LINE)),
                backlog: VecDeque::new(),
                ended: false,
            },
            item: placeholder_item(),
            next_min: Cents(0),
            you: String::new(),
        };
        // The server speaks first: the item's state, or why it will not take this connection.
        match timeout(ANSWER_TIMEOUT, ch.reader.read()).await {
            Ok(Some(Ok(Received {
                body:
                    ChannelBody::State {
                        item,
                        next_min,
                        you,
                        ..
                    },
                ..
            }))) => {
                ch.item = item;
                ch.next_min = next_min;
                ch.you = you;
                Ok(ch)
            }
            Ok(Some(Ok(Received {
                body: ChannelBody::Error {
                    reason, message, ..
                },
                ..
            }))) => Err(ClientError::Denied { reason, message }),
            Ok(Some(Ok(other))) => Err(ClientError::Protocol(format!(
                "expected state, got {:?}",
                other.body
            ))),
            Ok(Some(Err(e))) => Err(e),
            Ok(None) => Err(ClientError::Tls(
                "the server closed the channel; the auction may have ended".into(),
            )),
            Err(_) => Err(ClientError::Tls(
                "the server sent nothing after the handshake".into(),
            )),
        }
    }

    /// Bids `amount` and waits for the answer. `id` makes the bid idempotent (see PROTOCOL.md).
    pub async fn bid(&mut self, amount: Cents, id: Option<String>) -> Result<BidResult> {
        self.place(Offer::Amount(amount), id).await
    }

    /// Places a bid or a proxy bid and waits for the answer.
    pub async fn place(&mut self, offer: Offer, id: Option<String>) -> Result<BidResult> {
        let req = self.writer.send(offer.request(id)).await?;
        loop {
            let Received { at, body } = self.recv_direct().await?;
            match body {
                ChannelBody::BidAccepted {
                    req: r,
                    amount,
                    ends_at,
                    leading,
                    max,
                    ..
                } if r == req => {
                    return Ok(BidResult::Accepted {
                        amount,
                        ends_at,
                        leading,
                        max,
                    })
                }
                ChannelBody::BidRejected {
                    req: r,
                    reason,
                    message,
                    highest,
                    next_min,
                } if r == req => {
                    return Ok(BidResult::Rejected {
                        reason,
                        message,
                        highest,
                        next_min,
                    })
                }
                ChannelBody::Error {
                    req: Some(r),
                    reason,
                    message,
                } if r == req => return Err(ClientError::Denied { reason, message }),
                // The server is closing the channel and says why (it is stopping, or the item
                // moved to another node): the bid's answer will not come on this channel.
                ChannelBody::Error {
                    req: None,
                    reason: Reason::Unavailable,
                    message,
                } => {
                    return Err(ClientError::Denied {
                        reason: Reason::Unavailable,
                        message,
                    })
                }
                other => {
                    let ended = matches!(
                        other,
                        ChannelBody::SoldTo { .. } | ChannelBody::NotSold { .. }
                    );
                    self.reader.push_back(at, other);
                    if ended {
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

    /// Asks for the item's state again.
    pub async fn status(&mut self) -> Result<ItemView> {
        let req = self.writer.send(ChannelRequestBody::Status).await?;
        loop {
            let Received { at, body } = self.recv_direct().await?;
            match body {
                ChannelBody::State {
                    req: Some(r),
                    item,
                    next_min,
                    ..
                } if r == req => {
                    self.next_min = next_min;
                    return Ok(item);
                }
                other => self.reader.push_back(at, other),
            }
        }
    }

    async fn recv_direct(&mut self) -> Result<Received> {
        match timeout(ANSWER_TIMEOUT, self.reader.read()).await {
            Ok(Some(msg)) => msg,
            Ok(None) => Err(ClientError::Tls("the server closed the channel".into())),
            Err(_) => Err(ClientError::Timeout {
                server: "item channel".into(),
                tries: 1,
            }),
        }
    }

    /// The next message from the server (HIGHEST, BID-OVER, SOLD-TO, ...); `None` once the
    /// server has closed the channel.
    pub async fn next_event(&mut self) -> Option<Result<ChannelBody>> {
        self.reader.recv().await.map(|m| m.map(|m| m.body))
    }

    /// Closes the channel cleanly.
    pub async fn close(self) {
        self.writer.close().await
    }

    /// Sends a blank line: no answer, but it tells the server this client is still there
    /// (see the idle timeout in PROTOCOL.md).
    pub async fn keepalive(&mut self) -> Result<()> {
        self.writer.keepalive().await
    }

    /// Separates sending from receiving, for callers that keep several requests in flight or
    /// read several channels at once (the load generator). Messages already received come
    /// first from the reader.
    pub fn split(self) -> (ChannelWriter, ChannelReader) {
        (self.writer, self.reader)
    }
}

/// The sending half of an [`ItemChannel`]: requests go out numbered 1, 2, ...
pub struct ChannelWriter {
    writer: WriteHalf<TlsStream<TcpStream>>,
    next_req: u64,
}

impl ChannelWriter {
    async fn send(&mut self, body: ChannelRequestBody) -> Result<u64> {
        let req = self.next_req;
        self.next_req += 1;
        let line = channel::encode_request(req, body);
        self.writer.write_all(line.as_bytes()).await?;
        self.writer.flush().await?;
        Ok(req)
    }

    /// Sends a bid without waiting for its answer; returns its `req`, which the
    /// `bid-accepted` / `bid-rejected` for it carries.
    pub async fn send_bid(&mut self, amount: Cents, id: Option<String>) -> Result<u64> {
        self.send(ChannelRequestBody::Bid { amount, id }).await
    }

    /// Sends a blank line (ignored by the server, but it resets the idle timeout).
    pub async fn keepalive(&mut self) -> Result<()> {
        self.writer.write_all(b"\n").await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// Closes the channel cleanly (TLS close_notify, then TCP shutdown).
    pub async fn close(mut self) {
        let _ = self.writer.shutdown().await;
    }
}

/// The receiving half of an [`ItemChannel`]. It reads the connection itself, in whichever
/// task polls it: no task of its own and no queue between the socket and the caller, so a
/// message costs one decode and no hand-over (a load generator reading thousands of HIGHEST a
/// second feels every hop). Not polled, it does not read, and the server's flow control
/// applies (HIGHEST is coalesced for a reader that is behind).
pub struct ChannelReader {
    lines: FramedRead<ReadHalf<TlsStream<TcpStream>>, LinesCodec>,
    /// Messages that arrived while a caller waited for an answer, handed out first.
    backlog: VecDeque<Received>,
    /// The connection closed or failed (said once): nothing more comes.
    ended: bool,
}

impl ChannelReader {
    fn push_back(&mut self, at: Instant, body: ChannelBody) {
        self.backlog.push_back(Received { at, body });
    }

    /// The next message from the server; `None` once the server has closed the channel.
    pub async fn recv(&mut self) -> Option<Result<Received>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next message, for callers that drive several readers from one task.
    /// Cancel-safe: a line read in part stays buffered for the next poll.
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Received>>> {
        if let Some(msg) = self.backlog.pop_front() {
            return std::task::Poll::Ready(Some(Ok(msg)));
        }
        self.poll_read(cx)
    }

    /// The next message off the connection, past the backlog (a caller waiting for its
    /// answer puts what else comes into the backlog).
    async fn read(&mut self) -> Option<Result<Received>> {
        std::future::poll_fn(|cx| self.poll_read(cx)).await
    }

    /// Reads and decodes the next line; after an error or the end, `None`. `at` is taken when
    /// the line is decoded, so it includes any wait for this reader to be polled.
    fn poll_read(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Received>>> {
        if self.ended {
            return std::task::Poll::Ready(None);
        }
        let line = match std::task::ready!(self.lines.poll_next_unpin(cx)) {
            Some(line) => line,
            None => {
                self.ended = true;
                return std::task::Poll::Ready(None);
            }
        };
        let at = Instant::now();
        let msg = match line {
            Ok(line) => channel::decode_message(&line)
                .map(|m| Received { at, body: m.body })
                .map_err(|e| ClientError::Protocol(e.to_string())),
            Err(tokio_util::codec::LinesCodecError::Io(e)) => Err(tls_error(e)),
            Err(e) => Err(ClientError::Protocol(e.to_string())),
        };
        self.ended = msg.is_err();
        std::task::Poll::Ready(Some(msg))
    }
}

impl std::fmt::Debug for ItemChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemChannel")
            .field("item", &self.item.item)
            .field("you", &self.you)
            .finish_non_exhaustive()
    }
}

fn tls_error(e: std::io::Error) -> ClientError {
    let text = e.to_string();
    if text.contains("alert") || text.contains("certificate") {
        ClientError::Tls(format!(
            "the server refused this connection ({text}); is this identity registered?"
        ))
    } else if e.kind() == std::io::ErrorKind::ConnectionRefused {
        ClientError::Io(e)
    } else {
        ClientError::Tls(text)
    }
}

fn placeholder_item() -> ItemView {
    ItemView {
        item: 0,
        description: String::new(),
        seller: String::new(),
        min: Cents(0),
        highest: None,
        bidder: None,
        ends_at: 0,
        state: auction_protocol::ItemState::Open,
        channel: None,
        winner: None,
        price: None,
        settle_port: None,
        reserve_met: None,
        buy_now: None,
        cancelled: false,
    }
}

/// The TLS client configuration: TLS 1.3 only, trusting `ca` for the server, presenting the
/// account's certificate.
pub fn connector(
    ca: &[rustls::pki_types::CertificateDer<'static>],
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in ca {
        roots
            .add(cert.clone())
            .map_err(|e| ClientError::Local(format!("the CA certificate is not usable: {e}")))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| ClientError::Local(e.to_string()))?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .map_err(|e| ClientError::Local(format!("the account key is not usable: {e}")))?;
    Ok(TlsConnector::from(Arc::new(config)))
}
