//! Checkpoints on the model volume: the file round-trips both model kinds exactly; a corrupt,
//! truncated or unknown-version file is logged, moved aside as `corrupt-…`, counted, and the agent
//! trains anew; a sound file whose model no longer means what the config's does (another kind,
//! step or feature expression, or no recorded expressions) likewise, as `mismatch-…`, while equal
//! expressions restore; SIGTERM writes a checkpoint that a restarted agent restores and serves unchanged
//! until its first retrain, one retrain interval later; and an agent killed with SIGKILL at random
//! instants, many of them during a write, always leaves a file that decodes and restores.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canopy::checkpoint::format::frame;
use canopy::checkpoint::saved::{SavedEntity, SavedReservoir};
use canopy::checkpoint::{
    CHECKPOINT_FILE, CheckpointError, FORMAT_VERSION, OLDEST_FORMAT_VERSION, SavedData, SavedModel,
    TEMP_FILE, decode, encode,
};
use canopy::ingest::proto::v1;
use canopy::live::TrainingInfo;
use canopy::model::iforest::{IsolationForest, IsolationForestParams};
use canopy::model::matrix::row_major;
use canopy::model::rforest::{RandomForestParams, RandomForestRegressor};
use canopy::model::rng::Rng;
use canopy::series::Labels;
use canopy::serve::reload::load_registry;
use common::{Agent, http, metric_value, wait_for};
use ndarray::ArrayView2;
use prost::Message;

/// Both models, small enough to train within seconds of event-time remote-write. The feed runs
/// event time from the present into the next hours, faster than the wall clock: samples that far
/// ahead are allowed.
const CONFIG: &str = r#"
[limits]
max_future = "1d"
[evaluation]
step = "10s"
lateness = "0s"
[features]
load = 'avg(load)'
queue = 'sum(queue)'
[models.detector]
kind = "isolation_forest"
features = ["load", "queue"]
step = "10s"
max_samples = 32
n_estimators = 50
retrain_interval = "5m"
[models.forecaster]
kind = "random_forest"
features = ["load", "queue"]
target = ["load"]
step = "10s"
lookback = 4
horizon = 2
n_estimators = 10
retrain_interval = "1h"
"#;

/// Rows every prediction comparison is made on.
const DETECTOR_ROWS: [f64; 8] = [1.0, 10.0, 2.0, 12.0, 0.0, 8.0, 5.0, 30.0];
const FORECASTER_ROW: [f64; 8] = [1.0, 10.0, 1.5, 11.0, 2.0, 12.0, 1.7, 11.4];

/// `DETECTOR_ROWS` as the detector's matrix: four rows of two features.
fn detector_rows() -> ArrayView2<'static, f64> {
    row_major(&DETECTOR_ROWS, 2).expect("4 rows of 2")
}

/// `FORECASTER_ROW` as a matrix of one row.
fn forecaster_row() -> ArrayView2<'static, f64> {
    row_major(&FORECASTER_ROW, FORECASTER_ROW.len()).expect("one row")
}

/// Where the tests' event time starts: the present (rounded to the step), so that the synthetic
/// rows each model is first trained from at start (over the training days up to now) are still
/// inside the reservoir's age window when the stream's first vectors arrive.
fn t0() -> i64 {
    static T0: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *T0.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        now - now % 10_000
    })
}

fn post(url: &str, t_ms: i64, load: f64, queue: f64) -> Result<u16, reqwest::Error> {
    let series = |name: &str, v: f64| v1::TimeSeries {
        labels: vec![v1::Label {
            name: "__name__".into(),
            value: name.into(),
        }],
        samples: vec![v1::Sample {
            value: v,
            timestamp: t_ms,
        }],
        ..Default::default()
    };
    let body = common::write_request_v1(vec![series("load", load), series("queue", queue)]);
    http()
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .map(|r| r.status().as_u16())
}

/// A compressed daily-like cycle, one value pair per step `k`.
fn cycle(k: i64) -> (f64, f64) {
    let phase = (k % 30) as f64 / 30.0 * std::f64::consts::TAU;
    (1.0 + phase.sin(), 10.0 + 2.0 * phase.cos())
}

/// Sends steps `ks` (10 s apart from `t0()`), waiting for each chunk to be evaluated as a live
/// stream would be (the first step alone, so the evaluation starts from it).
fn feed(agent: &Agent, ks: std::ops::Range<i64>) {
    // A fresh agent exports the counter from its first step on.
    let before = agent.metric("canopy_evaluation_steps_total").unwrap_or(0.0);
    let url = agent.url("/api/v1/write");
    for (i, k) in ks.clone().enumerate() {
        let (load, queue) = cycle(k);
        assert_eq!(
            post(&url, t0() + k * 10_000, load, queue).expect("write"),
            204
        );
        if i == 0 || i % 20 == 19 || k == ks.end - 1 {
            let want = before + (i + 1) as f64;
            wait_for(Duration::from_secs(20), "the chunk to be evaluated", || {
                (agent
                    .metric("canopy_evaluation_steps_total")
                    .is_some_and(|v| v >= want))
                .then_some(())
            });
        }
    }
}

fn read(path: &Path) -> SavedModel {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn detector_forest(m: &SavedModel) -> &IsolationForest {
    match &m.data {
        SavedData::Detector { forest, .. } => forest,
        SavedData::Forecaster { .. } => panic!("{} is not a detector", m.name),
    }
}

fn forecaster_forest(m: &SavedModel) -> &RandomForestRegressor {
    match &m.data {
        SavedData::Forecaster { forest, .. } => forest,
        SavedData::Detector { .. } => panic!("{} is not a forecaster", m.name),
    }
}

/// The expression `CONFIG` gives a feature (`avg(NAME)` for names it does not define).
fn expression(feature: &str) -> String {
    match feature {
        "queue" => "sum(queue)".into(),
        other => format!("avg({other})"),
    }
}

/// A detector checkpoint fitted in-process on the cycle's values, its features' expressions as
/// `CONFIG` has them.
fn saved_detector(name: &str, features: &[&str]) -> SavedModel {
    let mut rng = Rng::new(5);
    let rows: Vec<f64> = (0..400)
        .flat_map(|k| {
            let (a, b) = cycle(k);
            [a + 0.01 * rng.next_f64(), b]
        })
        .collect();
    let params = IsolationForestParams {
        n_estimators: 50,
        max_samples: 32,
        seed: 42,
        ..IsolationForestParams::default()
    };
    let forest =
        IsolationForest::fit(&params, row_major(&rows, 2).expect("whole rows")).expect("fit");
    let forest = forest
        .retrained(
            row_major(&rows[..400], 2).expect("whole rows"),
            row_major(&rows, 2).expect("whole rows"),
            0.1,
        )
        .expect("retrain");
    SavedModel {
        name: name.into(),
        features: features.iter().map(|f| f.to_string()).collect(),
        expressions: features.iter().map(|f| expression(f)).collect(),
        step_ms: 10_000,
        retrain_interval_ms: 300_000,
        max_age_ms: 7 * 86_400_000,
        training: TrainingInfo {
            source: "live".into(),
            trained_at_ms: Some(t0()),
            generation: forest.generation(),
        },
        data: SavedData::Detector {
            forest: Arc::new(forest),
            replace_fraction: 0.1,
            reservoir_size: 10_080,
            gate_anomalies: true,
            reservoir: SavedReservoir {
                timestamps_ms: (0..400).map(|k| t0() + k * 10_000).collect(),
                trainable: (0..400).map(|k| k % 7 != 0).collect(),
                values: rows,
            },
        },
    }
}

/// A forecaster checkpoint fitted in-process (lookback 4, horizon 2, target load).
fn saved_forecaster(name: &str) -> SavedModel {
    forecaster_of(name, 2, 10)
}

/// A forecaster checkpoint of `trees` trees fitted in-process (lookback 4, target load).
fn forecaster_of(name: &str, horizon: usize, trees: usize) -> SavedModel {
    let history: Vec<f64> = (0..300).flat_map(|k| <[f64; 2]>::from(cycle(k))).collect();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..300 - 4 - horizon {
        x.extend_from_slice(&history[i * 2..(i + 4) * 2]);
        y.extend((0..horizon).map(|h| history[(i + 4 + h) * 2]));
    }
    let params = RandomForestParams {
        n_estimators: trees,
        seed: 42,
        ..RandomForestParams::default()
    };
    let forest = RandomForestRegressor::fit(
        &params,
        row_major(&x, 8).expect("whole rows"),
        row_major(&y, horizon).expect("whole rows"),
    )
    .expect("fit");
    let mut gappy = history.clone();
    gappy[10] = f64::NAN;
    gappy[11] = f64::NAN;
    SavedModel {
        name: name.into(),
        features: vec!["load".into(), "queue".into()],
        expressions: vec![expression("load"), expression("queue")],
        step_ms: 10_000,
        retrain_interval_ms: 3_600_000,
        max_age_ms: 30 * 86_400_000,
        training: TrainingInfo {
            source: "live".into(),
            trained_at_ms: Some(t0()),
            generation: 1,
        },
        data: SavedData::Forecaster {
            forest: Arc::new(forest),
            targets: vec!["load".into()],
            lookback: 4,
            horizon,
            history: vec![
                SavedEntity {
                    labels: Labels::default(),
                    timestamps_ms: (0..300).map(|k| t0() + k * 10_000).collect(),
                    values: history,
                },
                SavedEntity {
                    labels: Labels::from_pairs([("node", "b")]),
                    timestamps_ms: (0..300).map(|k| t0() + k * 10_000).collect(),
                    values: gappy,
                },
            ],
        },
    }
}

/// Equality that treats NaN gaps in histories as equal (`PartialEq` on f64 does not).
fn same_bits(a: &SavedModel, b: &SavedModel) -> bool {
    encode(a) == encode(b)
}

#[test]
fn round_trip_keeps_model_bytes_and_predictions_for_both_kinds() {
    let d = saved_detector("anomaly-detector", &["load", "queue"]);
    let bytes = encode(&d);
    let back = decode(&bytes).expect("decode detector");
    assert_eq!(back, d, "the decoded detector is the saved one");
    assert_eq!(encode(&back), bytes, "identical model bytes");
    assert_eq!(
        detector_forest(&back)
            .score_samples(detector_rows())
            .expect("score"),
        detector_forest(&d)
            .score_samples(detector_rows())
            .expect("score")
    );
    // the restored forest retrains into the same forest as the original
    let rows = DETECTOR_ROWS.repeat(10);
    let rows = row_major(&rows, 2).expect("whole rows");
    assert_eq!(
        detector_forest(&back).retrained(rows, rows, 0.1),
        detector_forest(&d).retrained(rows, rows, 0.1)
    );

    let f = saved_forecaster("predictive-analytics");
    let bytes = encode(&f);
    let back = decode(&bytes).expect("decode forecaster");
    assert!(
        same_bits(&back, &f),
        "the decoded forecaster is the saved one"
    );
    assert_eq!(
        forecaster_forest(&back).trees(),
        forecaster_forest(&f).trees()
    );
    assert_eq!(
        forecaster_forest(&back)
            .predict(forecaster_row())
            .expect("predict"),
        forecaster_forest(&f)
            .predict(forecaster_row())
            .expect("predict")
    );
}

#[test]
fn damaged_files_are_refused_with_a_reason_and_never_panic() {
    let bytes = encode(&saved_detector("d", &["load", "queue"]));
    assert!(matches!(
        decode(&bytes[..bytes.len() / 2]),
        Err(CheckpointError::Truncated { .. })
    ));
    // Every single flipped byte is caught (the CRC covers header and payload).
    for i in (0..bytes.len()).step_by(97) {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0x01;
        assert!(decode(&flipped).is_err(), "byte {i} flipped and accepted");
    }
    let payload = &bytes[20..bytes.len() - 4];
    assert!(matches!(
        decode(&frame(payload, FORMAT_VERSION + 1)),
        Err(CheckpointError::UnsupportedVersion { .. })
    ));
    // A well-framed payload that is not a checkpoint, or whose trees point outside themselves,
    // is refused by validation rather than trusted.
    assert!(decode(&frame(b"\xff\xff\xff", FORMAT_VERSION)).is_err());
    let mut message = canopy::checkpoint::proto::Checkpoint::decode(payload).expect("proto");
    if let Some(canopy::checkpoint::proto::checkpoint::Model::IsolationForest(f)) =
        &mut message.model
    {
        let trees = f.trees.as_mut().expect("trees");
        let split = trees
            .feature
            .iter()
            .position(|&x| x != u32::MAX)
            .expect("a split");
        trees.child[split] = u32::MAX - 1;
    }
    let err = decode(&frame(&message.encode_to_vec(), FORMAT_VERSION))
        .expect_err("a child index past the nodes");
    assert!(err.to_string().contains("tree 0"), "{err}");
}

/// The version field of a checkpoint file.
fn version_of(file: &[u8]) -> u32 {
    u32::from_le_bytes(file[8..12].try_into().expect("a header"))
}

/// The protobuf message of a checkpoint file.
fn message_of(file: &[u8]) -> canopy::checkpoint::proto::Checkpoint {
    canopy::checkpoint::proto::Checkpoint::decode(&file[20..file.len() - 4]).expect("proto")
}

fn random_forest(
    m: &mut canopy::checkpoint::proto::Checkpoint,
) -> &mut canopy::checkpoint::proto::RandomForest {
    match &mut m.model {
        Some(canopy::checkpoint::proto::checkpoint::Model::RandomForest(f)) => f,
        _ => panic!("not a random forest"),
    }
}

/// `model`'s file as format 1 wrote it: every leaf's mean stored, `n_outputs` values per leaf
/// of its tree (`leaf_value_counts`, `leaf_values`), the leaf node's `child` its index there and
/// its `value` its weight, and no shared table.
fn format_1_file(model: &SavedModel) -> Vec<u8> {
    let forest = forecaster_forest(model);
    let mut message = message_of(&encode(model));
    let f = random_forest(&mut message);
    let trees = f.trees.as_mut().expect("trees");
    let (mut at, mut counts, mut values) = (0, Vec::new(), Vec::new());
    for t in forest.trees() {
        let before = values.len();
        for (i, node) in t.tree.nodes.iter().enumerate().filter(|(_, n)| n.is_leaf()) {
            trees.child[at + i] = ((values.len() - before) / forest.n_outputs()) as u32;
            let at = values.len();
            values.resize(at + forest.n_outputs(), 0.0);
            forest.add_leaf_value(t, node, &mut values[at..]);
        }
        at += t.tree.nodes.len();
        counts.push((values.len() - before) as u32);
    }
    f.leaf_value_counts = counts;
    f.leaf_values = values;
    f.targets.clear();
    f.entry_counts.clear();
    f.entry_rows.clear();
    f.entry_weights.clear();
    frame(&message.encode_to_vec(), OLDEST_FORMAT_VERSION)
}

/// Rows of `FORECASTER_ROW`'s shape spread over the cycle the forecaster learnt.
fn forecaster_rows() -> Vec<f64> {
    (0..200)
        .flat_map(|k| (0..4).flat_map(move |j| <[f64; 2]>::from(cycle(k + j))))
        .collect()
}

/// A forecaster of 12 outputs and 30 trees, whose leaves name their rows (at 2 outputs and 10
/// trees, as `saved_forecaster`'s, they hold their means: see `crates/canopy-forest/src/rforest/`).
fn sharing_forecaster() -> SavedModel {
    let f = forecaster_of("predictive-analytics", 12, 30);
    let entries: usize = (forecaster_forest(&f).trees().iter())
        .map(|t| t.entries.len())
        .sum();
    assert!(entries > 1000, "only {entries} leaf entries");
    f
}

#[test]
fn a_format_1_forecaster_file_loads_with_the_same_predictions() {
    let f = sharing_forecaster();
    assert_eq!(version_of(&encode(&f)), FORMAT_VERSION);
    let d = saved_detector("d", &["load", "queue"]);
    assert_eq!(
        version_of(&encode(&d)),
        OLDEST_FORMAT_VERSION,
        "a detector's layout is unchanged, so an older canopy still reads its files"
    );
    let old = format_1_file(&f);
    assert!(
        old.len() > encode(&f).len() * 3 / 2,
        "format 1 is the larger"
    );
    let back = decode(&old).expect("a format 1 file decodes");
    let rows = forecaster_rows();
    let rows = row_major(&rows, FORECASTER_ROW.len()).expect("whole rows");
    let want = forecaster_forest(&f).predict(rows).expect("predict");
    let got = forecaster_forest(&back).predict(rows).expect("predict");
    assert!(
        want.iter()
            .zip(&got)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "a forest read from format 1 predicts other bits"
    );
    // written again, it is a format 2 file of the same model
    let again = decode(&encode(&back)).expect("decode");
    assert_eq!(forecaster_forest(&again), forecaster_forest(&back));
}

/// A forecaster file written by canopy as of format 1 itself, not re-created here:
/// `tests/format1/check.sh` writes it with that commit's code and sets `CANOPY_FORMAT1_DIR`.
#[test]
#[ignore = "needs a file written by format 1 canopy: run tests/format1/check.sh"]
fn a_file_written_by_format_1_canopy_loads_with_its_predictions() {
    let dir =
        std::env::var("CANOPY_FORMAT1_DIR").expect("CANOPY_FORMAT1_DIR (tests/format1/check.sh)");
    let dir = Path::new(&dir);
    let bytes = std::fs::read(dir.join("model.ckpt")).expect("model.ckpt");
    assert_eq!(version_of(&bytes), OLDEST_FORMAT_VERSION);
    let model = decode(&bytes).expect("a format 1 file decodes");
    let forest = forecaster_forest(&model);
    let lines = std::fs::read_to_string(dir.join("predictions.txt")).expect("predictions.txt");
    let mut rows = 0;
    for line in lines.lines() {
        let values: Vec<f64> = (line.split(' '))
            .map(|h| f64::from_bits(u64::from_str_radix(h, 16).expect("hex bits")))
            .collect();
        let (row, want) = values.split_at(forest.n_features());
        let got = forest
            .predict(row_major(row, row.len()).expect("one row"))
            .expect("predict");
        assert!(
            got.iter()
                .zip(want)
                .all(|(a, b)| a.to_bits() == b.to_bits())
                && got.len() == want.len(),
            "row {rows}: {got:?} against format 1 canopy's {want:?}"
        );
        rows += 1;
    }
    assert!(rows > 100, "only {rows} rows");
    // written again, it is a format 2 file of the same model
    let again = decode(&encode(&model)).expect("decode");
    assert_eq!(forecaster_forest(&again), forest);
}

#[test]
fn bad_leaf_references_are_refused_with_a_reason_and_never_panic() {
    let f = sharing_forecaster();
    let file = encode(&f);
    let reframe = |m: &canopy::checkpoint::proto::Checkpoint, version| {
        decode(&frame(&m.encode_to_vec(), version))
    };
    type Spoil = fn(&mut canopy::checkpoint::proto::RandomForest);
    let cases: [(&str, Spoil, &str); 6] = [
        (
            "an entry past the table",
            |f| f.entry_rows[3] = u32::MAX,
            "refers to row 4294967295",
        ),
        (
            "an entry count too many",
            |f| f.entry_counts[0] += 1,
            "leaf entry counts sum to",
        ),
        (
            "a weight missing",
            |f| {
                f.entry_weights.pop();
            },
            "entry rows and",
        ),
        (
            "a table cut mid-row",
            |f| {
                f.targets.pop();
            },
            "targets has",
        ),
        (
            "entry counts for other trees",
            |f| {
                f.entry_counts.pop();
            },
            "leaf entry counts",
        ),
        (
            "both layouts",
            |f| {
                f.leaf_value_counts = vec![2];
                f.leaf_values = vec![0.0; 2];
            },
            "both format 1 leaf values and format 2 leaf entries",
        ),
    ];
    for (what, spoil, reason) in cases {
        let mut m = message_of(&file);
        spoil(random_forest(&mut m));
        let err = reframe(&m, FORMAT_VERSION).expect_err(what);
        assert!(err.to_string().contains(reason), "{what}: {err}");
        assert_eq!(err.kind(), "invalid_model", "{what}");
    }
    // format 1: a leaf past its own tree's leaves (though inside the next tree's) is refused
    let old = format_1_file(&f);
    let mut m = message_of(&old);
    let forest = random_forest(&mut m);
    let trees = forest.trees.as_mut().expect("trees");
    let leaf = trees
        .feature
        .iter()
        .position(|&x| x == u32::MAX)
        .expect("a leaf");
    trees.child[leaf] = forest.leaf_value_counts[0] / 2;
    let err = reframe(&m, OLDEST_FORMAT_VERSION).expect_err("a leaf of another tree");
    assert!(err.to_string().contains("tree 0: leaf node"), "{err}");
    // format 1: leaf values that are not whole leaves
    let mut m = message_of(&old);
    let forest = random_forest(&mut m);
    forest.leaf_value_counts[0] -= 1;
    forest.leaf_values.pop();
    let err = reframe(&m, OLDEST_FORMAT_VERSION).expect_err("ragged");
    assert!(err.to_string().contains("whole number of leaves"), "{err}");
}

/// Starts an agent whose detector folder holds `bytes`, and checks that the file is moved aside
/// as `model.ckpt.{aside}-UNIXTIME` with `reason` logged and counted as `result`, and that the
/// agent then trains anew and writes a fresh checkpoint.
fn refused_then_trained_anew(bytes: &[u8], aside: &str, result: &str, reason: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let models = dir.path().join("models");
    let folder = models.join("detector");
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::write(folder.join(CHECKPOINT_FILE), bytes).expect("write");
    let agent = Agent::start_with_models(CONFIG, &models);
    let logs = agent.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("checkpoint refused and moved aside"))
        .unwrap_or_else(|| panic!("no refusal logged for {result}:\n{logs}"));
    assert!(line.contains(reason), "{line} does not say {reason:?}");
    assert!(line.contains("model.ckpt"), "{line} names no path");
    let prefix = format!("model.ckpt.{aside}-");
    let names = file_names(&folder);
    let moved: Vec<&String> = names.iter().filter(|n| n.starts_with(&prefix)).collect();
    assert_eq!(moved.len(), 1, "moved aside as {prefix}UNIXTIME: {names:?}");
    assert!(
        moved[0][prefix.len()..].parse::<u64>().is_ok(),
        "{}",
        moved[0]
    );
    assert_eq!(std::fs::read(folder.join(moved[0])).expect("aside"), bytes);
    assert!(!folder.join(CHECKPOINT_FILE).exists());
    let series =
        format!(r#"canopy_checkpoint_restores_total{{model="detector",result="{result}"}}"#);
    assert_eq!(agent.metric(&series), Some(1.0), "{series}");
    // the agent is up and trains anew from the stream, then checkpoints the new model
    feed(&agent, 0..40);
    let fresh = wait_for(Duration::from_secs(30), "a new checkpoint", || {
        let path = folder.join(CHECKPOINT_FILE);
        let bytes = std::fs::read(path).ok()?;
        decode(&bytes).ok()
    });
    assert_eq!(
        fresh.expressions,
        ["avg(load)", "sum(queue)"],
        "the new checkpoint records what its features mean"
    );
    assert_eq!(
        metric_value(
            &agent.scrape(),
            r#"canopy_model_info{model="detector",source="checkpoint"}"#
        )
        .unwrap_or(0.0),
        0.0
    );
}

/// The file names in `folder`.
fn file_names(folder: &Path) -> Vec<String> {
    std::fs::read_dir(folder)
        .expect("folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_truncated_checkpoint_is_moved_aside_and_the_model_trains_anew() {
    let bytes = encode(&saved_detector("detector", &["load", "queue"]));
    refused_then_trained_anew(
        &bytes[..bytes.len() * 2 / 3],
        "corrupt",
        "truncated",
        "truncated",
    );
}

#[test]
fn a_flipped_byte_is_moved_aside_and_the_model_trains_anew() {
    let mut bytes = encode(&saved_detector("detector", &["load", "queue"]));
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    refused_then_trained_anew(&bytes, "corrupt", "crc_mismatch", "CRC mismatch");
}

#[test]
fn an_unknown_version_is_moved_aside_and_the_model_trains_anew() {
    let bytes = encode(&saved_detector("detector", &["load", "queue"]));
    let future = frame(&bytes[20..bytes.len() - 4], FORMAT_VERSION + 1);
    refused_then_trained_anew(
        &future,
        "corrupt",
        "unsupported_version",
        "unsupported format version",
    );
}

#[test]
fn mismatched_features_or_kind_are_moved_aside_and_the_model_trains_anew() {
    let bytes = encode(&saved_detector("detector", &["load", "memory"]));
    refused_then_trained_anew(
        &bytes,
        "mismatch",
        "mismatch",
        "feature `queue` (`memory` in the file) changed its expression from `avg(memory)` to `sum(queue)`",
    );
    let bytes = encode(&saved_forecaster("detector"));
    refused_then_trained_anew(&bytes, "mismatch", "mismatch", "kind");
    let mut slower = saved_detector("detector", &["load", "queue"]);
    slower.step_ms = 20_000;
    refused_then_trained_anew(
        &encode(&slower),
        "mismatch",
        "mismatch",
        "step 20s in the file, 10s in the config",
    );
}

#[test]
fn a_changed_feature_expression_is_set_aside_as_a_mismatch_and_the_model_trains_anew() {
    let mut changed = saved_detector("detector", &["load", "queue"]);
    changed.expressions[1] = "max(queue)".into();
    refused_then_trained_anew(
        &encode(&changed),
        "mismatch",
        "mismatch",
        "feature `queue` changed its expression from `max(queue)` to `sum(queue)`",
    );
}

#[test]
fn a_checkpoint_written_before_expressions_were_recorded_is_set_aside_as_a_mismatch() {
    let mut old = saved_detector("detector", &["load", "queue"]);
    old.expressions.clear();
    // what an older canopy wrote: no expressions field at all
    let bytes = encode(&old);
    let payload = &bytes[20..bytes.len() - 4];
    let message = canopy::checkpoint::proto::Checkpoint::decode(payload).expect("proto");
    assert!(message.config.expect("config").expressions.is_empty());
    assert!(
        decode(&bytes)
            .expect("an old file still decodes")
            .expressions
            .is_empty(),
        "read as having no expressions"
    );
    refused_then_trained_anew(
        &bytes,
        "mismatch",
        "mismatch",
        "written before expressions were recorded",
    );
}

#[test]
fn equal_expressions_restore_whatever_their_spelling_or_feature_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let models = dir.path().join("models");
    let folder = models.join("detector");
    // the same expressions spelled differently, and the first feature since renamed
    let mut saved = saved_detector("detector", &["cpu_load", "queue"]);
    saved.expressions = vec![" avg( load )".into(), "sum (queue)\n".into()];
    let bytes = encode(&saved);
    canopy::checkpoint::write_atomic(&folder, &bytes).expect("write");
    let mut agent = Agent::start_with_models(CONFIG, &models);
    assert_eq!(
        agent.metric(r#"canopy_checkpoint_restores_total{model="detector",result="ok"}"#),
        Some(1.0),
        "restored; logs:\n{}",
        agent.logs()
    );
    assert_eq!(
        agent.metric(r#"canopy_model_info{model="detector",source="checkpoint"}"#),
        Some(1.0)
    );
    assert_eq!(
        file_names(&folder),
        [CHECKPOINT_FILE],
        "nothing moved aside"
    );
    assert!(agent.terminate());
    // the restored forest is the file's, now saved under the config's names and expressions
    let back = read(&folder.join(CHECKPOINT_FILE));
    assert_eq!(back.features, ["load", "queue"]);
    assert_eq!(back.expressions, ["avg(load)", "sum(queue)"]);
    assert_eq!(detector_forest(&back), detector_forest(&saved));
}

#[test]
fn sigterm_checkpoints_and_a_restart_restores_the_same_models_then_retrains_on_schedule() {
    let dir = tempfile::tempdir().expect("temp dir");
    let models = dir.path().join("models");
    let (d_path, f_path) = (
        models.join("detector").join(CHECKPOINT_FILE),
        models.join("forecaster").join(CHECKPOINT_FILE),
    );

    // 1. Both models trained at start from synthetic rows; the detector then retrains live;
    // SIGTERM: the final step of shutdown writes both.
    let mut first = Agent::start_with_models(CONFIG, &models);
    feed(&first, 0..120);
    // (the forecaster's retrain_interval, 1h, is longer than the feed: it keeps its first forest)
    wait_for(
        Duration::from_secs(60),
        "the detector retrained from the stream",
        || {
            let m = first.scrape();
            let live = metric_value(&m, r#"canopy_model_info{model="detector",source="live"}"#)
                == Some(1.0);
            let forecaster = r#"canopy_model_retrains_total{model="forecaster",result="ok"}"#;
            (live && metric_value(&m, forecaster).is_some()).then_some(())
        },
    );
    assert!(first.terminate(), "clean exit on SIGTERM");
    assert!(first.logs().contains("writing the final checkpoints"));
    let (d1, f1) = (read(&d_path), read(&f_path));
    assert_eq!(d1.training.source, "live");
    assert!(d1.training.trained_at_ms.is_some());

    // 2. Restart: both restored, and the checkpoint the restarted agent writes at its own
    // SIGTERM (no retrain in between) holds exactly the same models.
    let mut second = Agent::start_with_models(CONFIG, &models);
    let m = second.scrape();
    for model in ["detector", "forecaster"] {
        assert_eq!(
            metric_value(
                &m,
                &format!(r#"canopy_model_info{{model="{model}",source="checkpoint"}}"#)
            ),
            Some(1.0),
            "{model} restored"
        );
        assert_eq!(
            metric_value(
                &m,
                &format!(r#"canopy_checkpoint_restores_total{{model="{model}",result="ok"}}"#)
            ),
            Some(1.0)
        );
    }
    assert!(second.terminate());
    let (d2, f2) = (read(&d_path), read(&f_path));
    assert_eq!(
        d2, d1,
        "the detector checkpoint survives a restart unchanged"
    );
    assert!(
        same_bits(&f2, &f1),
        "the forecaster checkpoint survives a restart unchanged"
    );
    assert_eq!(
        detector_forest(&d2)
            .predict(detector_rows())
            .expect("predict"),
        detector_forest(&d1)
            .predict(detector_rows())
            .expect("predict")
    );
    assert_eq!(
        detector_forest(&d2)
            .score_samples(detector_rows())
            .expect("score"),
        detector_forest(&d1)
            .score_samples(detector_rows())
            .expect("score")
    );
    assert_eq!(
        forecaster_forest(&f2)
            .predict(forecaster_row())
            .expect("predict"),
        forecaster_forest(&f1)
            .predict(forecaster_row())
            .expect("predict")
    );

    // 3. Restart again and stream on: no retrain at once, then one a retrain interval (5 min of
    // event time, 30 steps) after the first step, growing the restored forest.
    let mut third = Agent::start_with_models(CONFIG, &models);
    let retrains = r#"canopy_model_retrains_total{model="detector",result="ok"}"#;
    feed(&third, 120..140);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        third.metric(retrains),
        None,
        "no retrain before the interval (the counter starts at the first; its name is checked below)"
    );
    feed(&third, 140..160);
    wait_for(Duration::from_secs(30), "the first retrain", || {
        (third.metric(retrains).is_some_and(|v| v >= 1.0)).then_some(())
    });
    assert!(third.terminate());
    let d3 = read(&d_path);
    let (old, new) = (detector_forest(&d1), detector_forest(&d3));
    assert_eq!(
        new.generation(),
        old.generation() + 1,
        "retrained, not refitted"
    );
    // replace_fraction 0.1 of 50 trees: the 45 newest trees stay, 5 fresh ones follow
    assert_eq!(new.trees()[..45], old.trees()[5..]);
    assert!(new.trees_grown() > old.trees_grown());
}

/// Crash safety configuration: steps of 1 s, so steady remote-write at 200 steps a second
/// retrains the detector several times a second, and the checkpoint interval is short.
const CRASH_CONFIG: &str = r#"
[limits]
max_future = "1d"
[evaluation]
step = "1s"
lateness = "0s"
[checkpoint]
interval = "100ms"
[features]
load = 'avg(load)'
queue = 'sum(queue)'
[models.detector]
kind = "isolation_forest"
features = ["load", "queue"]
step = "1s"
max_samples = 64
n_estimators = 100
retrain_interval = "30s"
reservoir_size = 10080
[models.forecaster]
kind = "random_forest"
features = ["load", "queue"]
target = ["load", "queue"]
step = "1s"
lookback = 8
horizon = 2
n_estimators = 30
retrain_interval = "20s"
"#;

#[test]
fn sigkill_at_random_instants_always_leaves_a_checkpoint_that_restores() {
    const KILLS: usize = 50;
    let dir = tempfile::tempdir().expect("temp dir");
    let models = dir.path().join("models");
    let folder = models.join("detector");
    let path = folder.join(CHECKPOINT_FILE);
    let forecaster_path = models.join("forecaster").join(CHECKPOINT_FILE);
    let mut agent = Agent::start_with_models(CRASH_CONFIG, &models);

    // Steady load in event time, following the agent across restarts; paused while checking.
    let url = Arc::new(Mutex::new(agent.url("/api/v1/write")));
    let next_t = Arc::new(AtomicI64::new(t0()));
    let (paused, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let load = {
        let (url, next_t, paused, done) =
            (url.clone(), next_t.clone(), paused.clone(), done.clone());
        std::thread::spawn(move || {
            let mut k = 0i64;
            while !done.load(Ordering::Relaxed) {
                if paused.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                let (a, b) = cycle(k);
                k += 1;
                let target = url.lock().expect("url").clone();
                let _ = post(&target, next_t.fetch_add(1000, Ordering::SeqCst), a, b);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    wait_for(
        Duration::from_secs(60),
        "a first checkpoint of each model",
        || (path.exists() && forecaster_path.exists()).then_some(()),
    );

    let mut rng = Rng::new(7);
    let (mut during_write, mut verified) = (0usize, 0usize);
    // Each model's checkpoint, by its training time and its newest data: neither goes back
    // across kills, and the data moves on.
    let progress = |m: &SavedModel| {
        let newest = match &m.data {
            SavedData::Detector { reservoir, .. } => reservoir.timestamps_ms.last().copied(),
            SavedData::Forecaster { history, .. } => history
                .iter()
                .filter_map(|e| e.timestamps_ms.last().copied())
                .max(),
        };
        (
            m.training.trained_at_ms.expect("trained"),
            newest.expect("data"),
        )
    };
    let first = [progress(&read(&path)), progress(&read(&forecaster_path))];
    let (mut last, mut advanced) = (first, [0usize; 2]);
    for kill in 0..KILLS {
        // Half the kills at a random instant, half the moment a write is seen in progress.
        if kill % 2 == 0 {
            std::thread::sleep(Duration::from_millis(rng.below(600) as u64));
        } else {
            let deadline = Instant::now() + Duration::from_secs(3);
            while !folder.join(TEMP_FILE).exists() && Instant::now() < deadline {
                std::hint::spin_loop();
            }
        }
        agent.kill();
        paused.store(true, Ordering::SeqCst);
        if folder.join(TEMP_FILE).exists() {
            during_write += 1;
        }
        let saved = read(&path);
        let forecaster = read(&forecaster_path);
        for dir in [&folder, &models.join("forecaster")] {
            let names: Vec<String> = std::fs::read_dir(dir)
                .expect("folder")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(
                names.iter().filter(|n| n.ends_with(".ckpt")).count(),
                1,
                "exactly one model file: {names:?}"
            );
        }
        for (i, m) in [&saved, &forecaster].into_iter().enumerate() {
            let now = progress(m);
            assert!(
                now.0 >= last[i].0 && now.1 >= last[i].1,
                "kill {kill}: {} went back to {now:?} from {:?}",
                m.name,
                last[i]
            );
            advanced[i] += usize::from(now.1 > last[i].1);
            last[i] = now;
        }

        // Restart: the file is restored (an unfinished temp file is never taken for it), and the
        // restored forest scores the next vector exactly as the file's forest does.
        agent = Agent::start_with_models(CRASH_CONFIG, &models);
        *url.lock().expect("url") = agent.url("/api/v1/write");
        for model in ["detector", "forecaster"] {
            assert_eq!(
                agent.metric(&format!(
                    r#"canopy_checkpoint_restores_total{{model="{model}",result="ok"}}"#
                )),
                Some(1.0),
                "kill {kill}: {model} restored; logs:\n{}",
                agent.logs()
            );
        }
        assert!(!folder.join(TEMP_FILE).exists(), "unfinished write removed");
        let (a, b) = (0.37 + kill as f64 / 100.0, 11.3);
        let t = next_t.fetch_add(1000, Ordering::SeqCst);
        assert_eq!(
            post(&agent.url("/api/v1/write"), t, a, b).expect("write"),
            204
        );
        let served = wait_for(Duration::from_secs(20), "the first score", || {
            metric_value(&agent.scrape(), r#"canopy_anomaly_score{model="detector"}"#)
        });
        let expected = detector_forest(&saved)
            .anomaly_score(&[a, b])
            .expect("score");
        assert!(
            (served - expected).abs() <= 1e-12 * expected.abs(),
            "kill {kill}: served {served}, the checkpoint's forest gives {expected}"
        );
        verified += 1;
        paused.store(false, Ordering::SeqCst);
    }
    done.store(true, Ordering::SeqCst);
    load.join().expect("load thread");
    eprintln!(
        "{KILLS} kills, {during_write} during a write, {verified} restores verified, \
         checkpoints moved on at {advanced:?} kills (detector, forecaster)"
    );
    assert_eq!(verified, KILLS);
    for (i, model) in ["detector", "forecaster"].into_iter().enumerate() {
        assert!(
            advanced[i] >= KILLS / 2 && last[i].1 > first[i].1,
            "the {model}'s checkpoint moved on at only {} of {KILLS} kills",
            advanced[i]
        );
    }
    assert!(
        during_write >= KILLS / 10,
        "only {during_write} of {KILLS} kills landed during a write"
    );
    // the last agent still writes checkpoints and serves a registry from them
    assert!(agent.terminate());
    let (registry, loaded) = load_registry(&models).expect("registry");
    assert_eq!(registry.names(), ["detector", "forecaster"]);
    assert!(registry.all_ready());
    assert_eq!(loaded[0].kind, "isolation_forest");
    assert_eq!(loaded[1].kind, "random_forest");
}

#[test]
fn load_registry_reads_a_single_model_folder_or_one_subfolder_per_model() {
    let dir = tempfile::tempdir().expect("temp dir");
    let single = dir.path().join("single");
    canopy::checkpoint::write_atomic(
        &single,
        &encode(&saved_detector("anomaly-detector", &["load", "queue"])),
    )
    .expect("write");
    let (registry, _) = load_registry(&single).expect("single");
    assert_eq!(registry.names(), ["anomaly-detector"]);
    let handle = registry.detector("anomaly-detector").expect("handle");
    assert_eq!(handle.features, ["load", "queue"]);

    let many = dir.path().join("many");
    canopy::checkpoint::write_atomic(
        &many.join("anomaly-detector"),
        &encode(&saved_detector("anomaly-detector", &["load", "queue"])),
    )
    .expect("write");
    canopy::checkpoint::write_atomic(
        &many.join("predictive-analytics"),
        &encode(&saved_forecaster("predictive-analytics")),
    )
    .expect("write");
    std::fs::create_dir_all(many.join("empty")).expect("dir");
    let (registry, loaded) = load_registry(&many).expect("many");
    assert_eq!(
        registry.names(),
        ["anomaly-detector", "predictive-analytics"]
    );
    assert!(registry.all_ready());
    let f = registry
        .forecaster("predictive-analytics")
        .expect("forecaster");
    assert_eq!((f.lookback, f.horizon), (4, 2));
    assert_eq!(loaded.len(), 2);
    let forest = f.model.load_full().expect("published");
    assert_eq!(
        forest.predict(forecaster_row()).expect("predict"),
        forecaster_forest(&saved_forecaster("x"))
            .predict(forecaster_row())
            .expect("predict")
    );

    std::fs::write(
        many.join("predictive-analytics").join(CHECKPOINT_FILE),
        b"junk",
    )
    .expect("junk");
    let err = load_registry(&many)
        .err()
        .expect("a broken file is an error");
    assert!(err.to_string().contains("predictive-analytics"), "{err}");
    assert!(matches!(
        load_registry(&dir.path().join("many").join("empty")),
        Err(CheckpointError::NoModels(_))
    ));
}
