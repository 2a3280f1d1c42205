//! The bid increment by price band: the smallest raise over the highest bid depends on that
//! bid, as auction houses and the big platforms set it (5 cents below 1.00, 25 cents to 5.00,
//! ..., 100.00 from 5,000.00), so a 1,000.00 item does not move a cent at a time and a 0.50
//! one can still be outbid. The operator sets the table (`--increments`); one band is one
//! fixed step (`--min-increment`).

use auction_protocol::Cents;
use std::fmt;

/// Most bands in a table: enough for any schedule people use, and a bound on the parser.
pub const MAX_BANDS: usize = 32;

/// The default table (the operator's `--increments` replaces it).
pub const DEFAULT: &str =
    "0:0.05,1:0.25,5:0.50,25:1,100:2.50,250:5,500:10,1000:25,2500:50,5000:100";

/// Bands `(from, step)`: from a highest bid of `from` upwards, until the next band's `from`,
/// the next bid must be at least `step` higher. The first band starts at 0; `from` rises
/// strictly; every step is at least one cent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Increments {
    bands: Vec<(Cents, Cents)>,
}

impl Increments {
    /// One step at every price.
    pub fn fixed(step: Cents) -> Increments {
        Increments {
            bands: vec![(Cents(0), Cents(step.0.max(1)))],
        }
    }

    /// The step over a highest bid of `price`.
    pub fn step(&self, price: Cents) -> Cents {
        // The last band starting at or below the price; the first starts at 0.
        let i = self.bands.partition_point(|&(from, _)| from <= price);
        self.bands[i.saturating_sub(1)].1
    }

    /// The smallest bid over a highest bid of `price`.
    pub fn above(&self, price: Cents) -> Cents {
        Cents(price.0.saturating_add(self.step(price).0))
    }

    pub fn bands(&self) -> &[(Cents, Cents)] {
        &self.bands
    }

    /// Reads `FROM:STEP,FROM:STEP,...` (amounts as `12.50`); the first `FROM` is 0.
    pub fn parse(text: &str) -> Result<Increments, String> {
        let mut bands: Vec<(Cents, Cents)> = Vec::new();
        for (i, part) in text.split(',').enumerate() {
            if i == MAX_BANDS {
                return Err(format!("at most {MAX_BANDS} bands"));
            }
            let part = part.trim();
            let (from, step) = part
                .split_once(':')
                .ok_or_else(|| format!("`{part}` is not FROM:STEP (e.g. 25:1.00)"))?;
            let amount =
                |s: &str| Cents::parse_decimal(s.trim()).map_err(|e| format!("`{part}`: {e}"));
            let (from, step) = (amount(from)?, amount(step)?);
            if step.0 == 0 {
                return Err(format!("`{part}`: a step is at least 0.01"));
            }
            match bands.last() {
                None if from.0 != 0 => {
                    return Err(format!("the first band starts at 0, not at {from}"));
                }
                Some(&(last, _)) if from <= last => {
                    return Err(format!("bands go up: {from} does not come after {last}"));
                }
                _ => {}
            }
            bands.push((from, step));
        }
        Ok(Increments { bands })
    }
}

impl Default for Increments {
    fn default() -> Increments {
        Increments::parse(DEFAULT).expect("the default table is valid")
    }
}

/// As [`Increments::parse`] reads it.
impl fmt::Display for Increments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (from, step)) in self.bands.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{from}:{step}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_band_of_the_highest_bid_gives_the_step_and_boundaries_belong_to_the_upper_band() {
        let t = Increments::default();
        assert_eq!(t.step(Cents(1)), Cents(5));
        assert_eq!(t.step(Cents(99)), Cents(5));
        // 1.00 is the first price of the second band.
        assert_eq!(t.step(Cents(100)), Cents(25));
        assert_eq!(t.above(Cents(99)), Cents(104));
        assert_eq!(t.above(Cents(100)), Cents(125));
        assert_eq!(t.step(Cents(99_999)), Cents(1_000));
        assert_eq!(t.above(Cents(100_000)), Cents(102_500));
        assert_eq!(t.step(Cents(u64::MAX)), Cents(10_000));
        assert_eq!(t.above(Cents(u64::MAX)), Cents(u64::MAX), "saturates");
        // No cent raises on a 1,000.00 item.
        assert!(t.above(Cents(100_000)).0 - 100_000 > 1);
    }

    #[test]
    fn a_fixed_step_is_one_band() {
        let t = Increments::fixed(Cents(50));
        assert_eq!(t.step(Cents(0)), Cents(50));
        assert_eq!(t.above(Cents(1_000_000)), Cents(1_000_050));
        assert_eq!(Increments::fixed(Cents(0)).step(Cents(5)), Cents(1));
    }

    #[test]
    fn tables_parse_print_and_refuse_with_reasons() {
        let t = Increments::parse("0:0.05, 1:0.25,5:0.5").unwrap();
        assert_eq!(
            t.bands(),
            &[
                (Cents(0), Cents(5)),
                (Cents(100), Cents(25)),
                (Cents(500), Cents(50))
            ]
        );
        assert_eq!(t.to_string(), "0.00:0.05,1.00:0.25,5.00:0.50");
        assert_eq!(Increments::parse(&t.to_string()), Ok(t));
        assert_eq!(
            Increments::parse(DEFAULT).unwrap().to_string(),
            Increments::default().to_string()
        );
        let refused = |s: &str| Increments::parse(s).unwrap_err();
        assert!(refused("1:0.05").contains("starts at 0"));
        assert!(refused("0:0.05,5:1,5:2").contains("go up"));
        assert!(refused("0:0.05,5:1,2:2").contains("go up"));
        assert!(refused("0:0").contains("at least 0.01"));
        assert!(refused("0.05").contains("FROM:STEP"));
        assert!(refused("").contains("FROM:STEP"));
        assert!(refused("0:x").contains("`0:x`"));
        let many: Vec<String> = (0..=MAX_BANDS).map(|i| format!("{i}:1")).collect();
        assert!(refused(&many.join(",")).contains("at most"));
        let most: Vec<String> = (0..MAX_BANDS).map(|i| format!("{i}:1")).collect();
        assert!(Increments::parse(&most.join(",")).is_ok());
    }
}
