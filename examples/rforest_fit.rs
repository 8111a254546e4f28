//! Fits canopy's random forest on CSV windows and reports the fit time and test MAE as one JSON
//! line: the canopy side of `benches/compare/rforest_vs_sklearn.py`.
//!
//! Usage: `rforest_fit TRAIN_X.csv TRAIN_Y.csv TEST_X.csv TEST_Y.csv [--n-estimators N]
//! [--max-depth D] [--seed S] [--threads T]` (CSV files without header, one row per line).

use std::num::NonZeroUsize;
use std::time::Instant;

use anyhow::{Context, bail};
use canopy::model::matrix::row_major;
use canopy::model::rforest::{RandomForestParams, RandomForestRegressor};

/// A headerless numeric CSV: (values row-major, columns).
fn read_matrix(path: &str) -> anyhow::Result<(Vec<f64>, usize)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let mut values = Vec::new();
    let mut width = 0;
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let before = values.len();
        for cell in line.split(',') {
            let v: f64 = cell
                .trim()
                .parse()
                .with_context(|| format!("{path} line {}: {cell:?} is not a number", i + 1))?;
            values.push(v);
        }
        let w = values.len() - before;
        if i == 0 {
            width = w;
        } else if w != width {
            bail!(
                "{path} line {}: {w} columns, the first line has {width}",
                i + 1
            );
        }
    }
    Ok((values, width))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut files = Vec::new();
    let mut params = RandomForestParams::default();
    let mut threads = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--n-estimators" => params.n_estimators = value()?.parse()?,
            "--max-depth" => params.max_depth = Some(value()?.parse()?),
            "--seed" => params.seed = value()?.parse()?,
            "--threads" => threads = value()?.parse()?,
            _ => files.push(a.as_str()),
        }
    }
    let [train_x, train_y, test_x, test_y] = files[..] else {
        bail!(
            "usage: rforest_fit TRAIN_X.csv TRAIN_Y.csv TEST_X.csv TEST_Y.csv [--n-estimators N] [--max-depth D] [--seed S] [--threads T]"
        );
    };
    let (x, n_features) = read_matrix(train_x)?;
    let (y, n_outputs) = read_matrix(train_y)?;
    let (xt, _) = read_matrix(test_x)?;
    let (yt, _) = read_matrix(test_y)?;

    let start = Instant::now();
    let model = RandomForestRegressor::fit_with_threads(
        &params,
        row_major(&x, n_features)?,
        row_major(&y, n_outputs)?,
        threads,
    )?;
    let fit_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let pred = model.predict(row_major(&xt, n_features)?)?;
    let predict_seconds = start.elapsed().as_secs_f64();
    if pred.len() != yt.len() {
        bail!(
            "test y has {} values, the forecasts {}",
            yt.len(),
            pred.len()
        );
    }
    let mae = pred
        .iter()
        .zip(&yt)
        .map(|(p, t)| (p - t).abs())
        .sum::<f64>()
        / yt.len().max(1) as f64;
    let nodes: usize = model.trees().iter().map(|t| t.tree.nodes.len()).sum();
    let model_bytes = model.heap_bytes();
    println!(
        "{{\"fit_seconds\": {fit_seconds}, \"predict_seconds\": {predict_seconds}, \"mae\": {mae}, \"threads\": {threads}, \"nodes\": {nodes}, \"model_bytes\": {model_bytes}}}"
    );
    Ok(())
}
