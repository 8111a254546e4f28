//! Features equal what Prometheus computes: Debian's Prometheus 2.42 scrapes Debian's
//! node-exporter every second and remote-writes to canopy; after 90 s, every feature's values at
//! every compared step equal Prometheus's own `query_range` answers for the same expression.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Agent, Peer, http, wait_for};

/// Covers every supported function and operator family on node-exporter's real counters and
/// gauges. Names are TOML keys; expressions are sent to both canopy and Prometheus unchanged.
const FEATURES: &[(&str, &str)] = &[
    (
        "cpu",
        r#"avg(rate(node_cpu_seconds_total{mode!="idle"}[1m]))"#,
    ),
    (
        "cpu_by_mode",
        "sum by (mode) (irate(node_cpu_seconds_total[30s]))",
    ),
    (
        "cpu_without_cpu",
        "sum without (cpu) (rate(node_cpu_seconds_total[1m]))",
    ),
    (
        "rx_increase",
        "sum(increase(node_network_receive_bytes_total[1m]))",
    ),
    (
        "tx_max_by_device",
        "max by (device) (rate(node_network_transmit_bytes_total[45s]))",
    ),
    ("mem_delta", "delta(node_memory_MemAvailable_bytes[1m])"),
    ("mem_idelta", "idelta(node_memory_Active_bytes[30s])"),
    ("mem_deriv_abs", "abs(deriv(node_memory_MemFree_bytes[1m]))"),
    ("load_avg", "avg_over_time(node_load1[1m])"),
    (
        "mem_min",
        "min_over_time(node_memory_MemAvailable_bytes[1m])",
    ),
    ("procs_max", "max_over_time(node_procs_running[30s])"),
    ("procs_sum", "sum_over_time(node_procs_running[30s])"),
    ("load_count", "count_over_time(node_load1[1m])"),
    (
        "mem_stddev",
        "stddev_over_time(node_memory_MemFree_bytes[1m])",
    ),
    ("load_stdvar", "stdvar_over_time(node_load5[1m])"),
    ("time_last", "last_over_time(node_time_seconds[30s])"),
    (
        "memory",
        "avg(1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)",
    ),
    (
        "disk",
        "avg(1 - node_filesystem_avail_bytes / node_filesystem_size_bytes)",
    ),
    (
        "mem_used_on",
        "node_memory_MemTotal_bytes - on(instance, job) node_memory_MemAvailable_bytes",
    ),
    (
        "load_ratio_ignoring",
        "node_load1 / ignoring(job) (node_load5 + 1)",
    ),
    (
        "restarts",
        "sum(rate(kube_pod_container_status_restarts_total[5m])) or vector(0)",
    ),
    (
        "fs_or",
        "node_filesystem_avail_bytes{fstype=~\"tmpfs|ext4|xfs|overlay\"} or node_filesystem_size_bytes",
    ),
    ("load_offset", "node_load1 offset 30s"),
    ("load_scalar", "scalar(node_load1) * 2 - 1"),
    ("load_clamped", "clamp_min(clamp_max(node_load1, 0.5), 0.1)"),
    ("load_neg", "-(node_load1 + node_load5) / 2"),
    ("cpu_count", "count(node_cpu_seconds_total)"),
    ("cpu_min_by", "min by (cpu) (node_cpu_seconds_total)"),
    ("cpu_stddev", "stddev(rate(node_cpu_seconds_total[1m]))"),
    ("ctx_rate_k", "rate(node_context_switches_total[1m]) / 1000"),
    ("div_zero", "node_load1 / 0"),
];

const STEP_SECONDS: i64 = 2;

fn config() -> String {
    let mut c = String::from(
        "[limits]\nretention = \"10m\"\n[evaluation]\nstep = \"2s\"\nlateness = \"5s\"\nhistory = \"10m\"\n[features]\n",
    );
    for (name, expr) in FEATURES {
        c.push_str(&format!("{name} = '{expr}'\n"));
    }
    let names: Vec<String> = FEATURES.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    c.push_str(&format!(
        "[models.detector]\nkind = \"isolation_forest\"\nstep = \"2s\"\nfeatures = [{}]\n",
        names.join(", ")
    ));
    c
}

/// A matrix body (`query_range` or canopy's feature history) as labels → (t → value).
type Matrix = BTreeMap<String, BTreeMap<i64, f64>>;

fn parse_matrix(body: &serde_json::Value) -> Matrix {
    let mut out = Matrix::new();
    for series in body["data"]["result"].as_array().expect("result array") {
        let mut labels: Vec<String> = series["metric"]
            .as_object()
            .expect("metric object")
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        labels.sort();
        let points = out.entry(format!("{{{}}}", labels.join(","))).or_default();
        for p in series["values"].as_array().expect("values array") {
            let t = (p[0].as_f64().expect("time") * 1000.0).round() as i64;
            let v = match p[1].as_str().expect("value string") {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                s => s.parse().expect("float"),
            };
            points.insert(t, v);
        }
    }
    out
}

fn same(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    let diff = (a - b).abs();
    diff <= 1e-12 || diff <= 1e-9 * a.abs().max(b.abs())
}

#[test]
fn every_feature_equals_prometheus_query_range() {
    let node = Peer::node_exporter();
    let agent = Agent::start(&config());
    let prom = Peer::prometheus(
        &format!(
            "  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            node.port
        ),
        Some(&agent.url("/api/v1/write")),
    );

    // Let at least 90 s of samples flow, then give canopy's watermark time to pass the end.
    std::thread::sleep(Duration::from_secs(95));
    let canopy: BTreeMap<&str, Matrix> = FEATURES
        .iter()
        .map(|(name, _)| {
            let body: serde_json::Value = http()
                .get(agent.url(&format!("/api/v1/features/{name}")))
                .send()
                .expect("GET feature")
                .json()
                .expect("json");
            (*name, parse_matrix(&body))
        })
        .collect();

    // The steps canopy evaluated (all features share them); skip the first few, when Prometheus's
    // remote-write was still starting.
    let steps: Vec<i64> = canopy["load_count"]
        .values()
        .flat_map(|p| p.keys().copied())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        steps.len() >= 30,
        "canopy evaluated only {} steps",
        steps.len()
    );
    let compared: Vec<i64> = steps[5..].to_vec();
    let (start, end) = (compared[0], *compared.last().expect("steps"));
    assert_eq!(
        start % (STEP_SECONDS * 1000),
        0,
        "steps are multiples of the step"
    );

    let mut failures = Vec::new();
    let mut checked = 0usize;
    for (name, expr) in FEATURES {
        let body: serde_json::Value = http()
            .get(prom.url("/api/v1/query_range"))
            .query(&[
                ("query", expr.to_string()),
                ("start", (start / 1000).to_string()),
                ("end", (end / 1000).to_string()),
                ("step", STEP_SECONDS.to_string()),
            ])
            .send()
            .expect("query_range")
            .json()
            .expect("json");
        assert_eq!(
            body["status"], "success",
            "{name}: Prometheus refused `{expr}`: {body}"
        );
        let theirs = parse_matrix(&body);
        let ours = &canopy[name];
        let mut with_values = 0;
        for &t in &compared {
            let at = |m: &Matrix| -> BTreeMap<String, f64> {
                m.iter()
                    .filter_map(|(l, p)| p.get(&t).map(|v| (l.clone(), *v)))
                    .collect()
            };
            let (want, got) = (at(&theirs), at(ours));
            if !want.is_empty() {
                with_values += 1;
            }
            for (labels, w) in &want {
                match got.get(labels) {
                    Some(g) if same(*g, *w) => checked += 1,
                    Some(g) => failures.push(format!(
                        "{name} `{expr}` at {t}: {labels} Prometheus {w:?}, canopy {g:?}"
                    )),
                    None => failures.push(format!(
                        "{name} `{expr}` at {t}: {labels} Prometheus {w:?}, canopy has no value"
                    )),
                }
            }
            for (labels, g) in &got {
                if !want.contains_key(labels) {
                    failures.push(format!(
                        "{name} `{expr}` at {t}: {labels} canopy {g:?}, Prometheus has no value"
                    ));
                }
            }
        }
        assert!(
            with_values >= 20,
            "{name}: Prometheus had values at only {with_values} of the compared steps"
        );
    }
    assert!(
        failures.is_empty(),
        "{} mismatches (of {} compared values), first 30:\n{}",
        failures.len(),
        checked + failures.len(),
        failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    wait_for(Duration::from_secs(1), "lag metric", || {
        (agent
            .metric("canopy_evaluation_lag_seconds")
            .is_some_and(|v| v > 0.0))
        .then_some(())
    });
}
