//! The connection budgets of item channels and the settlement desk, kept apart so that strangers
//! can never take a bidder's place:
//!
//! - **Handshakes in progress**, per source and in all. A TCP connection takes a handshake slot
//!   the moment it is accepted and gives it back when its TLS handshake ends, however it ends.
//!   Over either budget it is closed at once, before any TLS work: a host that opens thousands
//!   of bare TCP connections holds at most its own few slots, and only for the handshake
//!   timeout.
//! - **Joined connections**, per account and in all. Only a connection whose client certificate
//!   names a live account takes one, after its handshake; over the budget it is told why
//!   (`server-full`, `too-many-connections`) over TLS and closed.
//!
//! A source is an IPv4 address, or an IPv6 /64 (what one host or one home network is usually
//! given, so that a host cannot take a fresh source per address).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::accounts::AccountHandle;
use crate::rules::ratelimit::source_of;

/// The budgets, as configured (after fitting them to the open-files limit).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub handshakes: usize,
    pub handshakes_per_source: usize,
    pub connections: usize,
    pub connections_per_account: usize,
}

/// Why a new connection was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// This source has as many handshakes in progress as it may.
    HandshakesPerSource,
    /// The server has as many handshakes in progress as it may.
    Handshakes,
    /// The server holds as many joined connections as it may.
    Connections,
    /// This account holds as many joined connections as it may.
    ConnectionsPerAccount,
}

impl Over {
    /// The label of the refusal in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Over::HandshakesPerSource => "handshakes-per-source",
            Over::Handshakes => "handshakes",
            Over::Connections => "server-full",
            Over::ConnectionsPerAccount => "too-many-connections",
        }
    }
}

/// Both budgets of the server: shared by every listener.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    handshakes: Arc<Semaphore>,
    per_source: Arc<Mutex<HashMap<IpAddr, usize>>>,
    joined: Arc<Semaphore>,
}

/// A handshake in progress: its slot in both handshake budgets, given back on drop.
#[derive(Debug)]
pub struct Handshaking {
    _permit: OwnedSemaphorePermit,
    source: IpAddr,
    per_source: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        let mut map = self.per_source.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.source);
            }
        }
    }
}

/// A joined connection: its place in the server's budget and in its account's, given back on
/// drop.
#[derive(Debug)]
pub struct Joined {
    _permit: OwnedSemaphorePermit,
    account: Arc<AccountHandle>,
}

impl Drop for Joined {
    fn drop(&mut self) {
        self.account.joined.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Admission {
    /// The budgets `config` sets (`--max-handshakes` and the others).
    pub fn of(config: &crate::config::Config) -> Admission {
        Admission::new(Limits {
            handshakes: config.max_handshakes,
            handshakes_per_source: config.max_handshakes_per_source,
            connections: config.max_connections,
            connections_per_account: config.max_connections_per_account,
        })
    }

    pub fn new(limits: Limits) -> Admission {
        Admission {
            limits,
            handshakes: Arc::new(Semaphore::new(limits.handshakes)),
            per_source: Arc::default(),
            joined: Arc::new(Semaphore::new(limits.connections)),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A slot for one handshake from `ip`, or which budget is spent.
    pub fn start_handshake(&self, ip: IpAddr) -> Result<Handshaking, Over> {
        let source = source_of(ip);
        let mut map = self.per_source.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.get(&source).copied().unwrap_or(0);
        if n >= self.limits.handshakes_per_source {
            return Err(Over::HandshakesPerSource);
        }
        let permit = self
            .handshakes
            .clone()
            .try_acquire_owned()
            .map_err(|_| Over::Handshakes)?;
        map.insert(source, n + 1);
        Ok(Handshaking {
            _permit: permit,
            source,
            per_source: self.per_source.clone(),
        })
    }

    /// A place for one more joined connection of `account`, or which budget is spent.
    pub fn join(&self, account: &Arc<AccountHandle>) -> Result<Joined, Over> {
        let permit = self
            .joined
            .clone()
            .try_acquire_owned()
            .map_err(|_| Over::Connections)?;
        let cap = self.limits.connections_per_account;
        let taken = account
            .joined
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < cap).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(Over::ConnectionsPerAccount);
        }
        Ok(Joined {
            _permit: permit,
            account: account.clone(),
        })
    }

    /// Handshakes in progress, server-wide.
    #[cfg(test)]
    pub fn handshaking(&self) -> usize {
        self.limits.handshakes - self.handshakes.available_permits()
    }

    /// Joined connections, server-wide.
    #[cfg(test)]
    pub fn joined(&self) -> usize {
        self.limits.connections - self.joined.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auction_protocol::PublicKey;

    fn limits() -> Limits {
        Limits {
            handshakes: 3,
            handshakes_per_source: 2,
            connections: 3,
            connections_per_account: 2,
        }
    }

    fn account(id: u64) -> Arc<AccountHandle> {
        Arc::new(AccountHandle::new(
            id,
            format!("a{id}"),
            PublicKey([id as u8; 32]),
        ))
    }

    #[test]
    fn a_source_holds_only_its_own_handshakes_and_gets_them_back() {
        let admission = Admission::new(limits());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = admission.start_handshake(a).unwrap();
        let _second = admission.start_handshake(a).unwrap();
        assert_eq!(
            admission.start_handshake(a).unwrap_err(),
            Over::HandshakesPerSource
        );
        // Another source still gets in, up to the server-wide budget.
        let _third = admission.start_handshake(b).unwrap();
        assert_eq!(admission.start_handshake(b).unwrap_err(), Over::Handshakes);
        assert_eq!(admission.handshaking(), 3);
        drop(first);
        assert_eq!(admission.handshaking(), 2);
        let _again = admission.start_handshake(a).unwrap();
        assert_eq!(
            admission.start_handshake(a).unwrap_err(),
            Over::HandshakesPerSource
        );
    }

    #[test]
    fn an_ipv6_host_is_one_source_per_64_and_mapped_ipv4_is_ipv4() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let same: IpAddr = "2001:db8:1:2:bbbb::7".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_of(one), source_of(same));
        assert_ne!(source_of(one), source_of(other));
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().unwrap();
        assert_eq!(source_of(mapped), "192.0.2.9".parse::<IpAddr>().unwrap());

        let admission = Admission::new(limits());
        let _x = admission.start_handshake(one).unwrap();
        let _y = admission.start_handshake(same).unwrap();
        assert_eq!(
            admission.start_handshake(one).unwrap_err(),
            Over::HandshakesPerSource
        );
        admission.start_handshake(other).unwrap();
    }

    #[test]
    fn joined_connections_are_bounded_per_account_and_in_all() {
        let admission = Admission::new(limits());
        let (alice, bob) = (account(1), account(2));
        let a1 = admission.join(&alice).unwrap();
        let _a2 = admission.join(&alice).unwrap();
        assert_eq!(
            admission.join(&alice).unwrap_err(),
            Over::ConnectionsPerAccount
        );
        // The refusal gave its server-wide place back.
        let _b1 = admission.join(&bob).unwrap();
        assert_eq!(admission.join(&bob).unwrap_err(), Over::Connections);
        assert_eq!(admission.joined(), 3);
        drop(a1);
        assert_eq!(alice.joined.load(Ordering::SeqCst), 1);
        let _b2 = admission.join(&bob).unwrap();
        assert_eq!(admission.joined(), 3);
    }
}
