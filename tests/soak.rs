//! The soak: Prometheus-shaped remote-write at 80% of the measured maximum, predict calls on
//! both models, retraining and checkpoints, all at once against the real binary, with its
//! resident memory watched. Both models start from synthetic rows and retrain on the stream. A
//! short retention and short windows let the store reach its steady size within the warm-up, at
//! the rate of samples per series this load gives. It fails when any request fails, when the
//! models neither retrain nor checkpoint, or when RSS grows more than 10% past the end of the
//! warm-up (the first fifth, and at least 25 s).
//!
//! `SOAK_SECONDS` sets the length (60 here, in CI; `benches/soak.sh` runs 600 on a release
//! build). It prints one line per tenth of the run: write throughput and p99, predict rate and
//! p99, RSS, retrains and checkpoints so far.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use canopy::ingest::proto::v1;
use common::{Agent, metric_value, write_request_v1};
use serde_json::json;

/// Ten nodes, each with node-exporter's series the features read and twice as many they do not
/// (go runtime, HTTP handlers): a third of what arrives is kept, as on a real Prometheus.
const NODES: usize = 10;

const CONFIG: &str = r#"
[source]
data_source = "synthetic"
[limits]
retention = "20s"
[evaluation]
step = "5s"
lateness = "2s"
history = "1m"
[checkpoint]
interval = "10s"
[features]
cpu = 'sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[15s]))'
memory = 'avg by (instance) (1 - last_over_time(node_memory_MemAvailable_bytes[15s]) / last_over_time(node_memory_MemTotal_bytes[15s]))'
net_rx = 'sum by (instance) (rate(node_network_receive_bytes_total[15s]))'
net_tx = 'sum by (instance) (rate(node_network_transmit_bytes_total[15s]))'
load = 'avg by (instance) (last_over_time(node_load1[15s]))'
[models.anomaly-detector]
kind = "isolation_forest"
features = ["cpu", "memory", "net_rx", "net_tx", "load"]
step = "5s"
max_samples = 64
n_estimators = 50
training_days = 1
retrain_interval = "20s"
reservoir_size = 2048
[models.predictive-analytics]
kind = "random_forest"
features = ["cpu", "memory", "net_rx", "net_tx", "load"]
target = ["cpu", "memory"]
step = "30s"
lookback = 6
horizon = 2
n_estimators = 20
max_depth = 8
training_days = 1
retrain_interval = "30s"
"#;

/// One series: its labels and how its value moves.
struct Series {
    labels: Vec<(String, String)>,
    counter: bool,
    value: f64,
    last_t: i64,
}

fn series() -> Vec<Series> {
    let mut out = Vec::new();
    let mut add = |name: &str, node: usize, extra: &[(&str, String)], counter: bool| {
        let mut labels = vec![
            ("__name__".to_owned(), name.to_owned()),
            ("instance".to_owned(), format!("node-{node}:9100")),
            ("job".to_owned(), "node".to_owned()),
        ];
        labels.extend(extra.iter().map(|(n, v)| ((*n).to_owned(), v.clone())));
        labels.sort();
        out.push(Series {
            labels,
            counter,
            value: 1.0,
            last_t: 0,
        });
    };
    for node in 0..NODES {
        for cpu in 0..4 {
            for mode in ["idle", "user", "system", "iowait"] {
                let extra = [("cpu", cpu.to_string()), ("mode", mode.to_owned())];
                add("node_cpu_seconds_total", node, &extra, true);
            }
        }
        add("node_memory_MemAvailable_bytes", node, &[], false);
        add("node_memory_MemTotal_bytes", node, &[], false);
        add("node_load1", node, &[], false);
        for device in ["eth0", "eth1"] {
            let extra = [("device", device.to_owned())];
            add("node_network_receive_bytes_total", node, &extra, true);
            add("node_network_transmit_bytes_total", node, &extra, true);
        }
        // What the features do not select.
        for k in 0..50 {
            add(
                "go_gc_duration_seconds",
                node,
                &[("quantile", k.to_string())],
                false,
            );
            let extra = [("handler", format!("/api/{k}"))];
            add("http_requests_total", node, &extra, true);
        }
    }
    out
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// The next remote-write body: `n` samples, one per series in turn, stamped now.
fn next_body(all: &mut [Series], cursor: &mut usize, n: usize, k: &mut u64) -> Vec<u8> {
    let now = now_ms();
    let mut timeseries = Vec::with_capacity(n);
    let len = all.len();
    for _ in 0..n {
        let s = &mut all[*cursor];
        *cursor = (*cursor + 1) % len;
        *k += 1;
        let wiggle = ((*k % 97) as f64 / 97.0 * std::f64::consts::TAU).sin();
        s.value = if s.counter {
            s.value + 10.0 + 5.0 * wiggle
        } else {
            1000.0 + 100.0 * wiggle
        };
        s.last_t = now.max(s.last_t + 1);
        timeseries.push(v1::TimeSeries {
            labels: s
                .labels
                .iter()
                .map(|(name, value)| v1::Label {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            samples: vec![v1::Sample {
                value: s.value,
                timestamp: s.last_t,
            }],
            ..Default::default()
        });
    }
    write_request_v1(timeseries)
}

/// Latencies (µs) and failures of one kind of request, drained at each report.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, started: Instant, outcome: Result<(), String>) {
        self.latencies_us.push(started.elapsed().as_micros() as u64);
        if let Err(e) = outcome {
            self.failures.push(e);
        }
    }

    /// Requests, p99 in ms; the latencies are cleared.
    fn drain(&mut self) -> (usize, f64) {
        let mut l = std::mem::take(&mut self.latencies_us);
        l.sort_unstable();
        let p99 = l
            .get((l.len() * 99 / 100).min(l.len().saturating_sub(1)))
            .map_or(0.0, |v| *v as f64 / 1000.0);
        (l.len(), p99)
    }
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .expect("VmRSS")
        / 1024.0
}

fn sum_of(body: &str, prefix: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Writes as fast as one connection can for `for_how_long`: samples per second.
fn measure_max(url: &str, all: &mut [Series], for_how_long: Duration) -> f64 {
    let client = common::http();
    let (mut cursor, mut k, mut sent) = (0, 0, 0usize);
    let started = Instant::now();
    while started.elapsed() < for_how_long {
        let body = next_body(all, &mut cursor, 2000, &mut k);
        let r = client
            .post(url)
            .header("Content-Type", "application/x-protobuf")
            .body(body)
            .send()
            .expect("write");
        assert_eq!(r.status(), 204);
        sent += 2000;
    }
    sent as f64 / started.elapsed().as_secs_f64()
}

#[test]
fn soak_ingest_predict_retrain_and_checkpoint_together_with_flat_memory() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let total = Duration::from_secs(seconds);
    let report_every = total / 10;
    // The store's retention (20 s) fills first: memory is compared from then on.
    let warm_up = (total / 5).max(Duration::from_secs(25));
    // Both models start from synthetic rows, so predict is served from the first second; the
    // stream then retrains them.
    let agent = Agent::start(CONFIG);
    common::wait_for(Duration::from_secs(120), "both models ready", || {
        let r = common::http()
            .get(agent.url("/v2/health/ready"))
            .send()
            .ok()?;
        (r.status() == 200).then_some(())
    });
    let write_url = agent.url("/api/v1/write");
    let mut all = series();

    // The maximum one sender reaches, then 80% of it for the run.
    let max = measure_max(
        &write_url,
        &mut all,
        Duration::from_secs(5).min(report_every),
    );
    let target = 0.8 * max;
    eprintln!(
        "soak: {seconds} s, {} series ({} nodes), max {:.0} samples/s from one sender, running at {:.0}",
        all.len(),
        NODES,
        max,
        target
    );

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(Mutex::new(Tally::default()));
    let predicts = Arc::new(Mutex::new(Tally::default()));
    let samples = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, writes, samples, url) = (
            stop.clone(),
            writes.clone(),
            samples.clone(),
            write_url.clone(),
        );
        std::thread::spawn(move || {
            let client = common::http();
            let (mut cursor, mut k) = (0, 0);
            let per_request = Duration::from_secs_f64(2000.0 / target);
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let body = next_body(&mut all, &mut cursor, 2000, &mut k);
                let started = Instant::now();
                let outcome = match client
                    .post(&url)
                    .header("Content-Type", "application/x-protobuf")
                    .body(body)
                    .send()
                {
                    Ok(r) if r.status() == 204 => Ok(()),
                    Ok(r) => Err(format!("write answered {}", r.status())),
                    Err(e) => Err(format!("write failed: {e}")),
                };
                writes.lock().expect("tally").record(started, outcome);
                samples.fetch_add(2000, Ordering::Relaxed);
                next += per_request;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        })
    };
    let predictor = {
        let (stop, predicts) = (stop.clone(), predicts.clone());
        let base = agent.url("/v2/models");
        std::thread::spawn(move || {
            let client = common::http();
            let row = [0.5, 0.4, 3000.0, 2500.0, 1000.0];
            let detector = json!({"inputs": [{"name": "input-0", "shape": [1, 5], "datatype": "FP64", "data": row}]});
            let window: Vec<f64> = (0..6).flat_map(|_| row).collect();
            let forecaster = json!({"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": window}]});
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let (model, body) = if k % 2 == 0 {
                    ("anomaly-detector", &detector)
                } else {
                    ("predictive-analytics", &forecaster)
                };
                let started = Instant::now();
                let outcome = match client
                    .post(format!("{base}/{model}/infer"))
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
                    .send()
                {
                    Ok(r) if r.status() == 200 => Ok(()),
                    Ok(r) => Err(format!("{model} answered {}", r.status())),
                    Err(e) => Err(format!("{model}: {e}")),
                };
                predicts.lock().expect("tally").record(started, outcome);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let started = Instant::now();
    let mut rss_after_warm_up = None;
    let mut peak_after = 0.0f64;
    let mut last_samples = 0;
    let mut last_report = started;
    while started.elapsed() < total {
        std::thread::sleep(report_every);
        let elapsed = last_report.elapsed().as_secs_f64();
        last_report = Instant::now();
        let (_, write_p99) = writes.lock().expect("tally").drain();
        let (predicted, predict_p99) = predicts.lock().expect("tally").drain();
        let now_samples = samples.load(Ordering::Relaxed);
        let rss = rss_mib(agent.pid());
        let body = agent.scrape();
        let retrains = sum_of(&body, "canopy_model_retrains_total{");
        let checkpoints = sum_of(&body, "canopy_checkpoint_writes_total{");
        eprintln!(
            "soak t={:>4.0}s  write {:>9.0} samples/s p99 {:>6.2} ms  predict {:>6.0}/s p99 {:>6.2} ms  RSS {:>6.1} MiB  retrains {:>3}  checkpoints {:>3}",
            started.elapsed().as_secs_f64(),
            (now_samples - last_samples) as f64 / elapsed,
            write_p99,
            predicted as f64 / elapsed,
            predict_p99,
            rss,
            retrains,
            checkpoints
        );
        last_samples = now_samples;
        if started.elapsed() >= warm_up {
            match rss_after_warm_up {
                None => rss_after_warm_up = Some(rss),
                Some(_) => peak_after = peak_after.max(rss),
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    predictor.join().expect("predictor");

    let body = agent.scrape();
    let failures: Vec<String> = [&writes, &predicts]
        .iter()
        .flat_map(|t| t.lock().expect("tally").failures.clone())
        .collect();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert_eq!(
        metric_value(&body, r#"canopy_samples_rejected_total{reason="invalid"}"#),
        None
    );
    assert!(
        sum_of(&body, "canopy_model_retrains_total{") >= 4.0,
        "both models retrained during the soak"
    );
    assert!(
        sum_of(&body, "canopy_checkpoint_writes_total{") >= 2.0,
        "checkpoints were written during the soak"
    );
    let base = rss_after_warm_up.expect("a reading after the warm-up");
    eprintln!(
        "soak: RSS after the warm-up {base:.1} MiB, highest since {peak_after:.1} MiB ({:+.1}%)",
        (peak_after / base - 1.0) * 100.0
    );
    assert!(
        peak_after <= base * 1.10,
        "RSS grew from {base:.1} MiB to {peak_after:.1} MiB after the warm-up"
    );
}
