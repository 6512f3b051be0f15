//! `ppio-simulator`: serves the PPIO GPU API simulator over HTTP, for the local demo and scripts.
//!
//! It prints exactly one line, `LISTENING http://<addr>`, on stdout once the port is bound (scripts
//! wait for it), logs to stderr, and stops cleanly on SIGTERM or Ctrl-C. The simulator itself, its
//! list endpoint and its `/_simulator/` control endpoints are documented in
//! `ppio_simulator`.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use ppio_simulator::{Simulator, SimulatorConfig, generate_instances, load_instances};
use tracing_subscriber::EnvFilter;

/// How long open requests may run on after SIGTERM or Ctrl-C.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serve a simulated PPIO GPU API v2 (GET /gpus/v2/instances) with control endpoints under
/// /_simulator/ for changing its instances, injecting faults and reading the requests it received.
#[derive(Debug, Parser)]
#[command(name = "ppio-simulator", version, about, long_about)]
struct Args {
    /// Address and port to listen on (port 0 picks a free one; the LISTENING line tells which).
    #[arg(long, env = "PPIO_SIMULATOR_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// API key the list endpoint accepts as `Authorization: Bearer <key>`. Repeat the flag for
    /// several keys; the environment variable takes a comma-separated list. At least one is required.
    #[arg(
        long = "api-key",
        value_name = "KEY",
        env = "PPIO_SIMULATOR_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    api_keys: Vec<String>,

    /// Serve the instance records in FILE: a JSON array of records in PPIO wire format, or a saved
    /// list response `{"data": [...]}`. Each record needs a unique string "id".
    #[arg(
        long,
        value_name = "FILE",
        env = "PPIO_SIMULATOR_INSTANCES",
        conflicts_with = "generate"
    )]
    instances: Option<PathBuf>,

    /// Serve N generated, realistic instance records (the same N and --seed give the same records).
    /// Without --instances or --generate the simulator starts empty; fill it with
    /// PUT /_simulator/instances.
    #[arg(long, value_name = "N", env = "PPIO_SIMULATOR_GENERATE")]
    generate: Option<usize>,

    /// Seed for --generate.
    #[arg(long, env = "PPIO_SIMULATOR_SEED", default_value_t = 42)]
    seed: u64,

    /// Page size when a request's `limit` is absent or 0.
    #[arg(long, env = "PPIO_SIMULATOR_DEFAULT_PAGE_SIZE", default_value_t = 20)]
    default_page_size: usize,

    /// Largest page size: a larger `limit` is clamped to it.
    #[arg(long, env = "PPIO_SIMULATOR_MAX_PAGE_SIZE", default_value_t = 100)]
    max_page_size: usize,

    /// Log format on stderr; the level is set with RUST_LOG (default `info`).
    #[arg(long, env = "PPIO_SIMULATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ppio-simulator: error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let config = config_from(&args)?;
    let instance_count = config.instances.len();
    let simulator = Simulator::try_new(config).map_err(|error| error.to_string())?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|error| format!("cannot read the bound address: {error}"))?;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "LISTENING http://{addr}")
        .and_then(|()| stdout.flush())
        .map_err(|error| format!("cannot write the LISTENING line to stdout: {error}"))?;
    drop(stdout);
    tracing::info!(%addr, instances = instance_count, "PPIO simulator serving");

    // After the signal, open requests (a `delay` fault can hold one for long) get a short grace period.
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel();
    let server = simulator.serve_with_shutdown(listener, async move {
        shutdown_signal().await;
        let _ = stopping_tx.send(());
    });
    let grace_period_over = async move {
        if stopping_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = server => result.map_err(|error| format!("server failed: {error}"))?,
        () = grace_period_over => tracing::warn!(
            grace = ?SHUTDOWN_GRACE,
            "requests still open after the grace period; stopping anyway"
        ),
    }
    tracing::info!("PPIO simulator stopped");
    Ok(())
}

/// Checks the arguments and builds the simulator's configuration.
fn config_from(args: &Args) -> Result<SimulatorConfig, String> {
    let api_keys: Vec<String> = args
        .api_keys
        .iter()
        .map(|key| key.trim().to_owned())
        .filter(|key| !key.is_empty())
        .collect();
    if api_keys.is_empty() {
        return Err("no API key given: pass --api-key KEY (repeatable) or set \
             PPIO_SIMULATOR_API_KEYS=key1,key2; clients must send one as \
             `Authorization: Bearer <key>`"
            .to_owned());
    }
    if args.default_page_size == 0 || args.max_page_size == 0 {
        return Err("--default-page-size and --max-page-size must be at least 1".to_owned());
    }
    if args.default_page_size > args.max_page_size {
        return Err(format!(
            "--default-page-size ({}) must not exceed --max-page-size ({})",
            args.default_page_size, args.max_page_size
        ));
    }
    let instances = match (&args.instances, args.generate) {
        (Some(path), _) => load_instances(path).map_err(|error| error.to_string())?,
        (None, Some(count)) => generate_instances(count, args.seed),
        (None, None) => Vec::new(),
    };
    Ok(SimulatorConfig {
        api_keys,
        default_page_size: args.default_page_size,
        max_page_size: args.max_page_size,
        instances,
    })
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Completes on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<SimulatorConfig, String> {
        let args =
            Args::try_parse_from(std::iter::once("ppio-simulator").chain(args.iter().copied()))
                .map_err(|error| error.to_string())?;
        config_from(&args)
    }

    #[test]
    fn refuses_to_start_without_an_api_key() {
        let error = config(&["--generate", "3"]).expect_err("must refuse");
        assert!(error.contains("--api-key"), "{error}");
        assert!(config(&["--api-key", " "]).is_err());
    }

    #[test]
    fn api_keys_repeat_and_split_on_commas() {
        let config = config(&["--api-key", "a", "--api-key", "b,c"]).expect("valid");
        assert_eq!(config.api_keys, vec!["a", "b", "c"]);
        assert!(config.instances.is_empty());
    }

    #[test]
    fn generates_instances_from_the_seed() {
        let config = config(&["--api-key", "k", "--generate", "4", "--seed", "7"]).expect("valid");
        assert_eq!(config.instances, generate_instances(4, 7));
    }

    #[test]
    fn instances_and_generate_exclude_each_other() {
        assert!(config(&["--api-key", "k", "--generate", "4", "--instances", "x.json"]).is_err());
    }

    #[test]
    fn page_sizes_must_be_consistent() {
        assert!(
            config(&[
                "--api-key",
                "k",
                "--default-page-size",
                "50",
                "--max-page-size",
                "10"
            ])
            .is_err()
        );
        assert!(config(&["--api-key", "k", "--default-page-size", "0"]).is_err());
    }
}
