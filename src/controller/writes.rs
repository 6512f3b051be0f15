//! Carrying a sync's decisions out: creates, updates, absence marks and deletes of mirrors, each a
//! task of its own, at most `--write-concurrency` of one sync in flight, started as the pages of the
//! listing arrive. Every write is attempted; the failures are reported together at the end, and the
//! next sync plans again what is still missing.
//!
//! The order of a mirror's writes matters, because its metadata (the fingerprint annotation) is what
//! the next sync believes, in this process or in the next leader: the fingerprint goes out last,
//! only after every write it vouches for (the status, the Service and its EndpointSlices)
//! succeeded. An update reads the mirror (only the view's own is written), writes the status, then
//! the Service, then the object with its new labels and fingerprint; a mirror that already carries
//! the planned fingerprint but is not trusted (a write of it failed half-way) first has the
//! fingerprint taken away. A new mirror is created without a fingerprint (its status needs the object to
//! exist), and gets it once its status and Service are written. A process that stops in between (a
//! lost Lease, the drain, an OOM kill) leaves a mirror whose fingerprint does not match its record,
//! which the next sync writes again. When the Service cannot be kept (a name taken, a refusal), the
//! object is written without a fingerprint, so it is tried again by any process. An absence mark
//! first takes the fingerprint away, then writes the status, the Service, and last the annotation
//! that records it (an absent mirror carries no fingerprint).
//!
//! A mirror's lifecycle Events are published only once the labels that record them are written
//! (the last write of an update, the first of a create): the labels then show the new remote status
//! and end time, so a later sync (or a restarted operator) does not publish them again, and a write
//! that fails before them keeps the Events for the next sync. At most `spec.lifecycleEvents.maxPerSync` are
//! published one by one; when more were due, one summary on the view follows the last write.
//! They are published after the write task has given its permit back: a permit bounds the
//! Kubernetes writes of mirrors in flight, and an Event that is slow to publish (the Events API
//! throttled) must not hold up the writes of other mirrors. A write task abandoned at the sync's
//! deadline after its labels were written loses its Events: once per transition is kept, at the
//! price of an Event that may be missing.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::header::{ACCEPT, HeaderValue};
use jiff::Timestamp;
use kube::api::{DeleteParams, Patch, Preconditions};
use kube::runtime::events::Recorder;
use kube::{Api, Resource, ResourceExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::apply::{apply_params, status_apply_body};
use super::cache::{MirrorCache, WriteTicket};
use super::events;
use super::mirror_meta::MirrorMeta;
use super::service_watch::ServiceWatch;
use super::services::{Outcome, ServiceWrites};
use crate::process::metrics::Metrics;
use ppio_gpu_core::api::condition::{self, Condition, ConditionStatus};
use ppio_gpu_core::api::{GpuInstance, GpuInstanceStatus, GpuInstanceView};
use ppio_gpu_core::services::{self, AddressPolicy, ServicePlan, ServiceTally};
use ppio_gpu_core::sync::lifecycle::{self, EventReason, InstanceEvent, SyncTally};
use ppio_gpu_core::sync::listing::Removal;
use ppio_gpu_core::sync::plan::{self, DesiredMirror};
use ppio_gpu_core::sync::removals;

/// One write of one mirror.
#[derive(Debug)]
pub enum MirrorWrite {
    /// Create the mirror, then write its status.
    Create {
        /// The mirror.
        mirror: Box<DesiredMirror>,
        /// The source hash of its record.
        source: u64,
        /// When the listing saw the record: written as listed, the mirror is confirmed then.
        listed_at: Instant,
        /// Lifecycle Events to publish once it is written.
        events: Vec<InstanceEvent>,
    },
    /// Rewrite the mirror: status first, keeping the transition times of unchanged conditions.
    Update {
        /// The mirror.
        mirror: Box<DesiredMirror>,
        /// The source hash of its record.
        source: u64,
        /// When the listing saw the record: written as listed, the mirror is confirmed then.
        listed_at: Instant,
        /// Lifecycle Events to publish once it is written.
        events: Vec<InstanceEvent>,
    },
    /// Mark the mirror absent: its instance is missing from a complete listing for the first time.
    MarkAbsent(String),
    /// Delete the mirror, if it is still the object with this UID.
    Delete {
        /// Object name.
        name: String,
        /// The UID planned against: an object recreated under the name since is left alone.
        uid: String,
    },
}

impl From<Removal> for MirrorWrite {
    fn from(removal: Removal) -> MirrorWrite {
        match removal {
            Removal::MarkAbsent(name) => MirrorWrite::MarkAbsent(name),
            Removal::Delete { name, uid } => MirrorWrite::Delete { name, uid },
        }
    }
}

impl MirrorWrite {
    /// The name of the mirror it writes.
    fn mirror_name(&self) -> Option<&str> {
        match self {
            MirrorWrite::Create { mirror, .. } | MirrorWrite::Update { mirror, .. } => {
                Some(&mirror.name)
            }
            MirrorWrite::MarkAbsent(name) => Some(name),
            // A delete either happens, or the mirror stays as it was.
            MirrorWrite::Delete { .. } => None,
        }
    }
}

/// The writes of one sync in flight. Dropping it cancels those still running.
pub struct Writes {
    api: Api<GpuInstance>,
    view: Arc<GpuInstanceView>,
    cache: Arc<MirrorCache>,
    metrics: Metrics,
    lifecycle: Arc<LifecycleEvents>,
    services: Option<Arc<Services>>,
    permits: Arc<Semaphore>,
    tasks: JoinSet<Result<(), kube::Error>>,
    outcome: WriteFailures,
}

/// Writes of one sync that the API server refused.
#[derive(Debug, Default)]
pub struct WriteFailures {
    /// Writes that failed.
    pub failed: usize,
    /// Of those, the writes the API server throttled: refused with 429 after the client's retries,
    /// or not answered within the request deadline ([`crate::process::kube_client::throttled`]).
    pub throttled: usize,
    /// Writes attempted.
    pub total: usize,
    /// The first failure.
    pub first: Option<kube::Error>,
}

impl std::fmt::Display for WriteFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {} writes failed", self.failed, self.total)?;
        if let Some(first) = &self.first {
            write!(f, "; the first: {first}")?;
        }
        Ok(())
    }
}

/// The Services of one sync's mirrors, when the operator keeps Services: their writers, and the
/// address rule an absent mirror's Service is planned again with.
struct Services {
    writes: ServiceWrites,
    policy: AddressPolicy,
    /// Mirrors whose planned Service could not be kept (a name taken, a refused write).
    not_kept: std::sync::atomic::AtomicUsize,
}

/// What a sync's writes came to when they all succeeded.
#[derive(Debug)]
pub struct Finished {
    /// Mirrors written.
    pub writes: usize,
    /// Mirrors whose planned Service could not be kept: the view counts no Service for them.
    pub services_not_kept: usize,
}

/// The lifecycle Events of one sync: the recorder, and the tally that bounds them.
struct LifecycleEvents {
    recorder: Recorder,
    tally: Mutex<SyncTally>,
}

impl LifecycleEvents {
    /// Publishes the Events of `mirror`, just written, that the tally lets through.
    async fn publish(&self, mirror: &Written, due: Vec<InstanceEvent>) {
        for event in due {
            let admitted = self
                .tally
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .admit(&event);
            if admitted {
                events::publish_instance_event(&self.recorder, mirror, &event).await;
            }
        }
    }
}

impl Writes {
    /// Writes of `view`'s mirrors, at most `concurrency` at a time, publishing their lifecycle
    /// Events with `recorder`; their Services too when the operator keeps Services under
    /// `services`.
    pub fn new(
        client: kube::Client,
        view: Arc<GpuInstanceView>,
        cache: Arc<MirrorCache>,
        metrics: Metrics,
        recorder: Recorder,
        concurrency: usize,
        services: Option<(&AddressPolicy, Option<Arc<ServiceWatch>>)>,
    ) -> Writes {
        let namespace = view.namespace().unwrap_or_default();
        let tally = SyncTally::new(view.spec.lifecycle_events.max_per_sync());
        Writes {
            services: services.map(|(policy, watch)| {
                Arc::new(Services {
                    writes: ServiceWrites::new(client.clone(), &namespace, metrics.clone(), watch),
                    policy: policy.clone(),
                    not_kept: std::sync::atomic::AtomicUsize::new(0),
                })
            }),
            api: Api::namespaced(client, &namespace),
            view,
            cache,
            metrics,
            lifecycle: Arc::new(LifecycleEvents {
                recorder,
                tally: Mutex::new(tally),
            }),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            tasks: JoinSet::new(),
            outcome: WriteFailures::default(),
        }
    }

    /// Starts `write`, first waiting for a free place when `concurrency` writes are in flight.
    pub async fn start(&mut self, write: MirrorWrite) {
        while let Some(done) = self.tasks.try_join_next() {
            self.count(done);
        }
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let api = self.api.clone();
        let view = self.view.clone();
        let cache = self.cache.clone();
        let metrics = self.metrics.clone();
        let lifecycle = self.lifecycle.clone();
        let services = self.services.clone();
        self.outcome.total += 1;
        self.tasks.spawn(async move {
            let parts = Parts {
                api: &api,
                view: &view,
                cache: &cache,
                metrics: &metrics,
                services: services.as_deref(),
                due: Mutex::new(Vec::new()),
            };
            let result = parts.carry_out(write).await;
            drop(permit);
            let due = parts
                .due
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for due in due {
                match due {
                    Due::Lifecycle(written, events) => lifecycle.publish(&written, events).await,
                    Due::Service(written, event) => {
                        events::publish_instance_event(&lifecycle.recorder, &written, &event).await;
                    }
                }
            }
            result
        });
    }

    /// Waits for every write started, then publishes the summary of the sync's lifecycle Events on
    /// the view if more were due than it publishes one by one; the failures, if any.
    pub async fn finish(mut self) -> Result<Finished, WriteFailures> {
        while let Some(done) = self.tasks.join_next().await {
            self.count(done);
        }
        let summary = self
            .lifecycle
            .tally
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .summary();
        if let Some(summary) = summary {
            events::publish_summary(&self.lifecycle.recorder, &self.view, &summary).await;
        }
        if self.outcome.failed == 0 {
            Ok(Finished {
                writes: self.outcome.total,
                services_not_kept: self.services.as_ref().map_or(0, |services| {
                    services.not_kept.load(std::sync::atomic::Ordering::Relaxed)
                }),
            })
        } else {
            Err(std::mem::take(&mut self.outcome))
        }
    }

    fn count(&mut self, done: Result<Result<(), kube::Error>, tokio::task::JoinError>) {
        let error = match done {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            // A write task that panicked or was cancelled is a failed write.
            Err(e) => kube::Error::Service(Box::new(e)),
        };
        self.outcome.failed += 1;
        if crate::process::kube_client::throttled(&error).is_some() {
            self.outcome.throttled += 1;
        }
        self.outcome.first.get_or_insert(error);
    }
}

/// What one write task works with.
struct Parts<'a> {
    api: &'a Api<GpuInstance>,
    view: &'a GpuInstanceView,
    cache: &'a MirrorCache,
    metrics: &'a Metrics,
    services: Option<&'a Services>,
    /// Events due once the task has given its permit back, with the mirror as written.
    due: Mutex<Vec<Due>>,
}

/// An Event of a mirror due once its write task has given its permit back.
enum Due {
    /// Lifecycle Events, which the sync's tally bounds.
    Lifecycle(Written, Vec<InstanceEvent>),
    /// Why the mirror's Service is not kept: one series per mirror, at every sync that finds it.
    Service(Written, InstanceEvent),
}

impl Parts<'_> {
    /// Publishes `events` of the mirror just `written` once the task has given its permit back.
    fn publish_later(&self, written: &Written, events: Vec<InstanceEvent>) {
        if events.is_empty() {
            return;
        }
        self.due
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Due::Lifecycle(written.clone(), events));
    }

    /// Carries out one write, keeping the cache's memory of the operator's own writes current.
    async fn carry_out(&self, write: MirrorWrite) -> Result<(), kube::Error> {
        let Parts {
            api,
            view,
            cache,
            metrics,
            ..
        } = *self;
        let namespace = view.namespace().unwrap_or_default();
        // Untrusted until this write records its outcome: a write abandoned half-way (the sync's
        // deadline drops its task, which then records nothing) leaves the mirror to the next sync,
        // also one this process never wrote before (whose metadata it took at its word).
        if let Some(name) = write.mirror_name() {
            cache.record_write_started(&namespace, name);
        }
        // Marks the watches set from here on outlive this write's record.
        let ticket = cache.begin_write();
        match write {
            MirrorWrite::Create {
                mirror: desired,
                source,
                listed_at,
                events,
            } => {
                // Without its fingerprint: until the status and the Service are written too, the
                // mirror must not vouch for them (a process that stops in between leaves a mirror
                // that the next one writes again).
                let created = apply_object(api, metrics, &desired.unvouched()).await?;
                // Its labels, which record these Events, are written: a failed status write would
                // otherwise lose them, since the next sync finds the labels already current.
                self.publish_later(&created, events);
                let mut tally = tally_of(desired.services.as_ref());
                let written = async {
                    // Each later write only while it is still the object created.
                    let uid = created.uid();
                    apply_status_of(api, metrics, &desired.name, uid.as_deref(), &desired.status)
                        .await?;
                    let written_status = (&desired.status, &[][..]);
                    let (written, kept) = self
                        .write_services(&created, &desired, written_status, None, &mut tally)
                        .await?;
                    if !kept {
                        return Ok((written, false));
                    }
                    let mut vouched = desired.object.clone();
                    vouched.metadata.uid = uid;
                    let vouched = apply_object(api, metrics, &vouched).await?;
                    Ok((vouched, true))
                }
                .await;
                remember(
                    (cache, &ticket),
                    &namespace,
                    &desired.name,
                    written,
                    Some((source, listed_at)),
                    tally,
                )
                .map(drop)
            }
            MirrorWrite::Update {
                mirror: desired,
                source,
                listed_at,
                mut events,
            } => {
                let name = desired.name.clone();
                let mut tally = tally_of(desired.services.as_ref());
                let written = async {
                    let Some((current, previous, status)) =
                        update_status(api, view, metrics, &desired).await?
                    else {
                        // Not the view's any more: left alone; the next sync reports the name taken.
                        return Ok(None);
                    };
                    let previous_ports = previous.as_ref().map(|p| &p.ports[..]).unwrap_or(&[]);
                    events.extend(lifecycle::endpoint_changed(previous_ports, &desired));
                    let (history, previous) = previous
                        .map(|p| (p.conditions, p.service))
                        .unwrap_or_default();
                    let (_, kept) = self
                        .write_services(
                            &current,
                            &desired,
                            (&status, &history),
                            previous.as_ref(),
                            &mut tally,
                        )
                        .await?;
                    // The object last, with its labels and, only when its Service was kept as
                    // planned, the fingerprint that vouches for the writes before it; only while
                    // it is still the object whose status was written.
                    let mut object = if kept {
                        desired.object.clone()
                    } else {
                        desired.unvouched()
                    };
                    object.metadata.uid = current.uid();
                    let written = apply_object(api, metrics, &object).await?;
                    // The mirror's labels, which record these Events, are written: whatever
                    // became of its Service, the next sync finds them current.
                    self.publish_later(&written, events);
                    Ok(Some((written, kept)))
                }
                .await;
                let written = match written {
                    Ok(None) => return Ok(()),
                    Ok(Some(written)) => Ok(written),
                    Err(e) => Err(e),
                };
                remember(
                    (cache, &ticket),
                    &namespace,
                    &name,
                    written,
                    Some((source, listed_at)),
                    tally,
                )?;
                Ok(())
            }
            MirrorWrite::MarkAbsent(name) => {
                let Some(current) = api.get_opt(&name).await? else {
                    return Ok(());
                };
                // Replaced since the watch saw it by a GpuInstance the view does not control.
                if !plan::controlled_by_view(current.meta(), view) {
                    return Ok(());
                }
                let (mut object, status) =
                    removals::absent_mirror(view, &current, Timestamp::now());
                // Written only while it is still that object.
                object.metadata.uid = current.metadata.uid.clone();
                let written = async {
                    // First the fingerprint goes: from here until the annotation below is
                    // written, the mirror vouches for nothing, so whatever stops the mark half-way,
                    // the next listing marks it again, or rewrites it whole if its instance is back.
                    if current
                        .annotations()
                        .contains_key(ppio_gpu_core::mirror::FINGERPRINT_ANNOTATION)
                    {
                        let mut unvouched = object.clone();
                        if let Some(annotations) = unvouched.metadata.annotations.as_mut() {
                            annotations.remove(ppio_gpu_core::mirror::ABSENT_SINCE_ANNOTATION);
                        }
                        apply_object(api, metrics, &unvouched).await?;
                    }
                    let marked =
                        apply_status_of(api, metrics, &name, current.uid().as_deref(), &status)
                            .await?;
                    // Its Service stays with it, no longer ready.
                    if let Some(services) = self.services
                        && let Some(previous) = &status.service
                    {
                        let plan = services::plan(&name, &status, &services.policy);
                        services
                            .writes
                            .sync(
                                &marked,
                                &current.labels().clone(),
                                plan.service.as_ref(),
                                Some(previous),
                            )
                            .await?;
                    }
                    // The absence annotation last: until it is written, the next complete listing
                    // that lacks the instance marks it again, Service included.
                    let written = apply_object(api, metrics, &object).await?;
                    Ok((written, true))
                }
                .await;
                remember(
                    (cache, &ticket),
                    &namespace,
                    &name,
                    written,
                    None,
                    ServiceTally::default(),
                )
                .map(drop)
            }
            MirrorWrite::Delete { name, uid } => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::background()
                };
                metrics.record_write("delete", "gpuinstances");
                match api.delete(&name, &params).await {
                    Ok(_) => {}
                    // Gone already, or another object by now: nothing of ours to delete.
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => return Err(e),
                }
                // Its Service and EndpointSlices go with it: the garbage collector follows their
                // owner references. An object of another UID under the name (the 409) is not ours
                // and stays known.
                cache.record_delete(&namespace, &name, &uid);
                Ok(())
            }
        }
    }

    /// Brings the Service of the mirror just `written` (with a status, and the conditions it had
    /// before) to what `desired` plans, given what its status named `previous`ly; the mirror as
    /// written, and whether the next sync may trust it. `tally` learns when no Service could be
    /// kept. A name taken by an object the operator does not manage, or a write the API server
    /// refuses for this Service alone, is reported in the mirror's status and by a Warning Event,
    /// and tried again at the next sync (the mirror is not trusted); it fails nothing else.
    async fn write_services(
        &self,
        written: &Written,
        desired: &DesiredMirror,
        (status, history): (&GpuInstanceStatus, &[Condition]),
        previous: Option<&ppio_gpu_core::api::instance::MirrorService>,
        tally: &mut ServiceTally,
    ) -> Result<(Written, bool), kube::Error> {
        let Some(services) = self.services else {
            return Ok((written.clone(), true));
        };
        let planned = desired.services.as_ref().and_then(|p| p.service.as_ref());
        let labels = desired.object.labels();
        let (reason, event_reason, message) = match services
            .writes
            .sync(written, labels, planned, previous)
            .await
        {
            Ok(Outcome::Done) => return Ok((written.clone(), true)),
            Ok(Outcome::NameTaken(object)) => (
                services::plan::NAME_TAKEN,
                EventReason::ServiceNameTaken,
                format!(
                    "The {object} exists and is not managed by {}: it is left alone and \
                         nothing routes to this instance. Rename or delete it; the next sync \
                         tries again.",
                    ppio_gpu_core::OPERATOR_NAME
                ),
            ),
            // Refused for this Service alone (a quota, an admission webhook or policy, an
            // invalid object): this mirror's failure, not the view's.
            Err(kube::Error::Api(refusal)) if refused_for_this_object(refusal.code) => (
                services::plan::SERVICE_REJECTED,
                EventReason::ServiceRejected,
                format!(
                    "The API server refused to write this instance's Service ({} {}): {}. \
                         Nothing routes to this instance; the next sync tries again.",
                    refusal.code,
                    refusal.reason,
                    ppio::text::truncate(&refusal.message, 512)
                ),
            ),
            Err(e) => return Err(e),
        };
        // Nothing routes to this instance: the EndpointSlices of what it had are withdrawn (a
        // slice left behind would keep routing to an address nothing confirms any more, and to a
        // Service of that name that is not the operator's). If that fails, so does the mirror's
        // write: it is neither trusted nor confirmed, and the sync reports it.
        let named = previous
            .map(|p| p.endpoint_slices.clone())
            .unwrap_or_default();
        let mirror_uid = written.uid().unwrap_or_default();
        services
            .writes
            .withdraw_slices(&mirror_uid, &named, &BTreeSet::new())
            .await?;
        if tally.service {
            services
                .not_kept
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        tally.service = false;
        let mut status = status.clone();
        status.service = None;
        let mut conditions: Vec<Condition> = status
            .conditions
            .iter()
            .filter(|c| c.type_ != services::plan::SERVICE_ENDPOINTS)
            .cloned()
            .collect();
        conditions.push(Condition {
            type_: services::plan::SERVICE_ENDPOINTS.to_owned(),
            status: ConditionStatus::False,
            reason: reason.to_owned(),
            message: message.clone(),
            last_transition_time: ppio_gpu_core::mirror::whole_seconds(Timestamp::now()),
            observed_generation: None,
        });
        // A cause that persists keeps the condition's transition time.
        status.conditions = condition::merge_conditions(history, conditions);
        let written = apply_status(self.api, self.metrics, &desired.name, &status).await?;
        tracing::warn!(mirror = %desired.name, %reason, %message, "no Service is kept for the mirror");
        let event = InstanceEvent {
            reason: event_reason,
            note: ppio_gpu_core::mirror::event_note(&message),
            transition: None,
        };
        // One series per mirror, however many syncs find the same cause.
        self.due
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Due::Service(written.clone(), event));
        Ok((written, false))
    }
}

/// Whether a refusal of a Service or EndpointSlice write concerns that object alone, so that it is
/// reported on its mirror rather than failing the view: a client error other than the operator's
/// credentials (401), a vanished object (404), a conflict (409) or throttling (429).
pub(super) fn refused_for_this_object(code: u16) -> bool {
    (400..500).contains(&code) && !matches!(code, 401 | 404 | 408 | 409 | 429)
}

/// What the view's status counts of a mirror's Service plan.
fn tally_of(plan: Option<&ServicePlan>) -> ServiceTally {
    plan.map(ServicePlan::tally).unwrap_or_default()
}

/// What [`update_status`] wrote: the mirror, its status before (none when it was gone) and the
/// status.
type Updated = (Written, Option<GpuInstanceStatus>, GpuInstanceStatus);

/// The first writes of a mirror's update: reads it for its conditions' history, then writes its
/// status; the mirror as then written, its status before (none when it was gone) and the status
/// written, or `None` when what it read is not controlled by `view` (then nothing is written). The
/// writes carry the UID read, so an object replaced in between is not written either. A mirror
/// deleted meanwhile is created again, without its fingerprint. One that already carries the
/// fingerprint of what is planned (a repair: its Service was deleted, a write of it failed
/// half-way, someone edited it) gives it up first, so that it never vouches for writes that are
/// not done yet, whenever the process stops.
async fn update_status(
    api: &Api<GpuInstance>,
    view: &GpuInstanceView,
    metrics: &Metrics,
    desired: &DesiredMirror,
) -> Result<Option<Updated>, kube::Error> {
    let Some(current) = api.get_opt(&desired.name).await? else {
        apply_object(api, metrics, &desired.unvouched()).await?;
        let written = apply_status(api, metrics, &desired.name, &desired.status).await?;
        return Ok(Some((written, None, desired.status.clone())));
    };
    if !plan::controlled_by_view(current.meta(), view) {
        return Ok(None);
    }
    let uid = current.uid();
    if desired.vouched_by(current.annotations()) {
        let mut unvouched = desired.unvouched();
        unvouched.metadata.uid = uid.clone();
        apply_object(api, metrics, &unvouched).await?;
    }
    let previous = current.status.unwrap_or_default();
    let mut status = desired.status.clone();
    status.conditions = condition::merge_conditions(&previous.conditions, status.conditions);
    let written = apply_status_of(api, metrics, &desired.name, uid.as_deref(), &status).await?;
    Ok(Some((written, Some(previous), status)))
}

/// Remembers the outcome of a mirror's writes in the cache (the record it now matches and when it
/// was `listed`, what its Service plan counted, and whether the next sync may trust it), and
/// passes the mirror on.
fn remember(
    (cache, ticket): (&MirrorCache, &WriteTicket<'_>),
    namespace: &str,
    name: &str,
    written: Result<(Written, bool), kube::Error>,
    listed: Option<(u64, Instant)>,
    services: ServiceTally,
) -> Result<Written, kube::Error> {
    match written {
        Ok((object, trusted)) => {
            cache.record_write(&object, listed.map(|(source, _)| source), services, ticket);
            if let Some((_, listed_at)) = listed {
                // Written as listed: the listing confirms what its Service now shows.
                cache.record_confirmed(namespace, name, listed_at);
            }
            if !trusted {
                cache.record_failed_write(namespace, name);
            }
            Ok(object)
        }
        Err(e) => {
            cache.record_failed_write(namespace, name);
            Err(e)
        }
    }
}

/// What a write of a mirror returns: its metadata. The API server sends no more (an apply asks for
/// `PartialObjectMetadata`), which spares it encoding, and the operator decoding, the spec and the
/// status just written; [`MirrorMeta`] skips the `managedFields` too.
pub(super) type Written = MirrorMeta;

/// The `Accept` header that asks the API server for an object's metadata only.
const METADATA_ONLY: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

/// Server-side apply of a mirror's metadata and spec.
async fn apply_object(
    api: &Api<GpuInstance>,
    metrics: &Metrics,
    object: &GpuInstance,
) -> Result<Written, kube::Error> {
    metrics.record_write("apply", "gpuinstances");
    let request = kube::core::Request::new(api.resource_url())
        .patch(&object.name_any(), &apply_params(), &Patch::Apply(object))
        .map_err(kube::Error::BuildRequest)?;
    send_for_metadata(api, request, "patch").await
}

/// Server-side apply of a mirror's status.
async fn apply_status(
    api: &Api<GpuInstance>,
    metrics: &Metrics,
    name: &str,
    status: &GpuInstanceStatus,
) -> Result<Written, kube::Error> {
    apply_status_of(api, metrics, name, None, status).await
}

/// Server-side apply of a mirror's status, on condition (when `uid` is given) that the mirror is
/// still the object with that UID: the API server refuses it otherwise.
async fn apply_status_of(
    api: &Api<GpuInstance>,
    metrics: &Metrics,
    name: &str,
    uid: Option<&str>,
    status: &GpuInstanceStatus,
) -> Result<Written, kube::Error> {
    let mut body = status_apply_body::<GpuInstance>(status);
    if let Some(uid) = uid {
        body["metadata"] = serde_json::json!({ "uid": uid });
    }
    metrics.record_write("apply_status", "gpuinstances");
    let request = kube::core::Request::new(api.resource_url())
        .patch_subresource("status", name, &apply_params(), &Patch::Apply(&body))
        .map_err(kube::Error::BuildRequest)?;
    send_for_metadata(api, request, "patch_status").await
}

/// Sends a write of a mirror, asking for its metadata back (kube's `patch_status` would ask for the
/// whole object); `verb` names its trace span, as kube's own methods do.
async fn send_for_metadata(
    api: &Api<GpuInstance>,
    mut request: http::Request<Vec<u8>>,
    verb: &'static str,
) -> Result<Written, kube::Error> {
    request
        .headers_mut()
        .insert(ACCEPT, HeaderValue::from_static(METADATA_ONLY));
    request.extensions_mut().insert(verb);
    api.clone().into_client().request(request).await
}
