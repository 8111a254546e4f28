//! `canopy train` then `canopy serve`: checkpoints written from the configured source are served
//! read-only on the KServe endpoints, as a KServe custom runtime serves them, in both folder
//! layouts, and answer exactly what the checkpoint's own model answers; a checkpoint retrained
//! and renamed over the served one is answered from within seconds, with no failed request, and
//! a corrupt one is refused while the last good model keeps answering.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canopy::model::matrix::row_major;
use common::{free_port, http, metric_value, wait_for};

/// Both models, small enough to train in seconds from synthetic data.
const CONFIG: &str = r#"
[models.anomaly-detector]
kind = "isolation_forest"
features = ["cpu", "memory", "restarts", "net_rx", "net_tx"]
step = "1m"
training_days = 2
[models.predictive-analytics]
kind = "random_forest"
features = ["cpu", "memory", "disk", "net_rx", "net_tx"]
target = ["cpu"]
step = "5m"
training_days = 3
n_estimators = 10
"#;

fn canopy() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_canopy"));
    c.env_remove("PORT").env("RUST_LOG", "warn");
    c
}

fn train(dir: &Path, config: &Path, model: &str) {
    let out = canopy()
        .args(["train", "--model", model, "--config"])
        .arg(config)
        .arg("--out")
        .arg(dir)
        .output()
        .expect("run canopy train");
    assert!(
        out.status.success(),
        "train {model}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join(model).join("model.ckpt").is_file());
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(args: &[&str], env: &[(&str, &str)], port: u16) -> Server {
    serve_logging(args, env, port, Stdio::null())
}

/// `canopy serve ARGS`, its log (stderr) going to `log`, once it is ready.
fn serve_logging(args: &[&str], env: &[(&str, &str)], port: u16, log: Stdio) -> Server {
    let mut c = canopy();
    c.arg("serve").args(args).stdout(Stdio::null()).stderr(log);
    for (k, v) in env {
        c.env(k, v);
    }
    let server = Server(c.spawn().expect("spawn canopy serve"));
    wait_for(Duration::from_secs(30), "canopy serve to be ready", || {
        let r = http()
            .get(format!("http://127.0.0.1:{port}/v2/health/ready"))
            .send()
            .ok()?;
        r.status().is_success().then_some(())
    });
    server
}

fn predict(port: u16, model: &str, rows: &serde_json::Value) -> serde_json::Value {
    let r = http()
        .post(format!("http://127.0.0.1:{port}/v1/models/{model}:predict"))
        .json(&serde_json::json!({ "instances": rows }))
        .send()
        .expect("predict");
    assert_eq!(r.status(), 200, "{model}");
    r.json().expect("json")
}

#[test]
fn trained_checkpoints_are_served_read_only_in_both_layouts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("canopy.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let models = dir.path().join("models");
    train(&models, &config, "anomaly-detector");
    train(&models, &config, "predictive-analytics");

    // One subfolder per model.
    let port = free_port();
    let _s = serve(
        &[
            "--model_dir",
            models.to_str().expect("utf-8 path"),
            "--http_port",
            &port.to_string(),
        ],
        &[],
        port,
    );
    let rows = serde_json::json!([
        [0.5, 0.6, 0.4, 100, 80],
        [0.2, 0.5, 0.0, 90, 70],
        [9.0, 1.0, 5.0, 1e6, 1e6]
    ]);
    let served = predict(port, "anomaly-detector", &rows);
    // The checkpoint's own forest, loaded in-process, answers the same.
    let (registry, _) = canopy::serve::reload::load_registry(&models).expect("load checkpoints");
    let forest = registry
        .detector("anomaly-detector")
        .expect("detector")
        .model
        .load_full()
        .expect("forest");
    let flat: Vec<f64> = rows
        .as_array()
        .expect("rows")
        .iter()
        .flat_map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|v| v.as_f64().expect("number"))
        })
        .collect();
    let flat = row_major(&flat, forest.n_features()).expect("whole rows");
    let want = forest.predict(flat).expect("predict");
    let got: Vec<i64> = served["predictions"]
        .as_array()
        .expect("predictions")
        .iter()
        .map(|v| v.as_i64().expect("int"))
        .collect();
    assert_eq!(got, want.iter().map(|&p| i64::from(p)).collect::<Vec<_>>());
    let window: Vec<f64> = (0..120)
        .map(|i| if i % 5 == 3 { 100.0 } else { 0.4 })
        .collect();
    let forecast = predict(port, "predictive-analytics", &serde_json::json!([window]));
    assert_eq!(
        forecast["predictions"][0]
            .as_array()
            .expect("12 values")
            .len(),
        12
    );

    // A model file directly in the folder, served under the name KServe gives it, on PORT.
    let single = models.join("anomaly-detector");
    let port2 = free_port();
    let _s2 = serve(
        &[
            "--model-dir",
            single.to_str().expect("utf-8 path"),
            "--model-name",
            "detector-v2",
        ],
        &[("PORT", &port2.to_string())],
        port2,
    );
    let renamed = predict(port2, "detector-v2", &rows);
    assert_eq!(renamed["predictions"], served["predictions"]);
    let r = http()
        .get(format!(
            "http://127.0.0.1:{port2}/v1/models/anomaly-detector"
        ))
        .send()
        .expect("GET");
    assert_eq!(r.status(), 404, "served only under its KServe name");
}

#[test]
fn serve_without_a_checkpoint_and_train_of_an_unknown_model_fail_with_a_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = canopy()
        .args(["serve", "--model_dir"])
        .arg(dir.path())
        .args(["--http_port", &free_port().to_string()])
        .output()
        .expect("run canopy serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("model.ckpt") && err.contains(&dir.path().display().to_string()),
        "{err}"
    );
    let out = canopy()
        .args(["train", "--model", "nope", "--out"])
        .arg(dir.path())
        .output()
        .expect("run canopy train");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope") && err.contains("anomaly-detector"),
        "{err}"
    );
}

/// Rows the detector scores differently under any two forests.
const ROWS: [[f64; 5]; 4] = [
    [0.5, 0.6, 0.4, 100.0, 80.0],
    [0.2, 0.5, 0.0, 90.0, 70.0],
    [0.9, 0.95, 3.0, 5e5, 4e5],
    [0.05, 0.1, 0.0, 1.0, 1.0],
];

/// The detector's V2 `score` and `output-0` for [`ROWS`]: the status, and the outputs as one
/// list (the scores, then the labels) when it is 200.
fn infer(port: u16, model: &str) -> Result<(u16, Vec<f64>), reqwest::Error> {
    let body = serde_json::json!({
        "inputs": [{
            "name": "input-0",
            "shape": [ROWS.len(), 5],
            "datatype": "FP64",
            "data": ROWS.iter().flatten().collect::<Vec<_>>(),
        }],
        "outputs": [{"name": "score"}, {"name": "output-0"}],
    });
    let r = http()
        .post(format!("http://127.0.0.1:{port}/v2/models/{model}/infer"))
        .json(&body)
        .send()?;
    let status = r.status().as_u16();
    if status != 200 {
        return Ok((status, Vec::new()));
    }
    let v: serde_json::Value = r.json()?;
    let values = v["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .flat_map(|o| o["data"].as_array().expect("data").clone())
        .map(|x| x.as_f64().expect("number"))
        .collect();
    Ok((status, values))
}

/// The V2 metadata's `trained_at` (both trainings may fall in one step: it tells apart models
/// trained at different steps, not these two).
fn trained_at(port: u16, model: &str) -> String {
    let v: serde_json::Value = http()
        .get(format!("http://127.0.0.1:{port}/v2/models/{model}"))
        .send()
        .expect("metadata")
        .json()
        .expect("json");
    v["parameters"]["trained_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no trained_at in {v}"))
        .to_owned()
}

fn reloads(port: u16, result: &str) -> Option<f64> {
    let body = http()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .ok()?
        .text()
        .ok()?;
    metric_value(
        &body,
        &format!(r#"canopy_model_reloads_total{{model="anomaly-detector",result="{result}"}}"#),
    )
}

/// What a client sees, one entry per request: when it was answered, the status (0: no answer)
/// and the outputs.
type Answers = Arc<Mutex<Vec<(Instant, u16, Vec<f64>)>>>;

/// Sends [`infer`] and readiness requests back to back until `stop`, recording every answer.
fn client(port: u16, stop: Arc<AtomicBool>, answers: Answers) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let (status, values) = infer(port, "anomaly-detector").unwrap_or((0, Vec::new()));
            let ready = http()
                .get(format!("http://127.0.0.1:{port}/v2/health/ready"))
                .send()
                .map_or(0, |r| r.status().as_u16());
            let status = if ready == 200 { status } else { ready };
            answers
                .lock()
                .expect("answers")
                .push((Instant::now(), status, values));
        }
    })
}

#[test]
fn a_checkpoint_renamed_over_the_served_one_is_answered_within_seconds_and_a_corrupt_one_is_refused()
 {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("canopy.toml");
    std::fs::write(&config, CONFIG).expect("config");
    // The same model trained with another seed: another forest, the same features.
    let reseeded = dir.path().join("reseeded.toml");
    std::fs::write(
        &reseeded,
        CONFIG.replace(
            "training_days = 2\n[models.predictive",
            "training_days = 2\nseed = 7\n[models.predictive",
        ),
    )
    .expect("config");
    let models = dir.path().join("models");
    train(&models, &config, "anomaly-detector");
    let folder = models.join("anomaly-detector");
    let served_file = folder.join("model.ckpt");

    let port = free_port();
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let _server = serve_logging(
        &[
            "--model_name",
            "anomaly-detector",
            "--model_dir",
            folder.to_str().expect("utf-8 path"),
            "--http_port",
            &port.to_string(),
        ],
        &[("RUST_LOG", "info")],
        port,
        log.into(),
    );
    let (_, first) = infer(port, "anomaly-detector").expect("infer");
    assert_eq!(reloads(port, "ok"), Some(0.0), "exported from the start");

    let stop = Arc::new(AtomicBool::new(false));
    let answers: Answers = Arc::default();
    let client = client(port, stop.clone(), answers.clone());

    // A second training writes its checkpoint over the served one (its own atomic rename).
    std::thread::sleep(Duration::from_millis(500));
    train(&models, &reseeded, "anomaly-detector");
    let replaced = Instant::now();

    // What a fresh `canopy serve` of the new file answers.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir_all(&fresh).expect("dir");
    std::fs::copy(&served_file, fresh.join("model.ckpt")).expect("copy");
    let fresh_port = free_port();
    let _fresh = serve(
        &[
            "--model_name",
            "anomaly-detector",
            "--model_dir",
            fresh.to_str().expect("utf-8 path"),
            "--http_port",
            &fresh_port.to_string(),
        ],
        &[],
        fresh_port,
    );
    let (_, second) = infer(fresh_port, "anomaly-detector").expect("infer");
    assert_ne!(second, first, "the reseeded model scores differently");

    let switched = wait_for(Duration::from_secs(20), "the new model to answer", || {
        let answers = answers.lock().expect("answers");
        answers
            .iter()
            .find(|(at, _, values)| *at > replaced && *values == second)
            .map(|(at, ..)| at.duration_since(replaced))
    });
    assert!(
        switched < Duration::from_secs(6),
        "the new model answered {switched:?} after the rename"
    );
    assert_eq!(
        trained_at(port, "anomaly-detector"),
        trained_at(fresh_port, "anomaly-detector")
    );
    assert_eq!(reloads(port, "ok"), Some(1.0));

    // A corrupt file renamed over the served one, as a writer would rename it.
    let mut corrupt = std::fs::read(&served_file).expect("read");
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x5a;
    let temp = folder.join(".model.ckpt.tmp");
    std::fs::write(&temp, &corrupt).expect("write");
    std::fs::rename(&temp, &served_file).expect("rename");
    let corrupted = Instant::now();
    wait_for(Duration::from_secs(20), "the refusal to be counted", || {
        (reloads(port, "corrupt")? == 1.0).then_some(())
    });
    // Keep asking for a few more polls: the refusal is not repeated, the old model answers.
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    client.join().expect("client");

    let answers = answers.lock().expect("answers");
    assert!(answers.len() > 20, "only {} requests", answers.len());
    let failed: Vec<_> = answers.iter().filter(|(_, s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    // Every answer is one model's or the other's, and once the new one answers, only it does.
    let from = answers
        .iter()
        .position(|(_, _, v)| *v == second)
        .expect("the new model answered");
    assert!(answers[..from].iter().all(|(_, _, v)| *v == first));
    assert!(answers[from..].iter().all(|(_, _, v)| *v == second));
    assert!(
        answers.iter().filter(|(at, ..)| *at > corrupted).count() > 5,
        "too few requests after the corrupt file"
    );
    assert_eq!(reloads(port, "corrupt"), Some(1.0), "refused once");
    assert_eq!(reloads(port, "ok"), Some(1.0));
    let log = std::fs::read_to_string(&log_path).expect("log");
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused the replaced checkpoint"))
        .collect();
    assert_eq!(refusals.len(), 1, "{log}");
    assert!(refusals[0].contains("CRC"), "{}", refusals[0]);
    assert!(log.contains("reloaded the model"), "{log}");
}
