//! How one PPIO instance becomes one `GpuInstance`: its object name, its labels and its status.
//!
//! This is the only place that maps the PPIO record to Kubernetes. Everything here is pure and
//! deterministic: the same record always gives the same object, so an unchanged instance compares
//! equal to its mirror and costs no write. Whatever PPIO sends:
//! - every name and label value is valid;
//! - control characters (and bidirectional overrides, which can disguise text in a terminal) are
//!   stripped from every string;
//! - user names and passwords in URLs of `command`, `entrypoint` and `image` are replaced by
//!   [`REDACTED_USERINFO`] before anything is shortened, and a view may leave those fields out;
//! - the status fits [`STATUS_BUDGET_BYTES`] as the API server encodes it: what does not fit is dropped
//!   from the end of lists, then of long texts, and a `Truncated` condition says what was cut, so one
//!   oversized record never stops its view from syncing.

use std::borrow::Cow;
use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::api::condition::{self, Condition, ConditionStatus};
use crate::api::instance::{
    AutoMigrate, AutoRenew, Billing, EnvVarKey, GpuInstanceSpec, GpuInstanceStatus, Network, Port,
    Prepaid, RemoteStatus, ResourceSpecs, Volume,
};
use crate::api::view::OmittedField;
use crate::ppio::Instance;
use crate::text::{floor_char_boundary, strip_control, truncate};

/// Label on every object the operator manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`]: the operator's name.
pub const MANAGER: &str = crate::OPERATOR_NAME;
/// Label naming the view that keeps the object.
pub const VIEW_LABEL: &str = "gpu.ppio.io/view";
/// Label holding the remote instance ID.
pub const INSTANCE_ID_LABEL: &str = "gpu.ppio.io/instance-id";
/// Label holding the instance's region.
pub const REGION_LABEL: &str = "gpu.ppio.io/region";
/// Label holding the remote status (`running`, `exited`, ...).
pub const STATUS_LABEL: &str = "gpu.ppio.io/status";
/// Label holding the billing mode.
pub const BILLING_MODE_LABEL: &str = "gpu.ppio.io/billing-mode";
/// Label on the mirror of a prepaid instance that is expiring soon (see [`crate::sync::expiry`]):
/// the end time of its term as Unix seconds. It also tells the next sync, or the next operator,
/// that the `ExpiringSoon` Event for this end time was published.
pub const EXPIRING_SOON_LABEL: &str = "gpu.ppio.io/expiring-soon";

/// Label that shards views across operator deployments (`--watch-label-selector`). A mirror carries
/// its view's value, so that each shard watches only the mirrors of its own views.
pub const SHARD_LABEL: &str = "sharding.ppio.io/key";
/// The labels the operator sets on a mirror and compares; labels others add are theirs to keep.
pub const OWN_LABELS: [&str; 8] = [
    MANAGED_BY_LABEL,
    VIEW_LABEL,
    INSTANCE_ID_LABEL,
    REGION_LABEL,
    STATUS_LABEL,
    BILLING_MODE_LABEL,
    SHARD_LABEL,
    EXPIRING_SOON_LABEL,
];
/// Annotation holding the [`fingerprint`] of the spec and status the operator last applied, so that
/// an unchanged mirror is recognised from its metadata alone, without reading its status.
pub const FINGERPRINT_ANNOTATION: &str = "gpu.ppio.io/fingerprint";
/// Annotation holding when a complete listing first lacked the instance (RFC 3339), so that the
/// removal rules can be applied from metadata alone; `status.absentSince` shows the same to people.
pub const ABSENT_SINCE_ANNOTATION: &str = "gpu.ppio.io/absent-since";

/// The remote status in which an instance counts as Ready.
pub const RUNNING: &str = "running";

/// The condition type on a mirror whose remote record did not fit [`STATUS_BUDGET_BYTES`].
pub const TRUNCATED: &str = "Truncated";
/// Most bytes one mirror's status may take as the API server encodes it: a tenth of etcd's 1.5 MiB
/// object limit, and far above a normal record (about 2 KiB).
pub const STATUS_BUDGET_BYTES: usize = 128 * 1024;
/// What replaces the user name and password of a URL in a mirrored command, entrypoint or image.
pub const REDACTED_USERINFO: &str = "<redacted>";
/// Most bytes of an Event's note: events.k8s.io refuses notes over 1 KiB.
pub const MAX_EVENT_NOTE: usize = 1000;

/// Room kept in the budget for the `Truncated` condition itself.
const TRUNCATED_CONDITION_ROOM: usize = 1024;

// Bounds that keep one GpuInstance far below etcd's object size limit whatever PPIO sends.
const MAX_SHORT_TEXT: usize = 253;
const MAX_LONG_TEXT: usize = 4096;
const MAX_LIST_ITEMS: usize = 128;
const MAX_NAME_LEN: usize = 253;

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

fn is_valid_label_value(text: &str) -> bool {
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

/// `text` as an Event's note: control characters and bidirectional overrides stripped, at most
/// [`MAX_EVENT_NOTE`] bytes. Text from PPIO is already cleaned of the API key when it is decoded.
pub fn event_note(text: &str) -> String {
    truncate(&strip_control(text, true), MAX_EVENT_NOTE)
}

/// A digest of the operator's own labels among `labels` ([`OWN_LABELS`]): equal digests mean equal
/// values, and a label the operator no longer sets (a region that became empty) changes it.
pub fn labels_digest(labels: &BTreeMap<String, String>) -> u64 {
    let mut hash = FNV_OFFSET;
    for key in OWN_LABELS {
        if let Some(value) = labels.get(key) {
            hash = fnv1a_extend(hash, key.as_bytes());
            hash = fnv1a_extend(hash, b"=");
            hash = fnv1a_extend(hash, value.as_bytes());
            hash = fnv1a_extend(hash, b"\n");
        }
    }
    hash
}

/// The fingerprint of a mirror's content: its spec and status, with the conditions' transition
/// times left out (they depend on history, not on the record). Written as
/// [`FINGERPRINT_ANNOTATION`] with every apply.
pub fn fingerprint(spec: &GpuInstanceSpec, status: &GpuInstanceStatus) -> u64 {
    let mut hash = Fnv1a(FNV_OFFSET);
    // Writing into the hash cannot fail; the JSON is hashed as it is produced, never kept.
    if status
        .conditions
        .iter()
        .all(|c| c.last_transition_time == Timestamp::UNIX_EPOCH)
    {
        let _ = serde_json::to_writer(&mut hash, &(spec, status));
    } else {
        let mut canonical = status.clone();
        for condition in &mut canonical.conditions {
            condition.last_transition_time = Timestamp::UNIX_EPOCH;
        }
        let _ = serde_json::to_writer(&mut hash, &(spec, &canonical));
    }
    hash.0
}

/// FNV-1a over bytes written to it.
struct Fnv1a(u64);

impl std::io::Write for Fnv1a {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 = fnv1a_extend(self.0, bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The annotation value of a fingerprint, and back.
pub fn fingerprint_text(fingerprint: u64) -> String {
    format!("{fingerprint:016x}")
}

/// Parses [`fingerprint_text`]; `None` for anything else.
pub fn parse_fingerprint(text: &str) -> Option<u64> {
    (text.len() == 16).then(|| u64::from_str_radix(text, 16).ok())?
}

/// The status of the mirror of `instance`: every field of the record (environment variables by key
/// only, fields the view omits left out), the `Ready` condition, `expiring` (the `ExpiringSoon`
/// condition of a prepaid instance, see [`crate::sync::expiry`]), and a `Truncated` condition when
/// the record did not fit [`STATUS_BUDGET_BYTES`]. `previous` is the mirror's current conditions, so an
/// unchanged condition keeps its transition time; `now` stamps a transition.
pub fn status(
    instance: &Instance,
    omitted: &[OmittedField],
    expiring: Option<Condition>,
    previous: &[Condition],
    now: Timestamp,
) -> GpuInstanceStatus {
    let mirrored = |field: OmittedField, value: &str| {
        if omitted.contains(&field) {
            None
        } else {
            long_text(&redact_userinfo(value))
        }
    };
    let mut status = GpuInstanceStatus {
        id: text(instance.id.as_str()),
        name: text(&instance.name),
        type_: text(&instance.kind),
        product_id: text(&instance.product_id),
        image: mirrored(OmittedField::Image, &instance.image),
        registry_auth_id: text(&instance.registry_auth_id),
        entrypoint: mirrored(OmittedField::Entrypoint, &instance.entrypoint),
        command: mirrored(OmittedField::Command, &instance.command),
        billing: instance.billing.as_ref().map(|b| Billing {
            mode: text(&b.mode),
            prepaid: b.prepaid.as_ref().map(|p| Prepaid {
                months: Some(p.months),
                end_time: p.end_time.and_then(remote_time),
                auto_renew: p.auto_renew.as_ref().map(|a| AutoRenew {
                    enabled: Some(a.enabled),
                    months: Some(a.months),
                    status: text(&a.status),
                }),
            }),
        }),
        envs: instance
            .envs
            .iter()
            .take(MAX_LIST_ITEMS)
            .map(|e| EnvVarKey {
                key: text(&e.key).unwrap_or_default(),
            })
            .collect(),
        ports: instance
            .ports
            .iter()
            .take(MAX_LIST_ITEMS)
            .map(|p| Port {
                port: Some(p.port),
                protocol: text(&p.protocol),
                endpoint: text(&p.endpoint),
            })
            .collect(),
        resource_specs: instance.resource_specs.as_ref().map(|r| ResourceSpecs {
            rootfs_size_gb: Some(r.rootfs_size_gb),
            gpu_num: Some(r.gpu_num),
            cpu_num: Some(r.cpu_num),
            memory_gb: Some(r.memory_gb),
            gpu_ids: r.gpu_ids.iter().copied().take(MAX_LIST_ITEMS).collect(),
        }),
        network: instance.network.as_ref().map(|n| Network {
            id: text(&n.id),
            ip: text(&n.ip),
        }),
        volumes: instance
            .volumes
            .iter()
            .take(MAX_LIST_ITEMS)
            .map(|v| Volume {
                type_: text(&v.kind),
                id: text(&v.id),
                mount_point: long_text(&v.mount_point),
            })
            .collect(),
        region: text(&instance.region),
        auto_migrate: instance.auto_migrate.as_ref().map(|a| AutoMigrate {
            enabled: Some(a.enabled),
            include_system_disk: Some(a.include_system_disk),
        }),
        status: instance.status.as_ref().map(|s| RemoteStatus {
            status: text(&s.status),
            error: text(&s.error),
            message: long_text(&s.message),
        }),
        created_at: instance.created_at.and_then(remote_time),
        last_started_at: instance.last_started_at.and_then(remote_time),
        last_stopped_at: instance.last_stopped_at.and_then(remote_time),
        member_id: text(&instance.member_id),
        owner_id: text(&instance.owner_id),
        region_version: text(&instance.region_version),
        conditions: std::iter::once(ready(instance, now))
            .chain(expiring.map(|mut c| {
                c.last_transition_time = whole_seconds(now);
                c
            }))
            .collect(),
        absent_since: None,
    };
    let cuts = fit_to_budget(&mut status, STATUS_BUDGET_BYTES - TRUNCATED_CONDITION_ROOM);
    let mut conditions = std::mem::take(&mut status.conditions);
    if !cuts.is_empty() {
        conditions.push(truncated(&cuts, now));
    }
    status.conditions = condition::merge_conditions(previous, conditions);
    status
}

/// The `Truncated` condition, naming what [`fit_to_budget`] cut.
fn truncated(cuts: &[String], now: Timestamp) -> Condition {
    let mut message = format!(
        "The remote record does not fit the {} KiB a mirror may hold; left out: {}.",
        STATUS_BUDGET_BYTES / 1024,
        cuts.join(", ")
    );
    message.truncate(floor_char_boundary(&message, TRUNCATED_CONDITION_ROOM / 2));
    Condition {
        type_: TRUNCATED.to_owned(),
        status: ConditionStatus::True,
        reason: "SizeBudget".to_owned(),
        message,
        last_transition_time: whole_seconds(now),
        observed_generation: None,
    }
}

/// Shrinks `status` until it takes at most `budget` bytes as the API server encodes it, and says what
/// was cut. Items go from the end of the largest list first (lists are what grows without end), then
/// long texts are shortened from their end, largest first; as a last resort they are left out.
fn fit_to_budget(status: &mut GpuInstanceStatus, budget: usize) -> Vec<String> {
    let mut cuts = Vec::new();
    let size = encoded_len(status);
    if size <= budget {
        return cuts;
    }
    let mut over = size - budget;

    // (field, item sizes) of each list; items leave from the end of the largest list.
    let mut lists: [(&str, Vec<usize>); 4] = [
        ("volumes", item_sizes(&status.volumes)),
        ("ports", item_sizes(&status.ports)),
        ("envs", item_sizes(&status.envs)),
        (
            "resourceSpecs.gpuIds",
            item_sizes(
                status
                    .resource_specs
                    .as_ref()
                    .map_or(&[][..], |r| &r.gpu_ids),
            ),
        ),
    ];
    let full: Vec<usize> = lists.iter().map(|(_, sizes)| sizes.len()).collect();
    while over > 0 {
        let Some((_, sizes)) = lists
            .iter_mut()
            .filter(|(_, sizes)| !sizes.is_empty())
            .max_by_key(|(_, sizes)| sizes.iter().sum::<usize>())
        else {
            break;
        };
        let dropped = sizes.pop().unwrap_or(0);
        over = over.saturating_sub(dropped);
    }
    for ((field, sizes), full) in lists.iter().zip(full) {
        let kept = sizes.len();
        if kept == full {
            continue;
        }
        cuts.push(format!("{field} (kept {kept} of {full})"));
        match *field {
            "volumes" => status.volumes.truncate(kept),
            "ports" => status.ports.truncate(kept),
            "envs" => status.envs.truncate(kept),
            _ => {
                if let Some(specs) = status.resource_specs.as_mut() {
                    specs.gpu_ids.truncate(kept);
                }
            }
        }
    }

    // Then long texts, largest first.
    while encoded_len(status) > budget {
        let over = encoded_len(status) - budget;
        let remote_message = status.status.as_mut().and_then(|s| s.message.as_mut());
        let texts = [
            ("command", status.command.as_mut()),
            ("entrypoint", status.entrypoint.as_mut()),
            ("image", status.image.as_mut()),
            ("status.message", remote_message),
        ];
        let Some((field, value)) = texts
            .into_iter()
            .filter_map(|(field, value)| value.filter(|v| !v.is_empty()).map(|v| (field, v)))
            .max_by_key(|(_, value)| encoded_len(value))
        else {
            break;
        };
        let before = value.len();
        // An encoded byte is at most 6 in the text (a `\u003c`), at least 1: cut at least `over / 6`.
        let keep = before.saturating_sub(over.div_ceil(6).max(1));
        value.truncate(floor_char_boundary(value, keep));
        if !cuts.iter().any(|c| c.starts_with(field)) {
            cuts.push(format!("{field} (cut from {before} bytes)"));
        }
    }
    cuts
}

/// The encoded size of each item of a list, with its separating comma.
fn item_sizes<T: Serialize>(items: &[T]) -> Vec<usize> {
    items.iter().map(|item| encoded_len(item) + 1).collect()
}

/// Bytes `value` takes as JSON the way the API server writes it: Go escapes `<`, `>`, `&` and the
/// line and paragraph separators as `\uXXXX`, which serde_json does not.
fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut counter = EncodedLen(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

/// Counts the bytes of JSON written to it as Go would encode them, keeping none.
struct EncodedLen(usize);

impl std::io::Write for EncodedLen {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        // serde_json writes strings in runs cut at ASCII escapes, so a character is never split.
        let extra: usize = bytes
            .iter()
            .enumerate()
            .map(|(i, b)| match b {
                b'<' | b'>' | b'&' => 5,
                // U+2028 and U+2029 are E2 80 A8 and E2 80 A9.
                0xe2 if bytes.get(i + 1) == Some(&0x80)
                    && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9)) =>
                {
                    3
                }
                _ => 0,
            })
            .sum();
        self.0 += bytes.len() + extra;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

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

/// `Ready` is True while the remote instance is running; otherwise False with the remote status as
/// reason and the remote error and message as message.
fn ready(instance: &Instance, now: Timestamp) -> Condition {
    let remote = instance.status.as_ref();
    let state = remote.map_or("", |s| s.status.as_str());
    let running = state == RUNNING;
    let reason = if running {
        "Running".to_owned()
    } else {
        condition_reason(state)
    };
    let message = match remote {
        Some(s) if !s.error.is_empty() && !s.message.is_empty() => {
            format!("{}: {}", s.error, s.message)
        }
        Some(s) if !s.error.is_empty() => s.error.clone(),
        Some(s) if !s.message.is_empty() => s.message.clone(),
        _ if running => "The remote instance is running.".to_owned(),
        _ if state.is_empty() => "PPIO reported no status for the instance.".to_owned(),
        _ => format!("The remote instance is {state}."),
    };
    Condition {
        type_: condition::READY.to_owned(),
        status: ConditionStatus::from(running),
        reason,
        message: truncate(&strip_control(&message, true), MAX_LONG_TEXT),
        last_transition_time: whole_seconds(now),
        observed_generation: None,
    }
}

/// A condition reason (CamelCase, `[A-Za-z0-9_,:]`, starting with a letter) from a remote status
/// such as `toStart` or `exited`.
fn condition_reason(state: &str) -> String {
    let mut reason = String::new();
    let mut upper = true;
    for c in state.chars() {
        if c.is_ascii_alphanumeric() {
            if reason.is_empty() && !c.is_ascii_alphabetic() {
                reason.push_str("Status");
            }
            reason.push(if upper { c.to_ascii_uppercase() } else { c });
            upper = false;
        } else {
            upper = true;
        }
        if reason.len() >= 64 {
            break;
        }
    }
    if reason.is_empty() {
        "Unknown".to_owned()
    } else {
        reason
    }
}

/// Kubernetes timestamps have whole seconds; dropping the fraction keeps a round trip equal.
pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// A remote timestamp as the status holds it: whole seconds, and absent when outside the years 1 to
/// 9999 that RFC 3339 (the schema's `date-time`) can express.
fn remote_time(t: Timestamp) -> Option<Timestamp> {
    const YEAR_1: i64 = -62_135_596_800;
    const YEAR_10000: i64 = 253_402_300_800;
    (YEAR_1..YEAR_10000)
        .contains(&t.as_second())
        .then(|| whole_seconds(t))
}

/// The instance ID as `spec.instanceId` holds it (the schema allows 253 characters; longer IDs are
/// cut, and the object name keeps a hash of the whole ID).
pub fn spec_instance_id(id: &str) -> String {
    truncate(id, MAX_SHORT_TEXT)
}

/// A short field: control characters stripped, at most 253 bytes; absent when empty.
fn text(value: &str) -> Option<String> {
    let clean = strip_control(value, false);
    (!clean.is_empty()).then(|| truncate(&clean, MAX_SHORT_TEXT))
}

/// A long field (command, message, path): control characters but tab and newline stripped, at most
/// 4 KiB; absent when empty.
fn long_text(value: &str) -> Option<String> {
    let clean = strip_control(value, true);
    (!clean.is_empty()).then(|| truncate(&clean, MAX_LONG_TEXT))
}

fn dns_label_chars(text: &str) -> String {
    text.chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// 64-bit FNV-1a: a stable, dependency-free hash for names and fingerprints (not for security;
/// stable across releases and platforms, unlike the standard library's hasher).
fn fnv1a(text: &str) -> u64 {
    fnv1a_extend(FNV_OFFSET, text.as_bytes())
}

fn fnv1a_extend(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ppio::{EnvVar, InstanceStatus};

    fn instance(id: &str, state: &str) -> Instance {
        let mut instance = Instance::new(crate::ppio::InstanceId::new(id).unwrap());
        instance.name = "trainer".into();
        instance.region = "cn-east-1".into();
        instance.status = Some(InstanceStatus {
            status: state.into(),
            error: String::new(),
            message: String::new(),
        });
        instance
    }

    fn is_dns_subdomain(name: &str) -> bool {
        name.len() <= 253
            && name.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    }

    #[test]
    fn hex_ids_give_readable_names() {
        assert_eq!(object_name("team-a", "ca338f12f3"), "team-a-ca338f12f3");
    }

    #[test]
    fn any_id_gives_a_valid_distinct_name() {
        let ids = [
            "CA338F12F3",
            "a_b",
            "a-b",
            "a.b",
            "ünïcode",
            "",
            &"x".repeat(400),
        ];
        let names: Vec<_> = ids.iter().map(|id| object_name("view", id)).collect();
        for name in &names {
            assert!(is_dns_subdomain(name), "{name:?}");
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }

    #[test]
    fn a_long_view_name_still_gives_a_valid_name() {
        let view = format!("{}.example", "v".repeat(245));
        let name = object_name(&view, "ca338f12f3");
        assert!(is_dns_subdomain(&name), "{name:?}");
    }

    #[test]
    fn two_views_get_different_objects_for_one_instance() {
        assert_ne!(object_name("a", "ff00"), object_name("b", "ff00"));
    }

    #[test]
    fn label_values_are_always_valid() {
        for text in ["running", "toStart", "a b", "-x-", &"r".repeat(100), "é"] {
            let value = kubernetes_label_value(text);
            assert!(is_valid_label_value(&value), "{text:?} -> {value:?}");
            assert!(!value.is_empty());
        }
        assert_eq!(kubernetes_label_value("cn-east-1"), "cn-east-1");
    }

    #[test]
    fn labels_select_by_view_region_status_and_billing() {
        let mut i = instance("ca338f12f3", "running");
        i.billing = Some(crate::ppio::Billing {
            mode: "spot".into(),
            prepaid: None,
        });
        let labels = labels("team-a", Some("shard1"), &i, None);
        assert_eq!(labels[VIEW_LABEL], "team-a");
        assert_eq!(labels[REGION_LABEL], "cn-east-1");
        assert_eq!(labels[STATUS_LABEL], "running");
        assert_eq!(labels[BILLING_MODE_LABEL], "spot");
        assert_eq!(labels[INSTANCE_ID_LABEL], "ca338f12f3");
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGER);
        assert_eq!(labels[SHARD_LABEL], "shard1");
    }

    #[test]
    fn running_instances_are_ready() {
        let status = status(
            &instance("a1", "running"),
            &[],
            None,
            &[],
            Timestamp::UNIX_EPOCH,
        );
        let ready = &status.conditions[0];
        assert_eq!(ready.status, ConditionStatus::True);
        assert_eq!(ready.reason, "Running");
    }

    #[test]
    fn other_instances_are_not_ready_with_the_remote_reason_and_error() {
        let mut i = instance("a1", "toStart");
        i.status.as_mut().unwrap().error = "NO_CAPACITY".into();
        i.status.as_mut().unwrap().message = "no GPU left in region".into();
        let status = status(&i, &[], None, &[], Timestamp::UNIX_EPOCH);
        let ready = &status.conditions[0];
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason, "ToStart");
        assert_eq!(ready.message, "NO_CAPACITY: no GPU left in region");
    }

    #[test]
    fn mapping_twice_gives_an_equal_status() {
        let i = instance("a1", "running");
        let first = status(&i, &[], None, &[], Timestamp::from_second(100).unwrap());
        let second = status(
            &i,
            &[],
            None,
            &first.conditions,
            Timestamp::from_second(200).unwrap(),
        );
        assert_eq!(first, second);
    }

    #[test]
    fn environment_values_are_never_mirrored() {
        let mut i = instance("a1", "running");
        i.envs = vec![EnvVar {
            key: "HF_TOKEN".into(),
        }];
        let json =
            serde_json::to_string(&status(&i, &[], None, &[], Timestamp::UNIX_EPOCH)).unwrap();
        assert!(json.contains("\"envs\":[{\"key\":\"HF_TOKEN\"}]"), "{json}");
    }

    #[test]
    fn hostile_sizes_are_bounded() {
        let mut i = instance("a1", "running");
        i.image = "i".repeat(1_000_000);
        i.envs = (0..10_000)
            .map(|n| EnvVar {
                key: format!("K{n}"),
            })
            .collect();
        let json =
            serde_json::to_string(&status(&i, &[], None, &[], Timestamp::UNIX_EPOCH)).unwrap();
        assert!(json.len() < 64 * 1024, "{} bytes", json.len());
    }

    #[test]
    fn timestamps_rfc_3339_cannot_express_are_left_out() {
        let mut i = instance("a1", "running");
        i.created_at = Some(Timestamp::from_second(-62_135_596_801).unwrap());
        i.last_stopped_at = Some(Timestamp::from_second(-62_135_596_800).unwrap());
        let status = status(&i, &[], None, &[], Timestamp::UNIX_EPOCH);
        assert_eq!(status.created_at, None);
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["lastStoppedAt"], "0001-01-01T00:00:00Z");
    }

    #[test]
    fn every_field_of_a_hostile_record_is_bounded_together() {
        use crate::ppio::{Port, Volume};
        let long = "x".repeat(10_000);
        let mut i = instance("a1", "running");
        i.name = long.clone();
        i.image = long.clone();
        i.command = long.clone();
        i.entrypoint = long.clone();
        i.ports = (0..1_000)
            .map(|n| Port {
                port: n,
                protocol: long.clone(),
                endpoint: long.clone(),
            })
            .collect();
        i.volumes = (0..1_000)
            .map(|_| Volume {
                kind: long.clone(),
                id: long.clone(),
                mount_point: long.clone(),
            })
            .collect();
        i.envs = (0..1_000).map(|_| EnvVar { key: long.clone() }).collect();
        let json =
            serde_json::to_string(&status(&i, &[], None, &[], Timestamp::UNIX_EPOCH)).unwrap();
        // etcd takes objects up to ~1.5 MB; stay well under it whatever PPIO sends.
        assert!(json.len() < 1_024 * 1_024, "{} bytes", json.len());
        assert!(spec_instance_id(&long).len() <= 253);
    }

    #[test]
    fn status_round_trips_through_json_unchanged() {
        let mut i = instance("a1", "running");
        i.created_at = Some(Timestamp::from_second(1_714_464_000).unwrap());
        let status = status(&i, &[], None, &[], Timestamp::from_second(5).unwrap());
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["createdAt"], "2024-04-30T08:00:00Z");
        let back: GpuInstanceStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
    }

    /// A record whose every field is within its own cap, yet whose status is megabytes as JSON: 128
    /// volumes of 4 KiB paths made of characters the API server escapes six-fold.
    fn oversized_record() -> Instance {
        use crate::ppio::Volume;
        let mut i = instance("a1", "running");
        i.volumes = (0..128)
            .map(|n| Volume {
                kind: "network".into(),
                id: format!("vol-{n}"),
                mount_point: format!("/data/{n}/{}", "<".repeat(40_000)),
            })
            .collect();
        i.command = "&".repeat(100_000);
        i
    }

    #[test]
    fn an_oversized_record_fits_the_budget_and_says_what_was_cut() {
        let i = oversized_record();
        let status = status(&i, &[], None, &[], Timestamp::UNIX_EPOCH);
        assert!(
            encoded_len(&status) <= STATUS_BUDGET_BYTES,
            "{} bytes",
            encoded_len(&status)
        );
        assert!(!status.volumes.is_empty(), "what fits is kept");
        assert!(status.volumes.len() < 128);
        assert_eq!(
            status.volumes[0].id.as_deref(),
            Some("vol-0"),
            "cut from the end"
        );
        let truncated = condition::find(&status.conditions, TRUNCATED).expect("Truncated");
        assert_eq!(truncated.status, ConditionStatus::True);
        assert!(
            truncated
                .message
                .contains(&format!("volumes (kept {} of 128)", status.volumes.len())),
            "{}",
            truncated.message
        );
        let ready = condition::find(&status.conditions, condition::READY).expect("Ready");
        assert_eq!(
            ready.status,
            ConditionStatus::True,
            "the instance still runs"
        );
        // Deterministic, so a truncated mirror is not rewritten at every sync.
        let again = status_again(&i, &status);
        assert_eq!(again, status);
    }

    fn status_again(i: &Instance, previous: &GpuInstanceStatus) -> GpuInstanceStatus {
        status(
            i,
            &[],
            None,
            &previous.conditions,
            Timestamp::from_second(1_000).unwrap(),
        )
    }

    #[test]
    fn a_record_within_the_budget_has_no_truncated_condition() {
        let status = status(
            &instance("a1", "running"),
            &[],
            None,
            &[],
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(condition::find(&status.conditions, TRUNCATED), None);
    }

    #[test]
    fn control_characters_and_bidi_overrides_are_stripped() {
        let mut i = instance("a1", "running");
        i.name = "train\u{1b}[31mer\u{0}\u{202e}".into();
        i.command = "line one\nline\ttwo\r\u{7}".into();
        let status = status(&i, &[], None, &[], Timestamp::UNIX_EPOCH);
        assert_eq!(status.name.as_deref(), Some("train[31mer"));
        assert_eq!(status.command.as_deref(), Some("line one\nline\ttwo"));
    }

    #[test]
    fn left_to_right_and_right_to_left_marks_are_stripped_from_mirrored_text() {
        let mut i = instance("a1", "running");
        i.name = "\u{200f}trainer\u{200e}".into();
        i.command = "python\u{200e} serve.py".into();
        let status = status(&i, &[], None, &[], Timestamp::UNIX_EPOCH);
        assert_eq!(status.name.as_deref(), Some("trainer"));
        assert_eq!(status.command.as_deref(), Some("python serve.py"));
        assert_eq!(event_note("up\u{200f}"), "up");
    }

    #[test]
    fn credentials_in_urls_are_redacted() {
        let cases = [
            (
                "git clone https://user:s3cretT0ken@github.com/org/repo && run",
                "git clone https://<redacted>@github.com/org/repo && run",
            ),
            (
                "curl https://ghp_tokenonly@example.com/x",
                "curl https://<redacted>@example.com/x",
            ),
            (
                "deploy:Pa55word@registry.example.com/ns/image:tag",
                "<redacted>@registry.example.com/ns/image:tag",
            ),
            (
                "--url=https://u:p@ss@host.example/path",
                "--url=https://<redacted>@host.example/path",
            ),
            (
                "a https://x:y@h1.example b s3://k:v@h2.example",
                "a https://<redacted>@h1.example b s3://<redacted>@h2.example",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(redact_userinfo(raw), want, "{raw:?}");
        }
        let untouched = [
            "ubuntu:22.04@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "registry.example.com/ns/image@sha256:0123456789abcdef0123456789abcdef",
            "mail ops@example.com when done",
            "git clone git@github.com:org/repo.git",
            "python train.py --lr 0.1",
        ];
        for raw in untouched {
            assert_eq!(redact_userinfo(raw), raw);
        }
    }

    #[test]
    fn credentials_are_redacted_before_a_long_command_is_cut() {
        let mut i = instance("a1", "running");
        // The `@` that marks the credentials lies beyond the 4 KiB cut.
        i.command = format!(
            "{} https://bot:{}@git.example/repo",
            "x".repeat(4_060),
            "T0KEN".repeat(20)
        );
        i.image = "bot:hunter22@registry.example.com/img:1".into();
        let status = status(&i, &[], None, &[], Timestamp::UNIX_EPOCH);
        let command = status.command.expect("command");
        assert!(!command.contains("T0KEN"), "{}", &command[4_000..]);
        assert!(!command.contains("bot:"));
        assert_eq!(
            status.image.as_deref(),
            Some("<redacted>@registry.example.com/img:1")
        );
    }

    #[test]
    fn a_view_may_leave_commands_out_of_its_mirrors() {
        let mut i = instance("a1", "running");
        i.command = "python serve.py --token abc".into();
        i.entrypoint = "/bin/sh -c".into();
        i.image = "registry.example.com/img:1".into();
        let omitted = [OmittedField::Command, OmittedField::Entrypoint];
        let status = status(&i, &omitted, None, &[], Timestamp::UNIX_EPOCH);
        assert_eq!(status.command, None);
        assert_eq!(status.entrypoint, None);
        assert_eq!(status.image.as_deref(), Some("registry.example.com/img:1"));
    }
}
