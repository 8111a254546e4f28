//! The models as canopy runs them. The forests themselves (an isolation forest for the
//! `anomaly-detector`, a multi-output random forest for `predictive-analytics`, their flat trees,
//! seeded generator, training windows, reservoir and `ndarray` matrices) are the `canopy-forest` crate, re-exported
//! here so that `model::iforest` and its siblings name them. [`detector`] is the live runtime that
//! connects a forest to the feature steps: scoring, the reservoir, event-time retraining and
//! publication; [`likelihood`] calibrates its scores.

pub use canopy_forest::{iforest, matrix, reservoir, rforest, rng, tree, windows};

pub mod detector;
pub mod forecaster;
pub mod info;
pub mod likelihood;
