//! The operator's observability as the chart ships it: the real binary's `/metrics` passes promlint,
//! every metric that the chart's alerts and Grafana dashboard query is one the operator exports, and the
//! chart's PrometheusRule and dashboard ConfigMap carry exactly the files that promtool and these tests
//! judge.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use ppio_simulator::{Fault, FaultKind, generate_instances};
use serde::Deserialize;
use serde_json::{Value, json};
use serde_yaml_ng::Value as Yaml;

use ppio_test_support::fixture::Fixture;
use ppio_test_support::operator::OperatorProcess;
use ppio_test_support::shared;
use ppio_test_support::tool;

/// The chart's alerting rules, a plain Prometheus rules file.
const RULES: &str = "charts/ppio-gpu-operator/files/prometheus-rules.yaml";
/// The chart's Grafana dashboard.
const DASHBOARD: &str = "charts/ppio-gpu-operator/files/dashboard.json";
/// Every metric of the operator carries this prefix.
const PREFIX: &str = "ppio_gpu_operator_";

/// A file of the repository, by its path from the root.
fn repo_file(path: &str) -> String {
    let full = ppio_test_support::repository().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
}

/// promlint's verdict on an exposition: `Ok` when clean, else its problems, one `metric: text` a line.
fn promlint(exposition: &str) -> Result<(), String> {
    let mut child = Command::new(tool("promlint"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promlint");
    child
        .stdin
        .take()
        .expect("promlint's stdin")
        .write_all(exposition.as_bytes())
        .expect("write to promlint");
    let output = child.wait_with_output().expect("wait for promlint");
    match output.status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(String::from_utf8_lossy(&output.stdout).into_owned()),
        _ => panic!(
            "promlint could not judge the exposition: {}\n{exposition}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// The names of the samples in a Prometheus text exposition: what a query can select. A histogram
/// shows as its `_bucket`, `_sum` and `_count` series, which is what queries name.
fn exported_series_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Every `ppio_gpu_operator_*` identifier in a text (a query, a rules file, a dashboard).
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find(PREFIX) {
        let preceded_by_name = rest[..start].chars().next_back().is_some_and(is_name_char);
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_name_char(c)).unwrap_or(tail.len());
        if !preceded_by_name {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// The names in `queried` that `exported` lacks.
fn not_exported(queried: &BTreeSet<String>, exported: &BTreeSet<String>) -> Vec<String> {
    queried.difference(exported).cloned().collect()
}

/// Every PromQL expression of the dashboard: its panels' targets and its variables' queries.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut queries = Vec::new();
    let panels = dashboard["panels"].as_array().expect("dashboard panels");
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(target["expr"].as_str().expect("target expr").to_owned());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("dashboard variables")
    {
        if variable["type"] == "query" {
            queries.push(
                variable["definition"]
                    .as_str()
                    .expect("variable query")
                    .to_owned(),
            );
        }
    }
    queries
}

/// Every metric the chart's alerts and dashboard query.
fn queried_metrics() -> BTreeSet<String> {
    let mut names = metric_names_in(&repo_file(RULES));
    names.extend(metric_names_in(&repo_file(DASHBOARD)));
    names
}

/// `helm template` of the chart with `args`, the documents of `kind`.
fn rendered(kind: &str, args: &[&str]) -> Vec<Yaml> {
    let output = Command::new(tool("helm"))
        .args([
            "template",
            "ppio",
            "charts/ppio-gpu-operator",
            "--namespace",
            "ppio-system",
        ])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run helm");
    assert!(
        output.status.success(),
        "helm template {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("helm's output is UTF-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| Yaml::deserialize(document).expect("helm renders YAML"))
        .filter(|document| document["kind"].as_str() == Some(kind))
        .collect()
}

#[test]
fn the_prometheus_rule_carries_exactly_the_rules_file_promtool_checks() {
    assert!(
        rendered("PrometheusRule", &[]).is_empty(),
        "no PrometheusRule by default"
    );
    let file: Yaml = serde_yaml_ng::from_str(&repo_file(RULES)).expect("the rules file is YAML");
    let [rule] = rendered(
        "PrometheusRule",
        &[
            "--set",
            "prometheusRule.enabled=true",
            "--set",
            "prometheusRule.labels.release=monitoring",
        ],
    )
    .try_into()
    .expect("one PrometheusRule");
    assert_eq!(
        rule["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    assert_eq!(
        rule["metadata"]["labels"]["release"].as_str(),
        Some("monitoring")
    );
    assert_eq!(
        rule["spec"], file,
        "the PrometheusRule's spec differs from {RULES}"
    );

    // A group interval is the one thing the chart adds, to every group.
    let [rule] = rendered(
        "PrometheusRule",
        &[
            "--set",
            "prometheusRule.enabled=true",
            "--set",
            "prometheusRule.interval=2m",
            "--set",
            "prometheusRule.namespace=monitoring",
        ],
    )
    .try_into()
    .expect("one PrometheusRule");
    assert_eq!(rule["metadata"]["namespace"].as_str(), Some("monitoring"));
    let mut groups = rule["spec"]["groups"]
        .as_sequence()
        .expect("groups")
        .clone();
    for group in &mut groups {
        let group = group.as_mapping_mut().expect("a group is a mapping");
        assert_eq!(
            group.remove("interval"),
            Some(Yaml::from("2m")),
            "every group gets the interval"
        );
    }
    assert_eq!(Yaml::Sequence(groups), file["groups"]);
}

#[test]
fn the_dashboard_config_map_carries_the_dashboard_for_grafanas_sidecar() {
    assert!(
        rendered("ConfigMap", &[]).is_empty(),
        "no dashboard by default"
    );
    let [config_map] = rendered(
        "ConfigMap",
        &[
            "--set",
            "grafanaDashboard.enabled=true",
            "--set",
            "grafanaDashboard.annotations.grafana_folder=PPIO",
        ],
    )
    .try_into()
    .expect("one ConfigMap");
    let metadata = &config_map["metadata"];
    assert_eq!(metadata["labels"]["grafana_dashboard"].as_str(), Some("1"));
    assert_eq!(
        metadata["annotations"]["grafana_folder"].as_str(),
        Some("PPIO")
    );
    let shipped: Value = serde_json::from_str(
        config_map["data"]["ppio-gpu-operator.json"]
            .as_str()
            .expect("the dashboard in the ConfigMap"),
    )
    .expect("the ConfigMap's dashboard is JSON");
    let dashboard: Value = serde_json::from_str(&repo_file(DASHBOARD)).expect("dashboard JSON");
    assert_eq!(shipped, dashboard, "the ConfigMap differs from {DASHBOARD}");

    // Portable: every panel and query variable reads the data source the user picks, and the
    // variables that filter the fleet exist.
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(variables, ["datasource", "namespace", "view"]);
    assert_eq!(
        dashboard["schemaVersion"], 42,
        "Grafana's current dashboard schema"
    );
    let mut ids = BTreeSet::new();
    let uses_variable = |node: &Value| node["datasource"]["uid"] == "${datasource}";
    for panel in dashboard["panels"].as_array().expect("panels") {
        let id = panel["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} repeats");
        if panel["type"] == "row" {
            continue;
        }
        assert!(
            uses_variable(panel),
            "panel {} names a fixed data source",
            panel["title"]
        );
        for target in panel["targets"].as_array().expect("targets") {
            assert!(
                uses_variable(target),
                "a query of {} names a fixed data source",
                panel["title"]
            );
        }
    }
}

#[test]
fn the_service_monitor_keeps_the_metrics_view_labels() {
    // The alerts and the dashboard read `namespace` as the view's namespace: Prometheus must not
    // replace it with the scraped pod's.
    let [monitor] = rendered("ServiceMonitor", &["--set", "serviceMonitor.enabled=true"])
        .try_into()
        .expect("one ServiceMonitor");
    assert_eq!(
        monitor["spec"]["endpoints"][0]["honorLabels"].as_bool(),
        Some(true)
    );
}

#[test]
fn promlint_reports_what_breaks_prometheus_conventions() {
    // The judge the operator's /metrics faces below does judge: a counter without `_total` and a
    // metric without help are reported, a conventional exposition is not.
    let problems = promlint(
        "# TYPE ppio_gpu_operator_syncs counter\nppio_gpu_operator_syncs 1\n\
         # HELP ppio_gpu_operator_leader 1 while leading\n# TYPE ppio_gpu_operator_leader gauge\n\
         ppio_gpu_operator_leader 1\n",
    )
    .expect_err("problems");
    assert!(
        problems.contains("ppio_gpu_operator_syncs: counter metrics should have \"_total\" suffix"),
        "{problems}"
    );
    assert!(
        problems.contains("ppio_gpu_operator_syncs: no help text"),
        "{problems}"
    );
    assert!(!problems.contains("ppio_gpu_operator_leader"), "{problems}");
    assert_eq!(
        promlint(
            "# HELP ppio_gpu_operator_leader 1 while leading\n# TYPE ppio_gpu_operator_leader gauge\nppio_gpu_operator_leader 1\n"
        ),
        Ok(())
    );
}

#[test]
fn a_misspelt_metric_in_the_dashboard_is_caught() {
    // The check the operator-backed test below makes, here against a set of exported names that holds
    // every queried one: it passes, and one typo in the dashboard makes it fail.
    let exported = queried_metrics();
    assert!(not_exported(&queried_metrics(), &exported).is_empty());
    assert!(exported.contains("ppio_gpu_operator_sync_duration_seconds_bucket"));

    let misspelt =
        repo_file(DASHBOARD).replace("ppio_gpu_operator_gpus{", "ppio_gpu_operator_gpu{");
    assert_ne!(misspelt, repo_file(DASHBOARD), "the dashboard queries GPUs");
    let mut queried = metric_names_in(&repo_file(RULES));
    queried.extend(metric_names_in(&misspelt));
    assert_eq!(not_exported(&queried, &exported), ["ppio_gpu_operator_gpu"]);
    // Names glued to other identifiers are not the operator's.
    assert!(metric_names_in("my_ppio_gpu_operator_x + ppio_gpu_operator_leader").len() == 1);
}

#[test]
fn every_dashboard_query_reads_the_operators_metrics() {
    for query in dashboard_queries(&serde_json::from_str(&repo_file(DASHBOARD)).expect("JSON")) {
        assert!(
            !metric_names_in(&query).is_empty(),
            "a dashboard query names no metric of the operator: {query}"
        );
    }
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    // promtool parses each panel query as a recording rule, with Grafana's variables replaced by
    // what Grafana would put there.
    let dashboard: Value = serde_json::from_str(&repo_file(DASHBOARD)).expect("dashboard JSON");
    let rules: Vec<Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .enumerate()
        .map(|(index, target)| {
            let expr = target["expr"]
                .as_str()
                .expect("target expr")
                .replace("$__rate_interval", "5m")
                .replace("$namespace", ".*")
                .replace("$view", ".*");
            json!({ "record": format!("dashboard:query_{index}"), "expr": expr })
        })
        .collect();
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let groups = json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    std::fs::write(file.path(), groups.to_string()).expect("write the queries");
    let output = Command::new(tool("promtool"))
        .args(["check", "rules"])
        .arg(file.path())
        .output()
        .expect("run promtool");
    assert!(
        output.status.success(),
        "promtool rejects a dashboard query:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Simulator instances that give every series of the fleet metrics a sample: a prepaid instance that
/// will not renew and ends tomorrow, one that renews, an exited instance with a PPIO error, and more.
fn instances_exercising_every_series() -> Vec<Value> {
    let tomorrow = jiff::Timestamp::now().as_second() + 86_400;
    let mut records = generate_instances(8, 42);
    records[0]["billing"] = json!({
        "mode": "prepaid",
        "prepaid": { "months": 1, "end_time": tomorrow,
            "auto_renew": { "enabled": false, "months": 0, "status": "inactive" } },
    });
    records[1]["billing"] = json!({
        "mode": "prepaid",
        "prepaid": { "months": 1, "end_time": tomorrow,
            "auto_renew": { "enabled": true, "months": 1, "status": "active" } },
    });
    records[2]["status"] = json!({
        "status": "exited", "error": "CONTAINER_EXIT_ERROR", "message": "container exited with code 1",
    });
    records[3]["status"] = json!({ "status": "running", "error": "", "message": "" });
    records[3]["billing"] = json!({ "mode": "postpaid" });
    records
}

/// Waits up to `timeout` for a scrape of `operator` holding every name in `wanted`; the last scrape
/// and the names it still lacked.
async fn scrape_until_exported(
    operator: &OperatorProcess,
    wanted: &BTreeSet<String>,
    timeout: Duration,
) -> (String, Vec<String>) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let scrape = match operator.get("/metrics").await {
            Some((200, body)) => body,
            _ => String::new(),
        };
        let missing = not_exported(wanted, &exported_series_names(&scrape));
        if missing.is_empty() || tokio::time::Instant::now() >= deadline {
            return (scrape, missing);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until `operator` answers /readyz, failing at once, with its log, if it exits instead (e.g. on
/// a flag it does not know).
async fn wait_until_ready(operator: &OperatorProcess) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        if let Some(code) = operator.wait_exit(Duration::from_millis(200)).await {
            panic!(
                "the operator exited with code {code} instead of starting:\n{}",
                operator.log_text()
            );
        }
        if matches!(operator.get("/readyz").await, Some((200, _))) {
            return;
        }
    }
    panic!(
        "the operator is not ready after 60 s:\n{}",
        operator.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_exports_every_metric_the_alerts_and_dashboard_query_and_passes_promlint() {
    // A missing promlint fails at once, with how to build it.
    tool("promlint");
    let fx = Fixture::without_operator(
        shared(),
        "observability",
        instances_exercising_every_series(),
    )
    .await;
    let args = fx.replica_args(&["--metrics-instance-info"]);
    let operator = OperatorProcess::start(
        crate::operator_binary(),
        &shared().kubeconfig,
        "observability",
        &args,
    );
    wait_until_ready(&operator).await;
    // PPIO rate-limits the first listing: the 429 is counted, the retry succeeds.
    fx.simulator()
        .inject_fault(Fault::once(FaultKind::RateLimited {
            retry_after_secs: Some(1),
        }));
    // With a budget, so that the budget's series (which the over-budget alert reads) is exported.
    fx.create_view("fleet", |spec| {
        spec.cost.hourly_budget = Some("100000".into())
    })
    .await;
    // A view whose Secret is missing fails its syncs.
    fx.create_view("broken", |spec| {
        spec.credentials.secret_ref.name = "missing".into()
    })
    .await;
    fx.wait_ready("fleet", true, "Synced").await;

    let queried = queried_metrics();
    let (scrape, missing) =
        scrape_until_exported(&operator, &queried, Duration::from_secs(30)).await;
    assert!(
        missing.is_empty(),
        "the chart's alerts or dashboard ({RULES}, {DASHBOARD}) query metrics the operator does not \
         export: {missing:?}\n--- /metrics ---\n{scrape}\n--- operator log ---\n{}",
        operator.log_text()
    );

    // The label values the alerts select on appear as the alerts expect them.
    let has_series = |name: &str, labels: &[&str]| {
        scrape.lines().any(|line| {
            line.starts_with(&format!("{name}{{")) && labels.iter().all(|l| line.contains(l))
        })
    };
    for (name, labels) in [
        (
            "ppio_gpu_operator_instance_prepaid_end_time_seconds",
            &["auto_renew=\"false\"", "view=\"fleet\""][..],
        ),
        (
            "ppio_gpu_operator_instance_prepaid_end_time_seconds",
            &["auto_renew=\"true\""][..],
        ),
        (
            "ppio_gpu_operator_instances_with_error",
            &["status=\"exited\"", "view=\"fleet\""][..],
        ),
        (
            "ppio_gpu_operator_ppio_requests_total",
            &["code=\"429\""][..],
        ),
        ("ppio_gpu_operator_syncs_total", &["result=\"failure\""][..]),
        (
            "ppio_gpu_operator_view_hourly_budget",
            &["view=\"fleet\""][..],
        ),
        (
            "ppio_gpu_operator_product_list_reads_total",
            &["result=\"success\""][..],
        ),
        (
            "ppio_gpu_operator_view_last_successful_sync_timestamp_seconds",
            &["view=\"broken\""][..],
        ),
    ] {
        assert!(
            has_series(name, labels),
            "no {name} series with {labels:?} in\n{scrape}"
        );
    }

    if let Err(problems) = promlint(&scrape) {
        panic!(
            "promlint finds problems in the operator's /metrics:\n{problems}\n--- /metrics ---\n{scrape}"
        );
    }
}
