//! A view whose stored spec this version of the operator cannot read (a value a newer CRD admitted,
//! left in place when the CRD was rolled back) is reported on itself, and its neighbours keep
//! syncing. The test widens the CRD, so it runs on a control plane of its own: the shared one's
//! other tests never see the wider schema.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, CustomResourceExt, ResourceExt};
use ppio_gpu_core::api::condition::{self, ConditionStatus};
use ppio_gpu_core::api::{GpuInstanceView, StoredView};
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
                ppio_gpu_core::api::view::REFRESH_ANNOTATION: value
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
    patch_once_admitted(
        &views,
        "bad",
        json!({ "spec": { "mirror": { "omitFields": [UNKNOWN_FIELD] } } }),
    )
    .await;
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

    // (e) Once reported, the bad view is left alone: its status is not written again and again
    // (neither a rewrite that changes only lastSyncTime, nor a retry of a write that failed).
    let settled = views.get("bad").await.expect("read the view");
    tokio::time::sleep(Duration::from_secs(15)).await;
    let later = views.get("bad").await.expect("read the view");
    assert_eq!(
        later.resource_version(),
        settled.resource_version(),
        "the reported view's status is not rewritten"
    );

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

/// The view CRD as a newer release might ship it: `pageSize` is an int-or-string.
fn int_or_string_page_size_crd() -> CustomResourceDefinition {
    let mut crd = serde_json::to_value(GpuInstanceView::crd()).expect("CRD JSON");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["pageSize"] =
        json!({ "x-kubernetes-int-or-string": true });
    serde_json::from_value(crd).expect("a CRD")
}

/// Merges `patch` into view `name` once the widened CRD admits it. The CRD was Established before
/// it was widened, so its new schema reaches the API server's validation a moment after the update
/// returns: a refusal meanwhile (422) is asked again, for at most 30 s.
async fn patch_once_admitted(views: &Api<StoredView>, name: &str, patch: Value) {
    let started = Instant::now();
    loop {
        match views
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(refused))
                if refused.code == 422 && started.elapsed() < Duration::from_secs(30) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the widened CRD admits {patch}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_whose_status_the_api_server_refuses_is_not_retried_every_few_seconds() {
    // Its own control plane: the CRD it widens is nobody else's.
    let control_plane =
        ppio_test_support::ControlPlane::start(None).expect("private control plane");
    let mut fx = Fixture::start_in(&control_plane, "refused-status", example_records()).await;
    fx.create_view("bad", |_| {}).await;
    fx.wait_ready("bad", true, "Synced").await;

    // While the operator is down, a newer CRD admits a string page size, a view takes one, and the
    // CRD is rolled back. The API server now cannot fit the stored object to the schema, and
    // server-side apply of its status fails.
    fx._operator = None;
    ppio_test_support::crds::apply_crd(
        &fx.ns.client,
        &int_or_string_page_size_crd(),
        "integration-tests",
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let views: Api<StoredView> = fx.ns.api();
    patch_once_admitted(&views, "bad", json!({ "spec": { "pageSize": "big" } })).await;
    install_crds(&fx.ns.client).await;
    let stored = views.get("bad").await.expect("read the view");
    assert_eq!(
        stored.spec.expect_err("the value stays stored").field,
        "spec.pageSize"
    );
    fx._operator = Some(RunningOperator::start(
        fx.ns.client.clone(),
        &fx.ns.name,
        &fx.ppio.base_url(),
    ));

    // The operator tries, and backs off: over 20 s, at most a first attempt and a retry or two,
    // and the InvalidSpec Event at most once (it is published once a status says so).
    tokio::time::sleep(Duration::from_secs(20)).await;
    let published = fx.events_published("bad", "InvalidSpec").await;
    assert!(
        published <= 1,
        "the InvalidSpec Event was published {published} times"
    );
    let later = views.get("bad").await.expect("read the view");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        views
            .get("bad")
            .await
            .expect("read the view")
            .resource_version(),
        later.resource_version(),
        "the refused view is left alone between retries"
    );
    drop(fx);
    control_plane.stop();
}
