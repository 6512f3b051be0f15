//! The chart's NetworkPolicy, enforced on the node by kube-router's network-policy controller: with
//! the defaults, the operator still reaches the API server and PPIO (the simulator), and nothing else;
//! other pods reach its HTTP port, and no other port of it. Connections are tried from inside the
//! pods' own network namespaces, entered from the node.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use ppio_test_support::node::{
    NODE_IP, Release, SIMULATOR_PORT, Tenant, client, container_pid, start_pause_pod, wait_for,
};

/// The API server's address in the `kubernetes` Service.
const KUBERNETES_SERVICE: &str = "10.96.0.1";
/// The kubelet's port on the node: not something the operator needs.
const KUBELET_PORT: u16 = 10250;
/// A port of the operator's pod that the policy does not open; the test listens there itself.
const OTHER_PORT: u16 = 9091;

/// Whether a TCP connection from the network namespace of process `pid` to `ip:port` is accepted
/// within 3 seconds.
fn connects(pid: u32, ip: &str, port: u16) -> bool {
    Command::new("timeout")
        .args([
            "3",
            "nsenter",
            "--target",
            &pid.to_string(),
            "--net",
            "bash",
            "-c",
        ])
        .arg(format!("exec 3<>/dev/tcp/{ip}/{port}"))
        .stderr(Stdio::null())
        .status()
        .expect("nsenter")
        .success()
}

/// A listener on `port` inside the network namespace of process `pid`, stopped when dropped.
struct Listener(Child);

impl Listener {
    /// Starts the listener and waits until it accepts connections from its own namespace.
    async fn ready(pid: u32, port: u16) -> Listener {
        let listener = Listener::start(pid, port);
        wait_for("a listener in the pod", Duration::from_secs(10), || async {
            connects(pid, "127.0.0.1", port).then_some(())
        })
        .await;
        listener
    }

    fn start(pid: u32, port: u16) -> Listener {
        let child = Command::new("nsenter")
            .args([
                "--target",
                &pid.to_string(),
                "--net",
                "python3",
                "-m",
                "http.server",
            ])
            .args([&port.to_string(), "--bind", "0.0.0.0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("a listener in the pod's network namespace");
        Listener(child)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether the node (this process's namespace) can connect to `ip:port` within 3 seconds.
fn node_connects(ip: &str, port: u16) -> bool {
    let address = format!("{ip}:{port}").parse().expect("an address");
    std::net::TcpStream::connect_timeout(&address, Duration::from_secs(3)).is_ok()
}

fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP")
}

#[tokio::test]
async fn the_network_policy_lets_the_operator_reach_only_the_api_server_and_ppio() {
    let client = client().await;
    let release = Release::install("netpol", &[]);
    // A Ready view: the operator reached the API server (its Lease, the view) and PPIO.
    let tenant = Tenant::create(&client, "e2e-netpol-tenant").await;
    tenant.wait_ready(Duration::from_secs(120)).await;

    // Another pod, which no policy selects: the yardstick for what is reachable at all.
    let prober = start_pause_pod(&client, &tenant.namespace, "prober").await;
    let prober_pid = container_pid(&prober);

    let operator = release.ready_pods(&client).await.remove(0);
    let operator_pid = container_pid(&operator);
    let operator_ip = pod_ip(&operator);

    // Egress: the API server, through its Service and at its endpoint, and PPIO.
    assert!(
        connects(operator_pid, KUBERNETES_SERVICE, 443),
        "the operator reaches the kubernetes Service"
    );
    assert!(
        connects(operator_pid, NODE_IP, 6443),
        "the operator reaches the API server's endpoint"
    );
    assert!(
        connects(operator_pid, NODE_IP, SIMULATOR_PORT),
        "the operator reaches PPIO"
    );
    // Anything else is refused to the operator, though reachable from a pod the policy leaves alone.
    assert!(
        connects(prober_pid, NODE_IP, KUBELET_PORT),
        "the kubelet is reachable from a pod"
    );
    assert!(
        !connects(operator_pid, NODE_IP, KUBELET_PORT),
        "the operator must not reach the kubelet's port"
    );
    let _prober_listener = Listener::ready(prober_pid, OTHER_PORT).await;
    let prober_ip = pod_ip(&prober);
    assert!(
        node_connects(&prober_ip, OTHER_PORT),
        "the node reaches the prober pod's listener"
    );
    assert!(
        !connects(operator_pid, &prober_ip, OTHER_PORT),
        "the operator must not reach another pod"
    );

    // Ingress: the HTTP port (metrics, probes) from another pod, and no other port.
    let _listener = Listener::ready(operator_pid, OTHER_PORT).await;
    assert!(
        node_connects(&operator_ip, OTHER_PORT),
        "the node reaches the listener in the operator's pod"
    );
    assert!(
        connects(prober_pid, &operator_ip, 8080),
        "another pod reaches the operator's HTTP port"
    );
    assert!(
        !connects(prober_pid, &operator_ip, OTHER_PORT),
        "another pod must not reach any other port of the operator's pod"
    );
    println!(
        "e2e: with kube-router enforcing the chart's NetworkPolicy, {} reaches the API server and PPIO \
         and not the kubelet or another pod; another pod reaches its port 8080 and not {OTHER_PORT}",
        operator.name_any()
    );
}
