//! The PPIO API key as a value that cannot leak: it is checked once when read (so it can always be
//! sent as an HTTP header), and prints as `ApiKey(<redacted>)` in logs, errors and debug output.
//!
//! This module only holds the key; it does not read it from anywhere. What counts as an echo of the
//! key in other text is decided in [`super::redaction`].

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use super::redaction::KeyEchoes;

/// Longest key accepted, in bytes. Real keys are far shorter; the bound stops a Secret that holds a
/// whole file from being sent as a header.
const MAX_API_KEY_BYTES: usize = 4096;

/// A PPIO API key, valid as the token of an `Authorization: Bearer` header.
///
/// `Debug` and `Display` never show the key, and there is deliberately no `Serialize`, so the key
/// cannot end up in a status, an event or a log line by accident.
#[derive(Clone)]
pub struct ApiKey {
    key: String,
    /// The key's forms prepared for finding echoes, built once per key; shared by clones.
    echoes: Arc<KeyEchoes>,
}

impl ApiKey {
    /// Checks and wraps a raw key, as read from a Kubernetes Secret.
    ///
    /// Surrounding whitespace is trimmed (Secrets created with `echo` end in a newline). The key must
    /// then be non-empty, at most 4096 bytes, and made only of visible ASCII characters, as an HTTP
    /// header value requires.
    pub fn new(raw: impl Into<String>) -> Result<ApiKey, InvalidApiKey> {
        let raw = raw.into();
        let key = raw.trim();
        if key.is_empty() {
            return Err(InvalidApiKey::Empty);
        }
        if key.len() > MAX_API_KEY_BYTES {
            return Err(InvalidApiKey::TooLong {
                max_bytes: MAX_API_KEY_BYTES,
            });
        }
        if let Some(position) = key.chars().position(char::is_whitespace) {
            return Err(InvalidApiKey::ContainsWhitespace {
                position: position + 1,
            });
        }
        if let Some(position) = key.chars().position(|c| !c.is_ascii_graphic()) {
            return Err(InvalidApiKey::InvalidCharacter {
                position: position + 1,
            });
        }
        Ok(ApiKey {
            key: key.to_owned(),
            echoes: Arc::new(KeyEchoes::new(key)),
        })
    }

    /// `text` with every echo of the key replaced by `[redacted]`, and nothing else changed;
    /// borrowed when there was none. An echo is any run of 8 or more characters of the key, plain,
    /// quoted, base64- or percent-encoded: the rule and why are in `ppio/src/redaction.rs`. Call it
    /// on server text before cutting, quoting or formatting it.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        self.echoes.redact(text)
    }

    /// Whether `text` holds any echo of the key, as [`ApiKey::redact`] would find it: a last check
    /// before text from outside is shown anywhere.
    pub fn appears_in(&self, text: &str) -> bool {
        self.echoes.appear_in(text)
    }

    /// The key hashed by `state`: an identity for keeping things per key (its request budget, its
    /// product list) without holding the key. Use a [`std::hash::BuildHasher`] seeded per process,
    /// such as [`std::collections::hash_map::RandomState`], so that the number says nothing of the
    /// key outside the process.
    pub fn hash_with(&self, state: &impl std::hash::BuildHasher) -> u64 {
        state.hash_one(&self.key)
    }

    /// The key itself, for the `Authorization` header. Kept inside the crate's PPIO client so no
    /// other code can print it.
    pub(crate) fn expose(&self) -> &str {
        &self.key
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Why a raw value cannot be used as a PPIO API key. The messages never contain the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidApiKey {
    /// Nothing but whitespace.
    #[error("the PPIO API key is empty: put the key from the PPIO console into the Secret")]
    Empty,
    /// Longer than any real key.
    #[error(
        "the PPIO API key is longer than {max_bytes} bytes: the Secret should hold only the key, \
         not a file"
    )]
    TooLong {
        /// The limit that was exceeded.
        max_bytes: usize,
    },
    /// Whitespace inside the key, typically a `Bearer ` prefix copied along with it.
    #[error(
        "the PPIO API key contains whitespace at character {position}: store only the key, \
         without a `Bearer ` prefix or other text"
    )]
    ContainsWhitespace {
        /// 1-based character position of the first whitespace.
        position: usize,
    },
    /// A control character or a non-ASCII character, which an HTTP header cannot carry.
    #[error(
        "the PPIO API key contains a control or non-ASCII character at character {position}: \
         store the key exactly as the PPIO console shows it"
    )]
    InvalidCharacter {
        /// 1-based character position of the first invalid character.
        position: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_the_trailing_newline_a_secret_often_has() {
        let key = ApiKey::new("  sk_live_abc123\r\n").expect("valid key");
        assert_eq!(key.expose(), "sk_live_abc123");
    }

    #[test]
    fn rejects_an_empty_or_blank_key() {
        assert_eq!(ApiKey::new("").unwrap_err(), InvalidApiKey::Empty);
        assert_eq!(ApiKey::new(" \n\t").unwrap_err(), InvalidApiKey::Empty);
    }

    #[test]
    fn rejects_a_bearer_prefix_copied_with_the_key() {
        assert_eq!(
            ApiKey::new("Bearer sk_abc").unwrap_err(),
            InvalidApiKey::ContainsWhitespace { position: 7 }
        );
    }

    #[test]
    fn rejects_characters_an_http_header_cannot_carry() {
        assert_eq!(
            ApiKey::new("sk\u{7}abc").unwrap_err(),
            InvalidApiKey::InvalidCharacter { position: 3 }
        );
        assert_eq!(
            ApiKey::new("sk_é").unwrap_err(),
            InvalidApiKey::InvalidCharacter { position: 4 }
        );
        assert_eq!(
            ApiKey::new("sk\u{7f}").unwrap_err(),
            InvalidApiKey::InvalidCharacter { position: 3 }
        );
    }

    #[test]
    fn rejects_a_key_longer_than_any_real_one() {
        let error = ApiKey::new("k".repeat(MAX_API_KEY_BYTES + 1)).unwrap_err();
        assert_eq!(error, InvalidApiKey::TooLong { max_bytes: 4096 });
        assert!(ApiKey::new("k".repeat(MAX_API_KEY_BYTES)).is_ok());
    }

    #[test]
    fn appears_in_finds_the_key_plain_or_url_encoded() {
        let key = ApiKey::new("a+b/c=").expect("valid key");
        assert!(key.appears_in("token a+b/c= sent"));
        assert!(key.appears_in("q=a%2Bb%2Fc%3D"));
        assert!(!key.appears_in("a+b/c"));
        let plain = ApiKey::new("sk_abc123").expect("valid key");
        assert!(!plain.appears_in("sk_abc1 and sk_abc1"));
        assert!(plain.appears_in("sk_abc12"));
    }

    #[test]
    fn redact_replaces_fragments_of_the_key_and_borrows_clean_text() {
        let key = ApiKey::new("sk_live_0123456789abcdefghij").expect("valid key");
        assert_eq!(
            key.redact("echo: sk_live_0123456 (cut)"),
            "echo: [redacted] (cut)"
        );
        assert!(matches!(key.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn debug_and_display_never_show_the_key() {
        let key = ApiKey::new("sk_secret_value").expect("valid key");
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
        assert_eq!(format!("{key}"), "ApiKey(<redacted>)");
        assert_eq!(
            format!("{:?}", Some(key.clone())),
            "Some(ApiKey(<redacted>))"
        );
    }

    #[test]
    fn invalid_key_messages_never_contain_the_key() {
        for raw in [
            "Bearer sk_secret_value",
            "sk_secret_value\u{1}",
            "sk_secret_valueé",
        ] {
            let error = ApiKey::new(raw).unwrap_err();
            let shown = format!("{error} {error:?}");
            assert!(!shown.contains("sk_secret_value"), "{shown}");
        }
    }
}
