//! Remote-write ingest cost: snappy + decode + validate + prefilter + append, on payloads shaped
//! like Prometheus's (one sample per TimeSeries, series repeated within a request), 500 and
//! 2,000 samples per request. Budget: at least 1M samples/s per core.

use std::sync::Arc;

use canopy::agent::Pipeline;
use canopy::config::Config;
use canopy::ingest::Protocol;
use canopy::ingest::proto::v1;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;

/// A node-exporter / cAdvisor-like request: `samples` TimeSeries of one sample each, drawn
/// round-robin from a pool of series of which half match the default features.
fn payload(samples: usize, t0: i64) -> Vec<u8> {
    let metrics = [
        ("node_cpu_seconds_total", true),
        ("node_memory_MemAvailable_bytes", true),
        ("container_network_receive_bytes_total", true),
        ("container_network_transmit_bytes_total", true),
        ("go_gc_duration_seconds", false),
        ("process_resident_memory_bytes", false),
        ("node_network_receive_packets_total", false),
        ("apiserver_request_total", false),
    ];
    let mut series = Vec::with_capacity(samples);
    for i in 0..samples {
        let (name, _) = metrics[i % metrics.len()];
        let labels = [
            ("__name__", name.to_string()),
            ("container", format!("c{}", i % 7)),
            ("cpu", format!("{}", i % 16)),
            ("instance", format!("10.0.{}.{}:9100", i % 4, i % 50)),
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
            ("pod", format!("pod-{}", i % 40)),
        ];
        series.push(v1::TimeSeries {
            labels: labels
                .into_iter()
                .map(|(n, v)| v1::Label {
                    name: n.into(),
                    value: v,
                })
                .collect(),
            samples: vec![v1::Sample {
                value: i as f64 * 1.5,
                timestamp: t0 + (i as i64 % 4) * 15_000,
            }],
            ..Default::default()
        });
    }
    let req = v1::WriteRequest {
        timeseries: series,
        metadata: vec![],
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

fn ingest(c: &mut Criterion) {
    let config = Config::default_config().expect("default config");
    let mut group = c.benchmark_group("remote_write_ingest");
    for samples in [500usize, 2_000] {
        let pipeline = Pipeline::new(&config).expect("pipeline");
        let ingestor = Arc::clone(&pipeline.ingestor);
        // Each request is built fresh (untimed) and later than the last, as a live stream's are,
        // so the store appends and trims as it does in steady state.
        let mut t = 1_700_000_000_000i64;
        group.throughput(Throughput::Elements(samples as u64));
        group.bench_function(format!("{samples}_samples_per_request"), |b| {
            b.iter_batched(
                || {
                    t += 60_000;
                    payload(samples, t)
                },
                |body| ingestor.write(Protocol::V1, &body).expect("valid payload"),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
