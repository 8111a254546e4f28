//! One panel of a report as SVG, drawn with plotters' SVG backend.
//!
//! Every panel of a file shares its time axis and its left margin, so a time is at the same x in
//! each. A panel is drawn as layers, each a plotters chart of the same frame (so the same
//! coordinates) inside a `<g class="...">` of one outer `<svg>`: the mesh, the probation, the
//! warm-up, the labelled windows, the lines, the threshold, the retrains and the flagged steps.
//! The classes and the outer element's `data-*` mapping (times and values to pixels) let a reader
//! or a test find each thing drawn. Knows nothing of replay: it draws what [`Panel`] says.

use std::fmt::Write as _;

use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::types::{RangedCoordf64, RangedCoordi64};
use plotters::prelude::*;

use super::ReportError;
use crate::source::csv::format_timestamp;

/// The shared time axis of a file's panels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    pub(crate) t0: i64,
    pub(crate) t1: i64,
    /// The panel's width in pixels.
    pub(crate) width: u32,
}

/// The pixels left of the plotting area (the value labels); the same for every panel, which is
/// what aligns their time axes.
const LEFT: u32 = 64;
const RIGHT: u32 = 12;
const BOTTOM: u32 = 20;
const TOP: u32 = 6;

impl Frame {
    /// The plotting area's width in pixels: the number of columns to downsample to.
    pub(crate) fn columns(&self) -> usize {
        self.width.saturating_sub(LEFT + RIGHT).max(1) as usize
    }
}

/// How a panel's values are placed vertically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scale {
    Linear,
    /// A likelihood `L` in 0..1 drawn at `-log10(1 - L)`: 0.9, 0.99 and 0.999 equally spaced,
    /// so the tail where the threshold lives is readable. [`likelihood_y`] maps it.
    Likelihood,
}

/// The deepest likelihood drawn: `1 - 1e-6`.
const LIKELIHOOD_FLOOR: f64 = 1e-6;

/// Where a likelihood is drawn on a [`Scale::Likelihood`] panel.
pub(crate) fn likelihood_y(l: f64) -> f64 {
    -(1.0 - l).max(LIKELIHOOD_FLOOR).log10()
}

/// One line of a panel; a NaN value breaks it.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) colour: RGBColor,
    pub(crate) points: Vec<(i64, f64)>,
}

/// What one panel shows, in the panel's own units (already scaled).
#[derive(Debug, Clone)]
pub(crate) struct Panel {
    pub(crate) height: u32,
    pub(crate) scale: Scale,
    /// The value range, bottom to top.
    pub(crate) y: (f64, f64),
    pub(crate) lines: Vec<Line>,
    /// Flagged steps, each at its value on the panel's first line.
    pub(crate) flags: Vec<(i64, f64)>,
    pub(crate) threshold: Option<f64>,
    /// Steps where a model trained, ticked at the top.
    pub(crate) retrains: Vec<i64>,
    /// The detector's warm-up (it cannot flag there).
    pub(crate) warm_up: Option<(i64, i64)>,
}

/// What every panel of a file shades: the labelled windows and NAB's probation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shading {
    pub(crate) windows: Vec<(i64, i64)>,
    pub(crate) probation: Option<(i64, i64)>,
}

pub(crate) const WINDOW: RGBColor = RGBColor(0xE4, 0x57, 0x2E);
pub(crate) const PROBATION: RGBColor = RGBColor(0x80, 0x80, 0x80);
pub(crate) const WARM_UP: RGBColor = RGBColor(0xC9, 0xA2, 0x27);
pub(crate) const FLAG: RGBColor = RGBColor(0xD0, 0x10, 0x10);
pub(crate) const THRESHOLD: RGBColor = RGBColor(0xE0, 0x8A, 0x00);
pub(crate) const RETRAIN: RGBColor = RGBColor(0x2E, 0x7D, 0x32);

type Chart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<WithKeyPoints<RangedCoordi64>, RangedCoordf64>>;
type Drawn = Result<(), String>;

/// The pixel mapping of a panel's plotting area: the times `t0`, `t1` at `x0`, `x1`, the values
/// `v0`, `v1` at `y0`, `y1`.
struct Mapping {
    x: (i32, i32),
    y: (i32, i32),
}

/// Draws `panel` on `frame`'s time axis with `shading` beneath it.
pub(crate) fn render(
    panel: &Panel,
    frame: &Frame,
    shading: &Shading,
) -> Result<String, ReportError> {
    let (v0, v1) = panel.y;
    let (mesh, mapping) = layer(frame, panel, true, |_| Ok(()))?;
    let mut svg = String::with_capacity(mesh.len() * 2);
    // Writing to a String cannot fail.
    let _ = write!(
        svg,
        r#"<svg class="panel" width="{w}" height="{h}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg" data-scale="{scale}" data-t0="{t0}" data-t1="{t1}" data-x0="{x0}" data-x1="{x1}" data-v0="{v0}" data-v1="{v1}" data-y0="{y0}" data-y1="{y1}">"#,
        w = frame.width,
        h = panel.height,
        scale = match panel.scale {
            Scale::Linear => "linear",
            Scale::Likelihood => "likelihood",
        },
        t0 = frame.t0,
        t1 = frame.t1,
        x0 = mapping.x.0,
        x1 = mapping.x.1,
        y0 = mapping.y.0,
        y1 = mapping.y.1,
    );
    group(&mut svg, "mesh", &mesh);
    let band = |c: &mut Chart, (a, b): (i64, i64), colour: RGBColor, alpha: f64| {
        let (a, b) = (a.max(frame.t0), b.min(frame.t1));
        if a > b {
            return Ok(());
        }
        c.draw_series(std::iter::once(Rectangle::new(
            [(a, v0), (b, v1)],
            colour.mix(alpha).filled(),
        )))
        .map(drop)
        .map_err(|e| e.to_string())
    };
    if let Some(p) = shading.probation {
        let (g, _) = layer(frame, panel, false, |c| band(c, p, PROBATION, 0.22))?;
        group(&mut svg, "probation", &g);
    }
    if let Some(w) = panel.warm_up {
        let (g, _) = layer(frame, panel, false, |c| band(c, w, WARM_UP, 0.15))?;
        group(&mut svg, "warm-up", &g);
    }
    if !shading.windows.is_empty() {
        let (g, _) = layer(frame, panel, false, |c| {
            shading
                .windows
                .iter()
                .try_for_each(|&w| band(c, w, WINDOW, 0.2))
        })?;
        group(&mut svg, "windows", &g);
    }
    let (g, _) = layer(frame, panel, false, |c| {
        for line in &panel.lines {
            for segment in line
                .points
                .split(|(_, v)| !v.is_finite())
                .filter(|s| !s.is_empty())
            {
                c.draw_series(LineSeries::new(segment.iter().copied(), line.colour))
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    })?;
    group(&mut svg, "lines", &g);
    if let Some(threshold) = panel.threshold {
        let (g, _) = layer(frame, panel, false, |c| {
            c.draw_series(LineSeries::new(
                [(frame.t0, threshold), (frame.t1, threshold)],
                THRESHOLD.stroke_width(2),
            ))
            .map(drop)
            .map_err(|e| e.to_string())
        })?;
        group(&mut svg, "threshold", &g);
    }
    if !panel.retrains.is_empty() {
        let (g, _) = layer(frame, panel, false, |c| {
            let tick = (v1 - v0) * 0.12;
            let ticks = one_per_column(&panel.retrains, frame);
            c.draw_series(
                ticks
                    .into_iter()
                    .map(|t| PathElement::new([(t, v1), (t, v1 - tick)], RETRAIN.stroke_width(1))),
            )
            .map(drop)
            .map_err(|e| e.to_string())
        })?;
        group(&mut svg, "retrains", &g);
    }
    if !panel.flags.is_empty() {
        let (g, _) = layer(frame, panel, false, |c| {
            c.draw_series(
                panel
                    .flags
                    .iter()
                    .map(|&(t, v)| Circle::new((t, v.clamp(v0, v1)), 3, FLAG.filled())),
            )
            .map(drop)
            .map_err(|e| e.to_string())
        })?;
        group(&mut svg, "flags", &g);
    }
    svg.push_str("</svg>");
    Ok(svg)
}

/// Wraps one layer's SVG in a group named `class`.
fn group(svg: &mut String, class: &str, layer: &str) {
    let _ = write!(svg, r#"<g class="{class}">"#);
    svg.push_str(layer);
    svg.push_str("</g>");
}

/// The times of `ts` thinned to one per pixel column: a tick per retrain would draw the same
/// pixel many times over on a long file.
fn one_per_column(ts: &[i64], frame: &Frame) -> Vec<i64> {
    let span = (frame.t1 - frame.t0).max(1) as f64;
    let columns = frame.columns() as f64;
    let mut last = None;
    ts.iter()
        .copied()
        .filter(|&t| {
            let column = ((t - frame.t0) as f64 / span * columns) as i64;
            last.replace(column) != Some(column)
        })
        .collect()
}

/// One layer: a plotters chart of `frame` and `panel`'s value range, with the background, axes
/// and labels when `mesh`, then what `draw` draws. Every layer of a panel is built alike, so they
/// share their coordinates.
fn layer(
    frame: &Frame,
    panel: &Panel,
    mesh: bool,
    draw: impl FnOnce(&mut Chart) -> Drawn,
) -> Result<(String, Mapping), ReportError> {
    let mut svg = String::new();
    let mapping = {
        let root =
            SVGBackend::with_string(&mut svg, (frame.width, panel.height)).into_drawing_area();
        if mesh {
            root.fill(&WHITE).map_err(ReportError::draw)?;
        }
        let mut chart = ChartBuilder::on(&root)
            .margin_top(TOP)
            .margin_right(RIGHT)
            .x_label_area_size(BOTTOM)
            .y_label_area_size(LEFT)
            .build_cartesian_2d(
                (frame.t0..frame.t1).with_key_points(time_ticks(frame.t0, frame.t1)),
                panel.y.0..panel.y.1,
            )
            .map_err(ReportError::draw)?;
        if mesh {
            let every = tick_interval(frame.t1 - frame.t0);
            let time = |t: &i64| time_label(*t, every);
            let value = |v: &f64| match panel.scale {
                Scale::Linear => short_number(*v),
                Scale::Likelihood => likelihood_label(*v),
            };
            chart
                .configure_mesh()
                .x_labels(8)
                .y_labels(if panel.scale == Scale::Likelihood {
                    7
                } else {
                    4
                })
                .x_label_formatter(&time)
                .y_label_formatter(&value)
                .light_line_style(WHITE)
                .bold_line_style(RGBColor(0xE6, 0xE6, 0xE6))
                .axis_style(RGBColor(0x99, 0x99, 0x99))
                .label_style(
                    ("sans-serif", 11)
                        .into_font()
                        .color(&RGBColor(0x44, 0x44, 0x44)),
                )
                .draw()
                .map_err(ReportError::draw)?;
        }
        draw(&mut chart).map_err(ReportError::draw)?;
        let (x0, y0) = chart.backend_coord(&(frame.t0, panel.y.0));
        let (x1, y1) = chart.backend_coord(&(frame.t1, panel.y.1));
        root.present().map_err(ReportError::draw)?;
        Mapping {
            x: (x0, x1),
            y: (y0, y1),
        }
    };
    Ok((svg, mapping))
}

/// Tick intervals on a time axis: whole minutes, hours and days, so ticks fall on round times.
const TICK_INTERVALS_MS: [i64; 15] = [
    60_000,
    300_000,
    900_000,
    1_800_000,
    3_600_000,
    3 * 3_600_000,
    6 * 3_600_000,
    12 * 3_600_000,
    86_400_000,
    2 * 86_400_000,
    7 * 86_400_000,
    14 * 86_400_000,
    28 * 86_400_000,
    91 * 86_400_000,
    364 * 86_400_000,
];

/// The interval between time ticks over `span_ms`: the shortest that gives at most 8 ticks.
fn tick_interval(span_ms: i64) -> i64 {
    TICK_INTERVALS_MS
        .iter()
        .copied()
        .find(|every| span_ms / every <= 8)
        .unwrap_or(TICK_INTERVALS_MS[TICK_INTERVALS_MS.len() - 1])
}

/// The time ticks within `t0..=t1`: the multiples of [`tick_interval`] (UTC midnights for days).
fn time_ticks(t0: i64, t1: i64) -> Vec<i64> {
    let every = tick_interval(t1 - t0);
    let first = t0.div_euclid(every) * every + if t0.rem_euclid(every) == 0 { 0 } else { every };
    (0..)
        .map(|k| first + k * every)
        .take_while(|&t| t <= t1)
        .collect()
}

/// A time tick's label: the date when ticks are days apart, else the time of day, with the date
/// where a day has several ticks but the axis spans several days.
fn time_label(t: i64, every_ms: i64) -> String {
    let full = format_timestamp(t);
    let day = 86_400_000;
    let range = if every_ms >= day {
        0..10
    } else if every_ms >= 3 * 3_600_000 {
        5..16
    } else {
        11..16
    };
    full.get(range).unwrap_or(&full).to_owned()
}

/// A value label: three significant digits, with k, M or G past a thousand.
pub(crate) fn short_number(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let digits = if scaled.abs() >= 100.0 || scaled == 0.0 {
        0
    } else if scaled.abs() >= 10.0 {
        1
    } else if scaled.abs() >= 0.01 {
        2
    } else {
        4
    };
    let text = format!("{scaled:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{suffix}")
}

/// The likelihood at height `y` of a [`Scale::Likelihood`] panel, `1 - 10^-y`, labelled at whole
/// heights only (0, 0.9, 0.99, ...): the ticks between would read 0.68, 0.968.
fn likelihood_label(y: f64) -> String {
    if (y - y.round()).abs() > 1e-9 {
        return String::new();
    }
    let l = 1.0 - 10f64.powf(-y);
    let digits = (y.ceil().max(1.0) as usize + 1).min(7);
    let text = format!("{l:.digits$}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_short() {
        assert_eq!(short_number(0.0), "0");
        assert_eq!(short_number(0.126), "0.13");
        assert_eq!(short_number(12.34), "12.3");
        assert_eq!(short_number(-2500.0), "-2.5k");
        assert_eq!(short_number(3.2e8), "320M");
        assert_eq!(likelihood_label(0.0), "0");
        assert_eq!(likelihood_label(1.0), "0.9");
        assert_eq!(likelihood_label(2.0), "0.99");
        assert_eq!(likelihood_label(2.5), "");
        assert_eq!(time_label(0, 300_000), "00:00");
        assert_eq!(time_label(0, 6 * 3_600_000), "01-01 00:00");
        assert_eq!(time_label(0, 86_400_000), "1970-01-01");
    }

    #[test]
    fn time_ticks_fall_on_round_times() {
        let (hour, day) = (3_600_000, 86_400_000);
        // 14 days: every 2 days, from the first midnight in the range.
        let ticks = time_ticks(day / 2, 14 * day + day / 2);
        assert_eq!(ticks.first(), Some(&(2 * day)));
        assert!(ticks.windows(2).all(|w| w[1] - w[0] == 2 * day));
        assert!(ticks.len() <= 8, "{ticks:?}");
        // 41 hours and 35 minutes from 10:05: every 6 hours, from 12:00.
        let t0 = 10 * hour + 300_000;
        let ticks = time_ticks(t0, t0 + 41 * hour + 35 * 60_000);
        assert_eq!(ticks[..2], [12 * hour, 18 * hour]);
        assert_eq!(time_ticks(0, 0), [0]);
    }

    #[test]
    fn a_panel_is_one_svg_with_a_group_per_layer() {
        let frame = Frame {
            t0: 0,
            t1: 1000,
            width: 600,
        };
        let panel = Panel {
            height: 120,
            scale: Scale::Linear,
            y: (0.0, 10.0),
            lines: vec![Line {
                colour: BLUE,
                points: vec![(0, 1.0), (500, f64::NAN), (600, 5.0), (1000, 2.0)],
            }],
            flags: vec![(600, 5.0)],
            threshold: Some(8.0),
            retrains: vec![100, 101, 900],
            warm_up: Some((0, 100)),
        };
        let shading = Shading {
            windows: vec![(550, 700)],
            probation: Some((0, 150)),
        };
        let svg = render(&panel, &frame, &shading).expect("draws");
        for class in [
            "mesh",
            "probation",
            "warm-up",
            "windows",
            "lines",
            "threshold",
            "retrains",
            "flags",
        ] {
            assert!(svg.contains(&format!(r#"<g class="{class}">"#)), "{class}");
        }
        let polylines = |class: &str| {
            let start = svg.find(&format!(r#"<g class="{class}">"#)).expect("group");
            let end = start + svg[start..].find("</g>").expect("end of group");
            svg[start..end].matches("<polyline").count()
        };
        // The gap splits the line in two; the two retrains one pixel apart draw one tick.
        assert_eq!(polylines("lines"), 2, "{svg}");
        assert_eq!(polylines("retrains"), 2, "{svg}");
        assert_eq!(polylines("threshold"), 1, "{svg}");
        assert!(svg.starts_with(r#"<svg class="panel""#) && svg.ends_with("</svg>"));
    }
}
