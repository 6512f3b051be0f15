//! Proves the test control plane is a real Kubernetes API server: CRDs are established and validated,
//! the status subresource takes server-side apply, kubectl prints columns, the garbage collector
//! cascades deletion, TokenRequest issues tokens and RBAC denies what is not granted.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use ppio_test_support::{TestNamespace, await_absent, shared, wait_for};

/// A throwaway resource that only these tests install.
#[allow(clippy::duplicated_attributes)] // repeated `printcolumn(type_ = ...)` is how kube declares columns
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "harness.test.ppio.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    printcolumn(name = "Color", type_ = "string", json_path = ".spec.color"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase")
)]
pub struct WidgetSpec {
    #[schemars(length(min = 1, max = 16))]
    color: String,
}

/// The status the tests write through the status subresource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
pub struct WidgetStatus {
    phase: Option<String>,
}

async fn install_widget_crd(client: &kube::Client) {
    ppio_test_support::crds::apply_crd(
        client,
        &Widget::crd(),
        "harness-test",
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

fn widget(name: &str, color: &str) -> Widget {
    Widget::new(
        name,
        WidgetSpec {
            color: color.into(),
        },
    )
}

#[tokio::test]
async fn crd_objects_status_subresource_and_printer_columns_work_like_a_real_cluster() {
    let ns = TestNamespace::new("harness-crd").await;
    install_widget_crd(&ns.client).await;
    let widgets: Api<Widget> = ns.api();

    // Schema validation happens at the API server.
    let too_long = widget("invalid", "a-color-name-longer-than-sixteen");
    let rejected = widgets.create(&PostParams::default(), &too_long).await;
    assert!(
        matches!(&rejected, Err(kube::Error::Api(s)) if s.code == 422),
        "the API server must reject a spec that violates the schema, got {rejected:?}"
    );

    widgets
        .create(&PostParams::default(), &widget("w1", "teal"))
        .await
        .expect("create a Widget");

    // Status through the status subresource, with server-side apply.
    let status = json!({
        "apiVersion": Widget::api_version(&()),
        "kind": Widget::kind(&()),
        "status": { "phase": "Polished" }
    });
    widgets
        .patch_status(
            "w1",
            &PatchParams::apply("harness-test").force(),
            &Patch::Apply(&status),
        )
        .await
        .expect("server-side apply of the status");
    let stored = widgets.get("w1").await.expect("get Widget");
    assert_eq!(
        stored.status.and_then(|s| s.phase).as_deref(),
        Some("Polished")
    );
    let managers: Vec<_> = stored
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.manager.as_deref() == Some("harness-test"))
        .map(|m| (m.operation, m.subresource))
        .collect();
    assert!(
        managers.contains(&(Some("Apply".into()), Some("status".into()))),
        "the API server records our status apply as its own field manager entry, got {managers:?}"
    );

    // A status written through the main resource is ignored when the subresource is enabled.
    let mut replaced = widgets.get("w1").await.expect("get Widget");
    replaced.status = Some(WidgetStatus {
        phase: Some("Dusty".into()),
    });
    widgets
        .replace("w1", &PostParams::default(), &replaced)
        .await
        .expect("replace Widget");
    let stored = widgets.get("w1").await.expect("get Widget");
    assert_eq!(
        stored.status.and_then(|s| s.phase).as_deref(),
        Some("Polished")
    );

    // What a user sees with the machine's kubectl.
    let table = ns.kubectl(&["get", "widgets.harness.test.ppio.io"]);
    let mut lines = table.lines();
    let header: Vec<_> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "COLOR", "PHASE"], "table was:\n{table}");
    let row: Vec<_> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(&row[..3], ["w1", "teal", "Polished"], "table was:\n{table}");
}

#[tokio::test]
async fn deleting_an_owner_removes_its_dependents_through_the_garbage_collector() {
    let ns = TestNamespace::new("harness-gc").await;
    install_widget_crd(&ns.client).await;
    let widgets: Api<Widget> = ns.api();

    let owner = widgets
        .create(&PostParams::default(), &widget("owner", "red"))
        .await
        .expect("create owner");
    let mut dependent = widget("dependent", "blue");
    dependent.metadata.owner_references = Some(vec![
        owner.controller_owner_ref(&()).expect("owner has a uid"),
    ]);
    widgets
        .create(&PostParams::default(), &dependent)
        .await
        .expect("create dependent");
    let bystander = widgets
        .create(&PostParams::default(), &widget("bystander", "green"))
        .await
        .expect("create an unrelated Widget");

    widgets
        .delete("owner", &DeleteParams::background())
        .await
        .expect("delete owner");

    await_absent(
        widgets.clone(),
        "dependent",
        "the garbage collector to delete the dependent",
        Duration::from_secs(90),
    )
    .await;
    let still_there = widgets.get("bystander").await.expect("bystander remains");
    assert_eq!(still_there.uid(), bystander.uid());
}

#[tokio::test]
async fn a_service_account_token_from_token_request_is_bound_by_rbac() {
    let ns = TestNamespace::new("harness-rbac").await;
    let accounts: Api<ServiceAccount> = ns.api();
    let account: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": "reader" } })).expect("valid");
    accounts
        .create(&PostParams::default(), &account)
        .await
        .expect("create ServiceAccount");

    // Grant reading ConfigMaps, and nothing else.
    let role: Role = serde_json::from_value(json!({
        "metadata": { "name": "configmap-reader" },
        "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"] }]
    }))
    .expect("valid Role");
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .expect("create Role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "reader-reads-configmaps" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader" },
        "subjects": [{ "kind": "ServiceAccount", "name": "reader", "namespace": ns.name }]
    }))
    .expect("valid RoleBinding");
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .expect("create RoleBinding");

    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request("reader", &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .expect("TokenRequest status")
        .token;
    assert!(!token.is_empty());

    let mut config = shared().config().await;
    config.auth_info = serde_json::from_value(json!({ "token": token })).expect("AuthInfo");
    let reader = kube::Client::try_from(config).expect("client with the token");

    let configmaps: Api<ConfigMap> = Api::namespaced(reader.clone(), &ns.name);
    wait_for(
        "RBAC to grant the bound Role",
        Duration::from_secs(30),
        || {
            let configmaps = configmaps.clone();
            async move { configmaps.list(&ListParams::default()).await.ok() }
        },
    )
    .await;

    let secrets: Api<Secret> = Api::namespaced(reader.clone(), &ns.name);
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "RBAC must forbid, got {status:?}");
            assert!(
                status
                    .message
                    .contains(&format!("system:serviceaccount:{}:reader", ns.name)),
                "the API server must have authenticated the token as the ServiceAccount: {}",
                status.message
            );
        }
        other => panic!("listing Secrets must be forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn a_private_control_plane_restarts_on_its_data_directory_with_its_objects() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = ppio_test_support::ControlPlane::start(Some(dir.path())).expect("start");
    let server = first.server.clone();
    let client = first.client().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client, "default");
    let kept: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "kept" }, "data": { "answer": "42" }
    }))
    .expect("valid ConfigMap");
    configmaps
        .create(&PostParams::default(), &kept)
        .await
        .expect("create ConfigMap");
    first.stop();

    let second = ppio_test_support::ControlPlane::start(Some(dir.path())).expect("restart");
    assert_eq!(
        second.server, server,
        "a restart serves at the same address"
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(second.client().await, "default");
    let stored = configmaps
        .get("kept")
        .await
        .expect("the object survived the restart");
    assert_eq!(
        stored
            .data
            .unwrap_or_default()
            .get("answer")
            .map(String::as_str),
        Some("42")
    );
    second.stop();
    assert!(
        !dir.path().join("ready").exists(),
        "a stopped control plane removes its ready marker"
    );
}

#[test]
fn a_missing_launcher_fails_with_how_to_build_it() {
    let missing = std::path::PathBuf::from("/nonexistent/kube-control-plane");
    let error = ppio_test_support::control_plane::launcher_at(missing).expect_err("must fail");
    assert!(error.contains("make control-plane"), "{error}");
    assert!(error.contains("/nonexistent/kube-control-plane"), "{error}");
}
