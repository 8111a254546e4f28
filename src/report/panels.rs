//! What a report draws of one replayed file, top to bottom in the order an operator tuning
//! features reads it: each input column, each feature the models read, the anomaly score, the
//! likelihood against the alert threshold, and each forecast target against its forecast. Turns a
//! [`Trace`] into downsampled [`Panel`]s; drawing them is [`super::chart`]'s job.

use std::collections::HashMap;

use plotters::style::RGBColor;

use super::chart::{Frame, Line, Panel, Scale, Shading, likelihood_y};
use super::downsample::{at_or_before, pick};
use crate::batch::labels;
use crate::batch::replay::Trace;

/// A panel with the words above it.
#[derive(Debug, Clone)]
pub(crate) struct Titled {
    pub(crate) title: String,
    /// A second line: the expression, the entity drawn, a forecast's error.
    pub(crate) note: String,
    pub(crate) panel: Panel,
}

const COLUMN: RGBColor = RGBColor(0x1F, 0x5F, 0xA8);
const FEATURE: RGBColor = RGBColor(0x00, 0x7C, 0x89);
const SCORE: RGBColor = RGBColor(0x6A, 0x3D, 0x9A);
const LIKELIHOOD: RGBColor = RGBColor(0x33, 0x33, 0x33);
const ACTUAL: RGBColor = RGBColor(0x55, 0x55, 0x55);
pub(crate) const FORECAST: RGBColor = RGBColor(0xC2, 0x18, 0x5B);

/// The time axis of `trace`: its first row to its last.
pub(crate) fn frame(trace: &Trace, width: u32) -> Frame {
    let times = trace.table.rows.iter().map(|r| r.t_ms);
    let t0 = times.clone().min().unwrap_or(0);
    let t1 = times.max().unwrap_or(0).max(t0 + 1);
    Frame { t0, t1, width }
}

/// The labelled windows, and NAB's probation when there are labels (it only means something
/// to the scoring).
pub(crate) fn shading(trace: &Trace, frame: &Frame) -> Shading {
    let Some(windows) = &trace.windows else {
        return Shading::default();
    };
    let rows = &trace.table.rows;
    let probation = labels::probation_rows(rows.len());
    Shading {
        windows: windows.iter().map(|w| (w.start_ms, w.end_ms)).collect(),
        probation: (probation > 0).then(|| {
            let end = rows.get(probation).map_or(frame.t1, |r| r.t_ms);
            (frame.t0, end)
        }),
    }
}

/// Every panel of `trace`, the forecasts at `horizon` steps ahead.
pub(crate) fn panels(trace: &Trace, frame: &Frame, horizon: usize) -> Vec<Titled> {
    let step_times: Vec<i64> = trace.steps.iter().map(|s| s.t_ms).collect();
    let flagged: Vec<usize> = (0..trace.steps.len())
        .filter(|&i| trace.steps[i].anomaly)
        .collect();
    let edges: Vec<i64> = trace
        .windows
        .iter()
        .flatten()
        .flat_map(|w| [w.start_ms, w.end_ms])
        .collect();
    // The steps every line of steps keeps: flagged ones and those at window edges.
    let mut step_keep = flagged.clone();
    step_keep.extend(edges_in(&step_times, &edges));
    let columns = frame.columns();

    let mut out = Vec::new();
    let row_times: Vec<i64> = trace.table.rows.iter().map(|r| r.t_ms).collect();
    let mut row_keep: Vec<usize> = flagged
        .iter()
        .filter_map(|&i| at_or_before(&row_times, step_times[i]))
        .collect();
    row_keep.extend(edges_in(&row_times, &edges));
    for (c, name) in trace.table.columns.iter().enumerate() {
        let values: Vec<f64> = trace
            .table
            .rows
            .iter()
            .map(|r| r.values.get(c).copied().flatten().unwrap_or(f64::NAN))
            .collect();
        let points = thin(&row_times, &values, frame, columns, &row_keep);
        let flags = flagged
            .iter()
            .filter_map(|&i| {
                let t = step_times[i];
                at_or_before(&row_times, t).map(|r| (t, values[r]))
            })
            .filter(|(_, v)| v.is_finite())
            .collect();
        out.push(Titled {
            title: format!("input column `{name}`"),
            note: format!(
                "the series `{}` replay feeds the features",
                crate::batch::replay::series_name(name)
            ),
            panel: line_panel(130, vec![(COLUMN, points)], flags),
        });
    }

    for feature in &trace.features {
        let points = thin(&step_times, &feature.values, frame, columns, &step_keep);
        let flags = flagged
            .iter()
            .map(|&i| (step_times[i], feature.values[i]))
            .filter(|(_, v)| v.is_finite())
            .collect();
        let mut note = feature.expression.clone();
        if feature.entities > 1 {
            note.push_str(&format!(
                " (first of {} entities: {})",
                feature.entities, feature.entity
            ));
        }
        out.push(Titled {
            title: format!("feature `{}`", feature.name),
            note,
            panel: line_panel(110, vec![(FEATURE, points)], flags),
        });
    }

    if let Some(detector) = &trace.detector {
        let score: Vec<f64> = trace
            .steps
            .iter()
            .map(|s| s.anomaly_score.unwrap_or(f64::NAN))
            .collect();
        let likelihood: Vec<f64> = trace
            .steps
            .iter()
            .map(|s| s.likelihood.map_or(f64::NAN, likelihood_y))
            .collect();
        let warm_up = warm_up(trace, frame);
        let retrains: Vec<i64> = trace
            .steps
            .iter()
            .filter(|s| s.retrained)
            .map(|s| s.t_ms)
            .collect();
        let mut panel = line_panel(
            110,
            vec![(SCORE, thin(&step_times, &score, frame, columns, &step_keep))],
            flagged.iter().map(|&i| (step_times[i], score[i])).collect(),
        );
        panel.retrains = retrains;
        panel.warm_up = warm_up;
        out.push(Titled {
            title: format!("anomaly score s of `{}`", detector.name),
            note: "the forest's score in 0..1 (higher is rarer); ticks at the top: the steps where a model retrained".to_owned(),
            panel,
        });
        let threshold = likelihood_y(detector.threshold);
        let top = likelihood
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(threshold + 0.5, f64::max);
        out.push(Titled {
            title: format!(
                "anomaly likelihood of `{}`, alert at {}",
                detector.name, detector.threshold
            ),
            note: "drawn at -log10(1 - likelihood), so 0.9, 0.99 and 0.999 are equally spaced; red: flagged steps".to_owned(),
            panel: Panel {
                height: 150,
                scale: Scale::Likelihood,
                y: (0.0, top.clamp(3.0, 6.0)),
                lines: vec![Line {
                    colour: LIKELIHOOD,
                    points: thin(&step_times, &likelihood, frame, columns, &step_keep),
                }],
                flags: flagged
                    .iter()
                    .map(|&i| (step_times[i], likelihood[i]))
                    .collect(),
                threshold: Some(threshold),
                retrains: Vec::new(),
                warm_up,
            },
        });
    }

    if let Some(forecaster) = &trace.forecaster {
        let n_targets = forecaster.targets.len();
        for (k, target) in forecaster.targets.iter().enumerate() {
            let Some(actual) = trace.features.iter().find(|f| &f.name == target) else {
                continue;
            };
            let ahead = forecaster.step_ms * horizon as i64;
            let (mut times, mut values) = (Vec::new(), Vec::new());
            for s in &trace.steps {
                times.push(s.t_ms + ahead);
                values.push(
                    s.forecast
                        .get((horizon - 1) * n_targets + k)
                        .copied()
                        .unwrap_or(f64::NAN),
                );
            }
            let at: HashMap<i64, f64> = step_times
                .iter()
                .copied()
                .zip(actual.values.iter().copied())
                .collect();
            let errors: Vec<f64> = times
                .iter()
                .zip(&values)
                .filter_map(|(t, f)| at.get(t).map(|a| (a - f).abs()))
                .filter(|e| e.is_finite())
                .collect();
            let error = if errors.is_empty() {
                "no forecast to compare yet".to_owned()
            } else {
                format!(
                    "mean absolute error {} over {} steps",
                    super::chart::short_number(errors.iter().sum::<f64>() / errors.len() as f64),
                    errors.len()
                )
            };
            // Forecasts past the file's end are not drawn.
            let inside = times.partition_point(|&t| t <= frame.t1);
            let lines = vec![
                (
                    ACTUAL,
                    thin(&step_times, &actual.values, frame, columns, &step_keep),
                ),
                (
                    FORECAST,
                    thin(&times[..inside], &values[..inside], frame, columns, &[]),
                ),
            ];
            out.push(Titled {
                title: format!(
                    "forecast of `{target}` {horizon} step{} ahead by `{}`, against the actual value",
                    if horizon == 1 { "" } else { "s" },
                    forecaster.name
                ),
                note: format!(
                    "grey: the feature; pink: what was forecast for that time; {error}"
                ),
                panel: line_panel(140, lines, Vec::new()),
            });
        }
    }
    out
}

/// A plain panel of lines, its value range fitted to them.
fn line_panel(
    height: u32,
    lines: Vec<(RGBColor, Vec<(i64, f64)>)>,
    flags: Vec<(i64, f64)>,
) -> Panel {
    let y = value_range(lines.iter().flat_map(|(_, p)| p.iter().map(|(_, v)| *v)));
    Panel {
        height,
        scale: Scale::Linear,
        y,
        lines: lines
            .into_iter()
            .map(|(colour, points)| Line { colour, points })
            .collect(),
        flags,
        threshold: None,
        retrains: Vec::new(),
        warm_up: None,
    }
}

/// The points of a series worth drawing (see [`pick`]).
fn thin(
    times: &[i64],
    values: &[f64],
    frame: &Frame,
    columns: usize,
    keep: &[usize],
) -> Vec<(i64, f64)> {
    pick(times, values, (frame.t0, frame.t1), columns, keep)
        .into_iter()
        .map(|i| (times[i], values[i]))
        .collect()
}

/// The indices of `times` at each edge: the last at or before it and the first after it, so a
/// line reaches both sides of a window's edge.
fn edges_in(times: &[i64], edges: &[i64]) -> Vec<usize> {
    edges
        .iter()
        .flat_map(|&t| {
            let before = at_or_before(times, t);
            let after = before.map_or(0, |i| i + 1);
            before
                .into_iter()
                .chain((after < times.len()).then_some(after))
        })
        .collect()
}

/// The detector's warm-up: from the file's start to its first step that may flag (the end of
/// the file if none may).
fn warm_up(trace: &Trace, frame: &Frame) -> Option<(i64, i64)> {
    let end = trace
        .steps
        .iter()
        .find(|s| !s.warming_up)
        .map_or(frame.t1, |s| s.t_ms);
    (end > frame.t0).then_some((frame.t0, end))
}

/// The range of `values` with a margin of 5% each side; a flat series gets a range around it.
fn value_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return (0.0, 1.0);
    }
    if lo == hi {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_ranges_have_room() {
        assert_eq!(value_range([1.0, f64::NAN, 3.0].into_iter()), (0.9, 3.1));
        assert_eq!(value_range([5.0].into_iter()), (4.5, 5.5));
        assert_eq!(value_range([0.0].into_iter()), (-1.0, 1.0));
        assert_eq!(value_range(std::iter::empty()), (0.0, 1.0));
    }

    #[test]
    fn both_sides_of_an_edge_are_kept() {
        let times = [0, 10, 20, 30];
        assert_eq!(edges_in(&times, &[15, 30, -5]), [1, 2, 3, 0]);
    }
}
