//! How fast and how lean one sync's pure work is: locating and summarizing PPIO pages through a
//! listing memo, and the listing planner the operator runs (decoding the records that may have
//! changed, mapping them to GpuInstances, planning the writes), for a large account, one page at a
//! time as the operator does. Prints numbers; asserts nothing. `make bench` measures the real process.
//!
//!     cargo bench --bench sync            # 10,000 instances
//!     cargo bench --bench sync -- 50000   # another size

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use ppio::{ApiKey, ListingMemo};
use ppio_gpu_core::api::{GpuInstance, GpuInstanceView};
use ppio_gpu_core::mirror;
use ppio_gpu_core::services::ServiceTally;
use ppio_gpu_core::sync::listing::{ListingPlanner, Mirrors, RecordPlan};
use ppio_gpu_core::sync::plan::{self, Observed};
use ppio_simulator::generate_instances;

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

    let key = ApiKey::new("sk_bench_0123456789abcdef0123456789abcdef").expect("key");
    let memo = ListingMemo::default();
    let view = Arc::new(view);
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let now = Timestamp::now();

    // First sync: every instance is new; what the cluster then holds is kept for the second.
    let mut cluster = Cluster::default();
    let started = Instant::now();
    let (writes, decoded) = listing(&view, &pages, &memo, &key, &cluster, now);
    let first_plan = started.elapsed();
    let plan_peak = PEAK.load(Ordering::Relaxed) - before;
    assert_eq!(decoded, count, "a new instance is decoded");
    let mut objects: Vec<GpuInstance> = Vec::with_capacity(count);
    for write in writes {
        let RecordPlan::Create(change) = write else {
            panic!("a new instance is created: {write:?}");
        };
        let desired = *change.mirror;
        let observed = Observed {
            uid: String::new(),
            digest: plan::Digest::of_metadata(&desired.object.metadata),
            absent_since: None,
            trusted: true,
            source: Some(change.source),
            status: Arc::from(
                desired
                    .object
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(mirror::STATUS_LABEL))
                    .map_or("", String::as_str),
            ),
            expiring_soon: None,
        };
        cluster.mirrors.insert(desired.name.clone(), observed);
        let mut object = desired.object;
        object.status = Some(desired.status);
        objects.push(object);
    }

    // Second sync: nothing changed remotely, so nothing is written. As the operator does, each record
    // is located and hashed as sent; its summary comes from the memo of the first listing, and a
    // record that hashes as last time is not decoded.
    let started = Instant::now();
    let (writes, decoded) = listing(&view, &pages, &memo, &key, &cluster, now);
    let steady_plan = started.elapsed();
    assert_eq!(decoded, 0, "an unchanged listing decodes no record");
    assert!(writes.is_empty(), "an unchanged listing writes nothing");

    let object_bytes: usize = objects
        .iter()
        .map(|o| serde_json::to_vec(o).map_or(0, |v| v.len()))
        .sum();
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / count as f64;
    println!("instances                         {count}");
    println!(
        "PPIO pages on the wire            {:>8.1} MB",
        wire_bytes as f64 / 1e6
    );
    println!(
        "decode + plan first sync (new)    {:>8.1} ms  {:>6.2} µs/instance",
        first_plan.as_secs_f64() * 1e3,
        per(first_plan)
    );
    println!(
        "locate, hash, recall, no change   {:>8.1} ms  {:>6.2} µs/instance",
        steady_plan.as_secs_f64() * 1e3,
        per(steady_plan)
    );
    println!(
        "peak heap, first sync (objects kept) {:>5.1} MB  {:>6.0} B/instance",
        plan_peak as f64 / 1e6,
        plan_peak as f64 / count as f64
    );
    println!(
        "GpuInstance JSON (what etcd gets) {:>8.1} MB  {:>6.0} B/instance",
        object_bytes as f64 / 1e6,
        object_bytes as f64 / count as f64
    );
}

/// The mirrors as the operator's cache knows them: their metadata and the source hash of the
/// record each was written from.
#[derive(Default)]
struct Cluster {
    mirrors: HashMap<String, Observed>,
}

impl Mirrors for Cluster {
    fn confirm_unchanged(&self, name: &str, source: u64) -> Option<ServiceTally> {
        let observed = self.mirrors.get(name)?;
        (observed.trusted && observed.source == Some(source)).then(ServiceTally::default)
    }

    fn observed(&self, name: &str) -> Option<Observed> {
        self.mirrors.get(name).cloned()
    }
}

/// One listing of `pages` as the operator plans it: the memo reads each page (a page sent before
/// is not read again), the planner plans each record. The writes it plans, and how many records it
/// decoded whole.
fn listing(
    view: &Arc<GpuInstanceView>,
    pages: &[Vec<u8>],
    memo: &ListingMemo,
    key: &ApiKey,
    cluster: &Cluster,
    now: Timestamp,
) -> (Vec<RecordPlan>, usize) {
    let mut planner = ListingPlanner::new(view.clone(), None, false, Default::default(), now);
    let decoded = Cell::new(0);
    let mut writes = Vec::new();
    memo.start_listing(key, &Default::default());
    for page in pages {
        let page = memo.page(page.clone()).expect("page decodes");
        let summaries = memo.summaries(&page, key).expect("summaries");
        for (i, summary) in summaries.iter().enumerate() {
            let decode = || {
                decoded.set(decoded.get() + 1);
                page.decode(i)
                    .map_err(|e| ppio::PpioError::InvalidResponse {
                        detail: e.to_string(),
                    })
            };
            match planner
                .plan_record(summary, page.record_hash(i), decode, cluster)
                .expect("planned")
            {
                RecordPlan::Nothing | RecordPlan::Unchanged { .. } => {}
                write => writes.push(write),
            }
        }
    }
    memo.finish_listing();
    (writes, decoded.get())
}
