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

pub mod load;
pub mod status;
pub mod write;

use anyhow::{bail, Context, Result};
use auction_protocol::Cents;

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

/// The first `limit` accepted bids on `item` in the order they were committed: who placed each,
/// its amount (none for a proxy bid outbid at once: that was its maximum, which stays private)
/// and the end after it (see
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

/// The latest `limit` accepted bids on `item` in commit order, as [`history`] gives them,
/// and whether it has older ones (see [`crate::store::Storage::latest_bids`]). Reads
/// `limit` + 1 rows, newest first, and joins only those to their bidders' names: the cost
/// does not grow with the item's bids beyond finding them (a scan of the item's index
/// entries). Whether a bid extended the end compares it with the bid before it, which the
/// extra row supplies for the oldest one shown.
pub fn latest_bids(q: &mut dyn Query, item: u64, limit: u64) -> Result<(bool, Vec<BoardBid>)> {
    let mut cols = Cols::new(["at", "name", "amount_cents", "ends_at"]);
    let mut rows = collect(
        q,
        "SELECT b.at, a.name, b.ends_at,
                CASE WHEN b.max_cents IS NOT NULL AND NOT b.\"leading\" THEN NULL
                     ELSE b.amount_cents END AS amount_cents
         FROM (SELECT id, at, bidder, ends_at, max_cents, \"leading\", amount_cents
               FROM bids WHERE item = $1 AND accepted
               ORDER BY id DESC LIMIT $2) AS b
         JOIN accounts a ON a.id = b.bidder
         ORDER BY b.id",
        params![item, limit.saturating_add(1)],
        |r| {
            let [at, name, amount, ends_at] = cols.of(r)?;
            Ok(BoardBid {
                at: r.u64(at)?,
                bidder: r.string(name)?,
                amount: r.opt_u64(amount)?.map(Cents),
                ends_at: r.opt_u64(ends_at)?.unwrap_or(0),
                extended: false,
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
    Ok((more, rows))
}

/// Each bidder's highest accepted bid on `item`, best first (earlier first among equal ones),
/// for second-chance offers (see [`crate::store::Storage::best_bids`]).
pub fn best_bids(q: &mut dyn Query, item: u64) -> Result<Vec<(Party, Cents)>> {
    let mut cols = Cols::new(["bidder", "name", "best"]);
    collect(
        q,
        "SELECT b.bidder, a.name, max(b.amount_cents) AS best, min(b.id) AS first
         FROM bids b JOIN accounts a ON a.id = b.bidder
         WHERE b.item = $1 AND b.accepted
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
