//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly one runs
//! the controller and the others stand by to take over when it stops renewing.
//!
//! A small elector of our own, modelled on client-go's (the [`decision`] module holds its rules and
//! why they hold under clock skew). Its shell here reads and writes the Lease with `get`, `create`
//! and `update`, every update conditional on the resourceVersion it was decided on:
//! - a standby reads the Lease every retry period and takes it when it is free, or when it has not
//!   seen it change for the holder's lease duration by its own monotonic clock;
//! - the leader renews every retry period, and declares leadership lost as soon as the Lease names
//!   another holder, or when it has not renewed successfully within the renew deadline (measured on
//!   its own monotonic clock from when that renewal was sent), which is before any standby may take
//!   over;
//! - on shutdown the leader clears the holder, so a standby takes over at once.
//!
//! Wall clocks are only written into the Lease for people to read, never compared between nodes.
//!
//! The elector runs on a thread of its own, with a single-threaded tokio runtime and a Kubernetes
//! client of its own (built as the controller's, [`crate::process::kube_client`]): nothing the controller does on the process's runtime (a sync planning a page
//! at the body cap, a burst of watch events, writes in flight, a runtime with a single worker under
//! a CPU limit) can delay a renewal, so the leader renews on time or, when the API server does not
//! answer, steps down before a standby may take over, however busy the rest of the process is. The
//! client is built on that thread because a kube client's request buffer and connections run on the
//! runtime it is built in.

pub mod clock;
pub mod decision;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::kube_client::{self, KubeClientSettings};
pub use clock::{Clock, SystemClock};
pub use decision::MIN_LEASE_DURATION;
use decision::{Deposition, LeaseRecord, Observation, Step, Timing};

/// The field manager of the elector's writes.
const FIELD_MANAGER: &str = ppio_gpu_core::OPERATOR_NAME;

/// How long the release on shutdown may take before the Lease is left to expire.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the Lease is and who this replica is.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Namespace of the Lease (the operator's own namespace).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity, unique among replicas (the pod name).
    pub identity: String,
    /// How long a holding lasts without renewal (at least [`MIN_LEASE_DURATION`]): a standby takes
    /// over within this plus one retry period after the leader stopped renewing.
    pub duration: Duration,
    /// The bounds of the elector's Kubernetes client: the controller's
    /// ([`crate::process::kube_client`]).
    pub client: KubeClientSettings,
}

/// The elector could not start.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// Its thread, its runtime or its Kubernetes client could not be made.
    #[error("cannot start the leader elector: {reason}")]
    Start {
        /// What failed.
        reason: String,
    },
    /// The first read of the Lease failed: the API server is unreachable or refuses (RBAC).
    #[error(
        "cannot read the leader Lease {namespace}/{name} (check the API server and the get, create and update grants on Leases): {source}"
    )]
    Read {
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
        /// What the API server answered.
        #[source]
        source: kube::Error,
    },
}

/// This replica's part in the election, seen from outside the elector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Standby,
    Leading,
    /// Led, and no longer does (or can no longer confirm it does); the elector has stopped.
    Lost,
}

/// This replica's part in the election. Dropping it stops competing and leaves the Lease as it is
/// (a holding then expires on its own).
pub struct Leadership {
    role: watch::Receiver<Role>,
    /// Stops the elector's thread; dropped, it stops it without touching the Lease.
    stop: Option<oneshot::Sender<Stop>>,
}

/// What the elector's thread is asked to do when it stops.
enum Stop {
    /// Clear the holder if this replica leads, and say how that went.
    Release(oneshot::Sender<Released>),
}

/// How a release went.
enum Released {
    Done,
    NotOurs,
    Failed(kube::Error),
    TimedOut,
}

impl Leadership {
    /// Joins the election with the system's clocks and keeps competing in the background, on a
    /// thread of its own with a client built from `config` (see the module documentation).
    pub async fn join(
        config: kube::Config,
        settings: &LeaseSettings,
    ) -> Result<Self, ElectionError> {
        Self::join_with_clock(config, settings, Arc::new(SystemClock)).await
    }

    /// Joins the election reading the time from `clock`.
    pub async fn join_with_clock(
        config: kube::Config,
        settings: &LeaseSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ElectionError> {
        let (joined_tx, joined) = oneshot::channel();
        let (stop, stopped) = oneshot::channel();
        let (role_tx, role) = watch::channel(Role::Standby);
        let settings = settings.clone();
        let started = std::thread::Builder::new()
            .name("leader-election".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = joined_tx.send(Err(ElectionError::Start {
                            reason: format!("its runtime: {e}"),
                        }));
                        return;
                    }
                };
                runtime.block_on(elect(config, settings, clock, role_tx, joined_tx, stopped));
            });
        if let Err(e) = started {
            return Err(ElectionError::Start {
                reason: format!("its thread: {e}"),
            });
        }
        match joined.await {
            Ok(Ok(())) => Ok(Leadership {
                role,
                stop: Some(stop),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ElectionError::Start {
                reason: "its thread ended before reading the Lease".to_owned(),
            }),
        }
    }

    /// Waits until this replica leads. False when the elector stopped without leading.
    pub async fn acquired(&mut self) -> bool {
        matches!(
            self.role
                .wait_for(|role| *role != Role::Standby)
                .await
                .as_deref(),
            Ok(Role::Leading)
        )
    }

    /// A future that resolves when this replica stops leading, or can no longer confirm that it does.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
        let mut role = self.role.clone();
        async move {
            // An error means the elector is gone, and with it any confirmation of leadership.
            let _ = role.wait_for(|role| *role == Role::Lost).await;
        }
    }

    /// Whether this replica leads now.
    pub fn is_leading(&self) -> bool {
        *self.role.borrow() == Role::Leading
    }

    /// Leaves the election without touching the Lease (after losing it).
    pub fn abandon(self) {
        drop(self);
    }

    /// Leaves the election, releasing the Lease if this replica leads and the Lease still names it,
    /// so a standby takes over at once. Call it only after the controller has stopped.
    pub async fn release(mut self) {
        if !self.is_leading() {
            info!("not leading; the leader lease is not ours to release");
            return;
        }
        let (reply, released) = oneshot::channel();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(Stop::Release(reply));
        }
        match released.await {
            Ok(Released::Done) => info!("released the leader lease"),
            Ok(Released::NotOurs) => info!("the leader lease is not ours; nothing to release"),
            Ok(Released::Failed(e)) => {
                warn!(error = %e, "cannot release the leader lease; it will expire")
            }
            Ok(Released::TimedOut) => warn!("releasing the leader lease timed out; it will expire"),
            Err(_) => {
                warn!("the leader elector stopped before releasing the lease; it will expire")
            }
        }
    }
}

/// The elector's thread: builds its client, reads the Lease once (so that a refusal shows at start
/// rather than as a standby that never leads), says so through `joined`, then competes until it
/// loses or is stopped; asked to, it releases the Lease on its way out.
async fn elect(
    config: kube::Config,
    settings: LeaseSettings,
    clock: Arc<dyn Clock>,
    role: watch::Sender<Role>,
    joined: oneshot::Sender<Result<(), ElectionError>>,
    stopped: oneshot::Receiver<Stop>,
) {
    let client = match kube_client::build(config, settings.client) {
        Ok(client) => client,
        Err(e) => {
            let _ = joined.send(Err(ElectionError::Start {
                reason: format!("its Kubernetes client: {e}"),
            }));
            return;
        }
    };
    let leases: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let lease = match leases.get_opt(&settings.name).await {
        Ok(lease) => lease,
        Err(source) => {
            let _ = joined.send(Err(ElectionError::Read {
                namespace: settings.namespace.clone(),
                name: settings.name.clone(),
                source,
            }));
            return;
        }
    };
    let elector = Elector {
        leases: leases.clone(),
        name: settings.name.clone(),
        identity: settings.identity.clone(),
        timing: Timing::for_lease(settings.duration),
        clock: clock.clone(),
        observation: Some(Observation {
            lease: lease.as_ref().map(LeaseRecord::of),
            since: clock.monotonic(),
        }),
        lease,
        renewal_sent: None,
        role,
    };
    info!(lease = %settings.name, namespace = %settings.namespace, identity = %settings.identity, "joined leader election");
    if joined.send(Ok(())).is_err() {
        return;
    }
    let stop = tokio::select! {
        () = elector.run() => return,
        stop = stopped => stop,
    };
    // The elector is stopped (dropped) by now: no renewal can race the release.
    if let Ok(Stop::Release(reply)) = stop {
        let release = release_if_held(&leases, &settings, clock.as_ref());
        let released = match tokio::time::timeout(RELEASE_TIMEOUT, release).await {
            Ok(Ok(true)) => Released::Done,
            Ok(Ok(false)) => Released::NotOurs,
            Ok(Err(e)) => Released::Failed(e),
            Err(_) => Released::TimedOut,
        };
        let _ = reply.send(released);
    }
}

/// Clears the holder if it is this replica, with the resourceVersion just read as precondition: if
/// anyone changed the Lease since, the API server refuses and the Lease is left alone.
async fn release_if_held(
    leases: &Api<Lease>,
    settings: &LeaseSettings,
    clock: &dyn Clock,
) -> Result<bool, kube::Error> {
    let Some(mut lease) = leases.get_opt(&settings.name).await? else {
        return Ok(false);
    };
    let spec = lease.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
        return Ok(false);
    }
    lease.spec = Some(decision::released_spec(&spec, clock.wall()));
    leases
        .replace(&settings.name, &write_params(), &lease)
        .await?;
    Ok(true)
}

fn write_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    }
}

/// A write refused because the Lease changed since it was read (or appeared, or vanished).
fn is_lost_race(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409 || status.code == 404)
}

/// What one attempt on the Lease came to.
enum Attempt {
    /// This replica holds the Lease, as just written.
    Holding,
    /// Not holding: look again after this long.
    Waiting(Duration),
    /// This replica led, and the Lease says otherwise.
    Deposed(Deposition),
}

/// The background task that competes for the Lease and, once holding it, renews it.
struct Elector {
    leases: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    clock: Arc<dyn Clock>,
    observation: Option<Observation>,
    /// The Lease as last read or written: its resourceVersion is the precondition of the next write.
    lease: Option<Lease>,
    /// When the last successful renewal (or take-over) was sent, while leading.
    renewal_sent: Option<Instant>,
    role: watch::Sender<Role>,
}

impl Elector {
    async fn run(mut self) {
        loop {
            match self.renewal_sent {
                None => self.stand_by().await,
                Some(sent) => {
                    if !self.lead(sent).await {
                        let _ = self.role.send(Role::Lost);
                        return;
                    }
                }
            }
        }
    }

    /// One standby round: read, maybe take the Lease, then wait (unless now leading).
    async fn stand_by(&mut self) {
        let wait =
            match tokio::time::timeout(self.timing.renew_deadline, self.acquire_or_renew()).await {
                Ok(Ok(Attempt::Holding)) => {
                    info!(identity = %self.identity, "acquired the leader Lease");
                    let _ = self.role.send(Role::Leading);
                    // Just written: the first renewal is due a retry period from now.
                    tokio::time::sleep(self.timing.retry_period).await;
                    return;
                }
                Ok(Ok(Attempt::Waiting(wait))) => wait,
                // Cannot happen while standing by; wait as after any other failure.
                Ok(Ok(Attempt::Deposed(_))) => self.timing.retry_period,
                Ok(Err(e)) => {
                    warn!(error = %e, "cannot read or take the leader Lease; retrying");
                    self.timing.retry_period
                }
                Err(_) => {
                    warn!("reading or taking the leader Lease timed out; retrying");
                    self.timing.retry_period
                }
            };
        tokio::time::sleep(crate::process::backoff::LEASE_RETRY.apply(wait)).await;
    }

    /// One leader round: renew, then wait for the next. False when leadership is lost: the Lease
    /// names someone else, or no renewal succeeded within the renew deadline.
    async fn lead(&mut self, renewal_sent: Instant) -> bool {
        let deadline = decision::renew_deadline(renewal_sent, &self.timing);
        let started = self.clock.monotonic();
        let Some(left) = deadline
            .checked_duration_since(started)
            .filter(|d| !d.is_zero())
        else {
            error!(
                renew_deadline = ?self.timing.renew_deadline,
                "cannot confirm a recent renewal of the Lease; stopping before a standby may take over"
            );
            return false;
        };
        match tokio::time::timeout(left, self.renew()).await {
            Ok(Ok(Attempt::Holding)) => {}
            Ok(Ok(Attempt::Deposed(deposition))) => {
                match deposition {
                    Deposition::TakenBy(holder) => {
                        error!(%holder, "the Lease names another holder")
                    }
                    Deposition::Cleared => error!("the Lease was cleared by someone else"),
                    Deposition::Deleted => error!("the Lease was deleted"),
                }
                return false;
            }
            Ok(Ok(Attempt::Waiting(_))) => warn!("renewing the leader Lease lost a race; retrying"),
            Ok(Err(e)) => warn!(error = %e, "cannot renew the leader Lease; retrying"),
            Err(_) => warn!("renewing the leader Lease timed out"),
        }
        // The next round starts a retry period after this one, or at the deadline (to stop then).
        let deadline =
            decision::renew_deadline(self.renewal_sent.unwrap_or(renewal_sent), &self.timing);
        let next = (started + self.timing.retry_period).min(deadline);
        tokio::time::sleep_until(next).await;
        true
    }

    /// Renews with the Lease as last written; if that no longer matches the API server's, reads it
    /// and decides again.
    async fn renew(&mut self) -> Result<Attempt, kube::Error> {
        if let Some(mut lease) = self.lease.clone() {
            let spec = lease.spec.clone().unwrap_or_default();
            lease.spec = Some(decision::renewed_spec(
                &spec,
                self.clock.wall(),
                &self.timing,
            ));
            let sent = self.clock.monotonic();
            match self
                .leases
                .replace(&self.name, &write_params(), &lease)
                .await
            {
                Ok(written) => {
                    self.hold(written, sent);
                    return Ok(Attempt::Holding);
                }
                Err(e) if is_lost_race(&e) => {}
                Err(e) => return Err(e),
            }
        }
        self.acquire_or_renew().await
    }

    /// Reads the Lease, notes what changed, and takes, renews or creates it when the rules allow.
    async fn acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let lease = self.leases.get_opt(&self.name).await?;
        let now = self.clock.monotonic();
        let observation = Observation::update(
            self.observation.take(),
            lease.as_ref().map(LeaseRecord::of),
            now,
        );
        let step = decision::decide(
            &observation,
            &self.identity,
            self.renewal_sent.is_some(),
            &self.timing,
            now,
        );
        self.observation = Some(observation);
        self.lease = lease;
        let spec = self.lease.as_ref().and_then(|l| l.spec.clone());
        let wall = self.clock.wall();
        let (lease, create) = match step {
            Step::Wait { recheck } => return Ok(Attempt::Waiting(recheck)),
            Step::Deposed(deposition) => return Ok(Attempt::Deposed(deposition)),
            Step::Create => {
                let spec = decision::taken_spec(&self.identity, None, wall, &self.timing);
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                (lease, true)
            }
            Step::Take | Step::Renew => {
                let spec = spec.unwrap_or_default();
                let spec = if step == Step::Renew {
                    decision::renewed_spec(&spec, wall, &self.timing)
                } else {
                    decision::taken_spec(&self.identity, Some(&spec), wall, &self.timing)
                };
                let mut lease = self.lease.clone().unwrap_or_default();
                lease.spec = Some(spec);
                (lease, false)
            }
        };
        let sent = self.clock.monotonic();
        let written = if create {
            self.leases.create(&write_params(), &lease).await
        } else {
            self.leases
                .replace(&self.name, &write_params(), &lease)
                .await
        };
        match written {
            Ok(written) => {
                self.hold(written, sent);
                Ok(Attempt::Holding)
            }
            // Someone else wrote first: the next read shows who.
            Err(e) if is_lost_race(&e) => Ok(Attempt::Waiting(Duration::ZERO)),
            Err(e) => Err(e),
        }
    }

    /// Notes a successful write of this replica's holding, sent at `sent`.
    fn hold(&mut self, written: Lease, sent: Instant) {
        self.observation = Some(Observation::update(
            self.observation.take(),
            Some(LeaseRecord::of(&written)),
            self.clock.monotonic(),
        ));
        self.lease = Some(written);
        self.renewal_sent = Some(sent);
    }
}
