//! Kubernetes Events on a view, for transitions only: syncs start failing (or fail for a new reason),
//! recover, or the mass-removal guard starts holding removals back. Steady states publish nothing, so
//! Events stay few however often a view syncs.

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

use crate::api::condition::{self, ConditionStatus};
use crate::api::{GpuInstanceView, GpuInstanceViewStatus};
use crate::mirror;
use crate::status;

/// Publishes an Event when the view's Ready condition changes: syncs start failing (or fail for a
/// new reason), or recover. Steady states publish nothing, so Events stay few.
pub(super) async fn publish_transition(
    recorder: &Recorder,
    view: &GpuInstanceView,
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
    let before = ready(view.status.as_ref());
    let event = match (&before, status) {
        (Some((ConditionStatus::False, old_reason, _)), ConditionStatus::False)
            if *old_reason == reason =>
        {
            return;
        }
        // The mass-removal guard started holding deletions back: once, not at every sync it holds.
        (before, ConditionStatus::True)
            if reason == status::MASS_REMOVAL_HELD
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
        note: event.note.map(|note| mirror::truncate(&note, 1000)),
        ..event
    };
    if let Err(e) = recorder.publish(&event, &view.object_ref(&())).await {
        warn!(error = %e, "cannot publish an Event");
    }
}
