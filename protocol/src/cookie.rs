//! Stateless address-validation cookies, as QUIC's Retry and DTLS's HelloVerifyRequest do.
//!
//! A cookie is `ts (4 bytes, big-endian Unix seconds) || tag (16 bytes)`, sent as 40 hex digits,
//! where `tag = HMAC-SHA256(epoch_key, "auction-cookie-v1" || ip (16 bytes, IPv4 mapped) ||
//! port (2 bytes BE) || ts)[..16]`. The epoch key is derived from a random master secret and
//! the 60-second epoch that `ts` falls in, so the key in use rotates every minute while the
//! server stores nothing per client. A cookie is good for [`COOKIE_LIFETIME_SECS`] from `ts`.
//! Only the server ever checks a cookie, so its layout is opaque to clients.

use ring::hmac;
use std::net::{IpAddr, SocketAddr};

use crate::limits::COOKIE_LIFETIME_SECS;

/// Seconds a derived key is in use.
pub const ROTATION_SECS: u64 = 60;
/// Allowed clock skew for a cookie stamped slightly in the future (several server threads).
const FUTURE_SKEW_SECS: u64 = 5;

/// The server's cookie secret.
pub struct CookieKey {
    master: hmac::Key,
}

impl CookieKey {
    /// `master` should be 32 random bytes, fresh at every start.
    pub fn new(master: &[u8; 32]) -> CookieKey {
        CookieKey {
            master: hmac::Key::new(hmac::HMAC_SHA256, master),
        }
    }

    fn epoch_key(&self, ts: u32) -> hmac::Key {
        let epoch = u64::from(ts) / ROTATION_SECS;
        let derived = hmac::sign(&self.master, &epoch.to_be_bytes());
        hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
    }

    fn tag(&self, addr: SocketAddr, ts: u32) -> [u8; 16] {
        let ip = match addr.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let mut ctx = hmac::Context::with_key(&self.epoch_key(ts));
        ctx.update(b"auction-cookie-v1");
        ctx.update(&ip.octets());
        ctx.update(&addr.port().to_be_bytes());
        ctx.update(&ts.to_be_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&ctx.sign().as_ref()[..16]);
        out
    }

    /// A cookie for `addr`, stamped `now_secs`.
    pub fn issue(&self, addr: SocketAddr, now_secs: u64) -> String {
        let ts = now_secs as u32;
        let mut raw = [0u8; 20];
        raw[..4].copy_from_slice(&ts.to_be_bytes());
        raw[4..].copy_from_slice(&self.tag(addr, ts));
        hex::encode(raw)
    }

    /// True when `cookie` was issued by this key for exactly `addr` and has not expired.
    pub fn check(&self, addr: SocketAddr, cookie: &str, now_secs: u64) -> bool {
        let mut raw = [0u8; 20];
        if hex::decode_to_slice(cookie, &mut raw).is_err() {
            return false;
        }
        let ts = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let issued = u64::from(ts);
        if issued > now_secs + FUTURE_SKEW_SECS
            || now_secs.saturating_sub(issued) > COOKIE_LIFETIME_SECS
        {
            return false;
        }
        let expected = self.tag(addr, ts);
        // Constant-time comparison: the time taken must not reveal how many bytes matched.
        expected
            .iter()
            .zip(&raw[4..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CookieKey {
        CookieKey::new(&[7u8; 32])
    }

    #[test]
    fn cookie_is_bound_to_address_and_time() {
        let k = key();
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let now = 1_800_000_000;
        let c = k.issue(a, now);
        assert_eq!(c.len(), 40);
        assert!(k.check(a, &c, now));
        assert!(k.check(a, &c, now + COOKIE_LIFETIME_SECS));
        assert!(!k.check(a, &c, now + COOKIE_LIFETIME_SECS + 1), "expired");
        assert!(
            !k.check("127.0.0.1:5001".parse().unwrap(), &c, now),
            "other port"
        );
        assert!(
            !k.check("127.0.0.2:5000".parse().unwrap(), &c, now),
            "other ip"
        );
        assert!(
            !CookieKey::new(&[8u8; 32]).check(a, &c, now),
            "other server secret"
        );
        assert!(!k.check(a, "00", now));
        assert!(!k.check(a, &"g".repeat(40), now));
        let mut tampered = c.clone().into_bytes();
        tampered[39] = if tampered[39] == b'0' { b'1' } else { b'0' };
        assert!(!k.check(a, std::str::from_utf8(&tampered).unwrap(), now));
    }

    #[test]
    fn stamped_in_the_future_is_refused() {
        let k = key();
        let a: SocketAddr = "[::1]:9".parse().unwrap();
        let c = k.issue(a, 1_000_000);
        assert!(!k.check(a, &c, 1_000_000 - 60));
    }
}
