//! User stories of the remote lifecycle, against the real API server and the PPIO simulator: an
//! instance that stops gets one Warning Event on its GpuInstance, carrying PPIO's error, and never a
//! second one (not at the next sync, not after an operator restart); a sync that sees many
//! transitions stays within its bound and sums the rest up on the view; a prepaid instance about to
//! end without auto-renew is flagged by a condition, a label, one Event, the view's count and the
//! EXPIRES column.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use ppio_gpu_core::api::GpuInstanceViewSpec;
use ppio_gpu_core::api::condition::{self, ConditionStatus};
use serde_json::{Value, json};

use ppio_test_support::fixture::{API_KEY, Fixture};
use ppio_test_support::operator::RunningOperator;
use ppio_test_support::records::running_records;
use ppio_test_support::{table_header, wait_for};

/// The reasons of lifecycle Events on GpuInstances.
const INSTANCE_REASONS: [&str; 5] = [
    "Running",
    "Stopped",
    "StatusChanged",
    "FirstSeen",
    "ExpiringSoon",
];

fn id_of(record: &Value) -> String {
    record["id"].as_str().expect("record id").to_owned()
}

/// Every Event in the test's namespace.
async fn all_events(fx: &Fixture) -> Vec<Event> {
    fx.ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("list Events")
        .items
}

/// The Events with `reason` regarding the object `name`.
async fn events_on(fx: &Fixture, name: &str, reason: &str) -> Vec<Event> {
    all_events(fx)
        .await
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.reason.as_deref() == Some(reason)
        })
        .collect()
}

/// The lifecycle Events on GpuInstances, as (object name, reason).
async fn lifecycle_events(fx: &Fixture) -> Vec<(String, String)> {
    let mut events: Vec<_> = all_events(fx)
        .await
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("GpuInstance")
                && INSTANCE_REASONS.contains(&e.reason.as_deref().unwrap_or_default())
        })
        .map(|e| {
            (
                e.regarding.and_then(|r| r.name).unwrap_or_default(),
                e.reason.unwrap_or_default(),
            )
        })
        .collect();
    events.sort();
    events
}

/// Waits until `name` has exactly one Event with `reason`, and returns it.
async fn one_event_on(fx: &Fixture, name: &str, reason: &str) -> Event {
    wait_for(
        &format!("an Event {reason} on {name}"),
        Duration::from_secs(30),
        || async move {
            let events = events_on(fx, name, reason).await;
            assert!(
                events.len() <= 1,
                "more than one {reason} on {name}: {events:?}"
            );
            events.into_iter().next()
        },
    )
    .await
}

fn stop_with_oom(fx: &Fixture, id: &str) {
    assert!(fx.simulator().patch_instance(
        id,
        json!({ "status": {
            "status": "exited",
            "error": "OOM",
            // A proxy that echoes the API key into the message: it must not reach the Event.
            "message": format!("container killed: out of memory (Bearer {API_KEY})"),
        }}),
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_stops_gets_one_warning_event_carrying_the_remote_error() {
    let records = running_records(3, 11);
    let id = id_of(&records[0]);
    let fx = Fixture::start("lifecycle-stop", records).await;
    fx.create_view("v", |spec| spec.expiry_warning_window = "0s".into())
        .await;
    fx.wait_ready("v", true, "Synced").await;
    assert_eq!(
        lifecycle_events(&fx).await,
        [] as [(String, String); 0],
        "a first sight is no transition"
    );

    stop_with_oom(&fx, &id);
    fx.refresh("v").await;
    let mirror = format!("v-{id}");
    let stopped = one_event_on(&fx, &mirror, "Stopped").await;
    assert_eq!(stopped.type_.as_deref(), Some("Warning"));
    let note = stopped.note.clone().unwrap_or_default();
    assert!(
        note.contains("running to exited") && note.contains("OOM"),
        "{note}"
    );
    assert!(note.contains("out of memory"), "{note}");
    assert!(!note.contains(API_KEY), "the API key never appears: {note}");
    assert!(note.len() <= 1024);
    let regarding = stopped.regarding.expect("regarding");
    assert_eq!(regarding.kind.as_deref(), Some("GpuInstance"));

    // Further syncs without a change of remote status publish nothing more, even when another
    // field changes and the mirror is rewritten.
    let before = lifecycle_events(&fx).await;
    assert_eq!(before, [(mirror.clone(), "Stopped".to_owned())]);
    fx.refresh("v").await;
    assert!(fx.simulator().patch_instance(
        &id,
        json!({ "status": { "message": "still out of memory" }}),
    ));
    fx.refresh("v").await;
    let rewritten = fx.instances().get(&mirror).await.expect("mirror");
    assert_eq!(
        rewritten
            .status
            .and_then(|s| s.status)
            .and_then(|s| s.message)
            .as_deref(),
        Some("still out of memory")
    );
    fx.refresh("v").await;
    assert_eq!(lifecycle_events(&fx).await, before);
    let again = events_on(&fx, &mirror, "Stopped").await;
    assert!(again[0].series.is_none(), "not repeated as a series");

    // Back up: one Normal Running.
    assert!(fx.simulator().patch_instance(
        &id,
        json!({ "status": { "status": "running", "error": "", "message": "" }}),
    ));
    fx.refresh("v").await;
    let running = one_event_on(&fx, &mirror, "Running").await;
    assert_eq!(running.type_.as_deref(), Some("Normal"));
    let all = fx.ns.kubectl(&["get", "events", "-o", "json"]);
    assert!(
        !all.contains(API_KEY),
        "the API key never appears in an Event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_neither_repeats_nor_loses_a_transition() {
    let records = running_records(3, 12);
    let (first, second) = (id_of(&records[0]), id_of(&records[1]));
    let mut fx = Fixture::start("lifecycle-restart", records).await;
    fx.create_view("v", |spec| spec.expiry_warning_window = "0s".into())
        .await;
    fx.wait_ready("v", true, "Synced").await;
    stop_with_oom(&fx, &first);
    fx.refresh("v").await;
    one_event_on(&fx, &format!("v-{first}"), "Stopped").await;

    // The operator stops; meanwhile another instance stops; a new operator takes over.
    fx._operator = None;
    stop_with_oom(&fx, &second);
    fx._operator = Some(RunningOperator::start(
        fx.ns.client.clone(),
        &fx.ns.name,
        &fx.ppio.base_url(),
    ));
    fx.refresh("v").await;
    one_event_on(&fx, &format!("v-{second}"), "Stopped").await;
    fx.refresh("v").await;
    let mut expected = vec![
        (format!("v-{first}"), "Stopped".to_owned()),
        (format!("v-{second}"), "Stopped".to_owned()),
    ];
    expected.sort();
    assert_eq!(
        lifecycle_events(&fx).await,
        expected,
        "the transition seen before the restart is not repeated, the one during it is not lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_transitions_in_one_sync_stay_bounded_and_are_summed_up_on_the_view() {
    let records = running_records(30, 13);
    let ids: Vec<String> = records.iter().map(id_of).collect();
    let fx = Fixture::start("lifecycle-many", records).await;
    fx.create_view("v", |spec| {
        spec.expiry_warning_window = "0s".into();
        spec.lifecycle_events.max_per_sync = 5;
    })
    .await;
    fx.wait_ready("v", true, "Synced").await;

    for (n, id) in ids.iter().enumerate() {
        let state = if n < 25 { "exited" } else { "failed" };
        assert!(
            fx.simulator()
                .patch_instance(id, json!({ "status": { "status": state }}))
        );
    }
    fx.refresh("v").await;
    let summary = one_event_on(&fx, "v", "ManyStatusChanges").await;
    assert_eq!(summary.type_.as_deref(), Some("Warning"));
    let note = summary.note.unwrap_or_default();
    assert!(
        note.contains("30 instances")
            && note.contains("25 running→exited")
            && note.contains("5 running→failed"),
        "{note}"
    );
    let per_instance = lifecycle_events(&fx).await;
    assert_eq!(per_instance.len(), 5, "maxPerSync: {per_instance:?}");
    assert!(per_instance.iter().all(|(_, reason)| reason == "Stopped"));

    // Every mirror shows its new status all the same, and the next sync repeats nothing.
    let exited = fx.ns.kubectl(&[
        "get",
        "gpui",
        "-l",
        "gpu.ppio.io/status=exited",
        "-o",
        "name",
    ]);
    assert_eq!(exited.lines().count(), 25, "{exited}");
    fx.refresh("v").await;
    assert_eq!(lifecycle_events(&fx).await.len(), 5);
    assert_eq!(events_on(&fx, "v", "ManyStatusChanges").await.len(), 1);
}

/// A prepaid record ending `hours` from now.
fn prepaid(mut record: Value, hours: i64, auto_renew: bool) -> (Value, i64) {
    let end = jiff::Timestamp::now().as_second() + hours * 3600;
    record["billing"] = json!({
        "mode": "prepaid",
        "prepaid": {
            "months": 1,
            "end_time": end,
            "auto_renew": { "enabled": auto_renew, "months": 1, "status": "" }
        }
    });
    (record, end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepaid_instance_ending_soon_without_auto_renew_is_flagged_once() {
    let records = running_records(4, 14);
    let (soon, soon_end) = prepaid(records[0].clone(), 48, false);
    let (renewing, _) = prepaid(records[1].clone(), 48, true);
    let (later, later_end) = prepaid(records[2].clone(), 30 * 24, false);
    let postpaid = records[3].clone();
    let [soon_id, renewing_id, later_id] = [&soon, &renewing, &later].map(id_of);
    let fx = Fixture::start("lifecycle-expiry", vec![soon, renewing, later, postpaid]).await;
    fx.create_view("v", |_| {}).await;
    let view = fx.wait_ready("v", true, "Synced").await;
    assert_eq!(view.status.and_then(|s| s.expiring_soon_count), Some(1));

    let soon_mirror = format!("v-{soon_id}");
    let mirror = fx.instances().get(&soon_mirror).await.expect("mirror");
    assert_eq!(
        mirror.metadata.labels.as_ref().unwrap()["gpu.ppio.io/expiring-soon"],
        soon_end.to_string()
    );
    let status = mirror.status.expect("status");
    let expiring = condition::find(&status.conditions, "ExpiringSoon").expect("condition");
    let end_text = jiff::Timestamp::from_second(soon_end).unwrap().to_string();
    assert_eq!(expiring.status, ConditionStatus::True);
    assert!(expiring.message.contains(&end_text), "{}", expiring.message);
    let renewing_mirror = fx
        .instances()
        .get(&format!("v-{renewing_id}"))
        .await
        .expect("mirror");
    let renewing_condition =
        condition::find(&renewing_mirror.status.unwrap().conditions, "ExpiringSoon")
            .expect("condition")
            .clone();
    assert_eq!(renewing_condition.status, ConditionStatus::False);

    let warned = one_event_on(&fx, &soon_mirror, "ExpiringSoon").await;
    assert_eq!(warned.type_.as_deref(), Some("Warning"));
    assert!(
        warned.note.unwrap_or_default().contains(&end_text),
        "the Event names the end time"
    );
    assert_eq!(
        lifecycle_events(&fx).await,
        [(soon_mirror.clone(), "ExpiringSoon".to_owned())],
        "auto-renew on, or an end beyond the window: no warning"
    );

    // What a user runs.
    let listed = fx.ns.kubectl(&[
        "get",
        "gpui",
        "-l",
        "gpu.ppio.io/expiring-soon",
        "-o",
        "name",
    ]);
    assert_eq!(
        listed.trim(),
        format!("gpuinstance.gpu.ppio.io/{soon_mirror}")
    );
    let wide = fx.ns.kubectl(&["get", "gpui", "-o", "wide"]);
    assert!(table_header(&wide).contains(&"EXPIRES"), "{wide}");
    let row = wide
        .lines()
        .find(|l| l.starts_with(&soon_mirror))
        .unwrap_or_default();
    assert!(
        row.contains(&end_text),
        "EXPIRES shows the end time:\n{wide}"
    );
    let plain = fx.ns.kubectl(&["get", "gpui"]);
    assert!(
        !table_header(&plain).contains(&"EXPIRES"),
        "only with -o wide"
    );

    // Further syncs repeat nothing.
    fx.refresh("v").await;
    fx.refresh("v").await;
    assert_eq!(events_on(&fx, &soon_mirror, "ExpiringSoon").await.len(), 1);

    // A wider window takes in the later one, whose record did not change.
    fx.change_spec("v", |spec| spec.expiry_warning_window = "800h".into())
        .await;
    let view = fx.wait_ready("v", true, "Synced").await;
    assert_eq!(view.status.and_then(|s| s.expiring_soon_count), Some(2));
    let later_mirror = format!("v-{later_id}");
    one_event_on(&fx, &later_mirror, "ExpiringSoon").await;
    let later_labels = fx
        .instances()
        .get(&later_mirror)
        .await
        .expect("mirror")
        .metadata
        .labels
        .unwrap_or_default();
    assert_eq!(
        later_labels.get("gpu.ppio.io/expiring-soon"),
        Some(&later_end.to_string())
    );
    assert_eq!(events_on(&fx, &soon_mirror, "ExpiringSoon").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_a_malformed_expiry_window_or_event_bound() {
    let fx = Fixture::start("lifecycle-schema", Vec::new()).await;
    type Shape = fn(&mut GpuInstanceViewSpec);
    let malformed: [(Shape, &str); 4] = [
        (
            |spec| spec.expiry_warning_window = "3 days".into(),
            "not a duration",
        ),
        (
            |spec| spec.expiry_warning_window = "9000h".into(),
            "beyond 8760h",
        ),
        (|spec| spec.lifecycle_events.max_per_sync = -1, "negative"),
        (
            |spec| spec.lifecycle_events.max_per_sync = 1001,
            "over 1000",
        ),
    ];
    for (shape, what) in malformed {
        let mut spec = fx.view_spec();
        shape(&mut spec);
        let view = ppio_test_support::objects::view("bad", spec);
        let created = fx
            .views()
            .create(&kube::api::PostParams::default(), &view)
            .await;
        assert!(
            matches!(&created, Err(kube::Error::Api(s)) if s.code == 422),
            "{what}: {created:?}"
        );
    }
}
