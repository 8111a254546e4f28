//! The forecaster learns what node metrics look like: a daily cycle on a slow trend, with noise.
//!
//! One cpu series at a 5-minute step: 0.45 + 0.25·sin(2πt/day) + a trend of 0.10 over the 14
//! days + Gaussian noise of σ = 0.03. Trained on the first 11 days' windows (24 steps → the next
//! 12) with canopy's default hyperparameters (fewer trees), the forecast of the last days must
//! have a test MAE below 0.035 over all 12 steps. For reference: the noise alone costs
//! σ·√(2/π) ≈ 0.024 (a perfect model of the curve), and the persistence forecast (every step =
//! the last value, itself noisy) costs about 0.041; the forest must beat it by a fifth.

use canopy_forest::matrix::row_major;
use canopy_forest::rforest::{RandomForestParams, RandomForestRegressor};
use canopy_forest::rng::Rng;
use canopy_forest::windows::{WindowSpec, lookback_row, training_windows};

const DAY: usize = 288;

fn gaussian(rng: &mut Rng) -> f64 {
    let u = 1.0 - rng.next_f64(); // (0, 1]
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * rng.next_f64()).cos()
}

#[test]
fn learns_a_daily_sine_on_a_trend_to_a_stated_mae() {
    let steps = 14 * DAY;
    let mut rng = Rng::new(2024);
    let cpu: Vec<f64> = (0..steps)
        .map(|t| {
            let day = std::f64::consts::TAU * t as f64 / DAY as f64;
            0.45 + 0.25 * day.sin() + 0.10 * t as f64 / steps as f64 + 0.03 * gaussian(&mut rng)
        })
        .collect();
    let spec = WindowSpec {
        n_features: 1,
        lookback: 24,
        horizon: 12,
        targets: vec![0],
    };
    let w = training_windows(&cpu, &spec).unwrap();
    // train on windows whose targets end by day 11, test on those that start after it
    let train_end = 11 * DAY;
    let train: Vec<usize> = (0..w.rows())
        .filter(|&i| w.end_rows[i] + 12 < train_end)
        .collect();
    let test: Vec<usize> = (0..w.rows())
        .filter(|&i| w.end_rows[i] >= train_end)
        .collect();
    let rows = |idx: &[usize], m: &[f64], width: usize| -> Vec<f64> {
        idx.iter()
            .flat_map(|&i| m[i * width..(i + 1) * width].iter().copied())
            .collect()
    };
    let params = RandomForestParams {
        n_estimators: 40,
        seed: 3,
        ..RandomForestParams::default()
    };
    let model = RandomForestRegressor::fit(
        &params,
        row_major(&rows(&train, &w.x, 24), 24).expect("whole rows"),
        row_major(&rows(&train, &w.y, 12), 12).expect("whole rows"),
    )
    .unwrap();

    // forecast the way `canopy score` does: from the lookback rows ending at each row
    let mut input = vec![0.0; 24];
    let mut forecast = vec![0.0; 12];
    let (mut err, mut persistence, mut n) = (0.0, 0.0, 0usize);
    for &i in &test {
        let end = w.end_rows[i];
        lookback_row(&cpu, &spec, end, &mut input).unwrap();
        model.predict_row(&input, &mut forecast).unwrap();
        for (h, f) in forecast.iter().enumerate() {
            let truth = cpu[end + 1 + h];
            err += (f - truth).abs();
            persistence += (cpu[end] - truth).abs();
            n += 1;
        }
    }
    let (mae, persistence) = (err / n as f64, persistence / n as f64);
    eprintln!("test MAE {mae:.4}, persistence {persistence:.4}, over {n} forecasts");
    assert!(n > 2 * DAY * 12, "too few test forecasts: {n}");
    assert!(mae < 0.035, "test MAE {mae} is not below 0.035");
    assert!(
        mae < 0.8 * persistence,
        "MAE {mae} vs persistence {persistence}"
    );
}
