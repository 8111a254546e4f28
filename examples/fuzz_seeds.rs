//! Writes the seed inputs of the fuzz targets into `fuzz/corpus/<target>/seed-NN`: small valid
//! (and a few nearly valid) inputs of each, laid out as `canopy::fuzzing` reads them, so that
//! fuzzing starts from inputs that reach deep into each parser.
//!
//! `cargo run --example fuzz_seeds`; existing seed files are overwritten, other corpus files kept.

use std::path::Path;
use std::sync::Arc;

use canopy::checkpoint::format;
use canopy::checkpoint::saved::{SavedData, SavedEntity, SavedModel, SavedReservoir};
use canopy::ingest::proto::{v1, v2};
use canopy::live::TrainingInfo;
use canopy::model::iforest::{IsolationForest, IsolationForestParams};
use canopy::model::matrix::row_major;
use canopy::model::rforest::{RandomForestParams, RandomForestRegressor};
use canopy::series::Labels;
use prost::Message;

fn main() -> std::io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, seeds) in [
        ("remote_write", remote_write()),
        ("kserve_v1", kserve_v1()),
        ("kserve_v2", kserve_v2()),
        ("checkpoint", checkpoint()),
        ("csv", texts(CSV)),
        ("config", texts(CONFIG)),
        ("promql", texts(PROMQL)),
    ] {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed)?;
        }
        println!("{target}: {} seeds in {}", seeds.len(), dir.display());
    }
    Ok(())
}

/// `mode` then `body`, the layout of the targets that take a leading choice byte.
fn with(mode: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(body);
    out
}

fn texts(texts: &[&str]) -> Vec<Vec<u8>> {
    texts.iter().map(|t| t.as_bytes().to_vec()).collect()
}

fn snappy(body: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(body)
        .expect("snappy compresses")
}

/// Remote-write 1.0 and 2.0 requests, each compressed (mode 0/1) and raw (mode 2/3).
fn remote_write() -> Vec<Vec<u8>> {
    let label = |name: &str, value: &str| v1::Label {
        name: name.into(),
        value: value.into(),
    };
    let t0 = 1_700_000_000_000;
    let v1_request = v1::WriteRequest {
        timeseries: vec![
            v1::TimeSeries {
                labels: vec![
                    label("__name__", "node_cpu_seconds_total"),
                    label("cpu", "0"),
                    label("mode", "user"),
                ],
                samples: vec![
                    v1::Sample {
                        value: 1.5,
                        timestamp: t0,
                    },
                    v1::Sample {
                        value: 2.5,
                        timestamp: t0 + 15_000,
                    },
                ],
                ..Default::default()
            },
            v1::TimeSeries {
                labels: vec![label("job", "no-name")],
                samples: vec![v1::Sample {
                    value: 1.0,
                    timestamp: t0,
                }],
                ..Default::default()
            },
        ],
        metadata: vec![v1::MetricMetadata {
            r#type: 1,
            metric_family_name: "node_cpu_seconds_total".into(),
            help: "Seconds the CPUs spent in each mode.".into(),
            unit: String::new(),
        }],
    }
    .encode_to_vec();
    let v2_request = v2::Request {
        symbols: [
            "",
            "__name__",
            "node_memory_MemTotal_bytes",
            "instance",
            "a:9100",
            "help",
        ]
        .map(String::from)
        .to_vec(),
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 2, 3, 4],
            samples: vec![v2::Sample {
                value: 8e9,
                timestamp: t0,
                start_timestamp: 0,
            }],
            exemplars: vec![v2::Exemplar {
                labels_refs: vec![3, 4],
                value: 1.0,
                timestamp: t0,
            }],
            histograms: vec![v2::Histogram {
                sum: 3.0,
                schema: 0,
                timestamp: t0,
                ..Default::default()
            }],
            metadata: Some(v2::Metadata {
                r#type: 2,
                help_ref: 5,
                unit_ref: 0,
            }),
            created_timestamp: 0,
        }],
    }
    .encode_to_vec();
    vec![
        with(0, &snappy(&v1_request)),
        with(1, &snappy(&v2_request)),
        with(2, &v1_request),
        with(3, &v2_request),
    ]
}

/// V1 bodies, the first byte choosing model and verb as `canopy::fuzzing::kserve_v1` reads it.
fn kserve_v1() -> Vec<Vec<u8>> {
    const DETECTOR_PREDICT: u8 = 0;
    const FORECASTER_PREDICT: u8 = 1;
    const TRAINING_PREDICT: u8 = 2;
    const DETECTOR_EXPLAIN: u8 = 3;
    vec![
        with(
            DETECTOR_PREDICT,
            br#"{"instances": [[0.5, 1, 2], [3, 4.5e1, -5]]}"#,
        ),
        with(DETECTOR_EXPLAIN, br#"{"instances": [[0.5, 1, 2]]}"#),
        with(FORECASTER_PREDICT, br#"{"inputs": [[1, 2, 3, 4]]}"#),
        with(TRAINING_PREDICT, br#"{"instances": [[1, 2, 3]]}"#),
        with(DETECTOR_PREDICT, br#"{"instances": [[1, "a", 3], [1]]}"#),
        with(DETECTOR_PREDICT, br#"{"instances": [1, 2, 3]}"#),
    ]
}

/// V2 requests: model byte, the `Inference-Header-Content-Length` line, then the body.
fn kserve_v2() -> Vec<Vec<u8>> {
    let json = |model: u8, body: &str| {
        let mut out = vec![model, b'\n'];
        out.extend_from_slice(body.as_bytes());
        out
    };
    let binary = |model: u8, header: &str, tensors: &[u8]| {
        let mut out = vec![model];
        out.extend_from_slice(format!("{}\n{header}", header.len()).as_bytes());
        out.extend_from_slice(tensors);
        out
    };
    let fp32: Vec<u8> = [0.5f32, 1.0, 2.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let fp16: Vec<u8> = [0x3c00u16, 0x4000, 0x7c00]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    vec![
        json(
            0,
            r#"{"id": "1", "inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6]}], "outputs": [{"name": "score"}, {"name": "decision_function"}]}"#,
        ),
        json(
            1,
            r#"{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "INT64", "data": [[1, 2], [3, 4]]}], "outputs": [{"name": "output-0", "parameters": {"binary_data": true}}]}"#,
        ),
        json(
            0,
            r#"{"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "BOOL", "data": [true, false, true]}]}"#,
        ),
        binary(
            0,
            r#"{"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP32", "parameters": {"binary_data_size": 12}}], "parameters": {"binary_data_output": true}}"#,
            &fp32,
        ),
        binary(
            0,
            r#"{"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP16", "parameters": {"binary_data_size": 6}}]}"#,
            &fp16,
        ),
    ]
}

/// Checkpoint payloads of a small detector and forecaster (mode 0: framed by the target), and
/// one whole file (mode 1).
fn checkpoint() -> Vec<Vec<u8>> {
    let training = TrainingInfo {
        source: "live".into(),
        trained_at_ms: Some(1_700_000_000_000),
        generation: 1,
    };
    let rows: Vec<f64> = (0..24u32).map(|i| f64::from(i % 5)).collect();
    let detector = IsolationForest::fit(
        &IsolationForestParams {
            n_estimators: 3,
            max_samples: 8,
            ..IsolationForestParams::default()
        },
        row_major(&rows, 2).expect("whole rows"),
    )
    .expect("fit the detector");
    let detector = SavedModel {
        name: "anomaly-detector".into(),
        features: vec!["cpu".into(), "memory".into()],
        expressions: vec!["avg(cpu)".into(), "avg(memory)".into()],
        step_ms: 60_000,
        retrain_interval_ms: 600_000,
        max_age_ms: 86_400_000,
        training: training.clone(),
        data: SavedData::Detector {
            forest: Arc::new(detector),
            replace_fraction: 0.1,
            reservoir_size: 16,
            gate_anomalies: true,
            reservoir: SavedReservoir {
                values: rows[..8].to_vec(),
                timestamps_ms: (0..4).map(|k| 1_700_000_000_000 + k * 60_000).collect(),
                trainable: vec![true, true, false, true],
            },
        },
    };
    let forecaster = RandomForestRegressor::fit_with_threads(
        &RandomForestParams {
            n_estimators: 2,
            max_depth: Some(3),
            ..RandomForestParams::default()
        },
        row_major(&rows, 2).expect("whole rows"),
        row_major(&rows[..12], 1).expect("whole rows"),
        std::num::NonZeroUsize::MIN,
    )
    .expect("fit the forecaster");
    let forecaster = SavedModel {
        name: "forecaster".into(),
        features: vec!["cpu".into()],
        expressions: vec!["avg(cpu)".into()],
        step_ms: 300_000,
        retrain_interval_ms: 3_600_000,
        max_age_ms: 86_400_000,
        training,
        data: SavedData::Forecaster {
            forest: Arc::new(forecaster),
            targets: vec!["cpu".into()],
            lookback: 2,
            horizon: 1,
            history: vec![SavedEntity {
                labels: Labels::from_pairs([("node", "a")]),
                timestamps_ms: vec![1_700_000_000_000, 1_700_000_300_000],
                values: vec![0.5, f64::NAN],
            }],
        },
    };
    vec![
        with(0, &detector.to_proto().encode_to_vec()),
        with(0, &forecaster.to_proto().encode_to_vec()),
        with(1, &format::encode(&detector)),
    ]
}

const CSV: &[&str] = &[
    "timestamp,cpu,memory\n2024-01-01 00:00:00,0.5,0.25\n2024-01-01T00:01:00Z,,0.5\n",
    "\u{feff}Timestamp,\"load\"\n1704067200,1\n1704067260.5,2\n1704067200,3\n-5,4\n",
    "timestamp,a\n2024-02-30 00:00:00,x\n",
];

const CONFIG: &[&str] = &[
    "listen = \":9000\"\n[limits]\nmax_series = 10\nretention = \"1h\"\n",
    r#"[features]
load = 'avg(node_load1)'
queue = 'sum by (instance) (rate(queue_total[5m]))'

[models.detector]
kind = "isolation_forest"
features = ["load", "queue"]
step = "30s"
n_estimators = 10
max_samples = 64

[models.forecaster]
kind = "random_forest"
features = ["load"]
target = ["load"]
step = "5m"
lookback = 4
horizon = 2
"#,
    "[evaluation]\nlateness = \"30s\"\n[models.anomaly-detector]\nkind = \"isolation_forest\"\nfeatures = [\"cpu\"]\n",
];

const PROMQL: &[&str] = &[
    "sum by (job) (rate(requests_total[5m]))",
    "avg(rate(requests_total{mode!=\"idle\"}[5m]))",
    "load offset 5m / ignoring(job) group_left load",
    "max_over_time(load[10m]) - min_over_time(load[10m]) > bool 3",
    "sum(increase(requests_total{job=~\"a|b\"}[2m])) or vector(0)",
    "clamp_min(-load, 0) * 2 ^ 3 % 5",
    "count without (mode) (requests_total) unless on (job) load",
    "avg_over_time(load[5m:1m])",
];
