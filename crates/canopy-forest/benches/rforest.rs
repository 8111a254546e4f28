//! Random forest timings: predicting one row (the KServe path: 120 inputs → 12 outputs, 100
//! trees), a batch of rows, and fitting a smaller forest. The fit at the budget's size, against
//! scikit-learn, is `benches/compare/rforest_vs_sklearn.py`.
//!
//! Predictions are timed twice in the same run: with the leaves as a fit leaves them (naming rows
//! of the shared target table) and, as the anchor, with every leaf holding its means in the
//! table (the layout of a forest read from a format 1 checkpoint, and the memory layout canopy
//! used before leaves were shared: 16-byte nodes and `n_outputs` values per leaf).

use std::hint::black_box;

use canopy_forest::matrix::row_major;
use canopy_forest::rforest::{RandomForestParams, RandomForestRegressor, RegressionTree};
use canopy_forest::rng::Rng;
use canopy_forest::tree::Node;
use canopy_forest::windows::{WindowSpec, training_windows};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;

/// 5 node-like features at a 5-minute step, windows of 24 steps → the next 12 cpu values.
fn windows(steps: usize) -> (Vec<f64>, Vec<f64>, usize) {
    let mut rng = Rng::new(1);
    let mut h = Vec::with_capacity(steps * 5);
    for t in 0..steps {
        let day = std::f64::consts::TAU * t as f64 / 288.0;
        let noise = |rng: &mut Rng, s: f64| s * (rng.next_f64() - 0.5);
        h.push(0.45 + 0.25 * day.sin() + noise(&mut rng, 0.1));
        h.push(0.60 + 0.10 * (day - 0.5).sin() + noise(&mut rng, 0.05));
        h.push(0.30 + 0.2 * t as f64 / steps as f64 + noise(&mut rng, 0.01));
        h.push(1e6 * (1.0 + 0.6 * (day + 0.3).sin()) + noise(&mut rng, 1e5));
        h.push(6e5 * (1.0 + 0.5 * (day + 0.2).sin()) + noise(&mut rng, 8e4));
    }
    let spec = WindowSpec {
        n_features: 5,
        lookback: 24,
        horizon: 12,
        targets: vec![0],
    };
    let w = training_windows(&h, &spec).expect("valid spec");
    let rows = w.rows();
    (w.x, w.y, rows)
}

/// `forest` with every leaf holding its means as a table row of its own: the same predictions,
/// in the layout of stored means.
fn with_leaf_means(forest: &RandomForestRegressor) -> RandomForestRegressor {
    let k = forest.n_outputs();
    let mut means = Vec::new();
    let trees = (forest.trees().iter())
        .map(|t| {
            let mut nodes = t.tree.nodes.clone();
            for node in nodes.iter_mut().filter(|n| n.is_leaf()) {
                let at = means.len();
                means.resize(at + k, 0.0);
                forest.add_leaf_value(t, node, &mut means[at..]);
                *node = Node::leaf((at / k) as u32, 0.0);
            }
            let mut tree = t.tree.clone();
            tree.nodes = nodes;
            RegressionTree {
                tree,
                entries: Vec::new(),
            }
        })
        .collect();
    let p = forest.params().clone();
    RandomForestRegressor::from_parts(p, forest.n_features(), k, means, trees).expect("valid")
}

fn bench(c: &mut Criterion) {
    let (x, y, rows) = windows(8640 + 35);
    let shared = RandomForestRegressor::fit(
        &RandomForestParams::default(),
        row_major(&x, 120).expect("whole rows"),
        row_major(&y, 12).expect("whole rows"),
    )
    .expect("fit");
    let means = with_leaf_means(&shared);
    let batch = row_major(&x[..1000 * 120], 120).expect("whole rows");
    assert!(shared.predict(batch).expect("predict") == means.predict(batch).expect("predict"));
    let mut out = vec![0.0; 12];
    let mut outs = Array2::zeros((1000, 12));
    let mut g = c.benchmark_group("rforest_predict_100_trees_120_to_12");
    for (layout, forest) in [("shared_leaves", &shared), ("leaf_means", &means)] {
        g.throughput(Throughput::Elements(1));
        let mut i = 0;
        g.bench_function(format!("one_row/{layout}"), |b| {
            b.iter(|| {
                i = (i + 7919) % rows;
                forest
                    .predict_row(black_box(&x[i * 120..(i + 1) * 120]), &mut out)
                    .expect("predict");
                black_box(&out);
            })
        });
        g.throughput(Throughput::Elements(1000));
        g.bench_function(format!("batch_1000_rows/{layout}"), |b| {
            b.iter(|| {
                forest
                    .predict_into(black_box(batch), outs.view_mut())
                    .expect("predict")
            })
        });
    }
    g.finish();

    let (x, y, _) = windows(2000 + 35);
    let (x, y) = (row_major(&x, 120), row_major(&y, 12));
    let (x, y) = (x.expect("whole rows"), y.expect("whole rows"));
    let params = RandomForestParams {
        n_estimators: 10,
        ..RandomForestParams::default()
    };
    let mut g = c.benchmark_group("rforest_fit");
    g.sample_size(10);
    g.bench_function("2000_windows_120_to_12_10_trees", |b| {
        b.iter_batched(
            || (),
            |_| RandomForestRegressor::fit(&params, x, y).expect("fit"),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
