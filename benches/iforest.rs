//! Isolation forest budgets (README, "Performance"): fit 100 trees × 256 rows ≤ 5 ms; scoring ≤ 2 µs
//! per row per 100 trees, for one row at a time (the predict endpoint) and in batches; the anomaly
//! likelihood on top of a score ≤ 1 µs per entity-step.

use std::hint::black_box;

use canopy::model::iforest::{Contamination, IsolationForest, IsolationForestParams};
use canopy::model::likelihood::{EntityLikelihood, LikelihoodParams, ScoreReference};
use canopy::model::rng::Rng;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const N_FEATURES: usize = 5;

/// `n` rows of 5 correlated, skewed features, a rough stand-in for cpu/memory/restarts/net.
fn rows(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n * N_FEATURES);
    for _ in 0..n {
        let load = rng.next_f64();
        out.extend([
            load + 0.1 * rng.next_f64(),
            0.5 * load + 0.3 * rng.next_f64(),
            (rng.next_f64() * 4.0).floor(),
            (1e6 * load * (1.0 + rng.next_f64())).ln(),
            (8e5 * load * (1.0 + rng.next_f64())).ln(),
        ]);
    }
    out
}

fn fit(c: &mut Criterion) {
    let data = rows(4_096, 1);
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
            b.iter(|| IsolationForest::fit(&params, black_box(&data), N_FEATURES))
        });
    }
    group.finish();
}

fn score(c: &mut Criterion) {
    let forest = IsolationForest::fit(
        &IsolationForestParams::default(),
        &rows(4_096, 1),
        N_FEATURES,
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
    let mut out = Vec::with_capacity(1_024);
    group.bench_function("batch_1024_rows", |b| {
        b.iter(|| forest.score_samples_into(black_box(&queries), &mut out))
    });
    group.finish();
}

/// The calibration a live step adds to each entity's score: the tail probability among the
/// reference scores of a full default reservoir (10,080 vectors), and the entity's smoothed,
/// suppressed surprise.
fn likelihood(c: &mut Criterion) {
    let forest = IsolationForest::fit(
        &IsolationForestParams::default(),
        &rows(4_096, 1),
        N_FEATURES,
    )
    .expect("fit");
    let reservoir = rows(10_080, 3);
    let reference = ScoreReference::of(&forest, &reservoir);
    let scores = forest.anomaly_scores(&rows(1_024, 2)).expect("scores");
    let params = LikelihoodParams {
        window: 2,
        threshold: 0.999,
        suppress_ms: 3_600_000,
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
    group.finish();
}

criterion_group!(benches, fit, score, likelihood);
criterion_main!(benches);
