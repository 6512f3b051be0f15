//! Turning not ready the Services of mirrors that no recent listing confirmed, whatever state
//! their view is in (syncing, failing, stalled, suspended, not mirroring or not keeping Services
//! any more, being deleted): what [`ppio_gpu_core::services::freshness`] decides, carried out before and
//! after each sync of the view, while it waits for a sync slot, and at each reconcile of a view
//! stuck in deletion.
//!
//! A flip reads the mirror, checks it is the view's (by the view's UID as its controller) and that
//! its status names a Service, plans that Service from its status as a sync would, with its
//! endpoints not ready and a readiness text that says since when nothing confirms the instance,
//! and rewrites the Service and its slices that exist: one write each per flip, none while nothing
//! is due, and never a create. The mirror itself is not written; it is distrusted in the cache, so
//! the next listing that confirms the instance writes the mirror and its Service again, ready.
//!
//! A mirror of an instance not running, or marked absent, is planned not ready already; its
//! Service is rewritten only if its slices still route, i.e. a write was interrupted between the
//! mirror and its Service. Such a mirror is a candidate only when its labels say `running` (they
//! are written last, so may lag) or the watch knows Services or EndpointSlices it controls.
//!
//! Whatever the plan, the EndpointSlices the mirror controls that its planned Service does not
//! name are deleted (all of them when it has no Service of its own): a slice left by a write that
//! failed half-way, of an address the operator no longer allows, or of a Service that is gone or
//! another's, must not route either. A flip the API server refuses for the object itself (a
//! policy, a quota, a permission) deletes the mirror's slices instead; a refusal of those deletes is
//! tried again one window later.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use super::Context;
use super::services::ServiceWrites;
use ppio_gpu_core::api::{GpuInstance, GpuInstanceView};
use ppio_gpu_core::services::{self, AddressPolicy, DesiredService, freshness};
use ppio_gpu_core::sync::plan::controlled_by_view;

/// How soon a flip the API server refused is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// How long each view's last complete sync took, part of its freshness window.
#[derive(Default)]
pub(super) struct ListingDurations(Mutex<HashMap<ObjectRef<GpuInstanceView>, Duration>>);

impl ListingDurations {
    /// Records that the last complete sync of `view` took `took`.
    pub(super) fn record(&self, view: ObjectRef<GpuInstanceView>, took: Duration) {
        self.lock().insert(view, took);
    }

    /// How long the last complete sync of `view` took (zero before the first).
    pub(super) fn last(&self, view: &ObjectRef<GpuInstanceView>) -> Duration {
        self.lock().get(view).copied().unwrap_or_default()
    }

    /// Forgets a deleted view.
    pub(super) fn forget(&self, view: &ObjectRef<GpuInstanceView>) {
        self.lock().remove(view);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<GpuInstanceView>, Duration>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Turns not ready the Services of `view`'s mirrors that no listing confirmed within its freshness
/// window; how long until the next one is due (or a refused flip is retried), if any may be. Done
/// whatever the view's own `services.enabled` says, as long as the operator keeps Services at all:
/// a view whose option was turned off while it could not sync keeps its Services until it syncs.
pub(super) async fn turn_unconfirmed(view: &GpuInstanceView, ctx: &Context) -> Option<Duration> {
    let policy = ctx.settings.services.as_ref()?;
    let key = ObjectRef::from_obj(view);
    let window = freshness::window(view.spec.sync_interval(), ctx.listings.last(&key));
    let namespace = view.namespace().unwrap_or_default();
    let watch = ctx.service_watch.as_deref();
    let due = ctx
        .mirrors
        .unconfirmed(view, window, Instant::now(), |uid| {
            watch.is_some_and(|watch| watch.controls_any(&namespace, uid))
        });
    if due.stale.is_empty() {
        return due.next;
    }
    let flip = Flip {
        view,
        mirrors: Api::namespaced(ctx.client.clone(), &namespace),
        writes: ServiceWrites::new(
            ctx.client.clone(),
            &namespace,
            ctx.metrics.clone(),
            ctx.service_watch.clone(),
        ),
        policy,
    };
    let (now, wall_now) = (Instant::now(), Timestamp::now());
    let retry = futures::stream::iter(due.stale)
        .map(|(name, confirmed)| {
            let since = freshness::wall_time_of(confirmed, now, wall_now);
            let (flip, namespace) = (&flip, namespace.as_str());
            async move {
                match flip.turn(&name, since).await {
                    Ok(turned) => {
                        if turned {
                            ctx.metrics.record_freshness_flip();
                            info!(mirror = %name, %since, "no listing confirmed the instance within the freshness window; its Service is not ready");
                        }
                        ctx.mirrors.record_turned(namespace, &name, turned);
                        None
                    }
                    // Refused for this object even after its slices were to be withdrawn (a
                    // policy, a quota, a missing permission): asking every few seconds would not
                    // change that, and giving up would leave it routing. Asked again a window on.
                    Err(kube::Error::Api(refusal))
                        if super::writes::refused_for_this_object(refusal.code) =>
                    {
                        warn!(mirror = %name, code = refusal.code, reason = %refusal.reason, message = %ppio::text::truncate(&refusal.message, 512), "the API server refused to turn the Service of an unconfirmed instance not ready; trying again in a freshness window");
                        Some(window)
                    }
                    Err(error) => {
                        warn!(mirror = %name, %error, "cannot turn the Service of an unconfirmed instance not ready; retrying");
                        Some(RETRY)
                    }
                }
            }
        })
        .buffer_unordered(ctx.settings.write_concurrency.max(1))
        .filter_map(std::future::ready)
        .fold(None, |soonest: Option<Duration>, retry| {
            std::future::ready(Some(soonest.map_or(retry, |s| s.min(retry))))
        })
        .await;
    retry.into_iter().chain(due.next).min()
}

/// What a flip does with a mirror it read back.
#[derive(Debug, PartialEq, Eq)]
enum FlipPlan {
    /// Nothing at all: the mirror is not the view's (by the view's UID as its controller).
    NotTheViews,
    /// No Service is named in its status (a flip never creates one) or planned for it: only the
    /// EndpointSlices it still controls go.
    Withdraw,
    /// Rewrite its Service as this: not ready, saying since when nothing confirms the instance.
    Turn(DesiredService),
    /// Its Service is planned not ready already (the instance is not running, or marked absent):
    /// rewrite it as this only if its slices still route, a write having been interrupted
    /// before the Service.
    IfRouting(DesiredService),
}

/// What a flip of `mirror`, one of `view`'s, confirmed last `since`, writes under `policy`.
fn plan_flip(
    view: &GpuInstanceView,
    mirror: &GpuInstance,
    policy: &AddressPolicy,
    since: Timestamp,
) -> FlipPlan {
    if !controlled_by_view(&mirror.metadata, view) {
        return FlipPlan::NotTheViews;
    }
    let Some(status) = mirror.status.as_ref().filter(|s| s.service.is_some()) else {
        return FlipPlan::Withdraw;
    };
    let Some(mut desired) = services::plan(&mirror.name_any(), status, policy).service else {
        return FlipPlan::Withdraw;
    };
    if !desired.ready {
        return FlipPlan::IfRouting(desired);
    }
    desired.ready = false;
    desired.readiness = freshness::unconfirmed_readiness(since);
    FlipPlan::Turn(desired)
}

/// What a flip needs: the view, its mirrors, its Service writers and the address rule.
struct Flip<'a> {
    view: &'a GpuInstanceView,
    mirrors: Api<GpuInstance>,
    writes: ServiceWrites,
    policy: &'a AddressPolicy,
}

impl Flip<'_> {
    /// Writes the Service of mirror `name` not ready, confirmed last `since`, and deletes the
    /// EndpointSlices the mirror controls that its Service, as planned now, does not name (or
    /// all of them, when it has no Service of its own any more); whether anything was written
    /// (see [`FlipPlan`] for when there is nothing to write).
    async fn turn(&self, name: &str, since: Timestamp) -> Result<bool, kube::Error> {
        let Some(mirror) = self.mirrors.get_opt(name).await? else {
            return Ok(false);
        };
        let uid = mirror.uid().unwrap_or_default();
        let (desired, only_if_routing) = match plan_flip(self.view, &mirror, self.policy, since) {
            FlipPlan::NotTheViews => return Ok(false),
            FlipPlan::Withdraw => (None, false),
            FlipPlan::Turn(desired) => (Some(desired), false),
            FlipPlan::IfRouting(desired) => (Some(desired), true),
        };
        let mut wrote = false;
        let mut keep = BTreeSet::new();
        if let Some(desired) = &desired {
            let planned = desired.slices.iter().map(|slice| slice.name.as_str());
            match self
                .turn_service(&mirror, &uid, desired, only_if_routing)
                .await
            {
                Ok(Turned::AsItWas) => keep.extend(planned),
                Ok(Turned::NotReady) => {
                    wrote = true;
                    keep.extend(planned);
                }
                // Its Service is gone or not its own: its slices route for nothing of the
                // operator's, and go.
                Ok(Turned::NoService) => {}
                // Refused for this object: what cannot be turned not ready goes instead.
                Err(kube::Error::Api(refusal))
                    if super::writes::refused_for_this_object(refusal.code) =>
                {
                    warn!(mirror = %name, code = refusal.code, reason = %refusal.reason, "the API server refused to turn the Service of an unconfirmed instance not ready; its EndpointSlices are deleted instead");
                }
                Err(e) => return Err(e),
            }
        }
        let named = mirror
            .status
            .as_ref()
            .and_then(|status| status.service.as_ref())
            .map(|service| service.endpoint_slices.clone())
            .unwrap_or_default();
        wrote |= self.writes.withdraw_slices(&uid, &named, &keep).await? > 0;
        Ok(wrote)
    }

    /// Turns the Service of `mirror` (whose UID is `uid`) not ready as `desired` plans it
    /// (`only_if_routing`: only if its slices still route).
    async fn turn_service(
        &self,
        mirror: &GpuInstance,
        uid: &str,
        desired: &DesiredService,
        only_if_routing: bool,
    ) -> Result<Turned, kube::Error> {
        if only_if_routing && !self.writes.routes(desired, uid).await? {
            return Ok(Turned::AsItWas);
        }
        let meta = super::mirror_meta::MirrorMeta::from(mirror.metadata.clone());
        Ok(
            if self
                .writes
                .rewrite_existing(&meta, mirror.labels(), desired)
                .await?
            {
                Turned::NotReady
            } else {
                Turned::NoService
            },
        )
    }
}

/// What became of a mirror's Service in a flip.
enum Turned {
    /// Not ready already, as planned: left as it was.
    AsItWas,
    /// Written not ready.
    NotReady,
    /// None to write: gone, or not the mirror's.
    NoService,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppio_gpu_core::api::instance::{
        GpuInstanceSpec, GpuInstanceStatus, MirrorService, PortStatus, RemoteStatus,
    };
    use ppio_gpu_core::sync::fixtures;

    /// The address rule: the documentation range the mirror's address is in, allowed.
    fn policy() -> AddressPolicy {
        AddressPolicy {
            cluster: Vec::new(),
            allowed: vec!["203.0.113.0/24".parse().expect("a range")],
        }
    }

    /// A mirror of `view` showing a running instance at 203.0.113.5 whose Service its status names.
    fn mirror(view: &GpuInstanceView) -> GpuInstance {
        let mut mirror = GpuInstance::new(
            "team-a-aa01",
            GpuInstanceSpec {
                instance_id: "aa01".into(),
                view: "team-a".into(),
            },
        );
        mirror.metadata.namespace = Some("ml".into());
        mirror.metadata.uid = Some("uid-mirror".into());
        mirror.metadata.owner_references =
            ppio_gpu_core::sync::plan::owner_reference(view).map(|r| vec![r]);
        mirror.status = Some(GpuInstanceStatus {
            status: Some(RemoteStatus {
                status: Some("running".into()),
                ..RemoteStatus::default()
            }),
            ports: vec![PortStatus {
                port: Some(8080),
                protocol: Some("http".into()),
                endpoint: Some("http://203.0.113.5:30001".into()),
            }],
            service: Some(MirrorService {
                name: "team-a-aa01".into(),
                endpoint_slices: vec!["team-a-aa01-ipv4-0".into()],
            }),
            ..GpuInstanceStatus::default()
        });
        mirror
    }

    fn since() -> Timestamp {
        "2026-12-07T05:00:00Z".parse().expect("a time")
    }

    #[test]
    fn a_running_mirror_is_turned_not_ready_saying_since_when_whatever_the_views_option() {
        for services in [true, false] {
            // `services.enabled` turned off while the view could not sync: its Services stay
            // until it syncs, and must stop routing all the same.
            let mut view = fixtures::view(true);
            view.spec.services.enabled = services;
            let FlipPlan::Turn(desired) = plan_flip(&view, &mirror(&view), &policy(), since())
            else {
                panic!("services.enabled={services}: a Service to turn");
            };
            assert!(!desired.ready);
            assert_eq!(desired.readiness, freshness::unconfirmed_readiness(since()));
            assert_eq!(desired.slices.len(), 1);
        }
    }

    #[test]
    fn a_flip_never_creates_a_service_nor_touches_another_views_mirror() {
        let view = fixtures::view(true);
        let mut unnamed = mirror(&view);
        if let Some(status) = unnamed.status.as_mut() {
            status.service = None;
        }
        assert_eq!(
            plan_flip(&view, &unnamed, &policy(), since()),
            FlipPlan::Withdraw,
            "no Service named in its status: none to create, only its slices to withdraw"
        );

        // The name the cache knew now holds a mirror another view controls.
        let mut other = fixtures::view(true);
        other.metadata.uid = Some("another-view-uid".into());
        assert_eq!(
            plan_flip(&view, &mirror(&other), &policy(), since()),
            FlipPlan::NotTheViews
        );
        let mut orphan = mirror(&view);
        orphan.metadata.owner_references = None;
        assert_eq!(
            plan_flip(&view, &orphan, &policy(), since()),
            FlipPlan::NotTheViews
        );
    }

    #[test]
    fn a_mirror_marked_absent_is_rewritten_only_if_its_service_still_routes() {
        let view = fixtures::view(true);
        let mut marked = mirror(&view);
        if let Some(status) = marked.status.as_mut() {
            status.absent_since = Some(since());
        }
        let FlipPlan::IfRouting(desired) = plan_flip(&view, &marked, &policy(), since()) else {
            panic!("an absent mirror's Service is checked, not turned blindly");
        };
        assert!(!desired.ready, "as the mark planned it");
        assert!(!freshness::is_unconfirmed(&desired.readiness));
    }
}
