//! A mirror's writes interrupted half-way are repaired by the next process: the fingerprint that the
//! next leader believes goes out only after every write it vouches for succeeded. The interruption
//! is a write the API server refuses (a ValidatingAdmissionPolicy of the test's namespace), after
//! which the operator stops, as a lost Lease, the drain or an OOM kill would stop it; the refusal is
//! then lifted and a new operator started.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use ppio_gpu_core::mirror::FINGERPRINT_ANNOTATION;
use ppio_gpu_core::services::AddressPolicy;
use serde_json::{Value, json};

use ppio_test_support::fixture::Fixture;
use ppio_test_support::operator::RunningOperator;
use ppio_test_support::records::{generated, port, set_status};
use ppio_test_support::{TestNamespace, shared, wait_for};

/// How long the refusal or its lifting may take to reach the API server's admission.
const POLICY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new operator may take to repair a mirror: its first sync, at once for a view whose
/// last sync failed or within its interval (10 s), with room for a loaded machine.
const REPAIR_TIMEOUT: Duration = Duration::from_secs(45);

/// A running instance `aa01` exposing port 8080 at `endpoint`.
fn running(endpoint: &str) -> Value {
    let mut record = generated("aa01", 7);
    set_status(&mut record, "running");
    record["ports"] = json!([port(8080, "http", endpoint)]);
    record
}

/// The rule that lets Services route to the documentation range the instance's address is in.
fn allowing_documentation() -> AddressPolicy {
    AddressPolicy {
        cluster: Vec::new(),
        allowed: vec!["203.0.113.0/24".parse().expect("a range")],
    }
}

/// A refusal of every `operations` write of `resources` (in `group`) in the test's namespace, and
/// of ConfigMaps there, which tell the test when the refusal is in force.
struct Refusal {
    name: String,
    policies: Api<ValidatingAdmissionPolicy>,
    bindings: Api<ValidatingAdmissionPolicyBinding>,
    probes: Api<ConfigMap>,
}

impl Refusal {
    async fn start(ns: &TestNamespace, group: &str, resources: &str, operations: &[&str]) -> Self {
        let name = format!("refuse-{}", ns.name);
        let selector = json!({ "matchLabels": { "kubernetes.io/metadata.name": ns.name } });
        let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "namespaceSelector": selector,
                    "resourceRules": [
                        {
                            "apiGroups": [group], "apiVersions": ["*"],
                            "operations": operations, "resources": [resources],
                        },
                        {
                            "apiGroups": [""], "apiVersions": ["v1"],
                            "operations": ["CREATE"], "resources": ["configmaps"],
                        },
                    ],
                },
                "validations": [{ "expression": "false", "message": "refused by the test" }],
            },
        }))
        .expect("a policy");
        let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": { "namespaceSelector": selector },
            },
        }))
        .expect("a binding");
        let refusal = Refusal {
            policies: Api::all(ns.client.clone()),
            bindings: Api::all(ns.client.clone()),
            probes: ns.api(),
            name,
        };
        refusal
            .policies
            .create(&PostParams::default(), &policy)
            .await
            .expect("create the policy");
        refusal
            .bindings
            .create(&PostParams::default(), &binding)
            .await
            .expect("create the binding");
        refusal.await_in_force(true).await;
        refusal
    }

    /// Lifts the refusal, and waits until the API server admits again.
    async fn lift(self) {
        let params = DeleteParams::default();
        self.bindings
            .delete(&self.name, &params)
            .await
            .expect("delete the binding");
        self.policies
            .delete(&self.name, &params)
            .await
            .expect("delete the policy");
        self.await_in_force(false).await;
    }

    async fn await_in_force(&self, refused: bool) {
        let what = if refused {
            "the refusal in force"
        } else {
            "the refusal lifted"
        };
        wait_for(what, POLICY_TIMEOUT, || async {
            let probe: ConfigMap = serde_json::from_value(json!({
                "metadata": { "generateName": "probe-" },
            }))
            .expect("a ConfigMap");
            let created = self.probes.create(&PostParams::default(), &probe).await;
            match created {
                Ok(probe) => {
                    let _ = self
                        .probes
                        .delete(&probe.name_any(), &DeleteParams::default())
                        .await;
                    (!refused).then_some(())
                }
                Err(_) => {
                    if refused {
                        Some(())
                    } else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        None
                    }
                }
            }
        })
        .await;
    }
}

/// The fingerprint annotation of mirror `name`, if it has one.
async fn fingerprint(fx: &Fixture, name: &str) -> Option<String> {
    fx.instances()
        .get(name)
        .await
        .expect("the mirror")
        .annotations()
        .get(FINGERPRINT_ANNOTATION)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_created_without_its_status_is_completed_by_the_next_process() {
    let mut fx = Fixture::without_operator(
        shared(),
        "interrupted-create",
        vec![running("http://203.0.113.5:30001")],
    )
    .await;
    let refusal = Refusal::start(&fx.ns, "gpu.ppio.io", "gpuinstances/status", &["UPDATE"]).await;
    let first = RunningOperator::start(fx.ns.client.clone(), &fx.ns.name, &fx.ppio.base_url());
    fx.create_view("v", |_| {}).await;
    fx.wait_ready("v", false, "WriteFailed").await;
    drop(first);
    let stranded = fx.instances().get("v-aa01").await.expect("the mirror");
    assert!(
        stranded.status.as_ref().is_none_or(|s| s.status.is_none()),
        "the status write was refused: {:?}",
        stranded.status
    );
    assert_eq!(
        stranded.annotations().get(FINGERPRINT_ANNOTATION),
        None,
        "a mirror without its status must not vouch for it"
    );

    refusal.lift().await;
    fx._operator = Some(RunningOperator::start(
        fx.ns.client.clone(),
        &fx.ns.name,
        &fx.ppio.base_url(),
    ));
    // Its status first, then (the last write of the repair) the fingerprint that vouches for it.
    wait_for(
        "the mirror's status, then its fingerprint",
        REPAIR_TIMEOUT,
        || async {
            let mirror = fx.instances().get("v-aa01").await.ok()?;
            let remote = mirror.status.as_ref()?.status.as_ref()?.status.clone()?;
            (remote == "running" && mirror.annotations().contains_key(FINGERPRINT_ANNOTATION))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_address_whose_slice_was_refused_is_routed_by_the_next_process() {
    let mut fx = Fixture::without_operator(
        shared(),
        "interrupted-update",
        vec![running("http://203.0.113.5:30001")],
    )
    .await;
    let with_services = |settings: &mut ppio_gpu_operator::controller::Settings| {
        settings.services = Some(allowing_documentation());
    };
    let first = RunningOperator::start_with(
        fx.ns.client.clone(),
        &fx.ns.name,
        &fx.ppio.base_url(),
        with_services,
    );
    fx.create_view("v", |spec| spec.services.enabled = true)
        .await;
    fx.wait_ready("v", true, "Synced").await;
    assert_eq!(addresses(&fx).await, ["203.0.113.5"]);
    let before = fingerprint(&fx, "v-aa01").await;
    assert!(before.is_some(), "a mirror written whole vouches for it");

    let refusal = Refusal::start(&fx.ns, "discovery.k8s.io", "endpointslices", &["UPDATE"]).await;
    assert!(
        fx.simulator()
            .set_endpoints("aa01", &[(8080, "http://203.0.113.6:30002")])
    );
    fx.refresh("v").await;
    // The status shows the new address; its slice could not follow.
    let moved = wait_for("the mirror's new endpoint", REPAIR_TIMEOUT, || async {
        let mirror = fx.instances().get("v-aa01").await.ok()?;
        let ports = &mirror.status.as_ref()?.ports;
        ports
            .iter()
            .any(|p| p.endpoint.as_deref() == Some("http://203.0.113.6:30002"))
            .then_some(mirror)
    })
    .await;
    // The slice's update was refused: it is withdrawn, nothing routes to the old address (a sync
    // of the first operator after that may already have created it anew, at the new address).
    wait_for("the old slice to be withdrawn", REPAIR_TIMEOUT, || async {
        let addresses = addresses(&fx).await;
        (!addresses.iter().any(|a| a == "203.0.113.5")).then_some(())
    })
    .await;
    drop(first);
    let after = moved.annotations().get(FINGERPRINT_ANNOTATION).cloned();
    assert!(
        after.is_none() || after == before,
        "the mirror must not vouch for a slice that was never written: {after:?}"
    );

    refusal.lift().await;
    fx._operator = Some(RunningOperator::start_with(
        fx.ns.client.clone(),
        &fx.ns.name,
        &fx.ppio.base_url(),
        with_services,
    ));
    wait_for("the slice at the new address", REPAIR_TIMEOUT, || async {
        (addresses(&fx).await == ["203.0.113.6"]).then_some(())
    })
    .await;
}

/// The addresses of the EndpointSlices of Service `v-aa01`.
async fn addresses(fx: &Fixture) -> Vec<String> {
    fx.ns
        .api::<EndpointSlice>()
        .list(&ListParams::default().labels("kubernetes.io/service-name=v-aa01"))
        .await
        .expect("list EndpointSlices")
        .items
        .into_iter()
        .flat_map(|slice| slice.endpoints.into_iter().flat_map(|e| e.addresses))
        .collect()
}
