//! Fits canopy's isolation forest on one CSV and serves it with canopy's KServe router
//! (`serve::kserve::router`), so `benches/compare/kserve_v1_wrk.sh` can load canopy and KServe's
//! Python server with the same forest setup on the same training rows.
//!
//! Usage: kserve_csv_server TRAIN.csv LISTEN_ADDR [MODEL_NAME] [SEED]
//! CSV: a header line, then numeric columns only (every column is a feature). Fits 100 trees of
//! 256 samples, contamination 0.03 (scikit-learn's settings in the bench), then prints
//! `listening ADDR` and serves until killed.

use std::error::Error;
use std::sync::Arc;

use canopy::live::{Published, TrainingInfo};
use canopy::model::iforest::{Contamination, IsolationForest, IsolationForestParams};
use canopy::model::matrix::row_major;
use canopy::serve::kserve;
use canopy::serve::registry::{DetectorHandle, Registry};

fn read_csv(path: &str) -> Result<(Vec<String>, Vec<f64>), Box<dyn Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .ok_or(format!("{path}: empty file"))?
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect();
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        for cell in line.split(',') {
            let value: f64 = cell
                .trim()
                .parse()
                .map_err(|e| format!("{path} line {}: {cell:?}: {e}", i + 2))?;
            rows.push(value);
        }
    }
    Ok((header, rows))
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: kserve_csv_server TRAIN.csv LISTEN_ADDR [MODEL_NAME] [SEED]".into());
    }
    let (features, rows) = read_csv(&args[1])?;
    let name = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| "anomaly-detector".into());
    let seed = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(42);
    let params = IsolationForestParams {
        n_estimators: 100,
        max_samples: 256,
        max_features: 1.0,
        contamination: Contamination::Fraction(0.03),
        seed,
    };
    let forest = IsolationForest::fit(&params, row_major(&rows, features.len())?)?;
    let registry = Registry {
        detectors: vec![DetectorHandle {
            name,
            features,
            model: Published::of(Arc::new(forest), TrainingInfo::default()),
        }],
        forecasters: vec![],
    };
    canopy::serve::telemetry::install();
    let addr = args[2].clone();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            println!("listening {}", listener.local_addr()?);
            axum::serve(listener, kserve::router(registry)).await
        })?;
    Ok(())
}
