//! The one-node cluster of the end-to-end tests and `benches/pod.rs` (`hack/node/up.sh`): its
//! clients and address, the images `make image` built, helm and kubectl, the PPIO simulator serving
//! on the node's address ([`ppio`]), a release of the chart ([`Release`]), a tenant namespace with a
//! Secret and a view ([`Tenant`]), and a pod's container read from the node ([`container_pid`],
//! [`proc_status`], [`cgroup_dir`]).
//!
//! Outside the node these fail at once: they need its `KUBECONFIG`, its images and its address.

mod pods;
mod ppio;
mod release;
mod tenant;

pub use pods::{
    bytes_of, cgroup_dir, cgroup_number, container_pid, delete_pod, is_ready, millicores_of,
    proc_status, start_pause_pod,
};
pub use ppio::{Ppio, Seen, assert_no_two_syncs_at_once, listings, ppio, ppio_with};
pub use release::{Release, pods_of_release};
pub use tenant::{Tenant, VIEW};

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kube::Client;

pub use crate::waiting::{await_object, wait_for};

/// The node's address: the API server, the kubelet and the simulator listen there.
pub const NODE_IP: &str = "10.88.0.1";
/// The simulator's port: the chart's NetworkPolicy lets the operator reach PPIO on 443.
pub const SIMULATOR_PORT: u16 = 443;
/// How many instances the simulator lists for every tenant.
pub const INSTANCES: usize = 24;
/// The chart's default lease duration (values.yaml `leaderElection.leaseDurationSeconds`).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// The tenants' views sync this often (the API's minimum), so a stop in syncing shows quickly.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(10);

/// The operator's image `make image` built and the node imported, as repository and tag.
pub fn local_image() -> (String, String) {
    let image = std::env::var("OPERATOR_IMAGE").unwrap_or_else(|_| {
        panic!("OPERATOR_IMAGE is not set: the end-to-end tests run inside the one-node cluster, through `make e2e`")
    });
    let (repository, tag) = image
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("OPERATOR_IMAGE {image} has no tag"));
    (repository.to_owned(), tag.to_owned())
}

/// The pod sandbox image `make image` built, which containerd has: also a pod that does nothing.
pub fn pause_image() -> String {
    std::env::var("PAUSE_IMAGE").unwrap_or_else(|_| {
        panic!("PAUSE_IMAGE is not set: the end-to-end tests run inside the one-node cluster, through `make e2e`")
    })
}

/// The chart, as users install it from the repository.
pub fn chart() -> String {
    crate::paths::repository()
        .join("charts/ppio-gpu-operator")
        .display()
        .to_string()
}

/// The simulator's base URL, as views and the chart's `allowedEndpoints` name it.
pub fn simulator_url() -> String {
    format!("http://{NODE_IP}:{SIMULATOR_PORT}")
}

fn kubeconfig() -> String {
    std::env::var("KUBECONFIG").unwrap_or_else(|_| {
        panic!("KUBECONFIG is not set: the end-to-end tests run inside the one-node cluster, through `make e2e`")
    })
}

/// An admin client of the node's API server.
pub async fn client() -> Client {
    kubeconfig();
    Client::try_default()
        .await
        .expect("a client of the node's API server (KUBECONFIG)")
}

/// An admin client that does not retry a 429 itself (kube's client retries 429, 503 and 504 with a
/// backoff of up to 1000 s), for requests whose refusal is what a test looks for.
pub async fn client_without_retries() -> Client {
    kubeconfig();
    let mut config = kube::Config::infer()
        .await
        .expect("the node's kubeconfig (KUBECONFIG)");
    config.default_retry = false;
    Client::try_from(config).expect("a client of the node's API server")
}

/// Runs a command to completion and returns its standard output; panics with its error output.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {} failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// helm, as `make helm` builds it.
pub fn helm(args: &[&str]) -> String {
    run(&crate::paths::tool("helm").display().to_string(), args)
}

/// The machine's kubectl, against the node's API server.
pub fn kubectl(args: &[&str]) -> String {
    crate::namespace::kubectl(Path::new(&kubeconfig()), None, args)
}
