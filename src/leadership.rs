//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly one runs
//! the controller and the others stand by to take over within the lease duration.
//!
//! The lease manager (kube-lease-manager) acquires and renews the Lease. Two things are added here,
//! because a leader must stop writing before a standby may start:
//! - a watchdog reads the Lease every second and declares leadership lost when another replica holds
//!   it, or when the last renewal it saw is older than the lease duration minus a safety margin (a
//!   leader that cannot renew, through API errors or a partition, stops on its own clock);
//! - the Lease is released with a precondition on its resourceVersion, so a replica whose view of the
//!   Lease is stale never clears the claim of the replica that took over.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

/// The shortest lease duration that leaves the renewal and the watchdog room to work.
pub const MIN_LEASE_DURATION: Duration = Duration::from_secs(10);

/// How often the watchdog reads the Lease, and how long one read may take.
const WATCHDOG_TICK: Duration = Duration::from_secs(1);

/// Where the Lease is and who this replica is.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Namespace of the Lease (the operator's own namespace).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity, unique among replicas (the pod name).
    pub identity: String,
    /// How long a lease holds without renewal; a standby takes over after at most this long.
    pub duration: Duration,
}

/// This replica's part in the election. Dropping it leaves the Lease to expire on its own.
pub struct Leadership {
    leases: Api<Lease>,
    settings: LeaseSettings,
    leading: watch::Receiver<bool>,
    lost: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
    watchdog: JoinHandle<()>,
}

impl Leadership {
    /// Joins the election (creating the Lease if needed) and keeps competing in the background.
    pub async fn join(
        client: Client,
        settings: &LeaseSettings,
    ) -> Result<Leadership, LeaseManagerError> {
        let duration = settings.duration.max(MIN_LEASE_DURATION);
        let seconds = duration.as_secs();
        // Renew at half the lease: normal renewal latency stays far from the watchdog's limit.
        let grace = seconds / 2;
        let manager = LeaseManagerBuilder::new(client.clone(), &settings.name)
            .with_namespace(&settings.namespace)
            .with_identity(&settings.identity)
            .with_field_manager(format!("ppio-gpu-operator-{}", settings.identity))
            .with_duration(seconds)
            .with_grace(grace)
            .build()
            .await?;
        let (leading, task) = manager.watch().await;
        info!(lease = %settings.name, namespace = %settings.namespace, identity = %settings.identity, "joined leader election");
        let leases: Api<Lease> = Api::namespaced(client, &settings.namespace);
        let (lost_tx, lost) = watch::channel(false);
        let watchdog = tokio::spawn(watchdog(
            leases.clone(),
            settings.clone(),
            duration,
            leading.clone(),
            lost_tx,
        ));
        Ok(Leadership {
            leases,
            settings: settings.clone(),
            leading,
            lost,
            task,
            watchdog,
        })
    }

    /// Waits until this replica leads. False when the election stopped (its task failed).
    pub async fn acquired(&mut self) -> bool {
        self.leading.wait_for(|leading| *leading).await.is_ok()
    }

    /// A future that resolves when this replica stops leading, or can no longer confirm that it does.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
        let mut leading = self.leading.clone();
        let mut lost = self.lost.clone();
        async move {
            tokio::select! {
                _ = leading.wait_for(|leading| !*leading) => {}
                _ = lost.wait_for(|lost| *lost) => {}
            }
        }
    }

    /// Whether this replica leads now.
    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// Leaves the election without touching the Lease (after losing it).
    pub fn abandon(self) {
        self.watchdog.abort();
        self.task.abort();
    }

    /// Leaves the election, releasing the Lease if this replica still holds it, so a standby takes
    /// over at once. The release is conditional on the Lease being unchanged since it was read.
    pub async fn release(self) {
        self.watchdog.abort();
        self.task.abort();
        let release = release_if_held(&self.leases, &self.settings);
        match tokio::time::timeout(Duration::from_secs(5), release).await {
            Ok(Ok(true)) => info!("released the leader lease"),
            Ok(Ok(false)) => info!("the leader lease is not ours; nothing to release"),
            Ok(Err(e)) => warn!(error = %e, "cannot release the leader lease; it will expire"),
            Err(_) => warn!("releasing the leader lease timed out; it will expire"),
        }
    }
}

/// Clears the holder if it is this replica, with a resourceVersion precondition: if anyone changed
/// the Lease since it was read, the API server refuses and the Lease is left alone.
async fn release_if_held(
    leases: &Api<Lease>,
    settings: &LeaseSettings,
) -> Result<bool, kube::Error> {
    let Some(lease) = leases.get_opt(&settings.name).await? else {
        return Ok(false);
    };
    let holder = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref());
    if holder != Some(settings.identity.as_str()) {
        return Ok(false);
    }
    let patch = json!({
        "metadata": { "resourceVersion": lease.resource_version() },
        "spec": { "holderIdentity": null, "acquireTime": null, "renewTime": null },
    });
    leases
        .patch(
            &settings.name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(true)
}

/// The age beyond which the last renewal no longer proves leadership: the lease duration less one
/// tick to notice and one read that may time out, so this replica stops before a standby may start.
fn staleness_limit(duration: Duration) -> Duration {
    duration.saturating_sub(WATCHDOG_TICK * 2)
}

/// While the lease manager says this replica leads, confirms every tick that the Lease names it and
/// was renewed recently; sets `lost` when another replica holds it or the last renewal seen is too old.
async fn watchdog(
    leases: Api<Lease>,
    settings: LeaseSettings,
    duration: Duration,
    leading: watch::Receiver<bool>,
    lost: watch::Sender<bool>,
) {
    let limit = staleness_limit(duration);
    // The last renewal seen while leading; on becoming leader, the manager has just renewed.
    let mut last_renewal: Option<Timestamp> = None;
    loop {
        tokio::time::sleep(WATCHDOG_TICK).await;
        if !*leading.borrow() {
            last_renewal = None;
            continue;
        }
        let renewed_before = *last_renewal.get_or_insert_with(Timestamp::now);
        match tokio::time::timeout(WATCHDOG_TICK, leases.get_opt(&settings.name)).await {
            Ok(Ok(Some(lease))) => {
                let spec = lease.spec.unwrap_or_default();
                if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
                    error!(holder = ?spec.holder_identity, "the Lease names another holder");
                    let _ = lost.send(true);
                    return;
                }
                if let Some(renewed) = spec.renew_time {
                    last_renewal = Some(renewed.0.max(renewed_before));
                }
            }
            Ok(Ok(None)) => warn!(lease = %settings.name, "the Lease is gone"),
            Ok(Err(e)) => warn!(error = %e, "cannot read the Lease to confirm leadership"),
            Err(_) => warn!("reading the Lease timed out"),
        }
        let age = last_renewal.map_or(Duration::ZERO, |renewed| {
            Timestamp::now().duration_since(renewed).unsigned_abs()
        });
        if age > limit {
            error!(
                last_renewal_age = ?age,
                "cannot confirm a recent renewal of the Lease; stopping before a standby takes over"
            );
            let _ = lost.send(true);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_gives_up_before_its_lease_could_expire() {
        let duration = Duration::from_secs(15);
        let limit = staleness_limit(duration);
        // Renewals come at half the lease (7.5 s): far below the limit.
        assert!(limit >= Duration::from_secs(10), "{limit:?}");
        // The watchdog notices within a tick, after a read that may time out: still before expiry.
        assert!(limit + WATCHDOG_TICK * 2 <= duration);
    }
}
