//! Deciding what a sync writes: for each listed instance, whether its mirror is created, updated or
//! left alone; after a complete listing, which mirrors of vanished instances are marked absent or
//! deleted; and the counts the view's status shows.
//!
//! Pure functions, no I/O: the controller fetches, calls these, and carries the result out. Planning
//! needs only what a mirror's metadata says ([`Observed`]), never its status, so that a sync in which
//! nothing changed reads no GpuInstance at all. The rules that protect what is mirrored live here,
//! where unit tests pin them down:
//! - a mirror whose content, labels and owner would not change is not written at all; one that
//!   someone else changed since the operator wrote it is written again, whatever its metadata says;
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
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::api::condition::{self, Condition, ConditionStatus};
use crate::api::view::{DeletionPolicy, MirrorOptions, OmittedField, parse_duration};
use crate::api::{
    GpuInstance, GpuInstanceSpec, GpuInstanceStatus, GpuInstanceView, GpuInstanceViewSpec,
};
use crate::counts;
use crate::expiry::{self, ExpiryState};
use crate::mirror;
use crate::ppio::{Instance, RecordSummary};

/// Distinct statuses or regions kept in the view's counts; the rest add up under [`OTHER`].
pub const MAX_COUNT_KEYS: usize = 32;
/// The key that sums up statuses or regions beyond [`MAX_COUNT_KEYS`].
pub use crate::counts::OTHER;
/// The mass-removal guard holds deletions only when more than this many are due at once.
pub const MASS_REMOVAL_MIN: usize = 5;
/// The mirror's Ready reason while its instance is missing from the view's complete listings.
pub const NOT_LISTED: &str = "NotListed";

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
}

impl<'a> MirrorShape<'a> {
    /// The shape of `view`'s mirrors as the view is now.
    pub fn of(view: &'a GpuInstanceView) -> MirrorShape<'a> {
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
        } = &view.spec;
        MirrorShape {
            name: view.metadata.name.as_deref(),
            namespace: view.metadata.namespace.as_deref(),
            uid: view.metadata.uid.as_deref(),
            shard: shard_of(view),
            omit_fields,
            expiry_warning_window,
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
    /// The seed of `view` as it is now.
    pub fn of(view: &GpuInstanceView) -> ViewSeed {
        use std::hash::{Hash, Hasher};
        let shape = MirrorShape::of(view);
        let mut hasher = rustc_hash::FxHasher::default();
        shape.hash(&mut hasher);
        ViewSeed {
            hash: hasher.finish(),
            window: shape.expiry_window(),
        }
    }

    /// What the mirror of a record depends on, as one number: the record as sent and the API key it
    /// was read with (`record`, from [`crate::ppio::ListedPage::source`]), the view's
    /// [`MirrorShape`], and the record's [`ExpiryState`] now, which changes with time alone. A
    /// trusted mirror whose record hashes as it did last time is unchanged, which the operator then
    /// knows without decoding or mapping the record again. Kept in memory only, so it may use a
    /// per-process hash.
    pub fn source_hash(&self, record: u64, expiry: ExpiryState) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = rustc_hash::FxHasher::default();
        self.hash.hash(&mut hasher);
        expiry.hash(&mut hasher);
        record.hash(&mut hasher);
        hasher.finish()
    }

    /// Where `instance` stands at `now` against the view's expiry warning window. A window the
    /// schema would refuse fails the sync before anything is planned; here it counts as off.
    pub fn expiry_of(&self, instance: &RecordSummary, now: Timestamp) -> ExpiryState {
        expiry::expiry_state(instance, self.window, now)
    }
}

/// A mirror's content in three numbers: the [`mirror::fingerprint`] of its spec and status, the
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
    /// time: merge them with the current ones ([`condition::merge_conditions`]) to keep history.
    pub status: GpuInstanceStatus,
}

/// What one listed instance needs.
#[derive(Clone, Debug, PartialEq)]
pub enum InstancePlan {
    /// Its mirror is as it should be.
    Unchanged,
    /// It has no mirror yet.
    Create(Box<DesiredMirror>),
    /// Its mirror differs, was changed by someone else, or was marked absent.
    Update(Box<DesiredMirror>),
}

/// Plans the mirror of one listed `instance` of `view`, given what the cluster holds of it.
pub fn plan_instance(
    view: &GpuInstanceView,
    instance: &Instance,
    observed: Option<&Observed>,
    now: Timestamp,
) -> InstancePlan {
    let shape = MirrorShape::of(view);
    let content = MirrorContent::of(&shape, instance, now);
    // Most syncs change nothing: tell that from the digest before building any object.
    if let Some(observed) = observed
        && observed.trusted
        && observed.absent_since.is_none()
        && observed.digest
            == (Digest {
                fingerprint: content.fingerprint,
                labels: mirror::labels_digest(&content.labels),
                owner: shape.uid.map_or(0, owner_hash),
            })
    {
        return InstancePlan::Unchanged;
    }
    let desired = Box::new(content.into_mirror(&shape, instance, now));
    match observed {
        None => InstancePlan::Create(desired),
        Some(_) => InstancePlan::Update(desired),
    }
}

/// What a mirror holds, before any object is built: enough to compare with its digest.
struct MirrorContent {
    spec: GpuInstanceSpec,
    status: GpuInstanceStatus,
    fingerprint: u64,
    labels: BTreeMap<String, String>,
}

impl MirrorContent {
    fn of(shape: &MirrorShape<'_>, instance: &Instance, now: Timestamp) -> MirrorContent {
        let view_name = shape.view_name();
        let spec = GpuInstanceSpec {
            instance_id: mirror::spec_instance_id(instance.id.as_str()),
            view: view_name.to_owned(),
        };
        let expiry = expiry::expiry_state(&instance.into(), shape.expiry_window(), now);
        let (status, fingerprint) = fingerprinted_status(shape, instance, expiry, &spec);
        let labels = mirror::labels(view_name, shape.shard, instance, expiry.soon());
        MirrorContent {
            spec,
            status,
            fingerprint,
            labels,
        }
    }

    fn into_mirror(
        self,
        shape: &MirrorShape<'_>,
        instance: &Instance,
        now: Timestamp,
    ) -> DesiredMirror {
        let name = mirror::object_name(&self.spec.view, instance.id.as_str());
        assemble(
            shape,
            name,
            self.spec,
            stamped(self.status, now),
            self.fingerprint,
            self.labels,
        )
    }
}

/// The status of the mirror of `instance` with no history (transition times at the epoch), and its
/// fingerprint, computed without a copy.
fn fingerprinted_status(
    shape: &MirrorShape<'_>,
    instance: &Instance,
    expiry: ExpiryState,
    spec: &GpuInstanceSpec,
) -> (GpuInstanceStatus, u64) {
    let expiring = expiry::expiring_soon_condition(expiry, shape.expiry_warning_window);
    let status = mirror::status(
        instance,
        shape.omit_fields,
        expiring,
        &[],
        Timestamp::UNIX_EPOCH,
    );
    let fingerprint = mirror::fingerprint(spec, &status);
    (status, fingerprint)
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

/// The digest of what `desired` will hold once applied.
pub fn digest_of(desired: &DesiredMirror) -> Digest {
    Digest::of_metadata(&desired.object.metadata)
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
    MirrorShape::of(view).owner_reference()
}

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
            owner_references: owner_reference(view).map(|r| vec![r]),
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
    /// Prepaid instances expiring soon (see [`crate::expiry`]).
    pub expiring_soon: i64,
}

impl Summary {
    /// Counts one more listed instance. Call [`Summary::bounded`] once the listing is complete.
    pub fn add(&mut self, instance: &RecordSummary) {
        if instance.status == mirror::RUNNING {
            self.running += 1;
        }
        self.instances += 1;
        count(&mut self.by_status, &instance.status);
        count(&mut self.by_region, &instance.region);
        self.gpus = self.gpus.saturating_add(instance.gpus.max(0));
    }

    /// Counts a listed instance that is expiring soon, given its [`ExpiryState`].
    pub fn add_expiry(&mut self, expiry: ExpiryState) {
        if expiry.soon().is_some() {
            self.expiring_soon += 1;
        }
    }

    /// The summary with at most [`MAX_COUNT_KEYS`] statuses and regions (the rest under [`OTHER`]).
    pub fn bounded(self) -> Summary {
        Summary {
            by_status: bounded(self.by_status),
            by_region: bounded(self.by_region),
            ..self
        }
    }
}

/// Counts one more `value` in `counts`, allocating only for a value not seen before.
fn count(counts: &mut BTreeMap<String, i64>, value: &str) {
    let key = counts::key_of(value, counts::MAX_KEY_BYTES);
    match counts.get_mut(key.as_ref()) {
        Some(n) => *n += 1,
        None => {
            counts.insert(key.into_owned(), 1);
        }
    }
}

/// Keeps the largest [`MAX_COUNT_KEYS`] entries and sums the rest under [`OTHER`].
fn bounded(counts: BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    let (kept, rest) = counts::split_largest(counts, MAX_COUNT_KEYS, |n| *n);
    if rest.is_empty() {
        return kept.into_iter().collect();
    }
    let mut kept: BTreeMap<_, _> = kept.into_iter().collect();
    *kept.entry(OTHER.to_owned()).or_insert(0) += rest.iter().map(|(_, n)| n).sum::<i64>();
    kept
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::view::GpuInstanceViewSpec;
    use crate::ppio::{InstanceId, InstanceStatus, ResourceSpecs};

    pub(crate) fn view(mirror: bool) -> GpuInstanceView {
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

    /// The summary of a complete `listing`, counted as a sync counts it.
    pub(crate) fn summarize(listing: &[Instance]) -> Summary {
        let mut summary = Summary::default();
        for instance in listing {
            summary.add(&instance.into());
        }
        summary.bounded()
    }

    pub(crate) fn instance(id: &str, state: &str, region: &str, gpus: i64) -> Instance {
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

    /// What the metadata of `desired`, once applied, says of it.
    fn observed(desired: &DesiredMirror) -> Observed {
        Observed {
            uid: format!("uid-{}", desired.name),
            digest: digest_of(desired),
            absent_since: None,
            trusted: true,
            source: None,
            status: Arc::from(
                desired
                    .object
                    .labels()
                    .get(mirror::STATUS_LABEL)
                    .map_or("", String::as_str),
            ),
            expiring_soon: desired
                .object
                .labels()
                .get(mirror::EXPIRING_SOON_LABEL)
                .and_then(|v| mirror::parse_expiring_soon(v)),
        }
    }

    fn desired(plan: InstancePlan) -> DesiredMirror {
        match plan {
            InstancePlan::Create(d) | InstancePlan::Update(d) => *d,
            InstancePlan::Unchanged => panic!("expected a write"),
        }
    }

    #[test]
    fn a_new_instance_gets_one_owned_labelled_fingerprinted_mirror() {
        let plan = plan_instance(
            &view(true),
            &instance("aa01", "running", "cn-east-1", 2),
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
            &instance("aa01", "running", "cn-east-1", 2),
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
        let first = desired(plan_instance(&view, &i, None, at(100)));
        // Later, with another clock: the transition times differ, the fingerprint does not.
        let again = plan_instance(&view, &i, Some(&observed(&first)), at(500));
        assert_eq!(again, InstancePlan::Unchanged);
    }

    #[test]
    fn a_remote_change_rewrites_the_mirror() {
        let view = view(true);
        let before = desired(plan_instance(
            &view,
            &instance("aa01", "running", "cn-east-1", 2),
            None,
            at(100),
        ));
        let plan = plan_instance(
            &view,
            &instance("aa01", "exited", "cn-east-1", 2),
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
        let first = desired(plan_instance(&view, &i, None, at(100)));
        let mut touched = observed(&first);
        touched.trusted = false;
        assert!(matches!(
            plan_instance(&view, &i, Some(&touched), at(200)),
            InstancePlan::Update(_)
        ));
        // A label of ours removed or changed shows in the digest as well.
        let mut relabelled = observed(&first);
        relabelled.digest.labels ^= 1;
        assert!(matches!(
            plan_instance(&view, &i, Some(&relabelled), at(200)),
            InstancePlan::Update(_)
        ));
    }

    #[test]
    fn a_reappearing_instance_loses_its_absence_mark() {
        let view = view(true);
        let i = instance("aa01", "running", "r", 1);
        let first = desired(plan_instance(&view, &i, None, at(100)));
        let mut marked = observed(&first);
        marked.absent_since = Some(at(150));
        let back = desired(plan_instance(&view, &i, Some(&marked), at(300)));
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

    #[test]
    fn the_source_hash_follows_the_record_and_the_views_options() {
        let view = view(true);
        let (record, other) = (0x5eed_u64, 0x5eee_u64);
        let none = ExpiryState::NotApplicable;
        assert_eq!(
            ViewSeed::of(&view).source_hash(record, none),
            ViewSeed::of(&view.clone()).source_hash(record, none)
        );
        assert_ne!(
            ViewSeed::of(&view).source_hash(record, none),
            ViewSeed::of(&view).source_hash(other, none)
        );
        let mut omitting = view.clone();
        omitting.spec.mirror.omit_fields = vec![crate::api::view::OmittedField::Command];
        assert_ne!(
            ViewSeed::of(&view).source_hash(record, none),
            ViewSeed::of(&omitting).source_hash(record, none)
        );
        let mut sharded = view.clone();
        sharded
            .labels_mut()
            .insert(mirror::SHARD_LABEL.into(), "one".into());
        assert_ne!(
            ViewSeed::of(&view).source_hash(record, none),
            ViewSeed::of(&sharded).source_hash(record, none)
        );
        let mut warning_later = view.clone();
        warning_later.spec.expiry_warning_window = "168h".into();
        assert_ne!(
            ViewSeed::of(&view).source_hash(record, none),
            ViewSeed::of(&warning_later).source_hash(record, none)
        );
        let mut renamed = view.clone();
        renamed.metadata.uid = Some("another-uid".into());
        assert_ne!(
            ViewSeed::of(&view).source_hash(record, none),
            ViewSeed::of(&renamed).source_hash(record, none)
        );
    }

    fn prepaid(id: &str, end: i64, auto_renew: bool) -> Instance {
        let mut i = instance(id, "running", "r", 1);
        i.billing = Some(crate::ppio::Billing {
            mode: "prepaid".into(),
            prepaid: Some(crate::ppio::Prepaid {
                months: 1,
                end_time: Some(at(end)),
                auto_renew: Some(crate::ppio::AutoRenew {
                    enabled: auto_renew,
                    ..Default::default()
                }),
            }),
        });
        i
    }

    #[test]
    fn a_view_change_that_changes_its_mirrors_changes_its_seed_and_no_other_does() {
        use crate::api::view::{BillingMode, DeletionPolicy, OmittedField};
        let now = at(1_700_000_000);
        let mut record = prepaid("a1", now.as_second() + 3600, false);
        record.command = "python serve.py".into();
        let mirror_of = |view: &GpuInstanceView| match plan_instance(view, &record, None, now) {
            InstancePlan::Create(desired) => desired,
            other => panic!("a record without a mirror is created, not {other:?}"),
        };
        let seed_of = |view: &GpuInstanceView| {
            ViewSeed::of(view).source_hash(0x5eed, ExpiryState::NotApplicable)
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
            ViewSeed::of(&view)
                .source_hash(record, ViewSeed::of(&view).expiry_of(&(&i).into(), early)),
            ViewSeed::of(&view)
                .source_hash(record, ViewSeed::of(&view).expiry_of(&(&i).into(), late))
        );
        let before = desired(plan_instance(&view, &i, None, early));
        assert!(
            !before
                .object
                .labels()
                .contains_key(mirror::EXPIRING_SOON_LABEL)
        );
        let after = desired(plan_instance(&view, &i, Some(&observed(&before)), late));
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
        assert_eq!(
            plan_instance(&view, &i, Some(&observed(&after)), at(end - 9 * HOUR)),
            InstancePlan::Unchanged
        );
    }

    #[test]
    fn auto_renewing_or_unwarned_views_get_no_expiring_soon_label() {
        let end = 1_000_000;
        let renewing = desired(plan_instance(
            &view(true),
            &prepaid("aa01", end, true),
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
            &prepaid("aa01", end, false),
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

    #[test]
    fn the_summary_counts_instances_expiring_soon() {
        let view = view(true);
        let end = 1_000_000;
        let now = at(end - 3600);
        let mut summary = Summary::default();
        for i in [
            prepaid("a", end, false),
            prepaid("b", end, true),
            instance("c", "running", "r", 1),
        ] {
            let i = RecordSummary::from(&i);
            summary.add(&i);
            summary.add_expiry(ViewSeed::of(&view).expiry_of(&i, now));
        }
        assert_eq!(summary.bounded().expiring_soon, 1);
    }
}
