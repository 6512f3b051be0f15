//! Everything that can go wrong talking to the PPIO API, as one error enum, plus the helpers that
//! turn a server's answer into that error safely: error-body parsing, `Retry-After` parsing, and the
//! sanitizing of every server-provided string (control characters stripped, any echo of the API key
//! replaced by `[redacted]`, then the length capped: never cut before redacting).

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use super::api_key::ApiKey;

/// Longest `Retry-After` honoured; a server asking for more is waited on for this long, then asked
/// again.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10 * 60);

/// Longest server-provided string kept in an error, in characters.
const MAX_SERVER_TEXT_CHARS: usize = 300;

/// How much of a non-JSON error body is kept, in characters.
const MAX_RAW_BODY_CHARS: usize = 200;

/// A failed call to the PPIO API. Every message says what happened and what to do; none contains the
/// API key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PpioError {
    /// HTTP 401: the key is wrong, revoked or expired.
    #[error("PPIO rejected the API key (HTTP 401): it is wrong, revoked or expired")]
    Unauthorized,
    /// HTTP 403: the key is valid but may not list instances.
    #[error("PPIO refused access (HTTP 403): the API key is valid but may not list GPU instances")]
    Forbidden,
    /// HTTP 429: too many requests for this account.
    #[error(
        "PPIO rate limit exceeded (HTTP 429){}",
        retry_hint(.retry_after)
    )]
    RateLimited {
        /// How long the server asked to wait, capped at [`MAX_RETRY_AFTER`].
        retry_after: Option<Duration>,
    },
    /// Another 4xx: the request itself was refused (a bad filter, an unknown resource...).
    /// PPIO sends `RESOURCE_NOT_FOUND` and `VALIDATOR_PARAM` as 400.
    #[error(
        "PPIO rejected the request (HTTP {status}{}){}",
        code.as_deref().map(|c| format!(", {c}")).unwrap_or_default(),
        with_colon(message)
    )]
    Rejected {
        /// HTTP status code.
        status: u16,
        /// The server's error code name, e.g. `VALIDATOR_PARAM`, when it sent one.
        code: Option<String>,
        /// The server's message, sanitized; may be empty.
        message: String,
    },
    /// HTTP 5xx: PPIO failed.
    #[error("PPIO API failed (HTTP {status}){}", with_colon(message))]
    ServerError {
        /// HTTP status code.
        status: u16,
        /// The server's message, sanitized; may be empty.
        message: String,
    },
    /// No complete answer within the configured timeouts.
    #[error(
        "PPIO API did not answer in time; if it persists, check network egress to the endpoint"
    )]
    Timeout,
    /// The connection could not be made or broke.
    #[error(
        "cannot reach the PPIO API ({detail}): check the endpoint URL, DNS, proxies and network \
         policies for egress"
    )]
    Unreachable {
        /// What failed, from the HTTP stack, sanitized.
        detail: String,
    },
    /// The answer was not a valid list response, or paging went wrong; the listing is incomplete.
    #[error(
        "invalid response from the PPIO API: {detail}; the listing is incomplete (if it persists, \
         check that the endpoint serves the PPIO GPU API v2)"
    )]
    InvalidResponse {
        /// What was wrong, sanitized.
        detail: String,
    },
    /// The client cannot be built from its configuration (bad endpoint URL, zero timeout...).
    #[error("invalid PPIO client configuration: {detail}")]
    InvalidConfig {
        /// What is wrong with the configuration.
        detail: String,
    },
}

/// What kind of failure a [`PpioError`] is: what callers decide on. The client reports what
/// happened; what a user should do about it is the caller's to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The key was refused (401, 403).
    AuthFailed,
    /// Too many requests (429).
    RateLimited,
    /// PPIO failed, did not answer in time or could not be reached.
    Unavailable,
    /// The answer was malformed or inconsistent: the listing is incomplete.
    InvalidResponse,
    /// The request was refused (another 4xx).
    Rejected,
    /// The client cannot be built from its configuration.
    InvalidConfig,
}

impl ErrorKind {
    /// A CamelCase label, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::AuthFailed => "AuthFailed",
            ErrorKind::RateLimited => "RateLimited",
            ErrorKind::Unavailable => "ApiUnavailable",
            ErrorKind::InvalidResponse => "InvalidResponse",
            ErrorKind::Rejected => "RequestRejected",
            ErrorKind::InvalidConfig => "InvalidConfig",
        }
    }
}

impl PpioError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PpioError::Unauthorized | PpioError::Forbidden => ErrorKind::AuthFailed,
            PpioError::RateLimited { .. } => ErrorKind::RateLimited,
            PpioError::ServerError { .. } | PpioError::Timeout | PpioError::Unreachable { .. } => {
                ErrorKind::Unavailable
            }
            PpioError::InvalidResponse { .. } => ErrorKind::InvalidResponse,
            PpioError::Rejected { .. } => ErrorKind::Rejected,
            PpioError::InvalidConfig { .. } => ErrorKind::InvalidConfig,
        }
    }

    /// How long the server asked the caller to wait before retrying, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PpioError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status code the server answered with, when the error is one.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            PpioError::Unauthorized => Some(401),
            PpioError::Forbidden => Some(403),
            PpioError::RateLimited { .. } => Some(429),
            PpioError::Rejected { status, .. } | PpioError::ServerError { status, .. } => {
                Some(*status)
            }
            PpioError::Timeout
            | PpioError::Unreachable { .. }
            | PpioError::InvalidResponse { .. }
            | PpioError::InvalidConfig { .. } => None,
        }
    }

    /// Whether retrying the same request later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PpioError::RateLimited { .. }
                | PpioError::ServerError { .. }
                | PpioError::Timeout
                | PpioError::Unreachable { .. }
        )
    }
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    retry_after
        .map(|wait| format!(", asked to wait {}s", wait.as_secs()))
        .unwrap_or_default()
}

fn with_colon(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// What a server said in an error body, sanitized.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServerMessage {
    /// A code name such as `RATE_LIMIT_EXCEEDED`.
    pub(crate) code: Option<String>,
    /// Human-readable text.
    pub(crate) message: Option<String>,
}

impl fmt::Display for ServerMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, &self.message) {
            (Some(code), Some(message)) => write!(f, "{code}: {message}"),
            (Some(text), None) | (None, Some(text)) => f.write_str(text),
            (None, None) => Ok(()),
        }
    }
}

/// Reads an undocumented error body: the message from `message`, `error` (a string, or an object
/// with `message`) or `reason`; the code name from `reason`, `code` or inside `error`. Anything else
/// (HTML from a proxy, plain text) keeps its first 200 characters, counted after redaction.
pub(crate) fn parse_error_body(body: &[u8], key: &ApiKey) -> ServerMessage {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let (code, message) = match &parsed {
        Some(Value::Object(fields)) => code_and_message(fields),
        Some(Value::String(text)) => (None, Some(text.as_str())),
        _ => (None, None),
    };
    let message = match (code, message) {
        // The whole body is redacted, then cut: a cut first could split the key and hide it.
        (None, None) => sanitize_within(&String::from_utf8_lossy(body), key, MAX_RAW_BODY_CHARS),
        (_, message) => message.map_or_else(String::new, |m| sanitize(m, key)),
    };
    ServerMessage {
        code: code.map(|code| sanitize(code, key)),
        message: Some(message).filter(|m| !m.is_empty()),
    }
}

/// Most bytes of a 200 body that is not a page which are looked at for an error message: gateways
/// send short error objects, and a body of any other shape is never read whole a second time.
pub(crate) const MAX_ERROR_PREFIX_BYTES: usize = 4 * 1024;

/// What a 200 body that is not a page says, when it is shaped like an error (an object with no
/// `data` but a `code`, `message`, `error` or `reason`), as some gateways send them.
///
/// Only the first [`MAX_ERROR_PREFIX_BYTES`] of `body` are scanned, field by field: other fields are
/// skipped without being kept, and a body cut off inside them still tells what came before. Only a
/// code name or a message string found whole is quoted, redacted before it is cut (never the raw
/// bytes, which the prefix's end could cut through the key).
pub(crate) fn error_sent_as_page(body: &[u8], key: &ApiKey) -> Option<ServerMessage> {
    let prefix = &body[..body.len().min(MAX_ERROR_PREFIX_BYTES)];
    let mut scan = ErrorScan::default();
    let mut deserializer = serde_json::Deserializer::from_slice(prefix);
    // A prefix cut inside the object ends the scan with an error; what came before it counts.
    let _ = serde::de::DeserializeSeed::deserialize(ErrorFields(&mut scan), &mut deserializer);
    if !scan.object || scan.has_data || scan.fields.is_empty() {
        return None;
    }
    let (code, message) = code_and_message(&scan.fields);
    let said = ServerMessage {
        code: code.map(|code| sanitize(code, key)),
        message: message.map(|m| sanitize(m, key)).filter(|m| !m.is_empty()),
    };
    (said.code.is_some() || said.message.is_some()).then_some(said)
}

/// What [`error_sent_as_page`] found in a prefix.
#[derive(Default)]
struct ErrorScan {
    /// The prefix opens an object.
    object: bool,
    /// The object has a `data` field.
    has_data: bool,
    /// Its `code`, `message`, `error` and `reason` fields, whole (they lie within the prefix).
    fields: serde_json::Map<String, Value>,
}

/// Reads an object's fields into an [`ErrorScan`], skipping the ones it does not need.
struct ErrorFields<'s>(&'s mut ErrorScan);

impl<'de> serde::de::DeserializeSeed<'de> for ErrorFields<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ErrorFields<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::IgnoredAny;
        self.0.object = true;
        while let Some(name) = map.next_key::<String>()? {
            match name.as_str() {
                "data" => {
                    self.0.has_data = true;
                    map.next_value::<IgnoredAny>()?;
                }
                "code" | "message" | "error" | "reason" => {
                    let value = map.next_value::<Value>()?;
                    self.0.fields.insert(name, value);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The code name and message of an error object's fields; see [`parse_error_body`].
fn code_and_message(fields: &serde_json::Map<String, Value>) -> (Option<&str>, Option<&str>) {
    let field = |name: &str| fields.get(name);
    let nested = |name: &str| field("error").and_then(|e| e.get(name));
    let message = [
        field("message"),
        field("error").filter(|e| !is_code_name(e)),
        nested("message"),
        field("reason").filter(|r| !is_code_name(r)),
    ]
    .into_iter()
    .find_map(non_empty_str);
    let code = [
        field("reason"),
        field("code"),
        field("error"),
        nested("reason"),
        nested("code"),
    ]
    .into_iter()
    .flatten()
    .find(|value| is_code_name(value))
    .and_then(Value::as_str);
    (code, message)
}

fn non_empty_str(value: Option<&Value>) -> Option<&str> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// `UNAUTHORIZED`, `RATE_LIMIT_EXCEEDED`...: upper-case letters, digits and underscores.
fn is_code_name(value: &Value) -> bool {
    value.as_str().is_some_and(|s| {
        s.len() <= 64
            && s.starts_with(|c: char| c.is_ascii_uppercase())
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

/// Makes a server-provided string safe to show in a status, an event or a log: whitespace runs
/// become one space, control and bidirectional-override characters go, every echo of the API key
/// becomes `[redacted]` ([`ApiKey::redact`]), and only then is the result cut to 300 characters.
pub(crate) fn sanitize(text: &str, key: &ApiKey) -> String {
    sanitize_within(text, key, MAX_SERVER_TEXT_CHARS)
}

/// [`sanitize`], cut to `max_chars` characters (the last one `…` when cut).
fn sanitize_within(text: &str, key: &ApiKey, max_chars: usize) -> String {
    let cleaned = text
        .split_whitespace()
        .map(|word| {
            word.chars()
                .filter(|&c| !crate::text::is_unwanted(c, false))
                .collect::<String>()
        })
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    // Redact after cleaning, so a key split by control characters is still found, and before
    // cutting, so the cut cannot split it.
    let redacted = key.redact(&cleaned).into_owned();
    if redacted.chars().count() > max_chars {
        let mut cut: String = redacted.chars().take(max_chars.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        redacted
    }
}

/// Replaces every echo of the API key in `text` with `[redacted]` ([`ApiKey::redact`]) and says
/// whether there was any: [`super::Instance::redact`] uses it for every string of a listed record.
/// Unlike [`sanitize`], it changes nothing else, so record fields keep their exact text.
pub(crate) fn redact(text: &mut String, key: &ApiKey) -> bool {
    match key.redact(text) {
        std::borrow::Cow::Owned(redacted) => {
            *text = redacted;
            true
        }
        std::borrow::Cow::Borrowed(_) => false,
    }
}

/// Reads a `Retry-After` value: delta-seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`]. A date
/// in the past means "now" (zero). Anything unreadable is `None`, leaving the caller's own backoff.
pub(crate) fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for u64 is still "a very long time".
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    }
    let date = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let wait = now.duration_until(date);
    if wait.is_negative() {
        return Some(Duration::ZERO);
    }
    Some(Duration::try_from(wait).map_or(MAX_RETRY_AFTER, |wait| wait.min(MAX_RETRY_AFTER)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "sk_live_7f9a2b";

    fn key() -> ApiKey {
        ApiKey::new(SECRET).expect("valid key")
    }

    fn parsed(body: &str) -> ServerMessage {
        parse_error_body(body.as_bytes(), &key())
    }

    fn msg(code: Option<&str>, message: Option<&str>) -> ServerMessage {
        ServerMessage {
            code: code.map(str::to_owned),
            message: message.map(str::to_owned),
        }
    }

    #[test]
    fn reads_the_message_field_of_a_v2_error() {
        assert_eq!(
            parsed(r#"{"message": "invalid cursor"}"#),
            msg(None, Some("invalid cursor"))
        );
    }

    #[test]
    fn reads_an_error_string_or_an_error_object() {
        assert_eq!(
            parsed(r#"{"error": "token expired"}"#),
            msg(None, Some("token expired"))
        );
        assert_eq!(
            parsed(r#"{"error": {"code": "FORBIDDEN", "message": "no access to GPU"}}"#),
            msg(Some("FORBIDDEN"), Some("no access to GPU"))
        );
        assert_eq!(
            parsed(r#"{"error": "UNAUTHORIZED"}"#),
            msg(Some("UNAUTHORIZED"), None)
        );
    }

    #[test]
    fn reads_a_reason_as_code_name_or_as_message() {
        assert_eq!(
            parsed(r#"{"code": 429, "reason": "RATE_LIMIT_EXCEEDED", "message": "slow down"}"#),
            msg(Some("RATE_LIMIT_EXCEEDED"), Some("slow down"))
        );
        assert_eq!(
            parsed(r#"{"reason": "instance not found"}"#),
            msg(None, Some("instance not found"))
        );
        assert_eq!(
            parsed(r#"{"code": "VALIDATOR_PARAM", "message": "limit must be >= 0"}"#),
            msg(Some("VALIDATOR_PARAM"), Some("limit must be >= 0"))
        );
    }

    #[test]
    fn keeps_the_start_of_a_non_json_body() {
        let html = format!(
            "<html><body>502 Bad Gateway {}</body></html>",
            "x".repeat(400)
        );
        let message = parsed(&html).message.expect("some text");
        assert!(message.starts_with("<html><body>502 Bad Gateway"));
        assert_eq!(message.chars().count(), MAX_RAW_BODY_CHARS);
        assert_eq!(parsed("  \n"), msg(None, None));
        assert_eq!(
            parsed(r#"{"unexpected": 1}"#),
            msg(None, Some(r#"{"unexpected": 1}"#))
        );
    }

    #[test]
    fn redacts_the_api_key_echoed_in_a_server_message() {
        let parsed = parsed(&format!(
            r#"{{"message": "key {SECRET} is invalid; header was Bearer {SECRET}"}}"#
        ));
        assert_eq!(
            parsed.message.as_deref(),
            Some("key [redacted] is invalid; header was Bearer [redacted]")
        );
        let raw = parse_error_body(format!("bad key {SECRET}").as_bytes(), &key());
        assert_eq!(raw.message.as_deref(), Some("bad key [redacted]"));
    }

    /// Every run of 8 characters of `key` that occurs in `text`.
    fn fragments_of(key: &str, text: &str) -> Vec<String> {
        key.as_bytes()
            .windows(8)
            .map(|run| String::from_utf8_lossy(run).into_owned())
            .filter(|run| text.contains(run.as_str()))
            .collect()
    }

    #[test]
    fn a_key_across_the_200_character_cut_of_a_raw_body_leaves_no_fragment() {
        let secret = "sk_live_4f9c2a7e1b3d5f7a9c0e2b4d6f8a1c3e5b"; // 42 characters
        let key = ApiKey::new(secret).expect("valid key");
        for offset in 150..210 {
            let body = format!(
                "{}{secret}{}",
                "<p>proxy said:"
                    .repeat(20)
                    .chars()
                    .take(offset)
                    .collect::<String>(),
                " more".repeat(40)
            );
            let message = parse_error_body(body.as_bytes(), &key)
                .message
                .expect("some text");
            assert_eq!(
                fragments_of(secret, &message),
                Vec::<String>::new(),
                "{message}"
            );
        }
    }

    #[test]
    fn redacts_a_key_hidden_behind_control_characters_or_url_encoding() {
        let spliced = "sk_live_\u{0}7f9a\u{1b}2b";
        assert_eq!(sanitize(spliced, &key()), "[redacted]");
        let odd_key = ApiKey::new("a+b/c=").expect("valid key");
        assert_eq!(sanitize("q=a%2Bb%2Fc%3D", &odd_key), "q=[redacted]");
    }

    #[test]
    fn redacting_replaces_only_the_key_and_keeps_everything_else() {
        let mut text = format!("  run --token={SECRET}\n\tthen {SECRET}  ");
        assert!(redact(&mut text, &key()));
        assert_eq!(text, "  run --token=[redacted]\n\tthen [redacted]  ");
        let mut clean = "nothing\tsecret here".to_owned();
        assert!(!redact(&mut clean, &key()));
        assert_eq!(clean, "nothing\tsecret here");
        let odd_key = ApiKey::new("a+b/c=").expect("valid key");
        let mut encoded = "q=a%2Bb%2Fc%3D&k=a+b/c=".to_owned();
        assert!(redact(&mut encoded, &odd_key));
        assert_eq!(encoded, "q=[redacted]&k=[redacted]");
    }

    #[test]
    fn sanitizing_strips_control_characters_and_caps_length() {
        assert_eq!(
            sanitize("line one\r\n\tline\u{7} two\u{202e}", &key()),
            "line one line two"
        );
        let long = sanitize(&"é".repeat(1000), &key());
        assert_eq!(long.chars().count(), MAX_SERVER_TEXT_CHARS);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn retry_after_reads_delta_seconds() {
        let now = Timestamp::UNIX_EPOCH;
        assert_eq!(parse_retry_after("30", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_reads_an_http_date() {
        let now: Timestamp = "2015-10-21T07:27:00Z".parse().expect("timestamp");
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means retry now"
        );
        assert_eq!(
            parse_retry_after("Thu, 22 Oct 2015 07:28:00 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_ignores_garbage() {
        let now = Timestamp::UNIX_EPOCH;
        for garbage in ["", "soon", "-5", "1.5", "30s", "Wed, 99 Oct 2015"] {
            assert_eq!(parse_retry_after(garbage, now), None, "{garbage:?}");
        }
    }

    #[test]
    fn retry_after_caps_huge_values_at_ten_minutes() {
        let now = Timestamp::UNIX_EPOCH;
        assert_eq!(parse_retry_after("601", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("99999999999999999999999999", now),
            Some(Duration::from_secs(600))
        );
    }

    #[test]
    fn reasons_and_transience_follow_the_condition_contract() {
        let cases = [
            (PpioError::Unauthorized, "AuthFailed", false, Some(401)),
            (PpioError::Forbidden, "AuthFailed", false, Some(403)),
            (
                PpioError::RateLimited { retry_after: None },
                "RateLimited",
                true,
                Some(429),
            ),
            (
                PpioError::Rejected {
                    status: 400,
                    code: Some("RESOURCE_NOT_FOUND".into()),
                    message: String::new(),
                },
                "RequestRejected",
                false,
                Some(400),
            ),
            (
                PpioError::ServerError {
                    status: 503,
                    message: String::new(),
                },
                "ApiUnavailable",
                true,
                Some(503),
            ),
            (PpioError::Timeout, "ApiUnavailable", true, None),
            (
                PpioError::Unreachable {
                    detail: String::new(),
                },
                "ApiUnavailable",
                true,
                None,
            ),
            (
                PpioError::InvalidResponse {
                    detail: String::new(),
                },
                "InvalidResponse",
                false,
                None,
            ),
            (
                PpioError::InvalidConfig {
                    detail: String::new(),
                },
                "InvalidConfig",
                false,
                None,
            ),
        ];
        for (error, reason, transient, status) in cases {
            assert_eq!(error.kind().as_str(), reason, "{error:?}");
            assert_eq!(error.is_transient(), transient, "{error:?}");
            assert_eq!(error.status_code(), status, "{error:?}");
        }
    }

    #[test]
    fn only_rate_limits_carry_retry_after() {
        let wait = Some(Duration::from_secs(7));
        assert_eq!(
            PpioError::RateLimited { retry_after: wait }.retry_after(),
            wait
        );
        assert_eq!(PpioError::Timeout.retry_after(), None);
    }

    #[test]
    fn messages_say_what_happened_and_include_server_details() {
        let rejected = PpioError::Rejected {
            status: 400,
            code: Some("VALIDATOR_PARAM".into()),
            message: "limit too large".into(),
        };
        assert_eq!(
            rejected.to_string(),
            "PPIO rejected the request (HTTP 400, VALIDATOR_PARAM): limit too large"
        );
        let limited = PpioError::RateLimited {
            retry_after: Some(Duration::from_secs(30)),
        };
        assert!(
            limited
                .to_string()
                .contains("(HTTP 429), asked to wait 30s"),
            "{limited}"
        );
        let failed = PpioError::ServerError {
            status: 502,
            message: String::new(),
        };
        assert_eq!(failed.to_string(), "PPIO API failed (HTTP 502)");
    }

    #[test]
    fn an_error_sent_as_a_page_is_read_from_its_first_kib_only() {
        let key = key();
        let said = |body: &str| error_sent_as_page(body.as_bytes(), &key);
        // A gateway's error object: its code and message, redacted.
        let whole = format!(r#"{{"reason":"BAD_GATEWAY","message":"no {SECRET}"}}"#);
        assert_eq!(
            said(&whole).map(|s| s.to_string()).as_deref(),
            Some("BAD_GATEWAY: no [redacted]")
        );
        // Cut off after its message by the prefix's end: what came before still counts.
        let padded = format!(
            r#"{{"error":{{"code":"UPSTREAM","message":"down"}},"pad":"{}"}}"#,
            "p".repeat(2 * MAX_ERROR_PREFIX_BYTES)
        );
        assert_eq!(
            said(&padded).map(|s| s.to_string()).as_deref(),
            Some("UPSTREAM: down")
        );
        // A message past the prefix is not looked for; nor is anything in a page or a non-object.
        let late = format!(
            r#"{{"pad":"{}","message":"late"}}"#,
            "p".repeat(MAX_ERROR_PREFIX_BYTES)
        );
        for body in [
            late.as_str(),
            r#"{"data":[],"message":"a page after all"}"#,
            r#"["message"]"#,
            r#"{"code":5}"#,
        ] {
            assert_eq!(said(body), None, "{}", &body[..body.len().min(40)]);
        }
        // A message cut by the prefix's end is not quoted (the cut could split the key).
        let cut = format!(
            r#"{{"message":"{}{SECRET}"}}"#,
            "m".repeat(MAX_ERROR_PREFIX_BYTES - 16)
        );
        assert_eq!(said(&cut), None);
    }
}
