//! The yardstick: a bare concurrent server-side-apply client that writes the same GpuInstances the
//! operator writes (built by the operator's own mapping and planning from the simulator's records), as
//! the operator writes them: the object without its fingerprint, its status, with Services its Service
//! and EndpointSlices, then the object with the fingerprint that vouches for them, with a fixed number of
//! workers and no client-side limit. The fastest an operator that writes every mirror could be on
//! this machine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use ppio::Page;
use ppio_gpu_core::api::{GpuInstance, GpuInstanceView};
use ppio_gpu_core::cost::{self, report::MirrorCost};
use ppio_gpu_core::services::{self, AddressPolicy, objects};
use ppio_gpu_core::sync::plan;
use serde_json::{Value, json};

/// The field manager of the bare client's writes.
const FIELD_MANAGER: &str = "bench-bare-client";

/// What one run of the bare client did.
pub struct Applied {
    /// How long the writes took, retries and their waits included.
    pub wall: Duration,
    /// Objects written (each with its status).
    pub objects: usize,
    /// Services written (each with its EndpointSlices).
    pub services: usize,
    /// Writes sent again after a dropped connection or an etcd timeout.
    pub retries: usize,
}

/// Writes the mirrors of `records` for `view` (an existing view in a namespace the operator does not
/// watch) with `workers` concurrent writers; with `services` (the address rule), their Services too.
pub async fn apply_mirrors(
    client: &kube::Client,
    view: &GpuInstanceView,
    services: Option<&AddressPolicy>,
    records: Vec<Value>,
    workers: usize,
) -> Result<Applied, String> {
    let namespace = view
        .metadata
        .namespace
        .clone()
        .ok_or("the bare client's view has no namespace")?;
    // The records as the operator decodes them from PPIO pages (of 100, within the decoder's bounds).
    let now = Timestamp::now();
    let mut writes: Vec<plan::DesiredMirror> = Vec::with_capacity(records.len());
    for chunk in records.chunks(100) {
        let page =
            serde_json::to_vec(&json!({ "data": chunk, "next_cursor": "", "has_more": false }))
                .map_err(|e| format!("cannot encode the simulator's records: {e}"))?;
        let listing = Page::from_json(&page)
            .map_err(|e| format!("the simulator's records do not decode as a PPIO page: {e}"))?
            .instances;
        writes.extend(listing.iter().filter_map(|instance| {
            match plan::plan_instance(
                view,
                services,
                instance,
                &MirrorCost::of(&cost::instance_cost_unlisted(&instance.into(), now), None),
                None,
                now,
            ) {
                // What has no mirror yet is created whole, as the operator's first sync does.
                plan::InstancePlan::Create(mirror) => Some(*mirror),
                plan::InstancePlan::Update(_)
                | plan::InstancePlan::Unchanged(_)
                | plan::InstancePlan::NameTaken => None,
            }
        }));
    }
    drop(records);

    let instances: Api<GpuInstance> = Api::namespaced(client.clone(), &namespace);
    let service_api: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let slice_api: Api<EndpointSlice> = Api::namespaced(client.clone(), &namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let objects = writes.len();
    let service_count = writes
        .iter()
        .filter(|w| w.services.as_ref().is_some_and(|p| p.service.is_some()))
        .count();
    let retries = AtomicUsize::new(0);
    let started = Instant::now();
    stream::iter(writes)
        .map(|write| {
            let instances = instances.clone();
            let (service_api, slice_api) = (service_api.clone(), slice_api.clone());
            let params = params.clone();
            let retries = &retries;
            let namespace = &namespace;
            async move {
                // Without its fingerprint first, which goes out last, as the operator writes it.
                let unvouched = write.unvouched();
                let object = Patch::Apply(&unvouched);
                let written = retrying(retries, || instances.patch(&write.name, &params, &object))
                    .await
                    .map_err(|e| format!("bare client: apply {}: {e}", write.name))?;
                let body = json!({
                    "apiVersion": GpuInstance::api_version(&()),
                    "kind": GpuInstance::kind(&()),
                    "status": write.status,
                });
                let status = Patch::Apply(&body);
                retrying(retries, || {
                    instances.patch_status(&write.name, &params, &status)
                })
                .await
                .map_err(|e| format!("bare client: apply the status of {}: {e}", write.name))?;
                // The Service, then its EndpointSlices, owned by the mirror, as the operator writes them.
                if let Some(service) = write.services.as_ref().and_then(|p| p.service.as_ref()) {
                    let owner = objects::owner(&write.name, &written.uid().unwrap_or_default());
                    apply_service(
                        service,
                        &write,
                        namespace,
                        &owner,
                        (&service_api, &slice_api),
                        &params,
                        retries,
                    )
                    .await?;
                }
                let vouched = Patch::Apply(&write.object);
                retrying(retries, || instances.patch(&write.name, &params, &vouched))
                    .await
                    .map_err(|e| {
                        format!("bare client: apply the fingerprint of {}: {e}", write.name)
                    })?;
                Ok::<(), String>(())
            }
        })
        .buffer_unordered(workers)
        .try_collect::<()>()
        .await?;
    Ok(Applied {
        wall: started.elapsed(),
        objects,
        services: service_count,
        retries: retries.into_inner(),
    })
}

/// Applies the Service of mirror `write` and its EndpointSlices, owned by `owner`.
async fn apply_service(
    service: &services::DesiredService,
    write: &plan::DesiredMirror,
    namespace: &str,
    owner: &OwnerReference,
    (service_api, slice_api): (&Api<Service>, &Api<EndpointSlice>),
    params: &PatchParams,
    retries: &AtomicUsize,
) -> Result<(), String> {
    let labels = write.object.labels();
    let object = service.service(namespace, labels, owner);
    let body = Patch::Apply(&object);
    retrying(retries, || service_api.patch(&service.name, params, &body))
        .await
        .map_err(|e| format!("bare client: apply the Service {}: {e}", service.name))?;
    for slice in service.slices(namespace, labels, owner) {
        let name = slice.name_any();
        let body = Patch::Apply(&slice);
        retrying(retries, || slice_api.patch(&name, params, &body))
            .await
            .map_err(|e| format!("bare client: apply the EndpointSlice {name}: {e}"))?;
    }
    Ok(())
}

/// Attempts of one write before the run fails.
const ATTEMPTS: u32 = 6;

/// Runs `write` again, after 1, 2, 4, 8 then 16 seconds, when it fails in a way that says nothing of
/// the yardstick: the connection dropped before the API server answered, or etcd timed out (500).
/// kube's client already retries 429, 503 and 504 itself, as the operator's does. Over the hundreds of
/// thousands of writes of a large run these happen; the operator rides them out by syncing again, so
/// the yardstick does too, and the report says how often.
async fn retrying<T, F>(
    retries: &AtomicUsize,
    mut write: impl FnMut() -> F,
) -> Result<T, kube::Error>
where
    F: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 1;
    loop {
        match write().await {
            Err(error) if attempt < ATTEMPTS && worth_retrying(&error) => {
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
                attempt += 1;
            }
            done => return done,
        }
    }
}

/// Whether a failed write may succeed when sent again unchanged.
fn worth_retrying(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => matches!(status.code, 429 | 500 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}
