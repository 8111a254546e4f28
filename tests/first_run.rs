//! The first run on a plain node, as a new user makes it: Debian's Prometheus scraping
//! node-exporter every second (no kubelet, no cAdvisor, no kube-state-metrics) and remote-writing
//! to canopy started with the embedded default config and its synthetic first training. The
//! default detector must score the node within a few minutes, must not flag its first steps
//! (its forest learned synthetic data, not this node: it warms up on live vectors first), and
//! nothing Prometheus sends may fail; the pod's readiness (`/-/ready`) is 200 throughout.

mod common;

use std::time::{Duration, Instant};

use common::{Agent, Peer, http, metric_value, wait_for};

#[test]
fn default_config_scores_a_plain_node_within_minutes_without_flagging_it() {
    let node = Peer::node_exporter();
    // An empty file: everything from the embedded default.
    let agent = Agent::start("");
    let ready = || {
        http()
            .get(agent.url("/-/ready"))
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(ready(), 200, "ready as soon as it listens");
    // The README's quickstart Prometheus, its ports made this test's.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let quickstart = std::fs::read_to_string(root.join("examples/quickstart/prometheus.yml"))
        .expect("the quickstart's prometheus.yml");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let body: String = quickstart
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        readme.contains(&body),
        "README's quickstart shows examples/quickstart/prometheus.yml"
    );
    let yml = quickstart
        .replace("localhost:9100", &format!("127.0.0.1:{}", node.port))
        .replace("http://localhost:8080", &agent.url(""));
    assert!(yml.contains(&agent.url("/api/v1/write")), "{yml}");
    let prom = Peer::prometheus_with_config(common::free_port(), &yml, &[]);

    // Every default feature evaluates from node-exporter's series alone.
    let started = Instant::now();
    let score = r#"canopy_anomaly_score{model="anomaly-detector"}"#;
    let metrics = || agent.scrape();
    let first = wait_for(
        Duration::from_secs(240),
        "the default detector's first score",
        || {
            assert_eq!(ready(), 200, "/-/ready never waits for a model");
            let m = metrics();
            metric_value(&m, score).map(|_| m)
        },
    );
    eprintln!(
        "first score {:.0} s after start",
        started.elapsed().as_secs_f64()
    );
    let cpu: serde_json::Value = http()
        .get(agent.url("/api/v1/features/cpu"))
        .send()
        .and_then(|r| r.json())
        .expect("/api/v1/features/cpu");
    assert_eq!(cpu["data"]["resultType"], "matrix");
    assert!(
        cpu["data"]["result"][0]["values"]
            .as_array()
            .is_some_and(|v| !v.is_empty()),
        "{cpu}"
    );
    assert_eq!(
        metric_value(
            &first,
            r#"canopy_model_warming_up{model="anomaly-detector"}"#
        ),
        Some(1.0),
        "a forest trained on synthetic rows warms up on the node's own vectors:\n{}",
        agent.logs()
    );

    // The next two model steps (one minute each): scored, never flagged.
    let steps = r#"canopy_model_reservoir_size{model="anomaly-detector"}"#;
    let mut seen = metric_value(&first, steps).unwrap_or(0.0);
    for _ in 0..2 {
        let m = wait_for(Duration::from_secs(120), "another model step", || {
            let m = metrics();
            (metric_value(&m, steps)? > seen).then_some(m)
        });
        seen = metric_value(&m, steps).unwrap_or(seen);
        assert_eq!(
            metric_value(&m, r#"canopy_anomaly{model="anomaly-detector"}"#),
            Some(0.0),
            "not flagged in its first steps:\n{}",
            agent.logs()
        );
        let likelihood = metric_value(&m, r#"canopy_anomaly_likelihood{model="anomaly-detector"}"#)
            .expect("likelihood exported");
        assert!((0.0..1.0).contains(&likelihood), "{likelihood}");
    }
    let m = metrics();
    assert_eq!(
        metric_value(&m, r#"canopy_anomalies_total{model="anomaly-detector"}"#),
        Some(0.0),
        "no step flagged at all"
    );
    for feature in ["cpu", "memory", "disk", "restarts", "net_rx", "net_tx"] {
        assert!(
            metric_value(
                &m,
                &format!(
                    r#"canopy_model_incomplete_vectors_total{{model="anomaly-detector",feature="{feature}"}}"#
                )
            )
            .is_none_or(|n| n <= 2.0),
            "feature {feature} went missing after start"
        );
    }
    let failed = prom
        .query_scalar("sum(prometheus_remote_storage_samples_failed_total)")
        .unwrap_or(0.0);
    assert_eq!(failed, 0.0, "samples Prometheus failed to send");
}

#[test]
fn a_backfill_of_minutes_tops_up_with_synthetic_rows_and_never_blocks_readiness() {
    // A Prometheus that has scraped node-exporter for a little over a minute: a backfill far
    // too short for either model's first fit.
    let node = Peer::node_exporter();
    let prom = Peer::prometheus(
        &format!(
            "  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            node.port
        ),
        None,
    );
    wait_for(Duration::from_secs(60), "Prometheus to scrape", || {
        prom.query_scalar("count(node_cpu_seconds_total)")
    });
    std::thread::sleep(Duration::from_secs(70));
    let prom_url = prom.url("");
    let agent = Agent::start_with(
        "",
        &[("DATA_SOURCE", "prometheus"), ("PROMETHEUS_URL", &prom_url)],
    );
    let status = |path: &str| {
        http()
            .get(agent.url(path))
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    wait_for(Duration::from_secs(120), "both models ready", || {
        assert_eq!(status("/-/ready"), 200, "/-/ready never waits for a model");
        (status("/v2/health/ready") == 200).then_some(())
    });
    let m = agent.scrape();
    assert_eq!(
        metric_value(
            &m,
            r#"canopy_model_info{model="anomaly-detector",source="hybrid"}"#
        ),
        Some(1.0),
        "the detector's short backfill was topped up:\n{}",
        agent.logs()
    );
    let forecaster_source = ["hybrid", "synthetic"].iter().find(|s| {
        metric_value(
            &m,
            &format!(r#"canopy_model_info{{model="predictive-analytics",source="{s}"}}"#),
        ) == Some(1.0)
    });
    assert!(
        forecaster_source.is_some(),
        "the forecaster trained, from a top-up or synthetic rows:\n{}",
        agent.logs()
    );
    assert!(
        agent.logs().contains("too short for a first fit"),
        "the top-up is logged"
    );
    assert!(
        !m.contains("canopy_forecast{"),
        "no forecast from a forest that knows no live data, nor for the synthetic entity"
    );
}
