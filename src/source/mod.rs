//! Training data: where a model's first forest comes from when there is no checkpoint.
//!
//! [`synthetic`] generates seeded feature histories with labelled anomalies; [`prometheus`]
//! backfills feature histories from a real Prometheus with `query_range`; [`mix`] chooses and
//! mixes them by `[source] data_source` and trains the models at start. Nothing here runs on the
//! request or ingest paths.

pub mod mix;
pub mod prometheus;
pub mod synthetic;
