//! The sync engine against the real API server: mirrors known from a watch, restored when anyone else
//! changes or deletes them; sync slots shared operator-wide, and not held while a view waits for its
//! API key's request budget.

use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use ppio_simulator::generate_instances;
use serde_json::json;

use ppio_test_support::fixture::{API_KEY, Fixture, create_secret};
use ppio_test_support::operator::RunningOperator;
use ppio_test_support::shared;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_changed_or_deleted_by_someone_else_are_restored_at_the_next_sync() {
    let records = generate_instances(4, 23);
    let ids: Vec<String> = records
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    let fx = Fixture::start("restore", records).await;
    fx.create_view("v", |_| {}).await;
    fx.wait_ready("v", true, "Synced").await;
    let name = |i: usize| format!("v-{}", ids[i]);
    let original = fx.instances().get(&name(0)).await.expect("mirror");
    let original_status = original.status.clone().expect("status");
    let status_label = original.labels()["gpu.ppio.io/status"].clone();

    // Someone else: changes a label of ours and adds one of theirs; edits the spec; edits the
    // status; deletes a mirror.
    let edits = PatchParams::default();
    fx.instances()
        .patch(
            &name(0),
            &edits,
            &Patch::Merge(json!({ "metadata": { "labels": {
                "gpu.ppio.io/status": "tampered", "team": "theirs"
            }}})),
        )
        .await
        .expect("relabel");
    fx.instances()
        .patch(
            &name(1),
            &edits,
            &Patch::Merge(json!({ "spec": { "instanceId": "not-the-instance" } })),
        )
        .await
        .expect("edit spec");
    fx.instances()
        .patch_status(
            &name(2),
            &edits,
            &Patch::Merge(json!({ "status": { "name": "tampered", "region": "nowhere" } })),
        )
        .await
        .expect("edit status");
    let deleted_uid = fx.instances().get(&name(3)).await.expect("mirror").uid();
    fx.instances()
        .delete(&name(3), &DeleteParams::default())
        .await
        .expect("delete");

    fx.refresh("v").await;
    let relabelled = fx.instances().get(&name(0)).await.expect("mirror");
    assert_eq!(relabelled.labels()["gpu.ppio.io/status"], status_label);
    assert_eq!(
        relabelled.labels().get("team").map(String::as_str),
        Some("theirs"),
        "labels of others are theirs to keep"
    );
    let respecced = fx.instances().get(&name(1)).await.expect("mirror");
    assert_eq!(respecced.spec.instance_id, ids[1]);
    let restatused = fx.instances().get(&name(2)).await.expect("mirror");
    let status = restatused.status.expect("status");
    assert_ne!(status.name.as_deref(), Some("tampered"));
    assert_ne!(status.region.as_deref(), Some("nowhere"));
    let recreated = fx.instances().get(&name(3)).await.expect("recreated");
    assert_ne!(recreated.uid(), deleted_uid);
    assert!(recreated.status.is_some());
    // The first mirror is whole again, status included.
    let whole = fx.instances().get(&name(0)).await.expect("mirror");
    assert_eq!(whole.status.expect("status").name, original_status.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_waiting_for_a_throttled_key_do_not_hold_back_a_view_of_another_key() {
    const OTHER_KEY: &str = "sk-test-another-account-0042";
    let fx = Fixture::without_operator(shared(), "slots", generate_instances(10, 29)).await;
    fx.simulator()
        .set_api_keys(vec![API_KEY.to_owned(), OTHER_KEY.to_owned()]);
    create_secret(&fx.ns, "other", "apiKey", OTHER_KEY).await;
    // One sync at a time, operator-wide, and 6 requests a minute per key (a burst of 6, then one
    // every 10 s): three views of ten one-instance pages each need minutes on the first key.
    let _operator = RunningOperator::start_with(
        fx.ns.client.clone(),
        &fx.ns.name,
        &fx.ppio.base_url(),
        |settings| {
            settings.view_concurrency = 1;
            settings.ppio.requests_per_minute = 6;
        },
    );
    for name in ["a1", "a2", "a3"] {
        fx.create_view(name, |spec| spec.page_size = 1).await;
    }
    // Let them spend the burst and start waiting for the budget.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Instant::now();
    fx.create_view("d", |spec| {
        spec.credentials.secret_ref.name = "other".into()
    })
    .await;
    let view = fx.wait_ready("d", true, "Synced").await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the view of another key synced after {took:?}"
    );
    assert_eq!(view.status.and_then(|s| s.instance_count), Some(10));
    let throttled = fx.views().get("a1").await.expect("view");
    assert!(
        throttled
            .status
            .and_then(|s| s.last_successful_sync_time)
            .is_none(),
        "the throttled views are still listing: the test exercised the wait"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_controller_syncs_the_views_of_several_namespaces() {
    // Two namespaces, one controller with one sync slot: the views of both are synced.
    let first = Fixture::without_operator(shared(), "slots-a", generate_instances(3, 31)).await;
    let second = Fixture::without_operator(shared(), "slots-b", generate_instances(3, 37)).await;
    let endpoints = vec![
        url::Url::parse(&first.ppio.base_url()).expect("URL"),
        url::Url::parse(&second.ppio.base_url()).expect("URL"),
    ];
    let client = first.ns.client.clone();
    let namespaces = vec![first.ns.name.clone(), second.ns.name.clone()];
    let settings = ppio_gpu_operator::controller::Settings {
        endpoints: ppio_gpu_operator::controller::EndpointPolicy::new(endpoints),
        view_concurrency: 1,
        ..Default::default()
    };
    let context = std::sync::Arc::new(ppio_gpu_operator::controller::Context::new(
        client,
        settings,
        ppio_gpu_operator::process::metrics::Metrics::new(),
        "integration-tests",
    ));
    let operator = tokio::spawn(ppio_gpu_operator::controller::run(
        context,
        namespaces,
        std::sync::Arc::new(ppio_gpu_operator::process::http::Health::default()),
        std::future::pending::<()>(),
    ));
    first.create_view("v", |_| {}).await;
    second.create_view("v", |_| {}).await;
    first.wait_ready("v", true, "Synced").await;
    second.wait_ready("v", true, "Synced").await;
    assert_eq!(first.mirrors_of("v").await.len(), 3);
    assert_eq!(second.mirrors_of("v").await.len(), 3);
    operator.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_each_lead_and_sync_only_their_own_views() {
    use k8s_openapi::api::coordination::v1::Lease;
    use ppio_test_support::operator::OperatorProcess;

    let fx = Fixture::without_operator(shared(), "shards", generate_instances(3, 41)).await;
    let kubeconfig = shared().kubeconfig.clone();
    let shard = |name: &str, selector: &str| {
        let args = fx.replica_args(&["--watch-label-selector", selector]);
        OperatorProcess::start(crate::operator_binary(), &kubeconfig, name, &args)
    };
    let one = shard("shard-one", "sharding.ppio.io/key in (one)");
    let two = shard("shard-two", "sharding.ppio.io/key in (two)");

    for (name, key) in [("v1", Some("one")), ("v2", Some("two")), ("v0", None)] {
        fx.create_view(name, |_| {}).await;
        if let Some(key) = key {
            fx.views()
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(
                        json!({ "metadata": { "labels": { "sharding.ppio.io/key": key } } }),
                    ),
                )
                .await
                .expect("label the view");
        }
    }
    fx.wait_ready("v1", true, "Synced").await;
    fx.wait_ready("v2", true, "Synced").await;
    for (view, key) in [("v1", "one"), ("v2", "two")] {
        let mirrors = fx.mirrors_of(view).await;
        assert_eq!(mirrors.len(), 3);
        assert!(
            mirrors
                .iter()
                .all(|m| m.labels().get("sharding.ppio.io/key").map(String::as_str) == Some(key)),
            "mirrors carry their view's shard"
        );
    }
    // Both shards lead at once, each on its own Lease.
    let leases: Vec<Lease> = fx
        .ns
        .api::<Lease>()
        .list(&Default::default())
        .await
        .expect("list Leases")
        .items;
    let mut holders: Vec<String> = leases
        .iter()
        .filter_map(|l| l.spec.as_ref()?.holder_identity.clone())
        .collect();
    holders.sort();
    assert_eq!(holders, ["shard-one", "shard-two"]);
    for process in [&one, &two] {
        assert_eq!(
            process.metric("ppio_gpu_operator_leader ").await,
            Some(1.0),
            "{}",
            process.log_text()
        );
    }
    // A view of no shard is synced by neither.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let unsharded = fx.views().get("v0").await.expect("view");
    assert!(unsharded.status.is_none(), "{:?}", unsharded.status);
}
