//! `helm upgrade` and `helm uninstall` as users run them: the upgrade rolls one pod at a time and
//! syncing never stops for longer than a lease duration; the uninstall leaves nothing of the release,
//! while the CRDs and the users' views and mirrors stay.

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use ppio_gpu_core::api::{GpuInstance, GpuInstanceView};

use ppio_test_support::node::{
    INSTANCES, LEASE_DURATION, Release, SYNC_INTERVAL, Tenant, VIEW, assert_no_two_syncs_at_once,
    client, helm, is_ready, kubectl, pods_of_release, ppio, wait_for,
};

#[tokio::test]
async fn helm_upgrade_rolls_one_pod_at_a_time_and_syncing_never_stops_longer_than_a_lease() {
    let client = client().await;
    let release = Release::install("upgrade", &[]);
    let tenant = Tenant::create(&client, "e2e-upgrade-tenant").await;
    tenant.wait_ready(Duration::from_secs(120)).await;
    let old: Vec<String> = release
        .pods(&client)
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();

    // Sample the pods and the view's last sync while helm rolls the Deployment.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sampler = {
        let client = client.clone();
        let namespace = release.namespace.clone();
        let name = release.name.clone();
        let tenant_ns = tenant.namespace.clone();
        tokio::spawn(async move {
            let views: Api<GpuInstanceView> = Api::namespaced(client.clone(), &tenant_ns);
            let mut samples = Vec::new();
            let mut syncs: Vec<(Instant, String)> = Vec::new();
            loop {
                // A failed list is no sample (it would look like no Ready pod).
                let pods = pods_of_release(&client, &namespace, &name)
                    .await
                    .unwrap_or_default();
                let ready = pods
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
                    .count();
                let terminating = pods
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_some())
                    .count();
                if !pods.is_empty() {
                    samples.push((ready, terminating, pods.len() - terminating));
                }
                if let Ok(view) = views.get(VIEW).await
                    && let Some(at) = view.status.and_then(|s| s.last_sync_time)
                {
                    let at = at.to_string();
                    if syncs.last().is_none_or(|(_, last)| *last != at) {
                        syncs.push((Instant::now(), at));
                    }
                }
                if stop_rx.try_recv().is_ok() {
                    return (samples, syncs);
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let rolled_at = Instant::now();
    let upgrade = {
        let name = release.name.clone();
        let namespace = release.namespace.clone();
        tokio::task::spawn_blocking(move || {
            let chart = ppio_test_support::node::chart();
            helm(&[
                "upgrade",
                &name,
                &chart,
                "--namespace",
                &namespace,
                "--reuse-values",
                "--set",
                "logLevel=debug",
                "--wait",
                "--timeout",
                "180s",
            ]);
        })
    };
    upgrade.await.expect("helm upgrade");
    let rollout = rolled_at.elapsed();
    // Keep watching a full sync interval after the rollout, so a stop right at its end shows.
    tokio::time::sleep(SYNC_INTERVAL + LEASE_DURATION).await;
    let _ = stop_tx.send(());
    let (samples, syncs) = sampler.await.expect("sampler");

    let new: Vec<String> = release
        .ready_pods(&client)
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(new.len(), 2, "two Ready replicas after the upgrade");
    assert!(
        new.iter().all(|p| !old.contains(p)),
        "every pod was replaced: {old:?} -> {new:?}"
    );
    let fewest_ready = samples.iter().map(|s| s.0).min().unwrap_or(0);
    let most_terminating = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let most_pods = samples.iter().map(|s| s.2).max().unwrap_or(0);
    assert!(
        fewest_ready >= 1,
        "a replica was Ready all through the rollout: {samples:?}"
    );
    assert!(
        most_pods <= 3,
        "at most one pod beyond the two replicas was started at a time (ready, terminating, not terminating): {samples:?}"
    );

    let longest_gap = syncs
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default();
    assert!(
        syncs.len() >= 2,
        "the view kept syncing during the upgrade: {syncs:?}"
    );
    let allowed = SYNC_INTERVAL.mul_f64(1.1) + LEASE_DURATION + Duration::from_secs(3);
    assert!(
        longest_gap <= allowed,
        "syncing stopped for {longest_gap:?} (a sync interval is {SYNC_INTERVAL:?}, a lease {LEASE_DURATION:?})"
    );
    assert_no_two_syncs_at_once(&ppio().seen_with(&tenant.api_key));
    println!(
        "e2e: helm upgrade rolled {old:?} -> {new:?} in {:.1}s; at least {fewest_ready} Ready, at most \
         {most_terminating} terminating; longest time between syncs {:.1}s",
        rollout.as_secs_f64(),
        longest_gap.as_secs_f64()
    );
}

/// Every namespaced kind the chart (or its operator) may create, as kubectl names them.
const NAMESPACED_KINDS: &str = "deployments,replicasets,pods,services,serviceaccounts,configmaps,\
secrets,roles,rolebindings,poddisruptionbudgets,networkpolicies,leases";
/// The same, with the cluster-wide kinds the chart creates.
const KINDS: &str = "deployments,replicasets,pods,services,serviceaccounts,configmaps,secrets,roles,\
rolebindings,poddisruptionbudgets,networkpolicies,leases,clusterroles,clusterrolebindings";

/// `kubectl get KINDS ... -o name`, with `scope` the namespace or selector arguments.
fn object_names(kinds: &str, scope: &[&str]) -> String {
    let mut args = vec!["get", kinds];
    args.extend_from_slice(scope);
    args.extend(["-o", "name"]);
    kubectl(&args)
}

#[tokio::test]
async fn helm_uninstall_leaves_nothing_of_the_release_and_keeps_crds_views_and_mirrors() {
    let client = client().await;
    let release = Release::install("uninstall", &[]);
    let tenant = Tenant::create(&client, "e2e-uninstall-tenant").await;
    tenant.wait_ready(Duration::from_secs(120)).await;
    let selector = release.selector();
    let labelled = ["--all-namespaces", "--selector", selector.as_str()];
    let in_namespace = ["--namespace", release.namespace.as_str()];
    let before = object_names(KINDS, &labelled);
    assert!(
        before.contains("deployment.apps/"),
        "the release's objects carry its label:\n{before}"
    );
    let in_namespace_before = object_names(NAMESPACED_KINDS, &in_namespace);

    helm(&[
        "uninstall",
        &release.name,
        "--namespace",
        &release.namespace,
        "--wait",
    ]);

    // helm waits for what it deleted; the pods go after them, once their grace period is over.
    let gone = wait_for(
        "the release's objects to be gone",
        Duration::from_secs(60),
        || async {
            object_names(KINDS, &labelled)
                .trim()
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let () = gone;
    // Anything in the release's namespace beside what Kubernetes itself puts in every namespace
    // (the default ServiceAccount, kube-root-ca.crt) was the release's, labelled or not.
    let left_in_namespace = object_names(NAMESPACED_KINDS, &in_namespace);
    let leftovers: Vec<&str> = left_in_namespace
        .lines()
        .filter(|l| *l != "serviceaccount/default" && *l != "configmap/kube-root-ca.crt")
        .collect();
    assert!(
        leftovers.is_empty(),
        "helm uninstall left {leftovers:?} in {} (before: {in_namespace_before})",
        release.namespace
    );

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in ["gpuinstanceviews.gpu.ppio.io", "gpuinstances.gpu.ppio.io"] {
        assert!(
            crds.get_opt(crd).await.expect("get CRD").is_some(),
            "the CRD {crd} stays"
        );
    }
    let views: Api<GpuInstanceView> = Api::namespaced(client.clone(), &tenant.namespace);
    assert!(
        views.get_opt(VIEW).await.expect("get view").is_some(),
        "the user's view stays"
    );
    let mirrors: Api<GpuInstance> = Api::namespaced(client.clone(), &tenant.namespace);
    assert_eq!(
        mirrors
            .list(&ListParams::default())
            .await
            .expect("list mirrors")
            .items
            .len(),
        INSTANCES,
        "the mirrors stay"
    );
    println!(
        "e2e: helm uninstall removed every object of the release; the CRDs, the view and its {INSTANCES} mirrors stay"
    );
}
