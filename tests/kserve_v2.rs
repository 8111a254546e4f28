//! The V2 / Open Inference Protocol on the real binary over HTTP: health, readiness following the
//! models, server and model metadata, `infer` in JSON and with the binary tensor extension,
//! every numeric datatype, nested and flat data, requested outputs, and every client mistake.

mod common;

use common::models::{CONFIG, train, trained_agent};
use common::{Agent, http};
use serde_json::{Value, json};

const ROW: [f64; 5] = [0.5, 0.6, 0.01, 100.0, 80.0];
const OUTLIER: [f64; 5] = [50.0, -40.0, 9.0, 1e6, -1e6];

fn get(agent: &Agent, path: &str) -> (u16, Value) {
    let r = http().get(agent.url(path)).send().expect("GET");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn infer(agent: &Agent, model: &str, body: &Value) -> (u16, Value) {
    let r = http()
        .post(agent.url(&format!("/v2/models/{model}/infer")))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .expect("POST infer");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("")
}

fn detector_request(datatype: &str, shape: Value, data: Value) -> Value {
    json!({"inputs": [{"name": "input-0", "shape": shape, "datatype": datatype, "data": data}]})
}

/// 24 steps of the 5 forecaster features, time-major.
fn window() -> Vec<f64> {
    (0..24)
        .flat_map(|k| {
            let p = k as f64 / 30.0 * std::f64::consts::TAU;
            [0.5 + 0.2 * p.sin(), 0.6 + 0.1 * p.cos(), 0.4, 100.0, 80.0]
        })
        .collect()
}

#[test]
fn health_is_live_at_once_and_ready_once_the_models_are_trained() {
    let agent = Agent::start(CONFIG);
    assert_eq!(get(&agent, "/v2/health/live"), (200, json!({"live": true})));
    assert_eq!(
        get(&agent, "/v2/health/ready"),
        (503, json!({"ready": false}))
    );
    assert_eq!(
        get(&agent, "/v2/models/anomaly-detector/ready"),
        (503, json!({"name": "anomaly-detector", "ready": false}))
    );
    let (status, body) = infer(
        &agent,
        "anomaly-detector",
        &detector_request("FP64", json!([1, 5]), json!(ROW)),
    );
    assert_eq!(status, 503, "{body}");
    assert!(error_of(&body).contains("not ready"));
    // Metadata is known before training: it comes from the configuration.
    assert_eq!(get(&agent, "/v2/models/anomaly-detector").0, 200);

    train(&agent);
    assert_eq!(
        get(&agent, "/v2/health/ready"),
        (200, json!({"ready": true}))
    );
    for model in ["anomaly-detector", "predictive-analytics"] {
        assert_eq!(
            get(&agent, &format!("/v2/models/{model}/ready")),
            (200, json!({"name": model, "ready": true}))
        );
    }
}

#[test]
fn metadata_and_json_inference_follow_the_open_inference_protocol() {
    let agent = trained_agent();
    let (status, body) = get(&agent, "/v2");
    assert_eq!(status, 200);
    assert_eq!(body["name"], "canopy");
    assert!(
        body["extensions"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("binary_tensor_data")))
    );

    let (status, body) = get(&agent, "/v2/models/anomaly-detector");
    assert_eq!(status, 200);
    assert_eq!(body["name"], "anomaly-detector");
    assert_eq!(
        body["inputs"],
        json!([{"name": "input-0", "datatype": "FP64", "shape": [-1, 5]}])
    );
    let outputs: Vec<&str> = body["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert_eq!(outputs, ["output-0", "score", "decision_function"]);
    // the features a row carries, in order
    assert_eq!(
        body["parameters"]["features"],
        "cpu,memory,restarts,net_rx,net_tx"
    );
    let (_, body) = get(&agent, "/v2/models/predictive-analytics");
    assert_eq!(body["inputs"][0]["shape"], json!([-1, 120]));
    assert_eq!(
        body["outputs"],
        json!([{"name": "output-0", "datatype": "FP64", "shape": [-1, 12]}])
    );
    let p = &body["parameters"];
    assert_eq!(p["features"], "cpu,memory,disk,net_rx,net_tx");
    assert_eq!(p["targets"], "cpu");
    assert_eq!(
        (p["lookback"].as_u64(), p["horizon"].as_u64()),
        (Some(24), Some(12))
    );
    assert!(
        p["input_layout"]
            .as_str()
            .is_some_and(|l| l.starts_with("time-major")),
        "{p}"
    );
    // which forest answers: trained on the stream, at an event time of the test's samples
    assert_eq!(p["training_source"], "live", "{p}");
    assert!(
        p["trained_at"]
            .as_str()
            .is_some_and(|t| t.starts_with("2023-11-1") && t.ends_with('Z')),
        "{p}"
    );
    // every value is a string or a number, as the protocol's parameters are
    assert!(
        p.as_object()
            .expect("parameters")
            .values()
            .all(|v| v.is_string() || v.is_number()),
        "{p}"
    );

    // Nested data, the default output, the id echoed.
    let mut request = detector_request("FP64", json!([2, 5]), json!([ROW, OUTLIER]));
    request["id"] = json!("req-42");
    let (status, body) = infer(&agent, "anomaly-detector", &request);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "req-42");
    assert_eq!(body["model_name"], "anomaly-detector");
    let out = &body["outputs"];
    assert_eq!(out.as_array().map(Vec::len), Some(1));
    assert_eq!(out[0]["name"], "output-0");
    assert_eq!(out[0]["datatype"], "INT64");
    assert_eq!(out[0]["shape"], json!([2]));
    assert_eq!(out[0]["data"][1], -1, "the outlier is an anomaly");
    let normal = out[0]["data"][0].clone();

    // Every numeric datatype, flat data; the answer is the same as for FP64, for a normal row
    // and for an outlier.
    for data in [json!([1, 1, 0, 100, 80]), json!([100, 90, 50, 1, 20_000])] {
        let (status, fp64) = infer(
            &agent,
            "anomaly-detector",
            &detector_request("FP64", json!([1, 5]), data.clone()),
        );
        assert_eq!(status, 200, "FP64: {fp64}");
        assert_eq!(fp64["outputs"][0]["shape"], json!([1]));
        for datatype in [
            "FP32", "FP16", "INT64", "INT32", "INT16", "UINT64", "UINT32",
        ] {
            let (status, body) = infer(
                &agent,
                "anomaly-detector",
                &detector_request(datatype, json!([1, 5]), data.clone()),
            );
            assert_eq!(status, 200, "{datatype}: {body}");
            assert_eq!(body["outputs"], fp64["outputs"], "{datatype} {data}");
        }
    }
    let (status, body) = infer(
        &agent,
        "anomaly-detector",
        &detector_request(
            "BOOL",
            json!([1, 5]),
            json!([true, false, true, false, true]),
        ),
    );
    assert_eq!(status, 200, "BOOL: {body}");
    let (_, flat) = infer(
        &agent,
        "anomaly-detector",
        &detector_request("FP64", json!([1, 5]), json!(ROW)),
    );
    assert_eq!(
        flat["outputs"][0]["data"][0], normal,
        "flat and nested data agree"
    );

    // Requested outputs: score in 0..1, decision_function of the same sign as the label.
    let mut request = detector_request("FP64", json!([2, 5]), json!([ROW, OUTLIER]));
    request["outputs"] =
        json!([{"name": "score"}, {"name": "decision_function"}, {"name": "output-0"}]);
    let (status, body) = infer(&agent, "anomaly-detector", &request);
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert_eq!(names, ["score", "decision_function", "output-0"]);
    for i in 0..2 {
        let s = body["outputs"][0]["data"][i].as_f64().expect("score");
        let d = body["outputs"][1]["data"][i].as_f64().expect("decision");
        let label = body["outputs"][2]["data"][i].as_i64().expect("label");
        assert!((0.0..=1.0).contains(&s), "score {s}");
        assert_eq!(label, if d < 0.0 { -1 } else { 1 });
        assert_eq!(body["outputs"][0]["datatype"], "FP64");
    }
    assert!(
        body["outputs"][0]["data"][1].as_f64() > body["outputs"][0]["data"][0].as_f64(),
        "the outlier scores higher"
    );

    // The forecaster: FP64 [n, 12], as a [n, 24, 5] tensor or a flat [n, 120] one.
    let (status, body) = infer(
        &agent,
        "predictive-analytics",
        &json!({"inputs": [{"name": "x", "shape": [1, 24, 5], "datatype": "FP32", "data": window()}]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["datatype"], "FP64");
    assert_eq!(body["outputs"][0]["shape"], json!([1, 12]));
    assert_eq!(
        body["outputs"][0]["data"].as_array().map(Vec::len),
        Some(12)
    );
}

/// The binary tensor extension: a JSON header of `header_len` bytes, then the raw tensor.
fn post_binary(
    agent: &Agent,
    model: &str,
    header: &Value,
    raw: &[u8],
) -> reqwest::blocking::Response {
    let json = header.to_string();
    let mut body = json.clone().into_bytes();
    body.extend_from_slice(raw);
    http()
        .post(agent.url(&format!("/v2/models/{model}/infer")))
        .header("Inference-Header-Content-Length", json.len().to_string())
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .expect("POST binary infer")
}

#[test]
fn binary_tensors_in_and_out() {
    let agent = trained_agent();
    let raw: Vec<u8> = ROW
        .iter()
        .chain(&OUTLIER)
        .flat_map(|&v| (v as f32).to_le_bytes())
        .collect();
    let header = json!({
        "id": "bin-1",
        "inputs": [{"name": "input-0", "shape": [2, 5], "datatype": "FP32",
                    "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "output-0", "parameters": {"binary_data": true}},
                    {"name": "score", "parameters": {"binary_data": false}}],
    });
    let r = post_binary(&agent, "anomaly-detector", &header, &raw);
    assert_eq!(r.status(), 200);
    let json_len: usize = r
        .headers()
        .get("inference-header-content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Inference-Header-Content-Length on a binary answer");
    let body = r.bytes().expect("body");
    let head: Value = serde_json::from_slice(&body[..json_len]).expect("JSON header");
    assert_eq!(head["id"], "bin-1");
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 16);
    assert!(head["outputs"][0].get("data").is_none());
    assert_eq!(head["outputs"][1]["data"].as_array().map(Vec::len), Some(2));
    let labels: Vec<i64> = body[json_len..]
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    assert_eq!(labels.len(), 2);
    assert_eq!(labels[1], -1);
    assert!(labels[0] == 1 || labels[0] == -1);

    // binary_data_output with no outputs named: output-0 in binary; an INT64 input.
    let raw: Vec<u8> = ROW.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect();
    let header = json!({
        "parameters": {"binary_data_output": true},
        "inputs": [{"name": "input-0", "shape": [1, 5], "datatype": "INT64",
                    "parameters": {"binary_data_size": raw.len()}}],
    });
    let r = post_binary(&agent, "anomaly-detector", &header, &raw);
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("inference-header-content-length"));

    // The forecaster in binary: 12 FP64 values come back.
    let raw: Vec<u8> = window().iter().flat_map(|v| v.to_le_bytes()).collect();
    let header = json!({
        "parameters": {"binary_data_output": true},
        "inputs": [{"name": "input-0", "shape": [1, 120], "datatype": "FP64",
                    "parameters": {"binary_data_size": raw.len()}}],
    });
    let r = post_binary(&agent, "predictive-analytics", &header, &raw);
    assert_eq!(r.status(), 200);
    let json_len: usize = r
        .headers()
        .get("inference-header-content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("header length");
    let body = r.bytes().expect("body");
    assert_eq!(body.len() - json_len, 12 * 8);

    // Binary mistakes: a size that is not the shape's, and NaN in a tensor.
    let raw: Vec<u8> = ROW.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect();
    let header = json!({"inputs": [{"name": "input-0", "shape": [1, 5], "datatype": "FP64",
                                    "parameters": {"binary_data_size": raw.len()}}]});
    let r = post_binary(&agent, "anomaly-detector", &header, &raw);
    assert_eq!(r.status(), 400);
    let e: Value = r.json().expect("error body");
    assert!(
        error_of(&e).contains("needs 40 bytes, binary_data_size is 20"),
        "{e}"
    );
    let raw: Vec<u8> = [f64::NAN, 0.6, 0.0, 100.0, 80.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let header = json!({"inputs": [{"name": "input-0", "shape": [1, 5], "datatype": "FP64",
                                    "parameters": {"binary_data_size": raw.len()}}]});
    let r = post_binary(&agent, "anomaly-detector", &header, &raw);
    assert_eq!(r.status(), 400);
    let e: Value = r.json().expect("error body");
    assert!(error_of(&e).contains("finite"), "{e}");
}

#[test]
fn client_mistakes_are_400_or_404_with_a_message_naming_the_problem() {
    let agent = trained_agent();
    let input = |shape: Value, datatype: &str, data: Value| json!({"inputs": [{"name": "input-0", "shape": shape, "datatype": datatype, "data": data}]});
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "anomaly-detector",
            input(json!([2, 4]), "FP64", json!([1, 2, 3, 4, 5, 6])),
            400,
            "shape [2,4] does not match 6 values",
        ),
        (
            "anomaly-detector",
            input(json!([1, 3]), "FP64", json!([1, 2, 3])),
            400,
            "expected 5 features, got 3",
        ),
        (
            "anomaly-detector",
            input(json!([5]), "FP64", json!(ROW)),
            400,
            "expected [rows, 5]",
        ),
        (
            "anomaly-detector",
            input(json!([1, 5]), "BYTES", json!(ROW)),
            400,
            "numeric",
        ),
        (
            "anomaly-detector",
            input(json!([1, 5]), "FP64", json!([1, "x", 3, 4, 5])),
            400,
            "numbers or booleans",
        ),
        (
            "anomaly-detector",
            input(json!([0, 5]), "FP64", json!([])),
            400,
            "no rows to infer",
        ),
        (
            "anomaly-detector",
            input(json!([-1, 5]), "FP64", json!(ROW)),
            400,
            "non-negative",
        ),
        (
            "anomaly-detector",
            json!({"inputs": [{"name": "input-0", "shape": [1, 5], "datatype": "FP64"}]}),
            400,
            "no data",
        ),
        (
            "anomaly-detector",
            json!({"id": "x"}),
            400,
            "missing field `inputs`",
        ),
        (
            "anomaly-detector",
            json!({"inputs": []}),
            400,
            "expected 1 input tensor, got 0",
        ),
        (
            "anomaly-detector",
            json!({"inputs": [{"name": "input-0", "shape": [1, 5], "datatype": "FP64", "data": ROW}], "outputs": [{"name": "probabilities"}]}),
            400,
            "unknown output \"probabilities\"",
        ),
        (
            "predictive-analytics",
            json!({"inputs": [{"name": "input-0", "shape": [1, 120], "datatype": "FP64", "data": window()}], "outputs": [{"name": "score"}]}),
            400,
            "unknown output \"score\"",
        ),
        (
            "predictive-analytics",
            input(json!([1, 5]), "FP64", json!(ROW)),
            400,
            "expected 120 values per row",
        ),
        (
            "no-such-model",
            input(json!([1, 5]), "FP64", json!(ROW)),
            404,
            "no model named",
        ),
    ];
    for (model, request, status, message) in cases {
        let (got, body) = infer(&agent, model, &request);
        assert_eq!(got, status, "{request}: {body}");
        assert!(
            error_of(&body).contains(message),
            "{request}: want {message:?}, got {body}"
        );
    }
    let r = http()
        .post(agent.url("/v2/models/anomaly-detector/infer"))
        .body("{\"inputs\": [")
        .send()
        .expect("POST");
    assert_eq!(r.status(), 400);
    let e: Value = r.json().expect("error body");
    assert!(error_of(&e).starts_with("bad JSON"), "{e}");
    let r = http()
        .post(agent.url("/v2/models/anomaly-detector/infer"))
        .header("Inference-Header-Content-Length", "9999")
        .body("{}")
        .send()
        .expect("POST");
    assert_eq!(r.status(), 400);
    for path in [
        "/v2/models/no-such-model",
        "/v2/models/no-such-model/ready",
        "/v2/nothing",
    ] {
        let (status, body) = get(&agent, path);
        assert_eq!(status, 404, "{path}");
        assert!(!error_of(&body).is_empty(), "{path}: {body}");
    }
}
