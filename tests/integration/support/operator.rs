//! The operator and the PPIO simulator, started for one test: the operator's controller runs in the
//! test's process, watching only the test's namespace, against the real API server.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use ppio_gpu_operator::api::condition::{self, ConditionStatus};
use ppio_gpu_operator::api::{GpuInstance, GpuInstanceView, GpuInstanceViewSpec};
use ppio_gpu_operator::controller::{self, Context, EndpointPolicy, Settings};
use ppio_gpu_operator::process::http::Health;
use ppio_gpu_operator::process::metrics::Metrics;
use ppio_simulator::{RunningSimulator, Simulator, SimulatorConfig};
use serde_json::{Value, json};
use url::Url;

use super::{TestNamespace, rand_suffix};

/// The API key the test simulators accept.
pub const API_KEY: &str = "sk-test-0123456789abcdef";

/// Installs the operator's CRDs (server-side apply, so it is idempotent) and waits until the API
/// server serves them.
pub async fn install_crds(client: &Client) {
    super::crds::install_operator_crds(client, "integration-tests", Duration::from_secs(30))
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

/// The operator's controller, running until dropped.
pub struct RunningOperator {
    task: tokio::task::JoinHandle<()>,
}

impl RunningOperator {
    /// Runs the controller over `namespace` only, allowing views to use `endpoint`.
    pub fn start(client: Client, namespace: &str, endpoint: &str) -> RunningOperator {
        RunningOperator::start_with(client, namespace, endpoint, |_| {})
    }

    /// The same, with `adjust` changing the test settings first.
    pub fn start_with(
        client: Client,
        namespace: &str,
        endpoint: &str,
        adjust: impl FnOnce(&mut Settings),
    ) -> RunningOperator {
        let mut settings = Settings {
            endpoints: EndpointPolicy::new(vec![Url::parse(endpoint).expect("endpoint URL")]),
            ppio: ppio_gpu_operator::ppio::ClientConfig {
                request_timeout: Duration::from_secs(2),
                ..Default::default()
            },
            listing_limits: ppio_gpu_operator::ppio::ListingLimits {
                retry_base: Duration::from_millis(20),
                ..Default::default()
            },
            ..Settings::default()
        };
        adjust(&mut settings);
        let namespaces = vec![namespace.to_owned()];
        let context = Arc::new(Context::new(
            client,
            settings,
            Metrics::new(),
            "integration-tests",
        ));
        let task = tokio::spawn(controller::run(
            context,
            namespaces,
            Arc::new(Health::default()),
            std::future::pending::<()>(),
        ));
        RunningOperator { task }
    }
}

impl Drop for RunningOperator {
    fn drop(&mut self) {
        self.task.abort();
    }
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
    /// A namespace with the API key Secret `ppio`, a simulator serving `records`, and the operator,
    /// in the shared control plane.
    pub async fn start(prefix: &str, records: Vec<Value>) -> Fixture {
        Fixture::start_in(super::shared(), prefix, records).await
    }

    /// The same in `control_plane`.
    pub async fn start_in(
        control_plane: &super::ControlPlane,
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
        Fixture::start_in_with(super::shared(), prefix, records, adjust).await
    }

    /// The same in `control_plane`.
    pub async fn start_in_with(
        control_plane: &super::ControlPlane,
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
        control_plane: &super::ControlPlane,
        prefix: &str,
        records: Vec<Value>,
    ) -> Fixture {
        let ns = TestNamespace::new_in(control_plane, prefix).await;
        install_crds(&ns.client).await;
        create_secret(&ns, "ppio", "apiKey", API_KEY).await;
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

    /// Creates a view named `name` using the simulator and the `ppio` Secret; `spec` is merged over
    /// that base (e.g. `{"filter": {...}, "pageSize": 5}`).
    pub async fn create_view(&self, name: &str, spec: Value) -> GpuInstanceView {
        let mut full = json!({
            "credentials": { "secretRef": { "name": "ppio" } },
            "endpoint": self.ppio.base_url(),
            "syncInterval": "10s",
        });
        merge(&mut full, spec);
        assert_spec_fields(&full);
        let view: GpuInstanceView = serde_json::from_value(json!({
            "apiVersion": "gpu.ppio.io/v1alpha1",
            "kind": "GpuInstanceView",
            "metadata": { "name": name },
            "spec": full,
        }))
        .expect("valid GpuInstanceView");
        self.views()
            .create(&PostParams::default(), &view)
            .await
            .unwrap_or_else(|e| panic!("create view {name}: {e}"))
    }

    /// Merges `patch` into the spec of view `name` (e.g. `{"suspend": true}`).
    pub async fn change_spec(&self, name: &str, patch: Value) -> GpuInstanceView {
        let current = self
            .views()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("read view {name}: {e}"));
        let mut spec = serde_json::to_value(&current.spec).expect("a spec serializes");
        merge_patch(&mut spec, &patch);
        assert_spec_fields(&spec);
        self.views()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": patch })),
            )
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
                    "gpu.ppio.io/refresh-requested-at": value
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
    async fn await_view(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&GpuInstanceView) -> bool + Send + 'static,
    ) -> GpuInstanceView {
        let condition = move |view: Option<&GpuInstanceView>| view.is_some_and(&done);
        let waited = tokio::time::timeout(
            Duration::from_secs(60),
            kube::runtime::wait::await_condition(self.views(), name, condition),
        )
        .await;
        match waited {
            Ok(Ok(Some(view))) => view,
            Ok(Ok(None)) => panic!("view {name} was deleted while waiting for {what}"),
            Ok(Err(e)) => panic!("watching view {name} while waiting for {what}: {e}"),
            Err(_) => panic!("timed out after 60s waiting for {what}"),
        }
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
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name },
        "stringData": { key: value },
    }))
    .expect("valid Secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("create Secret {name}: {e}"));
}

/// Fails the test when `spec` names a field that `GpuInstanceViewSpec` does not have, which serde
/// would ignore (and the API server would prune) without a word: a misspelt field in a test must
/// not pass as a default.
fn assert_spec_fields(spec: &Value) {
    let typed: GpuInstanceViewSpec =
        serde_json::from_value(spec.clone()).unwrap_or_else(|e| panic!("not a view spec: {e}"));
    let typed = serde_json::to_value(&typed).expect("a spec serializes");
    assert_fields_known(spec, &typed, "spec");
}

/// Every field `written` sets (not null, not an empty list) is in `typed`, recursively.
fn assert_fields_known(written: &Value, typed: &Value, path: &str) {
    let Value::Object(fields) = written else {
        return;
    };
    for (key, value) in fields {
        let unset = value.is_null() || value.as_array().is_some_and(Vec::is_empty);
        if unset {
            continue;
        }
        let Some(known) = typed.get(key) else {
            panic!("{path}.{key} is not a field of GpuInstanceViewSpec");
        };
        assert_fields_known(value, known, &format!("{path}.{key}"));
    }
}

/// `patch` applied to `base` as a JSON merge patch (RFC 7386) is: a null removes the field.
fn merge_patch(base: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *base = patch.clone();
        return;
    };
    if !base.is_object() {
        *base = json!({});
    }
    if let Value::Object(base) = base {
        for (key, value) in patch {
            if value.is_null() {
                base.remove(key);
            } else {
                merge_patch(base.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (k, v) in overlay {
                merge(base.entry(k).or_insert(Value::Null), v);
            }
        }
        (base, overlay) => *base = overlay,
    }
}

#[test]
#[should_panic(expected = "spec.mirror.omitField is not a field of GpuInstanceViewSpec")]
fn a_misspelt_view_field_fails_the_test_instead_of_passing_as_a_default() {
    assert_spec_fields(&json!({
        "credentials": { "secretRef": { "name": "ppio" } },
        "mirror": { "omitField": ["command"] },
    }));
}

#[test]
fn the_fields_a_test_sets_or_clears_pass() {
    assert_spec_fields(&json!({
        "credentials": { "secretRef": { "name": "ppio" } },
        "filter": { "regions": [], "status": "running", "billingMode": null },
        "mirror": { "omitFields": ["command"], "deletionPolicy": "Retain" },
        "suspend": true,
    }));
}
