//! The Helm chart (`charts/ppio-gpu-operator`), rendered by the helm that `make helm` builds from its
//! Go module: what it renders is accepted by the real API server, its RBAC grants exactly what the
//! operator needs (checked on the rendered YAML and by the API server's own authorizer), the operator
//! binary runs with the rendered arguments and that RBAC alone, its values schema rejects bad values,
//! and its CRDs are the generated ones.
//!
//! Tests that only render are plain `#[test]`s; those that talk to the API server are `#[tokio::test]`.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Container, PodSpec, Secret, ServiceAccount};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};
use kube::api::PostParams;
use kube::{Api, Client};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use ppio_test_support::fixture::{API_KEY, start_simulator};
use ppio_test_support::operator::OperatorProcess;
use ppio_test_support::{TestNamespace, kubectl, rand_suffix, shared, wait_for};

const GROUP: &str = "gpu.ppio.io";

// ---------------------------------------------------------------------------------------------------
// What the chart must grant the operator, and nothing more.

/// The operator's grants in every namespace it watches (ClusterRole, or a Role in each namespace):
/// the verbs its code uses, and no other. Views: the controller's watch (list, watch) and status
/// written with server-side apply (patch). Mirrors: listed by label, applied (patch, and create for a
/// new one: the API server authorizes an apply that creates as a create), pruned (delete). No `get` or
/// `update` on either kind, and nothing watches the mirrors.
fn expected_operator_grants() -> BTreeSet<Grant> {
    let mut grants = BTreeSet::new();
    let mut add = |group: &str, resource: &str, verbs: &[&str]| {
        for verb in verbs {
            grants.insert(Grant::new(group, resource, verb, None));
        }
    };
    add(GROUP, "gpuinstanceviews", &["list", "watch"]);
    add(GROUP, "gpuinstanceviews/status", &["patch"]);
    add(GROUP, "gpuinstanceviews/finalizers", &["update"]);
    add(
        GROUP,
        "gpuinstances",
        &["get", "list", "watch", "create", "patch", "delete"],
    );
    add(GROUP, "gpuinstances/status", &["patch"]);
    add("", "secrets", &["get"]);
    add("events.k8s.io", "events", &["create", "patch"]);
    grants
}

/// With `instanceServices.enabled`, and only then: a Service and EndpointSlices per mirror, the
/// operator's own watched (list, watch), read before a name is first used or removed (get), applied
/// (patch, create), removed (delete). No update or deletecollection.
fn expected_instance_service_grants() -> BTreeSet<Grant> {
    let mut grants = BTreeSet::new();
    for (group, resource) in [("", "services"), ("discovery.k8s.io", "endpointslices")] {
        for verb in ["get", "list", "watch", "create", "patch", "delete"] {
            grants.insert(Grant::new(group, resource, verb, None));
        }
    }
    grants
}

/// The leader-election grants, in the release namespace only: create any Lease (create carries no
/// name to authorize); get and update only the operator's (the elector takes, renews and releases
/// it with updates conditional on its resourceVersion, and never patches).
fn expected_lease_grants(lease: &str) -> BTreeSet<Grant> {
    let mut grants = BTreeSet::from([Grant::new("coordination.k8s.io", "leases", "create", None)]);
    for verb in ["get", "update"] {
        grants.insert(Grant::new(
            "coordination.k8s.io",
            "leases",
            verb,
            Some(lease),
        ));
    }
    grants
}

/// With metrics auth on, and only then: the operator asks the API server who a /metrics reader is
/// (TokenReview) and whether they may read it (SubjectAccessReview). Both kinds are cluster-scoped.
fn expected_metrics_auth_grants() -> BTreeSet<Grant> {
    BTreeSet::from([
        Grant::new("authentication.k8s.io", "tokenreviews", "create", None),
        Grant::new(
            "authorization.k8s.io",
            "subjectaccessreviews",
            "create",
            None,
        ),
    ])
}

// ---------------------------------------------------------------------------------------------------
// Rendering only.

#[test]
fn chart_crds_are_identical_to_the_generated_crds() {
    let generated = read(&ppio_test_support::repository().join("crds/gpu.ppio.io.yaml"));
    let shipped = read(&chart_dir().join("crds/gpu.ppio.io.yaml"));
    assert!(
        generated == shipped,
        "charts/ppio-gpu-operator/crds/gpu.ppio.io.yaml differs from crds/gpu.ppio.io.yaml; copy it \
         with `cp crds/gpu.ppio.io.yaml charts/ppio-gpu-operator/crds/` (`make crds` does both)"
    );
}

#[test]
fn chart_app_version_is_the_crate_version() {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ChartYaml {
        app_version: String,
    }
    let chart: ChartYaml = serde_yaml_ng::from_str(&read(&chart_dir().join("Chart.yaml")))
        .expect("Chart.yaml has an appVersion");
    assert_eq!(
        chart.app_version,
        env!("CARGO_PKG_VERSION"),
        "the chart's appVersion (the default image tag) must follow Cargo.toml's version"
    );
}

#[test]
fn default_deployment_runs_the_hardened_operator_with_leader_election() {
    let rendered = render("ppio", "ppio-system", &[]);
    let [deployment] = rendered
        .objects::<Deployment>("Deployment")
        .try_into()
        .unwrap_or_else(|found: Vec<_>| panic!("expected one Deployment, found {}", found.len()));
    let spec = deployment.spec.expect("Deployment spec");
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.automount_service_account_token, Some(true));
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    let [container] = pod.containers.try_into().expect("one container");
    assert_eq!(
        container.image.as_deref(),
        Some(concat!(
            "ghcr.io/ppio/ppio-gpu-operator:",
            env!("CARGO_PKG_VERSION")
        ))
    );
    let args = container.args.unwrap_or_default();
    assert_eq!(args.first().map(String::as_str), Some("run"), "{args:?}");
    for expected in [
        "--concurrency=4",
        "--write-concurrency=16",
        "--ppio-timeout-seconds=30",
        "--kube-request-timeout-seconds=15",
        "--ppio-requests-per-minute=100",
        "--memo-memory-limit-mib=64",
        "--product-list-ttl-seconds=3600",
        "--log-format=json",
        "--log-level=info",
        "--http-address=0.0.0.0:8080",
        "--leader-election=true",
        "--lease-name=ppio-ppio-gpu-operator",
        "--lease-namespace=ppio-system",
        "--lease-duration-seconds=15",
    ] {
        assert!(
            args.iter().any(|a| a == expected),
            "{expected} missing in {args:?}"
        );
    }
    assert!(
        !args.iter().any(|a| a.starts_with("--namespace")),
        "all namespaces is the default: no --namespace, got {args:?}"
    );

    let downward: Vec<_> = container
        .env
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| Some((e.name, e.value_from?.field_ref?.field_path)))
        .collect();
    assert_eq!(
        downward,
        [
            ("POD_NAME".to_owned(), "metadata.name".to_owned()),
            ("POD_NAMESPACE".to_owned(), "metadata.namespace".to_owned()),
        ]
    );

    let security = container
        .security_context
        .expect("container securityContext");
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.run_as_user, Some(65532));
    assert_eq!(security.run_as_group, Some(65532));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_owned()])
    );
    assert_eq!(
        security.seccomp_profile.map(|p| p.type_).as_deref(),
        Some("RuntimeDefault")
    );

    let port = container.ports.unwrap_or_default();
    assert!(
        port.iter()
            .any(|p| p.name.as_deref() == Some("http") && p.container_port == 8080),
        "{port:?}"
    );
    let probe_path = |probe: Option<k8s_openapi::api::core::v1::Probe>| {
        probe.and_then(|p| p.http_get).and_then(|h| h.path)
    };
    assert_eq!(
        probe_path(container.liveness_probe).as_deref(),
        Some("/healthz")
    );
    assert_eq!(
        probe_path(container.readiness_probe).as_deref(),
        Some("/readyz")
    );

    assert_eq!(
        rendered.kinds_count("PodDisruptionBudget"),
        1,
        "two replicas get a PodDisruptionBudget"
    );
    assert_eq!(rendered.kinds_count("ServiceMonitor"), 0, "off by default");
    assert_eq!(rendered.kinds_count("Service"), 1, "the metrics Service");
}

#[test]
fn each_release_of_a_sharded_install_syncs_its_shard_on_its_own_lease() {
    let deployment_args = |release: &str, selector: &str| {
        let set = format!("watchLabelSelector={selector}");
        let rendered = render(release, "ppio-system", &["--set-string", &set]);
        let [deployment] = rendered
            .objects::<Deployment>("Deployment")
            .try_into()
            .unwrap_or_else(|found: Vec<_>| panic!("one Deployment, found {}", found.len()));
        let pod = deployment
            .spec
            .and_then(|s| s.template.spec)
            .expect("pod spec");
        pod.containers[0].args.clone().unwrap_or_default()
    };
    let shard = deployment_args("shard1", "sharding.ppio.io/key in (shard1)");
    assert!(
        shard
            .iter()
            .any(|a| a == "--watch-label-selector=sharding.ppio.io/key in (shard1)"),
        "{shard:?}"
    );
    let rest = deployment_args("ppio", "!sharding.ppio.io/key");
    assert!(
        rest.iter()
            .any(|a| a == "--watch-label-selector=!sharding.ppio.io/key"),
        "{rest:?}"
    );
    assert_ne!(
        container_arg(&shard, "--lease-name="),
        container_arg(&rest, "--lease-name="),
        "each shard leads on a Lease of its own"
    );
    let unsharded = render("ppio", "ppio-system", &[]);
    assert!(
        !format!("{:?}", unsharded.objects::<Deployment>("Deployment"))
            .contains("--watch-label-selector"),
        "no selector by default"
    );
    assert!(
        helm_template(
            "bad",
            "ppio-system",
            &["--set-string", "watchLabelSelector=team=ml"]
        )
        .is_err(),
        "the schema refuses a selector on another label"
    );
}

#[test]
fn cluster_wide_rbac_grants_exactly_what_the_operator_needs() {
    let rendered = render("ppio", "ppio-system", &[]);
    let account = rendered.operator_account();

    let role = rendered.named::<ClusterRole>("ClusterRole", "ppio-ppio-gpu-operator");
    assert_eq!(grants_of(role.rules.as_deref()), expected_operator_grants());
    let binding =
        rendered.named::<ClusterRoleBinding>("ClusterRoleBinding", "ppio-ppio-gpu-operator");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(binding.role_ref.name, "ppio-ppio-gpu-operator");
    assert_eq!(binding.subjects, Some(vec![account.clone()]));
    assert_eq!(
        rendered.kinds_count("ClusterRoleBinding"),
        1,
        "nothing else is bound cluster-wide"
    );

    let roles = rendered.objects::<Role>("Role");
    let [lease_role] = roles.as_slice() else {
        panic!(
            "expected only the leader-election Role, found {}",
            roles.len()
        );
    };
    assert_eq!(
        lease_role.metadata.namespace.as_deref(),
        Some("ppio-system")
    );
    assert_eq!(
        grants_of(lease_role.rules.as_deref()),
        expected_lease_grants("ppio-ppio-gpu-operator")
    );
    let bindings = rendered.objects::<RoleBinding>("RoleBinding");
    let [lease_binding] = bindings.as_slice() else {
        panic!(
            "expected only the leader-election RoleBinding, found {}",
            bindings.len()
        );
    };
    assert_eq!(
        lease_binding.role_ref.name,
        lease_role.metadata.name.clone().unwrap_or_default()
    );
    assert_eq!(lease_binding.subjects, Some(vec![account]));

    rendered.assert_never_lists_or_watches_secrets();
}

#[test]
fn watching_listed_namespaces_grants_a_role_in_each_and_nothing_cluster_wide() {
    let rendered = render(
        "ppio",
        "ppio-system",
        &["--set", "watchNamespaces={team-a,team-b}"],
    );
    let account = rendered.operator_account();

    for namespace in ["team-a", "team-b"] {
        let role = rendered
            .objects::<Role>("Role")
            .into_iter()
            .find(|r| {
                r.metadata.namespace.as_deref() == Some(namespace)
                    && r.metadata.name.as_deref() == Some("ppio-ppio-gpu-operator")
            })
            .unwrap_or_else(|| panic!("no operator Role in {namespace}"));
        assert_eq!(grants_of(role.rules.as_deref()), expected_operator_grants());
        let binding = rendered
            .objects::<RoleBinding>("RoleBinding")
            .into_iter()
            .find(|b| b.metadata.namespace.as_deref() == Some(namespace))
            .unwrap_or_else(|| panic!("no operator RoleBinding in {namespace}"));
        assert_eq!(binding.role_ref.kind, "Role");
        assert_eq!(binding.role_ref.name, "ppio-ppio-gpu-operator");
        assert_eq!(binding.subjects, Some(vec![account.clone()]));
    }

    let namespaces_with_roles: BTreeSet<_> = rendered
        .objects::<Role>("Role")
        .into_iter()
        .filter_map(|r| r.metadata.namespace)
        .collect();
    assert_eq!(
        namespaces_with_roles,
        BTreeSet::from(["ppio-system".into(), "team-a".into(), "team-b".into()]),
        "Roles only in the watched namespaces and (for the Lease) the release namespace"
    );
    assert_eq!(
        rendered.kinds_count("ClusterRoleBinding"),
        0,
        "no cluster-wide grant to the operator"
    );
    for role in rendered.objects::<ClusterRole>("ClusterRole") {
        let name = role.metadata.name.unwrap_or_default();
        assert!(
            name.ends_with("-view") || name.ends_with("-edit"),
            "only the users' aggregated ClusterRoles are cluster-wide, found {name}"
        );
    }

    let args = rendered.operator_container().args.unwrap_or_default();
    assert!(
        args.iter().any(|a| a == "--namespace=team-a,team-b"),
        "the operator watches the listed namespaces only, got {args:?}"
    );
    rendered.assert_never_lists_or_watches_secrets();
}

#[test]
fn turning_leader_election_off_drops_the_lease_grant_and_needs_one_replica() {
    let refused = helm_template(
        "ppio",
        "ppio-system",
        &["--set", "leaderElection.enabled=false"],
    )
    .expect_err("two replicas without leader election must not render");
    assert!(refused.contains("needs replicaCount: 1"), "{refused}");

    let rendered = render(
        "ppio",
        "ppio-system",
        &[
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "replicaCount=1",
        ],
    );
    for role in rendered.objects::<Role>("Role") {
        let grants = grants_of(role.rules.as_deref());
        assert!(
            grants.iter().all(|g| g.resource != "leases"),
            "no Lease grant without leader election: {grants:?}"
        );
    }
    let args = rendered.operator_container().args.unwrap_or_default();
    assert!(
        args.iter().any(|a| a == "--leader-election=false"),
        "{args:?}"
    );
    assert!(!args.iter().any(|a| a.starts_with("--lease-")), "{args:?}");
    assert_eq!(rendered.kinds_count("PodDisruptionBudget"), 0);
}

#[test]
fn service_monitor_scrapes_the_metrics_service_when_enabled() {
    let rendered = render(
        "ppio",
        "ppio-system",
        &["--set", "serviceMonitor.enabled=true"],
    );
    let monitors = rendered.of_kind("ServiceMonitor");
    let [monitor] = monitors.as_slice() else {
        panic!("expected one ServiceMonitor, found {}", monitors.len());
    };
    assert_eq!(
        monitor["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"].as_str(), Some("http"));
    assert_eq!(endpoint["path"].as_str(), Some("/metrics"));

    // The Service it selects must carry every label it matches on, and name the port it scrapes.
    let service = rendered.of_kind("Service")[0].clone();
    let service_labels = service["metadata"]["labels"]
        .as_mapping()
        .expect("Service labels");
    let matched = monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("ServiceMonitor selector");
    for (key, value) in matched {
        assert_eq!(
            service_labels.get(key),
            Some(value),
            "Service lacks {key:?}"
        );
    }
    assert_eq!(service["spec"]["ports"][0]["name"].as_str(), Some("http"));
}

#[test]
fn aggregated_user_roles_read_both_kinds_and_edit_only_views() {
    let rendered = render("ppio", "ppio-system", &[]);
    let label = |role: &ClusterRole, aggregate: &str| {
        role.metadata
            .labels
            .as_ref()
            .and_then(|l| {
                l.get(&format!(
                    "rbac.authorization.k8s.io/aggregate-to-{aggregate}"
                ))
            })
            .map(String::as_str)
            == Some("true")
    };

    let view = rendered.named::<ClusterRole>("ClusterRole", "ppio-ppio-gpu-operator-view");
    assert!(label(&view, "view") && label(&view, "edit") && label(&view, "admin"));
    let read: BTreeSet<_> = ["gpuinstanceviews", "gpuinstances"]
        .into_iter()
        .flat_map(|r| ["get", "list", "watch"].map(|v| Grant::new(GROUP, r, v, None)))
        .collect();
    assert_eq!(grants_of(view.rules.as_deref()), read);

    let edit = rendered.named::<ClusterRole>("ClusterRole", "ppio-ppio-gpu-operator-edit");
    assert!(!label(&edit, "view") && label(&edit, "edit") && label(&edit, "admin"));
    let grants = grants_of(edit.rules.as_deref());
    assert!(
        grants.iter().all(|g| g.resource == "gpuinstanceviews"),
        "users never write GpuInstances or status: {grants:?}"
    );
    for verb in ["create", "update", "patch", "delete"] {
        assert!(grants.contains(&Grant::new(GROUP, "gpuinstanceviews", verb, None)));
    }

    let without = render(
        "ppio",
        "ppio-system",
        &["--set", "rbac.aggregateToDefaultRoles=false"],
    );
    assert_eq!(
        without.kinds_count("ClusterRole"),
        1,
        "only the operator's own"
    );
}

#[test]
fn network_policy_admits_only_the_http_port_and_lets_out_only_dns_the_api_server_and_ppio() {
    let rendered = render("ppio", "ppio-system", &[]);
    let policy = rendered.network_policy();
    assert_eq!(policy.metadata.namespace.as_deref(), Some("ppio-system"));
    let spec = policy.spec.expect("NetworkPolicy spec");
    let pod_labels = rendered.pod_labels();
    let selected = spec
        .pod_selector
        .and_then(|s| s.match_labels)
        .unwrap_or_default();
    assert!(
        !selected.is_empty() && selected.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "the policy must select the operator's pods: {selected:?} vs {pod_labels:?}"
    );
    assert_eq!(
        spec.policy_types,
        Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
        "both directions are restricted"
    );

    let ingress = spec.ingress.unwrap_or_default();
    let [only] = ingress.as_slice() else {
        panic!("expected one ingress rule, found {ingress:?}");
    };
    assert_eq!(
        ports_of(only.ports.as_deref()),
        ["TCP/8080"],
        "the HTTP port only"
    );
    assert_eq!(
        only.from, None,
        "by default from anywhere, to that port only"
    );

    let egress = spec.egress.unwrap_or_default();
    let allowed: Vec<(Vec<String>, Vec<String>)> = egress
        .iter()
        .map(|rule| {
            (
                peers_of(rule.to.as_deref()),
                ports_of(rule.ports.as_deref()),
            )
        })
        .collect();
    assert_eq!(
        allowed,
        [
            (
                vec![
                    "namespace kubernetes.io/metadata.name=kube-system, pods k8s-app=kube-dns"
                        .into()
                ],
                vec!["UDP/53".into(), "TCP/53".into()],
            ),
            (
                vec!["0.0.0.0/0".into()],
                vec!["TCP/443".into(), "TCP/6443".into()]
            ),
            (vec!["0.0.0.0/0".into()], vec!["TCP/443".into()]),
        ],
        "DNS to the cluster DNS, then the API server, then PPIO; nothing else"
    );

    // Every part is configurable, and the policy can be left out.
    let custom = render(
        "ppio",
        "ppio-system",
        &[
            "--set",
            "httpPort=9090",
            "--set",
            "networkPolicy.ingress.from[0].namespaceSelector.matchLabels.team=monitoring",
            "--set",
            "networkPolicy.egress.apiServer.cidrs={10.0.0.1/32}",
            "--set",
            "networkPolicy.egress.apiServer.ports={6443}",
            "--set",
            "networkPolicy.egress.ppio.cidrs={203.0.113.0/24}",
            "--set",
            "networkPolicy.egress.extra[0].ports[0].port=3128",
        ],
    );
    let spec = custom.network_policy().spec.expect("spec");
    let ingress = spec.ingress.unwrap_or_default();
    assert_eq!(ports_of(ingress[0].ports.as_deref()), ["TCP/9090"]);
    assert_eq!(
        peers_of(ingress[0].from.as_deref()),
        ["namespace team=monitoring"]
    );
    let egress = spec.egress.unwrap_or_default();
    assert_eq!(peers_of(egress[1].to.as_deref()), ["10.0.0.1/32"]);
    assert_eq!(ports_of(egress[1].ports.as_deref()), ["TCP/6443"]);
    assert_eq!(peers_of(egress[2].to.as_deref()), ["203.0.113.0/24"]);
    assert_eq!(ports_of(egress[3].ports.as_deref()), ["TCP/3128"]);

    let without = render(
        "ppio",
        "ppio-system",
        &["--set", "networkPolicy.enabled=false"],
    );
    assert_eq!(without.kinds_count("NetworkPolicy"), 0);
}

#[test]
fn replicas_are_spread_over_nodes_and_bounded_in_ephemeral_storage() {
    let rendered = render("ppio", "ppio-system", &[]);
    let pod_labels = rendered.pod_labels();
    let anti_affinity = rendered
        .pod_spec()
        .affinity
        .and_then(|a| a.pod_anti_affinity)
        .expect("a pod anti-affinity by default");
    assert_eq!(
        anti_affinity.required_during_scheduling_ignored_during_execution,
        None
    );
    let preferred = anti_affinity
        .preferred_during_scheduling_ignored_during_execution
        .unwrap_or_default();
    let [term] = preferred.as_slice() else {
        panic!("expected one preferred term, found {preferred:?}");
    };
    assert_eq!(term.weight, 100);
    assert_eq!(
        term.pod_affinity_term.topology_key,
        "kubernetes.io/hostname"
    );
    let matched = term
        .pod_affinity_term
        .label_selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .unwrap_or_default();
    assert!(
        !matched.is_empty() && matched.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "the term must match the replicas themselves: {matched:?} vs {pod_labels:?}"
    );

    let hard = render(
        "ppio",
        "ppio-system",
        &["--set", "podAntiAffinityPreset=hard"],
    )
    .pod_spec()
    .affinity
    .and_then(|a| a.pod_anti_affinity)
    .expect("anti-affinity");
    let required = hard
        .required_during_scheduling_ignored_during_execution
        .unwrap_or_default();
    assert_eq!(required.len(), 1);
    assert_eq!(required[0].topology_key, "kubernetes.io/hostname");
    assert_eq!(
        hard.preferred_during_scheduling_ignored_during_execution,
        None
    );

    let none = render("ppio", "ppio-system", &["--set", "podAntiAffinityPreset="]);
    assert_eq!(none.pod_spec().affinity, None);
    let own = render(
        "ppio",
        "ppio-system",
        &[
            "--set",
            "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight=1",
            "--set",
            "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchExpressions[0].key=gpu",
            "--set",
            "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchExpressions[0].operator=DoesNotExist",
        ],
    )
    .pod_spec()
    .affinity
    .expect("the given affinity");
    assert!(
        own.node_affinity.is_some() && own.pod_anti_affinity.is_none(),
        "{own:?}"
    );

    let resources = rendered
        .operator_container()
        .resources
        .expect("container resources");
    for (what, quantities) in [
        ("requests", resources.requests),
        ("limits", resources.limits),
    ] {
        assert!(
            quantities
                .unwrap_or_default()
                .contains_key("ephemeral-storage"),
            "no ephemeral-storage in {what}"
        );
    }
}

#[test]
fn the_instance_info_series_is_off_unless_the_value_turns_it_on() {
    let args = |set: &[&str]| {
        render("ppio", "ppio-system", set)
            .operator_container()
            .args
            .unwrap_or_default()
    };
    let off = args(&[]);
    assert!(
        off.iter().any(|a| a == "--metrics-instance-info=false"),
        "{off:?}"
    );
    let on = args(&["--set", "metrics.instanceInfo=true"]);
    assert!(
        on.iter().any(|a| a == "--metrics-instance-info=true"),
        "{on:?}"
    );
    let refused = helm_template(
        "ppio",
        "ppio-system",
        &["--set-string", "metrics.instanceInfo=yes"],
    )
    .expect_err("a string is not a boolean");
    assert!(refused.contains("/metrics/instanceInfo"), "{refused}");
}

#[test]
fn instance_services_are_granted_exactly_and_only_when_on() {
    let touches_services = |g: &Grant| g.resource == "services" || g.resource == "endpointslices";
    let off = render("ppio", "ppio-system", &[]);
    let args = off.operator_container().args.unwrap_or_default();
    assert!(args.iter().any(|a| a == "--services=false"), "{args:?}");
    assert!(
        !args.iter().any(|a| a.starts_with("--service-")),
        "{args:?}"
    );
    let granted: Vec<_> = off
        .all_grants()
        .into_iter()
        .filter(touches_services)
        .collect();
    assert!(
        granted.is_empty(),
        "granted with instanceServices off: {granted:?}"
    );

    // All namespaces (the cluster-wide grant acknowledged), or two.
    let cluster_wide = &["--set", "instanceServices.clusterWide=true"][..];
    for scope in [
        cluster_wide,
        &["--set", "watchNamespaces={team-a,team-b}"][..],
    ] {
        let mut values = vec![
            "--set",
            "instanceServices.enabled=true",
            "--set",
            "instanceServices.clusterCIDRs={203.0.113.0/24,2001:db8:1::/48}",
            "--set",
            "instanceServices.allowedCIDRs={10.20.0.0/16}",
            "--set",
            "rbac.aggregateToDefaultRoles=false",
        ];
        values.extend_from_slice(scope);
        let on = render("ppio", "ppio-system", &values);
        let args = on.operator_container().args.unwrap_or_default();
        for expected in [
            "--services=true",
            "--service-cluster-cidr=203.0.113.0/24,2001:db8:1::/48",
            "--service-allowed-cidr=10.20.0.0/16",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
        }
        let roles: Vec<_> = on
            .objects::<ClusterRole>("ClusterRole")
            .into_iter()
            .map(|r| r.rules)
            .chain(on.objects::<Role>("Role").into_iter().map(|r| r.rules))
            .collect();
        let granting: Vec<_> = roles
            .iter()
            .map(|rules| grants_of(rules.as_deref()))
            .filter(|grants| grants.iter().any(touches_services))
            .collect();
        assert_eq!(
            granting.len(),
            if scope == cluster_wide { 1 } else { 2 },
            "{scope:?}"
        );
        if scope != cluster_wide {
            assert!(
                on.objects::<ClusterRole>("ClusterRole")
                    .iter()
                    .all(|r| !grants_of(r.rules.as_deref()).iter().any(touches_services)),
                "nothing on Services cluster-wide with watchNamespaces set"
            );
        }
        for grants in granting {
            let mut expected = expected_operator_grants();
            expected.extend(expected_instance_service_grants());
            assert_eq!(grants, expected, "{scope:?}");
        }
    }
    let refused = helm_template(
        "ppio",
        "ppio-system",
        &["--set", "instanceServices.clusterCIDRs={10.96.0.1}"],
    )
    .expect_err("a range has a prefix length");
    assert!(refused.contains("clusterCIDRs"), "{refused}");

    // All namespaces with Services, not acknowledged: refused, saying why and what to do.
    for unacknowledged in [
        &[][..],
        &["--set", "instanceServices.clusterWide=false"][..],
        &["--set-json", "watchNamespaces=[]"][..],
    ] {
        let mut values = vec!["--set", "instanceServices.enabled=true"];
        values.extend_from_slice(unacknowledged);
        let refused = helm_template("ppio", "ppio-system", &values)
            .expect_err("cluster-wide Service writes need an acknowledgement");
        for words in [
            "every namespace",
            "kube-dns",
            "CVE-2021-25740",
            "watchNamespaces",
            "instanceServices.clusterWide=true",
        ] {
            assert!(
                refused.contains(words),
                "{unacknowledged:?}: {words} in {refused}"
            );
        }
    }
}

#[test]
fn metrics_auth_grants_token_and_access_reviews_exactly_and_only_when_on() {
    let off = render("ppio", "ppio-system", &[]);
    let args = off.operator_container().args.unwrap_or_default();
    assert!(args.iter().any(|a| a == "--metrics-auth=false"), "{args:?}");
    let review_grants: Vec<_> = off
        .all_grants()
        .into_iter()
        .filter(|g| g.resource.ends_with("reviews"))
        .collect();
    assert!(
        review_grants.is_empty(),
        "granted with metrics auth off: {review_grants:?}"
    );
    for role in off.objects::<ClusterRole>("ClusterRole") {
        assert!(
            role.rules
                .unwrap_or_default()
                .iter()
                .all(|r| r.non_resource_urls.is_none()),
            "no /metrics reader role with metrics auth off"
        );
    }

    let on = render(
        "ppio",
        "ppio-system",
        &[
            "--set",
            "metricsAuth.enabled=true",
            "--set",
            "watchNamespaces={team-a}",
            "--set",
            "rbac.aggregateToDefaultRoles=false",
        ],
    );
    let args = on.operator_container().args.unwrap_or_default();
    assert!(args.iter().any(|a| a == "--metrics-auth=true"), "{args:?}");
    let account = on.operator_account();
    let role = on.named::<ClusterRole>("ClusterRole", "ppio-ppio-gpu-operator-metrics-auth");
    assert_eq!(
        grants_of(role.rules.as_deref()),
        expected_metrics_auth_grants()
    );
    let binding =
        on.named::<ClusterRoleBinding>("ClusterRoleBinding", "ppio-ppio-gpu-operator-metrics-auth");
    assert_eq!(binding.role_ref.name, "ppio-ppio-gpu-operator-metrics-auth");
    assert_eq!(binding.subjects, Some(vec![account]));
    let review_grants: BTreeSet<_> = on
        .all_grants()
        .into_iter()
        .filter(|g| g.resource.ends_with("reviews"))
        .collect();
    assert_eq!(
        review_grants,
        expected_metrics_auth_grants(),
        "granted once, and nothing more"
    );
    assert_eq!(
        on.kinds_count("ClusterRoleBinding"),
        1,
        "a namespaced operator gets only the reviews cluster-wide; no reader is bound unless named"
    );

    let reader = on.named::<ClusterRole>("ClusterRole", "ppio-ppio-gpu-operator-metrics-reader");
    let rules = reader.rules.unwrap_or_default();
    let [rule] = rules.as_slice() else {
        panic!("expected one rule, found {rules:?}");
    };
    assert_eq!(rule.non_resource_urls, Some(vec!["/metrics".to_owned()]));
    assert_eq!(rule.verbs, ["get"]);
    assert_eq!(rule.resources, None);

    let with_reader = render(
        "ppio",
        "ppio-system",
        &[
            "--values",
            chart_dir()
                .join("ci/metrics-auth-values.yaml")
                .to_str()
                .expect("UTF-8 path"),
        ],
    );
    let binding = with_reader.named::<ClusterRoleBinding>(
        "ClusterRoleBinding",
        "ppio-ppio-gpu-operator-metrics-reader",
    );
    assert_eq!(
        binding.role_ref.name,
        "ppio-ppio-gpu-operator-metrics-reader"
    );
    assert_eq!(
        binding.subjects,
        Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "prometheus-k8s".into(),
            namespace: Some("monitoring".into()),
            api_group: None,
        }])
    );
}

#[test]
fn service_monitor_scrapes_with_prometheus_token_when_metrics_auth_is_on() {
    let endpoint_of = |args: &[&str]| {
        let rendered = render("ppio", "ppio-system", args);
        let monitors = rendered.of_kind("ServiceMonitor");
        monitors[0]["spec"]["endpoints"][0].clone()
    };
    let open = endpoint_of(&["--set", "serviceMonitor.enabled=true"]);
    assert!(open.get("bearerTokenFile").is_none() && open.get("authorization").is_none());

    let token_file = endpoint_of(&[
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "metricsAuth.enabled=true",
    ]);
    assert_eq!(token_file["scheme"].as_str(), Some("http"));
    assert_eq!(
        token_file["bearerTokenFile"].as_str(),
        Some("/var/run/secrets/kubernetes.io/serviceaccount/token")
    );

    let secret = endpoint_of(&[
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "metricsAuth.enabled=true",
        "--set",
        "serviceMonitor.authorization.type=Bearer",
        "--set",
        "serviceMonitor.authorization.credentials.name=prometheus-token",
        "--set",
        "serviceMonitor.authorization.credentials.key=token",
    ]);
    assert!(secret.get("bearerTokenFile").is_none());
    assert_eq!(
        secret["authorization"]["credentials"]["name"].as_str(),
        Some("prometheus-token")
    );
}

#[test]
fn every_kube_score_check_the_makefile_ignores_is_explained_in_the_chart_readme() {
    let makefile = read(&ppio_test_support::repository().join("Makefile"));
    let ignored: Vec<&str> = makefile
        .lines()
        .find_map(|line| line.strip_prefix("KUBE_SCORE_IGNORED :="))
        .expect("the Makefile sets KUBE_SCORE_IGNORED")
        .split_whitespace()
        .collect();
    let readme = read(&chart_dir().join("README.md"));
    for check in ignored {
        assert!(
            readme
                .lines()
                .any(|line| line.starts_with(&format!("| `{check}`"))),
            "kube-score check {check} is ignored but the chart's README gives no reason in its table"
        );
    }
}

#[test]
fn values_that_violate_the_schema_are_rejected() {
    let mut values = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp values file");
    values
        .write_all(
            b"logFormat: yaml\n\
              concurrency: 0\n\
              watchNamespaces: [Team_A]\n\
              allowedEndpoints: ['https://a.example.com,https://b.example.com']\n\
              image:\n  pullpolicy: Always\n\
              replicas: 3\n\
              podAntiAffinityPreset: always\n\
              networkPolicy:\n  egress:\n    apiServer:\n      cidrs: [10.0.0.1]\n    ppio:\n      ports: []\n",
        )
        .expect("write values");
    let path = values.path().to_str().expect("UTF-8 temp path");
    let refused = helm_template("ppio", "ppio-system", &["--values", path])
        .expect_err("values that violate the schema must not render");
    for complaint in [
        "/logFormat",
        "/concurrency",
        "/watchNamespaces/0",
        "/allowedEndpoints/0",
        "'pullpolicy' not allowed",
        "'replicas' not allowed",
        "/podAntiAffinityPreset",
        "/networkPolicy/egress/apiServer/cidrs/0",
        "/networkPolicy/egress/ppio/ports",
    ] {
        assert!(
            refused.contains(complaint),
            "no complaint about {complaint}:\n{refused}"
        );
    }
    // The chart's own defaults and its CI values files pass the same schema.
    render("ppio", "ppio-system", &[]);
    for file in [
        "namespaced-values.yaml",
        "single-replica-values.yaml",
        "metrics-auth-values.yaml",
    ] {
        let file = chart_dir().join("ci").join(file);
        render(
            "ppio",
            "ppio-system",
            &["--values", file.to_str().expect("UTF-8 path")],
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// Against the real API server.

#[tokio::test]
async fn the_api_server_accepts_the_default_rendering() {
    install_chart_crds();
    let release_ns = TestNamespace::new("chart-default").await;
    let release = format!("chart-{}", rand_suffix());
    let rendered = render(&release, &release_ns.name, &[]);
    assert_server_dry_run_accepts(&rendered);
}

#[tokio::test]
async fn the_api_server_accepts_the_namespaced_rendering() {
    install_chart_crds();
    let release_ns = TestNamespace::new("chart-ns").await;
    let team_a = TestNamespace::new("chart-ns-a").await;
    let team_b = TestNamespace::new("chart-ns-b").await;
    let rendered = render(
        "ppio",
        &release_ns.name,
        &[
            "--set",
            &format!("watchNamespaces={{{},{}}}", team_a.name, team_b.name),
            "--set",
            "allowedEndpoints={https://ppio-proxy.example.com}",
        ],
    );
    assert_server_dry_run_accepts(&rendered);
}

#[tokio::test]
async fn the_api_server_authorizes_the_operator_in_watched_namespaces_only() {
    let release_ns = TestNamespace::new("chart-authz").await;
    let watched = TestNamespace::new("chart-authz-a").await;
    let unwatched = TestNamespace::new("chart-authz-x").await;
    // Namespaced objects only (no aggregated ClusterRoles), so the namespaces' deletion cleans up.
    let rendered = render(
        "ppio",
        &release_ns.name,
        &[
            "--set",
            &format!("watchNamespaces={{{}}}", watched.name),
            "--set",
            "rbac.aggregateToDefaultRoles=false",
        ],
    );
    apply_rbac(&rendered);
    let user = username(&rendered.operator_account());
    let lease = "ppio-ppio-gpu-operator";
    let (a, x, home) = (
        watched.name.as_str(),
        unwatched.name.as_str(),
        release_ns.name.as_str(),
    );

    let checks = [
        Access::new("get", "", "secrets", a)
            .named("ppio-api-key")
            .allowed(),
        Access::new("list", "", "secrets", a).denied(),
        Access::new("watch", "", "secrets", a).denied(),
        Access::new("get", "", "secrets", x)
            .named("ppio-api-key")
            .denied(),
        Access::new("watch", GROUP, "gpuinstanceviews", a).allowed(),
        Access::new("update", GROUP, "gpuinstanceviews", a).denied(),
        Access::new("get", GROUP, "gpuinstanceviews", a)
            .named("account")
            .denied(),
        Access::new("patch", GROUP, "gpuinstanceviews/status", a).allowed(),
        Access::new("update", GROUP, "gpuinstanceviews/status", a).denied(),
        Access::new("update", GROUP, "gpuinstanceviews/finalizers", a).allowed(),
        Access::new("list", GROUP, "gpuinstances", a).allowed(),
        Access::new("create", GROUP, "gpuinstances", a).allowed(),
        Access::new("patch", GROUP, "gpuinstances", a).allowed(),
        Access::new("delete", GROUP, "gpuinstances", a).allowed(),
        Access::new("update", GROUP, "gpuinstances", a).denied(),
        Access::new("watch", GROUP, "gpuinstances", a).allowed(),
        Access::new("get", GROUP, "gpuinstances", a).allowed(),
        Access::new("deletecollection", GROUP, "gpuinstances", a).denied(),
        Access::new("patch", GROUP, "gpuinstances/status", a).allowed(),
        Access::new("update", GROUP, "gpuinstances/status", a).denied(),
        Access::new("create", "events.k8s.io", "events", a).allowed(),
        Access::new("list", GROUP, "gpuinstanceviews", x).denied(),
        Access::new("create", GROUP, "gpuinstances", x).denied(),
        Access::new("create", "coordination.k8s.io", "leases", home).allowed(),
        Access::new("get", "coordination.k8s.io", "leases", home)
            .named(lease)
            .allowed(),
        Access::new("update", "coordination.k8s.io", "leases", home)
            .named(lease)
            .allowed(),
        Access::new("patch", "coordination.k8s.io", "leases", home)
            .named(lease)
            .denied(),
        Access::new("update", "coordination.k8s.io", "leases", home)
            .named("another")
            .denied(),
        Access::new("list", "coordination.k8s.io", "leases", home).denied(),
        Access::new("delete", "coordination.k8s.io", "leases", home)
            .named(lease)
            .denied(),
        Access::new("create", "coordination.k8s.io", "leases", a).denied(),
        // Metrics auth is off: the operator may not review tokens or access.
        Access::new("create", "authentication.k8s.io", "tokenreviews", "").denied(),
        Access::new("create", "authorization.k8s.io", "subjectaccessreviews", "").denied(),
        // Instance Services are off: nothing on Services or EndpointSlices.
        Access::new("create", "", "services", a).denied(),
        Access::new("get", "", "services", a).denied(),
        Access::new("patch", "discovery.k8s.io", "endpointslices", a).denied(),
    ];
    assert_authorizer_agrees(&release_ns.client, &user, &checks).await;
}

#[tokio::test]
async fn the_api_server_authorizes_instance_services_in_watched_namespaces_when_on() {
    let release_ns = TestNamespace::new("chart-authz-svc").await;
    let watched = TestNamespace::new("chart-authz-svc-a").await;
    let unwatched = TestNamespace::new("chart-authz-svc-x").await;
    let rendered = render(
        "ppio",
        &release_ns.name,
        &[
            "--set",
            &format!("watchNamespaces={{{}}}", watched.name),
            "--set",
            "instanceServices.enabled=true",
            "--set",
            "rbac.aggregateToDefaultRoles=false",
        ],
    );
    apply_rbac(&rendered);
    let user = username(&rendered.operator_account());
    let (a, x) = (watched.name.as_str(), unwatched.name.as_str());
    let mut checks = Vec::new();
    for (group, resource) in [("", "services"), ("discovery.k8s.io", "endpointslices")] {
        for verb in ["get", "list", "watch", "create", "patch", "delete"] {
            checks.push(Access::new(verb, group, resource, a).allowed());
            checks.push(Access::new(verb, group, resource, x).denied());
        }
        for verb in ["update", "deletecollection"] {
            checks.push(Access::new(verb, group, resource, a).denied());
        }
    }
    checks.push(Access::new("create", "", "endpoints", a).denied());
    assert_authorizer_agrees(&release_ns.client, &user, &checks).await;
}

#[tokio::test]
async fn the_api_server_authorizes_instance_services_everywhere_only_when_acknowledged() {
    let release_ns = TestNamespace::new("chart-authz-svc-all").await;
    let elsewhere = TestNamespace::new("chart-authz-svc-any").await;
    let release = format!("chart-{}", rand_suffix());
    let rendered = render(
        &release,
        &release_ns.name,
        &[
            "--set",
            "instanceServices.enabled=true",
            "--set",
            "instanceServices.clusterWide=true",
            "--set",
            "rbac.aggregateToDefaultRoles=false",
        ],
    );
    // The ClusterRole and its binding outlive the namespaces: delete them however the test ends.
    let _cleanup = ClusterScopedCleanup(release.clone());
    apply_rbac(&rendered);
    let user = username(&rendered.operator_account());
    // What the acknowledgement grants: Services and EndpointSlices of any namespace, the cluster's
    // DNS among them.
    let mut checks = Vec::new();
    for namespace in [elsewhere.name.as_str(), "kube-system"] {
        for (group, resource) in [("", "services"), ("discovery.k8s.io", "endpointslices")] {
            for verb in ["get", "list", "watch", "create", "patch", "delete"] {
                checks.push(Access::new(verb, group, resource, namespace).allowed());
            }
            for verb in ["update", "deletecollection"] {
                checks.push(Access::new(verb, group, resource, namespace).denied());
            }
        }
        checks.push(Access::new("create", "", "endpoints", namespace).denied());
    }
    assert_authorizer_agrees(&release_ns.client, &user, &checks).await;
}

#[tokio::test]
async fn the_api_server_authorizes_the_cluster_wide_operator_in_every_namespace() {
    let release_ns = TestNamespace::new("chart-authz-all").await;
    let elsewhere = TestNamespace::new("chart-authz-any").await;
    let release = format!("chart-{}", rand_suffix());
    let rendered = render(
        &release,
        &release_ns.name,
        &["--set", "rbac.aggregateToDefaultRoles=false"],
    );
    // The ClusterRole and its binding outlive the namespaces: delete them however the test ends.
    let _cleanup = ClusterScopedCleanup(release.clone());
    apply_rbac(&rendered);
    let user = username(&rendered.operator_account());
    let (any, home) = (elsewhere.name.as_str(), release_ns.name.as_str());

    let checks = [
        Access::new("get", "", "secrets", any)
            .named("ppio-api-key")
            .allowed(),
        Access::new("list", "", "secrets", any).denied(),
        Access::new("list", "", "secrets", "").denied(),
        Access::new("watch", "", "secrets", "").denied(),
        Access::new("list", GROUP, "gpuinstanceviews", "").allowed(),
        Access::new("watch", GROUP, "gpuinstanceviews", "").allowed(),
        Access::new("watch", GROUP, "gpuinstances", "").allowed(),
        Access::new("list", GROUP, "gpuinstances", any).allowed(),
        Access::new("patch", GROUP, "gpuinstances", any).allowed(),
        Access::new("create", GROUP, "gpuinstanceviews", any).denied(),
        Access::new("patch", "events.k8s.io", "events", any).allowed(),
        Access::new("create", "", "events", any).denied(),
        Access::new("get", "", "configmaps", any).denied(),
        Access::new("create", "coordination.k8s.io", "leases", home).allowed(),
        Access::new("create", "coordination.k8s.io", "leases", any).denied(),
        Access::new("create", "authentication.k8s.io", "tokenreviews", "").denied(),
        Access::new("create", "authorization.k8s.io", "subjectaccessreviews", "").denied(),
    ];
    assert_authorizer_agrees(&release_ns.client, &user, &checks).await;
}

/// The real operator binary, run with the arguments the chart renders and authenticated as the
/// chart's ServiceAccount with only the chart's RBAC: it parses every flag, wins the Lease, syncs a
/// view into GpuInstances, records an Event on a failing view and answers the chart's probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_runs_with_the_charts_arguments_and_nothing_but_its_rbac() {
    install_chart_crds();
    let release_ns = TestNamespace::new("chart-run").await;
    let watched = TestNamespace::new("chart-run-a").await;
    let records = ppio_test_support::records::example_records();
    let ppio = start_simulator(records.clone()).await;
    let rendered = render(
        "ppio",
        &release_ns.name,
        &[
            "--set",
            &format!("watchNamespaces={{{}}}", watched.name),
            "--set",
            &format!("allowedEndpoints={{{}}}", ppio.base_url()),
            "--set",
            "rbac.aggregateToDefaultRoles=false",
        ],
    );
    apply_rbac(&rendered);
    let account = rendered.operator_account();
    let kubeconfig = service_account_kubeconfig(&release_ns.client, &account).await;

    let args = rendered.operator_container().args.unwrap_or_default();
    let (operator, pod_name) = run_as_the_charts_pod(&args, kubeconfig.path(), &release_ns.name);

    let leases: Api<Lease> = Api::namespaced(release_ns.client.clone(), &release_ns.name);
    let lease_name = container_arg(&args, "--lease-name=");
    wait_for(
        &format!(
            "the operator to hold the Lease {lease_name} (log: {})",
            operator.log.display()
        ),
        Duration::from_secs(60),
        || {
            operator.assert_running();
            let leases = leases.clone();
            let (lease_name, pod_name) = (lease_name.clone(), pod_name.clone());
            async move {
                let holder = leases.get(&lease_name).await.ok()?.spec?.holder_identity?;
                (holder == pod_name).then_some(())
            }
        },
    )
    .await;

    let secret = ppio_test_support::objects::api_key_secret("ppio-api-key", "apiKey", API_KEY);
    watched
        .api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the API key Secret");
    let view = tempfile_with(
        &serde_yaml_ng::to_string(&serde_json::json!({
            "apiVersion": "gpu.ppio.io/v1alpha1",
            "kind": "GpuInstanceView",
            "metadata": { "name": "account", "namespace": watched.name },
            "spec": {
                "credentials": { "secretRef": { "name": "ppio-api-key" } },
                "endpoint": ppio.base_url(),
                "syncInterval": "10s",
            },
        }))
        .expect("view YAML"),
    );
    watched.kubectl(&["apply", "-f", view.path().to_str().expect("UTF-8 path")]);

    // What a user runs after installing the chart (NOTES.txt), off the async threads.
    let (kubeconfig_path, namespace) = (shared().kubeconfig.clone(), watched.name.clone());
    let log = operator.log.clone();
    let waited = tokio::task::spawn_blocking(move || {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig_path)
            .args(["--namespace", &namespace])
            .args([
                "wait",
                "--for=condition=Ready",
                "gpuinstanceview/account",
                "--timeout=90s",
            ])
            .output()
            .expect("run kubectl")
    })
    .await
    .expect("kubectl wait");
    operator.assert_running();
    assert!(
        waited.status.success(),
        "the view did not become Ready: {}\nview: {}\noperator log: {}",
        String::from_utf8_lossy(&waited.stderr),
        watched.kubectl(&["get", "gpuinstanceview/account", "-o", "yaml"]),
        log.display()
    );
    let mirrored = watched.kubectl(&["get", "gpuinstances", "-o", "name"]);
    assert_eq!(
        mirrored.lines().count(),
        records.len(),
        "every remote instance is mirrored:\n{mirrored}"
    );

    // A view whose Secret is missing fails, and the operator records that in an Event.
    let broken = tempfile_with(
        &serde_yaml_ng::to_string(&serde_json::json!({
            "apiVersion": "gpu.ppio.io/v1alpha1",
            "kind": "GpuInstanceView",
            "metadata": { "name": "no-key", "namespace": watched.name },
            "spec": {
                "credentials": { "secretRef": { "name": "missing" } },
                "endpoint": ppio.base_url(),
                "syncInterval": "10s",
            },
        }))
        .expect("view YAML"),
    );
    watched.kubectl(&["apply", "-f", broken.path().to_str().expect("UTF-8 path")]);
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(watched.client.clone(), &watched.name);
    wait_for(
        &format!(
            "a Warning Event on view no-key (log: {})",
            operator.log.display()
        ),
        Duration::from_secs(60),
        || {
            operator.assert_running();
            let events = events.clone();
            async move {
                let listed = events.list(&Default::default()).await.ok()?;
                listed
                    .items
                    .iter()
                    .any(|e| {
                        e.type_.as_deref() == Some("Warning")
                            && e.reason.as_deref() == Some("SecretNotFound")
                            && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                                == Some("no-key")
                    })
                    .then_some(())
            }
        },
    )
    .await;

    // The same token, used directly: it may not list Secrets or touch what the chart does not grant.
    for (args, what) in [
        (vec!["get", "secrets"], "list Secrets"),
        (vec!["get", "configmaps"], "list ConfigMaps"),
        (vec!["delete", "gpuinstanceview/account"], "delete a view"),
        (
            vec!["get", "pods", "--namespace", "default"],
            "read another namespace",
        ),
    ] {
        let output = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig.path())
            .args(["--namespace", &watched.name])
            .args(&args)
            .output()
            .expect("run kubectl");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains("forbidden"),
            "the operator's identity must not {what}: {stderr}"
        );
    }

    // The chart's probes, on the chart's paths.
    for path in ["/healthz", "/readyz"] {
        let url = format!("{}{path}", operator.http);
        wait_for(
            &format!("{url} to answer 200 (log: {})", log.display()),
            Duration::from_secs(30),
            || {
                operator.assert_running();
                let url = url.clone();
                async move {
                    let response = reqwest::get(&url).await.ok()?;
                    response.status().is_success().then_some(())
                }
            },
        )
        .await;
    }
    drop(operator);
}

/// The real operator binary with the chart's arguments and metricsAuth on, as the chart's
/// ServiceAccount with the chart's RBAC only: `/metrics` answers 401 without a valid token, 403 to a
/// ServiceAccount without the metrics-reader role, 200 to one the chart binds to it; the probes
/// answer without a token; no token reaches the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_auth_serves_metrics_only_to_bound_readers_and_keeps_probes_open() {
    install_chart_crds();
    let release_ns = TestNamespace::new("chart-mauth").await;
    let watched = TestNamespace::new("chart-mauth-a").await;
    let release = format!("chart-{}", rand_suffix());
    let rendered = render(
        &release,
        &release_ns.name,
        &[
            "--set",
            &format!("watchNamespaces={{{}}}", watched.name),
            "--set",
            "rbac.aggregateToDefaultRoles=false",
            "--set",
            "metricsAuth.enabled=true",
            "--set",
            "metricsAuth.readers[0].kind=ServiceAccount",
            "--set",
            "metricsAuth.readers[0].name=prometheus",
            "--set",
            &format!("metricsAuth.readers[0].namespace={}", release_ns.name),
        ],
    );
    let _cleanup = ClusterScopedCleanup(release.clone());
    apply_rbac(&rendered);
    let subject = |name: &str| Subject {
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: Some(release_ns.name.clone()),
        api_group: None,
    };
    for name in ["prometheus", "stranger"] {
        release_ns.kubectl(&["create", "serviceaccount", name]);
    }

    let account = rendered.operator_account();
    let user = username(&account);
    assert_authorizer_agrees(
        &release_ns.client,
        &user,
        &[
            Access::new("create", "authentication.k8s.io", "tokenreviews", "").allowed(),
            Access::new("create", "authorization.k8s.io", "subjectaccessreviews", "").allowed(),
            Access::new("list", "authentication.k8s.io", "tokenreviews", "").denied(),
            Access::new(
                "create",
                "authorization.k8s.io",
                "localsubjectaccessreviews",
                &watched.name,
            )
            .denied(),
            Access::new("create", "", "serviceaccounts/token", &release_ns.name).denied(),
        ],
    )
    .await;

    let kubeconfig = service_account_kubeconfig(&release_ns.client, &account).await;
    let args = rendered.operator_container().args.unwrap_or_default();
    assert!(args.iter().any(|a| a == "--metrics-auth=true"), "{args:?}");
    let (operator, _) = run_as_the_charts_pod(&args, kubeconfig.path(), &release_ns.name);
    let base = operator.http.clone();
    let http = reqwest::Client::new();
    // The answer to GET `path` with `token`, once the operator answers at all.
    let status = |path: &'static str, token: Option<String>| {
        let (http, url) = (http.clone(), format!("{base}{path}"));
        async move {
            let mut request = http.get(&url).timeout(Duration::from_secs(5));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            Some(request.send().await.ok()?.status().as_u16())
        }
    };
    // Waits until GET `path` with `token` answers something other than `passing` (the operator not
    // up yet, or RBAC not yet seen by the authorizer), and returns that.
    let settled = |path: &'static str, token: Option<String>, passing: &'static [u16]| {
        let operator = &operator;
        async move {
            wait_for(
                &format!("{path} to answer (log: {})", operator.log.display()),
                Duration::from_secs(60),
                || {
                    operator.assert_running();
                    let answer = status(path, token.clone());
                    async move { answer.await.filter(|code| !passing.contains(code)) }
                },
            )
            .await
        }
    };

    assert_eq!(
        settled("/healthz", None, &[]).await,
        200,
        "liveness needs no token"
    );
    assert_eq!(settled("/metrics", None, &[]).await, 401, "no token");
    assert_eq!(
        settled("/metrics", Some("not-a-token".into()), &[503]).await,
        401,
        "a token the API server does not know"
    );
    let stranger = service_account_token(&release_ns.client, &subject("stranger")).await;
    assert_eq!(
        settled("/metrics", Some(stranger.clone()), &[503]).await,
        403,
        "a ServiceAccount without the metrics-reader role"
    );
    let prometheus = service_account_token(&release_ns.client, &subject("prometheus")).await;
    assert_eq!(
        settled("/metrics", Some(prometheus.clone()), &[503, 403]).await,
        200,
        "the ServiceAccount the chart binds to the metrics-reader role"
    );
    let body = http
        .get(format!("{base}/metrics"))
        .bearer_auth(&prometheus)
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    assert!(body.contains("ppio_gpu_operator_leader"), "{body}");
    assert_eq!(
        settled("/readyz", None, &[503]).await,
        200,
        "readiness needs no token"
    );

    let log_path = operator.log.clone();
    drop(operator);
    let log = read(&log_path);
    for token in [&stranger, &prometheus] {
        assert!(
            !log.contains(token.as_str()),
            "a bearer token reached the log"
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// Rendering with helm.

fn chart_dir() -> PathBuf {
    ppio_test_support::repository().join("charts/ppio-gpu-operator")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `helm template`: the rendered YAML, or helm's standard error.
fn helm_template(release: &str, namespace: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(ppio_test_support::tool("helm"))
        .arg("template")
        .arg(release)
        .arg(chart_dir())
        .args(["--namespace", namespace])
        .args(args)
        .output()
        .expect("run helm");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Renders the chart, or panics with helm's complaint.
fn render(release: &str, namespace: &str, args: &[&str]) -> Rendered {
    let yaml = helm_template(release, namespace, args)
        .unwrap_or_else(|e| panic!("helm template {args:?} failed: {e}"));
    let documents = serde_yaml_ng::Deserializer::from_str(&yaml)
        .map(|document| {
            serde_yaml_ng::Value::deserialize(document)
                .unwrap_or_else(|e| panic!("helm rendered invalid YAML: {e}\n{yaml}"))
        })
        .filter(|document| !document.is_null())
        .collect();
    Rendered { yaml, documents }
}

/// What `helm template` printed, as YAML documents.
struct Rendered {
    yaml: String,
    documents: Vec<serde_yaml_ng::Value>,
}

impl Rendered {
    fn of_kind(&self, kind: &str) -> Vec<&serde_yaml_ng::Value> {
        self.documents
            .iter()
            .filter(|d| d["kind"].as_str() == Some(kind))
            .collect()
    }

    fn kinds_count(&self, kind: &str) -> usize {
        self.of_kind(kind).len()
    }

    fn objects<K: DeserializeOwned>(&self, kind: &str) -> Vec<K> {
        self.of_kind(kind)
            .into_iter()
            .map(|d| {
                serde_yaml_ng::from_value(d.clone())
                    .unwrap_or_else(|e| panic!("rendered {kind} does not parse: {e}"))
            })
            .collect()
    }

    fn named<K: DeserializeOwned>(&self, kind: &str, name: &str) -> K {
        let document = self
            .of_kind(kind)
            .into_iter()
            .find(|d| d["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {kind} named {name} in:\n{}", self.yaml));
        serde_yaml_ng::from_value(document.clone())
            .unwrap_or_else(|e| panic!("rendered {kind} {name} does not parse: {e}"))
    }

    /// The pod spec of the one Deployment.
    fn pod_spec(&self) -> PodSpec {
        let deployments = self.objects::<Deployment>("Deployment");
        let [deployment] = deployments.as_slice() else {
            panic!("expected one Deployment, found {}", deployments.len());
        };
        deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.clone())
            .expect("pod spec")
    }

    /// The labels of the Deployment's pods.
    fn pod_labels(&self) -> std::collections::BTreeMap<String, String> {
        let deployment = self.objects::<Deployment>("Deployment").remove(0);
        deployment
            .spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.labels)
            .unwrap_or_default()
    }

    /// The one NetworkPolicy.
    fn network_policy(&self) -> NetworkPolicy {
        let policies = self.objects::<NetworkPolicy>("NetworkPolicy");
        let [policy] = policies.as_slice() else {
            panic!("expected one NetworkPolicy, found {}", policies.len());
        };
        policy.clone()
    }

    /// Every resource grant of every (Cluster)Role rendered; non-resource rules are left out.
    fn all_grants(&self) -> BTreeSet<Grant> {
        let rules = self
            .objects::<ClusterRole>("ClusterRole")
            .into_iter()
            .flat_map(|r| r.rules.unwrap_or_default())
            .chain(
                self.objects::<Role>("Role")
                    .into_iter()
                    .flat_map(|r| r.rules.unwrap_or_default()),
            )
            .filter(|rule| rule.non_resource_urls.is_none())
            .collect::<Vec<_>>();
        grants_of(Some(&rules))
    }

    /// The operator's container in the one Deployment.
    fn operator_container(&self) -> Container {
        let deployments = self.objects::<Deployment>("Deployment");
        let [deployment] = deployments.as_slice() else {
            panic!("expected one Deployment, found {}", deployments.len());
        };
        let containers = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|p| p.containers.clone())
            .unwrap_or_default();
        let [container] = containers.as_slice() else {
            panic!("expected one container, found {}", containers.len());
        };
        container.clone()
    }

    /// The ServiceAccount the Deployment runs as, which the chart creates.
    fn operator_account(&self) -> Subject {
        let accounts = self.objects::<ServiceAccount>("ServiceAccount");
        let [account] = accounts.as_slice() else {
            panic!("expected one ServiceAccount, found {}", accounts.len());
        };
        let name = account.metadata.name.clone().expect("ServiceAccount name");
        let deployment = self.named::<Deployment>("Deployment", &name);
        let runs_as = deployment
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|p| p.service_account_name);
        assert_eq!(runs_as.as_deref(), Some(name.as_str()));
        Subject {
            kind: "ServiceAccount".into(),
            name,
            namespace: account.metadata.namespace.clone(),
            api_group: None,
        }
    }

    /// Every rule of every (Cluster)Role: Secrets are read one at a time by name, never listed or
    /// watched (either would hand the operator every Secret's content), and nothing is a wildcard.
    fn assert_never_lists_or_watches_secrets(&self) {
        let grants = self.all_grants();
        assert!(!grants.is_empty());
        for grant in grants {
            assert!(
                !(grant.resource == "secrets" && matches!(grant.verb.as_str(), "list" | "watch")),
                "{grant} hands the operator every Secret"
            );
            assert!(
                grant.group != "*" && grant.resource != "*" && grant.verb != "*",
                "wildcard grant {grant}"
            );
        }
    }
}

/// One permission a rule grants: `verb` on `group`/`resource` (with subresource), maybe one name only.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    group: String,
    resource: String,
    verb: String,
    name: Option<String>,
}

impl Grant {
    fn new(group: &str, resource: &str, verb: &str, name: Option<&str>) -> Grant {
        Grant {
            group: group.into(),
            resource: resource.into(),
            verb: verb.into(),
            name: name.map(Into::into),
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.verb,
            kind_name(&self.group, &self.resource)
        )?;
        if let Some(name) = &self.name {
            write!(f, " named {name}")?;
        }
        Ok(())
    }
}

/// `resource.group/subresource` as kubectl names it (`secrets`, `gpuinstances.gpu.ppio.io/status`).
fn kind_name(group: &str, resource: &str) -> String {
    let (resource, subresource) = match resource.split_once('/') {
        Some((resource, subresource)) => (resource, format!("/{subresource}")),
        None => (resource, String::new()),
    };
    match group {
        "" => format!("{resource}{subresource}"),
        group => format!("{resource}.{group}{subresource}"),
    }
}

/// The rules flattened to one grant per group × resource × verb × name.
fn grants_of(rules: Option<&[PolicyRule]>) -> BTreeSet<Grant> {
    let mut grants = BTreeSet::new();
    for rule in rules.unwrap_or_default() {
        assert!(
            rule.non_resource_urls.is_none(),
            "the operator needs no non-resource URL: {rule:?}"
        );
        let names: Vec<Option<&str>> = match rule.resource_names.as_deref() {
            None | Some([]) => vec![None],
            Some(names) => names.iter().map(|n| Some(n.as_str())).collect(),
        };
        for group in rule.api_groups.as_deref().unwrap_or_default() {
            for resource in rule.resources.as_deref().unwrap_or_default() {
                for verb in &rule.verbs {
                    for name in &names {
                        grants.insert(Grant::new(group, resource, verb, *name));
                    }
                }
            }
        }
    }
    grants
}

/// A NetworkPolicy rule's ports as `PROTOCOL/port`, in order.
fn ports_of(ports: Option<&[k8s_openapi::api::networking::v1::NetworkPolicyPort]>) -> Vec<String> {
    ports
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let port = match &p.port {
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => {
                    n.to_string()
                }
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name)) => {
                    name.clone()
                }
                None => "any".to_owned(),
            };
            format!("{}/{port}", p.protocol.as_deref().unwrap_or("TCP"))
        })
        .collect()
}

/// A NetworkPolicy rule's peers, each as its CIDR or as `namespace k=v, pods k=v`.
fn peers_of(peers: Option<&[NetworkPolicyPeer]>) -> Vec<String> {
    let labels =
        |selector: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>| {
            selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref())
                .map(|l| {
                    l.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
        };
    peers
        .unwrap_or_default()
        .iter()
        .map(|peer| {
            if let Some(block) = &peer.ip_block {
                return block.cidr.clone();
            }
            let mut parts = Vec::new();
            if let Some(namespaces) = labels(&peer.namespace_selector) {
                parts.push(format!("namespace {namespaces}"));
            }
            if let Some(pods) = labels(&peer.pod_selector) {
                parts.push(format!("pods {pods}"));
            }
            parts.join(", ")
        })
        .collect()
}

/// The user name the API server authenticates a ServiceAccount's tokens as.
fn username(account: &Subject) -> String {
    format!(
        "system:serviceaccount:{}:{}",
        account.namespace.as_deref().unwrap_or_default(),
        account.name
    )
}

// ---------------------------------------------------------------------------------------------------
// Applying to the API server.

/// Installs the chart's CRDs for real, once per test run (Helm installs crds/ before the templates).
fn install_chart_crds() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let kubeconfig = &shared().kubeconfig;
        let crds = chart_dir().join("crds");
        let crds = crds.to_str().expect("UTF-8 path");
        kubectl(
            kubeconfig,
            None,
            &["apply", "--server-side", "--force-conflicts", "-f", crds],
        );
        kubectl(
            kubeconfig,
            None,
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/gpuinstanceviews.gpu.ppio.io",
                "crd/gpuinstances.gpu.ppio.io",
            ],
        );
    });
}

/// Writes documents to a temporary YAML file for kubectl.
fn manifest_file(documents: &[&serde_yaml_ng::Value]) -> tempfile::NamedTempFile {
    let manifest: String = documents
        .iter()
        .map(|d| {
            format!(
                "---\n{}",
                serde_yaml_ng::to_string(d).expect("serialize a document")
            )
        })
        .collect();
    tempfile_with(&manifest)
}

/// `kubectl apply --dry-run=server` of everything rendered: the API server validates each object
/// (schemas, immutable and required fields, admission) and persists nothing.
fn assert_server_dry_run_accepts(rendered: &Rendered) {
    let documents: Vec<_> = rendered.documents.iter().collect();
    let file = manifest_file(&documents);
    let output = kubectl(
        &shared().kubeconfig,
        None,
        &[
            "apply",
            "--dry-run=server",
            "-f",
            file.path().to_str().expect("UTF-8 path"),
        ],
    );
    let accepted = output
        .lines()
        .filter(|l| l.ends_with("(server dry run)"))
        .count();
    assert_eq!(
        accepted,
        documents.len(),
        "the API server must accept every rendered object:\n{output}"
    );
}

/// Applies the rendered ServiceAccount and RBAC for real.
fn apply_rbac(rendered: &Rendered) {
    let documents: Vec<_> = [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ]
    .into_iter()
    .flat_map(|kind| rendered.of_kind(kind))
    .collect();
    let file = manifest_file(&documents);
    kubectl(
        &shared().kubeconfig,
        None,
        &["apply", "-f", file.path().to_str().expect("UTF-8 path")],
    );
}

/// Deletes a release's cluster-scoped RBAC when dropped.
struct ClusterScopedCleanup(String);

impl Drop for ClusterScopedCleanup {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&shared().kubeconfig)
            .args([
                "delete",
                "clusterrole,clusterrolebinding",
                "--ignore-not-found",
                "-l",
                &format!("app.kubernetes.io/instance={}", self.0),
            ])
            .output();
    }
}

/// The operator binary run with the chart's container `args`, as a pod of a name of its own in
/// `namespace` with the identity of `kubeconfig`; and that pod name.
fn run_as_the_charts_pod(
    args: &[String],
    kubeconfig: &Path,
    namespace: &str,
) -> (OperatorProcess, String) {
    let pod_name = format!("ppio-gpu-operator-{}", rand_suffix());
    let operator = OperatorProcess::start_as_pod(
        crate::operator_binary(),
        args,
        kubeconfig,
        &pod_name,
        namespace,
    );
    (operator, pod_name)
}

/// The value of `--name=value` among the arguments.
fn container_arg(args: &[String], prefix: &str) -> String {
    args.iter()
        .find_map(|a| a.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {args:?}"))
        .to_owned()
}

/// A token of ServiceAccount `account` for the API server's audience (a TokenRequest).
async fn service_account_token(client: &Client, account: &Subject) -> String {
    let namespace = account
        .namespace
        .as_deref()
        .expect("ServiceAccount namespace");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_token_request(&account.name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for ServiceAccount {}: {e}", account.name))
        .status
        .expect("TokenRequest status")
        .token
}

/// A kubeconfig for the shared control plane that authenticates as `account` (a TokenRequest token).
async fn service_account_kubeconfig(client: &Client, account: &Subject) -> tempfile::NamedTempFile {
    let token = service_account_token(client, account).await;
    let mut config: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read(&shared().kubeconfig)).expect("admin kubeconfig is YAML");
    let users = config["users"]
        .as_sequence_mut()
        .expect("kubeconfig has users");
    for user in users {
        user["user"] =
            serde_yaml_ng::to_value(serde_json::json!({ "token": token })).expect("token as YAML");
    }
    tempfile_with(&serde_yaml_ng::to_string(&config).expect("kubeconfig YAML"))
}

/// A temporary file holding `text`.
fn tempfile_with(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    file.write_all(text.as_bytes()).expect("write temp file");
    file.flush().expect("flush temp file");
    file
}

/// One request the operator might make, and whether RBAC must allow it.
struct Access {
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    namespace: String,
    name: Option<&'static str>,
    allowed: bool,
}

impl Access {
    /// `namespace` empty: a request across all namespaces.
    fn new(
        verb: &'static str,
        group: &'static str,
        resource: &'static str,
        namespace: &str,
    ) -> Access {
        Access {
            verb,
            group,
            resource,
            namespace: namespace.into(),
            name: None,
            allowed: false,
        }
    }

    fn named(mut self, name: &'static str) -> Access {
        self.name = Some(name);
        self
    }

    fn allowed(mut self) -> Access {
        self.allowed = true;
        self
    }

    fn denied(mut self) -> Access {
        self.allowed = false;
        self
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, kind_name(self.group, self.resource))?;
        if let Some(name) = self.name {
            write!(f, " {name:?}")?;
        }
        match self.namespace.as_str() {
            "" => write!(f, " in all namespaces"),
            namespace => write!(f, " in {namespace}"),
        }
    }
}

impl Access {
    fn split_resource(&self) -> (&str, Option<&str>) {
        match self.resource.split_once('/') {
            Some((resource, subresource)) => (resource, Some(subresource)),
            None => (self.resource, None),
        }
    }

    /// Asks the API server's authorizer, through a SubjectAccessReview, whether `user` may do this.
    async fn is_allowed(&self, client: &Client, user: &str) -> bool {
        let (resource, subresource) = self.split_resource();
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.into()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(self.verb.into()),
                    group: Some(self.group.into()),
                    resource: Some(resource.into()),
                    subresource: subresource.map(Into::into),
                    namespace: Some(self.namespace.clone()),
                    name: self.name.map(Into::into),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<SubjectAccessReview>::all(client.clone())
            .create(&PostParams::default(), &review)
            .await
            .unwrap_or_else(|e| panic!("SubjectAccessReview for {self}: {e}"))
            .status
            .is_some_and(|s| s.allowed)
    }
}

/// The authorizer answers every check as expected (after RBAC's caches have seen the new grants).
async fn assert_authorizer_agrees(client: &Client, user: &str, checks: &[Access]) {
    let first_allowed = checks
        .iter()
        .find(|c| c.allowed)
        .expect("at least one check that must be allowed");
    wait_for(
        "RBAC to grant the chart's roles",
        Duration::from_secs(30),
        || async { first_allowed.is_allowed(client, user).await.then_some(()) },
    )
    .await;
    let mut wrong = Vec::new();
    for check in checks {
        let allowed = check.is_allowed(client, user).await;
        if allowed != check.allowed {
            let verdict = if allowed { "allowed" } else { "denied" };
            wrong.push(format!("{check}: {verdict}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "the API server authorizes {user} other than the chart means to:\n  {}",
        wrong.join("\n  ")
    );
}
