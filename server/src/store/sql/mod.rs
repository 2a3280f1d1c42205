//! What the two SQL backends share: how each [`Record`](crate::store::Record) is written
//! (`write.rs`) and how the [`Snapshot`](crate::store::Snapshot) is read back (`load.rs`),
//! written once for SQLite and PostgreSQL alike, so the two cannot drift apart. Owned by no
//! task: the functions run on a backend's writer thread (writes, inside its transaction) or at
//! its start (the load), through the small traits below that each backend implements
//! (`sqlite/sql.rs`, `postgres/sql.rs`).
//!
//! The SQL is the dialect both engines speak: `$1`-style parameters (SQLite reads them as
//! `?1`; its adapter rewrites them), `ON CONFLICT` upserts, `CASE` instead of the two-argument
//! `max`, and the column `"leading"` quoted (a reserved word in PostgreSQL).

pub mod audit;
pub mod load;
pub mod status;
pub mod write;

use anyhow::{bail, Context, Result};
use auction_protocol::udp::{Cancellation, HistoryBid};
use auction_protocol::{Cents, PublicKey};

use crate::accounts::AccountId;
use crate::rules::settlement::Party;
use crate::web::BoardBid;

/// A parameter. Numbers are `i64` as both engines store them; the server's `u64` values (ids,
/// cents, Unix ms) all stay below 2^53, and [`Value::uint`] refuses any that would not fit.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    Bool(bool),
    Null,
}

impl Value {
    pub fn uint(v: u64) -> Value {
        // Above i64::MAX only through a bug elsewhere: store the largest rather than wrap.
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::uint(v)
    }
}

impl From<u16> for Value {
    fn from(v: u16) -> Value {
        Value::Int(i64::from(v))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Bytes(v.to_vec())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// Parameters, each converted to a [`Value`].
#[macro_export]
macro_rules! sql_params {
    ($($v:expr),* $(,)?) => {
        vec![$($crate::store::sql::Value::from($v)),*]
    };
}
pub use sql_params as params;

/// Statements inside a backend's open write transaction. Nothing written is read back within
/// the transaction, so a backend may send them all at once (PostgreSQL pipelines them) and
/// report the first failure when the transaction commits.
pub trait Exec {
    fn exec(&mut self, sql: &'static str, params: Vec<Value>) -> Result<()>;
}

/// Queries, for the load at start and for reads beside the writer.
pub trait Query {
    /// Runs `sql`, calling `each` with every row in order.
    fn rows(
        &mut self,
        sql: &'static str,
        params: Vec<Value>,
        each: &mut dyn FnMut(&dyn Row) -> Result<()>,
    ) -> Result<()>;
}

/// One row of a result, read by column position (find positions by name with [`Cols`]).
/// Every getter gives `None` for NULL and an error for a value of another type.
pub trait Row {
    /// The position of the column called `name`.
    fn index(&self, name: &str) -> Option<usize>;
    /// Any integer column.
    fn int(&self, i: usize) -> Result<Option<i64>>;
    fn text(&self, i: usize) -> Result<Option<String>>;
    fn bytes(&self, i: usize) -> Result<Option<Vec<u8>>>;
    /// A boolean column (SQLite keeps them as 0 and 1).
    fn bool(&self, i: usize) -> Result<Option<bool>>;
}

/// Typed reads that every caller wants, on any [`Row`].
pub trait RowExt: Row {
    fn u64(&self, i: usize) -> Result<u64> {
        self.opt_u64(i)?.context("unexpected NULL")
    }
    fn opt_u64(&self, i: usize) -> Result<Option<u64>> {
        self.int(i)?
            .map(|v| u64::try_from(v).with_context(|| format!("negative value {v}")))
            .transpose()
    }
    fn u16(&self, i: usize) -> Result<u16> {
        let v = self.u64(i)?;
        u16::try_from(v).with_context(|| format!("{v} is not a port"))
    }
    fn string(&self, i: usize) -> Result<String> {
        self.text(i)?.context("unexpected NULL")
    }
    fn blob(&self, i: usize) -> Result<Vec<u8>> {
        self.bytes(i)?.context("unexpected NULL")
    }
    fn boolean(&self, i: usize) -> Result<bool> {
        self.bool(i)?.context("unexpected NULL")
    }
}

impl<R: Row + ?Sized> RowExt for R {}

/// The positions of a query's columns, found by name on its first row and kept for the rest:
/// reading by name keeps a reordered SELECT from moving a value into another field, and
/// finding the names once keeps a load of tens of thousands of rows from looking each up at
/// every value.
pub struct Cols<const N: usize> {
    names: [&'static str; N],
    found: Option<[usize; N]>,
}

impl<const N: usize> Cols<N> {
    pub fn new(names: [&'static str; N]) -> Cols<N> {
        Cols { names, found: None }
    }

    pub fn of(&mut self, row: &dyn Row) -> Result<[usize; N]> {
        if let Some(found) = self.found {
            return Ok(found);
        }
        let mut found = [0; N];
        for (slot, name) in found.iter_mut().zip(self.names) {
            match row.index(name) {
                Some(i) => *slot = i,
                None => bail!("the query has no column {name:?}"),
            }
        }
        self.found = Some(found);
        Ok(found)
    }
}

/// Every row of `sql`, each turned into a `T` by `read`.
pub fn collect<T>(
    q: &mut dyn Query,
    sql: &'static str,
    params: Vec<Value>,
    mut read: impl FnMut(&dyn Row) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    q.rows(sql, params, &mut |r| {
        out.push(read(r)?);
        Ok(())
    })?;
    Ok(out)
}

/// The first `limit` accepted bids on `item` in force (not removed by the operator) in the
/// order they were committed: who placed each, its amount (none for a proxy bid outbid at
/// once: that was its maximum, which stays private) and the end after it (see
/// [`crate::store::Storage::history`]).
pub fn history(q: &mut dyn Query, item: u64, limit: u64) -> Result<Vec<BoardBid>> {
    let mut cols = Cols::new(["at", "name", "amount_cents", "ends_at", "later"]);
    collect(
        q,
        "SELECT b.at, a.name, b.ends_at,
                CASE WHEN b.max_cents IS NOT NULL AND NOT b.\"leading\" THEN NULL
                     ELSE b.amount_cents END AS amount_cents,
                CASE WHEN b.ends_at > lag(b.ends_at) OVER (ORDER BY b.id) THEN 1 ELSE 0 END
                    AS later
         FROM bids b JOIN accounts a ON a.id = b.bidder
         WHERE b.item = $1 AND b.accepted
           AND NOT EXISTS (SELECT 1 FROM operator_actions o WHERE o.bid = b.id)
         ORDER BY b.id
         LIMIT $2",
        params![item, limit],
        |r| {
            let [at, name, amount, ends_at, later] = cols.of(r)?;
            Ok(BoardBid {
                at: r.u64(at)?,
                bidder: r.string(name)?,
                amount: r.opt_u64(amount)?.map(Cents),
                ends_at: r.opt_u64(ends_at)?.unwrap_or(0),
                extended: r.u64(later)? == 1,
            })
        },
    )
}

/// The latest `limit` accepted bids on `item` in commit order, removed ones included (with
/// the operator's note), whether it has older ones, and the operator's cancellation of the
/// item if any (see [`crate::store::Storage::latest_bids`]). Reads `limit` + 1 rows, newest
/// first, and joins only those to their bidders' names: the cost does not grow with the
/// item's bids beyond finding them (a scan of the item's index entries). Whether a bid
/// extended the end compares it with the bid before it, which the extra row supplies for the
/// oldest one shown.
pub fn latest_bids(q: &mut dyn Query, item: u64, limit: u64) -> Result<BidHistory> {
    let mut cols = Cols::new([
        "id",
        "at",
        "name",
        "amount_cents",
        "ends_at",
        "note",
        "removed_at",
    ]);
    let mut rows = collect(
        q,
        "SELECT b.id, b.at, a.name, b.ends_at,
                CASE WHEN b.max_cents IS NOT NULL AND NOT b.\"leading\" THEN NULL
                     ELSE b.amount_cents END AS amount_cents,
                o.note, o.at AS removed_at
         FROM (SELECT id, at, bidder, ends_at, max_cents, \"leading\", amount_cents
               FROM bids WHERE item = $1 AND accepted
               ORDER BY id DESC LIMIT $2) AS b
         JOIN accounts a ON a.id = b.bidder
         LEFT JOIN operator_actions o ON o.bid = b.id
         ORDER BY b.id",
        params![item, limit.saturating_add(1)],
        |r| {
            let [id, at, name, amount, ends_at, note, removed_at] = cols.of(r)?;
            let removed = match r.opt_u64(removed_at)? {
                Some(at) => Some(Cancellation {
                    at,
                    note: r.string(note)?,
                }),
                None => None,
            };
            Ok(HistoryBid {
                at: r.u64(at)?,
                bidder: r.string(name)?,
                amount: r.opt_u64(amount)?.map(Cents),
                ends_at: r.opt_u64(ends_at)?.unwrap_or(0),
                extended: false,
                bid: r.u64(id)?,
                removed,
            })
        },
    )?;
    for i in 1..rows.len() {
        rows[i].extended = rows[i].ends_at > rows[i - 1].ends_at;
    }
    let more = rows.len() as u64 > limit;
    if more {
        rows.remove(0);
    }
    let mut cols = Cols::new(["at", "note"]);
    let cancelled = collect(
        q,
        "SELECT at, note FROM operator_actions WHERE item = $1 AND kind = 'cancel-item'",
        params![item],
        |r| {
            let [at, note] = cols.of(r)?;
            Ok(Cancellation {
                at: r.u64(at)?,
                note: r.string(note)?,
            })
        },
    )?
    .pop();
    Ok(BidHistory {
        more,
        bids: rows,
        cancelled,
    })
}

/// What `history` answers: see [`latest_bids`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BidHistory {
    pub more: bool,
    pub bids: Vec<HistoryBid>,
    pub cancelled: Option<Cancellation>,
}

/// One accepted bid in force, as the item task judges the bids again after the operator
/// removed one (`rules::auction::replay`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBid {
    /// Its row: the number `history` shows.
    pub id: u64,
    pub bidder: AccountId,
    pub name: String,
    pub key: PublicKey,
    /// Whether the bidder's account still exists.
    pub live: bool,
    /// The amount as stored (a proxy bid's price when leading, its maximum when outbid).
    pub amount: Cents,
    /// The amount others may see: `None` for a proxy bid outbid at once (its maximum).
    pub shown: Option<Cents>,
    /// A proxy bid's maximum.
    pub max: Option<Cents>,
    pub at: u64,
}

/// The accepted bids on `item` still in force (none the operator removed), in commit order,
/// with their bidders' keys (see [`StoredBid`]).
pub fn item_bids(q: &mut dyn Query, item: u64) -> Result<Vec<StoredBid>> {
    let mut cols = Cols::new([
        "id",
        "bidder",
        "name",
        "public_key",
        "removed_at",
        "amount_cents",
        "max_cents",
        "at",
        "leading",
    ]);
    collect(
        q,
        "SELECT b.id, b.bidder, a.name, a.public_key, a.removed_at, b.amount_cents,
                b.max_cents, b.at, b.\"leading\" AS leading
         FROM bids b JOIN accounts a ON a.id = b.bidder
         WHERE b.item = $1 AND b.accepted
           AND NOT EXISTS (SELECT 1 FROM operator_actions o WHERE o.bid = b.id)
         ORDER BY b.id",
        params![item],
        |r| {
            let [id, bidder, name, key, removed_at, amount, max, at, leading] = cols.of(r)?;
            let key = PublicKey::from_hex(&r.string(key)?)
                .context("a bidder's stored key is not 64 hex digits")?;
            let (amount, max) = (Cents(r.u64(amount)?), r.opt_u64(max)?.map(Cents));
            // Stored before proxy bids existed, `leading` is absent: such bids were direct.
            let outbid = max.is_some() && r.bool(leading)? == Some(false);
            Ok(StoredBid {
                id: r.u64(id)?,
                bidder: r.u64(bidder)?,
                name: r.string(name)?,
                key,
                live: r.opt_u64(removed_at)?.is_none(),
                amount,
                shown: (!outbid).then_some(amount),
                max,
                at: r.u64(at)?,
            })
        },
    )
}

/// Each bidder's highest accepted bid in force on `item` (none the operator removed), best first (earlier first among equal ones),
/// for second-chance offers (see [`crate::store::Storage::best_bids`]).
pub fn best_bids(q: &mut dyn Query, item: u64) -> Result<Vec<(Party, Cents)>> {
    let mut cols = Cols::new(["bidder", "name", "best"]);
    collect(
        q,
        "SELECT b.bidder, a.name, max(b.amount_cents) AS best, min(b.id) AS first
         FROM bids b JOIN accounts a ON a.id = b.bidder
         WHERE b.item = $1 AND b.accepted
           AND NOT EXISTS (SELECT 1 FROM operator_actions o WHERE o.bid = b.id)
         GROUP BY b.bidder, a.name
         ORDER BY best DESC, first ASC",
        params![item],
        |r| {
            let [bidder, name, best] = cols.of(r)?;
            Ok((
                Party {
                    id: r.u64(bidder)?,
                    name: r.string(name)?,
                },
                Cents(r.u64(best)?),
            ))
        },
    )
}
