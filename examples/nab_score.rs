//! Scores `canopy replay` outputs on the NAB corpus with NAB 1.1's scorer
//! ([`canopy::batch::nab`]): the normalised score, raw score and threshold of each profile.
//! `benches/compare/nab_replay.sh` runs it once per seed.
//!
//! Usage: `nab_score --nab DIR --outputs DIR [--column anomaly_likelihood] [--per-file] [--json]`
//!
//! Every key of `DIR/windows.json` (`realAWSCloudwatch/x.csv`, ...) names a data file `DIR/key`,
//! whose first column gives the rows' timestamps (all rows, in file order), and a replay output
//! `OUTPUTS/x.csv` (header with `timestamp` and the column; an empty cell is no score). Each row
//! gets the score of the latest output step at or before it (0 without one). `--json` prints one
//! line, `{"standard":..,"reward_low_FP_rate":..,"reward_low_FN_rate":..}` (normalised scores,
//! `null` where not defined).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use canopy::batch::labels;
use canopy::batch::nab::{self, FileScores, PROFILES};
use canopy::source::csv::parse_timestamp;
use clap::Parser;

#[derive(Parser)]
#[command(about = "NAB 1.1 scores of canopy replay outputs")]
struct Args {
    /// The NAB data folder: windows.json and the data files it names.
    #[arg(long)]
    nab: PathBuf,
    /// The folder of replay outputs, one per data file, named after its base name.
    #[arg(long)]
    outputs: PathBuf,
    /// The output column holding the anomaly score.
    #[arg(long, default_value = "anomaly_likelihood")]
    column: String,
    /// Also print each file's windows detected and false positives at the standard threshold.
    #[arg(long)]
    per_file: bool,
    /// Print the normalised scores as one line of JSON instead.
    #[arg(long)]
    json: bool,
}

/// The timestamps of every row of a NAB data file (first column, after the header).
fn row_times(path: &Path) -> anyhow::Result<Vec<i64>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the data file {}", path.display()))?;
    let mut times = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let cell = line.split(',').next().unwrap_or_default();
        let t = parse_timestamp(cell).with_context(|| {
            format!(
                "{} line {}: {cell:?} is not a timestamp",
                path.display(),
                n + 1
            )
        })?;
        times.push(t);
    }
    Ok(times)
}

/// A score cell: a number, `true`/`false` (as 1/0), or empty (no score).
fn score_cell(cell: &str) -> Option<Result<f64, ()>> {
    match cell.trim() {
        "" => None,
        "true" => Some(Ok(1.0)),
        "false" => Some(Ok(0.0)),
        s => Some(s.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or(())),
    }
}

/// A replay output's steps: (time, score of `column`).
fn steps(path: &Path, column: &str) -> anyhow::Result<Vec<(i64, Option<f64>)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the replay output {}", path.display()))?;
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = match lines.next() {
        Some((_, h)) => h.split(',').map(str::trim).collect(),
        None => bail!("{} is empty: no header", path.display()),
    };
    let find = |name: &str| {
        header.iter().position(|h| *h == name).with_context(|| {
            format!(
                "{} has no column `{name}` (its columns: {})",
                path.display(),
                header.join(", ")
            )
        })
    };
    let (t_col, s_col) = (find("timestamp")?, find(column)?);
    let mut out = Vec::new();
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        let at = |c: usize| cells.get(c).copied().unwrap_or_default();
        let t = parse_timestamp(at(t_col)).with_context(|| {
            format!(
                "{} line {}: {:?} is not a timestamp",
                path.display(),
                n + 1,
                at(t_col)
            )
        })?;
        let score = match score_cell(at(s_col)) {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(())) => bail!(
                "{} line {}: {column} {:?} is not a number",
                path.display(),
                n + 1,
                at(s_col)
            ),
        };
        out.push((t, score));
    }
    Ok(out)
}

/// A number for JSON: `null` when not finite.
fn json_number(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let labels_path = args.nab.join("windows.json");
    let text = std::fs::read_to_string(&labels_path)
        .with_context(|| format!("cannot read the labels {}", labels_path.display()))?;
    let keys: BTreeMap<String, serde_json::Value> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON object", labels_path.display()))?;

    let mut files = Vec::new();
    for key in keys.keys() {
        let data = args.nab.join(key);
        let windows = labels::windows_for(&labels_path, &data)?;
        let times = row_times(&data)?;
        let base = Path::new(key)
            .file_name()
            .with_context(|| format!("labels key `{key}` names no file"))?;
        let output = args.outputs.join(base);
        if !output.is_file() {
            bail!(
                "no replay output {} for {key}: replay {} into it first",
                output.display(),
                data.display()
            );
        }
        let scores = nab::row_scores(&times, &steps(&output, &args.column)?);
        files.push(FileScores::new(key.clone(), &times, scores, &windows)?);
    }

    let results: Vec<_> = PROFILES
        .iter()
        .map(|p| (p, nab::corpus_score(&files, p)))
        .collect();
    if args.json {
        // Written by hand to keep the profiles in order.
        let fields: Vec<String> = results
            .iter()
            .map(|(p, c)| format!("\"{}\":{}", p.name, json_number(c.normalised)))
            .collect();
        println!("{{{}}}", fields.join(","));
        return Ok(());
    }

    let windows: usize = files.iter().map(FileScores::windows).sum();
    println!(
        "NAB 1.1 scores of `{}` over {} files, {windows} windows",
        args.column,
        files.len()
    );
    println!(
        "{:<20} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "profile", "normalised", "raw", "threshold", "null", "perfect"
    );
    for (p, c) in &results {
        println!(
            "{:<20} {:>10.2} {:>10.3} {:>10.4} {:>10.3} {:>10.3}",
            p.name, c.normalised, c.raw, c.threshold, c.null, c.perfect
        );
    }
    if args.per_file {
        let (standard, c) = results[0];
        println!();
        println!(
            "per file at the {} threshold {:.4}:",
            standard.name, c.threshold
        );
        println!(
            "{:<58} {:>9} {:>7} {:>9} {:>9}",
            "file", "detected", "windows", "false_pos", "raw"
        );
        for f in &files {
            let b = nab::file_breakdown(f, standard, c.threshold);
            println!(
                "{:<58} {:>9} {:>7} {:>9} {:>9.3}",
                f.name(),
                b.detected,
                b.windows,
                b.false_positives,
                b.raw
            );
        }
    }
    Ok(())
}
