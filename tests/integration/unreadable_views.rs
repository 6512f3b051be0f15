//! A view whose stored spec this version of the operator cannot read (a value a newer CRD admitted,
//! left in place when the CRD was rolled back) is reported on itself, and its neighbours keep
//! syncing. The test widens the CRD, so it runs on a control plane of its own: the shared one's
//! other tests never see the wider schema.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, CustomResourceExt, ResourceExt};
use ppio_gpu_operator::api::condition::{self, ConditionStatus};
use ppio_gpu_operator::api::{GpuInstanceView, StoredView};
use serde_json::{Value, json};

use ppio_test_support::await_object;
use ppio_test_support::fixture::{Fixture, install_crds};
use ppio_test_support::operator::RunningOperator;
use ppio_test_support::records::example_records;

/// A value of `spec.mirror.omitFields` that no release knows: only a widened CRD admits it.
const UNKNOWN_FIELD: &str = "sshKeysOfTomorrow";

/// The view CRD as a newer release might ship it: `omitFields` admits [`UNKNOWN_FIELD`] as well.
fn widened_view_crd() -> CustomResourceDefinition {
    let mut crd = serde_json::to_value(GpuInstanceView::crd()).expect("CRD JSON");
    let items = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["mirror"]["properties"]["omitFields"]["items"]["enum"];
    items
        .as_array_mut()
        .expect("omitFields is an enum")
        .push(json!(UNKNOWN_FIELD));
    serde_json::from_value(crd).expect("a CRD")
}

/// The `omitFields` enum the API server holds now.
async fn served_omit_fields(client: &kube::Client) -> Value {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = serde_json::to_value(crds.get(GpuInstanceView::crd_name()).await.expect("CRD"))
        .expect("CRD JSON");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["mirror"]["properties"]["omitFields"]["items"]["enum"]
        .clone()
}

/// Each mirror of view `name` with its resourceVersion: any write to one changes it.
async fn mirror_versions(fx: &Fixture, name: &str) -> BTreeMap<String, String> {
    fx.mirrors_of(name)
        .await
        .into_iter()
        .map(|m| (m.name_any(), m.resource_version().unwrap_or_default()))
        .collect()
}

/// Waits until the stored view `name` is InvalidSpec for its current generation, naming the field
/// and the value, and answers refresh `refresh` (if any).
async fn await_invalid_spec(fx: &Fixture, name: &str, refresh: Option<String>) -> StoredView {
    let views: Api<StoredView> = fx.ns.api();
    await_object(
        views,
        name,
        &format!("view {name} to be InvalidSpec naming spec.mirror.omitFields[0]"),
        Duration::from_secs(60),
        move |view| {
            let Some(status) = view.status.as_ref() else {
                return false;
            };
            condition::find(&status.conditions, condition::READY).is_some_and(|ready| {
                status.observed_generation == view.metadata.generation
                    && ready.status == ConditionStatus::False
                    && ready.reason == "InvalidSpec"
                    && ready.message.contains("spec.mirror.omitFields[0]")
                    && ready.message.contains(UNKNOWN_FIELD)
            }) && condition::find(&status.conditions, condition::STALLED)
                .is_some_and(|stalled| stalled.status == ConditionStatus::True)
                && (refresh.is_none() || status.last_handled_refresh == refresh)
        },
    )
    .await
}

/// Asks view `name` for a sync now and returns the value asked with.
async fn request_refresh(fx: &Fixture, name: &str) -> String {
    let value = format!("{}", jiff::Timestamp::now());
    let views: Api<StoredView> = fx.ns.api();
    views
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": {
                ppio_gpu_operator::api::view::REFRESH_ANNOTATION: value
            }}})),
        )
        .await
        .unwrap_or_else(|e| panic!("annotate view {name}: {e}"));
    value
}

/// How long the refresh of view `name` takes to be answered.
async fn refresh_time(fx: &Fixture, name: &str) -> Duration {
    let started = Instant::now();
    fx.refresh(name).await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_the_operator_cannot_read_says_why_and_its_neighbours_keep_syncing() {
    // Its own control plane: the CRD it widens is nobody else's.
    let control_plane =
        ppio_test_support::ControlPlane::start(None).expect("private control plane");
    let mut fx = Fixture::start_in(&control_plane, "unreadable", example_records()).await;
    fx.create_view("bad", |_| {}).await;
    fx.create_view("good", |_| {}).await;
    fx.wait_ready("bad", true, "Synced").await;
    fx.wait_ready("good", true, "Synced").await;
    let before = mirror_versions(&fx, "bad").await;
    assert_eq!(
        before.len(),
        6,
        "the example account's instances are mirrored"
    );

    // A newer release's CRD admits a value this one does not know; a view takes it; the CRD is
    // rolled back exactly (the same field manager applies the same CRD).
    let original = served_omit_fields(&fx.ns.client).await;
    ppio_test_support::crds::apply_crd(
        &fx.ns.client,
        &widened_view_crd(),
        "integration-tests",
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let views: Api<StoredView> = fx.ns.api();
    views
        .patch(
            "bad",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "mirror": { "omitFields": [UNKNOWN_FIELD] } } })),
        )
        .await
        .expect("the widened CRD admits the value");
    install_crds(&fx.ns.client).await;
    assert_eq!(served_omit_fields(&fx.ns.client).await, original);
    let stored = views.get("bad").await.expect("read the view");
    let problem = stored
        .spec
        .expect_err("the value stays stored after the rollback");
    assert_eq!(problem.field, "spec.mirror.omitFields[0]");

    // Meanwhile PPIO renames an instance: a sync of the bad view would rewrite its mirror.
    let renamed = fx.simulator().instances()[0]["id"]
        .as_str()
        .expect("an ID")
        .to_owned();
    fx.simulator()
        .patch_instance(&renamed, json!({ "name": "renamed-remotely" }));

    // Both through the watch that saw the change and through the list of an operator starting
    // afresh (the list of the whole namespace, which the bad view used to fail).
    for (round, late) in [(1, "late-one"), (2, "late-two")] {
        if round == 2 {
            fx._operator = None;
            fx._operator = Some(RunningOperator::start(
                fx.ns.client.clone(),
                &fx.ns.name,
                &fx.ppio.base_url(),
            ));
        }
        // (a) The bad view says which field holds which value, and answers its refresh requests.
        let refresh = request_refresh(&fx, "bad").await;
        await_invalid_spec(&fx, "bad", Some(refresh)).await;
        // (b) Its neighbour answers a refresh request at once.
        let took = refresh_time(&fx, "good").await;
        assert!(
            took < Duration::from_secs(15),
            "round {round}: the neighbour's refresh took {took:?}"
        );
        // (c) A view created afterwards in the namespace syncs.
        fx.create_view(late, |_| {}).await;
        fx.wait_ready(late, true, "Synced").await;
        // (d) Nothing of the bad view's mirrors was written or removed.
        assert_eq!(
            mirror_versions(&fx, "bad").await,
            before,
            "round {round}: the bad view's mirrors are untouched"
        );
    }

    // Once the spec is corrected, the view syncs with it again.
    views
        .patch(
            "bad",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "mirror": { "omitFields": ["image"] } } })),
        )
        .await
        .expect("correct the view");
    fx.wait_ready("bad", true, "Synced").await;
    let mirrors = fx.mirrors_of("bad").await;
    assert_eq!(mirrors.len(), 6);
    assert!(
        mirrors
            .iter()
            .all(|m| m.status.as_ref().is_some_and(|s| s.image.is_none())),
        "the corrected spec is the one synced"
    );
    assert!(
        mirrors.iter().any(|m| m
            .status
            .as_ref()
            .is_some_and(|s| s.name.as_deref() == Some("renamed-remotely"))),
        "the remote change reaches the mirrors once the view syncs"
    );
    drop(fx);
    control_plane.stop();
}
