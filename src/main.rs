//! The `ppio-gpu-operator` binary: `run` starts the controller, `crd` prints the CRDs.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use ppio_gpu_core::services::{self, AddressPolicy};
use ppio_gpu_operator::controller::{self, Context, EndpointPolicy, Settings};
use ppio_gpu_operator::process::http::metrics_auth::MetricsAuth;
use ppio_gpu_operator::process::http::{self, Health};
use ppio_gpu_operator::process::kube_client::{self, KubeClientSettings};
use ppio_gpu_operator::process::leadership::{Leadership, LeaseSettings};
use ppio_gpu_operator::process::metrics::Metrics;
use ppio_gpu_operator::process::telemetry::{self, LogFormat};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use url::Url;

/// Mirrors PPIO GPU cloud instances into Kubernetes as GpuInstance objects.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller (in a cluster, or out of it with the current kubeconfig).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions (YAML) generated from the operator's types.
    Crd,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Namespaces whose GpuInstanceViews to sync (repeat or comma-separate). Default: all namespaces.
    #[arg(
        long = "namespace",
        env = "PPIO_OPERATOR_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,

    /// Base URLs besides https://api.ppio.com that views may name as spec.endpoint (repeat or
    /// comma-separate). The API key is sent to the endpoint, so allow only servers you trust.
    #[arg(
        long = "allowed-endpoint",
        env = "PPIO_OPERATOR_ALLOWED_ENDPOINTS",
        value_delimiter = ','
    )]
    allowed_endpoints: Vec<Url>,

    /// Views synced at the same time.
    #[arg(long, env = "PPIO_OPERATOR_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,

    /// Kubernetes writes in flight at the same time within one view's sync.
    #[arg(long, env = "PPIO_OPERATOR_WRITE_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    write_concurrency: u16,

    /// Timeout of one PPIO request, in seconds.
    #[arg(long, env = "PPIO_OPERATOR_PPIO_TIMEOUT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    ppio_timeout_seconds: u64,

    /// Deadline of one Kubernetes API request, in seconds: its retries (a couple, of 429, 503 and
    /// 504, `Retry-After` honoured up to 2 s) and reading its answer included. Watches are exempt.
    #[arg(long, env = "PPIO_OPERATOR_KUBE_REQUEST_TIMEOUT_SECONDS", default_value_t = kube_client::DEFAULT_REQUEST_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=300))]
    kube_request_timeout_seconds: u64,

    /// Requests a minute to PPIO per API key (views sharing a key share it); 0 for no limit.
    #[arg(
        long,
        env = "PPIO_OPERATOR_PPIO_REQUESTS_PER_MINUTE",
        default_value_t = 100
    )]
    ppio_requests_per_minute: u32,

    /// Most memory, in MiB, that the memos of all views together keep of earlier listings (so
    /// that what PPIO sends again is not read again); the views synced least recently give theirs
    /// up first. Each view's memo is capped at 64 MiB besides. 0 keeps none.
    #[arg(
        long,
        env = "PPIO_OPERATOR_MEMO_MEMORY_LIMIT_MIB",
        default_value_t = (controller::DEFAULT_MEMO_MEMORY_LIMIT / (1024 * 1024)) as u64,
        value_parser = clap::value_parser!(u64).range(0..=65_536)
    )]
    memo_memory_limit_mib: u64,

    /// Log format on stderr.
    #[arg(long, env = "PPIO_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log filter, e.g. `info` or `info,ppio_gpu_operator=debug`.
    #[arg(long, env = "PPIO_OPERATOR_LOG_LEVEL", default_value = "info")]
    log_level: String,

    /// Address of the HTTP endpoints /healthz, /readyz and /metrics (port 0 picks a free one).
    #[arg(
        long,
        env = "PPIO_OPERATOR_HTTP_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    http_address: SocketAddr,

    /// Serve /metrics only to bearer tokens that the API server authenticates (TokenReview) and
    /// authorizes for `get` on the non-resource URL /metrics (SubjectAccessReview). The operator then
    /// needs `create` on tokenreviews and subjectaccessreviews. /healthz and /readyz stay open.
    #[arg(long, env = "PPIO_OPERATOR_METRICS_AUTH", default_value_t = false, action = clap::ArgAction::Set)]
    metrics_auth: bool,

    /// Also export `ppio_gpu_operator_instance_info`: one series per listed PPIO instance (its ID,
    /// name, status, region, billing mode and product), so a Prometheus with many instances pays
    /// for one series each.
    #[arg(long, env = "PPIO_OPERATOR_METRICS_INSTANCE_INFO", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    metrics_instance_info: bool,

    /// Keep a Service and EndpointSlices for the mirrors of views that set spec.services.enabled.
    /// The operator then needs get, list, watch, create, patch and delete on services and
    /// endpointslices.
    #[arg(long, env = "PPIO_OPERATOR_SERVICES", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    services: bool,

    /// The cluster's own address ranges (pod, Service and node CIDRs; repeat or comma-separate): a
    /// Service never routes to an address inside them, whatever PPIO answers. Declare them whenever
    /// --service-allowed-cidr is given (the operator warns otherwise), and any NAT64 or 6rd prefix
    /// of the cluster's own translator.
    #[arg(
        long = "service-cluster-cidr",
        env = "PPIO_OPERATOR_SERVICE_CLUSTER_CIDRS",
        value_delimiter = ','
    )]
    service_cluster_cidrs: Vec<IpNet>,

    /// Ranges of private (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7), shared
    /// (100.64.0.0/10) or documentation (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
    /// 2001:db8::/32, 3fff::/20) addresses that Services may nevertheless route to, e.g. a VPC
    /// reached over a VPN (repeat or comma-separate). Each must lie inside one of those blocks;
    /// nothing else can be allowed, cloud platform and metadata addresses never.
    #[arg(
        long = "service-allowed-cidr",
        env = "PPIO_OPERATOR_SERVICE_ALLOWED_CIDRS",
        value_delimiter = ',',
        value_parser = parse_allowed_cidr
    )]
    service_allowed_cidrs: Vec<IpNet>,

    /// Run the controller only while holding the leader Lease, so several replicas can run.
    #[arg(long, env = "PPIO_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,

    /// Sync only the views whose labels match this selector, and watch only their mirrors: one
    /// shard of the views, e.g. `sharding.ppio.io/key in (shard1)`, or `!sharding.ppio.io/key` for the
    /// views of no shard. It may constrain only the label `sharding.ppio.io/key`, which mirrors
    /// carry from their view. Each shard elects its own leader on its own Lease.
    #[arg(long, env = "PPIO_OPERATOR_WATCH_LABEL_SELECTOR", value_parser = parse_shard_selector)]
    watch_label_selector: Option<String>,

    /// Name of the leader Lease. Default: `ppio-gpu-operator`, or, with --watch-label-selector,
    /// `ppio-gpu-operator-shard-` and a hash of the selector, so each shard has its own.
    #[arg(long, env = "PPIO_OPERATOR_LEASE_NAME")]
    lease_name: Option<String>,

    /// Namespace of the leader Lease. Default: the operator's own namespace (POD_NAMESPACE, the
    /// in-cluster namespace, or the kubeconfig's).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,

    /// Seconds a leader holds the Lease without renewing it (at least 10): a standby takes over within this.
    #[arg(long, env = "PPIO_OPERATOR_LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(10..=300))]
    lease_duration_seconds: u64,

    /// This replica's identity in the election and in Events. Default: the pod name, else the host name.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match ppio_gpu_core::api::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot render the CRDs: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            telemetry::init(args.log_format, &args.log_level);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(e) => {
                    error!(error = %e, "cannot start the async runtime");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(run(*args))
        }
    }
}

async fn run(args: RunArgs) -> ExitCode {
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

/// Checks a `--watch-label-selector`: it may constrain only the shard label, which mirrors carry
/// too, so that the shard's watch of mirrors sees exactly the mirrors of its views.
fn parse_shard_selector(selector: &str) -> Result<String, String> {
    controller::check_shard_selector(selector).map(|()| selector.trim().to_owned())
}

fn parse_allowed_cidr(range: &str) -> Result<IpNet, String> {
    let range: IpNet = range.trim().parse().map_err(|e| format!("{e}"))?;
    services::check_allowed_range(&range).map_err(|e| e.to_string())?;
    Ok(range)
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
