//! A TLS listener's accept loop that never holds up its task. When `accept` fails (typically
//! out of file descriptors) the listener pauses for a moment before trying again, but the pause
//! lives inside the accept future: the item task (or the desk) that selects on it goes on
//! judging bids and answering meanwhile. The warning is logged at most once a second, with how
//! many failures it stands for, instead of twenty lines a second per item.
//!
//! Owned by the task whose listener it is; cancel-safe (a pause survives the future being
//! dropped by `select!`, because it is kept here, not in the future).

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// How long a listener waits after a failed accept before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// At most one warning about failed accepts per listener in this long.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// Connections the kernel may hold for a listener before it accepts them (capped by
/// `net.core.somaxconn`, 4096 by default on Linux). A flood of bare connections that the
/// listener closes at once passes through this queue; when it is full, a new client's SYN is
/// dropped and that client waits a whole second for its retransmission.
const LISTEN_BACKLOG: u32 = 4096;

/// A TCP listener on `addr` with the deep accept queue above (and `SO_REUSEADDR`, so a port
/// of the item range whose last connections linger in TIME_WAIT can be listened on again).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::from_std(bind_std(addr)?)
}

/// [`bind`] without registering with the runtime yet: the system already queues connections
/// (a restart binds every resumed item's port at once and hands each to the runtime when its
/// task starts: `registry/restore.rs`).
pub(crate) fn bind_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG as i32)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A listener for an item on `ip`: any free port, or the next free one of the item port range
/// after `*next` (which moves on, so a port just given up is not taken again at once).
pub(crate) fn bind_item_port(
    ip: std::net::IpAddr,
    range: crate::config::PortRange,
    next: &mut u16,
) -> std::io::Result<TcpListener> {
    use crate::config::PortRange;
    match range {
        PortRange::Ephemeral => bind(SocketAddr::new(ip, 0)),
        PortRange::Range(lo, hi) => {
            for _ in 0..=u32::from(hi - lo) {
                let port = (*next).clamp(lo, hi);
                *next = if port == hi { lo } else { port + 1 };
                if let Ok(listener) = bind(SocketAddr::new(ip, port)) {
                    return Ok(listener);
                }
            }
            Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("every port in {lo}-{hi} is in use"),
            ))
        }
    }
}

/// [`bind_std`] for each given port on `ip` (`None`: nothing to bind), spread over as many
/// threads as the machine has cores: after a restart with thousands of open items, binding
/// their ports again is most of the time before the server answers. In the order given.
pub(crate) fn bind_all(
    ip: std::net::IpAddr,
    ports: &[Option<u16>],
) -> Vec<Option<std::io::Result<std::net::TcpListener>>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let chunk = ports.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = ports
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|port| port.map(|port| bind_std(SocketAddr::new(ip, port))))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Where connections come from: a TCP listener, or a stand-in in tests.
pub(crate) trait Source {
    type Stream;
    async fn accept(&self) -> std::io::Result<(Self::Stream, SocketAddr)>;
}

impl Source for TcpListener {
    type Stream = TcpStream;
    async fn accept(&self) -> std::io::Result<(TcpStream, SocketAddr)> {
        TcpListener::accept(self).await
    }
}

pub(crate) struct Listener<S = TcpListener> {
    source: S,
    /// No accept before this, after a failure.
    paused_until: Option<Instant>,
    /// When the last warning was logged, and the failures since.
    warned_at: Option<Instant>,
    failures: u64,
}

impl<S: Source> Listener<S> {
    pub(crate) fn new(source: S) -> Listener<S> {
        Listener {
            source,
            paused_until: None,
            warned_at: None,
            failures: 0,
        }
    }

    /// The next connection. Failures are paused over and reported here, never to the caller.
    pub(crate) async fn accept(&mut self) -> (S::Stream, SocketAddr) {
        loop {
            if let Some(until) = self.paused_until {
                tokio::time::sleep_until(until).await;
                self.paused_until = None;
            }
            match self.source.accept().await {
                Ok(accepted) => return accepted,
                Err(e) => self.failed(&e),
            }
        }
    }

    fn failed(&mut self, e: &std::io::Error) {
        let now = Instant::now();
        self.failures += 1;
        self.paused_until = Some(now + ACCEPT_BACKOFF);
        if self.warned_at.is_none_or(|at| now >= at + WARN_EVERY) {
            tracing::warn!(error = %e, failures = self.failures, "accept failed; pausing this listener briefly");
            self.warned_at = Some(now);
            self.failures = 0;
        }
    }

    /// Failures not reported yet (for tests).
    #[cfg(test)]
    fn unreported(&self) -> u64 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Fails `fail` times, then never has a connection.
    struct Failing {
        fail: Cell<u32>,
        tries: Cell<u32>,
    }

    impl Source for Failing {
        type Stream = ();
        async fn accept(&self) -> std::io::Result<((), SocketAddr)> {
            self.tries.set(self.tries.get() + 1);
            if self.fail.get() > 0 {
                self.fail.set(self.fail.get() - 1);
                return Err(std::io::Error::other("too many open files"));
            }
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_accept_pauses_itself_not_the_task_that_selects_on_it() {
        let mut listener = Listener::new(Failing {
            fail: Cell::new(100),
            tries: Cell::new(0),
        });
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let start = Instant::now();
        // The task's other work (a bid, here a message) is handled at once, while the listener
        // is failing and pausing.
        for n in 0..5u32 {
            tx.send(n).await.unwrap();
            tokio::select! {
                _ = listener.accept() => panic!("no connection is coming"),
                got = rx.recv() => assert_eq!(got, Some(n)),
            }
        }
        assert_eq!(
            Instant::now(),
            start,
            "no time passed: nothing waited for the listener"
        );
        // Left alone for a second, it tries again every 50 ms, not in a spin.
        let _ = tokio::time::timeout(Duration::from_millis(990), listener.accept()).await;
        let tries = listener.source.tries.get();
        assert_eq!(tries, 20, "the first, then one every 50 ms");
        // One warning for the first failure, then at most one a second: the rest are counted.
        assert!(listener.unreported() >= 15, "{}", listener.unreported());
    }
}
