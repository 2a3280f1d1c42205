//! Wall-clock time in Unix milliseconds, the unit of every `ends_at` and every stored time.
//! Tasks read it once per event and pass `now` to the rules, which never read a clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Wall-clock time in Unix seconds (cookies).
pub fn unix_secs() -> u64 {
    unix_ms() / 1000
}
