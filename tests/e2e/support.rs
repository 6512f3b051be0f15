//! What the end-to-end tests share: the node (its kubeconfig, address and containerd), the PPIO
//! simulator serving on the node's address with a log of who asked what, helm and kubectl, a release
//! of the chart, a tenant namespace with a Secret and a view, and reading a container from the node.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use ppio_gpu_operator::api::GpuInstanceView;
use ppio_gpu_operator::api::condition::ConditionStatus;
use ppio_simulator::{Simulator, SimulatorConfig, generate_instances};
use serde_json::json;

#[path = "../shared/waiting.rs"]
mod waiting;

pub use waiting::wait_for;

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

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The chart, as users install it from the repository.
pub fn chart() -> String {
    repo()
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
    run(
        &repo().join("target/tools/helm").display().to_string(),
        args,
    )
}

/// The machine's kubectl.
pub fn kubectl(args: &[&str]) -> String {
    run("kubectl", args)
}

/// A list request the simulator answered.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When it arrived.
    pub at: SystemTime,
    /// Who sent it: the operator pod's address.
    pub peer: IpAddr,
    /// The API key it carried.
    pub api_key: String,
    /// Whether it asked for a later page (a `cursor`), rather than starting a listing.
    pub continues: bool,
}

/// The PPIO simulator, serving for the whole test run on the node's address.
pub struct Ppio {
    /// Its state: keys, instances, faults.
    pub simulator: Simulator,
    seen: Arc<Mutex<Vec<Seen>>>,
    api_keys: Mutex<Vec<String>>,
}

impl Ppio {
    /// Accepts one more API key.
    pub fn accept_key(&self, api_key: &str) {
        let mut keys = self.api_keys.lock().expect("API keys");
        keys.push(api_key.to_owned());
        self.simulator.set_api_keys(keys.clone());
    }

    /// The list requests made with `api_key`, in the order they arrived.
    pub fn seen_with(&self, api_key: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .expect("request log")
            .iter()
            .filter(|s| s.api_key == api_key)
            .cloned()
            .collect()
    }
}

/// The simulator with [`INSTANCES`] instances, started on first use.
pub fn ppio() -> &'static Ppio {
    ppio_with(INSTANCES)
}

/// The simulator, started on first use with `instances` generated instances, on a runtime of its own
/// (each test has its own runtime). Later calls get the same simulator, whatever they ask.
pub fn ppio_with(instances: usize) -> &'static Ppio {
    static PPIO: OnceLock<Ppio> = OnceLock::new();
    PPIO.get_or_init(|| {
        let simulator = Simulator::new(SimulatorConfig {
            api_keys: Vec::new(),
            instances: generate_instances(instances, 16),
            max_page_size: 200,
            ..SimulatorConfig::default()
        });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let router = simulator.router().layer(middleware::from_fn({
            let seen = seen.clone();
            move |ConnectInfo(peer): ConnectInfo<SocketAddr>, request: Request, next: Next| {
                let seen = seen.clone();
                async move { record(seen, peer, request, next).await }
            }
        }));
        let address: SocketAddr = format!("{NODE_IP}:{SIMULATOR_PORT}")
            .parse()
            .expect("the simulator's address");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("the simulator's runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(address).await;
                let listener = match listener {
                    Ok(listener) => {
                        let _ = ready_tx.send(Ok(()));
                        listener
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = axum::serve(
                    listener,
                    router.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .await;
            });
        });
        ready_rx
            .recv()
            .expect("the simulator's thread")
            .unwrap_or_else(|e| {
                panic!("cannot serve the simulator on {address} (is this the node's network namespace?): {e}")
            });
        Ppio {
            simulator,
            seen,
            api_keys: Mutex::new(Vec::new()),
        }
    })
}

async fn record(
    seen: Arc<Mutex<Vec<Seen>>>,
    peer: SocketAddr,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/gpus/v2/instances" {
        let api_key = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("")
            .to_owned();
        let continues = request.uri().query().is_some_and(|q| {
            q.split('&')
                .any(|p| p.starts_with("cursor=") && p.len() > 7)
        });
        seen.lock().expect("request log").push(Seen {
            at: SystemTime::now(),
            peer: peer.ip(),
            api_key,
            continues,
        });
    }
    next.run(request).await
}

/// One release of the chart, uninstalled (with its namespace) when dropped.
pub struct Release {
    /// The release's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

impl Release {
    /// `helm install NAME` into the namespace `e2e-NAME` with the defaults, the image `make image`
    /// built (never pulled) and the simulator allowed, plus `extra` helm arguments; waits until its
    /// pods are ready. A failed install is uninstalled too, so it cannot sync later tests' views.
    pub fn install(name: &str, extra: &[&str]) -> Release {
        ppio();
        let release = Release {
            name: name.to_owned(),
            namespace: format!("e2e-{name}"),
        };
        let (repository, tag) = local_image();
        let image = [
            format!("image.repository={repository}"),
            format!("image.tag={tag}"),
            "image.pullPolicy=Never".to_owned(),
            format!("allowedEndpoints={{{}}}", simulator_url()),
        ];
        let chart = chart();
        let mut args = vec![
            "install",
            name,
            chart.as_str(),
            "--namespace",
            release.namespace.as_str(),
            "--create-namespace",
            "--wait",
            "--timeout",
            "180s",
        ];
        for value in &image {
            args.extend(["--set", value.as_str()]);
        }
        args.extend_from_slice(extra);
        helm(&args);
        release
    }

    /// The release's pods, by name.
    pub async fn pods(&self, client: &Client) -> Vec<Pod> {
        pods_of_release(client, &self.namespace, &self.name)
            .await
            .expect("list the release's pods")
    }

    /// The label selector of everything the release made.
    pub fn selector(&self) -> String {
        release_selector(&self.name)
    }

    /// The release's pods that are Ready and not being deleted.
    pub async fn ready_pods(&self, client: &Client) -> Vec<Pod> {
        self.pods(client)
            .await
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
            .collect()
    }

    /// The Lease's name, from the operator's arguments in the Deployment.
    pub async fn lease_name(&self, client: &Client) -> String {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &self.namespace);
        let deployment = deployments
            .list(
                &ListParams::default().labels(&format!("app.kubernetes.io/instance={}", self.name)),
            )
            .await
            .expect("list the release's Deployment")
            .items
            .into_iter()
            .next()
            .expect("the release has a Deployment");
        let args = deployment
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.args)
            .unwrap_or_default();
        args.iter()
            .find_map(|a| a.strip_prefix("--lease-name="))
            .expect("the operator runs with --lease-name")
            .to_owned()
    }

    /// Who holds the release's Lease now, if anyone.
    pub async fn leader(&self, client: &Client) -> Option<String> {
        let leases: Api<Lease> = Api::namespaced(client.clone(), &self.namespace);
        let lease = leases
            .get_opt(&self.lease_name(client).await)
            .await
            .ok()??;
        lease.spec?.holder_identity.filter(|h| !h.is_empty())
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let helm_path = repo().join("target/tools/helm");
        let _ = Command::new(helm_path)
            .args([
                "uninstall",
                &self.name,
                "--namespace",
                &self.namespace,
                "--wait",
                "--ignore-not-found",
            ])
            .output();
        let _ = Command::new("kubectl")
            .args(["delete", "namespace", &self.namespace, "--wait=false"])
            .output();
    }
}

/// The label selector of everything the release `name` made.
fn release_selector(name: &str) -> String {
    format!("app.kubernetes.io/instance={name}")
}

/// The pods of the release `name` in `namespace`.
pub async fn pods_of_release(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Vec<Pod>, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&release_selector(name)))
        .await?;
    Ok(list.items)
}

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
    wait_for(
        &format!("the pod {name} to run"),
        Duration::from_secs(60),
        || async {
            let pod = pods.get(name).await.ok()?;
            is_ready(&pod).then_some(pod)
        },
    )
    .await
}

/// A namespace of a user of the operator: a Secret with an API key of its own and a view of every
/// instance, pointed at the simulator. Deleted when dropped.
pub struct Tenant {
    /// The namespace.
    pub namespace: String,
    /// The API key its view uses (the simulator accepts it), so its requests can be told apart.
    pub api_key: String,
    client: Client,
}

/// The view every tenant creates.
pub const VIEW: &str = "all";

impl Tenant {
    /// Creates the namespace, the Secret and the view (pages of 5, a sync every [`SYNC_INTERVAL`]).
    pub async fn create(client: &Client, namespace: &str) -> Tenant {
        Tenant::create_with(client, namespace, 5, SYNC_INTERVAL).await
    }

    /// Creates the namespace, the Secret and a view with this page size and sync interval.
    pub async fn create_with(
        client: &Client,
        namespace: &str,
        page_size: u32,
        sync_interval: Duration,
    ) -> Tenant {
        Tenant::create_with_spec(client, namespace, page_size, sync_interval, json!({})).await
    }

    /// The same, with `more` (e.g. `{"services": {"enabled": true}}`) added to the view's spec.
    pub async fn create_with_spec(
        client: &Client,
        namespace: &str,
        page_size: u32,
        sync_interval: Duration,
        more: serde_json::Value,
    ) -> Tenant {
        let api_key = format!("sk-e2e-{namespace}");
        ppio().accept_key(&api_key);

        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": namespace } }))
            .expect("namespace");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {namespace}: {e}"));
        let secret: Secret = serde_json::from_value(json!({
            "metadata": { "name": "ppio-api-key" },
            "stringData": { "apiKey": api_key },
        }))
        .expect("secret");
        Api::<Secret>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &secret)
            .await
            .expect("create the Secret");
        let mut spec = json!({
            "credentials": { "secretRef": { "name": "ppio-api-key" } },
            "endpoint": simulator_url(),
            "syncInterval": format!("{}s", sync_interval.as_secs()),
            "pageSize": page_size,
        });
        if let (Some(spec), serde_json::Value::Object(more)) = (spec.as_object_mut(), more) {
            spec.extend(more);
        }
        let view: GpuInstanceView = serde_json::from_value(json!({
            "apiVersion": "gpu.ppio.io/v1alpha1",
            "kind": "GpuInstanceView",
            "metadata": { "name": VIEW },
            "spec": spec,
        }))
        .expect("a view of the operator's API");
        Api::<GpuInstanceView>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &view)
            .await
            .expect("create the view");
        Tenant {
            namespace: namespace.to_owned(),
            api_key,
            client: client.clone(),
        }
    }

    /// The view, as it is now.
    pub async fn view(&self) -> GpuInstanceView {
        Api::<GpuInstanceView>::namespaced(self.client.clone(), &self.namespace)
            .get(VIEW)
            .await
            .expect("get the view")
    }

    /// Waits until the view is Ready after a complete listing.
    pub async fn wait_ready(&self, timeout: Duration) -> GpuInstanceView {
        wait_for("the view to be Ready", timeout, || async {
            let view = self.view().await;
            let status = view.status.as_ref()?;
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True);
            (ready && status.last_successful_sync_time.is_some()).then_some(view)
        })
        .await
    }

    /// The view's `lastSyncTime`, if it has synced.
    pub async fn last_sync(&self) -> Option<String> {
        self.view()
            .await
            .status?
            .last_sync_time
            .map(|t| t.to_string())
    }
}

impl Drop for Tenant {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .args(["delete", "namespace", &self.namespace, "--wait=false"])
            .output();
    }
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

/// The listings in `seen`: runs of requests from one peer, each starting with a first page, as
/// (peer, first request's time, last request's time).
pub fn listings(seen: &[Seen]) -> Vec<(IpAddr, SystemTime, SystemTime)> {
    let mut open: BTreeMap<IpAddr, (SystemTime, SystemTime)> = BTreeMap::new();
    let mut done = Vec::new();
    for s in seen {
        if !s.continues {
            if let Some((start, end)) = open.remove(&s.peer) {
                done.push((s.peer, start, end));
            }
            open.insert(s.peer, (s.at, s.at));
        } else if let Some(entry) = open.get_mut(&s.peer) {
            entry.1 = s.at;
        }
    }
    done.extend(
        open.into_iter()
            .map(|(peer, (start, end))| (peer, start, end)),
    );
    done.sort_by_key(|(_, start, _)| *start);
    done
}

/// Panics when two listings of one view, from two different pods, overlap in time.
pub fn assert_no_two_syncs_at_once(seen: &[Seen]) {
    let all = listings(seen);
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            let overlap = a.0 != b.0 && b.1 <= a.2 && a.1 <= b.2;
            assert!(
                !overlap,
                "two pods listed the same view at once: {} from {:?} to {:?}, {} from {:?} to {:?}",
                a.0, a.1, a.2, b.0, b.1, b.2
            );
        }
    }
}
