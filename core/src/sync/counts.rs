//! Counting by remote text, bounded whatever PPIO sends: the one rule for the key a value is
//! counted under (a blank value reads [`UNKNOWN`]; a long one is cut), and for keeping only the
//! largest counts, the rest summed up under [`OTHER`]. The view's counts by status and region, the
//! fleet metrics and the tally of lifecycle transitions all count this way.

use std::borrow::Cow;

/// The key a blank value is counted under.
pub const UNKNOWN: &str = "unknown";
/// The key that sums up the counts beyond the largest ones kept.
pub const OTHER: &str = "other";
/// The longest key, in bytes, of the counts a view's status and its Events show: a label value's
/// length, since the remote status is a label of each mirror too.
pub const MAX_KEY_BYTES: usize = 63;

/// The key `value` is counted under: [`UNKNOWN`] when it is blank, else `value` cut to at most
/// `max_bytes` on a character boundary.
pub fn key_of(value: &str, max_bytes: usize) -> Cow<'_, str> {
    if value.trim().is_empty() {
        Cow::Borrowed(UNKNOWN)
    } else if value.len() <= max_bytes {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(ppio::text::truncate(value, max_bytes))
    }
}

/// Counted entries: a key and what is counted under it.
pub type Entries<K, V> = Vec<(K, V)>;

/// Splits `entries` into the `max` with the largest counts (on a tie, the smaller key first) and
/// the rest, which the caller sums up under [`OTHER`].
pub fn split_largest<K: Ord, V>(
    entries: impl IntoIterator<Item = (K, V)>,
    max: usize,
    count: impl Fn(&V) -> i64,
) -> (Entries<K, V>, Entries<K, V>) {
    let mut ranked: Entries<K, V> = entries.into_iter().collect();
    if ranked.len() <= max {
        return (ranked, Vec::new());
    }
    ranked.sort_by(|a, b| count(&b.1).cmp(&count(&a.1)).then_with(|| a.0.cmp(&b.0)));
    let rest = ranked.split_off(max);
    (ranked, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_value_counts_as_unknown_and_a_long_one_is_cut_on_a_character_boundary() {
        assert_eq!(key_of("", 63), UNKNOWN);
        assert_eq!(key_of("  ", 63), UNKNOWN);
        assert_eq!(key_of("running", 63), "running");
        let long = format!("{}é", "s".repeat(62));
        assert_eq!(key_of(&long, 63), "s".repeat(62));
    }

    #[test]
    fn the_largest_counts_are_kept_ties_by_key_and_the_rest_returned() {
        let (kept, rest) = split_largest([("b", 2), ("a", 2), ("c", 5), ("d", 1)], 2, |n| *n);
        assert_eq!(kept, [("c", 5), ("a", 2)]);
        assert_eq!(rest, [("b", 2), ("d", 1)]);
        let (kept, rest) = split_largest([("a", 1)], 2, |n| *n);
        assert_eq!((kept, rest), (vec![("a", 1)], vec![]));
    }
}
