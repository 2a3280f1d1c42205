//! The database file itself: the schema ([`MIGRATIONS`]), the checks made before anything in a
//! file is changed, and the lock file that keeps a second server off it. All of it runs once, in
//! `open`, before the writer thread exists.
//!
//! `PRAGMA user_version` says how many migrations have been applied. README.md ("Data and
//! recovery") describes the tables for operators.

use anyhow::{bail, Context, Result};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use std::fs::File;
use std::path::{Path, PathBuf};

/// "AUCT": marks the file as ours, so another program's SQLite file is not mistaken for one.
pub(super) const APPLICATION_ID: i32 = 0x4155_4354;

/// Schema migrations, applied in order; `user_version` counts those applied. Never edit one
/// that has shipped: add another.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: accounts, items, bids, notices, replay windows.
    r#"
    CREATE TABLE accounts (
        id            INTEGER PRIMARY KEY,
        name          TEXT    NOT NULL,
        public_key    TEXT    NOT NULL,           -- Ed25519, 64 hex digits
        created_at    INTEGER NOT NULL,           -- Unix ms
        removed_at    INTEGER,                    -- Unix ms; NULL while the account exists
        notify_addr   TEXT,                       -- where announcements go (ip:port)
        replay_floor  INTEGER NOT NULL DEFAULT 0  -- request numbers <= this are stale
    );
    CREATE UNIQUE INDEX accounts_live_name ON accounts(name) WHERE removed_at IS NULL;
    CREATE UNIQUE INDEX accounts_live_key ON accounts(public_key) WHERE removed_at IS NULL;

    CREATE TABLE items (
        id              INTEGER PRIMARY KEY,
        seller          INTEGER NOT NULL REFERENCES accounts(id),
        description     TEXT    NOT NULL,
        min_cents       INTEGER NOT NULL,
        ends_at         INTEGER NOT NULL,         -- Unix ms, moved by soft close and restarts
        port            INTEGER NOT NULL,         -- the channel's TCP port
        offered_at      INTEGER NOT NULL,
        highest_cents   INTEGER,                  -- the leading bid...
        highest_bidder  INTEGER REFERENCES accounts(id),
        closed_at       INTEGER,                  -- NULL while open
        winner          INTEGER REFERENCES accounts(id),
        price_cents     INTEGER
    );

    CREATE TABLE bids (
        id            INTEGER PRIMARY KEY,        -- commit order
        item          INTEGER NOT NULL REFERENCES items(id),
        bidder        INTEGER NOT NULL REFERENCES accounts(id),
        amount_cents  INTEGER NOT NULL,
        bid_id        TEXT,                       -- the client's id for the bid, if it sent one
        accepted      INTEGER NOT NULL,           -- 1 accepted, 0 rejected (kept for its id)
        reason        TEXT,                       -- why it was rejected
        message       TEXT,
        ends_at       INTEGER,                    -- the item's end after an accepted bid
        at            INTEGER NOT NULL,
        UNIQUE (item, bidder, bid_id)
    );
    CREATE INDEX bids_by_item ON bids(item, amount_cents);

    CREATE TABLE notices (
        id          INTEGER PRIMARY KEY,          -- item * 4 + kind
        account     INTEGER NOT NULL REFERENCES accounts(id),
        item        INTEGER NOT NULL REFERENCES items(id),
        kind        TEXT    NOT NULL,             -- win, sold, not-sold
        datagram    BLOB    NOT NULL,             -- exactly what is sent
        created_at  INTEGER NOT NULL,
        acked_at    INTEGER
    );
    CREATE INDEX notices_pending ON notices(account) WHERE acked_at IS NULL;

    CREATE TABLE replies (
        account  INTEGER NOT NULL REFERENCES accounts(id),
        req      INTEGER NOT NULL,
        digest   BLOB    NOT NULL,                -- SHA-256 of the request's body
        answer   BLOB    NOT NULL,
        PRIMARY KEY (account, req)
    ) WITHOUT ROWID;
    "#,
    // 2: drop bids_by_item. Nothing the server runs needs it (the UNIQUE (item, bidder, bid_id)
    // index serves lookups by item), and under load every commit wrote its scattered pages
    // to the WAL: a second random-order index on the busiest table.
    r#"
    DROP INDEX bids_by_item;
    "#,
    // 3: proxy bids. A bid's private maximum and whether it led; the leader's maximum.
    r#"
    ALTER TABLE bids ADD COLUMN max_cents INTEGER;       -- a proxy bid's maximum
    ALTER TABLE bids ADD COLUMN leading INTEGER;         -- accepted: 0 if a proxy outbid it at once
    ALTER TABLE items ADD COLUMN lead_max_cents INTEGER; -- the leader's private proxy maximum
    "#,
    // 4: --catalog. Which catalog entry an item was offered for, so none is offered twice.
    r#"
    ALTER TABLE items ADD COLUMN catalog_id TEXT;
    CREATE UNIQUE INDEX items_by_catalog_id ON items(catalog_id) WHERE catalog_id IS NOT NULL;
    "#,
    // 5: the connection log: who was connected to which item's channel, and when.
    r#"
    CREATE TABLE channel_sessions (
        id               INTEGER PRIMARY KEY,
        item             INTEGER NOT NULL REFERENCES items(id),
        account          INTEGER NOT NULL REFERENCES accounts(id),
        peer             TEXT    NOT NULL,        -- ip:port the bidder connected from
        connected_at     INTEGER NOT NULL,
        disconnected_at  INTEGER                  -- NULL while connected
    );
    CREATE INDEX channel_sessions_by_item ON channel_sessions(item);
    "#,
    // 6: subscriptions (UDP bid updates without joining the channel), while the item is open.
    r#"
    CREATE TABLE subscriptions (
        account  INTEGER NOT NULL REFERENCES accounts(id),
        item     INTEGER NOT NULL REFERENCES items(id),
        PRIMARY KEY (account, item)
    ) WITHOUT ROWID;
    "#,
    // 7: negotiation. When an item without bids is offered to its seller for a lower minimum
    // (half its time after the offer), and how far that went.
    r#"
    ALTER TABLE items ADD COLUMN negotiate_at INTEGER;  -- Unix ms
    ALTER TABLE items ADD COLUMN negotiation TEXT;      -- NULL, asked, accepted, refused
    UPDATE items SET negotiate_at = offered_at + (ends_at - offered_at) / 2;
    "#,
    // 8: settlement of sales. One row per sold item, rewritten whole at every change. Payment
    // card numbers are refused before they get here: no column could hold one.
    r#"
    CREATE TABLE settlements (
        item            INTEGER PRIMARY KEY REFERENCES items(id),
        state           TEXT    NOT NULL,          -- awaiting-buyer, awaiting-seller, settled,
                                                   -- cancelled, offered (derived; for people)
        buyer           INTEGER REFERENCES accounts(id),  -- NULL when cancelled or offered
        amount_cents    INTEGER NOT NULL,
        deadline        INTEGER,                   -- Unix ms: buyer's details / offer answer due
        ship_name       TEXT,
        ship_address    TEXT,
        seller_contact  TEXT,
        offer_to        INTEGER REFERENCES accounts(id),  -- an open second-chance offer
        offer_cents     INTEGER,
        passed          TEXT    NOT NULL,          -- JSON array: accounts already buyer or offered
        updated_at      INTEGER NOT NULL
    );
    "#,
    // 9: the recovery grace is added once per outage. `planned_ends_at` is the end the
    // auction itself set (the offer, or a bid that extended it); `ends_at` may add the grace of
    // a restart to it, and later restarts add it to `planned_ends_at` again, not to `ends_at`.
    r#"
    ALTER TABLE items ADD COLUMN planned_ends_at INTEGER;  -- Unix ms
    UPDATE items SET planned_ends_at = ends_at;
    "#,
    // 10: the seller's terms besides the minimum (NULL: none).
    r#"
    ALTER TABLE items ADD COLUMN reserve_cents INTEGER;  -- hidden; bidders see whether it is met
    ALTER TABLE items ADD COLUMN buy_now_cents INTEGER;
    "#,
    // 11: the operator's actions, and the audit log they and the bids make: append-only, as
    // the database itself enforces (a bid removed stays, and the action says so).
    r#"
    CREATE TABLE operator_actions (
        id         INTEGER PRIMARY KEY,            -- the order the actions were taken in
        item       INTEGER NOT NULL REFERENCES items(id),
        kind       TEXT    NOT NULL,               -- cancel-item, remove-bid
        bid        INTEGER REFERENCES bids(id),    -- remove-bid: the bid it removed
        operator   INTEGER NOT NULL REFERENCES accounts(id),
        note       TEXT    NOT NULL,               -- why, as the operator said it
        at         INTEGER NOT NULL,               -- Unix ms
        after_bid  INTEGER NOT NULL                -- the item's last bid (row) before it, or 0
    );
    CREATE INDEX operator_actions_by_item ON operator_actions(item);
    CREATE UNIQUE INDEX operator_actions_by_bid ON operator_actions(bid) WHERE bid IS NOT NULL;
    CREATE TRIGGER operator_actions_no_update BEFORE UPDATE ON operator_actions
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER operator_actions_no_delete BEFORE DELETE ON operator_actions
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER bids_no_update BEFORE UPDATE ON bids
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER bids_no_delete BEFORE DELETE ON bids
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    "#,
];

/// The lock file beside the database `db`: `db` with `.lock` added.
pub(super) fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock file of `db`; it stays locked for as long as the returned file is open.
pub(super) fn lock_file(db: &Path) -> Result<File> {
    let path = lock_path(db);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is in use by another auction-server (its lock file {} is held)",
            db.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Opens the file and checks, without writing anything, that it is an intact auction database
/// this build understands.
pub(super) fn open_checked(path: &Path) -> Result<Connection> {
    super::care::refuse_lost_database(path)?;
    super::wal::refuse_damaged_log(path)?;
    let exists = path.exists();
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if !exists {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let shown = path.display();
    let conn = Connection::open_with_flags(path, flags)
        .with_context(|| format!("cannot open the database {shown}"))?;
    // Until the start has succeeded, closing this connection (on any refusal below, a full
    // disk...) must not checkpoint the log into the file: a refused start changes nothing.
    // `SqliteStorage::open` turns checkpoints on close back on once the database is in use.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    let refuse = |what: String| -> anyhow::Error {
        anyhow::anyhow!("{what}; the file was not changed (restore it from a backup, or start with another --db)")
    };
    // SQLite's error is kept as the cause, so that a full disk can be told from damage
    // (`disk.rs`).
    let refuse_for = |what: String, e: rusqlite::Error| anyhow::Error::new(e).context(refuse(what));
    // The first read of the header: a file that is not SQLite fails here.
    let header = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
    let version = match header {
        Ok(v) => v,
        Err(e) => {
            return Err(refuse_for(
                format!("{shown} is not a readable SQLite database"),
                e,
            ))
        }
    };
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| refuse_for(format!("{shown} is damaged"), e))?;
    if check != "ok" {
        return Err(refuse(format!("{shown} is damaged: {check}")));
    }
    let app: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    if app != APPLICATION_ID && (app != 0 || tables > 0) {
        return Err(refuse(format!(
            "{shown} is an SQLite database of another program (application_id {app:#x})"
        )));
    }
    if version > MIGRATIONS.len() as i64 {
        return Err(refuse(format!(
            "{shown} has schema version {version}, newer than this build's {} (written by a newer auction-server)",
            MIGRATIONS.len()
        )));
    }
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("{shown}: could not switch to WAL mode (got '{mode}')");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A commit waits this long for a lock someone else holds before the storage gives up.
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// Applies the migrations `conn` has not had yet, each in its own transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.commit()?;
    }
    if version < MIGRATIONS.len() {
        tracing::info!(
            from = version,
            "database schema migrated to version {}",
            MIGRATIONS.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{query_one, SqliteOptions, SqliteStorage};
    use crate::store::Storage;
    use auction_protocol::PublicKey;

    #[test]
    fn a_version_1_database_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            conn.execute(
                "INSERT INTO accounts (id, name, public_key, created_at) VALUES (1, 'old', ?1, 0)",
                [PublicKey([7; 32]).to_hex()],
            )
            .unwrap();
        }
        let (storage, snapshot) = SqliteStorage::open(&path, SqliteOptions::default()).unwrap();
        assert_eq!(snapshot.accounts.len(), 1);
        storage.close();
        drop(storage);
        assert_eq!(
            query_one::<i64>(&path, "PRAGMA user_version").unwrap(),
            Some(MIGRATIONS.len() as i64)
        );
        assert_eq!(
            query_one::<i64>(
                &path,
                "SELECT count(*) FROM sqlite_master WHERE name = 'bids_by_item'"
            )
            .unwrap(),
            Some(0)
        );
    }

    #[test]
    fn a_file_that_is_not_ours_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("junk.db");
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
        std::fs::write(&garbage, &bytes).unwrap();
        let err = SqliteStorage::open(&garbage, SqliteOptions::default())
            .err()
            .unwrap();
        assert!(
            format!("{err:#}").contains("not a readable SQLite database"),
            "{err:#}"
        );
        assert_eq!(std::fs::read(&garbage).unwrap(), bytes);

        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        let before = std::fs::read(&other).unwrap();
        let err = SqliteStorage::open(&other, SqliteOptions::default())
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("another program"), "{err:#}");
        assert_eq!(std::fs::read(&other).unwrap(), before);
    }

    #[test]
    fn a_second_server_cannot_open_the_same_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let (_first, _) = SqliteStorage::open(&path, SqliteOptions::default()).unwrap();
        let err = SqliteStorage::open(&path, SqliteOptions::default())
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("in use by another"), "{err:#}");
    }
}
