//! `canopy score`: fit a model on every row of one CSV and score every row of another, as
//! scikit-learn's `fit` and `score_samples` / `decision_function` / `predict` would.
//!
//! The CSV's columns are matched to the model's features by name, and the model sees them in
//! its configured order whatever the file's order. A row with a missing feature value is left
//! out of the fit (scikit-learn refuses NaN) and gets empty cells in the output.

use std::io::Write;
use std::path::Path;

use super::{BatchError, number};
use crate::config::{Config, ModelConfig, ModelKind};
use crate::model::detector::forest_params;
use crate::model::iforest::IsolationForest;
use crate::source::csv::{Table, format_timestamp};

/// The detector's output header.
pub const DETECTOR_HEADER: &str = "timestamp,score_samples,decision_function,predict,anomaly_score";

/// Fits `model` on `fit` and writes one output row per `input` row (in time order) to `out`.
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
            let forest =
                IsolationForest::fit(&forest_params(m, forest), &rows, n).map_err(forest_err)?;
            let (rows, complete) = complete_rows(&input_table, &input_cols);
            let scores = forest.score_samples(&rows).map_err(forest_err)?;
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
        ModelKind::RandomForest(_) => Err(BatchError::UnsupportedKind {
            model: model.to_owned(),
            kind: "random_forest",
            command: "score",
        }),
    }
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
