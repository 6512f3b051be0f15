//! The process's life: its HTTP endpoints, the leader election, the controller while leading, and
//! a graceful stop on SIGTERM or Ctrl-C (syncs in flight drain, the Lease is released).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ppio_gpu_core::services::AddressPolicy;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::controller::{self, Context, EndpointPolicy, Settings};
use crate::flags::RunArgs;
use crate::process::http::metrics_auth::MetricsAuth;
use crate::process::http::{self, Health};
use crate::process::kube_client::{self, KubeClientSettings};
use crate::process::leadership::{Leadership, LeaseSettings};
use crate::process::metrics::Metrics;

/// Runs the operator as `ppio-gpu-operator run` was asked to, until it stops; its exit code.
pub async fn run(args: RunArgs) -> ExitCode {
    let address_policy = AddressPolicy {
        cluster: args.service_cluster_cidrs.clone(),
        allowed: args.service_allowed_cidrs.clone(),
    };
    if let Err(e) = address_policy.check() {
        // The exit code of a command line clap refuses: the same mistake, found across two flags.
        error!(error = %e, "invalid --service-allowed-cidr");
        return ExitCode::from(2);
    }
    if args.services {
        for warning in address_policy.warnings() {
            warn!("{warning}");
        }
    }
    // The leader elector builds a client of its own from the same configuration and bounds, on its
    // own thread.
    let config = match kube::Config::infer().await {
        Ok(config) => config,
        Err(e) => {
            error!(error = %e, "cannot configure a Kubernetes client (in-cluster or kubeconfig)");
            return ExitCode::FAILURE;
        }
    };
    let client_settings = KubeClientSettings {
        request_timeout: Duration::from_secs(args.kube_request_timeout_seconds),
    };
    let client = match kube_client::build(config.clone(), client_settings) {
        Ok(client) => client,
        Err(e) => {
            error!(error = %e, "cannot configure a Kubernetes client (in-cluster or kubeconfig)");
            return ExitCode::FAILURE;
        }
    };
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let settings = Settings {
        endpoints: EndpointPolicy::new(args.allowed_endpoints.clone()),
        view_concurrency: args.concurrency,
        write_concurrency: usize::from(args.write_concurrency),
        ppio: ppio::ClientConfig {
            request_timeout: Duration::from_secs(args.ppio_timeout_seconds),
            requests_per_minute: args.ppio_requests_per_minute,
            ..ppio::ClientConfig::default()
        },
        memo_memory_limit: usize::try_from(args.memo_memory_limit_mib << 20).unwrap_or(usize::MAX),
        product_list_ttl: Duration::from_secs(args.product_list_ttl_seconds),
        label_selector: args.watch_label_selector.clone(),
        metrics_instance_info: args.metrics_instance_info,
        services: args.services.then_some(address_policy),
        ..Settings::default()
    };
    let metrics = Metrics::new();
    let health = Arc::new(Health::default());

    // One stop signal for everything: SIGTERM or Ctrl-C, or the controller ending for another reason.
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            info!("shutting down");
            stop.cancel();
        });
    }
    let stopping = stop.clone();

    let listener = match tokio::net::TcpListener::bind(args.http_address).await {
        Ok(listener) => listener,
        Err(e) => {
            error!(address = %args.http_address, error = %e, "cannot listen for the HTTP endpoints");
            return ExitCode::FAILURE;
        }
    };
    if let Ok(address) = listener.local_addr() {
        info!(%address, metrics_auth = args.metrics_auth, "serving /healthz, /readyz and /metrics");
    }
    let metrics_auth = args
        .metrics_auth
        .then(|| Arc::new(MetricsAuth::new(client.clone())));
    let server = tokio::spawn(http::serve(
        listener,
        health.clone(),
        metrics.clone(),
        metrics_auth,
        stopping.clone().cancelled_owned(),
    ));

    info!(namespaces = ?args.namespaces, %identity, version = env!("CARGO_PKG_VERSION"), "starting");
    let context = Arc::new(Context::new(
        client.clone(),
        settings,
        metrics.clone(),
        &identity,
    ));
    let code = if args.leader_election {
        let lease = LeaseSettings {
            namespace: args
                .lease_namespace
                .clone()
                .unwrap_or_else(|| own_namespace(&client)),
            name: args.lease_name.clone().unwrap_or_else(|| {
                controller::default_lease_name(args.watch_label_selector.as_deref())
            }),
            identity: identity.clone(),
            duration: Duration::from_secs(args.lease_duration_seconds),
            client: client_settings,
        };
        run_as_elected(
            config,
            lease,
            context,
            args.namespaces,
            health,
            metrics,
            &stopping,
        )
        .await
    } else {
        health.set_leadership(true);
        metrics.leader.set(1);
        run_controller(
            context,
            args.namespaces,
            health,
            &stopping,
            std::future::pending(),
        )
        .await;
        ExitCode::SUCCESS
    };
    stop.cancel();
    let _ = server.await;
    info!("stopped");
    code
}

/// How long syncs in flight may finish after SIGTERM before they are abandoned (an abandoned sync
/// changes nothing wrong: what it wrote is complete per object, the rest is planned again). Kept below
/// the chart's terminationGracePeriodSeconds (30), with the Lease release (at most 5 s) after it, so
/// the Lease is released before the pod is killed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// How the controller ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Shutdown was asked for and syncs in flight finished (or were abandoned after the drain time).
    Shutdown,
    /// `abort` resolved: syncs in flight were cancelled at once.
    Aborted,
}

/// Runs the controller until shutdown (graceful, at most [`DRAIN_TIMEOUT`]) or until `abort` resolves
/// (immediate: dropping the controller cancels every sync in flight).
async fn run_controller(
    context: Arc<Context>,
    namespaces: Vec<String>,
    health: Arc<Health>,
    stopping: &CancellationToken,
    abort: impl std::future::Future<Output = ()>,
) -> Ended {
    let controller = controller::run(
        context,
        namespaces,
        health,
        stopping.clone().cancelled_owned(),
    );
    let drain_expired = {
        let stop = stopping.clone().cancelled_owned();
        async move {
            stop.await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        }
    };
    tokio::select! {
        _ = controller => Ended::Shutdown,
        _ = drain_expired => {
            warn!(timeout = ?DRAIN_TIMEOUT, "syncs in flight did not finish in time; abandoning them");
            Ended::Shutdown
        }
        _ = abort => Ended::Aborted,
    }
}

/// Waits for leadership, runs the controller while leading, and releases the Lease on shutdown. The
/// elector renews the Lease on a thread of its own, so a busy controller cannot make it late.
/// Losing the Lease (or no longer being able to confirm it) cancels every sync at once and ends the
/// process with an error, so that it restarts as a standby with no stale state.
async fn run_as_elected(
    config: kube::Config,
    lease: LeaseSettings,
    context: Arc<Context>,
    namespaces: Vec<String>,
    health: Arc<Health>,
    metrics: Metrics,
    stopping: &CancellationToken,
) -> ExitCode {
    let joined = tokio::select! {
        joined = Leadership::join(config, &lease) => joined,
        _ = stopping.cancelled() => return ExitCode::SUCCESS,
    };
    let mut leadership = match joined {
        Ok(leadership) => leadership,
        Err(e) => {
            error!(error = %e, lease = %lease.name, namespace = %lease.namespace, "cannot join the leader election");
            return ExitCode::FAILURE;
        }
    };
    health.set_leadership(leadership.is_leading());
    tokio::select! {
        acquired = leadership.acquired() => {
            if !acquired {
                error!("the leader election stopped");
                return ExitCode::FAILURE;
            }
        }
        _ = stopping.cancelled() => {
            leadership.release().await;
            return ExitCode::SUCCESS;
        }
    }
    info!(identity = %lease.identity, "leading: starting the controller");
    health.set_leadership(true);
    metrics.leader.set(1);

    let ended = run_controller(
        context,
        namespaces,
        health.clone(),
        stopping,
        leadership.lost(),
    )
    .await;
    metrics.leader.set(0);
    health.set_leadership(false);
    if ended == Ended::Aborted {
        leadership.abandon();
        error!("lost the leader Lease; exiting so this replica restarts as a standby");
        ExitCode::FAILURE
    } else {
        leadership.release().await;
        ExitCode::SUCCESS
    }
}

/// The pod name, else the host name, else a random name.
fn default_identity() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("ppio-gpu-operator-{}", std::process::id()))
}

/// The namespace the operator runs in: the in-cluster service account's, else the kubeconfig's.
fn own_namespace(client: &kube::Client) -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|ns| ns.trim().to_owned())
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| client.default_namespace().to_owned())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
