//! `auction-server audit ITEM`: an item's audit log, read from the database (read only, beside
//! a running server or without one) and printed in the order things happened: the offer,
//! every bid, every operator action with its note, the result. The log and its SQL are in
//! `store/sql/audit.rs`; this file renders it. It runs in its own process and shares no state
//! with a server.

use std::fmt::Write;

use crate::status::{table, time};
pub use crate::store::sql::audit::{Audit, Event};

/// Item `item`'s audit log from the database `db`: a SQLite file, or a PostgreSQL URL. Blocks.
pub fn read_any(db: &str, item: u64) -> anyhow::Result<Audit> {
    let read = |q: &mut dyn crate::store::sql::Query| crate::store::sql::audit::read(q, item);
    if crate::store::postgres::is_url(db) {
        crate::store::postgres::status::read_with(db, read)
    } else {
        // Schema 11 brought the operator's actions.
        crate::store::sqlite::status::read_with(std::path::Path::new(db), 11, read)
    }
}

/// The log as a sentence and a table: TIME, EVENT, DETAILS.
pub fn render(audit: &Audit) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Audit log of item {} \"{}\", offered by {}: {} events, in the order they happened.\n",
        audit.item,
        audit.description,
        audit.seller,
        audit.events.len()
    );
    let mut rows = vec![vec!["TIME".to_owned(), "EVENT".into(), "DETAILS".into()]];
    for e in &audit.events {
        let (at, event, details) = describe(e);
        rows.push(vec![time(at), event, details]);
    }
    table(&mut s, &rows);
    s
}

/// One event's time, name and details.
fn describe(e: &Event) -> (u64, String, String) {
    match e {
        Event::Offered {
            at,
            min,
            reserve,
            buy_now,
            ends_at,
        } => {
            let mut d = format!("minimum {min}");
            if let Some(r) = reserve {
                let _ = write!(d, ", reserve {r} (hidden from bidders)");
            }
            if let Some(b) = buy_now {
                let _ = write!(d, ", buy it now {b}");
            }
            let _ = write!(d, "; ends {} (as extended)", time(*ends_at));
            (*at, "offered".into(), d)
        }
        Event::Bid {
            at,
            bid,
            bidder,
            amount,
            max,
            accepted,
            reason,
            bid_id,
            ends_at: _,
        } => {
            let mut d = match max {
                Some(m) => format!("{bidder} {amount} (proxy, maximum {m})"),
                None => format!("{bidder} {amount}"),
            };
            if !accepted {
                let _ = write!(
                    d,
                    ", rejected: {}",
                    reason.as_deref().unwrap_or("no reason stored")
                );
            }
            if let Some(id) = bid_id {
                let _ = write!(d, ", id {id}");
            }
            (*at, format!("bid #{bid}"), d)
        }
        Event::Operator {
            at,
            action,
            bid,
            operator,
            note,
        } => {
            let event = match bid {
                Some(b) => format!("{action} #{b}"),
                None => action.clone(),
            };
            (*at, event, format!("by {operator}: {note}"))
        }
        Event::Closed { at, winner, price } => {
            let d = match (winner, price) {
                (Some(w), Some(p)) => format!("sold to {w} for {p}"),
                _ => "not sold".to_owned(),
            };
            (*at, "closed".into(), d)
        }
    }
}
