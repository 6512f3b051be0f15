//! Planning the mirror of each listed record: created, updated, or left alone.
//!
//! Planning needs only what a mirror's metadata says ([`Observed`]), never its status, so that a
//! sync in which nothing changed reads no GpuInstance at all:
//! - a mirror whose content, labels and owner would not change is not written at all; one that
//!   someone else changed since the operator wrote it is written again, whatever its metadata says;
//! - a mirror is built from its record, the view's [`MirrorShape`] and the time alone, and the
//!   view's [`ViewSeed`] hashes the whole shape: a record sent as before, to a view whose shape is
//!   as before, is known to be unchanged without being decoded;
//! - a mirror marked absent whose instance is listed again loses the mark;
//! - a GpuInstance under a mirror's name that the view does not control by UID (another view's,
//!   or none's) is never written: the instance is not mirrored, and the view says so.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::api::cost::CostOptions;
use crate::api::view::{MirrorOptions, OmittedField, ServiceOptions, parse_duration};
use crate::api::{
    GpuInstance, GpuInstanceSpec, GpuInstanceStatus, GpuInstanceView, GpuInstanceViewSpec,
};
use crate::cost::report::MirrorCost;
use crate::mirror;
use crate::services::{self, AddressPolicy, ServicePlan, ServiceTally};
use crate::sync::expiry::{self, ExpiryState};
use ppio::{Instance, RecordSummary};

/// What a mirror's metadata says of it: enough to plan without reading its status.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The object's UID: deletes are conditional on it, so a recreated object is never deleted.
    pub uid: String,
    /// Its content, labels and owner, as last applied.
    pub digest: Digest,
    /// When a complete listing first lacked its instance.
    pub absent_since: Option<Timestamp>,
    /// False when its metadata cannot be taken at its word: someone else wrote the object since the
    /// operator did, or the operator's own last write of it failed half-way.
    pub trusted: bool,
    /// The [`ViewSeed::source_hash`] of the record this process last found the mirror to match, if any.
    pub source: Option<u64>,
    /// The value of its `gpu.ppio.io/status` label: the remote status it last showed, which the
    /// lifecycle Events compare with the new one (empty when it has none).
    pub status: Arc<str>,
    /// The value of its `gpu.ppio.io/expiring-soon` label: the end time it last warned of.
    pub expiring_soon: Option<i64>,
}

/// Everything of a view that shapes its mirrors. The mirror of a record is built from the record,
/// this and the time alone, and [`ViewSeed`] hashes all of it, so a view whose shape is as it was
/// finds an unchanged record's mirror unchanged without building it, and a view whose shape changed
/// rewrites every mirror at its next sync. [`MirrorShape::of`] takes the view's spec apart field by
/// field: a new field does not compile until it is placed here or said not to shape a mirror.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct MirrorShape<'a> {
    /// The view's name: in each mirror's name, its view label and its owner reference.
    pub name: Option<&'a str>,
    /// The view's namespace, which its mirrors live in.
    pub namespace: Option<&'a str>,
    /// The view's UID, in each mirror's owner reference.
    pub uid: Option<&'a str>,
    /// The view's shard label, which its mirrors carry too.
    pub shard: Option<&'a str>,
    /// Fields of the record left out of the mirrors (`spec.mirror.omitFields`).
    pub omit_fields: &'a [OmittedField],
    /// The expiry warning window as written: it decides the `ExpiringSoon` condition and label, and
    /// the condition's message quotes it.
    pub expiry_warning_window: &'a str,
    /// The rule for the addresses Services route to, when the view asks for Services
    /// (`spec.services.enabled`) and the operator keeps them: each mirror's status names its
    /// Service and says which endpoints it leaves out.
    pub services: Option<&'a AddressPolicy>,
    /// The currency label of each mirror's cost (`spec.cost.currency`).
    pub currency: Option<&'a str>,
}

impl<'a> MirrorShape<'a> {
    /// The shape of `view`'s mirrors as the view is now, `services` being the operator's address
    /// rule when it keeps Services (`--services`), else `None`.
    pub fn of(view: &'a GpuInstanceView, services: Option<&'a AddressPolicy>) -> MirrorShape<'a> {
        // No `..` in these patterns: each field of the spec is either part of the shape or said
        // here not to shape a mirror.
        let GpuInstanceViewSpec {
            // Where the key and the records come from, and which records: the record hash (see
            // `ppio::ListedPage::source`) covers what the records say and the key they were read with.
            credentials: _,
            endpoint: _,
            filter: _,
            page_size: _,
            // When syncs happen, and whether they do.
            sync_interval: _,
            suspend: _,
            mirror:
                MirrorOptions {
                    // Whether there are mirrors at all, and when a missing instance's mirror goes:
                    // removals, planned from every mirror after each complete listing.
                    enabled: _,
                    deletion_policy: _,
                    mass_removal_grace_period: _,
                    omit_fields,
                },
            // Events, published only when a mirror is written, not part of it.
            lifecycle_events: _,
            expiry_warning_window,
            services: ServiceOptions { enabled },
            // The currency labels every mirror's cost; the budget is the view's alone.
            cost:
                CostOptions {
                    currency,
                    hourly_budget: _,
                },
        } = &view.spec;
        MirrorShape {
            name: view.metadata.name.as_deref(),
            namespace: view.metadata.namespace.as_deref(),
            uid: view.metadata.uid.as_deref(),
            shard: shard_of(view),
            omit_fields,
            expiry_warning_window,
            services: services.filter(|_| *enabled),
            currency: currency.as_deref(),
        }
    }

    /// The view's name, empty when it has none.
    fn view_name(&self) -> &'a str {
        self.name.unwrap_or_default()
    }

    /// The expiry warning window. A window the schema would refuse fails the sync before anything
    /// is planned; here it counts as off.
    fn expiry_window(&self) -> Duration {
        parse_duration(self.expiry_warning_window).unwrap_or(Duration::ZERO)
    }

    /// The owner reference every mirror carries, so deleting the view deletes its mirrors.
    fn owner_reference(&self) -> Option<OwnerReference> {
        Some(OwnerReference {
            api_version: GpuInstanceView::api_version(&()).into_owned(),
            kind: GpuInstanceView::kind(&()).into_owned(),
            name: self.name?.to_owned(),
            uid: self.uid?.to_owned(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        })
    }
}

/// What planning needs of a view for each listed record, worked out once per sync rather than once
/// per record: the hash of its [`MirrorShape`], and its expiry warning window.
#[derive(Clone, Copy, Debug)]
pub struct ViewSeed {
    /// The hash of the view's [`MirrorShape`], part of every source hash.
    hash: u64,
    /// Its expiry warning window.
    window: Duration,
}

impl ViewSeed {
    /// The seed of `view` as it is now, under the operator's address rule for Services, if it
    /// keeps them.
    pub fn of(view: &GpuInstanceView, services: Option<&AddressPolicy>) -> ViewSeed {
        use std::hash::{Hash, Hasher};
        let shape = MirrorShape::of(view, services);
        let mut hasher = rustc_hash::FxHasher::default();
        shape.hash(&mut hasher);
        ViewSeed {
            hash: hasher.finish(),
            window: shape.expiry_window(),
        }
    }

    /// What the mirror of a record depends on, as one number: the record as sent and the API key it
    /// was read with (`record`, from the client's `ListedPage::source`), the view's
    /// [`MirrorShape`], the record's [`ExpiryState`] now, which changes with time alone, and its
    /// cost (`cost`, [`MirrorCost::hash`]), which changes with the product list. A
    /// trusted mirror whose record hashes as it did last time is unchanged, which the operator then
    /// knows without decoding or mapping the record again. Kept in memory only, so it may use a
    /// per-process hash.
    pub fn source_hash(&self, record: u64, expiry: ExpiryState, cost: u64) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = rustc_hash::FxHasher::default();
        self.hash.hash(&mut hasher);
        expiry.hash(&mut hasher);
        cost.hash(&mut hasher);
        record.hash(&mut hasher);
        hasher.finish()
    }

    /// Where `instance` stands at `now` against the view's expiry warning window. A window the
    /// schema would refuse fails the sync before anything is planned; here it counts as off.
    pub fn expiry_of(&self, instance: &RecordSummary, now: Timestamp) -> ExpiryState {
        expiry::expiry_state(instance, self.window, now)
    }
}

/// A mirror's content in three numbers: the [`mirror::fingerprint()`] of its spec and status, the
/// [`mirror::labels_digest`] of the operator's labels, and a hash of its controlling owner's UID.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digest {
    /// Fingerprint of spec and status.
    pub fingerprint: u64,
    /// Digest of the operator's labels.
    pub labels: u64,
    /// Hash of the controlling owner's UID (0 when there is none).
    pub owner: u64,
}

/// The mirror of one listed instance, as it should be.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredMirror {
    /// Object name.
    pub name: String,
    /// Metadata (labels, the fingerprint annotation, the owner) and spec, to apply.
    pub object: GpuInstance,
    /// The status, to apply on the status subresource. Its conditions carry `now` as transition
    /// time: merge them with the current ones ([`crate::api::condition::merge_conditions`]) to keep history.
    pub status: GpuInstanceStatus,
    /// Its Service and EndpointSlices, when its view asks for Services; `None` otherwise, and
    /// then any it had go.
    pub services: Option<ServicePlan>,
}

impl DesiredMirror {
    /// Its object without the fingerprint annotation: what is applied before the writes the
    /// fingerprint vouches for (status, Service, EndpointSlices) are all done. The operator owns
    /// no other annotation of a listed mirror, so applying this removes the fingerprint.
    pub fn unvouched(&self) -> GpuInstance {
        let mut object = self.object.clone();
        if let Some(annotations) = object.metadata.annotations.as_mut() {
            annotations.remove(mirror::FINGERPRINT_ANNOTATION);
        }
        object
    }

    /// Whether `annotations` (of the mirror as stored) already carry this mirror's fingerprint.
    pub fn vouched_by(&self, annotations: &BTreeMap<String, String>) -> bool {
        let planned = self
            .object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(mirror::FINGERPRINT_ANNOTATION));
        planned.is_some() && planned == annotations.get(mirror::FINGERPRINT_ANNOTATION)
    }
}

/// What one listed instance needs.
#[derive(Clone, Debug, PartialEq)]
pub enum InstancePlan {
    /// Its mirror is as it should be; what the view's status counts of its Service.
    Unchanged(ServiceTally),
    /// It has no mirror yet.
    Create(Box<DesiredMirror>),
    /// Its mirror differs, was changed by someone else, or was marked absent.
    Update(Box<DesiredMirror>),
    /// Its mirror's name holds a GpuInstance that the view does not control (another view's, or
    /// no view's): that object is left alone, and the instance is not mirrored.
    NameTaken,
}

impl InstancePlan {
    /// What the view's status counts of the planned mirror's Service.
    pub fn service_tally(&self) -> ServiceTally {
        match self {
            InstancePlan::Unchanged(tally) => *tally,
            InstancePlan::NameTaken => ServiceTally::default(),
            InstancePlan::Create(desired) | InstancePlan::Update(desired) => desired
                .services
                .as_ref()
                .map(ServicePlan::tally)
                .unwrap_or_default(),
        }
    }
}

/// Plans the mirror of one listed `instance` of `view`, given what the cluster holds of it;
/// `services` is the operator's address rule when it keeps Services, `cost` what the instance
/// costs.
pub fn plan_instance(
    view: &GpuInstanceView,
    services: Option<&AddressPolicy>,
    instance: &Instance,
    cost: &MirrorCost,
    observed: Option<&Observed>,
    now: Timestamp,
) -> InstancePlan {
    let shape = MirrorShape::of(view, services);
    let owner = shape.uid.map_or(0, owner_hash);
    // Only a mirror the view controls (by UID) is the view's to write: never take another's.
    if observed.is_some_and(|observed| observed.digest.owner != owner) {
        return InstancePlan::NameTaken;
    }
    let content = MirrorContent::of(&shape, instance, cost, now);
    // Most syncs change nothing: tell that from the digest before building any object.
    if let Some(observed) = observed
        && observed.trusted
        && observed.absent_since.is_none()
        && observed.digest
            == (Digest {
                fingerprint: content.fingerprint,
                labels: mirror::labels_digest(&content.labels),
                owner,
            })
    {
        return InstancePlan::Unchanged(
            content
                .services
                .as_ref()
                .map(ServicePlan::tally)
                .unwrap_or_default(),
        );
    }
    let desired = Box::new(content.into_mirror(&shape, now));
    match observed {
        None => InstancePlan::Create(desired),
        Some(_) => InstancePlan::Update(desired),
    }
}

/// What a mirror holds, before any object is built: enough to compare with its digest.
struct MirrorContent {
    name: String,
    spec: GpuInstanceSpec,
    status: GpuInstanceStatus,
    fingerprint: u64,
    labels: BTreeMap<String, String>,
    services: Option<ServicePlan>,
}

impl MirrorContent {
    fn of(
        shape: &MirrorShape<'_>,
        instance: &Instance,
        cost: &MirrorCost,
        now: Timestamp,
    ) -> MirrorContent {
        let view_name = shape.view_name();
        let spec = GpuInstanceSpec {
            instance_id: mirror::spec_instance_id(instance.id.as_str()),
            view: view_name.to_owned(),
        };
        let name = mirror::object_name(view_name, instance.id.as_str());
        let expiry = expiry::expiry_state(&instance.into(), shape.expiry_window(), now);
        let (status, fingerprint, services) =
            fingerprinted_status(shape, &name, instance, cost, expiry, &spec);
        let labels = mirror::labels(view_name, shape.shard, instance, expiry.soon());
        MirrorContent {
            name,
            spec,
            status,
            fingerprint,
            labels,
            services,
        }
    }

    fn into_mirror(self, shape: &MirrorShape<'_>, now: Timestamp) -> DesiredMirror {
        let mut desired = assemble(
            shape,
            self.name,
            self.spec,
            stamped(self.status, now),
            self.fingerprint,
            self.labels,
        );
        desired.services = self.services;
        desired
    }
}

/// The status of the mirror `name` of `instance` costing `cost`, with no history (transition times
/// at the epoch), its fingerprint, computed without a copy, and its Service when the view asks for
/// Services. The
/// status names the Service and says which endpoints it leaves out, so the fingerprint covers
/// everything the Service holds: a Service changes only when its mirror does.
fn fingerprinted_status(
    shape: &MirrorShape<'_>,
    name: &str,
    instance: &Instance,
    cost: &MirrorCost,
    expiry: ExpiryState,
    spec: &GpuInstanceSpec,
) -> (GpuInstanceStatus, u64, Option<ServicePlan>) {
    let expiring = expiry::expiring_soon_condition(expiry, shape.expiry_warning_window);
    let mut status = mirror::status(
        instance,
        shape.omit_fields,
        expiring,
        &[],
        Timestamp::UNIX_EPOCH,
    );
    status.cost = Some(cost.status.clone());
    status.conditions.push(cost.condition.clone());
    let services = shape.services.map(|policy| {
        let plan = services::plan(name, &status, policy);
        status.service = plan.status();
        status.conditions.extend(plan.condition());
        plan
    });
    let fingerprint = mirror::fingerprint(spec, &status);
    (status, fingerprint, services)
}

/// `status` with its conditions' transitions at `now`.
fn stamped(mut status: GpuInstanceStatus, now: Timestamp) -> GpuInstanceStatus {
    for condition in &mut status.conditions {
        condition.last_transition_time = mirror::whole_seconds(now);
    }
    status
}

/// The object of a mirror from its parts.
fn assemble(
    shape: &MirrorShape<'_>,
    name: String,
    spec: GpuInstanceSpec,
    status: GpuInstanceStatus,
    fingerprint: u64,
    labels: BTreeMap<String, String>,
) -> DesiredMirror {
    let object = GpuInstance {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: shape.namespace.map(str::to_owned),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                mirror::FINGERPRINT_ANNOTATION.to_owned(),
                mirror::fingerprint_text(fingerprint),
            )])),
            owner_references: shape.owner_reference().map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    };
    DesiredMirror {
        name,
        object,
        status,
        services: None,
    }
}

impl Digest {
    /// What a mirror's metadata says of its content: the fingerprint annotation, the digest of its
    /// labels, and the hash of its controlling owner's UID when that owner is a view. The one
    /// reading of it, for objects the watch sees and objects about to be applied alike.
    pub fn of_metadata(meta: &ObjectMeta) -> Digest {
        Digest {
            fingerprint: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(mirror::FINGERPRINT_ANNOTATION))
                .and_then(|f| mirror::parse_fingerprint(f))
                .unwrap_or_default(),
            labels: mirror::labels_digest(meta.labels.as_ref().unwrap_or(&BTreeMap::new())),
            owner: meta
                .owner_references
                .iter()
                .flatten()
                .find(|r| {
                    r.controller == Some(true)
                        && r.kind.as_str() == GpuInstanceView::kind(&()).as_ref()
                })
                .map_or(0, |r| owner_hash(&r.uid)),
        }
    }
}

/// Whether `view` (by its UID) is the controlling owner of the GpuInstance `meta`: the only
/// GpuInstances the view's syncs write, mark absent or delete.
pub fn controlled_by_view(meta: &ObjectMeta, view: &GpuInstanceView) -> bool {
    let uid = view.metadata.uid.as_deref().unwrap_or_default();
    !uid.is_empty() && Digest::of_metadata(meta).owner == owner_hash(uid)
}

/// The hash of an owner's UID that [`Digest::owner`] holds.
pub fn owner_hash(uid: &str) -> u64 {
    mirror::labels_digest(&BTreeMap::from([(
        mirror::VIEW_LABEL.to_owned(),
        uid.to_owned(),
    )]))
}

/// The view's value of the shard label, which its mirrors carry too.
pub fn shard_of(view: &GpuInstanceView) -> Option<&str> {
    view.labels().get(mirror::SHARD_LABEL).map(String::as_str)
}

/// The owner reference every mirror carries, so deleting the view deletes its mirrors.
pub fn owner_reference(view: &GpuInstanceView) -> Option<OwnerReference> {
    MirrorShape::of(view, None).owner_reference()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::condition::{self, ConditionStatus};
    use crate::sync::fixtures::*;

    #[test]
    fn a_mirror_before_its_last_write_does_not_vouch_for_it() {
        let plan = plan_instance(
            &view(true),
            None,
            &instance("aa01", "running", "cn-east-1", 2),
            &crate::sync::fixtures::unpriced(),
            None,
            at(100),
        );
        let InstancePlan::Create(mirror) = plan else {
            panic!("expected a create: {plan:?}");
        };
        let unvouched = mirror.unvouched();
        assert!(
            !unvouched
                .annotations()
                .contains_key(mirror::FINGERPRINT_ANNOTATION),
            "no fingerprint before the status and the Service are written"
        );
        assert_eq!(
            Digest::of_metadata(&unvouched.metadata).fingerprint,
            0,
            "a mirror left so is not recognised as current by the next sync"
        );
        assert_eq!(unvouched.labels(), mirror.object.labels(), "labels go out");
        assert_eq!(unvouched.spec, mirror.object.spec);
        assert!(mirror.vouched_by(mirror.object.annotations()));
        assert!(!mirror.vouched_by(unvouched.annotations()));
        let mut other = mirror.object.annotations().clone();
        other.insert(mirror::FINGERPRINT_ANNOTATION.into(), "0".into());
        assert!(!mirror.vouched_by(&other));
    }

    #[test]
    fn a_new_instance_gets_one_owned_labelled_fingerprinted_mirror() {
        let plan = plan_instance(
            &view(true),
            None,
            &instance("aa01", "running", "cn-east-1", 2),
            &crate::sync::fixtures::unpriced(),
            None,
            at(100),
        );
        let InstancePlan::Create(mirror) = plan else {
            panic!("expected a create: {plan:?}");
        };
        let object = &mirror.object;
        assert_eq!(object.name_any(), "team-a-aa01");
        assert_eq!(object.namespace().as_deref(), Some("ml"));
        assert_eq!(object.spec.instance_id, "aa01");
        assert_eq!(object.labels()[mirror::STATUS_LABEL], "running");
        let owner = &object.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("GpuInstanceView", "0000-view-uid")
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        let fingerprint = &object.annotations()[mirror::FINGERPRINT_ANNOTATION];
        assert_eq!(
            mirror::parse_fingerprint(fingerprint),
            Some(mirror::fingerprint(&object.spec, &mirror.status))
        );
    }

    #[test]
    fn only_a_controlling_view_is_the_owner_a_digest_reads() {
        let view = view(true);
        let mut mirror = desired(plan_instance(
            &view,
            None,
            &instance("aa01", "running", "cn-east-1", 2),
            &crate::sync::fixtures::unpriced(),
            None,
            at(100),
        ));
        let meta = &mut mirror.object.metadata;
        assert_eq!(Digest::of_metadata(meta).owner, owner_hash("0000-view-uid"));
        fn owner(meta: &mut ObjectMeta) -> &mut OwnerReference {
            &mut meta.owner_references.as_mut().expect("an owner")[0]
        }
        owner(meta).kind = "ConfigMap".into();
        assert_eq!(Digest::of_metadata(meta).owner, 0, "not a view");
        owner(meta).kind = "GpuInstanceView".into();
        owner(meta).controller = Some(false);
        assert_eq!(Digest::of_metadata(meta).owner, 0, "not the controller");
    }

    #[test]
    fn an_unchanged_instance_is_recognised_from_metadata_alone() {
        let view = view(true);
        let i = instance("aa01", "running", "cn-east-1", 2);
        let first = desired(plan_instance(
            &view,
            None,
            &i,
            &crate::sync::fixtures::unpriced(),
            None,
            at(100),
        ));
        // Later, with another clock: the transition times differ, the fingerprint does not.
        let again = plan_instance(
            &view,
            None,
            &i,
            &crate::sync::fixtures::unpriced(),
            Some(&observed(&first)),
            at(500),
        );
        assert!(matches!(again, InstancePlan::Unchanged(_)));
    }

    #[test]
    fn a_remote_change_rewrites_the_mirror() {
        let view = view(true);
        let before = desired(plan_instance(
            &view,
            None,
            &instance("aa01", "running", "cn-east-1", 2),
            &crate::sync::fixtures::unpriced(),
            None,
            at(100),
        ));
        let plan = plan_instance(
            &view,
            None,
            &instance("aa01", "exited", "cn-east-1", 2),
            &crate::sync::fixtures::unpriced(),
            Some(&observed(&before)),
            at(200),
        );
        let after = desired(plan);
        assert_eq!(after.object.labels()[mirror::STATUS_LABEL], "exited");
        let ready = condition::find(&after.status.conditions, condition::READY).unwrap();
        assert_eq!(
            (ready.status, ready.last_transition_time),
            (ConditionStatus::False, at(200))
        );
    }

    #[test]
    fn a_mirror_changed_by_someone_else_is_written_again() {
        let view = view(true);
        let i = instance("aa01", "running", "cn-east-1", 2);
        let first = desired(plan_instance(
            &view,
            None,
            &i,
            &crate::sync::fixtures::unpriced(),
            None,
            at(100),
        ));
        let mut touched = observed(&first);
        touched.trusted = false;
        assert!(matches!(
            plan_instance(
                &view,
                None,
                &i,
                &crate::sync::fixtures::unpriced(),
                Some(&touched),
                at(200)
            ),
            InstancePlan::Update(_)
        ));
        // A label of ours removed or changed shows in the digest as well.
        let mut relabelled = observed(&first);
        relabelled.digest.labels ^= 1;
        assert!(matches!(
            plan_instance(
                &view,
                None,
                &i,
                &crate::sync::fixtures::unpriced(),
                Some(&relabelled),
                at(200)
            ),
            InstancePlan::Update(_)
        ));
    }

    #[test]
    fn a_same_named_mirror_another_view_or_no_view_controls_is_never_written() {
        let view = view(true);
        let i = instance("aa01", "running", "cn-east-1", 2);
        let first = desired(plan_instance(
            &view,
            None,
            &i,
            &crate::sync::fixtures::unpriced(),
            None,
            at(100),
        ));
        let mut theirs = observed(&first);
        theirs.digest.owner = owner_hash("another-view-uid");
        assert_eq!(
            plan_instance(
                &view,
                None,
                &i,
                &crate::sync::fixtures::unpriced(),
                Some(&theirs),
                at(200)
            ),
            InstancePlan::NameTaken
        );
        // Also when it looks changed, untrusted or absent: whose it is comes first.
        theirs.trusted = false;
        theirs.absent_since = Some(at(150));
        assert_eq!(
            plan_instance(
                &view,
                None,
                &i,
                &crate::sync::fixtures::unpriced(),
                Some(&theirs),
                at(200)
            ),
            InstancePlan::NameTaken
        );
        let mut no_controller = observed(&first);
        no_controller.digest.owner = 0;
        assert_eq!(
            plan_instance(
                &view,
                None,
                &i,
                &crate::sync::fixtures::unpriced(),
                Some(&no_controller),
                at(200)
            ),
            InstancePlan::NameTaken
        );
        // The view's own, by its UID, is written as usual.
        let mut ours = observed(&first);
        ours.trusted = false;
        assert!(matches!(
            plan_instance(
                &view,
                None,
                &i,
                &crate::sync::fixtures::unpriced(),
                Some(&ours),
                at(200)
            ),
            InstancePlan::Update(_)
        ));
    }

    #[test]
    fn a_reappearing_instance_loses_its_absence_mark() {
        let view = view(true);
        let i = instance("aa01", "running", "r", 1);
        let first = desired(plan_instance(
            &view,
            None,
            &i,
            &crate::sync::fixtures::unpriced(),
            None,
            at(100),
        ));
        let mut marked = observed(&first);
        marked.absent_since = Some(at(150));
        let back = desired(plan_instance(
            &view,
            None,
            &i,
            &crate::sync::fixtures::unpriced(),
            Some(&marked),
            at(300),
        ));
        assert_eq!(back.status.absent_since, None);
        assert!(
            !back
                .object
                .annotations()
                .contains_key(mirror::ABSENT_SINCE_ANNOTATION)
        );
    }

    #[test]
    fn labels_added_by_others_do_not_change_the_digest() {
        let mut labels = BTreeMap::from([
            (mirror::VIEW_LABEL.to_owned(), "team-a".to_owned()),
            (mirror::STATUS_LABEL.to_owned(), "running".to_owned()),
        ]);
        let ours = mirror::labels_digest(&labels);
        labels.insert("team".into(), "ml".into());
        assert_eq!(mirror::labels_digest(&labels), ours);
        labels.insert(mirror::REGION_LABEL.into(), "stale".into());
        assert_ne!(
            mirror::labels_digest(&labels),
            ours,
            "a label we own but no longer want"
        );
    }

    #[test]
    fn the_source_hash_follows_the_record_and_the_views_options() {
        let view = view(true);
        let (record, other) = (0x5eed_u64, 0x5eee_u64);
        let none = ExpiryState::NotApplicable;
        assert_eq!(
            ViewSeed::of(&view, None).source_hash(record, none, 0),
            ViewSeed::of(&view.clone(), None).source_hash(record, none, 0)
        );
        assert_ne!(
            ViewSeed::of(&view, None).source_hash(record, none, 0),
            ViewSeed::of(&view, None).source_hash(other, none, 0)
        );
        let mut omitting = view.clone();
        omitting.spec.mirror.omit_fields = vec![crate::api::view::OmittedField::Command];
        assert_ne!(
            ViewSeed::of(&view, None).source_hash(record, none, 0),
            ViewSeed::of(&omitting, None).source_hash(record, none, 0)
        );
        let mut sharded = view.clone();
        sharded
            .labels_mut()
            .insert(mirror::SHARD_LABEL.into(), "one".into());
        assert_ne!(
            ViewSeed::of(&view, None).source_hash(record, none, 0),
            ViewSeed::of(&sharded, None).source_hash(record, none, 0)
        );
        let mut warning_later = view.clone();
        warning_later.spec.expiry_warning_window = "168h".into();
        assert_ne!(
            ViewSeed::of(&view, None).source_hash(record, none, 0),
            ViewSeed::of(&warning_later, None).source_hash(record, none, 0)
        );
        let mut renamed = view.clone();
        renamed.metadata.uid = Some("another-uid".into());
        assert_ne!(
            ViewSeed::of(&view, None).source_hash(record, none, 0),
            ViewSeed::of(&renamed, None).source_hash(record, none, 0)
        );
    }

    #[test]
    fn a_view_change_that_changes_its_mirrors_changes_its_seed_and_no_other_does() {
        use crate::api::view::{BillingMode, DeletionPolicy, OmittedField};
        let now = at(1_700_000_000);
        let mut record = prepaid("a1", now.as_second() + 3600, false);
        record.command = "python serve.py".into();
        let mirror_of = |view: &GpuInstanceView| match plan_instance(
            view,
            None,
            &record,
            &crate::sync::fixtures::unpriced(),
            None,
            now,
        ) {
            InstancePlan::Create(desired) => desired,
            other => panic!("a record without a mirror is created, not {other:?}"),
        };
        let seed_of = |view: &GpuInstanceView| {
            ViewSeed::of(view, None).source_hash(0x5eed, ExpiryState::NotApplicable, 0)
        };
        let base = view(true);
        type Change = fn(&mut GpuInstanceView);
        let shaping: [(&str, Change); 6] = [
            ("name", |v| v.metadata.name = Some("team-b".into())),
            ("namespace", |v| v.metadata.namespace = Some("other".into())),
            ("uid", |v| v.metadata.uid = Some("another-uid".into())),
            ("shard", |v| {
                v.labels_mut()
                    .insert(mirror::SHARD_LABEL.into(), "one".into());
            }),
            ("omitFields", |v| {
                v.spec.mirror.omit_fields = vec![OmittedField::Command]
            }),
            ("expiryWarningWindow", |v| {
                v.spec.expiry_warning_window = "30m".into()
            }),
        ];
        for (what, change) in shaping {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(
                mirror_of(&changed),
                mirror_of(&base),
                "{what} shapes a mirror"
            );
            assert_ne!(seed_of(&changed), seed_of(&base), "{what} changes the seed");
        }
        let not_shaping: [(&str, Change); 11] = [
            ("credentials", |v| {
                v.spec.credentials.secret_ref.key = "other".into()
            }),
            ("endpoint", |v| {
                v.spec.endpoint = Some("https://ppio.example".into())
            }),
            ("filter", |v| {
                v.spec.filter.billing_mode = Some(BillingMode::Spot)
            }),
            ("pageSize", |v| v.spec.page_size = 7),
            ("syncInterval", |v| v.spec.sync_interval = "5m".into()),
            ("suspend", |v| v.spec.suspend = true),
            ("enabled", |v| v.spec.mirror.enabled = false),
            ("deletionPolicy", |v| {
                v.spec.mirror.deletion_policy = DeletionPolicy::Retain
            }),
            ("massRemovalGracePeriod", |v| {
                v.spec.mirror.mass_removal_grace_period = "1h".into()
            }),
            ("lifecycleEvents", |v| {
                v.spec.lifecycle_events.first_sight = true
            }),
            ("generation", |v| v.metadata.generation = Some(4)),
        ];
        for (what, change) in not_shaping {
            let mut changed = base.clone();
            change(&mut changed);
            assert_eq!(
                mirror_of(&changed),
                mirror_of(&base),
                "{what} shapes no mirror"
            );
            assert_eq!(seed_of(&changed), seed_of(&base), "{what} keeps the seed");
        }
    }

    #[test]
    fn services_shape_a_mirror_only_when_the_view_asks_and_the_operator_keeps_them() {
        let now = at(1_700_000_000);
        let mut record = instance("aa01", "running", "cn-east-1", 1);
        record.ports = vec![ppio::Port {
            port: 8080,
            protocol: "http".into(),
            endpoint: "http://203.0.113.5:30001".into(),
        }];
        // The instance's address is a documentation one, which the operator routes to once allowed.
        let policy = AddressPolicy {
            cluster: Vec::new(),
            allowed: vec!["203.0.113.0/24".parse().expect("a range")],
        };
        let mut asking = view(true);
        asking.spec.services.enabled = true;
        let seed = |view: &GpuInstanceView, policy| {
            ViewSeed::of(view, policy).source_hash(0x5eed, ExpiryState::NotApplicable, 0)
        };
        let plain = desired(plan_instance(
            &view(true),
            Some(&policy),
            &record,
            &crate::sync::fixtures::unpriced(),
            None,
            now,
        ));
        let unkept = desired(plan_instance(
            &asking,
            None,
            &record,
            &crate::sync::fixtures::unpriced(),
            None,
            now,
        ));
        assert_eq!(plain, unkept, "an operator without --services keeps none");
        assert_eq!(plain.services, None);
        assert_eq!(plain.status.service, None);
        assert_eq!(seed(&asking, None), seed(&view(true), Some(&policy)));

        let kept = desired(plan_instance(
            &asking,
            Some(&policy),
            &record,
            &crate::sync::fixtures::unpriced(),
            None,
            now,
        ));
        assert_ne!(
            seed(&asking, Some(&policy)),
            seed(&view(true), Some(&policy))
        );
        assert_eq!(
            kept.status.service.as_ref().map(|s| s.name.as_str()),
            Some("team-a-aa01")
        );
        assert!(
            condition::find(&kept.status.conditions, services::plan::SERVICE_ENDPOINTS).is_some()
        );
        assert_ne!(
            mirror::parse_fingerprint(&kept.object.annotations()[mirror::FINGERPRINT_ANNOTATION]),
            mirror::parse_fingerprint(&plain.object.annotations()[mirror::FINGERPRINT_ANNOTATION]),
            "turning Services on rewrites every mirror"
        );
        assert_eq!(
            plan_instance(
                &asking,
                Some(&policy),
                &record,
                &crate::sync::fixtures::unpriced(),
                Some(&observed(&kept)),
                now
            )
            .service_tally(),
            ServiceTally {
                service: true,
                refused: 0
            },
            "an unchanged mirror still counts its Service"
        );
        // Another address rule shapes the mirrors too: an endpoint it refuses changes the status.
        let strict = AddressPolicy {
            cluster: vec!["203.0.113.0/24".parse().expect("a range")],
            allowed: policy.allowed.clone(),
        };
        assert_ne!(seed(&asking, Some(&strict)), seed(&asking, Some(&policy)));
        let refused = desired(plan_instance(
            &asking,
            Some(&strict),
            &record,
            &crate::sync::fixtures::unpriced(),
            None,
            now,
        ));
        assert_eq!(refused.status.service, None);
        assert_eq!(
            refused.services.as_ref().map(ServicePlan::tally),
            Some(ServiceTally {
                service: false,
                refused: 1
            })
        );
    }

    #[test]
    fn an_unchanged_record_that_crosses_into_the_expiry_window_is_rewritten() {
        const HOUR: i64 = 3600;
        let view = view(true);
        let end = 1_000_000;
        let i = prepaid("aa01", end, false);
        let early = at(end - 100 * HOUR);
        let late = at(end - 10 * HOUR);
        // The fast path: the same record hashes differently once it is expiring soon.
        let record = 0x5eed_u64;
        assert_ne!(
            ViewSeed::of(&view, None).source_hash(
                record,
                ViewSeed::of(&view, None).expiry_of(&(&i).into(), early),
                0
            ),
            ViewSeed::of(&view, None).source_hash(
                record,
                ViewSeed::of(&view, None).expiry_of(&(&i).into(), late),
                0
            )
        );
        let before = desired(plan_instance(
            &view,
            None,
            &i,
            &crate::sync::fixtures::unpriced(),
            None,
            early,
        ));
        assert!(
            !before
                .object
                .labels()
                .contains_key(mirror::EXPIRING_SOON_LABEL)
        );
        let after = desired(plan_instance(
            &view,
            None,
            &i,
            &crate::sync::fixtures::unpriced(),
            Some(&observed(&before)),
            late,
        ));
        assert_eq!(
            after.object.labels()[mirror::EXPIRING_SOON_LABEL],
            end.to_string()
        );
        let condition = condition::find(&after.status.conditions, expiry::EXPIRING_SOON)
            .expect("an ExpiringSoon condition");
        assert_eq!(condition.status, ConditionStatus::True);
        assert!(
            condition.message.contains(&at(end).to_string()),
            "{}",
            condition.message
        );
        // Still expiring soon an hour later: nothing to write.
        assert!(matches!(
            plan_instance(
                &view,
                None,
                &i,
                &crate::sync::fixtures::unpriced(),
                Some(&observed(&after)),
                at(end - 9 * HOUR)
            ),
            InstancePlan::Unchanged(_)
        ));
    }

    #[test]
    fn auto_renewing_or_unwarned_views_get_no_expiring_soon_label() {
        let end = 1_000_000;
        let renewing = desired(plan_instance(
            &view(true),
            None,
            &prepaid("aa01", end, true),
            &crate::sync::fixtures::unpriced(),
            None,
            at(end - 3600),
        ));
        assert!(
            !renewing
                .object
                .labels()
                .contains_key(mirror::EXPIRING_SOON_LABEL)
        );
        let mut off = view(true);
        off.spec.expiry_warning_window = "0s".into();
        let unwarned = desired(plan_instance(
            &off,
            None,
            &prepaid("aa01", end, false),
            &crate::sync::fixtures::unpriced(),
            None,
            at(end - 3600),
        ));
        assert!(
            !unwarned
                .object
                .labels()
                .contains_key(mirror::EXPIRING_SOON_LABEL)
        );
        assert_eq!(
            condition::find(&unwarned.status.conditions, expiry::EXPIRING_SOON),
            None
        );
    }
}
