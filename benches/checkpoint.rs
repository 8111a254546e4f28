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

use canopy::checkpoint::saved::SavedReservoir;
use canopy::checkpoint::{SavedData, SavedModel, decode, encode, model_path, write_atomic};
use canopy::live::TrainingInfo;
use canopy::model::iforest::{IsolationForest, IsolationForestParams};
use canopy::model::matrix::row_major;
use canopy::model::rforest::RandomForestParams;
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "payload/models.rs"]
mod models;
use models::node_history;

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
    let forest = IsolationForest::fit(
        &IsolationForestParams::default(),
        row_major(&rows, 5).expect("whole rows"),
    )
    .expect("fit");
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
    let (forest, history, _) = models::default_forest(&RandomForestParams::default());
    models::forecaster(forest, history)
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
