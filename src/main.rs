//! The `ppio-gpu-operator` binary: `run` starts the operator, `crd` prints the CRDs.

use std::process::ExitCode;

use clap::Parser;
use ppio_gpu_operator::flags::{Cli, Command};
use ppio_gpu_operator::process::{lifecycle, telemetry};
use tracing::error;

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
            runtime.block_on(lifecycle::run(*args))
        }
    }
}
