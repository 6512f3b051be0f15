//! A pod of the node, and its container read from the node as the kernel sees it: its process,
//! `/proc` status, cgroup and the quantities of a pod spec.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::{pause_image, run};
use crate::waiting::await_object;

/// Whether a pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Starts a pod `name` in `namespace` whose one container is the pause image, a network namespace
/// to send from or listen in, and returns it once it is Ready.
pub async fn start_pause_pod(client: &Client, namespace: &str, name: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "containers": [{
            "name": "pause",
            "image": pause_image(),
            "imagePullPolicy": "Never",
        }] },
    }))
    .expect("a pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("create the pod {name}: {e}"));
    await_object(
        pods,
        name,
        &format!("the pod {name} to run"),
        Duration::from_secs(60),
        is_ready,
    )
    .await
}

/// The node's process ID of a pod's (only) container, from containerd.
pub fn container_pid(pod: &Pod) -> u32 {
    let id = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.container_id.clone())
        .unwrap_or_else(|| panic!("pod {} has no container ID", pod.name_any()));
    let id = id
        .strip_prefix("containerd://")
        .unwrap_or_else(|| panic!("not a containerd container: {id}"));
    let tasks = run("ctr", &["--namespace", "k8s.io", "tasks", "list"]);
    tasks
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some(id)).then(|| fields.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("containerd has no task {id}:\n{tasks}"))
}

/// The fields of `/proc/<pid>/status`.
pub fn proc_status(pid: u32) -> BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"))
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

/// The cgroup (v1) directory of `pid` for `controller`, e.g. `memory`.
pub fn cgroup_dir(pid: u32, controller: &str) -> PathBuf {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"));
    let path = cgroups
        .lines()
        .find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            controllers
                .split(',')
                .any(|c| c == controller)
                .then(|| path.to_owned())
        })
        .unwrap_or_else(|| panic!("process {pid} is in no {controller} cgroup:\n{cgroups}"));
    let mount = std::fs::read_to_string("/proc/self/mounts").expect("read /proc/self/mounts");
    let root = mount
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() > 3
                && fields[2] == "cgroup"
                && fields[3].split(',').any(|o| o == controller))
            .then(|| fields[1].to_owned())
        })
        .unwrap_or_else(|| panic!("no cgroup hierarchy with {controller} is mounted"));
    PathBuf::from(root).join(path.trim_start_matches('/'))
}

/// Reads a number from a cgroup file.
pub fn cgroup_number(dir: &std::path::Path, file: &str) -> i64 {
    let path = dir.join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{} is not a number: {e}", path.display()))
}

/// A Kubernetes quantity of bytes (`256Mi`, `1Gi`, `64M`, `1000`) as a number.
pub fn bytes_of(quantity: &str) -> i64 {
    let (number, factor) = [
        ("Ki", 1i64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ]
    .iter()
    .find_map(|(suffix, factor)| quantity.strip_suffix(suffix).map(|n| (n, *factor)))
    .unwrap_or((quantity, 1));
    number
        .parse::<i64>()
        .unwrap_or_else(|e| panic!("{quantity} is not a quantity of bytes: {e}"))
        * factor
}

/// A Kubernetes CPU quantity (`500m`, `2`) in millicores.
pub fn millicores_of(quantity: &str) -> i64 {
    match quantity.strip_suffix('m') {
        Some(m) => m.parse().expect("millicores"),
        None => quantity.parse::<i64>().expect("cores") * 1000,
    }
}

/// Deletes a pod with its default grace period.
pub async fn delete_pod(client: &Client, namespace: &str, name: &str) {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("delete pod {name}: {e}"));
}
