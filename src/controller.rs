//! The controller: for each `GpuInstanceView`, read its API key, list its instances from PPIO, plan
//! the mirrors and carry the plan out, then write the view's status and schedule the next sync.
//!
//! This module is the imperative shell around [`crate::plan`]: it talks to the Kubernetes API and,
//! through [`crate::ppio::Client`], to PPIO, but decides nothing about what to write itself. It knows
//! no HTTP or PPIO field names; every failure becomes a [`SyncFailure`] in the view's status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use rand::Rng;
use serde_json::json;
use tracing::{Instrument, debug, info, info_span, warn};
use url::Url;

use crate::Error;
use crate::api::condition::{self, ConditionStatus};
use crate::api::view::{self, DEFAULT_ENDPOINT, GpuInstanceView};
use crate::api::{GpuInstance, GpuInstanceViewStatus};
use crate::http::Health;
use crate::metrics::Metrics;
use crate::mirror;
use crate::plan::{self, FailureReason, MirrorPlan, SyncFailure};
use crate::ppio::{self, ApiKey, ListQuery, ListingLimits, PpioError};

/// The field manager of every write the operator makes (server-side apply).
pub const FIELD_MANAGER: &str = "ppio-gpu-operator";

/// PPIO clients kept for reuse (one per endpoint).
const MAX_CACHED_CLIENTS: usize = 64;

/// Where a failing view's retries start; they double up to its sync interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Which endpoints views may send their API key to.
#[derive(Clone, Debug)]
pub struct EndpointPolicy {
    allowed: Vec<Url>,
}

impl EndpointPolicy {
    /// The default PPIO endpoint plus `extra` base URLs (an endpoint is allowed when it has the same
    /// scheme, host and port as one of them and its path starts with that one's path).
    pub fn new(extra: Vec<Url>) -> EndpointPolicy {
        let mut allowed = extra;
        if let Ok(default) = Url::parse(DEFAULT_ENDPOINT) {
            allowed.push(default);
        }
        EndpointPolicy { allowed }
    }

    /// Whether a view may use `endpoint`.
    pub fn allows(&self, endpoint: &Url) -> bool {
        self.allowed.iter().any(|allowed| {
            allowed.scheme() == endpoint.scheme()
                && allowed.host_str() == endpoint.host_str()
                && allowed.port_or_known_default() == endpoint.port_or_known_default()
                && path_within(endpoint.path(), allowed.path())
                && endpoint.username().is_empty()
                && endpoint.password().is_none()
        })
    }
}

/// Whether `path` is `base` or below it, segment by segment (`/api` covers `/api/v2`, not `/apix`).
fn path_within(path: &str, base: &str) -> bool {
    let base = base.trim_end_matches('/');
    path.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// How the controller behaves, from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Endpoints views may use.
    pub endpoints: EndpointPolicy,
    /// Views synced at once.
    pub view_concurrency: u16,
    /// Kubernetes writes in flight at once within one sync.
    pub write_concurrency: usize,
    /// Timeouts and body limit of PPIO requests.
    pub ppio: ppio::ClientConfig,
    /// Guards on one listing.
    pub listing_limits: ListingLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            endpoints: EndpointPolicy::new(Vec::new()),
            view_concurrency: 4,
            write_concurrency: 8,
            ppio: ppio::ClientConfig::default(),
            listing_limits: ListingLimits::default(),
        }
    }
}

/// State shared by every reconciliation.
pub struct Context {
    client: Client,
    settings: Settings,
    metrics: Metrics,
    recorder: Recorder,
    // One request budget per API key across every endpoint; clients are cached per endpoint.
    rate_limiter: Arc<ppio::RateLimiter>,
    ppio_clients: Mutex<HashMap<Url, ppio::Client>>,
    schedules: Mutex<HashMap<ObjectRef<GpuInstanceView>, Schedule>>,
}

/// When a view is next due, and how many syncs in a row failed.
#[derive(Clone, Debug)]
struct Schedule {
    next_sync: Instant,
    failures: u32,
    /// The spec generation and refresh request the last sync answered: a newer one is due at once,
    /// even if that sync's status could not be written.
    generation: Option<i64>,
    refresh: Option<String>,
}

impl Context {
    /// A context for `client` with `settings`, recording into `metrics` and publishing Events as
    /// `instance` (e.g. the pod name) of the operator.
    pub fn new(client: Client, settings: Settings, metrics: Metrics, instance: &str) -> Context {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(instance.into()),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            rate_limiter: Arc::new(ppio::RateLimiter::new(settings.ppio.requests_per_minute)),
            client,
            settings,
            metrics,
            ppio_clients: Mutex::new(HashMap::new()),
            schedules: Mutex::new(HashMap::new()),
        }
    }

    fn ppio_client(&self, endpoint: &Url) -> Result<ppio::Client, PpioError> {
        let mut clients = self
            .ppio_clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = clients.get(endpoint) {
            return Ok(client.clone());
        }
        let metrics = self.metrics.clone();
        let client = ppio::Client::new(ppio::ClientConfig {
            base_url: endpoint.clone(),
            ..self.settings.ppio.clone()
        })?
        .with_rate_limiter(self.rate_limiter.clone())
        .with_request_observer(move |outcome| {
            metrics.record_ppio_request(outcome.status_code, outcome.latency)
        });
        // Views choose endpoints (within the allow-list): keep the cache from growing without end.
        if clients.len() >= MAX_CACHED_CLIENTS {
            clients.clear();
        }
        clients.insert(endpoint.clone(), client.clone());
        Ok(client)
    }

    /// Drops what is kept about a deleted view: its schedule and its metrics.
    fn forget(&self, namespace: &str, name: &str) {
        self.metrics.forget_view(namespace, name);
        self.set_schedule(ObjectRef::new(name).within(namespace), None);
    }

    fn schedule(&self, view: &ObjectRef<GpuInstanceView>) -> Option<Schedule> {
        self.schedules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(view)
            .cloned()
    }

    fn set_schedule(&self, view: ObjectRef<GpuInstanceView>, schedule: Option<Schedule>) {
        let mut schedules = self
            .schedules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match schedule {
            Some(s) => schedules.insert(view, s),
            None => schedules.remove(&view),
        };
    }
}

/// Runs the controller over the views of `namespaces` (every namespace when empty) until `shutdown`
/// resolves; reconciliations in flight then finish. `health` learns when the watches have listed
/// every view.
pub async fn run(
    context: Arc<Context>,
    namespaces: Vec<String>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = context.client.clone();
    let concurrency = context.settings.view_concurrency;
    let apis: Vec<Api<GpuInstanceView>> = if namespaces.is_empty() {
        vec![Api::all(client)]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    health.watches_starting(apis.len());
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let controllers = apis.into_iter().map(|api| {
        let controller = Controller::new(api, watcher::Config::default().any_semantic())
            .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
            .graceful_shutdown_on(shutdown.clone());
        let store = controller.store();
        let health = health.clone();
        tokio::spawn(async move {
            // The store wakes only its latest waiter (the controller's own), so look again
            // periodically instead of waiting once.
            loop {
                let ready =
                    tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready());
                match ready.await {
                    Ok(Ok(())) => {
                        info!(views = store.state().len(), "the watch listed every view");
                        health.watch_synced();
                        break;
                    }
                    Ok(Err(e)) => {
                        warn!(error = %e, "the watch stopped before listing the views");
                        break;
                    }
                    Err(_) => continue,
                }
            }
        });
        let context = context.clone();
        controller
            .run(reconcile, error_policy, context.clone())
            .for_each(move |result| {
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
    });
    futures::future::join_all(controllers).await;
}

/// Syncs one view if it is due, and says when to look at it again.
pub async fn reconcile(view: Arc<GpuInstanceView>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = ObjectRef::from_obj(&*view);
    let span = info_span!("sync_view", namespace = %view.namespace().unwrap_or_default(), view = %view.name_any());
    async move {
        if view.meta().deletion_timestamp.is_some() {
            ctx.forget(&view.namespace().unwrap_or_default(), &view.name_any());
            return Ok(Action::await_change());
        }
        if view.spec.suspend {
            let status = plan::suspended_status(&view, Timestamp::now());
            write_view_status_if_changed(&ctx, &view, status).await?;
            ctx.set_schedule(key, None);
            return Ok(Action::await_change());
        }
        let interval = view.spec.sync_interval();
        if let Some(wait) = time_until_due(&view, ctx.schedule(&key), interval) {
            return Ok(Action::requeue(wait));
        }

        let started = Instant::now();
        let outcome = sync_view(&view, &ctx, listing_deadline(interval)).await;
        let previous_failures = ctx.schedule(&key).map_or(0, |s| s.failures);
        let (status, delay, failures) = match outcome {
            Ok(synced) => {
                info!(
                    instances = synced.summary.instances,
                    writes = synced.plan.writes.len(),
                    deletes = synced.plan.deletes.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "synced"
                );
                let status = plan::synced_status(
                    &view,
                    &synced.summary,
                    &synced.plan,
                    synced.pages,
                    Timestamp::now(),
                );
                ctx.metrics.record_sync("Synced", true, started.elapsed());
                ctx.metrics.set_mirrored(
                    &view.namespace().unwrap_or_default(),
                    &view.name_any(),
                    synced.plan.mirrored as i64,
                );
                (status, next_regular_sync(interval), 0)
            }
            Err(failure) => {
                let failures = previous_failures.saturating_add(1);
                warn!(reason = %failure.failure.reason, detail = %failure.failure.message, failures, "sync failed");
                ctx.metrics
                    .record_sync(failure.failure.reason.as_str(), false, started.elapsed());
                let backoff = retry_delay(failures, interval);
                let delay = failure.retry_after.map_or(backoff, |after| backoff.max(after));
                (plan::failed_status(&view, &failure.failure, Timestamp::now()), delay, failures)
            }
        };
        // Scheduled before the status is written: a status that cannot be written must not turn the
        // backoff into a listing every few seconds.
        ctx.set_schedule(
            key,
            Some(Schedule {
                next_sync: Instant::now() + delay,
                failures,
                generation: view.metadata.generation,
                refresh: plan::refresh_requested(&view),
            }),
        );
        publish_transition(&ctx, &view, &status).await;
        write_view_status_if_changed(&ctx, &view, status).await?;
        Ok(Action::requeue(delay))
    }
    .instrument(span)
    .await
}

/// Retries the reconciliation shortly when even the view's status could not be written.
pub fn error_policy(view: Arc<GpuInstanceView>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(namespace = %view.namespace().unwrap_or_default(), view = %view.name_any(), error = %error, "cannot reconcile; retrying");
    Action::requeue(jittered(Duration::from_secs(5)))
}

/// How long until `view` is due, or `None` when it should sync now: at once for a new spec or a new
/// refresh request, otherwise when its schedule says (or, after an operator restart, one interval
/// after its last sync).
fn time_until_due(
    view: &GpuInstanceView,
    schedule: Option<Schedule>,
    interval: Duration,
) -> Option<Duration> {
    let (answered_generation, answered_refresh) = match &schedule {
        Some(s) => (s.generation, s.refresh.clone()),
        None => {
            let status = view.status.as_ref()?;
            (
                status.observed_generation,
                status.last_handled_refresh.clone(),
            )
        }
    };
    if answered_generation != view.metadata.generation
        || answered_refresh != plan::refresh_requested(view)
    {
        return None;
    }
    match schedule {
        Some(s) => s.next_sync.checked_duration_since(Instant::now()),
        None => {
            let last = view.status.as_ref()?.last_sync_time?;
            let since = Timestamp::now().duration_since(last).unsigned_abs();
            interval.checked_sub(since).filter(|d| !d.is_zero())
        }
    }
}

/// A sync that completed.
struct Synced {
    summary: plan::Summary,
    plan: MirrorPlan,
    pages: u32,
}

/// A sync that did not complete, and when PPIO asked us to come back.
struct Failed {
    failure: SyncFailure,
    retry_after: Option<Duration>,
}

impl From<SyncFailure> for Failed {
    fn from(failure: SyncFailure) -> Self {
        Failed {
            failure,
            retry_after: None,
        }
    }
}

/// One sync: API key, complete listing, plan, writes. Any failure before the plan is carried out
/// leaves every mirror as it was. The listing is abandoned after `deadline`, so that one slow account
/// cannot hold a controller slot for hours of page retries.
async fn sync_view(
    view: &GpuInstanceView,
    ctx: &Context,
    deadline: Duration,
) -> Result<Synced, Failed> {
    let namespace = view.namespace().unwrap_or_default();
    let endpoint = endpoint_of(view, &ctx.settings.endpoints)?;
    let key = read_api_key(&ctx.client, &namespace, view).await?;
    let ppio = ctx
        .ppio_client(&endpoint)
        .map_err(|e| Failed::from(ppio_failure(&e, &key)))?;

    let query = list_query(view);
    let listing = ppio.list_all_instances(&key, &query, &ctx.settings.listing_limits);
    let listing = match tokio::time::timeout(deadline, listing).await {
        Ok(listing) => listing.map_err(|e| Failed {
            retry_after: e.retry_after(),
            failure: ppio_failure(&e, &key),
        })?,
        Err(_) => {
            return Err(SyncFailure {
                reason: FailureReason::ApiUnavailable,
                message: format!(
                    "Listing from PPIO took longer than {}s and was abandoned; nothing was changed. \
                     Retrying with backoff. A narrower filter or a larger pageSize makes listings shorter.",
                    deadline.as_secs()
                ),
            }
            .into());
        }
    };

    let instances: Api<GpuInstance> = Api::namespaced(ctx.client.clone(), &namespace);
    let existing = owned_mirrors(&instances, view).await.map_err(|e| {
        kube_failure(
            FailureReason::ListFailed,
            "list this view's GpuInstances",
            &e,
        )
    })?;
    let plan = plan::plan_mirror(view, &listing.instances, &existing, Timestamp::now());
    carry_out(
        &instances,
        &existing,
        &plan,
        ctx.settings.write_concurrency,
        &ctx.metrics,
    )
    .await
    .map_err(|e| kube_failure(FailureReason::WriteFailed, "write GpuInstances", &e))?;
    Ok(Synced {
        summary: plan::summarize(&listing.instances),
        plan,
        pages: listing.pages,
    })
}

fn endpoint_of(view: &GpuInstanceView, policy: &EndpointPolicy) -> Result<Url, SyncFailure> {
    let raw = view.spec.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
    let endpoint = Url::parse(raw).map_err(|e| SyncFailure {
        reason: FailureReason::InvalidSpec,
        message: format!("spec.endpoint {raw:?} is not a valid URL: {e}."),
    })?;
    if !policy.allows(&endpoint) {
        return Err(SyncFailure {
            reason: FailureReason::EndpointNotAllowed,
            message: format!(
                "spec.endpoint {endpoint} is not on the operator's endpoint allow-list, so the API key \
                 is not sent there. Use {DEFAULT_ENDPOINT}, or ask the operator's administrator to \
                 allow this endpoint (--allowed-endpoint)."
            ),
        });
    }
    Ok(endpoint)
}

/// Reads the API key with a plain GET at every sync, so a rotated key is used at the next sync and
/// the operator needs no watch on Secrets.
async fn read_api_key(
    client: &Client,
    namespace: &str,
    view: &GpuInstanceView,
) -> Result<ApiKey, SyncFailure> {
    let reference = &view.spec.credentials.secret_ref;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match secrets.get_opt(&reference.name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return Err(SyncFailure {
                reason: FailureReason::SecretNotFound,
                message: format!(
                    "Secret {namespace}/{} does not exist. Create it with the PPIO API key under the \
                     key {:?} (spec.credentials.secretRef).",
                    reference.name, reference.key
                ),
            });
        }
        Err(kube::Error::Api(status)) if status.code == 403 => {
            return Err(SyncFailure {
                reason: FailureReason::SecretForbidden,
                message: format!(
                    "The operator may not read Secret {namespace}/{}: grant its ServiceAccount `get` \
                     on Secrets in this namespace.",
                    reference.name
                ),
            });
        }
        Err(e) => {
            return Err(
                kube_failure(FailureReason::SecretUnavailable, "read the Secret", &e).failure,
            );
        }
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|data| data.get(&reference.key))
        .ok_or_else(|| SyncFailure {
            reason: FailureReason::SecretKeyNotFound,
            message: format!(
                "Secret {namespace}/{} has no key {:?}. Put the PPIO API key there, or set \
                 spec.credentials.secretRef.key to the key that holds it.",
                reference.name, reference.key
            ),
        })?;
    let text = String::from_utf8(value.0.clone()).map_err(|_| SyncFailure {
        reason: FailureReason::InvalidApiKey,
        message: format!(
            "The value under {:?} in Secret {namespace}/{} is not text, so it is not a PPIO API key.",
            reference.key, reference.name
        ),
    })?;
    ApiKey::new(text).map_err(|e| SyncFailure {
        reason: FailureReason::InvalidApiKey,
        message: format!(
            "The value under {:?} in Secret {namespace}/{} is not a usable API key: {e}.",
            reference.key, reference.name
        ),
    })
}

fn list_query(view: &GpuInstanceView) -> ListQuery {
    let filter = &view.spec.filter;
    ListQuery {
        name: filter.name.clone(),
        status: filter.status.clone(),
        regions: filter.regions.clone(),
        billing_mode: filter.billing_mode.map(|mode| match mode {
            view::BillingMode::Postpaid => ppio::BillingMode::Postpaid,
            view::BillingMode::Prepaid => ppio::BillingMode::Prepaid,
            view::BillingMode::Spot => ppio::BillingMode::Spot,
        }),
        page_size: u32::try_from(view.spec.page_size.max(1)).unwrap_or(50),
    }
}

/// A PPIO failure as the view reports it. The client already redacts the key from server text; the
/// message is checked once more because it ends up in the cluster.
fn ppio_failure(error: &PpioError, key: &ApiKey) -> SyncFailure {
    let mut message = error.to_string();
    if key.appears_in(&message) {
        message = "PPIO returned an error that echoed the API key; it is not shown.".into();
    }
    let reason = match error {
        PpioError::Unauthorized | PpioError::Forbidden => FailureReason::AuthFailed,
        PpioError::RateLimited { .. } => FailureReason::RateLimited,
        PpioError::ServerError { .. } | PpioError::Timeout | PpioError::Unreachable { .. } => {
            FailureReason::ApiUnavailable
        }
        PpioError::InvalidResponse { .. } => FailureReason::InvalidResponse,
        PpioError::Rejected { .. } => FailureReason::RequestRejected,
        PpioError::InvalidConfig { .. } => FailureReason::InvalidConfig,
    };
    SyncFailure { reason, message }
}

fn kube_failure(reason: FailureReason, action: &str, error: &impl std::fmt::Display) -> Failed {
    SyncFailure {
        reason,
        message: format!("Could not {action}: {error}. Retrying with backoff."),
    }
    .into()
}

/// The GpuInstances this view owns: selected by its label, confirmed by the owner reference.
async fn owned_mirrors(
    instances: &Api<GpuInstance>,
    view: &GpuInstanceView,
) -> Result<Vec<GpuInstance>, kube::Error> {
    let selector = format!(
        "{}={},{}={}",
        mirror::MANAGED_BY_LABEL,
        mirror::MANAGER,
        mirror::VIEW_LABEL,
        mirror::label_value(&view.name_any())
    );
    let uid = view.uid();
    let listed = instances
        .list(&ListParams::default().labels(&selector))
        .await?;
    Ok(listed
        .items
        .into_iter()
        .filter(|o| {
            o.owner_references()
                .iter()
                .any(|r| Some(&r.uid) == uid.as_ref())
        })
        .collect())
}

/// Carries out `plan`: deletes and writes, at most `concurrency` at a time. Every one is attempted;
/// the failures are reported together, and the next sync plans what is still missing.
async fn carry_out(
    instances: &Api<GpuInstance>,
    existing: &[GpuInstance],
    plan: &MirrorPlan,
    concurrency: usize,
    metrics: &Metrics,
) -> Result<(), WriteFailures> {
    let uids: HashMap<String, Option<String>> =
        existing.iter().map(|o| (o.name_any(), o.uid())).collect();
    let params = PatchParams::apply(FIELD_MANAGER).force();

    // Owned data in each future: the futures must be Send for the controller's runtime.
    let deletes = plan.deletes.iter().cloned().map(|name| {
        let params = DeleteParams {
            // Only the object we planned against: never one recreated under the same name since.
            preconditions: Some(Preconditions {
                uid: uids.get(&name).cloned().flatten(),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        let instances = instances.clone();
        let metrics = metrics.clone();
        async move {
            metrics.record_write("delete", "gpuinstances");
            match instances.delete(&name, &params).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
    });
    let mut results: Vec<Result<(), kube::Error>> = stream::iter(deletes)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;

    let writes = plan.writes.iter().cloned().map(|write| {
        let params = params.clone();
        let instances = instances.clone();
        let metrics = metrics.clone();
        async move {
            if let Some(object) = &write.object {
                metrics.record_write("apply", "gpuinstances");
                instances
                    .patch(&write.name, &params, &Patch::Apply(object))
                    .await?;
            }
            if let Some(status) = &write.status {
                let body = json!({
                    "apiVersion": GpuInstance::api_version(&()),
                    "kind": GpuInstance::kind(&()),
                    "status": status,
                });
                metrics.record_write("apply_status", "gpuinstances");
                instances
                    .patch_status(&write.name, &params, &Patch::Apply(&body))
                    .await?;
            }
            Ok::<_, kube::Error>(())
        }
    });
    results.extend(
        stream::iter(writes)
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<_>>()
            .await,
    );
    // One object the API server refuses must not hold back the others: carry on, then report.
    let total = results.len();
    let mut errors = results.into_iter().filter_map(Result::err);
    match errors.next() {
        None => Ok(()),
        Some(first) => Err(WriteFailures {
            failed: 1 + errors.count(),
            total,
            first,
        }),
    }
}

/// Writes of one sync that the API server refused.
#[derive(Debug)]
struct WriteFailures {
    failed: usize,
    total: usize,
    first: kube::Error,
}

impl std::fmt::Display for WriteFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} writes failed; the first: {}",
            self.failed, self.total, self.first
        )
    }
}

/// Writes the view's status, unless it would not change.
async fn write_view_status_if_changed(
    ctx: &Context,
    view: &GpuInstanceView,
    status: GpuInstanceViewStatus,
) -> Result<(), Error> {
    if view.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let namespace = view.namespace().unwrap_or_default();
    let views: Api<GpuInstanceView> = Api::namespaced(ctx.client.clone(), &namespace);
    ctx.metrics.record_write("apply_status", "gpuinstanceviews");
    let body = json!({
        "apiVersion": GpuInstanceView::api_version(&()),
        "kind": GpuInstanceView::kind(&()),
        "status": status,
    });
    views
        .patch_status(
            &view.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(Error::Kube)?;
    Ok(())
}

/// Publishes an Event when the view's Ready condition changes: syncs start failing (or fail for a
/// new reason), or recover. Steady states publish nothing, so Events stay few.
async fn publish_transition(ctx: &Context, view: &GpuInstanceView, next: &GpuInstanceViewStatus) {
    let ready = |status: Option<&GpuInstanceViewStatus>| {
        status
            .and_then(|s| condition::find(&s.conditions, condition::READY))
            .map(|c| (c.status, c.reason.clone(), c.message.clone()))
    };
    let Some((status, reason, message)) = ready(Some(next)) else {
        return;
    };
    let before = ready(view.status.as_ref());
    let event = match (&before, status) {
        (Some((ConditionStatus::False, old_reason, _)), ConditionStatus::False)
            if *old_reason == reason =>
        {
            return;
        }
        // The mass-removal guard started holding deletions back: once, not at every sync it holds.
        (before, ConditionStatus::True)
            if reason == plan::MASS_REMOVAL_HELD
                && before
                    .as_ref()
                    .is_none_or(|(_, old_reason, _)| *old_reason != reason) =>
        {
            Event {
                type_: EventType::Warning,
                reason,
                note: Some(message),
                action: "Prune".into(),
                secondary: None,
            }
        }
        (_, ConditionStatus::False) => Event {
            type_: EventType::Warning,
            reason,
            note: Some(message),
            action: "Sync".into(),
            secondary: None,
        },
        (Some((ConditionStatus::False, _, _)), ConditionStatus::True) => Event {
            type_: EventType::Normal,
            reason: "Recovered".into(),
            note: Some(message),
            action: "Sync".into(),
            secondary: None,
        },
        _ => return,
    };
    let event = Event {
        // events.k8s.io rejects notes over 1 KiB.
        note: event.note.map(|note| mirror::truncate(&note, 1000)),
        ..event
    };
    if let Err(e) = ctx.recorder.publish(&event, &view.object_ref(&())).await {
        warn!(error = %e, "cannot publish an Event");
    }
}

/// How long one listing may take: the view's sync interval, but at least two minutes.
fn listing_deadline(interval: Duration) -> Duration {
    interval.max(Duration::from_secs(120))
}

/// When a view that synced is due again: its interval plus up to 10%, so that views created together
/// drift apart, and never sooner than the interval, so that an instance missing from one listing has
/// been missing for the interval by the next (the time half of the removal rule).
fn next_regular_sync(interval: Duration) -> Duration {
    interval.mul_f64(rand::rng().random_range(1.0..=1.1))
}

/// The interval, give or take 10%, so that views created together do not sync together.
fn jittered(interval: Duration) -> Duration {
    let factor = rand::rng().random_range(0.9..=1.1);
    interval.mul_f64(factor)
}

/// Exponential backoff with jitter from [`FIRST_RETRY`], capped at the view's sync interval: a failing
/// view is retried at least as often as a healthy one syncs.
fn retry_delay(failures: u32, interval: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let backoff = FIRST_RETRY.saturating_mul(1 << exponent).min(interval);
    jittered(backoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_endpoints_are_accepted() {
        let policy = EndpointPolicy::new(vec![Url::parse("http://127.0.0.1:8080/").unwrap()]);
        let allowed = |s: &str| policy.allows(&Url::parse(s).unwrap());
        assert!(allowed("https://api.ppio.com"));
        assert!(allowed("https://api.ppio.com/"));
        assert!(allowed("http://127.0.0.1:8080"));
        assert!(!allowed("http://127.0.0.1:8081"));
        assert!(
            !allowed("http://api.ppio.com"),
            "plain HTTP to the default host"
        );
        assert!(!allowed("https://api.ppio.com.evil.example"));
        assert!(!allowed("https://user:pw@api.ppio.com"));
        let below = EndpointPolicy::new(vec![Url::parse("https://proxy.example/ppio").unwrap()]);
        assert!(below.allows(&Url::parse("https://proxy.example/ppio").unwrap()));
        assert!(below.allows(&Url::parse("https://proxy.example/ppio/v2").unwrap()));
        assert!(!below.allows(&Url::parse("https://proxy.example/ppiox").unwrap()));
    }

    fn synced_view(generation: i64, last_sync_seconds_ago: i64) -> GpuInstanceView {
        let mut view: GpuInstanceView = serde_json::from_value(serde_json::json!({
            "apiVersion": "gpu.ppio.io/v1alpha1",
            "kind": "GpuInstanceView",
            "metadata": { "name": "v", "namespace": "ns", "generation": generation },
            "spec": { "credentials": { "secretRef": { "name": "ppio" } } }
        }))
        .unwrap();
        let last = Timestamp::now() - jiff::SignedDuration::from_secs(last_sync_seconds_ago);
        view.status = Some(GpuInstanceViewStatus {
            observed_generation: Some(generation),
            last_sync_time: Some(last),
            ..Default::default()
        });
        view
    }

    const MINUTE: Duration = Duration::from_secs(60);

    /// A schedule due at `next_sync` that answered generation 1 and `refresh`.
    fn schedule(next_sync: Instant, refresh: Option<&str>) -> Option<Schedule> {
        Some(Schedule {
            next_sync,
            failures: 0,
            generation: Some(1),
            refresh: refresh.map(str::to_owned),
        })
    }

    #[test]
    fn a_view_never_synced_is_due_at_once() {
        let mut view = synced_view(1, 0);
        view.status = None;
        assert_eq!(time_until_due(&view, None, MINUTE), None);
    }

    #[test]
    fn a_new_spec_is_due_at_once_whatever_the_schedule() {
        let mut view = synced_view(1, 0);
        view.metadata.generation = Some(2);
        let later = schedule(Instant::now() + MINUTE, None);
        assert_eq!(time_until_due(&view, later, MINUTE), None);
    }

    #[test]
    fn a_new_refresh_request_is_due_at_once_and_only_once() {
        let mut view = synced_view(1, 0);
        view.metadata.annotations = Some(
            [(view::REFRESH_ANNOTATION.to_owned(), "now".to_owned())]
                .into_iter()
                .collect(),
        );
        let later = Instant::now() + MINUTE;
        assert_eq!(time_until_due(&view, schedule(later, None), MINUTE), None);
        assert!(
            time_until_due(&view, schedule(later, Some("now")), MINUTE).is_some(),
            "answered once"
        );
    }

    #[test]
    fn our_own_status_write_does_not_make_a_view_due() {
        let view = synced_view(1, 0);
        let wait = time_until_due(&view, schedule(Instant::now() + MINUTE, None), MINUTE)
            .expect("not due");
        assert!(wait > Duration::from_secs(55), "{wait:?}");
        let passed = schedule(Instant::now() - Duration::from_secs(1), None);
        assert_eq!(time_until_due(&view, passed, MINUTE), None);
    }

    #[test]
    fn a_status_that_could_not_be_written_does_not_make_a_view_due_again() {
        // The sync answered generation 1, but its status never reached the API server.
        let mut view = synced_view(1, 0);
        view.status = None;
        let wait = time_until_due(&view, schedule(Instant::now() + MINUTE, None), MINUTE);
        assert!(wait.is_some(), "the schedule holds, not the missing status");
    }

    #[test]
    fn after_a_restart_the_last_sync_time_sets_the_schedule() {
        let recent = time_until_due(&synced_view(1, 20), None, MINUTE).expect("not due yet");
        assert!(
            recent <= Duration::from_secs(41) && recent >= Duration::from_secs(35),
            "{recent:?}"
        );
        assert_eq!(time_until_due(&synced_view(1, 120), None, MINUTE), None);
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_interval() {
        let interval = Duration::from_secs(60);
        let first = retry_delay(1, interval);
        assert!(first >= Duration::from_millis(900) && first <= Duration::from_millis(1100));
        let fifth = retry_delay(5, interval);
        assert!(fifth >= Duration::from_millis(14_400) && fifth <= Duration::from_millis(17_600));
        let late = retry_delay(30, interval);
        assert!(late <= Duration::from_secs(66) && late >= Duration::from_secs(54));
    }
}
