//! What counts as an echo of the PPIO API key in text that came from outside, and its replacement
//! by `[redacted]`. The one rule every path from server text to a status, an Event, a log line, an
//! error or a mirrored record goes through (by way of [`super::ApiKey::redact`]).
//!
//! # The rule
//!
//! An echo is any run of [`MIN_ECHO_CHARS`] (8) or more consecutive characters of one of the key's
//! forms:
//! - the key itself, case-sensitive;
//! - the key with `"` and `\` backslash-escaped, as JSON and Rust's `{:?}` quote it;
//! - its base64, in the standard (`+/`) and the URL-safe (`-_`) alphabet, at each of the three byte
//!   alignments the key can have inside a longer encoded text (`Bearer <key>`, `user:<key>`):
//!   the characters that depend on the key's bytes alone, then the tail (with or without `=`
//!   padding) the key gives when it ends the encoded text.
//!
//! Each of these is also found percent-encoded, with any mix of encoded and plain characters and
//! either case of hex digits: text is read a second time with every `%XX` decoded, and a run found
//! there redacts the characters it was decoded from.
//!
//! A key shorter than 8 characters has no such runs; it is matched whole, plain, escaped or
//! percent-encoded.
//!
//! # Why runs of 8
//!
//! Server text is cut and quoted on its way out (error bodies keep 200 characters, messages 300,
//! Event notes 1 KiB, decode errors quote the offending value). Redaction comes before all of
//! that, but matching the whole key alone would still miss a key a proxy has already cut, and a key
//! cut later by anything that forgets the order. Every piece a cut can leave is either 8 characters
//! or more, which this rule removes, or shorter, which it deliberately leaves: 7 random characters
//! of a 40-character key are no help in guessing it, while matching shorter runs would start to
//! redact ordinary words. Text from which every run is gone has none in any of its cuts or
//! quotations either, so whatever is done to it afterwards cannot bring a fragment back.
//!
//! Overlapping or adjacent echoes become one `[redacted]`. The rule cannot promise that text
//! around a `[redacted]` never forms a run with it when the key itself contains `[`, `]` or
//! `redacted`; real keys do not.
//!
//! Matching reads 8 bytes at a time against a set of every 8-byte window of every form (behind a bit
//! filter that most windows of other text miss), so its cost grows with the text, not with the key.

use std::borrow::Cow;
use std::ops::Range;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use rustc_hash::FxHashSet;

/// Shortest run of the key's characters treated as the key.
pub const MIN_ECHO_CHARS: usize = 8;

/// What replaces every echo of the key.
pub const REDACTED: &str = "[redacted]";

/// The forms of one key, prepared for matching.
pub(crate) struct KeyEchoes {
    /// Every window of [`MIN_ECHO_CHARS`] bytes of every form, as a big-endian `u64`.
    runs: FxHashSet<u64>,
    /// One bit per [`filter_slot`] of the windows in `runs`: most windows of ordinary text miss it,
    /// and cost a multiplication rather than a set lookup.
    filter: Box<[u64]>,
    /// Forms shorter than [`MIN_ECHO_CHARS`], matched whole: packed like `runs`, with their length.
    whole: Vec<(u64, usize)>,
}

impl KeyEchoes {
    /// Prepares the forms of `key`, which must be ASCII (as [`super::ApiKey::new`] ensures).
    pub(crate) fn new(key: &str) -> KeyEchoes {
        let key = key.as_bytes();
        let escaped = escaped(key);
        let mut runs = FxHashSet::default();
        let mut whole = Vec::new();
        for form in [key, escaped.as_slice()] {
            if form.len() < MIN_ECHO_CHARS {
                if !form.is_empty() {
                    whole.push((pack(form), form.len()));
                }
            } else {
                runs.extend(form.windows(MIN_ECHO_CHARS).map(pack));
            }
        }
        // The escaped form equals the key when the key has nothing to escape.
        whole.dedup();
        for form in base64_forms(key) {
            runs.extend(form.as_bytes().windows(MIN_ECHO_CHARS).map(pack));
        }
        let mut filter = vec![0u64; FILTER_BITS / 64].into_boxed_slice();
        for &run in &runs {
            let slot = filter_slot(run);
            filter[slot / 64] |= 1 << (slot % 64);
        }
        KeyEchoes {
            runs,
            filter,
            whole,
        }
    }

    /// `text` with every echo replaced by [`REDACTED`]; borrowed when there was none.
    pub(crate) fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let echoes = self.echoes(text.as_bytes());
        if echoes.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut redacted = String::with_capacity(text.len());
        let mut kept_from = 0;
        for echo in echoes {
            // Echoes start and end next to ASCII bytes (every form is ASCII): char boundaries.
            redacted.push_str(&text[kept_from..echo.start]);
            redacted.push_str(REDACTED);
            kept_from = echo.end;
        }
        redacted.push_str(&text[kept_from..]);
        Cow::Owned(redacted)
    }

    /// Whether `text` holds any echo.
    pub(crate) fn appear_in(&self, text: &str) -> bool {
        !self.echoes(text.as_bytes()).is_empty()
    }

    /// The byte ranges of `text` that are echoes, sorted, overlapping and adjacent ones merged.
    fn echoes(&self, text: &[u8]) -> Vec<Range<usize>> {
        let mut found = Vec::new();
        self.scan(
            text.iter()
                .enumerate()
                .map(|(at, &byte)| (byte, at..at + 1)),
            &mut found,
        );
        if text.contains(&b'%') {
            let mut decoded = Vec::new();
            self.scan(PercentDecoded { text, at: 0 }, &mut decoded);
            if !decoded.is_empty() {
                found.extend(decoded);
                found.sort_by_key(|range| range.start);
                found = found.into_iter().fold(Vec::new(), |mut merged, range| {
                    push_merged(&mut merged, range);
                    merged
                });
            }
        }
        found
    }

    /// Finds the echoes in a stream of bytes, each with the range of the text it was read from.
    fn scan(&self, units: impl Iterator<Item = (u8, Range<usize>)>, found: &mut Vec<Range<usize>>) {
        // The last 8 bytes, oldest in the high byte, and where each of them started.
        let mut window: u64 = 0;
        let mut starts = [0usize; MIN_ECHO_CHARS];
        let mut seen: usize = 0;
        for (byte, span) in units {
            window = (window << 8) | u64::from(byte);
            starts[seen % MIN_ECHO_CHARS] = span.start;
            seen += 1;
            let slot = filter_slot(window);
            let longest = if seen >= MIN_ECHO_CHARS
                && self.filter[slot / 64] & (1 << (slot % 64)) != 0
                && self.runs.contains(&window)
            {
                MIN_ECHO_CHARS
            } else {
                self.whole
                    .iter()
                    .filter(|&&(form, len)| seen >= len && window & low_bytes(len) == form)
                    .map(|&(_, len)| len)
                    .max()
                    .unwrap_or(0)
            };
            if longest > 0 {
                push_merged(found, starts[(seen - longest) % MIN_ECHO_CHARS]..span.end);
            }
        }
    }
}

/// Bits of [`KeyEchoes`]'s filter: with the few hundred windows of a key's forms, about one window
/// of other text in a hundred passes it.
const FILTER_BITS: usize = 1 << 16;

/// Where `window` falls in the filter: the top 16 bits of a multiplicative hash.
fn filter_slot(window: u64) -> usize {
    (window.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48) as usize
}

/// Appends `range`, or extends the last range when they overlap or touch.
fn push_merged(ranges: &mut Vec<Range<usize>>, range: Range<usize>) {
    match ranges.last_mut() {
        Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
        _ => ranges.push(range),
    }
}

/// Up to 8 bytes as a big-endian number, as the scan's window holds them.
fn pack(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0, |packed, &byte| (packed << 8) | u64::from(byte))
}

/// A mask of the low `len` bytes of a `u64` (`len` below 8).
fn low_bytes(len: usize) -> u64 {
    (1u64 << (8 * len)) - 1
}

/// The key with `"` and `\` backslash-escaped.
fn escaped(key: &[u8]) -> Vec<u8> {
    let mut escaped = Vec::with_capacity(key.len());
    for &byte in key {
        if matches!(byte, b'"' | b'\\') {
            escaped.push(b'\\');
        }
        escaped.push(byte);
    }
    escaped
}

/// The key's base64 forms: for each alphabet and each alignment, the encoding of the key after 0, 1
/// or 2 other bytes, without the leading characters those bytes influence, with `=` padding.
/// Without padding the same text simply ends earlier, so its runs are among these.
fn base64_forms(key: &[u8]) -> Vec<String> {
    let mut forms = Vec::new();
    for engine in [&STANDARD, &URL_SAFE] {
        for alignment in 0..3usize {
            let mut data = vec![0u8; alignment];
            data.extend_from_slice(key);
            let encoded = engine.encode(&data);
            // Each character carries 6 bits; those overlapping the 8 bits of a leading byte go.
            let influenced = (8 * alignment).div_ceil(6);
            forms.push(encoded[influenced..].to_owned());
        }
    }
    forms
}

/// Text read with every `%XX` (either case of hex) decoded to its byte; each byte comes with the
/// range of the text it was read from.
struct PercentDecoded<'t> {
    text: &'t [u8],
    at: usize,
}

impl Iterator for PercentDecoded<'_> {
    type Item = (u8, Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.at;
        let byte = *self.text.get(start)?;
        if byte == b'%'
            && let (Some(high), Some(low)) = (
                self.text.get(start + 1).and_then(|&b| hex_value(b)),
                self.text.get(start + 2).and_then(|&b| hex_value(b)),
            )
        {
            self.at = start + 3;
            return Some(((high << 4) | low, start..self.at));
        }
        self.at = start + 1;
        Some((byte, start..self.at))
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk_live_Q3x9+Zb/7mR2=kLp0wT4vY8n";

    fn redact(key: &str, text: &str) -> String {
        KeyEchoes::new(key).redact(text).into_owned()
    }

    #[test]
    fn the_whole_key_and_every_run_of_eight_of_it_are_redacted() {
        assert_eq!(redact(KEY, &format!("a {KEY} b")), "a [redacted] b");
        assert_eq!(redact(KEY, "cut: sk_live_Q3x9"), "cut: [redacted]");
        assert_eq!(redact(KEY, "tail:kLp0wT4vY8n."), "tail:[redacted].");
        assert_eq!(redact(KEY, "mid Zb/7mR2=k end"), "mid [redacted] end");
    }

    #[test]
    fn a_run_of_seven_is_left_alone() {
        assert_eq!(redact(KEY, "sk_live and Q3x9+Zb"), "sk_live and Q3x9+Zb");
        assert_eq!(redact(KEY, ""), "");
    }

    #[test]
    fn overlapping_and_adjacent_echoes_become_one_marker() {
        let doubled = format!("{KEY}{KEY}");
        assert_eq!(redact(KEY, &doubled), "[redacted]");
        assert_eq!(redact(KEY, "sk_live_Q3x9+Zb/7mR2"), "[redacted]");
        assert_eq!(
            redact(KEY, &format!("{KEY} {KEY}")),
            "[redacted] [redacted]"
        );
    }

    #[test]
    fn percent_encoded_echoes_are_redacted_in_either_case_and_any_mix() {
        let upper = "sk_live_Q3x9%2BZb%2F7mR2%3DkLp0wT4vY8n";
        assert_eq!(redact(KEY, &format!("?k={upper}&x=1")), "?k=[redacted]&x=1");
        let lower = upper.replace("%2B", "%2b").replace("%2F", "%2f");
        assert_eq!(redact(KEY, &format!("?k={lower}")), "?k=[redacted]");
        let everything: String = KEY.bytes().map(|b| format!("%{b:02x}")).collect();
        assert_eq!(redact(KEY, &format!("[{everything}]")), "[[redacted]]");
        assert_eq!(redact(KEY, "%2BZb%2F7mR2"), "[redacted]");
        assert_eq!(redact(KEY, "%2BZb%2F7mR"), "%2BZb%2F7mR");
        assert_eq!(redact(KEY, "100% of %zz"), "100% of %zz");
    }

    #[test]
    fn base64_echoes_are_redacted_at_every_alignment_and_in_both_alphabets() {
        for prefix in ["", "B", "Be", "Bearer ", "user:"] {
            let data = format!("{prefix}{KEY}");
            for engine in [&STANDARD, &URL_SAFE] {
                let encoded = engine.encode(data.as_bytes());
                let shown = redact(KEY, &format!("Authorization: Basic {encoded} sent"));
                // At most the characters influenced by the prefix remain.
                let kept = shown
                    .strip_prefix("Authorization: Basic ")
                    .and_then(|rest| rest.strip_suffix("[redacted] sent"))
                    .unwrap_or_else(|| panic!("{prefix:?}: {shown}"));
                assert!(
                    kept.len() <= prefix.len() * 4 / 3 + 2,
                    "{prefix:?}: {shown}"
                );
                let unpadded = encoded.trim_end_matches('=');
                assert!(!redact(KEY, unpadded).contains(&unpadded[kept.len()..]));
            }
        }
        let cut = &STANDARD.encode(KEY)[10..18];
        assert_eq!(redact(KEY, cut), "[redacted]");
    }

    #[test]
    fn quoted_forms_are_redacted() {
        let key = r#"sk_"quoted"\slash_0123"#;
        let debug = format!("{key:?}");
        assert_eq!(redact(key, &debug), "\"[redacted]\"");
        let json = serde_json::to_string(key).expect("JSON");
        assert_eq!(redact(key, &json), "\"[redacted]\"");
    }

    #[test]
    fn a_short_key_is_matched_whole() {
        assert_eq!(
            redact("a+b/c=", "q=a%2Bb%2Fc%3D&k=a+b/c="),
            "q=[redacted]&k=[redacted]"
        );
        assert_eq!(redact("a+b/c=", "a+b/c"), "a+b/c");
        assert_eq!(redact("x", "xx y"), "[redacted] y");
    }

    #[test]
    fn non_ascii_text_around_an_echo_is_kept_intact() {
        let text = format!("é€{KEY}😀%C3%A9{}", &KEY[..9]);
        assert_eq!(redact(KEY, &text), "é€[redacted]😀%C3%A9[redacted]");
    }

    #[test]
    fn appear_in_agrees_with_redact() {
        let echoes = KeyEchoes::new(KEY);
        for text in ["nothing", "sk_live_Q3x9", "sk_live", "%2BZb%2F7mR"] {
            assert_eq!(
                echoes.appear_in(text),
                echoes.redact(text) != text,
                "{text}"
            );
        }
    }
}
