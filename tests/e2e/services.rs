//! Services for remote instances on a real node: a pod reaches the server of a running PPIO
//! instance through the instance's Service, its ClusterIP and kube-proxy, and stops reaching it
//! once PPIO reports the instance `exited`, while the server itself still answers.
//!
//! The "remote" instance's server is the simulator's [`Workload`], on 192.0.2.10 (TEST-NET-1), an
//! address this test adds to the node's loopback inside the node's network namespace and removes at
//! the end: nothing outside the namespace is ever addressed. A documentation address is refused
//! unless allowed, so the release allows exactly that one (`instanceServices.allowedCIDRs`); the
//! node's own ranges (pods 10.88.0.0/16, Services 10.96.0.0/16, `hack/node/up.sh`) stay the
//! cluster's.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use ppio_simulator::Workload;
use ppio_test_support::records;
use serde_json::json;

use ppio_test_support::node::{
    Release, SYNC_INTERVAL, Tenant, await_object, client, container_pid, ppio, start_pause_pod,
    wait_for,
};

/// The instance's address: on the node's loopback, for this test only.
const INSTANCE_ADDRESS: &str = "192.0.2.10";
/// The port PPIO maps the instance's port 8080 to.
const INSTANCE_PORT: u16 = 30080;
const INSTANCE_ID: &str = "e2e5e4c1ce0001";
const INSTANCE_NAME: &str = "e2e-inference";

/// An address on the node's loopback, removed when dropped.
struct NodeAddress(&'static str);

impl NodeAddress {
    fn add(address: &'static str) -> NodeAddress {
        let status = Command::new("ip")
            .args(["address", "replace", &format!("{address}/32"), "dev", "lo"])
            .status()
            .expect("ip address");
        assert!(
            status.success(),
            "cannot add {address} to the node's loopback"
        );
        NodeAddress(address)
    }
}

impl Drop for NodeAddress {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["address", "del", &format!("{}/32", self.0), "dev", "lo"])
            .status();
    }
}

/// The instance in the simulator, removed when dropped, so later tests list what they expect.
struct RemoteInstance;

impl RemoteInstance {
    fn add() -> RemoteInstance {
        let mut record = records::generated(INSTANCE_ID, 17);
        record["name"] = json!(INSTANCE_NAME);
        records::set_status(&mut record, "running");
        record["ports"] = json!([records::port(
            8080,
            "http",
            &format!("http://{INSTANCE_ADDRESS}:{INSTANCE_PORT}"),
        )]);
        ppio().simulator.upsert_instance(record);
        RemoteInstance
    }
}

impl Drop for RemoteInstance {
    fn drop(&mut self) {
        ppio().simulator.remove_instance(INSTANCE_ID);
    }
}

/// `GET http://ip:port/v1/models` from the network namespace of process `pid`: the body, or `None`
/// when no answer came within 3 seconds. Sent from a blocking thread, so that this test's runtime
/// keeps serving the workload meanwhile.
async fn get_models(pid: u32, ip: &str, port: u16) -> Option<String> {
    let ip = ip.to_owned();
    tokio::task::spawn_blocking(move || get_models_now(pid, &ip, port))
        .await
        .expect("the request's thread")
}

fn get_models_now(pid: u32, ip: &str, port: u16) -> Option<String> {
    let output = Command::new("nsenter")
        .args(["--target", &pid.to_string(), "--net", "python3", "-c"])
        .arg(
            "import sys, urllib.request\n\
             print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())",
        )
        .arg(format!("http://{ip}:{port}/v1/models"))
        .output()
        .expect("nsenter");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

// The workload is served on this test's runtime: requests are sent from blocking threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_reaches_a_running_instance_through_its_service_and_not_once_it_stopped() {
    let client = client().await;
    let _address = NodeAddress::add(INSTANCE_ADDRESS);
    let address: SocketAddr = format!("{INSTANCE_ADDRESS}:{INSTANCE_PORT}")
        .parse()
        .unwrap();
    let _workload = Workload::serve(address, INSTANCE_ID)
        .await
        .expect("serve the instance's workload");
    let _instance = RemoteInstance::add();
    // The release allows Services to route to the instance's address and nothing more.
    let allowed = format!("instanceServices.allowedCIDRs={{{INSTANCE_ADDRESS}/32}}");
    let _release = Release::install(
        "services",
        &[
            "--set",
            "instanceServices.enabled=true",
            // The release watches every namespace (the tenant's is made after it): the
            // cluster-wide grant on Services and EndpointSlices has to be acknowledged.
            "--set",
            "instanceServices.clusterWide=true",
            "--set",
            "instanceServices.clusterCIDRs={10.88.0.0/16,10.96.0.0/16}",
            "--set",
            &allowed,
        ],
    );
    let tenant =
        Tenant::create_with_spec(&client, "e2e-services-tenant", 5, SYNC_INTERVAL, |spec| {
            spec.services.enabled = true;
            spec.filter.name = Some(INSTANCE_NAME.into());
        })
        .await;
    let view = tenant.wait_ready(Duration::from_secs(120)).await;
    let status = view.status.expect("a status");
    assert_eq!(status.instance_count, Some(1));

    let mirror = format!("{}-{INSTANCE_ID}", ppio_test_support::node::VIEW);
    let services: Api<Service> = Api::namespaced(client.clone(), &tenant.namespace);
    let has_cluster_ip = |service: &Service| {
        service
            .spec
            .as_ref()
            .and_then(|spec| spec.cluster_ip.as_deref())
            .is_some_and(|ip| !ip.is_empty())
    };
    let service = await_object(
        services.clone(),
        &mirror,
        "the instance's Service",
        Duration::from_secs(60),
        has_cluster_ip,
    )
    .await;
    let cluster_ip = service
        .spec
        .and_then(|spec| spec.cluster_ip)
        .expect("a ClusterIP, as awaited");

    // A pod to send from: the request leaves its network namespace for the ClusterIP.
    let caller = start_pause_pod(&client, &tenant.namespace, "caller").await;
    let pid = container_pid(&caller);

    let answer = wait_for(
        "the instance to answer through its Service",
        Duration::from_secs(60),
        || get_models(pid, &cluster_ip, 8080),
    )
    .await;
    assert!(answer.contains(INSTANCE_ID), "{answer}");

    // PPIO reports the instance stopped: its endpoint is no longer ready, kube-proxy stops routing.
    ppio()
        .simulator
        .patch_instance(INSTANCE_ID, json!({ "status": { "status": "exited" } }));
    wait_for(
        "the Service to stop routing to the stopped instance",
        Duration::from_secs(90),
        || async {
            get_models(pid, &cluster_ip, 8080)
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    // The server still answers at its own address: it is the Service that stopped routing.
    assert!(
        get_models(pid, INSTANCE_ADDRESS, INSTANCE_PORT)
            .await
            .is_some(),
        "the instance's server still answers at {address}"
    );
    let described = ppio_test_support::node::kubectl(&[
        "describe",
        "service",
        &mirror,
        "--namespace",
        &tenant.namespace,
    ]);
    assert!(
        described.contains("the remote instance is exited"),
        "{described}"
    );
    println!(
        "e2e: a pod reached instance {INSTANCE_ID} at {address} through Service {mirror} \
         ({cluster_ip}:8080) while it ran, and no longer once PPIO reported it exited"
    );
}
