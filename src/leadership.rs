//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly one runs
//! the controller and the others stand by to take over within the lease duration.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

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
pub struct Leadership {
    leading: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
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
        let manager = LeaseManagerBuilder::new(client, &settings.name)
            .with_namespace(&settings.namespace)
            .with_identity(&settings.identity)
            .with_field_manager(format!("ppio-gpu-operator-{}", settings.identity))
            .with_duration(seconds)
            .with_grace(grace)
            .build()
            .await?;
        let (leading, task) = manager.watch().await;
        info!(lease = %settings.name, namespace = %settings.namespace, identity = %settings.identity, "joined leader election");
        Ok(Leadership { leading, task })
    }

    /// Waits until this replica leads. False when the election stopped (its task failed).
    pub async fn acquired(&mut self) -> bool {
        self.leading.wait_for(|leading| *leading).await.is_ok()
    }

    /// A future that resolves when this replica stops leading.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
        let mut leading = self.leading.clone();
        async move {
            let _ = leading.wait_for(|leading| !*leading).await;
        }
    }

    /// Whether this replica leads now.
    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// Leaves the election, releasing the Lease if held so a standby takes over at once.
    pub async fn release(self) {
        drop(self.leading);
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(Ok(_))) => info!("released the leader lease"),
            Ok(Ok(Err(e))) => warn!(error = %e, "cannot release the leader lease; it will expire"),
            Ok(Err(e)) => warn!(error = %e, "the leader election task failed"),
            Err(_) => warn!("releasing the leader lease timed out; it will expire"),
        }
    }
}
