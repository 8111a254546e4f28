//! Fits canopy's isolation forest on one CSV and scores another, printing timings and scores as
//! JSON, so `benches/compare/iforest_vs_sklearn.py` can time canopy and scikit-learn on the
//! same data.
//!
//! Usage: iforest_fit_score FIT.csv SCORE.csv [SEED] [REPEATS]
//! CSVs: a header line, then numeric columns only (every column is a feature).
//! Prints {"fit_ms": median over REPEATS fits, "score_batch_us_per_row", "score_single_us_per_row",
//! "offset", "score_samples": [...]}.

use std::error::Error;
use std::time::Instant;

use canopy::model::iforest::{IsolationForest, IsolationForestParams};
use canopy::model::matrix::row_major;

fn read_csv(path: &str) -> Result<(Vec<f64>, usize), Box<dyn Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut lines = text.lines();
    let n_features = lines
        .next()
        .ok_or(format!("{path}: empty file"))?
        .split(',')
        .count();
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let before = rows.len();
        for cell in line.split(',') {
            let value: f64 = cell
                .trim()
                .parse()
                .map_err(|e| format!("{path} line {}: {cell:?}: {e}", i + 2))?;
            rows.push(value);
        }
        if rows.len() - before != n_features {
            return Err(format!("{path} line {}: expected {n_features} columns", i + 2).into());
        }
    }
    Ok((rows, n_features))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: iforest_fit_score FIT.csv SCORE.csv [SEED] [REPEATS]".into());
    }
    let (fit_rows, n_features) = read_csv(&args[1])?;
    let (score_rows, score_features) = read_csv(&args[2])?;
    if score_features != n_features {
        return Err(format!(
            "{} has {score_features} columns, {} has {n_features}",
            args[2], args[1]
        )
        .into());
    }
    let seed = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let repeats: usize = args
        .get(4)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(7)
        .max(1);
    let params = IsolationForestParams {
        seed,
        ..IsolationForestParams::default()
    };

    let mut fit_ms = Vec::new();
    let mut forest = None;
    for _ in 0..repeats {
        let started = Instant::now();
        forest = Some(IsolationForest::fit(
            &params,
            row_major(&fit_rows, n_features)?,
        )?);
        fit_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let forest = forest.ok_or("no fit")?;

    let n_rows = score_rows.len() / n_features;
    let mut scores = Vec::new();
    let mut batch_us = Vec::new();
    for _ in 0..repeats {
        let started = Instant::now();
        forest.score_samples_into(row_major(&score_rows, n_features)?, &mut scores)?;
        batch_us.push(started.elapsed().as_secs_f64() * 1e6 / n_rows as f64);
    }
    let mut single_us = Vec::new();
    for _ in 0..repeats {
        let started = Instant::now();
        let mut sum = 0.0;
        for row in score_rows.chunks_exact(n_features) {
            sum += forest.score_sample(row)?;
        }
        single_us.push(started.elapsed().as_secs_f64() * 1e6 / n_rows as f64);
        std::hint::black_box(sum);
    }
    let report = serde_json::json!({
        "fit_ms": median(fit_ms),
        "score_batch_us_per_row": median(batch_us),
        "score_single_us_per_row": median(single_us),
        "offset": forest.offset(),
        "score_samples": scores,
    });
    println!("{report}");
    Ok(())
}
