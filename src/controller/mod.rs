//! The controller: for each `GpuInstanceView`, read its API key, list its instances from PPIO page by
//! page, carry out what [`ppio_gpu_core::sync::plan`] and [`ppio_gpu_core::sync::removals`] decide, then write the
//! view's status and schedule the next sync.
//!
//! This module is the imperative shell around the pure core ([`ppio_gpu_core::sync`]): it talks to the
//! Kubernetes API and, through [`ppio::Client`], to PPIO, but decides nothing about what to
//! write itself. It knows no HTTP or PPIO field names; every failure becomes a
//! [`SyncFailure`](ppio_gpu_core::sync::view_status::SyncFailure) in the view's status. Its parts:
//! - `views`: one watch of views over every watched namespace, feeding one kube-runtime controller;
//! - `scopes`: the watch of each watched namespace (or of all), merged into one stream;
//! - `cache`: what the cluster holds of the mirrors, from a metadata-only watch (`mirror_meta`: the
//!   metadata as read back, without `managedFields`);
//! - `slots`: how many views sync at once, operator-wide;
//! - `schedule`: when each view is due, and the backoff after failures;
//! - `memos`: what each view's listings read of every record, so a record sent again is not read;
//! - `view_sync`: one sync of one view, its listing page by page; `endpoint_policy` and `credentials`
//!   check its endpoint and read its key, `ppio_clients` keeps a PPIO client per endpoint, `prices`
//!   PPIO's product list per key and endpoint (the prices each sync uses);
//! - `writes`: the mirror writes of a sync, in flight as pages arrive (`write_tests` holds the
//!   requests they must send, in order, against the mocked API server of `api_server_verifier`);
//! - `services` and `service_watch`: the Services and EndpointSlices of mirrors, and the watch of
//!   them;
//! - `apply`: server-side apply as the operator makes it;
//! - `events`: Events for transitions, on the view and on its GpuInstances;
//! - `freshness`: Services of instances no recent listing confirmed, turned not ready (also those
//!   of a view stuck in deletion);
//! - `settings`: how the controller behaves, from the command line; `shard`: the shard selector
//!   and each shard's Lease.

#[cfg(test)]
mod api_server_verifier;
mod apply;
mod cache;
mod credentials;
mod endpoint_policy;
mod events;
mod freshness;
mod memos;
mod mirror_meta;
mod ppio_clients;
mod prices;
mod schedule;
mod scopes;
mod service_watch;
mod services;
mod settings;
mod shard;
mod slots;
mod view_sync;
mod views;
#[cfg(test)]
mod write_tests;
mod writes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, debug, info, info_span, warn};

pub use apply::FIELD_MANAGER;
pub use cache::{MirrorCache, WriteTicket};
pub use endpoint_policy::EndpointPolicy;
pub use settings::{DEFAULT_MEMO_MEMORY_LIMIT, DEFAULT_PRODUCT_LIST_TTL, Settings};
pub use shard::{check_shard_selector, default_lease_name};
pub use slots::SyncSlots;

use apply::{apply_params, status_apply_body};

use crate::Error;
use crate::process::http::Health;
use crate::process::metrics::Metrics;
use ppio_clients::PpioClients;
use ppio_gpu_core::api::stored_view::SpecProblem;
use ppio_gpu_core::api::{GpuInstanceView, GpuInstanceViewStatus, StoredView};
use ppio_gpu_core::cost::HourlyBudget;
use ppio_gpu_core::cost::report;
use ppio_gpu_core::sync::view_status;
use schedule::{Schedule, Schedules, UnreadableViews};

/// State shared by every reconciliation.
pub struct Context {
    client: Client,
    settings: Settings,
    metrics: Metrics,
    recorder: Recorder,
    mirrors: Arc<MirrorCache>,
    slots: SyncSlots,
    ppio_clients: PpioClients,
    schedules: Schedules,
    unreadable: UnreadableViews,
    memos: memos::Memos,
    /// How long each view's last complete sync took: part of its freshness window.
    listings: freshness::ListingDurations,
    /// The watch of the operator's Services and EndpointSlices, when it keeps Services.
    service_watch: Option<Arc<service_watch::ServiceWatch>>,
    /// PPIO's product lists, per API key and endpoint.
    prices: prices::PriceLists,
}

impl Context {
    /// A context for `client` with `settings`, recording into `metrics` and publishing Events as
    /// `instance` (e.g. the pod name) of the operator.
    pub fn new(client: Client, settings: Settings, metrics: Metrics, instance: &str) -> Context {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(instance.into()),
        };
        let mirrors = Arc::new(MirrorCache::default());
        let memos = memos::Memos::new(settings.memo_memory_limit);
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            ppio_clients: PpioClients::new(settings.ppio.clone(), metrics.clone()),
            service_watch: settings
                .services
                .as_ref()
                .map(|_| Arc::new(service_watch::ServiceWatch::new(mirrors.clone()))),
            mirrors,
            slots: SyncSlots::new(usize::from(settings.view_concurrency)),
            prices: prices::PriceLists::new(settings.product_list_ttl),
            client,
            settings,
            metrics,
            schedules: Schedules::default(),
            unreadable: UnreadableViews::default(),
            memos,
            listings: freshness::ListingDurations::default(),
        }
    }

    /// Drops what is kept about a deleted view: its schedule, its memo and its metrics.
    fn forget(&self, namespace: &str, name: &str) {
        self.metrics.forget_view(namespace, name);
        let view = ObjectRef::new(name).within(namespace);
        self.memos.forget(&view);
        self.unreadable.forget(&view);
        self.listings.forget(&view);
        self.schedules.set(view, None);
    }
}

/// Runs the controller over the views of `namespaces` (every namespace when empty) until `shutdown`
/// resolves; reconciliations in flight then finish. `health` learns when the watches have listed
/// every view and every mirror.
pub async fn run(
    context: Arc<Context>,
    namespaces: Vec<String>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = context.client.clone();
    let selector = context.settings.label_selector.clone();
    // One watch of views and one of mirrors per namespace (or one each for all namespaces), and
    // with Services, one of Services and one of EndpointSlices.
    let service_watch = context.service_watch.clone();
    health.watches_starting(if service_watch.is_some() { 4 } else { 2 });
    let services = service_watch.map(|watch| {
        let spawn = WatchSpawner {
            watch: &watch,
            client: &client,
            namespaces: &namespaces,
            selector: selector.as_deref(),
            health: &health,
        };
        [
            spawn.watch::<k8s_openapi::api::core::v1::Service>(),
            spawn.watch::<k8s_openapi::api::discovery::v1::EndpointSlice>(),
        ]
    });
    let mirrors = {
        let health = health.clone();
        let cache = context.mirrors.clone();
        let client = client.clone();
        let namespaces = namespaces.clone();
        let selector = selector.clone();
        tokio::spawn(async move {
            cache
                .watch(client, &namespaces, selector.as_deref(), || {
                    health.watch_synced()
                })
                .await
        })
    };
    let (views, store) = views::watch(client, &namespaces, selector.as_deref(), {
        let health = health.clone();
        move || health.watch_synced()
    });
    // Concurrency is bounded by the sync slots, which a sync gives up while it waits for its key's
    // request budget; the controller itself only keeps one reconciliation per view.
    let controller = Controller::for_stream(views, store)
        .with_config(kube::runtime::controller::Config::default().concurrency(0))
        .graceful_shutdown_on(shutdown);
    controller
        .run(reconcile, error_policy, context.clone())
        .for_each(|result| {
            let context = context.clone();
            async move {
                match result {
                    Ok((view, action)) => debug!(view = %view, ?action, "reconciled"),
                    // A deleted view: its mirrors go with it (garbage collector); forget the rest.
                    Err(kube::runtime::controller::Error::ObjectNotFound(view)) => {
                        let namespace = view.namespace.clone().unwrap_or_default();
                        debug!(%namespace, view = %view.name, "view deleted");
                        context.forget(&namespace, &view.name);
                    }
                    Err(e) => warn!(error = %e, "reconciliation failed"),
                }
            }
        })
        .await;
    mirrors.abort();
    for watch in services.into_iter().flatten() {
        watch.abort();
    }
}

/// Starts the watches of the operator's Services and EndpointSlices, each telling `health` when it
/// has listed them.
struct WatchSpawner<'a> {
    watch: &'a Arc<service_watch::ServiceWatch>,
    client: &'a Client,
    namespaces: &'a [String],
    selector: Option<&'a str>,
    health: &'a Arc<Health>,
}

impl WatchSpawner<'_> {
    /// The watch of the operator's objects of kind `K`, running until aborted.
    fn watch<K>(&self) -> tokio::task::JoinHandle<()>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let (watch, client, health) =
            (self.watch.clone(), self.client.clone(), self.health.clone());
        let namespaces = self.namespaces.to_vec();
        let selector = self.selector.map(str::to_owned);
        tokio::spawn(async move {
            watch
                .watch::<K>(client, &namespaces, selector.as_deref(), move || {
                    health.watch_synced()
                })
                .await
        })
    }
}

/// Syncs one view if it is due, and says when to look at it again. A view whose spec this version
/// cannot read is reported on itself and otherwise left alone.
pub async fn reconcile(stored: Arc<StoredView>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!("sync_view", namespace = %stored.namespace().unwrap_or_default(), view = %stored.name_any());
    async move {
        if stored.meta().deletion_timestamp.is_some() {
            ctx.forget(&stored.namespace().unwrap_or_default(), &stored.name_any());
            // A view held by a finalizer keeps its mirrors and their Services until it goes, and
            // lists nothing meanwhile: they stop routing all the same.
            let next_flip = match stored.typed() {
                Ok(view) => freshness::turn_unconfirmed(&view, &ctx).await,
                Err(_) => None,
            };
            return Ok(next_flip.map_or_else(Action::await_change, Action::requeue));
        }
        match stored.typed() {
            Ok(view) => {
                ctx.unreadable.forget(&ObjectRef::from_obj(&view));
                sync_when_due(Arc::new(view), &ctx).await
            }
            Err(problem) => Ok(report_unreadable_spec(&stored, problem, &ctx).await),
        }
    }
    .instrument(span)
    .await
}

/// Reports that the view's stored spec cannot be read, and says when to look at it again: nothing
/// is listed, and its mirrors are neither written nor removed, whatever they are.
///
/// The report is written once per generation and problem (a repeat would change nothing but a
/// time), its Event published once per generation and only after a status write succeeded, and a
/// refused write is retried with exponential backoff, not at the controller's error pace: the
/// view's spec cannot change by retrying, and a status the API server refuses (e.g. because the
/// stored object no longer fits the CRD) would be refused every few seconds forever.
async fn report_unreadable_spec(
    stored: &StoredView,
    problem: &SpecProblem,
    ctx: &Context,
) -> Action {
    let (namespace, name) = (stored.namespace().unwrap_or_default(), stored.name_any());
    let key = ObjectRef::new(&name).within(&namespace);
    let status = view_status::unreadable_spec_status(stored, problem, Timestamp::now());
    if stored.status.as_ref() == Some(&status) {
        let again = ctx.unreadable.record(key, stored.metadata.generation, true);
        return Action::requeue(again);
    }
    warn!(field = %problem.field, problem = %problem.problem, "cannot read the view's spec");
    ctx.metrics.record_sync(
        view_status::FailureReason::InvalidSpec.as_str(),
        false,
        Duration::ZERO,
    );
    match write_unreadable_status(ctx, &namespace, &name, stored.status.as_ref(), &status).await {
        Ok(()) => {
            // Once per generation: a reconcile that read the view before its report was written
            // must not publish it again.
            if ctx
                .unreadable
                .announce(key.clone(), stored.metadata.generation)
            {
                let reference = stored.object_ref(&());
                events::publish_transition(
                    &ctx.recorder,
                    &reference,
                    stored.status.as_ref(),
                    &status,
                )
                .await;
            }
            Action::requeue(ctx.unreadable.record(key, stored.metadata.generation, true))
        }
        Err(error) => {
            let again = ctx
                .unreadable
                .record(key, stored.metadata.generation, false);
            warn!(%error, retry_in_s = again.as_secs(), "cannot write the status of a view whose spec cannot be read");
            Action::requeue(again)
        }
    }
}

/// Writes the status of view `namespace/name`, whose spec this version cannot read. Server-side
/// apply builds a typed copy of the stored object, which fails (500, "failed to create typed live
/// object") when the stored spec no longer fits the CRD, e.g. a value of a wider type after a
/// rollback; a JSON merge patch of the status subresource is checked against the status schema
/// only, so it is the fallback. The status derives from the stored one, so merging loses nothing.
async fn write_unreadable_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    current: Option<&GpuInstanceViewStatus>,
    status: &GpuInstanceViewStatus,
) -> Result<(), Error> {
    match write_status_if_changed(ctx, namespace, name, current, status.clone()).await {
        Err(Error::Kube(kube::Error::Api(refused))) if refused.code == 500 => {
            debug!(error = %refused.message, "server-side apply of the status refused; merging it");
            let views: Api<StoredView> = Api::namespaced(ctx.client.clone(), namespace);
            ctx.metrics.record_write("merge_status", "gpuinstanceviews");
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PatchParams::default()
            };
            views
                .patch_status(name, &params, &Patch::Merge(json!({ "status": status })))
                .await
                .map_err(Error::Kube)?;
            Ok(())
        }
        other => other,
    }
}

/// Syncs `view` if it is due, then turns not ready the Services of its mirrors that no recent
/// listing confirmed, whatever became of the sync (and while it waits for a sync slot, before
/// it); says when to look at it again: when the next sync or the next such flip is due,
/// whichever comes first.
async fn sync_when_due(view: Arc<GpuInstanceView>, ctx: &Arc<Context>) -> Result<Action, Error> {
    let next_sync = sync_if_due(view.clone(), ctx).await;
    let next_flip = freshness::turn_unconfirmed(&view, ctx).await;
    let next_sync = next_sync?;
    Ok(match (next_sync, next_flip) {
        (None, None) => Action::await_change(),
        (Some(wait), None) | (None, Some(wait)) => Action::requeue(wait),
        (Some(sync), Some(flip)) => Action::requeue(sync.min(flip)),
    })
}

/// Waits for `wait` (a sync slot), calling `turn` (the freshness check of the view) first and
/// whenever it said the next flip is due meanwhile: a view waiting behind the syncs of others
/// still turns its unconfirmed Services not ready on time.
async fn while_turning_unconfirmed<T, F>(
    wait: impl std::future::Future<Output = T>,
    mut turn: impl FnMut() -> F,
) -> T
where
    F: std::future::Future<Output = Option<Duration>>,
{
    let mut wait = std::pin::pin!(wait);
    loop {
        let Some(next) = turn().await else {
            return wait.await;
        };
        tokio::select! {
            done = &mut wait => return done,
            () = tokio::time::sleep(next) => {}
        }
    }
}

/// Syncs `view` if it is due; how long until it is due again (`None`: not until it changes).
async fn sync_if_due(
    view: Arc<GpuInstanceView>,
    ctx: &Arc<Context>,
) -> Result<Option<Duration>, Error> {
    let key = ObjectRef::from_obj(&*view);
    ctx.metrics.observe_view(
        &view.namespace().unwrap_or_default(),
        &view.name_any(),
        view.spec.sync_interval(),
    );
    if view.spec.suspend {
        let status = view_status::suspended_status(&view, Timestamp::now());
        write_view_status_if_changed(ctx, &view, status).await?;
        // A suspended view lists nothing: what its listings read is of no use until it resumes.
        ctx.memos.forget(&key);
        ctx.schedules.set(key, None);
        return Ok(None);
    }
    let interval = view.spec.sync_interval();
    if let Some(wait) = schedule::time_until_due(&view, ctx.schedules.get(&key), interval) {
        // The last sync's status, if the API server refused it: written now, not a sync later.
        if let Some(status) = ctx.schedules.take_unwritten(&key) {
            write_view_status_or_keep(ctx, &view, key, status).await?;
        }
        return Ok(Some(wait));
    }

    let mut slot =
        while_turning_unconfirmed(ctx.slots.take(), || freshness::turn_unconfirmed(&view, ctx))
            .await;
    let started = Instant::now();
    let outcome = view_sync::sync_view(
        view.clone(),
        ctx,
        &mut slot,
        schedule::listing_deadline(interval),
    )
    .await;
    let previous_failures = ctx.schedules.get(&key).map_or(0, |s| s.failures);
    let (status, delay, failures) = match outcome {
        Ok(synced) => {
            info!(
                instances = synced.summary.instances,
                pages = synced.pages,
                writes = synced.writes,
                created = synced.counts.created,
                updated = synced.counts.updated,
                removed = synced.counts.removed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "synced"
            );
            let status = view_status::synced_status(
                &view,
                &synced.summary,
                &synced.counts,
                (&synced.spend, &synced.prices),
                synced.pages,
                Timestamp::now(),
            );
            ctx.metrics.record_sync("Synced", true, started.elapsed());
            let (namespace, name) = (view.namespace().unwrap_or_default(), view.name_any());
            ctx.metrics
                .set_mirrored(&namespace, &name, synced.counts.mirrored as i64);
            ctx.metrics
                .record_fleet(&namespace, &name, synced.fleet, Timestamp::now());
            // Without any product list, the view's cost series stay as the last priced sync left
            // them, like its status.
            if synced.prices.products.is_some() {
                let budget = view.spec.cost.hourly_budget.as_deref();
                ctx.metrics.set_view_cost(
                    &namespace,
                    &name,
                    report::shown_total(&synced.spend),
                    budget
                        .and_then(|budget| budget.parse::<HourlyBudget>().ok())
                        .map(HourlyBudget::amount),
                );
            }
            ctx.listings.record(key.clone(), started.elapsed());
            (status, schedule::next_regular_sync(interval), 0)
        }
        Err(failure) => {
            let failures = previous_failures.saturating_add(1);
            warn!(reason = %failure.failure.reason, detail = %failure.failure.message, failures, "sync failed");
            ctx.metrics
                .record_sync(failure.failure.reason.as_str(), false, started.elapsed());
            let backoff = schedule::retry_delay(failures, interval);
            let delay = failure
                .retry_after
                .map_or(backoff, |after| backoff.max(after));
            (
                view_status::failed_status(&view, &failure.failure, Timestamp::now()),
                delay,
                failures,
            )
        }
    };
    drop(slot);
    // Scheduled before the status is written: a status that cannot be written must not turn the
    // backoff into a listing every few seconds.
    ctx.schedules.set(
        key.clone(),
        Some(Schedule {
            next_sync: Instant::now() + delay,
            failures,
            generation: view.metadata.generation,
            refresh: view_status::refresh_requested(&*view),
        }),
    );
    let reference = view.object_ref(&());
    events::publish_transition(&ctx.recorder, &reference, view.status.as_ref(), &status).await;
    events::publish_budget_crossing(&ctx.recorder, &reference, view.status.as_ref(), &status).await;
    // This sync's status replaces any earlier one still unwritten.
    ctx.schedules.take_unwritten(&key);
    write_view_status_or_keep(ctx, &view, key, status).await?;
    Ok(Some(delay))
}

/// Retries the reconciliation shortly when even the view's status could not be written.
pub fn error_policy(view: Arc<StoredView>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(namespace = %view.namespace().unwrap_or_default(), view = %view.name_any(), error = %error, "cannot reconcile; retrying");
    Action::requeue(schedule::jittered(Duration::from_secs(5)))
}

/// Writes the view's status, unless it would not change.
async fn write_view_status_if_changed(
    ctx: &Context,
    view: &GpuInstanceView,
    status: GpuInstanceViewStatus,
) -> Result<(), Error> {
    let (namespace, name) = (view.namespace().unwrap_or_default(), view.name_any());
    write_status_if_changed(ctx, &namespace, &name, view.status.as_ref(), status).await
}

/// Writes the view's status, unless it would not change; one the API server refuses is kept, to be
/// written at the view's next reconcile.
async fn write_view_status_or_keep(
    ctx: &Context,
    view: &GpuInstanceView,
    key: ObjectRef<GpuInstanceView>,
    status: GpuInstanceViewStatus,
) -> Result<(), Error> {
    let written = write_view_status_if_changed(ctx, view, status.clone()).await;
    if written.is_err() {
        ctx.schedules.keep_unwritten(key, status);
    }
    written
}

/// Writes the status of view `namespace/name`, unless it would not change from `current`.
async fn write_status_if_changed(
    ctx: &Context,
    namespace: &str,
    name: &str,
    current: Option<&GpuInstanceViewStatus>,
    status: GpuInstanceViewStatus,
) -> Result<(), Error> {
    if current == Some(&status) {
        return Ok(());
    }
    // The reply is read as a `StoredView`: a view whose spec this version cannot decode must not
    // turn a status write that succeeded into an error.
    let views: Api<StoredView> = Api::namespaced(ctx.client.clone(), namespace);
    ctx.metrics.record_write("apply_status", "gpuinstanceviews");
    let body = status_apply_body::<GpuInstanceView>(&status);
    views
        .patch_status(name, &apply_params(), &Patch::Apply(&body))
        .await
        .map_err(Error::Kube)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test(start_paused = true)]
    async fn a_view_waiting_for_a_sync_slot_still_turns_its_unconfirmed_services_on_time() {
        let start = tokio::time::Instant::now();
        let checks = Mutex::new(Vec::new());
        // The slot comes free after 100 s; a flip is due at once, then every 30 s.
        let slot = tokio::time::sleep(Duration::from_secs(100));
        while_turning_unconfirmed(slot, || {
            checks
                .lock()
                .unwrap()
                .push((tokio::time::Instant::now() - start).as_secs());
            std::future::ready(Some(Duration::from_secs(30)))
        })
        .await;
        assert_eq!(*checks.lock().unwrap(), [0, 30, 60, 90]);
        assert_eq!((tokio::time::Instant::now() - start).as_secs(), 100);

        // Nothing may become due: the wait alone.
        let checks = Mutex::new(0);
        let took = tokio::time::Instant::now();
        while_turning_unconfirmed(tokio::time::sleep(Duration::from_secs(100)), || {
            *checks.lock().unwrap() += 1;
            std::future::ready(None)
        })
        .await;
        assert_eq!(*checks.lock().unwrap(), 1);
        assert_eq!(took.elapsed().as_secs(), 100);
    }
}
