//! The client side of the registration plane: one UDP socket, a task that sorts incoming
//! datagrams into answers (by request number) and announcements, and request/response with
//! retransmission (same request number, exponential backoff with jitter, bounded tries), the
//! cookie exchange and request signing.
//!
//! Given several server addresses (the nodes of a cluster), it sends to one at a time: it
//! follows a `redirect` to the leader only when the leader's address is one it was given, and
//! moves on to the next address when one does not answer, so a request outlives a failover.

use auction_protocol::limits::MAX_DATAGRAM;
use auction_protocol::udp::{self, Request, RequestBody, ServerBody};
use auction_protocol::{sign, ItemView, Reason, VERSION};
use ring::signature::Ed25519KeyPair;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::error::{ClientError, Result};

/// Retransmission policy: first wait, growth is x2, capped, and how many sends in all.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub first: Duration,
    pub max: Duration,
    pub tries: u32,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            first: Duration::from_millis(250),
            max: Duration::from_secs(2),
            tries: 7,
        }
    }
}

/// What the dispatcher hands a request waiting for its answer.
enum Incoming {
    /// Boxed: an answer is a few hundred bytes, and the channel holds one per waiter.
    Answer(Box<ServerBody>),
    /// The server's port refused a datagram (ICMP port unreachable, reported on a connected
    /// socket): nothing listens there.
    Refused,
}

type Waiters = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Incoming>>>>;

/// Redirects followed for one request before it gives up (two nodes pointing at each other
/// while a failover settles must not keep it busy for ever).
const MAX_REDIRECTS: u32 = 4;

pub struct UdpClient {
    socket: Arc<UdpSocket>,
    /// Every address the client was given; answers and announcements come from any of them.
    servers: Arc<Vec<SocketAddr>>,
    /// The one requests go to now (an index into `servers`).
    current: AtomicUsize,
    /// Answers in flight, by request number. A std mutex: held for one map operation, never
    /// across `.await`.
    waiters: Waiters,
    announcements: tokio::sync::Mutex<mpsc::UnboundedReceiver<ServerBody>>,
    cookie: Mutex<Option<String>>,
    last_req: Mutex<u64>,
    pub retry: Retry,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl Drop for UdpClient {
    fn drop(&mut self) {
        self.dispatcher.abort();
    }
}

impl UdpClient {
    /// The address requests go to now (the leader, once one answered or redirected).
    pub fn server(&self) -> SocketAddr {
        self.servers[self.current.load(Ordering::Relaxed) % self.servers.len()]
    }

    /// Every address the client was given.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    pub async fn connect(server: SocketAddr) -> Result<UdpClient> {
        UdpClient::connect_from(server, None).await
    }

    /// Like `connect`, sending from `local` (an IP of this machine) when given.
    pub async fn connect_from(server: SocketAddr, local: Option<IpAddr>) -> Result<UdpClient> {
        UdpClient::connect_to_any(vec![server], local).await
    }

    /// A client of whichever of `servers` runs the registration plane, sending from `local`
    /// when given. `servers` must not be empty.
    pub async fn connect_to_any(
        servers: Vec<SocketAddr>,
        local: Option<IpAddr>,
    ) -> Result<UdpClient> {
        let Some(&first) = servers.first() else {
            return Err(ClientError::Local("no server address given".into()));
        };
        let local: SocketAddr = match local {
            Some(ip) => SocketAddr::new(ip, 0),
            None if first.is_ipv4() => "0.0.0.0:0".parse().expect("valid"),
            None => "[::]:0".parse().expect("valid"),
        };
        let socket = UdpSocket::bind(local).await?;
        // With one server the socket is connected to it, so the kernel reports a refused port
        // (no server there) at once instead of the client waiting out every retry.
        if servers.len() == 1 {
            socket.connect(first).await?;
        }
        let socket = Arc::new(socket);
        let waiters: Waiters = Arc::default();
        let (ann_tx, ann_rx) = mpsc::unbounded_channel();
        // With several nodes, a failover (a few seconds) passes while the client keeps asking:
        // waits stay short so it notices the new leader soon after, and more tries cover it.
        let retry = if servers.len() > 1 {
            Retry {
                max: Duration::from_secs(1),
                tries: 12,
                ..Retry::default()
            }
        } else {
            Retry::default()
        };
        let servers = Arc::new(servers);
        let dispatcher = tokio::spawn(dispatch(
            socket.clone(),
            servers.clone(),
            waiters.clone(),
            ann_tx,
        ));
        Ok(UdpClient {
            socket,
            servers,
            current: AtomicUsize::new(0),
            waiters,
            announcements: tokio::sync::Mutex::new(ann_rx),
            cookie: Mutex::new(None),
            last_req: Mutex::new(0),
            retry,
            dispatcher,
        })
    }

    /// A fresh request number: microseconds since the epoch, and always above the last one, so
    /// numbers keep increasing across runs and processes of the same account.
    pub fn next_req(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let mut last = self.last_req.lock().unwrap_or_else(|p| p.into_inner());
        *last = (*last + 1).max(now);
        *last
    }

    /// The next announcement (NEW-ITEM, WIN, SOLD, NOT-SOLD), waiting for one.
    pub async fn next_announcement(&self) -> Option<ServerBody> {
        self.announcements.lock().await.recv().await
    }

    /// Sends `body` (signed with `keys` when given) and returns every datagram of the answer:
    /// one, or all parts of an `items` answer in order.
    pub async fn request(
        &self,
        body: RequestBody,
        keys: Option<&Ed25519KeyPair>,
    ) -> Result<Vec<ServerBody>> {
        let mut reused = 0;
        loop {
            let req = self.next_req();
            let (tx, mut rx) = mpsc::unbounded_channel();
            self.waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(req, tx);
            let result = self.exchange(req, body.clone(), keys, &mut rx).await;
            self.waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&req);
            let collided = matches!(
                result.as_deref(),
                Ok([ServerBody::Error {
                    reason: Reason::RequestReused,
                    ..
                }])
            );
            if !collided || reused >= 5 {
                return result;
            }
            // Another process of this account used the same number (clocks that stand still
            // or step back make that possible): jump ahead by a random amount and try again.
            reused += 1;
            let mut last = self.last_req.lock().unwrap_or_else(|p| p.into_inner());
            *last += rand::random_range(1..1_000_000);
        }
    }

    async fn exchange(
        &self,
        req: u64,
        body: RequestBody,
        keys: Option<&Ed25519KeyPair>,
        rx: &mut mpsc::UnboundedReceiver<Incoming>,
    ) -> Result<Vec<ServerBody>> {
        let mut wait = self.retry.first;
        let mut parts: BTreeMap<u32, ServerBody> = BTreeMap::new();
        let mut sends = 0;
        let mut cookie_refreshes = 0;
        let mut redirects = 0;
        let mut limited: Option<String> = None;
        'send: while sends < self.retry.tries {
            let cookie = self
                .cookie
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let request = Request {
                v: VERSION,
                req,
                cookie,
                body: body.clone(),
            };
            let bytes = udp::encode_request(&request);
            let datagram = match keys {
                Some(keys) => sign::sign_datagram(keys, &bytes),
                None => bytes,
            };
            if datagram.len() > MAX_DATAGRAM {
                return Err(ClientError::Local(format!(
                    "the request is {} bytes, more than the {MAX_DATAGRAM} a datagram may hold",
                    datagram.len()
                )));
            }
            match self.socket.send_to(&datagram, self.server()).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(self.no_server())
                }
                sent => sent?,
            };
            sends += 1;
            let jitter = rand::random_range(0.8..1.2);
            let deadline = tokio::time::Instant::now() + wait.mul_f64(jitter);
            loop {
                let answer = match timeout(deadline - tokio::time::Instant::now(), rx.recv()).await
                {
                    Ok(Some(Incoming::Answer(answer))) => *answer,
                    Ok(Some(Incoming::Refused)) => return Err(self.no_server()),
                    Ok(None) => return Err(ClientError::Protocol("dispatcher stopped".into())),
                    Err(_) => {
                        wait = (wait * 2).min(self.retry.max);
                        // No answer: with several addresses, the next send tries the next one
                        // (this one may be a node that died; the others redirect to the leader).
                        self.current.fetch_add(1, Ordering::Relaxed);
                        continue 'send;
                    }
                };
                match answer {
                    ServerBody::Error {
                        reason: Reason::RateLimited,
                        message,
                        ..
                    } => {
                        // The server drops what this address sends for a while: wait out the
                        // backoff as for a lost answer, then send again.
                        limited = Some(message);
                        tokio::time::sleep_until(deadline).await;
                        wait = (wait * 2).min(self.retry.max);
                        continue 'send;
                    }
                    ServerBody::Cookie { cookie, .. } => {
                        // Address validation: resend at once with the cookie. Bounded, in
                        // case the server and client disagree about it for good.
                        *self.cookie.lock().unwrap_or_else(|p| p.into_inner()) = Some(cookie);
                        cookie_refreshes += 1;
                        if cookie_refreshes > 3 {
                            return Err(ClientError::Protocol(
                                "the server keeps refusing our cookie".into(),
                            ));
                        }
                        sends -= 1;
                        continue 'send;
                    }
                    ServerBody::Redirect { leader, .. } => {
                        // Followed only to an address we were given, and only a few times.
                        let to = leader.parse::<SocketAddr>().ok();
                        let known = to.and_then(|to| self.servers.iter().position(|s| *s == to));
                        if let (Some(i), true) = (known, redirects < MAX_REDIRECTS) {
                            redirects += 1;
                            self.current.store(i, Ordering::Relaxed);
                            sends -= 1;
                            continue 'send;
                        }
                    }
                    ServerBody::Items {
                        part, parts: total, ..
                    }
                    | ServerBody::History {
                        part, parts: total, ..
                    } => {
                        parts.insert(part, answer);
                        if parts.len() as u32 >= total {
                            return Ok(parts.into_values().collect());
                        }
                    }
                    other => return Ok(vec![other]),
                }
            }
        }
        match limited {
            Some(message) => Err(ClientError::Denied {
                reason: Reason::RateLimited,
                message,
            }),
            None => Err(ClientError::Timeout {
                server: self
                    .servers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                tries: self.retry.tries,
            }),
        }
    }

    fn no_server(&self) -> ClientError {
        ClientError::NoServer {
            server: self.server().to_string(),
        }
    }

    /// Sends one request and returns its single answer, turning `error` into `Err`.
    pub async fn request_one(
        &self,
        body: RequestBody,
        keys: Option<&Ed25519KeyPair>,
    ) -> Result<ServerBody> {
        let mut answers = self.request(body, keys).await?;
        let answer = answers
            .pop()
            .ok_or_else(|| ClientError::Protocol("empty answer".into()))?;
        match answer {
            ServerBody::Error {
                reason, message, ..
            } => Err(ClientError::Denied { reason, message }),
            other => Ok(other),
        }
    }

    /// The open items, reassembled from every part of the answer.
    pub async fn list(&self) -> Result<Vec<ItemView>> {
        self.items(RequestBody::List, None).await
    }

    /// A request answered with `items` parts (`list`, `subscriptions`), collected in order.
    pub async fn items(
        &self,
        body: RequestBody,
        keys: Option<&Ed25519KeyPair>,
    ) -> Result<Vec<ItemView>> {
        let mut items = Vec::new();
        for part in self.request(body, keys).await? {
            match part {
                ServerBody::Items { items: some, .. } => items.extend(some),
                ServerBody::Error {
                    reason, message, ..
                } => return Err(ClientError::Denied { reason, message }),
                other => return Err(ClientError::Protocol(format!("{other:?}"))),
            }
        }
        Ok(items)
    }
}

/// Reads every datagram from the servers: answers go to their waiter, announcements to the
/// announcement channel. Datagrams from other addresses, or unreadable ones, are ignored.
async fn dispatch(
    socket: Arc<UdpSocket>,
    servers: Arc<Vec<SocketAddr>>,
    waiters: Waiters,
    announcements: mpsc::UnboundedSender<ServerBody>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            // A connected socket's refused port: every request waiting is told at once.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                let waiting: Vec<_> = waiters
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .cloned()
                    .collect();
                for w in waiting {
                    let _ = w.send(Incoming::Refused);
                }
                continue;
            }
            Err(_) => continue,
        };
        if !servers.contains(&from) {
            continue;
        }
        let Ok(msg) = udp::decode_server(&buf[..n]) else {
            tracing::debug!("ignored an unreadable datagram from the server");
            continue;
        };
        match msg.body.req() {
            Some(req) => {
                let waiter = waiters
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&req)
                    .cloned();
                if let Some(w) = waiter {
                    let _ = w.send(Incoming::Answer(Box::new(msg.body)));
                }
            }
            None => {
                let _ = announcements.send(msg.body);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auction_protocol::limits::RETRANSMIT_SECS;

    /// The server keeps an executed request's answer for `RETRANSMIT_SECS`; the client's last
    /// resend must go out before that, every wait jittered to its longest (+20 %).
    #[tokio::test]
    async fn the_last_resend_goes_out_while_the_server_keeps_the_first_answer() {
        let one = UdpClient::connect("127.0.0.1:9".parse().unwrap())
            .await
            .unwrap();
        let cluster = UdpClient::connect_to_any(
            vec![
                "127.0.0.1:9".parse().unwrap(),
                "127.0.0.2:9".parse().unwrap(),
            ],
            None,
        )
        .await
        .unwrap();
        for retry in [one.retry, cluster.retry] {
            let (mut wait, mut last_send) = (retry.first, Duration::ZERO);
            for _ in 1..retry.tries {
                last_send += wait.mul_f64(1.2);
                wait = (wait * 2).min(retry.max);
            }
            assert!(
                last_send < Duration::from_secs(RETRANSMIT_SECS),
                "the last resend goes out {last_send:?} after the first send"
            );
        }
    }
}
