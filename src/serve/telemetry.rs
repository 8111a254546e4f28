//! The process's metrics recorder and `/metrics` rendering.
//!
//! One Prometheus recorder per process (the `metrics` facade is global). Histograms are
//! rendered with buckets, as Prometheus and KServe's model server expose them, not as summaries.
//! Every metric canopy records is described in [`METRICS`], the one place its `# HELP` text
//! lives: a metric recorded anywhere in the crate must have a line there (a test reads the
//! source to make sure).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets in seconds, fine below a millisecond where canopy's requests live.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Installs the recorder on first call and returns the handle that renders it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .expect("bucket list is non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder can only be present if a test installed one first; then that
            // one records and this handle renders nothing, which is harmless.
            let _ = metrics::set_global_recorder(recorder);
            describe_metrics();
            handle
        })
        .clone()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

use MetricKind::{Counter, Gauge, Histogram};

/// Every metric canopy records: name, kind, and the `# HELP` text `/metrics` shows for it.
/// The HELP text of a metric in [`METRICS`].
pub(crate) fn help_of(name: &str) -> Option<&'static str> {
    METRICS
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|(_, _, help)| *help)
}

pub(crate) const METRICS: &[(&str, MetricKind, &str)] = &[
    // ingest
    (
        "canopy_remote_write_requests_total",
        Counter,
        "Remote-write requests, by protocol and the status code answered.",
    ),
    (
        "canopy_remote_write_rejected_total",
        Counter,
        "Remote-write requests refused whole, by reason.",
    ),
    (
        "canopy_samples_received_total",
        Counter,
        "Samples decoded from remote-write requests, by protocol.",
    ),
    (
        "canopy_series_received_total",
        Counter,
        "Series decoded from remote-write requests, by protocol.",
    ),
    (
        "canopy_histograms_received_total",
        Counter,
        "Native histogram samples received (accepted, not kept), by protocol.",
    ),
    (
        "canopy_exemplars_received_total",
        Counter,
        "Exemplars received (accepted, not kept), by protocol.",
    ),
    (
        "canopy_metadata_received_total",
        Counter,
        "Metric metadata entries received (accepted, not kept), by protocol.",
    ),
    (
        "canopy_samples_appended_total",
        Counter,
        "Samples kept in the series store.",
    ),
    (
        "canopy_samples_dropped_total",
        Counter,
        "Samples accepted but not kept, by reason (unmatched, duplicate, conflicting_value, too_old, series_limit).",
    ),
    (
        "canopy_series_rejected_total",
        Counter,
        "Invalid series refused, by reason.",
    ),
    (
        "canopy_samples_rejected_total",
        Counter,
        "Samples of invalid series refused, by reason.",
    ),
    // store
    ("canopy_active_series", Gauge, "Series held in the store."),
    (
        "canopy_series_created_total",
        Counter,
        "Series that entered the store.",
    ),
    (
        "canopy_series_evicted_total",
        Counter,
        "Stale series evicted from the store.",
    ),
    (
        "canopy_samples_held",
        Gauge,
        "Samples held in the store across all series.",
    ),
    // features
    (
        "canopy_feature_value",
        Gauge,
        "Each feature's latest evaluated value, by feature and entity labels.",
    ),
    (
        "canopy_feature_evaluation_errors_total",
        Counter,
        "Steps at which a feature's evaluation failed, by feature.",
    ),
    (
        "canopy_evaluation_steps_total",
        Counter,
        "Feature evaluation steps run.",
    ),
    (
        "canopy_evaluation_seconds",
        Histogram,
        "Time to evaluate every feature at one step, in seconds.",
    ),
    (
        "canopy_evaluation_lag_seconds",
        Gauge,
        "Wall-clock time since the last evaluated step, in seconds.",
    ),
    (
        "canopy_evaluation_last_step_timestamp_seconds",
        Gauge,
        "Event time of the last evaluated step, in Unix seconds.",
    ),
    // models
    (
        "canopy_anomaly_score",
        Gauge,
        "The detector's anomaly score s in 0..1 (higher is more anomalous), by model and entity.",
    ),
    (
        "canopy_anomaly_likelihood",
        Gauge,
        "The calibrated 0..1 anomaly likelihood that canopy_anomaly is decided on, by model and entity.",
    ),
    (
        "canopy_anomaly",
        Gauge,
        "1 when the detector flags the entity's last step as anomalous, else 0.",
    ),
    (
        "canopy_anomalies_total",
        Counter,
        "Steps flagged as anomalous, by model and entity.",
    ),
    (
        "canopy_forecast",
        Gauge,
        "The forecaster's forecast of a target feature, by model, entity, feature and steps_ahead.",
    ),
    (
        "canopy_model_retrains_total",
        Counter,
        "Model trainings (first fit and retrains), by model and result.",
    ),
    (
        "canopy_model_retrains_skipped_total",
        Counter,
        "Retrain intervals skipped because the model's previous training was still running.",
    ),
    (
        "canopy_model_retrain_duration_seconds",
        Histogram,
        "Time one model training took, in seconds.",
    ),
    (
        "canopy_model_trees_replaced_total",
        Counter,
        "Trees grown by trainings to replace old ones (a forecaster refit replaces all).",
    ),
    (
        "canopy_model_reservoir_size",
        Gauge,
        "Vectors in the detector's training reservoir.",
    ),
    (
        "canopy_model_warming_up",
        Gauge,
        "1 while a model warms up on the stream, new or trained on a prior (synthetic rows, a backfill): a detector does not alert, a forecaster on synthetic rows does not forecast.",
    ),
    (
        "canopy_model_age_seconds",
        Gauge,
        "Event time since the model's last training, in seconds.",
    ),
    (
        "canopy_model_last_trained_step_timestamp_seconds",
        Gauge,
        "Event time of the step whose training built the current forest, in Unix seconds.",
    ),
    (
        "canopy_model_info",
        Gauge,
        "1 for the source the model's current forest was trained from, 0 for the other sources.",
    ),
    (
        "canopy_model_entities_refused_total",
        Counter,
        "Entities refused beyond the forecaster's limit.",
    ),
    (
        "canopy_model_incomplete_vectors_total",
        Counter,
        "Model steps with no complete vector, by the feature that had no value.",
    ),
    // checkpoints
    (
        "canopy_checkpoint_writes_total",
        Counter,
        "Checkpoint writes, by model and result.",
    ),
    (
        "canopy_checkpoint_write_duration_seconds",
        Histogram,
        "Time to encode, write, fsync and rename one checkpoint, in seconds.",
    ),
    (
        "canopy_checkpoint_size_bytes",
        Gauge,
        "Size of the model's last checkpoint written, in bytes.",
    ),
    (
        "canopy_checkpoint_last_success_timestamp_seconds",
        Gauge,
        "Wall-clock time of the model's last successful checkpoint write, in Unix seconds.",
    ),
    (
        "canopy_model_reloads_total",
        Counter,
        "Replaced checkpoints canopy serve found, by model and result (ok: swapped in; corrupt, shape_mismatch, unreadable: refused, the last good model keeps serving).",
    ),
    (
        "canopy_model_checkpoint_age_seconds",
        Gauge,
        "Wall-clock time since the model canopy serve serves from its checkpoint was trained, in seconds.",
    ),
    (
        "canopy_checkpoint_restores_total",
        Counter,
        "Checkpoint restores at start, by model and result (ok, mismatch, or why the file was refused).",
    ),
    // HTTP
    (
        "canopy_http_unauthorized_total",
        Counter,
        "Requests refused with 401 for want of the bearer token, by reason (missing, invalid).",
    ),
    // KServe, named as KServe's model server names them
    (
        "request_predict_seconds",
        Histogram,
        "KServe predict and V2 infer latency, in seconds.",
    ),
    (
        "request_explain_seconds",
        Histogram,
        "KServe explain latency, in seconds.",
    ),
];

/// Registers the `# HELP` text of every metric in [`METRICS`] with the global recorder.
fn describe_metrics() {
    for &(name, kind, help) in METRICS {
        match kind {
            Counter => metrics::describe_counter!(name, help),
            Gauge => metrics::describe_gauge!(name, help),
            Histogram => metrics::describe_histogram!(name, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `counter!`, `gauge!` and `histogram!` (and per-entity `entity_gauge` and
    /// `entity_counter` calls) in the crate's source, by the metric name literal that follows it.
    fn recorded_in_source() -> Vec<(String, MetricKind, String)> {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).expect("src folder") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let mut found = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("source");
            for (macro_name, kind) in [
                ("counter!(", Counter),
                ("gauge!(", Gauge),
                ("histogram!(", Histogram),
                ("entity_gauge(", Gauge),
                ("entity_counter(", Counter),
            ] {
                for (at, _) in text.match_indices(macro_name) {
                    // `describe_counter!(`, the functions' definitions, and this scan's own
                    // string literals
                    let before = &text[..at];
                    if before.ends_with("describe_")
                        || before.ends_with("fn ")
                        || before.ends_with('"')
                    {
                        continue;
                    }
                    let rest = &text[at + macro_name.len()..];
                    let name = rest
                        .trim_start()
                        .strip_prefix('"')
                        .and_then(|r| r.split('"').next())
                        .unwrap_or_else(|| {
                            panic!("{}: {macro_name} without a name literal", file.display())
                        });
                    found.push((name.to_owned(), kind, file.display().to_string()));
                }
            }
        }
        found
    }

    #[test]
    fn every_metric_recorded_in_the_crate_is_described_with_its_kind() {
        let found = recorded_in_source();
        assert!(found.len() > 40, "the source scan found only {found:?}");
        for (name, kind, file) in &found {
            let described = METRICS.iter().find(|(n, ..)| n == name);
            let Some((_, described_kind, help)) = described else {
                panic!("{name} (recorded in {file}) has no line in telemetry::METRICS");
            };
            assert_eq!(described_kind, kind, "{name}");
            assert!(!help.is_empty() && !help.contains('\n'), "{name}");
        }
        for (name, ..) in METRICS {
            assert!(
                found.iter().any(|(n, ..)| n == name),
                "{name} is described but recorded nowhere"
            );
        }
    }
}
