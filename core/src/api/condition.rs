//! Status conditions shared by both resources, in the shape `kubectl wait`, kstatus, Flux and Argo CD
//! read (`type`, `status`, `reason`, `message`, `lastTransitionTime`, `observedGeneration`).

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `Ready` condition type: the resource reflects PPIO as of its last sync.
pub const READY: &str = "Ready";
/// The `Reconciling` condition type (kstatus): work is in progress or being retried.
pub const RECONCILING: &str = "Reconciling";
/// The `Stalled` condition type (kstatus): progress needs a change by the user.
pub const STALLED: &str = "Stalled";

/// One observation of the resource's state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`, `Reconciling`, `Stalled`, `PriceKnown` or `WithinBudget`.
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 316))]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A CamelCase word saying why, e.g. `Synced`, `AuthFailed`, `SecretNotFound`, `ApiUnavailable`.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
    /// What happened, for people, and what to do about it.
    #[schemars(length(max = 32768))]
    pub message: String,
    /// When `status` last changed.
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub last_transition_time: Timestamp,
    /// The `metadata.generation` this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
}

/// The value of a condition.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet.
    Unknown,
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

/// Builds the next list of conditions: each new condition replaces the one of its type, keeping the
/// old `lastTransitionTime` when its status did not change, so a repeated sync produces an identical
/// list (and therefore no write).
pub fn merge_conditions(previous: &[Condition], next: Vec<Condition>) -> Vec<Condition> {
    next.into_iter()
        .map(|mut condition| {
            if let Some(old) = previous.iter().find(|c| c.type_ == condition.type_)
                && old.status == condition.status
            {
                condition.last_transition_time = old.last_transition_time;
            }
            condition
        })
        .collect()
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(status: ConditionStatus, at: i64, reason: &str) -> Condition {
        Condition {
            type_: READY.into(),
            status,
            reason: reason.into(),
            message: String::new(),
            last_transition_time: Timestamp::from_second(at).unwrap(),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn an_unchanged_status_keeps_its_transition_time() {
        let previous = [condition(ConditionStatus::True, 100, "Synced")];
        let merged = merge_conditions(
            &previous,
            vec![condition(ConditionStatus::True, 200, "Synced")],
        );
        assert_eq!(merged, previous);
    }

    #[test]
    fn a_changed_status_takes_the_new_transition_time() {
        let previous = [condition(ConditionStatus::True, 100, "Synced")];
        let merged = merge_conditions(
            &previous,
            vec![condition(ConditionStatus::False, 200, "AuthFailed")],
        );
        assert_eq!(merged[0].last_transition_time.as_second(), 200);
    }

    #[test]
    fn conditions_serialize_as_kubernetes_expects() {
        let value = serde_json::to_value(condition(ConditionStatus::True, 0, "Synced")).unwrap();
        assert_eq!(value["type"], "Ready");
        assert_eq!(value["status"], "True");
        assert_eq!(value["lastTransitionTime"], "1970-01-01T00:00:00Z");
        assert_eq!(value["observedGeneration"], 1);
    }
}
