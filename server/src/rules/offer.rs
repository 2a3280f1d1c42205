//! What an offered item must be: a description people can read, a minimum within the money
//! limits, a duration between one second and 30 days. One check for offers over UDP and for
//! the house catalog (`--catalog`), so the two cannot drift apart.

use auction_protocol::limits::{
    DEFAULT_DURATION_SECS, MAX_AMOUNT_CENTS, MAX_DURATION_SECS, MIN_DURATION_SECS,
};
use auction_protocol::{names, Cents, Reason};

use super::refusal::Refusal;

/// Checks an offer's terms; returns the duration in seconds (the default when none is given).
pub fn check(description: &str, min: Cents, duration_secs: Option<u64>) -> Result<u64, Refusal> {
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

    fn reason(r: Result<u64, Refusal>) -> Reason {
        r.unwrap_err().reason
    }

    #[test]
    fn limits_are_inclusive_and_the_default_applies() {
        assert_eq!(check("Lamp", Cents(1), None), Ok(DEFAULT_DURATION_SECS));
        assert_eq!(check("Lamp", Cents(MAX_AMOUNT_CENTS), Some(1)), Ok(1));
        assert_eq!(
            check("Lamp", Cents(1), Some(MAX_DURATION_SECS)),
            Ok(MAX_DURATION_SECS)
        );
    }

    #[test]
    fn each_term_is_refused_with_its_own_reason() {
        assert_eq!(
            reason(check("", Cents(1), None)),
            Reason::InvalidDescription
        );
        assert_eq!(
            reason(check("a\u{7}b", Cents(1), None)),
            Reason::InvalidDescription
        );
        assert_eq!(reason(check("Lamp", Cents(0), None)), Reason::InvalidAmount);
        assert_eq!(
            reason(check("Lamp", Cents(MAX_AMOUNT_CENTS + 1), None)),
            Reason::InvalidAmount
        );
        assert_eq!(
            reason(check("Lamp", Cents(1), Some(0))),
            Reason::InvalidDuration
        );
        assert_eq!(
            reason(check("Lamp", Cents(1), Some(MAX_DURATION_SECS + 1))),
            Reason::InvalidDuration
        );
    }
}
