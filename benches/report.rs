//! Drawing a replay report of a 100,000-row file, against the budget of a few seconds and a few
//! MB: `report::write` on the trace a replay of NAB's config would keep (one column, four
//! features, a detector with a retrain every 72 steps, two labelled windows, 300 flagged steps),
//! from the trace to the finished page, NAB scores included. The replay itself is not in it
//! (`benches/report_100k.sh` times the whole command). The page's size is printed once.

use std::hint::black_box;
use std::path::PathBuf;

use canopy::batch::labels::{self, Window};
use canopy::batch::replay::{ReplayOutcome, Trace, TracedDetector, TracedFeature, TracedStep};
use canopy::model::rng::Rng;
use canopy::report::{self, Replayed, ReportOptions};
use canopy::source::csv::{Row, Table};
use criterion::{Criterion, criterion_group, criterion_main};

const ROWS: usize = 100_000;
const STEP_MS: i64 = 300_000;
const T0_MS: i64 = 1_704_067_200_000;

/// A daily wave with noise, a spike every 333 rows, scores that follow it.
fn replayed() -> Replayed {
    let mut rng = Rng::new(7);
    let time = |k: usize| T0_MS + STEP_MS * k as i64;
    let value = |k: usize, noise: f64| {
        let day = std::f64::consts::TAU * k as f64 / 288.0;
        50.0 + 20.0 * day.sin() + 3.0 * noise + if k % 333 == 0 { 80.0 } else { 0.0 }
    };
    let rows: Vec<Row> = (0..ROWS)
        .map(|k| Row {
            t_ms: time(k),
            line: k + 2,
            values: vec![Some(value(k, rng.next_f64()))],
        })
        .collect();
    let steps: Vec<TracedStep> = (0..ROWS)
        .map(|k| {
            let spike = k % 333 == 0;
            let likelihood = if spike { 0.999 } else { rng.next_f64() * 0.99 };
            TracedStep {
                t_ms: time(k),
                anomaly_score: Some(0.4 + 0.3 * rng.next_f64()),
                likelihood: Some(likelihood),
                anomaly: spike && k > 256,
                warming_up: k < 256,
                retrained: k % 72 == 0,
                forecast: Vec::new(),
            }
        })
        .collect();
    let features = ["value", "dev_1h", "dev_1d", "stddev_1h"]
        .iter()
        .map(|name| TracedFeature {
            name: (*name).to_owned(),
            expression: format!("{name} of value"),
            entities: 1,
            entity: String::new(),
            values: (0..ROWS).map(|k| value(k, rng.next_f64())).collect(),
        })
        .collect();
    let windows = vec![
        Window {
            start_ms: time(40_000),
            end_ms: time(40_300),
        },
        Window {
            start_ms: time(90_000),
            end_ms: time(90_300),
        },
    ];
    let flagged: Vec<(i64, Option<bool>)> =
        steps.iter().map(|s| (s.t_ms, Some(s.anomaly))).collect();
    let row_times: Vec<i64> = rows.iter().map(|r| r.t_ms).collect();
    let outcome = ReplayOutcome {
        rows: ROWS,
        steps: ROWS,
        scored_steps: ROWS,
        summary: Some(labels::summarise(&windows, &row_times, &flagged)),
    };
    Replayed {
        input: PathBuf::from("big.csv"),
        outcome,
        trace: Trace {
            table: Table {
                columns: vec!["value".to_owned()],
                rows,
            },
            windows: Some(windows),
            detector: Some(TracedDetector {
                name: "nab-detector".to_owned(),
                features: vec!["value".to_owned()],
                step_ms: STEP_MS,
                threshold: 0.995,
            }),
            forecaster: None,
            features,
            steps,
        },
    }
}

fn write(c: &mut Criterion) {
    let files = [replayed()];
    let options = ReportOptions {
        config: "benches/nab-replay/canopy.toml".to_owned(),
        horizon: None,
        width: report::DEFAULT_WIDTH,
    };
    let mut page = Vec::new();
    report::write(&files, &options, &mut page).expect("report");
    println!("report of {ROWS} rows: {} bytes", page.len());
    c.bench_function("report_write_100k_rows", |b| {
        b.iter(|| {
            let mut page = Vec::with_capacity(1 << 20);
            report::write(black_box(&files), &options, &mut page).expect("report");
            page.len()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = write
}
criterion_main!(benches);
