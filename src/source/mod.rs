//! Where rows come from outside the live remote-write stream.
//!
//! [`csv`] reads the CSV format that `canopy score` and `canopy replay` take (a `timestamp`
//! column, then one numeric column per series or feature) into sorted rows. For a model's first
//! forest when there is no checkpoint: [`synthetic`] generates seeded feature histories with
//! labelled anomalies; [`prometheus`] backfills feature histories from a real Prometheus with
//! `query_range`; [`mix`] chooses and mixes them by `[source] data_source` and trains the models
//! at start. Nothing here runs on the request or ingest paths.

pub mod csv;
pub(crate) mod mix;
pub mod prometheus;
pub mod synthetic;
