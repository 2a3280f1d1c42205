//! Before the measured phase: the run's accounts (sellers first, then the bidders), its items
//! (a new seller whenever the server's per-seller limit is reached), the tasks that read every
//! client's announcements, and the bidders' TLS channels (plus the stalled clients' ones).
//!
//! Runs on the task that called `run`; registrations and channel set-ups go up to
//! `SETUP_CONCURRENCY` at a time. What it measures (register and connect latencies, errors)
//! goes into the run's `Stats`.

use super::{bidder_name, error_kind, Options, RunError, Shared, Stats};
use auction_client::{Client, ClientError, Identity, ItemChannel, Offered};
use auction_protocol::udp::ServerBody;
use auction_protocol::{Cents, Reason};
use futures_util::stream::{self, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Registrations and channel set-ups (and, at the end, deregistrations) in flight at once.
pub(super) const SETUP_CONCURRENCY: usize = 64;
/// The first bid an item accepts.
const ITEM_MIN: Cents = Cents(1000);

/// The reserve price of the `i`th item offered, when `share` of the items have one (spread
/// evenly): every other one twice the minimum, which the bidding soon passes, and every other
/// one 10,000,000,000.00, which it never reaches (the item closes unsold).
pub(super) fn reserve_for(i: usize, share: f64) -> Option<Cents> {
    let share = share.clamp(0.0, 1.0);
    let (before, after) = ((i as f64 * share).floor(), ((i + 1) as f64 * share).floor());
    if after <= before {
        return None;
    }
    Some(if (before as u64).is_multiple_of(2) {
        Cents(ITEM_MIN.0 * 2)
    } else {
        Cents(1_000_000_000_000)
    })
}

/// The buy-it-now price of each of `n` items, when `share` of them have one: spread evenly
/// over the items without a reserve (`reserve_share`; an item never has both), three times
/// the minimum. Before the measured phase a bidder takes each of them at that price
/// ([`take_buy_now`]).
pub(super) fn buy_now_plan(n: usize, share: f64, reserve_share: f64) -> Vec<Option<Cents>> {
    let without_reserve = (1.0 - reserve_share.clamp(0.0, 1.0)).max(f64::EPSILON);
    let share = (share.clamp(0.0, 1.0) / without_reserve).min(1.0);
    let mut plain = 0usize;
    (0..n)
        .map(|i| {
            if reserve_for(i, reserve_share).is_some() {
                return None;
            }
            let c = plain as f64;
            plain += 1;
            let picked = ((c + 1.0) * share).floor() > (c * share).floor();
            picked.then_some(Cents(ITEM_MIN.0 * 3))
        })
        .collect()
}

/// Before the measured phase, the first bidder of each item with a buy-it-now price takes it
/// (`buy-now`, on a channel of its own): the auction ends at once, so the item's bidders let
/// their channels to it go and bid on their other items only. What the server answered goes
/// in the item's ledger, which `--verify` checks the result against.
pub(super) async fn take_buy_now(
    assignment: &[Vec<usize>],
    accounts: &Accounts,
    offered: &[Offered],
    shared: &Shared,
    per_bidder: &mut [Vec<(usize, ItemChannel)>],
) {
    for (ix, item) in shared.items.iter().enumerate() {
        let Some(price) = item.buy_now else { continue };
        let taker = assignment
            .iter()
            .enumerate()
            .find(|(b, items)| items.contains(&ix) && accounts.bidders[*b].is_some())
            .map(|(b, _)| b);
        let Some(b) = taker else { continue };
        let client = accounts.bidders[b].as_ref().expect("found with a client");
        let taken = async {
            let mut ch = client.open_item(offered[ix].item).await?;
            ch.place(auction_client::Offer::BuyNow(price), None).await
        };
        match taken.await {
            Ok(auction_client::BidResult::Accepted {
                amount, ends_at, ..
            }) => {
                let mut ledger = item.ledger.lock().unwrap_or_else(|p| p.into_inner());
                ledger.accepted += 1;
                ledger.amounts.insert(amount.0);
                ledger.best = Some((amount, b));
                ledger.ends_at = ends_at;
                ledger.bought = true;
                drop(ledger);
                for channels in per_bidder.iter_mut() {
                    channels.retain(|(i, _)| *i != ix);
                }
            }
            Ok(other) => {
                tracing::warn!(item = item.id, ?other, "buy it now was refused");
                shared.stats.errors.add("buy-now-refused");
            }
            Err(e) => {
                tracing::warn!(item = item.id, error = %e, "could not take buy it now");
                shared
                    .stats
                    .errors
                    .add(format!("buy-now-{}", error_kind(&e)));
            }
        }
    }
}

/// The run's registered clients.
pub(super) struct Accounts {
    /// At least one; `sellers[0]` also asks for the items' results when verifying.
    pub(super) sellers: Vec<Arc<Client>>,
    /// By bidder index; `None` where registration failed (counted as an error).
    pub(super) bidders: Vec<Option<Arc<Client>>>,
    /// `--stalled` clients (registered; they never bid).
    pub(super) stalled: Vec<Arc<Client>>,
}

impl Accounts {
    /// Every client the run registered: sellers, bidders, stalled clients.
    pub(super) fn all(&self) -> Vec<Arc<Client>> {
        let bidders = self.bidders.iter().flatten();
        let all = self.sellers.iter().chain(bidders).chain(&self.stalled);
        all.cloned().collect()
    }
}

/// Registers the first seller, then every bidder. The first seller's answer tells whether
/// the server is there at all ([`RunError::Unreachable`]); a bidder that cannot register is
/// counted as an error and left out.
pub(super) async fn register(
    opts: &Options,
    prefix: &str,
    stats: &Stats,
) -> Result<Accounts, RunError> {
    let first_seller = new_client(opts).await?;
    let t = Instant::now();
    match first_seller.register(&format!("{prefix}-s0")).await {
        Ok(()) => stats.register.record(t.elapsed()),
        Err(e @ (ClientError::Timeout { .. } | ClientError::Io(_))) => {
            return Err(RunError::Unreachable {
                server: opts.server,
                reason: e.to_string(),
            })
        }
        Err(e) => {
            return Err(RunError::Failed(anyhow::anyhow!(
                "the server refused loadgen's seller: {e}"
            )))
        }
    }
    let sellers = vec![Arc::new(first_seller)];

    let results: Vec<(usize, Result<Client, ClientError>, Duration)> =
        stream::iter(0..opts.bidders)
            .map(|b| {
                let name = bidder_name(prefix, b);
                async move {
                    let client = match new_client(opts).await {
                        Ok(c) => c,
                        Err(e) => {
                            return (b, Err(ClientError::Local(e.to_string())), Duration::ZERO)
                        }
                    };
                    let t = Instant::now();
                    let r = client.register(&name).await.map(|()| client);
                    (b, r, t.elapsed())
                }
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .collect()
            .await;
    let mut bidders: Vec<Option<Arc<Client>>> = (0..opts.bidders).map(|_| None).collect();
    for (b, r, took) in results {
        match r {
            Ok(c) => {
                stats.register.record(took);
                bidders[b] = Some(Arc::new(c));
            }
            Err(e) => {
                tracing::warn!(bidder = b, error = %e, "registration failed");
                stats.errors.add(format!("register-{}", error_kind(&e)));
            }
        }
    }
    tracing::info!(
        registered = bidders.iter().flatten().count(),
        "bidders registered"
    );
    Ok(Accounts {
        sellers,
        bidders,
        stalled: Vec::new(),
    })
}

/// Offers `opts.items` items, each running `--item-duration` or, by default, long enough for
/// the channel set-up (`channels` of them) and the measured phase. When the server refuses a
/// seller more open items, a new seller is registered and carries on.
pub(super) async fn offer_items(
    opts: &Options,
    prefix: &str,
    channels: usize,
    accounts: &mut Accounts,
    stats: &Stats,
) -> Result<Vec<Offered>, RunError> {
    let sellers = &mut accounts.sellers;
    let item_duration = opts.item_duration.unwrap_or_else(|| {
        Duration::from_secs(10) + opts.duration + Duration::from_millis(2 * channels as u64)
    });
    let mut offered = Vec::new();
    let buy_now = buy_now_plan(opts.items, opts.buy_now_share, opts.reserve_share);
    for (i, &buy_now) in buy_now.iter().enumerate() {
        loop {
            let seller = sellers.last().expect("one seller at least").clone();
            let terms = auction_client::Terms {
                reserve: reserve_for(i, opts.reserve_share),
                buy_now,
            };
            match seller
                .offer_with(
                    &format!("loadgen {prefix} item {i}"),
                    ITEM_MIN,
                    Some(item_duration.as_secs().max(1)),
                    terms,
                )
                .await
            {
                Ok(o) => {
                    offered.push(o);
                    break;
                }
                Err(ClientError::Denied {
                    reason: Reason::TooManyOpenItems,
                    ..
                }) => {
                    // The server's per-seller limit: carry on with another seller.
                    let s = new_client(opts).await?;
                    let t = Instant::now();
                    s.register(&format!("{prefix}-s{}", sellers.len()))
                        .await
                        .map_err(|e| {
                            RunError::Failed(anyhow::anyhow!("registering a seller: {e}"))
                        })?;
                    stats.register.record(t.elapsed());
                    sellers.push(Arc::new(s));
                }
                Err(e) => return Err(RunError::Failed(anyhow::anyhow!("offering item {i}: {e}"))),
            }
        }
    }
    Ok(offered)
}

/// One task per client reading its announcements (acknowledging WIN / SOLD / NOT-SOLD) into
/// `shared.notices`, for the verification; the run aborts them at its end.
pub(super) fn read_announcements(accounts: &Accounts, shared: &Arc<Shared>) -> Vec<JoinHandle<()>> {
    let mut drains = Vec::new();
    for client in accounts
        .sellers
        .iter()
        .chain(accounts.bidders.iter().flatten())
    {
        drains.push(tokio::spawn(drain_announcements(
            client.clone(),
            shared.clone(),
        )));
    }
    drains
}

/// Opens each registered bidder's channels to the items `assignment` gives it; returns them
/// by bidder index, each with its item's index. A channel that fails to open is counted as an
/// error and left out.
pub(super) async fn open_channels(
    opts: &Options,
    assignment: &[Vec<usize>],
    accounts: &Accounts,
    offered: &[Offered],
    shared: &Shared,
) -> Vec<Vec<(usize, ItemChannel)>> {
    let bidder_clients = &accounts.bidders;
    let pairs: Vec<(usize, usize)> = assignment
        .iter()
        .enumerate()
        .filter(|(b, _)| bidder_clients[*b].is_some())
        .flat_map(|(b, joined)| joined.iter().map(move |&i| (b, i)))
        .collect();
    let opened: Vec<(usize, usize, Result<ItemChannel, ClientError>)> = stream::iter(pairs)
        .map(|(b, i)| {
            let client = bidder_clients[b].clone().expect("filtered above");
            let channel = offered[i].channel.clone();
            async move {
                let t = Instant::now();
                let r = client.open_channel(&channel).await;
                if r.is_ok() {
                    shared.stats.connect.record(t.elapsed());
                }
                (b, i, r)
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    let mut per_bidder: Vec<Vec<(usize, ItemChannel)>> =
        (0..opts.bidders).map(|_| Vec::new()).collect();
    for (b, i, r) in opened {
        match r {
            Ok(ch) => per_bidder[b].push((i, ch)),
            Err(e) => {
                tracing::warn!(bidder = b, item = i, error = %e, "could not open a channel");
                shared
                    .stats
                    .errors
                    .add(format!("connect-{}", error_kind(&e)));
            }
        }
    }
    tracing::info!(
        channels = per_bidder.iter().map(Vec::len).sum::<usize>(),
        "channels open"
    );
    per_bidder
}

/// `--stalled`: clients that join every item and stop reading. Their channels are not read
/// after the first STATE, so the server sees a full socket once the kernel's buffers are; the
/// channels must be kept (not dropped) until bidding is done. The clients go into
/// `accounts.stalled`. Adds a note saying so.
pub(super) async fn join_stalled(
    opts: &Options,
    offered: &[Offered],
    shared: &Shared,
    accounts: &mut Accounts,
    notes: &mut Vec<String>,
) -> Result<Vec<ItemChannel>, RunError> {
    let prefix = &shared.prefix;
    let mut stalled = Vec::new();
    for s in 0..opts.stalled {
        let client = new_client(opts).await?;
        if let Err(e) = client.register(&format!("{prefix}-x{s}")).await {
            shared
                .stats
                .errors
                .add(format!("stalled-register-{}", error_kind(&e)));
            continue;
        }
        for o in offered {
            match client.open_channel(&o.channel).await {
                Ok(ch) => stalled.push(ch),
                Err(e) => shared
                    .stats
                    .errors
                    .add(format!("stalled-connect-{}", error_kind(&e))),
            }
        }
        accounts.stalled.push(Arc::new(client));
    }
    if opts.stalled > 0 {
        notes.push(format!(
            "{} stalled clients joined every item and stopped reading ({} channels)",
            opts.stalled,
            stalled.len()
        ));
    }
    Ok(stalled)
}

/// A client of the server with a fresh key, not yet registered.
async fn new_client(opts: &Options) -> Result<Client, RunError> {
    let identity = Identity::ephemeral().map_err(RunError::Failed)?;
    let servers = if opts.cluster.is_empty() {
        vec![opts.server]
    } else {
        opts.cluster.clone()
    };
    Client::of_any(servers, identity, &opts.ca, None)
        .await
        .map_err(|e| RunError::Failed(e.into()))
}

async fn drain_announcements(client: Arc<Client>, shared: Arc<Shared>) {
    let me = client.name().unwrap_or_default();
    while let Some(msg) = client.next_announcement().await {
        let mut notices = shared.notices.lock().unwrap_or_else(|p| p.into_inner());
        match msg {
            ServerBody::Sold {
                item,
                amount,
                winner,
                ..
            } => notices.entry(item).or_default().sold = Some((winner, amount)),
            ServerBody::NotSold { item, .. } => notices.entry(item).or_default().not_sold = true,
            ServerBody::Win { item, amount, .. } => {
                notices.entry(item).or_default().win = Some((me.clone(), amount))
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buy_it_now_goes_to_a_share_of_the_items_without_a_reserve() {
        let plan = buy_now_plan(40, 0.1, 0.2);
        assert_eq!(plan.iter().flatten().count(), 4);
        for (i, p) in plan.iter().enumerate() {
            if p.is_some() {
                assert!(reserve_for(i, 0.2).is_none(), "item {i} has both");
            }
        }
        assert!(buy_now_plan(40, 0.0, 0.2).iter().all(Option::is_none));
        assert_eq!(buy_now_plan(10, 1.0, 0.0).iter().flatten().count(), 10);
        // All items with a reserve: none left for buy it now.
        assert!(buy_now_plan(10, 0.5, 1.0).iter().all(Option::is_none));
    }

    #[test]
    fn reserves_are_spread_evenly_and_alternate_between_passed_and_never_reached() {
        let reserves: Vec<Option<Cents>> = (0..8).map(|i| reserve_for(i, 0.5)).collect();
        let (low, never) = (Some(Cents(ITEM_MIN.0 * 2)), Some(Cents(1_000_000_000_000)));
        assert_eq!(reserves, [None, low, None, never, None, low, None, never]);
        assert!((0..100).all(|i| reserve_for(i, 0.0).is_none()));
        assert_eq!(
            (0..100).filter(|&i| reserve_for(i, 0.2).is_some()).count(),
            20
        );
        assert!((0..10).all(|i| reserve_for(i, 1.0).is_some()));
    }
}
