//! How fast and how lean one sync's pure work is: decoding PPIO pages, mapping instances to
//! GpuInstances and planning the writes, for a large account, one page at a time as the operator
//! does. Prints numbers; asserts nothing. `make bench` measures the real process.
//!
//!     cargo bench --bench sync            # 10,000 instances
//!     cargo bench --bench sync -- 50000   # another size

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use jiff::Timestamp;
use ppio::{ApiKey, ListingMemo, Page};
use ppio_gpu_core::api::{GpuInstance, GpuInstanceView};
use ppio_gpu_core::mirror;
use ppio_gpu_core::sync::plan::{self, InstancePlan, Observed};
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

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let now = Timestamp::now();

    // First sync: every instance is new; what the cluster then holds is kept for the second.
    let started = Instant::now();
    let mut cluster: Vec<GpuInstance> = Vec::with_capacity(count);
    for page in &pages {
        for instance in Page::from_json(page).expect("page decodes").instances {
            match plan::plan_instance(&view, None, &instance, None, now) {
                InstancePlan::Create(desired) => {
                    let mut object = desired.object;
                    object.status = Some(desired.status);
                    cluster.push(object);
                }
                other => panic!("a new instance is created: {other:?}"),
            }
        }
    }
    let first_plan = started.elapsed();
    let plan_peak = PEAK.load(Ordering::Relaxed) - before;
    let observed: std::collections::HashMap<String, Observed> = cluster
        .iter()
        .map(|object| {
            let desired = plan::DesiredMirror {
                name: object.metadata.name.clone().unwrap_or_default(),
                object: object.clone(),
                status: object.status.clone().unwrap_or_default(),
                services: None,
            };
            let observed = Observed {
                uid: String::new(),
                digest: plan::digest_of(&desired),
                absent_since: None,
                trusted: true,
                source: None,
                status: std::sync::Arc::from(
                    object
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(ppio_gpu_core::mirror::STATUS_LABEL))
                        .map_or("", String::as_str),
                ),
                expiring_soon: None,
            };
            (desired.name, observed)
        })
        .collect();

    // Second sync: nothing changed remotely, so nothing is written. As the operator does, each record
    // is located and hashed as sent; its summary comes from the memo of the first listing, and a
    // record that hashes as last time is not decoded.
    let key = ApiKey::new("sk_bench_0123456789abcdef0123456789abcdef").expect("key");
    let memo = ListingMemo::default();
    let summarized = |memo: &ListingMemo| {
        memo.start_listing(&key, &Default::default());
        let summarized: Vec<_> = pages
            .iter()
            .map(|page| {
                let page = memo.page(page.clone()).expect("page decodes");
                let summaries = memo.summaries(&page, &key).expect("summaries");
                (page, summaries)
            })
            .collect();
        memo.finish_listing();
        summarized
    };
    // As a sync does: the view's seed once, then each record's source hash.
    let seed = plan::ViewSeed::of(&view, None);
    let sources: std::collections::HashMap<String, u64> = summarized(&memo)
        .iter()
        .flat_map(|(page, summaries)| {
            summaries.iter().enumerate().map(|(i, summary)| {
                let name = mirror::object_name("bench", summary.id.as_str());
                let expiry = seed.expiry_of(summary, now);
                (name, seed.source_hash(page.record_hash(i), expiry))
            })
        })
        .collect();
    let started = Instant::now();
    let mut decoded = 0;
    memo.start_listing(&key, &Default::default());
    for page in &pages {
        let page = memo.page(page.clone()).expect("page decodes");
        let summaries = memo.summaries(&page, &key).expect("summaries");
        for (i, summary) in summaries.iter().enumerate() {
            let name = mirror::object_name("bench", summary.id.as_str());
            let expiry = seed.expiry_of(summary, now);
            if sources.get(&name) != Some(&seed.source_hash(page.record_hash(i), expiry)) {
                decoded += 1;
                let instance = page.decode(i).expect("decodes");
                let _ = plan::plan_instance(&view, None, &instance, observed.get(&name), now);
            }
        }
    }
    memo.finish_listing();
    let steady_plan = started.elapsed();
    assert_eq!(decoded, 0, "an unchanged listing decodes no record");

    let object_bytes: usize = cluster
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
