//! Routing follows confirmation, against the real API server: the endpoints of a view whose key is
//! revoked (Stalled), that is suspended, or whose listings keep failing turn not ready within the
//! freshness window (three intervals plus the last sync: about 30 s at the 10 s interval here),
//! their Service says since when nothing confirms the instance, and the next complete listing makes
//! them ready again; one write of the Service and one of its slice each way, none while idle, and
//! no write of the mirror for the flip. A flip outlives its leader: the next one's first listing
//! routes again. The same holds for a view whose `services.enabled` is turned off while it cannot
//! sync, and for a view a finalizer holds in deletion; and for a mirror whose absence mark was
//! interrupted between the mirror and its Service, while a complete mark costs no flip. A stalled
//! view's EndpointSlice whose Service is gone is withdrawn within the window, and nothing created.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use ppio_gpu_core::services::AddressPolicy;
use ppio_gpu_core::services::freshness::UNCONFIRMED_READINESS;
use ppio_gpu_core::services::objects::READINESS_ANNOTATION;
use ppio_simulator::{Fault, FaultKind};
use serde_json::json;

use ppio_test_support::fixture::{API_KEY, Fixture};
use ppio_test_support::operator::RunningOperator;
use ppio_test_support::records::{generated, port, set_status};
use ppio_test_support::{await_absent, wait_for};

/// The freshness window at the fixture's 10 s interval, and what a flip may take beyond it (the
/// requeue, the writes, a busy machine).
const WINDOW: Duration = Duration::from_secs(30);
const SLACK: Duration = Duration::from_secs(15);

/// The operator keeping Services for one running instance at 203.0.113.5, its view `v` Synced
/// with the endpoint ready.
async fn start(prefix: &str) -> Fixture {
    let mut record = generated("aa01", 41);
    set_status(&mut record, "running");
    record["ports"] = json!([port(8080, "http", "http://203.0.113.5:30001")]);
    let fx = Fixture::start_with(prefix, vec![record], |settings| {
        settings.services = Some(documentation());
    })
    .await;
    fx.create_view("v", |spec| spec.services.enabled = true)
        .await;
    fx.wait_ready("v", true, "Synced").await;
    assert_eq!(endpoint_ready(&fx).await, Some(true));
    fx
}

/// The address rule: the documentation range the instance's address is in, allowed.
fn documentation() -> AddressPolicy {
    AddressPolicy {
        cluster: Vec::new(),
        allowed: vec!["203.0.113.0/24".parse().expect("a range")],
    }
}

/// Whether the endpoint of `v-aa01` is ready (none when it has no slice).
async fn endpoint_ready(fx: &Fixture) -> Option<bool> {
    endpoint_of(fx, "v-aa01").await
}

/// Whether the endpoint of mirror `mirror` is ready (none when it has no slice).
async fn endpoint_of(fx: &Fixture, mirror: &str) -> Option<bool> {
    let slice = fx
        .ns
        .api::<EndpointSlice>()
        .get_opt(&format!("{mirror}-ipv4-0"))
        .await
        .expect("read the EndpointSlice")?;
    let endpoint = slice.endpoints.first()?;
    Some(
        endpoint
            .conditions
            .as_ref()
            .and_then(|c| c.ready)
            .unwrap_or_default(),
    )
}

/// The readiness annotation of Service `v-aa01`.
async fn readiness(fx: &Fixture) -> String {
    let service = fx
        .ns
        .api::<Service>()
        .get("v-aa01")
        .await
        .expect("the Service");
    service
        .annotations()
        .get(READINESS_ANNOTATION)
        .cloned()
        .unwrap_or_default()
}

/// The operator's own count of `metric` lines whose labels contain `labels`.
fn counted(fx: &Fixture, metric: &str, labels: &str) -> u64 {
    let operator = fx._operator.as_ref().expect("the operator");
    operator
        .metrics
        .render()
        .lines()
        .filter(|line| line.starts_with(metric) && line.contains(labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Flips so far, and applies of Services and of EndpointSlices.
fn writes(fx: &Fixture) -> (u64, u64, u64) {
    (
        counted(fx, "ppio_gpu_operator_endpoint_freshness_flips_total", ""),
        counted(
            fx,
            "ppio_gpu_operator_kubernetes_writes_total",
            "resource=\"services\"",
        ),
        counted(
            fx,
            "ppio_gpu_operator_kubernetes_writes_total",
            "resource=\"endpointslices\"",
        ),
    )
}

/// Waits until the endpoint is `ready`, at most `timeout`; how long that took.
async fn await_endpoint(fx: &Fixture, ready: bool, timeout: Duration) -> Duration {
    let started = Instant::now();
    wait_for(
        &format!("the endpoint to be ready={ready}"),
        timeout,
        || async { (endpoint_ready(fx).await == Some(ready)).then_some(()) },
    )
    .await;
    started.elapsed()
}

/// The endpoint, last confirmed before `trouble`, turns not ready within the window of it, saying
/// since when: one write of the Service and one of its slice, no mirror write, nothing more while
/// the trouble lasts. `writes_before` is [`writes`] before the trouble.
async fn turns_not_ready(fx: &Fixture, trouble: jiff::Timestamp, writes_before: (u64, u64, u64)) {
    let mirror_version = fx
        .instances()
        .get("v-aa01")
        .await
        .expect("the mirror")
        .resource_version();
    let took = await_endpoint(fx, false, WINDOW + SLACK).await;
    assert!(
        took <= WINDOW + SLACK,
        "not ready {took:?} after the trouble"
    );
    let text = readiness(fx).await;
    let since = text
        .strip_prefix(UNCONFIRMED_READINESS)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|time| time.parse::<jiff::Timestamp>().ok())
        .unwrap_or_else(|| panic!("the readiness says since when: {text:?}"));
    assert!(
        // A listing under way when the trouble began may still confirm it a moment later.
        since <= trouble + jiff::SignedDuration::from_secs(2)
            && trouble.duration_since(since) < jiff::SignedDuration::from_secs(15),
        "confirmed last at {since}, the trouble began at {trouble}"
    );
    let (flips, services, slices) = writes_before;
    assert_eq!(
        writes(fx),
        (flips + 1, services + 1, slices + 1),
        "one flip: one write of the Service, one of its slice"
    );
    // The view keeps reconciling in trouble: no further write.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(writes(fx), (flips + 1, services + 1, slices + 1));
    assert_eq!(endpoint_ready(fx).await, Some(false));
    assert_eq!(
        fx.instances()
            .get("v-aa01")
            .await
            .expect("the mirror stays")
            .resource_version(),
        mirror_version,
        "a flip does not write the mirror"
    );
}

/// Once listings confirm the instance again, the endpoint is ready again: one more write of the
/// Service and of its slice, no more flips.
async fn turns_ready_again(fx: &Fixture, writes_flipped: (u64, u64, u64)) {
    await_endpoint(fx, true, Duration::from_secs(30)).await;
    assert_eq!(
        readiness(fx).await,
        "Ready: the remote instance is running."
    );
    let (flips, services, slices) = writes_flipped;
    assert_eq!(writes(fx), (flips, services + 1, slices + 1));
    // And it stays: the listings go on confirming it.
    fx.refresh("v").await;
    assert_eq!(writes(fx), (flips, services + 1, slices + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_views_endpoints_turn_not_ready_within_the_window_and_ready_after_a_listing() {
    let fx = start("fresh-stall").await;
    let idle = writes(&fx);
    assert_eq!(idle.0, 0);
    // Healthy syncs past the window turn nothing.
    tokio::time::sleep(WINDOW + Duration::from_secs(5)).await;
    assert_eq!(endpoint_ready(&fx).await, Some(true));
    assert_eq!(writes(&fx), idle, "idle syncs write no Service");

    let trouble = jiff::Timestamp::now();
    fx.simulator().set_api_keys(vec!["sk-another-key".into()]);
    fx.wait_ready("v", false, "AuthFailed").await;
    turns_not_ready(&fx, trouble, idle).await;

    fx.simulator().set_api_keys(vec![API_KEY.into()]);
    turns_ready_again(&fx, writes(&fx)).await;
    fx.wait_ready("v", true, "Synced").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_views_endpoint_slice_whose_service_is_gone_is_withdrawn_within_the_window() {
    let fx = start("fresh-orphan").await;
    fx.simulator().set_api_keys(vec!["sk-another-key".into()]);
    fx.wait_ready("v", false, "AuthFailed").await;
    // Someone deletes the Service; its slice, the mirror's, stays ready and names the Service:
    // whatever Service of that name comes next would route to the address.
    let services = fx.ns.api::<Service>();
    services
        .delete("v-aa01", &DeleteParams::default())
        .await
        .expect("delete the Service");
    assert_eq!(endpoint_ready(&fx).await, Some(true));
    let started = Instant::now();
    await_absent(
        fx.ns.api::<EndpointSlice>(),
        "v-aa01-ipv4-0",
        "the slice of a Service that is gone",
        WINDOW + SLACK,
    )
    .await;
    assert!(started.elapsed() <= WINDOW + SLACK);
    assert!(
        services.get_opt("v-aa01").await.expect("read").is_none(),
        "a flip creates nothing"
    );

    // The next listing writes both again, ready.
    fx.simulator().set_api_keys(vec![API_KEY.into()]);
    await_endpoint(&fx, true, Duration::from_secs(30)).await;
    assert_eq!(
        readiness(&fx).await,
        "Ready: the remote instance is running."
    );
    fx.wait_ready("v", true, "Synced").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_views_endpoints_turn_not_ready_within_the_window() {
    let fx = start("fresh-suspend").await;
    let before = writes(&fx);
    let trouble = jiff::Timestamp::now();
    fx.change_spec("v", |spec| spec.suspend = true).await;
    fx.wait_ready("v", true, "Suspended").await;
    turns_not_ready(&fx, trouble, before).await;

    let flipped = writes(&fx);
    fx.change_spec("v", |spec| spec.suspend = false).await;
    turns_ready_again(&fx, flipped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_turn_not_ready_while_listings_keep_failing() {
    let fx = start("fresh-failing").await;
    let before = writes(&fx);
    let trouble = jiff::Timestamp::now();
    fx.simulator()
        .inject_fault(Fault::until_cleared(FaultKind::ServerError {
            status: Some(503),
        }));
    fx.wait_ready("v", false, "ApiUnavailable").await;
    turns_not_ready(&fx, trouble, before).await;

    let flipped = writes(&fx);
    fx.simulator().clear_faults();
    turns_ready_again(&fx, flipped).await;
    fx.wait_ready("v", true, "Synced").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flip_made_before_a_failover_is_undone_by_the_next_leaders_first_listing() {
    let mut fx = start("fresh-failover").await;
    fx.simulator().set_api_keys(vec!["sk-another-key".into()]);
    fx.wait_ready("v", false, "AuthFailed").await;
    await_endpoint(&fx, false, WINDOW + SLACK).await;

    // The leader goes; the next one finds the mirror unchanged, and must still route again.
    fx._operator = None;
    fx.simulator().set_api_keys(vec![API_KEY.into()]);
    fx._operator = Some(RunningOperator::start_with(
        fx.ns.client.clone(),
        &fx.ns.name,
        &fx.ppio.base_url(),
        |settings| settings.services = Some(documentation()),
    ));
    let took = await_endpoint(&fx, true, Duration::from_secs(30)).await;
    assert!(took < Duration::from_secs(30));
    assert_eq!(
        readiness(&fx).await,
        "Ready: the remote instance is running."
    );
    assert_eq!(writes(&fx).0, 0, "the new leader flipped nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_turn_not_ready_when_services_are_turned_off_while_the_view_cannot_sync() {
    let fx = start("fresh-off").await;
    let before = writes(&fx);
    let trouble = jiff::Timestamp::now();
    fx.simulator().set_api_keys(vec!["sk-another-key".into()]);
    fx.wait_ready("v", false, "AuthFailed").await;
    // No sync can remove the Service now: it must stop routing all the same.
    fx.change_spec("v", |spec| spec.services.enabled = false)
        .await;
    turns_not_ready(&fx, trouble, before).await;

    // The next sync that can does remove it.
    fx.simulator().set_api_keys(vec![API_KEY.into()]);
    await_absent(
        fx.ns.api::<Service>(),
        "v-aa01",
        "the Service of a view that keeps none",
        Duration::from_secs(30),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_turn_not_ready_while_a_finalizer_holds_the_views_deletion() {
    let fx = start("fresh-finalizer").await;
    let before = writes(&fx);
    let views = fx.views();
    let hold = |finalizers: serde_json::Value| {
        Patch::Merge(json!({ "metadata": { "finalizers": finalizers } }))
    };
    views
        .patch(
            "v",
            &PatchParams::default(),
            &hold(json!(["test.ppio.io/hold"])),
        )
        .await
        .expect("hold the view");
    let trouble = jiff::Timestamp::now();
    views
        .delete("v", &DeleteParams::default())
        .await
        .expect("delete the view");
    // The view and its mirrors stay while the finalizer holds it; nothing lists them.
    turns_not_ready(&fx, trouble, before).await;

    views
        .patch("v", &PatchParams::default(), &hold(serde_json::Value::Null))
        .await
        .expect("let the view go");
    await_absent(views, "v", "the view", Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_absence_mark_is_completed_by_the_flip_and_a_complete_one_costs_nothing() {
    let mut marked = generated("aa01", 41);
    set_status(&mut marked, "running");
    marked["ports"] = json!([port(8080, "http", "http://203.0.113.5:30001")]);
    let mut interrupted = generated("bb02", 42);
    set_status(&mut interrupted, "running");
    interrupted["ports"] = json!([port(8080, "http", "http://203.0.113.6:30002")]);
    let fx = Fixture::start_with("fresh-absent", vec![marked, interrupted], |settings| {
        settings.services = Some(documentation());
    })
    .await;
    fx.create_view("v", |spec| spec.services.enabled = true)
        .await;
    fx.wait_ready("v", true, "Synced").await;
    assert_eq!(endpoint_of(&fx, "v-aa01").await, Some(true));
    assert_eq!(endpoint_of(&fx, "v-bb02").await, Some(true));

    // `aa01` leaves the listing: the sync marks its mirror absent, its Service not ready. The key
    // is revoked before a second listing could remove it.
    fx.simulator().remove_instance("aa01");
    fx.refresh("v").await;
    fx.simulator().set_api_keys(vec!["sk-another-key".into()]);
    fx.wait_ready("v", false, "AuthFailed").await;
    assert_eq!(endpoint_of(&fx, "v-aa01").await, Some(false));

    // `bb02`'s mark is interrupted between the mirror and its Service: the mirror says absent,
    // its Service still routes.
    let since = jiff::Timestamp::now().to_string();
    let instances = fx.instances();
    instances
        .patch(
            "v-bb02",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": {
                "gpu.ppio.io/absent-since": since,
            } } })),
        )
        .await
        .expect("mark the mirror");
    instances
        .patch_status(
            "v-bb02",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "absentSince": since } })),
        )
        .await
        .expect("mark the mirror's status");
    let before = writes(&fx);

    // Within the window of their last confirmation: `bb02` stops routing, with one write of its
    // Service and one of its slice; `aa01`, complete, costs nothing.
    let started = Instant::now();
    wait_for(
        "the interrupted mark's endpoint to turn not ready",
        WINDOW + SLACK,
        || async { (endpoint_of(&fx, "v-bb02").await == Some(false)).then_some(()) },
    )
    .await;
    assert!(started.elapsed() <= WINDOW + SLACK);
    let (flips, services, slices) = before;
    assert_eq!(writes(&fx), (flips + 1, services + 1, slices + 1));
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        writes(&fx),
        (flips + 1, services + 1, slices + 1),
        "nothing written for the complete mark, nothing written again"
    );
    assert_eq!(endpoint_of(&fx, "v-aa01").await, Some(false));
}
