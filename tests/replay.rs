//! `canopy replay`: a CSV streamed through the store, the feature engine and the detector in event
//! time, run as the real binary. A level series with injected spikes must give one output row per
//! step, empty scores until the stream has given the model `max_samples` vectors, and higher
//! scores at the spikes than anywhere normal; `--labels` must count windows and false positives as
//! NAB does; the same file must give the same output every run and in any row order. Files at
//! one-hour steps, with rows off the hour, or with gaps of hours are scored on every row once
//! the first model exists, and a reservoir smaller than `max_samples` trains on what it holds.

use std::path::Path;
use std::process::{Command, Output};

mod common;

use canopy::source::csv::format_timestamp;
use common::replay::{CONFIG, T0_MS, TempDir};

/// The config's `max_samples`.
const MAX_SAMPLES: usize = 64;
const ROWS: usize = 500;
const SPIKES: [usize; 3] = [200, 300, 400];

/// A whole hour, for files at one-hour steps.
const HOUR_T0_MS: i64 = 1_700_002_800_000;

fn row_time(k: usize) -> i64 {
    T0_MS + 300_000 * k as i64
}

/// A level around 10 with a slow wave and small deterministic noise; 25 at the spikes.
fn series() -> Vec<(i64, f64)> {
    (0..ROWS)
        .map(|k| {
            let v = if SPIKES.contains(&k) {
                25.0
            } else {
                10.0 + 0.5 * (k as f64 * 0.3).sin() + ((k * 7) % 11) as f64 / 22.0
            };
            (row_time(k), v)
        })
        .collect()
}

fn csv(rows: &[(i64, f64)]) -> String {
    let mut s = String::from("timestamp,value\n");
    for (t, v) in rows {
        s.push_str(&format!("{},{v}\n", format_timestamp(*t)));
    }
    s
}

fn replay(dir: &TempDir, input: &Path, labels: Option<&Path>) -> Output {
    replay_with(dir, CONFIG, input, labels)
}

fn replay_with(dir: &TempDir, config: &str, input: &Path, labels: Option<&Path>) -> Output {
    let config = dir.write("canopy.toml", config);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_canopy"));
    cmd.args(["replay", "--config"])
        .arg(config)
        .arg("--input")
        .arg(input);
    if let Some(l) = labels {
        cmd.arg("--labels").arg(l);
    }
    let out = cmd.output().expect("run canopy replay");
    assert!(
        out.status.success(),
        "canopy replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The output's rows: timestamp, score and flag (`None` for an empty score).
fn rows(out: &Output) -> Vec<(String, Option<(f64, bool)>)> {
    scored_rows(out)
        .into_iter()
        .map(|(t, s)| (t, s.map(|(score, _, flag)| (score, flag))))
        .collect()
}

/// A timestamp, then score, likelihood and flag (`None` for empty cells).
type ScoredRow = (String, Option<(f64, f64, bool)>);

/// The output's rows: timestamp, then score, likelihood and flag (`None` for empty cells). The
/// flag must be the likelihood at or above `threshold` (0.99 in [`CONFIG`]).
fn scored_rows(out: &Output) -> Vec<ScoredRow> {
    let text = String::from_utf8(out.stdout.clone()).expect("utf-8");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("timestamp,anomaly_score,anomaly_likelihood,anomaly")
    );
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            assert_eq!(cells.len(), 4, "{l}");
            let scored = match (cells[1], cells[2], cells[3]) {
                ("", "", "") => None,
                (s, p, a) => {
                    let likelihood: f64 = p.parse().expect(p);
                    assert!((0.0..1.0).contains(&likelihood), "{l}");
                    Some((s.parse().expect(s), likelihood, a == "1"))
                }
            };
            (cells[0].to_owned(), scored)
        })
        .collect()
}

#[test]
fn one_row_per_step_scored_from_the_warm_up_on_and_spikes_score_in_the_upper_tail() {
    let dir = TempDir::new("replay-spikes");
    let input = dir.write("series.csv", &csv(&series()));
    let out = rows(&replay(&dir, &input, None));
    assert_eq!(out.len(), ROWS, "one row per 5m step, one step per row");
    for (k, (t, _)) in out.iter().enumerate() {
        assert_eq!(t, &format_timestamp(row_time(k)));
    }
    let empty = out.iter().take_while(|(_, s)| s.is_none()).count();
    assert_eq!(empty, 8, "the warm-up's first forest is fit on 8 vectors");
    assert!(
        out[empty..].iter().all(|(_, s)| s.is_some()),
        "scored ever after"
    );
    assert!(
        out[..MAX_SAMPLES]
            .iter()
            .all(|(_, s)| s.is_none_or(|(_, f)| !f)),
        "nothing is flagged before the first fit on max_samples vectors"
    );

    // Rows well clear of a spike (its hour in the rolling mean included) are normal rows. An
    // isolation forest scores a point beyond the training range like the most extreme training
    // point (both end in the same leaf), so a spike is compared with the normal rows' upper tail,
    // not their maximum.
    let mut normal: Vec<f64> = out
        .iter()
        .enumerate()
        .skip(MAX_SAMPLES)
        .filter(|(k, _)| SPIKES.iter().all(|s| k.abs_diff(*s) > 13))
        .filter_map(|(_, (_, s))| s.map(|(score, _)| score))
        .collect();
    normal.sort_by(f64::total_cmp);
    let p95 = normal[normal.len() * 95 / 100];
    let median = normal[normal.len() / 2];
    for s in SPIKES {
        let (score, _) = out[s].1.expect("spike scored");
        assert!(
            score > p95,
            "spike at row {s} scores {score}: not above the normal rows' 95th percentile {p95} (median {median})"
        );
    }

    // The likelihood puts every spike in the normal rows' upper tail and flags the first, which
    // nothing like it preceded (later ones share the reservoir with the earlier spikes, so they
    // are rarer than normal rows but no longer the rarest); the flag is the likelihood at the
    // threshold, rarely reached away from a spike.
    let scored = scored_rows(&replay(&dir, &input, None));
    let quiet_rows = || {
        scored
            .iter()
            .enumerate()
            .skip(MAX_SAMPLES)
            .filter(|(k, _)| SPIKES.iter().all(|s| k.abs_diff(*s) > 13))
            .filter_map(|(_, (_, s))| *s)
    };
    let mut normal: Vec<f64> = quiet_rows().map(|(_, l, _)| l).collect();
    normal.sort_by(f64::total_cmp);
    let p95 = normal[normal.len() * 95 / 100];
    for s in SPIKES {
        let (_, likelihood, _) = scored[s].1.expect("spike scored");
        assert!(
            likelihood > p95,
            "spike at row {s}: likelihood {likelihood} not above the normal rows' 95th percentile {p95}"
        );
    }
    let (_, first, flag) = scored[SPIKES[0]].1.expect("spike scored");
    assert!(flag, "the first spike is flagged: likelihood {first}");
    let quiet: Vec<bool> = quiet_rows().map(|(_, _, flag)| flag).collect();
    let flagged = quiet.iter().filter(|f| **f).count();
    assert!(
        flagged * 50 <= quiet.len(),
        "{flagged} of {} normal rows flagged (more than 2%)",
        quiet.len()
    );
    for (_, s) in &scored {
        if let Some((_, likelihood, flag)) = s {
            assert_eq!(
                *flag,
                *likelihood >= 0.99,
                "the flag is the likelihood at the threshold"
            );
        }
    }
}

/// A config that reads the value with a window wider than the step, as the benchmark's does.
fn wide_window_config(step: &str, extra: &str) -> String {
    format!(
        r#"
[limits]
retention = "2d"
[evaluation]
step = "{step}"
lateness = "0s"
history = "1d"
[features]
level = 'last_over_time(value[2h])'
dev = 'last_over_time(value[2h]) - avg_over_time(value[1d])'
[models.det]
kind = "isolation_forest"
features = ["level", "dev"]
step = "{step}"
training_days = 30
max_samples = 64
n_estimators = 30
retrain_interval = "6h"
{extra}
"#
    )
}

/// The share of input rows, from the first scored step on, whose step (the latest at or
/// before the row) has a score.
fn scored_share(input: &[(i64, f64)], out: &[(String, Option<(f64, bool)>)]) -> f64 {
    let steps: Vec<(i64, bool)> = out
        .iter()
        .map(|(t, s)| {
            let t = canopy::source::csv::parse_timestamp(t).expect("timestamp");
            (t, s.is_some())
        })
        .collect();
    let first = steps
        .iter()
        .find(|(_, s)| *s)
        .map(|(t, _)| *t)
        .expect("some step is scored");
    let after: Vec<bool> = input
        .iter()
        .filter(|(t, _)| *t >= first)
        .map(|(t, _)| {
            let k = steps.partition_point(|(s, _)| s <= t);
            k > 0 && steps[k - 1].1
        })
        .collect();
    after.iter().filter(|s| **s).count() as f64 / after.len() as f64
}

#[test]
fn hourly_and_gappy_files_are_scored_on_every_row_after_the_first_model() {
    let dir = TempDir::new("replay-irregular");
    // Hourly rows a quarter past the hour, jittered by up to two minutes either way.
    let hourly: Vec<(i64, f64)> = (0..400)
        .map(|k: i64| {
            let jitter = (k * 37) % 240 - 120;
            let t = T0_MS + 900_000 + k * 3_600_000 + jitter * 1000;
            (t, 10.0 + (k as f64 / 24.0 * std::f64::consts::TAU).sin())
        })
        .collect();
    let input = dir.write("hourly.csv", &csv(&hourly));
    let out = rows(&replay_with(
        &dir,
        &wide_window_config("1h", ""),
        &input,
        None,
    ));
    let share = scored_share(&hourly, &out);
    assert!(share >= 0.99, "hourly: {share} of rows scored");

    // Five-minute rows with gaps of 3 to 8 hours every 300 rows.
    let mut t = T0_MS;
    let gappy: Vec<(i64, f64)> = (0..1500)
        .map(|k: i64| {
            t += 300_000;
            if k % 300 == 299 {
                t += 3_600_000 * (3 + k % 6);
            }
            (
                t,
                50.0 + 5.0 * (k as f64 / 288.0 * std::f64::consts::TAU).sin(),
            )
        })
        .collect();
    let input = dir.write("gappy.csv", &csv(&gappy));
    let out = rows(&replay_with(
        &dir,
        &wide_window_config("5m", ""),
        &input,
        None,
    ));
    let share = scored_share(&gappy, &out);
    assert!(share >= 0.99, "gaps: {share} of rows scored");
}

#[test]
fn a_reservoir_smaller_than_max_samples_trains_on_what_it_holds() {
    let dir = TempDir::new("replay-small-reservoir");
    // One day at one hour holds 24 vectors, fewer than max_samples = 256.
    let config = wide_window_config("1h", "")
        .replace("training_days = 30", "training_days = 1")
        .replace("max_samples = 64", "max_samples = 256");
    let hourly: Vec<(i64, f64)> = (0..200)
        .map(|k: i64| (HOUR_T0_MS + k * 3_600_000, 5.0 + (k % 7) as f64))
        .collect();
    let input = dir.write("hourly.csv", &csv(&hourly));
    let output = replay_with(&dir, &config, &input, None);
    let out = rows(&output);
    let empty = out.iter().take_while(|(_, s)| s.is_none()).count();
    assert_eq!(empty, 8, "the warm-up's first forest, fit on 8 vectors");
    assert!(out[empty..].iter().all(|(_, s)| s.is_some()));
    // The warm-up ends with the fit on the full reservoir: nothing is flagged before it.
    assert!(out[..24].iter().all(|(_, s)| s.is_none_or(|(_, f)| !f)));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("fewer than max_samples"), "{stderr}");

    let path = dir.write("small.toml", &config);
    let check = Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run check-config");
    assert!(check.status.success());
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        stdout.contains("warning: model `det`: the reservoir holds at most 24 vectors"),
        "{stdout}"
    );
}

#[test]
fn output_is_the_same_every_run_and_in_any_row_order() {
    let dir = TempDir::new("replay-determinism");
    let rows_in_order = series();
    let input = dir.write("a.csv", &csv(&rows_in_order));
    let first = replay(&dir, &input, None).stdout;
    assert_eq!(
        replay(&dir, &input, None).stdout,
        first,
        "two runs, one output"
    );

    // Newest first, with a conflicting repeat of one timestamp listed after the original.
    let mut shuffled = rows_in_order.clone();
    shuffled.reverse();
    shuffled.push((row_time(250), 99.0));
    let other = dir.write("b.csv", &csv(&shuffled));
    assert_eq!(
        replay(&dir, &other, None).stdout,
        first,
        "rows are sorted by time and a repeated timestamp keeps its first row"
    );
}

#[test]
fn labels_summary_counts_windows_and_false_positives_after_probation() {
    let dir = TempDir::new("replay-labels");
    let input = dir.write("data/sub/series.csv", &csv(&series()));
    let nab = |t: i64| format!("{}.000000", format_timestamp(t));
    // One window around the first spike, one where nothing happens.
    let windows = [(198, 203), (250, 260)];
    let json = format!(
        r#"{{"other/series.csv": [], "sub/series.csv": [["{}", "{}"], ["{}", "{}"]]}}"#,
        nab(row_time(windows[0].0)),
        nab(row_time(windows[0].1)),
        nab(row_time(windows[1].0)),
        nab(row_time(windows[1].1)),
    );
    let labels = dir.write("windows.json", &json);
    let output = replay(&dir, &input, Some(&labels));

    // Counted independently from the output: NAB's probation is the first 15% of rows.
    let probation = ROWS * 15 / 100;
    let out = rows(&output);
    let inside = |k: usize| windows.iter().any(|&(a, b)| (a..=b).contains(&k));
    let flagged = |k: usize| out[k].1.is_some_and(|(_, f)| f);
    let false_positives = (probation..ROWS)
        .filter(|&k| flagged(k) && !inside(k))
        .count();
    let detected = windows
        .iter()
        .filter(|&&(a, b)| (a..=b).any(flagged))
        .count();
    assert!(
        (windows[0].0..=windows[0].1).any(flagged),
        "the spike's window is detected"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!("windows detected {detected}/2, false positives {false_positives},");
    assert!(
        stderr.contains(&expected),
        "expected `{expected}` in: {stderr}"
    );
    assert!(
        stderr.contains(&format!("probation: first {probation} rows")),
        "{stderr}"
    );
}

#[test]
fn a_forecaster_in_the_config_adds_its_columns() {
    let dir = TempDir::new("replay-forecast");
    let config = format!(
        "{CONFIG}\n[models.fc]\nkind = \"random_forest\"\nfeatures = [\"level\"]\n\
         target = [\"level\"]\nstep = \"5m\"\nlookback = 12\nhorizon = 2\nn_estimators = 10\n\
         retrain_interval = \"4h\"\n"
    );
    let data = series();
    let input = dir.write("series.csv", &csv(&data));
    let output = replay_with(&dir, &config, &input, None);
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("timestamp,anomaly_score,anomaly_likelihood,anomaly,level_1,level_2")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows.len(),
        ROWS,
        "one row per step of the two models (both at 5m)"
    );
    // The first fit needs lookback + horizon + 100 rows of history (the forecaster's minimum of
    // 100 windows); the forecast made at that step comes from the model fit just after it.
    let first = rows
        .iter()
        .position(|r| !r[4].is_empty())
        .expect("forecasts once trained");
    assert_eq!(
        first,
        12 + 2 + 100,
        "first forecast at the step after the first fit"
    );
    assert!(
        rows[first..]
            .iter()
            .all(|r| !r[4].is_empty() && !r[5].is_empty())
    );
    // Forecasts for rows i+1 and i+2 beat repeating row i, away from the spikes.
    let (mut err, mut naive) = (0.0, 0.0);
    for (i, r) in rows.iter().enumerate().skip(first) {
        for h in 1..=2 {
            let near_spike = SPIKES
                .iter()
                .any(|s| (i..=i + h + 12).contains(s) || i.abs_diff(*s) <= 12);
            let Some(&(_, truth)) = data.get(i + h) else {
                continue;
            };
            if near_spike {
                continue;
            }
            err += (r[3 + h].parse::<f64>().expect("forecast") - truth).abs();
            naive += (data[i].1 - truth).abs();
        }
    }
    assert!(
        err < naive,
        "forecast error {err:.3} vs repeating the last value {naive:.3}"
    );
}
