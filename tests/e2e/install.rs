//! `helm install` with the defaults: two replicas start and become Ready, exactly one leads, and a
//! view in another namespace is synced and its mirrors are what `kubectl get gpui` lists.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use ppio_gpu_core::api::GpuInstance;

use ppio_test_support::node::{INSTANCES, Release, Tenant, client, is_ready, kubectl, wait_for};

/// Seconds from a pod's creation to its Ready condition.
fn seconds_to_ready(pod: &Pod) -> i64 {
    let created = pod.metadata.creation_timestamp.as_ref().expect("created").0;
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.as_ref())
        .expect("a Ready condition")
        .0;
    ready.as_second() - created.as_second()
}

#[tokio::test]
async fn install_starts_two_ready_replicas_of_which_exactly_one_leads() {
    let client = client().await;
    let started = Instant::now();
    let release = Release::install("ready", &[]);
    let install_took = started.elapsed();

    let pods = release.pods(&client).await;
    assert_eq!(pods.len(), 2, "the chart runs two replicas by default");
    for pod in &pods {
        assert!(is_ready(pod), "pod {} is not Ready", pod.name_any());
        let restarts: i32 = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).sum())
            .unwrap_or_default();
        assert_eq!(restarts, 0, "pod {} restarted", pod.name_any());
    }
    let leader = wait_for("a leader", Duration::from_secs(30), || {
        release.leader(&client)
    })
    .await;
    let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    assert!(
        names.contains(&leader),
        "the Lease is held by {leader}, which is none of the release's pods {names:?}"
    );
    // Each replica says whether it leads: exactly one does.
    let mut leading = Vec::new();
    for pod in &pods {
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .expect("pod IP");
        let metrics = reqwest::get(format!("http://{ip}:8080/metrics"))
            .await
            .expect("the pod's /metrics")
            .text()
            .await
            .expect("metrics text");
        if metrics
            .lines()
            .any(|l| l.trim() == "ppio_gpu_operator_leader 1")
        {
            leading.push(pod.name_any());
        }
    }
    assert_eq!(
        leading,
        vec![leader.clone()],
        "exactly the Lease holder leads"
    );
    println!(
        "e2e: helm install --wait took {:.1}s; pods Ready {:?}s after creation; leader {leader}",
        install_took.as_secs_f64(),
        pods.iter().map(seconds_to_ready).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_view_in_another_namespace_is_synced_and_kubectl_lists_its_mirrors() {
    let client = client().await;
    let _release = Release::install("sync", &[]);
    let tenant = Tenant::create(&client, "e2e-sync-tenant").await;
    let started = Instant::now();
    let view = tenant.wait_ready(Duration::from_secs(120)).await;
    let status = view.status.expect("status");
    assert_eq!(status.instance_count, Some(INSTANCES as i64));

    let mirrors: Api<GpuInstance> = Api::namespaced(client.clone(), &tenant.namespace);
    let mirrors = wait_for(
        "every instance mirrored",
        Duration::from_secs(60),
        || async {
            let list = mirrors.list(&ListParams::default()).await.ok()?;
            (list.items.len() == INSTANCES).then_some(list.items)
        },
    )
    .await;
    let table = kubectl(&["get", "gpui", "--namespace", &tenant.namespace]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
    for column in [
        "NAME", "ID", "STATUS", "REGION", "GPUS", "PRODUCT", "BILLING", "AGE",
    ] {
        assert!(header.contains(&column), "no {column} column in:\n{table}");
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(
        rows.len(),
        INSTANCES,
        "kubectl lists every mirror:\n{table}"
    );
    for mirror in &mirrors {
        assert!(
            rows.iter().any(|r| r.starts_with(&mirror.name_any())),
            "kubectl does not list {}:\n{table}",
            mirror.name_any()
        );
    }
    println!(
        "e2e: the view was Ready {:.1}s after it was created, with {INSTANCES} mirrors",
        started.elapsed().as_secs_f64()
    );
}
