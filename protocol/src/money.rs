//! Money as an integer number of minor units (cents). Decimals exist only at the edges: parsing
//! what a person types and printing what a person reads.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::limits::MAX_AMOUNT_CENTS;

/// An amount in cents. On the wire it is a bare JSON integer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Cents(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("'{0}' is not an amount: write it like 12 or 12.50")]
    Syntax(String),
    #[error("'{0}' has more than two decimal places")]
    TooPrecise(String),
    #[error("'{0}' is larger than the largest amount allowed (100000000000.00)")]
    TooLarge(String),
}

impl Cents {
    /// Parses a decimal amount as a person writes it: `12`, `12.5`, `12.50`, `0.99`.
    /// No sign, no exponent, no thousands separators, at most two decimals.
    pub fn parse_decimal(text: &str) -> Result<Cents, AmountError> {
        let s = text.trim();
        let syntax = || AmountError::Syntax(text.to_owned());
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(syntax());
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        if s.ends_with('.') {
            return Err(syntax());
        }
        if frac.len() > 2 {
            return Err(AmountError::TooPrecise(text.to_owned()));
        }
        let too_large = || AmountError::TooLarge(text.to_owned());
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            // More than 15 digits can only be too large; avoids parse overflow errors.
            if whole.trim_start_matches('0').len() > 15 {
                return Err(too_large());
            }
            whole.parse().map_err(|_| syntax())?
        };
        let mut cents: u64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<u64>().map_err(|_| syntax())? * 10,
            _ => frac.parse().map_err(|_| syntax())?,
        };
        cents += whole.checked_mul(100).ok_or_else(too_large)?;
        if cents > MAX_AMOUNT_CENTS {
            return Err(too_large());
        }
        Ok(Cents(cents))
    }
}

impl fmt::Display for Cents {
    /// `1250` prints as `12.50`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_people_write() {
        assert_eq!(Cents::parse_decimal("12").unwrap(), Cents(1200));
        assert_eq!(Cents::parse_decimal("12.5").unwrap(), Cents(1250));
        assert_eq!(Cents::parse_decimal("12.50").unwrap(), Cents(1250));
        assert_eq!(Cents::parse_decimal("0.99").unwrap(), Cents(99));
        assert_eq!(Cents::parse_decimal(".5").unwrap(), Cents(50));
        assert_eq!(
            Cents::parse_decimal("100000000000").unwrap(),
            Cents(MAX_AMOUNT_CENTS)
        );
    }

    #[test]
    fn refuses_everything_else_with_a_reason() {
        for bad in [
            "", ".", "12.", "-1", "+1", "1e3", "1,000", "12.5.0", "abc", " . ",
        ] {
            assert!(
                matches!(Cents::parse_decimal(bad), Err(AmountError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Cents::parse_decimal("1.234"),
            Err(AmountError::TooPrecise(_))
        ));
        assert!(matches!(
            Cents::parse_decimal("100000000000.01"),
            Err(AmountError::TooLarge(_))
        ));
        assert!(matches!(
            Cents::parse_decimal("99999999999999999999999"),
            Err(AmountError::TooLarge(_))
        ));
    }

    #[test]
    fn prints_two_decimals() {
        assert_eq!(Cents(1250).to_string(), "12.50");
        assert_eq!(Cents(5).to_string(), "0.05");
        assert_eq!(Cents(0).to_string(), "0.00");
    }
}
