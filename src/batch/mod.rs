//! The file-driven commands: `canopy score` ([`score`]) and `canopy replay` ([`replay`]), with
//! NAB-style labelled windows for replay's summary ([`labels`]), and NAB's own scorer over a
//! replay's per-row scores ([`nab`]).
//!
//! `score` is a plain batch fit and score (or forecast), as scikit-learn's `fit` then `score_samples` would be:
//! no stream, no reservoir. `replay` is the opposite: it drives the same pipeline the agent runs
//! (store → feature engine → detector) in event time, so a file shows what live data would have
//! produced. Both read [`crate::source::csv`] tables and write CSV to any `Write`; choosing files
//! and printing is left to `main.rs`.

pub mod labels;
pub mod nab;
pub mod replay;
pub mod score;
pub mod train;

use crate::model::iforest::IsolationForestError;
use crate::model::rforest::RandomForestError;
use crate::pipeline::PipelineError;
use crate::source::csv::CsvError;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Csv(#[from] CsvError),
    #[error(transparent)]
    Labels(#[from] labels::LabelsError),
    #[error("no model `{name}` in the config; configured models: {available}")]
    UnknownModel { name: String, available: String },
    #[error(
        "{file} has no column `{column}`, a feature of model `{model}` (its features, in order: {features}; the file has: {found})"
    )]
    MissingColumn {
        file: String,
        column: String,
        model: String,
        features: String,
        found: String,
    },
    #[error("{file}: no row has a value for every feature of model `{model}`; nothing to fit on")]
    NoCompleteRows { file: String, model: String },
    #[error("model `{model}`: {source}")]
    Forest {
        model: String,
        source: IsolationForestError,
    },
    #[error(
        "{file}: no {span} consecutive complete rows (lookback + horizon) for model `{model}`; nothing to fit on"
    )]
    NoWindows {
        file: String,
        model: String,
        span: usize,
    },
    #[error("model `{model}`: {reason}")]
    Window { model: String, reason: String },
    #[error("cannot train model `{model}`: {reason}")]
    Train { model: String, reason: String },
    #[error("model `{model}`: {source}")]
    Regressor {
        model: String,
        source: RandomForestError,
    },
    #[error(
        "replay runs one isolation_forest model, one random_forest model, or one of each, but the config has: {found}; give replay a --config whose [models] says which"
    )]
    ReplayModels { found: String },
    #[error("columns `{first}` and `{second}` both become the series `{name}`: rename one of them")]
    SeriesNameClash {
        first: String,
        second: String,
        name: String,
    },
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("cannot write the output: {0}")]
    Write(#[from] std::io::Error),
}

/// A float as the output CSV writes it: the shortest decimal that reads back to the same value.
fn number(v: f64) -> String {
    format!("{v}")
}
