//! Remote-write ingest cost on payloads shaped like Prometheus's (one sample per TimeSeries,
//! series repeated within a request), 500 and 2,000 samples per request:
//!
//! - `remote_write_decode`: snappy + decode + validate + prefilter, no store, on
//!   [`payload::prometheus_mix`] (10 labels a series, a third matched). Budget: at least 5 M
//!   samples/s per core. `snappy_only_*` decompresses the same bodies and nothing more: the
//!   floor the rest is measured against.
//! - `remote_write_ingest`: the same plus the append to the store, on [`payload::payload`] (the
//!   mix earlier figures were measured on), so that figures compare across versions.

use std::hint::black_box;
use std::sync::Arc;

use canopy::config::Config;
use canopy::ingest::Protocol;
use canopy::ingest::decode::Allowance;
use canopy::pipeline::Pipeline;
#[path = "payload/mod.rs"]
mod payload;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn decode(c: &mut Criterion) {
    let config = Config::default_config().expect("default config");
    let pipeline = Pipeline::new(&config).expect("pipeline");
    let mut group = c.benchmark_group("remote_write_decode");
    for samples in [500usize, 2_000] {
        let body = payload::prometheus_mix(samples, 10_000, 0, 1_700_000_000_000);
        let sifted = pipeline
            .ingestor
            .decode_and_filter(Protocol::V1, &body, &mut Allowance::unlimited())
            .expect("valid payload");
        let kept = sifted.kept_samples as f64 / samples as f64;
        assert!(
            (kept - payload::MIX_MATCHED).abs() < 0.01,
            "the mix keeps {kept}, not {}",
            payload::MIX_MATCHED
        );
        group.throughput(Throughput::Elements(samples as u64));
        group.bench_function(format!("{samples}_samples_per_request"), |b| {
            b.iter(|| {
                pipeline
                    .ingestor
                    .decode_and_filter(Protocol::V1, black_box(&body), &mut Allowance::unlimited())
                    .expect("valid payload")
            })
        });
        // The floor: snappy alone, into a buffer reused as the ingestor reuses its own.
        let mut buf = vec![0u8; snap::raw::decompress_len(&body).expect("snappy header")];
        let mut decoder = snap::raw::Decoder::new();
        group.bench_function(format!("snappy_only_{samples}_samples_per_request"), |b| {
            b.iter(|| {
                decoder
                    .decompress(black_box(&body), &mut buf)
                    .expect("valid snappy")
            })
        });
    }
    group.finish();
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
                    payload::payload(samples, 1_000, 0, t)
                },
                |body| {
                    ingestor
                        .write(Protocol::V1, &body, &mut Allowance::unlimited())
                        .expect("valid payload")
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, decode, ingest);
criterion_main!(benches);
