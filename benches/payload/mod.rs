//! Remote-write payloads shaped like Prometheus's, shared by the ingest bench and the load
//! generator: one sample per TimeSeries, series repeated within a request, label sets like
//! node-exporter's and cAdvisor's. [`payload`] is the mix the earlier figures were measured on
//! (8 labels, 46% of series matched by canopy's default features); [`prometheus_mix`] has the 10
//! labels of a typical Kubernetes target and a third of its series matched.

use canopy::ingest::proto::v1;
use prost::Message;

const METRICS: [&str; 8] = [
    "node_cpu_seconds_total",
    "node_memory_MemAvailable_bytes",
    "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total",
    "go_gc_duration_seconds",
    "process_resident_memory_bytes",
    "node_network_receive_packets_total",
    "apiserver_request_total",
];

/// A snappy-compressed 1.0 request of `samples` TimeSeries of one sample each. Sample `j` is
/// series `j % series` (labels include `conn`, so that senders on different connections write
/// disjoint series) at `t0 + j` ms, so every series' timestamps increase within and across
/// requests whose `t0` increase by at least `samples`.
#[allow(dead_code)]
pub fn payload(samples: usize, series: usize, conn: usize, t0: i64) -> Vec<u8> {
    stamped(samples, series, conn, |j| t0 + j as i64)
}

/// As [`payload`], with each pass over the series one millisecond after the last (sample `j` at
/// `t0 + j / series` ms), so that the request spans only [`passes`]`(samples, series)` ms: a live
/// sender's data moves about as fast as the wall clock, and so does a stream of these requests
/// whose `t0` increase by that much each.
#[allow(dead_code)]
pub fn paced_payload(samples: usize, series: usize, conn: usize, t0: i64) -> Vec<u8> {
    stamped(samples, series, conn, |j| t0 + (j / series.max(1)) as i64)
}

/// How many times a request of [`paced_payload`] sends each series: the milliseconds it spans.
#[allow(dead_code)]
pub fn passes(samples: usize, series: usize) -> usize {
    samples.div_ceil(series.max(1))
}

/// The requests of [`payload`] and [`paced_payload`], sample `j` stamped `t_ms(j)`.
fn stamped(samples: usize, series: usize, conn: usize, t_ms: impl Fn(usize) -> i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples);
    for j in 0..samples {
        let i = j % series.max(1);
        let labels = [
            ("__name__", METRICS[i % METRICS.len()].to_string()),
            ("conn", conn.to_string()),
            ("container", format!("c{}", i % 7)),
            ("cpu", format!("{}", i % 16)),
            ("instance", format!("10.0.{}.{}:9100", i % 4, i / 4)),
            ("job", "kubernetes-nodes".to_string()),
            (
                "mode",
                if i % 3 == 0 {
                    "idle".into()
                } else {
                    "user".to_string()
                },
            ),
            ("namespace", format!("ns-{}", i % 5)),
        ];
        out.push(one_sample(labels, t_ms(j)));
    }
    compressed(out)
}

/// (metric name, `mode` label, matched by the default config's features): three of nine matched,
/// one more (`mode="idle"`) refused by a matcher rather than by its name.
const MIX: [(&str, &str, bool); 9] = [
    ("node_cpu_seconds_total", "user", true),
    ("node_memory_MemAvailable_bytes", "", true),
    ("container_network_receive_bytes_total", "", true),
    ("node_cpu_seconds_total", "idle", false),
    ("go_gc_duration_seconds", "", false),
    ("process_resident_memory_bytes", "", false),
    ("node_network_receive_packets_total", "", false),
    ("apiserver_request_total", "", false),
    ("kube_pod_container_resource_requests", "", false),
];

/// The fraction of [`prometheus_mix`]'s series that the default features match.
#[allow(dead_code)]
pub const MIX_MATCHED: f64 = 1.0 / 3.0;

/// As [`payload`], with 10 labels a series (as a Kubernetes pod's target has after relabelling:
/// `__name__`, `container`, `cpu`, `endpoint`, `instance`, `job`, `mode`, `namespace`, `pod`,
/// `service`; `mode` is absent from all but the CPU metric) and exactly a third of the series
/// matched by the default config's features.
#[allow(dead_code)]
pub fn prometheus_mix(samples: usize, series: usize, conn: usize, t0: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples);
    for j in 0..samples {
        let i = j % series.max(1);
        let (name, mode, _) = MIX[i % MIX.len()];
        let labels = [
            ("__name__", name.to_string()),
            ("container", format!("app-{}", i % 7)),
            ("cpu", format!("{}", i % 16)),
            ("endpoint", "https-metrics".to_string()),
            ("instance", format!("10.0.{}.{}:9100", i % 4, (i / 4) % 250)),
            ("job", "kubernetes-pods".to_string()),
            ("mode", mode.to_string()),
            ("namespace", format!("team-{}", i % 5)),
            ("pod", format!("app-{}-{conn}-7d9f8b6c4-{:05}", i % 7, i)),
            ("service", format!("svc-{}", i % 11)),
        ];
        out.push(one_sample(labels, t0 + j as i64));
    }
    compressed(out)
}

/// One series of one sample at `t_ms` (its value the time in seconds); labels with an empty
/// value are left out, as senders leave them out.
fn one_sample(
    labels: impl IntoIterator<Item = (&'static str, String)>,
    t_ms: i64,
) -> v1::TimeSeries {
    v1::TimeSeries {
        labels: labels
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| v1::Label {
                name: n.into(),
                value: v,
            })
            .collect(),
        samples: vec![v1::Sample {
            value: t_ms as f64 * 0.001,
            timestamp: t_ms,
        }],
        ..Default::default()
    }
}

/// The snappy-compressed remote-write 1.0 request of `timeseries`.
fn compressed(timeseries: Vec<v1::TimeSeries>) -> Vec<u8> {
    let req = v1::WriteRequest {
        timeseries,
        metadata: vec![],
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy of a valid buffer")
}
