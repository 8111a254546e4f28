//! The series store and what decides which series enter it.
//!
//! Owns label sets ([`labels`]), the selectors that features are written with ([`selector`]),
//! the ingest prefilter built from them ([`prefilter`]) and the rolling windows ([`store`]).
//! Knows nothing of HTTP, protobuf or PromQL evaluation.

pub(crate) mod chunk;
pub(crate) mod labels;
pub(crate) mod prefilter;
pub(crate) mod selector;
pub(crate) mod store;

pub use labels::Labels;
pub(crate) use prefilter::Prefilter;
pub(crate) use selector::Selector;
pub use store::{AppendOutcome, Postings, Sample, Selection, SeriesStore, StoreLimits};
