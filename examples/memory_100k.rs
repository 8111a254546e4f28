//! Memory at 100k active matched series: 100,000 series that the default features select, each
//! with 15 minutes of samples at a 30 s scrape interval (the default retention), sent as
//! snappy-compressed remote-write 1.0 requests of 2,000 series (one sample each) per round.
//!
//! - `memory_100k [series] [samples_per_series]` ingests in this process through
//!   `Ingestor::write` (no HTTP) and prints the process's resident memory and the store's counts
//!   as JSON: the store's own cost, without a server around it.
//! - `memory_100k --url URL [series] [samples_per_series]` posts the same requests to a running
//!   receiver (canopy's `/api/v1/write`, or any other remote-write receiver) and prints what was
//!   sent; `benches/compare/memory_100k_http.sh` reads the receiver's peak RSS from `/proc`.

use canopy::config::Config;
use canopy::ingest::Protocol;
use canopy::ingest::decode::Allowance;
use canopy::pipeline::Pipeline;

#[path = "../benches/payload/memory.rs"]
mod memory;

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Round `round`'s requests: every series once.
fn requests(series: usize, round: usize, t_ms: i64) -> impl Iterator<Item = Vec<u8>> {
    (0..series)
        .step_by(memory::PER_REQUEST)
        .map(move |first| memory::request(series, first, round, t_ms))
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .iter()
        .position(|a| a == "--url")
        .map(|i| args.drain(i..(i + 2).min(args.len())).nth(1));
    let url = match url {
        Some(Some(url)) => Some(url),
        Some(None) => {
            eprintln!("usage: memory_100k [--url URL] [series] [samples_per_series]");
            std::process::exit(2);
        }
        None => None,
    };
    let nums: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let series = nums.first().copied().unwrap_or(100_000);
    let per_series = nums.get(1).copied().unwrap_or(30);
    // Stamped in the last minutes by the wall clock: samples from the future are dropped.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let t0 = now_ms - per_series as i64 * 30_000;
    match url {
        Some(url) => send(&url, series, per_series, t0),
        None => in_process(series, per_series, t0),
    }
}

fn send(url: &str, series: usize, per_series: usize, t0: i64) {
    let client = canopy::http::client_builder(canopy::http::mozilla_roots())
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("http client");
    let (mut ok, mut failed) = (0usize, 0usize);
    for round in 0..per_series {
        for body in requests(series, round, t0 + round as i64 * 30_000) {
            let r = client
                .post(url)
                .header("Content-Type", "application/x-protobuf")
                .header("Content-Encoding", "snappy")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(body)
                .send();
            match r {
                Ok(r) if r.status().is_success() => ok += 1,
                Ok(r) => {
                    failed += 1;
                    eprintln!("{}: {}", r.status(), r.text().unwrap_or_default());
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("{e}");
                }
            }
        }
    }
    println!(
        "{{\"series\": {series}, \"samples_sent\": {}, \"requests_ok\": {ok}, \"requests_failed\": {failed}}}",
        series * per_series
    );
}

fn in_process(series: usize, per_series: usize, t0: i64) {
    let config = Config::default_config().expect("default config");
    let pipeline = Pipeline::new(&config).expect("pipeline");
    let before = rss_kib("VmRSS:");
    for round in 0..per_series {
        for body in requests(series, round, t0 + round as i64 * 30_000) {
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
