//! The `ppio-gpu-operator` binary: `run` starts the controller, `crd` prints the CRDs.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ppio_gpu_operator::controller::{self, EndpointPolicy, Settings};
use ppio_gpu_operator::ppio;
use ppio_gpu_operator::telemetry::{self, LogFormat};
use tracing::{error, info};
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
    Run(RunArgs),
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
    #[arg(long, env = "PPIO_OPERATOR_WRITE_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    write_concurrency: u16,

    /// Timeout of one PPIO request, in seconds.
    #[arg(long, env = "PPIO_OPERATOR_PPIO_TIMEOUT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    ppio_timeout_seconds: u64,

    /// Log format on stderr.
    #[arg(long, env = "PPIO_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log filter, e.g. `info` or `info,ppio_gpu_operator=debug`.
    #[arg(long, env = "PPIO_OPERATOR_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match ppio_gpu_operator::api::crds_yaml() {
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
            runtime.block_on(run(args))
        }
    }
}

async fn run(args: RunArgs) -> ExitCode {
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            error!(error = %e, "cannot configure a Kubernetes client (in-cluster or kubeconfig)");
            return ExitCode::FAILURE;
        }
    };
    let settings = Settings {
        endpoints: EndpointPolicy::new(args.allowed_endpoints),
        view_concurrency: args.concurrency,
        write_concurrency: usize::from(args.write_concurrency),
        ppio: ppio::ClientConfig {
            request_timeout: Duration::from_secs(args.ppio_timeout_seconds),
            ..ppio::ClientConfig::default()
        },
        ..Settings::default()
    };
    info!(
        namespaces = ?args.namespaces,
        version = env!("CARGO_PKG_VERSION"),
        "starting the controller"
    );
    controller::run(client, settings, args.namespaces, shutdown_signal()).await;
    info!("stopped");
    ExitCode::SUCCESS
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
