//! A namespace of a user of the operator: a Secret with an API key of its own and a view of every
//! instance, built from the typed spec and pointed at the simulator.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::PostParams;
use kube::{Api, Client};
use ppio_gpu_core::api::GpuInstanceView;
use ppio_gpu_core::api::condition::{self, ConditionStatus};
use ppio_gpu_core::api::view::GpuInstanceViewSpec;

use super::{SYNC_INTERVAL, ppio, simulator_url};
use crate::objects;
use crate::waiting::await_object;

/// A namespace of a user of the operator: a Secret with an API key of its own and a view of every
/// instance, pointed at the simulator. Deleted when dropped.
pub struct Tenant {
    /// The namespace.
    pub namespace: String,
    /// The API key its view uses (the simulator accepts it), so its requests can be told apart.
    pub api_key: String,
    client: Client,
}

/// The view every tenant creates.
pub const VIEW: &str = "all";

/// The Secret its view names.
const SECRET: &str = "ppio-api-key";

impl Tenant {
    /// Creates the namespace, the Secret and the view (pages of 5, a sync every [`SYNC_INTERVAL`]).
    pub async fn create(client: &Client, namespace: &str) -> Tenant {
        Tenant::create_with(client, namespace, 5, SYNC_INTERVAL).await
    }

    /// Creates the namespace, the Secret and a view with this page size and sync interval.
    pub async fn create_with(
        client: &Client,
        namespace: &str,
        page_size: u32,
        sync_interval: Duration,
    ) -> Tenant {
        Tenant::create_with_spec(client, namespace, page_size, sync_interval, |_| {}).await
    }

    /// The same, with `shape` changing the view's spec (e.g. `|spec| spec.services.enabled = true`).
    pub async fn create_with_spec(
        client: &Client,
        namespace: &str,
        page_size: u32,
        sync_interval: Duration,
        shape: impl FnOnce(&mut GpuInstanceViewSpec),
    ) -> Tenant {
        let api_key = format!("sk-e2e-{namespace}");
        ppio().accept_key(&api_key);

        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &objects::namespace(namespace, &[]))
            .await
            .unwrap_or_else(|e| panic!("create namespace {namespace}: {e}"));
        Api::<Secret>::namespaced(client.clone(), namespace)
            .create(
                &PostParams::default(),
                &objects::api_key_secret(SECRET, "apiKey", &api_key),
            )
            .await
            .expect("create the Secret");
        let mut spec = objects::view_spec(SECRET, &simulator_url());
        spec.sync_interval = format!("{}s", sync_interval.as_secs());
        spec.page_size = i32::try_from(page_size).expect("a page size of the API's range");
        shape(&mut spec);
        Api::<GpuInstanceView>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &objects::view(VIEW, spec))
            .await
            .expect("create the view");
        Tenant {
            namespace: namespace.to_owned(),
            api_key,
            client: client.clone(),
        }
    }

    /// The view, as it is now.
    pub async fn view(&self) -> GpuInstanceView {
        Api::<GpuInstanceView>::namespaced(self.client.clone(), &self.namespace)
            .get(VIEW)
            .await
            .expect("get the view")
    }

    /// Waits until the view is Ready after a complete listing.
    pub async fn wait_ready(&self, timeout: Duration) -> GpuInstanceView {
        let views = Api::<GpuInstanceView>::namespaced(self.client.clone(), &self.namespace);
        await_object(views, VIEW, "the view to be Ready", timeout, |view| {
            view.status.as_ref().is_some_and(|status| {
                condition::find(&status.conditions, condition::READY)
                    .is_some_and(|ready| ready.status == ConditionStatus::True)
                    && status.last_successful_sync_time.is_some()
            })
        })
        .await
    }

    /// The view's `lastSyncTime`, if it has synced.
    pub async fn last_sync(&self) -> Option<String> {
        self.view()
            .await
            .status?
            .last_sync_time
            .map(|t| t.to_string())
    }
}

impl Drop for Tenant {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .args(["delete", "namespace", &self.namespace, "--wait=false"])
            .output();
    }
}
