//! The memory benchmark's requests, shared by `examples/memory_100k.rs` (100,000 series, in
//! process or over HTTP) and `tests/memory.rs` (the same at 20,000 series in CI): Prometheus-shaped
//! label sets of metrics the default features select with any labels, so every series is kept.

use canopy::ingest::proto::v1;
use prost::Message;

const NAMES: [&str; 4] = [
    "node_memory_MemAvailable_bytes",
    "node_memory_MemTotal_bytes",
    "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total",
];

/// Series per request.
pub const PER_REQUEST: usize = 2_000;

/// The request carrying series `first..first + PER_REQUEST` (at most `series`) in round `round`:
/// one sample each at `t_ms`, snappy-compressed remote-write 1.0.
pub fn request(series: usize, first: usize, round: usize, t_ms: i64) -> Vec<u8> {
    let timeseries = (first..(first + PER_REQUEST).min(series))
        .map(|i| v1::TimeSeries {
            labels: [
                ("__name__", NAMES[i % NAMES.len()].to_string()),
                ("container", format!("c{}", i % 7)),
                (
                    "instance",
                    format!("10.{}.{}.{}:9100", i / 65_536, (i / 256) % 256, i % 256),
                ),
                ("job", "kubernetes-nodes".to_string()),
                ("namespace", format!("ns-{}", i % 50)),
                ("pod", format!("pod-{}", i / 4)),
            ]
            .into_iter()
            .map(|(n, v)| v1::Label {
                name: n.into(),
                value: v,
            })
            .collect(),
            samples: vec![v1::Sample {
                value: (i + round) as f64,
                timestamp: t_ms,
            }],
            ..Default::default()
        })
        .collect();
    let body = v1::WriteRequest {
        timeseries,
        metadata: vec![],
    }
    .encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&body)
        .expect("snappy")
}
