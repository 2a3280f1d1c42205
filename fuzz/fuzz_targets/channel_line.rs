//! Any line into the channel decoders (server side: requests; client side: messages).
#![no_main]

use auction_protocol::channel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The server's line reader hands over UTF-8 text only (others are refused before).
    if let Ok(line) = std::str::from_utf8(data) {
        if let Err(e) = channel::decode_request(line) {
            assert!(!e.detail.is_empty());
        }
        let _ = channel::decode_message(line);
    }
});
