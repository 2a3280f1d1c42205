//! Typed async client for the auction server, used by the `auction-client` command line and by
//! the load generator. [`Client`] speaks the UDP registration plane (signing requests with the
//! identity's key); [`ItemChannel`] is one mutual-TLS bidding channel.

pub mod channel;
pub mod error;
pub mod identity;
pub mod session;
pub mod settle;
pub mod udp;

use auction_protocol::udp::{
    check_sequence, AttachMode, HistoryBid, NegotiateAnswer, RequestBody, SeqCheck, ServerBody,
};
use auction_protocol::{Cents, ItemView, PublicKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An item's bid history as `history` answers it: the latest bids (numbered, removed ones
/// marked with the operator's note), whether it has older ones, and the operator's
/// cancellation of the item, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub more: bool,
    pub bids: Vec<HistoryBid>,
    pub cancelled: Option<auction_protocol::udp::Cancellation>,
}

pub use channel::{BidResult, ChannelReader, ChannelWriter, ItemChannel, Offer, Received};
pub use error::{ClientError, Result};
pub use identity::Identity;
pub use session::{ItemSession, Reconnect, SessionEvent};
pub use settle::SettleConnection;
pub use udp::UdpClient;

/// What [`Client::next_update`] hands the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// An announcement, in order.
    Announcement(ServerBody),
    /// Announcements were missed (a gap in their numbers, or the server restarted): `items`
    /// is the current state of every subscribed item, and `open` every open item (so the
    /// NEW-ITEMs that were missed are there), both read just now. The announcement that
    /// revealed the gap follows.
    Resynced {
        /// How many numbers were skipped; `None` when the server restarted.
        missed: Option<u64>,
        items: Vec<ItemView>,
        open: Vec<ItemView>,
    },
}

/// What ATTACHED says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachInfo {
    /// Notices waiting for the account (they follow as announcements).
    pub pending: u32,
    /// This client became one of the account's devices just now.
    pub moved: bool,
    /// Devices that get the account's announcements now, this one included (0: the server
    /// does not say).
    pub devices: u32,
}

/// An offer's prices besides the minimum, each optional (see PROTOCOL.md's `offer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Terms {
    /// The reserve price: hidden from bidders; below it the item is not sold.
    pub reserve: Option<Cents>,
    /// The buy-it-now price.
    pub buy_now: Option<Cents>,
}

/// What OFFER-CONF says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    pub item: u64,
    pub channel: String,
    pub ends_at: u64,
}

pub struct Client {
    pub udp: UdpClient,
    pub identity: Identity,
    ca_path: PathBuf,
    connector: tokio::sync::OnceCell<tokio_rustls::TlsConnector>,
    /// Notice ids already handed to the application, so a retransmitted WIN is shown once.
    seen_notices: Mutex<HashSet<u64>>,
    /// Notices received and not yet handed over (see `next_announcement`).
    ready: Mutex<std::collections::VecDeque<ServerBody>>,
    /// The last announcement number seen: (epoch, seq).
    last_seq: Mutex<Option<(u64, u64)>>,
    /// The announcement that revealed a gap, handed over right after [`Update::Resynced`].
    revealed: Mutex<Option<ServerBody>>,
    /// The local IP requests and connections go out from, when chosen (a multi-homed machine).
    local: Option<IpAddr>,
}

impl Client {
    /// A client of the server at `server`, with the identity kept in `home` (created on first
    /// use), trusting `ca` for item channels.
    pub async fn new(server: SocketAddr, home: &Path, ca: &Path) -> anyhow::Result<Client> {
        Client::new_from(server, home, ca, None).await
    }

    /// Like `new`, sending UDP and opening channels from the local IP `local` when given (a
    /// multi-homed machine).
    pub async fn new_from(
        server: SocketAddr,
        home: &Path,
        ca: &Path,
        local: Option<IpAddr>,
    ) -> anyhow::Result<Client> {
        let identity = Identity::load_or_create(home)?;
        Ok(Client::with_identity_from(server, identity, ca, local).await?)
    }

    /// A client of the server at `server` with an identity made elsewhere (for instance
    /// [`Identity::ephemeral`]), trusting `ca` for item channels.
    pub async fn with_identity(
        server: SocketAddr,
        identity: Identity,
        ca: &Path,
    ) -> Result<Client> {
        Client::with_identity_from(server, identity, ca, None).await
    }

    pub async fn with_identity_from(
        server: SocketAddr,
        identity: Identity,
        ca: &Path,
        local: Option<IpAddr>,
    ) -> Result<Client> {
        Client::of_any(vec![server], identity, ca, local).await
    }

    /// A client of whichever of `servers` (the nodes of a cluster) runs the registration
    /// plane: it follows redirects among them and moves on when one does not answer (see
    /// `udp.rs`). Otherwise as [`Client::with_identity_from`].
    pub async fn of_any(
        servers: Vec<SocketAddr>,
        identity: Identity,
        ca: &Path,
        local: Option<IpAddr>,
    ) -> Result<Client> {
        Ok(Client {
            udp: UdpClient::connect_to_any(servers, local).await?,
            identity,
            ca_path: ca.to_owned(),
            connector: tokio::sync::OnceCell::new(),
            seen_notices: Mutex::new(HashSet::new()),
            ready: Mutex::new(std::collections::VecDeque::new()),
            last_seq: Mutex::new(None),
            revealed: Mutex::new(None),
            local,
        })
    }

    /// Sends a request signed with this identity's key; its (single-datagram) answer.
    async fn signed(&self, body: RequestBody) -> Result<ServerBody> {
        self.udp.request_one(body, Some(self.identity.keys())).await
    }

    /// The account name this identity is registered under.
    pub fn name(&self) -> Result<String> {
        self.identity.account_name().ok_or_else(|| {
            ClientError::Local(
                "no account in this home directory: run `register NAME` first".into(),
            )
        })
    }

    pub async fn register(&self, name: &str) -> Result<()> {
        let body = RequestBody::Register {
            name: name.to_owned(),
            key: self.identity.public,
        };
        match self.signed(body).await? {
            ServerBody::Registered { .. } => {
                self.identity
                    .save_account_name(name)
                    .map_err(|e| ClientError::Local(format!("{e:#}")))?;
                Ok(())
            }
            other => Err(refusal(other)),
        }
    }

    pub async fn deregister(&self) -> Result<()> {
        let body = RequestBody::Deregister {
            account: self.name()?,
        };
        match self.signed(body).await? {
            ServerBody::DeregConf { .. } => {
                self.identity
                    .forget_account_name()
                    .map_err(|e| ClientError::Local(format!("{e:#}")))?;
                Ok(())
            }
            other => Err(refusal(other)),
        }
    }

    pub async fn offer(
        &self,
        description: &str,
        min: Cents,
        duration_secs: Option<u64>,
    ) -> Result<Offered> {
        self.offer_with(description, min, duration_secs, Terms::default())
            .await
    }

    /// `offer` with a reserve and a buy-it-now price.
    pub async fn offer_with(
        &self,
        description: &str,
        min: Cents,
        duration_secs: Option<u64>,
        terms: Terms,
    ) -> Result<Offered> {
        let body = RequestBody::Offer {
            account: self.name()?,
            description: description.to_owned(),
            min,
            duration: duration_secs,
            reserve: terms.reserve,
            buy_now: terms.buy_now,
        };
        match self.signed(body).await? {
            ServerBody::OfferConf {
                item,
                channel,
                ends_at,
                ..
            } => Ok(Offered {
                item,
                channel,
                ends_at,
            }),
            other => Err(refusal(other)),
        }
    }

    pub async fn list(&self) -> Result<Vec<ItemView>> {
        self.udp.list().await
    }

    /// The item's latest accepted bids (at most `limits::HISTORY_BIDS`), oldest first, and
    /// whether it has older ones.
    pub async fn history(&self, item: u64) -> Result<History> {
        let mut history = History::default();
        for part in self
            .udp
            .request(RequestBody::History { item }, None)
            .await?
        {
            match part {
                ServerBody::History {
                    more,
                    bids,
                    cancelled,
                    ..
                } => {
                    history.more |= more;
                    history.bids.extend(bids);
                    history.cancelled = history.cancelled.or(cancelled);
                }
                other => return Err(refusal(other)),
            }
        }
        Ok(history)
    }

    pub async fn status(&self, item: u64) -> Result<ItemView> {
        match self
            .udp
            .request_one(RequestBody::Status { item }, None)
            .await?
        {
            ServerBody::Status { item, .. } => Ok(item),
            other => Err(refusal(other)),
        }
    }

    /// Asks the server to send this account's announcements to this client's socket; returns
    /// how many notices are pending (they follow as announcements).
    pub async fn attach(&self) -> Result<u32> {
        Ok(self.attach_as(AttachMode::Login).await?.pending)
    }

    /// ATTACH in `mode`. `Keep` is refused with `moved` once this client is no longer one of
    /// the account's devices (newer ones took its place).
    pub async fn attach_as(&self, mode: AttachMode) -> Result<AttachInfo> {
        let body = RequestBody::Attach {
            account: self.name()?,
            mode,
        };
        match self.signed(body).await? {
            ServerBody::Attached {
                pending,
                moved,
                devices,
                seq,
                epoch,
                ..
            } => {
                // A client that has seen no announcement yet starts counting where the server
                // stands, so a gap from here on (announcements the server dropped for this
                // account, or lost) is seen as one. One that has seen some keeps its count:
                // the numbers, or a new epoch, tell it what it missed meanwhile.
                let mut last = self.last_seq.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_none() && epoch != 0 {
                    *last = Some((epoch, seq));
                }
                Ok(AttachInfo {
                    pending,
                    moved,
                    devices,
                })
            }
            other => Err(refusal(other)),
        }
    }

    /// DETACH: this client no longer gets the account's announcements (a `watch` or shell
    /// that ends gives its place back).
    pub async fn detach(&self) -> Result<()> {
        let body = RequestBody::Detach {
            account: self.name()?,
        };
        match self.signed(body).await? {
            ServerBody::Detached { .. } => Ok(()),
            other => Err(refusal(other)),
        }
    }

    pub async fn ack(&self, notice: u64) -> Result<()> {
        let body = RequestBody::Ack {
            account: self.name()?,
            notice,
        };
        match self.signed(body).await? {
            ServerBody::Acked { .. } => Ok(()),
            other => Err(refusal(other)),
        }
    }

    /// Follows item `item`'s bids over UDP without joining its channel: BID-UPDATE on every
    /// new highest bid and ITEM-CLOSED at the end arrive as announcements. Returns its state.
    pub async fn subscribe(&self, item: u64) -> Result<ItemView> {
        let body = RequestBody::Subscribe {
            account: self.name()?,
            item,
        };
        match self.signed(body).await? {
            ServerBody::Subscribed { item, .. } => Ok(item),
            other => Err(refusal(other)),
        }
    }

    pub async fn unsubscribe(&self, item: u64) -> Result<()> {
        let body = RequestBody::Unsubscribe {
            account: self.name()?,
            item,
        };
        match self.signed(body).await? {
            ServerBody::Unsubscribed { .. } => Ok(()),
            other => Err(refusal(other)),
        }
    }

    /// Answers NEGOTIATE-REQ for one of this account's items: `Some(min)` accepts with that
    /// new, lower minimum, `None` refuses. Returns the new minimum, if any.
    pub async fn negotiate(&self, item: u64, accept: Option<Cents>) -> Result<Option<Cents>> {
        let body = RequestBody::Negotiate {
            account: self.name()?,
            item,
            answer: match accept {
                Some(_) => NegotiateAnswer::Accept,
                None => NegotiateAnswer::Refuse,
            },
            min: accept,
        };
        match self.signed(body).await? {
            ServerBody::Negotiated { min, .. } => Ok(min),
            other => Err(refusal(other)),
        }
    }

    /// As the server's operator (the account registered with its `--operator-key`): ends the
    /// open item `item` now, unsold, saying why in `note`.
    pub async fn cancel_item(&self, item: u64, note: &str) -> Result<()> {
        let body = RequestBody::CancelItem {
            account: self.name()?,
            item,
            note: note.to_owned(),
        };
        match self.signed(body).await? {
            ServerBody::ItemCancelled { .. } => Ok(()),
            other => Err(refusal(other)),
        }
    }

    /// As the server's operator: removes the accepted bid numbered `bid` (as `history` shows
    /// it) from the open item `item`, saying why in `note`. Returns the highest bid and its
    /// bidder after it, `None` when no bid is left.
    pub async fn remove_bid(
        &self,
        item: u64,
        bid: u64,
        note: &str,
    ) -> Result<Option<(Cents, String)>> {
        let body = RequestBody::RemoveBid {
            account: self.name()?,
            item,
            bid,
            note: note.to_owned(),
        };
        match self.signed(body).await? {
            ServerBody::BidRemoved {
                highest: Some(h),
                bidder: Some(b),
                ..
            } => Ok(Some((h, b))),
            ServerBody::BidRemoved { .. } => Ok(None),
            other => Err(refusal(other)),
        }
    }

    /// This client's public key (what a server's `--operator-key` names) and account name.
    pub fn whoami(&self) -> (PublicKey, Option<String>) {
        (self.identity.public, self.identity.account_name())
    }

    /// The current state of every item this account follows.
    pub async fn subscriptions(&self) -> Result<Vec<ItemView>> {
        let body = RequestBody::Subscriptions {
            account: self.name()?,
        };
        self.udp.items(body, Some(self.identity.keys())).await
    }

    /// Like [`Client::next_announcement`], and watching announcement numbers: when some were
    /// missed (a gap, or a server restart), it first reads the current state of the subscribed
    /// items and the open items and hands that over as [`Update::Resynced`]. Late (reordered) or repeated
    /// announcements are dropped: the state read meanwhile is newer.
    pub async fn next_update(&self) -> Option<Update> {
        if let Some(msg) = self
            .revealed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Some(Update::Announcement(msg));
        }
        loop {
            let msg = self.next_announcement().await?;
            let Some((epoch, seq)) = msg.sequence() else {
                return Some(Update::Announcement(msg));
            };
            let check = {
                let mut last = self.last_seq.lock().unwrap_or_else(|p| p.into_inner());
                let check = check_sequence(*last, (epoch, seq));
                if check != SeqCheck::Late {
                    *last = Some((epoch, seq));
                }
                check
            };
            let missed = match check {
                SeqCheck::Late => continue,
                SeqCheck::InOrder => return Some(Update::Announcement(msg)),
                SeqCheck::Missed(missed) => missed,
            };
            let items = match self.subscriptions().await {
                Ok(items) => items,
                Err(e) => {
                    tracing::warn!(error = %e, "could not re-read the subscribed items");
                    Vec::new()
                }
            };
            let open = match self.udp.list().await {
                Ok(open) => open,
                Err(e) => {
                    tracing::warn!(error = %e, "could not re-read the open items");
                    Vec::new()
                }
            };
            *self.revealed.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
            return Some(Update::Resynced {
                missed,
                items,
                open,
            });
        }
    }

    /// The next announcement for the application. Notices (WIN, SOLD, NOT-SOLD,
    /// NEGOTIATE-REQ) are acknowledged to
    /// the server and handed over once each, however often they were retransmitted.
    ///
    /// Cancel-safe (it may lose a `select!`): a notice is queued for the application before
    /// its acknowledgement is sent, so a call dropped while acknowledging cannot lose it even
    /// if the server got the ack (and so will not send the notice again).
    pub async fn next_announcement(&self) -> Option<ServerBody> {
        loop {
            if let Some(msg) = self
                .ready
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front()
            {
                return Some(msg);
            }
            let msg = self.udp.next_announcement().await?;
            let Some(notice) = msg.notice() else {
                return Some(msg);
            };
            let first_time = self
                .seen_notices
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(notice);
            if first_time {
                self.ready
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_back(msg);
            }
            // Every copy is acknowledged: the server retransmits until one ack gets through.
            if let Err(e) = self.ack(notice).await {
                tracing::warn!(notice, error = %e, "could not acknowledge a notice");
            }
        }
    }

    async fn connector(&self) -> Result<&tokio_rustls::TlsConnector> {
        self.connector
            .get_or_try_init(|| async {
                let pem = std::fs::read(&self.ca_path).map_err(|e| {
                    ClientError::Local(format!(
                        "cannot read the CA certificate {}: {e} (pass --ca, or copy the server's certs/ca.pem)",
                        self.ca_path.display()
                    ))
                })?;
                let ca: Vec<_> = CertificateDer::pem_slice_iter(&pem)
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| {
                        ClientError::Local(format!(
                            "{}: {}",
                            self.ca_path.display(),
                            identity::describe_pem_error(&e)
                        ))
                    })?;
                let (chain, key) = self.identity.tls_credentials();
                channel::connector(&ca, chain, key)
            })
            .await
    }

    /// Opens the bidding channel at `channel` (`host:port`).
    pub async fn open_channel(&self, channel: &str) -> Result<ItemChannel> {
        ItemChannel::open(self.connector().await?, channel, self.local).await
    }

    /// Opens the bidding channel of `item` at `channel`, and makes sure it is that item's: a
    /// channel looked up a moment ago may have moved (a restart gave its port to another item),
    /// and a bid resent there must not land on an item the bidder never chose. Another item's
    /// channel is a lost connection ([`ClientError::Tls`]): look the item up again.
    pub async fn open_channel_of(&self, item: u64, channel: &str) -> Result<ItemChannel> {
        let ch = self.open_channel(channel).await?;
        if ch.item.item != item {
            let other = ch.item.item;
            ch.close().await;
            return Err(ClientError::Tls(format!(
                "the channel at {channel} is item {other}'s now, not item {item}'s; look the item up again"
            )));
        }
        Ok(ch)
    }

    /// Looks the sold item up and connects to the settlement desk that completes its sale.
    pub async fn open_settlement(&self, item: u64) -> Result<SettleConnection> {
        let view = self.status(item).await?;
        let Some(port) = view.settle_port else {
            let message = match view.state {
                auction_protocol::ItemState::Open => format!("item {item} is still open"),
                auction_protocol::ItemState::Closed => {
                    format!("item {item} closed without a bid: there is no sale to settle")
                }
            };
            return Err(ClientError::Denied {
                reason: auction_protocol::Reason::WrongState,
                message,
            });
        };
        // On the server's host, as the client addresses it (see `ItemView::settle_port`).
        let addr = SocketAddr::new(self.udp.server().ip(), port).to_string();
        SettleConnection::open(self.connector().await?, &addr, self.local).await
    }

    /// Looks the item up and opens its bidding channel.
    /// Several nodes: an open item without a channel is moving to another node, which opens
    /// it within moments; this waits up to `MOVING_WAIT` for it, looking again every
    /// `MOVING_POLL`.
    pub async fn open_item(&self, item: u64) -> Result<ItemChannel> {
        let deadline = tokio::time::Instant::now() + MOVING_WAIT;
        loop {
            let view = self.status(item).await?;
            match view.channel {
                Some(channel) => return self.open_channel_of(item, &channel).await,
                None if view.state == auction_protocol::ItemState::Open
                    && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(MOVING_POLL).await
                }
                None => return Err(no_channel(item, &view)),
            }
        }
    }
}

/// How long [`Client::open_item`] waits for a moving item's channel, and how often it looks.
const MOVING_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
const MOVING_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Why an item has no channel to join: it is closed, or (several nodes) open while it moves
/// to another node, which opens its channel in a moment (`unavailable`: try again).
pub(crate) fn no_channel(item: u64, view: &ItemView) -> ClientError {
    match view.state {
        auction_protocol::ItemState::Open => ClientError::Denied {
            reason: auction_protocol::Reason::Unavailable,
            message: format!(
                "item {item} is open but its channel is not: it is moving to another node; try again in a moment"
            ),
        },
        _ => ClientError::Denied {
            reason: auction_protocol::Reason::AuctionOver,
            message: format!("item {item} is closed"),
        },
    }
}

/// Turns a refusal (`*-denied`, `error`) or an unexpected answer into an error.
fn refusal(body: ServerBody) -> ClientError {
    match body {
        ServerBody::RegisterDenied {
            reason, message, ..
        }
        | ServerBody::DeregDenied {
            reason, message, ..
        }
        | ServerBody::OfferDenied {
            reason, message, ..
        }
        | ServerBody::SubscriptionDenied {
            reason, message, ..
        }
        | ServerBody::NegotiateDenied {
            reason, message, ..
        }
        | ServerBody::OperatorDenied {
            reason, message, ..
        }
        | ServerBody::Error {
            reason, message, ..
        } => ClientError::Denied { reason, message },
        other => ClientError::Protocol(format!("unexpected answer {other:?}")),
    }
}

/// Resolves a comma-separated list of `host:port` (the nodes of a cluster, or one server) to
/// one socket address each, in order.
pub async fn resolve_all(servers: &str) -> Result<Vec<SocketAddr>> {
    let mut all = Vec::new();
    for server in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let addr = resolve(server).await?;
        if !all.contains(&addr) {
            all.push(addr);
        }
    }
    if all.is_empty() {
        return Err(ClientError::Local("no server address given".into()));
    }
    Ok(all)
}

/// Resolves `host:port` to one socket address.
pub async fn resolve(server: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(server)
        .await
        .map_err(|e| ClientError::Local(format!("cannot resolve '{server}': {e}")))?
        .next()
        .ok_or_else(|| ClientError::Local(format!("'{server}' resolves to no address")))
}
