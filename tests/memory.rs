//! The memory budget, at a fifth of its scale: 100,000 matched series × 30 samples must fit in
//! 64 MiB of resident memory with the agent around them (`benches/compare/memory_100k_http.sh`
//! measures that through HTTP); here 20,000 such series go through the real ingest path
//! (`Ingestor::write`: snappy, decode, validation, prefilter, append) and one evaluation of the
//! default features, and the heap they keep must stay within a fifth of the budget's share for
//! the store and the evaluator. Counting the heap (each allocation as glibc's allocator sizes it)
//! rather than reading RSS keeps the check exact and the same in debug and release builds, so a
//! change that makes series fatter fails here, in seconds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use canopy::config::Config;
use canopy::features::stepper::Stepper;
use canopy::features::{FeatureEngine, FeatureSet};
use canopy::ingest::Protocol;
use canopy::ingest::decode::Allowance;
use canopy::pipeline::Pipeline;

#[path = "../benches/payload/memory.rs"]
mod memory;

/// The System allocator, keeping count of the bytes live allocations occupy.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

/// What glibc's malloc takes for `size` bytes: the size plus an 8-byte header, rounded up to 16,
/// at least 32.
fn chunk_bytes(size: usize) -> isize {
    ((size + 8).div_ceil(16) * 16).max(32) as isize
}

// SAFETY: every call is passed to System unchanged; the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(chunk_bytes(layout.size()), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(chunk_bytes(layout.size()), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            chunk_bytes(new_size) - chunk_bytes(layout.size()),
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const BUDGET_BYTES: f64 = 64.0 * 1024.0 * 1024.0;
const BUDGET_SERIES: usize = 100_000;
/// What the release agent takes before any series arrives (binary, runtime threads, metrics
/// registry, models): 10.4–10.6 MiB VmRSS idle in `benches/compare/memory_100k_http.sh`,
/// rounded up. The rest of the budget is the series' share.
const AGENT_IDLE_BYTES: f64 = 11.0 * 1024.0 * 1024.0;
const SERIES: usize = 20_000;
const SAMPLES: usize = 30;

#[test]
fn matched_series_fit_the_memory_budget_at_a_fifth_of_its_scale() {
    let config = Config::default_config().expect("default config");
    let before = LIVE.load(Ordering::Relaxed);
    let pipeline = Pipeline::new(&config).expect("pipeline");
    let mut engine = FeatureEngine::new(
        FeatureSet::from_config(&config).expect("default features"),
        Stepper::new(30_000, 0, 1),
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let t0 = now_ms - SAMPLES as i64 * 30_000;
    for round in 0..SAMPLES {
        for first in (0..SERIES).step_by(memory::PER_REQUEST) {
            let body = memory::request(SERIES, first, round, t0 + round as i64 * 30_000);
            pipeline
                .ingestor
                .write(Protocol::V1, &body, &mut Allowance::unlimited())
                .expect("valid request");
        }
    }
    let newest = pipeline.store.newest_timestamp().expect("samples held");
    let values = engine.evaluate_at(&pipeline.store, newest);
    let held = LIVE.load(Ordering::Relaxed) - before;

    assert_eq!(pipeline.store.active_series(), SERIES);
    assert_eq!(pipeline.store.sample_count(), SERIES * SAMPLES);
    let net_rx = engine.set().index_of("net_rx").expect("a default feature");
    assert!(
        values[net_rx].as_ref().is_some_and(|v| v.len() == 1),
        "the features read the series: {values:?}"
    );
    let per_series_budget = (BUDGET_BYTES - AGENT_IDLE_BYTES) / BUDGET_SERIES as f64;
    let per_series = held as f64 / SERIES as f64;
    eprintln!(
        "{held} bytes held for {SERIES} series x {SAMPLES} samples: {per_series:.0} bytes per series, budget {per_series_budget:.0}"
    );
    assert!(
        per_series <= per_series_budget,
        "{per_series:.0} bytes per series held, over the budget's {per_series_budget:.0}"
    );
}
