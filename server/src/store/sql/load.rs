//! Reading the database back at start: everything the server needs to carry on, as a
//! [`Snapshot`]. Runs once, when a backend opens, before any task exists; nothing waits for it
//! but the start. The same queries serve SQLite and PostgreSQL (see `sql/mod.rs`).
//!
//! Columns are read by name, with an `AS` wherever two would share one (two accounts' names)
//! or a value is computed, so reordering a SELECT cannot move a value into another field; each
//! query finds its columns' positions once ([`Cols`]), since a restart reads tens of thousands
//! of rows and a name lookup per value was a quarter of its start-up.

use anyhow::{Context, Result};
use auction_protocol::settle::Shipping;
use auction_protocol::{Cents, PublicKey, Reason};
use std::collections::HashMap;

use super::{collect, params, Cols, Query, Row, RowExt};
use crate::accounts::AccountId;
use crate::rules::auction::{Outcome, Terms};
use crate::rules::settlement::{Party, Sale, Settlement};
use crate::store::{
    Negotiation, Snapshot, StoredAccount, StoredItem, StoredNotice, StoredReply, REGISTRY_NOTICES,
    SETTLEMENT_NOTICES,
};

/// Removed accounts whose replay windows are loaded at start (as the registry keeps in memory).
const REMOVED_ACCOUNTS_LOADED: u64 = 1024;

/// Everything committed that the server needs to resume.
pub fn load(q: &mut dyn Query) -> Result<Snapshot> {
    let mut replies = load_replies(q)?;
    let mut accounts = Vec::new();
    let mut cols = Cols::new([
        "id",
        "name",
        "public_key",
        "notify_addr",
        "removed",
        "replay_floor",
    ]);
    q.rows(
        "SELECT id, name, public_key, notify_addr, removed_at IS NOT NULL AS removed,
                replay_floor
         FROM accounts
         WHERE removed_at IS NULL
            OR id IN (SELECT id FROM accounts WHERE removed_at IS NOT NULL
                      ORDER BY removed_at DESC, id DESC LIMIT $1)
         ORDER BY id",
        params![REMOVED_ACCOUNTS_LOADED],
        &mut |r| {
            let [id, name, public_key, notify_addr, removed, replay_floor] = cols.of(r)?;
            let id = r.u64(id)?;
            let key = PublicKey::from_hex(&r.string(public_key)?)
                .with_context(|| format!("account {id} has an unreadable public key"))?;
            accounts.push(StoredAccount {
                id,
                name: r.string(name)?,
                key,
                notify: r
                    .text(notify_addr)?
                    .map(|list| {
                        list.split_whitespace()
                            .filter_map(|a| a.parse().ok())
                            .collect()
                    })
                    .unwrap_or_default(),
                removed: r.boolean(removed)?,
                replay_floor: r.u64(replay_floor)?,
                replies: replies.remove(&id).unwrap_or_default(),
            });
            Ok(())
        },
    )?;

    let items = load_items(q, 0, EVERY_ITEM)?;

    let mut cols = Cols::new(["id", "account", "datagram"]);
    let notices = collect(
        q,
        "SELECT id, account, datagram FROM notices WHERE acked_at IS NULL ORDER BY id",
        params![],
        |r| {
            let [id, account, datagram] = cols.of(r)?;
            Ok(StoredNotice {
                id: r.u64(id)?,
                account: r.u64(account)?,
                datagram: r.blob(datagram)?,
            })
        },
    )?;
    let mut cols = Cols::new(["account", "item"]);
    let subscriptions = collect(
        q,
        "SELECT account, item FROM subscriptions ORDER BY account, item",
        params![],
        |r| {
            let [account, item] = cols.of(r)?;
            Ok((r.u64(account)?, r.u64(item)?))
        },
    )?;
    let (settlements, unsettled) = load_settlements(q)?;
    let mut next = |sql: &'static str| -> Result<u64> {
        let mut cols = Cols::new(["next"]);
        let found = collect(q, sql, params![], |r| {
            let [next] = cols.of(r)?;
            r.u64(next)
        })?;
        found.first().copied().context("no row")
    };
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
        next_notice: next_notice_in(q, SETTLEMENT_NOTICES, u64::MAX)?,
        next_registry_notice: next_notice_in(q, REGISTRY_NOTICES, SETTLEMENT_NOTICES)?,
        cookie_secret: None,
    })
}

/// The last item number `load_items` can be asked for.
const EVERY_ITEM: u64 = i64::MAX as u64;

/// The items numbered `first` to `last`, open and closed, with their bid ids.
fn load_items(q: &mut dyn Query, first: u64, last: u64) -> Result<Vec<StoredItem>> {
    let mut bid_ids = load_bid_ids(q, first, last)?;
    let mut cols = Cols::new([
        "id",
        "seller",
        "seller_name",
        "description",
        "min_cents",
        "ends_at",
        "port",
        "highest_bidder",
        "highest_bidder_name",
        "highest_cents",
        "lead_max_cents",
        "closed_at",
        "catalog_id",
        "negotiate_at",
        "negotiation",
        "planned_ends_at",
        "offered_at",
        "bids",
        "extensions",
        "reserve_cents",
        "buy_now_cents",
        "sold",
        "cancelled",
    ]);
    collect(
        q,
        "SELECT i.id, i.seller, s.name AS seller_name, i.description, i.min_cents, i.ends_at,
                i.port, i.highest_bidder, b.name AS highest_bidder_name, i.highest_cents,
                i.lead_max_cents, i.closed_at, i.catalog_id, i.negotiate_at, i.negotiation,
                coalesce(i.planned_ends_at, i.ends_at) AS planned_ends_at, i.offered_at,
                ((SELECT count(*) FROM bids x WHERE x.item = i.id AND x.accepted)
                 - (SELECT count(*) FROM operator_actions o
                    WHERE o.item = i.id AND o.bid IS NOT NULL)) AS bids,
                (SELECT count(*) FROM (
                    SELECT x.ends_at > lag(x.ends_at) OVER (ORDER BY x.id) AS later
                    FROM bids x WHERE x.item = i.id AND x.accepted) AS e
                 WHERE e.later) AS extensions,
                i.reserve_cents, i.buy_now_cents, i.winner IS NOT NULL AS sold,
                (SELECT o.note FROM operator_actions o
                 WHERE o.item = i.id AND o.kind = 'cancel-item'
                 ORDER BY o.id LIMIT 1) AS cancelled
         FROM items i
         JOIN accounts s ON s.id = i.seller
         LEFT JOIN accounts b ON b.id = i.highest_bidder
         WHERE i.id BETWEEN $1 AND $2
         ORDER BY i.id",
        params![first, last],
        |r| {
            let [id, seller, seller_name, description, min_cents, ends_at, port, highest_bidder, highest_bidder_name, highest_cents, lead_max_cents, closed_at, catalog_id, negotiate_at, negotiation, planned_ends_at, offered_at, bids, extensions, reserve_cents, buy_now_cents, sold, cancelled] =
                cols.of(r)?;
            let lead = match (
                r.opt_u64(highest_bidder)?,
                r.text(highest_bidder_name)?,
                r.opt_u64(highest_cents)?,
            ) {
                (Some(bidder), Some(name), Some(amount)) => Some((
                    bidder,
                    name,
                    Cents(amount),
                    r.opt_u64(lead_max_cents)?.map(Cents),
                )),
                _ => None,
            };
            let id = r.u64(id)?;
            Ok(StoredItem {
                id,
                seller: r.u64(seller)?,
                seller_name: r.string(seller_name)?,
                description: r.string(description)?,
                min: Cents(r.u64(min_cents)?),
                offered_at: r.u64(offered_at)?,
                ends_at: r.u64(ends_at)?,
                planned_ends_at: r.u64(planned_ends_at)?,
                counts: crate::web::BidCounts {
                    bids: r.u64(bids)?,
                    extensions: r.u64(extensions)?.try_into().unwrap_or(u32::MAX),
                },
                port: r.u16(port)?,
                lead,
                closed_at: r.opt_u64(closed_at)?,
                sold: r.boolean(sold)?,
                cancelled: r.text(cancelled)?,
                bid_ids: bid_ids.remove(&id).unwrap_or_default(),
                catalog_id: r.text(catalog_id)?,
                terms: Terms {
                    reserve: r.opt_u64(reserve_cents)?.map(Cents),
                    buy_now: r.opt_u64(buy_now_cents)?.map(Cents),
                },
                negotiation: match r.text(negotiation)?.as_deref() {
                    None => Negotiation::Due(r.opt_u64(negotiate_at)?.unwrap_or(u64::MAX)),
                    Some("asked") => Negotiation::Asked,
                    Some(_) => Negotiation::Done,
                },
            })
        },
    )
}

/// One item as [`load`] reads it (for a node that takes over an item: `cluster/host.rs`).
pub fn load_item(q: &mut dyn Query, id: u64) -> Result<Option<StoredItem>> {
    Ok(load_items(q, id, id)?.pop())
}

/// Every account's replay window, by ascending request number.
fn load_replies(q: &mut dyn Query) -> Result<HashMap<AccountId, Vec<StoredReply>>> {
    let mut replies: HashMap<AccountId, Vec<StoredReply>> = HashMap::new();
    let mut cols = Cols::new(["account", "req", "digest", "answer"]);
    q.rows(
        "SELECT account, req, digest, answer FROM replies ORDER BY account, req",
        params![],
        &mut |r| {
            let [account, req, digest, answer] = cols.of(r)?;
            let digest: [u8; 32] = r
                .blob(digest)?
                .try_into()
                .map_err(|_| anyhow::anyhow!("a reply's digest is not 32 bytes"))?;
            replies.entry(r.u64(account)?).or_default().push((
                r.u64(req)?,
                digest,
                r.blob(answer)?,
            ));
            Ok(())
        },
    )?;
    Ok(replies)
}

/// By item: each bidder's bid ids with their first answers (as in [`StoredItem::bid_ids`]).
type BidIds = HashMap<u64, Vec<(AccountId, String, Outcome)>>;

/// The first answer to every bid id on each open item, in the order they were given.
fn load_bid_ids(q: &mut dyn Query, first: u64, last: u64) -> Result<BidIds> {
    let mut bid_ids = BidIds::new();
    let mut cols = Cols::new([
        "item",
        "bidder",
        "bid_id",
        "accepted",
        "amount_cents",
        "ends_at",
        "leading",
        "max_cents",
        "reason",
        "message",
    ]);
    q.rows(
        r#"SELECT b.item, b.bidder, b.bid_id, b.accepted, b.amount_cents, b.ends_at, b."leading",
                  b.max_cents, b.reason, b.message
           FROM bids b JOIN items i ON i.id = b.item
           WHERE i.closed_at IS NULL AND b.bid_id IS NOT NULL AND b.item BETWEEN $1 AND $2
           ORDER BY b.id"#,
        params![first, last],
        &mut |r| {
            let [item, bidder, bid_id, accepted, amount_cents, ends_at, leading, max_cents, reason, message] =
                cols.of(r)?;
            let outcome = if r.boolean(accepted)? {
                Outcome::Accepted {
                    amount: Cents(r.u64(amount_cents)?),
                    ends_at: r.opt_u64(ends_at)?.unwrap_or(0),
                    leading: r.bool(leading)?.unwrap_or(true),
                    max: r.opt_u64(max_cents)?.map(Cents),
                }
            } else {
                Outcome::Rejected {
                    reason: r
                        .text(reason)?
                        .map(|c| reason_from_code(&c))
                        .unwrap_or(Reason::Other),
                    message: r.text(message)?.unwrap_or_default(),
                }
            };
            bid_ids
                .entry(r.u64(item)?)
                .or_default()
                .push((r.u64(bidder)?, r.string(bid_id)?, outcome));
            Ok(())
        },
    )?;
    Ok(bid_ids)
}

/// A party from an id and a name that are both there or both missing.
fn party(r: &dyn Row, id: usize, name: usize) -> Result<Option<Party>> {
    Ok(match (r.opt_u64(id)?, r.text(name)?) {
        (Some(id), Some(name)) => Some(Party { id, name }),
        _ => None,
    })
}

/// Every stored settlement, and the sold items that have none yet.
fn load_settlements(q: &mut dyn Query) -> Result<(Vec<Settlement>, Vec<Sale>)> {
    let mut cols = Cols::new([
        "item",
        "description",
        "seller",
        "seller_name",
        "buyer",
        "buyer_name",
        "amount_cents",
        "deadline",
        "ship_name",
        "ship_address",
        "seller_contact",
        "offer_to",
        "offer_to_name",
        "offer_cents",
        "passed",
    ]);
    let settlements = collect(
        q,
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
        params![],
        |r| {
            let [item, description, seller, seller_name, buyer, buyer_name, amount_cents, deadline, ship_name, ship_address, seller_contact, offer_to, offer_to_name, offer_cents, passed] =
                cols.of(r)?;
            let shipping = match (r.text(ship_name)?, r.text(ship_address)?) {
                (Some(name), Some(address)) => Some(Shipping { name, address }),
                _ => None,
            };
            let offer = party(r, offer_to, offer_to_name)?.zip(r.opt_u64(offer_cents)?.map(Cents));
            Ok(Settlement {
                item: r.u64(item)?,
                description: r.string(description)?,
                seller: Party {
                    id: r.u64(seller)?,
                    name: r.string(seller_name)?,
                },
                buyer: party(r, buyer, buyer_name)?,
                amount: Cents(r.u64(amount_cents)?),
                deadline: r.opt_u64(deadline)?,
                shipping,
                contact: r.text(seller_contact)?,
                offer,
                passed: serde_json::from_str(&r.string(passed)?).unwrap_or_default(),
            })
        },
    )?;
    let mut cols = Cols::new([
        "id",
        "description",
        "seller",
        "seller_name",
        "winner",
        "winner_name",
        "price_cents",
        "closed_at",
    ]);
    let unsettled = collect(
        q,
        "SELECT i.id, i.description, i.seller, sa.name AS seller_name,
                i.winner, w.name AS winner_name, i.price_cents, i.closed_at
         FROM items i
         JOIN accounts sa ON sa.id = i.seller
         JOIN accounts w ON w.id = i.winner
         WHERE i.closed_at IS NOT NULL AND i.winner IS NOT NULL
           AND i.id NOT IN (SELECT item FROM settlements)
         ORDER BY i.id",
        params![],
        |r| {
            let [id, description, seller, seller_name, winner, winner_name, price_cents, closed_at] =
                cols.of(r)?;
            Ok(Sale {
                item: r.u64(id)?,
                description: r.string(description)?,
                seller: Party {
                    id: r.u64(seller)?,
                    name: r.string(seller_name)?,
                },
                buyer: Party {
                    id: r.u64(winner)?,
                    name: r.string(winner_name)?,
                },
                amount: Cents(r.u64(price_cents)?),
                closed_at: r.u64(closed_at)?,
            })
        },
    )?;
    Ok((settlements, unsettled))
}

/// A rejected bid's stored reason code; `Other` for a code this build does not know.
fn reason_from_code(code: &str) -> Reason {
    serde_json::from_value(serde_json::Value::String(code.to_owned())).unwrap_or(Reason::Other)
}

/// The next notice id of the range from `first` (below `end`): one above the highest
/// stored there, or `first`.
fn next_notice_in(q: &mut dyn Query, first: u64, end: u64) -> Result<u64> {
    let mut cols = Cols::new(["next"]);
    let found = collect(
        q,
        "SELECT coalesce(max(id) + 1, 0) AS next FROM notices WHERE id >= $1 AND id < $2",
        params![first, end],
        |r| {
            let [next] = cols.of(r)?;
            r.u64(next)
        },
    )?;
    Ok(found.first().copied().context("no row")?.max(first))
}

#[cfg(test)]
mod tests {
    use crate::rules::auction::{Outcome, Terms};
    use crate::rules::settlement::{Party, Settlement};
    use crate::store::postgres::throwaway;
    use crate::store::postgres::{PostgresOptions, PostgresStorage};
    use crate::store::sqlite::{SqliteOptions, SqliteStorage};
    use crate::store::{
        Negotiation, NoticeKind, NoticeRecord, Record, Snapshot, Storage, SETTLEMENT_NOTICES,
    };
    use auction_protocol::settle::Shipping;
    use auction_protocol::{Cents, PublicKey};
    use std::time::Duration;

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
            // Item 1 has a reserve and a buy-it-now price; the others neither.
            terms: Terms {
                reserve: (item == 1).then_some(Cents(min + 500)),
                buy_now: (item == 1).then_some(Cents(min + 2_000)),
            },
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

    #[test]
    fn every_field_comes_back_from_its_own_column_in_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        every_field_comes_back(&mut || {
            let (storage, snapshot) = SqliteStorage::open(&path, SqliteOptions::default()).unwrap();
            (Box::new(storage), snapshot)
        });
    }

    #[test]
    fn every_field_comes_back_from_its_own_column_in_postgres() {
        let pg = throwaway::Postgres::start();
        let rt = tokio::runtime::Runtime::new().unwrap();
        every_field_comes_back(&mut || {
            let options = PostgresOptions {
                node: "n1".into(),
                udp: "127.0.0.1:7400".into(),
                heartbeat: Duration::from_secs(1),
                lease: Duration::from_secs(3),
                group_commit: true,
                udp_rate: 1000.0,
                udp_burst: 2000.0,
            };
            let (storage, snapshot) = rt
                .block_on(async {
                    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                    PostgresStorage::open(&pg.url, options, &udp).await
                })
                .unwrap();
            (Box::new(storage), snapshot)
        });
    }

    /// Every field of the snapshot, each with a value no other field has, so that a column read
    /// into the wrong field shows; `open` opens the same database each time.
    fn every_field_comes_back(open: &mut dyn FnMut() -> (Box<dyn Storage>, Snapshot)) {
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
            let (storage, _) = open();
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
        let (_storage, snap) = open();

        let accounts: Vec<_> = snap
            .accounts
            .iter()
            .map(|a| {
                let notify = a.notify.first().map(|n| n.to_string());
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
        assert_eq!(
            lamp.terms,
            Terms {
                reserve: Some(Cents(600)),
                buy_now: Some(Cents(2_100))
            }
        );
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
        assert_eq!(vase.terms, Terms::default());
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
