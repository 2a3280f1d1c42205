//! A catalog's lots closing in turn as one group (`--catalog` with `close_in_turn` and
//! `group_soft_close`): when a bid extends a lot (soft close), every later lot of the group is
//! moved so that it still closes its gap after the one before it, as timed sales run: no lot
//! closes before an earlier one. The item that was extended tells the registry once its bid is
//! durable (`Change::Extended`); the registry, which knows the group's order, asks each later
//! lot's task to move its end (`ItemCmd::PushEnd`), and each stores and says its new end like
//! an extension of its own.
//!
//! The group is the catalog given at start: its entries' order and gap; the lots are found
//! by their catalog ids, also after a restart. Several nodes: not carried out (the lots run on
//! other nodes; each keeps its own soft close).

use std::collections::{BTreeMap, HashMap};

use super::Registry;
use crate::catalog::Catalog;
use crate::item::ItemCmd;

/// The group's order and gap, and the items its lots became.
pub(super) struct Lots {
    gap_ms: u64,
    /// Catalog id → place in the catalog.
    place: HashMap<String, usize>,
    /// Place → item, for the lots offered (in this run or before it).
    items: BTreeMap<usize, u64>,
    /// Item → place.
    of_item: HashMap<u64, usize>,
}

impl Lots {
    /// The group of `catalog`, if its lots close in turn as one.
    pub(super) fn of(catalog: Option<&Catalog>) -> Option<Lots> {
        let catalog = catalog?;
        Some(Lots {
            gap_ms: catalog.group_gap_ms?,
            place: catalog
                .entries
                .iter()
                .enumerate()
                .map(|(i, e)| (e.id.clone(), i))
                .collect(),
            items: BTreeMap::new(),
            of_item: HashMap::new(),
        })
    }

    /// Whether `catalog_id` is a lot of the group.
    pub(super) fn has(&self, catalog_id: Option<&str>) -> bool {
        catalog_id.is_some_and(|id| self.place.contains_key(id))
    }

    /// Item `item` is the lot `catalog_id`.
    pub(super) fn add(&mut self, catalog_id: Option<&str>, item: u64) {
        if let Some(&place) = catalog_id.and_then(|id| self.place.get(id)) {
            self.items.insert(place, item);
            self.of_item.insert(item, place);
        }
    }

    /// Lot `item` now ends at `ends_at`: each later lot with the end it must at least have.
    pub(super) fn pushed(&self, item: u64, ends_at: u64) -> Vec<(u64, u64)> {
        let Some(&from) = self.of_item.get(&item) else {
            return Vec::new();
        };
        self.items
            .range(from + 1..)
            .map(|(&place, &later)| {
                let turns = (place - from) as u64;
                (
                    later,
                    ends_at.saturating_add(self.gap_ms.saturating_mul(turns)),
                )
            })
            .collect()
    }
}

/// Asks an item to end at `to` at the earliest, without waiting (a full queue is waited for
/// on a task of its own: the move must not be lost).
fn push_end(cmd: tokio::sync::mpsc::Sender<ItemCmd>, to: u64) {
    if let Err(tokio::sync::mpsc::error::TrySendError::Full(msg)) =
        cmd.try_send(ItemCmd::PushEnd { to })
    {
        tokio::spawn(async move {
            let _ = cmd.send(msg).await;
        });
    }
}

impl Lots {
    /// The lots whose end must move so that each closes at least its gap per turn after the
    /// lots before it, given each lot's end now (`ends`: item → end): (item, end it needs).
    pub(super) fn behind(&self, ends: &HashMap<u64, u64>) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut before: Option<(usize, u64)> = None;
        for (&place, item) in &self.items {
            let Some(&end) = ends.get(item) else { continue };
            let need = before.map_or(end, |(p, e)| {
                end.max(e.saturating_add(self.gap_ms.saturating_mul((place - p) as u64)))
            });
            if need > end {
                out.push((*item, need));
            }
            before = Some((place, need));
        }
        out
    }
}

impl Registry {
    /// After a restart: a lot that closes too soon after the one before it (its move was not
    /// stored before the server stopped) is moved now.
    pub(super) fn realign_lots(&mut self) {
        let Some(lots) = &self.lots else { return };
        let ends: HashMap<u64, u64> = self
            .items
            .iter()
            .filter(|(_, e)| e.cmd.is_some())
            .map(|(&id, e)| (id, e.view.borrow().ends_at))
            .collect();
        for (item, to) in lots.behind(&ends) {
            tracing::info!(
                item,
                ends_at = to,
                "moving a lot its group's extension did not reach before the restart"
            );
            if let Some(cmd) = self.items.get(&item).and_then(|e| e.cmd.clone()) {
                push_end(cmd, to);
            }
        }
    }

    /// A lot of the group was extended to `ends_at`: the later ones move with it.
    pub(super) fn lot_extended(&mut self, item: u64, ends_at: u64) {
        let Some(lots) = &self.lots else { return };
        for (later, to) in lots.pushed(item, ends_at) {
            let Some(cmd) = self.items.get(&later).and_then(|e| e.cmd.clone()) else {
                continue; // closed already
            };
            if cmd.try_send(ItemCmd::PushEnd { to }).is_err() {
                tracing::warn!(
                    item = later,
                    "a lot's queue is full; its end was not moved with the group"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lots() -> Lots {
        let catalog = Catalog::parse(
            r#"{"close_in_turn": "30s", "group_soft_close": true, "items": [
                {"id": "a", "description": "A", "min": "5", "duration": "10m"},
                {"id": "b", "description": "B", "min": "5"},
                {"id": "c", "description": "C", "min": "5"},
                {"id": "d", "description": "D", "min": "5"}
            ]}"#,
        )
        .unwrap();
        let mut lots = Lots::of(Some(&catalog)).unwrap();
        // Lot c was never offered in this database (say it was added to the file later).
        for (id, item) in [("a", 11), ("b", 12), ("d", 14)] {
            lots.add(Some(id), item);
        }
        lots
    }

    #[test]
    fn an_extended_lot_moves_the_later_ones_by_their_turns() {
        let lots = lots();
        assert_eq!(
            lots.pushed(11, 1_000_000),
            [(12, 1_030_000), (14, 1_090_000)]
        );
        assert_eq!(lots.pushed(12, 2_000_000), [(14, 2_060_000)]);
        assert!(
            lots.pushed(14, 3_000_000).is_empty(),
            "the last lot moves no one"
        );
        assert!(lots.pushed(99, 3_000_000).is_empty(), "not a lot");
        assert!(lots.has(Some("c")) && !lots.has(Some("z")) && !lots.has(None));
    }

    #[test]
    fn after_a_restart_a_lot_too_close_to_the_one_before_is_moved() {
        let lots = lots();
        // Lot a was extended to 1,000,000 but b's move was lost; d is far enough already.
        let ends = HashMap::from([(11, 1_000_000), (12, 1_010_000), (14, 1_200_000)]);
        assert_eq!(lots.behind(&ends), [(12, 1_030_000)]);
        // d follows b's new end: 1,030,000 + 2 turns is 1,090,000, before its own 1,100,000.
        let ends = HashMap::from([(11, 1_000_000), (12, 1_010_000), (14, 1_050_000)]);
        assert_eq!(lots.behind(&ends), [(12, 1_030_000), (14, 1_090_000)]);
        // Closed lots (not in `ends`) move nothing and are skipped.
        let ends = HashMap::from([(12, 1_010_000), (14, 1_050_000)]);
        assert_eq!(lots.behind(&ends), [(14, 1_070_000)]);
    }

    #[test]
    fn only_a_catalog_asking_for_it_makes_a_group() {
        let plain = Catalog::parse(
            r#"{"close_in_turn": "30s", "items": [{"description": "A", "min": "5"}]}"#,
        )
        .unwrap();
        assert!(Lots::of(Some(&plain)).is_none());
        assert!(Lots::of(None).is_none());
        let e = Catalog::parse(
            r#"{"group_soft_close": true, "items": [{"description": "A", "min": "5"}]}"#,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("needs close_in_turn"), "{e:#}");
    }
}
