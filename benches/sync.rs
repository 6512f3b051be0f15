//! How fast and how lean one sync's pure work is: decoding PPIO pages, mapping instances to
//! GpuInstances and planning the writes, for a large account. Prints numbers; asserts nothing.
//!
//!     cargo bench --bench sync            # 10,000 instances
//!     cargo bench --bench sync -- 50000   # another size

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use jiff::Timestamp;
use kube::ResourceExt;
use ppio_gpu_operator::api::{GpuInstance, GpuInstanceView};
use ppio_gpu_operator::plan::{self, MirrorPlan};
use ppio_gpu_operator::ppio::{Instance, Page};
use ppio_gpu_operator::simulator::generate_instances;

/// Counts live and peak heap bytes, to report memory per instance.
struct CountingAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwards to the system allocator with the caller's layout.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn main() {
    let count: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let view: GpuInstanceView = serde_json::from_value(serde_json::json!({
        "apiVersion": "gpu.ppio.io/v1alpha1",
        "kind": "GpuInstanceView",
        "metadata": { "name": "bench", "namespace": "ml", "uid": "u-1", "generation": 1 },
        "spec": { "credentials": { "secretRef": { "name": "ppio" } } }
    }))
    .expect("valid view");

    // PPIO pages of 100, as the wire sends them.
    let records = generate_instances(count, 1);
    let pages: Vec<Vec<u8>> = records
        .chunks(100)
        .map(|chunk| {
            serde_json::to_vec(&serde_json::json!({
                "data": chunk, "next_cursor": "", "has_more": false, "total": count
            }))
            .expect("page JSON")
        })
        .collect();
    let wire_bytes: usize = pages.iter().map(Vec::len).sum();
    drop(records);

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = Instant::now();
    let listing: Vec<Instance> = pages
        .iter()
        .flat_map(|p| Page::from_json(p).expect("page decodes").instances)
        .collect();
    let decode = started.elapsed();
    let listing_bytes = LIVE.load(Ordering::Relaxed) - before;

    let now = Timestamp::now();
    let started = Instant::now();
    let first = plan::plan_mirror(&view, &listing, &[], now);
    let first_plan = started.elapsed();
    let plan_peak = PEAK.load(Ordering::Relaxed) - before;

    let cluster = carry_out(&first);
    let started = Instant::now();
    let steady = plan::plan_mirror(&view, &listing, &cluster, now);
    let steady_plan = started.elapsed();
    assert!(
        steady.writes.is_empty(),
        "an unchanged listing plans no write"
    );

    let object_bytes: usize = cluster
        .iter()
        .map(|o| serde_json::to_vec(o).map_or(0, |v| v.len()))
        .sum();
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / count as f64;
    println!("instances                         {count}");
    println!(
        "decode PPIO pages                 {:>8.1} ms  {:>6.2} µs/instance  {:>6.1} MB/s",
        decode.as_secs_f64() * 1e3,
        per(decode),
        wire_bytes as f64 / decode.as_secs_f64() / 1e6
    );
    println!(
        "plan first sync (all new)         {:>8.1} ms  {:>6.2} µs/instance",
        first_plan.as_secs_f64() * 1e3,
        per(first_plan)
    );
    println!(
        "plan unchanged sync (no writes)   {:>8.1} ms  {:>6.2} µs/instance",
        steady_plan.as_secs_f64() * 1e3,
        per(steady_plan)
    );
    println!(
        "decoded listing in memory         {:>8.1} MB  {:>6.0} B/instance",
        listing_bytes as f64 / 1e6,
        listing_bytes as f64 / count as f64
    );
    println!(
        "peak heap, decode + first plan    {:>8.1} MB  {:>6.0} B/instance",
        plan_peak as f64 / 1e6,
        plan_peak as f64 / count as f64
    );
    println!(
        "GpuInstance JSON (what etcd gets) {:>8.1} MB  {:>6.0} B/instance",
        object_bytes as f64 / 1e6,
        object_bytes as f64 / count as f64
    );
}

/// The objects the cluster holds after a first sync.
fn carry_out(plan: &MirrorPlan) -> Vec<GpuInstance> {
    plan.writes
        .iter()
        .map(|write| {
            let mut object = write.object.clone().expect("new objects have metadata");
            object.status = write.status.clone();
            assert_eq!(object.name_any(), write.name);
            object
        })
        .collect()
}
