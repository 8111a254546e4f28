//! The entry points of the fuzz targets in `fuzz/` and of their stable replay in
//! `tests/fuzz_replay.rs`, written once for both: each takes arbitrary bytes, hands them to
//! canopy exactly where the server (or the command line) hands it outside input, and returns
//! normally whatever canopy answers. A panic is the finding; an allocation out of proportion to
//! the input is the other, caught by libFuzzer's memory limits.
//!
//! Not part of canopy's API: nothing in the agent calls it. Where a target needs a leading byte
//! to choose among variants (protocol, model, framing), the rest of the input is the body.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request};
use ndarray::ArrayView2;
use tower::ServiceExt;

use crate::checkpoint::format;
use crate::checkpoint::saved::SavedData;
use crate::config::Config;
use crate::ingest::decode::Allowance;
use crate::ingest::{IngestLimits, Ingestor, Protocol};
use crate::live::{Published, TrainingInfo};
use crate::model::iforest::{IsolationForest, IsolationForestParams};
use crate::model::matrix::row_major;
use crate::model::rforest::{RandomForestParams, RandomForestRegressor};
use crate::pipeline::Pipeline;
use crate::promql::{Evaluator, Plan, canonical};
use crate::series::{Prefilter, Sample, SeriesStore, StoreLimits};
use crate::serve::kserve;
use crate::serve::registry::{DetectorHandle, ForecasterHandle, Registry};
use crate::source::csv::Table;

/// A target's entry point: any bytes in, a return (or a panic, the finding) out.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets/` and `fuzz/corpus/` name them.
pub const TARGETS: [(&str, Target); 7] = [
    ("remote_write", remote_write),
    ("kserve_v1", kserve_v1),
    ("kserve_v2", kserve_v2),
    ("checkpoint", checkpoint),
    ("csv", csv),
    ("config", config),
    ("promql", promql),
];

/// The models the KServe targets are served: a trained detector (3 features), a trained
/// forecaster (lookback 2 × 2 features → horizon 2 × 1 target) and a detector still training.
pub(crate) const KSERVE_MODELS: [&str; 3] = ["detector", "forecaster", "training"];

/// What the default config's pipeline ingests with: its store's limits, its prefilter and its
/// ingest limits. Every remote-write input meets them with a fresh store of its own.
fn default_ingest() -> &'static (StoreLimits, Prefilter, IngestLimits) {
    static INGEST: OnceLock<(StoreLimits, Prefilter, IngestLimits)> = OnceLock::new();
    INGEST.get_or_init(|| {
        let config = Config::default_config().expect("the embedded default config is valid");
        let pipeline = Pipeline::new(&config).expect("the default pipeline builds");
        let store = StoreLimits {
            max_series: config.limits.max_series,
            retention_ms: config.limits.retention.as_millis() as i64,
        };
        let prefilter = Prefilter::new(pipeline.features.selectors());
        (store, prefilter, *pipeline.ingestor.limits())
    })
}

/// Remote-write: the first byte's bit 0 chooses 1.0 or 2.0; with bit 1 set the rest is the
/// protobuf, snappy-compressed here (so mutations reach the decoder), otherwise the rest is the
/// compressed body as sent. The body goes to [`Ingestor::write`], as the handler passes it, with
/// a fresh store so that every input is replayed alone.
pub fn remote_write(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let protocol = if mode & 1 == 0 {
        Protocol::V1
    } else {
        Protocol::V2
    };
    let compressed;
    let body = if mode & 2 == 0 {
        rest
    } else {
        compressed = snap::raw::Encoder::new()
            .compress_vec(rest)
            .expect("snappy compresses any input under 4 GiB");
        &compressed
    };
    let (store, prefilter, limits) = default_ingest();
    let ingestor = Ingestor::new(
        Arc::new(SeriesStore::new(*store)),
        prefilter.clone(),
        *limits,
    );
    // Any outcome is an answer (204, 400 or 413); only a panic is not.
    let _ = ingestor.write(protocol, body, &mut Allowance::unlimited());
}

/// The KServe router over [`KSERVE_MODELS`], with the runtime that drives it.
fn kserve_router() -> &'static (tokio::runtime::Runtime, Router) {
    static ROUTER: OnceLock<(tokio::runtime::Runtime, Router)> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        let rows: Vec<f64> = (0..64u32).map(|i| f64::from(i % 7) * 0.5).collect();
        let detector = IsolationForest::fit(
            &IsolationForestParams {
                n_estimators: 8,
                max_samples: 16,
                ..IsolationForestParams::default()
            },
            row_major(&rows[..63], 3).expect("21 rows of 3"),
        )
        .expect("fit the detector");
        let targets: Vec<f64> = (0..32u32).map(f64::from).collect();
        let forecaster = RandomForestRegressor::fit_with_threads(
            &RandomForestParams {
                n_estimators: 4,
                max_depth: Some(4),
                ..RandomForestParams::default()
            },
            row_major(&rows, 4).expect("16 rows of 4"),
            row_major(&targets, 2).expect("16 rows of 2"),
            std::num::NonZeroUsize::MIN,
        )
        .expect("fit the forecaster");
        let features = |names: &[&str]| names.iter().map(|s| (*s).to_owned()).collect();
        let registry = Registry {
            detectors: vec![
                DetectorHandle {
                    name: KSERVE_MODELS[0].into(),
                    features: features(&["a", "b", "c"]),
                    model: Published::of(Arc::new(detector), TrainingInfo::default()),
                },
                DetectorHandle {
                    name: KSERVE_MODELS[2].into(),
                    features: features(&["a", "b", "c"]),
                    model: Published::empty(),
                },
            ],
            forecasters: vec![ForecasterHandle {
                name: KSERVE_MODELS[1].into(),
                features: features(&["a", "b"]),
                targets: features(&["a"]),
                lookback: 2,
                horizon: 2,
                model: Published::of(Arc::new(forecaster), TrainingInfo::default()),
            }],
        };
        (runtime, kserve::router(registry))
    })
}

/// Sends `request` through the KServe router and waits for its whole answer.
fn serve(request: Request<Body>) {
    let (runtime, router) = kserve_router();
    let response = runtime
        .block_on(router.clone().oneshot(request))
        .expect("the router never fails");
    // Bad input is the client's error: 4xx, or 501/503 for what the model cannot do yet.
    assert_ne!(response.status().as_u16(), 500, "an input answered 500");
}

/// KServe V1: the first byte chooses the model (by 3) and `:predict` or `:explain`; the rest is
/// the JSON body of `POST /v1/models/{model}:{verb}`.
pub fn kserve_v1(data: &[u8]) {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    let model = KSERVE_MODELS[usize::from(choice) % 3];
    let verb = if (choice / 3) % 2 == 0 {
        "predict"
    } else {
        "explain"
    };
    let request = Request::post(format!("/v1/models/{model}:{verb}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .expect("a valid request");
    serve(request);
}

/// KServe V2: the first byte chooses the model (by 3); the rest is a line with the
/// `Inference-Header-Content-Length` value (empty: no such header, JSON only) and then the body
/// of `POST /v2/models/{model}/infer`: JSON, followed by binary tensors when the header is given.
pub fn kserve_v2(data: &[u8]) {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let model = KSERVE_MODELS[usize::from(choice) % 3];
    let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
        return;
    };
    let (header, body) = (&rest[..newline], &rest[newline + 1..]);
    let mut request = Request::post(format!("/v2/models/{model}/infer"));
    if !header.is_empty() {
        // A value HTTP cannot carry never reaches the server.
        let Ok(value) = HeaderValue::from_bytes(header) else {
            return;
        };
        request = request.header("inference-header-content-length", value);
    }
    let request = request
        .body(Body::from(body.to_vec()))
        .expect("a valid request");
    serve(request);
}

/// Checkpoint decoding: with the first byte even, the rest is a payload framed here with a valid
/// header and CRC (so every input reaches the protobuf and the model checks); odd, the rest is a
/// whole file. A model that decodes must then score a row without panicking, as the KServe
/// endpoints would on it, and encode to a file that decodes again, as the next restart reads it.
pub fn checkpoint(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let framed;
    let file = if mode & 1 == 0 {
        framed = format::frame(rest, format::FORMAT_VERSION);
        &framed
    } else {
        rest
    };
    let Ok(saved) = format::decode(file) else {
        return;
    };
    match &saved.data {
        SavedData::Detector { forest, .. } => {
            let row = vec![0.5; forest.n_features()];
            let rows = ArrayView2::from_shape((1, row.len()), &row).expect("one row");
            forest.predict(rows).expect("a decoded detector predicts");
            forest
                .anomaly_scores(rows)
                .expect("a decoded detector scores");
            forest.explain(&row).expect("a decoded detector explains");
        }
        SavedData::Forecaster { forest, .. } => {
            let row = vec![0.5; forest.n_features()];
            let rows = ArrayView2::from_shape((1, row.len()), &row).expect("one row");
            forest.predict(rows).expect("a decoded forecaster predicts");
        }
    }
    if let Err(e) = format::decode(&format::encode(&saved)) {
        panic!("a decoded checkpoint encodes to one that does not decode: {e}");
    }
}

/// CSV: the text of a `score` or `replay` input file (the command reads it as UTF-8 first).
pub fn csv(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Table::parse(text, "fuzz.csv");
}

/// Config: the text of a `--config` file, merged over the default and built into the pipeline
/// as the agent starts (features planned, retention checked, prefilter built).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_parts(Some((text, "fuzz.toml")), &[]) else {
        return;
    };
    let _ = Pipeline::new(&config);
}

/// The series the PromQL target evaluates over: two counters and a gauge with a few samples.
fn promql_store() -> &'static SeriesStore {
    static STORE: OnceLock<SeriesStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let store = SeriesStore::new(StoreLimits {
            max_series: 100,
            retention_ms: 3_600_000,
        });
        // Label pairs sorted by name, as the decoder hands them to the store.
        let series: [&[(&str, &str)]; 3] = [
            &[("__name__", "requests_total"), ("job", "a"), ("mode", "x")],
            &[("__name__", "requests_total"), ("job", "b"), ("mode", "y")],
            &[("__name__", "load"), ("job", "a")],
        ];
        for (n, labels) in series.iter().enumerate() {
            let samples: Vec<Sample> = (0..40)
                .map(|k| Sample {
                    t: PROMQL_T_MS - 600_000 + k * 15_000,
                    v: (k * (n as i64 + 1)) as f64,
                })
                .collect();
            store.append(labels, &samples);
        }
        store
    })
}

/// The step the PromQL target evaluates at.
const PROMQL_T_MS: i64 = 1_700_000_000_000;

/// PromQL: a feature expression planned as `[features]` plans it, put in canonical form as
/// checkpoints compare it, and evaluated at one step over a small store.
pub fn promql(data: &[u8]) {
    let Ok(expr) = std::str::from_utf8(data) else {
        return;
    };
    let _ = canonical(expr);
    let Ok(plan) = Plan::parse(expr) else {
        return;
    };
    let _ = plan.lookback_ms();
    let _ = plan.selectors().count();
    let _ = Evaluator::new().eval(promql_store(), &plan, PROMQL_T_MS);
}
