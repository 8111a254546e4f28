//! The models the checkpoint bench and `examples/rforest_size.rs` save: node-like feature
//! histories and the default forecaster's checkpoint of a forest fitted on them.

use std::sync::Arc;

use canopy::checkpoint::saved::SavedEntity;
use canopy::checkpoint::{SavedData, SavedModel};
use canopy::live::TrainingInfo;
use canopy::model::matrix::row_major;
use canopy::model::rforest::{RandomForestParams, RandomForestRegressor};
use canopy::model::rng::Rng;
use canopy::model::windows::{WindowSpec, Windows, training_windows};
use canopy::series::Labels;

/// 5 node-like features per step.
pub fn node_history(steps: usize, period: f64) -> Vec<f64> {
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

/// `predictive-analytics`' checkpoint of `forest`, fitted on `history` (8,640 steps at 5 minutes).
pub fn forecaster(forest: RandomForestRegressor, history: Vec<f64>) -> SavedModel {
    let config = canopy::config::Config::default_config().expect("default config");
    let features: Vec<String> = ["cpu", "memory", "disk", "net_rx", "net_tx"]
        .map(String::from)
        .to_vec();
    SavedModel {
        name: "predictive-analytics".into(),
        expressions: (features.iter())
            .map(|f| config.features.get(f).map_or("", |e| e.trim()).to_owned())
            .collect(),
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

/// `predictive-analytics`' default forest fitted on 30 days of node history at 5 minutes (windows
/// of 24 steps → the next 12 cpu values: 8,605 rows of 120 → 12), that history and its windows.
pub fn default_forest(params: &RandomForestParams) -> (RandomForestRegressor, Vec<f64>, Windows) {
    let history = node_history(8_640, 288.0);
    let spec = WindowSpec {
        n_features: 5,
        lookback: 24,
        horizon: 12,
        targets: vec![0],
    };
    let w = training_windows(&history, &spec).expect("windows");
    let forest = RandomForestRegressor::fit(
        params,
        row_major(&w.x, 120).expect("whole rows"),
        row_major(&w.y, 12).expect("whole rows"),
    )
    .expect("fit");
    (forest, history, w)
}
