//! The SQL of items spread over nodes (`cluster/`): what an owner reads to find the items it was
//! given, the accounts its channels authenticate and the leader's commands; what the leader
//! reads to follow the items the others run, and to give out items. Writes that change an
//! item go through the writer, fenced (`Record::ItemAssigned`, `Record::ItemResumed`); the
//! statements here only read, except the leader's command log.

use anyhow::{Context, Result};
use auction_protocol::{Cents, PublicKey};
use std::sync::Arc;
use tokio_postgres::Client;

use super::nodes::Membership;
use super::sql::{Blocker, PgQuery};
use crate::store::{NoticeKind, NoticeRecord, StoredItem};

/// An item given to this node whose channel it has not opened yet: its number, and its port
/// (0 for a new item; the port its former owner used for one taken over).
pub async fn assigned(client: &Client, me: &Membership) -> Result<Vec<(u64, u16)>> {
    let rows = client
        .query(
            "SELECT id, port FROM items
             WHERE owner = $1 AND owner_epoch = $2 AND closed_at IS NULL AND NOT channel_open
             ORDER BY id",
            &[&me.name, &me.epoch],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i32>(1) as u16))
        .collect())
}

/// One item as the snapshot has it, read on `client` (which must live on the current runtime).
pub async fn load_item(client: Arc<Client>, id: u64) -> Result<Option<StoredItem>> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        crate::store::sql::load::load_item(
            &mut PgQuery {
                rt: Blocker::Handle(&handle),
                client: &client,
            },
            id,
        )
    })
    .await
    .context("the item reader stopped")?
}

/// Live accounts numbered above `after`: (number, name, key).
pub async fn accounts_after(client: &Client, after: u64) -> Result<Vec<(u64, String, PublicKey)>> {
    let rows = client
        .query(
            "SELECT id, name, public_key FROM accounts
             WHERE id > $1 AND removed_at IS NULL ORDER BY id",
            &[&(after as i64)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let id = r.get::<_, i64>(0) as u64;
            let key = PublicKey::from_hex(r.get::<_, &str>(2))
                .with_context(|| format!("account {id} has an unreadable public key"))?;
            Ok((id, r.get::<_, String>(1), key))
        })
        .collect()
}

/// The account numbered `id` if it is live: its name and key.
pub async fn account(client: &Client, id: u64) -> Result<Option<(String, PublicKey)>> {
    let row = client
        .query_opt(
            "SELECT name, public_key FROM accounts WHERE id = $1 AND removed_at IS NULL",
            &[&(id as i64)],
        )
        .await?;
    row.map(|r| {
        let key = PublicKey::from_hex(r.get::<_, &str>(1))
            .with_context(|| format!("account {id} has an unreadable public key"))?;
        Ok((r.get::<_, String>(0), key))
    })
    .transpose()
}

/// The live account holding `key`: its number and name.
pub async fn account_by_key(client: &Client, key: &PublicKey) -> Result<Option<(u64, String)>> {
    let row = client
        .query_opt(
            "SELECT id, name FROM accounts WHERE public_key = $1 AND removed_at IS NULL",
            &[&key.to_hex()],
        )
        .await?;
    Ok(row.map(|r| (r.get::<_, i64>(0) as u64, r.get(1))))
}

/// What the leader asks of the nodes running items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The seller accepted a negotiation: the item's minimum becomes `min`.
    LowerMin { item: u64, min: Cents },
    /// The account was deregistered: its connections close, its key is no longer accepted.
    AccountGone { account: u64 },
    /// The operator cancels the item.
    Cancel {
        item: u64,
        operator: u64,
        note: String,
    },
    /// The operator removes the item's bid `bid`.
    RemoveBid {
        item: u64,
        bid: u64,
        operator: u64,
        note: String,
    },
}

/// The last command in the log (a node starting reads only those after it).
pub async fn last_command(client: &Client) -> Result<i64> {
    Ok(client
        .query_one("SELECT coalesce(max(id), 0) FROM item_commands", &[])
        .await?
        .get(0))
}

/// Commands after `after`, in order, with their numbers.
pub async fn commands_after(client: &Client, after: i64) -> Result<Vec<(i64, Command)>> {
    let rows = client
        .query(
            "SELECT id, item, kind, account, min_cents, bid, note FROM item_commands
             WHERE id > $1 ORDER BY id",
            &[&after],
        )
        .await?;
    let mut commands = Vec::new();
    for r in &rows {
        let id: i64 = r.get(0);
        let item: Option<i64> = r.get(1);
        let account: Option<i64> = r.get(3);
        let min: Option<i64> = r.get(4);
        let bid: Option<i64> = r.get(5);
        let note: Option<String> = r.get(6);
        let command = match (r.get::<_, &str>(2), item, account, min) {
            ("cancel-item", Some(item), Some(operator), _) => Command::Cancel {
                item: item as u64,
                operator: operator as u64,
                note: note.unwrap_or_default(),
            },
            ("remove-bid", Some(item), Some(operator), _) if bid.is_some() => Command::RemoveBid {
                item: item as u64,
                bid: bid.unwrap_or_default() as u64,
                operator: operator as u64,
                note: note.unwrap_or_default(),
            },
            ("lower-min", Some(item), _, Some(min)) => Command::LowerMin {
                item: item as u64,
                min: Cents(min as u64),
            },
            ("account-gone", _, Some(account), _) => Command::AccountGone {
                account: account as u64,
            },
            (kind, ..) => {
                tracing::warn!(id, kind, "skipping a command this build does not know");
                continue;
            }
        };
        commands.push((id, command));
    }
    Ok(commands)
}

/// Appends a command to the log (the leader only). Commands older than ten minutes are
/// dropped on the way: every node reads the log within moments.
pub async fn command(client: &Client, command: &Command) -> Result<()> {
    let (item, kind, account, min, bid, note) = match command {
        Command::LowerMin { item, min } => (
            Some(*item as i64),
            "lower-min",
            None,
            Some(min.0 as i64),
            None,
            None,
        ),
        Command::AccountGone { account } => (
            None,
            "account-gone",
            Some(*account as i64),
            None,
            None,
            None,
        ),
        Command::Cancel {
            item,
            operator,
            note,
        } => (
            Some(*item as i64),
            "cancel-item",
            Some(*operator as i64),
            None,
            None,
            Some(note.as_str()),
        ),
        Command::RemoveBid {
            item,
            bid,
            operator,
            note,
        } => (
            Some(*item as i64),
            "remove-bid",
            Some(*operator as i64),
            None,
            Some(*bid as i64),
            Some(note.as_str()),
        ),
    };
    client
        .execute(
            "INSERT INTO item_commands (item, kind, account, min_cents, bid, note)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&item, &kind, &account, &min, &bid, &note],
        )
        .await?;
    client
        .execute(
            "DELETE FROM item_commands WHERE at < now() - interval '10 minutes'",
            &[],
        )
        .await?;
    Ok(())
}

/// Closes the connection log's open sessions of `item` (its former owner's, which ended with
/// it).
pub async fn close_sessions(client: &Client, item: u64, at: u64) -> Result<()> {
    client
        .execute(
            "UPDATE channel_sessions SET disconnected_at = $2
             WHERE item = $1 AND disconnected_at IS NULL",
            &[&(item as i64), &(at as i64)],
        )
        .await?;
    Ok(())
}

/// Where `item` runs now: its owner's name, its channel (`host:port`) once open there, and
/// the item's revision.
pub async fn whereabouts(
    client: &Client,
    item: u64,
) -> Result<Option<(String, Option<String>, i64)>> {
    let row = client
        .query_opt(
            "SELECT i.owner, n.udp_addr, i.port, i.channel_open, i.rev
             FROM items i JOIN nodes n ON n.name = i.owner
             WHERE i.id = $1 AND i.closed_at IS NULL",
            &[&(item as i64)],
        )
        .await?;
    Ok(row.map(|r| {
        let channel = channel_of(r.get(1), r.get(2), r.get(3));
        (r.get(0), channel, r.get(4))
    }))
}

/// The channel address of an item open on the node reachable at `udp`.
fn channel_of(udp: Option<String>, port: i32, open: bool) -> Option<String> {
    let udp: std::net::SocketAddr = udp?.parse().ok()?;
    (open && port > 0).then(|| std::net::SocketAddr::new(udp.ip(), port as u16).to_string())
}

/// A live node and how many open items it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveNode {
    pub name: String,
    pub epoch: u64,
    pub open_items: u64,
}

/// The live nodes (heartbeat current, not fenced), by name.
pub async fn live_nodes(client: &Client) -> Result<Vec<LiveNode>> {
    let rows = client
        .query(
            "SELECT n.name, n.epoch,
                    (SELECT count(*) FROM items i
                     WHERE i.owner = n.name AND i.owner_epoch = n.epoch AND i.closed_at IS NULL)
             FROM nodes n WHERE n.expires_at > now() AND NOT n.fenced ORDER BY n.name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| LiveNode {
            name: r.get(0),
            epoch: r.get::<_, i64>(1) as u64,
            open_items: r.get::<_, i64>(2) as u64,
        })
        .collect())
}

/// Open items whose owner can no longer run them (fenced, gone, or a former life of it).
pub async fn orphans(client: &Client) -> Result<Vec<u64>> {
    let rows = client
        .query(
            "SELECT i.id FROM items i LEFT JOIN nodes n ON n.name = i.owner
             WHERE i.closed_at IS NULL
               AND (n.name IS NULL OR n.fenced OR n.epoch <> i.owner_epoch)
             ORDER BY i.id",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
}

/// An item as the leader follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemState {
    pub id: u64,
    pub rev: i64,
    pub min: Cents,
    pub ends_at: u64,
    /// The leading bid: amount and bidder.
    pub highest: Option<(Cents, String)>,
    /// Where bidders connect, while its owner has it open.
    pub channel: Option<String>,
    /// Once closed: the winner (number, name) and price, if sold.
    pub closed: Option<Option<(u64, String, Cents)>>,
    pub closed_at: Option<u64>,
    /// The reserve and buy-it-now prices.
    pub terms: crate::rules::auction::Terms,
    /// Closed because the operator cancelled it.
    pub cancelled: bool,
}

/// The items among `ids` changed since revision `after`.
pub async fn changed(client: &Client, after: i64, ids: &[i64]) -> Result<Vec<ItemState>> {
    let rows = client
        .query(
            "SELECT i.id, i.rev, i.min_cents, i.ends_at, i.highest_cents, b.name,
                    i.closed_at, i.winner, w.name, i.price_cents,
                    n.udp_addr, i.port, i.channel_open, i.reserve_cents, i.buy_now_cents,
                    i.closed_at IS NOT NULL AND EXISTS (
                        SELECT 1 FROM operator_actions o
                        WHERE o.item = i.id AND o.kind = 'cancel-item')
             FROM items i
             LEFT JOIN accounts b ON b.id = i.highest_bidder
             LEFT JOIN accounts w ON w.id = i.winner
             LEFT JOIN nodes n ON n.name = i.owner AND n.epoch = i.owner_epoch AND NOT n.fenced
             WHERE i.rev > $1 AND i.id = ANY($2)",
            &[&after, &ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let highest = match (r.get::<_, Option<i64>>(4), r.get::<_, Option<String>>(5)) {
                (Some(amount), Some(name)) => Some((Cents(amount as u64), name)),
                _ => None,
            };
            let closed_at: Option<i64> = r.get(6);
            let closed = closed_at.map(|_| {
                match (
                    r.get::<_, Option<i64>>(7),
                    r.get::<_, Option<String>>(8),
                    r.get::<_, Option<i64>>(9),
                ) {
                    (Some(id), Some(name), Some(price)) => {
                        Some((id as u64, name, Cents(price as u64)))
                    }
                    _ => None,
                }
            });
            ItemState {
                id: r.get::<_, i64>(0) as u64,
                rev: r.get(1),
                min: Cents(r.get::<_, i64>(2) as u64),
                ends_at: r.get::<_, i64>(3) as u64,
                highest,
                channel: channel_of(r.get(10), r.get(11), r.get(12)),
                closed,
                closed_at: closed_at.map(|at| at as u64),
                terms: crate::rules::auction::Terms {
                    reserve: r.get::<_, Option<i64>>(13).map(|c| Cents(c as u64)),
                    buy_now: r.get::<_, Option<i64>>(14).map(|c| Cents(c as u64)),
                },
                cancelled: r.get(15),
            }
        })
        .collect())
}

/// The notices a closed item left unacknowledged (WIN / SOLD / NOT-SOLD).
pub async fn notices_of(client: &Client, item: u64) -> Result<Vec<NoticeRecord>> {
    let rows = client
        .query(
            "SELECT id, account, kind, datagram FROM notices
             WHERE item = $1 AND acked_at IS NULL ORDER BY id",
            &[&(item as i64)],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let kind = [NoticeKind::Win, NoticeKind::Sold, NoticeKind::NotSold]
                .into_iter()
                .find(|k| k.as_str() == r.get::<_, &str>(2))?;
            Some(NoticeRecord {
                id: r.get::<_, i64>(0) as u64,
                account: r.get::<_, i64>(1) as u64,
                item,
                kind: kind.as_str(),
                datagram: r.get(3),
            })
        })
        .collect())
}

/// Who leads `item` now (its highest bidder), as the database has it.
pub async fn highest_bidder(client: &Client, item: u64) -> Result<Option<u64>> {
    let row = client
        .query_opt(
            "SELECT highest_bidder FROM items WHERE id = $1",
            &[&(item as i64)],
        )
        .await?;
    Ok(row
        .and_then(|r| r.get::<_, Option<i64>>(0))
        .map(|id| id as u64))
}

/// Whether the operator's action on `item` is stored: its cancellation (`bid` `None`) or the
/// removal of bid `bid`; and whether the item is closed.
pub async fn operator_done(client: &Client, item: u64, bid: Option<u64>) -> Result<(bool, bool)> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM operator_actions
                            WHERE item = $1 AND (bid = $2 OR ($2 IS NULL AND kind = 'cancel-item'))),
                    (SELECT closed_at IS NOT NULL FROM items WHERE id = $1)",
            &[&(item as i64), &bid.map(|b| b as i64)],
        )
        .await?;
    Ok((row.get(0), row.get::<_, Option<bool>>(1).unwrap_or(true)))
}

/// `item`'s highest bid and its bidder's name as the database has them.
pub async fn lead_of(client: &Client, item: u64) -> Result<Option<(Cents, String)>> {
    let row = client
        .query_opt(
            "SELECT i.highest_cents, a.name FROM items i JOIN accounts a ON a.id = i.highest_bidder
             WHERE i.id = $1",
            &[&(item as i64)],
        )
        .await?;
    Ok(row.map(|r| (Cents(r.get::<_, i64>(0) as u64), r.get(1))))
}

/// Whether `item` has an accepted bid numbered `bid` the operator has not removed.
pub async fn bid_in_force(client: &Client, item: u64, bid: u64) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM bids b WHERE b.id = $1 AND b.item = $2 AND b.accepted
                            AND NOT EXISTS (SELECT 1 FROM operator_actions o WHERE o.bid = b.id))",
            &[&(bid as i64), &(item as i64)],
        )
        .await?
        .get(0))
}

/// `item`'s minimum as the database has it, and whether it is closed.
pub async fn min_of(client: &Client, item: u64) -> Result<Option<(Cents, bool)>> {
    let row = client
        .query_opt(
            "SELECT min_cents, closed_at IS NOT NULL FROM items WHERE id = $1",
            &[&(item as i64)],
        )
        .await?;
    Ok(row.map(|r| (Cents(r.get::<_, i64>(0) as u64), r.get(1))))
}

/// Several nodes' boards: the items another node runs (not `me` under its current epoch),
/// as the board shows them, each with its latest accepted bid and the revision it was read at.
/// `after`: only those changed since that revision; `None`: every open item and the latest
/// `closed` results.
pub async fn board_items(
    client: &Client,
    me: &Membership,
    after: Option<i64>,
    closed: i64,
) -> Result<Vec<BoardRow>> {
    const COLUMNS: &str = "SELECT i.id, i.rev, i.description, s.name, i.min_cents, i.ends_at,
                i.highest_cents, b.name, i.closed_at, w.name, i.price_cents,
                ((SELECT count(*) FROM bids x WHERE x.item = i.id AND x.accepted)
                 - (SELECT count(*) FROM operator_actions o
                    WHERE o.item = i.id AND o.bid IS NOT NULL)),
                (SELECT count(*) FROM (
                    SELECT x.ends_at > lag(x.ends_at) OVER (ORDER BY x.id) AS later
                    FROM bids x WHERE x.item = i.id AND x.accepted) AS e WHERE e.later),
                lb.at, lb.name, lb.amount_cents, lb.ends_at, lb.later,
                i.reserve_cents, i.buy_now_cents,
                (SELECT o.note FROM operator_actions o
                 WHERE o.item = i.id AND o.kind = 'cancel-item'
                 ORDER BY o.id LIMIT 1)
         FROM items i
         JOIN accounts s ON s.id = i.seller
         LEFT JOIN accounts b ON b.id = i.highest_bidder
         LEFT JOIN accounts w ON w.id = i.winner
         LEFT JOIN LATERAL (
             SELECT x.at, a.name, x.ends_at,
                    CASE WHEN x.max_cents IS NOT NULL AND NOT x.\"leading\" THEN NULL
                         ELSE x.amount_cents END AS amount_cents,
                    x.ends_at > lag(x.ends_at) OVER (ORDER BY x.id) AS later
             FROM bids x JOIN accounts a ON a.id = x.bidder
             WHERE x.item = i.id AND x.accepted
             ORDER BY x.id DESC LIMIT 1) lb ON true
         WHERE NOT (i.owner IS NOT DISTINCT FROM $1 AND i.owner_epoch IS NOT DISTINCT FROM $2)";
    let (name, epoch) = (&me.name, &me.epoch);
    let rows = match after {
        Some(rev) => {
            let sql = format!("{COLUMNS} AND i.rev > $3 ORDER BY i.rev");
            client.query(&sql, &[name, epoch, &rev]).await?
        }
        None => {
            // The latest results by number (the primary key: no scan of every item).
            let sql = format!(
                "{COLUMNS} AND (i.closed_at IS NULL OR i.id IN (
                     SELECT id FROM items WHERE closed_at IS NOT NULL
                     ORDER BY id DESC LIMIT $3))
                 ORDER BY i.rev"
            );
            client.query(&sql, &[name, epoch, &closed]).await?
        }
    };
    Ok(rows
        .iter()
        .map(|r| {
            let closed_at: Option<i64> = r.get(8);
            let (price, leader) = match closed_at {
                None => (r.get::<_, Option<i64>>(6), r.get::<_, Option<String>>(7)),
                Some(_) => (r.get::<_, Option<i64>>(10), r.get::<_, Option<String>>(9)),
            };
            let item = crate::web::BoardItem {
                item: r.get::<_, i64>(0) as u64,
                description: r.get(2),
                seller: r.get(3),
                min: Cents(r.get::<_, i64>(4) as u64),
                price: price.map(|p| Cents(p as u64)),
                leader,
                bids: r.get::<_, i64>(11) as u64,
                ends_at: r.get::<_, i64>(5) as u64,
                extensions: r.get::<_, i64>(12).try_into().unwrap_or(u32::MAX),
                first_end: None,
                open: closed_at.is_none(),
                closed_at: closed_at.map(|at| at as u64),
                reserve_met: None,
                buy_now: None,
                cancelled: r.get(20),
            };
            // The seller's terms, against the highest bid (even once closed: whether it met
            // the reserve; buy it now only while open).
            let terms = crate::rules::auction::Terms {
                reserve: r.get::<_, Option<i64>>(18).map(|c| Cents(c as u64)),
                buy_now: r.get::<_, Option<i64>>(19).map(|c| Cents(c as u64)),
            };
            let highest = r.get::<_, Option<i64>>(6).map(|c| Cents(c as u64));
            let item = crate::web::BoardItem {
                reserve_met: terms.reserve_met(highest),
                buy_now: terms.buy_now(highest).filter(|_| item.open),
                ..item
            };
            let last = match (r.get::<_, Option<i64>>(13), r.get::<_, Option<String>>(14)) {
                (Some(at), Some(bidder)) => Some(crate::web::BoardBid {
                    at: at as u64,
                    bidder,
                    amount: r.get::<_, Option<i64>>(15).map(|a| Cents(a as u64)),
                    ends_at: r.get::<_, Option<i64>>(16).unwrap_or(0) as u64,
                    extended: r.get::<_, Option<bool>>(17).unwrap_or(false),
                }),
                _ => None,
            };
            BoardRow {
                rev: r.get::<_, i64>(1),
                item,
                last,
            }
        })
        .collect())
}

/// An item another node runs, as a node's board reads it (see [`board_items`]).
pub struct BoardRow {
    pub rev: i64,
    pub item: crate::web::BoardItem,
    /// Its latest accepted bid, if any.
    pub last: Option<crate::web::BoardBid>,
}
