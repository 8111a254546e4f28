//! Remote-write ingest cost: snappy + decode + validate + prefilter + append, on payloads shaped
//! like Prometheus's (one sample per TimeSeries, series repeated within a request), 500 and
//! 2,000 samples per request. Budget: at least 1M samples/s per core.

use std::sync::Arc;

use canopy::agent::Pipeline;
use canopy::config::Config;
use canopy::ingest::Protocol;
use canopy::ingest::decode::Allowance;
#[path = "payload/mod.rs"]
mod payload;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

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

criterion_group!(benches, ingest);
criterion_main!(benches);
