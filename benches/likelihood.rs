//! The anomaly likelihood's budget (README, "Performance"): ≤ 1 µs per entity-step on top of a
//! score. The forest and its rows are those of the forest crate's `iforest` bench.

#[path = "../crates/canopy-forest/benches/workload/mod.rs"]
mod workload;

use std::hint::black_box;

use canopy::model::iforest::{IsolationForest, IsolationForestParams};
use canopy::model::likelihood::{EntityLikelihood, LikelihoodParams, ScoreReference};
use canopy::model::matrix::row_major;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use workload::{N_FEATURES, rows};

/// The calibration a live step adds to each entity's score: the tail probability among the
/// reference scores of a full default reservoir (10,080 vectors), and the entity's smoothed,
/// suppressed surprise (after an alert and a day after a surprising step).
fn likelihood(c: &mut Criterion) {
    let forest = IsolationForest::fit(
        &IsolationForestParams::default(),
        row_major(&rows(4_096, 1), N_FEATURES).expect("whole rows"),
    )
    .expect("fit");
    let reservoir = rows(10_080, 3);
    let reference = ScoreReference::of(&forest, &reservoir);
    let queries = rows(1_024, 2);
    let scores = (forest.anomaly_scores(row_major(&queries, N_FEATURES).expect("whole rows")))
        .expect("scores");
    let params = LikelihoodParams {
        window: 2,
        threshold: 0.999,
        suppress_ms: 3_600_000,
        recurrence_ms: 86_400_000,
        recurrence_tolerance_ms: 3_600_000,
        surprise_offset: 0.0,
    };
    let mut entity = EntityLikelihood::default();
    let mut group = c.benchmark_group("anomaly_likelihood");
    group.throughput(Throughput::Elements(1));
    let (mut i, mut t) = (0, 0);
    group.bench_function("per_entity_step", |b| {
        b.iter(|| {
            i = (i + 1) % 1_024;
            t += 60_000;
            let p = reference.tail_probability(black_box(scores[i]));
            entity.update(&params, t, p)
        })
    });
    // The worst case of `recurrence`: every other step surprising, each its own span (no
    // tolerance), so the entity always holds the most spans it may and scans them all.
    let every_other = LikelihoodParams {
        window: 1,
        recurrence_tolerance_ms: 0,
        ..params
    };
    let mut busy = EntityLikelihood::default();
    let (mut k, mut t) = (0u64, 0);
    group.bench_function("per_entity_step_most_recurrence_spans", |b| {
        b.iter(|| {
            k += 1;
            t += 60_000;
            let p = if k % 2 == 0 { 1e-4 } else { 0.5 };
            busy.update(&every_other, t, black_box(p))
        })
    });
    group.finish();
}

criterion_group!(benches, likelihood);
criterion_main!(benches);
