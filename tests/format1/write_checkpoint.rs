//! Built as an example inside canopy's tree as of checkpoint format 1 by `tests/format1/check.sh`
//! (not part of this crate's build): writes a forecaster checkpoint with that code's own encoder,
//! and `predictions.txt`, one line per row: the row's inputs then that code's predictions, as
//! hexadecimal f64 bits.
//!
//! Usage: `write_checkpoint OUT_DIR`

use std::io::Write;
use std::sync::Arc;

use canopy::checkpoint::saved::SavedEntity;
use canopy::checkpoint::{SavedData, SavedModel, encode};
use canopy::live::TrainingInfo;
use canopy::model::rforest::{RandomForestParams, RandomForestRegressor};
use canopy::model::rng::Rng;
use canopy::series::Labels;

fn main() {
    let out = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: write_checkpoint OUT_DIR"),
    );
    // two features with a daily cycle and noise, 5-minute steps: 3 days
    let mut rng = Rng::new(3);
    let steps = 864;
    let history: Vec<f64> = (0..steps)
        .flat_map(|t| {
            let day = std::f64::consts::TAU * t as f64 / 288.0;
            [
                0.5 + 0.3 * day.sin() + 0.05 * rng.next_f64(),
                10.0 + 4.0 * day.cos() + rng.next_f64(),
            ]
        })
        .collect();
    let (lookback, horizon) = (6, 12);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..steps - lookback - horizon {
        x.extend_from_slice(&history[i * 2..(i + lookback) * 2]);
        y.extend((0..horizon).map(|h| history[(i + lookback + h) * 2]));
    }
    let params = RandomForestParams {
        n_estimators: 40,
        seed: 9,
        ..RandomForestParams::default()
    };
    let forest = RandomForestRegressor::fit(&params, &x, lookback * 2, &y, horizon).expect("fit");
    let mut lines = Vec::new();
    for row in x.chunks_exact(lookback * 2).step_by(7) {
        let p = forest.predict(row).expect("predict");
        let bits: Vec<String> = row
            .iter()
            .chain(&p)
            .map(|v| format!("{:016x}", v.to_bits()))
            .collect();
        lines.push(bits.join(" "));
    }
    let model = SavedModel {
        name: "predictive-analytics".into(),
        features: vec!["cpu".into(), "memory".into()],
        expressions: vec!["avg(cpu)".into(), "avg(memory)".into()],
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
            lookback,
            horizon,
            history: vec![SavedEntity {
                labels: Labels::default(),
                timestamps_ms: (0..steps as i64).map(|k| k * 300_000).collect(),
                values: history,
            }],
        },
    };
    std::fs::create_dir_all(&out).expect("out dir");
    std::fs::write(out.join("model.ckpt"), encode(&model)).expect("write model.ckpt");
    let mut f = std::fs::File::create(out.join("predictions.txt")).expect("predictions.txt");
    writeln!(f, "{}", lines.join("\n")).expect("write predictions.txt");
}
