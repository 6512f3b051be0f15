//! The PodDisruptionBudget at work, as `kubectl drain` meets it: with the node cordoned (so an
//! evicted replica's replacement cannot start), one replica may be evicted and a second is refused
//! while the first is down; once the node takes pods again, the budget allows a disruption again.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, EvictParams, ListParams};

use ppio_test_support::node::{Release, client, client_without_retries, kubectl, wait_for};

/// The node cordoned, as `kubectl drain` does first; uncordoned by `uncordon`, or when dropped.
struct Cordoned;

const NODES: [&str; 2] = ["--selector", "kubernetes.io/os=linux"];

impl Cordoned {
    fn node() -> Cordoned {
        kubectl(&["cordon", NODES[0], NODES[1]]);
        Cordoned
    }

    fn uncordon(self) {
        let out = kubectl(&["uncordon", NODES[0], NODES[1]]);
        assert!(out.contains("uncordoned"), "kubectl uncordon: {out}");
        std::mem::forget(self);
    }
}

impl Drop for Cordoned {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kubectl")
            .args(["uncordon", NODES[0], NODES[1]])
            .output();
    }
}

async fn disruptions_allowed(pdbs: &Api<PodDisruptionBudget>) -> Option<i32> {
    let pdb = pdbs
        .list(&ListParams::default())
        .await
        .ok()?
        .items
        .into_iter()
        .next()?;
    Some(pdb.status?.disruptions_allowed)
}

#[tokio::test]
async fn the_pdb_allows_one_eviction_and_refuses_a_second_while_the_first_is_down() {
    let client = client().await;
    let release = Release::install("evict", &[]);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &release.namespace);
    // The disruption controller must have counted both replicas healthy.
    wait_for(
        "the PDB to allow one disruption",
        Duration::from_secs(60),
        || async { (disruptions_allowed(&pdbs).await? == 1).then_some(()) },
    )
    .await;

    let cordoned = Cordoned::node();
    let pods = release.ready_pods(&client).await;
    assert_eq!(pods.len(), 2);
    // A refused eviction answers 429, which kube's client would retry for minutes.
    let api: Api<Pod> = Api::namespaced(client_without_retries().await, &release.namespace);
    api.evict(&pods[0].name_any(), &EvictParams::default())
        .await
        .unwrap_or_else(|e| panic!("the first eviction must be allowed: {e}"));
    match api
        .evict(&pods[1].name_any(), &EvictParams::default())
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(
            status.code, 429,
            "a second eviction while the first replica is down is refused with 429: {status:?}"
        ),
        other => panic!(
            "a second eviction while the first replica is down must be refused, got {other:?}"
        ),
    }
    let survivor = api.get(&pods[1].name_any()).await.expect("the second pod");
    assert!(
        survivor.metadata.deletion_timestamp.is_none(),
        "the refused eviction did not delete the pod"
    );

    // The node takes pods again: the replacement starts, and a drain may go on.
    cordoned.uncordon();
    wait_for(
        "the PDB to allow a disruption again",
        Duration::from_secs(120),
        || async { (disruptions_allowed(&pdbs).await? == 1).then_some(()) },
    )
    .await;
    println!(
        "e2e: with the node cordoned the PDB allowed one eviction and refused the second (429); \
         uncordoned, it allowed one again"
    );
}
