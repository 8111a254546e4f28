//! `canopy replay --report`: replays drawn as one self-contained HTML page, to see what the
//! detector sees: each input column and feature, the score and likelihood against the threshold,
//! the flagged steps, the labelled windows, the probation and warm-up, the retrains and the
//! forecasts, on one time axis per file; a header of counts and NAB scores per file, and with
//! several files an index, the worst first.
//!
//! The page is inline SVG drawn by plotters ([`chart`]) and plain HTML with its own CSS: no
//! script, font, image or link to fetch, so it opens from disk in any browser, offline. Long files
//! are downsampled per pixel column ([`downsample`]), keeping every flagged step and window edge,
//! so the page's size follows its width, not the file's length.
//!
//! Reads what [`crate::batch::replay`] recorded ([`Trace`]) and scores it with NAB's scorer
//! ([`crate::batch::nab`]); never replays or reads files itself.

pub(crate) mod chart;
mod downsample;
mod page;
mod panels;

use std::fmt::Display;
use std::io::Write;
use std::path::PathBuf;

use crate::batch::nab::{self, CorpusScore, FileBreakdown, FileScores, NabError, PROFILES};
use crate::batch::replay::{ReplayOutcome, Trace};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot draw the report: {0}")]
    Draw(String),
    #[error(transparent)]
    Nab(#[from] NabError),
    #[error(
        "--report-horizon {asked}: the forecaster `{model}` forecasts 1 to {horizon} steps ahead; pick one of those"
    )]
    Horizon {
        asked: usize,
        model: String,
        horizon: usize,
    },
    #[error("cannot write the report: {0}")]
    Write(#[from] std::io::Error),
}

impl ReportError {
    fn draw(e: impl Display) -> ReportError {
        ReportError::Draw(e.to_string())
    }
}

/// One replayed file, as the report shows it.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub input: PathBuf,
    pub outcome: ReplayOutcome,
    pub trace: Trace,
}

/// What the page says of the run as a whole.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Where the config came from: its path, or the embedded default.
    pub config: String,
    /// The forecast drawn: this many steps ahead (the forecaster's horizon when `None`).
    pub horizon: Option<usize>,
    /// The page's width in pixels.
    pub width: u32,
}

/// The width of a panel when none is asked for: a laptop's screen with room for the margins.
pub const DEFAULT_WIDTH: u32 = 1280;

/// How one file did: what the header and the index say of it.
#[derive(Debug, Clone)]
struct Assessment {
    /// Steps flagged over the whole file, probation included.
    flagged: usize,
    /// With labels: the file scored alone under each profile at its own best threshold, and
    /// what that threshold detects.
    nab: Option<Vec<(CorpusScore, FileBreakdown)>>,
    /// With labels: the file ready for a corpus score over every file.
    scores: Option<FileScores>,
}

impl Assessment {
    /// Windows missed and false positives after probation; `None` without labels.
    fn errors(&self, outcome: &ReplayOutcome) -> Option<usize> {
        outcome
            .summary
            .as_ref()
            .map(|s| s.windows - s.detected + s.false_positives)
    }
}

fn assess(file: &Replayed) -> Result<Assessment, NabError> {
    let trace = &file.trace;
    let flagged = trace.steps.iter().filter(|s| s.anomaly).count();
    let Some(windows) = &trace.windows else {
        return Ok(Assessment {
            flagged,
            nab: None,
            scores: None,
        });
    };
    // NAB scores the likelihood, as benches/compare/nab_replay.sh does.
    let row_times: Vec<i64> = trace.table.rows.iter().map(|r| r.t_ms).collect();
    let steps: Vec<(i64, Option<f64>)> =
        trace.steps.iter().map(|s| (s.t_ms, s.likelihood)).collect();
    let scores = FileScores::new(
        file.input.display().to_string(),
        &row_times,
        nab::row_scores(&row_times, &steps),
        windows,
    )?;
    let alone = std::slice::from_ref(&scores);
    let nab = PROFILES
        .iter()
        .map(|p| {
            let c = nab::corpus_score(alone, p);
            (c, nab::file_breakdown(&scores, p, c.threshold))
        })
        .collect();
    Ok(Assessment {
        flagged,
        nab: Some(nab),
        scores: Some(scores),
    })
}

/// Writes the report of `files` to `out`: one section per file, and with several an index
/// above them; worst first (the most windows missed plus false positives, or without labels the
/// most flagged steps).
pub fn write(
    files: &[Replayed],
    options: &ReportOptions,
    out: &mut dyn Write,
) -> Result<(), ReportError> {
    let mut assessed: Vec<(&Replayed, Assessment)> = files
        .iter()
        .map(|f| assess(f).map(|a| (f, a)))
        .collect::<Result<_, _>>()?;
    assessed.sort_by(|(fa, a), (fb, b)| {
        let key = |f: &Replayed, a: &Assessment| (a.errors(&f.outcome), a.flagged);
        key(fb, b)
            .cmp(&key(fa, a))
            .then_with(|| fa.input.cmp(&fb.input))
    });
    let corpus: Option<Vec<CorpusScore>> = (assessed.len() > 1)
        .then(|| {
            let all: Option<Vec<FileScores>> =
                assessed.iter().map(|(_, a)| a.scores.clone()).collect();
            all.map(|all| {
                PROFILES
                    .iter()
                    .map(|p| nab::corpus_score(&all, p))
                    .collect()
            })
        })
        .flatten();

    let title = match files {
        [one] => format!(
            "canopy replay of {}",
            one.input.file_name().unwrap_or_default().to_string_lossy()
        ),
        _ => format!("canopy replay of {} files", files.len()),
    };
    let mut html = page::head(&title);
    html.push_str(&format!("<h1>{}</h1>\n", page::escape(&title)));
    if assessed.len() > 1 {
        html.push_str(&page::index(
            assessed.iter().map(|(f, a)| (*f, a)),
            corpus.as_deref(),
        ));
    }
    for (k, (file, assessment)) in assessed.iter().enumerate() {
        html.push_str(&section(k, file, assessment, options)?);
    }
    html.push_str(page::FOOT);
    out.write_all(html.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// One file's section: its header, the legend and its panels.
fn section(
    k: usize,
    file: &Replayed,
    assessment: &Assessment,
    options: &ReportOptions,
) -> Result<String, ReportError> {
    let trace = &file.trace;
    let horizon = match (&trace.forecaster, options.horizon) {
        (Some(f), Some(h)) if h == 0 || h > f.horizon => {
            return Err(ReportError::Horizon {
                asked: h,
                model: f.name.clone(),
                horizon: f.horizon,
            });
        }
        (Some(f), h) => h.unwrap_or(f.horizon),
        (None, _) => 1,
    };
    let frame = panels::frame(trace, options.width);
    let shading = panels::shading(trace, &frame);
    let mut html = page::header(k, file, assessment, &options.config);
    html.push_str(&page::legend(trace));
    for titled in panels::panels(trace, &frame, horizon) {
        html.push_str(&page::panel_title(&titled.title, &titled.note));
        html.push_str(&chart::render(&titled.panel, &frame, &shading)?);
        html.push_str("</div>\n");
    }
    html.push_str("</section>\n");
    Ok(html)
}
