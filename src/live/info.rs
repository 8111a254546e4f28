//! `canopy_model_info{model, source}`: what a model's current forest was last trained from.
//!
//! The exporter cannot remove a series, so a model's source is switched by setting the new
//! source's series to 1 and every other source's to 0: `canopy_model_info == 1` always names
//! exactly one source per model.

use metrics::gauge;

/// Every source a forest can come from.
pub(crate) const SOURCES: [&str; 5] = ["synthetic", "prometheus", "hybrid", "checkpoint", "live"];

/// Records that `model`'s current forest was trained from `source` (one of [`SOURCES`]).
pub(crate) fn set_model_info(model: &str, source: &'static str) {
    for s in SOURCES {
        gauge!("canopy_model_info", "model" => model.to_owned(), "source" => s)
            .set(if s == source { 1.0 } else { 0.0 });
    }
}
