//! What an offered item must be: a description people can read, a minimum within the money
//! limits, a duration between one second and 30 days, and a reserve and buy-it-now price, if
//! any, that fit the minimum and each other. One check for offers over UDP and for the house
//! catalog (`--catalog`), so the two cannot drift apart.

use auction_protocol::limits::{
    DEFAULT_DURATION_SECS, MAX_AMOUNT_CENTS, MAX_DURATION_SECS, MIN_DURATION_SECS,
};
use auction_protocol::{names, Cents, Reason};

use super::auction::Terms;
use super::refusal::Refusal;

/// Checks an offer's terms; returns the duration in seconds (the default when none is given).
pub fn check(
    description: &str,
    min: Cents,
    duration_secs: Option<u64>,
    terms: Terms,
) -> Result<u64, Refusal> {
    if !names::valid_description(description) {
        return Err(Refusal::new(
            Reason::InvalidDescription,
            "a description is 1 to 200 characters, without control characters".into(),
        ));
    }
    if min.0 == 0 || min.0 > MAX_AMOUNT_CENTS {
        return Err(Refusal::new(
            Reason::InvalidAmount,
            "the minimum bid must be between 0.01 and 100000000000.00".into(),
        ));
    }
    let amount = |what: &str, c: Cents, floor: Cents, floor_is: &str| {
        if c < floor || c.0 > MAX_AMOUNT_CENTS {
            return Err(Refusal::new(
                Reason::InvalidAmount,
                format!(
                    "the {what} must be at least {floor_is} ({floor}) and at most 100000000000.00"
                ),
            ));
        }
        Ok(())
    };
    if let Some(reserve) = terms.reserve {
        amount("reserve price", reserve, min, "the minimum bid")?;
    }
    if let Some(buy_now) = terms.buy_now {
        match terms.reserve {
            Some(reserve) => amount("buy-it-now price", buy_now, reserve, "the reserve price")?,
            None => amount("buy-it-now price", buy_now, min, "the minimum bid")?,
        }
    }
    let duration = duration_secs.unwrap_or(DEFAULT_DURATION_SECS);
    if !(MIN_DURATION_SECS..=MAX_DURATION_SECS).contains(&duration) {
        return Err(Refusal::new(
            Reason::InvalidDuration,
            "the duration must be between 1 second and 30 days".into(),
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check0(description: &str, min: Cents, duration: Option<u64>) -> Result<u64, Refusal> {
        check(description, min, duration, Terms::default())
    }

    fn reason(r: Result<u64, Refusal>) -> Reason {
        r.unwrap_err().reason
    }

    #[test]
    fn limits_are_inclusive_and_the_default_applies() {
        assert_eq!(check0("Lamp", Cents(1), None), Ok(DEFAULT_DURATION_SECS));
        assert_eq!(check0("Lamp", Cents(MAX_AMOUNT_CENTS), Some(1)), Ok(1));
        assert_eq!(
            check0("Lamp", Cents(1), Some(MAX_DURATION_SECS)),
            Ok(MAX_DURATION_SECS)
        );
    }

    #[test]
    fn each_term_is_refused_with_its_own_reason() {
        assert_eq!(
            reason(check0("", Cents(1), None)),
            Reason::InvalidDescription
        );
        assert_eq!(
            reason(check0("a\u{7}b", Cents(1), None)),
            Reason::InvalidDescription
        );
        assert_eq!(
            reason(check0("Lamp", Cents(0), None)),
            Reason::InvalidAmount
        );
        assert_eq!(
            reason(check0("Lamp", Cents(MAX_AMOUNT_CENTS + 1), None)),
            Reason::InvalidAmount
        );
        assert_eq!(
            reason(check0("Lamp", Cents(1), Some(0))),
            Reason::InvalidDuration
        );
        assert_eq!(
            reason(check0("Lamp", Cents(1), Some(MAX_DURATION_SECS + 1))),
            Reason::InvalidDuration
        );
    }

    #[test]
    fn a_reserve_is_at_least_the_minimum_and_buy_it_now_at_least_both() {
        let terms = |reserve: Option<u64>, buy_now: Option<u64>| Terms {
            reserve: reserve.map(Cents),
            buy_now: buy_now.map(Cents),
        };
        let ok = |t| check("Lamp", Cents(1000), None, t).is_ok();
        let refused = |t| check("Lamp", Cents(1000), None, t).unwrap_err();
        assert!(ok(terms(Some(1000), Some(1000))));
        assert!(ok(terms(Some(5000), Some(9000))));
        assert!(ok(terms(None, Some(1000))));
        assert!(ok(terms(Some(MAX_AMOUNT_CENTS), None)));
        let r = refused(terms(Some(999), None));
        assert_eq!(r.reason, Reason::InvalidAmount);
        assert!(r
            .message
            .contains("reserve price must be at least the minimum bid (10.00)"));
        let r = refused(terms(None, Some(999)));
        assert!(r
            .message
            .contains("buy-it-now price must be at least the minimum bid"));
        let r = refused(terms(Some(5000), Some(4999)));
        assert!(
            r.message.contains("at least the reserve price (50.00)"),
            "{}",
            r.message
        );
        assert_eq!(
            refused(terms(Some(MAX_AMOUNT_CENTS + 1), None)).reason,
            Reason::InvalidAmount
        );
    }
}
