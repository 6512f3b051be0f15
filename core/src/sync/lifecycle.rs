//! Remote lifecycle Events: which changes of a listed instance deserve an Event on its mirror, and
//! how one sync's many of them are summed up on the view.
//!
//! Pure: the sync passes what the mirror's metadata says (its `gpu.ppio.io/status` and
//! `gpu.ppio.io/expiring-soon` labels, as the metadata-only watch sees them) and the new record, and
//! publishes what these functions return only once the mirror's write succeeded. So an Event marks
//! each remote transition once: a sync without change publishes nothing, a failed write keeps the
//! transition for the next sync, and an operator restart finds the new status already in the label.
//!
//! The rules:
//! - `Running` (Normal) when an instance becomes `running`;
//! - `Stopped` (Warning) when it enters a stopped state ([`STOPPED_STATES`]) from one that is not,
//!   e.g. `running` → `exited`, with PPIO's error and message;
//! - `StatusChanged` (Normal) for any other change (`pulling`, `migrating`, `stopping` → `exited`);
//! - `FirstSeen` (Normal) for an instance seen for the first time, only when the view asks for it;
//! - `ExpiringSoon` (Warning) once per instance and prepaid end time (see [`crate::sync::expiry`]);
//! - at most `maxPerSync` of these per sync; beyond it one `ManyStatusChanges` on the view counts
//!   every transition of the sync by kind ([`SyncTally`]).

use std::collections::BTreeMap;

use crate::api::view::LifecycleEvents;
use crate::mirror;
use crate::sync::expiry::{self, ExpiryState};
use ppio::Instance;

/// The remote states in which an instance is stopped or on its way to stop. Entering one of them
/// from any other state is a `Stopped` Warning.
pub const STOPPED_STATES: [&str; 7] = [
    "toStop", "stopping", "exited", "failed", "toRemove", "removing", "removed",
];
/// The Event reason on the view when one sync saw more Events than `maxPerSync`.
pub const MANY_STATUS_CHANGES: &str = "ManyStatusChanges";
/// Distinct transitions (`from→to`) a sync's tally tells apart; the rest count as other.
const MAX_TALLY_KINDS: usize = 64;

/// Whether `status` is one of [`STOPPED_STATES`].
pub fn is_stopped(status: &str) -> bool {
    STOPPED_STATES.contains(&status)
}

/// Why an Event on a GpuInstance is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventReason {
    /// The instance became `running`.
    Running,
    /// The instance entered a stopped state.
    Stopped,
    /// Any other change of remote status.
    StatusChanged,
    /// The instance was seen for the first time (`spec.lifecycleEvents.firstSight`).
    FirstSeen,
    /// The prepaid term ends within the warning window and auto-renew is off.
    ExpiringSoon,
    /// An exposed port's endpoint moved (a restart or a migration): its Service follows.
    EndpointChanged,
    /// The mirror's Service name belongs to a Service the operator does not manage.
    ServiceNameTaken,
    /// The API server refused to write the mirror's Service.
    ServiceRejected,
}

impl EventReason {
    /// The reason as the Event shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::Running => "Running",
            EventReason::Stopped => "Stopped",
            EventReason::StatusChanged => "StatusChanged",
            EventReason::FirstSeen => "FirstSeen",
            EventReason::ExpiringSoon => expiry::EXPIRING_SOON_REASON,
            EventReason::EndpointChanged => "EndpointChanged",
            EventReason::ServiceNameTaken => crate::services::plan::NAME_TAKEN,
            EventReason::ServiceRejected => crate::services::plan::SERVICE_REJECTED,
        }
    }

    /// Whether the Event is a Warning (else Normal).
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            EventReason::Stopped
                | EventReason::ExpiringSoon
                | EventReason::ServiceNameTaken
                | EventReason::ServiceRejected
        )
    }
}

/// A change of remote status, as the mirror's status label shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The previous status; `None` when the instance is seen for the first time.
    pub from: Option<String>,
    /// The new status.
    pub to: String,
}

/// One Event due on a GpuInstance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceEvent {
    /// Its reason.
    pub reason: EventReason,
    /// Its note: cleaned and at most [`mirror::MAX_EVENT_NOTE`] bytes.
    pub note: String,
    /// The status change it reports, if it reports one.
    pub transition: Option<Transition>,
}

/// What the cluster holds of an instance before this sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen<'a> {
    /// No mirror yet: the instance is seen for the first time.
    First,
    /// A mirror, with its labels.
    Mirrored {
        /// The value of its `gpu.ppio.io/status` label (empty when it has none).
        status: &'a str,
        /// The value of its `gpu.ppio.io/expiring-soon` label: the end time it warned of.
        expiring_soon: Option<i64>,
    },
}

/// The `EndpointChanged` Event due when a mirror that keeps a Service (`desired`) is rewritten over
/// a status whose exposed ports were `previous`: when an exposed port's endpoint moved, its Service
/// follows, and the Event says from where to where.
pub fn endpoint_changed(
    previous: &[crate::api::instance::PortStatus],
    desired: &crate::sync::plan::DesiredMirror,
) -> Option<InstanceEvent> {
    desired.services.as_ref()?;
    let note = crate::services::plan::moved_endpoints(previous, &desired.status.ports)?;
    Some(InstanceEvent {
        reason: EventReason::EndpointChanged,
        note,
        transition: None,
    })
}

/// The Events due for `instance` when its mirror is written, given what was `seen` before and its
/// [`ExpiryState`] now. `window` is the view's `spec.expiryWarningWindow`, for the note.
pub fn instance_events(
    seen: Seen<'_>,
    instance: &Instance,
    expiry: ExpiryState,
    options: &LifecycleEvents,
    window: &str,
) -> Vec<InstanceEvent> {
    let mut events = Vec::new();
    let remote = instance.status.as_ref();
    let to = mirror::kubernetes_label_value(remote.map_or("", |s| s.status.as_str()));
    let (reason, from, warned_end) = match seen {
        Seen::First if options.first_sight => (Some(EventReason::FirstSeen), None, None),
        Seen::First => (None, None, None),
        Seen::Mirrored {
            status,
            expiring_soon,
        } => {
            let reason = if status == to {
                None
            } else if to == mirror::RUNNING {
                Some(EventReason::Running)
            } else if is_stopped(&to) && !is_stopped(status) {
                Some(EventReason::Stopped)
            } else {
                Some(EventReason::StatusChanged)
            };
            (reason, Some(status.to_owned()), expiring_soon)
        }
    };
    if let Some(reason) = reason {
        let shown = |s: &str| if s.is_empty() { "unknown" } else { s }.to_owned();
        let mut note = match (&from, reason) {
            (_, EventReason::FirstSeen) => format!("First seen; its status is {}.", shown(&to)),
            (Some(from), _) => format!("The status went from {} to {}.", shown(from), shown(&to)),
            (None, _) => format!("The status is {}.", shown(&to)),
        };
        if let Some(remote) = remote {
            if !remote.error.is_empty() {
                note.push_str(&format!(" Error: {}.", remote.error));
            }
            if !remote.message.is_empty() {
                note.push_str(&format!(" Message: {}", remote.message));
            }
        }
        events.push(InstanceEvent {
            reason,
            note: mirror::event_note(&note),
            transition: Some(Transition { from, to }),
        });
    }
    if let Some(end) = expiry.soon()
        && warned_end != Some(end.as_second())
    {
        events.push(InstanceEvent {
            reason: EventReason::ExpiringSoon,
            note: expiry::expiring_soon_note(end, window),
            transition: None,
        });
    }
    events
}

/// The Events of one sync: how many may still be published, and what was seen, for the summary.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncTally {
    max_per_sync: u64,
    /// Events due, published or not.
    due: u64,
    /// Status changes by `from→to`, at most [`MAX_TALLY_KINDS`] kinds (the rest count as other).
    transitions: BTreeMap<(String, String), u64>,
    /// Status changes in all.
    changes: u64,
    /// Of them, `Stopped`.
    stopped: u64,
    /// Instances that started expiring soon.
    expiring: u64,
    /// Instances whose endpoints moved.
    moved: u64,
}

/// The `ManyStatusChanges` Event on the view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryEvent {
    /// Warning when any instance stopped, else Normal.
    pub warning: bool,
    /// What happened, at most [`mirror::MAX_EVENT_NOTE`] bytes.
    pub note: String,
}

impl SyncTally {
    /// A tally that lets `max_per_sync` Events through.
    pub fn new(max_per_sync: u64) -> SyncTally {
        SyncTally {
            max_per_sync,
            ..SyncTally::default()
        }
    }

    /// Counts `event`, whose mirror was written; whether it is published on its own.
    pub fn admit(&mut self, event: &InstanceEvent) -> bool {
        self.due += 1;
        match &event.transition {
            Some(transition) => {
                self.changes += 1;
                if event.reason == EventReason::Stopped {
                    self.stopped += 1;
                }
                let from = transition.from.as_deref().unwrap_or("new");
                let key = (bounded(from), bounded(&transition.to));
                let kinds = self.transitions.len();
                if let Some(n) = self.transitions.get_mut(&key) {
                    *n += 1;
                } else if kinds < MAX_TALLY_KINDS {
                    self.transitions.insert(key, 1);
                }
                // Else counted in `changes` only: the summary shows it among the others.
            }
            None if event.reason == EventReason::EndpointChanged => self.moved += 1,
            None => self.expiring += 1,
        }
        self.due <= self.max_per_sync
    }

    /// The summary Event, when more Events were due than `maxPerSync`.
    pub fn summary(&self) -> Option<SummaryEvent> {
        if self.due <= self.max_per_sync {
            return None;
        }
        let mut kinds: Vec<_> = self.transitions.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        let mut tail = String::new();
        if self.expiring > 0 {
            tail.push_str(&format!(
                " {} instance{} started expiring soon (status.expiringSoonCount).",
                thousands(self.expiring),
                plural(self.expiring)
            ));
        }
        if self.moved > 0 {
            tail.push_str(&format!(
                " {} instance{} moved to new endpoints; their Services follow.",
                thousands(self.moved),
                plural(self.moved)
            ));
        }
        tail.push_str(&format!(
            " Events were published for the first {} (spec.lifecycleEvents.maxPerSync); the \
             GpuInstances' labels and conditions show every one.",
            thousands(self.max_per_sync)
        ));
        let mut note = String::new();
        if self.changes > 0 {
            note = format!(
                "{} instance{} changed status in one sync",
                thousands(self.changes),
                plural(self.changes)
            );
            let mut listed = 0u64;
            let mut parts: Vec<String> = Vec::new();
            for ((from, to), n) in &kinds {
                let part = format!("{} {from}→{to}", thousands(**n));
                // Room for the rest of the note and an "N other" part.
                let used: usize = parts.iter().map(|p| p.len() + 2).sum();
                if note.len() + used + part.len() + tail.len() + 40 > mirror::MAX_EVENT_NOTE {
                    break;
                }
                listed += **n;
                parts.push(part);
            }
            let rest = self.changes - listed;
            if rest > 0 {
                parts.push(format!("{} other", thousands(rest)));
            }
            note.push_str(&format!(" ({}).", parts.join(", ")));
        }
        note.push_str(&tail);
        let note = note.trim_start();
        Some(SummaryEvent {
            warning: self.stopped > 0,
            note: mirror::event_note(note),
        })
    }
}

/// A status as the tally keeps it: a label value, so at most 63 bytes already; cut again in case.
fn bounded(status: &str) -> String {
    crate::sync::counts::key_of(status, crate::sync::counts::MAX_KEY_BYTES).into_owned()
}

/// `n` with thousands separated by commas: `2,990`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_that_moved_is_announced_only_for_a_mirror_that_keeps_a_service() {
        use crate::services::AddressPolicy;
        use crate::sync::fixtures::{at, desired, instance, view};
        use crate::sync::plan::plan_instance;

        let exposed = |endpoint: &str| {
            let mut record = instance("aa01", "running", "cn-east-1", 1);
            record.ports = vec![ppio::Port {
                port: 8080,
                protocol: "http".into(),
                endpoint: endpoint.into(),
            }];
            record
        };
        let policy = AddressPolicy {
            cluster: Vec::new(),
            allowed: vec!["203.0.113.0/24".parse().expect("a range")],
        };
        let mut asking = view(true);
        asking.spec.services.enabled = true;
        let (before, after) = (
            exposed("http://203.0.113.5:30001"),
            exposed("http://203.0.113.9:30001"),
        );
        let mirror_of = |view, policy, record| {
            desired(plan_instance(
                view,
                policy,
                record,
                &crate::sync::fixtures::unpriced(),
                None,
                at(1),
            ))
        };
        let previous = mirror_of(&asking, Some(&policy), &before).status.ports;

        let moved = endpoint_changed(&previous, &mirror_of(&asking, Some(&policy), &after))
            .expect("announced");
        assert_eq!(moved.reason, EventReason::EndpointChanged);
        assert!(moved.note.contains("203.0.113.9"), "{}", moved.note);
        assert!(
            endpoint_changed(&previous, &mirror_of(&asking, Some(&policy), &before)).is_none(),
            "an endpoint where it was is no news"
        );
        assert!(
            endpoint_changed(&previous, &mirror_of(&view(true), Some(&policy), &after)).is_none(),
            "a mirror without a Service has no Service to follow the endpoint"
        );
    }
    use jiff::Timestamp;
    use ppio::{InstanceId, InstanceStatus};

    fn instance(state: &str, error: &str, message: &str) -> Instance {
        let mut i = Instance::new(InstanceId::new("aa01").unwrap());
        i.status = Some(InstanceStatus {
            status: state.into(),
            error: error.into(),
            message: message.into(),
        });
        i
    }

    fn mirrored(status: &str) -> Seen<'_> {
        Seen::Mirrored {
            status,
            expiring_soon: None,
        }
    }

    fn events(seen: Seen<'_>, i: &Instance) -> Vec<InstanceEvent> {
        instance_events(
            seen,
            i,
            ExpiryState::NotApplicable,
            &LifecycleEvents::default(),
            "72h",
        )
    }

    fn reasons(events: &[InstanceEvent]) -> Vec<EventReason> {
        events.iter().map(|e| e.reason).collect()
    }

    #[test]
    fn leaving_running_for_a_stopped_state_is_a_warning_with_the_remote_error() {
        let exited = instance("exited", "OOM", "the container ran out of memory");
        let events = events(mirrored("running"), &exited);
        assert_eq!(reasons(&events), [EventReason::Stopped]);
        assert!(EventReason::Stopped.is_warning());
        let note = &events[0].note;
        assert!(
            note.contains("running to exited")
                && note.contains("OOM")
                && note.contains("ran out of memory"),
            "{note}"
        );
        for stopped in ["failed", "stopping", "removed"] {
            assert_eq!(
                reasons(&super::tests::events(
                    mirrored("running"),
                    &instance(stopped, "", "")
                )),
                [EventReason::Stopped],
                "{stopped}"
            );
        }
    }

    #[test]
    fn becoming_running_and_other_changes_are_normal() {
        assert_eq!(
            reasons(&events(mirrored("pulling"), &instance("running", "", ""))),
            [EventReason::Running]
        );
        assert_eq!(
            reasons(&events(mirrored("running"), &instance("migrating", "", ""))),
            [EventReason::StatusChanged]
        );
        // Already stopping: reaching exited is no second Warning.
        assert_eq!(
            reasons(&events(mirrored("stopping"), &instance("exited", "", ""))),
            [EventReason::StatusChanged]
        );
        assert!(!EventReason::StatusChanged.is_warning());
    }

    #[test]
    fn an_unchanged_status_publishes_nothing() {
        assert!(events(mirrored("exited"), &instance("exited", "OOM", "")).is_empty());
    }

    #[test]
    fn first_sight_is_an_event_only_when_the_view_asks() {
        let running = instance("running", "", "");
        assert!(events(Seen::First, &running).is_empty());
        let asked = LifecycleEvents {
            first_sight: true,
            ..LifecycleEvents::default()
        };
        let events = instance_events(
            Seen::First,
            &running,
            ExpiryState::NotApplicable,
            &asked,
            "72h",
        );
        assert_eq!(reasons(&events), [EventReason::FirstSeen]);
    }

    #[test]
    fn notes_are_cleaned_and_fit_an_event() {
        let hostile = instance("exited", "OOM\u{202e}", &"x\u{7}".repeat(5000));
        let note = &events(mirrored("running"), &hostile)[0].note;
        assert!(note.len() <= mirror::MAX_EVENT_NOTE, "{}", note.len());
        assert!(!note.contains('\u{202e}') && !note.contains('\u{7}'));
        assert!(note.contains("OOM"));
    }

    #[test]
    fn expiring_soon_is_published_once_per_end_time() {
        let end = Timestamp::from_second(1_000_000).unwrap();
        let soon = ExpiryState::Soon { end };
        let i = instance("running", "", "");
        let options = LifecycleEvents::default();
        let first = instance_events(mirrored("running"), &i, soon, &options, "72h");
        assert_eq!(reasons(&first), [EventReason::ExpiringSoon]);
        let warned = Seen::Mirrored {
            status: "running",
            expiring_soon: Some(1_000_000),
        };
        assert!(instance_events(warned, &i, soon, &options, "72h").is_empty());
        // Renewed to a new end time that is soon again: a new warning.
        let renewed = ExpiryState::Soon {
            end: Timestamp::from_second(2_000_000).unwrap(),
        };
        assert_eq!(
            reasons(&instance_events(warned, &i, renewed, &options, "72h")),
            [EventReason::ExpiringSoon]
        );
        // A new mirror of an instance already expiring soon warns too.
        assert_eq!(
            reasons(&instance_events(Seen::First, &i, soon, &options, "72h")),
            [EventReason::ExpiringSoon]
        );
    }

    fn stopped_event(to: &str) -> InstanceEvent {
        events(mirrored("running"), &instance(to, "", ""))
            .pop()
            .unwrap()
    }

    #[test]
    fn a_sync_publishes_at_most_max_per_sync_then_one_summary() {
        let mut tally = SyncTally::new(20);
        let mut published = 0;
        for n in 0..3000 {
            let to = if n < 2990 { "exited" } else { "failed" };
            if tally.admit(&stopped_event(to)) {
                published += 1;
            }
        }
        assert_eq!(published, 20);
        let summary = tally.summary().expect("a summary");
        assert!(summary.warning);
        assert!(
            summary.note.contains("3,000 instances")
                && summary.note.contains("2,990 running→exited")
                && summary.note.contains("10 running→failed"),
            "{}",
            summary.note
        );
        assert!(summary.note.len() <= mirror::MAX_EVENT_NOTE);
    }

    #[test]
    fn few_events_need_no_summary_and_normal_changes_give_a_normal_one() {
        let mut few = SyncTally::new(20);
        assert!(few.admit(&stopped_event("exited")));
        assert_eq!(few.summary(), None);

        let mut normal = SyncTally::new(1);
        let pulling = events(mirrored("pulling"), &instance("running", "", "")).pop();
        for _ in 0..3 {
            normal.admit(pulling.as_ref().unwrap());
        }
        assert!(!normal.summary().expect("a summary").warning);
    }

    #[test]
    fn the_summary_stays_within_a_note_for_any_number_of_kinds() {
        let mut tally = SyncTally::new(0);
        for n in 0..500 {
            let event = InstanceEvent {
                reason: EventReason::StatusChanged,
                note: String::new(),
                transition: Some(Transition {
                    from: Some(format!("state-{n}-{}", "x".repeat(50))),
                    to: format!("other-{n}-{}", "y".repeat(50)),
                }),
            };
            assert!(!tally.admit(&event));
        }
        let summary = tally.summary().expect("a summary");
        assert!(summary.note.len() <= mirror::MAX_EVENT_NOTE);
        assert!(summary.note.contains("500 instances"), "{}", summary.note);
        assert!(summary.note.contains(" other"), "{}", summary.note);
    }

    #[test]
    fn expiries_beyond_the_bound_are_summed_up_too() {
        let mut tally = SyncTally::new(1);
        let expiring = InstanceEvent {
            reason: EventReason::ExpiringSoon,
            note: String::new(),
            transition: None,
        };
        assert!(tally.admit(&expiring));
        assert!(!tally.admit(&expiring));
        let summary = tally.summary().expect("a summary");
        assert!(!summary.warning, "no instance stopped");
        assert!(
            summary
                .note
                .starts_with("2 instances started expiring soon"),
            "{}",
            summary.note
        );
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(2990), "2,990");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
