//! The live runtimes: what connects a model to the feature steps. [`detector`] and
//! [`forecaster`] take each step, score or forecast every entity, export the results and decide
//! when to train; [`trainer`] runs their trainings (inline or on a trainer thread) and
//! [`published`] is the cell each publishes its model in, which the predict endpoints and the
//! checkpoint writer read. [`info`] records what a model was last trained from; [`seed`] trains
//! each model first from the rows of the configured training source.
//!
//! Reads `config`, `features`, the pure models of `model` and the rows of `source`; knows nothing
//! of HTTP, the registry the endpoints serve from or checkpoint files: those read it.

pub mod detector;
pub(crate) mod forecaster;
pub(crate) mod info;
pub(crate) mod published;
pub(crate) mod seed;
pub(crate) mod trainer;

pub use published::{Published, TrainingInfo};
pub use trainer::TrainingMode;
