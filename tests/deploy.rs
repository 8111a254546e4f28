//! What `deploy/` ships, tested as shipped: the alert rules with promtool, every kustomization
//! built and validated, the KServe overlay's retraining CronJob run with its own command lines
//! and served by its ServingRuntime's, and the deployed `canopy.toml` with the `remote_write`
//! snippet running against the real Prometheus and node-exporter, with the alert rules evaluated
//! on canopy's real `/metrics`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Agent, Peer, free_port, http, metric_value, python, wait_for};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// The PrometheusRule's groups as a promtool rule file in `dir`.
fn extract_rules(dir: &Path) -> PathBuf {
    let rules = dir.join("rules.yaml");
    run(Command::new(python())
        .arg(root().join("tests/python/deploy_check.py"))
        .arg("rules")
        .arg(root().join("deploy/base/prometheusrule.yaml"))
        .arg(&rules));
    rules
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = extract_rules(dir.path());
    let out = run(Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules));
    assert!(out.contains("SUCCESS: 8 rules found"), "{out}");
    std::fs::copy(
        root().join("deploy/tests/alerts_test.yaml"),
        dir.path().join("alerts_test.yaml"),
    )
    .expect("copy tests");
    let out = run(Command::new("promtool").current_dir(dir.path()).args([
        "test",
        "rules",
        "alerts_test.yaml",
    ]));
    assert!(out.contains("SUCCESS"), "{out}");
    // every alert of the rule file has a unit test and a runbook section
    let text = std::fs::read_to_string(&rules).expect("rules");
    let tests =
        std::fs::read_to_string(root().join("deploy/tests/alerts_test.yaml")).expect("tests");
    let runbooks = std::fs::read_to_string(root().join("deploy/README.md")).expect("runbooks");
    for line in text.lines().filter_map(|l| {
        l.trim()
            .strip_prefix("- alert: ")
            .or_else(|| l.trim().strip_prefix("alert: "))
    }) {
        assert!(
            tests.contains(&format!("alertname: {line}")),
            "{line} has no promtool test"
        );
        assert!(
            runbooks.contains(&format!("### {line}")),
            "{line} has no runbook in deploy/README.md"
        );
    }
}

#[test]
fn every_kustomization_builds_validates_and_is_secure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let validate = python().with_file_name("kubernetes-validate");
    for overlay in [
        "deploy",
        "deploy/overlays/sidecar",
        "deploy/overlays/kserve",
        "deploy/overlays/secure",
        "deploy/overlays/sharded",
    ] {
        let built = run(Command::new("kubectl")
            .arg("kustomize")
            .arg(root().join(overlay)));
        let file = dir.path().join("built.yaml");
        std::fs::write(&file, &built).expect("write built manifests");
        let checked = run(Command::new(python())
            .arg(root().join("tests/python/deploy_check.py"))
            .arg("manifests")
            .arg(&file));
        assert!(
            checked.contains("PersistentVolumeClaim"),
            "{overlay}: {checked}"
        );
        let out = run(Command::new(&validate)
            .args(["--strict", "-k", "1.32"])
            .arg(&file));
        let passed = out.lines().filter(|l| l.contains(" passed ")).count();
        assert!(
            passed >= 5,
            "{overlay}: only {passed} resources validated:\n{out}"
        );
        assert!(!out.contains("ERROR"), "{overlay}:\n{out}");
        if overlay.ends_with("kserve") {
            assert!(
                out.contains("cronjob/canopy-retrain against"),
                "the retraining CronJob was not validated:\n{out}"
            );
        }
        if overlay == "deploy/overlays/sharded" {
            // replica K is written by remote_write entry K, which keeps hash shard K of N
            let out = run(Command::new(python())
                .arg(root().join("tests/python/deploy_check.py"))
                .arg("sharding")
                .arg(&file)
                .arg(root().join("deploy/overlays/sharded/prometheus-remote-write.yaml")));
            assert!(out.contains("2 replicas, 2 remote_write entries"), "{out}");
        }
    }
}

/// A container of the built manifests, as `deploy_check.py commands` describes it.
struct Container {
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// mount path → volume name
    mounts: Vec<(String, String)>,
}

impl Container {
    fn of(v: &serde_json::Value) -> Container {
        let strings = |v: &serde_json::Value| -> Vec<(String, String)> {
            v.as_object()
                .expect("object")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("string").to_owned()))
                .collect()
        };
        Container {
            args: v["args"]
                .as_array()
                .expect("args")
                .iter()
                .map(|a| a.as_str().expect("string").to_owned())
                .collect(),
            env: strings(&v["env"]),
            mounts: strings(&v["mounts"]),
        }
    }

    /// Runs the container's command line on this machine, each path below one of its mounts
    /// rewritten to the local folder that volume stands for, with `env` over its environment.
    fn spawn(&self, volumes: &[(&str, &Path)], env: &[(&str, &str)]) -> Child {
        let local = |arg: &str| -> String {
            // `--flag=PATH` or `PATH`
            let (flag, value) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (format!("{flag}="), value),
                _ => (String::new(), arg),
            };
            for (mount, volume) in &self.mounts {
                let Some(rest) = value.strip_prefix(mount.as_str()) else {
                    continue;
                };
                let (_, folder) = volumes
                    .iter()
                    .find(|(name, _)| name == volume)
                    .unwrap_or_else(|| panic!("no local folder for volume {volume}"));
                return format!("{flag}{}{rest}", folder.display());
            }
            arg.to_owned()
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_canopy"));
        cmd.args(self.args.iter().map(|a| local(a)))
            .env_remove("PORT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("spawn canopy")
    }
}

#[test]
fn the_retraining_job_writes_what_the_kserve_runtime_serves_and_it_reloads_each_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let built = run(Command::new("kubectl")
        .arg("kustomize")
        .arg(root().join("deploy/overlays/kserve")));
    let file = dir.path().join("built.yaml");
    std::fs::write(&file, &built).expect("write built manifests");
    let commands: serde_json::Value = serde_json::from_str(&run(Command::new(python())
        .arg(root().join("tests/python/deploy_check.py"))
        .arg("commands")
        .arg(&file)))
    .expect("commands as JSON");
    let job = &commands["cronjobs"][0];
    assert_eq!(job["name"], "canopy-retrain");
    assert_eq!(job["schedule"], "0 * * * *", "hourly by default");
    let trainers: Vec<Container> = job["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(Container::of)
        .collect();
    assert_eq!(trainers.len(), 2, "one container per model");

    // The pod's volumes here: the ConfigMap is made from deploy/base/canopy.toml; the claim is a
    // folder. Prometheus is a port nobody listens on, so the sources' fallback trains.
    let claim = dir.path().join("model-storage-pvc");
    let base = root().join("deploy/base");
    let volumes = [("config", base.as_path()), ("models", claim.as_path())];
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let unreachable = [("PROMETHEUS_URL", nobody.as_str())];
    // Runs the containers as the pod does, side by side.
    let train = |containers: &[&Container]| {
        let running: Vec<Child> = containers
            .iter()
            .map(|c| c.spawn(&volumes, &unreachable))
            .collect();
        for (child, c) in running.into_iter().zip(containers) {
            let out = child.wait_with_output().expect("wait for canopy train");
            let log = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{:?} failed:\n{log}", c.args);
            assert!(
                c.env
                    .iter()
                    .any(|(k, v)| k == "DATA_SOURCE" && v == "prometheus"),
                "{:?}",
                c.env
            );
            assert!(log.contains("falling back to synthetic"), "{log}");
        }
    };
    train(&trainers.iter().collect::<Vec<_>>());
    for model in ["anomaly-detector", "predictive-analytics"] {
        assert!(
            claim
                .join("trained")
                .join(model)
                .join("model.ckpt")
                .is_file(),
            "the job wrote no trained/{model}/model.ckpt"
        );
    }

    // The ServingRuntime's command line, for the InferenceService `anomaly-detector`, whose
    // storageUri (pvc://model-storage-pvc/trained/anomaly-detector) KServe mounts at /mnt/models.
    let runtime = Container::of(&commands["runtimes"][0]["containers"][0]);
    let port = free_port();
    let serve = Container {
        args: runtime
            .args
            .iter()
            .map(|a| {
                a.replace("{{.Name}}", "anomaly-detector")
                    .replace("--http_port=8080", &format!("--http_port={port}"))
            })
            .collect(),
        env: runtime.env.clone(),
        mounts: vec![("/mnt/models".into(), "storage".into())],
    };
    assert!(
        serve.args.contains(&format!("--http_port={port}")),
        "{:?}",
        serve.args
    );
    let served_folder = claim.join("trained").join("anomaly-detector");
    let server = serve.spawn(&[("storage", served_folder.as_path())], &[]);
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(server);
    let metrics = || {
        http()
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .ok()?
            .text()
            .ok()
    };
    let reloads = |body: &str| {
        metric_value(
            body,
            r#"canopy_model_reloads_total{model="anomaly-detector",result="ok"}"#,
        )
    };
    wait_for(Duration::from_secs(30), "canopy serve to answer", || {
        reloads(&metrics()?).filter(|&n| n == 0.0)
    });

    // The next run replaces the files; the running server swaps the new detector in. (Only the
    // detector's container: the forecaster's 30 days take a debug build most of a minute.)
    let detector = trainers
        .iter()
        .find(|c| c.args.iter().any(|a| a == "anomaly-detector"))
        .expect("a container trains the detector");
    train(&[detector]);
    wait_for(
        Duration::from_secs(20),
        "the retrained model to be reloaded",
        || reloads(&metrics()?).filter(|&n| n == 1.0),
    );
    let r = http()
        .post(format!(
            "http://127.0.0.1:{port}/v1/models/anomaly-detector:predict"
        ))
        .json(&serde_json::json!({"instances": [[0.5, 0.6, 0.4, 100, 80]]}))
        .send()
        .expect("predict");
    assert_eq!(r.status(), 200);
}

#[test]
fn deployed_config_and_remote_write_snippet_run_against_real_prometheus() {
    let node = Peer::node_exporter();
    let config = std::fs::read_to_string(root().join("deploy/base/canopy.toml"))
        .expect("deploy/base/canopy.toml");
    let agent = Agent::start(&config);

    // Prometheus scrapes node-exporter and canopy, remote-writes to canopy with the shipped
    // snippet (its url pointed at this agent), and evaluates the shipped alert rules.
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = std::fs::read_to_string(extract_rules(dir.path())).expect("rules");
    let snippet = std::fs::read_to_string(root().join("deploy/prometheus/remote-write.yaml"))
        .expect("snippet");
    let snippet = snippet.replace(
        "http://canopy.self-healing-platform.svc:8080/api/v1/write",
        &agent.url("/api/v1/write"),
    );
    assert!(
        snippet.contains(&agent.url("/api/v1/write")),
        "the snippet's url was not found to replace"
    );
    let yml = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - rules.yaml\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n  - job_name: canopy\n    static_configs:\n      - targets: ['{}']\n{snippet}",
        node.port, agent.addr
    );
    let prom = Peer::prometheus_with_config(free_port(), &yml, &[("rules.yaml", &rules)]);

    wait_for(Duration::from_secs(60), "samples to arrive", || {
        (agent
            .metric("canopy_samples_appended_total")
            .is_some_and(|v| v > 0.0))
        .then_some(())
    });
    for feature in ["cpu", "memory", "disk", "net_rx", "net_tx", "restarts"] {
        wait_for(
            Duration::from_secs(120),
            &format!("feature {feature} to evaluate"),
            || {
                let v: serde_json::Value = http()
                    .get(agent.url(&format!("/api/v1/features/{feature}")))
                    .send()
                    .ok()?
                    .json()
                    .ok()?;
                (!v["data"]["result"].as_array()?.is_empty()).then_some(())
            },
        );
    }
    wait_for(Duration::from_secs(120), "the detector to score", || {
        let m = http().get(agent.url("/metrics")).send().ok()?.text().ok()?;
        m.contains(r#"canopy_anomaly_score{model="anomaly-detector"}"#)
            .then_some(())
    });
    // Every alert rule has been evaluated on canopy's real metrics, without error.
    wait_for(
        Duration::from_secs(30),
        "every rule evaluated without error",
        || {
            let v: serde_json::Value = http()
                .get(prom.url("/api/v1/rules"))
                .send()
                .ok()?
                .json()
                .ok()?;
            let (mut total, mut healthy) = (0, 0);
            for group in v["data"]["groups"].as_array()? {
                for rule in group["rules"].as_array()? {
                    total += 1;
                    let evaluated = rule["lastEvaluation"]
                        .as_str()
                        .is_some_and(|t| !t.starts_with("0001"));
                    healthy += usize::from(rule["health"] == "ok" && evaluated);
                }
            }
            (total == 8 && healthy == 8).then_some(())
        },
    );
    let metrics = http()
        .get(prom.url("/metrics"))
        .send()
        .expect("prometheus /metrics")
        .text()
        .expect("text");
    let failed: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("prometheus_remote_storage_samples_failed_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(failed, 0.0, "Prometheus failed to send samples to canopy");
}
