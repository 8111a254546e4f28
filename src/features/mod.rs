//! Named features: PromQL expressions evaluated over the series store at event-time steps.
//!
//! [`FeatureSet`] compiles the configured expressions (refusing what the evaluator does not
//! support, at config load); [`FeatureEngine`] evaluates every feature at each due step
//! ([`stepper`]), keeps the evaluated values for `/api/v1/features` ([`history::FeatureHistory`]),
//! and hands each step's results to the models, which assemble per-entity vectors
//! ([`entities`]). This module never does I/O and knows nothing of HTTP or the models' insides.

pub(crate) mod entities;
pub(crate) mod history;
pub mod stepper;

use crate::config::Config;
use crate::promql::{Evaluator, Plan, PlanValue};
use crate::series::{Labels, Selector, SeriesStore};
use history::FeatureHistory;
use stepper::Stepper;

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("feature `{name}`: {source}")]
    Plan {
        name: String,
        source: crate::promql::PlanError,
    },
    #[error(
        "feature `{name}` looks back {needed}, but limits.retention keeps {retention} (plus evaluation.lateness {lateness}): raise limits.retention"
    )]
    Retention {
        name: String,
        needed: String,
        retention: String,
        lateness: String,
    },
}

/// One compiled feature.
#[derive(Debug, Clone)]
pub(crate) struct Feature {
    pub(crate) name: String,
    pub(crate) plan: Plan,
}

/// Every configured feature, in name order (the index is the feature's id).
#[derive(Debug, Clone)]
pub struct FeatureSet {
    features: Vec<Feature>,
}

fn human(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms.max(0) as u64)).to_string()
}

impl FeatureSet {
    /// Compiles `[features]`, checking that the store's retention covers each look-back.
    pub fn from_config(config: &Config) -> Result<FeatureSet, FeatureError> {
        let retention = config.limits.retention.as_millis() as i64;
        let lateness = config.evaluation.lateness.as_millis() as i64;
        let mut features = Vec::new();
        for (name, expr) in &config.features {
            let plan = Plan::parse(expr).map_err(|source| FeatureError::Plan {
                name: name.clone(),
                source,
            })?;
            if plan.lookback_ms() + lateness > retention {
                return Err(FeatureError::Retention {
                    name: name.clone(),
                    needed: human(plan.lookback_ms()),
                    retention: human(retention),
                    lateness: human(lateness),
                });
            }
            features.push(Feature {
                name: name.clone(),
                plan,
            });
        }
        Ok(FeatureSet { features })
    }

    pub(crate) fn features(&self) -> &[Feature] {
        &self.features
    }

    /// The expressions (as configured, trimmed) of the features at `indices`, in that order.
    pub(crate) fn expressions(&self, indices: &[usize]) -> Vec<String> {
        indices
            .iter()
            .map(|&i| self.features[i].plan.expr().trim().to_owned())
            .collect()
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.features.iter().position(|f| f.name == name)
    }

    /// Every selector any feature reads: what the ingest prefilter lets through.
    pub(crate) fn selectors(&self) -> Vec<Selector> {
        self.features
            .iter()
            .flat_map(|f| f.plan.selectors().cloned())
            .collect()
    }
}

/// One feature's result at one step: an instant vector (a scalar is one series with no labels).
pub(crate) type FeatureValues = Vec<(Labels, f64)>;

/// Every feature's result at one step timestamp.
#[derive(Debug, Clone)]
pub(crate) struct StepResult {
    pub(crate) t_ms: i64,
    /// Per feature, in [`FeatureSet`] order; `None` when the evaluation failed at this step.
    pub(crate) values: Vec<Option<FeatureValues>>,
}

/// Evaluates the feature set at due steps. Owned by one thread: the evaluation loop in the
/// agent, or `replay`, which drives it in event time.
pub struct FeatureEngine {
    set: FeatureSet,
    evaluator: Evaluator,
    stepper: Stepper,
}

impl FeatureEngine {
    pub fn new(set: FeatureSet, stepper: Stepper) -> FeatureEngine {
        FeatureEngine {
            set,
            evaluator: Evaluator::new(),
            stepper,
        }
    }

    pub fn set(&self) -> &FeatureSet {
        &self.set
    }

    pub(crate) fn stepper(&self) -> &Stepper {
        &self.stepper
    }

    /// Evaluates every step that became due, oldest first, recording values in `history`.
    pub(crate) fn advance(
        &mut self,
        store: &SeriesStore,
        history: &FeatureHistory,
    ) -> Vec<StepResult> {
        let due = self.stepper.due(store.newest_timestamp());
        let mut out = Vec::with_capacity(due.len());
        for t in due {
            let values = self.evaluate_at(store, t);
            history.record(t, &self.set, &values);
            out.push(StepResult { t_ms: t, values });
        }
        out
    }

    /// Evaluates every feature at `t_ms`, without stepping.
    pub fn evaluate_at(&mut self, store: &SeriesStore, t_ms: i64) -> Vec<Option<FeatureValues>> {
        let mut values = Vec::with_capacity(self.set.features.len());
        for f in &self.set.features {
            values.push(match self.evaluator.eval(store, &f.plan, t_ms) {
                Ok(PlanValue::Vector(v)) => Some(v),
                Ok(PlanValue::Scalar(s)) => Some(vec![(Labels::default(), s)]),
                Err(e) => {
                    metrics::counter!("canopy_feature_evaluation_errors_total", "feature" => f.name.clone())
                        .increment(1);
                    tracing::debug!(feature = %f.name, error = %e, "feature evaluation failed");
                    None
                }
            });
        }
        values
    }
}
