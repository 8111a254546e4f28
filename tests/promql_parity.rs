//! Features equal what Prometheus computes: Debian's Prometheus 2.42 scrapes Debian's
//! node-exporter and itself every second (so real classic histograms such as
//! `prometheus_http_request_duration_seconds_bucket` exist) and remote-writes to canopy; the
//! node-exporter is restarted mid-run (its process counters reset, its series go stale while it
//! is down). After 100 s, every feature's values at every compared step equal Prometheus's own
//! `query_range` answers for the same expression, and the expressions Prometheus fails on fail
//! in canopy too, counted.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Agent, Peer, http, wait_for};

/// Covers every supported function, aggregation, operator family and modifier on
/// node-exporter's and Prometheus's real counters, gauges and histograms. Names are TOML keys;
/// expressions are sent to both canopy and Prometheus unchanged, but for `@AT`, replaced by a
/// time shortly after the start.
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
    // histograms: classic _bucket series of Prometheus itself
    (
        "hq_metrics_handler",
        r#"histogram_quantile(0.9, rate(prometheus_http_request_duration_seconds_bucket{handler="/metrics"}[30s]))"#,
    ),
    (
        "hq_sum_by_le",
        "histogram_quantile(0.5, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket[1m])))",
    ),
    (
        "hq_raw",
        "histogram_quantile(0.99, prometheus_http_response_size_bytes_bucket)",
    ),
    // comparisons, with and without bool
    ("cmp_bool", "node_load1 > bool 0.5"),
    ("cmp_filter", "rate(node_cpu_seconds_total[30s]) > 0.01"),
    (
        "cmp_scalar_left",
        "0.5 < node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
    ),
    (
        "cmp_vv_bool",
        "node_filesystem_avail_bytes <= bool node_filesystem_size_bytes",
    ),
    ("cmp_eq_ne", "(node_load1 == node_load1) != 7"),
    ("scalar_bool", "time() > bool 1"),
    // set operators
    (
        "and_on",
        "node_filesystem_avail_bytes and on(mountpoint) node_filesystem_readonly == 0",
    ),
    (
        "unless",
        r#"node_network_receive_bytes_total unless node_network_receive_bytes_total{device="lo"}"#,
    ),
    // many-to-one and one-to-many, copying labels
    (
        "group_left",
        "node_load1 * on(instance) group_left(nodename, release) node_uname_info",
    ),
    (
        "group_right",
        "node_uname_info * on(instance) group_right(machine) rate(node_cpu_seconds_total[30s])",
    ),
    (
        "group_left_info",
        "rate(node_network_receive_bytes_total[30s]) * on(device) group_left(operstate) node_network_info",
    ),
    // aggregations with parameters
    ("topk", "topk(3, rate(node_cpu_seconds_total[30s]))"),
    (
        "bottomk_by",
        "bottomk by (mode) (1, node_cpu_seconds_total)",
    ),
    (
        "topk_ties",
        r#"topk(2, node_cpu_seconds_total{mode="irq"})"#,
    ),
    (
        "quantile_by",
        "quantile by (mode) (0.75, rate(node_cpu_seconds_total[30s]))",
    ),
    (
        "stdvar_by",
        "stdvar by (mode) (rate(node_cpu_seconds_total[30s]))",
    ),
    ("group_by", "group by (mode) (node_cpu_seconds_total)"),
    (
        "count_values",
        r#"count_values("c", count by (mode) (node_cpu_seconds_total))"#,
    ),
    (
        "count_values_without",
        r#"count_values without (instance) ("v", node_filesystem_readonly)"#,
    ),
    // math
    (
        "round_ceil_floor",
        "round(node_load1, 0.05) + ceil(node_load5) - floor(node_load15 * 10) + round(node_load1)",
    ),
    (
        "exp_log",
        "sqrt(node_memory_MemFree_bytes) * exp(-node_load1) + ln(node_memory_MemTotal_bytes) + log2(node_memory_MemTotal_bytes) - log10(node_memory_MemFree_bytes)",
    ),
    ("sgn_deriv", "sgn(deriv(node_memory_MemFree_bytes[30s]))"),
    (
        "trig",
        "sin(node_load1) + cos(node_load1) + tan(node_load1) + asin(node_load1 / 100) + acos(node_load1 / 100) + atan(node_load1)",
    ),
    (
        "hyperbolic",
        "sinh(node_load1) + cosh(node_load1) + tanh(node_load1) + asinh(node_load1) + acosh(node_load1 + 1) + atanh(node_load1 / 100)",
    ),
    ("deg_rad_pi", "deg(node_load1) + rad(node_load5) * pi()"),
    ("clamp", "clamp(node_load1, 0.1, 0.3)"),
    (
        "mod_pow_atan2",
        "node_load1 % 0.3 + node_load5 ^ 2 + (node_load15 atan2 node_load1)",
    ),
    // labels
    (
        "label_replace",
        r#"label_replace(node_load1, "host", "$1", "instance", "(.*):.*")"#,
    ),
    (
        "label_join",
        r#"label_join(node_filesystem_size_bytes, "dm", "@", "device", "mountpoint")"#,
    ),
    ("sort_desc", "sort_desc(node_load1) + sort(node_load5)"),
    // range functions
    ("changes", "changes(node_load1[1m])"),
    (
        "resets",
        r#"resets(process_cpu_seconds_total{job="node"}[1m]) + resets(go_memstats_alloc_bytes_total{job="node"}[1m])"#,
    ),
    (
        "predict_linear",
        "predict_linear(node_memory_MemFree_bytes[1m], 600)",
    ),
    (
        "holt_winters",
        "holt_winters(node_memory_MemFree_bytes[1m], 0.5, 0.3)",
    ),
    (
        "quantile_over_time",
        "quantile_over_time(0.9, node_load1[1m])",
    ),
    ("present_over_time", "present_over_time(up[30s])"),
    ("absent", r#"absent(nonexistent_metric{job="node"})"#),
    (
        "absent_over_time",
        "absent_over_time(nonexistent_metric[30s])",
    ),
    ("absent_present", r#"absent(up{job="node"}) or vector(2)"#),
    // time
    ("time_minus_timestamp", "time() - timestamp(node_load1)"),
    ("timestamp_expr", "timestamp(node_load1 * 2)"),
    ("hour_minute", "hour() * 60 + minute()"),
    (
        "dates",
        "day_of_week(node_time_seconds) + day_of_month(node_time_seconds) + day_of_year(node_time_seconds) + days_in_month(node_time_seconds) + month(node_time_seconds) + year(node_time_seconds)",
    ),
    // subqueries and @
    (
        "subquery_max_rate",
        "max_over_time(rate(node_context_switches_total[10s])[1m:4s])",
    ),
    (
        "subquery_offset",
        "avg_over_time(node_load1[30s:5s] offset 10s)",
    ),
    (
        "subquery_rate",
        r#"rate(node_cpu_seconds_total{mode="user"}[20s:2s])"#,
    ),
    (
        "subquery_nested_sum",
        "min_over_time(sum(rate(prometheus_http_requests_total[20s]))[40s:6s])",
    ),
    ("at", "node_load1 @ AT + up @ AT"),
    ("at_range", "rate(node_context_switches_total[20s] @ AT)"),
];

/// Expressions Prometheus refuses at every step (many-to-many matching): canopy must fail the
/// same steps, count them, and serve no value.
const FAILING: &[(&str, &str)] = &[(
    "many_to_many",
    "node_cpu_seconds_total * on(cpu) group_left node_cpu_seconds_total",
)];

const STEP_SECONDS: i64 = 2;

/// `expr` with `@ AT` pinned to `at` (Unix seconds).
fn expression(expr: &str, at: i64) -> String {
    expr.replace("@ AT", &format!("@ {at}"))
}

fn config(at: i64) -> String {
    let mut c = String::from(
        "[limits]\nretention = \"10m\"\n[evaluation]\nstep = \"2s\"\nlateness = \"5s\"\nhistory = \"10m\"\n[features]\n",
    );
    for (name, expr) in FEATURES.iter().chain(FAILING) {
        c.push_str(&format!("{name} = '{}'\n", expression(expr, at)));
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
    let node_port = node.port;
    // `@ AT` pins a time 15 s after the start, when both targets have been scraped.
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
        + 15;
    let agent = Agent::start(&config(at));
    let prom_port = common::free_port();
    let prom = Peer::prometheus_on(
        prom_port,
        &format!(
            "  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{node_port}']\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{prom_port}']\n"
        ),
        Some(&agent.url("/api/v1/write")),
    );

    // Restart node-exporter mid-run: its series go stale while it is down and its process
    // counters start again from zero.
    std::thread::sleep(Duration::from_secs(45));
    drop(node);
    std::thread::sleep(Duration::from_secs(4));
    let _node = Peer::node_exporter_on(node_port);

    // Let at least 100 s of samples flow in all, then give canopy's watermark time to pass the end.
    std::thread::sleep(Duration::from_secs(55));
    let history = |name: &str| -> Matrix {
        let body: serde_json::Value = http()
            .get(agent.url(&format!("/api/v1/features/{name}")))
            .send()
            .expect("GET feature")
            .json()
            .expect("json");
        parse_matrix(&body)
    };
    // The steps canopy evaluated (all features share them; `hour_minute` has a value at every
    // one), read before any other feature: canopy keeps evaluating while the histories are read,
    // and a step evaluated after this read is then in no comparison rather than missing from the
    // features read before it.
    let evaluated = history("hour_minute");
    let canopy: BTreeMap<&str, Matrix> = FEATURES
        .iter()
        .chain(FAILING)
        .map(|(name, _)| (*name, history(name)))
        .collect();

    // Skip the first few steps, when Prometheus's remote-write was still starting.
    let steps: Vec<i64> = evaluated
        .values()
        .flat_map(|p| p.keys().copied())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        steps.len() >= 40,
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
    let query_range = |expr: &str| -> serde_json::Value {
        http()
            .get(prom.url("/api/v1/query_range"))
            .query(&[
                ("query", expr.to_owned()),
                ("start", (start / 1000).to_string()),
                ("end", (end / 1000).to_string()),
                ("step", STEP_SECONDS.to_string()),
            ])
            .send()
            .expect("query_range")
            .json()
            .expect("json")
    };
    for (name, expr) in FEATURES {
        let expr = expression(expr, at);
        let body = query_range(&expr);
        assert_eq!(
            body["status"], "success",
            "{name}: Prometheus refused `{expr}`: {body}"
        );
        let theirs = parse_matrix(&body);
        let ours = &canopy[name];
        let mut with_values = 0;
        // An `@` feature's value is fixed once the samples at its time have arrived.
        let from = if expr.contains('@') {
            (at + 10) * 1000
        } else {
            i64::MIN
        };
        for &t in compared.iter().filter(|&&t| t >= from) {
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
        if with_values < 20 {
            failures.push(format!(
                "{name}: Prometheus had values at only {with_values} of the compared steps"
            ));
        }
    }
    for (name, expr) in FAILING {
        let body = query_range(expr);
        assert_eq!(
            body["status"], "error",
            "{name}: Prometheus answered `{expr}`: {body}"
        );
        if !canopy[name].is_empty() {
            failures.push(format!(
                "{name} `{expr}`: Prometheus fails, canopy has values {:?}",
                canopy[name]
            ));
        }
        let errors = agent
            .metric(&format!(
                "canopy_feature_evaluation_errors_total{{feature=\"{name}\"}}"
            ))
            .unwrap_or(0.0);
        // While node-exporter is down there is nothing to match, and nothing fails.
        if errors < 20.0 {
            failures.push(format!(
                "{name} `{expr}`: {errors} failed steps counted, at least 20 expected"
            ));
        }
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
