//! The one mapping of a PPIO record to a mirror's status: every field, typed, cleaned of control
//! characters and cut to the schema's lengths; environment variables by key only; credentials in
//! URLs redacted; the `Ready` condition from the remote status; the whole within the size budget.

use jiff::Timestamp;

use super::budget::fit_to_budget;
use super::*;
use crate::api::condition::{self, Condition, ConditionStatus};
use crate::api::instance::{
    AutoMigrateStatus, AutoRenewStatus, BillingStatus, EnvVarKey, GpuInstanceStatus, NetworkStatus,
    PortStatus, PrepaidStatus, RemoteStatus, ResourceSpecsStatus, VolumeStatus,
};
use crate::api::view::OmittedField;
use ppio::Instance;
use ppio::text::{floor_char_boundary, strip_control, truncate};

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
            // Stripped before it is scrubbed: the scrubber takes a control character for a
            // delimiter, so `user:pass\rword@` would pass it whole and be joined up again by a
            // later strip.
            long_text(&redact_userinfo(&strip_control(value, true)))
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
        billing: instance.billing.as_ref().map(|b| BillingStatus {
            mode: text(&b.mode),
            prepaid: b.prepaid.as_ref().map(|p| PrepaidStatus {
                months: Some(p.months),
                end_time: p.end_time.and_then(remote_time),
                auto_renew: p.auto_renew.as_ref().map(|a| AutoRenewStatus {
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
            .map(|p| PortStatus {
                port: Some(p.port),
                protocol: text(&p.protocol),
                endpoint: text(&p.endpoint),
            })
            .collect(),
        resource_specs: instance
            .resource_specs
            .as_ref()
            .map(|r| ResourceSpecsStatus {
                rootfs_size_gb: Some(r.rootfs_size_gb),
                gpu_num: Some(r.gpu_num),
                cpu_num: Some(r.cpu_num),
                memory_gb: Some(r.memory_gb),
                gpu_ids: r.gpu_ids.iter().copied().take(MAX_LIST_ITEMS).collect(),
            }),
        network: instance.network.as_ref().map(|n| NetworkStatus {
            id: text(&n.id),
            ip: text(&n.ip),
        }),
        volumes: instance
            .volumes
            .iter()
            .take(MAX_LIST_ITEMS)
            .map(|v| VolumeStatus {
                type_: text(&v.kind),
                id: text(&v.id),
                mount_point: long_text(&v.mount_point),
            })
            .collect(),
        region: text(&instance.region),
        auto_migrate: instance.auto_migrate.as_ref().map(|a| AutoMigrateStatus {
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
        service: None,
        cost: None,
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

/// `text` as an Event's note: control characters and bidirectional overrides stripped, at most
/// [`MAX_EVENT_NOTE`] bytes. Text from PPIO is already cleaned of the API key when it is decoded.
pub fn event_note(text: &str) -> String {
    truncate(&strip_control(text, true), MAX_EVENT_NOTE)
}
