//! Memory at 100k active matched series: ingests, through the real remote-write path, 100,000
//! series that the default features select, each with 15 minutes of samples at a 30 s scrape
//! interval (the default retention), then prints the process's resident memory as JSON.
//!
//! `memory_100k [series] [samples_per_series]`

use canopy::agent::Pipeline;
use canopy::config::Config;
use canopy::ingest::Protocol;
use canopy::ingest::decode::Allowance;
use canopy::ingest::proto::v1;
use prost::Message;

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let series = args.first().copied().unwrap_or(100_000);
    let per_series = args.get(1).copied().unwrap_or(30);
    let config = Config::default_config().expect("default config");
    let pipeline = Pipeline::new(&config).expect("pipeline");
    let before = rss_kib("VmRSS:");
    // Metrics the default features select with any labels: every series is kept.
    let names = [
        "node_memory_MemAvailable_bytes",
        "node_memory_MemTotal_bytes",
        "container_network_receive_bytes_total",
        "container_network_transmit_bytes_total",
    ];
    // Stamped in the last minutes by the wall clock: samples from the future are dropped.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let t0 = now_ms - per_series as i64 * 30_000;
    for round in 0..per_series {
        for chunk in (0..series).collect::<Vec<_>>().chunks(2_000) {
            let timeseries = chunk
                .iter()
                .map(|&i| v1::TimeSeries {
                    labels: [
                        ("__name__", names[i % names.len()].to_string()),
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
                        timestamp: t0 + round as i64 * 30_000,
                    }],
                    ..Default::default()
                })
                .collect();
            let body = v1::WriteRequest {
                timeseries,
                metadata: vec![],
            }
            .encode_to_vec();
            let body = snap::raw::Encoder::new()
                .compress_vec(&body)
                .expect("snappy");
            pipeline
                .ingestor
                .write(Protocol::V1, &body, &mut Allowance::unlimited())
                .expect("valid request");
        }
    }
    let store = &pipeline.store;
    println!(
        "{{\"active_series\": {}, \"samples_held\": {}, \"rss_mib\": {:.1}, \"rss_before_ingest_mib\": {:.1}, \"peak_rss_mib\": {:.1}}}",
        store.active_series(),
        store.sample_count(),
        rss_kib("VmRSS:") as f64 / 1024.0,
        before as f64 / 1024.0,
        rss_kib("VmHWM:") as f64 / 1024.0
    );
}
