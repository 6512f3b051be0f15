//! The real operator process at scale: `make bench` (or `N=100000 PAGE_SIZE=100 make bench`).
//!
//! Starts the test control plane, the PPIO simulator with N generated instances and the release-built
//! operator (one namespace, no leader election, no PPIO request limit, `--log-level info`), and measures
//! from outside, through the operator's CLI, the API server and the simulator, so that it measures
//! whatever the operator binary does:
//! - the first mirror of one view (`pageSize` PAGE_SIZE, `syncInterval` 30s): from the view's creation
//!   until its status says every instance is mirrored and it is Ready; against a bare server-side-apply
//!   client writing the same objects into another namespace, with nothing else running, once before
//!   the operator and once after (the yardstick is the mean of the two). Each of the three write
//!   phases starts on an empty store: the previous phase's namespace is deleted first;
//! - the operator's peak resident memory (`VmHWM`) over the first mirror and three syncs in which
//!   nothing changed (asked for with the refresh annotation);
//! - per such sync: the operator's CPU time, the API server's requests by verb and resource (from its
//!   own `apiserver_request_total`, less the benchmark's own requests), and PPIO requests.
//!
//! With `SERVICES=1`, the operator runs with `--services` and the view with `services.enabled`: every
//! mirror of a running instance also gets a Service and an EndpointSlice (the simulator's endpoints are
//! in documentation ranges, which both allow: [`SIMULATOR_RANGES`]), the bare client writes them too, and
//! the report adds what they cost the first mirror and that a no-op sync reads and writes none.
//!
//! Prints each against its target with PASS or FAIL. Exits 0 whatever the numbers; non-zero only when
//! the run itself broke. Every process it started is stopped at the end, on error and on Ctrl-C.

mod bare_client;
mod counters;
mod report;
mod requests;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, ResourceExt};
use ppio_gpu_core::api::condition::{self, ConditionStatus};
use ppio_gpu_core::api::view::REFRESH_ANNOTATION;
use ppio_gpu_core::api::{GROUP, GpuInstanceView};
use ppio_gpu_core::services::AddressPolicy;
use serde_json::{Value, json};

use counters::ProcessCounters;
use ppio_test_support::ControlPlane;
use ppio_test_support::process::Running;
use ppio_test_support::{crds, objects, ports};
use report::{BareRun, Measurements};
use requests::{PpioRequests, RequestCounts, RequestKind};

/// Instances when `N` is not set.
const DEFAULT_INSTANCES: usize = 10_000;
/// The view's `pageSize` when `PAGE_SIZE` is not set.
const DEFAULT_PAGE_SIZE: usize = 100;
/// The view's `syncInterval`.
const SYNC_INTERVAL: &str = "30s";
/// Concurrent writers of the bare client.
const BARE_WORKERS: usize = 16;
/// Syncs in which nothing changed, after the first mirror.
const NO_OP_SYNCS: usize = 3;
/// How often the benchmark checks a condition it waits for (other than the view, which it watches).
const POLL: Duration = Duration::from_millis(200);
/// A pause before reading counters after a phase, so that work the operator does right after its
/// last write (handling the watch event of its own status write, say) is counted in that phase.
const SETTLE: Duration = Duration::from_secs(1);
/// The API key the simulator accepts; a test value.
const API_KEY: &str = "sk-bench-0123456789abcdef";
/// The namespace the operator syncs.
const OPERATOR_NAMESPACE: &str = "bench-operator";
/// The namespaces the bare client writes to, before and after the operator; the operator watches
/// neither.
const BARE_NAMESPACE: &str = "bench-bare";
const BARE_AFTER_NAMESPACE: &str = "bench-bare-after";
/// The view's name in both namespaces, so both write objects of the same names.
const VIEW: &str = "bench";
/// The API key Secret.
const SECRET: &str = "ppio";
/// The ranges of the simulator's endpoints (documentation ranges, refused unless allowed).
const SIMULATOR_RANGES: [&str; 2] = ["203.0.113.0/24", "198.51.100.0/24"];

fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("bench: {message}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(&settings) => outcome,
            () = interrupted() => Err("interrupted; stopping everything it started".to_owned()),
        }
    });
    match outcome {
        Ok(measurements) => {
            report::print(&measurements);
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn interrupted() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// What to run, from the environment.
struct Settings {
    instances: usize,
    page_size: usize,
    /// `SERVICES=1`: the operator keeps a Service per mirror.
    services: bool,
    control_plane: PathBuf,
    operator: PathBuf,
    simulator: PathBuf,
    logs: PathBuf,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let instances = env_number("N", DEFAULT_INSTANCES, 1, 10_000_000)?;
        let page_size = env_number("PAGE_SIZE", DEFAULT_PAGE_SIZE, 1, 200)?;
        let services = env_number("SERVICES", 0, 0, 1)? == 1;
        let target = ppio_test_support::target_dir();
        let control_plane = std::env::var_os("KUBE_CONTROL_PLANE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| target.join("control-plane/kube-control-plane"));
        let operator = target.join("release/ppio-gpu-operator");
        let simulator = target.join("release/ppio-simulator");
        for binary in [&control_plane, &operator, &simulator] {
            if !binary.is_file() {
                return Err(format!(
                    "{} is missing: `make bench` builds it (the control plane with Go, the operator and \
                     the simulator with `cargo build --release`)",
                    binary.display()
                ));
            }
        }
        let started = jiff::Timestamp::now().as_second();
        let logs = target.join(format!("bench/scale-{instances}-{started}"));
        Ok(Settings {
            instances,
            page_size,
            services,
            control_plane,
            operator,
            simulator,
            logs,
        })
    }
}

/// A whole number from the environment variable `name`, `default` when unset.
fn env_number(name: &str, default: usize, min: usize, max: usize) -> Result<usize, String> {
    let Ok(text) = std::env::var(name) else {
        return Ok(default);
    };
    text.trim()
        .replace('_', "")
        .parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("{name}={text}: expected a whole number from {min} to {max}"))
}

/// The whole benchmark: start everything, measure, stop everything (when the locals are dropped, in
/// reverse order: the operator, the simulator, then the control plane).
async fn run(settings: &Settings) -> Result<Measurements, String> {
    let n = settings.instances;
    std::fs::create_dir_all(&settings.logs)
        .map_err(|e| format!("cannot create {}: {e}", settings.logs.display()))?;
    let ticks_per_second = counters::ticks_per_second()?;
    let load_at_start = counters::load_average();
    let http = reqwest::Client::new();

    step("starting the test control plane (etcd, kube-apiserver, garbage collector)");
    let control_plane = ControlPlane::start_launcher(
        &settings.control_plane,
        None,
        &settings.logs.join("control-plane.log"),
    )?;
    let control_plane_pid = control_plane
        .pid()
        .ok_or("the control plane was started, yet has no process")?;
    let client = control_plane.try_client().await?;
    install_crds(&client).await?;
    for namespace in [OPERATOR_NAMESPACE, BARE_NAMESPACE, BARE_AFTER_NAMESPACE] {
        create_namespace(&client, namespace).await?;
    }
    create_secret(&client, OPERATOR_NAMESPACE).await?;

    step(&format!("starting the PPIO simulator with {n} instances"));
    let mut command = Command::new(&settings.simulator);
    command
        .args(["--listen", "127.0.0.1:0", "--api-key", API_KEY])
        .arg("--generate")
        .arg(n.to_string())
        .arg("--max-page-size")
        .arg(settings.page_size.max(100).to_string());
    without_settings_from_environment(&mut command);
    let (simulator, ppio_url) = Running::start_announcing(
        "PPIO simulator",
        command,
        &settings.logs.join("simulator.log"),
        "LISTENING ",
        Duration::from_secs(300),
    )?;

    step("starting the release-built operator");
    let port = ports::free_local_port()
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))?;
    let mut command = Command::new(&settings.operator);
    command
        .args(["run", "--namespace", OPERATOR_NAMESPACE])
        .args(["--allowed-endpoint", &ppio_url])
        .args(["--leader-election", "false"])
        .args(["--http-address", &format!("127.0.0.1:{port}")])
        .args(["--ppio-requests-per-minute", "0"])
        .args(["--log-level", "info"])
        .env("KUBECONFIG", &control_plane.kubeconfig);
    if settings.services {
        command
            .arg("--services")
            .args(["--service-allowed-cidr", &SIMULATOR_RANGES.join(",")]);
    }
    without_settings_from_environment(&mut command);
    let operator = Running::start("operator", command, &settings.logs.join("operator.log"))?;
    wait_until_ready(&http, port, &operator).await?;

    let bare = BareClient {
        client: &client,
        http: &http,
        ppio_url: &ppio_url,
        page_size: settings.page_size,
        services: settings.services,
        instances: n,
        control_plane: control_plane_pid,
        ticks_per_second,
    };
    let bare_before = bare.run(BARE_NAMESPACE, "before the operator").await?;
    // The operator starts on an empty store, as the bare client did.
    clear_namespace(&client, BARE_NAMESPACE, n).await?;
    let mut started_busy = Vec::new();
    if !wait_until_quiet(&client, control_plane_pid, ticks_per_second, n).await? {
        started_busy.push("the first mirror");
    }

    step(&format!(
        "first mirror: creating the view (pageSize {}, syncInterval {SYNC_INTERVAL})",
        settings.page_size
    ));
    let mut views = ViewReader::new(&client, OPERATOR_NAMESPACE);
    let before = Sample::take(&client, &http, &ppio_url, &operator, ticks_per_second).await?;
    let cpu_before = CpuSample::take(control_plane_pid, ticks_per_second)?;
    let started = Instant::now();
    create_view(
        &client,
        OPERATOR_NAMESPACE,
        &ppio_url,
        settings.page_size,
        settings.services,
    )
    .await?;
    views
        .wait_for(
            &operator,
            "every instance to be mirrored and the view Ready",
            Duration::from_secs(300) + Duration::from_millis(20) * n as u32,
            |view| fully_mirrored(view, n),
        )
        .await?;
    let first_mirror = started.elapsed();
    let first_mirror_control_plane_cpu = CpuSample::take(control_plane_pid, ticks_per_second)?
        .since(&cpu_before)
        .control_plane;
    tokio::time::sleep(SETTLE).await;
    let after = Sample::take(&client, &http, &ppio_url, &operator, ticks_per_second).await?;
    let mut first_mirror_api = after.api.since(&before.api);
    first_mirror_api.discount(&view_request("POST", ""), 1.0);
    views.discount_from(&mut first_mirror_api);
    let first_mirror_cpu = after.process.cpu.saturating_sub(before.process.cpu);
    let first_mirror_ppio = after.ppio.since(&before.ppio);
    let peak_rss_after_first_mirror = after.process.peak_rss;
    step(&format!(
        "first mirror: {}, control plane CPU {}, operator CPU {}, peak RSS {:.1} MiB",
        report::seconds(first_mirror),
        report::seconds(first_mirror_control_plane_cpu),
        report::seconds(first_mirror_cpu),
        report::mib(peak_rss_after_first_mirror)
    ));

    step(&format!(
        "{NO_OP_SYNCS} syncs in which nothing changed (refresh annotation)"
    ));
    let before_no_op = after;
    let flips_before = freshness_flips(&http, port).await?;
    let started = Instant::now();
    for sync in 1..=NO_OP_SYNCS {
        let value = format!("bench-{sync}-{}", jiff::Timestamp::now().as_nanosecond());
        request_refresh(&client, &value).await?;
        views
            .wait_for(
                &operator,
                &format!("the view to answer refresh {value}"),
                Duration::from_secs(60) + Duration::from_millis(5) * n as u32,
                |view| {
                    view.status
                        .as_ref()
                        .and_then(|s| s.last_handled_refresh.as_deref())
                        == Some(value.as_str())
                },
            )
            .await?;
    }
    let no_op_wall = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    let after_no_op = Sample::take(&client, &http, &ppio_url, &operator, ticks_per_second).await?;
    let no_op_freshness_flips = freshness_flips(&http, port).await? - flips_before;
    let mut no_op_api = after_no_op.api.since(&before_no_op.api);
    no_op_api.discount(&view_request("PATCH", ""), NO_OP_SYNCS as f64);
    views.discount_from(&mut no_op_api);
    let no_op_ppio = after_no_op.ppio.since(&before_no_op.ppio);
    if no_op_ppio.listings == 0 {
        return Err("the operator listed nothing from PPIO during the syncs asked for".to_owned());
    }
    let no_op_cpu = after_no_op
        .process
        .cpu
        .saturating_sub(before_no_op.process.cpu);
    step(&format!(
        "{} syncs in which nothing changed: operator CPU {} per sync, peak RSS {:.1} MiB",
        no_op_ppio.listings,
        report::millis(no_op_cpu / no_op_ppio.listings as u32),
        report::mib(after_no_op.process.peak_rss)
    ));
    simulator.ensure_running()?;
    operator.ensure_running()?;

    // A second run of the bare client, after the operator's, makes the yardstick the mean of one run
    // at the start and one at the end. The view is suspended first, so that no sync of the operator's
    // is in flight, then its namespace is deleted, so the bare client too starts on an empty store.
    suspend_view(&client).await?;
    views
        .wait_for(
            &operator,
            "the view to be suspended",
            Duration::from_secs(60) + Duration::from_millis(5) * n as u32,
            |view| {
                view.status
                    .as_ref()
                    .and_then(|s| condition::find(&s.conditions, condition::READY))
                    .is_some_and(|ready| ready.reason == "Suspended")
            },
        )
        .await?;
    clear_namespace(&client, OPERATOR_NAMESPACE, n).await?;
    if !wait_until_quiet(&client, control_plane_pid, ticks_per_second, n).await? {
        started_busy.push("the bare client's run after the operator");
    }
    let bare_after = bare.run(BARE_AFTER_NAMESPACE, "after the operator").await?;
    operator.ensure_running()?;

    step("done; stopping everything");
    Ok(Measurements {
        instances: n,
        page_size: settings.page_size,
        services: settings.services,
        first_mirror,
        bare_before,
        bare_after,
        bare_workers: BARE_WORKERS,
        first_mirror_control_plane_cpu,
        first_mirror_cpu,
        first_mirror_api,
        first_mirror_ppio,
        peak_rss_after_first_mirror,
        peak_rss: after_no_op.process.peak_rss,
        no_op_syncs_asked: NO_OP_SYNCS,
        no_op_syncs: no_op_ppio.listings,
        no_op_wall,
        no_op_cpu,
        no_op_api,
        no_op_ppio,
        no_op_freshness_flips,
        started_busy,
        load_at_start,
        load_at_end: counters::load_average(),
        logs: settings.logs.clone(),
    })
}

/// Prints what the benchmark is doing, on standard error (the report goes to standard output).
fn step(what: &str) {
    eprintln!("bench: {what}");
}

/// Leaves out the operator's and the simulator's settings from the caller's environment, so that only
/// the benchmark's flags count.
fn without_settings_from_environment(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("PPIO_OPERATOR_") || name.starts_with("PPIO_SIMULATOR_") {
            command.env_remove(name.as_ref());
        }
    }
    command.env_remove("RUST_LOG");
}

/// The operator's count of Services it turned not ready for want of confirmation (its
/// `/metrics` on `127.0.0.1:port`): writes no mirror change triggers.
async fn freshness_flips(http: &reqwest::Client, port: u16) -> Result<f64, String> {
    const METRIC: &str = "ppio_gpu_operator_endpoint_freshness_flips_total ";
    let url = format!("http://127.0.0.1:{port}/metrics");
    let text = http
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("cannot read the operator's {url}: {e}"))?
        .text()
        .await
        .map_err(|e| format!("cannot read the operator's {url}: {e}"))?;
    text.lines()
        .find_map(|line| line.strip_prefix(METRIC)?.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("the operator's {url} has no {}", METRIC.trim()))
}

/// The counters read before and after each phase.
struct Sample {
    process: ProcessCounters,
    api: RequestCounts,
    ppio: PpioRequests,
}

impl Sample {
    async fn take(
        client: &kube::Client,
        http: &reqwest::Client,
        ppio_url: &str,
        operator: &Running,
        ticks_per_second: u64,
    ) -> Result<Sample, String> {
        Ok(Sample {
            process: counters::counters(operator.pid(), ticks_per_second)?,
            api: RequestCounts::read(client).await?,
            ppio: PpioRequests::read(http, ppio_url).await?,
        })
    }
}

/// The bare client, as a yardstick: see [`bare_client`].
struct BareClient<'a> {
    client: &'a kube::Client,
    http: &'a reqwest::Client,
    ppio_url: &'a str,
    page_size: usize,
    services: bool,
    instances: usize,
    control_plane: u32,
    ticks_per_second: u64,
}

impl BareClient<'_> {
    /// Writes the mirrors of every simulated instance into `namespace`, timed.
    async fn run(&self, namespace: &str, when: &str) -> Result<BareRun, String> {
        let n = self.instances;
        step(&format!(
            "bare client, {when}: server-side apply of the same {n} objects and their statuses, \
             {BARE_WORKERS} workers"
        ));
        let records = simulator_records(self.http, self.ppio_url).await?;
        if records.len() != n {
            return Err(format!(
                "the simulator holds {} instances, not {n}",
                records.len()
            ));
        }
        let view = create_view(
            self.client,
            namespace,
            self.ppio_url,
            self.page_size,
            self.services,
        )
        .await?;
        let before = CpuSample::take(self.control_plane, self.ticks_per_second)?;
        let services = self.services.then(|| AddressPolicy {
            cluster: Vec::new(),
            allowed: SIMULATOR_RANGES
                .iter()
                .filter_map(|range| range.parse().ok())
                .collect(),
        });
        let applied = bare_client::apply_mirrors(
            self.client,
            &view,
            services.as_ref(),
            records,
            BARE_WORKERS,
        )
        .await?;
        let cpu = CpuSample::take(self.control_plane, self.ticks_per_second)?.since(&before);
        if applied.objects != n {
            return Err(format!(
                "the bare client planned {} objects, not {n}",
                applied.objects
            ));
        }
        step(&format!(
            "bare client, {when}: {}, control plane CPU {}, {} Services, {} writes retried",
            report::seconds(applied.wall),
            report::seconds(cpu.control_plane),
            applied.services,
            applied.retries
        ));
        Ok(BareRun {
            wall: applied.wall,
            retries: applied.retries,
            cpu: cpu.benchmark,
            control_plane_cpu: cpu.control_plane,
        })
    }
}

/// CPU time so far of the control plane and of the benchmark's own process (where the bare client
/// runs).
struct CpuSample {
    control_plane: Duration,
    benchmark: Duration,
}

impl CpuSample {
    fn take(control_plane: u32, ticks_per_second: u64) -> Result<CpuSample, String> {
        Ok(CpuSample {
            control_plane: counters::counters(control_plane, ticks_per_second)?.cpu,
            benchmark: counters::counters(std::process::id(), ticks_per_second)?.cpu,
        })
    }

    fn since(&self, earlier: &CpuSample) -> CpuSample {
        CpuSample {
            control_plane: self.control_plane.saturating_sub(earlier.control_plane),
            benchmark: self.benchmark.saturating_sub(earlier.benchmark),
        }
    }
}

/// A request of the benchmark's own to the view, to take away from the API server's counts.
fn view_request(verb: &str, subresource: &str) -> RequestKind {
    RequestKind::new(verb, GROUP, "gpuinstanceviews", subresource)
}

/// Follows the operator's view, counting its own requests (a GET, then a WATCH from the version read),
/// to take them away from the API server's counts.
struct ViewReader {
    views: Api<GpuInstanceView>,
    gets: usize,
    watches: usize,
}

impl ViewReader {
    fn new(client: &kube::Client, namespace: &str) -> ViewReader {
        ViewReader {
            views: Api::namespaced(client.clone(), namespace),
            gets: 0,
            watches: 0,
        }
    }

    /// Takes the benchmark's own requests to the view since the last call away from `counts`.
    fn discount_from(&mut self, counts: &mut RequestCounts) {
        counts.discount(
            &view_request("GET", ""),
            std::mem::take(&mut self.gets) as f64,
        );
        counts.discount(
            &view_request("WATCH", ""),
            std::mem::take(&mut self.watches) as f64,
        );
    }

    /// Waits until `done` holds, the operator exits, the view is Stalled, or `timeout` passes. It
    /// watches the view, so a phase ends when the operator's write of the view lands, not at the next
    /// poll.
    async fn wait_for(
        &mut self,
        operator: &Running,
        what: &str,
        timeout: Duration,
        done: impl Fn(&GpuInstanceView) -> bool,
    ) -> Result<GpuInstanceView, String> {
        let deadline = Instant::now() + timeout;
        let params = WatchParams::default()
            .fields(&format!("metadata.name={VIEW}"))
            .timeout(60);
        loop {
            operator.ensure_running()?;
            // A GET, then a watch from its version; again when the watch ends or fails.
            self.gets += 1;
            let mut view = self
                .views
                .get(VIEW)
                .await
                .map_err(|e| format!("cannot read the view: {e}"))?;
            self.watches += 1;
            let mut changes = self
                .views
                .watch(&params, &view.resource_version().unwrap_or_default())
                .await
                .map_err(|e| format!("cannot watch the view: {e}"))?
                .boxed();
            loop {
                if done(&view) {
                    return Ok(view);
                }
                if Instant::now() >= deadline {
                    let status = serde_json::to_string(&view.status).unwrap_or_default();
                    return Err(format!(
                        "timed out after {timeout:?} waiting for {what}; the view's status: {status}"
                    ));
                }
                if let Some(stalled) = view
                    .status
                    .as_ref()
                    .and_then(|s| condition::find(&s.conditions, condition::STALLED))
                    .filter(|c| c.status == ConditionStatus::True)
                {
                    return Err(format!(
                        "the view is Stalled ({}): {}",
                        stalled.reason, stalled.message
                    ));
                }
                let change = tokio::select! {
                    change = changes.next() => change,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {
                        operator.ensure_running()?;
                        continue;
                    }
                };
                match change {
                    Some(Ok(WatchEvent::Added(changed) | WatchEvent::Modified(changed))) => {
                        view = changed;
                    }
                    Some(Ok(WatchEvent::Deleted(_))) => {
                        return Err(format!("the view was deleted while waiting for {what}"));
                    }
                    Some(Ok(WatchEvent::Bookmark(_))) => {}
                    // The watch ended (its timeout) or failed: read the view again, shortly.
                    Some(Ok(WatchEvent::Error(_)) | Err(_)) | None => {
                        tokio::time::sleep(POLL).await;
                        break;
                    }
                }
            }
        }
    }
}

/// Whether the view's status says all `instances` are mirrored and it is Ready, for its current spec.
fn fully_mirrored(view: &GpuInstanceView, instances: usize) -> bool {
    let Some(status) = &view.status else {
        return false;
    };
    let ready = condition::find(&status.conditions, condition::READY)
        .is_some_and(|c| c.status == ConditionStatus::True);
    ready
        && status.observed_generation == view.metadata.generation
        && status.mirrored_count == i64::try_from(instances).ok()
}

/// Installs the operator's CRDs and waits until the API server serves them.
async fn install_crds(client: &kube::Client) -> Result<(), String> {
    crds::install_operator_crds(client, "bench", Duration::from_secs(60)).await
}

async fn create_namespace(client: &kube::Client, name: &str) -> Result<(), String> {
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &objects::namespace(name, &[]))
        .await
        .map(drop)
        .map_err(|e| format!("cannot create the namespace {name}: {e}"))
}

/// Deletes `namespace` and waits until it is gone, its objects with it. Each write phase starts on an
/// empty store: the control plane slows as its store grows, and at 100,000 instances two phases' objects
/// at once (200,000 GpuInstances) took the control plane past 20 GiB on a 24 GiB machine.
async fn clear_namespace(client: &kube::Client, namespace: &str, n: usize) -> Result<(), String> {
    step(&format!(
        "deleting the namespace {namespace} and its objects"
    ));
    let namespaces = Api::<Namespace>::all(client.clone());
    let started = Instant::now();
    namespaces
        .delete(namespace, &Default::default())
        .await
        .map_err(|e| format!("cannot delete the namespace {namespace}: {e}"))?;
    // With Services, the garbage collector deletes each mirror's Service, EndpointSlice and
    // ClusterIP too: about 20 ms per instance on the CI machine kind.
    let timeout = Duration::from_secs(120) + Duration::from_millis(40) * n as u32;
    loop {
        let found = namespaces
            .get_opt(namespace)
            .await
            .map_err(|e| format!("cannot read the namespace {namespace}: {e}"))?;
        if found.is_none() {
            step(&format!(
                "the namespace {namespace} is gone after {:.0} s",
                started.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(format!(
                "the namespace {namespace} is still there {timeout:?} after its deletion"
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits until the control plane has been quiet for a few seconds (under a quarter of a core, and no
/// request about GpuInstances or their views: the garbage collector goes on reading the dependents of a
/// deleted view after its namespace is gone), so that what a deletion set off is not counted in the
/// next phase; whether it became quiet within five minutes, plus 3 ms per instance.
async fn wait_until_quiet(
    client: &kube::Client,
    control_plane: u32,
    ticks_per_second: u64,
    n: usize,
) -> Result<bool, String> {
    const WINDOW: Duration = Duration::from_secs(5);
    let timeout = Duration::from_secs(300) + Duration::from_millis(3) * n as u32;
    let started = Instant::now();
    let mut cpu_before = CpuSample::take(control_plane, ticks_per_second)?;
    let mut requests_before = RequestCounts::read(client).await?;
    while started.elapsed() < timeout {
        tokio::time::sleep(WINDOW).await;
        let cpu = CpuSample::take(control_plane, ticks_per_second)?;
        let requests = RequestCounts::read(client).await?;
        let busy = cpu.since(&cpu_before).control_plane;
        let about_the_group = requests
            .since(&requests_before)
            .total(|kind| kind.group == GROUP);
        (cpu_before, requests_before) = (cpu, requests);
        if busy < WINDOW / 4 && about_the_group == 0.0 {
            step(&format!(
                "the control plane is quiet after {:.0} s",
                started.elapsed().as_secs_f64()
            ));
            return Ok(true);
        }
    }
    step(&format!(
        "the control plane is still busy after {timeout:?}; going on (the report says so)"
    ));
    Ok(false)
}

/// The API key Secret the view names.
async fn create_secret(client: &kube::Client, namespace: &str) -> Result<(), String> {
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(
            &PostParams::default(),
            &objects::api_key_secret(SECRET, "apiKey", API_KEY),
        )
        .await
        .map(drop)
        .map_err(|e| format!("cannot create the Secret {namespace}/{SECRET}: {e}"))
}

/// Creates the view [`VIEW`] in `namespace`: every instance of the simulator's account, with a
/// Service per mirror when `services`.
async fn create_view(
    client: &kube::Client,
    namespace: &str,
    ppio_url: &str,
    page_size: usize,
    services: bool,
) -> Result<GpuInstanceView, String> {
    let mut spec = objects::view_spec(SECRET, ppio_url);
    spec.sync_interval = SYNC_INTERVAL.into();
    spec.page_size =
        i32::try_from(page_size).map_err(|_| format!("page size {page_size} is out of range"))?;
    spec.services.enabled = services;
    Api::<GpuInstanceView>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &objects::view(VIEW, spec))
        .await
        .map_err(|e| format!("cannot create the view {namespace}/{VIEW}: {e}"))
}

/// Asks the operator for a sync now, with the refresh annotation.
async fn request_refresh(client: &kube::Client, value: &str) -> Result<(), String> {
    Api::<GpuInstanceView>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .patch(
            VIEW,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": { REFRESH_ANNOTATION: value } } })),
        )
        .await
        .map(drop)
        .map_err(|e| format!("cannot annotate the view for a refresh: {e}"))
}

/// Suspends the operator's view (`spec.suspend`).
async fn suspend_view(client: &kube::Client) -> Result<(), String> {
    Api::<GpuInstanceView>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .patch(
            VIEW,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "suspend": true } })),
        )
        .await
        .map(drop)
        .map_err(|e| format!("cannot suspend the view: {e}"))
}

/// Every record the simulator serves, in PPIO wire format (not a list request: not recorded).
async fn simulator_records(http: &reqwest::Client, ppio_url: &str) -> Result<Vec<Value>, String> {
    requests::get_json_array(http, &format!("{ppio_url}/_simulator/instances")).await
}

/// Waits until the operator's `/readyz` answers 200: its watches have listed the views.
async fn wait_until_ready(
    http: &reqwest::Client,
    port: u16,
    operator: &Running,
) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{port}/readyz");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        operator.ensure_running()?;
        let ready = http
            .get(&url)
            .send()
            .await
            .is_ok_and(|response| response.status().is_success());
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the operator's {url} did not answer 200 within 60 s"
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
