//! Which bidder joins which items.
//!
//! Bidder `b` joins the `k` items `b*k, b*k+1, ... (mod items)`. Walking the items round-robin
//! this way gives every item `bidders*k/items` bidders, rounded down or up, so the load is even
//! and, with the default `k`, every item has at least two bidders competing for it.

/// Who joins what, and the figures a report gives about it.
pub struct Layout {
    /// Items per bidder.
    pub per_bidder: usize,
    /// `assignment[b]`: the item indices bidder `b` joins.
    pub assignment: Vec<Vec<usize>>,
    /// Bidders on each item.
    pub per_item: Vec<usize>,
    /// Channels in all (bidder x item pairs).
    pub channels: usize,
}

impl Layout {
    /// `per_bidder` items for each bidder, or the default spread when `None`.
    pub fn new(bidders: usize, items: usize, per_bidder: Option<usize>) -> Layout {
        let k = per_bidder
            .unwrap_or_else(|| default_items_per_bidder(bidders, items))
            .min(items);
        let assignment = assign(bidders, items, k);
        let per_item = bidders_per_item(&assignment, items);
        Layout {
            per_bidder: k,
            channels: assignment.iter().map(Vec::len).sum(),
            assignment,
            per_item,
        }
    }

    pub fn spread(&self) -> crate::report::Spread {
        crate::report::Spread {
            channels: self.channels,
            bidders_per_item_min: self.per_item.iter().copied().min().unwrap_or(0),
            bidders_per_item_max: self.per_item.iter().copied().max().unwrap_or(0),
        }
    }
}

/// The default number of items per bidder: the fewest that put at least two bidders on every
/// item (one when there are twice as many bidders as items), never more than there are items.
pub fn default_items_per_bidder(bidders: usize, items: usize) -> usize {
    if items == 0 {
        return 0;
    }
    let k = (2 * items).div_ceil(bidders.max(1));
    k.clamp(1, items)
}

/// `result[b]` lists the item indices bidder `b` joins.
pub fn assign(bidders: usize, items: usize, per_bidder: usize) -> Vec<Vec<usize>> {
    let k = per_bidder.min(items);
    (0..bidders)
        .map(|b| (0..k).map(|j| (b * k + j) % items).collect())
        .collect()
}

/// How many bidders each item gets under `assignment`.
pub fn bidders_per_item(assignment: &[Vec<usize>], items: usize) -> Vec<usize> {
    let mut counts = vec![0; items];
    for joined in assignment {
        for &i in joined {
            counts[i] += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spread_gives_every_item_competition() {
        for (bidders, items) in [(500, 20), (10, 20), (3, 20), (2, 7), (40, 40), (21, 20)] {
            let k = default_items_per_bidder(bidders, items);
            let counts = bidders_per_item(&assign(bidders, items, k), items);
            let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(*min >= 2, "{bidders}x{items}: k={k} counts={counts:?}");
            assert!(max - min <= 1, "{bidders}x{items}: uneven {counts:?}");
        }
        assert_eq!(default_items_per_bidder(500, 20), 1);
        assert_eq!(default_items_per_bidder(10, 20), 4);
    }

    #[test]
    fn every_bidder_on_every_item() {
        let a = assign(500, 20, 20);
        assert_eq!(a.iter().map(Vec::len).sum::<usize>(), 10_000);
        for joined in &a {
            let mut sorted = joined.clone();
            sorted.sort();
            assert_eq!(sorted, (0..20).collect::<Vec<_>>());
        }
    }

    #[test]
    fn one_bidder_has_no_competition() {
        let counts = bidders_per_item(&assign(1, 3, default_items_per_bidder(1, 3)), 3);
        assert_eq!(counts, vec![1, 1, 1]);
    }
}
