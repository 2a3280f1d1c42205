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

/// Sleeps until `at`, or for ever when there is nothing to wake for.
pub async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The time of one event, read once and passed to everything that handles it: the wall clock
/// (for `ends_at` and stored times) and the monotonic clock (for timers and rate limits).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Unix milliseconds.
    pub ms: u64,
    pub instant: tokio::time::Instant,
}

impl Now {
    pub fn read() -> Now {
        Now {
            ms: unix_ms(),
            instant: tokio::time::Instant::now(),
        }
    }

    /// Unix seconds (cookies).
    pub fn secs(self) -> u64 {
        self.ms / 1000
    }

    /// The monotonic instant of the wall-clock time `at_ms`, for a timer (now, if it has passed).
    pub fn instant_of(self, at_ms: u64) -> tokio::time::Instant {
        self.instant + std::time::Duration::from_millis(at_ms.saturating_sub(self.ms))
    }
}
