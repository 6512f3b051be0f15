//! Credentials in URLs of mirrored text (`command`, `entrypoint`, `image`): the user name and
//! password of every URL replaced, whatever else the text holds.

use std::borrow::Cow;

use super::*;

/// `text` with the user name and password of every URL replaced by [`REDACTED_USERINFO`]:
/// `https://user:token@host/repo` and `user:token@registry.example.com/image` alike. A part before
/// `@` counts as credentials when it follows `scheme://`, or when it holds a `:` (`user:password`);
/// so e-mail addresses, `git@host:repo` and image digests (`name@sha256:...`) stay as they are.
pub fn redact_userinfo(text: &str) -> Cow<'_, str> {
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
        if userinfo.is_empty()
            || userinfo.contains('/')
            || (!has_scheme && !userinfo.contains(':'))
            || is_digest(&text[at + 1..])
        {
            continue;
        }
        match ranges.last_mut() {
            // `user:p@ss@host`: the last `@` ends the credentials.
            Some(last) if last.0 == start => last.1 = at,
            _ => ranges.push((start, at)),
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

/// Whether `text` starts with an image digest such as `sha256:` and at least 32 hex digits.
fn is_digest(text: &str) -> bool {
    let Some((algorithm, rest)) = text.split_once(':') else {
        return false;
    };
    let hex = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
    !algorithm.is_empty()
        && algorithm
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
        && hex >= 32
}
