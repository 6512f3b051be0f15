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

/// The durations the schema admits, the syntax of [`super::view::parse_duration`]: Go's
/// `time.ParseDuration` without signs or `ns`/`us`, each number at most as many digits as keeps the
/// sum far below `duration()`'s overflow (`9999h`, `999999m`, `99999999s`, `99999999999ms`), which
/// is still more than any of the view's bounds in any single unit.
pub const DURATION_REGEX: &str = "^([0-9]{1,4}([.][0-9]{1,9})?h|[0-9]{1,6}([.][0-9]{1,9})?m|[0-9]{1,8}([.][0-9]{1,9})?s|[0-9]{1,11}([.][0-9]{1,9})?ms)+$";

/// The durations' accepted form, as the messages say it.
const DURATION_FORM: &str = "write a number and a unit (h, m, s or ms), e.g. 30s, 5m or 1h30m";

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
        "rule": format!("self.matches('{DURATION_REGEX}') && {bounds}"),
        "message": format!("{path} must be a duration {range}: {DURATION_FORM}"),
        "messageExpression": format!(
            "self.matches('{DURATION_REGEX}') \
             ? '{path} \"' + self + '\" is out of range: it must be {range}' \
             : '{path} \"' + self + '\" is not a duration: {DURATION_FORM}; {range}'"
        ),
    }])
}

/// The rule of a text field at `path` that must match `regex` (RE2, as CEL's `matches` reads it;
/// no single quotes), described to users as `form`.
pub fn form_rule(path: &str, regex: &str, form: &str) -> Value {
    json!([{
        "rule": format!("self.matches('{regex}')"),
        "message": format!("{path} must be {form}"),
        "messageExpression": format!("'{path} \"' + self + '\" is not {form}'"),
    }])
}

/// What a Kubernetes object name (a DNS subdomain) is, e.g. a Secret's.
pub const DNS_SUBDOMAIN_REGEX: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// What a key of a Secret's data is.
pub const SECRET_KEY_REGEX: &str = "^[-._a-zA-Z0-9]+$";

/// What a PPIO endpoint is: an http(s) URL with a host and an optional path, without spaces,
/// query or fragment. Written as a CEL string holds it: CEL reads `\\\\s` as RE2's `\\s`.
pub const ENDPOINT_REGEX: &str = "^https?://[^\\\\s/?#]+(/[^\\\\s?#]*)?$";

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
