//! Services for remote instances (`spec.services.enabled` with `--services`), against the real
//! API server: what the Service and its EndpointSlices hold, readiness following the remote
//! status, a moved address, removal with the mirror and with the option, every kind of refused
//! address, an allowed range that could never be routed to, a name already taken, and a sync that
//! changes nothing writing none of them.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ResourceQuota, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use ppio_gpu_core::api::GpuInstance;
use ppio_gpu_core::api::condition::{self, ConditionStatus};
use ppio_gpu_core::services::AddressPolicy;
use ppio_gpu_core::services::plan::{
    ENDPOINT_REFUSED, NAME_TAKEN, ROUTED, SERVICE_ENDPOINTS, SERVICE_REJECTED,
};
use serde_json::{Value, json};

use ppio_test_support::fixture::Fixture;
use ppio_test_support::records::{generated, port, set_status};
use ppio_test_support::{kubectl, wait_for};

/// A record `id` with remote status `status` and exposed `ports`, the rest generated.
fn record(id: &str, seed: u64, status: &str, ports: Value) -> Value {
    let mut record = generated(id, seed);
    set_status(&mut record, status);
    record["ports"] = ports;
    record
}

/// The documentation ranges the instances here have their addresses in: refused unless allowed.
const DOCUMENTATION: [&str; 3] = ["203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32"];

/// The rule with the documentation ranges allowed, as `--service-allowed-cidr` would.
fn allowing_documentation() -> AddressPolicy {
    AddressPolicy {
        cluster: Vec::new(),
        allowed: DOCUMENTATION
            .iter()
            .map(|range| range.parse().expect("a range"))
            .collect(),
    }
}

/// The operator keeping Services under `policy`.
async fn start(prefix: &str, records: Vec<Value>, policy: AddressPolicy) -> Fixture {
    Fixture::start_with(prefix, records, move |settings| {
        settings.services = Some(policy);
    })
    .await
}

/// The EndpointSlices of Service `service`, by name.
async fn slices_of(fx: &Fixture, service: &str) -> Vec<EndpointSlice> {
    let mut slices = fx
        .ns
        .api::<EndpointSlice>()
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .expect("list EndpointSlices")
        .items;
    slices.sort_by_key(|s| s.name_any());
    slices
}

/// Each slice's name, address and whether it is ready.
fn endpoints(slices: &[EndpointSlice]) -> Vec<(String, String, bool)> {
    slices
        .iter()
        .flat_map(|slice| {
            slice.endpoints.iter().map(|endpoint| {
                let ready = endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or_default();
                (slice.name_any(), endpoint.addresses.join(","), ready)
            })
        })
        .collect()
}

async fn mirror(fx: &Fixture, name: &str) -> GpuInstance {
    fx.instances()
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("read mirror {name}: {e}"))
}

fn service_condition(mirror: &GpuInstance) -> condition::Condition {
    let status = mirror.status.as_ref().expect("a status");
    condition::find(&status.conditions, SERVICE_ENDPOINTS)
        .unwrap_or_else(|| panic!("{} has no {SERVICE_ENDPOINTS} condition", mirror.name_any()))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instance_gets_a_service_and_endpoint_slices_that_follow_its_ports() {
    let records = vec![
        record(
            "aa01",
            1,
            "running",
            json!([
                port(8080, "http", "http://203.0.113.5:30001"),
                port(22, "tcp", "203.0.113.5:30002"),
                port(53, "udp", "203.0.113.5:30003"),
                port(443, "https", "https://[2001:db8::5]:30004/"),
            ]),
        ),
        record(
            "bb02",
            2,
            "exited",
            json!([port(8888, "http", "http://198.51.100.7:30005")]),
        ),
        record(
            "cc03",
            3,
            "running",
            json!([port(8080, "http", "http://gpu-7.ppio.example:30006")]),
        ),
        record("dd04", 4, "running", json!([])),
    ];
    let fx = start("services", records, allowing_documentation()).await;
    fx.create_view("v", |spec| spec.services.enabled = true)
        .await;
    let view = fx.wait_ready("v", true, "Synced").await;
    let status = view.status.expect("a status");
    assert_eq!(status.service_count, Some(2), "aa01 and bb02");
    assert_eq!(status.refused_endpoint_count, Some(1), "cc03's host name");

    let services = fx.ns.api::<Service>();
    let service = services.get("v-aa01").await.expect("the Service of v-aa01");
    let spec = service.spec.as_ref().expect("a spec");
    assert_eq!(spec.selector, None);
    assert!(
        spec.cluster_ip
            .as_deref()
            .is_some_and(|ip| !ip.is_empty() && ip != "None")
    );
    let ports: Vec<_> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port,
                p.protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("http-8080".to_owned(), 8080, "TCP".to_owned()),
            ("tcp-22".to_owned(), 22, "TCP".to_owned()),
            ("udp-53".to_owned(), 53, "UDP".to_owned()),
            ("https-443".to_owned(), 443, "TCP".to_owned()),
        ]
    );
    let owner_uid = mirror(&fx, "v-aa01").await.uid();
    let owner = &service.owner_references()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            Some(owner.uid.clone())
        ),
        ("GpuInstance", "v-aa01", owner_uid.clone())
    );

    let slices = slices_of(&fx, "v-aa01").await;
    assert_eq!(
        endpoints(&slices),
        [
            ("v-aa01-ipv4-0".to_owned(), "203.0.113.5".to_owned(), true),
            ("v-aa01-ipv6-0".to_owned(), "2001:db8::5".to_owned(), true),
        ]
    );
    for slice in &slices {
        assert_eq!(
            slice.labels()["endpointslice.kubernetes.io/managed-by"],
            "ppio-gpu-operator.gpu.ppio.io"
        );
        assert_eq!(Some(slice.owner_references()[0].uid.clone()), owner_uid);
    }
    let v4_ports: Vec<_> = slices[0]
        .ports
        .iter()
        .flatten()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        v4_ports,
        [
            ("http-8080".to_owned(), 30001),
            ("tcp-22".to_owned(), 30002),
            ("udp-53".to_owned(), 30003),
        ]
    );

    // A stopped instance keeps its Service; its address is listed, not ready, and says why.
    assert_eq!(
        endpoints(&slices_of(&fx, "v-bb02").await),
        [("v-bb02-ipv4-0".to_owned(), "198.51.100.7".to_owned(), false)]
    );
    let described = fx.ns.kubectl(&["describe", "service", "v-bb02"]);
    assert!(
        described.contains("Not ready: the remote instance is exited, not running."),
        "{described}"
    );

    // A host name is reported and skipped; an instance without ports has nothing.
    let cc03 = mirror(&fx, "v-cc03").await;
    let condition = service_condition(&cc03);
    assert_eq!(
        (condition.status, condition.reason.as_str()),
        (ConditionStatus::False, ENDPOINT_REFUSED)
    );
    assert!(
        condition.message.contains("host name"),
        "{}",
        condition.message
    );
    assert!(services.get_opt("v-cc03").await.expect("get").is_none());
    assert!(services.get_opt("v-dd04").await.expect("get").is_none());
    let aa01 = mirror(&fx, "v-aa01").await;
    assert_eq!(service_condition(&aa01).reason, ROUTED);
    assert_eq!(
        aa01.status
            .as_ref()
            .and_then(|s| s.service.as_ref())
            .map(|s| s.name.as_str()),
        Some("v-aa01")
    );

    // What a user sees.
    let wide = fx.ns.kubectl(&["get", "gpui", "-o", "wide"]);
    let header = ppio_test_support::table_header(&wide);
    assert!(header.contains(&"SERVICE"), "{wide}");
    let row = wide
        .lines()
        .find(|l| l.starts_with("v-aa01 "))
        .expect("a row for v-aa01");
    assert!(row.split_whitespace().any(|cell| cell == "v-aa01"), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_remote_status_and_a_moved_address_replaces_the_old_one() {
    let records = vec![record(
        "aa01",
        5,
        "exited",
        json!([port(8080, "http", "http://203.0.113.5:30001")]),
    )];
    let fx = start("svc-moves", records, allowing_documentation()).await;
    fx.create_view("v", |spec| spec.services.enabled = true)
        .await;
    fx.wait_ready("v", true, "Synced").await;
    let first = slices_of(&fx, "v-aa01").await;
    assert_eq!(
        endpoints(&first),
        [("v-aa01-ipv4-0".to_owned(), "203.0.113.5".to_owned(), false)]
    );
    let service_uid = fx
        .ns
        .api::<Service>()
        .get("v-aa01")
        .await
        .expect("a Service")
        .uid();

    fx.simulator()
        .patch_instance("aa01", json!({ "status": { "status": "running" } }));
    fx.refresh("v").await;
    assert_eq!(
        endpoints(&slices_of(&fx, "v-aa01").await),
        [("v-aa01-ipv4-0".to_owned(), "203.0.113.5".to_owned(), true)]
    );

    // A migration: a new address and port, in the same slice, and an Event says so.
    assert!(
        fx.simulator()
            .set_endpoints("aa01", &[(8080, "http://198.51.100.9:31000")])
    );
    fx.refresh("v").await;
    let moved = slices_of(&fx, "v-aa01").await;
    assert_eq!(
        endpoints(&moved),
        [("v-aa01-ipv4-0".to_owned(), "198.51.100.9".to_owned(), true)]
    );
    assert_eq!(
        moved[0].uid(),
        first[0].uid(),
        "the slice is replaced in place"
    );
    assert_eq!(moved[0].ports.as_ref().unwrap()[0].port, Some(31000));
    assert_eq!(
        fx.ns
            .api::<Service>()
            .get("v-aa01")
            .await
            .expect("a Service")
            .uid(),
        service_uid,
        "the Service, and its ClusterIP, stay"
    );
    let event = wait_for(
        "the EndpointChanged Event",
        Duration::from_secs(20),
        || async {
            fx.ns
                .api::<Event>()
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("EndpointChanged"))
        },
    )
    .await;
    let note = event.note.unwrap_or_default();
    assert!(note.contains("198.51.100.9:31000"), "{note}");
    assert_eq!(
        event.regarding.and_then(|r| r.name).as_deref(),
        Some("v-aa01")
    );

    // Stopped, with the endpoint taken away: the Service stays, with no address.
    fx.simulator()
        .patch_instance("aa01", json!({ "status": { "status": "exited" } }));
    fx.simulator().set_endpoints("aa01", &[(8080, "")]);
    fx.refresh("v").await;
    assert!(slices_of(&fx, "v-aa01").await.is_empty());
    assert_eq!(
        fx.ns
            .api::<Service>()
            .get("v-aa01")
            .await
            .expect("a Service")
            .uid(),
        service_uid
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_go_with_their_mirror_and_with_the_option() {
    let records = vec![
        record(
            "aa01",
            6,
            "running",
            json!([port(8080, "http", "http://203.0.113.5:30001")]),
        ),
        record(
            "bb02",
            7,
            "running",
            json!([port(8080, "http", "http://203.0.113.6:30001")]),
        ),
    ];
    let fx = start("svc-removal", records, allowing_documentation()).await;
    fx.create_view("v", |spec| spec.services.enabled = true)
        .await;
    fx.wait_ready("v", true, "Synced").await;
    let services = fx.ns.api::<Service>();
    let slices = fx.ns.api::<EndpointSlice>();
    let bb02 = services.get("v-bb02").await.expect("a Service");
    let bb02_slice = slices.get("v-bb02-ipv4-0").await.expect("a slice");

    // The instance leaves the listing: its mirror goes under the removal rules, its Service with it.
    fx.simulator().remove_instance("bb02");
    let removed = async {
        while fx
            .instances()
            .get_opt("v-bb02")
            .await
            .expect("get")
            .is_some()
        {
            fx.refresh("v").await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), removed)
        .await
        .expect("the mirror of bb02 is removed");
    let uid = bb02.uid().expect("a UID");
    let service_gone = await_condition(services.clone(), "v-bb02", conditions::is_deleted(&uid));
    assert!(
        matches!(
            tokio::time::timeout(Duration::from_secs(60), service_gone).await,
            Ok(Ok(_))
        ),
        "the Service is garbage-collected with its mirror"
    );
    let uid = bb02_slice.uid().expect("a UID");
    let slice_gone = await_condition(
        slices.clone(),
        "v-bb02-ipv4-0",
        conditions::is_deleted(&uid),
    );
    assert!(
        matches!(
            tokio::time::timeout(Duration::from_secs(60), slice_gone).await,
            Ok(Ok(_))
        ),
        "the EndpointSlice is garbage-collected with its mirror"
    );

    // The option turned off: the Services go, the mirrors stay and no longer name one.
    fx.change_spec("v", |spec| spec.services.enabled = false)
        .await;
    fx.wait_ready("v", true, "Synced").await;
    assert!(services.get_opt("v-aa01").await.expect("get").is_none());
    assert!(
        slices
            .get_opt("v-aa01-ipv4-0")
            .await
            .expect("get")
            .is_none()
    );
    let aa01 = mirror(&fx, "v-aa01").await;
    let status = aa01.status.expect("a status");
    assert_eq!(status.service, None);
    assert!(condition::find(&status.conditions, SERVICE_ENDPOINTS).is_none());
    let view = fx.views().get("v").await.expect("the view");
    assert_eq!(view.status.and_then(|s| s.service_count), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_service_routes_to_a_refused_address_and_the_view_still_syncs() {
    // Each address a record could name that is not a host on the public internet, and what the
    // mirror's condition says of it. The operator allows 10.20.0.0/16, the shared range and fd00::/8,
    // and declares two ranges as the cluster's own.
    let refused = [
        ("127.0.0.1", "in 127.0.0.0/8, Loopback"),
        ("[::1]", "in ::1/128, Loopback Address"),
        ("169.254.169.254", "the cloud metadata address"),
        ("[fe80::1]", "in fe80::/10, Link-Local Unicast"),
        ("224.0.0.1", "in 224.0.0.0/4, Multicast"),
        ("[ff02::1]", "in ff00::/8, Multicast"),
        ("0.0.0.0", "This host on this network"),
        ("[::]", "in ::/128, Unspecified Address"),
        ("[::ffff:10.0.0.1]", "IPv4-mapped Address"),
        ("[64:ff9b::a00:5]", "carries an IPv4 address"),
        ("[2002:a00:5::1]", "in 2002::/16, 6to4"),
        (
            "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
            "in 2001::/32, TEREDO",
        ),
        ("[::ffff:0:a00:5]", "IPv4-translated Address"),
        ("[2606:4700::5efe:a00:1]", "ISATAP"),
        ("10.0.0.5", "in 10.0.0.0/8, Private-Use"),
        ("192.168.1.20", "in 192.168.0.0/16, Private-Use"),
        ("[fc00::7]", "in fc00::/7, Unique-Local"),
        (
            "198.18.0.1",
            "in 198.18.0.0/15, Benchmarking (RFC 2544), not globally reachable",
        ),
        ("192.0.2.1", "no --service-allowed-cidr allows it"),
        ("[2001:1::1]", "Port Control Protocol Anycast"),
        ("168.63.129.16", "Azure's platform address"),
        (
            "100.100.100.200",
            "Alibaba Cloud's instance metadata service",
        ),
        ("[fd00:ec2::254]", "AWS's instance metadata service"),
        ("198.51.100.20", "cluster's own range 198.51.100.0/24"),
        ("10.20.5.9", "cluster's own range 10.20.5.0/24"),
    ];
    // At most 8 per instance, so that each mirror's condition lists every one of its refusals.
    let ids = ["aa01", "aa02", "aa03", "aa04"];
    let chunks: Vec<_> = refused.chunks(7).collect();
    assert_eq!(chunks.len(), ids.len());
    let mut records = Vec::new();
    for (n, (id, chunk)) in ids.iter().zip(&chunks).enumerate() {
        let mut ports: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, (address, _))| {
                let i = n * 7 + i;
                port(9000 + i as u16, "tcp", &format!("{address}:3{i:04}"))
            })
            .collect();
        if n == 0 {
            // Allowed: a private address and a shared one.
            ports.push(port(8080, "http", "http://10.20.0.7:30080"));
            ports.push(port(8081, "http", "http://100.64.1.1:30081"));
        }
        records.push(record(id, 8 + n as u64, "running", json!(ports)));
    }
    let policy = AddressPolicy {
        cluster: vec![
            "198.51.100.0/24".parse().unwrap(),
            "10.20.5.0/24".parse().unwrap(),
        ],
        allowed: vec![
            "10.20.0.0/16".parse().unwrap(),
            "100.64.0.0/10".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ],
    };
    let fx = start("svc-refused", records, policy).await;
    fx.create_view("v", |spec| spec.services.enabled = true)
        .await;
    let view = fx.wait_ready("v", true, "Synced").await;
    let status = view.status.expect("a status");
    assert_eq!(status.refused_endpoint_count, Some(refused.len() as i64));
    assert_eq!(
        status.service_count,
        Some(1),
        "only aa01 has a routable port"
    );

    let mut all: Vec<String> = fx
        .ns
        .api::<EndpointSlice>()
        .list(&ListParams::default())
        .await
        .expect("list EndpointSlices")
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter().flat_map(|e| e.addresses.clone()))
        .collect();
    all.sort();
    assert_eq!(
        all,
        ["10.20.0.7", "100.64.1.1"],
        "only the allowed private and shared addresses are routed"
    );
    let service = fx
        .ns
        .api::<Service>()
        .get("v-aa01")
        .await
        .expect("a Service");
    let ports = service.spec.and_then(|s| s.ports).unwrap_or_default();
    assert_eq!(ports.len(), 2, "refused ports are not Service ports");

    for (n, (id, chunk)) in ids.iter().zip(&chunks).enumerate() {
        let condition = service_condition(&mirror(&fx, &format!("v-{id}")).await);
        assert_eq!(condition.status, ConditionStatus::False);
        assert_eq!(condition.reason, ENDPOINT_REFUSED);
        let message = condition.message;
        for (i, (address, why)) in chunk.iter().enumerate() {
            let i = n * 7 + i;
            assert!(
                message.contains(&format!("{address}:3{i:04}\" is not routed")),
                "{address} in {message}"
            );
            assert!(message.contains(why), "{why} in {message}");
        }
    }
}

/// The operator's process with `args` after `run`, and nothing from this environment that could
/// configure it otherwise: its exit code and its error output.
fn run_operator(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = std::process::Command::new(crate::operator_binary());
    command.arg("run").args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("PPIO_OPERATOR_") || key.starts_with("KUBERNETES_") {
            command.env_remove(key);
        }
    }
    command
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .envs(env.iter().copied());
    let output = command.output().expect("run the operator");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_allowed_range_that_can_never_be_routed_to_stops_the_operator_at_start() {
    for (args, env, said) in [
        (
            &["--services", "--service-allowed-cidr", "127.0.0.0/8"][..],
            &[][..],
            "127.0.0.0/8 lies in 127.0.0.0/8, Loopback",
        ),
        (
            &[
                "--services",
                "--service-allowed-cidr=10.20.0.0/16,169.254.169.0/24",
            ][..],
            &[][..],
            "169.254.169.0/24 lies in 169.254.0.0/16, Link Local",
        ),
        (
            &["--services"][..],
            &[("PPIO_OPERATOR_SERVICE_ALLOWED_CIDRS", "0.0.0.0/0")][..],
            "0.0.0.0/0 is not inside one range that may be allowed",
        ),
        (
            &["--services", "--service-allowed-cidr", "8.8.8.0/24"][..],
            &[][..],
            "8.8.8.0/24 holds only public addresses",
        ),
        // Quoted as given, not as its network 100.0.0.0/9.
        (
            &["--services", "--service-allowed-cidr", "100.64.0.0/9"][..],
            &[][..],
            "100.64.0.0/9 is not inside one range that may be allowed",
        ),
        // Its every address stays refused.
        (
            &["--services", "--service-allowed-cidr", "100.100.100.200/32"][..],
            &[][..],
            "100.100.100.200/32 lies inside 100.100.100.200 (Alibaba Cloud's instance metadata",
        ),
        (
            &[
                "--services",
                "--service-cluster-cidr=10.96.0.0/12",
                "--service-allowed-cidr=10.100.0.0/16",
            ][..],
            &[][..],
            "10.100.0.0/16 lies inside the cluster's own range 10.96.0.0/12",
        ),
    ] {
        let (code, stderr) = run_operator(args, env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(said), "{said} in {stderr}");
        assert!(stderr.contains("--service-allowed-cidr"), "{stderr}");
    }
    // An allowable range passes: the operator goes on to look for a cluster, and finds none here.
    let (code, stderr) = run_operator(
        &[
            "--services",
            "--service-allowed-cidr=10.20.0.0/16,192.0.2.10/32,fd00::/8",
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot configure a Kubernetes client"),
        "{stderr}"
    );
    // Without the cluster's ranges declared, it warns that they may be routed to.
    assert!(
        stderr.contains("but no --service-cluster-cidr is given"),
        "{stderr}"
    );
    let (code, stderr) = run_operator(
        &[
            "--services",
            "--service-cluster-cidr=10.96.0.0/12",
            "--service-allowed-cidr=10.0.0.0/8",
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot configure a Kubernetes client"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("--service-cluster-cidr is given"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_name_taken_by_someone_else_is_left_alone_until_it_is_free() {
    let records = vec![record(
        "aa01",
        9,
        "running",
        json!([port(8080, "http", "http://203.0.113.5:30001")]),
    )];
    let fx = Fixture::without_operator(ppio_test_support::shared(), "svc-taken", records).await;
    let services = fx.ns.api::<Service>();
    create_their_service(&services).await;
    let mut fx = fx;
    fx._operator = Some(ppio_test_support::operator::RunningOperator::start_with(
        fx.ns.client.clone(),
        &fx.ns.name,
        &fx.ppio.base_url(),
        |settings| settings.services = Some(allowing_documentation()),
    ));
    fx.create_view("v", |spec| spec.services.enabled = true)
        .await;
    fx.wait_ready("v", true, "Synced").await;
    let condition = name_taken(&fx, false).await;
    assert!(
        condition.message.contains("v-aa01"),
        "{}",
        condition.message
    );
    assert_theirs(&services.get("v-aa01").await.expect("their Service"));
    assert!(
        fx.ns
            .api::<EndpointSlice>()
            .get_opt("v-aa01-ipv4-0")
            .await
            .expect("get")
            .is_none()
    );

    // Their Service goes: the next sync makes the operator's.
    delete_and_await_gone(&services).await;
    fx.refresh("v").await;
    let ours = services
        .get("v-aa01")
        .await
        .expect("the operator's Service");
    assert_eq!(
        ours.labels()["app.kubernetes.io/managed-by"],
        "ppio-gpu-operator"
    );
    assert_eq!(
        service_condition(&mirror(&fx, "v-aa01").await).reason,
        ROUTED
    );
}

/// The API server's own count of requests to `resource` that read one object or write any.
fn requests_to(kubeconfig: &std::path::Path, resource: &str) -> u64 {
    let metrics = kubectl(kubeconfig, None, &["get", "--raw", "/metrics"]);
    metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| l.contains(&format!("resource=\"{resource}\"")))
        .filter(|l| {
            [
                "GET", "APPLY", "PATCH", "POST", "PUT", "DELETE", "CREATE", "UPDATE",
            ]
            .iter()
            .any(|verb| l.contains(&format!("verb=\"{verb}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_in_which_nothing_changed_reads_and_writes_no_service() {
    // A control plane of its own, so no other test's requests reach its counters.
    let control_plane =
        ppio_test_support::ControlPlane::start(None).expect("private control plane");
    let records: Vec<Value> = (0..6)
        .map(|i| {
            record(
                &format!("a{i}"),
                20 + i,
                "running",
                json!([port(
                    8080,
                    "http",
                    &format!("http://203.0.113.{}:30001", i + 2)
                )]),
            )
        })
        .collect();
    let fx = Fixture::start_in_with(&control_plane, "svc-quiet", records, |settings| {
        settings.services = Some(allowing_documentation());
    })
    .await;
    fx.create_view("v", |spec| spec.services.enabled = true)
        .await;
    fx.wait_ready("v", true, "Synced").await;
    let count = |resource| requests_to(&control_plane.kubeconfig, resource);
    let (services, slices) = (count("services"), count("endpointslices"));
    assert!(
        services >= 6 && slices >= 6,
        "the first sync wrote them ({services}, {slices})"
    );
    fx.refresh("v").await;
    fx.refresh("v").await;
    assert_eq!(
        (count("services"), count("endpointslices")),
        (services, slices),
        "syncs without remote changes must not read or write Services or EndpointSlices"
    );

    // One moved instance costs its Service and its slice, and no more.
    fx.simulator()
        .set_endpoints("a0", &[(8080, "http://198.51.100.2:31000")]);
    fx.refresh("v").await;
    assert_eq!(
        (count("services"), count("endpointslices")),
        (services + 1, slices + 1),
        "one moved instance: one apply of its Service, one of its slice"
    );
    drop(fx);
    control_plane.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_or_slice_someone_deletes_is_written_again_at_the_next_sync() {
    let records = vec![record(
        "aa01",
        30,
        "running",
        json!([port(8080, "http", "http://203.0.113.5:30001")]),
    )];
    let fx = start("svc-repair", records, allowing_documentation()).await;
    fx.create_view("v", |spec| spec.services.enabled = true)
        .await;
    fx.wait_ready("v", true, "Synced").await;
    deleted_and_written_again(&fx, &fx.ns.api::<Service>(), "v-aa01").await;
    deleted_and_written_again(&fx, &fx.ns.api::<EndpointSlice>(), "v-aa01-ipv4-0").await;
    assert_eq!(
        endpoints(&slices_of(&fx, "v-aa01").await),
        [("v-aa01-ipv4-0".to_owned(), "203.0.113.5".to_owned(), true)]
    );
}

/// Deletes `name` as someone else would, then asks view `v` for syncs until one writes it again,
/// as a new object.
async fn deleted_and_written_again<K>(fx: &Fixture, api: &kube::Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let first = api.get(name).await.expect("the object").uid();
    api.delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    let again = wait_for(
        &format!("the deleted {name} to be written again"),
        Duration::from_secs(30),
        || async {
            fx.refresh("v").await;
            api.get_opt(name).await.ok()?.map(|o| o.uid())
        },
    )
    .await;
    assert_ne!(again, first, "{name} is a new object");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_someone_replaces_with_their_own_is_left_alone() {
    let records = vec![record(
        "aa01",
        31,
        "running",
        json!([port(8080, "http", "http://203.0.113.5:30001")]),
    )];
    let fx = start("svc-replaced", records, allowing_documentation()).await;
    fx.create_view("v", |spec| spec.services.enabled = true)
        .await;
    fx.wait_ready("v", true, "Synced").await;
    let services = fx.ns.api::<Service>();
    delete_and_await_gone(&services).await;
    create_their_service(&services).await;
    name_taken(&fx, true).await;
    let still_theirs = services.get("v-aa01").await.expect("their Service");
    assert_theirs(&still_theirs);
    let ports = still_theirs.spec.and_then(|s| s.ports).unwrap_or_default();
    assert_eq!(ports.len(), 1, "their one port, none of the instance's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_the_api_server_refuses_is_reported_on_its_mirror_and_the_view_still_syncs() {
    let records = vec![
        record(
            "aa01",
            32,
            "running",
            json!([port(8080, "http", "http://203.0.113.5:30001")]),
        ),
        record("aa02", 33, "running", json!([])),
    ];
    let fx = start("svc-refused-write", records, allowing_documentation()).await;
    // A quota of no Services: the API server's admission refuses every Service in the namespace.
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": { "name": "no-services" },
        "spec": { "hard": { "services": "0" } },
    }))
    .unwrap();
    let quotas = fx.ns.api::<ResourceQuota>();
    quotas
        .create(&PostParams::default(), &quota)
        .await
        .expect("the quota");
    // What the quota controller would write, which the test control plane does not run.
    quotas
        .patch_status(
            "no-services",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "status": { "hard": { "services": "0" }, "used": { "services": "0" } }
            })),
        )
        .await
        .expect("the quota's status");
    fx.create_view("v", |spec| spec.services.enabled = true)
        .await;
    let view = fx.wait_ready("v", true, "Synced").await;
    let condition = service_condition(&mirror(&fx, "v-aa01").await);
    assert_eq!(condition.reason, SERVICE_REJECTED, "{}", condition.message);
    assert_eq!(condition.status, ConditionStatus::False);
    let status = view.status.expect("a status");
    assert_eq!(
        status.mirrored_count,
        Some(2),
        "both instances are mirrored"
    );
    assert_eq!(status.service_count, Some(0), "no Service is counted");
    assert!(condition.message.contains("403"), "{}", condition.message);
    assert!(
        fx.ns
            .api::<Service>()
            .get_opt("v-aa01")
            .await
            .expect("get")
            .is_none()
    );
}

/// Creates a Service of someone else's named `v-aa01`: a selector, one port, no owner.
async fn create_their_service(services: &kube::Api<Service>) {
    let theirs: Service = serde_json::from_value(json!({
        "metadata": { "name": "v-aa01", "labels": { "app": "theirs" } },
        "spec": { "selector": { "app": "theirs" }, "ports": [{ "port": 80 }] },
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &theirs)
        .await
        .expect("their Service");
}

/// Deletes the Service `v-aa01` and waits until it is gone.
async fn delete_and_await_gone(services: &kube::Api<Service>) {
    services
        .delete("v-aa01", &DeleteParams::default())
        .await
        .expect("delete the Service");
    wait_for("the Service to go", Duration::from_secs(30), || async {
        services
            .get_opt("v-aa01")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}

/// Waits until mirror `v-aa01` says its Service's name is taken (asking view `v` for syncs when
/// `refresh`), and returns that condition.
async fn name_taken(fx: &Fixture, refresh: bool) -> condition::Condition {
    wait_for(
        "the mirror to say the name is taken",
        Duration::from_secs(30),
        || async {
            if refresh {
                fx.refresh("v").await;
            }
            let status = fx.instances().get_opt("v-aa01").await.ok()??.status?;
            condition::find(&status.conditions, SERVICE_ENDPOINTS)
                .filter(|c| c.reason == NAME_TAKEN)
                .cloned()
        },
    )
    .await
}

/// The Service is still its owner's as they made it: their label and selector, none of the
/// operator's labels, no owner reference.
fn assert_theirs(service: &Service) {
    assert_eq!(
        service.labels().get("app").map(String::as_str),
        Some("theirs")
    );
    assert!(
        !service
            .labels()
            .contains_key("app.kubernetes.io/managed-by")
    );
    assert_eq!(service.owner_references(), [], "not owned by a mirror");
    assert_eq!(
        service
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| s.get("app"))
            .map(String::as_str),
        Some("theirs")
    );
}
