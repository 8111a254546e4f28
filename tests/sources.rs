//! Training sources at start: synthetic data with injected anomalies, a backfill from the real
//! Prometheus (Debian's 2.42, holding 7 days imported with `promtool tsdb
//! create-blocks-from openmetrics`), and the fallback to synthetic when Prometheus is unreachable
//! or answers errors.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use canopy::config::{Config, ModelKind};
use canopy::features::FeatureSet;
use canopy::live::TrainingMode;
use canopy::live::detector::{Detector, DetectorSpec};
use canopy::series::Labels;
use canopy::source::prometheus::{BackfillRequest, ClientOptions, PrometheusClient, backfill};
use canopy::source::synthetic::{SyntheticSpec, generate};
use common::{Agent, free_port, http, wait_for};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

/// Features over per-node counters and gauges (two entities) and a cluster-wide counter.
const FEATURES: &str = r#"
[features]
cpu = 'sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))'
memory = 'avg by (instance) (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)'
restarts = 'sum(rate(kube_pod_container_status_restarts_total[5m])) or vector(0)'
"#;

fn test_config(extra_models: &str) -> String {
    format!(
        "{FEATURES}\n[models.anomaly-detector]\nkind = \"isolation_forest\"\n\
         features = [\"cpu\", \"memory\", \"restarts\"]\nstep = \"5m\"\ntraining_days = 7\n\
         n_estimators = 50\n{extra_models}"
    )
}

const FORECASTER: &str = "[models.predictive-analytics]\nkind = \"random_forest\"\n\
    features = [\"cpu\", \"memory\"]\ntarget = [\"cpu\"]\nstep = \"5m\"\ntraining_days = 7\n\
    lookback = 6\nhorizon = 3\nn_estimators = 10\nmax_depth = 8\n";

/// 7 days of OpenMetrics samples at 1m spacing, ending at `end_s`: per instance `a` and `b`,
/// CPU counters for three modes (one of them reset halfway), memory gauges; a restarts counter.
fn openmetrics(end_s: i64) -> String {
    let start_s = end_s - 7 * 86_400;
    let times: Vec<i64> = (start_s..=end_s).step_by(60).collect();
    let mut out = String::new();
    for (ii, instance) in ["a", "b"].iter().enumerate() {
        for (mi, mode) in ["idle", "user", "system"].iter().enumerate() {
            let mut total = 1000.0 * (mi + 1) as f64;
            for (k, &t) in times.iter().enumerate() {
                let day = ((t % 86_400) as f64 / 86_400.0 * std::f64::consts::TAU).sin();
                total += 60.0 * (0.1 + 0.05 * mi as f64 + 0.05 * ii as f64 + 0.04 * day);
                if *instance == "b" && *mode == "system" && k == times.len() / 2 {
                    total = 3.0; // a counter reset
                }
                out.push_str(&format!(
                    "node_cpu_seconds_total{{instance=\"{instance}\",mode=\"{mode}\"}} {total} {t}\n"
                ));
            }
        }
    }
    for (ii, instance) in ["a", "b"].iter().enumerate() {
        for &t in &times {
            let day = ((t % 86_400) as f64 / 86_400.0 * std::f64::consts::TAU).cos();
            let available = 4.0e9 + 1.0e9 * day + 1.0e8 * ii as f64 + ((t / 60) % 7) as f64 * 1.0e6;
            out.push_str(&format!(
                "node_memory_MemAvailable_bytes{{instance=\"{instance}\"}} {available} {t}\n"
            ));
        }
    }
    for instance in ["a", "b"] {
        for &t in &times {
            out.push_str(&format!(
                "node_memory_MemTotal_bytes{{instance=\"{instance}\"}} 16000000000 {t}\n"
            ));
        }
    }
    let mut restarts = 0.0;
    for &t in &times {
        if (t / 60) % 97 == 0 {
            restarts += 1.0;
        }
        out.push_str(&format!(
            "kube_pod_container_status_restarts_total{{pod=\"api-0\"}} {restarts} {t}\n"
        ));
    }
    out.push_str("# EOF\n");
    out
}

/// Debian's Prometheus serving blocks imported with promtool, scraping nothing.
struct BackfilledPrometheus {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for BackfilledPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BackfilledPrometheus {
    fn start(end_s: i64) -> BackfilledPrometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("samples.om");
        std::fs::write(&input, openmetrics(end_s)).expect("write openmetrics");
        let data = dir.path().join("data");
        let status = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .expect("run promtool (apt-get install prometheus)");
        assert!(status.success(), "promtool imported the samples");
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 1m\nscrape_configs: []\n")
            .expect("write config");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg("--storage.tsdb.retention.time=3650d")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn prometheus");
        let p = BackfilledPrometheus {
            port,
            child,
            _dir: dir,
        };
        wait_for(Duration::from_secs(60), "prometheus to be ready", || {
            http()
                .get(p.url("/-/ready"))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
        });
        p
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Prometheus's own `query_range` answer: per label set without `__name__`, t_ms → value.
    fn query_range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> BTreeMap<Labels, BTreeMap<i64, f64>> {
        let secs = |ms: i64| format!("{}", ms / 1000);
        let v: serde_json::Value = http()
            .get(self.url("/api/v1/query_range"))
            .query(&[
                ("query", expr.to_owned()),
                ("start", secs(start_ms)),
                ("end", secs(end_ms)),
                ("step", secs(step_ms)),
            ])
            .send()
            .expect("query_range")
            .json()
            .expect("json");
        assert_eq!(v["status"], "success", "{v}");
        let mut out = BTreeMap::new();
        for series in v["data"]["result"].as_array().expect("matrix") {
            let metric = series["metric"].as_object().expect("metric");
            let labels = Labels::from_pairs(
                metric
                    .iter()
                    .filter(|(k, _)| *k != "__name__")
                    .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default())),
            );
            let points = series["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|p| {
                    let t = (p[0].as_f64().expect("t") * 1000.0).round() as i64;
                    let x: f64 = p[1].as_str().expect("v").parse().expect("number");
                    (t, x)
                })
                .collect();
            out.insert(labels, points);
        }
        out
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .expect("clock")
}

#[test]
fn backfill_equals_prometheus_query_range_answers() {
    // data ending a quarter of an hour ago, on the minute
    let end_s = (now_s() / 60) * 60 - 15 * 60;
    let prom = BackfilledPrometheus::start(end_s);
    let config = Config::from_parts(Some((&test_config(""), "t.toml")), &[]).expect("config");
    let features: Vec<(String, String)> = ["cpu", "memory", "restarts"]
        .iter()
        .map(|f| ((*f).to_owned(), config.features[*f].clone()))
        .collect();
    let step_ms = 5 * MINUTE_MS;
    let end_ms = end_s * 1000 - (end_s * 1000).rem_euclid(step_ms);
    let start_ms = end_ms - 7 * DAY_MS + step_ms;
    let client = PrometheusClient::new(&ClientOptions {
        url: prom.url(""),
        bearer_token_file: None,
        basic_auth_user: None,
        basic_auth_password_file: None,
        ca_file: None,
        timeout: Duration::from_secs(30),
        retries: 1,
        backoff: Duration::from_millis(100),
        // 2,016 steps in chunks of 500: five queries per feature
        max_points: 500,
    })
    .expect("client");
    let started = Instant::now();
    let b = backfill(
        &client,
        &BackfillRequest {
            model: "anomaly-detector",
            features: &features,
            step_ms,
            start_ms,
            end_ms,
        },
        2_016,
        100,
    )
    .expect("backfill");
    let elapsed = started.elapsed();
    eprintln!(
        "backfilled {} rows ({} chunks) in {:.3}s",
        b.rows,
        b.chunks,
        elapsed.as_secs_f64()
    );
    assert_eq!(b.chunks, 15, "3 features x 5 chunks");

    let answers: Vec<_> = features
        .iter()
        .map(|(_, expr)| prom.query_range(expr, start_ms, end_ms, step_ms))
        .collect();
    let entities: Vec<&Labels> = b.history.entities().map(|(l, _)| l).collect();
    let a = Labels::from_pairs([("instance", "a")]);
    let bb = Labels::from_pairs([("instance", "b")]);
    assert_eq!(entities, [&a, &bb], "one entity per instance");
    let mut compared = 0;
    for (entity, rows) in b.history.entities() {
        let values: Vec<f64> = rows.v.iter().copied().collect();
        // every step Prometheus answers for all three features is a row
        let expected_steps: Vec<i64> = answers[0][entity]
            .keys()
            .copied()
            .filter(|t| answers[1][entity].contains_key(t))
            .filter(|t| answers[2].values().any(|s| s.contains_key(t)))
            .collect();
        let complete: Vec<i64> = rows
            .t
            .iter()
            .zip(values.chunks_exact(3))
            .filter(|(_, r)| r.iter().all(|x| !x.is_nan()))
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(complete, expected_steps, "{entity:?}: the same steps");
        assert!(complete.len() > 2_000, "{}", complete.len());
        for (t, row) in rows.t.iter().zip(values.chunks_exact(3)) {
            if row[0].is_nan() {
                continue;
            }
            let restarts = answers[2].values().next().and_then(|s| s.get(t));
            assert_eq!(
                [
                    answers[0][entity].get(t),
                    answers[1][entity].get(t),
                    restarts
                ],
                [Some(&row[0]), Some(&row[1]), Some(&row[2])],
                "{entity:?} at {t}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, b.rows);

    // the real binary, backfilling at start
    let mut agent = Agent::start_with(
        &test_config(FORECASTER),
        &[
            ("DATA_SOURCE", "prometheus"),
            ("PROMETHEUS_URL", &prom.url("")),
        ],
    );
    let started = Instant::now();
    for model in ["anomaly-detector", "predictive-analytics"] {
        wait_for(
            Duration::from_secs(120),
            "models trained from prometheus",
            || {
                let series =
                    format!("canopy_model_info{{model=\"{model}\",source=\"prometheus\"}}");
                (agent.metric(&series).is_some_and(|v| v == 1.0)).then_some(())
            },
        );
    }
    eprintln!(
        "DATA_SOURCE=prometheus: both models ready {:.1}s after listening",
        started.elapsed().as_secs_f64()
    );
    let logs = agent.logs();
    assert!(logs.contains("backfill done"), "{logs}");
    assert!(!logs.contains("falling back to synthetic"), "{logs}");
    assert_eq!(
        agent.metric("canopy_model_info{model=\"anomaly-detector\",source=\"synthetic\"}"),
        Some(0.0)
    );
    assert!(agent.terminate());
}

/// Starts a detector-only agent whose Prometheus is `url`, and waits for the synthetic fallback.
fn assert_falls_back(url: &str) -> Agent {
    let agent = Agent::start_with(
        &test_config(""),
        &[
            ("DATA_SOURCE", "hybrid"),
            ("PROMETHEUS_URL", url),
            ("CANOPY_SOURCE__QUERY_RETRIES", "2"),
            ("CANOPY_SOURCE__QUERY_TIMEOUT", "2s"),
        ],
    );
    wait_for(Duration::from_secs(60), "synthetic fallback", || {
        let v = agent.metric("canopy_model_info{model=\"anomaly-detector\",source=\"synthetic\"}");
        (v == Some(1.0)).then_some(())
    });
    let logs = agent.logs();
    let warning = logs
        .lines()
        .find(|l| l.contains("falling back to synthetic"))
        .unwrap_or_else(|| panic!("no fallback warning in:\n{logs}"));
    assert!(
        warning.contains(url),
        "the warning names the URL: {warning}"
    );
    assert!(warning.contains("WARN"), "{warning}");
    assert_eq!(
        agent.metric("canopy_model_info{model=\"anomaly-detector\",source=\"hybrid\"}"),
        Some(0.0)
    );
    agent
}

#[test]
fn unreachable_prometheus_falls_back_to_synthetic() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let agent = assert_falls_back(&url);
    assert!(agent.logs().contains("Connection refused") || agent.logs().contains("onnect"));
}

/// A local HTTP server answering every request with `response`; counts the requests.
fn answering(response: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 65_536];
            let _ = s.read(&mut buf);
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(response.as_bytes());
        }
    });
    (url, count)
}

#[test]
fn prometheus_answering_errors_falls_back_to_synthetic() {
    let (url, count) = answering(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 18\r\nConnection: close\r\n\r\nstorage exploded!\n",
    );
    let agent = assert_falls_back(&url);
    assert!(
        agent.logs().contains("storage exploded"),
        "the error is logged"
    );
    assert_eq!(
        count.load(Ordering::SeqCst),
        3,
        "one request and two retries"
    );

    let (url, count) = answering(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\nConnection: close\r\n\r\n<garbage>",
    );
    let agent = assert_falls_back(&url);
    assert!(agent.logs().contains("garbage"), "the error is logged");
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "a garbled answer is not retried"
    );
}

#[test]
fn default_start_serves_both_models_from_synthetic_data() {
    let agent = Agent::start("");
    let started = Instant::now();
    for model in ["anomaly-detector", "predictive-analytics"] {
        wait_for(
            Duration::from_secs(300),
            "models trained from synthetic data",
            || {
                let series = format!("canopy_model_info{{model=\"{model}\",source=\"synthetic\"}}");
                (agent.metric(&series).is_some_and(|v| v == 1.0)).then_some(())
            },
        );
        eprintln!(
            "{model} ready {:.1}s after listening",
            started.elapsed().as_secs_f64()
        );
    }
    assert_eq!(
        agent.metric("canopy_model_retrains_total{model=\"anomaly-detector\",result=\"ok\"}"),
        Some(1.0)
    );
}

#[test]
fn synthetic_anomalies_match_the_rate_and_a_detector_flags_them() {
    let config = Config::default_config().expect("default config");
    let set = FeatureSet::from_config(&config).expect("features");
    let model = &config.models["anomaly-detector"];
    let ModelKind::IsolationForest(forest) = &model.kind else {
        panic!("kind")
    };
    let rows = SyntheticSpec::rows_for_days(7, 60_000);
    let end_ms = 1_790_000_000_000 - 1_790_000_000_000 % 60_000;
    let s = generate(&SyntheticSpec {
        features: &model.features,
        step_ms: 60_000,
        end_ms,
        rows,
        anomaly_rate: 0.03,
        seed: model.seed,
    });
    let injected = s.injected.iter().filter(|x| **x).count();
    let fraction = injected as f64 / rows as f64;
    // exactly round(rate x rows) rows: within half a row of the rate
    assert!((fraction - 0.03).abs() <= 0.5 / rows as f64, "{fraction}");

    let mut d = Detector::new(
        DetectorSpec::new("anomaly-detector", model, forest, &set, 5).expect("spec"),
        TrainingMode::Inline,
    )
    .expect("detector");
    assert!(d.seed(&s.t, &s.v, end_ms, "synthetic"));
    let m = d.published().load_full().expect("trained");
    let (mut tp, mut flagged) = (0, 0);
    for i in 0..s.rows() {
        let predicted = m.score_sample(s.row(i)).expect("score") - m.offset() < 0.0;
        flagged += usize::from(predicted);
        tp += usize::from(predicted && s.injected[i]);
    }
    let recall = tp as f64 / injected as f64;
    let precision = tp as f64 / flagged.max(1) as f64;
    eprintln!(
        "injected {injected}/{rows} = {fraction:.4}; flagged {flagged}; recall {recall:.3}, precision {precision:.3} (base rate 0.03)"
    );
    // flagging rows at random at the same rate would give recall = flagged/rows and precision 0.03
    assert!(recall >= 0.6, "recall {recall}");
    assert!(precision >= 0.3, "precision {precision}: 10x the base rate");
}
