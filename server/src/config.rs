//! Server policy and limits, filled from the command line (see `main.rs`) or by tests.

use auction_protocol::Cents;
use std::sync::Arc;
use std::time::Duration;

use crate::rules::increments::Increments;

/// Where item channels listen: one port out of an inclusive range, or any free port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRange {
    Ephemeral,
    Range(u16, u16),
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "0" {
            return Ok(PortRange::Ephemeral);
        }
        let (lo, hi) = s.split_once('-').ok_or_else(|| {
            format!("'{s}' is not a port range: write LO-HI (e.g. 7401-7499) or 0")
        })?;
        let lo: u16 = lo
            .parse()
            .map_err(|_| format!("'{lo}' is not a port number"))?;
        let hi: u16 = hi
            .parse()
            .map_err(|_| format!("'{hi}' is not a port number"))?;
        if lo == 0 || lo > hi {
            return Err(format!("'{s}': need 1 <= LO <= HI"));
        }
        Ok(PortRange::Range(lo, hi))
    }
}

/// Enough for 500 bidders on 20 items each (10,000 channels) with room to spare, and within
/// common open-file limits once the server raised its soft limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// Announcements that may wait for one account: a burst of 64 offers reaches every watcher
/// whole; a bigger one (or a restart with more open items) shows as a gap, after which the
/// client reads the current state with `list`. Memory: one shared entry per announcement for
/// everyone, plus at most this many pointers per account.
pub const DEFAULT_ANNOUNCE_QUEUE: usize = 64;
/// Devices per account by default (`Config::devices`).
pub const DEFAULT_DEVICES: usize = 4;

/// Announcement datagrams a second (about 6 MB/s of NEW-ITEMs): one offer reaches 5,000
/// accounts in a quarter of a second, with requests answered between batches.
pub const DEFAULT_ANNOUNCE_RATE: f64 = 20_000.0;

#[derive(Debug, Clone)]
pub struct Config {
    /// Open items one seller may have at once.
    pub max_open_items: usize,
    /// The smallest raise over the highest bid, by price band (`--increments`).
    pub increments: Arc<Increments>,
    /// The operator's public key (`--operator-key`): the account registered with it may
    /// cancel open items and remove bids. `None`: no one may.
    pub operator_key: Option<auction_protocol::PublicKey>,
    pub snipe_window: Duration,
    pub snipe_extension: Duration,
    /// How long before its end an item tells its leader, if not connected to its channel,
    /// that it is ending (ENDING-SOON): at most a quarter of the auction's length, like the
    /// soft close. Zero: never.
    pub ending_soon: Duration,
    /// Distinct accounts connected to one item's channel at once; `None` = no cap.
    pub max_bidders_per_item: Option<usize>,
    /// UDP datagrams per second from one source IP, and how many at once (burst); the rest
    /// are dropped, and the source told `rate-limited` at most once a second.
    pub udp_rate: f64,
    pub udp_burst: f64,
    /// Bids per second one account may send over its channels, all items together, and how
    /// many at once (burst); past it a bid is refused `rate-limited` (changing and storing
    /// nothing) and the connection stays.
    pub bid_rate: f64,
    pub bid_burst: f64,
    /// Joined connections (handshake done, account known) to item channels and the settlement
    /// desk at once, server-wide. One more is told `server-full` and closed
    /// (`net::budget`).
    pub max_connections: usize,
    /// Joined connections one account may hold at once, all items and the desk together;
    /// one more is told `too-many-connections`.
    pub max_connections_per_account: usize,
    /// TLS handshakes in progress at once, server-wide, and from one source (an IPv4 address
    /// or an IPv6 /64). A connection over either is closed before any TLS work.
    pub max_handshakes: usize,
    pub max_handshakes_per_source: usize,
    /// Items open at once, all sellers together (each holds a listening socket); an offer
    /// past it is refused `server-busy`.
    pub max_items: usize,
    /// Accounts one source address may create in an hour (a token bucket of this size,
    /// refilled over the hour); past it `register` is refused `too-many-accounts`.
    pub accounts_per_hour: u32,
    /// Items one account may offer in an hour (a token bucket of this size, refilled over the
    /// hour; the house catalog is not counted); past it `offer` is refused `rate-limited`.
    /// With `max_open_items`, what bounds how fast one seller grows the database.
    pub offers_per_hour: u32,
    pub item_ports: PortRange,
    /// Time a TLS client gets to complete its handshake.
    pub handshake_timeout: Duration,
    /// A channel or settlement connection on which nothing arrives for this long is closed
    /// (`idle-timeout`).
    pub idle_timeout: Duration,
    /// Time one write to a channel may take before the reader is considered stuck.
    pub write_timeout: Duration,
    /// The kernel send buffer of each channel and settlement connection (SO_SNDBUF), `None` for the system's
    /// default (which grows to megabytes on Linux). Smaller bounds what a connection that does
    /// not read can hold in the kernel, and makes HIGHEST coalescing start sooner.
    pub channel_send_buffer: Option<usize>,
    /// Messages (other than HIGHEST, which is coalesced) that may wait for one connection.
    pub outgoing_queue: usize,
    /// First retransmission delay of WIN / SOLD / NOT-SOLD; doubles each try.
    pub notice_retry: Duration,
    /// Transmissions of a notice per delivery round before waiting for the next ATTACH.
    pub notice_tries: u32,
    /// Best-effort announcements that may wait for one account; past it the oldest are
    /// dropped and the account's numbers show the gap (see `registry/announce_queue.rs`).
    pub announce_queue: usize,
    /// Addresses that get one account's announcements at once (its devices: a `watch`, a
    /// shell, another machine); one more evicts the least recently heard from.
    pub devices: usize,
    /// Announcement datagrams sent per second, all accounts together.
    pub announce_rate: f64,
    /// Added to the end of every auction still open when the server restarts, because its
    /// bidders were cut off while it was down.
    pub recovery_grace: Duration,
    /// Items the house offers at start (`--catalog`), skipping those offered before.
    pub catalog: Option<crate::catalog::Catalog>,
    /// How long a buyer has to give shipping details after a sale (and a bidder to answer a
    /// second-chance offer) before it is cancelled.
    pub settle_timeout: Duration,
    /// The settlement listener's port (0: any free port).
    pub settle_port: u16,
    /// Live board event streams (`/events`) open at once; one more is refused with 503.
    pub web_streams: usize,
    /// Connections to the board one source (IPv4 address, IPv6 /64) may hold at once.
    pub web_per_source: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_open_items: 3,
            // One cent at every price: what the tests' amounts assume. The server's command
            // line defaults to the band table (`rules::increments::DEFAULT`).
            increments: Arc::new(Increments::fixed(Cents(1))),
            operator_key: None,
            snipe_window: Duration::from_secs(30),
            snipe_extension: Duration::from_secs(30),
            ending_soon: Duration::from_secs(60),
            max_bidders_per_item: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_account: 128,
            max_handshakes: 1024,
            max_handshakes_per_source: 64,
            max_items: 2048,
            accounts_per_hour: 100,
            offers_per_hour: 100,
            udp_rate: 1000.0,
            udp_burst: 2000.0,
            bid_rate: 50.0,
            bid_burst: 100.0,
            item_ports: PortRange::Ephemeral,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(auction_protocol::limits::DEFAULT_IDLE_TIMEOUT_SECS),
            write_timeout: Duration::from_secs(10),
            channel_send_buffer: None,
            outgoing_queue: 256,
            notice_retry: Duration::from_millis(500),
            notice_tries: 8,
            announce_queue: DEFAULT_ANNOUNCE_QUEUE,
            devices: DEFAULT_DEVICES,
            announce_rate: DEFAULT_ANNOUNCE_RATE,
            recovery_grace: Duration::from_secs(60),
            catalog: None,
            settle_timeout: Duration::from_secs(24 * 3600),
            web_streams: crate::web::DEFAULT_STREAMS,
            web_per_source: crate::web::DEFAULT_PER_SOURCE,
            settle_port: 0,
        }
    }
}

/// File descriptors the server keeps for itself, beyond connections and item listeners: the
/// UDP socket, the settlement and metrics listeners, the database and its WAL, logs, the
/// runtime's own.
pub const RESERVED_FILES: u64 = 64;

impl Config {
    /// Shrinks the budgets that each cost a file descriptor (joined connections, handshakes,
    /// open items) so that together they fit in `open_files`, keeping their proportions. What
    /// changed, as a sentence for the log, or `None` when everything fitted.
    pub fn fit_to_open_files(&mut self, open_files: u64) -> Option<String> {
        // The board's connections for pages are a fixed few; its event streams share the rest.
        let available = open_files
            .saturating_sub(RESERVED_FILES + crate::web::PAGE_CONNECTIONS as u64)
            .max(4);
        let wanted = [
            self.max_connections,
            self.max_handshakes,
            self.max_items,
            self.web_streams,
        ];
        let total: u64 = wanted.iter().map(|&n| n as u64).sum();
        if total <= available {
            return None;
        }
        let [connections, handshakes, items, streams] =
            wanted.map(|n| ((n as u64 * available / total) as usize).max(1));
        // The per-source share shrinks with the total (so one host still holds only a small
        // part of it), and is never more than an eighth of it.
        let per_source = ((self.max_handshakes_per_source as u64 * available / total) as usize)
            .min(handshakes / 8)
            .max(1);
        let said = format!(
            "{open_files} open files allowed (the hard limit): budgets lowered from {} joined connections, {} handshakes ({} per source), {} board streams and {} open items to {connections}, {handshakes} ({per_source} per source), {streams} and {items}",
            self.max_connections, self.max_handshakes, self.max_handshakes_per_source, self.web_streams, self.max_items
        );
        self.max_connections = connections;
        self.max_handshakes = handshakes;
        self.max_handshakes_per_source = per_source;
        self.max_items = items;
        self.web_streams = streams;
        Some(said)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!("0".parse(), Ok(PortRange::Ephemeral));
        assert_eq!("7401-7499".parse(), Ok(PortRange::Range(7401, 7499)));
        assert!("7499-7401".parse::<PortRange>().is_err());
        assert!("0-5".parse::<PortRange>().is_err());
        assert!("abc".parse::<PortRange>().is_err());
    }

    #[test]
    fn budgets_fit_the_open_files_limit() {
        let mut config = Config::default();
        // The defaults fit a common hard limit as they are.
        assert_eq!(config.fit_to_open_files(1 << 20), None);
        assert_eq!(config.max_connections, DEFAULT_MAX_CONNECTIONS);

        // At 1024 they shrink together and leave the reserve.
        let said = config.fit_to_open_files(1024).expect("lowered");
        let used = config.max_connections
            + config.max_handshakes
            + config.max_items
            + config.web_streams
            + crate::web::PAGE_CONNECTIONS;
        assert!(used as u64 <= 1024 - RESERVED_FILES, "{used}");
        assert!(config.web_streams >= 1 && config.web_streams < crate::web::DEFAULT_STREAMS);
        assert!(config.max_items >= 1 && config.max_handshakes >= 1);
        // One source keeps a small share of the handshakes: others still get in.
        assert!(config.max_handshakes_per_source * 8 <= config.max_handshakes);
        assert!(config.max_handshakes_per_source >= 1);
        assert!(said.contains("1024 open files"), "{said}");
        // Proportions kept: connections still the largest share.
        assert!(config.max_connections > config.max_items);
        assert!(config.max_items > config.max_handshakes);
    }
}
