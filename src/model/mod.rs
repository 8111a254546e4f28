//! The models: an isolation forest (the `anomaly-detector`) and a multi-output random forest
//! (`predictive-analytics`), both on the flat trees of [`tree`] and the seeded [`rng::Rng`].
//! The forests do no I/O and know nothing of HTTP, PromQL or the series store: they take rows of
//! `f64` and give scores and forecasts. The live runtimes that connect them to the feature steps
//! are in the `live` module.

pub mod iforest;
pub mod likelihood;
pub mod reservoir;
pub mod rforest;
pub mod rng;
pub mod tree;
pub mod windows;
