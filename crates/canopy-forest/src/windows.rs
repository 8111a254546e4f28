//! Training windows for the forecaster, slid over one entity's feature history.
//!
//! This module owns the one layout that the `predictive-analytics` model, its KServe clients and
//! `canopy score` all share, so that it is written down exactly once:
//!
//! - the history is `steps × n_features` values, row-major, one row per model step in time order;
//!   a missing step is a row holding NaN;
//! - an input row is the `lookback` rows ending at row `i`, time-major (the oldest step's features,
//!   then the next step's, ...): `lookback · n_features` values;
//! - its output row is the next `horizon` steps of each target feature, time-major when there are
//!   several targets (step 1: t₁, t₂, ...; step 2: t₁, t₂, ...): `horizon · targets` values, so
//!   output `h · targets + k` is target `k` at row `i + 1 + h`.
//!
//! A window that touches a missing value is skipped rather than filled: the forest must not learn
//! a made-up value. Missing values are found with prefix counts, so that sliding costs one copy
//! per window, not a scan of it.

use thiserror::Error;

/// Why a window layout or a forecasting input row could not be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WindowError {
    #[error("window shape: {0}")]
    Shape(String),
    #[error("target feature index {index} is out of range: the history has {n_features} features")]
    TargetOutOfRange { index: usize, n_features: usize },
    #[error(
        "the history has {steps} steps, but a forecast from row {row} needs the {lookback} rows ending there"
    )]
    NotEnoughHistory {
        row: usize,
        lookback: usize,
        steps: usize,
    },
    #[error(
        "the {lookback} rows ending at row {row} have a missing value (row {missing_row}); no forecast is made from a gap"
    )]
    Missing {
        row: usize,
        lookback: usize,
        missing_row: usize,
    },
}

/// The shape of the windows: how far back an input row looks, how far ahead it forecasts, and
/// which features are forecast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    pub n_features: usize,
    pub lookback: usize,
    pub horizon: usize,
    /// Indices into the history's features of the forecast targets, in output order.
    pub targets: Vec<usize>,
}

impl WindowSpec {
    /// Values in one input row: `lookback · n_features`.
    pub fn n_inputs(&self) -> usize {
        self.lookback * self.n_features
    }

    /// Values in one output row: `horizon · targets`.
    pub fn n_outputs(&self) -> usize {
        self.horizon * self.targets.len()
    }

    fn validate(&self) -> Result<(), WindowError> {
        if self.n_features == 0
            || self.lookback == 0
            || self.horizon == 0
            || self.targets.is_empty()
        {
            return Err(WindowError::Shape(format!(
                "n_features ({}), lookback ({}), horizon ({}) and the number of targets ({}) must all be at least 1",
                self.n_features,
                self.lookback,
                self.horizon,
                self.targets.len()
            )));
        }
        if let Some(&index) = self.targets.iter().find(|&&t| t >= self.n_features) {
            return Err(WindowError::TargetOutOfRange {
                index,
                n_features: self.n_features,
            });
        }
        Ok(())
    }

    fn steps(&self, history: &[f64]) -> Result<usize, WindowError> {
        self.validate()?;
        if history.len() % self.n_features != 0 {
            return Err(WindowError::Shape(format!(
                "the history has {} values, not a multiple of {} features",
                history.len(),
                self.n_features
            )));
        }
        Ok(history.len() / self.n_features)
    }
}

/// Training windows: `x` is `rows × n_inputs`, `y` is `rows × n_outputs`, both row-major.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Windows {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    /// For each window, the history row its lookback ends at (its forecasts are for the rows after).
    pub end_rows: Vec<usize>,
}

impl Windows {
    pub fn rows(&self) -> usize {
        self.end_rows.len()
    }
}

/// Every complete window of `history` (steps × `spec.n_features`, row-major, time order), oldest
/// first. A window is complete when its `lookback` input rows and its `horizon` target rows are all
/// present: any NaN in the values it uses skips it.
pub fn training_windows(history: &[f64], spec: &WindowSpec) -> Result<Windows, WindowError> {
    let steps = spec.steps(history)?;
    let f = spec.n_features;
    let span = spec.lookback + spec.horizon;
    let mut out = Windows::default();
    if steps < span {
        return Ok(out);
    }
    // Rows that are unusable as input (any feature missing) or as target (any target missing);
    // counted as prefix sums so that each window is checked in O(1).
    let mut bad_input = vec![0usize; steps + 1];
    let mut bad_target = vec![0usize; steps + 1];
    for (t, row) in history.chunks_exact(f).enumerate() {
        bad_input[t + 1] = bad_input[t] + usize::from(row.iter().any(|v| v.is_nan()));
        bad_target[t + 1] =
            bad_target[t] + usize::from(spec.targets.iter().any(|&k| row[k].is_nan()));
    }
    let n = steps - span + 1;
    out.x.reserve(n * spec.n_inputs());
    out.y.reserve(n * spec.n_outputs());
    out.end_rows.reserve(n);
    for start in 0..n {
        let end = start + spec.lookback; // first target row
        if bad_input[end] != bad_input[start] || bad_target[end + spec.horizon] != bad_target[end] {
            continue;
        }
        out.x.extend_from_slice(&history[start * f..end * f]);
        for row in history[end * f..(end + spec.horizon) * f].chunks_exact(f) {
            out.y.extend(spec.targets.iter().map(|&k| row[k]));
        }
        out.end_rows.push(end - 1);
    }
    Ok(out)
}

/// Writes into `out` (length `spec.n_inputs()`) the input row made of the `lookback` history rows
/// ending at row `row` — what the forecast for rows `row + 1 ..= row + horizon` is made from.
pub fn lookback_row(
    history: &[f64],
    spec: &WindowSpec,
    row: usize,
    out: &mut [f64],
) -> Result<(), WindowError> {
    let steps = spec.steps(history)?;
    if out.len() != spec.n_inputs() {
        return Err(WindowError::Shape(format!(
            "the output buffer has {} values, expected {} (lookback {} x {} features)",
            out.len(),
            spec.n_inputs(),
            spec.lookback,
            spec.n_features
        )));
    }
    if row >= steps || row + 1 < spec.lookback {
        return Err(WindowError::NotEnoughHistory {
            row,
            lookback: spec.lookback,
            steps,
        });
    }
    let f = spec.n_features;
    let first = row + 1 - spec.lookback;
    let values = &history[first * f..(row + 1) * f];
    if let Some(pos) = values.iter().position(|v| v.is_nan()) {
        return Err(WindowError::Missing {
            row,
            lookback: spec.lookback,
            missing_row: first + pos / f,
        });
    }
    out.copy_from_slice(values);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// history[t][f] = 10·t + f, so every value names its step and feature.
    fn numbered(steps: usize, features: usize) -> Vec<f64> {
        (0..steps)
            .flat_map(|t| (0..features).map(move |f| (10 * t + f) as f64))
            .collect()
    }

    #[test]
    fn window_layout_is_time_major_for_inputs_and_outputs() {
        let spec = WindowSpec {
            n_features: 3,
            lookback: 2,
            horizon: 2,
            targets: vec![2, 0],
        };
        let w = training_windows(&numbered(5, 3), &spec).unwrap();
        assert_eq!(w.rows(), 2);
        assert_eq!(w.end_rows, vec![1, 2]);
        #[rustfmt::skip]
        let x = vec![
            0.0, 1.0, 2.0, 10.0, 11.0, 12.0,
            10.0, 11.0, 12.0, 20.0, 21.0, 22.0,
        ];
        // step +1: target 2 then target 0; step +2: target 2 then target 0
        #[rustfmt::skip]
        let y = vec![
            22.0, 20.0, 32.0, 30.0,
            32.0, 30.0, 42.0, 40.0,
        ];
        assert_eq!(w.x, x);
        assert_eq!(w.y, y);
    }

    #[test]
    fn windows_touching_a_missing_value_are_skipped() {
        let spec = WindowSpec {
            n_features: 2,
            lookback: 2,
            horizon: 1,
            targets: vec![0],
        };
        let mut h = numbered(6, 2);
        h[2 * 2 + 1] = f64::NAN; // row 2, feature 1: breaks inputs of windows ending at rows 2 and 3
        let w = training_windows(&h, &spec).unwrap();
        // windows end at rows 1..=4; ending at 1 uses rows 0,1 → 2 (fine, feature 1 is not a target)
        assert_eq!(w.end_rows, vec![1, 4]);
        h[5 * 2] = f64::NAN; // row 5, the target of the window ending at row 4
        let w = training_windows(&h, &spec).unwrap();
        assert_eq!(w.end_rows, vec![1]);
        assert_eq!(w.y, vec![20.0]);
    }

    #[test]
    fn lookback_row_matches_the_training_window_inputs() {
        let spec = WindowSpec {
            n_features: 2,
            lookback: 3,
            horizon: 2,
            targets: vec![1],
        };
        let h = numbered(8, 2);
        let w = training_windows(&h, &spec).unwrap();
        let mut row = vec![0.0; spec.n_inputs()];
        for (k, &end) in w.end_rows.iter().enumerate() {
            lookback_row(&h, &spec, end, &mut row).unwrap();
            assert_eq!(row, w.x[k * 6..(k + 1) * 6]);
        }
        // the last row has no targets after it, but can still be forecast from
        lookback_row(&h, &spec, 7, &mut row).unwrap();
        assert_eq!(row, vec![50.0, 51.0, 60.0, 61.0, 70.0, 71.0]);
        assert_eq!(
            lookback_row(&h, &spec, 1, &mut row),
            Err(WindowError::NotEnoughHistory {
                row: 1,
                lookback: 3,
                steps: 8
            })
        );
        let mut gap = h.clone();
        gap[4 * 2] = f64::NAN;
        assert_eq!(
            lookback_row(&gap, &spec, 5, &mut row),
            Err(WindowError::Missing {
                row: 5,
                lookback: 3,
                missing_row: 4
            })
        );
    }

    #[test]
    fn bad_shapes_are_errors_that_say_what_is_wrong() {
        let spec = WindowSpec {
            n_features: 3,
            lookback: 2,
            horizon: 1,
            targets: vec![3],
        };
        assert_eq!(
            training_windows(&numbered(4, 3), &spec)
                .unwrap_err()
                .to_string(),
            "target feature index 3 is out of range: the history has 3 features"
        );
        let spec = WindowSpec {
            targets: vec![0],
            ..spec
        };
        assert_eq!(
            training_windows(&[1.0; 7], &spec).unwrap_err().to_string(),
            "window shape: the history has 7 values, not a multiple of 3 features"
        );
        let mut short = vec![0.0; 5];
        assert!(matches!(
            lookback_row(&numbered(4, 3), &spec, 3, &mut short),
            Err(WindowError::Shape(_))
        ));
        // too short for any window: no windows, not an error
        assert_eq!(training_windows(&numbered(2, 3), &spec).unwrap().rows(), 0);
    }
}
