//! Checkpoint write and restore at production size, against the budget of ≤ 100 ms per write
//! off the hot paths: a 100-tree detector with a 7-day reservoir (10,080 vectors × 5) and a
//! 100-tree forecaster (24 × 5 → 12) with 30 days of history at 5 minutes (8,640 rows × 5).
//!
//! - `snapshot`: what the evaluation thread does (copy the reservoir or history, clone the
//!   forest's `Arc`) before handing the snapshot to the writer thread;
//! - `write`: what the writer thread does: encode, write `.model.ckpt.tmp`, fsync, rename, fsync
//!   the folder;
//! - `restore`: read and decode, with every validation.
//!
//! File sizes are printed once per model.

use std::hint::black_box;
use std::sync::Arc;

use canopy::checkpoint::saved::{SavedEntity, SavedReservoir};
use canopy::checkpoint::{SavedData, SavedModel, decode, encode, model_path, write_atomic};
use canopy::model::detector::TrainingInfo;
use canopy::model::iforest::{IsolationForest, IsolationForestParams};
use canopy::model::rforest::{RandomForestParams, RandomForestRegressor};
use canopy::model::rng::Rng;
use canopy::model::windows::{WindowSpec, training_windows};
use canopy::series::Labels;
use criterion::{Criterion, criterion_group, criterion_main};

/// 5 node-like features per step.
fn node_history(steps: usize, period: f64) -> Vec<f64> {
    let mut rng = Rng::new(1);
    let mut h = Vec::with_capacity(steps * 5);
    for t in 0..steps {
        let day = std::f64::consts::TAU * t as f64 / period;
        let mut noise = |s: f64| s * (rng.next_f64() - 0.5);
        h.push(0.45 + 0.25 * day.sin() + noise(0.1));
        h.push(0.60 + 0.10 * (day - 0.5).sin() + noise(0.05));
        h.push(0.30 + 0.2 * t as f64 / steps as f64 + noise(0.01));
        h.push(1e6 * (1.0 + 0.6 * (day + 0.3).sin()) + noise(1e5));
        h.push(6e5 * (1.0 + 0.5 * (day + 0.2).sin()) + noise(8e4));
    }
    h
}

fn features() -> Vec<String> {
    ["cpu", "memory", "restarts", "net_rx", "net_tx"]
        .map(String::from)
        .to_vec()
}

/// The default config's expressions of `features`, as a checkpoint records them.
fn expressions(features: &[String]) -> Vec<String> {
    let config = canopy::config::Config::default_config().expect("default config");
    features
        .iter()
        .map(|f| config.features[f].trim().to_owned())
        .collect()
}

fn detector() -> SavedModel {
    let rows = node_history(10_080, 1440.0);
    let forest = IsolationForest::fit(&IsolationForestParams::default(), &rows, 5).expect("fit");
    SavedModel {
        name: "anomaly-detector".into(),
        features: features(),
        expressions: expressions(&features()),
        step_ms: 60_000,
        retrain_interval_ms: 600_000,
        max_age_ms: 7 * 86_400_000,
        training: TrainingInfo {
            source: "live".into(),
            trained_at_ms: Some(0),
            generation: 0,
        },
        data: SavedData::Detector {
            forest: Arc::new(forest),
            replace_fraction: 0.1,
            reservoir_size: 10_080,
            gate_anomalies: true,
            reservoir: SavedReservoir {
                timestamps_ms: (0..10_080).map(|k| k * 60_000).collect(),
                trainable: vec![true; 10_080],
                values: rows,
            },
        },
    }
}

fn forecaster() -> SavedModel {
    let history = node_history(8_640, 288.0);
    let spec = WindowSpec {
        n_features: 5,
        lookback: 24,
        horizon: 12,
        targets: vec![0],
    };
    let w = training_windows(&history, &spec).expect("windows");
    let forest = RandomForestRegressor::fit(&RandomForestParams::default(), &w.x, 120, &w.y, 12)
        .expect("fit");
    let features: Vec<String> = ["cpu", "memory", "disk", "net_rx", "net_tx"]
        .map(String::from)
        .to_vec();
    SavedModel {
        name: "predictive-analytics".into(),
        expressions: expressions(&features),
        features,
        step_ms: 300_000,
        retrain_interval_ms: 3_600_000,
        max_age_ms: 30 * 86_400_000,
        training: TrainingInfo {
            source: "live".into(),
            trained_at_ms: Some(0),
            generation: 1,
        },
        data: SavedData::Forecaster {
            forest: Arc::new(forest),
            targets: vec!["cpu".into()],
            lookback: 24,
            horizon: 12,
            history: vec![SavedEntity {
                labels: Labels::default(),
                timestamps_ms: (0..8_640).map(|k| k * 300_000).collect(),
                values: history,
            }],
        },
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    for model in [detector(), forecaster()] {
        let name = model.name.clone();
        let folder = dir.path().join(&name);
        let bytes = encode(&model);
        eprintln!("{name}: checkpoint of {} bytes", bytes.len());
        c.bench_function(&format!("checkpoint/{name}/snapshot"), |b| {
            b.iter(|| black_box(model.clone()))
        });
        c.bench_function(&format!("checkpoint/{name}/encode"), |b| {
            b.iter(|| black_box(encode(&model)))
        });
        c.bench_function(&format!("checkpoint/{name}/write"), |b| {
            b.iter(|| write_atomic(&folder, &encode(&model)).expect("write"))
        });
        let path = model_path(dir.path(), &name);
        c.bench_function(&format!("checkpoint/{name}/restore"), |b| {
            b.iter(|| black_box(decode(&std::fs::read(&path).expect("read")).expect("decode")))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
