//! Turning not ready the Services of mirrors that no recent listing confirmed, whatever state
//! their view is in (syncing, failing, stalled, suspended, not mirroring): what
//! [`crate::services::freshness`] decides, carried out at the end of each reconcile of the view.
//!
//! A flip reads the mirror, plans its Service from its status as a sync would, with its endpoints
//! not ready and a readiness text that says since when nothing confirms the instance, and writes
//! the Service and its slices: one write each per flip, none while nothing is due. The mirror itself
//! is not written; it is distrusted in the cache, so the next listing that confirms the instance
//! writes the mirror and its Service again, ready.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use super::Context;
use super::services::{Outcome, ServiceWrites};
use crate::api::{GpuInstance, GpuInstanceView};
use crate::services::{self, AddressPolicy, freshness};

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
/// window; how long until the next one is due (or a refused flip is retried), if any may be.
pub(super) async fn turn_unconfirmed(view: &GpuInstanceView, ctx: &Context) -> Option<Duration> {
    let policy = ctx.settings.services.as_ref()?;
    if !view.spec.services.enabled {
        return None;
    }
    let key = ObjectRef::from_obj(view);
    let window = freshness::window(view.spec.sync_interval(), ctx.listings.last(&key));
    let due = ctx.mirrors.unconfirmed(view, window, Instant::now());
    if due.stale.is_empty() {
        return due.next;
    }
    let namespace = view.namespace().unwrap_or_default();
    let flip = Flip {
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
    let refused = futures::stream::iter(due.stale)
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
                        false
                    }
                    Err(error) => {
                        warn!(mirror = %name, %error, "cannot turn the Service of an unconfirmed instance not ready; retrying");
                        true
                    }
                }
            }
        })
        .buffer_unordered(ctx.settings.write_concurrency.max(1))
        .filter(|refused| std::future::ready(*refused))
        .count()
        .await;
    if refused > 0 {
        Some(due.next.map_or(RETRY, |next| next.min(RETRY)))
    } else {
        due.next
    }
}

/// What a flip needs: the view's mirrors, its Service writers and the address rule.
struct Flip<'a> {
    mirrors: Api<GpuInstance>,
    writes: ServiceWrites,
    policy: &'a AddressPolicy,
}

impl Flip<'_> {
    /// Writes the Service of mirror `name` not ready, confirmed last `since`; whether a Service
    /// was written (none is planned, or its endpoints are not ready by the mirror's status
    /// already, or its name is taken: nothing to write).
    async fn turn(&self, name: &str, since: Timestamp) -> Result<bool, kube::Error> {
        let Some(mirror) = self.mirrors.get_opt(name).await? else {
            return Ok(false);
        };
        let Some(status) = mirror.status.as_ref() else {
            return Ok(false);
        };
        let Some(mut desired) = services::plan(name, status, self.policy).service else {
            return Ok(false);
        };
        if !desired.ready {
            return Ok(false);
        }
        desired.ready = false;
        desired.readiness = freshness::unconfirmed_readiness(since);
        let meta = super::mirror_meta::MirrorMeta::from(mirror.metadata.clone());
        let outcome = self
            .writes
            .sync(
                &meta,
                mirror.labels(),
                Some(&desired),
                status.service.as_ref(),
            )
            .await?;
        Ok(outcome == Outcome::Done)
    }
}
