//! Turning records into SQL, on the writer thread, inside the transaction `writer.rs` commits.
//! Records arrive with every value decided by the task that appended them; this stores them
//! as given.

use rusqlite::{params, Transaction};

use crate::rules::auction::Outcome;
use crate::store::{NoticeKind, NoticeRecord, Record};

/// Writes one record.
pub(super) fn write(tx: &Transaction<'_>, record: &Record) -> rusqlite::Result<()> {
    match record {
        Record::AccountCreated {
            id,
            name,
            key,
            notify,
            at,
        } => {
            tx.prepare_cached(
                "INSERT INTO accounts (id, name, public_key, created_at, notify_addr)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                id,
                name,
                key.to_hex(),
                at,
                notify.map(|n| n.to_string())
            ])?;
        }
        Record::AccountAttached { id, notify } => {
            tx.prepare_cached("UPDATE accounts SET notify_addr = ?2 WHERE id = ?1")?
                .execute(params![id, notify.to_string()])?;
        }
        Record::AccountRemoved { id, at } => {
            tx.prepare_cached("UPDATE accounts SET removed_at = ?2 WHERE id = ?1")?
                .execute(params![id, at])?;
            tx.prepare_cached("DELETE FROM subscriptions WHERE account = ?1")?
                .execute(params![id])?;
        }
        Record::Replied {
            account,
            req,
            digest,
            answer,
            floor,
        } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO replies (account, req, digest, answer)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![account, req, digest, answer])?;
            if *floor > 0 {
                tx.prepare_cached("DELETE FROM replies WHERE account = ?1 AND req <= ?2")?
                    .execute(params![account, floor])?;
                tx.prepare_cached(
                    "UPDATE accounts SET replay_floor = max(replay_floor, ?2) WHERE id = ?1",
                )?
                .execute(params![account, floor])?;
            }
        }
        Record::ItemOffered {
            item,
            seller,
            description,
            min,
            ends_at,
            port,
            at,
            catalog_id,
        } => {
            tx.prepare_cached(
                "INSERT INTO items (id, seller, description, min_cents, ends_at, port, offered_at,
                                    catalog_id, negotiate_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                item,
                seller,
                description,
                min.0,
                ends_at,
                port,
                at,
                catalog_id,
                crate::rules::auction::negotiate_at(*at, *ends_at)
            ])?;
        }
        Record::ItemResumed {
            item,
            ends_at,
            port,
        } => {
            tx.prepare_cached("UPDATE items SET ends_at = ?2, port = ?3 WHERE id = ?1")?
                .execute(params![item, ends_at, port])?;
        }
        Record::Bid {
            item,
            bidder,
            amount,
            bid_id,
            outcome,
            lead,
            at,
        } => {
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
            tx.prepare_cached(
                "INSERT INTO bids (item, bidder, amount_cents, bid_id, accepted, reason, message,
                                   ends_at, leading, max_cents, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
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
            ])?;
            if let (Some((leader, price, lead_max)), Some(ends_at)) = (lead, ends_at) {
                tx.prepare_cached(
                    "UPDATE items SET highest_cents = ?2, highest_bidder = ?3, ends_at = ?4,
                                      lead_max_cents = ?5
                     WHERE id = ?1",
                )?
                .execute(params![
                    item,
                    price.0,
                    leader,
                    ends_at,
                    lead_max.map(|m| m.0)
                ])?;
            }
        }
        Record::ItemClosed {
            item,
            winner,
            notices,
            at,
        } => {
            tx.prepare_cached(
                "UPDATE items SET closed_at = ?2, winner = ?3, price_cents = ?4 WHERE id = ?1",
            )?
            .execute(params![
                item,
                at,
                winner.map(|(w, _)| w),
                winner.map(|(_, p)| p.0)
            ])?;
            tx.prepare_cached("DELETE FROM subscriptions WHERE item = ?1")?
                .execute(params![item])?;
            // An unanswered negotiation request no longer matters.
            ack_notice(tx, NoticeKind::NegotiateReq.id(*item), *at)?;
            for n in notices {
                insert_notice(tx, n, *at)?;
            }
        }
        Record::NegotiationAsked { item, notice, at } => {
            tx.prepare_cached("UPDATE items SET negotiation = 'asked' WHERE id = ?1")?
                .execute(params![item])?;
            insert_notice(tx, notice, *at)?;
        }
        Record::Negotiated { item, min, at } => {
            tx.prepare_cached(
                "UPDATE items SET negotiation = ?2, min_cents = coalesce(?3, min_cents)
                 WHERE id = ?1",
            )?
            .execute(params![
                item,
                if min.is_some() { "accepted" } else { "refused" },
                min.map(|m| m.0)
            ])?;
            ack_notice(tx, NoticeKind::NegotiateReq.id(*item), *at)?;
        }
        Record::Settlement {
            settlement: st,
            notices,
            at,
        } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO settlements
                    (item, state, buyer, amount_cents, deadline, ship_name, ship_address,
                     seller_contact, offer_to, offer_cents, passed, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                st.item,
                serde_json::to_value(st.state())
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned)),
                st.buyer.as_ref().map(|b| b.id),
                st.amount.0,
                st.deadline,
                st.shipping.as_ref().map(|s| &s.name),
                st.shipping.as_ref().map(|s| &s.address),
                st.contact,
                st.offer.as_ref().map(|(p, _)| p.id),
                st.offer.as_ref().map(|(_, a)| a.0),
                serde_json::to_string(&st.passed).unwrap_or_else(|_| "[]".into()),
                at
            ])?;
            for n in notices {
                insert_notice(tx, n, *at)?;
            }
        }
        Record::NoticeAcked { notice, at } => ack_notice(tx, *notice, *at)?,
        Record::ChannelOpened {
            session,
            item,
            account,
            peer,
            at,
        } => {
            tx.prepare_cached(
                "INSERT INTO channel_sessions (id, item, account, peer, connected_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![session, item, account, peer.to_string(), at])?;
        }
        Record::Subscribed { account, item } => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO subscriptions (account, item) VALUES (?1, ?2)",
            )?
            .execute(params![account, item])?;
        }
        Record::Unsubscribed { account, item } => {
            tx.prepare_cached("DELETE FROM subscriptions WHERE account = ?1 AND item = ?2")?
                .execute(params![account, item])?;
        }
        Record::ChannelClosed { session, at } => {
            tx.prepare_cached(
                "UPDATE channel_sessions SET disconnected_at = ?2
                 WHERE id = ?1 AND disconnected_at IS NULL",
            )?
            .execute(params![session, at])?;
        }
    }
    Ok(())
}

/// Marks a notice delivered (or no longer to be delivered): it is not loaded again.
fn ack_notice(tx: &Transaction<'_>, notice: u64, at: u64) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE notices SET acked_at = ?2 WHERE id = ?1 AND acked_at IS NULL")?
        .execute(params![notice, at])?;
    Ok(())
}

fn insert_notice(tx: &Transaction<'_>, n: &NoticeRecord, at: u64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO notices (id, account, item, kind, datagram, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![n.id, n.account, n.item, n.kind, n.datagram, at])?;
    Ok(())
}
