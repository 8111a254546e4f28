//! The composition root: one [`Pipeline`] from a [`Config`], the data path's stages joined in
//! order (prefilter and ingestor → series store → feature set, engine and history → the models'
//! live runtimes), for every command that runs the data path: the agent, `replay`, `train`,
//! `check-config` and the ingest bench.
//!
//! Builds and connects; runs nothing: the agent (`agent.rs`) owns the tasks and the shutdown
//! path, `replay` and `train` their own loops. The models are built one constructor per kind
//! ([`Pipeline::detectors`], [`Pipeline::forecasters`]), each for every model of its kind in the
//! config, because each caller keeps the two kinds apart (the evaluation thread steps both lists,
//! `replay` takes at most one of each, `train` the one named).

use std::sync::Arc;

use crate::config::{Config, ModelKind};
use crate::features::history::FeatureHistory;
use crate::features::stepper::Stepper;
use crate::features::{FeatureEngine, FeatureError, FeatureSet};
use crate::ingest::decode::LabelLimits;
use crate::ingest::{IngestLimits, Ingestor};
use crate::live::TrainingMode;
use crate::live::detector::{Detector, DetectorError, DetectorSpec};
use crate::live::forecaster::{Forecaster, ForecasterError, ForecasterSpec};
use crate::series::{Prefilter, SeriesStore, StoreLimits};

/// Why the pipeline could not be built from a config.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Feature(#[from] FeatureError),
    #[error(transparent)]
    Detector(#[from] DetectorError),
    #[error(transparent)]
    Forecaster(#[from] ForecasterError),
}

/// The pipeline from ingest to evaluated features, built from the config.
pub struct Pipeline {
    pub store: Arc<SeriesStore>,
    pub ingestor: Arc<Ingestor>,
    pub(crate) features: FeatureSet,
    pub(crate) history: Arc<FeatureHistory>,
}

impl Pipeline {
    pub fn new(config: &Config) -> Result<Pipeline, PipelineError> {
        let features = FeatureSet::from_config(config)?;
        let store = Arc::new(SeriesStore::new(StoreLimits {
            max_series: config.limits.max_series,
            retention_ms: config.limits.retention.as_millis() as i64,
        }));
        let l = &config.limits;
        let ingestor = Arc::new(Ingestor::new(
            store.clone(),
            Prefilter::new(features.selectors()),
            IngestLimits {
                max_request_bytes: l.max_request_bytes,
                max_decoded_bytes: l.max_decoded_bytes,
                labels: LabelLimits {
                    max_labels: l.max_labels_per_series,
                    max_name_bytes: l.max_label_name_bytes,
                    max_value_bytes: l.max_label_value_bytes,
                },
                max_future_ms: i64::try_from(l.max_future.as_millis()).unwrap_or(i64::MAX),
            },
        ));
        let history = Arc::new(FeatureHistory::new(
            config.evaluation.history.as_millis() as i64,
            config.evaluation.step.as_millis() as i64 * i64::from(config.evaluation.stale_steps),
        ));
        Ok(Pipeline {
            store,
            ingestor,
            features,
            history,
        })
    }

    /// The detectors of every isolation-forest model in the config, training as `training` says.
    pub(crate) fn detectors(
        &self,
        config: &Config,
        training: TrainingMode,
    ) -> Result<Vec<Detector>, PipelineError> {
        let mut out = Vec::new();
        for spec in self.detector_specs(config)? {
            if let Some(warning) = spec.small_reservoir_warning() {
                tracing::warn!("{warning}");
            }
            out.push(Detector::new(spec, training)?);
        }
        Ok(out)
    }

    /// What `check-config` warns of: configurations that work, but not as their keys suggest.
    pub fn config_warnings(&self, config: &Config) -> Result<Vec<String>, PipelineError> {
        let specs = self.detector_specs(config)?;
        Ok(specs
            .iter()
            .filter_map(DetectorSpec::small_reservoir_warning)
            .collect())
    }

    /// The spec of every isolation-forest model in the config, in name order.
    fn detector_specs(&self, config: &Config) -> Result<Vec<DetectorSpec>, PipelineError> {
        let stale_steps = config.evaluation.stale_steps;
        let mut out = Vec::new();
        for (name, model) in &config.models {
            if let ModelKind::IsolationForest(forest) = &model.kind {
                out.push(DetectorSpec::new(
                    name,
                    model,
                    forest,
                    &self.features,
                    stale_steps,
                )?);
            }
        }
        Ok(out)
    }

    /// The forecasters of every random-forest model in the config, training as `training` says.
    pub(crate) fn forecasters(
        &self,
        config: &Config,
        training: TrainingMode,
    ) -> Result<Vec<Forecaster>, PipelineError> {
        let mut out = Vec::new();
        let stale_steps = config.evaluation.stale_steps;
        for (name, model) in &config.models {
            if let ModelKind::RandomForest(forest) = &model.kind {
                let spec = ForecasterSpec::new(name, model, forest, &self.features, stale_steps)?;
                out.push(Forecaster::new(spec, training)?);
            }
        }
        Ok(out)
    }

    /// The feature engine for this pipeline's features, stepping at `evaluation.step`.
    pub(crate) fn engine(&self, config: &Config) -> FeatureEngine {
        let step = config.evaluation.step.as_millis() as i64;
        let history_steps = (config.evaluation.history.as_millis() as i64 / step).max(1) as usize;
        FeatureEngine::new(
            self.features.clone(),
            Stepper::new(
                step,
                config.evaluation.lateness.as_millis() as i64,
                history_steps,
            ),
        )
    }
}
