//! `canopy train` then `canopy serve`: checkpoints written from the configured source are served
//! read-only on the KServe endpoints, as a KServe custom runtime serves them, in both folder
//! layouts, and answer exactly what the checkpoint's own model answers.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, http, wait_for};

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
    let mut c = canopy();
    c.arg("serve")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
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
    let (registry, _) = canopy::checkpoint::load_registry(&models).expect("load checkpoints");
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
    let want = forest.predict(&flat).expect("predict");
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
