//! Cost of one evaluation step of the six default features over 10,000 matched series, and of a
//! latency feature (`histogram_quantile` over `rate` of classic buckets) over 1,000 bucket series.
//!
//! The store holds 15 minutes of 15s-spaced samples for 100 nodes: node CPU (8 CPUs x 4 modes,
//! the idle mode selected by nothing), memory, filesystems, and pod-level restart and network
//! counters, 10,000 series matched in all; and a request-duration histogram of 100 handlers x 10
//! buckets. Budget: 5 ms per step on 2 cores for the default features.

use std::hint::black_box;

use canopy::promql::{Evaluator, Plan};
use canopy::series::{Sample, SeriesStore, StoreLimits};
use criterion::{Criterion, criterion_group, criterion_main};

const FEATURES: [&str; 6] = [
    r#"avg(rate(node_cpu_seconds_total{mode!="idle"}[5m]))"#,
    "avg(1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)",
    "avg(1 - node_filesystem_avail_bytes / node_filesystem_size_bytes)",
    "sum(rate(kube_pod_container_status_restarts_total[5m])) or vector(0)",
    "sum(rate(container_network_receive_bytes_total[5m]))",
    "sum(rate(container_network_transmit_bytes_total[5m]))",
];

const NODES: usize = 100;
const PODS: usize = 2200;
const STEP_MS: i64 = 15_000;
const SAMPLES: i64 = 61; // 0..=15m
const T: i64 = (SAMPLES - 1) * STEP_MS;

fn append(store: &SeriesStore, pairs: &[(&str, &str)], mut value: impl FnMut(i64) -> f64) {
    let mut pairs = pairs.to_vec();
    pairs.sort_unstable();
    let samples: Vec<Sample> = (0..SAMPLES)
        .map(|i| Sample {
            t: i * STEP_MS,
            v: value(i),
        })
        .collect();
    store.append(&pairs, &samples);
}

fn filled_store() -> (SeriesStore, usize) {
    let store = SeriesStore::new(StoreLimits {
        max_series: 100_000,
        retention_ms: 20 * 60_000,
    });
    let mut matched = 0;
    for n in 0..NODES {
        let node = format!("node-{n:03}");
        for cpu in 0..8 {
            let cpu = cpu.to_string();
            for (k, mode) in ["idle", "user", "system", "iowait"].into_iter().enumerate() {
                let pairs = [
                    ("__name__", "node_cpu_seconds_total"),
                    ("cpu", cpu.as_str()),
                    ("instance", node.as_str()),
                    ("mode", mode),
                ];
                append(&store, &pairs, |i| {
                    (i as f64) * 15.0 * (0.1 + k as f64 * 0.2)
                });
                matched += usize::from(mode != "idle");
            }
        }
        for (name, v) in [
            ("node_memory_MemAvailable_bytes", 3.0e9),
            ("node_memory_MemTotal_bytes", 8.0e9),
        ] {
            append(
                &store,
                &[("__name__", name), ("instance", node.as_str())],
                |i| v + (i % 7) as f64 * 1e6,
            );
            matched += 1;
        }
        for mount in ["/", "/var", "/data"] {
            for (name, v) in [
                ("node_filesystem_avail_bytes", 4.0e10),
                ("node_filesystem_size_bytes", 1.0e11),
            ] {
                let pairs = [
                    ("__name__", name),
                    ("instance", node.as_str()),
                    ("mountpoint", mount),
                ];
                append(&store, &pairs, |i| v - i as f64 * 1e5);
                matched += 1;
            }
        }
    }
    for p in 0..PODS {
        let pod = format!("pod-{p:05}");
        let node = format!("node-{:03}", p % NODES);
        let base = [("instance", node.as_str()), ("pod", pod.as_str())];
        if p < 2400 {
            let mut pairs = base.to_vec();
            pairs.push(("__name__", "kube_pod_container_status_restarts_total"));
            append(&store, &pairs, |i| (i / 20) as f64);
            matched += 1;
        }
        for name in [
            "container_network_receive_bytes_total",
            "container_network_transmit_bytes_total",
        ] {
            let mut pairs = base.to_vec();
            pairs.push(("__name__", name));
            // a counter that resets once in the window
            append(&store, &pairs, |i| ((i + p as i64) % 50) as f64 * 1.5e5);
            matched += 1;
        }
    }
    // pods 2200..2400 only report restarts
    for p in PODS..2400 {
        let pod = format!("pod-{p:05}");
        let node = format!("node-{:03}", p % NODES);
        let pairs = [
            ("__name__", "kube_pod_container_status_restarts_total"),
            ("instance", node.as_str()),
            ("pod", pod.as_str()),
        ];
        append(&store, &pairs, |i| (i / 20) as f64);
        matched += 1;
    }
    (store, matched)
}

const HISTOGRAM_FEATURES: [&str; 2] = [
    "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.9, rate(http_request_duration_seconds_bucket[5m]))",
];

/// 100 handlers x 10 buckets (`+Inf` included) of a request-duration histogram.
fn histogram_store() -> SeriesStore {
    let store = SeriesStore::new(StoreLimits {
        max_series: 100_000,
        retention_ms: 20 * 60_000,
    });
    let bounds = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
    ];
    for h in 0..100 {
        let handler = format!("/api/v{h:03}");
        for (b, le) in bounds.iter().enumerate() {
            let pairs = [
                ("__name__", "http_request_duration_seconds_bucket"),
                ("handler", handler.as_str()),
                ("instance", "node-000"),
                ("le", le),
            ];
            // cumulative: each bucket holds more than the one below it
            append(&store, &pairs, |i| (i * (b as i64 + 1) * (h + 1)) as f64);
        }
    }
    store
}

fn bench_histogram_quantile(c: &mut Criterion) {
    let store = histogram_store();
    let plans: Vec<Plan> = HISTOGRAM_FEATURES
        .iter()
        .map(|e| Plan::parse(e).expect("histogram features plan"))
        .collect();
    let mut evaluator = Evaluator::new();
    for r in evaluator.eval_all(&store, &plans, T) {
        r.expect("histogram features evaluate");
    }
    c.bench_function("promql_step_histogram_quantile_1k_bucket_series", |b| {
        b.iter(|| black_box(evaluator.eval_all(&store, &plans, black_box(T))))
    });
}

fn bench_step(c: &mut Criterion) {
    let (store, matched) = filled_store();
    assert_eq!(
        matched, 10_000,
        "the bench is sized for 10,000 matched series"
    );
    let plans: Vec<Plan> = FEATURES
        .iter()
        .map(|e| Plan::parse(e).expect("default features plan"))
        .collect();
    let mut evaluator = Evaluator::new();
    for r in evaluator.eval_all(&store, &plans, T) {
        r.expect("default features evaluate");
    }
    c.bench_function("promql_step_default_features_10k_series", |b| {
        b.iter(|| black_box(evaluator.eval_all(&store, &plans, black_box(T))))
    });
    c.bench_function("promql_first_step_default_features_10k_series", |b| {
        b.iter(|| black_box(Evaluator::new().eval_all(&store, &plans, black_box(T))))
    });
}

criterion_group!(benches, bench_step, bench_histogram_quantile);
criterion_main!(benches);
