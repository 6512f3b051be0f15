//! The names and labels of a mirror: its object name from its view and its instance ID (valid
//! whatever the ID, and distinct for distinct IDs), a valid Kubernetes label value for any text,
//! and the labels `kubectl get gpui -l ...` selects by.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::fingerprint::fnv1a;
use super::*;
use ppio::Instance;

/// The object name of the mirror of `instance_id` kept by `view`: `<view>-<id>` when the ID is
/// already lowercase alphanumeric (PPIO IDs are hex), otherwise with a hash of the raw ID so that
/// distinct IDs never share a name. Two views each keep their own object, so they never fight.
pub fn object_name(view: &str, instance_id: &str) -> String {
    let id_is_plain = !instance_id.is_empty()
        && instance_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let plain = format!("{view}-{instance_id}");
    if id_is_plain && plain.len() <= MAX_NAME_LEN {
        return plain;
    }
    let hash = format!("{:016x}", fnv1a(&format!("{view}/{instance_id}")));
    let id_part: String = dns_label_chars(instance_id).chars().take(40).collect();
    let id_part = id_part.trim_matches('-');
    let room = MAX_NAME_LEN - hash.len() - id_part.len() - 2;
    let view_part = view[..view.len().min(room)].trim_end_matches(['-', '.']);
    if id_part.is_empty() {
        format!("{view_part}-{hash}")
    } else {
        format!("{view_part}-{id_part}-{hash}")
    }
}

/// A valid Kubernetes label value (at most 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both
/// ends) for any text: kept when already valid, otherwise sanitised and, if that lost information,
/// suffixed with a hash. Empty when the text is empty. Not the rule of metric labels, which take
/// any text ([`crate::sync::fleet::metric_label_value`]).
pub fn kubernetes_label_value(text: &str) -> String {
    if is_valid_label_value(text) {
        return text.to_owned();
    }
    let hash = format!("{:08x}", fnv1a(text) as u32);
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(63 - hash.len() - 1)
        .collect();
    let cleaned = cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if cleaned.is_empty() {
        hash
    } else {
        format!("{cleaned}-{hash}")
    }
}

pub(super) fn is_valid_label_value(text: &str) -> bool {
    text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && text
            .bytes()
            .next()
            .is_none_or(|b| b.is_ascii_alphanumeric())
        && text
            .bytes()
            .last()
            .is_none_or(|b| b.is_ascii_alphanumeric())
}

/// The labels of the mirror of `instance` kept by `view` (whose shard label value is `shard`), for
/// `kubectl get gpui -l ...`; `expiring_soon` is the end time of a prepaid term that ends soon.
pub fn labels(
    view: &str,
    shard: Option<&str>,
    instance: &Instance,
    expiring_soon: Option<Timestamp>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGER.to_owned()),
        (VIEW_LABEL.to_owned(), kubernetes_label_value(view)),
        (
            INSTANCE_ID_LABEL.to_owned(),
            kubernetes_label_value(instance.id.as_str()),
        ),
    ]);
    let optional = [
        (REGION_LABEL, instance.region.as_str()),
        (
            STATUS_LABEL,
            instance.status.as_ref().map_or("", |s| s.status.as_str()),
        ),
        (
            BILLING_MODE_LABEL,
            instance.billing.as_ref().map_or("", |b| b.mode.as_str()),
        ),
        (SHARD_LABEL, shard.unwrap_or_default()),
    ];
    for (key, value) in optional {
        let value = kubernetes_label_value(value);
        if !value.is_empty() {
            labels.insert(key.to_owned(), value);
        }
    }
    if let Some(end) = expiring_soon {
        labels.insert(EXPIRING_SOON_LABEL.to_owned(), end.as_second().to_string());
    }
    labels
}

/// The end time an [`EXPIRING_SOON_LABEL`] holds, as Unix seconds.
pub fn parse_expiring_soon(value: &str) -> Option<i64> {
    value.parse().ok()
}

fn dns_label_chars(text: &str) -> String {
    text.chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}
