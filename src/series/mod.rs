//! The series store and what decides which series enter it.
//!
//! Owns label sets ([`labels`]), the selectors that features are written with ([`selector`]),
//! the ingest prefilter built from them ([`prefilter`]) and the rolling windows ([`store`]).
//! Knows nothing of HTTP, protobuf or PromQL evaluation.

pub mod chunk;
pub mod labels;
pub mod prefilter;
pub mod selector;
pub mod store;

pub use labels::Labels;
pub use prefilter::Prefilter;
pub use selector::Selector;
pub use store::{AppendOutcome, Postings, Sample, Selection, SeriesStore, StoreLimits};
