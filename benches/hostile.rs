//! The real operator process against hostile PPIO answers: `make bench-hostile`.
//!
//! Starts the test control plane and a loopback server of its own that answers every list request
//! of a view with one fixed body, then, for each body shape the fuzz tests know (and a small page as
//! the baseline), the release-built operator watching one namespace with one view of that shape. The
//! operator is started afresh for each shape, so its peak resident memory (`VmHWM`, read from
//! /proc) is what that shape cost: read once the view's status reports the sync's outcome and the
//! server has answered the view at least twice (a retry or the next sync).
//!
//! Prints each peak against its target with PASS or FAIL. Exits 0 whatever the numbers; non-zero only
//! when the run itself broke. Every process it started is stopped at the end, on error and on Ctrl-C.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::PostParams;
use ppio::MAX_PAGE_ITEMS;
use ppio_gpu_core::api::GpuInstanceView;
use ppio_test_support::process::Running;
use ppio_test_support::{ControlPlane, crds, objects, ports};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The size of every large body: close to the operator's 16 MiB body limit.
const BODY_BYTES: usize = 14 * 1024 * 1024;
/// The most any one body may cost at the peak, beyond the baseline (the idle process with a view of
/// one record): four times the 16 MiB a body may have. The chart's default memory limit (256 MiB)
/// then holds the process and a sync of the worst shape in each of the 4 views synced at once.
const TARGET_BEYOND_BASELINE_MIB: f64 = 64.0;
/// The API key in the views' Secrets; the bench's server accepts any.
const API_KEY: &str = "sk-bench-hostile-0123456789";
const SECRET: &str = "ppio";
const POLL: Duration = Duration::from_millis(200);

/// One body the server answers a view with.
struct Shape {
    /// Path segment and namespace suffix.
    id: &'static str,
    /// What the report calls it.
    name: &'static str,
    body: Vec<u8>,
    /// Whether the view mirrors its instances.
    mirror: bool,
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run() => outcome,
            _ = tokio::signal::ctrl_c() => Err("interrupted; stopping everything it started".to_owned()),
        }
    });
    match outcome {
        Ok(rows) => {
            print_report(&rows);
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `head`, then `unit` repeated until the body is [`BODY_BYTES`] long with `tail`, joined by `sep`.
fn filled(head: &str, unit: &str, sep: &str, tail: &str) -> Vec<u8> {
    let room = BODY_BYTES - head.len() - tail.len();
    let count = (room + sep.len()) / (unit.len() + sep.len());
    let mut body = Vec::with_capacity(BODY_BYTES);
    body.extend_from_slice(head.as_bytes());
    for i in 0..count {
        if i > 0 {
            body.extend_from_slice(sep.as_bytes());
        }
        body.extend_from_slice(unit.as_bytes());
    }
    body.extend_from_slice(tail.as_bytes());
    body
}

fn shapes() -> Vec<Shape> {
    let records: Vec<String> = (0..MAX_PAGE_ITEMS)
        .map(|i| format!(r#"{{"id":"i{i}"}}"#))
        .collect();
    let shape = |id, name, body, mirror| Shape {
        id,
        name,
        body,
        mirror,
    };
    vec![
        shape(
            "baseline",
            "baseline: a page of one record",
            br#"{"data":[{"id":"a","status":{"status":"running"}}],"has_more":false}"#.to_vec(),
            true,
        ),
        shape(
            "nonpage",
            "14 MiB non-page {\"x\":[0,0,...]}",
            filled(r#"{"x":["#, "0", ",", "]}"),
            true,
        ),
        shape(
            "deep",
            "deep nesting (14 MiB of [)",
            filled(r#"{"data":"#, "[", "", "]}"),
            true,
        ),
        shape(
            "wide",
            "wide array in a record (gpu_ids)",
            filled(
                r#"{"data":[{"id":"a","resource_specs":{"gpu_ids":["#,
                "1",
                ",",
                r#"]}}],"has_more":false}"#,
            ),
            true,
        ),
        shape(
            "string",
            "long string (a 14 MiB name)",
            filled(
                r#"{"data":[{"id":"a","name":""#,
                "n",
                "",
                r#""}],"has_more":false}"#,
            ),
            true,
        ),
        shape(
            "tiny",
            "many tiny records (14 MiB of {})",
            filled(r#"{"data":["#, "{}", ",", r#"],"has_more":false}"#),
            true,
        ),
        shape(
            "fullpage",
            "the most records a page may hold (50,000), not mirrored",
            format!(r#"{{"data":[{}],"has_more":false}}"#, records.join(",")).into_bytes(),
            false,
        ),
        shape(
            "cursor",
            "huge cursor (14 MiB next_cursor)",
            filled(
                r#"{"data":[],"has_more":true,"next_cursor":""#,
                "c",
                "",
                r#""}"#,
            ),
            true,
        ),
    ]
}

/// What one shape cost.
struct Row {
    name: &'static str,
    body_bytes: usize,
    peak_rss: u64,
    outcome: String,
}

async fn run() -> Result<Vec<Row>, String> {
    let target = ppio_test_support::target_dir();
    let control_plane_bin = std::env::var_os("KUBE_CONTROL_PLANE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("control-plane/kube-control-plane"));
    let operator_bin = target.join("release/ppio-gpu-operator");
    for binary in [&control_plane_bin, &operator_bin] {
        if !binary.is_file() {
            return Err(format!(
                "{} is missing: `make bench-hostile` builds it",
                binary.display()
            ));
        }
    }
    let logs = target.join(format!(
        "bench/hostile-{}",
        jiff::Timestamp::now().as_second()
    ));
    std::fs::create_dir_all(&logs).map_err(|e| format!("cannot create {}: {e}", logs.display()))?;

    let shapes = shapes();
    let bodies: HashMap<&'static str, Arc<Vec<u8>>> = shapes
        .iter()
        .map(|shape| (shape.id, Arc::new(shape.body.clone())))
        .collect();
    let served: Arc<HashMap<&'static str, AtomicUsize>> = Arc::new(
        shapes
            .iter()
            .map(|shape| (shape.id, AtomicUsize::new(0)))
            .collect(),
    );
    let server_url = serve(bodies, served.clone()).await?;

    step("starting the test control plane");
    let control_plane =
        ControlPlane::start_launcher(&control_plane_bin, None, &logs.join("control-plane.log"))?;
    let client = control_plane.try_client().await?;
    crds::install_operator_crds(&client, "bench", Duration::from_secs(60)).await?;
    let http = reqwest::Client::new();

    let mut rows = Vec::new();
    for shape in &shapes {
        let namespace = format!("hostile-{}", shape.id);
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &objects::namespace(&namespace, &[]))
            .await
            .map_err(|e| format!("cannot create the namespace {namespace}: {e}"))?;
        Api::<Secret>::namespaced(client.clone(), &namespace)
            .create(
                &PostParams::default(),
                &objects::api_key_secret(SECRET, "apiKey", API_KEY),
            )
            .await
            .map_err(|e| format!("cannot create the Secret in {namespace}: {e}"))?;

        step(&format!(
            "{}: starting the release-built operator",
            shape.name
        ));
        let port = ports::free_local_port().map_err(|e| format!("no free port: {e}"))?;
        let mut command = Command::new(&operator_bin);
        command
            .args(["run", "--namespace", &namespace])
            .args(["--allowed-endpoint", &server_url])
            .args(["--leader-election", "false"])
            .args(["--http-address", &format!("127.0.0.1:{port}")])
            .args(["--ppio-requests-per-minute", "0"])
            .args(["--log-level", "info"])
            .env("KUBECONFIG", &control_plane.kubeconfig);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PPIO_OPERATOR_") {
                command.env_remove(name);
            }
        }
        command.env_remove("RUST_LOG");
        let operator = Running::start(
            "operator",
            command,
            &logs.join(format!("operator-{}.log", shape.id)),
        )?;
        wait_until_ready(&http, port, &operator).await?;

        let mut spec = objects::view_spec(SECRET, &format!("{server_url}{}", shape.id));
        spec.mirror.enabled = shape.mirror;
        spec.sync_interval = "10s".into();
        Api::<GpuInstanceView>::namespaced(client.clone(), &namespace)
            .create(&PostParams::default(), &objects::view("hostile", spec))
            .await
            .map_err(|e| format!("cannot create the view in {namespace}: {e}"))?;
        let outcome = wait_for_outcome(&client, &namespace, &operator, &served[shape.id]).await?;
        let peak_rss = peak_rss(operator.pid())?;
        step(&format!(
            "{}: {outcome}; peak RSS {:.1} MiB",
            shape.name,
            mib(peak_rss)
        ));
        rows.push(Row {
            name: shape.name,
            body_bytes: shape.body.len(),
            peak_rss,
            outcome,
        });
        operator.stop();
    }
    control_plane.stop();
    Ok(rows)
}

/// Waits until the view's Ready condition reports a sync and the server has answered the view
/// twice; the condition's status and reason.
async fn wait_for_outcome(
    client: &kube::Client,
    namespace: &str,
    operator: &Running,
    served: &AtomicUsize,
) -> Result<String, String> {
    let views = Api::<GpuInstanceView>::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        operator.ensure_running()?;
        let view = views
            .get("hostile")
            .await
            .map_err(|e| format!("cannot read the view in {namespace}: {e}"))?;
        let ready = serde_json::to_value(&view.status)
            .ok()
            .and_then(|status| {
                status["conditions"].as_array().and_then(|conditions| {
                    conditions
                        .iter()
                        .find(|c| c["type"] == "Ready" && c["reason"] != "Reconciling")
                        .map(|c| {
                            format!(
                                "Ready {} ({})",
                                c["status"].as_str().unwrap_or("?"),
                                c["reason"].as_str().unwrap_or("?")
                            )
                        })
                })
            })
            .filter(|_| {
                view.status
                    .as_ref()
                    .is_some_and(|s| s.last_sync_time.is_some())
            });
        if let Some(ready) = ready
            && served.load(Ordering::Relaxed) >= 2
        {
            return Ok(ready);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the view in {namespace} reported no outcome within 90 s (answered {} times)",
                served.load(Ordering::Relaxed)
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Serves `bodies` on 127.0.0.1, each to the requests whose path starts with its ID, counting them
/// in `served`; the base URL (with a trailing slash).
async fn serve(
    bodies: HashMap<&'static str, Arc<Vec<u8>>>,
    served: Arc<HashMap<&'static str, AtomicUsize>>,
) -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("no local address: {e}"))?;
    let bodies = Arc::new(bodies);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (bodies, served) = (bodies.clone(), served.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65_536 {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let id = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|path| path.trim_start_matches('/').split('/').next())
                    .unwrap_or_default()
                    .to_owned();
                let Some(body) = bodies.get(id.as_str()) else {
                    let _ = stream
                        .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                };
                if let Some(count) = served.get(id.as_str()) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body).await;
            });
        }
    });
    Ok(format!("http://{address}/"))
}

async fn wait_until_ready(
    http: &reqwest::Client,
    port: u16,
    operator: &Running,
) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{port}/readyz");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        operator.ensure_running()?;
        if http
            .get(&url)
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
        {
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

/// The most resident memory process `pid` ever had (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .ok_or_else(|| format!("{path} has no VmHWM line"))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn step(what: &str) {
    eprintln!("bench: {what}");
}

fn print_report(rows: &[Row]) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let baseline = rows.first().map_or(0.0, |row| mib(row.peak_rss));
    println!();
    println!(
        "Peak RSS of the release-built operator, started afresh for each body; target: at most \
         {TARGET_BEYOND_BASELINE_MIB:.0} MiB beyond the baseline ({baseline:.1} MiB)"
    );
    println!(
        "{:<58} {:>10} {:>12} {:>12}  {:<6} outcome",
        "body", "size", "peak RSS", "beyond", ""
    );
    for row in rows {
        let beyond = mib(row.peak_rss) - baseline;
        let verdict = if beyond <= TARGET_BEYOND_BASELINE_MIB {
            "PASS"
        } else {
            "FAIL"
        };
        println!(
            "{:<58} {:>6.1} MiB {:>8.1} MiB {:>8.1} MiB  {verdict:<6} {}",
            row.name,
            mib(row.body_bytes as u64),
            mib(row.peak_rss),
            beyond,
            row.outcome
        );
    }
    println!(
        "machine load (1, 5, 15 min): {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
