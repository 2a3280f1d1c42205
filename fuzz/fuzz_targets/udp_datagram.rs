//! Any datagram into the server's UDP decoder (and the client's): a request or a reasoned
//! error, never a panic; a decoded request respects the limits.
#![no_main]

use auction_protocol::limits::{MAX_DATAGRAM, MAX_REQ};
use auction_protocol::{sign, udp, PublicKey, VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match udp::decode_request(data) {
        Ok(incoming) => {
            assert!(data.len() <= MAX_DATAGRAM);
            assert_eq!(incoming.request.v, VERSION);
            assert!(incoming.request.req <= MAX_REQ);
            if let Some(signed) = incoming.signed {
                // Checking a signature of arbitrary content with some key never panics.
                let _ = sign::verify(&PublicKey([7; 32]), signed.body, signed.sig);
            }
        }
        Err(e) => assert!(!e.detail.is_empty()),
    }
    let _ = udp::decode_server(data);
});
