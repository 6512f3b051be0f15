//! The yardstick: a bare concurrent server-side-apply client that writes the same GpuInstances the
//! operator writes (built by the operator's own mapping and planning from the simulator's records), the
//! object then its status, with a fixed number of workers and no client-side limit. The fastest an
//! operator that writes every mirror could be on this machine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use ppio_gpu_operator::api::{GpuInstance, GpuInstanceView};
use ppio_gpu_operator::ppio::Page;
use ppio_gpu_operator::sync::plan;
use serde_json::{Value, json};

/// The field manager of the bare client's writes.
const FIELD_MANAGER: &str = "bench-bare-client";

/// What one run of the bare client did.
pub struct Applied {
    /// How long the writes took, retries and their waits included.
    pub wall: Duration,
    /// Objects written (each with its status).
    pub objects: usize,
    /// Writes sent again after a dropped connection or an etcd timeout.
    pub retries: usize,
}

/// Writes the mirrors of `records` for `view` (an existing view in a namespace the operator does not
/// watch) with `workers` concurrent writers.
pub async fn apply_mirrors(
    client: &kube::Client,
    view: &GpuInstanceView,
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
            match plan::plan_instance(view, None, instance, None, now) {
                // What has no mirror yet is created whole, as the operator's first sync does.
                plan::InstancePlan::Create(mirror) => Some(*mirror),
                plan::InstancePlan::Update(_) | plan::InstancePlan::Unchanged(_) => None,
            }
        }));
    }
    drop(records);

    let instances: Api<GpuInstance> = Api::namespaced(client.clone(), &namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let objects = writes.len();
    let retries = AtomicUsize::new(0);
    let started = Instant::now();
    stream::iter(writes)
        .map(|write| {
            let instances = instances.clone();
            let params = params.clone();
            let retries = &retries;
            async move {
                let object = Patch::Apply(&write.object);
                retrying(retries, || instances.patch(&write.name, &params, &object))
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
                Ok::<(), String>(())
            }
        })
        .buffer_unordered(workers)
        .try_collect::<()>()
        .await?;
    Ok(Applied {
        wall: started.elapsed(),
        objects,
        retries: retries.into_inner(),
    })
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
