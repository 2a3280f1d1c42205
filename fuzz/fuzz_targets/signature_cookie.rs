//! The two checks an attacker controls the input of: a signature over a body with a key, and a
//! cookie for an address at a time. Neither panics, and neither accepts what it should not
//! (a random signature or cookie passing would be a finding).
#![no_main]

use auction_protocol::cookie::CookieKey;
use auction_protocol::{sign, PublicKey};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;

fuzz_target!(|data: &[u8]| {
    if data.len() < 40 {
        return;
    }
    let key: [u8; 32] = data[..32].try_into().unwrap();
    let port = u16::from_be_bytes([data[32], data[33]]);
    let now = u64::from(u32::from_be_bytes([data[34], data[35], data[36], data[37]]));
    let split = 38 + usize::from(data[38]) % (data.len() - 38);
    let text = String::from_utf8_lossy(&data[38..split]);
    let body = &data[split..];
    assert!(sign::verify(&PublicKey(key), body, &text).is_err());
    let cookies = CookieKey::new(&key);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(!cookies.check(addr, &text, now));
    // A cookie it issued passes for its address.
    let issued = cookies.issue(addr, now);
    assert!(cookies.check(addr, &issued, now));
});
