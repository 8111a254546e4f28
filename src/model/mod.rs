//! The models, pure computation: the forests themselves (an isolation forest for the
//! `anomaly-detector`, a multi-output random forest for `predictive-analytics`, their flat trees,
//! seeded generator, training windows, reservoir and `ndarray` matrices) are the `canopy-forest`
//! crate, re-exported here so that `model::iforest` and its siblings name them; [`likelihood`]
//! calibrates the detector's scores. They know nothing of config, features, serve or ingest; the
//! live runtimes that connect them to the feature steps are in the `live` module.

pub use canopy_forest::{iforest, matrix, reservoir, rforest, rng, tree, windows};

pub mod likelihood;
