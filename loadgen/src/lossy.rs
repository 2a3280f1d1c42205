//! A faulty network for the UDP plane: an in-process proxy that drops, duplicates, delays and
//! thereby reorders datagrams, both ways, with a seeded random generator.
//!
//! Clients send to the proxy's address. For each client address the proxy opens its own
//! upstream socket, so the server sees one stable source per client (cookies and announcement
//! addresses keep working) and its answers and announcements find their way back.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// What the network does to each datagram, independently, in each direction.
#[derive(Debug, Clone, Copy)]
pub struct Loss {
    /// Probability that a datagram is lost.
    pub drop: f64,
    /// Probability that a datagram that gets through arrives twice.
    pub duplicate: f64,
    /// Each copy is delayed uniformly in [0, max_delay]: datagrams overtake each other.
    pub max_delay: Duration,
    pub seed: u64,
}

impl Loss {
    pub fn none() -> Loss {
        Loss {
            drop: 0.0,
            duplicate: 0.0,
            max_delay: Duration::ZERO,
            seed: 0,
        }
    }
}

/// Datagrams the proxy saw, lost and duplicated (both directions).
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub seen: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
}

pub struct LossyProxy {
    /// Where clients send instead of the server.
    pub addr: SocketAddr,
    pub stats: Arc<ProxyStats>,
    task: JoinHandle<()>,
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Faults {
    loss: Loss,
    rng: Mutex<StdRng>,
    stats: Arc<ProxyStats>,
}

impl Faults {
    /// Sends `datagram` from `socket` to `to` as the faulty network would: maybe not at all,
    /// maybe twice, each copy after its own delay.
    fn pass(&self, socket: &Arc<UdpSocket>, datagram: &[u8], to: SocketAddr) {
        self.stats.seen.fetch_add(1, Ordering::Relaxed);
        let delays: Vec<Duration> = {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            if rng.random_bool(self.loss.drop.clamp(0.0, 1.0)) {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let copies = if rng.random_bool(self.loss.duplicate.clamp(0.0, 1.0)) {
                self.stats.duplicated.fetch_add(1, Ordering::Relaxed);
                2
            } else {
                1
            };
            (0..copies)
                .map(|_| self.loss.max_delay.mul_f64(rng.random_range(0.0..=1.0)))
                .collect()
        };
        for delay in delays {
            let socket = socket.clone();
            let datagram = datagram.to_vec();
            tokio::spawn(async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let _ = socket.send_to(&datagram, to).await;
            });
        }
    }
}

impl LossyProxy {
    /// A proxy on 127.0.0.1 in front of the UDP server at `upstream`.
    pub async fn start(upstream: SocketAddr, loss: Loss) -> std::io::Result<LossyProxy> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = front.local_addr()?;
        let stats = Arc::new(ProxyStats::default());
        let faults = Arc::new(Faults {
            loss,
            rng: Mutex::new(StdRng::seed_from_u64(loss.seed)),
            stats: stats.clone(),
        });
        let task = tokio::spawn(async move {
            let mut clients: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            // Aborted with this task (the JoinSet is dropped with it).
            let mut backs = tokio::task::JoinSet::new();
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, client)) = front.recv_from(&mut buf).await else {
                    continue;
                };
                let up = match clients.get(&client) {
                    Some(up) => up.clone(),
                    None => {
                        let Ok(up) = UdpSocket::bind("127.0.0.1:0").await else {
                            continue;
                        };
                        let up = Arc::new(up);
                        // The way back: whatever the server sends this client's socket.
                        let (back_up, back_front, back_faults) =
                            (up.clone(), front.clone(), faults.clone());
                        backs.spawn(async move {
                            let mut buf = vec![0u8; 65536];
                            while let Ok((n, _)) = back_up.recv_from(&mut buf).await {
                                back_faults.pass(&back_front, &buf[..n], client);
                            }
                        });
                        clients.insert(client, up.clone());
                        up
                    }
                };
                faults.pass(&up, &buf[..n], upstream);
            }
        });
        Ok(LossyProxy { addr, stats, task })
    }
}
