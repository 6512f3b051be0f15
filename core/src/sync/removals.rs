//! After a complete listing, what becomes of the mirrors whose instances it lacked. Time is what
//! this process itself observed, on its monotonic clock: `absentSince` (written by whichever replica
//! marked the mirror first, by its wall clock) is shown to people and never used for timing, so
//! neither a skew between the replicas' clocks nor a step of the wall clock can hasten a deletion.
//! - a mirror is deleted only when this process saw its instance missing from two complete listings
//!   **at least the view's sync interval apart** (no listing in between listing it); the first miss
//!   marks it absent unless it is marked already, and a reappearance clears the mark. So a burst of
//!   quick syncs (a spec edit, a refresh) cannot empty a view, and after a restart or a failover the
//!   count starts over;
//! - when one listing would delete more than half of a view's mirrors (and more than
//!   [`MASS_REMOVAL_MIN`]), or lacks every mirror of the view (whatever its size), the deletions wait
//!   until this process has seen the instances missing for the view's mass-removal grace period; the
//!   plan says how many are held and until when;
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

/// The mass-removal guard holds deletions of part of a view's mirrors only when more than this many
/// are due at once (a listing that lacks all of them is held whatever their number).
pub const MASS_REMOVAL_MIN: usize = 5;
/// The mirror's Ready reason while its instance is missing from the view's complete listings.
pub const NOT_LISTED: &str = "NotListed";

/// A mirror of the view whose instance a complete listing lacked, as this process observed it.
#[derive(Clone, Debug, PartialEq)]
pub struct Unlisted {
    /// The mirror's name.
    pub name: String,
    /// Whether it carries the absence mark already (`absentSince`, by whichever replica wrote it).
    pub marked: bool,
    /// How long ago, by this process's monotonic clock, an earlier complete listing lacked it first
    /// (with no listing since that listed it); `None` when this listing is the first this process
    /// saw lack it.
    pub missing_for: Option<Duration>,
}

/// What becomes of the mirrors whose instances a complete listing lacked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemovalPlan {
    /// Mirrors to mark absent: kept, and not marked yet.
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
    /// When the first of them will have been missing for the grace period: `now` plus what remains
    /// of it by this process's monotonic clock (whole seconds, rounded up).
    pub until: Timestamp,
}

/// Plans the mirrors of `view` whose instances a complete listing lacked (`unlisted`), out of
/// `mirrors` that the view has in all; `now` (the wall clock) only dates [`HeldRemovals::until`].
/// With mirroring disabled in the view, pass every mirror: all are deleted.
pub fn plan_removals(
    view: &GpuInstanceView,
    unlisted: Vec<Unlisted>,
    mirrors: usize,
    now: Timestamp,
) -> RemovalPlan {
    let mut plan = RemovalPlan::default();
    if !view.spec.mirror.enabled {
        plan.deletes = unlisted.into_iter().map(|u| u.name).collect();
        plan.deletes.sort();
        return plan;
    }
    let lacks_every_mirror = mirrors > 0 && unlisted.len() >= mirrors;
    let interval = view.spec.sync_interval();
    let deletes = view.spec.mirror.deletion_policy == DeletionPolicy::Delete;
    let (mut due, mut kept) = (Vec::new(), Vec::new());
    for mirror in unlisted {
        match mirror.missing_for {
            Some(missing) if deletes && missing >= interval => due.push((mirror, missing)),
            _ => kept.push(mirror),
        }
    }
    let grace = view.spec.mirror.mass_removal_grace_period();
    let mass = due.len() > MASS_REMOVAL_MIN && due.len() * 2 > mirrors;
    if !grace.is_zero() && !due.is_empty() && (mass || lacks_every_mirror) {
        let (gone, held): (Vec<_>, Vec<_>) =
            due.into_iter().partition(|(_, missing)| *missing >= grace);
        if let Some(longest) = held.iter().map(|(_, missing)| *missing).max() {
            plan.held = Some(HeldRemovals {
                count: held.len(),
                of: mirrors,
                until: held_until(now, grace - longest),
            });
        }
        kept.extend(held.into_iter().map(|(mirror, _)| mirror));
        plan.deletes
            .extend(gone.into_iter().map(|(mirror, _)| mirror.name));
    } else {
        plan.deletes
            .extend(due.into_iter().map(|(mirror, _)| mirror.name));
    }
    plan.kept = kept.len();
    plan.mark_absent = kept
        .into_iter()
        .filter(|mirror| !mirror.marked)
        .map(|mirror| mirror.name)
        .collect();
    plan.mark_absent.sort();
    plan.deletes.sort();
    plan
}

/// `now` plus `remaining`, rounded up to whole seconds (as the status shows times), so that the
/// time shown is never before the deletions may go.
fn held_until(now: Timestamp, remaining: Duration) -> Timestamp {
    let later = jiff::SignedDuration::try_from(remaining)
        .ok()
        .and_then(|remaining| now.checked_add(remaining).ok())
        .unwrap_or(now);
    let whole = mirror::whole_seconds(later);
    if whole == later {
        whole
    } else {
        whole
            .checked_add(jiff::SignedDuration::from_secs(1))
            .unwrap_or(whole)
    }
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
    // No fingerprint: the status it vouched for is no longer the mirror's.
    let annotations = BTreeMap::from([(
        mirror::ABSENT_SINCE_ANNOTATION.to_owned(),
        since.to_string(),
    )]);
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
             once the operator has seen it missing from two complete listings {} or more apart.",
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

    const MINUTE: Duration = Duration::from_secs(60);

    /// Mirrors `names`, marked or not, that this process saw missing for `missing_for`.
    fn unlisted(names: &[&str], marked: bool, missing_for: Option<Duration>) -> Vec<Unlisted> {
        names
            .iter()
            .map(|n| Unlisted {
                name: (*n).to_owned(),
                marked,
                missing_for,
            })
            .collect()
    }

    #[test]
    fn a_first_miss_marks_and_keeps() {
        let plan = plan_removals(&view(true), unlisted(&["m1"], false, None), 2, at(200));
        assert_eq!(plan.mark_absent, ["m1"]);
        assert!(plan.deletes.is_empty(), "one miss must not delete");
        assert_eq!(plan.kept, 1);
    }

    #[test]
    fn quick_syncs_never_remove_before_the_sync_interval_has_passed() {
        // A spec edit or a refresh syncs at once: two listings seconds apart.
        let soon = plan_removals(
            &view(true),
            unlisted(&["m1"], true, Some(Duration::from_secs(10))),
            2,
            at(210),
        );
        assert!(
            soon.deletes.is_empty(),
            "missing for 10 s of a 60 s interval"
        );
        assert!(soon.mark_absent.is_empty(), "already marked");
        assert_eq!(soon.kept, 1);

        let later = plan_removals(
            &view(true),
            unlisted(&["m1"], true, Some(MINUTE)),
            2,
            at(260),
        );
        assert_eq!(later.deletes, ["m1"]);
    }

    #[test]
    fn the_wall_clock_never_times_a_removal() {
        // Whatever the wall clock says (a year behind or ahead of the replica that marked the
        // mirror, a step of NTP), only this process's own observations count: its first listing
        // that lacks the instance deletes nothing and leaves the mark as it is, a listing less
        // than an interval later deletes nothing, one an interval later deletes.
        let year = 365 * 24 * 3600;
        for now in [at(200 - year), at(200), at(200 + year)] {
            let first = plan_removals(&view(true), unlisted(&["m1"], true, None), 2, now);
            assert_eq!(
                (first.deletes.len(), first.kept, first.mark_absent.len()),
                (0, 1, 0)
            );
            let early = plan_removals(
                &view(true),
                unlisted(&["m1"], true, Some(MINUTE - Duration::from_millis(1))),
                2,
                now,
            );
            assert!(early.deletes.is_empty(), "{early:?}");
            let due = plan_removals(&view(true), unlisted(&["m1"], true, Some(MINUTE)), 2, now);
            assert_eq!(due.deletes, ["m1"]);
        }
    }

    #[test]
    fn a_mirror_seen_missing_long_enough_but_unmarked_is_deleted_and_one_kept_is_marked() {
        // Its mark may have failed to be written, or been removed by someone.
        let plan = plan_removals(
            &view(true),
            [
                unlisted(&["due"], false, Some(MINUTE)),
                unlisted(&["young"], false, Some(Duration::from_secs(1))),
            ]
            .concat(),
            3,
            at(300),
        );
        assert_eq!(plan.deletes, ["due"]);
        assert_eq!(plan.mark_absent, ["young"]);
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|k| format!("m{k:02}")).collect()
    }

    fn missing_for(n: usize, missing: Duration) -> Vec<Unlisted> {
        names(n)
            .into_iter()
            .map(|name| Unlisted {
                name,
                marked: true,
                missing_for: Some(missing),
            })
            .collect()
    }

    const GRACE: Duration = Duration::from_secs(15 * 60);

    #[test]
    fn a_listing_that_would_remove_most_mirrors_waits_for_the_grace_period() {
        let view = view(true);
        let held = plan_removals(&view, missing_for(8, Duration::from_secs(100)), 10, at(300));
        assert!(held.deletes.is_empty(), "{:?}", held.deletes);
        assert_eq!(
            held.held,
            Some(HeldRemovals {
                count: 8,
                of: 10,
                until: at(300 + 15 * 60 - 100)
            })
        );
        assert_eq!(held.kept, 8);
        assert!(held.mark_absent.is_empty(), "marked already");

        let after_grace = plan_removals(&view, missing_for(8, GRACE), 10, at(200 + 15 * 60));
        assert_eq!(after_grace.deletes.len(), 8);
        assert_eq!(after_grace.held, None);
    }

    #[test]
    fn the_time_held_is_now_plus_the_remainder_rounded_up_whatever_the_wall_clock_says() {
        let view = view(true);
        let mut mirrors = missing_for(3, Duration::from_millis(90_500));
        mirrors[0].missing_for = Some(Duration::from_secs(60));
        for now in [at(300), at(1_000_000), at(4_000_000_000)] {
            let plan = plan_removals(&view, mirrors.clone(), 3, now);
            let until = plan.held.expect("held").until;
            // The longest missing goes first: 15 minutes less 90.5 s, rounded up.
            assert_eq!(
                until,
                now.checked_add(jiff::SignedDuration::from_secs(15 * 60 - 90))
                    .unwrap()
            );
        }
    }

    #[test]
    fn a_listing_that_lacks_every_mirror_waits_for_the_grace_period_whatever_the_view_size() {
        let view = view(true);
        for n in [1, 2, 5] {
            let held = plan_removals(&view, missing_for(n, MINUTE), n, at(300));
            assert!(held.deletes.is_empty(), "{n}: {:?}", held.deletes);
            assert_eq!(held.held.as_ref().map(|h| (h.count, h.of)), Some((n, n)));
            assert_eq!(held.kept, n);
            let after_grace = plan_removals(&view, missing_for(n, GRACE), n, at(300));
            assert_eq!((after_grace.deletes.len(), after_grace.held), (n, None));
        }
        // Lacking every mirror, some due and some seen missing for the first time: the due ones
        // are held too.
        let mut mixed = missing_for(2, MINUTE);
        mixed.extend(unlisted(&["new"], false, None));
        let plan = plan_removals(&view, mixed, 3, at(300));
        assert!(plan.deletes.is_empty(), "{:?}", plan.deletes);
        assert_eq!(plan.held.map(|h| h.count), Some(2));
        assert_eq!((plan.kept, plan.mark_absent), (3, vec!["new".to_owned()]));
    }

    #[test]
    fn the_guard_spares_small_and_partial_removals() {
        let view = view(true);
        // Five of six is not a mass removal: the listing still has one.
        assert_eq!(
            plan_removals(&view, missing_for(5, MINUTE), 6, at(300))
                .deletes
                .len(),
            5
        );
        // Six of twenty is not more than half.
        assert_eq!(
            plan_removals(&view, missing_for(6, MINUTE), 20, at(300))
                .deletes
                .len(),
            6
        );
    }

    #[test]
    fn a_zero_grace_period_turns_the_guard_off() {
        let mut view = view(true);
        view.spec.mirror.mass_removal_grace_period = "0s".into();
        let plan = plan_removals(&view, missing_for(10, MINUTE), 10, at(300));
        assert_eq!((plan.deletes.len(), plan.held), (10, None));
        let plan = plan_removals(&view, missing_for(1, MINUTE), 1, at(300));
        assert_eq!((plan.deletes.len(), plan.held), (1, None));
    }

    #[test]
    fn retained_mirrors_of_vanished_instances_are_never_deleted() {
        let mut view = view(true);
        view.spec.mirror.deletion_policy = DeletionPolicy::Retain;
        let much_later = plan_removals(
            &view,
            missing_for(3, Duration::from_secs(10_000_000)),
            3,
            at(10_000_000),
        );
        assert!(much_later.deletes.is_empty());
        assert_eq!((much_later.kept, much_later.held), (3, None));
    }

    #[test]
    fn disabling_mirroring_removes_every_mirror_of_the_view() {
        let plan = plan_removals(&view(false), unlisted(&["b", "a"], false, None), 2, at(100));
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
                &crate::sync::fixtures::unpriced(),
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
            assert!(
                !object
                    .annotations()
                    .contains_key(mirror::FINGERPRINT_ANNOTATION),
                "an absent mirror vouches for no record: one that comes back is written again"
            );
        }
    }
}
