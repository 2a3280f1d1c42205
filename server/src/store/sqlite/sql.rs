//! SQLite's side of the shared SQL (`store/sql/`): its statements run through rusqlite, with
//! `$1`-style parameters rewritten as SQLite's `?1` (a `$1` is a *named* parameter to SQLite,
//! numbered by first appearance, which would misplace values).

use anyhow::{bail, Result};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, Transaction};
use std::collections::HashMap;

use crate::store::sql::{Exec, Query, Row, Value};

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Bytes(v) => ValueRef::Blob(v),
            Value::Bool(v) => ValueRef::Integer(i64::from(*v)),
            Value::Null => ValueRef::Null,
        }))
    }
}

/// `sql` with every `$N` written `?N`.
fn rewrite(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// The statements' SQLite spelling, made once per statement.
#[derive(Default)]
pub(super) struct Dialect {
    rewritten: HashMap<&'static str, String>,
}

impl Dialect {
    fn sql(&mut self, sql: &'static str) -> &str {
        self.rewritten.entry(sql).or_insert_with(|| rewrite(sql))
    }
}

/// A write transaction, for [`crate::store::sql::write::write`].
pub(super) struct SqliteTx<'a, 'c> {
    pub tx: &'a Transaction<'c>,
    pub dialect: &'a mut Dialect,
}

impl Exec for SqliteTx<'_, '_> {
    fn exec(&mut self, sql: &'static str, params: Vec<Value>) -> Result<()> {
        self.tx
            .prepare_cached(self.dialect.sql(sql))?
            .execute(rusqlite::params_from_iter(params.iter()))?;
        Ok(())
    }
}

/// Reads on one connection.
pub(super) struct SqliteQuery<'a> {
    pub conn: &'a Connection,
    pub dialect: Dialect,
}

impl<'a> SqliteQuery<'a> {
    pub fn new(conn: &'a Connection) -> SqliteQuery<'a> {
        SqliteQuery {
            conn,
            dialect: Dialect::default(),
        }
    }
}

impl Query for SqliteQuery<'_> {
    fn rows(
        &mut self,
        sql: &'static str,
        params: Vec<Value>,
        each: &mut dyn FnMut(&dyn Row) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self.conn.prepare(self.dialect.sql(sql))?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        while let Some(row) = rows.next()? {
            each(row)?;
        }
        Ok(())
    }
}

impl Row for rusqlite::Row<'_> {
    fn index(&self, name: &str) -> Option<usize> {
        self.as_ref().column_index(name).ok()
    }

    fn int(&self, i: usize) -> Result<Option<i64>> {
        match self.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(v) => Ok(Some(v)),
            other => bail!("column {i} holds {:?}, not an integer", other.data_type()),
        }
    }

    fn text(&self, i: usize) -> Result<Option<String>> {
        match self.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(v) => Ok(Some(String::from_utf8(v.to_vec())?)),
            other => bail!("column {i} holds {:?}, not text", other.data_type()),
        }
    }

    fn bytes(&self, i: usize) -> Result<Option<Vec<u8>>> {
        match self.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Blob(v) => Ok(Some(v.to_vec())),
            other => bail!("column {i} holds {:?}, not bytes", other.data_type()),
        }
    }

    fn bool(&self, i: usize) -> Result<Option<bool>> {
        Ok(self.int(i)?.map(|v| v != 0))
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn numbered_parameters_become_sqlites() {
        assert_eq!(
            rewrite("UPDATE t SET a = $2, b = $10 WHERE id = $1 AND c = '$'"),
            "UPDATE t SET a = ?2, b = ?10 WHERE id = ?1 AND c = '$'"
        );
    }
}
