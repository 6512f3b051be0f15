//! How one PPIO instance becomes one `GpuInstance`: its object name, its labels and its status.
//!
//! This is the only place that maps the PPIO record to Kubernetes. Everything here is pure and
//! deterministic: the same record always gives the same object, so an unchanged instance compares
//! equal to its mirror and costs no write. Whatever PPIO sends, the result is bounded in size and every
//! name and label value is valid.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::api::condition::{self, Condition, ConditionStatus};
use crate::api::instance::{
    AutoMigrate, AutoRenew, Billing, EnvVarKey, GpuInstanceStatus, Network, Port, Prepaid,
    RemoteStatus, ResourceSpecs, Volume,
};
use crate::ppio::Instance;

/// Label on every object the operator manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGER: &str = "ppio-gpu-operator";
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

/// The remote status in which an instance counts as Ready.
pub const RUNNING: &str = "running";

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

/// A valid label value for any text: kept when already valid, otherwise sanitised and, if that lost
/// information, suffixed with a hash. Empty when the text is empty.
pub fn label_value(text: &str) -> String {
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

/// The labels of the mirror of `instance` kept by `view`, for `kubectl get gpui -l ...`.
pub fn labels(view: &str, instance: &Instance) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGER.to_owned()),
        (VIEW_LABEL.to_owned(), label_value(view)),
        (
            INSTANCE_ID_LABEL.to_owned(),
            label_value(instance.id.as_str()),
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
    ];
    for (key, value) in optional {
        let value = label_value(value);
        if !value.is_empty() {
            labels.insert(key.to_owned(), value);
        }
    }
    labels
}

/// The status of the mirror of `instance`: every field of the record (environment variables by key
/// only), and the `Ready` condition. `previous` is the mirror's current conditions, so an unchanged
/// Ready keeps its transition time; `now` stamps a transition.
pub fn status(instance: &Instance, previous: &[Condition], now: Timestamp) -> GpuInstanceStatus {
    GpuInstanceStatus {
        id: text(instance.id.as_str()),
        name: text(&instance.name),
        type_: text(&instance.kind),
        product_id: text(&instance.product_id),
        image: long_text(&instance.image),
        registry_auth_id: text(&instance.registry_auth_id),
        entrypoint: long_text(&instance.entrypoint),
        command: long_text(&instance.command),
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
                key: truncate(&e.key, MAX_SHORT_TEXT),
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
        conditions: condition::merge_conditions(previous, vec![ready(instance, now)]),
        absent_since: None,
    }
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
        message: truncate(&message, MAX_LONG_TEXT),
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

fn text(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| truncate(value, MAX_SHORT_TEXT))
}

fn long_text(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| truncate(value, MAX_LONG_TEXT))
}

fn truncate(value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_owned();
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_owned()
}

fn dns_label_chars(text: &str) -> String {
    text.chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// 64-bit FNV-1a: a stable, dependency-free hash for names (not for security).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
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
            let value = label_value(text);
            assert!(is_valid_label_value(&value), "{text:?} -> {value:?}");
            assert!(!value.is_empty());
        }
        assert_eq!(label_value("cn-east-1"), "cn-east-1");
    }

    #[test]
    fn labels_select_by_view_region_status_and_billing() {
        let mut i = instance("ca338f12f3", "running");
        i.billing = Some(crate::ppio::Billing {
            mode: "spot".into(),
            prepaid: None,
        });
        let labels = labels("team-a", &i);
        assert_eq!(labels[VIEW_LABEL], "team-a");
        assert_eq!(labels[REGION_LABEL], "cn-east-1");
        assert_eq!(labels[STATUS_LABEL], "running");
        assert_eq!(labels[BILLING_MODE_LABEL], "spot");
        assert_eq!(labels[INSTANCE_ID_LABEL], "ca338f12f3");
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGER);
    }

    #[test]
    fn running_instances_are_ready() {
        let status = status(&instance("a1", "running"), &[], Timestamp::UNIX_EPOCH);
        let ready = &status.conditions[0];
        assert_eq!(ready.status, ConditionStatus::True);
        assert_eq!(ready.reason, "Running");
    }

    #[test]
    fn other_instances_are_not_ready_with_the_remote_reason_and_error() {
        let mut i = instance("a1", "toStart");
        i.status.as_mut().unwrap().error = "NO_CAPACITY".into();
        i.status.as_mut().unwrap().message = "no GPU left in region".into();
        let status = status(&i, &[], Timestamp::UNIX_EPOCH);
        let ready = &status.conditions[0];
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason, "ToStart");
        assert_eq!(ready.message, "NO_CAPACITY: no GPU left in region");
    }

    #[test]
    fn mapping_twice_gives_an_equal_status() {
        let i = instance("a1", "running");
        let first = status(&i, &[], Timestamp::from_second(100).unwrap());
        let second = status(&i, &first.conditions, Timestamp::from_second(200).unwrap());
        assert_eq!(first, second);
    }

    #[test]
    fn environment_values_are_never_mirrored() {
        let mut i = instance("a1", "running");
        i.envs = vec![EnvVar {
            key: "HF_TOKEN".into(),
        }];
        let json = serde_json::to_string(&status(&i, &[], Timestamp::UNIX_EPOCH)).unwrap();
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
        let json = serde_json::to_string(&status(&i, &[], Timestamp::UNIX_EPOCH)).unwrap();
        assert!(json.len() < 64 * 1024, "{} bytes", json.len());
    }

    #[test]
    fn timestamps_rfc_3339_cannot_express_are_left_out() {
        let mut i = instance("a1", "running");
        i.created_at = Some(Timestamp::from_second(-62_135_596_801).unwrap());
        i.last_stopped_at = Some(Timestamp::from_second(-62_135_596_800).unwrap());
        let status = status(&i, &[], Timestamp::UNIX_EPOCH);
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
        let json = serde_json::to_string(&status(&i, &[], Timestamp::UNIX_EPOCH)).unwrap();
        // etcd takes objects up to ~1.5 MB; stay well under it whatever PPIO sends.
        assert!(json.len() < 1_024 * 1_024, "{} bytes", json.len());
        assert!(spec_instance_id(&long).len() <= 253);
    }

    #[test]
    fn status_round_trips_through_json_unchanged() {
        let mut i = instance("a1", "running");
        i.created_at = Some(Timestamp::from_second(1_714_464_000).unwrap());
        let status = status(&i, &[], Timestamp::from_second(5).unwrap());
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["createdAt"], "2024-04-30T08:00:00Z");
        let back: GpuInstanceStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
    }
}
