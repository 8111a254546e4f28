//! The models the predict endpoints serve: for each, its name, what shapes its input, the
//! `arc-swap` cell its forest is published in, and the cell of what that forest was trained from.
//!
//! The live agent builds a [`Registry`] from its detectors and forecasters (the cells their
//! trainers publish into); `canopy serve` builds one from checkpoint files, and publishes into
//! the same cells when a file is replaced ([`crate::checkpoint::reload`]). Predict handlers load
//! a forest from the cell lock-free for each request, so a retrain or a reload never blocks a
//! request and a request never sees a half-built forest. A cell that is still empty means "not
//! ready" (503).

use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::model::detector::TrainingInfo;
use crate::model::iforest::IsolationForest;
use crate::model::rforest::RandomForestRegressor;

/// An anomaly detector as the endpoints see it.
#[derive(Clone)]
pub struct DetectorHandle {
    pub name: String,
    /// Feature names, in the order a request row carries them.
    pub features: Vec<String>,
    pub model: Arc<ArcSwapOption<IsolationForest>>,
    /// What the published forest was trained from (V2 model metadata shows it).
    pub info: Arc<ArcSwap<TrainingInfo>>,
}

/// A forecaster as the endpoints see it: a request row is `lookback` steps of `features`,
/// time-major; a prediction is `horizon` steps of `targets`, time-major.
#[derive(Clone)]
pub struct ForecasterHandle {
    pub name: String,
    pub features: Vec<String>,
    pub targets: Vec<String>,
    pub lookback: usize,
    pub horizon: usize,
    pub model: Arc<ArcSwapOption<RandomForestRegressor>>,
    pub info: Arc<ArcSwap<TrainingInfo>>,
}

/// One served model of either kind.
#[derive(Clone)]
pub enum ModelHandle {
    Detector(DetectorHandle),
    Forecaster(ForecasterHandle),
}

impl ModelHandle {
    pub fn name(&self) -> &str {
        match self {
            ModelHandle::Detector(d) => &d.name,
            ModelHandle::Forecaster(f) => &f.name,
        }
    }

    /// Serves the model under another name (`canopy serve --model_name`).
    pub fn rename(&mut self, name: &str) {
        match self {
            ModelHandle::Detector(d) => d.name = name.to_owned(),
            ModelHandle::Forecaster(f) => f.name = name.to_owned(),
        }
    }
}

/// Every served model, by name.
#[derive(Clone, Default)]
pub struct Registry {
    pub detectors: Vec<DetectorHandle>,
    pub forecasters: Vec<ForecasterHandle>,
}

impl Registry {
    /// The registry of `handles`.
    pub fn of<'a>(handles: impl IntoIterator<Item = &'a ModelHandle>) -> Registry {
        let mut registry = Registry::default();
        for handle in handles {
            match handle {
                ModelHandle::Detector(d) => registry.detectors.push(d.clone()),
                ModelHandle::Forecaster(f) => registry.forecasters.push(f.clone()),
            }
        }
        registry
    }

    pub fn detector(&self, name: &str) -> Option<&DetectorHandle> {
        self.detectors.iter().find(|d| d.name == name)
    }

    pub fn forecaster(&self, name: &str) -> Option<&ForecasterHandle> {
        self.forecasters.iter().find(|f| f.name == name)
    }

    /// Every model name, in a stable order.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .detectors
            .iter()
            .map(|d| d.name.as_str())
            .chain(self.forecasters.iter().map(|f| f.name.as_str()))
            .collect();
        names.sort_unstable();
        names
    }

    /// True when every model has a published forest.
    pub fn all_ready(&self) -> bool {
        self.detectors.iter().all(|d| d.model.load().is_some())
            && self.forecasters.iter().all(|f| f.model.load().is_some())
    }
}
