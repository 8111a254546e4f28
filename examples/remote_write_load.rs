//! A remote-write load generator for side-by-side receiver benchmarks
//! (`benches/compare/ingest_receivers.sh`): sends pre-built Prometheus-shaped requests over
//! `--connections` keep-alive connections, each request once, and prints samples/s accepted and
//! request latency as one JSON line.
//!
//! `remote_write_load URL [connections] [requests_per_connection] [samples_per_request] [series_per_connection]`

#[path = "../benches/payload/mod.rs"]
mod payload;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn arg(args: &[String], i: usize, default: usize) -> usize {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

/// CPU seconds this process has used so far, all its threads, from `/proc/self/stat` (in
/// USER_HZ ticks, 100 a second on Linux); 0 where that file does not exist.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11) // utime and stime are fields 14 and 15 of the line
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(url) = args.get(1).cloned() else {
        eprintln!(
            "usage: remote_write_load URL [connections] [requests_per_connection] [samples_per_request] [series_per_connection]"
        );
        std::process::exit(2);
    };
    let (connections, requests, samples, series) = (
        arg(&args, 2, 8),
        arg(&args, 3, 200),
        arg(&args, 4, 500),
        arg(&args, 5, 2_000),
    );
    // Recent timestamps (a minute ago onwards), so TSDB receivers accept them as in-order, and
    // each request's a few milliseconds after the last: the data's time moves about as fast as
    // the wall clock, as a live sender's does, and a receiver that evaluates every step in event
    // time (canopy) does that work as often as it would live.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let t0 = now_ms - 60 * 1000;
    let span = payload::passes(samples, series) as i64;
    let bodies: Vec<Vec<Vec<u8>>> = (0..connections)
        .map(|c| {
            (0..requests)
                .map(|k| payload::paced_payload(samples, series, c, t0 + k as i64 * span))
                .collect()
        })
        .collect();
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let results: Vec<(usize, usize, Vec<Duration>)> = std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|conn_bodies| {
                let url = url.clone();
                s.spawn(move || {
                    let client = canopy::http::client_builder(canopy::http::mozilla_roots())
                        .timeout(Duration::from_secs(30))
                        .build()
                        .expect("http client");
                    let (mut ok, mut failed, mut latencies) =
                        (0, 0, Vec::with_capacity(conn_bodies.len()));
                    for body in conn_bodies {
                        let t = Instant::now();
                        let r = client
                            .post(&url)
                            .header("Content-Type", "application/x-protobuf")
                            .header("Content-Encoding", "snappy")
                            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                            .body(body.clone())
                            .send();
                        latencies.push(t.elapsed());
                        match r {
                            Ok(r) if r.status().is_success() => ok += 1,
                            _ => failed += 1,
                        }
                    }
                    (ok, failed, latencies)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("sender thread"))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let sender_cpu = cpu_seconds() - cpu_before;
    let ok: usize = results.iter().map(|r| r.0).sum();
    let failed: usize = results.iter().map(|r| r.1).sum();
    let mut latencies: Vec<Duration> = results.into_iter().flat_map(|r| r.2).collect();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{{\"samples_per_second\": {:.0}, \"requests_ok\": {ok}, \"requests_failed\": {failed}, \"seconds\": {elapsed:.3}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"sender_cpu_seconds\": {sender_cpu:.2}}}",
        (ok * samples) as f64 / elapsed,
        pct(0.5),
        pct(0.99)
    );
}
