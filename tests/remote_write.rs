//! The remote-write receiver over real HTTP on loopback: both protocols, every status code, the
//! bad inputs, and Debian's Prometheus 2.42 as the real sender.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use canopy::ingest::proto::{v1, v2};
use common::{Agent, Peer, http, wait_for};
use prost::Message;
use reqwest::blocking::Response;

const STALE: u64 = 0x7ff0_0000_0000_0002;

/// Features that select `cpu_seconds{mode!="idle"}` and `mem_bytes`.
const CONFIG: &str = r#"
[features]
cpu = 'sum(rate(cpu_seconds{mode!="idle"}[1m]))'
mem = 'avg(mem_bytes)'
[models.detector]
kind = "isolation_forest"
features = ["cpu", "mem"]
"#;

const V1: &str = "application/x-protobuf";
const V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

fn label(n: &str, v: &str) -> v1::Label {
    v1::Label {
        name: n.into(),
        value: v.into(),
    }
}

fn ts(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> v1::TimeSeries {
    v1::TimeSeries {
        labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| v1::Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).expect("snappy")
}

fn post(
    agent: &Agent,
    content_type: Option<&str>,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> Response {
    let mut req = http().post(agent.url("/api/v1/write")).body(body);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    if let Some(enc) = encoding {
        req = req.header("Content-Encoding", enc);
    }
    req.send().expect("POST /api/v1/write")
}

fn write_v1(agent: &Agent, series: Vec<v1::TimeSeries>) -> Response {
    let req = v1::WriteRequest {
        timeseries: series,
        metadata: vec![],
    };
    post(
        agent,
        Some(V1),
        Some("snappy"),
        snappy(&req.encode_to_vec()),
    )
}

fn header(r: &Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii header").to_owned())
}

/// The label sets canopy holds for `selector`, as sorted `name=value` strings.
fn held(agent: &Agent, selector: &str) -> Vec<String> {
    let v: serde_json::Value = http()
        .get(agent.url("/api/v1/series"))
        .query(&[("match[]", selector)])
        .send()
        .expect("GET /api/v1/series")
        .json()
        .expect("json");
    let mut out: Vec<String> = v["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|s| {
            let mut pairs: Vec<String> = s
                .as_object()
                .expect("label object")
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().expect("string value")))
                .collect();
            pairs.sort();
            pairs.join(",")
        })
        .collect();
    out.sort();
    out
}

#[test]
fn v1_round_trip_keeps_only_what_features_select() {
    let agent = Agent::start(CONFIG);
    let r = write_v1(
        &agent,
        vec![
            ts(
                &[("__name__", "cpu_seconds"), ("mode", "user")],
                &[(1_000, 1.0), (2_000, 2.0)],
            ),
            ts(
                &[("__name__", "cpu_seconds"), ("mode", "idle")],
                &[(1_000, 1.0)],
            ),
            ts(&[("__name__", "go_goroutines")], &[(1_000, 7.0)]),
        ],
    );
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "X-Prometheus-Remote-Write-Samples-Written"),
        None,
        "1.0 answers carry no Written headers"
    );
    assert_eq!(
        held(&agent, "cpu_seconds"),
        ["__name__=cpu_seconds,mode=user"]
    );
    assert!(held(&agent, "go_goroutines").is_empty());
    assert_eq!(agent.metric("canopy_samples_appended_total"), Some(2.0));
    assert_eq!(
        agent.metric(r#"canopy_samples_dropped_total{reason="unmatched"}"#),
        Some(2.0)
    );
    assert_eq!(agent.metric("canopy_active_series"), Some(1.0));
}

#[test]
fn v2_round_trip_with_written_headers() {
    let agent = Agent::start(CONFIG);
    let req = v2::Request {
        symbols: ["", "__name__", "mem_bytes", "node", "a", "other"]
            .map(String::from)
            .to_vec(),
        timeseries: vec![
            v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                samples: vec![
                    v2::Sample {
                        value: 5.0,
                        timestamp: 1_000,
                        start_timestamp: 0,
                    },
                    v2::Sample {
                        value: 6.0,
                        timestamp: 2_000,
                        start_timestamp: 0,
                    },
                ],
                exemplars: vec![v2::Exemplar {
                    labels_refs: vec![],
                    value: 1.0,
                    timestamp: 1_000,
                }],
                ..Default::default()
            },
            v2::TimeSeries {
                labels_refs: vec![1, 5],
                samples: vec![v2::Sample {
                    value: 1.0,
                    timestamp: 1_000,
                    start_timestamp: 0,
                }],
                histograms: vec![v2::Histogram::default()],
                metadata: Some(v2::Metadata {
                    r#type: 2,
                    help_ref: 0,
                    unit_ref: 0,
                }),
                created_timestamp: 5,
                ..Default::default()
            },
        ],
    };
    let r = post(
        &agent,
        Some(V2),
        Some("snappy"),
        snappy(&req.encode_to_vec()),
    );
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "X-Prometheus-Remote-Write-Samples-Written").as_deref(),
        Some("3")
    );
    assert_eq!(
        header(&r, "X-Prometheus-Remote-Write-Histograms-Written").as_deref(),
        Some("1")
    );
    assert_eq!(
        header(&r, "X-Prometheus-Remote-Write-Exemplars-Written").as_deref(),
        Some("1")
    );
    assert_eq!(held(&agent, "mem_bytes"), ["__name__=mem_bytes,node=a"]);
}

#[test]
fn unsupported_media_types_and_encodings_answer_415_without_written_headers() {
    let agent = Agent::start(CONFIG);
    let body = snappy(&v1::WriteRequest::default().encode_to_vec());
    for (ct, enc) in [
        (Some("application/json"), None),
        (Some("image/png"), None),
        (Some(V2), Some("gzip")),
        (Some(V1), Some("deflate")),
    ] {
        let r = post(&agent, ct, enc, body.clone());
        assert_eq!(r.status(), 415, "{ct:?} {enc:?}");
        assert_eq!(
            header(&r, "X-Prometheus-Remote-Write-Samples-Written"),
            None
        );
        let text = r.text().expect("body");
        assert!(text.starts_with("unsupported Content-"), "{text}");
        assert_eq!(text.trim_end().lines().count(), 1, "one-line reason");
    }
    assert_eq!(
        agent.metric(r#"canopy_remote_write_rejected_total{reason="unsupported_media_type"}"#),
        Some(4.0)
    );
}

#[test]
fn corrupt_bodies_answer_400_with_a_reason() {
    let agent = Agent::start(CONFIG);
    let r = post(
        &agent,
        Some(V1),
        None,
        b"\x10definitely not snappy".to_vec(),
    );
    assert_eq!(r.status(), 400);
    assert!(r.text().expect("body").contains("snappy"));

    let r = post(
        &agent,
        Some(V2),
        None,
        snappy(&[0x2a, 0xff, 0xff, 0xff, 0x0f, 0x01]),
    );
    assert_eq!(r.status(), 400);
    for name in ["Samples", "Histograms", "Exemplars"] {
        assert_eq!(
            header(&r, &format!("X-Prometheus-Remote-Write-{name}-Written")).as_deref(),
            Some("0"),
            "a 2.0 answer after negotiation says nothing was written"
        );
    }
    assert!(r.text().expect("body").contains("protobuf"));

    // A 2.0 request whose symbols[0] is not the empty string is refused whole.
    let req = v2::Request {
        symbols: ["x", "__name__", "mem_bytes"].map(String::from).to_vec(),
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 2],
            samples: vec![v2::Sample {
                value: 1.0,
                timestamp: 1_000,
                start_timestamp: 0,
            }],
            ..Default::default()
        }],
    };
    let r = post(&agent, Some(V2), None, snappy(&req.encode_to_vec()));
    assert_eq!(r.status(), 400);
    assert_eq!(
        header(&r, "X-Prometheus-Remote-Write-Samples-Written").as_deref(),
        Some("0")
    );
    assert!(r.text().expect("body").contains("symbols[0]"));
    assert_eq!(
        agent.metric(r#"canopy_remote_write_rejected_total{reason="undecodable"}"#),
        Some(3.0)
    );
    assert!(held(&agent, "mem_bytes").is_empty());
}

#[test]
fn v2_series_with_a_bad_histogram_or_reference_are_refused_and_the_rest_accepted() {
    let agent = Agent::start(CONFIG);
    let sample = || {
        vec![v2::Sample {
            value: 1.0,
            timestamp: 1_000,
            start_timestamp: 0,
        }]
    };
    let req = v2::Request {
        symbols: ["", "__name__", "mem_bytes", "node", "a", "b", "c"]
            .map(String::from)
            .to_vec(),
        timeseries: vec![
            v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                samples: sample(),
                ..Default::default()
            },
            // count 5, buckets sum to 2
            v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 5],
                samples: sample(),
                histograms: vec![v2::Histogram {
                    count: Some(v2::histogram::Count::CountInt(5)),
                    sum: 1.0,
                    positive_spans: vec![v2::BucketSpan {
                        offset: 0,
                        length: 1,
                    }],
                    positive_deltas: vec![2],
                    ..Default::default()
                }],
                ..Default::default()
            },
            v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 6],
                samples: sample(),
                metadata: Some(v2::Metadata {
                    r#type: 2,
                    help_ref: 99,
                    unit_ref: 0,
                }),
                ..Default::default()
            },
        ],
    };
    let r = post(&agent, Some(V2), None, snappy(&req.encode_to_vec()));
    assert_eq!(r.status(), 400);
    assert_eq!(
        header(&r, "X-Prometheus-Remote-Write-Samples-Written").as_deref(),
        Some("1")
    );
    let text = r.text().expect("body");
    assert!(text.contains("2 of the request's series"), "{text}");
    assert!(text.contains("histogram"), "{text}");
    assert_eq!(held(&agent, "mem_bytes"), ["__name__=mem_bytes,node=a"]);
    assert_eq!(
        agent.metric(r#"canopy_series_rejected_total{reason="invalid_histogram"}"#),
        Some(1.0)
    );
    assert_eq!(
        agent.metric(r#"canopy_series_rejected_total{reason="bad_symbol_reference"}"#),
        Some(1.0)
    );
}

#[test]
fn oversized_bodies_answer_413_declared_or_streamed() {
    let agent = Agent::start(&format!("{CONFIG}\n[limits]\nmax_request_bytes = 1024\n"));
    let big = vec![0u8; 4096];
    let r = post(&agent, Some(V1), None, big.clone());
    assert_eq!(r.status(), 413);
    // Without Content-Length (chunked), the limit is enforced while reading.
    let r = http()
        .post(agent.url("/api/v1/write"))
        .header("Content-Type", V1)
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(big)))
        .send()
        .expect("POST chunked");
    assert_eq!(r.status(), 413);
}

#[test]
fn a_snappy_header_claiming_a_huge_length_is_refused_before_allocating() {
    let agent = Agent::start(CONFIG);
    // varint 0xFFFFFFFF (4 GiB) followed by a literal tag and a few bytes.
    let body = vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x61];
    let r = post(&agent, Some(V1), None, body);
    assert_eq!(
        r.status(),
        413,
        "refused on the claimed length, not by decompressing"
    );
    assert!(r.text().expect("body").contains("4294967295"));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap_or_default();
    if let Some(hwm) = status.lines().find(|l| l.starts_with("VmHWM:")) {
        let kib: u64 = hwm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(
            kib < 256 * 1024,
            "peak RSS {kib} KiB: the claimed 4 GiB must not be allocated"
        );
    }
}

#[test]
fn special_values_unusual_labels_metadata_repeats_and_duplicates() {
    let agent = Agent::start(CONFIG);
    let odd = "ü \"quoted\" {braces}\nnewline\\";
    let series = vec![
        ts(
            &[("__name__", "mem_bytes"), ("node", odd)],
            &[(1_000, f64::NAN)],
        ),
        ts(
            &[("__name__", "mem_bytes"), ("node", odd)],
            &[(2_000, f64::INFINITY)],
        ),
        ts(
            &[("__name__", "mem_bytes"), ("node", odd)],
            &[(3_000, f64::NEG_INFINITY)],
        ),
        ts(
            &[("__name__", "mem_bytes"), ("node", odd)],
            &[(4_000, f64::from_bits(STALE))],
        ),
    ];
    let r = write_v1(&agent, series.clone());
    assert_eq!(r.status(), 204);
    assert_eq!(
        held(&agent, "mem_bytes"),
        [format!("__name__=mem_bytes,node={odd}")]
    );
    assert_eq!(
        agent.metric("canopy_samples_appended_total"),
        Some(4.0),
        "one sample per TimeSeries, series repeated"
    );

    // the same request again: an idempotent retry
    assert_eq!(write_v1(&agent, series).status(), 204);
    assert_eq!(agent.metric("canopy_samples_appended_total"), Some(4.0));
    assert_eq!(
        agent.metric(r#"canopy_samples_dropped_total{reason="duplicate"}"#),
        Some(4.0)
    );

    // a metadata-only request
    let meta = v1::WriteRequest {
        timeseries: vec![],
        metadata: vec![v1::MetricMetadata {
            r#type: 1,
            metric_family_name: "mem_bytes".into(),
            help: "memory".into(),
            unit: "bytes".into(),
        }],
    };
    let r = post(
        &agent,
        Some(V1),
        Some("snappy"),
        snappy(&meta.encode_to_vec()),
    );
    assert_eq!(r.status(), 204);
    assert_eq!(
        agent.metric(r#"canopy_metadata_received_total{protocol="1.0"}"#),
        Some(1.0)
    );
}

#[test]
fn invalid_series_answer_400_and_the_valid_rest_is_accepted() {
    let agent = Agent::start(CONFIG);
    let req = v2::Request {
        symbols: ["", "__name__", "mem_bytes", "job"]
            .map(String::from)
            .to_vec(),
        timeseries: vec![
            v2::TimeSeries {
                labels_refs: vec![3, 2],
                samples: vec![v2::Sample {
                    value: 1.0,
                    timestamp: 1_000,
                    start_timestamp: 0,
                }],
                ..Default::default()
            },
            v2::TimeSeries {
                labels_refs: vec![1, 2],
                samples: vec![
                    v2::Sample {
                        value: 1.0,
                        timestamp: 1_000,
                        start_timestamp: 0,
                    },
                    v2::Sample {
                        value: 2.0,
                        timestamp: 2_000,
                        start_timestamp: 0,
                    },
                ],
                ..Default::default()
            },
        ],
    };
    let r = post(&agent, Some(V2), None, snappy(&req.encode_to_vec()));
    assert_eq!(r.status(), 400);
    assert_eq!(
        header(&r, "X-Prometheus-Remote-Write-Samples-Written").as_deref(),
        Some("2")
    );
    let text = r.text().expect("body");
    assert!(text.contains("__name__"), "{text}");
    assert_eq!(held(&agent, "mem_bytes"), ["__name__=mem_bytes"]);
    assert_eq!(
        agent.metric(r#"canopy_series_rejected_total{reason="missing_metric_name"}"#),
        Some(1.0)
    );
}

#[test]
fn overload_answers_503_with_retry_after() {
    let agent = Agent::start(&format!("{CONFIG}\n[limits]\nmax_inflight_requests = 1\n"));
    // Hold the only permit: headers sent, body not yet. A request whose headers the server has
    // not dispatched yet holds nothing, so another slow request joins each try until one does.
    let hold = || {
        let mut slow = TcpStream::connect(agent.addr).expect("connect");
        write!(
            slow,
            "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Type: {V1}\r\nContent-Length: 100\r\n\r\n"
        )
        .expect("send headers");
        slow.flush().expect("flush");
        slow
    };
    let mut slow = vec![hold()];
    let r = wait_for(
        Duration::from_secs(10),
        "a 503 while the permit is held",
        || {
            let r = write_v1(&agent, vec![ts(&[("__name__", "mem_bytes")], &[(1, 1.0)])]);
            if r.status() != 503 {
                slow.push(hold());
            }
            (r.status() == 503).then_some(r)
        },
    );
    assert_eq!(header(&r, "Retry-After").as_deref(), Some("5"));
    drop(slow);
    // once the permit is back, writes succeed again
    wait_for(Duration::from_secs(10), "writes to succeed again", || {
        (write_v1(&agent, vec![ts(&[("__name__", "mem_bytes")], &[(2, 1.0)])]).status() == 204)
            .then_some(())
    });
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let mut agent = Agent::start(CONFIG);
    assert_eq!(
        write_v1(&agent, vec![ts(&[("__name__", "mem_bytes")], &[(1, 1.0)])]).status(),
        204
    );
    assert!(agent.terminate(), "canopy must exit 0 on SIGTERM");
    assert!(agent.logs().contains("SIGTERM received"));
}

/// Sums every sample line of `name` in a text exposition.
fn sum_metric(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn real_prometheus_remote_writes_with_zero_failed_samples() {
    let agent = Agent::start(
        r#"
[features]
up = 'sum(up)'
requests = 'sum(rate(prometheus_http_requests_total{code="200"}[1m]))'
[models.detector]
kind = "isolation_forest"
features = ["up", "requests"]
"#,
    );
    let port = common::free_port();
    // Prometheus scrapes itself; its own port is only known once chosen, so choose it first.
    let prom = Peer::prometheus_on(
        port,
        &format!(
            "  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
        Some(&agent.url("/api/v1/write")),
    );
    // Within 30 s canopy holds exactly the series Prometheus holds for the features' selectors.
    for selector in ["up", r#"prometheus_http_requests_total{code="200"}"#] {
        wait_for(
            Duration::from_secs(30),
            &format!("canopy to hold what Prometheus holds for {selector}"),
            || {
                let theirs = prom_series(&prom, selector);
                (!theirs.is_empty() && held(&agent, selector) == theirs).then_some(())
            },
        );
    }
    assert!(
        held(&agent, "go_goroutines").is_empty(),
        "unselected series are dropped"
    );
    // Let a few more batches flow, then read Prometheus's own counters.
    std::thread::sleep(Duration::from_secs(3));
    let metrics = http()
        .get(prom.url("/metrics"))
        .send()
        .expect("prometheus /metrics")
        .text()
        .expect("text");
    let sent = sum_metric(&metrics, "prometheus_remote_storage_samples_total");
    let failed = sum_metric(&metrics, "prometheus_remote_storage_samples_failed_total");
    let dropped = sum_metric(&metrics, "prometheus_remote_storage_samples_dropped_total");
    assert!(sent > 0.0, "Prometheus sent no samples");
    assert_eq!(failed, 0.0, "Prometheus counted failed samples");
    assert_eq!(dropped, 0.0, "Prometheus counted dropped samples");
    assert!(
        agent
            .metric(r#"canopy_remote_write_requests_total{protocol="1.0",code="204"}"#)
            .is_some_and(|v| v > 0.0)
    );
}

fn prom_series(prom: &Peer, selector: &str) -> Vec<String> {
    let v: serde_json::Value = http()
        .get(prom.url("/api/v1/series"))
        .query(&[("match[]", selector)])
        .send()
        .expect("prometheus /api/v1/series")
        .json()
        .expect("json");
    let mut out: Vec<String> = v["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    let mut pairs: Vec<String> = s
                        .as_object()
                        .expect("labels")
                        .iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect();
                    pairs.sort();
                    pairs.join(",")
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
