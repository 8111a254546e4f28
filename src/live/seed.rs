//! The first training at start: every model that no checkpoint restored is seeded, inline, from
//! the rows the configured training source gives ([`crate::source::mix`]), and records that
//! source in `canopy_model_info`.
//!
//! Runs on the evaluation thread before its first step (the agent), or on `canopy train`'s
//! thread: the source may do blocking HTTP, so never on an async worker.

use std::time::Instant;

use super::detector::Detector;
use super::forecaster::{Forecaster, MAX_ENTITIES, MIN_TRAINING_WINDOWS};
use crate::config::Config;
use crate::source::mix::{DetectorNeeds, ForecasterNeeds, TrainingSource};

/// Trains every model that has no forest yet from the configured source, its training ranges
/// ending now.
pub(crate) fn initial_training(
    config: &Config,
    detectors: &mut [Detector],
    forecasters: &mut [Forecaster],
) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let Some(mut source) = TrainingSource::new(config, now_ms, MAX_ENTITIES) else {
        return;
    };
    for d in detectors.iter_mut() {
        if d.published().is_ready() {
            continue; // restored from a checkpoint
        }
        let started = Instant::now();
        let needs = DetectorNeeds {
            capacity: d.spec().reservoir_size,
            first_fit_rows: d.spec().first_fit_rows(),
        };
        let name = d.spec().name.clone();
        let Some(first) = source.detector(&name, needs) else {
            continue;
        };
        let (t, v) = &first.rows;
        let trained = d.seed(t, v, first.end_ms, first.source);
        tracing::info!(model = %name, source = first.source, rows = t.len(), trained, seconds = started.elapsed().as_secs_f64(), "initial training");
    }
    for f in forecasters.iter_mut() {
        if f.published().is_ready() {
            continue; // restored from a checkpoint
        }
        let started = Instant::now();
        let needs = ForecasterNeeds {
            span: f.spec().window.lookback + f.spec().window.horizon,
            min_windows: MIN_TRAINING_WINDOWS,
        };
        let name = f.spec().name.clone();
        let Some(first) = source.forecaster(&name, needs) else {
            continue;
        };
        let rows: usize = first.rows.iter().map(|(_, t, _)| t.len()).sum();
        let trained = f.seed(first.rows, first.end_ms, first.source);
        tracing::info!(model = %name, source = first.source, rows, trained, seconds = started.elapsed().as_secs_f64(), "initial training");
    }
}
