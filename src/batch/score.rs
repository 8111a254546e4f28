//! `canopy score`: fit a model on every row of one CSV and score every row of another, as
//! scikit-learn's `fit` and `score_samples` / `decision_function` / `predict` would.
//!
//! The forecaster's output is `timestamp,{target}_1,…,{target}_{horizon}` for each target:
//! `{target}_h` is the forecast for row i + h, made from the `lookback` rows ending at row i
//! (the layout of [`crate::model::windows`]).
//!
//! The CSV's columns are matched to the model's features by name, and the model sees them in
//! its configured order whatever the file's order. A row with a missing feature value is left
//! out of the fit (scikit-learn refuses NaN) and gets empty cells in the output.

use std::io::Write;
use std::path::Path;

use super::{BatchError, number};
use crate::config::{Config, ModelConfig, ModelKind, RandomForestConfig};
use crate::live::detector::forest_params;
use crate::live::forecaster::{forest_params as forest_params_rf, window_spec};
use crate::model::iforest::IsolationForest;
use crate::model::matrix::row_major;
use crate::model::rforest::{RandomForestError, RandomForestRegressor};
use crate::model::windows::{WindowError, lookback_row, training_windows};
use crate::source::csv::{Table, format_timestamp};

/// The detector's output header.
pub(crate) const DETECTOR_HEADER: &str =
    "timestamp,score_samples,decision_function,predict,anomaly_score";

/// Fits `model` on `fit` and writes one output row per `input` row (in time order) to `out`:
/// the detector's scores, or the forecaster's forecasts.
pub fn score(
    config: &Config,
    model: &str,
    fit: &Path,
    input: &Path,
    out: &mut dyn Write,
) -> Result<(), BatchError> {
    let m = config
        .models
        .get(model)
        .ok_or_else(|| BatchError::UnknownModel {
            name: model.to_owned(),
            available: config.models.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
    let fit_table = Table::read(fit)?;
    let input_table = Table::read(input)?;
    match &m.kind {
        ModelKind::IsolationForest(forest) => {
            let n = m.features.len();
            let fit_cols = feature_columns(&fit_table, fit, model, m)?;
            let input_cols = feature_columns(&input_table, input, model, m)?;
            let (rows, _) = complete_rows(&fit_table, &fit_cols);
            if rows.is_empty() {
                return Err(BatchError::NoCompleteRows {
                    file: fit.display().to_string(),
                    model: model.to_owned(),
                });
            }
            let forest_err = |source| BatchError::Forest {
                model: model.to_owned(),
                source,
            };
            let fit_rows = row_major(&rows, n).map_err(|e| forest_err(e.into()))?;
            let forest =
                IsolationForest::fit(&forest_params(m, forest), fit_rows).map_err(forest_err)?;
            let (rows, complete) = complete_rows(&input_table, &input_cols);
            let input_rows = row_major(&rows, n).map_err(|e| forest_err(e.into()))?;
            let scores = forest.score_samples(input_rows).map_err(forest_err)?;
            writeln!(out, "{DETECTOR_HEADER}")?;
            let mut scored = scores.iter();
            for (row, has) in input_table.rows.iter().zip(complete) {
                let t = format_timestamp(row.t_ms);
                match if has { scored.next() } else { None } {
                    Some(&s) => {
                        let d = s - forest.offset();
                        let predict = if d < 0.0 { -1 } else { 1 };
                        writeln!(
                            out,
                            "{t},{},{},{predict},{}",
                            number(s),
                            number(d),
                            number(-s)
                        )?;
                    }
                    None => writeln!(out, "{t},,,,")?,
                }
            }
            Ok(())
        }
        ModelKind::RandomForest(forest) => forecast(
            model,
            m,
            forest,
            (&fit_table, fit),
            (&input_table, input),
            out,
        ),
    }
}

/// The forecaster: fits on every complete window of the fit file (rows taken as consecutive
/// steps), then forecasts from the `lookback` rows ending at each input row. A row without
/// `lookback` rows of history, or with a missing value among them, gets empty cells.
fn forecast(
    name: &str,
    model: &ModelConfig,
    forest: &RandomForestConfig,
    (fit_table, fit): (&Table, &Path),
    (input_table, input): (&Table, &Path),
    out: &mut dyn Write,
) -> Result<(), BatchError> {
    let spec = window_spec(model, forest).map_err(|target| BatchError::Window {
        model: name.to_owned(),
        reason: format!("target `{target}` is not one of the model's features"),
    })?;
    let window_err = |e: WindowError| BatchError::Window {
        model: name.to_owned(),
        reason: e.to_string(),
    };
    let fit_history = history(fit_table, &feature_columns(fit_table, fit, name, model)?);
    let windows = training_windows(&fit_history, &spec).map_err(window_err)?;
    if windows.rows() == 0 {
        return Err(BatchError::NoWindows {
            file: fit.display().to_string(),
            model: name.to_owned(),
            span: spec.lookback + spec.horizon,
        });
    }
    let regressor_err = |source| BatchError::Regressor {
        model: name.to_owned(),
        source,
    };
    let fitted = row_major(&windows.x, spec.n_inputs())
        .and_then(|x| Ok((x, row_major(&windows.y, spec.n_outputs())?)))
        .map_err(RandomForestError::from)
        .and_then(|(x, y)| RandomForestRegressor::fit(&forest_params_rf(model, forest), x, y));
    let regressor = fitted.map_err(regressor_err)?;
    let header: Vec<String> = forest
        .target
        .iter()
        .flat_map(|t| (1..=spec.horizon).map(move |h| format!("{t}_{h}")))
        .collect();
    writeln!(out, "timestamp,{}", header.join(","))?;
    let input_history = history(
        input_table,
        &feature_columns(input_table, input, name, model)?,
    );
    let (mut row_in, mut values) = (vec![0.0; spec.n_inputs()], vec![0.0; spec.n_outputs()]);
    let n_targets = spec.targets.len();
    for (i, row) in input_table.rows.iter().enumerate() {
        write!(out, "{}", format_timestamp(row.t_ms))?;
        let predicted = lookback_row(&input_history, &spec, i, &mut row_in).is_ok()
            && regressor.predict_row(&row_in, &mut values).is_ok();
        // Columns are target-major (every horizon of the first target, then the next); the
        // forest's outputs are time-major: output h * targets + k is target k, h + 1 ahead.
        for k in 0..n_targets {
            for h in 0..spec.horizon {
                if predicted {
                    write!(out, ",{}", number(values[h * n_targets + k]))?;
                } else {
                    write!(out, ",")?;
                }
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

/// The table's values of `cols` as a row-major history, a missing value as NaN (what the window
/// functions skip).
fn history(table: &Table, cols: &[usize]) -> Vec<f64> {
    let mut out = Vec::with_capacity(table.rows.len() * cols.len());
    for row in &table.rows {
        out.extend(cols.iter().map(|&c| row.values[c].unwrap_or(f64::NAN)));
    }
    out
}

/// The table's column index of each of the model's features, in the model's order.
fn feature_columns(
    table: &Table,
    file: &Path,
    name: &str,
    model: &ModelConfig,
) -> Result<Vec<usize>, BatchError> {
    model
        .features
        .iter()
        .map(|f| {
            table.column(f).ok_or_else(|| BatchError::MissingColumn {
                file: file.display().to_string(),
                column: f.clone(),
                model: name.to_owned(),
                features: model.features.join(", "),
                found: table.columns.join(", "),
            })
        })
        .collect()
}

/// Row-major values of the rows that have every column in `cols`, and per table row whether it
/// was complete (so a caller can line scores up with rows).
fn complete_rows(table: &Table, cols: &[usize]) -> (Vec<f64>, Vec<bool>) {
    let mut values = Vec::with_capacity(table.rows.len() * cols.len());
    let mut complete = Vec::with_capacity(table.rows.len());
    for row in &table.rows {
        let picked: Option<Vec<f64>> = cols.iter().map(|&c| row.values[c]).collect();
        complete.push(picked.is_some());
        values.extend(picked.into_iter().flatten());
    }
    (values, complete)
}
