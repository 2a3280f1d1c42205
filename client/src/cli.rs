//! The command line's grammar: the global options, the commands and their arguments (clap),
//! and the amount and duration parsers they use. The shell reads each line it is given with
//! the same [`Command`] definitions, so a command is spelled the same in both places.

use auction_protocol::Cents;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "auction-client",
    version,
    about = "Take part in live auctions: register, offer, bid, watch"
)]
pub struct Cli {
    /// The server's UDP address; for a cluster, its nodes' addresses separated by commas
    /// (requests go to whichever runs the registration plane, and a redirect is followed only
    /// to an address in this list).
    #[arg(
        long,
        env = "AUCTION_SERVER",
        default_value = "127.0.0.1:7400",
        global = true
    )]
    pub server: String,
    /// CA certificate that signed the server's certificate.
    #[arg(
        long,
        env = "AUCTION_CA",
        default_value = "certs/ca.pem",
        global = true
    )]
    pub ca: PathBuf,
    /// Where this client's key, certificate, account name and shell history live.
    #[arg(
        long,
        env = "AUCTION_HOME",
        global = true,
        default_value_os_t = auction_client::identity::default_home()
    )]
    pub home: PathBuf,
    /// One JSON object per line instead of sentences.
    #[arg(long, global = true)]
    pub json: bool,
    /// Send UDP from this local IP (on a machine with several addresses).
    #[arg(long, env = "AUCTION_BIND", global = true)]
    pub bind: Option<std::net::IpAddr>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Create an account for this client's key.
    Register { name: String },
    /// Delete this client's account (not while it has open items or leads an auction).
    Deregister,
    /// Put an item up for auction.
    Offer(OfferArgs),
    /// List the open items.
    Items,
    /// Show one item, open or closed.
    Status { item: u64 },
    /// An item's accepted bids in order (the latest 100): number, time, bidder, amount, and
    /// the operator's note on a removed bid or a cancelled item.
    History { item: u64 },
    /// Bid on an item: an amount, with --max a private maximum the server bids up to, or
    /// --buy-now to take it at its buy-it-now price.
    Bid(BidArgs),
    /// Follow an item's bids without joining its channel: `watch` prints its new highest bids
    /// and its result.
    Subscribe { item: u64 },
    /// Stop following an item.
    Unsubscribe { item: u64 },
    /// Answer the server's request to negotiate (sent when your item has had no bid by half
    /// its time): lower the minimum, or keep it.
    #[command(group(clap::ArgGroup::new("answer").required(true).args(["accept", "refuse"])))]
    Negotiate {
        item: u64,
        /// The new, lower minimum, e.g. 7.50.
        #[arg(long, value_parser = parse_amount)]
        accept: Option<Cents>,
        /// Keep the minimum as it is.
        #[arg(long)]
        refuse: bool,
    },
    /// Complete a sale over TLS: as the buyer give a shipping name and address, as the seller
    /// a contact; shows the other side's once given. Asks for what is missing when run in a
    /// terminal. Never give a payment card number: it is refused.
    Settle(SettleArgs),
    /// Operator only (the server's --operator-key): end an open item now, unsold.
    CancelItem {
        item: u64,
        /// Why, as bidders and the seller will read it in the item's history (at most 80
        /// characters).
        #[arg(long)]
        note: String,
    },
    /// Operator only: remove an accepted bid (its number in `history`), e.g. shill bidding;
    /// the auction falls back to the other bids, proxy maximums answering each other again.
    RemoveBid {
        item: u64,
        /// The bid's number, as `history ITEM` shows it (#12 is 12).
        bid: u64,
        /// Why, as bidders will read it in the item's history (at most 80 characters).
        #[arg(long)]
        note: String,
    },
    /// This client's account name and public key (what a server's --operator-key names).
    Whoami {
        /// Print only the key (64 hex digits), e.g. for `--operator-key "$(... whoami --key)"`.
        #[arg(long)]
        key: bool,
    },
    /// Print announcements (new items, subscribed items' bids, wins, sales) as they arrive.
    Watch,
    /// Interactive: the same commands, with announcements printed as they arrive.
    Shell,
}

/// Commands that are long-running modes of their own, which the shell already is.
pub const NOT_IN_SHELL: [&str; 2] = ["watch", "shell"];

/// `offer`'s arguments.
#[derive(Args, Debug, Clone)]
pub struct OfferArgs {
    pub description: String,
    /// Smallest acceptable bid, e.g. 12.50.
    #[arg(long, value_parser = parse_amount)]
    pub min: Cents,
    /// How long bidding stays open, e.g. 90s, 5m, 2h (default 5m).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// The lowest price you accept, hidden from bidders (they see whether it is met); below
    /// it the item is not sold. At least --min.
    #[arg(long, value_parser = parse_amount)]
    pub reserve: Option<Cents>,
    /// A price at which the first bidder may take the item at once, offered until the first
    /// bid (or, with a reserve, until the reserve is met). At least --min and --reserve.
    #[arg(long, value_parser = parse_amount)]
    pub buy_now: Option<Cents>,
}

/// `bid`'s arguments: an amount, a proxy bid's maximum, or buy it now.
#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["amount", "max", "buy_now"])))]
pub struct BidArgs {
    pub item: u64,
    #[arg(value_parser = parse_amount)]
    pub amount: Option<Cents>,
    /// Proxy bid: the server bids for you, one increment above any competitor, up to this
    /// amount. No one else sees it. Again while leading: raises your maximum.
    #[arg(long, value_parser = parse_amount)]
    pub max: Option<Cents>,
    /// Buy the item at once at its buy-it-now price (shown by `status`); the auction ends.
    #[arg(long)]
    pub buy_now: bool,
    /// Stay on the item's channel and print updates until the auction ends.
    #[arg(long)]
    pub follow: bool,
}

/// `settle`'s arguments: the item, the details to give, and what to ask the desk for.
#[derive(Args, Debug, Clone)]
pub struct SettleArgs {
    pub item: u64,
    /// Buyer: the name to ship to.
    #[arg(long)]
    pub name: Option<String>,
    /// Buyer: the address to ship to.
    #[arg(long)]
    pub address: Option<String>,
    /// Seller: how the buyer reaches you (e-mail, phone).
    #[arg(long)]
    pub contact: Option<String>,
    /// Seller, after the buyer let the sale lapse: offer the item to the best remaining
    /// bidder at that bidder's highest bid.
    #[arg(long)]
    pub second_chance: bool,
    /// Take a second-chance offer made to you (you become the buyer).
    #[arg(long, conflicts_with = "decline_offer")]
    pub accept_offer: bool,
    /// Turn a second-chance offer down.
    #[arg(long)]
    pub decline_offer: bool,
    /// Stay connected and print what the other side does until the sale is settled or
    /// cancelled.
    #[arg(long)]
    pub wait: bool,
}

/// One line typed in the shell: the same commands as on the command line.
#[derive(Parser, Debug)]
#[command(
    name = "",
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true
)]
pub struct ShellLine {
    #[command(subcommand)]
    pub command: Command,
}

fn parse_amount(s: &str) -> Result<Cents, String> {
    Cents::parse_decimal(s).map_err(|e| e.to_string())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("'{s}': {e} (write it like 30s, 5m, 2h)"))
}
