//! Where one account's announcements go: its devices, a few addresses at once (a `watch`, a
//! shell, a laptop and a desk machine), the one heard from least recently first. Owned by the
//! registry task, one list inside each account; REGISTER, ATTACH and DETACH change it, and the
//! whole list is appended (`Record::AccountAttached`) with the request's answer, so the
//! eviction it may cause is said only once the new list is durable. Pure: no I/O, no clock.
//!
//! Every announcement and every notice goes to each device; a notice is delivered when any of
//! them acknowledges it. The list is bounded by the operator (`--devices`): each device costs
//! a datagram per announcement, so a stranger attaching from many ports cannot multiply what
//! the server sends beyond that bound.

use std::net::{IpAddr, SocketAddr};

/// The devices of one account, least recently heard from first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Devices {
    addrs: Vec<SocketAddr>,
}

/// What attaching one more device did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Attached {
    /// It was one already; it is now the most recent.
    Again,
    /// It is new; `evicted` lost its place to it (the list was full).
    New { evicted: Option<SocketAddr> },
}

impl Devices {
    /// The devices stored for an account, keeping the `cap` most recent.
    pub(super) fn restore(mut addrs: Vec<SocketAddr>, cap: usize) -> Devices {
        let mut seen = std::collections::HashSet::new();
        // A list written by hand or by an older server may repeat an address: keep its latest.
        let mut kept: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
        while let Some(a) = addrs.pop() {
            if seen.insert(a) {
                kept.push(a);
            }
        }
        kept.truncate(cap);
        kept.reverse();
        Devices { addrs: kept }
    }

    /// Every device, least recently heard from first.
    pub(super) fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub(super) fn len(&self) -> usize {
        self.addrs.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    pub(super) fn contains(&self, addr: SocketAddr) -> bool {
        self.addrs.contains(&addr)
    }

    /// Whether some device is on `ip` (a machine that gets the announcements already).
    pub(super) fn on_ip(&self, ip: IpAddr) -> bool {
        self.addrs.iter().any(|a| a.ip() == ip)
    }

    /// Makes `addr` a device, the most recent; past `cap` (at least 1) the least recent one
    /// is evicted.
    pub(super) fn attach(&mut self, addr: SocketAddr, cap: usize) -> Attached {
        if self.refresh(addr) {
            return Attached::Again;
        }
        let evicted = (self.addrs.len() >= cap.max(1)).then(|| self.addrs.remove(0));
        self.addrs.push(addr);
        Attached::New { evicted }
    }

    /// Makes `addr` the most recent if it is a device; whether it is one.
    pub(super) fn refresh(&mut self, addr: SocketAddr) -> bool {
        match self.addrs.iter().position(|a| *a == addr) {
            Some(i) => {
                let a = self.addrs.remove(i);
                self.addrs.push(a);
                true
            }
            None => false,
        }
    }

    /// Removes `addr`; whether it was a device.
    pub(super) fn detach(&mut self, addr: SocketAddr) -> bool {
        let before = self.addrs.len();
        self.addrs.retain(|a| *a != addr);
        self.addrs.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn ports(d: &Devices) -> Vec<u16> {
        d.addrs().iter().map(|a| a.port()).collect()
    }

    #[test]
    fn one_more_than_the_cap_evicts_the_least_recently_heard_from() {
        let mut d = Devices::default();
        for p in 1..=4 {
            assert_eq!(d.attach(at(p), 4), Attached::New { evicted: None });
        }
        // Device 1 says it is still there: device 2 is now the least recent.
        assert!(d.refresh(at(1)));
        assert_eq!(ports(&d), [2, 3, 4, 1]);
        assert_eq!(
            d.attach(at(5), 4),
            Attached::New {
                evicted: Some(at(2))
            }
        );
        assert_eq!(ports(&d), [3, 4, 1, 5]);
        // Attaching again is not one more.
        assert_eq!(d.attach(at(3), 4), Attached::Again);
        assert_eq!(ports(&d), [4, 1, 5, 3]);
        // The evicted one is no device: refreshing it does not bring it back.
        assert!(!d.refresh(at(2)));
        assert_eq!(d.len(), 4);
    }

    #[test]
    fn detaching_frees_a_place_and_a_cap_of_zero_still_keeps_one() {
        let mut d = Devices::default();
        d.attach(at(1), 2);
        d.attach(at(2), 2);
        assert!(d.detach(at(1)));
        assert!(!d.detach(at(1)));
        assert_eq!(d.attach(at(3), 2), Attached::New { evicted: None });
        assert_eq!(ports(&d), [2, 3]);
        let mut one = Devices::default();
        one.attach(at(1), 0);
        assert_eq!(
            one.attach(at(2), 0),
            Attached::New {
                evicted: Some(at(1))
            }
        );
        assert_eq!(ports(&one), [2]);
    }

    #[test]
    fn a_stored_list_keeps_the_most_recent_once_each_within_the_cap() {
        let d = Devices::restore(vec![at(1), at(2), at(1), at(3), at(4)], 3);
        assert_eq!(ports(&d), [1, 3, 4]);
        assert!(d.on_ip("127.0.0.1".parse().unwrap()));
        assert!(!d.on_ip("127.0.0.2".parse().unwrap()));
        assert!(d.contains(at(3)) && !d.contains(at(2)));
    }
}
