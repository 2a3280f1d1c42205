//! `--catalog items.json`: items the house offers when the server starts.
//!
//! ```json
//! {
//!   "seller": "house",
//!   "items": [
//!     { "id": "lamp-1", "description": "Vintage lamp", "min": "12.50", "duration": "10m" },
//!     { "description": "Tea set", "min": "5" },
//!     { "description": "Clock", "min": "20", "reserve": "60", "buy_now": "150" }
//!   ]
//! }
//! ```
//!
//! `seller` (default `house`) is the account that offers them: an existing account of that name,
//! or one the server creates with a key nobody holds. `id` names the entry (default: its
//! description); an entry whose id was offered before, in this database, is skipped, so starting
//! again with the same catalog offers nothing twice. `min` is a decimal string (no floating
//! point money), as are the optional `reserve` and `buy_now` prices (see PROTOCOL.md's `offer`);
//! `duration` is written like `90s`, `10m`, `2h` (default 5m). With `"close_in_turn": "30s"` the
//! lots close one after another, each that long after the one before it (a timed sale); only the
//! first takes a duration; adding `"group_soft_close": true` makes them one group, in which a
//! soft-close extension of a lot moves every later lot with it, so they still close in turn,
//! that far apart (the registry does it: `registry/lots.rs`). The whole file is
//! checked before anything is offered: any bad entry stops the start with its position and why.

use anyhow::{bail, Context, Result};
use auction_protocol::limits::MAX_DURATION_SECS;
use auction_protocol::{names, Cents};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;

use crate::rules::auction::Terms;
use crate::rules::offer;

/// Larger catalog files are refused rather than read.
pub const MAX_CATALOG_BYTES: u64 = 16 << 20;
/// Entries one catalog may hold.
pub const MAX_ENTRIES: usize = 10_000;
/// Longest entry id.
pub const MAX_ID_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    pub seller: String,
    pub entries: Vec<Entry>,
    /// `"group_soft_close": true` (with `close_in_turn`): the lots close in turn as one group,
    /// a soft-close extension of one moving every later lot with it, so each still closes
    /// this long (ms) after the one before it.
    pub group_gap_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub description: String,
    pub min: Cents,
    pub duration_secs: u64,
    pub terms: Terms,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "house")]
    seller: String,
    /// Lots closing in turn: each entry closes this long after the one before it (`30s`); the
    /// first after its own duration. Later entries then take no duration of their own.
    close_in_turn: Option<String>,
    /// With `close_in_turn`: a soft-close extension of a lot moves the later lots too.
    #[serde(default)]
    group_soft_close: bool,
    items: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    id: Option<String>,
    description: String,
    min: String,
    duration: Option<String>,
    reserve: Option<String>,
    buy_now: Option<String>,
}

fn house() -> String {
    "house".into()
}

impl Catalog {
    pub fn load(path: &Path) -> Result<Catalog> {
        let shown = path.display();
        let size = std::fs::metadata(path)
            .with_context(|| format!("cannot read the catalog {shown}"))?
            .len();
        if size > MAX_CATALOG_BYTES {
            bail!("the catalog {shown} is {size} bytes; at most {MAX_CATALOG_BYTES} are read");
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the catalog {shown}"))?;
        Catalog::parse(&text).with_context(|| format!("in the catalog {shown}"))
    }

    pub fn parse(text: &str) -> Result<Catalog> {
        let file: File = serde_json::from_str(text).context("not a catalog (see README)")?;
        if !names::valid_name(&file.seller) {
            bail!(
                "seller '{}' is not a valid account name (1 to 32 of A-Z a-z 0-9 _ . -)",
                file.seller
            );
        }
        if file.items.len() > MAX_ENTRIES {
            bail!(
                "{} items; a catalog holds at most {MAX_ENTRIES}",
                file.items.len()
            );
        }
        let gap = match &file.close_in_turn {
            None => None,
            Some(d) => {
                let gap = humantime::parse_duration(d)
                    .map_err(|e| {
                        anyhow::anyhow!("close_in_turn '{d}': {e} (write it like 30s, 2m)")
                    })?
                    .as_secs();
                if gap == 0 {
                    bail!("close_in_turn '{d}': lots close at least a second apart");
                }
                Some(gap)
            }
        };
        if file.group_soft_close && gap.is_none() {
            bail!("group_soft_close needs close_in_turn: it keeps lots closing in turn");
        }
        let mut seen = HashSet::new();
        let mut entries: Vec<Entry> = Vec::with_capacity(file.items.len());
        for (i, raw) in file.items.into_iter().enumerate() {
            let at = || format!("item {} (counting from 1)", i + 1);
            if gap.is_some() && i > 0 && raw.duration.is_some() {
                bail!(
                    "{}: with close_in_turn only the first item takes a duration (the others close in turn after it)",
                    at()
                );
            }
            let mut entry = check(raw).with_context(at)?;
            if let (Some(gap), Some(first)) = (gap, entries.first()) {
                let duration = first
                    .duration_secs
                    .saturating_add(gap.saturating_mul(i as u64));
                if duration > MAX_DURATION_SECS {
                    bail!(
                        "{}: closing in turn, it would close {duration} s after the start, past the 30 days an auction may run",
                        at()
                    );
                }
                entry.duration_secs = duration;
            }
            if !seen.insert(entry.id.clone()) {
                bail!("item {}: the id '{}' appears twice", i + 1, entry.id);
            }
            entries.push(entry);
        }
        Ok(Catalog {
            seller: file.seller,
            entries,
            group_gap_ms: gap
                .filter(|_| file.group_soft_close)
                .map(|g| g.saturating_mul(1000)),
        })
    }
}

fn check(raw: RawEntry) -> Result<Entry> {
    let min = Cents::parse_decimal(&raw.min).map_err(|e| anyhow::anyhow!("min: {e}"))?;
    let price = |what: &str, text: Option<&String>| {
        text.map(|t| Cents::parse_decimal(t).map_err(|e| anyhow::anyhow!("{what}: {e}")))
            .transpose()
    };
    let terms = Terms {
        reserve: price("reserve", raw.reserve.as_ref())?,
        buy_now: price("buy_now", raw.buy_now.as_ref())?,
    };
    let duration_secs = match raw.duration {
        None => None,
        Some(d) => Some(
            humantime::parse_duration(&d)
                .map_err(|e| anyhow::anyhow!("duration '{d}': {e} (write it like 90s, 10m, 2h)"))?
                .as_secs(),
        ),
    };
    // The same terms as an offer over UDP.
    let duration_secs = offer::check(&raw.description, min, duration_secs, terms)
        .map_err(|refused| anyhow::anyhow!("{}", refused.message))?;
    let id = raw.id.unwrap_or_else(|| raw.description.clone());
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS || id.chars().any(char::is_control) {
        bail!("an id is 1 to {MAX_ID_CHARS} characters, without control characters");
    }
    Ok(Entry {
        id,
        description: raw.description,
        min,
        duration_secs,
        terms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_catalog_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/catalog.json");
        let c = Catalog::load(&path).unwrap();
        assert_eq!(c.seller, "house");
        assert!(c.entries.len() >= 3);
    }

    #[test]
    fn defaults_and_decimal_amounts() {
        let c = Catalog::parse(r#"{"items":[{"description":"Tea set","min":"5"}]}"#).unwrap();
        assert_eq!(c.seller, "house");
        assert_eq!(
            c.entries,
            vec![Entry {
                id: "Tea set".into(),
                description: "Tea set".into(),
                min: Cents(500),
                duration_secs: 300,
                terms: Terms::default(),
            }]
        );
        let c = Catalog::parse(
            r#"{"items":[{"description":"Clock","min":"20","reserve":"60","buy_now":"150"}]}"#,
        )
        .unwrap();
        assert_eq!(
            c.entries[0].terms,
            Terms {
                reserve: Some(Cents(6000)),
                buy_now: Some(Cents(15000))
            }
        );
    }

    #[test]
    fn bad_entries_are_named() {
        for (text, says) in [
            (r#"{"items":[{"description":"","min":"5"}]}"#, "description"),
            (
                r#"{"items":[{"description":"a","min":5}]}"#,
                "not a catalog",
            ),
            (r#"{"items":[{"description":"a","min":"5.001"}]}"#, "min"),
            (
                r#"{"items":[{"description":"a","min":"5","reserve":"x"}]}"#,
                "reserve",
            ),
            (
                r#"{"items":[{"description":"a","min":"5","reserve":"4"}]}"#,
                "reserve price must be at least",
            ),
            (
                r#"{"items":[{"description":"a","min":"5","buy_now":"4"}]}"#,
                "buy-it-now price must be at least",
            ),
            (
                r#"{"items":[{"description":"a","min":"0"}]}"#,
                "minimum bid must",
            ),
            (
                r#"{"items":[{"description":"a","min":"1","duration":"31 days"}]}"#,
                "duration",
            ),
            (
                r#"{"items":[{"description":"a","min":"1","duration":"soon"}]}"#,
                "duration 'soon'",
            ),
            (
                r#"{"items":[{"description":"a","min":"1"},{"description":"a","min":"2"}]}"#,
                "appears twice",
            ),
            (r#"{"seller":"no one","items":[]}"#, "seller"),
            (
                r#"{"items":[{"description":"a","min":"1","colour":"red"}]}"#,
                "not a catalog",
            ),
            ("[1,2", "not a catalog"),
            (
                r#"{"close_in_turn":"soon","items":[{"description":"a","min":"5"}]}"#,
                "close_in_turn 'soon'",
            ),
            (
                r#"{"close_in_turn":"0s","items":[{"description":"a","min":"5"}]}"#,
                "a second apart",
            ),
            (
                r#"{"close_in_turn":"30s","items":[{"description":"a","min":"5"},{"description":"b","min":"5","duration":"1m"}]}"#,
                "item 2 (counting from 1): with close_in_turn only the first",
            ),
            (
                r#"{"close_in_turn":"30d","items":[{"description":"a","min":"5"},{"description":"b","min":"5"}]}"#,
                "past the 30 days",
            ),
        ] {
            let err = format!("{:#}", Catalog::parse(text).unwrap_err());
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn lots_close_in_turn_after_the_first() {
        let c = Catalog::parse(
            r#"{"close_in_turn":"30s","items":[
                {"description":"Lot 1","min":"5","duration":"10m"},
                {"description":"Lot 2","min":"5"},
                {"description":"Lot 3","min":"5"}]}"#,
        )
        .unwrap();
        let durations: Vec<u64> = c.entries.iter().map(|e| e.duration_secs).collect();
        assert_eq!(durations, [600, 630, 660]);
        // Without it, each its own (the default 5m).
        let c = Catalog::parse(
            r#"{"items":[{"description":"a","min":"5"},{"description":"b","min":"5"}]}"#,
        )
        .unwrap();
        assert_eq!(c.entries[1].duration_secs, 300);
    }
}
