//! Credentials in URLs of mirrored text (`command`, `entrypoint`, `image`): the user name and
//! password of every URL replaced, whatever else the text holds.
//!
//! The text comes from PPIO and may be as long as a response body (16 MiB), so the rule is one pass
//! from left to right that carries what it needs of the text behind it (where the current token
//! starts, where its last `://` ends, where the last `:` and `/` were): its time grows with the
//! text's length alone, whatever the text is made of (a field of `@` characters costs as much as a
//! field of letters).

use std::borrow::Cow;

use super::*;

/// `text` with the user name and password of every URL replaced by [`REDACTED_USERINFO`]:
/// `https://user:token@host/repo` and `user:token@registry.example.com/image` alike. A part before
/// `@` counts as credentials when it follows `scheme://`, or when it holds a `:` (`user:password`);
/// so e-mail addresses, `git@host:repo` and image digests (`name@sha256:...`) stay as they are.
///
/// Precisely: text is split into tokens at whitespace and at ``"'`=(),;<>[]{}|``. For each `@`,
/// the candidate is the part of its token before it, from just after the token's last `://` if it
/// has one (before the `@`), else from the token's start. It is credentials unless it is empty,
/// holds a `/`, holds no `:` without a `://` before it, or the `@` is followed by an image digest
/// (an algorithm such as `sha256`, `:` and at least 32 hex digits). Several `@` whose candidates
/// start at the same place (`user:p@ss@host`) make one redaction up to the last of them.
///
/// Linear in the length of `text`: one pass over its characters, and from each `@` a look ahead for
/// a digest that stops at the next byte that cannot belong to one (an `@` among them), so that the
/// looks of different `@` never overlap.
pub fn redact_userinfo(text: &str) -> Cow<'_, str> {
    // Most text holds no `@`, which one fast search tells.
    if memchr::memchr(b'@', text.as_bytes()).is_none() {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    // Where the current token starts: just after the last delimiter.
    let mut token_start = 0;
    // Just after the last `://` of the current token, if it has one.
    let mut scheme_end: Option<usize> = None;
    // The last `:` and `/` seen: a candidate holds one when it is at or after the candidate's start.
    let mut last_colon: Option<usize> = None;
    let mut last_slash: Option<usize> = None;
    for (at, c) in text.char_indices() {
        match c {
            '@' => {
                let start = scheme_end.unwrap_or(token_start);
                let holds = |last: Option<usize>| last.is_some_and(|i| i >= start);
                if start == at
                    || holds(last_slash)
                    || (scheme_end.is_none() && !holds(last_colon))
                    || is_digest(&bytes[at + 1..])
                {
                    continue;
                }
                match ranges.last_mut() {
                    // `user:p@ss@host`: the last `@` ends the credentials.
                    Some(last) if last.0 == start => last.1 = at,
                    _ => ranges.push((start, at)),
                }
            }
            ':' => {
                last_colon = Some(at);
                if bytes[at + 1..].starts_with(b"//") {
                    scheme_end = Some(at + 3);
                }
            }
            '/' => last_slash = Some(at),
            c if is_delimiter(c) => {
                token_start = at + c.len_utf8();
                scheme_end = None;
            }
            _ => {}
        }
    }
    if ranges.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut redacted = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, end) in ranges {
        redacted.push_str(&text[copied..start]);
        redacted.push_str(REDACTED_USERINFO);
        copied = end;
    }
    redacted.push_str(&text[copied..]);
    Cow::Owned(redacted)
}

/// Whether `c` ends a token: whitespace, quotes and the punctuation that surrounds a URL in a
/// command line or in JSON.
fn is_delimiter(c: char) -> bool {
    if c.is_ascii() {
        // ASCII whitespace as `char::is_whitespace` has it (tab to carriage return, space), and the
        // punctuation.
        matches!(
            c,
            '\t' | '\n'
                | '\u{b}'
                | '\u{c}'
                | '\r'
                | ' '
                | '"'
                | '\''
                | '`'
                | '='
                | '('
                | ')'
                | ','
                | ';'
                | '<'
                | '>'
                | '['
                | ']'
                | '{'
                | '}'
                | '|'
        )
    } else {
        c.is_whitespace()
    }
}

/// Hex digits after the algorithm that make a digest.
const DIGEST_HEX_DIGITS: usize = 32;

/// Whether `text` starts with an image digest such as `sha256:` and at least 32 hex digits. Reads
/// the algorithm's characters (which `@` is not), then at most 32 bytes.
fn is_digest(text: &[u8]) -> bool {
    let algorithm = text
        .iter()
        .take_while(|&&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
        .count();
    algorithm > 0
        && text.get(algorithm) == Some(&b':')
        && text
            .get(algorithm + 1..algorithm + 1 + DIGEST_HEX_DIGITS)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The rule as documented, restated the plain way: for each `@`, look back for its token and
    /// its last `://`, and ahead for a digest. Quadratic, so only for short texts.
    fn restated(text: &str) -> Cow<'_, str> {
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for (at, _) in text.match_indices('@') {
            let before = &text[..at];
            let token_start = before
                .rfind(|c: char| c.is_whitespace() || "\"'`=(),;<>[]{}|".contains(c))
                .map_or(0, |i| {
                    i + before[i..].chars().next().map_or(1, char::len_utf8)
                });
            let token = &text[token_start..at];
            let (has_scheme, start) = match token.rfind("://") {
                Some(i) => (true, token_start + i + 3),
                None => (false, token_start),
            };
            let userinfo = &text[start..at];
            let digest = text[at + 1..]
                .split_once(':')
                .is_some_and(|(algorithm, rest)| {
                    !algorithm.is_empty()
                        && algorithm.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b)
                        })
                        && rest.bytes().take_while(u8::is_ascii_hexdigit).count() >= 32
                });
            if userinfo.is_empty()
                || userinfo.contains('/')
                || (!has_scheme && !userinfo.contains(':'))
                || digest
            {
                continue;
            }
            match ranges.last_mut() {
                Some(last) if last.0 == start => last.1 = at,
                _ => ranges.push((start, at)),
            }
        }
        if ranges.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut redacted = String::new();
        let mut copied = 0;
        for (start, end) in ranges {
            redacted.push_str(&text[copied..start]);
            redacted.push_str(REDACTED_USERINFO);
            copied = end;
        }
        redacted.push_str(&text[copied..]);
        Cow::Owned(redacted)
    }

    /// Texts made of the characters the rule looks at, so that most of them hold URLs, schemes,
    /// credentials, digests and delimiters in every order.
    fn url_soup() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("@".to_owned()),
            Just(":".to_owned()),
            Just("/".to_owned()),
            Just("://".to_owned()),
            Just(" ".to_owned()),
            Just("=".to_owned()),
            Just("\"".to_owned()),
            Just("\u{3000}".to_owned()),
            Just("\u{85}".to_owned()),
            Just("\u{b}".to_owned()),
            "[\t\n\r ()\\[\\]{}<>|;,'`]",
            Just("é".to_owned()),
            Just("sha256:".to_owned()),
            Just("0123456789abcdef".to_owned()),
            Just("user".to_owned()),
            Just("a".to_owned()),
            Just("A".to_owned()),
            "[a-f0-9:@/.+_-]{1,6}",
        ];
        prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn the_one_pass_agrees_with_the_rule_restated(text in url_soup()) {
            prop_assert_eq!(redact_userinfo(&text), restated(&text));
        }
    }

    #[test]
    fn the_examples_of_the_rule_hold() {
        let cases = [
            ("user:p@ss@host x:y@z", "<redacted>@host <redacted>@z"),
            ("https://a@b", "https://<redacted>@b"),
            ("https://@b", "https://@b"),
            ("x://y://u:p@h", "x://y://<redacted>@h"),
            (
                "u:p@sha256:0123456789abcdef0123456789abcdef",
                "u:p@sha256:0123456789abcdef0123456789abcdef",
            ),
            (
                "u:p@sha256:0123456789abcdef0123456789abcde",
                "<redacted>@sha256:0123456789abcdef0123456789abcde",
            ),
            ("a/b:c@d", "a/b:c@d"),
            ("(u:p@h)", "(<redacted>@h)"),
            ("\u{3000}u:p@h", "\u{3000}<redacted>@h"),
        ];
        for (raw, want) in cases {
            assert_eq!(redact_userinfo(raw), want, "{raw:?}");
            assert_eq!(restated(raw), want, "{raw:?}");
        }
    }
}
