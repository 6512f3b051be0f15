//! Deciding what a sync writes: given a complete PPIO listing and the mirrors a view already has, which
//! `GpuInstance` objects to create, update, mark absent or delete, and what the view's status becomes.
//!
//! Pure functions, no I/O: the controller fetches, calls [`plan_mirror`], and carries the plan out. The
//! rules that protect what is mirrored live here, where unit tests pin them down:
//! - an object whose content would not change is not written at all;
//! - an object is deleted only when its instance was missing from two consecutive complete listings
//!   **and** has been missing for at least the view's sync interval (the first miss marks it with
//!   `status.absentSince`; a reappearance clears the mark), so a burst of quick syncs (a spec edit, a
//!   refresh) cannot empty a view;
//! - when one listing would delete more than half of a view's mirrors (and more than
//!   [`MASS_REMOVAL_MIN`]), the deletions wait until the instances have been missing for the view's
//!   mass-removal grace period; the plan says how many are held and until when;
//! - with `deletionPolicy: Retain` nothing is deleted for being missing: the mirror stays, marked;
//! - only a complete listing is ever planned against: a failed sync never reaches this module.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::api::condition::{self, Condition, ConditionStatus};
use crate::api::view::DeletionPolicy;
use crate::api::{
    GpuInstance, GpuInstanceSpec, GpuInstanceStatus, GpuInstanceView, GpuInstanceViewStatus,
};
use crate::mirror;
use crate::ppio::Instance;

/// Distinct statuses or regions kept in the view's counts; the rest add up under [`OTHER`].
pub const MAX_COUNT_KEYS: usize = 32;
/// The key that sums up statuses or regions beyond [`MAX_COUNT_KEYS`].
pub const OTHER: &str = "other";
/// The mass-removal guard holds deletions only when more than this many are due at once.
pub const MASS_REMOVAL_MIN: usize = 5;
/// The view's Ready reason while the mass-removal guard holds deletions back.
pub const MASS_REMOVAL_HELD: &str = "MassRemovalHeld";
/// The mirror's Ready reason while its instance is missing from the view's complete listings.
pub const NOT_LISTED: &str = "NotListed";

/// One write of a mirror: its metadata and spec when they change (server-side apply on the object),
/// and its status when it changes (server-side apply on the status subresource).
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorWrite {
    /// Object name.
    pub name: String,
    /// The object (metadata, spec) to apply, when the object is new or its labels, owner or spec changed.
    pub object: Option<GpuInstance>,
    /// The status to apply, when it changed.
    pub status: Option<GpuInstanceStatus>,
}

/// What one sync will do to the view's mirrors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MirrorPlan {
    /// Objects to create or update, in name order.
    pub writes: Vec<MirrorWrite>,
    /// Objects to delete, in name order.
    pub deletes: Vec<String>,
    /// How many writes create a new object.
    pub created: usize,
    /// Mirrors left as they are.
    pub unchanged: usize,
    /// Writes that mark a mirror absent (its instance missing from a complete listing the first time).
    pub newly_absent: usize,
    /// Mirrors kept although their instance is missing from complete listings: waiting for the
    /// second listing or the sync interval, held by the mass-removal guard, or retained.
    pub pending_removal: usize,
    /// Of those, the deletions the mass-removal guard holds back, and when the first of them may go.
    pub held: Option<HeldRemovals>,
    /// Mirrors the view keeps after the plan is carried out.
    pub mirrored: usize,
}

/// Deletions that the mass-removal guard holds back.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldRemovals {
    /// Mirrors that would have been deleted now.
    pub count: usize,
    /// The view's mirrors before this plan.
    pub of: usize,
    /// When the earliest of them has been missing for the grace period.
    pub until: Timestamp,
}

/// Plans the mirrors of `view` for a complete `listing`, given the objects the view already `existing`
/// owns. With mirroring disabled in the view, every existing mirror is deleted.
pub fn plan_mirror(
    view: &GpuInstanceView,
    listing: &[Instance],
    existing: &[GpuInstance],
    now: Timestamp,
) -> MirrorPlan {
    let mut plan = MirrorPlan::default();
    let mut existing_by_name: HashMap<String, &GpuInstance> =
        existing.iter().map(|o| (o.name_any(), o)).collect();

    if !view.spec.mirror.enabled {
        plan.deletes = existing_by_name.into_keys().collect();
        plan.deletes.sort();
        return plan;
    }

    let view_name = view.name_any();
    for instance in listing {
        let name = mirror::object_name(&view_name, instance.id.as_str());
        let current = existing_by_name.remove(&name);
        let desired_object = desired_object(view, &name, instance);
        let previous_conditions = current
            .and_then(|o| o.status.as_ref())
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let desired_status = mirror::status(instance, &view.spec.mirror, previous_conditions, now);

        let object_changed = current.is_none_or(|o| !same_object(o, &desired_object));
        let status_changed = current.is_none_or(|o| o.status.as_ref() != Some(&desired_status));
        if current.is_none() {
            plan.created += 1;
        }
        plan.mirrored += 1;
        if object_changed || status_changed {
            plan.writes.push(MirrorWrite {
                name,
                object: object_changed.then_some(desired_object),
                status: status_changed.then_some(desired_status),
            });
        } else {
            plan.unchanged += 1;
        }
    }

    // What is left exists in the cluster but not in this complete listing.
    let interval = view.spec.sync_interval();
    let mut due: Vec<(String, Timestamp)> = Vec::new();
    for (name, object) in existing_by_name {
        let status = object.status.clone().unwrap_or_default();
        match status.absent_since {
            Some(since)
                if view.spec.mirror.deletion_policy == DeletionPolicy::Delete
                    && missing_for(since, now) >= interval =>
            {
                due.push((name, since));
            }
            Some(_) => {
                plan.pending_removal += 1;
                plan.mirrored += 1;
                plan.unchanged += 1;
            }
            None => {
                plan.pending_removal += 1;
                plan.newly_absent += 1;
                plan.mirrored += 1;
                plan.writes.push(MirrorWrite {
                    name,
                    object: None,
                    status: Some(marked_absent(view, status, now)),
                });
            }
        }
    }
    let grace = view.spec.mirror.mass_removal_grace_period();
    let existing_count = existing.len();
    if !grace.is_zero() && due.len() > MASS_REMOVAL_MIN && due.len() * 2 > existing_count {
        let (gone, held): (Vec<_>, Vec<_>) = due
            .into_iter()
            .partition(|(_, since)| missing_for(*since, now) >= grace);
        plan.deletes.extend(gone.into_iter().map(|(name, _)| name));
        if let Some(earliest) = held.iter().map(|(_, since)| *since).min() {
            plan.pending_removal += held.len();
            plan.mirrored += held.len();
            plan.unchanged += held.len();
            plan.held = Some(HeldRemovals {
                count: held.len(),
                of: existing_count,
                until: mirror::whole_seconds(earliest + grace),
            });
        }
    } else {
        plan.deletes.extend(due.into_iter().map(|(name, _)| name));
    }
    plan.writes.sort_by(|a, b| a.name.cmp(&b.name));
    plan.deletes.sort();
    plan
}

/// How long an instance has been missing; zero when `since` is in the future (clock steps).
fn missing_for(since: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO)
}

/// The status of a mirror whose instance a complete listing lacks for the first time: the remote
/// record as last listed, `absentSince`, and Ready Unknown saying what happens next.
fn marked_absent(
    view: &GpuInstanceView,
    status: GpuInstanceStatus,
    now: Timestamp,
) -> GpuInstanceStatus {
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
        last_transition_time: mirror::whole_seconds(now),
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
    GpuInstanceStatus {
        absent_since: Some(mirror::whole_seconds(now)),
        conditions: condition::merge_conditions(&status.conditions, conditions),
        ..status
    }
}

/// The object (metadata and spec) that mirrors `instance` for `view`.
fn desired_object(view: &GpuInstanceView, name: &str, instance: &Instance) -> GpuInstance {
    let view_name = view.name_any();
    GpuInstance {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: view.namespace(),
            labels: Some(mirror::labels(&view_name, instance)),
            owner_references: owner_reference(view).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: GpuInstanceSpec {
            instance_id: mirror::spec_instance_id(instance.id.as_str()),
            view: view_name,
        },
        status: None,
    }
}

/// The owner reference every mirror carries, so deleting the view deletes its mirrors.
pub fn owner_reference(view: &GpuInstanceView) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: GpuInstanceView::api_version(&()).into_owned(),
        kind: GpuInstanceView::kind(&()).into_owned(),
        name: view.name_any(),
        uid: view.uid()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Whether `current` already has what `desired` asks of metadata and spec. Labels others added are
/// theirs to keep, so only ours are compared.
fn same_object(current: &GpuInstance, desired: &GpuInstance) -> bool {
    let labels = current.labels();
    let labels_match = desired
        .labels()
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let owners = current.owner_references();
    let owner_match = desired
        .owner_references()
        .iter()
        .all(|want| owners.iter().any(|have| have == want));
    // Labels we set earlier but no longer want (e.g. a region that became empty) must go.
    let no_stale_labels = [
        mirror::REGION_LABEL,
        mirror::STATUS_LABEL,
        mirror::BILLING_MODE_LABEL,
    ]
    .iter()
    .all(|k| desired.labels().contains_key(*k) || !labels.contains_key(*k));
    labels_match && owner_match && no_stale_labels && current.spec == desired.spec
}

/// Counts over a complete listing, as the view's status shows them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Instances listed.
    pub instances: i64,
    /// Instances whose remote status is `running`.
    pub running: i64,
    /// GPUs over all instances.
    pub gpus: i64,
    /// Instances per remote status, bounded.
    pub by_status: BTreeMap<String, i64>,
    /// Instances per region, bounded.
    pub by_region: BTreeMap<String, i64>,
}

/// Summarises a complete listing.
pub fn summarize(listing: &[Instance]) -> Summary {
    let mut by_status = BTreeMap::new();
    let mut by_region = BTreeMap::new();
    let mut running = 0;
    let mut gpus = 0i64;
    for instance in listing {
        let state = instance.status.as_ref().map_or("", |s| s.status.as_str());
        if state == mirror::RUNNING {
            running += 1;
        }
        *by_status.entry(count_key(state)).or_insert(0) += 1;
        *by_region.entry(count_key(&instance.region)).or_insert(0) += 1;
        let gpu_num = instance.resource_specs.as_ref().map_or(0, |r| r.gpu_num);
        gpus = gpus.saturating_add(gpu_num.max(0));
    }
    Summary {
        instances: listing.len() as i64,
        running,
        gpus,
        by_status: bounded(by_status),
        by_region: bounded(by_region),
    }
}

fn count_key(value: &str) -> String {
    if value.is_empty() {
        "unknown".to_owned()
    } else {
        value.chars().take(63).collect()
    }
}

/// Keeps the largest [`MAX_COUNT_KEYS`] entries and sums the rest under [`OTHER`].
fn bounded(counts: BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    if counts.len() <= MAX_COUNT_KEYS {
        return counts;
    }
    let mut entries: Vec<_> = counts.into_iter().collect();
    entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rest: i64 = entries[MAX_COUNT_KEYS..].iter().map(|(_, n)| n).sum();
    let mut kept: BTreeMap<_, _> = entries.into_iter().take(MAX_COUNT_KEYS).collect();
    *kept.entry(OTHER.to_owned()).or_insert(0) += rest;
    kept
}

/// Why a sync did not complete: the Ready condition's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// The Secret named by the view does not exist.
    SecretNotFound,
    /// The Secret has no such key.
    SecretKeyNotFound,
    /// The operator may not read the Secret.
    SecretForbidden,
    /// Reading the Secret failed for another reason.
    SecretUnavailable,
    /// The Secret's value is not a usable API key.
    InvalidApiKey,
    /// PPIO refused the key (401, 403).
    AuthFailed,
    /// `spec.endpoint` is not on the operator's allow-list.
    EndpointNotAllowed,
    /// The spec cannot be used (e.g. an endpoint that is not a URL).
    InvalidSpec,
    /// PPIO rejected the request (another 4xx).
    RequestRejected,
    /// The PPIO client could not be set up for the endpoint.
    InvalidConfig,
    /// PPIO answered 429.
    RateLimited,
    /// PPIO answered 5xx, timed out or could not be reached.
    ApiUnavailable,
    /// PPIO's answer was malformed or inconsistent, so the listing is not complete.
    InvalidResponse,
    /// Listing the view's GpuInstances from the Kubernetes API failed.
    ListFailed,
    /// Writing GpuInstances to the Kubernetes API failed.
    WriteFailed,
}

impl FailureReason {
    /// The reason as the condition shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::SecretNotFound => "SecretNotFound",
            FailureReason::SecretKeyNotFound => "SecretKeyNotFound",
            FailureReason::SecretForbidden => "SecretForbidden",
            FailureReason::SecretUnavailable => "SecretUnavailable",
            FailureReason::InvalidApiKey => "InvalidApiKey",
            FailureReason::AuthFailed => "AuthFailed",
            FailureReason::EndpointNotAllowed => "EndpointNotAllowed",
            FailureReason::InvalidSpec => "InvalidSpec",
            FailureReason::RequestRejected => "RequestRejected",
            FailureReason::InvalidConfig => "InvalidConfig",
            FailureReason::RateLimited => "RateLimited",
            FailureReason::ApiUnavailable => "ApiUnavailable",
            FailureReason::InvalidResponse => "InvalidResponse",
            FailureReason::ListFailed => "ListFailed",
            FailureReason::WriteFailed => "WriteFailed",
        }
    }

    /// Whether only a change by the user (the view, its Secret, the operator's settings, the PPIO
    /// account) can fix it: kstatus `Stalled`. The others pass with time: `Reconciling`.
    pub fn needs_user_action(self) -> bool {
        matches!(
            self,
            FailureReason::SecretNotFound
                | FailureReason::SecretKeyNotFound
                | FailureReason::SecretForbidden
                | FailureReason::InvalidApiKey
                | FailureReason::AuthFailed
                | FailureReason::EndpointNotAllowed
                | FailureReason::InvalidSpec
                | FailureReason::RequestRejected
                | FailureReason::InvalidConfig
        )
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a sync did not complete, as the view's conditions report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncFailure {
    /// The condition reason.
    pub reason: FailureReason,
    /// What happened and what to do, safe to show (never holds the API key).
    pub message: String,
}

/// The view's status after a complete sync whose plan was carried out.
pub fn synced_status(
    view: &GpuInstanceView,
    summary: &Summary,
    plan: &MirrorPlan,
    pages: u32,
    now: Timestamp,
) -> GpuInstanceViewStatus {
    let previous = view.status.clone().unwrap_or_default();
    let mut message = format!(
        "Listed {} instance{} in {} page{}",
        summary.instances,
        plural(summary.instances),
        pages,
        plural(i64::from(pages))
    );
    if view.spec.mirror.enabled {
        message.push_str(&format!(
            "; {} mirrored ({} created, {} updated, {} removed",
            plan.mirrored,
            plan.created,
            plan.writes.len() - plan.created - plan.newly_absent,
            plan.deletes.len()
        ));
        if plan.pending_removal > 0 {
            message.push_str(&format!(
                ", {} kept although missing from complete listings",
                plan.pending_removal
            ));
        }
        message.push(')');
    } else {
        message.push_str("; mirroring is disabled");
    }
    message.push('.');
    let mut reason = "Synced";
    if let Some(held) = &plan.held {
        reason = MASS_REMOVAL_HELD;
        message.push_str(&format!(
            " Removing {} of this view's {} mirrors at once is held until {} (the mass-removal guard, \
             spec.mirror.massRemovalGracePeriod {}): their instances are missing from complete \
             listings. If PPIO lists them again by then, nothing is removed.",
            held.count,
            held.of,
            held.until,
            view.spec.mirror.mass_removal_grace_period.trim()
        ));
    }
    let generation = view.metadata.generation;
    GpuInstanceViewStatus {
        observed_generation: generation,
        conditions: condition::merge_conditions(
            &previous.conditions,
            vec![
                new_condition(condition::READY, true, reason, &message, generation, now),
                new_condition(
                    condition::RECONCILING,
                    false,
                    "Synced",
                    "The last sync completed.",
                    generation,
                    now,
                ),
                new_condition(
                    condition::STALLED,
                    false,
                    "Synced",
                    "The last sync completed.",
                    generation,
                    now,
                ),
            ],
        ),
        last_sync_time: Some(mirror::whole_seconds(now)),
        last_successful_sync_time: Some(mirror::whole_seconds(now)),
        instance_count: Some(summary.instances),
        running_count: Some(summary.running),
        gpu_count: Some(summary.gpus),
        instances_by_status: summary.by_status.clone(),
        instances_by_region: summary.by_region.clone(),
        mirrored_count: Some(plan.mirrored as i64),
        pending_removal_count: Some(plan.pending_removal as i64),
        last_handled_refresh: refresh_requested(view),
    }
}

/// The view's status after a sync that failed: the failure in the conditions, and everything else
/// (counts, last successful sync) as the last complete sync left it.
pub fn failed_status(
    view: &GpuInstanceView,
    failure: &SyncFailure,
    now: Timestamp,
) -> GpuInstanceViewStatus {
    let previous = view.status.clone().unwrap_or_default();
    let generation = view.metadata.generation;
    let needs_user_action = failure.reason.needs_user_action();
    let (reconciling, stalled) = if needs_user_action {
        (
            "Waiting for a change to the view, its Secret or the operator's settings; retrying periodically.",
            failure.message.as_str(),
        )
    } else {
        (failure.message.as_str(), "Retrying with backoff.")
    };
    GpuInstanceViewStatus {
        observed_generation: generation,
        conditions: condition::merge_conditions(
            &previous.conditions,
            vec![
                new_condition(
                    condition::READY,
                    false,
                    failure.reason.as_str(),
                    &failure.message,
                    generation,
                    now,
                ),
                new_condition(
                    condition::RECONCILING,
                    !needs_user_action,
                    failure.reason.as_str(),
                    reconciling,
                    generation,
                    now,
                ),
                new_condition(
                    condition::STALLED,
                    needs_user_action,
                    failure.reason.as_str(),
                    stalled,
                    generation,
                    now,
                ),
            ],
        ),
        last_sync_time: Some(mirror::whole_seconds(now)),
        last_handled_refresh: refresh_requested(view),
        ..previous
    }
}

/// The view's status while it is suspended: nothing is listed or changed; Ready keeps its value and
/// says why nothing moves.
pub fn suspended_status(view: &GpuInstanceView, now: Timestamp) -> GpuInstanceViewStatus {
    let previous = view.status.clone().unwrap_or_default();
    let generation = view.metadata.generation;
    // Suspension changes nothing remote or mirrored, so Ready keeps its value; the reason says why
    // nothing moves.
    let message =
        "Syncing is suspended (spec.suspend); mirrored instances are kept as last synced.";
    let mut ready = new_condition(
        condition::READY,
        false,
        "Suspended",
        message,
        generation,
        now,
    );
    ready.status = condition::find(&previous.conditions, condition::READY)
        .map_or(ConditionStatus::Unknown, |c| c.status);
    GpuInstanceViewStatus {
        observed_generation: generation,
        conditions: condition::merge_conditions(
            &previous.conditions,
            vec![
                ready,
                new_condition(
                    condition::RECONCILING,
                    false,
                    "Suspended",
                    message,
                    generation,
                    now,
                ),
                new_condition(
                    condition::STALLED,
                    false,
                    "Suspended",
                    message,
                    generation,
                    now,
                ),
            ],
        ),
        ..previous
    }
}

/// The value of the refresh annotation, if any.
pub fn refresh_requested(view: &GpuInstanceView) -> Option<String> {
    view.annotations()
        .get(crate::api::view::REFRESH_ANNOTATION)
        .map(|v| v.chars().take(256).collect())
}

fn new_condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: ConditionStatus::from(status),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: mirror::whole_seconds(now),
        observed_generation: generation,
    }
}

fn plural(n: i64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::view::GpuInstanceViewSpec;
    use crate::ppio::{InstanceId, InstanceStatus, ResourceSpecs};

    fn view(mirror: bool) -> GpuInstanceView {
        let mut spec: GpuInstanceViewSpec = serde_json::from_value(serde_json::json!({
            "credentials": { "secretRef": { "name": "ppio" } }
        }))
        .unwrap();
        spec.mirror.enabled = mirror;
        let mut view = GpuInstanceView::new("team-a", spec);
        view.metadata.namespace = Some("ml".into());
        view.metadata.uid = Some("0000-view-uid".into());
        view.metadata.generation = Some(3);
        view
    }

    fn instance(id: &str, state: &str, region: &str, gpus: i64) -> Instance {
        let mut i = Instance::new(InstanceId::new(id).unwrap());
        i.region = region.into();
        i.status = Some(InstanceStatus {
            status: state.into(),
            ..Default::default()
        });
        i.resource_specs = Some(ResourceSpecs {
            gpu_num: gpus,
            ..Default::default()
        });
        i
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    /// What the cluster holds after `plan` is carried out on `existing`.
    fn carry_out(existing: &[GpuInstance], plan: &MirrorPlan) -> Vec<GpuInstance> {
        let mut objects: BTreeMap<String, GpuInstance> =
            existing.iter().map(|o| (o.name_any(), o.clone())).collect();
        for write in &plan.writes {
            let object = objects.entry(write.name.clone()).or_insert_with(|| {
                write
                    .object
                    .clone()
                    .expect("a new mirror is created with its object")
            });
            if let Some(desired) = &write.object {
                object.metadata.labels = desired.metadata.labels.clone();
                object.metadata.owner_references = desired.metadata.owner_references.clone();
                object.spec = desired.spec.clone();
            }
            if let Some(status) = &write.status {
                object.status = Some(status.clone());
            }
        }
        for name in &plan.deletes {
            objects.remove(name);
        }
        objects.into_values().collect()
    }

    #[test]
    fn a_first_listing_creates_one_owned_labelled_mirror_per_instance() {
        let listing = [
            instance("aa01", "running", "cn-east-1", 2),
            instance("aa02", "exited", "us-west-1", 1),
        ];
        let plan = plan_mirror(&view(true), &listing, &[], at(100));
        assert_eq!(plan.created, 2);
        assert_eq!(plan.writes.len(), 2);
        assert!(plan.deletes.is_empty());
        let first = plan.writes[0].object.as_ref().unwrap();
        assert_eq!(first.name_any(), "team-a-aa01");
        assert_eq!(first.namespace().as_deref(), Some("ml"));
        assert_eq!(first.spec.instance_id, "aa01");
        assert_eq!(first.labels()[mirror::STATUS_LABEL], "running");
        let owner = &first.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("GpuInstanceView", "0000-view-uid")
        );
        assert_eq!(owner.controller, Some(true));
        assert!(plan.writes.iter().all(|w| w.status.is_some()));
    }

    #[test]
    fn an_unchanged_listing_writes_nothing() {
        let listing = [instance("aa01", "running", "cn-east-1", 2)];
        let first = plan_mirror(&view(true), &listing, &[], at(100));
        let cluster = carry_out(&[], &first);
        let second = plan_mirror(&view(true), &listing, &cluster, at(200));
        assert_eq!(second.writes, vec![]);
        assert_eq!(second.deletes, Vec::<String>::new());
        assert_eq!(second.unchanged, 1);
    }

    #[test]
    fn a_remote_status_change_rewrites_status_and_labels() {
        let cluster = carry_out(
            &[],
            &plan_mirror(
                &view(true),
                &[instance("aa01", "running", "cn-east-1", 2)],
                &[],
                at(100),
            ),
        );
        let plan = plan_mirror(
            &view(true),
            &[instance("aa01", "exited", "cn-east-1", 2)],
            &cluster,
            at(200),
        );
        assert_eq!(plan.writes.len(), 1);
        let write = &plan.writes[0];
        assert_eq!(
            write.object.as_ref().unwrap().labels()[mirror::STATUS_LABEL],
            "exited"
        );
        let ready = &write.status.as_ref().unwrap().conditions[0];
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.last_transition_time, at(200));
        assert_eq!(plan.created, 0);
    }

    #[test]
    fn a_missing_instance_is_removed_only_after_two_complete_listings_lack_it() {
        let both = [
            instance("aa01", "running", "r", 1),
            instance("aa02", "running", "r", 1),
        ];
        let only_first = [instance("aa01", "running", "r", 1)];
        let cluster = carry_out(&[], &plan_mirror(&view(true), &both, &[], at(100)));

        let first_miss = plan_mirror(&view(true), &only_first, &cluster, at(200));
        assert!(first_miss.deletes.is_empty(), "one miss must not delete");
        assert_eq!(first_miss.pending_removal, 1);
        let marked = &first_miss.writes[0];
        assert_eq!(marked.name, "team-a-aa02");
        assert!(marked.object.is_none());
        let marked_status = marked.status.as_ref().unwrap();
        assert_eq!(marked_status.absent_since, Some(at(200)));
        let ready = condition::find(&marked_status.conditions, condition::READY).unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::Unknown, "NotListed")
        );
        let cluster = carry_out(&cluster, &first_miss);

        let second_miss = plan_mirror(&view(true), &only_first, &cluster, at(300));
        assert_eq!(second_miss.deletes, ["team-a-aa02"]);
        assert!(second_miss.writes.is_empty());
        assert_eq!(second_miss.mirrored, 1);
    }

    #[test]
    fn an_instance_that_reappears_loses_its_absence_mark() {
        let listing = [instance("aa01", "running", "r", 1)];
        let cluster = carry_out(&[], &plan_mirror(&view(true), &listing, &[], at(100)));
        let cluster = carry_out(&cluster, &plan_mirror(&view(true), &[], &cluster, at(200)));
        assert!(cluster[0].status.as_ref().unwrap().absent_since.is_some());

        let back = plan_mirror(&view(true), &listing, &cluster, at(300));
        assert!(back.deletes.is_empty());
        assert_eq!(back.writes.len(), 1);
        let back_status = back.writes[0].status.as_ref().unwrap();
        assert_eq!(back_status.absent_since, None);
        let ready = condition::find(&back_status.conditions, condition::READY).unwrap();
        assert_eq!(
            ready.status,
            ConditionStatus::True,
            "Ready again once listed"
        );
        let cluster = carry_out(&cluster, &back);
        assert!(
            plan_mirror(&view(true), &[], &cluster, at(400))
                .deletes
                .is_empty(),
            "after reappearing, one new miss must not delete"
        );
    }

    #[test]
    fn disabling_mirroring_removes_every_mirror_of_the_view() {
        let listing = [instance("aa01", "running", "r", 1)];
        let cluster = carry_out(&[], &plan_mirror(&view(true), &listing, &[], at(100)));
        let plan = plan_mirror(&view(false), &listing, &cluster, at(200));
        assert_eq!(plan.deletes, ["team-a-aa01"]);
        assert!(plan.writes.is_empty());
        assert_eq!(plan.mirrored, 0);
    }

    #[test]
    fn labels_added_by_others_do_not_cause_writes() {
        let listing = [instance("aa01", "running", "r", 1)];
        let mut cluster = carry_out(&[], &plan_mirror(&view(true), &listing, &[], at(100)));
        cluster[0]
            .labels_mut()
            .insert("team".into(), "vision".into());
        assert!(
            plan_mirror(&view(true), &listing, &cluster, at(200))
                .writes
                .is_empty()
        );
    }

    #[test]
    fn the_summary_counts_statuses_regions_and_gpus() {
        let summary = summarize(&[
            instance("a", "running", "cn-east-1", 2),
            instance("b", "running", "us-west-1", 4),
            instance("c", "exited", "cn-east-1", 1),
        ]);
        assert_eq!(summary.instances, 3);
        assert_eq!(summary.running, 2);
        assert_eq!(summary.gpus, 7);
        assert_eq!(summary.by_status["running"], 2);
        assert_eq!(summary.by_region["cn-east-1"], 2);
    }

    #[test]
    fn the_summary_stays_bounded_for_any_number_of_statuses() {
        let listing: Vec<_> = (0..1000)
            .map(|n| instance(&format!("i{n}"), &format!("state{n}"), &format!("r{n}"), 1))
            .collect();
        let summary = summarize(&listing);
        assert_eq!(summary.by_status.len(), MAX_COUNT_KEYS + 1);
        assert_eq!(summary.by_status.values().sum::<i64>(), 1000);
        assert_eq!(summary.by_region.len(), MAX_COUNT_KEYS + 1);
    }

    /// `view` after one complete sync of a single running instance at second 100.
    fn synced_once(mut view: GpuInstanceView) -> GpuInstanceView {
        let listing = [instance("aa01", "running", "r", 1)];
        let plan = plan_mirror(&view, &listing, &[], at(100));
        view.status = Some(synced_status(
            &view,
            &summarize(&listing),
            &plan,
            1,
            at(100),
        ));
        view
    }

    #[test]
    fn a_failure_keeps_the_last_counts_and_says_why() {
        let view = synced_once(view(true));

        let failure = SyncFailure {
            reason: FailureReason::ApiUnavailable,
            message: "PPIO answered 503".into(),
        };
        let status = failed_status(&view, &failure, at(200));
        assert_eq!(status.instance_count, Some(1));
        assert_eq!(status.last_successful_sync_time, Some(at(100)));
        assert_eq!(status.last_sync_time, Some(at(200)));
        let ready = condition::find(&status.conditions, condition::READY).unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::False, "ApiUnavailable")
        );
        let reconciling = condition::find(&status.conditions, condition::RECONCILING).unwrap();
        assert_eq!(reconciling.status, ConditionStatus::True);
        let stalled = condition::find(&status.conditions, condition::STALLED).unwrap();
        assert_eq!(stalled.status, ConditionStatus::False);
    }

    #[test]
    fn a_failure_that_needs_the_user_is_stalled() {
        let failure = SyncFailure {
            reason: FailureReason::SecretNotFound,
            message: "Secret ml/ppio not found".into(),
        };
        let status = failed_status(&view(true), &failure, at(200));
        let stalled = condition::find(&status.conditions, condition::STALLED).unwrap();
        assert_eq!(
            (stalled.status, stalled.reason.as_str()),
            (ConditionStatus::True, "SecretNotFound")
        );
        assert_eq!(status.observed_generation, Some(3));
    }

    #[test]
    fn a_successful_sync_is_ready_for_its_generation() {
        let view = view(true);
        let listing = [instance("aa01", "running", "r", 1)];
        let plan = plan_mirror(&view, &listing, &[], at(100));
        let status = synced_status(&view, &summarize(&listing), &plan, 1, at(100));
        let ready = condition::find(&status.conditions, condition::READY).unwrap();
        assert_eq!(ready.status, ConditionStatus::True);
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.mirrored_count, Some(1));
        assert!(ready.message.contains("1 created"), "{}", ready.message);
    }

    #[test]
    fn suspension_keeps_ready_as_it_was() {
        let view = synced_once(view(true));
        let status = suspended_status(&view, at(200));
        let ready = condition::find(&status.conditions, condition::READY).unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::True, "Suspended")
        );
        assert_eq!(status.instance_count, Some(1));
    }

    /// `view` with mirrors of `n` instances, then a complete listing at `missing_at` that lacks the
    /// first `gone` of them.
    fn cluster_after_a_miss(
        view: &GpuInstanceView,
        n: usize,
        gone: usize,
        missing_at: i64,
    ) -> (Vec<Instance>, Vec<GpuInstance>) {
        let all: Vec<Instance> = (0..n)
            .map(|k| instance(&format!("aa{k:02}"), "running", "r", 1))
            .collect();
        let cluster = carry_out(&[], &plan_mirror(view, &all, &[], at(100)));
        let left = all[gone..].to_vec();
        let cluster = carry_out(
            &cluster,
            &plan_mirror(view, &left, &cluster, at(missing_at)),
        );
        (left, cluster)
    }

    #[test]
    fn quick_syncs_never_remove_before_the_sync_interval_has_passed() {
        // A spec edit or a refresh syncs at once: two empty listings seconds apart.
        let view = view(true);
        let (left, cluster) = cluster_after_a_miss(&view, 2, 1, 200);
        let soon = plan_mirror(&view, &left, &cluster, at(210));
        assert!(
            soon.deletes.is_empty(),
            "missing for 10 s of a 60 s interval"
        );
        assert!(soon.writes.is_empty(), "already marked: nothing to write");
        assert_eq!((soon.pending_removal, soon.mirrored), (1, 2));

        let later = plan_mirror(&view, &left, &cluster, at(260));
        assert_eq!(later.deletes, ["team-a-aa00"]);
    }

    #[test]
    fn a_listing_that_would_remove_most_mirrors_waits_for_the_grace_period() {
        let view = view(true);
        let (left, cluster) = cluster_after_a_miss(&view, 10, 8, 200);
        let held = plan_mirror(&view, &left, &cluster, at(300));
        assert!(held.deletes.is_empty(), "{:?}", held.deletes);
        assert_eq!(
            held.held,
            Some(HeldRemovals {
                count: 8,
                of: 10,
                until: at(200 + 15 * 60)
            })
        );
        assert_eq!((held.pending_removal, held.mirrored), (8, 10));
        let status = synced_status(&view, &summarize(&left), &held, 1, at(300));
        let ready = condition::find(&status.conditions, condition::READY).unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::True, MASS_REMOVAL_HELD)
        );
        assert!(
            ready.message.contains("8 of this view's 10 mirrors"),
            "{}",
            ready.message
        );

        let after_grace = plan_mirror(&view, &left, &cluster, at(200 + 15 * 60));
        assert_eq!(after_grace.deletes.len(), 8);
        assert_eq!(after_grace.held, None);
    }

    #[test]
    fn the_guard_spares_small_and_partial_removals() {
        let view = view(true);
        // Five is not a mass removal, even if it is all of them.
        let (left, cluster) = cluster_after_a_miss(&view, 5, 5, 200);
        assert_eq!(
            plan_mirror(&view, &left, &cluster, at(300)).deletes.len(),
            5
        );
        // Six of twenty is not more than half.
        let (left, cluster) = cluster_after_a_miss(&view, 20, 6, 200);
        assert_eq!(
            plan_mirror(&view, &left, &cluster, at(300)).deletes.len(),
            6
        );
    }

    #[test]
    fn a_zero_grace_period_turns_the_guard_off() {
        let mut view = view(true);
        view.spec.mirror.mass_removal_grace_period = "0s".into();
        let (left, cluster) = cluster_after_a_miss(&view, 10, 10, 200);
        let plan = plan_mirror(&view, &left, &cluster, at(300));
        assert_eq!((plan.deletes.len(), plan.held), (10, None));
    }

    #[test]
    fn retained_mirrors_of_vanished_instances_stay_marked_absent() {
        let mut view = view(true);
        view.spec.mirror.deletion_policy = DeletionPolicy::Retain;
        let (left, cluster) = cluster_after_a_miss(&view, 2, 1, 200);
        let marked = cluster
            .iter()
            .find(|o| o.name_any() == "team-a-aa00")
            .and_then(|o| o.status.as_ref())
            .unwrap();
        let ready = condition::find(&marked.conditions, condition::READY).unwrap();
        assert_eq!(ready.reason, NOT_LISTED);
        assert!(ready.message.contains("Retain"), "{}", ready.message);

        let much_later = plan_mirror(&view, &left, &cluster, at(10_000_000));
        assert!(much_later.deletes.is_empty());
        assert!(much_later.writes.is_empty());
        assert_eq!((much_later.pending_removal, much_later.mirrored), (1, 2));
    }
}
