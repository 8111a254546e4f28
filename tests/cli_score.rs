//! `canopy score`: a batch fit on one CSV, scores for every row of another, run as the real
//! binary. Checks the output's shape and determinism, that columns are matched to the model's
//! features by name, the errors a user would hit, and parity with scikit-learn: the same CSVs
//! fit and scored by `tests/python/score_parity.py` must give the same ROC-AUC, fraction flagged,
//! mean `score_samples` and `offset_` within tolerance (averaged over five seeds on both sides).

mod common;
#[path = "common/roc_auc.rs"]
mod roc_auc;
use roc_auc::roc_auc;

use common::python;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("canopy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(seed: u64) -> String {
    format!(
        "[features]\ncpu = 'cpu'\nmem = 'mem'\nnet = 'net'\n\
         [models.det]\nkind = \"isolation_forest\"\nfeatures = [\"cpu\", \"mem\", \"net\"]\n\
         seed = {seed}\nn_estimators = 100\nmax_samples = 256\ncontamination = 0.03\n"
    )
}

fn score(args: &[&Path], model: &str, config: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_canopy"));
    cmd.args(["score", "--model", model, "--config"])
        .arg(config)
        .arg("--fit")
        .arg(args[0])
        .arg("--input")
        .arg(args[1]);
    if let Some(out) = args.get(2) {
        cmd.arg("--out").arg(out);
    }
    cmd.output().expect("run canopy score")
}

fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "canopy score failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

/// A small deterministic data set: `n` rows of cpu, mem, net with a few far points.
fn generated(n: usize, shift: f64) -> Vec<[f64; 3]> {
    (0..n)
        .map(|k| {
            let x = k as f64;
            let far = if k % 97 == 13 { 5.0 } else { 0.0 };
            [
                0.5 + 0.3 * (x * 0.37 + shift).sin() + far,
                0.4 + 0.2 * (x * 0.11).cos(),
                1000.0 + 100.0 * (x * 0.53).sin() - 900.0 * far / 5.0,
            ]
        })
        .collect()
}

fn csv(header: &str, rows: &[(i64, String)]) -> String {
    let mut s = format!("{header}\n");
    for (t, r) in rows {
        s.push_str(&format!("{t},{r}\n"));
    }
    s
}

#[test]
fn output_has_one_row_per_input_row_and_is_deterministic() {
    let dir = TempDir::new("score-shape");
    let cfg = dir.write("c.toml", &config(7));
    let fit_rows: Vec<(i64, String)> = generated(600, 0.0)
        .iter()
        .enumerate()
        .map(|(k, r)| {
            (
                1_700_000_000 + 60 * k as i64,
                format!("{},{},{}", r[0], r[1], r[2]),
            )
        })
        .collect();
    let fit = dir.write("fit.csv", &csv("timestamp,cpu,mem,net", &fit_rows));
    // The input lists its rows newest first, repeats one timestamp and misses one value.
    let mut input_rows: Vec<(i64, String)> = generated(50, 1.0)
        .iter()
        .enumerate()
        .map(|(k, r)| {
            (
                1_800_000_000 + 60 * k as i64,
                format!("{},{},{}", r[0], r[1], r[2]),
            )
        })
        .collect();
    input_rows[20].1 = "0.5,,1000".into();
    input_rows.reverse();
    let without_repeat = dir.write("plain.csv", &csv("timestamp,cpu,mem,net", &input_rows));
    input_rows.push((1_800_000_000, "9,9,9".into()));
    let input = dir.write("input.csv", &csv("timestamp,cpu,mem,net", &input_rows));

    let first = ok_stdout(&score(&[&fit, &input], "det", &cfg));
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(
        lines[0],
        "timestamp,score_samples,decision_function,predict,anomaly_score"
    );
    assert_eq!(lines.len(), 51, "one row per distinct input timestamp");
    let mut offsets = Vec::new();
    for (k, line) in lines[1..].iter().enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), 5, "{line}");
        let expected_time =
            canopy::source::csv::format_timestamp((1_800_000_000 + 60 * k as i64) * 1000);
        assert_eq!(cells[0], expected_time, "rows come out in time order");
        if k == 20 {
            assert_eq!(&cells[1..], ["", "", "", ""], "a row with a missing value");
            continue;
        }
        let v: Vec<f64> = cells[1..].iter().map(|c| c.parse().expect(c)).collect();
        assert!(
            (-1.0..0.0).contains(&v[0]),
            "score_samples in [-1, 0): {line}"
        );
        assert_eq!(v[3], -v[0], "anomaly_score = -score_samples");
        assert_eq!(
            v[2] == -1.0,
            v[1] < 0.0,
            "predict follows decision_function: {line}"
        );
        assert!(v[2] == 1.0 || v[2] == -1.0);
        offsets.push(v[0] - v[1]);
    }
    assert!(
        offsets.iter().all(|o| (o - offsets[0]).abs() < 1e-12),
        "one offset_ for every row"
    );
    assert_eq!(
        ok_stdout(&score(&[&fit, &without_repeat], "det", &cfg)),
        first,
        "a repeated timestamp keeps its first row: the 9,9,9 row listed last changes nothing"
    );

    let out_file = dir.0.join("out.csv");
    let again = score(&[&fit, &input, &out_file], "det", &cfg);
    assert!(again.status.success());
    assert!(again.stdout.is_empty(), "--out writes the file, not stdout");
    assert_eq!(
        std::fs::read_to_string(&out_file).expect("read --out"),
        first,
        "same files and seed give the same output"
    );
}

#[test]
fn columns_are_matched_to_features_by_name() {
    let dir = TempDir::new("score-columns");
    let cfg = dir.write("c.toml", &config(3));
    let data = generated(400, 0.5);
    let ordered: Vec<(i64, String)> = data
        .iter()
        .enumerate()
        .map(|(k, r)| {
            (
                1_700_000_000 + 60 * k as i64,
                format!("{},{},{}", r[0], r[1], r[2]),
            )
        })
        .collect();
    let shuffled: Vec<(i64, String)> = data
        .iter()
        .enumerate()
        .map(|(k, r)| {
            (
                1_700_000_000 + 60 * k as i64,
                format!("{},7,{},{}", r[2], r[0], r[1]),
            )
        })
        .collect();
    let a = dir.write("a.csv", &csv("timestamp,cpu,mem,net", &ordered));
    let b = dir.write("b.csv", &csv("timestamp,net,extra,cpu,mem", &shuffled));
    let from_a = ok_stdout(&score(&[&a, &a], "det", &cfg));
    let from_b = ok_stdout(&score(&[&b, &b], "det", &cfg));
    assert_eq!(
        from_a, from_b,
        "column order and extra columns do not matter"
    );
}

#[test]
fn errors_say_what_is_wrong() {
    let dir = TempDir::new("score-errors");
    let cfg = dir.write("c.toml", &config(1));
    let good = dir.write("good.csv", "timestamp,cpu,mem,net\n1,1,2,3\n2,2,3,4\n");
    let stderr = |out: Output| {
        assert!(!out.status.success(), "must fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let missing = dir.write("missing.csv", "timestamp,cpu,net\n1,1,3\n");
    let e = stderr(score(&[&good, &missing], "det", &cfg));
    assert!(
        e.contains("missing.csv") && e.contains("no column `mem`") && e.contains("cpu, mem, net"),
        "{e}"
    );

    let bad_time = dir.write(
        "bad_time.csv",
        "timestamp,cpu,mem,net\n1,1,2,3\nnoon,1,2,3\n",
    );
    let e = stderr(score(&[&bad_time, &good], "det", &cfg));
    assert!(
        e.contains("bad_time.csv line 3") && e.contains("`noon` is not a timestamp"),
        "{e}"
    );

    let e = stderr(score(&[&good, &good], "nope", &cfg));
    assert!(e.contains("no model `nope`") && e.contains("det"), "{e}");

    let short = dir.write("short.csv", "timestamp,cpu,mem,net\n1,1,2\n");
    let e = stderr(score(&[&short, &good], "det", &cfg));
    assert!(
        e.contains("short.csv line 2") && e.contains("4 columns"),
        "{e}"
    );
}

#[test]
fn scores_match_scikit_learn_fit_on_the_same_csv() {
    let dir = TempDir::new("score-parity");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/score_parity.py");
    let status = Command::new(python())
        .arg(&script)
        .arg(&dir.0)
        .status()
        .expect("run the Python reference");
    assert!(status.success(), "{} failed: {status}", script.display());
    let sk: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.0.join("sklearn.json")).expect("read sklearn.json"),
    )
    .expect("parse sklearn.json");
    let labels: Vec<bool> = std::fs::read_to_string(dir.0.join("labels.csv"))
        .expect("labels")
        .lines()
        .skip(1)
        .map(|l| l.ends_with(",1"))
        .collect();

    let seeds = sk["seeds"].as_u64().expect("seeds");
    let (mut auc, mut flagged, mut mean_score, mut offset) = (0.0, 0.0, 0.0, 0.0);
    for seed in 0..seeds {
        let cfg = dir.write(&format!("c{seed}.toml"), &config(seed));
        let out = ok_stdout(&score(
            &[&dir.0.join("fit.csv"), &dir.0.join("input.csv")],
            "det",
            &cfg,
        ));
        let rows: Vec<Vec<f64>> = out
            .lines()
            .skip(1)
            .map(|l| l.split(',').skip(1).map(|c| c.parse().expect(c)).collect())
            .collect();
        assert_eq!(
            rows.len(),
            labels.len(),
            "one output row per labelled input row"
        );
        let anomaly: Vec<f64> = rows.iter().map(|r| r[3]).collect();
        auc += roc_auc(&anomaly, &labels);
        flagged += rows.iter().filter(|r| r[2] == -1.0).count() as f64 / rows.len() as f64;
        mean_score += rows.iter().map(|r| r[0]).sum::<f64>() / rows.len() as f64;
        offset += rows[0][0] - rows[0][1];
    }
    let n = seeds as f64;
    let ours = [auc / n, flagged / n, mean_score / n, offset / n];
    let theirs =
        ["auc", "flagged", "mean_score_samples", "offset"].map(|k| sk[k].as_f64().expect(k));
    // 1,030 input rows: a point of flagged fraction is ten rows; offset_ is a 3rd percentile of
    // the fit rows' scores and moves more from seed to seed than the mean does.
    let tolerances = [0.01, 0.01, 0.01, 0.02];
    for (i, what) in [
        "ROC-AUC",
        "fraction flagged",
        "mean score_samples",
        "offset_",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            (ours[i] - theirs[i]).abs() <= tolerances[i],
            "{what}: canopy {:.4}, scikit-learn {:.4} (tolerance {})",
            ours[i],
            theirs[i],
            tolerances[i]
        );
    }
}

const FORECASTER: &str = "[features]\ncpu = 'cpu'\nmem = 'mem'\n\
    [models.fc]\nkind = \"random_forest\"\nfeatures = [\"cpu\", \"mem\"]\ntarget = [\"cpu\"]\n\
    lookback = 6\nhorizon = 3\nn_estimators = 20\nseed = 5\n";

/// cpu: a wave of 24 steps; mem: the same wave, lagged, plus a slow drift.
fn wave(n: usize, phase: f64) -> Vec<(i64, String)> {
    (0..n)
        .map(|k| {
            let x = (k as f64 + phase) * std::f64::consts::TAU / 24.0;
            (
                1_700_000_000 + 300 * k as i64,
                format!("{},{}", x.sin(), 0.5 * (x - 1.0).sin() + k as f64 * 1e-4),
            )
        })
        .collect()
}

#[test]
fn forecaster_forecasts_the_next_rows_from_the_lookback_ending_at_each_row() {
    let dir = TempDir::new("score-forecast");
    let cfg = dir.write("c.toml", FORECASTER);
    let fit = dir.write("fit.csv", &csv("timestamp,cpu,mem", &wave(600, 0.0)));
    let input_rows = wave(120, 7.5);
    let input = dir.write(
        "input.csv",
        &csv("timestamp,mem,cpu", &{
            // columns swapped in the file: matched by name
            input_rows
                .iter()
                .map(|(t, r)| {
                    let (cpu, mem) = r.split_once(',').expect("two values");
                    (*t, format!("{mem},{cpu}"))
                })
                .collect::<Vec<_>>()
        }),
    );
    let text = ok_stdout(&score(&[&fit, &input], "fc", &cfg));
    assert_eq!(
        text,
        ok_stdout(&score(&[&fit, &input], "fc", &cfg)),
        "deterministic"
    );
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("timestamp,cpu_1,cpu_2,cpu_3"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 120, "one row per input row");
    let actual: Vec<f64> = input_rows
        .iter()
        .map(|(_, r)| r.split(',').next().expect("cpu").parse().expect("cpu"))
        .collect();
    let (mut err, mut naive, mut n) = (0.0, 0.0, 0.0);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.len(), 4);
        if i < 5 {
            assert!(
                row[1..].iter().all(|c| c.is_empty()),
                "row {i} has no full lookback"
            );
            continue;
        }
        for (h, cell) in row.iter().enumerate().skip(1) {
            let v: f64 = cell.parse().expect("a forecast");
            if let Some(&truth) = actual.get(i + h) {
                err += (v - truth).abs();
                naive += (actual[i] - truth).abs();
                n += 1.0;
            }
        }
    }
    let (err, naive) = (err / n, naive / n);
    assert!(
        err < 0.25 * naive,
        "forecasts for rows i+1..i+3 miss by {err:.4} on average; repeating row i misses by {naive:.4}"
    );
}
