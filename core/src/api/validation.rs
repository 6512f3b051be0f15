//! The API server's checks of the text fields users type into a view, as CEL rules
//! (`x-kubernetes-validations`) whose message names the field, the value and the form accepted,
//! e.g. `spec.syncInterval "abc" is not a duration: ...`.
//!
//! Why CEL and not a schema `pattern`: the API server runs both when a pattern fails, so a pattern
//! beside a `duration()` rule answered a typo with the regex and then "type conversion error from
//! 'string' to 'google.protobuf.Duration' evaluating rule". Here each rule matches its form first
//! and only then converts, so it never fails to evaluate, and one sentence answers. (The API server
//! skips every CEL rule of an object that has a type error or an unsupported enum value; those
//! messages, and those of lengths, ranges and enums, are its own and already name the field.)
//! Every field checked here has a `maxLength`, which keeps the rules' estimated cost bounded.

use serde_json::{Value, json};

/// The form of a duration: the previous releases' schema `pattern`, Go's `time.ParseDuration`
/// without signs or `ns`/`us` units, any number of digits (leading zeros and long fractions
/// included). Every view stored under those releases still fits: on API servers that check the
/// rules of unchanged fields on every write, a narrower form would refuse each write of such a
/// view's status. The field's `maxLength` bounds the whole.
pub const DURATION_FORM_REGEX: &str = "^([0-9]+([.][0-9]+)?(ms|s|m|h))+$";

/// A duration of [`DURATION_FORM_REGEX`] whose every number, leading zeros aside, has at most the
/// digits that keep `duration()` far from overflowing (`9999h`, `999999m`, `99999999s`,
/// `99999999999ms`): checked before `duration()` is called, so it never fails to evaluate. Each
/// bound is beyond the view's largest (`8760h`) in its unit, so the form alone never refuses
/// what the range admits; with at most 32 characters the sum stays below 2e9 s, far under
/// `duration()`'s limit of about 9.2e9 s.
pub const DURATION_MAGNITUDE_REGEX: &str = "^(0*[0-9]{1,4}([.][0-9]+)?h|0*[0-9]{1,6}([.][0-9]+)?m|0*[0-9]{1,8}([.][0-9]+)?s|0*[0-9]{1,11}([.][0-9]+)?ms)+$";

/// The characters a message must not quote: control and formatting characters (a line break, a
/// bidi override) and line or paragraph separators. A message holding a line break is dropped by
/// the API server for the static one; one holding a bidi override would show the user another
/// text than the one stored. Written as a CEL string holds it.
pub const UNQUOTABLE_REGEX: &str = "[\\\\p{Cc}\\\\p{Cf}\\\\p{Zl}\\\\p{Zp}]";

/// The durations' accepted form, as the messages say it.
const DURATION_FORM: &str = "write a number and a unit (h, m, s or ms), e.g. 30s, 5m or 1h30m";

/// The sentence for a value of the field at `path` holding an [`UNQUOTABLE_REGEX`] character: it
/// names the field but does not quote the value.
fn unquotable(path: &str, form: &str) -> String {
    format!(
        "'{path} holds a control or formatting character (such as a line break): it must be {form}'"
    )
}

/// The rule of a duration field at `path` (e.g. `spec.syncInterval`): the form, then at least `min`
/// (when given) and at most `max`, both durations such as `10s`.
pub fn duration_rule(path: &str, min: Option<&str>, max: &str) -> Value {
    let (range, bounds) = match min {
        Some(min) => (
            format!("from {min} to {max}"),
            format!("duration(self) >= duration('{min}') && duration(self) <= duration('{max}')"),
        ),
        None => (
            format!("at most {max}"),
            format!("duration(self) <= duration('{max}')"),
        ),
    };
    json!([{
        "rule": format!(
            "self.matches('{DURATION_FORM_REGEX}') && self.matches('{DURATION_MAGNITUDE_REGEX}') \
             && {bounds}"
        ),
        "message": format!("{path} must be a duration {range}: {DURATION_FORM}"),
        "messageExpression": format!(
            "self.matches('{UNQUOTABLE_REGEX}') \
             ? {unquotable} \
             : self.matches('{DURATION_FORM_REGEX}') \
             ? '{path} \"' + self + '\" is out of range: it must be {range}' \
             : '{path} \"' + self + '\" is not a duration: {DURATION_FORM}; {range}'",
            unquotable = unquotable(path, &format!("a duration {range}")),
        ),
    }])
}

/// The rule of a text field at `path` that must match `regex` (RE2, as CEL's `matches` reads it;
/// no single quotes), described to users as `form`.
pub fn form_rule(path: &str, regex: &str, form: &str) -> Value {
    json!([{
        "rule": format!("self.matches('{regex}')"),
        "message": format!("{path} must be {form}"),
        "messageExpression": format!(
            "self.matches('{UNQUOTABLE_REGEX}') ? {unquotable} : '{path} \"' + self + '\" is not {form}'",
            unquotable = unquotable(path, form),
        ),
    }])
}

/// What a Kubernetes object name (a DNS subdomain) is, e.g. a Secret's.
pub const DNS_SUBDOMAIN_REGEX: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// What a key of a Secret's data is.
pub const SECRET_KEY_REGEX: &str = "^[-._a-zA-Z0-9]+$";

/// What a PPIO endpoint is: an http(s) URL with a host (a name, an IPv4 address or a bracketed
/// IPv6 address), an optional port from 1 to 65535 and an optional path without spaces (of any
/// kind), control characters, query or fragment. What it refuses, `Url::parse` or the operator's
/// endpoint check would refuse too (or it names no host a view can use: user info, a port 0).
/// Written as a CEL string holds it: CEL reads `\\\\s` as RE2's `\\s`.
pub const ENDPOINT_REGEX: &str = concat!(
    "^https?://",
    "([A-Za-z0-9_]([-A-Za-z0-9_]*[A-Za-z0-9_])?([.][A-Za-z0-9_]([-A-Za-z0-9_]*[A-Za-z0-9_])?)*[.]?",
    "|\\\\[[0-9A-Fa-f:.]+\\\\])",
    "(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?",
    "(/[^\\\\s\\\\p{Z}\\\\p{C}?#]*)?$",
);

/// What a region ID is: no commas (the list is sent comma-joined) and no spaces; written as a CEL
/// string holds it.
pub const REGION_REGEX: &str = "^[^,\\\\s]+$";

/// Adds the rule of a region ID to the items of `spec.filter.regions`.
pub fn region_items(schema: &mut schemars::Schema) {
    if let Some(items) = schema.get_mut("items").and_then(Value::as_object_mut) {
        items.insert(
            "x-kubernetes-validations".to_owned(),
            form_rule(
                "spec.filter.regions",
                REGION_REGEX,
                "a region ID: no commas or spaces, e.g. us-west-1",
            ),
        );
    }
}
