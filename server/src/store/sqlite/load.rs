//! Reading the database back at start: everything the server needs to carry on, as a
//! [`Snapshot`]. Runs once, in `open`, on the connection the writer thread is about to own,
//! before any task exists; nothing waits for it but the start.
//!
//! Columns are read by name, with an `AS` wherever two would share one (two accounts' names)
//! or a value is computed, so reordering a SELECT cannot move a value into another field. The
//! statements that read a row per account, item, bid or reply find their columns' positions
//! by name once ([`columns`]) rather than at every value: a restart reads tens of thousands of
//! rows, and a name lookup per value was a quarter of its start-up.

use anyhow::{Context, Result};
use auction_protocol::settle::Shipping;
use auction_protocol::{Cents, PublicKey, Reason};
use rusqlite::{Connection, Statement};
use std::collections::HashMap;

use crate::accounts::AccountId;
use crate::rules::auction::Outcome;
use crate::rules::settlement::{Party, Sale, Settlement};
use crate::store::{
    Negotiation, Snapshot, StoredAccount, StoredItem, StoredNotice, StoredReply, SETTLEMENT_NOTICES,
};

/// Removed accounts whose replay windows are loaded at start (as the registry keeps in memory).
const REMOVED_ACCOUNTS_LOADED: usize = 1024;

/// Everything committed that the server needs to resume.
pub(super) fn load(conn: &Connection) -> Result<Snapshot> {
    let mut replies = load_replies(conn)?;
    let mut accounts = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT id, name, public_key, notify_addr, removed_at IS NOT NULL AS removed,
                replay_floor
         FROM accounts
         WHERE removed_at IS NULL
            OR id IN (SELECT id FROM accounts WHERE removed_at IS NOT NULL
                      ORDER BY removed_at DESC, id DESC LIMIT ?1)
         ORDER BY id",
    )?;
    let [id, name, public_key, notify_addr, removed, replay_floor] = columns(
        &stmt,
        [
            "id",
            "name",
            "public_key",
            "notify_addr",
            "removed",
            "replay_floor",
        ],
    )?;
    let rows = stmt.query_map([REMOVED_ACCOUNTS_LOADED], |r| {
        Ok((
            r.get::<_, u64>(id)?,
            r.get::<_, String>(name)?,
            r.get::<_, String>(public_key)?,
            r.get::<_, Option<String>>(notify_addr)?,
            r.get::<_, bool>(removed)?,
            r.get::<_, u64>(replay_floor)?,
        ))
    })?;
    for row in rows {
        let (id, name, key, notify, removed, replay_floor) = row?;
        let key = PublicKey::from_hex(&key)
            .with_context(|| format!("account {id} has an unreadable public key"))?;
        accounts.push(StoredAccount {
            id,
            name,
            key,
            notify: notify.and_then(|a| a.parse().ok()),
            removed,
            replay_floor,
            replies: replies.remove(&id).unwrap_or_default(),
        });
    }

    let mut bid_ids = load_bid_ids(conn)?;
    let mut items = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT i.id, i.seller, s.name AS seller_name, i.description, i.min_cents, i.ends_at,
                i.port, i.highest_bidder, b.name AS highest_bidder_name, i.highest_cents,
                i.lead_max_cents, i.closed_at, i.catalog_id, i.negotiate_at, i.negotiation,
                coalesce(i.planned_ends_at, i.ends_at) AS planned_ends_at
         FROM items i
         JOIN accounts s ON s.id = i.seller
         LEFT JOIN accounts b ON b.id = i.highest_bidder
         ORDER BY i.id",
    )?;
    let [id, seller, seller_name, description, min_cents, ends_at, port] = columns(
        &stmt,
        [
            "id",
            "seller",
            "seller_name",
            "description",
            "min_cents",
            "ends_at",
            "port",
        ],
    )?;
    let [highest_bidder, highest_bidder_name, highest_cents, lead_max_cents] = columns(
        &stmt,
        [
            "highest_bidder",
            "highest_bidder_name",
            "highest_cents",
            "lead_max_cents",
        ],
    )?;
    let [closed_at, catalog_id, negotiate_at, negotiation, planned_ends_at] = columns(
        &stmt,
        [
            "closed_at",
            "catalog_id",
            "negotiate_at",
            "negotiation",
            "planned_ends_at",
        ],
    )?;
    let rows = stmt.query_map([], |r| {
        let lead = match (
            r.get::<_, Option<u64>>(highest_bidder)?,
            r.get::<_, Option<String>>(highest_bidder_name)?,
            r.get::<_, Option<u64>>(highest_cents)?,
        ) {
            (Some(bidder), Some(name), Some(amount)) => Some((
                bidder,
                name,
                Cents(amount),
                r.get::<_, Option<u64>>(lead_max_cents)?.map(Cents),
            )),
            _ => None,
        };
        Ok(StoredItem {
            id: r.get(id)?,
            seller: r.get(seller)?,
            seller_name: r.get(seller_name)?,
            description: r.get(description)?,
            min: Cents(r.get(min_cents)?),
            ends_at: r.get(ends_at)?,
            planned_ends_at: r.get(planned_ends_at)?,
            port: r.get(port)?,
            lead,
            closed_at: r.get(closed_at)?,
            bid_ids: Vec::new(),
            catalog_id: r.get(catalog_id)?,
            negotiation: match r.get::<_, Option<String>>(negotiation)?.as_deref() {
                None => {
                    Negotiation::Due(r.get::<_, Option<u64>>(negotiate_at)?.unwrap_or(u64::MAX))
                }
                Some("asked") => Negotiation::Asked,
                Some(_) => Negotiation::Done,
            },
        })
    })?;
    for row in rows {
        let mut item = row?;
        item.bid_ids = bid_ids.remove(&item.id).unwrap_or_default();
        items.push(item);
    }

    let notices = conn
        .prepare("SELECT id, account, datagram FROM notices WHERE acked_at IS NULL ORDER BY id")?
        .query_map([], |r| {
            Ok(StoredNotice {
                id: r.get("id")?,
                account: r.get("account")?,
                datagram: r.get("datagram")?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let subscriptions = conn
        .prepare("SELECT account, item FROM subscriptions ORDER BY account, item")?
        .query_map([], |r| Ok((r.get("account")?, r.get("item")?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let (settlements, unsettled) = load_settlements(conn)?;
    let next = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, u64>("next"));
    Ok(Snapshot {
        accounts,
        items,
        notices,
        next_account: next("SELECT coalesce(max(id), 0) + 1 AS next FROM accounts")?,
        next_item: next("SELECT coalesce(max(id), 0) + 1 AS next FROM items")?,
        next_session: next("SELECT coalesce(max(id), 0) + 1 AS next FROM channel_sessions")?,
        subscriptions,
        settlements,
        unsettled,
        next_notice: conn.query_row(
            "SELECT max(coalesce(max(id) + 1, 0), ?1) AS next FROM notices WHERE id >= ?1",
            [SETTLEMENT_NOTICES],
            |r| r.get("next"),
        )?,
    })
}

/// The positions of the columns `names` in the rows of `stmt` (an error names a missing one).
fn columns<const N: usize>(stmt: &Statement<'_>, names: [&str; N]) -> Result<[usize; N]> {
    let mut found = [0; N];
    for (slot, name) in found.iter_mut().zip(names) {
        *slot = stmt
            .column_index(name)
            .with_context(|| format!("the query has no column {name:?}"))?;
    }
    Ok(found)
}

/// Every account's replay window, by ascending request number.
fn load_replies(conn: &Connection) -> Result<HashMap<AccountId, Vec<StoredReply>>> {
    let mut replies: HashMap<AccountId, Vec<StoredReply>> = HashMap::new();
    let mut stmt =
        conn.prepare("SELECT account, req, digest, answer FROM replies ORDER BY account, req")?;
    let [account, req, digest, answer] = columns(&stmt, ["account", "req", "digest", "answer"])?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, AccountId>(account)?,
            (r.get(req)?, r.get(digest)?, r.get(answer)?),
        ))
    })?;
    for row in rows {
        let (account, reply) = row?;
        replies.entry(account).or_default().push(reply);
    }
    Ok(replies)
}

/// By item: each bidder's bid ids with their first answers (as in [`StoredItem::bid_ids`]).
type BidIds = HashMap<u64, Vec<(AccountId, String, Outcome)>>;

/// The first answer to every bid id on each open item, in the order they were given.
fn load_bid_ids(conn: &Connection) -> Result<BidIds> {
    let mut bid_ids = BidIds::new();
    let mut stmt = conn.prepare(
        "SELECT b.item, b.bidder, b.bid_id, b.accepted, b.amount_cents, b.ends_at, b.leading,
                b.max_cents, b.reason, b.message
         FROM bids b JOIN items i ON i.id = b.item
         WHERE i.closed_at IS NULL AND b.bid_id IS NOT NULL
         ORDER BY b.id",
    )?;
    let [item, bidder, bid_id, accepted, amount_cents] = columns(
        &stmt,
        ["item", "bidder", "bid_id", "accepted", "amount_cents"],
    )?;
    let [ends_at, leading, max_cents, reason, message] = columns(
        &stmt,
        ["ends_at", "leading", "max_cents", "reason", "message"],
    )?;
    let rows = stmt.query_map([], |r| {
        let outcome = if r.get::<_, bool>(accepted)? {
            Outcome::Accepted {
                amount: Cents(r.get(amount_cents)?),
                ends_at: r.get::<_, Option<u64>>(ends_at)?.unwrap_or(0),
                leading: r.get::<_, Option<bool>>(leading)?.unwrap_or(true),
                max: r.get::<_, Option<u64>>(max_cents)?.map(Cents),
            }
        } else {
            let code: Option<String> = r.get(reason)?;
            Outcome::Rejected {
                reason: code.map(|c| reason_from_code(&c)).unwrap_or(Reason::Other),
                message: r.get::<_, Option<String>>(message)?.unwrap_or_default(),
            }
        };
        Ok((
            r.get::<_, u64>(item)?,
            (r.get(bidder)?, r.get(bid_id)?, outcome),
        ))
    })?;
    for row in rows {
        let (item, bid) = row?;
        bid_ids.entry(item).or_default().push(bid);
    }
    Ok(bid_ids)
}

/// Every stored settlement, and the sold items that have none yet.
fn load_settlements(conn: &Connection) -> Result<(Vec<Settlement>, Vec<Sale>)> {
    let mut stmt = conn.prepare(
        "SELECT s.item, i.description, i.seller, sa.name AS seller_name,
                s.buyer, b.name AS buyer_name, s.amount_cents, s.deadline,
                s.ship_name, s.ship_address, s.seller_contact,
                s.offer_to, o.name AS offer_to_name, s.offer_cents, s.passed
         FROM settlements s
         JOIN items i ON i.id = s.item
         JOIN accounts sa ON sa.id = i.seller
         LEFT JOIN accounts b ON b.id = s.buyer
         LEFT JOIN accounts o ON o.id = s.offer_to
         ORDER BY s.item",
    )?;
    let party = |id: Option<u64>, name: Option<String>| match (id, name) {
        (Some(id), Some(name)) => Some(Party { id, name }),
        _ => None,
    };
    let rows = stmt.query_map([], |r| {
        let shipping = match (r.get("ship_name")?, r.get("ship_address")?) {
            (Some(name), Some(address)) => Some(Shipping { name, address }),
            _ => None,
        };
        let offer = party(r.get("offer_to")?, r.get("offer_to_name")?)
            .zip(r.get::<_, Option<u64>>("offer_cents")?.map(Cents));
        Ok(Settlement {
            item: r.get("item")?,
            description: r.get("description")?,
            seller: Party {
                id: r.get("seller")?,
                name: r.get("seller_name")?,
            },
            buyer: party(r.get("buyer")?, r.get("buyer_name")?),
            amount: Cents(r.get("amount_cents")?),
            deadline: r.get("deadline")?,
            shipping,
            contact: r.get("seller_contact")?,
            offer,
            passed: serde_json::from_str(&r.get::<_, String>("passed")?).unwrap_or_default(),
        })
    })?;
    let settlements = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare(
        "SELECT i.id, i.description, i.seller, sa.name AS seller_name,
                i.winner, w.name AS winner_name, i.price_cents, i.closed_at
         FROM items i
         JOIN accounts sa ON sa.id = i.seller
         JOIN accounts w ON w.id = i.winner
         WHERE i.closed_at IS NOT NULL AND i.winner IS NOT NULL
           AND i.id NOT IN (SELECT item FROM settlements)
         ORDER BY i.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Sale {
            item: r.get("id")?,
            description: r.get("description")?,
            seller: Party {
                id: r.get("seller")?,
                name: r.get("seller_name")?,
            },
            buyer: Party {
                id: r.get("winner")?,
                name: r.get("winner_name")?,
            },
            amount: Cents(r.get("price_cents")?),
            closed_at: r.get("closed_at")?,
        })
    })?;
    let unsettled = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((settlements, unsettled))
}

/// A rejected bid's stored reason code; `Other` for a code this build does not know.
fn reason_from_code(code: &str) -> Reason {
    serde_json::from_value(serde_json::Value::String(code.to_owned())).unwrap_or(Reason::Other)
}

#[cfg(test)]
mod tests {
    use crate::rules::auction::Outcome;
    use crate::rules::settlement::{Party, Settlement};
    use crate::store::sqlite::{SqliteOptions, SqliteStorage};
    use crate::store::{
        Negotiation, NoticeKind, NoticeRecord, Record, Storage, SETTLEMENT_NOTICES,
    };
    use auction_protocol::settle::Shipping;
    use auction_protocol::{Cents, PublicKey};

    fn notice(id: u64, account: u64, item: u64, kind: &'static str) -> NoticeRecord {
        NoticeRecord {
            id,
            account,
            item,
            kind,
            datagram: format!("notice {id}").into_bytes(),
        }
    }

    fn offered(item: u64, seller: u64, description: &str, min: u64, at: u64) -> Record {
        Record::ItemOffered {
            item,
            seller,
            description: description.into(),
            min: Cents(min),
            ends_at: at + 9_000,
            port: 4000 + item as u16,
            at,
            catalog_id: (item == 1).then(|| "lot-1".into()),
            // Not what `rules::auction::negotiate_at` would say: storage keeps what it is given.
            negotiate_at: at + 4_321,
        }
    }

    fn bid(item: u64, bidder: u64, amount: u64, max: Option<u64>, bid_id: Option<&str>) -> Record {
        Record::Bid {
            item,
            bidder,
            amount: Cents(amount),
            bid_id: bid_id.map(Into::into),
            outcome: Outcome::Accepted {
                amount: Cents(amount),
                ends_at: 11_000 + item,
                leading: true,
                max: max.map(Cents),
            },
            lead: Some((bidder, Cents(amount), max.map(Cents))),
            at: 5_000,
        }
    }

    fn party(id: u64, name: &str) -> Party {
        Party {
            id,
            name: name.into(),
        }
    }

    /// Every field of the snapshot, each with a value no other field has, so that a column read
    /// into the wrong field shows.
    #[test]
    fn every_field_comes_back_from_its_own_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let settlement = Settlement {
            item: 4,
            description: "desk".into(),
            seller: party(2, "bob"),
            buyer: Some(party(1, "ann")),
            amount: Cents(330),
            deadline: Some(50_000),
            shipping: Some(Shipping {
                name: "Ann A.".into(),
                address: "1 Road".into(),
            }),
            contact: Some("bob@example.org".into()),
            offer: Some((party(3, "cat"), Cents(320))),
            passed: vec![1, 3],
        };
        {
            let (storage, _) = SqliteStorage::open(&path, SqliteOptions::default()).unwrap();
            let account = |id: u64, name: &str, notify: Option<&str>| Record::AccountCreated {
                id,
                name: name.into(),
                key: PublicKey([id as u8; 32]),
                notify: notify.map(|n| n.parse().unwrap()),
                at: id,
            };
            storage.append(vec![
                account(1, "ann", Some("127.0.0.1:5001")),
                account(2, "bob", Some("127.0.0.1:5002")),
                account(3, "cat", None),
                Record::Replied {
                    account: 1,
                    req: 10,
                    digest: [3; 32],
                    answer: b"ten".to_vec(),
                    floor: 0,
                },
                Record::Replied {
                    account: 3,
                    req: 20,
                    digest: [4; 32],
                    answer: b"twenty".to_vec(),
                    floor: 19,
                },
                Record::AccountRemoved { id: 3, at: 9 },
                offered(1, 1, "lamp", 100, 1_000),
                offered(2, 1, "vase", 200, 2_000),
                offered(3, 2, "clock", 300, 3_000),
                offered(4, 2, "desk", 310, 4_000),
                bid(1, 2, 150, Some(400), Some("b1")),
                Record::NegotiationAsked {
                    item: 2,
                    notice: notice(NoticeKind::NegotiateReq.id(2), 1, 2, "negotiate-req"),
                    at: 6_000,
                },
                Record::Subscribed {
                    account: 2,
                    item: 2,
                },
                bid(3, 1, 350, None, None),
                Record::ItemClosed {
                    item: 3,
                    winner: Some((1, Cents(350))),
                    notices: vec![
                        notice(NoticeKind::Win.id(3), 1, 3, "win"),
                        notice(NoticeKind::Sold.id(3), 2, 3, "sold"),
                    ],
                    at: 31_000,
                },
                bid(4, 1, 330, None, None),
                Record::ItemClosed {
                    item: 4,
                    winner: Some((1, Cents(330))),
                    notices: Vec::new(),
                    at: 41_000,
                },
                Record::Settlement {
                    settlement: settlement.clone(),
                    notices: vec![notice(SETTLEMENT_NOTICES + 5, 1, 4, "settle")],
                    at: 42_000,
                },
                Record::ChannelOpened {
                    session: 7,
                    item: 1,
                    account: 2,
                    peer: "127.0.0.1:6000".parse().unwrap(),
                    at: 5_000,
                },
            ]);
            storage.close();
            assert!(storage.failure().is_none(), "{:?}", storage.failure());
            assert_eq!(
                storage.best_bids(1).unwrap(),
                vec![(party(2, "bob"), Cents(150))]
            );
        }
        let (_storage, snap) = SqliteStorage::open(&path, SqliteOptions::default()).unwrap();

        let accounts: Vec<_> = snap
            .accounts
            .iter()
            .map(|a| {
                let notify = a.notify.map(|n| n.to_string());
                (
                    a.id,
                    a.name.as_str(),
                    a.key,
                    notify,
                    a.removed,
                    a.replay_floor,
                )
            })
            .collect();
        assert_eq!(
            accounts,
            vec![
                (
                    1,
                    "ann",
                    PublicKey([1; 32]),
                    Some("127.0.0.1:5001".into()),
                    false,
                    0
                ),
                (
                    2,
                    "bob",
                    PublicKey([2; 32]),
                    Some("127.0.0.1:5002".into()),
                    false,
                    0
                ),
                (3, "cat", PublicKey([3; 32]), None, true, 19),
            ]
        );
        assert_eq!(
            snap.accounts[0].replies,
            vec![(10, [3; 32], b"ten".to_vec())]
        );
        assert_eq!(
            snap.accounts[2].replies,
            vec![(20, [4; 32], b"twenty".to_vec())]
        );

        let [lamp, vase, clock, desk] = &snap.items[..] else {
            panic!("{:?}", snap.items);
        };
        assert_eq!(
            (
                lamp.id,
                lamp.seller,
                lamp.seller_name.as_str(),
                lamp.description.as_str()
            ),
            (1, 1, "ann", "lamp")
        );
        assert_eq!(
            (lamp.min, lamp.ends_at, lamp.port),
            (Cents(100), 11_001, 4001)
        );
        assert_eq!(
            lamp.lead,
            Some((2, "bob".into(), Cents(150), Some(Cents(400))))
        );
        assert_eq!(lamp.closed_at, None);
        assert_eq!(lamp.catalog_id.as_deref(), Some("lot-1"));
        assert_eq!(lamp.negotiation, Negotiation::Due(5_321));
        assert_eq!(
            lamp.bid_ids,
            vec![(
                2,
                "b1".into(),
                Outcome::Accepted {
                    amount: Cents(150),
                    ends_at: 11_001,
                    leading: true,
                    max: Some(Cents(400)),
                }
            )]
        );
        assert_eq!(
            (
                vase.min,
                vase.ends_at,
                vase.port,
                vase.catalog_id.as_deref()
            ),
            (Cents(200), 11_000, 4002, None)
        );
        assert_eq!(
            (vase.lead.clone(), vase.negotiation),
            (None, Negotiation::Asked)
        );
        assert_eq!(
            (
                clock.seller_name.as_str(),
                clock.closed_at,
                clock.lead.clone()
            ),
            (
                "bob",
                Some(31_000),
                Some((1, "ann".into(), Cents(350), None))
            )
        );
        assert!(clock.bid_ids.is_empty(), "closed items need no bid ids");
        assert_eq!(desk.closed_at, Some(41_000));

        let notices: Vec<_> = snap
            .notices
            .iter()
            .map(|n| {
                (
                    n.id,
                    n.account,
                    String::from_utf8(n.datagram.clone()).unwrap(),
                )
            })
            .collect();
        let expected: Vec<_> = [(11, 1), (12, 1), (13, 2), (SETTLEMENT_NOTICES + 5, 1)]
            .into_iter()
            .map(|(id, account)| (id, account, format!("notice {id}")))
            .collect();
        assert_eq!(notices, expected);

        assert_eq!(snap.settlements, vec![settlement]);
        let [sale] = &snap.unsettled[..] else {
            panic!("{:?}", snap.unsettled);
        };
        assert_eq!(
            (
                sale.item,
                sale.description.as_str(),
                sale.amount,
                sale.closed_at
            ),
            (3, "clock", Cents(350), 31_000)
        );
        assert_eq!((sale.seller.id, sale.seller.name.as_str()), (2, "bob"));
        assert_eq!((sale.buyer.id, sale.buyer.name.as_str()), (1, "ann"));

        assert_eq!(snap.subscriptions, vec![(2, 2)]);
        assert_eq!(
            (snap.next_account, snap.next_item, snap.next_session),
            (4, 5, 8)
        );
        assert_eq!(snap.next_notice, SETTLEMENT_NOTICES + 6);
    }
}
