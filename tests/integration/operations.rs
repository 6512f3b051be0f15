//! Operating the operator: the binary with two replicas and leader election, its HTTP endpoints and
//! metrics, graceful shutdown, and the Events it publishes on a view.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams};
use ppio_simulator::generate_instances;
use serde_json::json;

use ppio_test_support::fixture::{API_KEY, Fixture, create_secret};
use ppio_test_support::operator::OperatorProcess;
use ppio_test_support::{shared, wait_for};

async fn lease_holder(fx: &Fixture) -> Option<String> {
    let lease = fx
        .ns
        .api::<Lease>()
        .get_opt("ppio-gpu-operator")
        .await
        .ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_leader_that_alone_writes_and_a_standby_takes_over() {
    let fx = Fixture::without_operator(shared(), "ha", generate_instances(4, 5)).await;
    let args = fx.replica_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let kubeconfig = shared().kubeconfig.clone();
    let replicas = vec![
        OperatorProcess::start(crate::operator_binary(), &kubeconfig, "replica-a", &args),
        OperatorProcess::start(crate::operator_binary(), &kubeconfig, "replica-b", &args),
    ];
    fx.create_view("v", |_| {}).await;
    fx.wait_ready("v", true, "Synced").await;

    let holder = wait_for("a lease holder", Duration::from_secs(30), || {
        lease_holder(&fx)
    })
    .await;
    let (leader, standby) = if holder == "replica-a" {
        (0, 1)
    } else {
        (1, 0)
    };
    for replica in &replicas {
        let health = replica.get("/healthz").await;
        assert_eq!(health.map(|h| h.0), Some(200), "{}", replica.log_text());
        let ready = wait_for("readiness", Duration::from_secs(30), || async {
            replica
                .get("/readyz")
                .await
                .filter(|(code, _)| *code == 200)
        })
        .await;
        assert_eq!(ready.1, "ok");
    }
    let leader_metric = |i: usize| replicas[i].metric("ppio_gpu_operator_leader ");
    assert_eq!(leader_metric(leader).await, Some(1.0));
    assert_eq!(leader_metric(standby).await, Some(0.0));
    let synced = "ppio_gpu_operator_syncs_total{result=\"success\",reason=\"Synced\"}";
    assert!(replicas[leader].metric(synced).await.unwrap_or(0.0) >= 1.0);
    assert!(
        replicas[leader]
            .metric("ppio_gpu_operator_ppio_requests_total{code=\"200\"}")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(
        replicas[leader]
            .metric("ppio_gpu_operator_mirrored_instances{")
            .await,
        Some(4.0)
    );
    assert_eq!(
        replicas[standby].metric(synced).await,
        None,
        "the standby never syncs"
    );
    assert_eq!(
        replicas[standby]
            .metric("ppio_gpu_operator_kubernetes_writes_total")
            .await,
        None,
        "the standby never writes"
    );

    // The leader dies without a word: the standby takes over within the lease duration.
    replicas[leader].signal("KILL");
    let survivor = &replicas[standby];
    let standby_name = if standby == 0 {
        "replica-a"
    } else {
        "replica-b"
    };
    wait_for(
        "the standby to take the lease",
        Duration::from_secs(30),
        || async { (lease_holder(&fx).await.as_deref() == Some(standby_name)).then_some(()) },
    )
    .await;
    fx.simulator().patch_instance(
        fx.simulator().instances()[0]["id"].as_str().unwrap(),
        json!({ "name": "after-failover" }),
    );
    fx.refresh("v").await;
    assert_eq!(
        survivor.metric("ppio_gpu_operator_leader ").await,
        Some(1.0)
    );

    // SIGTERM: the new leader finishes, releases the lease at once, and exits cleanly.
    survivor.signal("TERM");
    let code = replicas[standby].wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, Some(0), "{}", replicas[standby].log_text());
    assert_eq!(
        lease_holder(&fx).await,
        None,
        "the lease was released, not left to expire"
    );
    let log = replicas[standby].log_text();
    assert!(log.contains("released the leader lease"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_gets_one_event_when_syncs_start_failing_and_one_when_they_recover() {
    let fx = Fixture::start("events", generate_instances(2, 9)).await;
    fx.create_view("v", |_| {}).await;
    fx.wait_ready("v", true, "Synced").await;

    fx.ns
        .api::<k8s_openapi::api::core::v1::Secret>()
        .delete("ppio", &DeleteParams::default())
        .await
        .expect("delete Secret");
    fx.refresh("v").await;
    fx.refresh("v").await;
    fx.refresh("v").await;
    let events_of = |reason: &'static str| {
        let events = fx.ns.api::<Event>();
        async move {
            events
                .list(&ListParams::default())
                .await
                .expect("list Events")
                .items
                .into_iter()
                .filter(|e| {
                    e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("v")
                        && e.reason.as_deref() == Some(reason)
                })
                .collect::<Vec<_>>()
        }
    };
    let failing = events_of("SecretNotFound").await;
    assert_eq!(
        failing.len(),
        1,
        "three failing syncs, one Event: {failing:?}"
    );
    assert_eq!(failing[0].type_.as_deref(), Some("Warning"));
    assert!(failing[0].series.is_none(), "not repeated as a series");
    assert!(
        failing[0]
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("does not exist"),
        "{:?}",
        failing[0].note
    );

    create_secret(&fx.ns, "ppio", "apiKey", API_KEY).await;
    fx.refresh("v").await;
    let recovered = events_of("Recovered").await;
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(recovered[0].type_.as_deref(), Some("Normal"));
    let all = fx.ns.kubectl(&["get", "events", "-o", "json"]);
    assert!(
        !all.contains(API_KEY),
        "the API key never appears in an Event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_taken_stops_at_once_and_exits() {
    let fx = Fixture::without_operator(shared(), "lease-loss", generate_instances(2, 8)).await;
    let args = fx.replica_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let replica = OperatorProcess::start(
        crate::operator_binary(),
        &shared().kubeconfig,
        "replica-a",
        &args,
    );
    fx.create_view("v", |_| {}).await;
    fx.wait_ready("v", true, "Synced").await;
    assert_eq!(lease_holder(&fx).await.as_deref(), Some("replica-a"));

    // Another holder takes the Lease (as after a partition): the replica must stop writing and exit.
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    fx.ns
        .api::<Lease>()
        .patch(
            "ppio-gpu-operator",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "spec": {
                "holderIdentity": "intruder", "acquireTime": now, "renewTime": now,
                "leaseDurationSeconds": 3600
            }})),
        )
        .await
        .expect("take the Lease");
    let code = replica.wait_exit(Duration::from_secs(20)).await;
    assert!(
        matches!(code, Some(c) if c != 0),
        "exits with an error, got {code:?}: {}",
        replica.log_text()
    );
    assert!(replica.log_text().contains("lost the leader Lease"));
    assert_eq!(
        lease_holder(&fx).await.as_deref(),
        Some("intruder"),
        "it did not take the Lease back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_rides_out_an_api_server_restart_and_catches_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let control_plane =
        ppio_test_support::ControlPlane::start(Some(dir.path())).expect("private control plane");
    let fx = Fixture::start_in(&control_plane, "restart", generate_instances(3, 4)).await;
    fx.create_view("v", |_| {}).await;
    fx.wait_ready("v", true, "Synced").await;

    let exited_before = fx
        .views()
        .get("v")
        .await
        .expect("view")
        .status
        .and_then(|s| s.instances_by_status.get("exited").copied())
        .unwrap_or(0);

    // The API server goes away while the operator runs, and the remote side changes meanwhile.
    // (Stopping and starting block: off the runtime's worker threads.)
    tokio::task::spawn_blocking(move || control_plane.stop())
        .await
        .expect("stop the control plane");
    let id = fx
        .simulator()
        .instances()
        .iter()
        .find(|r| r["status"]["status"] != "exited")
        .and_then(|r| r["id"].as_str())
        .expect("an instance that is not exited")
        .to_owned();
    fx.simulator()
        .patch_instance(&id, json!({ "status": { "status": "exited" } }));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let data = dir.path().to_owned();
    let control_plane =
        tokio::task::spawn_blocking(move || ppio_test_support::ControlPlane::start(Some(&data)))
            .await
            .expect("restart task")
            .expect("restart on the same data");

    // Same address and data: the operator reconnects by itself and the next sync catches up.
    let mirror = format!("v-{id}");
    let view = fx.refresh("v").await;
    assert_eq!(
        view.status
            .and_then(|s| s.instances_by_status.get("exited").copied()),
        Some(exited_before + 1)
    );
    let status = fx.instances().get(&mirror).await.expect("mirror").status;
    assert_eq!(
        status
            .and_then(|s| s.status)
            .and_then(|s| s.status)
            .as_deref(),
        Some("exited")
    );
    assert_eq!(fx.mirrors_of("v").await.len(), 3, "nothing was lost");
    drop(fx);
    tokio::task::spawn_blocking(move || control_plane.stop())
        .await
        .expect("stop the control plane");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_its_lease_stops_on_its_own() {
    let fx = Fixture::without_operator(shared(), "lease-stuck", generate_instances(2, 6)).await;
    let args = fx.replica_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let replica = OperatorProcess::start(
        crate::operator_binary(),
        &shared().kubeconfig,
        "replica-stuck",
        &args,
    );
    wait_for("the replica to lead", Duration::from_secs(30), || async {
        (lease_holder(&fx).await.as_deref() == Some("replica-stuck")).then_some(())
    })
    .await;

    // From now on the API server refuses every renewal by this replica, while reads still work and
    // still name it: only its renew deadline, on its own clock, can stop it.
    let ns = fx.ns.name.clone();
    let policy = format!("deny-renewals-{ns}");
    let manifests = json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicy",
                "metadata": { "name": policy },
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": { "resourceRules": [{
                        "apiGroups": ["coordination.k8s.io"], "apiVersions": ["v1"],
                        "operations": ["UPDATE"], "resources": ["leases"]
                    }]},
                    "validations": [{
                        "expression": "object.spec.holderIdentity != 'replica-stuck'",
                        "message": "renewals of replica-stuck are refused by the test"
                    }]
                }
            },
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": { "name": policy },
                "spec": {
                    "policyName": policy,
                    "validationActions": ["Deny"],
                    "matchResources": { "namespaceSelector": { "matchLabels": {
                        "kubernetes.io/metadata.name": ns
                    }}}
                }
            }
        ]
    });
    let file = std::env::temp_dir().join(format!("{policy}.json"));
    std::fs::write(&file, manifests.to_string()).expect("write the policy");
    fx.ns
        .kubectl(&["apply", "-f", file.to_str().expect("UTF-8 path")]);

    let code = replica.wait_exit(Duration::from_secs(40)).await;
    let log = replica.log_text();
    fx.ns.kubectl(&[
        "delete",
        "validatingadmissionpolicybinding,validatingadmissionpolicy",
        &policy,
        "--ignore-not-found",
    ]);
    let _ = std::fs::remove_file(&file);
    assert!(
        matches!(code, Some(c) if c != 0),
        "exits with an error, got {code:?}: {log}"
    );
    assert!(
        log.contains("cannot confirm a recent renewal of the Lease"),
        "the renew deadline stopped it: {log}"
    );
    assert_eq!(
        lease_holder(&fx).await.as_deref(),
        Some("replica-stuck"),
        "a leader that lost its Lease leaves it alone rather than releasing it"
    );
}
