//! The fleet metrics of the operator binary, scraped from its `/metrics` while it mirrors views of the
//! PPIO simulator against the real API server: the exact series of each view's complete listing, how
//! they follow remote changes and filter changes, and that a deleted view leaves none behind.

use std::time::Duration;

use kube::api::DeleteParams;
use ppio_gpu_core::api::condition::{self, ConditionStatus};
use ppio_simulator::{Fault, FaultKind};
use serde_json::json;

use ppio_test_support::fixture::Fixture;
use ppio_test_support::operator::OperatorProcess;
use ppio_test_support::records::example_records;
use ppio_test_support::{shared, wait_for};

/// The fleet series of one view in a scrape, sorted, with the last successful sync's value (checked
/// to be a Unix time between `since` and now) replaced by `T`. `mirrored_instances` is left out.
async fn fleet_series(
    operator: &OperatorProcess,
    namespace: &str,
    view: &str,
    since: i64,
) -> Vec<String> {
    let (code, body) = operator
        .get("/metrics")
        .await
        .unwrap_or_else(|| panic!("/metrics answers\n{}", operator.log_text()));
    assert_eq!(code, 200, "{body}");
    let names_view = format!("namespace=\"{namespace}\",view=\"{view}\"");
    let mut series: Vec<String> = body
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(&names_view))
        .filter(|l| !l.starts_with("ppio_gpu_operator_mirrored_instances{"))
        .map(|line| {
            let Some(rest) =
                line.strip_prefix("ppio_gpu_operator_view_last_successful_sync_timestamp_seconds")
            else {
                return line.to_owned();
            };
            let (labels, value) = rest.rsplit_once(' ').unwrap_or_default();
            let at: i64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            let now = jiff::Timestamp::now().as_second();
            assert!(
                since <= at && at <= now,
                "{line}: not within {since}..={now}"
            );
            format!("ppio_gpu_operator_view_last_successful_sync_timestamp_seconds{labels} T")
        })
        .collect();
    series.sort();
    series
}

/// `lines` with `{ns}` replaced by the namespace, sorted like [`fleet_series`].
fn expected(namespace: &str, lines: &[&str]) -> Vec<String> {
    let mut lines: Vec<String> = lines.iter().map(|l| l.replace("{ns}", namespace)).collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_metrics_follow_each_complete_listing_and_leave_with_their_view() {
    let fx = Fixture::without_operator(shared(), "fleet", example_records()).await;
    let ns = fx.ns.name.clone();
    let started = jiff::Timestamp::now().as_second();
    let operator = OperatorProcess::start(
        crate::operator_binary(),
        &shared().kubeconfig,
        "fleet-metrics",
        &[
            "--namespace",
            &ns,
            "--lease-namespace",
            &ns,
            "--allowed-endpoint",
            &fx.ppio.base_url(),
            "--metrics-instance-info",
        ],
    );
    // Two instances a page: a listing that fails after its first page has seen some instances.
    fx.create_view("fleet", |spec| spec.page_size = 2).await;
    fx.wait_ready("fleet", true, "Synced").await;

    let first_listing = expected(
        &ns,
        &[
            r#"ppio_gpu_operator_instances{namespace="{ns}",view="fleet",status="running",region="cn-east-1",billing_mode="postpaid"} 1"#,
            r#"ppio_gpu_operator_instances{namespace="{ns}",view="fleet",status="running",region="cn-east-1",billing_mode="spot"} 1"#,
            r#"ppio_gpu_operator_instances{namespace="{ns}",view="fleet",status="running",region="us-west-1",billing_mode="prepaid"} 2"#,
            r#"ppio_gpu_operator_instances{namespace="{ns}",view="fleet",status="exited",region="cn-east-1",billing_mode="postpaid"} 1"#,
            r#"ppio_gpu_operator_instances{namespace="{ns}",view="fleet",status="pulling",region="us-west-1",billing_mode="postpaid"} 1"#,
            r#"ppio_gpu_operator_gpus{namespace="{ns}",view="fleet",status="running",region="cn-east-1",billing_mode="postpaid"} 1"#,
            r#"ppio_gpu_operator_gpus{namespace="{ns}",view="fleet",status="running",region="cn-east-1",billing_mode="spot"} 1"#,
            r#"ppio_gpu_operator_gpus{namespace="{ns}",view="fleet",status="running",region="us-west-1",billing_mode="prepaid"} 3"#,
            r#"ppio_gpu_operator_gpus{namespace="{ns}",view="fleet",status="exited",region="cn-east-1",billing_mode="postpaid"} 8"#,
            r#"ppio_gpu_operator_gpus{namespace="{ns}",view="fleet",status="pulling",region="us-west-1",billing_mode="postpaid"} 0"#,
            r#"ppio_gpu_operator_instances_with_error{namespace="{ns}",view="fleet",status="exited"} 1"#,
            r#"ppio_gpu_operator_instances_with_error{namespace="{ns}",view="fleet",status="pulling"} 0"#,
            r#"ppio_gpu_operator_instances_with_error{namespace="{ns}",view="fleet",status="running"} 0"#,
            r#"ppio_gpu_operator_instance_prepaid_end_time_seconds{namespace="{ns}",view="fleet",instance_id="1e9b47d2a0",auto_renew="true"} 1772409600"#,
            r#"ppio_gpu_operator_instance_prepaid_end_time_seconds{namespace="{ns}",view="fleet",instance_id="b7a40e93cd",auto_renew="false"} 1788372950"#,
            r#"ppio_gpu_operator_view_last_successful_sync_timestamp_seconds{namespace="{ns}",view="fleet"} T"#,
            r#"ppio_gpu_operator_view_sync_interval_seconds{namespace="{ns}",view="fleet"} 10.0"#,
            // What those billed now cost an hour, at the simulator's prices: the exited H100 is not
            // billed; the prepaid RTX 4090's term ended without renewal (2026-09), the A100's renews.
            r#"ppio_gpu_operator_hourly_spend{namespace="{ns}",view="fleet",status="running",region="cn-east-1",billing_mode="postpaid"} 2.18"#,
            r#"ppio_gpu_operator_hourly_spend{namespace="{ns}",view="fleet",status="running",region="cn-east-1",billing_mode="spot"} 1.09"#,
            r#"ppio_gpu_operator_hourly_spend{namespace="{ns}",view="fleet",status="running",region="us-west-1",billing_mode="prepaid"} 23.94"#,
            r#"ppio_gpu_operator_hourly_spend{namespace="{ns}",view="fleet",status="exited",region="cn-east-1",billing_mode="postpaid"} 0.0"#,
            r#"ppio_gpu_operator_hourly_spend{namespace="{ns}",view="fleet",status="pulling",region="us-west-1",billing_mode="postpaid"} 0.48"#,
            r#"ppio_gpu_operator_unpriced_instances{namespace="{ns}",view="fleet",status="running",region="cn-east-1",billing_mode="postpaid"} 0"#,
            r#"ppio_gpu_operator_unpriced_instances{namespace="{ns}",view="fleet",status="running",region="cn-east-1",billing_mode="spot"} 0"#,
            r#"ppio_gpu_operator_unpriced_instances{namespace="{ns}",view="fleet",status="running",region="us-west-1",billing_mode="prepaid"} 0"#,
            r#"ppio_gpu_operator_unpriced_instances{namespace="{ns}",view="fleet",status="exited",region="cn-east-1",billing_mode="postpaid"} 0"#,
            r#"ppio_gpu_operator_unpriced_instances{namespace="{ns}",view="fleet",status="pulling",region="us-west-1",billing_mode="postpaid"} 0"#,
            r#"ppio_gpu_operator_product_hourly_spend{namespace="{ns}",view="fleet",product_id="a100-sxm4-80g"} 23.94"#,
            r#"ppio_gpu_operator_product_hourly_spend{namespace="{ns}",view="fleet",product_id="cpu-16c32g"} 0.48"#,
            r#"ppio_gpu_operator_product_hourly_spend{namespace="{ns}",view="fleet",product_id="rtx4090-24g"} 3.27"#,
            r#"ppio_gpu_operator_view_hourly_spend{namespace="{ns}",view="fleet"} 27.69"#,
            r#"ppio_gpu_operator_instance_info{namespace="{ns}",view="fleet",instance_id="ca338f12f3",name="vllm-serve-qwen7b",status="running",region="cn-east-1",billing_mode="postpaid",product_id="rtx4090-24g"} 1"#,
            r#"ppio_gpu_operator_instance_info{namespace="{ns}",view="fleet",instance_id="1e9b47d2a0",name="jupyter-research-a100",status="running",region="us-west-1",billing_mode="prepaid",product_id="a100-sxm4-80g"} 1"#,
            r#"ppio_gpu_operator_instance_info{namespace="{ns}",view="fleet",instance_id="5d02fa6c19",name="comfyui-spot-render",status="running",region="cn-east-1",billing_mode="spot",product_id="rtx4090-24g"} 1"#,
            r#"ppio_gpu_operator_instance_info{namespace="{ns}",view="fleet",instance_id="88f1c3b7e4",name="llama3-finetune-8x",status="exited",region="cn-east-1",billing_mode="postpaid",product_id="h100-sxm5-80g"} 1"#,
            r#"ppio_gpu_operator_instance_info{namespace="{ns}",view="fleet",instance_id="b7a40e93cd",name="embedding-api-bge",status="running",region="us-west-1",billing_mode="prepaid",product_id="rtx4090-24g"} 1"#,
            r#"ppio_gpu_operator_instance_info{namespace="{ns}",view="fleet",instance_id="3c6d82f05e",name="data-prep-cpu",status="pulling",region="us-west-1",billing_mode="postpaid",product_id="cpu-16c32g"} 1"#,
        ],
    );
    assert_eq!(
        fleet_series(&operator, &ns, "fleet", started).await,
        first_listing,
        "the first complete listing of view fleet"
    );
    let last_sync = "ppio_gpu_operator_view_last_successful_sync_timestamp_seconds{";
    let synced_at = operator.metric(last_sync).await;

    // Remotely: the spot instance goes, the failed one runs again.
    assert!(fx.simulator().remove_instance("5d02fa6c19"));
    assert!(fx.simulator().patch_instance(
        "88f1c3b7e4",
        json!({ "status": { "status": "running", "error": "", "message": "" } })
    ));

    // A listing that fails after its first page changes none of the numbers.
    fx.simulator()
        .inject_fault(Fault::once(FaultKind::Delay { ms: 1 }));
    fx.simulator()
        .inject_fault(Fault::until_cleared(FaultKind::Forbidden));
    let failed = fx.refresh("fleet").await;
    let ready = failed
        .status
        .as_ref()
        .and_then(|s| condition::find(&s.conditions, condition::READY))
        .map(|c| c.status);
    assert_eq!(ready, Some(ConditionStatus::False), "the listing failed");
    assert_eq!(
        fleet_series(&operator, &ns, "fleet", started).await,
        first_listing,
        "a failed listing leaves the last complete one's series"
    );
    assert_eq!(operator.metric(last_sync).await, synced_at);
    fx.simulator().clear_faults();

    fx.refresh("fleet").await;
    assert_eq!(
        fleet_series(&operator, &ns, "fleet", started).await,
        expected(
            &ns,
            &[
                r#"ppio_gpu_operator_instances{namespace="{ns}",view="fleet",status="running",region="cn-east-1",billing_mode="postpaid"} 2"#,
                r#"ppio_gpu_operator_instances{namespace="{ns}",view="fleet",status="running",region="us-west-1",billing_mode="prepaid"} 2"#,
                r#"ppio_gpu_operator_instances{namespace="{ns}",view="fleet",status="pulling",region="us-west-1",billing_mode="postpaid"} 1"#,
                r#"ppio_gpu_operator_gpus{namespace="{ns}",view="fleet",status="running",region="cn-east-1",billing_mode="postpaid"} 9"#,
                r#"ppio_gpu_operator_gpus{namespace="{ns}",view="fleet",status="running",region="us-west-1",billing_mode="prepaid"} 3"#,
                r#"ppio_gpu_operator_gpus{namespace="{ns}",view="fleet",status="pulling",region="us-west-1",billing_mode="postpaid"} 0"#,
                r#"ppio_gpu_operator_instances_with_error{namespace="{ns}",view="fleet",status="pulling"} 0"#,
                r#"ppio_gpu_operator_instances_with_error{namespace="{ns}",view="fleet",status="running"} 0"#,
                r#"ppio_gpu_operator_instance_prepaid_end_time_seconds{namespace="{ns}",view="fleet",instance_id="1e9b47d2a0",auto_renew="true"} 1772409600"#,
                r#"ppio_gpu_operator_instance_prepaid_end_time_seconds{namespace="{ns}",view="fleet",instance_id="b7a40e93cd",auto_renew="false"} 1788372950"#,
                r#"ppio_gpu_operator_view_last_successful_sync_timestamp_seconds{namespace="{ns}",view="fleet"} T"#,
                r#"ppio_gpu_operator_view_sync_interval_seconds{namespace="{ns}",view="fleet"} 10.0"#,
                // The H100 runs again: 8 cards at 19.800.
                r#"ppio_gpu_operator_hourly_spend{namespace="{ns}",view="fleet",status="running",region="cn-east-1",billing_mode="postpaid"} 160.58"#,
                r#"ppio_gpu_operator_hourly_spend{namespace="{ns}",view="fleet",status="running",region="us-west-1",billing_mode="prepaid"} 23.94"#,
                r#"ppio_gpu_operator_hourly_spend{namespace="{ns}",view="fleet",status="pulling",region="us-west-1",billing_mode="postpaid"} 0.48"#,
                r#"ppio_gpu_operator_unpriced_instances{namespace="{ns}",view="fleet",status="running",region="cn-east-1",billing_mode="postpaid"} 0"#,
                r#"ppio_gpu_operator_unpriced_instances{namespace="{ns}",view="fleet",status="running",region="us-west-1",billing_mode="prepaid"} 0"#,
                r#"ppio_gpu_operator_unpriced_instances{namespace="{ns}",view="fleet",status="pulling",region="us-west-1",billing_mode="postpaid"} 0"#,
                r#"ppio_gpu_operator_product_hourly_spend{namespace="{ns}",view="fleet",product_id="a100-sxm4-80g"} 23.94"#,
                r#"ppio_gpu_operator_product_hourly_spend{namespace="{ns}",view="fleet",product_id="cpu-16c32g"} 0.48"#,
                r#"ppio_gpu_operator_product_hourly_spend{namespace="{ns}",view="fleet",product_id="h100-sxm5-80g"} 158.4"#,
                r#"ppio_gpu_operator_product_hourly_spend{namespace="{ns}",view="fleet",product_id="rtx4090-24g"} 2.18"#,
                r#"ppio_gpu_operator_view_hourly_spend{namespace="{ns}",view="fleet"} 185.0"#,
                r#"ppio_gpu_operator_instance_info{namespace="{ns}",view="fleet",instance_id="ca338f12f3",name="vllm-serve-qwen7b",status="running",region="cn-east-1",billing_mode="postpaid",product_id="rtx4090-24g"} 1"#,
                r#"ppio_gpu_operator_instance_info{namespace="{ns}",view="fleet",instance_id="1e9b47d2a0",name="jupyter-research-a100",status="running",region="us-west-1",billing_mode="prepaid",product_id="a100-sxm4-80g"} 1"#,
                r#"ppio_gpu_operator_instance_info{namespace="{ns}",view="fleet",instance_id="88f1c3b7e4",name="llama3-finetune-8x",status="running",region="cn-east-1",billing_mode="postpaid",product_id="h100-sxm5-80g"} 1"#,
                r#"ppio_gpu_operator_instance_info{namespace="{ns}",view="fleet",instance_id="b7a40e93cd",name="embedding-api-bge",status="running",region="us-west-1",billing_mode="prepaid",product_id="rtx4090-24g"} 1"#,
                r#"ppio_gpu_operator_instance_info{namespace="{ns}",view="fleet",instance_id="3c6d82f05e",name="data-prep-cpu",status="pulling",region="us-west-1",billing_mode="postpaid",product_id="cpu-16c32g"} 1"#,
            ]
        ),
        "after the spot instance left and the exited one runs again"
    );

    // A second view, over one region only.
    fx.create_view("west", |spec| {
        spec.filter.regions = vec!["us-west-1".into()]
    })
    .await;
    fx.wait_ready("west", true, "Synced").await;
    let west = fleet_series(&operator, &ns, "west", started).await;
    assert!(
        west.iter()
            .any(|l| l.contains("instance_id=\"3c6d82f05e\"")),
        "the us-west-1 view lists its postpaid instance: {west:#?}"
    );
    assert!(
        !west.iter().any(|l| l.contains("cn-east-1")),
        "the us-west-1 view counts nothing elsewhere: {west:#?}"
    );

    // A filter change: the view's instances in the region it no longer lists lose their series.
    fx.change_spec("west", |spec| {
        spec.filter.regions = vec!["cn-east-1".into()]
    })
    .await;
    fx.wait_ready("west", true, "Synced").await;
    let west = wait_for(
        "view west to export its new filter's listing",
        Duration::from_secs(60),
        || async {
            let west = fleet_series(&operator, &ns, "west", started).await;
            west.iter()
                .any(|l| l.contains("instance_id=\"ca338f12f3\""))
                .then_some(west)
        },
    )
    .await;
    assert!(
        !west.iter().any(|l| l.contains("us-west-1")),
        "nothing of us-west-1 stays after the filter moved: {west:#?}"
    );
    assert_eq!(
        west.iter()
            .filter(|l| l.starts_with("ppio_gpu_operator_instance_info{"))
            .count(),
        2,
        "{west:#?}"
    );

    // Deleting a view takes every series that names it, and only those.
    fx.views()
        .delete("fleet", &DeleteParams::default())
        .await
        .expect("delete view fleet");
    wait_for(
        "the deleted view's series to go",
        Duration::from_secs(60),
        || async {
            fleet_series(&operator, &ns, "fleet", started)
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let (_, body) = operator.get("/metrics").await.expect("/metrics answers");
    assert!(
        !body.contains("view=\"fleet\""),
        "a series of the deleted view stayed:\n{body}"
    );
    assert_eq!(
        fleet_series(&operator, &ns, "west", started).await,
        west,
        "the other view's series stay"
    );
}
