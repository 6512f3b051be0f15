//! The `ppio-gpu-operator` binary: `run` starts the controller, `crd` prints the CRDs.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Mirrors PPIO GPU cloud instances into Kubernetes as GpuInstance objects.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions (YAML) generated from the operator's types.
    Crd,
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
    }
}
