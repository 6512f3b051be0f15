//! Prepaid expiry: whether a prepaid instance's term ends soon, and how its mirror says so.
//!
//! A prepaid instance is "expiring soon" when its end time lies between now and now plus the view's
//! `spec.expiryWarningWindow` and its auto-renew is off. Pure functions of the record, the window and
//! the time: the answer changes with the clock even when the record does not, so the sync compares
//! the [`ExpiryState`] too (it is part of [`crate::sync::plan::ViewSeed::source_hash`]). A term that has already
//! ended is not "expiring soon": the instance is then whatever PPIO lists it as.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::condition::{Condition, ConditionStatus};
use ppio::RecordSummary;

/// The condition type on a prepaid instance's mirror.
pub const EXPIRING_SOON: &str = "ExpiringSoon";
/// The Event reason when an instance starts expiring soon, once per instance and end time.
pub const EXPIRING_SOON_REASON: &str = "ExpiringSoon";

/// Where a prepaid instance stands against the warning window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpiryState {
    /// Not prepaid, or the view's warnings are off: nothing to say.
    NotApplicable,
    /// Prepaid, but PPIO sends no end time.
    NoEndTime,
    /// Prepaid and renewed automatically.
    AutoRenew {
        /// When the current term ends.
        end: Timestamp,
    },
    /// The term ends after the window.
    Later {
        /// When the term ends.
        end: Timestamp,
    },
    /// The term ends within the window and auto-renew is off.
    Soon {
        /// When the term ends.
        end: Timestamp,
    },
    /// The term has ended and auto-renew is off.
    Ended {
        /// When the term ended.
        end: Timestamp,
    },
}

impl ExpiryState {
    /// The end time when the instance is expiring soon.
    pub fn soon(self) -> Option<Timestamp> {
        match self {
            ExpiryState::Soon { end } => Some(end),
            _ => None,
        }
    }
}

/// Where `instance` stands at `now` against a warning `window` (zero turns warnings off).
pub fn expiry_state(instance: &RecordSummary, window: Duration, now: Timestamp) -> ExpiryState {
    if window.is_zero() || !instance.is_prepaid() {
        return ExpiryState::NotApplicable;
    }
    let Some(prepaid) = instance.prepaid else {
        return ExpiryState::NoEndTime;
    };
    let Some(end) = prepaid.end_time.map(crate::mirror::whole_seconds) else {
        return ExpiryState::NoEndTime;
    };
    if prepaid.auto_renew {
        return ExpiryState::AutoRenew { end };
    }
    let left = now.duration_until(end);
    if left.is_negative() {
        ExpiryState::Ended { end }
    } else if Duration::try_from(left).is_ok_and(|left| left <= window) {
        ExpiryState::Soon { end }
    } else {
        ExpiryState::Later { end }
    }
}

/// The `ExpiringSoon` condition of a prepaid instance's mirror, with its transition time at the
/// epoch (stamped when the mirror is written); `None` when [`ExpiryState::NotApplicable`].
/// `window` is the view's `spec.expiryWarningWindow` as written, for the message.
pub fn expiring_soon_condition(state: ExpiryState, window: &str) -> Option<Condition> {
    let window = window.trim();
    let (status, reason, message) = match state {
        ExpiryState::NotApplicable => return None,
        ExpiryState::Soon { end } => (
            true,
            "EndTimeWithinWindow",
            format!(
                "The prepaid term ends at {end}, within the {window} warning window, and \
                 auto-renew is off: renew the instance in PPIO to keep it."
            ),
        ),
        ExpiryState::NoEndTime => (
            false,
            "NoEndTime",
            "PPIO reports no end time for the prepaid term.".to_owned(),
        ),
        ExpiryState::AutoRenew { end } => (
            false,
            "AutoRenewOn",
            format!("The prepaid term ends at {end} and renews automatically."),
        ),
        ExpiryState::Later { end } => (
            false,
            "EndTimeBeyondWindow",
            format!("The prepaid term ends at {end}, beyond the {window} warning window."),
        ),
        ExpiryState::Ended { end } => (
            false,
            "TermEnded",
            format!("The prepaid term ended at {end} and auto-renew is off."),
        ),
    };
    Some(Condition {
        type_: EXPIRING_SOON.to_owned(),
        status: ConditionStatus::from(status),
        reason: reason.to_owned(),
        message,
        last_transition_time: Timestamp::UNIX_EPOCH,
        observed_generation: None,
    })
}

/// The note of the `ExpiringSoon` Event of an instance whose term ends at `end`.
pub fn expiring_soon_note(end: Timestamp, window: &str) -> String {
    crate::mirror::event_note(&format!(
        "The prepaid term ends at {end}, within the {} warning window, and auto-renew is off: \
         renew the instance in PPIO to keep it.",
        window.trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppio::{AutoRenew, Billing, Instance, InstanceId, Prepaid};

    const HOUR: i64 = 3600;
    const WINDOW: Duration = Duration::from_secs(72 * 3600);

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    pub(crate) fn prepaid(end: Option<i64>, auto_renew: bool) -> Instance {
        let mut i = Instance::new(InstanceId::new("aa01").unwrap());
        i.billing = Some(Billing {
            mode: "prepaid".into(),
            prepaid: Some(Prepaid {
                months: 1,
                end_time: end.map(at),
                auto_renew: Some(AutoRenew {
                    enabled: auto_renew,
                    months: 1,
                    status: String::new(),
                }),
            }),
        });
        i
    }

    #[test]
    fn a_prepaid_term_ending_within_the_window_without_auto_renew_is_expiring_soon() {
        let now = 1_000_000;
        let i = prepaid(Some(now + 48 * HOUR), false);
        assert_eq!(
            expiry_state(&(&i).into(), WINDOW, at(now)),
            ExpiryState::Soon {
                end: at(now + 48 * HOUR)
            }
        );
        // The window's edge is within it.
        let edge = prepaid(Some(now + 72 * HOUR), false);
        assert!(
            expiry_state(&(&edge).into(), WINDOW, at(now))
                .soon()
                .is_some()
        );
    }

    #[test]
    fn auto_renew_a_later_end_or_an_ended_term_is_not_expiring_soon() {
        let now = 1_000_000;
        let cases = [
            (prepaid(Some(now + HOUR), true), "auto-renew on"),
            (prepaid(Some(now + 73 * HOUR), false), "beyond the window"),
            (prepaid(Some(now - HOUR), false), "already ended"),
            (prepaid(None, false), "no end time"),
        ];
        for (i, what) in cases {
            assert_eq!(
                expiry_state(&(&i).into(), WINDOW, at(now)).soon(),
                None,
                "{what}"
            );
        }
    }

    #[test]
    fn the_same_record_crosses_into_the_window_as_time_passes() {
        let end = 1_000_000;
        let i = prepaid(Some(end), false);
        let before = expiry_state(&(&i).into(), WINDOW, at(end - 73 * HOUR));
        let after = expiry_state(&(&i).into(), WINDOW, at(end - 71 * HOUR));
        assert_eq!(before, ExpiryState::Later { end: at(end) });
        assert_eq!(after, ExpiryState::Soon { end: at(end) });
    }

    #[test]
    fn a_zero_window_or_another_billing_mode_says_nothing() {
        let now = 1_000_000;
        let i = prepaid(Some(now + HOUR), false);
        assert_eq!(
            expiry_state(&(&i).into(), Duration::ZERO, at(now)),
            ExpiryState::NotApplicable
        );
        assert_eq!(
            expiring_soon_condition(ExpiryState::NotApplicable, "0s"),
            None
        );
        let mut postpaid = i.clone();
        postpaid.billing.as_mut().unwrap().mode = "postpaid".into();
        assert_eq!(
            expiry_state(&(&postpaid).into(), WINDOW, at(now)),
            ExpiryState::NotApplicable
        );
        let mut unbilled = i;
        unbilled.billing = None;
        assert_eq!(
            expiry_state(&(&unbilled).into(), WINDOW, at(now)),
            ExpiryState::NotApplicable
        );
    }

    #[test]
    fn the_condition_is_true_only_when_expiring_soon_and_names_the_end_time() {
        let soon = expiring_soon_condition(ExpiryState::Soon { end: at(1_000_000) }, "72h")
            .expect("a condition");
        assert_eq!(
            (soon.type_.as_str(), soon.status),
            (EXPIRING_SOON, ConditionStatus::True)
        );
        assert!(
            soon.message.contains("1970-01-12T13:46:40Z") && soon.message.contains("72h"),
            "{}",
            soon.message
        );
        let renewing = expiring_soon_condition(ExpiryState::AutoRenew { end: at(5) }, "72h")
            .expect("a condition");
        assert_eq!(
            (renewing.status, renewing.reason.as_str()),
            (ConditionStatus::False, "AutoRenewOn")
        );
    }

    #[test]
    fn the_event_note_names_the_end_time_and_the_window() {
        let note = expiring_soon_note(at(1_000_000), "72h");
        assert!(
            note.contains("1970-01-12T13:46:40Z") && note.contains("72h"),
            "{note}"
        );
    }
}
