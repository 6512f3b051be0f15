//! Records built to cost time: a `command` of 300,000 `@` (which once held its view's sync for
//! 146 s), fields of URL credentials, schemes, percent signs and bidirectional overrides repeated,
//! and a page at the body cap. Through the real operator, each view still syncs well within its
//! interval, and while a page at the body cap is planned, a leader with a single async worker (as
//! in a pod limited to one CPU or less) still renews its Lease on time and answers `/healthz`.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use ppio_simulator::generate_instances;
use serde_json::json;

use ppio_test_support::fixture::Fixture;
use ppio_test_support::operator::OperatorProcess;
use ppio_test_support::shared;

/// The shortest sync interval a view may have; the hostile views must sync well within it.
const INTERVAL: Duration = Duration::from_secs(10);

/// Records whose text costs a rule that looks back or ahead from each character time that grows
/// with the square of its length, one field each, besides ordinary records.
fn hostile_records() -> Vec<serde_json::Value> {
    let mut records = generate_instances(3, 29);
    let shapes = [
        ("atsigns", "/command", "@".repeat(300_000)),
        ("credentials", "/image", "a:b@".repeat(75_000)),
        ("schemes", "/entrypoint", "://a@".repeat(60_000)),
        ("urls", "/command", "https://u:p@".repeat(25_000)),
        ("percent", "/status/message", "%".repeat(300_000)),
        ("overrides", "/name", "\u{202e}".repeat(100_000)),
    ];
    for (n, (id, field, text)) in shapes.into_iter().enumerate() {
        let mut record = generate_instances(1, 100 + n as u64).remove(0);
        record["id"] = json!(id);
        if field == "/status/message" {
            record["status"] = json!({ "status": "exited", "error": "failed", "message": text });
        } else if let Some(slot) = record.pointer_mut(field) {
            *slot = json!(text);
        }
        records.push(record);
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_of_300000_at_signs_and_other_hostile_records_sync_well_within_the_interval() {
    let records = hostile_records();
    let count = records.len();
    let fx = Fixture::start("hostile", records).await;
    let started = Instant::now();
    fx.create_view("v", |_| {}).await;
    let view = fx.wait_ready("v", true, "Synced").await;
    let took = started.elapsed();
    assert!(
        took < INTERVAL / 2,
        "the view took {took:?} to sync, against an interval of {INTERVAL:?}"
    );
    assert_eq!(
        view.status.as_ref().and_then(|s| s.mirrored_count),
        Some(i64::try_from(count).expect("a count"))
    );
    let at_signs = fx.instances().get("v-atsigns").await.expect("mirror");
    let command = at_signs.status.and_then(|s| s.command).expect("a command");
    assert!(command.len() <= 4096 && command.bytes().all(|b| b == b'@'));
    let credentials = fx.instances().get("v-credentials").await.expect("mirror");
    let image = credentials.status.and_then(|s| s.image).expect("an image");
    // One token of `user:password@` pairs: all of it is credentials, up to its last `@`.
    assert_eq!(image, "<redacted>@");
}

/// How old the Lease's `renewTime` may be while its leader is busy: the retry period (2 s), with
/// room for the API server and a loaded machine, and well below the renew deadline (two thirds of
/// the 10 s lease), after which a leader steps down.
const RENEWED_WITHIN: Duration = Duration::from_secs(5);

/// How long `/healthz` may take to answer while the leader is busy.
const HEALTHZ_WITHIN: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_with_one_async_worker_renews_and_answers_healthz_while_a_page_at_the_body_cap_is_planned()
 {
    // One record of some 15 MiB of credentials, a body near the 16 MiB cap: planned in a debug
    // build it takes seconds of CPU time.
    let mut records = generate_instances(2, 31);
    records[0]["command"] = json!("a:b@".repeat(15 * 1024 * 1024 / 4));
    let fx = Fixture::without_operator(shared(), "busy-leader", records).await;
    let lease = "busy-leader";
    let mut args = fx.replica_args(&["--lease-name", lease]);
    args.push("--ppio-timeout-seconds=120".into());
    let operator = OperatorProcess::start_with_env(
        crate::operator_binary(),
        &shared().kubeconfig,
        "busy-leader",
        &args,
        &[("TOKIO_WORKER_THREADS", "1")],
    );
    let leases: Api<Lease> = Api::namespaced(fx.ns.client.clone(), &fx.ns.name);
    let holder = |lease: &Lease| {
        let spec = lease.spec.as_ref();
        (
            spec.and_then(|s| s.holder_identity.clone()),
            spec.and_then(|s| s.renew_time.as_ref().map(|t| t.0)),
        )
    };
    ppio_test_support::wait_for("the replica to lead", Duration::from_secs(60), || async {
        let lease = leases.get_opt(lease).await.ok().flatten();
        lease.filter(|l| holder(l).0.as_deref() == Some("busy-leader"))
    })
    .await;

    fx.create_view("v", |_| {}).await;
    let started = Instant::now();
    let (mut oldest_renewal, mut slowest_healthz, mut samples) =
        (Duration::ZERO, Duration::ZERO, 0);
    loop {
        operator.assert_running();
        let asked = Instant::now();
        let healthz = operator.get("/healthz").await;
        let answered = asked.elapsed();
        assert!(
            matches!(healthz, Some((200, _))) && answered < HEALTHZ_WITHIN,
            "/healthz answered {healthz:?} after {answered:?} while the page was planned"
        );
        slowest_healthz = slowest_healthz.max(answered);
        let current = leases.get(lease).await.expect("the Lease");
        let (holder, renewed) = holder(&current);
        assert_eq!(
            holder.as_deref(),
            Some("busy-leader"),
            "the leader stepped down"
        );
        let age = Timestamp::now().duration_since(renewed.expect("a renew time"));
        let age = Duration::try_from(age).unwrap_or(Duration::ZERO);
        assert!(
            age < RENEWED_WITHIN,
            "the Lease was last renewed {age:?} ago while the page was planned"
        );
        oldest_renewal = oldest_renewal.max(age);
        samples += 1;
        let view = fx.views().get("v").await.expect("the view");
        let synced = view.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.reason == "Synced")
        });
        if synced {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the view did not sync"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let took = started.elapsed();
    eprintln!(
        "synced in {took:?}; {samples} samples: Lease at most {oldest_renewal:?} old, /healthz at most {slowest_healthz:?}"
    );
    // The sync must outlast what /healthz may take by far, or a stalled worker could go unseen.
    assert!(
        took > HEALTHZ_WITHIN * 2,
        "the sync took only {took:?}: the page is too small to prove anything"
    );
    operator.assert_running();
}
