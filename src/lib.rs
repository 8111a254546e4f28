//! canopy: a streaming anomaly agent for Kubernetes metrics.
//!
//! The modules follow the data path: [`ingest`] (remote-write) → [`series`] (rolling windows) →
//! [`promql`] and [`features`] (feature vectors per step) → [`model`] (isolation and random
//! forests, pure computation) run by [`live`] (the runtimes that score, forecast and retrain at
//! each step) → [`serve`] (HTTP: remote-write route, KServe V1/V2 predict, `/metrics`);
//! [`checkpoint`] saves and restores the models on the model volume, and [`source`] gives the
//! rows they are first trained from. [`batch`] runs the file commands (`score`, `replay`), and
//! [`report`] draws a replay as an HTML page. [`config`] holds the configuration every stage is
//! built from; [`pipeline`] assembles the data path from it, and [`agent`] runs its tasks.
//! ARCHITECTURE.md has the whole map.

// The module docs are written for the engineers who read and change the code
// (`cargo doc --document-private-items`), so they link the private items they explain.
#![allow(rustdoc::private_intra_doc_links)]

pub mod agent;
pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod entity_metrics;
pub mod features;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod ingest;
pub mod live;
pub mod model;
pub mod pipeline;
pub mod promql;
pub mod report;
pub mod series;
pub mod serve;
pub mod source;
