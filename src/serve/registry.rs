//! The models the predict endpoints serve: for each, its name, what shapes its input, and the
//! [`Published`] cell its forest and what that forest was trained from are published in.
//!
//! The live agent builds a [`Registry`] from its detectors and forecasters ([`Registry::live`]:
//! the cells their trainers publish into); `canopy serve` builds one from the saved models
//! checkpoint files hold ([`ModelHandle::saved`]), and publishes into the same cells when a file
//! is replaced ([`super::reload`]). Predict handlers load a forest from the cell lock-free for
//! each request, so a retrain or a reload never blocks a request and a request never sees a
//! half-built forest. A cell that is still empty means "not ready" (503).

use crate::checkpoint::{SavedData, SavedModel};
use crate::live::Published;
use crate::live::detector::Detector;
use crate::live::forecaster::Forecaster;
use crate::model::iforest::IsolationForest;
use crate::model::rforest::RandomForestRegressor;

/// An anomaly detector as the endpoints see it.
#[derive(Clone)]
pub struct DetectorHandle {
    pub name: String,
    /// Feature names, in the order a request row carries them.
    pub features: Vec<String>,
    /// The forest, and what it was trained from (V2 model metadata shows it).
    pub model: Published<IsolationForest>,
}

impl DetectorHandle {
    /// The live detector's handle: its name, features and published cell.
    pub(crate) fn of(d: &Detector) -> DetectorHandle {
        DetectorHandle {
            name: d.spec().name.clone(),
            features: d.spec().features.clone(),
            model: d.published().clone(),
        }
    }
}

/// A forecaster as the endpoints see it: a request row is `lookback` steps of `features`,
/// time-major; a prediction is `horizon` steps of `targets`, time-major.
#[derive(Clone)]
pub struct ForecasterHandle {
    pub(crate) name: String,
    pub(crate) features: Vec<String>,
    pub(crate) targets: Vec<String>,
    pub lookback: usize,
    pub horizon: usize,
    pub model: Published<RandomForestRegressor>,
}

impl ForecasterHandle {
    /// The live forecaster's handle: its name, shape and published cell.
    pub(crate) fn of(f: &Forecaster) -> ForecasterHandle {
        let spec = f.spec();
        ForecasterHandle {
            name: spec.name.clone(),
            features: spec.features.clone(),
            targets: spec.targets.clone(),
            lookback: spec.window.lookback,
            horizon: spec.window.horizon,
            model: f.published().clone(),
        }
    }
}

/// One served model of either kind.
#[derive(Clone)]
pub(crate) enum ModelHandle {
    Detector(DetectorHandle),
    Forecaster(ForecasterHandle),
}

impl ModelHandle {
    /// The handle a saved model is served through, its forest published.
    pub(crate) fn saved(saved: SavedModel) -> ModelHandle {
        match saved.data {
            SavedData::Detector { forest, .. } => ModelHandle::Detector(DetectorHandle {
                name: saved.name,
                features: saved.features,
                model: Published::of(forest, saved.training),
            }),
            SavedData::Forecaster {
                forest,
                targets,
                lookback,
                horizon,
                ..
            } => ModelHandle::Forecaster(ForecasterHandle {
                name: saved.name,
                features: saved.features,
                targets,
                lookback,
                horizon,
                model: Published::of(forest, saved.training),
            }),
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            ModelHandle::Detector(d) => &d.name,
            ModelHandle::Forecaster(f) => &f.name,
        }
    }

    /// Serves the model under another name (`canopy serve --model_name`).
    pub(crate) fn rename(&mut self, name: &str) {
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
    /// The registry of the live agent's models.
    pub(crate) fn live(detectors: &[Detector], forecasters: &[Forecaster]) -> Registry {
        Registry {
            detectors: detectors.iter().map(DetectorHandle::of).collect(),
            forecasters: forecasters.iter().map(ForecasterHandle::of).collect(),
        }
    }

    /// The registry of `handles`.
    pub(crate) fn of<'a>(handles: impl IntoIterator<Item = &'a ModelHandle>) -> Registry {
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
        self.detectors.iter().all(|d| d.model.is_ready())
            && self.forecasters.iter().all(|f| f.model.is_ready())
    }
}
