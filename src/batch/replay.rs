//! `canopy replay`: stream a CSV through the agent's own pipeline in event time.
//!
//! Each column becomes a series named after it (label `__name__`, sanitised to a valid metric
//! name), and the rows go in time order, one at a time, through what live remote-write feeds:
//! the ingest prefilter, the series store, the [`FeatureEngine`](crate::features::FeatureEngine) (whose watermark only sample
//! timestamps move) and the [`Detector`] with inline training, so the same file and config give
//! the same output on every run. Nothing is trained before the stream has given the model
//! `min(max_samples, reservoir capacity)` vectors: there is no synthetic source in replay, and
//! steps before the first model have empty scores.
//!
//! The config runs at most one isolation-forest model and one random-forest model (at least one
//! of the two). One output row per evaluation step of either model:
//! `timestamp,anomaly_score,anomaly_likelihood,anomaly` (the forest's s, the calibrated
//! likelihood, and whether it reached the model's threshold), then, with a forecaster, its
//! `{target}_1..{target}_{horizon}` columns (the forecast made at that step); a model that does
//! not step there, or has no model yet, leaves its cells empty. With several entities at a step
//! (features written `by (label)`), the row carries the highest score and likelihood, flagged
//! when any entity is, and the forecast of the first entity in label order.
//!
//! [`replay_traced`] also keeps a [`Trace`] of the run (the input, each step's features, scores,
//! alerts, retrains and forecasts) for `canopy replay --report` to draw; the output is the same.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::labels::{self, Summary, Window};
use super::{BatchError, number};
use crate::config::{Config, ModelKind};
use crate::features::{FeatureSet, StepResult};
use crate::live::TrainingMode;
use crate::live::detector::{Detector, Scored};
use crate::live::forecaster::{Forecast, Forecaster};
use crate::pipeline::Pipeline;
use crate::series::labels::METRIC_NAME;
use crate::series::{Prefilter, Sample};
use crate::source::csv::{Table, format_timestamp};

/// Replay's output header.
pub(crate) const HEADER: &str = "timestamp,anomaly_score,anomaly_likelihood,anomaly";

/// What a replay did, for the command line to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOutcome {
    pub rows: usize,
    /// Evaluation steps of the model (output rows), and how many of them had a score.
    pub steps: usize,
    pub scored_steps: usize,
    /// Against `--labels`, when given.
    pub summary: Option<Summary>,
}

/// A valid Prometheus metric name for a column: characters outside `[a-zA-Z0-9_:]` become `_`,
/// and a leading digit gets a `_` in front.
pub(crate) fn series_name(column: &str) -> String {
    let mut name: String = column
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// What a replay saw, kept for `canopy replay --report`: the input, and at every output row (each
/// step of either model) the features the models read, the score, the alert, whether a model
/// retrained and the forecast made.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The input as read: its columns, and its rows in time order.
    pub table: Table,
    /// The input's labelled windows; `None` without `--labels`.
    pub windows: Option<Vec<Window>>,
    pub detector: Option<TracedDetector>,
    pub forecaster: Option<TracedForecaster>,
    /// The features the models read: the detector's in its order, then the forecaster's others.
    pub features: Vec<TracedFeature>,
    pub steps: Vec<TracedStep>,
}

/// The detector replay ran, as the report names it.
#[derive(Debug, Clone)]
pub struct TracedDetector {
    pub name: String,
    pub features: Vec<String>,
    pub step_ms: i64,
    /// The likelihood at or above which a step is flagged.
    pub threshold: f64,
}

/// The forecaster replay ran, as the report names it.
#[derive(Debug, Clone)]
pub struct TracedForecaster {
    pub(crate) name: String,
    pub(crate) features: Vec<String>,
    pub(crate) targets: Vec<String>,
    pub(crate) lookback: usize,
    pub(crate) horizon: usize,
    pub(crate) step_ms: i64,
}

/// One feature's value at every traced step.
#[derive(Debug, Clone)]
pub struct TracedFeature {
    pub name: String,
    pub expression: String,
    /// The most entities the feature had at one step; with more than one, `values` are the
    /// first entity's (in label order), as the forecast columns are.
    pub entities: usize,
    /// The entity drawn, as `{label="value"}`; empty for a single series without labels.
    pub entity: String,
    /// One per [`Trace::steps`]; NaN where the feature had no value.
    pub values: Vec<f64>,
}

/// One output row of the replay, with what the CSV does not say.
#[derive(Debug, Clone, PartialEq)]
pub struct TracedStep {
    pub t_ms: i64,
    /// The row's score, likelihood and flag; `None` where the CSV's cells are empty.
    pub anomaly_score: Option<f64>,
    pub likelihood: Option<f64>,
    pub anomaly: bool,
    /// The detector could not flag yet: its forests had not been fit on
    /// `min(max_samples, reservoir capacity)` vectors of the stream.
    pub warming_up: bool,
    /// A model trained (or retrained) at this step.
    pub retrained: bool,
    /// The forecast made at this step (the CSV's forecast cells, time-major: `h * targets + k`
    /// for `h` steps ahead minus one and target `k`); empty where there is none.
    pub forecast: Vec<f64>,
}

/// Replays `input` through the pipeline `config` describes, writing one row per model step to
/// `out`; with `labels` (NAB's `windows.json`), also scores the run against the input's windows.
/// Returns the [`Trace`] of the run too: it costs a few numbers per step beside the input, which
/// replay holds anyway, so a plain replay keeps it and drops it.
pub fn replay_traced(
    config: &Config,
    input: &Path,
    labels: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(ReplayOutcome, Trace), BatchError> {
    let windows = labels
        .map(|path| labels::windows_for(path, input))
        .transpose()?;
    let table = Table::read(input)?;
    let pipeline = Pipeline::new(config)?;
    let (mut detector, mut forecaster) = models(&pipeline, config)?;
    let names = column_series(&table)?;
    // What ingest would drop (no feature reads the series) is dropped here too, so the store
    // holds what it would hold live.
    let prefilter = Prefilter::new(pipeline.features.selectors());
    let kept: Vec<bool> = names
        .iter()
        .map(|n| prefilter.accepts(&[(METRIC_NAME, n.as_str())]))
        .collect();
    if !kept.iter().any(|k| *k) {
        tracing::warn!(
            columns = %names.join(", "),
            "no feature reads any column of the input: every step will be empty"
        );
    }
    let mut engine = pipeline.engine(config);
    match &forecaster {
        Some(f) => writeln!(out, "{HEADER},{}", forecast_columns(f).join(","))?,
        None => writeln!(out, "{HEADER}")?,
    }
    let feature_indices = model_features(detector.as_ref(), forecaster.as_ref());
    let mut features = traced_features(&pipeline.features, &feature_indices);
    let mut traced: Vec<TracedStep> = Vec::new();
    let mut steps: Vec<(i64, Option<bool>)> = Vec::new();
    let mut line = String::new();
    for row in &table.rows {
        for ((name, value), keep) in names.iter().zip(&row.values).zip(&kept) {
            if let (Some(v), true) = (value, keep) {
                pipeline.store.append(
                    &[(METRIC_NAME, name.as_str())],
                    &[Sample { t: row.t_ms, v: *v }],
                );
            }
        }
        for step in engine.advance(&pipeline.store, &pipeline.history) {
            // Training is inline: a model that trained at this step has new training info.
            let trained_before = (
                detector.as_ref().map(Detector::training_info),
                forecaster.as_ref().map(Forecaster::training_info),
            );
            let scored = detector.as_mut().and_then(|d| d.on_step(&step));
            let forecasts = forecaster.as_mut().and_then(|f| f.on_step(&step));
            if scored.is_none() && forecasts.is_none() {
                continue; // a step of neither model
            }
            let retrained = changed(
                trained_before.0,
                detector.as_ref().map(Detector::training_info),
            ) || changed(
                trained_before.1,
                forecaster.as_ref().map(Forecaster::training_info),
            );
            line.clear();
            line.push_str(&format_timestamp(step.t_ms));
            let strongest = scored.as_deref().and_then(strongest);
            match &strongest {
                Some(s) => line.push_str(&format!(
                    ",{},{},{}",
                    number(s.anomaly_score),
                    number(s.likelihood),
                    u8::from(s.anomaly)
                )),
                None => line.push_str(",,,"),
            }
            let first_forecast = first_forecast(forecasts.as_deref());
            if let Some(f) = &forecaster {
                push_forecast(&mut line, f, first_forecast);
            }
            writeln!(out, "{line}")?;
            if scored.is_some() {
                steps.push((step.t_ms, strongest.as_ref().map(|s| s.anomaly)));
            }
            for (feature, &i) in features.iter_mut().zip(&feature_indices) {
                feature.record(&step, i);
            }
            traced.push(TracedStep {
                t_ms: step.t_ms,
                anomaly_score: strongest.as_ref().map(|s| s.anomaly_score),
                likelihood: strongest.as_ref().map(|s| s.likelihood),
                anomaly: strongest.as_ref().is_some_and(|s| s.anomaly),
                warming_up: detector.as_ref().is_some_and(Detector::warming_up),
                retrained,
                forecast: first_forecast.map(|f| f.values.clone()).unwrap_or_default(),
            });
        }
    }
    out.flush()?;
    let row_times: Vec<i64> = table.rows.iter().map(|r| r.t_ms).collect();
    let outcome = ReplayOutcome {
        rows: table.rows.len(),
        steps: steps.len(),
        scored_steps: steps.iter().filter(|(_, f)| f.is_some()).count(),
        summary: windows
            .as_ref()
            .map(|w| labels::summarise(w, &row_times, &steps)),
    };
    let trace = Trace {
        table,
        windows,
        detector: detector.as_ref().map(|d| {
            let spec = d.spec();
            TracedDetector {
                name: spec.name.clone(),
                features: spec.features.clone(),
                step_ms: spec.step_ms,
                threshold: spec.likelihood.threshold,
            }
        }),
        forecaster: forecaster.as_ref().map(|f| {
            let spec = f.spec();
            TracedForecaster {
                name: spec.name.clone(),
                features: spec.features.clone(),
                targets: spec.targets.clone(),
                lookback: spec.window.lookback,
                horizon: spec.window.horizon,
                step_ms: spec.step_ms,
            }
        }),
        features,
        steps: traced,
    };
    Ok((outcome, trace))
}

/// Whether a model's training info was replaced during a step: it trained.
fn changed<T>(before: Option<Arc<T>>, after: Option<Arc<T>>) -> bool {
    match (before, after) {
        (Some(b), Some(a)) => !Arc::ptr_eq(&b, &a),
        _ => false,
    }
}

/// The feature indices the models read: the detector's in its order, then the forecaster's
/// others.
fn model_features(detector: Option<&Detector>, forecaster: Option<&Forecaster>) -> Vec<usize> {
    let mut indices: Vec<usize> = detector
        .map(|d| d.spec().indices.clone())
        .unwrap_or_default();
    for &i in forecaster.iter().flat_map(|f| &f.spec().indices) {
        if !indices.contains(&i) {
            indices.push(i);
        }
    }
    indices
}

fn traced_features(set: &FeatureSet, indices: &[usize]) -> Vec<TracedFeature> {
    indices
        .iter()
        .map(|&i| TracedFeature {
            name: set.features()[i].name.clone(),
            expression: set.expressions(&[i]).concat(),
            entities: 0,
            entity: String::new(),
            values: Vec::new(),
        })
        .collect()
}

impl TracedFeature {
    /// Records feature `i`'s value at `step`: its first entity's, in label order (the metric name
    /// left out, as the models' vectors leave it out), or NaN.
    fn record(&mut self, step: &StepResult, i: usize) {
        let first = step
            .values
            .get(i)
            .and_then(Option::as_ref)
            .and_then(|values| {
                self.entities = self.entities.max(values.len());
                values
                    .iter()
                    .map(|(l, v)| (l.filter(|n| n != METRIC_NAME), *v))
                    .min_by(|a, b| a.0.cmp(&b.0))
            });
        match first {
            Some((labels, v)) => {
                if !labels.is_empty() {
                    self.entity = labels.to_string();
                }
                self.values.push(v);
            }
            None => self.values.push(f64::NAN),
        }
    }
}

/// What a step's row shows of several entities: the highest score and the highest likelihood
/// (each the maximum over entities), flagged when any entity is; `None` when nothing was scored
/// (no model yet, or no complete vector).
struct Strongest {
    anomaly_score: f64,
    likelihood: f64,
    anomaly: bool,
}

fn strongest(scored: &[Scored]) -> Option<Strongest> {
    let max = |f: fn(&Scored) -> f64| scored.iter().map(f).max_by(f64::total_cmp);
    Some(Strongest {
        anomaly_score: max(|s| s.anomaly_score)?,
        likelihood: max(|s| s.likelihood)?,
        anomaly: scored.iter().any(|s| s.anomaly),
    })
}

/// The config's models as inline-training runtimes: at most one detector and one forecaster,
/// and at least one of them.
fn models(
    pipeline: &Pipeline,
    config: &Config,
) -> Result<(Option<Detector>, Option<Forecaster>), BatchError> {
    let mut detectors = pipeline.detectors(config, TrainingMode::Inline)?;
    let mut forecasters = pipeline.forecasters(config, TrainingMode::Inline)?;
    if detectors.len() > 1 || forecasters.len() > 1 || detectors.len() + forecasters.len() == 0 {
        let kinds: Vec<String> = config
            .models
            .iter()
            .map(|(n, m)| match m.kind {
                ModelKind::IsolationForest(_) => format!("{n} (isolation_forest)"),
                ModelKind::RandomForest(_) => format!("{n} (random_forest)"),
            })
            .collect();
        return Err(BatchError::ReplayModels {
            found: kinds.join(", "),
        });
    }
    Ok((detectors.pop(), forecasters.pop()))
}

/// The forecaster's output columns: `{target}_1..{target}_{horizon}` for each target.
fn forecast_columns(f: &Forecaster) -> Vec<String> {
    let spec = f.spec();
    spec.targets
        .iter()
        .flat_map(|t| (1..=spec.window.horizon).map(move |h| format!("{t}_{h}")))
        .collect()
}

/// The forecast the output shows of several entities: the first entity's, in label order.
fn first_forecast(forecasts: Option<&[Forecast]>) -> Option<&Forecast> {
    forecasts
        .into_iter()
        .flatten()
        .min_by(|a, b| a.entity.cmp(&b.entity))
}

/// Appends the forecast cells: `first`'s values, or empty cells at steps that are not the
/// forecaster's or before its first model.
fn push_forecast(line: &mut String, f: &Forecaster, first: Option<&Forecast>) {
    let spec = f.spec();
    let (n_targets, horizon) = (spec.targets.len(), spec.window.horizon);
    // Columns are target-major; the forecast's values are time-major (h * targets + k).
    for k in 0..n_targets {
        for h in 0..horizon {
            line.push(',');
            if let Some(v) = first.and_then(|fc| fc.values.get(h * n_targets + k)) {
                line.push_str(&number(*v));
            }
        }
    }
}

/// Each column's series name, refusing two columns that sanitise to the same name.
fn column_series(table: &Table) -> Result<Vec<String>, BatchError> {
    let names: Vec<String> = table.columns.iter().map(|c| series_name(c)).collect();
    for (i, a) in names.iter().enumerate() {
        if let Some(j) = names[..i].iter().position(|b| b == a) {
            return Err(BatchError::SeriesNameClash {
                first: table.columns[j].clone(),
                second: table.columns[i].clone(),
                name: a.clone(),
            });
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_become_valid_metric_names() {
        assert_eq!(series_name("value"), "value");
        assert_eq!(series_name("node:cpu_rate"), "node:cpu_rate");
        assert_eq!(series_name("cpu %"), "cpu__");
        assert_eq!(series_name("5xx-rate"), "_5xx_rate");
        assert_eq!(series_name("é"), "_");
    }

    #[test]
    fn two_columns_with_one_name_are_refused() {
        let t = Table::parse("timestamp,a-b,a_b\n1,1,1\n", "x.csv").expect("parses");
        let e = column_series(&t).expect_err("clash").to_string();
        assert!(e.contains("`a-b`") && e.contains("`a_b`"), "{e}");
    }
}
