//! The models: an isolation forest (the `anomaly-detector`) and a multi-output random forest
//! (`predictive-analytics`), both on the flat trees of [`tree`] and the seeded [`rng::Rng`].
//! Nothing here does I/O or knows about HTTP, PromQL or the series store: models take rows of
//! `f64` and give scores and forecasts.

pub mod rforest;
pub mod rng;
pub mod tree;
pub mod windows;
