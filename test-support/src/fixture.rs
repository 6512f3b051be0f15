//! The fixture most mirroring tests start from: a namespace of the test's own with the API key
//! Secret, a PPIO simulator, and the operator's controller watching that namespace; and the views it
//! creates, changes and awaits there.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use ppio_gpu_core::api::condition::{self, ConditionStatus};
use ppio_gpu_core::api::view::{GpuInstanceViewSpec, REFRESH_ANNOTATION};
use ppio_gpu_core::api::{GpuInstance, GpuInstanceView};
use ppio_gpu_operator::controller::Settings;
use ppio_simulator::{RunningSimulator, Simulator, SimulatorConfig};
use serde_json::{Value, json};

use crate::control_plane::{ControlPlane, shared};
use crate::namespace::TestNamespace;
use crate::objects::{self, rand_suffix};
use crate::operator::RunningOperator;
use crate::waiting::await_object;

/// The API key the test simulators accept.
pub const API_KEY: &str = "sk-test-0123456789abcdef";

/// The Secret every fixture's views name, holding [`API_KEY`] under `apiKey`.
pub const SECRET: &str = "ppio";

/// Installs the operator's CRDs (server-side apply, so it is idempotent) and waits until the API
/// server serves them.
pub async fn install_crds(client: &Client) {
    crate::crds::install_operator_crds(client, "integration-tests", Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A PPIO simulator serving `records`, accepting [`API_KEY`].
pub async fn start_simulator(records: Vec<Value>) -> RunningSimulator {
    Simulator::start(SimulatorConfig {
        api_keys: vec![API_KEY.into()],
        instances: records,
        ..SimulatorConfig::default()
    })
    .await
    .expect("start the PPIO simulator")
}

/// Everything one mirroring test needs: its namespace, a simulator, the operator.
pub struct Fixture {
    /// The test's namespace and admin client.
    pub ns: TestNamespace,
    /// The PPIO simulator.
    pub ppio: RunningSimulator,
    /// The in-process operator, stopped when the fixture is dropped; `None` when the test runs the
    /// operator itself.
    pub _operator: Option<RunningOperator>,
}

impl Fixture {
    /// A namespace with the API key Secret [`SECRET`], a simulator serving `records`, and the
    /// operator, in the shared control plane.
    pub async fn start(prefix: &str, records: Vec<Value>) -> Fixture {
        Fixture::start_in(shared(), prefix, records).await
    }

    /// The same in `control_plane`.
    pub async fn start_in(
        control_plane: &ControlPlane,
        prefix: &str,
        records: Vec<Value>,
    ) -> Fixture {
        Fixture::start_in_with(control_plane, prefix, records, |_| {}).await
    }

    /// A namespace with the Secret, a simulator serving `records`, and the operator with
    /// `adjust` changing its test settings, in the shared control plane.
    pub async fn start_with(
        prefix: &str,
        records: Vec<Value>,
        adjust: impl FnOnce(&mut Settings),
    ) -> Fixture {
        Fixture::start_in_with(shared(), prefix, records, adjust).await
    }

    /// The same in `control_plane`.
    pub async fn start_in_with(
        control_plane: &ControlPlane,
        prefix: &str,
        records: Vec<Value>,
        adjust: impl FnOnce(&mut Settings),
    ) -> Fixture {
        let mut fixture = Fixture::without_operator(control_plane, prefix, records).await;
        fixture._operator = Some(RunningOperator::start_with(
            fixture.ns.client.clone(),
            &fixture.ns.name,
            &fixture.ppio.base_url(),
            adjust,
        ));
        fixture
    }

    /// A namespace with the Secret and the simulator, for a test that runs the operator itself.
    pub async fn without_operator(
        control_plane: &ControlPlane,
        prefix: &str,
        records: Vec<Value>,
    ) -> Fixture {
        let ns = TestNamespace::new_in(control_plane, prefix).await;
        install_crds(&ns.client).await;
        create_secret(&ns, SECRET, "apiKey", API_KEY).await;
        let ppio = start_simulator(records).await;
        Fixture {
            ns,
            ppio,
            _operator: None,
        }
    }

    /// Arguments of an operator replica watching only the fixture's namespace, with its Lease there
    /// (10 s, the shortest allowed) and the fixture's simulator allowed; `extra` follow.
    pub fn replica_args(&self, extra: &[&str]) -> Vec<String> {
        let base_url = self.ppio.base_url();
        let mut args = vec![
            "--namespace",
            &self.ns.name,
            "--lease-namespace",
            &self.ns.name,
            "--lease-duration-seconds",
            "10",
            "--allowed-endpoint",
            &base_url,
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect()
    }

    /// The simulator's state.
    pub fn simulator(&self) -> &Simulator {
        self.ppio.simulator()
    }

    /// Views in the test's namespace.
    pub fn views(&self) -> Api<GpuInstanceView> {
        self.ns.api()
    }

    /// GpuInstances in the test's namespace.
    pub fn instances(&self) -> Api<GpuInstance> {
        self.ns.api()
    }

    /// The spec of a view of every instance of the simulator, with the API key in [`SECRET`],
    /// synced every 10 s (the shortest allowed): what [`Fixture::create_view`] starts from.
    pub fn view_spec(&self) -> GpuInstanceViewSpec {
        let mut spec = objects::view_spec(SECRET, &self.ppio.base_url());
        spec.sync_interval = "10s".into();
        spec
    }

    /// Creates the view `name` from [`Fixture::view_spec`] as `shape` changes it (e.g.
    /// `|spec| spec.page_size = 5`).
    pub async fn create_view(
        &self,
        name: &str,
        shape: impl FnOnce(&mut GpuInstanceViewSpec),
    ) -> GpuInstanceView {
        let mut spec = self.view_spec();
        shape(&mut spec);
        self.views()
            .create(&PostParams::default(), &objects::view(name, spec))
            .await
            .unwrap_or_else(|e| panic!("create view {name}: {e}"))
    }

    /// Changes the spec of view `name` as `change` says (e.g. `|spec| spec.suspend = true`), and
    /// replaces the whole spec with that, whatever the operator writes to the status meanwhile.
    pub async fn change_spec(
        &self,
        name: &str,
        change: impl FnOnce(&mut GpuInstanceViewSpec),
    ) -> GpuInstanceView {
        let mut spec = self
            .views()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("read view {name}: {e}"))
            .spec;
        change(&mut spec);
        let replace = json!([{ "op": "replace", "path": "/spec", "value": spec }]);
        let patch = serde_json::from_value(replace).expect("a JSON patch");
        self.views()
            .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
            .unwrap_or_else(|e| panic!("change the spec of view {name}: {e}"))
    }

    /// Waits until the view's Ready condition for its current generation has `status` and `reason`.
    pub async fn wait_ready(&self, name: &str, status: bool, reason: &str) -> GpuInstanceView {
        let want = ConditionStatus::from(status);
        let reason = reason.to_owned();
        self.await_view(
            name,
            &format!("view {name} to be Ready={want:?} with reason {reason}"),
            move |view| {
                let Some(status) = view.status.as_ref() else {
                    return false;
                };
                condition::find(&status.conditions, condition::READY).is_some_and(|ready| {
                    status.observed_generation == view.metadata.generation
                        && ready.observed_generation == view.metadata.generation
                        && ready.status == want
                        && ready.reason == reason
                })
            },
        )
        .await
    }

    /// Asks for a sync now (the refresh annotation) and waits until the view's status answers it.
    pub async fn refresh(&self, name: &str) -> GpuInstanceView {
        let value = format!("{}-{}", jiff::Timestamp::now(), rand_suffix());
        self.views()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": { "annotations": {
                    REFRESH_ANNOTATION: value
                }}})),
            )
            .await
            .unwrap_or_else(|e| panic!("annotate view {name}: {e}"));
        let what = format!("view {name} to answer refresh {value}");
        self.await_view(name, &what, move |view| {
            view.status
                .as_ref()
                .and_then(|s| s.last_handled_refresh.as_deref())
                == Some(value.as_str())
        })
        .await
    }

    /// Watches view `name` until `done` holds for it, at most a minute, and returns it then.
    pub async fn await_view(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&GpuInstanceView) -> bool + Send + Sync + 'static,
    ) -> GpuInstanceView {
        await_object(self.views(), name, what, Duration::from_secs(60), done).await
    }

    /// How many times an Event with `reason` was published on the object `name` (an Event
    /// published again soon after is one object whose series counts it).
    pub async fn events_published(&self, name: &str, reason: &str) -> i32 {
        self.ns
            .api::<k8s_openapi::api::events::v1::Event>()
            .list(&kube::api::ListParams::default())
            .await
            .expect("list Events")
            .items
            .iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    && e.reason.as_deref() == Some(reason)
            })
            .map(|e| e.series.as_ref().map_or(1, |s| s.count.max(1)))
            .sum()
    }

    /// The GpuInstances of view `name`, by object name.
    pub async fn mirrors_of(&self, name: &str) -> Vec<GpuInstance> {
        let mut mirrors: Vec<_> = self
            .instances()
            .list(&kube::api::ListParams::default().labels(&format!("gpu.ppio.io/view={name}")))
            .await
            .expect("list GpuInstances")
            .items;
        mirrors.sort_by_key(|m| m.name_any());
        mirrors
    }
}

/// Creates Secret `name` holding only `value` under `key`, replacing any Secret of that name.
pub async fn create_secret(ns: &TestNamespace, name: &str, key: &str, value: &str) {
    let secrets = ns.api::<Secret>();
    let _ = secrets
        .delete(name, &kube::api::DeleteParams::default())
        .await;
    secrets
        .create(
            &PostParams::default(),
            &objects::api_key_secret(name, key, value),
        )
        .await
        .unwrap_or_else(|e| panic!("create Secret {name}: {e}"));
}
