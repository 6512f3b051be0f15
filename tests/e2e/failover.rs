//! The leader goes away, as an OOM kill or a node drain takes it: the standby leads within the lease
//! duration plus a few seconds, the view keeps syncing, no view is listed by two pods at once, and a
//! killed container is restarted by the kubelet.

use std::time::{Duration, Instant};

use kube::{Client, ResourceExt};

use ppio_test_support::node::{
    LEASE_DURATION, Release, SYNC_INTERVAL, Tenant, assert_no_two_syncs_at_once, client,
    container_pid, delete_pod, is_ready, ppio, wait_for,
};

/// How long after a leader is killed the standby may take to lead: the lease must run out, and the
/// standby looks again at most every retry period (2 s, with jitter) after it last saw a renewal.
const TAKEOVER_AFTER_KILL: Duration = Duration::from_secs(LEASE_DURATION.as_secs() + 10);
/// How long after a leader's pod is deleted the standby may take to lead: a leader that stops releases
/// its Lease, so the standby need not wait for it to run out.
const TAKEOVER_AFTER_DELETE: Duration = Duration::from_secs(6);

/// Waits for the view to sync again after `since`: its lastSyncTime moves on.
async fn wait_for_a_sync(tenant: &Tenant, before: Option<String>, timeout: Duration) {
    wait_for("the view to sync again", timeout, || async {
        let now = tenant.last_sync().await;
        (now.is_some() && now != before).then_some(())
    })
    .await;
}

/// A release `name` with a tenant whose view has synced, and the release's leader.
async fn synced_release(client: &Client, name: &str) -> (Release, Tenant, String) {
    let release = Release::install(name, &[]);
    let tenant = Tenant::create(client, &format!("e2e-{name}-tenant")).await;
    tenant.wait_ready(Duration::from_secs(120)).await;
    let leader = wait_for("a leader", Duration::from_secs(30), || {
        release.leader(client)
    })
    .await;
    (release, tenant, leader)
}

#[tokio::test]
async fn a_killed_leader_is_restarted_and_the_standby_leads_within_the_lease() {
    let client = client().await;
    let (release, tenant, leader) = synced_release(&client, "kill").await;
    let pods = release.pods(&client).await;
    let leader_pod = pods
        .iter()
        .find(|p| p.name_any() == leader)
        .expect("the leader is a pod of the release");
    let restarts = leader_pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .restart_count;
    let pid = container_pid(leader_pod);

    // SIGKILL, as the kernel's OOM killer sends it: no chance to release the Lease.
    let killed_at = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -KILL {pid}");
    let before = tenant.last_sync().await;

    let standby = wait_for("the standby to lead", TAKEOVER_AFTER_KILL, || async {
        release
            .leader(&client)
            .await
            .filter(|holder| *holder != leader)
    })
    .await;
    let takeover = killed_at.elapsed();
    wait_for_a_sync(&tenant, before, SYNC_INTERVAL + Duration::from_secs(10)).await;
    let synced_again = killed_at.elapsed();

    wait_for(
        "the kubelet to restart the killed container",
        Duration::from_secs(60),
        || async {
            let pod = release
                .pods(&client)
                .await
                .into_iter()
                .find(|p| p.name_any() == leader)?;
            let status = pod
                .status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .first()?
                .clone();
            (status.restart_count == restarts + 1 && is_ready(&pod)).then_some(())
        },
    )
    .await;
    assert_no_two_syncs_at_once(&ppio().seen_with(&tenant.api_key));
    println!(
        "e2e: leader {leader} killed; {standby} led after {:.1}s, the view synced again after {:.1}s; \
         the killed container was restarted",
        takeover.as_secs_f64(),
        synced_again.as_secs_f64()
    );
}

#[tokio::test]
async fn deleting_the_leader_pod_hands_over_to_the_standby() {
    let client = client().await;
    let (release, tenant, leader) = synced_release(&client, "delete").await;
    let deleted_at = Instant::now();
    let before = tenant.last_sync().await;
    delete_pod(&client, &release.namespace, &leader).await;

    let standby = wait_for(
        "the standby to lead at once",
        TAKEOVER_AFTER_DELETE,
        || async {
            release
                .leader(&client)
                .await
                .filter(|holder| *holder != leader)
        },
    )
    .await;
    let takeover = deleted_at.elapsed();
    let standby_ip = release
        .pods(&client)
        .await
        .into_iter()
        .find(|p| p.name_any() == standby)
        .and_then(|p| p.status?.pod_ip)
        .expect("the standby's address");
    // The view is listed again, and by the standby.
    let listed_before = ppio().seen_with(&tenant.api_key).len();
    wait_for(
        "the standby to list the view",
        SYNC_INTERVAL + Duration::from_secs(10),
        || async {
            ppio().seen_with(&tenant.api_key)[listed_before..]
                .iter()
                .any(|s| s.peer.to_string() == standby_ip)
                .then_some(())
        },
    )
    .await;
    wait_for_a_sync(&tenant, before, SYNC_INTERVAL + Duration::from_secs(10)).await;
    let synced_again = deleted_at.elapsed();

    // The Deployment replaces the deleted pod; the new one stands by.
    wait_for(
        "two Ready replicas again",
        Duration::from_secs(90),
        || async {
            let ready = release.ready_pods(&client).await;
            (ready.len() == 2 && ready.iter().all(|p| p.name_any() != leader)).then_some(())
        },
    )
    .await;
    assert_eq!(
        release.leader(&client).await.as_deref(),
        Some(standby.as_str())
    );
    assert_no_two_syncs_at_once(&ppio().seen_with(&tenant.api_key));
    println!(
        "e2e: leader pod {leader} deleted; {standby} led after {:.1}s, the view synced again after {:.1}s",
        takeover.as_secs_f64(),
        synced_again.as_secs_f64()
    );
}
