//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly one runs
//! the controller and the others stand by to take over within the lease duration.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

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

/// This replica's part in the election. Dropping it without [`Leadership::release`] leaves the Lease
/// to expire on its own.
///
/// Besides the lease manager's own view, a watchdog reads the Lease and declares leadership lost when
/// another replica holds it, or when this replica could not confirm a fresh renewal for longer than
/// the lease duration minus the renewal margin: a leader that cannot renew (API errors, a partition)
/// must stop before a standby may take over.
pub struct Leadership {
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
        let seconds = settings.duration.as_secs().max(2);
        // Renew well before expiry: a third of the duration, at least a second.
        let grace = (seconds / 3).max(1);
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
        let (lost_tx, lost) = watch::channel(false);
        let watchdog = tokio::spawn(watchdog(
            Api::namespaced(client, &settings.namespace),
            settings.clone(),
            Duration::from_secs(seconds),
            Duration::from_secs(grace),
            leading.clone(),
            lost_tx,
        ));
        Ok(Leadership {
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

    /// Leaves the election without touching the Lease: after losing it, whatever this replica believes
    /// about the Lease is stale, and releasing could clear the new holder's claim.
    pub fn abandon(self) {
        self.watchdog.abort();
        self.task.abort();
    }

    /// Leaves the election, releasing the Lease if held so a standby takes over at once.
    pub async fn release(self) {
        self.watchdog.abort();
        drop(self.leading);
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(Ok(_))) => info!("released the leader lease"),
            Ok(Ok(Err(e))) => warn!(error = %e, "cannot release the leader lease; it will expire"),
            Ok(Err(e)) => warn!(error = %e, "the leader election task failed"),
            Err(_) => warn!("releasing the leader lease timed out; it will expire"),
        }
    }
}

/// Confirms, while the lease manager says this replica leads, that the Lease really names it and was
/// renewed recently; sets `lost` when it does not, or when no confirmation came for `duration - grace`.
async fn watchdog(
    leases: Api<Lease>,
    settings: LeaseSettings,
    duration: Duration,
    grace: Duration,
    leading: watch::Receiver<bool>,
    lost: watch::Sender<bool>,
) {
    let deadline = duration.saturating_sub(grace).max(Duration::from_secs(1));
    let mut confirmed = Instant::now();
    loop {
        tokio::time::sleep(grace.min(Duration::from_secs(2))).await;
        if !*leading.borrow() {
            confirmed = Instant::now();
            continue;
        }
        match leases.get_opt(&settings.name).await {
            Ok(Some(lease)) => {
                let spec = lease.spec.unwrap_or_default();
                if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
                    error!(holder = ?spec.holder_identity, "the Lease names another holder");
                    let _ = lost.send(true);
                    return;
                }
                let fresh = spec.renew_time.is_some_and(|renewed| {
                    jiff::Timestamp::now()
                        .duration_since(renewed.0)
                        .unsigned_abs()
                        < duration
                });
                if fresh {
                    confirmed = Instant::now();
                }
            }
            Ok(None) => warn!(lease = %settings.name, "the Lease is gone"),
            Err(e) => warn!(error = %e, "cannot read the Lease to confirm leadership"),
        }
        if confirmed.elapsed() > deadline {
            error!(
                unconfirmed_for = ?confirmed.elapsed(),
                "cannot confirm the Lease was renewed; stopping before a standby takes over"
            );
            let _ = lost.send(true);
            return;
        }
    }
}
