//! The PostgreSQL schema: the SQLite schema's tables (at its version 9) in PostgreSQL's types,
//! plus what several nodes share: membership with epochs (the fencing tokens), and each item's
//! owner. Migrations are applied in order, each in its own transaction, under an advisory lock,
//! so nodes starting together apply each exactly once; `schema_version` counts those applied.

use anyhow::{bail, Context, Result};
use tokio_postgres::Client;

/// Taken (per transaction) while migrating: any 64-bit number of our own.
const MIGRATION_LOCK: i64 = 0x4155_4354_0000_0001;

/// Never edit one that has shipped: add another.
pub const MIGRATIONS: &[&str] = &[
    // 1: what SQLite's schema holds at its version 9, and the nodes.
    r#"
    CREATE TABLE accounts (
        id            BIGINT PRIMARY KEY,
        name          TEXT   NOT NULL,
        public_key    TEXT   NOT NULL,            -- Ed25519, 64 hex digits
        created_at    BIGINT NOT NULL,            -- Unix ms
        removed_at    BIGINT,                     -- Unix ms; NULL while the account exists
        notify_addr   TEXT,                       -- where announcements go (ip:port)
        replay_floor  BIGINT NOT NULL DEFAULT 0   -- request numbers <= this are stale
    );
    CREATE UNIQUE INDEX accounts_live_name ON accounts(lower(name)) WHERE removed_at IS NULL;
    CREATE UNIQUE INDEX accounts_live_key ON accounts(public_key) WHERE removed_at IS NULL;

    -- The nodes: a heartbeat (expiry from the database's clock) and an epoch, bumped by whoever
    -- fences the node; every write batch of a node checks its epoch in the same transaction.
    CREATE TABLE nodes (
        name          TEXT   PRIMARY KEY,
        epoch         BIGINT NOT NULL DEFAULT 1,
        udp_addr      TEXT   NOT NULL,
        expires_at    TIMESTAMPTZ NOT NULL,       -- its heartbeat lapses then
        fenced        BOOLEAN NOT NULL DEFAULT FALSE,  -- its epoch was bumped by a survivor
        leader_until  TIMESTAMPTZ                 -- set on the node holding the leader lease
    );

    CREATE TABLE items (
        id               BIGINT PRIMARY KEY,
        seller           BIGINT NOT NULL REFERENCES accounts(id),
        description      TEXT   NOT NULL,
        min_cents        BIGINT NOT NULL,
        ends_at          BIGINT NOT NULL,         -- Unix ms, moved by soft close and restarts
        planned_ends_at  BIGINT,                  -- the end the auction itself set
        port             INTEGER NOT NULL,        -- the channel's TCP port on its owner
        offered_at       BIGINT NOT NULL,
        highest_cents    BIGINT,
        highest_bidder   BIGINT REFERENCES accounts(id),
        lead_max_cents   BIGINT,
        closed_at        BIGINT,                  -- NULL while open
        winner           BIGINT REFERENCES accounts(id),
        price_cents      BIGINT,
        catalog_id       TEXT,
        negotiate_at     BIGINT,
        negotiation      TEXT,                    -- NULL, asked, accepted, refused
        owner            TEXT REFERENCES nodes(name),  -- the node running it
        owner_epoch      BIGINT                   -- that node's epoch when it took it
    );
    CREATE UNIQUE INDEX items_by_catalog_id ON items(catalog_id) WHERE catalog_id IS NOT NULL;
    CREATE INDEX items_open_by_owner ON items(owner) WHERE closed_at IS NULL;

    CREATE TABLE bids (
        id            BIGSERIAL PRIMARY KEY,      -- commit order
        item          BIGINT NOT NULL REFERENCES items(id),
        bidder        BIGINT NOT NULL REFERENCES accounts(id),
        amount_cents  BIGINT NOT NULL,
        bid_id        TEXT,
        accepted      BOOLEAN NOT NULL,
        reason        TEXT,
        message       TEXT,
        ends_at       BIGINT,
        at            BIGINT NOT NULL,
        max_cents     BIGINT,
        "leading"     BOOLEAN,                    -- quoted: a reserved word in PostgreSQL
        UNIQUE (item, bidder, bid_id)
    );

    CREATE TABLE notices (
        id          BIGINT PRIMARY KEY,           -- item * 4 + kind
        account     BIGINT NOT NULL REFERENCES accounts(id),
        item        BIGINT NOT NULL REFERENCES items(id),
        kind        TEXT   NOT NULL,
        datagram    BYTEA  NOT NULL,
        created_at  BIGINT NOT NULL,
        acked_at    BIGINT
    );
    CREATE INDEX notices_pending ON notices(account) WHERE acked_at IS NULL;

    CREATE TABLE replies (
        account  BIGINT NOT NULL REFERENCES accounts(id),
        req      BIGINT NOT NULL,
        digest   BYTEA  NOT NULL,
        answer   BYTEA  NOT NULL,
        PRIMARY KEY (account, req)
    );

    CREATE TABLE channel_sessions (
        id               BIGINT PRIMARY KEY,
        item             BIGINT NOT NULL REFERENCES items(id),
        account          BIGINT NOT NULL REFERENCES accounts(id),
        peer             TEXT   NOT NULL,
        connected_at     BIGINT NOT NULL,
        disconnected_at  BIGINT
    );
    CREATE INDEX channel_sessions_by_item ON channel_sessions(item);

    CREATE TABLE subscriptions (
        account  BIGINT NOT NULL REFERENCES accounts(id),
        item     BIGINT NOT NULL REFERENCES items(id),
        PRIMARY KEY (account, item)
    );

    CREATE TABLE settlements (
        item            BIGINT PRIMARY KEY REFERENCES items(id),
        state           TEXT   NOT NULL,
        buyer           BIGINT REFERENCES accounts(id),
        amount_cents    BIGINT NOT NULL,
        deadline        BIGINT,
        ship_name       TEXT,
        ship_address    TEXT,
        seller_contact  TEXT,
        offer_to        BIGINT REFERENCES accounts(id),
        offer_cents     BIGINT,
        passed          TEXT   NOT NULL,
        updated_at      BIGINT NOT NULL
    );
    "#,
    // 2: what the nodes share beyond the data: the key cookies derive from (made by the first
    // node to lead), so a client's cookie holds on whichever node leads.
    r#"
    CREATE TABLE cluster (
        one            BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
        cookie_secret  BYTEA   NOT NULL CHECK (length(cookie_secret) = 32)
    );
    "#,
    // 3: the fence as a statement that fails the transaction, so a batch can be sent in one
    // go (BEGIN, fence, writes, COMMIT) and still commit nothing for a fenced node.
    r#"
    CREATE FUNCTION auction_fence(node TEXT, node_epoch BIGINT) RETURNS VOID
    LANGUAGE plpgsql AS $fence$
    BEGIN
        PERFORM 1 FROM nodes WHERE name = node AND epoch = node_epoch AND NOT fenced FOR SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'node % was fenced (its epoch % is no longer current): it may commit nothing more',
                node, node_epoch;
        END IF;
    END
    $fence$;
    "#,
    r#"
    -- Items spread over the nodes. `channel_open`: the owner has opened the item's channel
    -- (under its current ownership) on `port` at its node's address. `rev`: bumped on every
    -- change of the row, so the leader reads only what changed since its last look.
    ALTER TABLE items ADD COLUMN channel_open BOOLEAN NOT NULL DEFAULT FALSE;
    ALTER TABLE items ADD COLUMN rev BIGINT NOT NULL DEFAULT 0;
    CREATE SEQUENCE item_revs;
    CREATE FUNCTION auction_item_rev() RETURNS TRIGGER
    LANGUAGE plpgsql AS $rev$
    BEGIN
        NEW.rev := nextval('item_revs');
        RETURN NEW;
    END
    $rev$;
    CREATE TRIGGER items_rev BEFORE INSERT OR UPDATE ON items
        FOR EACH ROW EXECUTE FUNCTION auction_item_rev();
    CREATE INDEX items_by_rev ON items(rev);

    -- What the leader asks of an item's owner (a lower minimum, an account gone): a log every
    -- node reads in order, written by the leader alone.
    CREATE TABLE item_commands (
        id          BIGSERIAL PRIMARY KEY,
        item        BIGINT REFERENCES items(id),  -- NULL: every item
        kind        TEXT   NOT NULL,              -- lower-min, account-gone
        account     BIGINT,
        min_cents   BIGINT,
        at          TIMESTAMPTZ NOT NULL DEFAULT now()
    );

    -- Blocks of channel-session numbers: each node's run takes one, so the nodes' connection
    -- logs never collide.
    CREATE SEQUENCE session_blocks;
    "#,
    r#"
    -- The seller's terms besides the minimum (NULL: none), as SQLite's version 10.
    ALTER TABLE items ADD COLUMN reserve_cents BIGINT;  -- hidden; bidders see whether it is met
    ALTER TABLE items ADD COLUMN buy_now_cents BIGINT;
    "#,
    r#"
    -- The operator's actions and the audit log they and the bids make, append-only (as
    -- SQLite's version 11).
    CREATE TABLE operator_actions (
        id         BIGSERIAL PRIMARY KEY,
        item       BIGINT NOT NULL REFERENCES items(id),
        kind       TEXT   NOT NULL,                -- cancel-item, remove-bid
        bid        BIGINT REFERENCES bids(id),
        operator   BIGINT NOT NULL REFERENCES accounts(id),
        note       TEXT   NOT NULL,
        at         BIGINT NOT NULL,
        after_bid  BIGINT NOT NULL
    );
    CREATE INDEX operator_actions_by_item ON operator_actions(item);
    CREATE UNIQUE INDEX operator_actions_by_bid ON operator_actions(bid) WHERE bid IS NOT NULL;
    CREATE FUNCTION auction_append_only() RETURNS trigger LANGUAGE plpgsql AS $ao$
    BEGIN
        RAISE EXCEPTION 'the audit log is append-only';
    END
    $ao$;
    CREATE TRIGGER operator_actions_append_only BEFORE UPDATE OR DELETE ON operator_actions
        FOR EACH ROW EXECUTE FUNCTION auction_append_only();
    CREATE TRIGGER bids_append_only BEFORE UPDATE OR DELETE ON bids
        FOR EACH ROW EXECUTE FUNCTION auction_append_only();
    -- The operator's commands to an item's node: the bid to remove and the note.
    ALTER TABLE item_commands ADD COLUMN bid BIGINT;
    ALTER TABLE item_commands ADD COLUMN note TEXT;
    "#,
];

/// The schema version of the database `client` is connected to: migrations applied so far (0
/// for an empty database).
pub async fn version(client: &Client) -> Result<usize> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: i32 = client
        .query_one("SELECT version FROM schema_version", &[])
        .await?
        .get(0);
    Ok(v as usize)
}

/// Applies the migrations the database has not had yet, each in its own transaction under an
/// advisory lock (so several nodes starting at once apply each exactly once). Refuses a
/// database written by a newer build. Returns the version it is at.
pub async fn migrate(client: &mut Client) -> Result<usize> {
    // The version before the first migration this call applied: one log line at the end.
    let mut from = None;
    loop {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 one      BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
                 version  INTEGER NOT NULL
             );
             INSERT INTO schema_version (version) VALUES (0) ON CONFLICT DO NOTHING;",
        )
        .await?;
        let at: i32 = tx
            .query_one("SELECT version FROM schema_version", &[])
            .await?
            .get(0);
        let at = at as usize;
        if at > MIGRATIONS.len() {
            bail!(
                "the database has schema version {at}, newer than this build's {} (written by a newer auction-server)",
                MIGRATIONS.len()
            );
        }
        let Some(sql) = MIGRATIONS.get(at) else {
            tx.commit().await?;
            if let Some(from) = from {
                tracing::info!(from, "database schema migrated to version {at}");
            }
            return Ok(at);
        };
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("migration {} failed", at + 1))?;
        tx.execute(
            "UPDATE schema_version SET version = $1",
            &[&((at + 1) as i32)],
        )
        .await?;
        tx.commit().await?;
        from.get_or_insert(at);
    }
}
