//! canopy's isolation forest against scikit-learn 1.9's on the same data.
//!
//! `tests/python/iforest_parity.py` generates four datasets with planted outliers (fixed numpy
//! seed) and fits scikit-learn on each with five seeds; this test reads the same files, fits
//! canopy with five seeds, and requires the averages to agree: ROC-AUC within ±0.01, the fraction
//! flagged at contamination 0.03 within ±0.5 points, mean `score_samples` within ±0.01 and
//! `offset_` within ±0.02 (which AUC alone, being rank-based, would not check). Python is found through
//! `CANOPY_PYTHON`, else `.venv/bin/python` at the repository's root; without it the test fails.

#[path = "../../../tests/common/python.rs"]
mod python;
#[path = "../../../tests/common/roc_auc.rs"]
mod roc_auc;
use roc_auc::roc_auc;

use python::{python, repo_root};
use std::path::Path;
use std::process::Command;

use canopy_forest::iforest::{IsolationForest, IsolationForestParams, average_path_length};
use canopy_forest::matrix::row_major;
use serde_json::Value;

/// Rows of features (row-major) and labels from the script's CSV (last column = label).
fn read_dataset(path: &Path) -> (Vec<f64>, Vec<bool>, usize) {
    let text = std::fs::read_to_string(path).expect("read dataset");
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    let n_features = header.split(',').count() - 1;
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for line in lines.filter(|l| !l.is_empty()) {
        let values: Vec<f64> = line
            .split(',')
            .map(|v| v.parse().expect("number"))
            .collect();
        assert_eq!(values.len(), n_features + 1, "{line}");
        rows.extend_from_slice(&values[..n_features]);
        labels.push(values[n_features] == 1.0);
    }
    (rows, labels, n_features)
}

#[test]
fn roc_auc_handles_ties_like_scikit_learn() {
    // Perfect, reversed and fully tied rankings.
    assert_eq!(roc_auc(&[0.1, 0.2, 0.9], &[false, false, true]), 1.0);
    assert_eq!(roc_auc(&[0.9, 0.2, 0.1], &[false, false, true]), 0.0);
    assert_eq!(roc_auc(&[0.5, 0.5, 0.5], &[false, true, false]), 0.5);
}

#[test]
fn canopy_matches_scikit_learn_on_four_datasets() {
    let dir = tempfile::Builder::new()
        .prefix("canopy-iforest-parity-")
        .tempdir()
        .expect("create temp dir");
    let script = repo_root().join("tests/python/iforest_parity.py");
    let status = Command::new(python())
        .arg(&script)
        .arg(dir.path())
        .status()
        .expect("run the Python reference");
    assert!(status.success(), "{} failed: {status}", script.display());
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("sklearn.json")).expect("read sklearn.json"),
    )
    .expect("parse sklearn.json");

    // c(n) as scikit-learn computes it.
    let ns = report["average_path_length"]["n"].as_array().expect("n");
    let cs = report["average_path_length"]["c"].as_array().expect("c");
    for (n, c) in ns.iter().zip(cs) {
        let (n, c) = (n.as_u64().expect("n") as usize, c.as_f64().expect("c"));
        assert!(
            (average_path_length(n) - c).abs() < 1e-12,
            "c({n}): {} vs {c}",
            average_path_length(n)
        );
    }

    let seeds = report["seeds"].as_u64().expect("seeds");
    let datasets = report["datasets"].as_object().expect("datasets");
    assert!(datasets.len() >= 4);
    let mut failures = Vec::new();
    for (name, sk) in datasets {
        let (rows, labels, n_features) = read_dataset(&dir.path().join(format!("{name}.csv")));
        assert_eq!(Some(n_features as u64), sk["n_features"].as_u64());
        let (mut auc, mut flagged, mut mean_score, mut offset) = (0.0, 0.0, 0.0, 0.0);
        for seed in 0..seeds {
            let params = IsolationForestParams {
                seed,
                ..IsolationForestParams::default()
            };
            let rows = row_major(&rows, n_features).expect("whole rows");
            let forest = IsolationForest::fit(&params, rows).expect("fit");
            let scores = forest.score_samples(rows).expect("score");
            let anomaly: Vec<f64> = scores.iter().map(|s| -s).collect();
            auc += roc_auc(&anomaly, &labels);
            let predictions = forest.predict(rows).expect("predict");
            flagged +=
                predictions.iter().filter(|&&p| p == -1).count() as f64 / labels.len() as f64;
            mean_score += scores.iter().sum::<f64>() / scores.len() as f64;
            offset += forest.offset();
        }
        let n = seeds as f64;
        let ours = [auc / n, flagged / n, mean_score / n, offset / n];
        let theirs =
            ["auc", "flagged", "mean_score_samples", "offset"].map(|k| sk[k].as_f64().expect(k));
        // offset_ is a 3rd-percentile of scores and moves more from seed to seed than the mean does.
        let tolerances = [0.01, 0.005, 0.01, 0.02];
        println!(
            "{name}: auc {:.4} vs {:.4}, flagged {:.4} vs {:.4}, mean score {:.4} vs {:.4}, offset {:.4} vs {:.4}",
            ours[0], theirs[0], ours[1], theirs[1], ours[2], theirs[2], ours[3], theirs[3]
        );
        for (i, what) in ["auc", "flagged", "mean score_samples", "offset"]
            .iter()
            .enumerate()
        {
            if (ours[i] - theirs[i]).abs() > tolerances[i] {
                failures.push(format!(
                    "{name}: {what} canopy {:.4}, scikit-learn {:.4} (tolerance {})",
                    ours[i], theirs[i], tolerances[i]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
