//! canopy's forests, as pure computation: an isolation forest with scikit-learn's
//! `IsolationForest` semantics ([`iforest`]), a multi-output random forest with
//! `RandomForestRegressor`'s ([`rforest`]), the flat trees both are stored as ([`tree`]), the
//! seeded generator every tree draws from ([`rng`]), the sliding windows a forecaster trains on
//! ([`windows`]) and the isolation forest's bounded training set ([`reservoir`]).
//!
//! This crate does no I/O and knows nothing of the agent that uses it: no configuration, series,
//! PromQL, HTTP or checkpoint files. It takes rows of `f64` and gives models, scores and
//! forecasts; the same data, parameters and seed always give the same model, to the bit. Rows
//! come in as `ndarray` views ([`matrix`]).
//!
//! No `unsafe` outside one module: the AVX2 variant of the random forest's split scan, whose
//! entry takes a token that only CPU feature detection creates.

#![deny(unsafe_code)]

pub use matrix::{RaggedRows, row_major};

pub mod iforest;
pub mod matrix;
pub mod reservoir;
pub mod rforest;
pub mod rng;
pub mod tree;
pub mod windows;
