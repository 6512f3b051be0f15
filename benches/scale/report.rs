//! What the benchmark measured, set against its targets and printed as a table with PASS or FAIL per
//! target, then the details behind it.

use std::path::PathBuf;
use std::time::Duration;

use ppio_gpu_core::api::GROUP;

use crate::requests::{PpioRequests, RequestCounts, RequestKind};

/// Everything one run measured.
pub struct Measurements {
    /// Instances in the simulator's account.
    pub instances: usize,
    /// The view's `pageSize`.
    pub page_size: usize,
    /// Whether the operator kept a Service per mirror (`SERVICES=1`).
    pub services: bool,
    /// From the view's creation until its status said every instance was mirrored and it was Ready.
    pub first_mirror: Duration,
    /// The bare client's writes of the same objects, before the operator's first mirror.
    pub bare_before: BareRun,
    /// The same, after the operator's first mirror and syncs.
    pub bare_after: BareRun,
    /// Phases that started while the control plane was still busy with the previous one's deletion.
    pub started_busy: Vec<&'static str>,
    /// The bare client's concurrent writers.
    pub bare_workers: usize,
    /// The control plane's CPU time during the first mirror.
    pub first_mirror_control_plane_cpu: Duration,
    /// Operator CPU time during the first mirror.
    pub first_mirror_cpu: Duration,
    /// API server requests during the first mirror (the benchmark's own left out).
    pub first_mirror_api: RequestCounts,
    /// PPIO requests during the first mirror.
    pub first_mirror_ppio: PpioRequests,
    /// The operator's `VmHWM` after the first mirror.
    pub peak_rss_after_first_mirror: u64,
    /// The operator's `VmHWM` at the end: over the first mirror and the syncs in which nothing changed.
    pub peak_rss: u64,
    /// Syncs asked for with the refresh annotation.
    pub no_op_syncs_asked: usize,
    /// Syncs seen (PPIO listings begun) meanwhile; the per-sync numbers are divided by this.
    pub no_op_syncs: usize,
    /// Wall time of the syncs asked for, from the first request to the last answer.
    pub no_op_wall: Duration,
    /// Operator CPU time over those syncs.
    pub no_op_cpu: Duration,
    /// API server requests over those syncs (the benchmark's own left out).
    pub no_op_api: RequestCounts,
    /// PPIO requests over those syncs.
    pub no_op_ppio: PpioRequests,
    /// Services the operator turned not ready for want of confirmation over those syncs.
    pub no_op_freshness_flips: f64,
    /// The machine's load averages when the run began.
    pub load_at_start: String,
    /// The machine's load averages when the measurements ended.
    pub load_at_end: String,
    /// Where the processes' logs are.
    pub logs: PathBuf,
}

/// One run of the bare client.
pub struct BareRun {
    /// How long its writes took.
    pub wall: Duration,
    /// Writes it sent again (see `bare_client::retrying`).
    pub retries: usize,
    /// Its CPU time (the benchmark's process).
    pub cpu: Duration,
    /// The control plane's CPU time meanwhile.
    pub control_plane_cpu: Duration,
}

/// One line of the table: a target line has a target and a verdict.
struct Row {
    what: String,
    measured: String,
    target: String,
    meets: Option<bool>,
}

impl Row {
    fn info(what: impl Into<String>, measured: impl Into<String>) -> Row {
        Row {
            what: what.into(),
            measured: measured.into(),
            target: String::new(),
            meets: None,
        }
    }

    fn target(
        what: impl Into<String>,
        measured: impl Into<String>,
        target: impl Into<String>,
        meets: bool,
    ) -> Row {
        Row {
            what: what.into(),
            measured: measured.into(),
            target: target.into(),
            meets: Some(meets),
        }
    }
}

/// The peak RSS target: 64 MiB up to 10,000 instances, 256 MiB at 100,000, linear between and beyond.
pub fn peak_rss_target_mib(instances: usize) -> f64 {
    let above = instances.saturating_sub(10_000) as f64;
    64.0 + above * (256.0 - 64.0) / 90_000.0
}

/// The CPU target of a sync in which nothing changed: 100 ms at 10,000 instances, in proportion above.
pub fn no_op_cpu_target(instances: usize) -> Duration {
    Duration::from_millis(100).mul_f64((instances as f64 / 10_000.0).max(1.0))
}

/// Whether a request to the API server reads or writes GpuInstances one by one or all at once
/// (watching them is allowed).
fn reads_or_writes_mirrors(kind: &RequestKind) -> bool {
    kind.group == GROUP
        && kind.resource == "gpuinstances"
        && (kind.is_write() || matches!(kind.verb.as_str(), "GET" | "LIST"))
}

/// Whether a request to the API server reads or writes Services or EndpointSlices one by one or all
/// at once (watching them is allowed).
fn reads_or_writes_services(kind: &RequestKind) -> bool {
    is_service_object(kind) && (kind.is_write() || matches!(kind.verb.as_str(), "GET" | "LIST"))
}

/// Whether a request is about Services or EndpointSlices.
fn is_service_object(kind: &RequestKind) -> bool {
    (kind.group.is_empty() && kind.resource == "services")
        || (kind.group == "discovery.k8s.io" && kind.resource == "endpointslices")
}

/// Whether a request to the API server writes the view (any subresource).
fn writes_view(kind: &RequestKind) -> bool {
    kind.group == GROUP && kind.resource == "gpuinstanceviews" && kind.is_write()
}

/// Prints the report on standard output.
pub fn print(m: &Measurements) {
    let n = m.instances;
    let pages = n.div_ceil(m.page_size);
    let syncs = m.no_op_syncs.max(1) as f64;
    let bare = (m.bare_before.wall + m.bare_after.wall) / 2;
    let ratio = m.first_mirror.as_secs_f64() / bare.as_secs_f64().max(f64::EPSILON);
    let peak_mib = mib(m.peak_rss);
    let rss_target = peak_rss_target_mib(n);
    let cpu_per_sync = m.no_op_cpu.div_f64(syncs);
    let cpu_target = no_op_cpu_target(n);
    let per_sync = m.no_op_api.per(syncs);
    let mirror_requests = per_sync.total(reads_or_writes_mirrors);
    let service_requests = per_sync.total(reads_or_writes_services);
    let view_writes = per_sync.total(writes_view);
    let view_other_writes = per_sync.total(|k| writes_view(k) && k.subresource != "status");
    let first_pages_per_listing =
        m.first_mirror_ppio.pages as f64 / m.first_mirror_ppio.listings.max(1) as f64;
    let no_op_pages_per_sync = m.no_op_ppio.pages as f64 / syncs;

    let mut rows = vec![
        Row::info(
            format!("first mirror: view created -> {n} mirrored, Ready"),
            seconds(m.first_mirror),
        ),
        Row::info(
            format!(
                "bare SSA client, {} workers, same objects: before",
                m.bare_workers
            ),
            seconds(m.bare_before.wall),
        ),
        Row::info("bare SSA client: after", seconds(m.bare_after.wall)),
        Row::info("bare SSA client: mean", seconds(bare)),
        Row::target(
            "first mirror / bare client's mean",
            format!("{ratio:.2}"),
            "<= 1.00",
            ratio <= 1.0,
        ),
        Row::target(
            format!(
                "peak RSS (VmHWM), first mirror + {} no-op syncs",
                m.no_op_syncs_asked
            ),
            format!("{peak_mib:.1} MiB"),
            format!("<= {rss_target:.0} MiB"),
            peak_mib <= rss_target,
        ),
        Row::target(
            "operator CPU per no-op sync",
            millis(cpu_per_sync),
            format!("<= {}", millis(cpu_target)),
            cpu_per_sync <= cpu_target,
        ),
        Row::target(
            "API server, per no-op sync: GpuInstance LIST/GET/writes",
            count(mirror_requests),
            "0",
            mirror_requests == 0.0,
        ),
        Row::target(
            "API server, per no-op sync: writes of the view",
            if view_other_writes > 0.0 {
                format!(
                    "{} ({} not status)",
                    count(view_writes),
                    count(view_other_writes)
                )
            } else {
                count(view_writes)
            },
            "<= 1, status",
            view_writes <= 1.0 && view_other_writes == 0.0,
        ),
        Row::target(
            "PPIO requests per sync, first mirror",
            count(first_pages_per_listing),
            format!("= {pages}"),
            m.first_mirror_ppio.listings == 1 && m.first_mirror_ppio.pages == pages,
        ),
        Row::target(
            "PPIO requests per sync, no-op syncs",
            count(no_op_pages_per_sync),
            format!("= {pages}"),
            m.no_op_ppio.pages == pages * m.no_op_syncs,
        ),
        // The prices: the GPU and the CPU product lists, read once per key and time to live (an
        // hour by default), and again on a refresh request: the no-op syncs here are asked for with
        // the refresh annotation, so each reads them again; a scheduled sync within the hour would
        // read none.
        Row::target(
            "PPIO product list requests, first mirror",
            m.first_mirror_ppio.products.to_string(),
            "= 2",
            m.first_mirror_ppio.products == 2,
        ),
        Row::target(
            "PPIO product list requests per no-op sync (refresh)",
            count(m.no_op_ppio.products as f64 / syncs),
            "= 2",
            m.no_op_ppio.products == 2 * m.no_op_syncs,
        ),
    ];
    if m.services {
        let first = &m.first_mirror_api;
        for (what, resource) in [("Service", "services"), ("EndpointSlice", "endpointslices")] {
            let of = |k: &RequestKind| is_service_object(k) && k.resource == resource;
            rows.push(Row::info(
                format!("first mirror: {what} writes (reads)"),
                format!(
                    "{} ({})",
                    count(first.total(|k| of(k) && k.is_write())),
                    count(first.total(|k| of(k) && k.verb == "GET"))
                ),
            ));
        }
        rows.push(Row::target(
            "API server, per no-op sync: Service/EndpointSlice LIST/GET/writes",
            count(service_requests),
            "0",
            service_requests == 0.0,
        ));
        let flips = m.no_op_freshness_flips / syncs;
        rows.push(Row::target(
            "freshness writes per no-op sync (Services turned not ready)",
            count(flips),
            "0",
            flips == 0.0,
        ));
    }

    println!();
    println!(
        "ppio-gpu-operator at scale: {n} instances, pageSize {} ({pages} PPIO pages a listing), \
         syncInterval 30s",
        m.page_size
    );
    println!(
        "operator: release build, `run --log-level info --ppio-requests-per-minute 0 \
         --leader-election false{}`, one namespace{}",
        if m.services { " --services" } else { "" },
        if m.services {
            "; the view keeps a Service per mirror (services.enabled), and so does the bare client"
        } else {
            ""
        }
    );
    println!();
    print_table(&rows);

    println!();
    println!(
        "API server requests per no-op sync, by verb and resource (the benchmark's own left out; \
         the control plane's own work, e.g. leases, is counted too):"
    );
    print_counts(&per_sync);
    println!();
    println!("API server requests during the first mirror:");
    print_counts(&m.first_mirror_api);
    println!();
    println!("details:");
    println!(
        "  first mirror: operator CPU {}, control plane CPU {}; PPIO {} requests in {} listing(s)",
        seconds(m.first_mirror_cpu),
        seconds(m.first_mirror_control_plane_cpu),
        m.first_mirror_ppio.pages,
        m.first_mirror_ppio.listings
    );
    for (when, run) in [("before", &m.bare_before), ("after", &m.bare_after)] {
        println!(
            "  bare client {when}: its CPU {}, control plane CPU {}, {} writes retried",
            seconds(run.cpu),
            seconds(run.control_plane_cpu),
            run.retries
        );
    }
    println!(
        "  peak RSS after the first mirror: {:.1} MiB",
        mib(m.peak_rss_after_first_mirror)
    );
    println!(
        "  no-op syncs: {} asked for with the refresh annotation, {} seen (PPIO listings begun); \
         {} from the first request to the last answer",
        m.no_op_syncs_asked,
        m.no_op_syncs,
        seconds(m.no_op_wall)
    );
    println!(
        "  the bare client ran alone into other namespaces, before the operator's first mirror and \
         after its no-op syncs; each write phase started on an empty store (the previous phase's \
         namespace deleted, the control plane quiet)"
    );
    if !m.started_busy.is_empty() {
        println!(
            "  NOTE: the control plane was still busy with a deletion when these phases started: {}",
            m.started_busy.join(", ")
        );
    }
    println!(
        "  machine load average (1, 5, 15 min): {} at the start, {} at the end ({} cores)",
        m.load_at_start,
        m.load_at_end,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!("  logs: {}", m.logs.display());
    let failed = rows.iter().filter(|r| r.meets == Some(false)).count();
    let targets = rows.iter().filter(|r| r.meets.is_some()).count();
    println!();
    println!("{} of {targets} targets met", targets - failed);
}

fn print_table(rows: &[Row]) {
    let header = Row {
        what: "measure".into(),
        measured: "measured".into(),
        target: "target".into(),
        meets: None,
    };
    let width = |f: fn(&Row) -> &str| {
        rows.iter()
            .chain([&header])
            .map(|r| f(r).chars().count())
            .max()
            .unwrap_or(0)
    };
    let (what, measured, target) = (
        width(|r| &r.what),
        width(|r| &r.measured),
        width(|r| &r.target),
    );
    println!(
        "{:<what$}  {:>measured$}  {:<target$}  result",
        header.what, header.measured, header.target
    );
    for row in rows {
        let verdict = match row.meets {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "",
        };
        println!(
            "{:<what$}  {:>measured$}  {:<target$}  {verdict}",
            row.what, row.measured, row.target
        );
    }
}

fn print_counts(counts: &RequestCounts) {
    if counts.0.is_empty() {
        println!("  (none)");
        return;
    }
    let width = counts
        .0
        .keys()
        .map(|k| k.label().chars().count())
        .max()
        .unwrap_or(0);
    for (kind, &value) in &counts.0 {
        println!("  {:<width$}  {:>8}", kind.label(), count(value));
    }
}

pub fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

pub fn millis(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// Bytes in MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A count: whole when it is one, else with two decimals (an average over syncs).
fn count(value: f64) -> String {
    // A sum of deltas can come out as -0.0, which would print as "-0".
    let value = if value == 0.0 { 0.0 } else { value };
    if (value - value.round()).abs() < 0.005 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}
