//! The command line: `run` and its flags (each with its environment variable, as the chart sets
//! them), and `crd`. What the flags mean is said once, here; `ppio-gpu-operator run --help` prints it.

// The doc comments below are the flags' `--help` text, which shows URLs as they are written.
#![allow(rustdoc::bare_urls)]

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use ppio_gpu_core::services;
use url::Url;

use crate::controller;
use crate::process::kube_client;
use crate::process::telemetry::LogFormat;

/// Mirrors PPIO GPU cloud instances into Kubernetes as GpuInstance objects.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller (in a cluster, or out of it with the current kubeconfig).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions (YAML) generated from the operator's types.
    Crd,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Namespaces whose GpuInstanceViews to sync (repeat or comma-separate). Default: all namespaces.
    #[arg(
        long = "namespace",
        env = "PPIO_OPERATOR_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,

    /// Base URLs besides https://api.ppio.com that views may name as spec.endpoint (repeat or
    /// comma-separate). The API key is sent to the endpoint, so allow only servers you trust.
    #[arg(
        long = "allowed-endpoint",
        env = "PPIO_OPERATOR_ALLOWED_ENDPOINTS",
        value_delimiter = ','
    )]
    pub allowed_endpoints: Vec<Url>,

    /// Views synced at the same time.
    #[arg(long, env = "PPIO_OPERATOR_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,

    /// Kubernetes writes in flight at the same time within one view's sync.
    #[arg(long, env = "PPIO_OPERATOR_WRITE_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub write_concurrency: u16,

    /// Timeout of one PPIO request, in seconds.
    #[arg(long, env = "PPIO_OPERATOR_PPIO_TIMEOUT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub ppio_timeout_seconds: u64,

    /// Deadline of one Kubernetes API request, in seconds: its retries (a couple, of 429, 503 and
    /// 504, `Retry-After` honoured up to 2 s) and reading its answer included. Watches are exempt.
    #[arg(long, env = "PPIO_OPERATOR_KUBE_REQUEST_TIMEOUT_SECONDS", default_value_t = kube_client::DEFAULT_REQUEST_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=300))]
    pub kube_request_timeout_seconds: u64,

    /// Requests a minute to PPIO per API key (views sharing a key share it); 0 for no limit.
    #[arg(
        long,
        env = "PPIO_OPERATOR_PPIO_REQUESTS_PER_MINUTE",
        default_value_t = 100
    )]
    pub ppio_requests_per_minute: u32,

    /// Most memory, in MiB, that the memos of all views together keep of earlier listings (so
    /// that what PPIO sends again is not read again); the views synced least recently give theirs
    /// up first. Each view's memo is capped at 64 MiB besides. 0 keeps none.
    #[arg(
        long,
        env = "PPIO_OPERATOR_MEMO_MEMORY_LIMIT_MIB",
        default_value_t = (controller::DEFAULT_MEMO_MEMORY_LIMIT / (1024 * 1024)) as u64,
        value_parser = clap::value_parser!(u64).range(0..=65_536)
    )]
    pub memo_memory_limit_mib: u64,

    /// How long, in seconds, PPIO's product list (the prices) of an API key is used before it is
    /// read again. A view's refresh annotation reads it at once; a read that fails keeps the last
    /// prices and is tried again a minute later at the earliest.
    #[arg(
        long,
        env = "PPIO_OPERATOR_PRODUCT_LIST_TTL_SECONDS",
        default_value_t = controller::DEFAULT_PRODUCT_LIST_TTL.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=604_800)
    )]
    pub product_list_ttl_seconds: u64,

    /// Log format on stderr.
    #[arg(long, env = "PPIO_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `info,ppio_gpu_operator=debug,ppio=debug`.
    #[arg(long, env = "PPIO_OPERATOR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Address of the HTTP endpoints /healthz, /readyz and /metrics (port 0 picks a free one).
    #[arg(
        long,
        env = "PPIO_OPERATOR_HTTP_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    pub http_address: SocketAddr,

    /// Serve /metrics only to bearer tokens that the API server authenticates (TokenReview) and
    /// authorizes for `get` on the non-resource URL /metrics (SubjectAccessReview). The operator then
    /// needs `create` on tokenreviews and subjectaccessreviews. /healthz and /readyz stay open.
    #[arg(long, env = "PPIO_OPERATOR_METRICS_AUTH", default_value_t = false, action = clap::ArgAction::Set)]
    pub metrics_auth: bool,

    /// Also export `ppio_gpu_operator_instance_info`: one series per listed PPIO instance (its ID,
    /// name, status, region, billing mode and product), so a Prometheus with many instances pays
    /// for one series each.
    #[arg(long, env = "PPIO_OPERATOR_METRICS_INSTANCE_INFO", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub metrics_instance_info: bool,

    /// Keep a Service and EndpointSlices for the mirrors of views that set spec.services.enabled.
    /// The operator then needs get, list, watch, create, patch and delete on services and
    /// endpointslices.
    #[arg(long, env = "PPIO_OPERATOR_SERVICES", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub services: bool,

    /// The cluster's own address ranges (pod, Service and node CIDRs; repeat or comma-separate): a
    /// Service never routes to an address inside them, whatever PPIO answers. Declare them whenever
    /// --service-allowed-cidr is given (the operator warns otherwise), and any NAT64 or 6rd prefix
    /// of the cluster's own translator.
    #[arg(
        long = "service-cluster-cidr",
        env = "PPIO_OPERATOR_SERVICE_CLUSTER_CIDRS",
        value_delimiter = ','
    )]
    pub service_cluster_cidrs: Vec<IpNet>,

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
    pub service_allowed_cidrs: Vec<IpNet>,

    /// Run the controller only while holding the leader Lease, so several replicas can run.
    #[arg(long, env = "PPIO_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Sync only the views whose labels match this selector, and watch only their mirrors: one
    /// shard of the views, e.g. `sharding.ppio.io/key in (shard1)`, or `!sharding.ppio.io/key` for the
    /// views of no shard. It may constrain only the label `sharding.ppio.io/key`, which mirrors
    /// carry from their view. Each shard elects its own leader on its own Lease.
    #[arg(long, env = "PPIO_OPERATOR_WATCH_LABEL_SELECTOR", value_parser = parse_shard_selector)]
    pub watch_label_selector: Option<String>,

    /// Name of the leader Lease. Default: `ppio-gpu-operator`, or, with --watch-label-selector,
    /// `ppio-gpu-operator-shard-` and a hash of the selector, so each shard has its own.
    #[arg(long, env = "PPIO_OPERATOR_LEASE_NAME")]
    pub lease_name: Option<String>,

    /// Namespace of the leader Lease. Default: the operator's own namespace (POD_NAMESPACE, the
    /// in-cluster namespace, or the kubeconfig's).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Seconds a leader holds the Lease without renewing it (at least 10): a standby takes over within this.
    #[arg(long, env = "PPIO_OPERATOR_LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(10..=300))]
    pub lease_duration_seconds: u64,

    /// This replica's identity in the election and in Events. Default: the pod name, else the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

/// Checks a `--watch-label-selector`: it may constrain only the shard label, which mirrors carry
/// too, so that the shard's watch of mirrors sees exactly the mirrors of its views.
fn parse_shard_selector(selector: &str) -> Result<String, String> {
    controller::check_shard_selector(selector).map(|()| selector.trim().to_owned())
}

/// Checks a `--service-allowed-cidr`: a range inside the blocks that may be allowed at all.
fn parse_allowed_cidr(range: &str) -> Result<IpNet, String> {
    let range: IpNet = range.trim().parse().map_err(|e| format!("{e}"))?;
    services::check_allowed_range(&range).map_err(|e| e.to_string())?;
    Ok(range)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::CommandFactory;

    use super::*;

    /// The page that documents the flags, and the markers around its generated table.
    const PAGE: &str = "docs/src/reference/flags.md";
    const BEGIN: &str = "<!-- flags: generated from src/flags.rs by `make flags-reference` -->\n";
    const END: &str = "<!-- end of flags -->\n";

    /// The flags of `run` as a Markdown table: each flag, its environment variable, its default
    /// and its `--help` text.
    fn reference() -> String {
        let mut cli = Cli::command();
        cli.build();
        let run = cli.find_subcommand_mut("run").expect("a run subcommand");
        let mut table =
            String::from("| flag | env | default | what it does |\n|---|---|---|---|\n");
        for arg in run.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            let takes = arg.get_num_args().expect("built");
            let values = arg
                .get_possible_values()
                .iter()
                .map(|v| v.get_name().to_owned())
                .collect::<Vec<_>>();
            let value = if !values.is_empty() {
                values.join("\\|")
            } else {
                arg.get_value_names()
                    .and_then(|names| names.first())
                    .map_or_else(|| long.to_uppercase(), ToString::to_string)
            };
            let flag = if takes.min_values() == 0 {
                format!("`--{long}[={value}]`")
            } else {
                format!("`--{long} {value}`")
            };
            let env = arg
                .get_env()
                .map_or(String::new(), |env| format!("`{}`", env.to_string_lossy()));
            let default = arg
                .get_default_values()
                .iter()
                .map(|v| format!("`{}`", v.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(", ");
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|help| help.to_string())
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .replace('|', "\\|");
            table.push_str(&format!("| {flag} | {env} | {default} | {help} |\n"));
        }
        table
    }

    /// The flags page shows the flags as `--help` does: this fails when a flag changed and the
    /// page was not regenerated (`make flags-reference` writes it).
    #[test]
    fn the_flags_reference_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(PAGE);
        let page = std::fs::read_to_string(&path).expect("the flags page");
        let (before, rest) = page.split_once(BEGIN).expect("the page marks its table");
        let (current, after) = rest.split_once(END).expect("the table's end is marked");
        let generated = reference();
        if std::env::var("PPIO_WRITE_FLAGS_REFERENCE").is_ok_and(|v| v == "1") {
            std::fs::write(&path, format!("{before}{BEGIN}{generated}{END}{after}"))
                .expect("write the flags page");
            return;
        }
        assert!(
            current == generated,
            "{PAGE} is stale: regenerate it with `make flags-reference`"
        );
    }
}
