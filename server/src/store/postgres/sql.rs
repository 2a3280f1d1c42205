//! PostgreSQL's side of the shared SQL (`store/sql/`), on tokio-postgres. A write transaction
//! collects its statements ([`PgBatch`]) and sends them all at once, pipelined on one
//! connection, so a group commit costs about two round trips to the database however many
//! records it carries; reads run one query at a time on the caller's runtime.

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use futures_util::future::{join3, join_all};
use std::collections::HashMap;
use std::error::Error;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, GenericClient, Statement};

use crate::store::sql::{Exec, Query, Row, Value};

type BoxError = Box<dyn Error + Sync + Send>;

/// Writes `v` as `ty`, refusing a value of another type (so a bug can never store an integer's
/// bytes in a text column).
fn typed<T: ToSql>(v: T, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
    if !T::accepts(ty) {
        return Err(format!(
            "a {} value cannot be stored as {ty}",
            std::any::type_name::<T>()
        )
        .into());
    }
    v.to_sql(ty, out)
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT2 => typed(i16::try_from(*v)?, ty, out),
                Type::INT4 => typed(i32::try_from(*v)?, ty, out),
                _ => typed(*v, ty, out),
            },
            Value::Text(v) => typed(v.as_str(), ty, out),
            Value::Bytes(v) => typed(v.as_slice(), ty, out),
            Value::Bool(v) => typed(*v, ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::TEXT
                | Type::VARCHAR
                | Type::BYTEA
                | Type::BOOL
        )
    }

    to_sql_checked!();
}

/// The statements a connection has prepared, by their text (prepared once per connection).
#[derive(Default)]
pub(super) struct Prepared {
    statements: HashMap<&'static str, Statement>,
}

impl Prepared {
    async fn get(&mut self, client: &impl GenericClient, sql: &'static str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = client
            .prepare(sql)
            .await
            .with_context(|| format!("preparing {}", first_line(sql)))?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }
}

fn first_line(sql: &str) -> &str {
    sql.trim().lines().next().unwrap_or("")
}

/// A write transaction's statements, collected by [`Exec`] and then sent together.
#[derive(Default)]
pub(super) struct PgBatch {
    statements: Vec<(&'static str, Vec<Value>)>,
}

impl Exec for PgBatch {
    fn exec(&mut self, sql: &'static str, params: Vec<Value>) -> Result<()> {
        self.statements.push((sql, params));
        Ok(())
    }
}

impl PgBatch {
    /// Runs every statement in one transaction on `client`, BEGIN and COMMIT included, all
    /// sent at once (pipelined, in order): a commit costs one round trip to the database (plus
    /// one per statement text the connection has not prepared yet). If any statement fails,
    /// PostgreSQL aborts the transaction and answers the COMMIT with a rollback: the first
    /// failure is returned, and nothing of the batch is stored.
    pub async fn run_committed(self, client: &Client, prepared: &mut Prepared) -> Result<()> {
        let mut statements = Vec::with_capacity(self.statements.len());
        for (sql, _) in &self.statements {
            statements.push(prepared.get(client, sql).await?);
        }
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = self
            .statements
            .iter()
            .map(|(_, p)| p.iter().map(|v| v as &(dyn ToSql + Sync)).collect())
            .collect();
        let begin = async { client.batch_execute("BEGIN").await.context("BEGIN") };
        let writes = join_all(statements.iter().zip(&params).zip(&self.statements).map(
            |((s, p), (sql, _))| async move {
                client
                    .execute(s, p)
                    .await
                    .with_context(|| format!("running {}", first_line(sql)))
            },
        ));
        let commit = async { client.batch_execute("COMMIT").await.context("COMMIT") };
        // Polled in this order, so they are sent in this order.
        let (begun, written, committed) = join3(begin, writes, commit).await;
        begun?;
        for w in written {
            w?;
        }
        committed
    }
}

/// How a synchronous caller waits for the database.
pub(super) enum Blocker<'a> {
    /// The writer thread, on the runtime it owns (only its `block_on` drives the connection).
    Owner(&'a tokio::runtime::Runtime),
    /// A blocking task of the server's runtime, whose workers drive the connection.
    Handle(&'a tokio::runtime::Handle),
}

impl Blocker<'_> {
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        match self {
            Blocker::Owner(rt) => rt.block_on(f),
            Blocker::Handle(h) => h.block_on(f),
        }
    }
}

/// Reads on `client`, from a thread that may block (see [`Blocker`]).
pub(super) struct PgQuery<'a> {
    pub rt: Blocker<'a>,
    pub client: &'a Client,
}

impl Query for PgQuery<'_> {
    fn rows(
        &mut self,
        sql: &'static str,
        params: Vec<Value>,
        each: &mut dyn FnMut(&dyn Row) -> Result<()>,
    ) -> Result<()> {
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let rows = self
            .rt
            .block_on(self.client.query(sql, &refs))
            .with_context(|| format!("running {}", first_line(sql)))?;
        for row in &rows {
            each(row)?;
        }
        Ok(())
    }
}

impl Row for tokio_postgres::Row {
    fn index(&self, name: &str) -> Option<usize> {
        self.columns().iter().position(|c| c.name() == name)
    }

    fn int(&self, i: usize) -> Result<Option<i64>> {
        let ty = self.columns().get(i).context("no such column")?.type_();
        Ok(match *ty {
            Type::INT2 => self.try_get::<_, Option<i16>>(i)?.map(i64::from),
            Type::INT4 => self.try_get::<_, Option<i32>>(i)?.map(i64::from),
            Type::INT8 => self.try_get::<_, Option<i64>>(i)?,
            _ => bail!("column {i} is {ty}, not an integer"),
        })
    }

    fn text(&self, i: usize) -> Result<Option<String>> {
        Ok(self.try_get(i)?)
    }

    fn bytes(&self, i: usize) -> Result<Option<Vec<u8>>> {
        Ok(self.try_get(i)?)
    }

    fn bool(&self, i: usize) -> Result<Option<bool>> {
        Ok(self.try_get(i)?)
    }
}
