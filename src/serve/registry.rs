//! The models the predict endpoints serve: for each, its name, what shapes its input, and the
//! `arc-swap` cell its forest is published in.
//!
//! The live agent builds a [`Registry`] from its detectors and forecasters (the cells their
//! trainers publish into); `canopy serve` builds one from checkpoint files. Predict handlers load
//! a forest from the cell lock-free for each request, so a retrain never blocks a request and a
//! request never sees a half-built forest. A cell that is still empty means "not ready" (503).

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::model::iforest::IsolationForest;
use crate::model::rforest::RandomForestRegressor;

/// An anomaly detector as the endpoints see it.
#[derive(Clone)]
pub struct DetectorHandle {
    pub name: String,
    /// Feature names, in the order a request row carries them.
    pub features: Vec<String>,
    pub model: Arc<ArcSwapOption<IsolationForest>>,
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
}

/// Every served model, by name.
#[derive(Clone, Default)]
pub struct Registry {
    pub detectors: Vec<DetectorHandle>,
    pub forecasters: Vec<ForecasterHandle>,
}

impl Registry {
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
