//! Any line into the TLS-plane decoders (server side: requests; client side: messages), for
//! the bidding channel and the settlement desk, and into the settlement field checks.
#![no_main]

use auction_protocol::{channel, settle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The server's line readers hand over UTF-8 text only (others are refused before).
    if let Ok(line) = std::str::from_utf8(data) {
        if let Err(e) = channel::decode_request(line) {
            assert!(!e.detail.is_empty());
        }
        let _ = channel::decode_message(line);
        if let Err(e) = settle::decode_request(line) {
            assert!(!e.detail.is_empty());
        }
        let _ = settle::decode_message(line);
        if let Err((_, message)) = settle::check_info("address", line, 500, true) {
            assert!(!message.is_empty());
        }
    }
});
