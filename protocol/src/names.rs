//! Validation of the free-form values people choose: account names, item descriptions, bid ids.

use crate::limits::{MAX_BID_ID_LEN, MAX_DESCRIPTION_CHARS, MAX_NAME_LEN, MAX_NOTE_CHARS};

/// 1 to 32 characters of `A-Z a-z 0-9 _ . -`.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// 1 to 200 characters, not only blanks, no control characters (so it prints safely in a
/// terminal and its JSON encoding is at most 4 bytes per character), and none of the
/// [`invisible`] characters that make text read differently from what it is.
pub fn valid_description(text: &str) -> bool {
    let chars = text.chars().count();
    (1..=MAX_DESCRIPTION_CHARS).contains(&chars)
        && !text.trim().is_empty()
        && !text.chars().any(|c| c.is_control() || invisible(c))
}

/// An operator's note (`cancel-item`, `remove-bid`): a description's rules, at most
/// [`MAX_NOTE_CHARS`] characters.
pub fn valid_note(text: &str) -> bool {
    text.chars().count() <= MAX_NOTE_CHARS && valid_description(text)
}

/// Characters that change how the text around them is shown without being seen themselves:
/// the bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069), which
/// can make "lamp 100" display as "001 pmal", the directional marks (U+200E, U+200F, U+061C),
/// and the zero-width characters (U+200B–U+200D, U+2060, U+FEFF), which make two descriptions
/// that look the same differ. (Emoji joined with U+200D are refused with them.)
pub fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200B}'..='\u{200F}'
            | '\u{061C}'
            | '\u{2060}'
            | '\u{FEFF}'
    )
}

/// The form in which two account names are the same name: names are unique without regard to
/// case, so "alice" and "Alice" cannot be two accounts.
pub fn name_key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// 1 to 64 bytes of printable ASCII other than space.
pub fn valid_bid_id(id: &str) -> bool {
    (1..=MAX_BID_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_refuse_what_changes_how_they_read() {
        assert!(valid_description("Vintage lamp"));
        assert!(valid_description("Théière en argent, 1920"));
        assert!(valid_description(
            "\u{627}\u{644}\u{645}\u{635}\u{628}\u{627}\u{62D}"
        ));
        for c in [
            '\u{202E}', '\u{202A}', '\u{2066}', '\u{2069}', '\u{200B}', '\u{200D}', '\u{200E}',
            '\u{200F}', '\u{061C}', '\u{2060}', '\u{FEFF}',
        ] {
            assert!(
                !valid_description(&format!("lamp{c}100")),
                "{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn names_are_the_same_without_regard_to_case() {
        assert_eq!(name_key("Alice"), name_key("aLICE"));
        assert_ne!(name_key("alice"), name_key("alice2"));
    }

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
