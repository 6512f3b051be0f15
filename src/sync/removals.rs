//! After a complete listing, what becomes of the mirrors whose instances it lacked:
//! - a mirror is deleted only when its instance was missing from two consecutive complete listings
//!   **and** has been missing for at least the view's sync interval (the first miss marks it absent;
//!   a reappearance clears the mark), so a burst of quick syncs (a spec edit, a refresh) cannot
//!   empty a view;
//! - when one listing would delete more than half of a view's mirrors (and more than
//!   [`MASS_REMOVAL_MIN`]), the deletions wait until the instances have been missing for the view's
//!   mass-removal grace period; the plan says how many are held and until when;
//! - with `deletionPolicy: Retain` nothing is deleted for being missing: the mirror stays, marked;
//! - removals are planned against a complete listing only: a failed sync never reaches
//!   [`plan_removals`].

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use crate::api::condition::{self, Condition, ConditionStatus};
use crate::api::view::DeletionPolicy;
use crate::api::{GpuInstance, GpuInstanceStatus, GpuInstanceView};
use crate::mirror;

/// The mass-removal guard holds deletions only when more than this many are due at once.
pub const MASS_REMOVAL_MIN: usize = 5;
/// The mirror's Ready reason while its instance is missing from the view's complete listings.
pub const NOT_LISTED: &str = "NotListed";

/// What becomes of the mirrors whose instances a complete listing lacked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemovalPlan {
    /// Mirrors to mark absent: their instance is missing for the first time.
    pub mark_absent: Vec<String>,
    /// Mirrors to delete, in name order.
    pub deletes: Vec<String>,
    /// Mirrors kept although their instance is missing: marked now, waiting for the second listing
    /// or the sync interval, held by the mass-removal guard, or retained.
    pub kept: usize,
    /// Of those, the deletions the mass-removal guard holds back.
    pub held: Option<HeldRemovals>,
}

/// Deletions that the mass-removal guard holds back.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldRemovals {
    /// Mirrors that would have been deleted now.
    pub count: usize,
    /// The view's mirrors before this sync.
    pub of: usize,
    /// When the earliest of them has been missing for the grace period.
    pub until: Timestamp,
}

/// Plans the mirrors of `view` whose instances a complete listing lacked (`unlisted`: name, and when
/// it went missing if it was marked before), out of `mirrors` that the view has in all. With
/// mirroring disabled in the view, pass every mirror: all are deleted.
pub fn plan_removals(
    view: &GpuInstanceView,
    unlisted: Vec<(String, Option<Timestamp>)>,
    mirrors: usize,
    now: Timestamp,
) -> RemovalPlan {
    let mut plan = RemovalPlan::default();
    if !view.spec.mirror.enabled {
        plan.deletes = unlisted.into_iter().map(|(name, _)| name).collect();
        plan.deletes.sort();
        return plan;
    }
    let interval = view.spec.sync_interval();
    let mut due: Vec<(String, Timestamp)> = Vec::new();
    for (name, absent_since) in unlisted {
        match absent_since {
            Some(since)
                if view.spec.mirror.deletion_policy == DeletionPolicy::Delete
                    && missing_for(since, now) >= interval =>
            {
                due.push((name, since));
            }
            Some(_) => plan.kept += 1,
            None => {
                plan.kept += 1;
                plan.mark_absent.push(name);
            }
        }
    }
    let grace = view.spec.mirror.mass_removal_grace_period();
    if !grace.is_zero() && due.len() > MASS_REMOVAL_MIN && due.len() * 2 > mirrors {
        let (gone, held): (Vec<_>, Vec<_>) = due
            .into_iter()
            .partition(|(_, since)| missing_for(*since, now) >= grace);
        plan.deletes.extend(gone.into_iter().map(|(name, _)| name));
        if let Some(earliest) = held.iter().map(|(_, since)| *since).min() {
            plan.kept += held.len();
            plan.held = Some(HeldRemovals {
                count: held.len(),
                of: mirrors,
                until: mirror::whole_seconds(earliest + grace),
            });
        }
    } else {
        plan.deletes.extend(due.into_iter().map(|(name, _)| name));
    }
    plan.mark_absent.sort();
    plan.deletes.sort();
    plan
}

/// How long an instance has been missing; zero when `since` is in the future (clock steps).
fn missing_for(since: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO)
}

/// The mirror `current` marked absent at `now`: its object with the absence annotation (and only
/// the operator's own labels and annotations, which is what it applies), and its status as last
/// listed with `absentSince` and Ready Unknown saying what happens next.
pub fn absent_mirror(
    view: &GpuInstanceView,
    current: &GpuInstance,
    now: Timestamp,
) -> (GpuInstance, GpuInstanceStatus) {
    let since = mirror::whole_seconds(now);
    let labels = current
        .labels()
        .iter()
        .filter(|(k, _)| mirror::OWN_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut annotations: BTreeMap<String, String> = current
        .annotations()
        .iter()
        .filter(|(k, _)| k.as_str() == mirror::FINGERPRINT_ANNOTATION)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.insert(
        mirror::ABSENT_SINCE_ANNOTATION.to_owned(),
        since.to_string(),
    );
    let object = GpuInstance {
        metadata: ObjectMeta {
            name: current.metadata.name.clone(),
            namespace: current.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: crate::sync::plan::owner_reference(view).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: current.spec.clone(),
        status: None,
    };
    let status = current.status.clone().unwrap_or_default();
    let message = match view.spec.mirror.deletion_policy {
        DeletionPolicy::Delete => format!(
            "The instance is missing from the view's last complete listing; this object is removed \
             once the next complete listing lacks it too, {} or more after it went missing.",
            view.spec.sync_interval.trim()
        ),
        DeletionPolicy::Retain => "The instance is missing from the view's last complete listing; \
             this object is kept as last listed (spec.mirror.deletionPolicy: Retain)."
            .to_owned(),
    };
    let not_listed = Condition {
        type_: condition::READY.to_owned(),
        status: ConditionStatus::Unknown,
        reason: NOT_LISTED.to_owned(),
        message,
        last_transition_time: since,
        observed_generation: None,
    };
    // Ready changes; the other conditions (e.g. Truncated) still describe the record as listed.
    let mut conditions: Vec<Condition> = status
        .conditions
        .iter()
        .filter(|c| c.type_ != condition::READY)
        .cloned()
        .collect();
    conditions.insert(0, not_listed);
    let status = GpuInstanceStatus {
        absent_since: Some(since),
        conditions: condition::merge_conditions(&status.conditions, conditions),
        ..status
    };
    (object, status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::fixtures::*;
    use crate::sync::plan::plan_instance;

    fn unlisted(names: &[&str], since: Option<i64>) -> Vec<(String, Option<Timestamp>)> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), since.map(at)))
            .collect()
    }

    #[test]
    fn a_first_miss_marks_and_keeps() {
        let plan = plan_removals(&view(true), unlisted(&["m1"], None), 2, at(200));
        assert_eq!(plan.mark_absent, ["m1"]);
        assert!(plan.deletes.is_empty(), "one miss must not delete");
        assert_eq!(plan.kept, 1);
    }

    #[test]
    fn quick_syncs_never_remove_before_the_sync_interval_has_passed() {
        // A spec edit or a refresh syncs at once: two listings seconds apart.
        let soon = plan_removals(&view(true), unlisted(&["m1"], Some(200)), 2, at(210));
        assert!(
            soon.deletes.is_empty(),
            "missing for 10 s of a 60 s interval"
        );
        assert!(soon.mark_absent.is_empty(), "already marked");
        assert_eq!(soon.kept, 1);

        let later = plan_removals(&view(true), unlisted(&["m1"], Some(200)), 2, at(260));
        assert_eq!(later.deletes, ["m1"]);
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|k| format!("m{k:02}")).collect()
    }

    fn missing_since(n: usize, since: i64) -> Vec<(String, Option<Timestamp>)> {
        names(n)
            .into_iter()
            .map(|name| (name, Some(at(since))))
            .collect()
    }

    #[test]
    fn a_listing_that_would_remove_most_mirrors_waits_for_the_grace_period() {
        let view = view(true);
        let held = plan_removals(&view, missing_since(8, 200), 10, at(300));
        assert!(held.deletes.is_empty(), "{:?}", held.deletes);
        assert_eq!(
            held.held,
            Some(HeldRemovals {
                count: 8,
                of: 10,
                until: at(200 + 15 * 60)
            })
        );
        assert_eq!(held.kept, 8);

        let after_grace = plan_removals(&view, missing_since(8, 200), 10, at(200 + 15 * 60));
        assert_eq!(after_grace.deletes.len(), 8);
        assert_eq!(after_grace.held, None);
    }

    #[test]
    fn the_guard_spares_small_and_partial_removals() {
        let view = view(true);
        // Five is not a mass removal, even if it is all of them.
        assert_eq!(
            plan_removals(&view, missing_since(5, 200), 5, at(300))
                .deletes
                .len(),
            5
        );
        // Six of twenty is not more than half.
        assert_eq!(
            plan_removals(&view, missing_since(6, 200), 20, at(300))
                .deletes
                .len(),
            6
        );
    }

    #[test]
    fn a_zero_grace_period_turns_the_guard_off() {
        let mut view = view(true);
        view.spec.mirror.mass_removal_grace_period = "0s".into();
        let plan = plan_removals(&view, missing_since(10, 200), 10, at(300));
        assert_eq!((plan.deletes.len(), plan.held), (10, None));
    }

    #[test]
    fn retained_mirrors_of_vanished_instances_are_never_deleted() {
        let mut view = view(true);
        view.spec.mirror.deletion_policy = DeletionPolicy::Retain;
        let much_later = plan_removals(&view, missing_since(3, 200), 3, at(10_000_000));
        assert!(much_later.deletes.is_empty());
        assert_eq!(much_later.kept, 3);
    }

    #[test]
    fn disabling_mirroring_removes_every_mirror_of_the_view() {
        let plan = plan_removals(&view(false), unlisted(&["b", "a"], None), 2, at(100));
        assert_eq!(plan.deletes, ["a", "b"]);
        assert!(plan.mark_absent.is_empty());
    }

    #[test]
    fn a_mirror_marked_absent_keeps_its_record_and_says_what_happens_next() {
        for (policy, words) in [
            (DeletionPolicy::Delete, "removed once"),
            (DeletionPolicy::Retain, "Retain"),
        ] {
            let mut view = view(true);
            view.spec.mirror.deletion_policy = policy;
            let listed = desired(plan_instance(
                &view,
                None,
                &instance("aa01", "running", "r", 1),
                None,
                at(100),
            ));
            let mut current = listed.object.clone();
            current.status = Some(listed.status.clone());
            current.labels_mut().insert("team".into(), "theirs".into());
            let (object, status) = absent_mirror(&view, &current, at(200));
            assert_eq!(status.absent_since, Some(at(200)));
            assert_eq!(
                status.region, listed.status.region,
                "the record as last listed"
            );
            let ready = condition::find(&status.conditions, condition::READY).unwrap();
            assert_eq!(
                (ready.status, ready.reason.as_str()),
                (ConditionStatus::Unknown, NOT_LISTED)
            );
            assert!(ready.message.contains(words), "{}", ready.message);
            assert_eq!(
                object.annotations()[mirror::ABSENT_SINCE_ANNOTATION],
                "1970-01-01T00:03:20Z"
            );
            assert!(
                !object.labels().contains_key("team"),
                "only our own labels are applied"
            );
            assert_eq!(object.spec, listed.object.spec);
        }
    }
}
