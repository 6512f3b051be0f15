//! The operator in a real pod at scale: `make bench-pod` (`N=10000 PAGE_SIZE=100` by default).
//!
//! On the one-node cluster (`hack/node/up.sh`), installs the chart with its defaults (so the container
//! runs under the chart's default requests and limits), mirrors N generated instances through one view,
//! then asks for three syncs in which nothing changed (the refresh annotation), and reads the leading
//! container's own cgroup all along: its memory (usage sampled every 200 ms, the kernel's peak, the
//! times it hit its limit, OOM kills), its CPU time and its CFS throttling. Prints each number beside
//! the chart's limits and the README's sizing (about 20 MiB plus 1 KiB per instance).
//!
//! Exits non-zero when the run broke, or when the container was OOM-killed or restarted: not a timed
//! test, but a pod that died is no measurement.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use ppio_gpu_core::api::GpuInstanceView;
use ppio_gpu_core::api::view::REFRESH_ANNOTATION;
use serde_json::json;

use ppio_test_support::node::{
    Release, Tenant, VIEW, await_object, bytes_of, cgroup_dir, cgroup_number, client,
    container_pid, millicores_of, ppio_with, proc_status, wait_for,
};

const NO_OP_SYNCS: usize = 3;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mib(bytes: i64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// `key value` lines of a cgroup file such as memory.stat or cpu.stat.
fn stat(dir: &Path, file: &str, key: &str) -> i64 {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok())?
            })
        })
        .unwrap_or(-1)
}

struct Cgroup {
    memory: PathBuf,
    cpuacct: PathBuf,
    cpu: PathBuf,
}

impl Cgroup {
    fn cpu_seconds(&self) -> f64 {
        cgroup_number(&self.cpuacct, "cpuacct.usage") as f64 / 1e9
    }
}

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-pod: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let n = env_number("N", 10_000);
    let page_size = env_number("PAGE_SIZE", 100) as u32;
    let client = client().await;
    ppio_with(n);
    println!(
        "bench-pod: {n} instances, pages of {page_size}; installing the chart with its defaults"
    );
    let release = Release::install("bench", &[]);
    let leader = wait_for("a leader", Duration::from_secs(60), || {
        release.leader(&client)
    })
    .await;
    let pod = release
        .pods(&client)
        .await
        .into_iter()
        .find(|p| p.name_any() == leader)
        .ok_or("the leader is no pod of the release")?;
    let container = &pod.spec.as_ref().ok_or("pod spec")?.containers[0];
    let resources = container.resources.clone().unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    let requests = resources.requests.unwrap_or_default();
    let memory_limit = bytes_of(&limits.get("memory").ok_or("no memory limit")?.0);
    let memory_request = bytes_of(&requests.get("memory").ok_or("no memory request")?.0);
    let cpu_limit = millicores_of(&limits.get("cpu").ok_or("no CPU limit")?.0);
    let pid = container_pid(&pod);
    let cgroup = Cgroup {
        memory: cgroup_dir(pid, "memory"),
        cpuacct: cgroup_dir(pid, "cpuacct"),
        cpu: cgroup_dir(pid, "cpu"),
    };

    // Memory as the kubelet sees it (the working set: usage less inactive file pages), sampled.
    let peak_working_set = Arc::new(AtomicI64::new(0));
    let sampler = {
        let peak = peak_working_set.clone();
        let dir = cgroup.memory.clone();
        tokio::spawn(async move {
            loop {
                let usage = cgroup_number(&dir, "memory.usage_in_bytes");
                let inactive = stat(&dir, "memory.stat", "total_inactive_file").max(0);
                peak.fetch_max(usage - inactive, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    let cpu_before = cgroup.cpu_seconds();
    let started = Instant::now();
    let tenant =
        Tenant::create_with(&client, "bench-tenant", page_size, Duration::from_secs(600)).await;
    let views: Api<GpuInstanceView> = Api::namespaced(client.clone(), &tenant.namespace);
    let all = i64::try_from(n).ok();
    await_object(
        views.clone(),
        VIEW,
        "every instance mirrored",
        Duration::from_secs(1800),
        move |view: &GpuInstanceView| {
            view.status
                .as_ref()
                .is_some_and(|status| status.mirrored_count == all)
        },
    )
    .await;
    let first_mirror = started.elapsed();
    let first_mirror_cpu = cgroup.cpu_seconds() - cpu_before;
    let working_set_after_mirror = peak_working_set.load(Ordering::Relaxed);

    let mut no_op = Vec::new();
    for i in 0..NO_OP_SYNCS {
        let value = format!("bench-{i}-{}", started.elapsed().as_millis());
        let cpu = cgroup.cpu_seconds();
        let asked = Instant::now();
        views
            .patch(
                VIEW,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({ "metadata": { "annotations": { REFRESH_ANNOTATION: value } } }),
                ),
            )
            .await
            .map_err(|e| format!("cannot ask for a refresh: {e}"))?;
        await_object(
            views.clone(),
            VIEW,
            "the refresh to be handled",
            Duration::from_secs(600),
            move |view: &GpuInstanceView| {
                view.status.as_ref().is_some_and(|status| {
                    status.last_handled_refresh.as_deref() == Some(value.as_str())
                })
            },
        )
        .await;
        no_op.push((asked.elapsed(), cgroup.cpu_seconds() - cpu));
    }
    sampler.abort();
    let still_leading = release.leader(&client).await;
    if still_leading.as_deref() != Some(leader.as_str()) {
        return Err(format!(
            "the leader changed during the run ({leader} -> {still_leading:?}): the numbers would mix two pods"
        ));
    }

    let after = release
        .pods(&client)
        .await
        .into_iter()
        .find(|p| p.name_any() == leader)
        .ok_or("the leader's pod is gone")?;
    let restarts = after
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|cs| cs.first().map(|c| c.restart_count))
        .unwrap_or(-1);
    let kernel_peak = cgroup_number(&cgroup.memory, "memory.max_usage_in_bytes");
    let failcnt = cgroup_number(&cgroup.memory, "memory.failcnt");
    let oom_kills = stat(&cgroup.memory, "memory.oom_control", "oom_kill");
    let rss = stat(&cgroup.memory, "memory.stat", "total_rss");
    let throttled_periods = stat(&cgroup.cpu, "cpu.stat", "nr_throttled");
    let periods = stat(&cgroup.cpu, "cpu.stat", "nr_periods");
    let throttled_seconds = stat(&cgroup.cpu, "cpu.stat", "throttled_time") as f64 / 1e9;
    let hwm = proc_status(pid).get("VmHWM").cloned().unwrap_or_default();
    let sizing = (20 << 20) + (n as i64) * 1024;

    println!();
    println!(
        "bench-pod: the leader {leader}, limits {} / {cpu_limit}m CPU, request {}",
        mib(memory_limit),
        mib(memory_request)
    );
    println!(
        "  first mirror of {n}: {:.1} s, {first_mirror_cpu:.2} s of CPU",
        first_mirror.as_secs_f64()
    );
    for (i, (took, cpu)) in no_op.iter().enumerate() {
        println!(
            "  no-op sync {}: {:.1} s, {:.0} ms of CPU",
            i + 1,
            took.as_secs_f64(),
            cpu * 1000.0
        );
    }
    println!(
        "  memory: working set peak {} (after the first mirror {}), cgroup peak {} (page cache included), \
         rss {}, VmHWM {hwm}",
        mib(peak_working_set.load(Ordering::Relaxed)),
        mib(working_set_after_mirror),
        mib(kernel_peak),
        mib(rss)
    );
    println!(
        "  README sizing for {n}: {}; chart limit {}: {}",
        mib(sizing),
        mib(memory_limit),
        if kernel_peak < memory_limit {
            "under"
        } else {
            "AT OR OVER"
        }
    );
    println!("  limit hits (memory.failcnt) {failcnt}, OOM kills {oom_kills}, restarts {restarts}");
    println!(
        "  CPU throttling: {throttled_periods} of {periods} periods throttled, {throttled_seconds:.2} s in all"
    );
    if restarts != 0 || oom_kills > 0 {
        return Err(format!(
            "the operator's container restarted {restarts} times ({oom_kills} OOM kills) under the chart's limits"
        ));
    }
    Ok(())
}
