//! Feature expressions: PromQL parsed with `promql-parser`, planned, and evaluated at a step
//! timestamp over the series store with Prometheus 2.42's semantics.
//!
//! [`plan`] decides what is supported and what each plan reads; [`eval`] runs plans over a
//! [`crate::series::SeriesStore`]; [`kernels`] holds the float algorithms that must round as
//! Prometheus rounds. This module must not know about HTTP, ingest, feature names or models:
//! it takes an expression and a timestamp and gives back a value or an error.

pub mod eval;
pub(crate) mod golang;
pub(crate) mod kernels;
pub(crate) mod plan;

pub use eval::{EvalError, EvalErrorKind, Evaluator, PlanValue};
pub use plan::{Plan, PlanError, canonical, parse_expr};
