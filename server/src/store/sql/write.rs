//! Turning records into SQL, on a backend's writer thread, inside the transaction it commits
//! (SQLite's `sqlite/writer.rs`, PostgreSQL's `postgres/writer.rs`). [`write()`] has one arm
//! per kind of record, each calling the function that holds its SQL. Records arrive with every
//! value decided by the task that appended them; this stores them as given.

use anyhow::Result;
use auction_protocol::{Cents, PublicKey};
use std::net::SocketAddr;

use crate::accounts::AccountId;
use crate::rules::auction::{Outcome, Terms};
use crate::rules::settlement::Settlement;
use crate::store::record::LeadRecord;
use crate::store::sql::{params, Exec};
use crate::store::{NoticeRecord, Record};

/// What `record` is, for an error saying which write failed.
pub fn describe(record: &Record) -> &'static str {
    match record {
        Record::AccountCreated { .. } => "a new account",
        Record::AccountAttached { .. } => "an account's address",
        Record::AccountRemoved { .. } => "a deregistration",
        Record::Replied { .. } => "a reply",
        Record::ItemOffered { .. } => "an offer",
        Record::ItemResumed { .. } => "a resumed item",
        Record::EndMoved { .. } => "a lot's end moved by its group",
        Record::ItemAssigned { .. } => "an item given to a node",
        Record::Bid { .. } => "a bid",
        Record::ItemClosed { .. } => "an auction result",
        Record::BidRemoved { .. } | Record::ItemCancelled { .. } => "an operator's action",
        Record::Notice { .. } => "a notice",
        Record::NoticeAcked { .. } => "an acknowledgement",
        Record::ChannelOpened { .. } | Record::ChannelClosed { .. } => "the connection log",
        Record::Subscribed { .. } | Record::Unsubscribed { .. } => "a subscription",
        Record::NegotiationAsked { .. } | Record::Negotiated { .. } => "a negotiation",
        Record::Settlement { .. } => "a settlement",
    }
}

/// Writes one record.
pub fn write(tx: &mut dyn Exec, record: &Record) -> Result<()> {
    match record {
        Record::AccountCreated {
            id,
            name,
            key,
            notify,
            at,
        } => account_created(tx, *id, name, key, *notify, *at),
        Record::AccountAttached { id, notify } => account_attached(tx, *id, notify),
        Record::AccountRemoved { id, at } => account_removed(tx, *id, *at),
        Record::Replied {
            account,
            req,
            digest,
            answer,
            floor,
        } => replied(tx, *account, *req, digest, answer, *floor),
        Record::ItemOffered {
            item,
            seller,
            description,
            min,
            ends_at,
            port,
            at,
            catalog_id,
            negotiate_at,
            terms,
        } => item_offered(
            tx,
            *item,
            *seller,
            description,
            *min,
            *ends_at,
            *port,
            *at,
            catalog_id.as_deref(),
            *negotiate_at,
            *terms,
        ),
        Record::ItemResumed {
            item,
            ends_at,
            port,
        } => item_resumed(tx, *item, *ends_at, *port),
        Record::EndMoved { item, ends_at } => tx.exec(
            "UPDATE items SET ends_at = $2, planned_ends_at = $2 WHERE id = $1",
            params![*item, *ends_at],
        ),
        // Where an item runs is the PostgreSQL writer's business (`store/postgres/storage.rs`).
        Record::ItemAssigned { .. } => Ok(()),
        Record::Bid {
            item,
            bidder,
            amount,
            bid_id,
            outcome,
            lead,
            at,
        } => bid(
            tx,
            *item,
            *bidder,
            *amount,
            bid_id.as_deref(),
            outcome,
            lead.as_ref(),
            *at,
        ),
        Record::ItemClosed {
            item,
            winner,
            notices,
            at,
        } => item_closed(tx, *item, *winner, notices, *at),
        Record::BidRemoved {
            item,
            bid,
            operator,
            note,
            lead,
            at,
        } => bid_removed(tx, *item, *bid, *operator, note, lead.as_ref(), *at),
        Record::ItemCancelled {
            item,
            operator,
            note,
            at,
        } => operator_action(tx, *item, "cancel-item", None, *operator, note, *at),
        Record::Notice { notice, at } => insert_notice(tx, notice, *at),
        Record::NoticeAcked { notice, at } => ack_notice(tx, *notice, *at),
        Record::ChannelOpened {
            session,
            item,
            account,
            peer,
            at,
        } => channel_opened(tx, *session, *item, *account, *peer, *at),
        Record::ChannelClosed { session, at } => channel_closed(tx, *session, *at),
        Record::Subscribed { account, item } => subscribed(tx, *account, *item),
        Record::Unsubscribed { account, item } => unsubscribed(tx, *account, *item),
        Record::NegotiationAsked { item, notice, at } => negotiation_asked(tx, *item, notice, *at),
        Record::Negotiated { item, min, at: _ } => negotiated(tx, *item, *min),
        Record::Settlement {
            settlement,
            notices,
            at,
        } => settlement_changed(tx, settlement, notices, *at),
    }
}

fn account_created(
    tx: &mut dyn Exec,
    id: AccountId,
    name: &str,
    key: &PublicKey,
    notify: Option<SocketAddr>,
    at: u64,
) -> Result<()> {
    tx.exec(
        "INSERT INTO accounts (id, name, public_key, created_at, notify_addr)
         VALUES ($1, $2, $3, $4, $5)",
        params![id, name, key.to_hex(), at, notify.map(|n| n.to_string())],
    )?;
    Ok(())
}

/// The devices, space-separated (one address reads back as a list of one, as an older
/// server wrote it); none is NULL.
fn account_attached(tx: &mut dyn Exec, id: AccountId, notify: &[SocketAddr]) -> Result<()> {
    let list = notify.iter().map(ToString::to_string).collect::<Vec<_>>();
    let list = (!list.is_empty()).then(|| list.join(" "));
    tx.exec(
        "UPDATE accounts SET notify_addr = $2 WHERE id = $1",
        params![id, list],
    )?;
    Ok(())
}

/// The account row stays (its name and key may be reused by a new account; its replay window
/// is still honoured); its subscriptions go.
fn account_removed(tx: &mut dyn Exec, id: AccountId, at: u64) -> Result<()> {
    tx.exec(
        "UPDATE accounts SET removed_at = $2 WHERE id = $1",
        params![id, at],
    )?;
    tx.exec("DELETE FROM subscriptions WHERE account = $1", params![id])?;
    // Its notices have no one left to go to: the registry stopped delivering them
    // (`notices.forget`), and they must not count as pending for good (`status`) either.
    tx.exec(
        "UPDATE notices SET acked_at = $2 WHERE account = $1 AND acked_at IS NULL",
        params![id, at],
    )?;
    Ok(())
}

/// Keeps an answer for the replay window; a `floor` above 0 also forgets the answers at or
/// below it and raises the account's floor.
fn replied(
    tx: &mut dyn Exec,
    account: AccountId,
    req: u64,
    digest: &[u8; 32],
    answer: &[u8],
    floor: u64,
) -> Result<()> {
    tx.exec(
        "INSERT INTO replies (account, req, digest, answer) VALUES ($1, $2, $3, $4)
         ON CONFLICT (account, req) DO UPDATE SET digest = excluded.digest,
                                                  answer = excluded.answer",
        params![account, req, &digest[..], answer],
    )?;
    if floor > 0 {
        tx.exec(
            "DELETE FROM replies WHERE account = $1 AND req <= $2",
            params![account, floor],
        )?;
        tx.exec(
            "UPDATE accounts SET replay_floor = CASE WHEN replay_floor > $2 THEN replay_floor ELSE $2 END WHERE id = $1", params![account, floor])?;
    }
    Ok(())
}

// The arguments are the record's fields, one each: a struct for them would be the record again.
#[allow(clippy::too_many_arguments)]
fn item_offered(
    tx: &mut dyn Exec,
    item: u64,
    seller: AccountId,
    description: &str,
    min: Cents,
    ends_at: u64,
    port: u16,
    at: u64,
    catalog_id: Option<&str>,
    negotiate_at: u64,
    terms: Terms,
) -> Result<()> {
    tx.exec(
        "INSERT INTO items (id, seller, description, min_cents, ends_at, planned_ends_at, port,
                            offered_at, catalog_id, negotiate_at, reserve_cents, buy_now_cents)
         VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10, $11)",
        params![
            item,
            seller,
            description,
            min.0,
            ends_at,
            port,
            at,
            catalog_id,
            negotiate_at,
            terms.reserve.map(|c| c.0),
            terms.buy_now.map(|c| c.0)
        ],
    )?;
    Ok(())
}

fn item_resumed(tx: &mut dyn Exec, item: u64, ends_at: u64, port: u16) -> Result<()> {
    tx.exec(
        "UPDATE items SET ends_at = $2, port = $3 WHERE id = $1",
        params![item, ends_at, port],
    )?;
    Ok(())
}

/// Stores the bid (accepted, or rejected with its reason) and, when it changed the lead, the
/// item's new lead and end.
// The arguments are the record's fields, one each: a struct for them would be the record again.
#[allow(clippy::too_many_arguments)]
fn bid(
    tx: &mut dyn Exec,
    item: u64,
    bidder: AccountId,
    amount: Cents,
    bid_id: Option<&str>,
    outcome: &Outcome,
    lead: Option<&LeadRecord>,
    at: u64,
) -> Result<()> {
    let (accepted, reason, message, ends_at, leading, max) = match outcome {
        Outcome::Accepted {
            ends_at,
            leading,
            max,
            ..
        } => (true, None, None, Some(*ends_at), Some(*leading), *max),
        Outcome::Rejected { reason, message } => (
            false,
            Some(reason.code()),
            Some(message.as_str()),
            None,
            None,
            None,
        ),
    };
    tx.exec(
        r#"INSERT INTO bids (item, bidder, amount_cents, bid_id, accepted, reason, message,
                             ends_at, "leading", max_cents, at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"#,
        params![
            item,
            bidder,
            amount.0,
            bid_id,
            accepted,
            reason,
            message,
            ends_at,
            leading,
            max.map(|m| m.0),
            at
        ],
    )?;
    if let (Some((leader, price, lead_max)), Some(ends_at)) = (lead, ends_at) {
        tx.exec(
            "UPDATE items SET highest_cents = $2, highest_bidder = $3, lead_max_cents = $5,
                              planned_ends_at = CASE WHEN $4 > ends_at THEN $4
                                                     ELSE planned_ends_at END,
                              ends_at = $4
             WHERE id = $1",
            params![item, price.0, *leader, ends_at, lead_max.map(|m| m.0)],
        )?;
    }
    Ok(())
}

/// An operator's action, in the audit log (`operator_actions`, append-only). `after_bid` places
/// it among the item's bids: the writer commits records in the order they were appended, so
/// the item's bids appended before the action are the ones stored already.
fn operator_action(
    tx: &mut dyn Exec,
    item: u64,
    kind: &str,
    bid: Option<u64>,
    operator: AccountId,
    note: &str,
    at: u64,
) -> Result<()> {
    tx.exec(
        "INSERT INTO operator_actions (item, kind, bid, operator, note, at, after_bid)
         VALUES ($1, $2, $3, $4, $5, $6,
                 (SELECT coalesce(max(id), 0) FROM bids WHERE item = $1))",
        params![item, kind, bid, operator, note, at],
    )?;
    Ok(())
}

/// A removed bid: the action in the audit log, and the item's lead without the bid.
fn bid_removed(
    tx: &mut dyn Exec,
    item: u64,
    bid: u64,
    operator: AccountId,
    note: &str,
    lead: Option<&LeadRecord>,
    at: u64,
) -> Result<()> {
    operator_action(tx, item, "remove-bid", Some(bid), operator, note, at)?;
    tx.exec(
        "UPDATE items SET highest_cents = $2, highest_bidder = $3, lead_max_cents = $4
         WHERE id = $1",
        params![
            item,
            lead.map(|l| l.1 .0),
            lead.map(|l| l.0),
            lead.and_then(|l| l.2).map(|m| m.0)
        ],
    )?;
    Ok(())
}

/// The result, the end of the item's subscriptions and its notices, together.
fn item_closed(
    tx: &mut dyn Exec,
    item: u64,
    winner: Option<(AccountId, Cents)>,
    notices: &[NoticeRecord],
    at: u64,
) -> Result<()> {
    tx.exec(
        "UPDATE items SET closed_at = $2, winner = $3, price_cents = $4 WHERE id = $1",
        params![item, at, winner.map(|(w, _)| w), winner.map(|(_, p)| p.0)],
    )?;
    tx.exec("DELETE FROM subscriptions WHERE item = $1", params![item])?;
    for n in notices {
        insert_notice(tx, n, at)?;
    }
    Ok(())
}

fn negotiation_asked(tx: &mut dyn Exec, item: u64, notice: &NoticeRecord, at: u64) -> Result<()> {
    tx.exec(
        "UPDATE items SET negotiation = 'asked' WHERE id = $1",
        params![item],
    )?;
    insert_notice(tx, notice, at)
}

/// The seller's answer: a new minimum (accepted) or none (refused). Its time has no column;
/// the acknowledgement of the request, appended with it, keeps it.
fn negotiated(tx: &mut dyn Exec, item: u64, min: Option<Cents>) -> Result<()> {
    tx.exec(
        "UPDATE items SET negotiation = $2, min_cents = coalesce($3, min_cents)
         WHERE id = $1",
        params![
            item,
            if min.is_some() { "accepted" } else { "refused" },
            min.map(|m| m.0)
        ],
    )?;
    Ok(())
}

/// A settlement is stored whole at every change (with its state spelled out for people reading
/// the table), with the notices the change sends.
fn settlement_changed(
    tx: &mut dyn Exec,
    st: &Settlement,
    notices: &[NoticeRecord],
    at: u64,
) -> Result<()> {
    tx.exec(
        "INSERT INTO settlements
            (item, state, buyer, amount_cents, deadline, ship_name, ship_address,
             seller_contact, offer_to, offer_cents, passed, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (item) DO UPDATE SET
             state = excluded.state, buyer = excluded.buyer,
             amount_cents = excluded.amount_cents, deadline = excluded.deadline,
             ship_name = excluded.ship_name, ship_address = excluded.ship_address,
             seller_contact = excluded.seller_contact, offer_to = excluded.offer_to,
             offer_cents = excluded.offer_cents, passed = excluded.passed,
             updated_at = excluded.updated_at",
        params![
            st.item,
            serde_json::to_value(st.state())
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned)),
            st.buyer.as_ref().map(|b| b.id),
            st.amount.0,
            st.deadline,
            st.shipping.as_ref().map(|s| &s.name),
            st.shipping.as_ref().map(|s| &s.address),
            st.contact.as_deref(),
            st.offer.as_ref().map(|(p, _)| p.id),
            st.offer.as_ref().map(|(_, a)| a.0),
            serde_json::to_string(&st.passed).unwrap_or_else(|_| "[]".into()),
            at
        ],
    )?;
    for n in notices {
        insert_notice(tx, n, at)?;
    }
    Ok(())
}

fn insert_notice(tx: &mut dyn Exec, n: &NoticeRecord, at: u64) -> Result<()> {
    tx.exec(
        "INSERT INTO notices (id, account, item, kind, datagram, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        params![n.id, n.account, n.item, n.kind, &n.datagram[..], at],
    )?;
    Ok(())
}

/// Marks a notice delivered (or no longer to be delivered): it is not loaded again.
fn ack_notice(tx: &mut dyn Exec, notice: u64, at: u64) -> Result<()> {
    tx.exec(
        "UPDATE notices SET acked_at = $2 WHERE id = $1 AND acked_at IS NULL",
        params![notice, at],
    )?;
    Ok(())
}

fn channel_opened(
    tx: &mut dyn Exec,
    session: u64,
    item: u64,
    account: AccountId,
    peer: SocketAddr,
    at: u64,
) -> Result<()> {
    tx.exec(
        "INSERT INTO channel_sessions (id, item, account, peer, connected_at)
         VALUES ($1, $2, $3, $4, $5)",
        params![session, item, account, peer.to_string(), at],
    )?;
    Ok(())
}

fn channel_closed(tx: &mut dyn Exec, session: u64, at: u64) -> Result<()> {
    tx.exec(
        "UPDATE channel_sessions SET disconnected_at = $2
         WHERE id = $1 AND disconnected_at IS NULL",
        params![session, at],
    )?;
    Ok(())
}

fn subscribed(tx: &mut dyn Exec, account: AccountId, item: u64) -> Result<()> {
    tx.exec(
        "INSERT INTO subscriptions (account, item) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        params![account, item],
    )?;
    Ok(())
}

fn unsubscribed(tx: &mut dyn Exec, account: AccountId, item: u64) -> Result<()> {
    tx.exec(
        "DELETE FROM subscriptions WHERE account = $1 AND item = $2",
        params![account, item],
    )?;
    Ok(())
}
