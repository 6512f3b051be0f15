//! Kubernetes Events (events.k8s.io), for transitions only. On a view: syncs start failing (or fail
//! for a new reason), recover, the mass-removal guard starts holding removals back, or one sync saw
//! more remote lifecycle changes than it publishes one by one. On a GpuInstance: the lifecycle Events
//! [`ppio_gpu_core::sync::lifecycle`] decides, published once the mirror's write succeeded. Steady states publish
//! nothing, so Events stay few however often a view syncs.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use tracing::warn;

use super::mirror_meta::MirrorMeta;
use ppio_gpu_core::api::condition::{self, ConditionStatus};
use ppio_gpu_core::api::{GpuInstance, GpuInstanceView, GpuInstanceViewStatus};
use ppio_gpu_core::cost::report;
use ppio_gpu_core::mirror;
use ppio_gpu_core::sync::lifecycle::{InstanceEvent, MANY_STATUS_CHANGES, SummaryEvent};
use ppio_gpu_core::sync::view_status;

/// The Event's action for remote lifecycle Events.
const OBSERVE: &str = "Observe";

/// Publishes a lifecycle Event on the GpuInstance `mirror`, as just written.
pub(super) async fn publish_instance_event(
    recorder: &Recorder,
    mirror: &MirrorMeta,
    event: &InstanceEvent,
) {
    let event = Event {
        type_: if event.reason.is_warning() {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: event.reason.as_str().to_owned(),
        note: Some(mirror::event_note(&event.note)),
        action: OBSERVE.into(),
        secondary: None,
    };
    // Without the resourceVersion, so that one object's Events of one reason form one series.
    let regarding = ObjectReference {
        api_version: Some(GpuInstance::api_version(&()).into_owned()),
        kind: Some(GpuInstance::kind(&()).into_owned()),
        name: Some(mirror.name_any()),
        namespace: mirror.namespace(),
        uid: mirror.uid(),
        ..ObjectReference::default()
    };
    if let Err(e) = recorder.publish(&event, &regarding).await {
        warn!(error = %e, mirror = %mirror.name_any(), "cannot publish an Event");
    }
}

/// Publishes the `ManyStatusChanges` Event on `view`.
pub(super) async fn publish_summary(
    recorder: &Recorder,
    view: &GpuInstanceView,
    summary: &SummaryEvent,
) {
    let event = Event {
        type_: if summary.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: MANY_STATUS_CHANGES.into(),
        note: Some(mirror::event_note(&summary.note)),
        action: OBSERVE.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &view.object_ref(&())).await {
        warn!(error = %e, "cannot publish an Event");
    }
}

/// Publishes the Warning Event `OverBudget` when the view's hourly spend crossed above its budget
/// (see [`report::budget_crossing`]): once per crossing, not at every sync the spend stays above.
pub(super) async fn publish_budget_crossing(
    recorder: &Recorder,
    view: &ObjectReference,
    current: Option<&GpuInstanceViewStatus>,
    next: &GpuInstanceViewStatus,
) {
    let previous = current.map_or(&[][..], |status| status.conditions.as_slice());
    let Some(note) = report::budget_crossing(previous, &next.conditions) else {
        return;
    };
    let event = Event {
        type_: EventType::Warning,
        reason: report::OVER_BUDGET.into(),
        note: Some(mirror::event_note(&note)),
        action: "Price".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, view).await {
        warn!(error = %e, "cannot publish an Event");
    }
}

/// Publishes an Event when the view's Ready condition changes: syncs start failing (or fail for a
/// new reason), or recover. Steady states publish nothing, so Events stay few.
pub(super) async fn publish_transition(
    recorder: &Recorder,
    view: &ObjectReference,
    current: Option<&GpuInstanceViewStatus>,
    next: &GpuInstanceViewStatus,
) {
    let ready = |status: Option<&GpuInstanceViewStatus>| {
        status
            .and_then(|s| condition::find(&s.conditions, condition::READY))
            .map(|c| (c.status, c.reason.clone(), c.message.clone()))
    };
    let Some((status, reason, message)) = ready(Some(next)) else {
        return;
    };
    let before = ready(current);
    let event = match (&before, status) {
        (Some((ConditionStatus::False, old_reason, _)), ConditionStatus::False)
            if *old_reason == reason =>
        {
            return;
        }
        // The mass-removal guard started holding deletions back: once, not at every sync it holds.
        (before, ConditionStatus::True)
            if reason == view_status::MASS_REMOVAL_HELD
                && before
                    .as_ref()
                    .is_none_or(|(_, old_reason, _)| *old_reason != reason) =>
        {
            Event {
                type_: EventType::Warning,
                reason,
                note: Some(message),
                action: "Prune".into(),
                secondary: None,
            }
        }
        (_, ConditionStatus::False) => Event {
            type_: EventType::Warning,
            reason,
            note: Some(message),
            action: "Sync".into(),
            secondary: None,
        },
        (Some((ConditionStatus::False, _, _)), ConditionStatus::True) => Event {
            type_: EventType::Normal,
            reason: "Recovered".into(),
            note: Some(message),
            action: "Sync".into(),
            secondary: None,
        },
        _ => return,
    };
    let event = Event {
        // events.k8s.io rejects notes over 1 KiB.
        note: event
            .note
            .map(|note| ppio::text::truncate(&note, mirror::MAX_EVENT_NOTE)),
        ..event
    };
    if let Err(e) = recorder.publish(&event, view).await {
        warn!(error = %e, "cannot publish an Event");
    }
}
