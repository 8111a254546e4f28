//! Where rows come from outside the live remote-write stream: files and (later) the synthetic
//! generator and Prometheus `query_range` backfill.
//!
//! [`csv`] reads the CSV format that `canopy score` and `canopy replay` take (a `timestamp`
//! column, then one numeric column per series or feature) into sorted rows. This module only
//! parses: it knows nothing of features, models or the series store.

pub mod csv;
