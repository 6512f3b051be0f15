//! Text from outside made safe to store and show: the one rule for which characters go
//! (control characters, and the bidirectional marks and overrides that can make text in a terminal
//! read differently from what it is), and cutting on a character boundary. Used by the mirror, the
//! PPIO client's error texts, the metric labels and the Events alike.
//!
//! Text from outside may be as long as a response body (16 MiB): each rule here is one pass over
//! it, linear in its length whatever characters it holds (`tests/fuzz/time.rs` bounds the time of a
//! whole record).

use std::borrow::Cow;

/// Whether `c` is dropped from text from outside: a control character (tab and newline only when
/// `keep_lines` is false), a bidirectional mark (U+200E, U+200F) or a bidirectional embedding,
/// override or isolate (U+202A to U+202E, U+2066 to U+2069).
pub fn is_unwanted(c: char, keep_lines: bool) -> bool {
    (c.is_control() && !(keep_lines && matches!(c, '\n' | '\t')))
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `value` without the characters [`is_unwanted`] drops; tab and newline stay when `keep_lines`.
pub fn strip_control(value: &str, keep_lines: bool) -> Cow<'_, str> {
    let unwanted = |c: char| is_unwanted(c, keep_lines);
    if value.chars().any(unwanted) {
        Cow::Owned(value.chars().filter(|&c| !unwanted(c)).collect())
    } else {
        Cow::Borrowed(value)
    }
}

/// `value` cut to at most `max` bytes on a character boundary.
pub fn truncate(value: &str, max: usize) -> String {
    value[..floor_char_boundary(value, max)].to_owned()
}

/// The largest character boundary of `value` at or below `max`.
pub fn floor_char_boundary(value: &str, max: usize) -> usize {
    let mut end = value.len().min(max);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_every_bidirectional_mark_and_override_are_stripped() {
        for hidden in [
            '\u{0}', '\u{1b}', '\u{7f}', '\u{85}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202e}',
            '\u{2066}', '\u{2069}',
        ] {
            let text = format!("a{hidden}b");
            assert_eq!(strip_control(&text, false), "ab", "{hidden:?}");
            assert_eq!(strip_control(&text, true), "ab", "{hidden:?}");
        }
    }

    #[test]
    fn tab_and_newline_stay_only_where_lines_are_kept() {
        assert_eq!(strip_control("a\tb\nc\rd", true), "a\tb\ncd");
        assert_eq!(strip_control("a\tb\nc\rd", false), "abcd");
        assert!(matches!(
            strip_control("plain", false),
            Cow::Borrowed("plain")
        ));
    }

    #[test]
    fn cutting_never_splits_a_character() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("short", 64), "short");
    }
}
