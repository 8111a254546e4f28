//! Hardening on the real binary: a sample from the future cannot stall event time, a gone
//! entity's series leave `/metrics`, and concurrent maximal remote-write bodies stay within the
//! in-flight byte budget.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use canopy::ingest::proto::v1;
use common::{Agent, http, wait_for, write_request_v1};

/// A series' labels, `(name, value)`.
type Series<'a> = &'a [(&'a str, &'a str)];

/// Remote-writes one sample per `(labels, t, v)` and returns the status.
fn write(agent: &Agent, samples: &[(Series<'_>, i64, f64)]) -> u16 {
    let timeseries = samples
        .iter()
        .map(|&(labels, timestamp, value)| v1::TimeSeries {
            labels: labels
                .iter()
                .map(|&(name, value)| v1::Label {
                    name: name.into(),
                    value: value.into(),
                })
                .collect(),
            samples: vec![v1::Sample { value, timestamp }],
            ..Default::default()
        })
        .collect();
    let body = write_request_v1(timeseries);
    http()
        .post(agent.url("/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .expect("remote write")
        .status()
        .as_u16()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn steps(agent: &Agent) -> f64 {
    agent.metric("canopy_evaluation_steps_total").unwrap_or(0.0)
}

#[test]
fn a_sample_from_the_future_is_dropped_and_live_samples_still_evaluate() {
    let agent = Agent::start(
        "[evaluation]\nstep = \"10s\"\nlateness = \"0s\"\n\
         [features]\nlast = 'last_over_time(x[1m])'\n\
         [models.m]\nkind = \"isolation_forest\"\nstep = \"10s\"\nfeatures = [\"last\"]\n",
    );
    let x: Series<'_> = &[("__name__", "x")];
    let start = now_ms() - 120_000;
    // A host whose clock is a day ahead: answered 204 (a retry cannot fix a clock), dropped and
    // counted, and it does not move event time.
    assert_eq!(write(&agent, &[(x, start + 86_400_000, 1.0)]), 204);
    assert_eq!(
        agent.metric(r#"canopy_samples_dropped_total{reason="too_far_ahead"}"#),
        Some(1.0)
    );
    // Live samples after it are appended and evaluated, each step (the first one is the
    // latest due when the agent first looks, so it is awaited alone).
    assert_eq!(write(&agent, &[(x, start, 0.0)]), 204);
    wait_for(Duration::from_secs(10), "the first live step", || {
        (steps(&agent) >= 1.0).then_some(())
    });
    for k in 1..=6 {
        assert_eq!(write(&agent, &[(x, start + k * 10_000, k as f64)]), 204);
    }
    assert_eq!(agent.metric("canopy_samples_appended_total"), Some(7.0));
    wait_for(Duration::from_secs(10), "every live step evaluated", || {
        (steps(&agent) >= 7.0).then_some(())
    });
    assert_eq!(
        agent.metric(r#"canopy_samples_dropped_total{reason="too_old"}"#),
        None,
        "nothing was too old"
    );
    // Five minutes ahead is within `limits.max_future` (10m): kept.
    let other: Series<'_> = &[("__name__", "x"), ("host", "fast")];
    assert_eq!(write(&agent, &[(other, now_ms() + 300_000, 1.0)]), 204);
    assert_eq!(agent.metric("canopy_samples_appended_total"), Some(8.0));
}

#[test]
fn a_gone_entity_leaves_metrics_while_the_others_stay() {
    let agent = Agent::start(
        "[evaluation]\nstep = \"10s\"\nlateness = \"0s\"\nstale_steps = 3\n\
         [features]\nlast = 'last_over_time(x[15s])'\n\
         [models.m]\nkind = \"isolation_forest\"\nstep = \"10s\"\nfeatures = [\"last\"]\n",
    );
    let (a, b): (Series<'_>, Series<'_>) = (
        &[("__name__", "x"), ("node", "a")],
        &[("__name__", "x"), ("node", "b")],
    );
    let t0 = 1_000_000_000i64;
    // Both nodes for 8 steps: the detector's warm-up forest (8 vectors) scores both.
    for k in 0..8 {
        let t = t0 + k * 10_000;
        assert_eq!(
            write(&agent, &[(a, t, k as f64), (b, t, 2.0 * k as f64)]),
            204
        );
        wait_for(Duration::from_secs(10), "the step", || {
            (steps(&agent) >= (k + 1) as f64).then_some(())
        });
    }
    let series = |node: &str| {
        [
            format!(r#"canopy_feature_value{{feature="last",node="{node}"}}"#),
            format!(r#"canopy_anomaly{{model="m",node="{node}"}}"#),
            format!(r#"canopy_anomaly_score{{model="m",node="{node}"}}"#),
            format!(r#"canopy_anomaly_likelihood{{model="m",node="{node}"}}"#),
            format!(r#"canopy_anomalies_total{{model="m",node="{node}"}}"#),
        ]
    };
    for s in series("a").iter().chain(&series("b")) {
        assert!(agent.metric(s).is_some(), "{s} exported while both send");
    }
    // Node b goes away; node a carries on. b's window empties after 15 s, and its series leave
    // 3 steps after its last result.
    for k in 8..16 {
        assert_eq!(write(&agent, &[(a, t0 + k * 10_000, k as f64)]), 204);
        wait_for(Duration::from_secs(10), "the step", || {
            (steps(&agent) >= (k + 1) as f64).then_some(())
        });
    }
    let body = agent.scrape();
    for s in series("b") {
        assert!(!body.contains(&s), "{s} still exported:\n{body}");
    }
    for s in series("a") {
        assert!(agent.metric(&s).is_some(), "{s} gone with b");
    }
}

/// The process's peak resident set (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib * 1024
}

/// A valid remote-write 1.0 body of about `bytes` after snappy, which barely compresses: series
/// with long random label values (which the features do not select, so the store stays empty).
fn incompressible_body(bytes: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random_value = |len: usize| -> String {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                        [(state % 62) as usize],
                )
            })
            .collect()
    };
    let per_series = 2_000;
    let timeseries = (0..bytes / per_series)
        .map(|k| v1::TimeSeries {
            labels: vec![
                v1::Label {
                    name: "__name__".into(),
                    value: "padding".into(),
                },
                v1::Label {
                    name: "v".into(),
                    value: random_value(per_series - 40),
                },
            ],
            samples: vec![v1::Sample {
                value: k as f64,
                timestamp: 1_000_000_000,
            }],
            ..Default::default()
        })
        .collect();
    write_request_v1(timeseries)
}

/// `senders` threads post `body` at once, each retrying on 503 as Prometheus does until it is
/// accepted (204); each returns how many tries it took and how many were refused.
fn post_concurrently_until_accepted(
    url: &str,
    body: &bytes::Bytes,
    senders: usize,
) -> Vec<(u32, u32)> {
    std::thread::scope(|s| {
        let senders: Vec<_> = (0..senders)
            .map(|_| {
                let (body, url) = (body.clone(), url.to_owned());
                s.spawn(move || {
                    let client = canopy::http::client_builder(canopy::http::mozilla_roots())
                        .timeout(Duration::from_secs(120))
                        .build()
                        .expect("client");
                    let (mut refused, mut tries) = (0, 0);
                    loop {
                        tries += 1;
                        assert!(tries < 500, "never accepted");
                        let sent = client
                            .post(&url)
                            .header("Content-Type", "application/x-protobuf")
                            .body(body.clone())
                            .send();
                        // A 503 is answered before the body is read, and the connection closed:
                        // a sender still writing the body may see the close instead of the
                        // answer, and retries as it would after a 503.
                        let Ok(r) = sent else {
                            refused += 1;
                            std::thread::sleep(Duration::from_millis(200));
                            continue;
                        };
                        match r.status().as_u16() {
                            204 => return (tries, refused),
                            503 => {
                                assert!(r.headers().contains_key("retry-after"));
                                refused += 1;
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            other => panic!("answered {other}: {}", r.text().unwrap_or_default()),
                        }
                    }
                })
            })
            .collect();
        senders
            .into_iter()
            .map(|h| h.join().expect("sender"))
            .collect()
    })
}

/// A valid remote-write 1.0 body with one series of `samples` empty samples (value 0 at time 0,
/// 2 bytes each on the wire, 16 held once decoded): the densest way to make decoding hold more
/// memory than the body, which a byte budget counting only the body would not see.
fn empty_samples_body(samples: usize) -> Vec<u8> {
    write_request_v1(vec![v1::TimeSeries {
        labels: vec![v1::Label {
            name: "__name__".into(),
            value: "padding".into(),
        }],
        samples: vec![v1::Sample::default(); samples],
        ..Default::default()
    }])
}

#[test]
fn decoding_that_outgrows_its_body_is_charged_to_the_byte_budget() {
    // The shipped limits: 128 MiB in flight. 3 M empty samples are 6 MiB decoded and 48 MiB
    // (64 MiB of vector capacity) once decoded: one fits, two do not.
    let agent = Agent::start("");
    let baseline = peak_rss(agent.pid());
    let url = agent.url("/api/v1/write");
    let body = bytes::Bytes::from(empty_samples_body(3_000_000));
    let outcomes = post_concurrently_until_accepted(&url, &body, 8);
    let refused: u32 = outcomes.iter().map(|o| o.1).sum();
    assert!(
        refused > 0,
        "8 such bodies cannot be decoded at once within 128 MiB"
    );
    let received = agent
        .metric(r#"canopy_samples_received_total{protocol="1.0"}"#)
        .expect("samples received");
    assert_eq!(received, 8.0 * 3_000_000.0, "{outcomes:?}");
    let peak = peak_rss(agent.pid());
    assert!(
        peak < 256 << 20,
        "peak RSS {} MiB (baseline {} MiB)",
        peak >> 20,
        baseline >> 20
    );
    // A body that alone decodes to more than the whole budget can never be taken: 413, which a
    // sender drops rather than retrying forever, and nothing of it is kept.
    let r = http()
        .post(&url)
        .header("Content-Type", "application/x-protobuf")
        .body(empty_samples_body(9_000_000))
        .send()
        .expect("post");
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("max_inflight_bytes"), "{text}");
    assert_eq!(
        agent.metric(r#"canopy_samples_received_total{protocol="1.0"}"#),
        Some(received)
    );
    assert_eq!(
        agent.metric(r#"canopy_remote_write_rejected_total{reason="too_large"}"#),
        Some(1.0)
    );
    eprintln!(
        "peak RSS {} MiB, baseline {} MiB, {refused} answers 503",
        peak >> 20,
        baseline >> 20
    );
}

#[test]
fn concurrent_maximal_bodies_stay_within_the_in_flight_byte_budget_and_all_land() {
    // The shipped limits: 32 MiB bodies, 128 MiB in flight. 16 senders each post a 27 MiB body
    // at once and retry on 503 as Prometheus does.
    let agent = Agent::start("");
    let size = 27 << 20;
    let body = bytes::Bytes::from(incompressible_body(size));
    assert!(body.len() > 26 << 20, "{} bytes after snappy", body.len());
    let baseline = peak_rss(agent.pid());
    let url = agent.url("/api/v1/write");
    let outcomes = post_concurrently_until_accepted(&url, &body, 16);
    let peak = peak_rss(agent.pid());
    let refused: u32 = outcomes.iter().map(|o| o.1).sum();
    assert!(
        refused > 0,
        "16 bodies of 27 MiB cannot all fit in 128 MiB at once"
    );
    // Every body was accepted in the end: nothing lost.
    let received = agent
        .metric(r#"canopy_samples_received_total{protocol="1.0"}"#)
        .expect("samples received");
    assert_eq!(received, 16.0 * (size / 2_000) as f64, "{outcomes:?}");
    // The DaemonSet's memory limit is 256 MiB: the agent's baseline, one 27 MiB body and its
    // decoding (the budget holds only one at a time) stay far below it.
    assert!(
        peak < 256 << 20,
        "peak RSS {} MiB (baseline {} MiB)",
        peak >> 20,
        baseline >> 20
    );
    eprintln!(
        "peak RSS {} MiB, baseline {} MiB, {refused} answers 503",
        peak >> 20,
        baseline >> 20
    );
}
