//! The served models as both protocols see them: name, input width, outputs, readiness, and
//! the computation of each output over flat rows.
//!
//! A forest is loaded from its `arc-swap` cell once per request (lock-free), so a request
//! scores every row with one forest even if a retrain publishes a new one meanwhile.

use std::time::Instant;

use metrics::Histogram;

use super::KserveError;
use crate::serve::registry::{DetectorHandle, ForecasterHandle, Registry};

/// Every model of the registry, with its latency histograms registered once.
pub(crate) struct Served {
    pub(crate) models: Vec<ServedModel>,
    pub(crate) max_body_bytes: usize,
}

pub(crate) enum Kind {
    Detector(DetectorHandle),
    Forecaster(ForecasterHandle),
}

pub(crate) struct ServedModel {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    predict_seconds: Histogram,
    explain_seconds: Histogram,
}

/// The detector's outputs: `output-0` (−1/1), `score` (s in 0..1), `decision_function`.
pub(crate) const DETECTOR_OUTPUTS: &[&str] = &["output-0", "score", "decision_function"];
pub(crate) const FORECASTER_OUTPUTS: &[&str] = &["output-0"];

/// One computed output tensor.
pub(crate) enum OutputData {
    Int64(Vec<i64>),
    Fp64(Vec<f64>),
}

impl OutputData {
    pub(crate) fn datatype(&self) -> &'static str {
        match self {
            OutputData::Int64(_) => "INT64",
            OutputData::Fp64(_) => "FP64",
        }
    }

    /// The raw little-endian bytes of the binary tensor extension.
    pub(crate) fn append_le_bytes(&self, out: &mut Vec<u8>) {
        match self {
            OutputData::Int64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            OutputData::Fp64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        }
    }

    pub(crate) fn byte_len(&self) -> usize {
        match self {
            OutputData::Int64(v) => v.len() * 8,
            OutputData::Fp64(v) => v.len() * 8,
        }
    }
}

impl Served {
    pub(crate) fn new(registry: Registry, max_body_bytes: usize) -> Served {
        let mut models: Vec<ServedModel> = registry
            .detectors
            .into_iter()
            .map(|d| ServedModel::new(d.name.clone(), Kind::Detector(d)))
            .chain(
                registry
                    .forecasters
                    .into_iter()
                    .map(|f| ServedModel::new(f.name.clone(), Kind::Forecaster(f))),
            )
            .collect();
        models.sort_by(|a, b| a.name.cmp(&b.name));
        Served {
            models,
            max_body_bytes,
        }
    }

    pub(crate) fn model(&self, name: &str) -> Result<&ServedModel, KserveError> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| KserveError::UnknownModel {
                name: name.to_owned(),
                served: self.names().join(", "),
            })
    }

    pub(crate) fn names(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.name.as_str()).collect()
    }

    pub(crate) fn all_ready(&self) -> bool {
        self.models.iter().all(ServedModel::is_ready)
    }
}

impl ServedModel {
    fn new(name: String, kind: Kind) -> ServedModel {
        ServedModel {
            predict_seconds: metrics::histogram!("request_predict_seconds", "model_name" => name.clone()),
            explain_seconds: metrics::histogram!("request_explain_seconds", "model_name" => name.clone()),
            name,
            kind,
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        match &self.kind {
            Kind::Detector(d) => d.model.load().is_some(),
            Kind::Forecaster(f) => f.model.load().is_some(),
        }
    }

    /// Values in one input row: the features, or `lookback` steps of them for a forecaster.
    pub(crate) fn input_width(&self) -> usize {
        match &self.kind {
            Kind::Detector(d) => d.features.len(),
            Kind::Forecaster(f) => f.lookback * f.features.len(),
        }
    }

    /// Values in one row of `output-0`.
    pub(crate) fn output_width(&self) -> usize {
        match &self.kind {
            Kind::Detector(_) => 1,
            Kind::Forecaster(f) => f.horizon * f.targets.len(),
        }
    }

    pub(crate) fn outputs(&self) -> &'static [&'static str] {
        match &self.kind {
            Kind::Detector(_) => DETECTOR_OUTPUTS,
            Kind::Forecaster(_) => FORECASTER_OUTPUTS,
        }
    }

    /// The error for a row of `got` values, when that is not the input width.
    pub(crate) fn check_width(&self, got: usize) -> Result<(), KserveError> {
        let expected = self.input_width();
        if got == expected {
            return Ok(());
        }
        Err(match &self.kind {
            Kind::Detector(_) => KserveError::FeatureCount { expected, got },
            Kind::Forecaster(f) => KserveError::WindowWidth {
                expected,
                lookback: f.lookback,
                features: f.features.len(),
                got,
            },
        })
    }

    pub(crate) fn check_output(&self, name: &str) -> Result<(), KserveError> {
        if self.outputs().contains(&name) {
            return Ok(());
        }
        Err(KserveError::UnknownOutput {
            name: name.to_owned(),
            model: self.name.clone(),
            available: self.outputs().join(", "),
        })
    }

    pub(crate) fn start_timer(&self) -> Instant {
        Instant::now()
    }

    /// Records a predict request begun at `started` in `request_predict_seconds`.
    pub(crate) fn record_predict(&self, started: Instant) {
        self.predict_seconds.record(started.elapsed().as_secs_f64());
    }

    /// Records an explain request begun at `started` in `request_explain_seconds`.
    pub(crate) fn record_explain(&self, started: Instant) {
        self.explain_seconds.record(started.elapsed().as_secs_f64());
    }

    /// Computes the named outputs (already checked with [`ServedModel::check_output`]) for
    /// `values`, row-major rows of [`ServedModel::input_width`] values.
    pub(crate) fn compute(
        &self,
        values: &[f64],
        names: &[&str],
    ) -> Result<Vec<OutputData>, KserveError> {
        match &self.kind {
            Kind::Detector(d) => {
                let guard = d.model.load();
                let forest = guard
                    .as_ref()
                    .ok_or_else(|| KserveError::NotReady(self.name.clone()))?;
                let width = d.features.len();
                let mut s = Vec::with_capacity(values.len() / width.max(1));
                for row in values.chunks_exact(width.max(1)) {
                    s.push(forest.anomaly_score(row)?);
                }
                let offset = forest.offset();
                Ok(names
                    .iter()
                    .map(|&name| match name {
                        "score" => OutputData::Fp64(s.clone()),
                        "decision_function" => {
                            OutputData::Fp64(s.iter().map(|s| -s - offset).collect())
                        }
                        _ => OutputData::Int64(
                            s.iter()
                                .map(|s| if -s - offset < 0.0 { -1 } else { 1 })
                                .collect(),
                        ),
                    })
                    .collect())
            }
            Kind::Forecaster(f) => {
                let guard = f.model.load();
                let forest = guard
                    .as_ref()
                    .ok_or_else(|| KserveError::NotReady(self.name.clone()))?;
                let width = self.input_width();
                let out_width = forest.n_outputs();
                let mut out = vec![0.0; values.len() / width.max(1) * out_width];
                for (row, o) in values
                    .chunks_exact(width.max(1))
                    .zip(out.chunks_exact_mut(out_width.max(1)))
                {
                    forest.predict_row(row, o)?;
                }
                Ok(vec![OutputData::Fp64(out)])
            }
        }
    }

    /// Per-row feature contributions (detector only), each row's summing to 1.
    pub(crate) fn explain(&self, values: &[f64]) -> Result<Vec<Vec<f64>>, KserveError> {
        let Kind::Detector(d) = &self.kind else {
            return Err(KserveError::NoExplanations(self.name.clone()));
        };
        let guard = d.model.load();
        let forest = guard
            .as_ref()
            .ok_or_else(|| KserveError::NotReady(self.name.clone()))?;
        values
            .chunks_exact(d.features.len().max(1))
            .map(|row| forest.explain(row).map_err(KserveError::from))
            .collect()
    }
}
