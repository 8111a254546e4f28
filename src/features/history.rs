//! Evaluated feature values kept for people and tests: `/api/v1/features/{name}` serves them in
//! the body shape of Prometheus's `query_range`, and `canopy_feature_value` exports the latest.
//!
//! Written by the evaluation loop once per step, read by HTTP handlers; the lock is held for one
//! step's bookkeeping or one response's copy, never across I/O.

use std::collections::{BTreeMap, VecDeque};
use std::sync::RwLock;

use serde_json::{Value as Json, json};

use crate::entity_metrics::entity_gauge;

use super::{FeatureSet, FeatureValues};
use crate::series::Labels;
use crate::series::labels::METRIC_NAME;

/// One feature's result series, each with its recent `(t_ms, value)` points.
type SeriesPoints = BTreeMap<Labels, VecDeque<(i64, f64)>>;

/// Per feature: each result series' recent points, over `retention_ms`.
pub(crate) struct FeatureHistory {
    retention_ms: i64,
    /// Event time after its last step at which a feature's entity leaves `/metrics`.
    stale_ms: i64,
    inner: RwLock<BTreeMap<String, SeriesPoints>>,
}

/// Formats a value as Prometheus's API does (Go's `strconv.FormatFloat(v, 'f', -1, 64)`).
pub(crate) fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's Display for f64 is the shortest round-trip decimal without an exponent, as 'f', -1.
        format!("{v}")
    }
}

/// A step timestamp in seconds as Prometheus's API writes it (a number, fractional when needed).
pub(crate) fn format_time(t_ms: i64) -> Json {
    if t_ms % 1000 == 0 {
        json!(t_ms / 1000)
    } else {
        json!(t_ms as f64 / 1000.0)
    }
}

impl FeatureHistory {
    pub(crate) fn new(retention_ms: i64, stale_ms: i64) -> FeatureHistory {
        FeatureHistory {
            retention_ms,
            stale_ms,
            inner: RwLock::new(BTreeMap::new()),
        }
    }

    /// Records one step's results and exports the latest values as `canopy_feature_value`.
    pub(crate) fn record(&self, t_ms: i64, set: &FeatureSet, values: &[Option<FeatureValues>]) {
        let cutoff = t_ms - self.retention_ms;
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        for (feature, result) in set.features().iter().zip(values) {
            let series = inner.entry(feature.name.clone()).or_default();
            for (labels, v) in result.iter().flatten() {
                series
                    .entry(labels.clone())
                    .or_default()
                    .push_back((t_ms, *v));
                entity_gauge(
                    "canopy_feature_value",
                    metric_labels("feature", &feature.name, labels),
                    *v,
                    t_ms,
                    self.stale_ms,
                );
            }
            series.retain(|_, points| {
                while points.front().is_some_and(|(t, _)| *t < cutoff) {
                    points.pop_front();
                }
                !points.is_empty()
            });
        }
    }

    /// The retained history of one feature in `query_range`'s body shape, or `None` for a feature
    /// that has never been recorded.
    pub(crate) fn query_range_body(&self, name: &str) -> Option<Json> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let series = inner.get(name)?;
        let result: Vec<Json> = series
            .iter()
            .map(|(labels, points)| {
                let metric: serde_json::Map<String, Json> = labels
                    .iter()
                    .map(|(n, v)| (n.to_owned(), Json::from(v)))
                    .collect();
                let values: Vec<Json> = points
                    .iter()
                    .map(|&(t, v)| json!([format_time(t), format_value(v)]))
                    .collect();
                json!({"metric": metric, "values": values})
            })
            .collect();
        Some(json!({"status": "success", "data": {"resultType": "matrix", "result": result}}))
    }
}

/// Metric labels for an exported value: `(key, value)` first, then the entity's labels (a label
/// that would collide with `key` is exported as `exported_{key}`, as Prometheus does; the
/// reserved `__name__` is left out, the metric's own name says what it is).
pub(crate) fn metric_labels(
    key: &'static str,
    value: &str,
    entity: &Labels,
) -> Vec<metrics::Label> {
    let mut out = vec![metrics::Label::new(key, value.to_owned())];
    for (n, v) in entity.iter().filter(|(n, _)| *n != METRIC_NAME) {
        let name = if n == key {
            format!("exported_{n}")
        } else {
            n.to_owned()
        };
        out.push(metrics::Label::new(name, v.to_owned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_times_are_formatted_as_prometheus_does() {
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(-2.5e-7), "-0.00000025");
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_time(1_700_000_000_000), json!(1_700_000_000));
        assert_eq!(format_time(1_700_000_000_500), json!(1_700_000_000.5));
    }

    #[test]
    fn colliding_entity_labels_are_renamed() {
        let l = Labels::from_pairs([("feature", "x"), ("node", "a"), ("__name__", "up")]);
        let names: Vec<String> = metric_labels("feature", "cpu", &l)
            .iter()
            .map(|l| l.key().to_owned())
            .collect();
        assert_eq!(names, ["feature", "exported_feature", "node"]);
    }
}
