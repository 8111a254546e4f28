//! Isolation forest budgets (README, "Performance"): fit 100 trees × 256 rows ≤ 5 ms; scoring ≤ 2 µs
//! per row per 100 trees, for one row at a time (the predict endpoint) and in batches. The anomaly
//! likelihood on top of a score is the main crate's `likelihood` bench.

mod workload;

use std::hint::black_box;

use canopy_forest::iforest::{Contamination, IsolationForest, IsolationForestParams};
use canopy_forest::matrix::row_major;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use workload::{N_FEATURES, rows};

fn fit(c: &mut Criterion) {
    let data = rows(4_096, 1);
    let data = row_major(&data, N_FEATURES).expect("whole rows");
    let mut group = c.benchmark_group("iforest_fit");
    for (name, contamination) in [
        ("100x256_auto", Contamination::Auto),
        (
            "100x256_contamination_0.03_offset_on_4096_rows",
            Contamination::Fraction(0.03),
        ),
    ] {
        let params = IsolationForestParams {
            contamination,
            ..IsolationForestParams::default()
        };
        group.bench_function(name, |b| {
            b.iter(|| IsolationForest::fit(&params, black_box(data)))
        });
    }
    group.finish();
}

fn score(c: &mut Criterion) {
    let data = rows(4_096, 1);
    let forest = IsolationForest::fit(
        &IsolationForestParams::default(),
        row_major(&data, N_FEATURES).expect("whole rows"),
    )
    .expect("fit");
    let queries = rows(1_024, 2);
    let mut group = c.benchmark_group("iforest_score_100_trees");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("single_row", |b| {
        b.iter(|| {
            i = (i + 1) % 1_024;
            forest.score_sample(black_box(&queries[i * N_FEATURES..(i + 1) * N_FEATURES]))
        })
    });
    group.throughput(Throughput::Elements(1_024));
    let batch = row_major(&queries, N_FEATURES).expect("whole rows");
    let mut out = Vec::with_capacity(1_024);
    group.bench_function("batch_1024_rows", |b| {
        b.iter(|| forest.score_samples_into(black_box(batch), &mut out))
    });
    group.finish();
}

criterion_group!(benches, fit, score);
criterion_main!(benches);
