//! The yardstick: a bare concurrent server-side-apply client that writes the same GpuInstances the
//! operator writes (built by the operator's own mapping and planning from the simulator's records), the
//! object then its status, with a fixed number of workers and no client-side limit. The fastest an
//! operator that writes every mirror could be on this machine.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use ppio_gpu_operator::api::{GpuInstance, GpuInstanceView};
use ppio_gpu_operator::plan;
use ppio_gpu_operator::ppio::Page;
use serde_json::{Value, json};

/// The field manager of the bare client's writes.
const FIELD_MANAGER: &str = "bench-bare-client";

/// Writes the mirrors of `records` for `view` (an existing view in a namespace the operator does not
/// watch) with `workers` concurrent writers; returns how long the writes took and how many objects
/// were written.
pub async fn apply_mirrors(
    client: &kube::Client,
    view: &GpuInstanceView,
    records: Vec<Value>,
    workers: usize,
) -> Result<(Duration, usize), String> {
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
        writes.extend(
            listing
                .iter()
                .map(|instance| plan::desired_mirror(view, instance, now)),
        );
    }
    drop(records);

    let instances: Api<GpuInstance> = Api::namespaced(client.clone(), &namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let count = writes.len();
    let started = Instant::now();
    stream::iter(writes)
        .map(|write| {
            let instances = instances.clone();
            let params = params.clone();
            async move {
                let object = Patch::Apply(&write.object);
                retrying_transport_errors(|| instances.patch(&write.name, &params, &object))
                    .await
                    .map_err(|e| format!("bare client: apply {}: {e}", write.name))?;
                let body = json!({
                    "apiVersion": GpuInstance::api_version(&()),
                    "kind": GpuInstance::kind(&()),
                    "status": write.status,
                });
                let status = Patch::Apply(&body);
                retrying_transport_errors(|| instances.patch_status(&write.name, &params, &status))
                    .await
                    .map_err(|e| format!("bare client: apply the status of {}: {e}", write.name))?;
                Ok::<(), String>(())
            }
        })
        .buffer_unordered(workers)
        .try_collect::<()>()
        .await?;
    Ok((started.elapsed(), count))
}

/// Runs `write` again (up to 3 times, a second apart) when it fails before the API server answered:
/// over hundreds of thousands of writes a connection may drop, which says nothing of the yardstick.
async fn retrying_transport_errors<T, F>(mut write: impl FnMut() -> F) -> Result<T, kube::Error>
where
    F: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 1;
    loop {
        match write().await {
            Err(kube::Error::Api(status)) => return Err(kube::Error::Api(status)),
            Err(_) if attempt < 3 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            done => return done,
        }
    }
}
