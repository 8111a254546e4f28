//! What `deploy/` ships, tested as shipped: the alert rules with promtool, every kustomization
//! built and validated, and the deployed `canopy.toml` with the `remote_write` snippet running
//! against the real Prometheus and node-exporter, with the alert rules evaluated on canopy's
//! real `/metrics`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Agent, Peer, free_port, http, python, wait_for};

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
    assert!(out.contains("SUCCESS: 6 rules found"), "{out}");
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
            (total == 6 && healthy == 6).then_some(())
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
