//! Validation of the free-form values people choose: account names, item descriptions, bid ids.

use crate::limits::{MAX_BID_ID_LEN, MAX_DESCRIPTION_CHARS, MAX_NAME_LEN};

/// 1 to 32 characters of `A-Z a-z 0-9 _ . -`.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// 1 to 200 characters, not only blanks, and no control characters (so it prints safely in a
/// terminal and its JSON encoding is at most 4 bytes per character).
pub fn valid_description(text: &str) -> bool {
    let chars = text.chars().count();
    (1..=MAX_DESCRIPTION_CHARS).contains(&chars)
        && !text.trim().is_empty()
        && !text.chars().any(char::is_control)
}

/// 1 to 64 bytes of printable ASCII other than space.
pub fn valid_bid_id(id: &str) -> bool {
    (1..=MAX_BID_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("alice"));
        assert!(valid_name("A.b_c-9"));
        assert!(valid_name(&"x".repeat(32)));
        assert!(!valid_name(""));
        assert!(!valid_name(&"x".repeat(33)));
        assert!(!valid_name("al ice"));
        assert!(!valid_name("élodie"));
        assert!(!valid_name("a/b"));
    }

    #[test]
    fn descriptions() {
        assert!(valid_description("A bicycle, barely used"));
        assert!(valid_description(&"é".repeat(200)));
        assert!(!valid_description(&"é".repeat(201)));
        assert!(!valid_description(""));
        assert!(!valid_description("   "));
        assert!(!valid_description("bell\u{7}"));
        assert!(!valid_description("two\nlines"));
    }

    #[test]
    fn bid_ids() {
        assert!(valid_bid_id("b-17"));
        assert!(!valid_bid_id(""));
        assert!(!valid_bid_id("has space"));
        assert!(!valid_bid_id(&"x".repeat(65)));
    }
}
