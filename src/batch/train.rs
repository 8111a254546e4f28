//! `canopy train`: trains one configured model from the configured training source (synthetic,
//! Prometheus backfill or both, as `[source]` and the environment say) exactly as the agent
//! does at start, and writes its checkpoint to `{out}/{model}/model.ckpt`, for `canopy serve`
//! or an agent to load.

use std::path::{Path, PathBuf};

use super::BatchError;
use crate::checkpoint::{SavedModel, encode, model_path, write_atomic};
use crate::config::Config;
use crate::live::TrainingMode;
use crate::pipeline::Pipeline;

/// Trains `model` and writes its checkpoint below `out`; returns the file written.
pub fn train(config: &Config, model: &str, out: &Path) -> Result<PathBuf, BatchError> {
    if !config.models.contains_key(model) {
        return Err(BatchError::UnknownModel {
            name: model.to_owned(),
            available: config.models.keys().cloned().collect::<Vec<_>>().join(", "),
        });
    }
    let failed = |reason: String| BatchError::Train {
        model: model.to_owned(),
        reason,
    };
    let pipeline = Pipeline::new(config).map_err(|e| failed(e.to_string()))?;
    let mut detectors = pipeline
        .detectors(config, TrainingMode::Inline)
        .map_err(|e| failed(e.to_string()))?;
    let mut forecasters = pipeline
        .forecasters(config, TrainingMode::Inline)
        .map_err(|e| failed(e.to_string()))?;
    detectors.retain(|d| d.spec().name == model);
    forecasters.retain(|f| f.spec().name == model);
    crate::live::seed::initial_training(config, &mut detectors, &mut forecasters);
    let saved = detectors
        .first()
        .and_then(SavedModel::of_detector)
        .or_else(|| forecasters.first().and_then(SavedModel::of_forecaster))
        .ok_or_else(|| failed("the training source gave no model: see the log for why".into()))?;
    let path = model_path(out, model);
    let folder = path.parent().unwrap_or(out).to_path_buf();
    write_atomic(&folder, &encode(&saved)).map_err(|e| failed(e.to_string()))?;
    Ok(path)
}
