//! KServe V1 on the real binary over HTTP: every endpoint, every client mistake and its status,
//! readiness following the models, and the latency histograms KServe's model server exports.

mod common;

use common::models::{CONFIG, MAX_BODY_BYTES, train, trained_agent};
use common::{Agent, http, metric_value};
use serde_json::{Value, json};

const ROW: &str = "[0.5, 0.6, 0.01, 100, 80]";

fn get(agent: &Agent, path: &str) -> (u16, Value) {
    let r = http().get(agent.url(path)).send().expect("GET");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn post(agent: &Agent, path: &str, content_type: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = http().post(agent.url(path)).body(body.to_owned());
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let r = req.send().expect("POST");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn predict(agent: &Agent, model: &str, body: &str) -> (u16, Value) {
    post(
        agent,
        &format!("/v1/models/{model}:predict"),
        Some("application/json"),
        body,
    )
}

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("")
}

/// A 120-value forecaster row: 24 steps of the 5 features, time-major.
fn window() -> String {
    let values: Vec<String> = (0..24)
        .flat_map(|k| {
            let p = k as f64 / 30.0 * std::f64::consts::TAU;
            [0.5 + 0.2 * p.sin(), 0.6 + 0.1 * p.cos(), 0.4, 100.0, 80.0].map(|v| v.to_string())
        })
        .collect();
    format!("[{}]", values.join(","))
}

#[test]
fn readiness_is_503_until_the_models_are_trained_then_200() {
    let agent = Agent::start(CONFIG);
    assert_eq!(get(&agent, "/"), (200, json!({"status": "alive"})));
    let (status, body) = get(&agent, "/v1/models/anomaly-detector");
    assert_eq!(status, 503);
    assert_eq!(body["ready"], false);
    assert_eq!(body["name"], "anomaly-detector");
    assert!(error_of(&body).contains("not ready"), "{body}");
    let (status, body) = predict(
        &agent,
        "anomaly-detector",
        &format!(r#"{{"instances": [{ROW}]}}"#),
    );
    assert_eq!(status, 503, "{body}");
    assert!(error_of(&body).contains("anomaly-detector is not ready"));
    let (status, _) = predict(
        &agent,
        "predictive-analytics",
        &format!(r#"{{"instances": [{}]}}"#, window()),
    );
    assert_eq!(status, 503);

    train(&agent);
    assert_eq!(
        get(&agent, "/v1/models/anomaly-detector"),
        (200, json!({"name": "anomaly-detector", "ready": true}))
    );
    assert_eq!(
        get(&agent, "/v1/models/predictive-analytics"),
        (200, json!({"name": "predictive-analytics", "ready": true}))
    );
}

#[test]
fn predict_and_explain_answer_as_the_sklearn_server_did() {
    let agent = trained_agent();
    let (status, body) = get(&agent, "/v1/models");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"models": ["anomaly-detector", "predictive-analytics"]})
    );

    // The old platform's call, with every content type a client may send.
    let request = format!(r#"{{"instances": [{ROW}]}}"#);
    for ct in [
        Some("application/json"),
        None,
        Some("application/json; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let (status, body) = post(&agent, "/v1/models/anomaly-detector:predict", ct, &request);
        assert_eq!(status, 200, "{ct:?}: {body}");
        let p = body["predictions"].as_array().expect("predictions");
        assert_eq!(p.len(), 1);
        assert!(p[0] == json!(1) || p[0] == json!(-1), "{body}");
    }
    // A normal row and an extreme one, in one request; `inputs` is accepted like `instances`.
    let (status, body) = predict(
        &agent,
        "anomaly-detector",
        &format!(r#"{{"inputs": [{ROW}, [50, -40, 9, 1e6, -1e6]]}}"#),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["predictions"][1], -1, "an extreme row is an anomaly");
    assert_eq!(body["predictions"].as_array().map(Vec::len), Some(2));

    let (status, body) = predict(
        &agent,
        "predictive-analytics",
        &format!(r#"{{"instances": [{w}, {w}]}}"#, w = window()),
    );
    assert_eq!(status, 200, "{body}");
    let rows = body["predictions"].as_array().expect("predictions");
    assert_eq!(rows.len(), 2);
    for row in rows {
        let row = row.as_array().expect("a list per row");
        assert_eq!(row.len(), 12, "horizon x targets floats");
        for v in row {
            let v = v.as_f64().expect("float");
            assert!(
                (0.2..=0.8).contains(&v),
                "cpu forecast {v} in the cpu range"
            );
        }
    }

    let (status, body) = post(
        &agent,
        "/v1/models/anomaly-detector:explain",
        None,
        &format!(r#"{{"instances": [{ROW}, [0.5, 0.6, 0.01, 1e6, 80]]}}"#),
    );
    assert_eq!(status, 200, "{body}");
    let explanations = body["explanations"].as_array().expect("explanations");
    assert_eq!(explanations.len(), 2);
    for e in explanations {
        let e = e.as_object().expect("an object per row");
        let names: Vec<&str> = e.keys().map(String::as_str).collect();
        for f in ["cpu", "memory", "restarts", "net_rx", "net_tx"] {
            assert!(names.contains(&f), "{f} in {names:?}");
        }
        let sum: f64 = e.values().filter_map(Value::as_f64).sum();
        assert!(
            (sum - 1.0).abs() < 1e-9,
            "contributions sum to 1, got {sum}"
        );
        assert!(e.values().filter_map(Value::as_f64).all(|c| c >= 0.0));
    }
    let outlier = &explanations[1];
    let top = outlier
        .as_object()
        .and_then(|o| {
            o.iter()
                .max_by(|a, b| a.1.as_f64().partial_cmp(&b.1.as_f64()).expect("numbers"))
        })
        .map(|(k, _)| k.clone());
    assert_eq!(
        top.as_deref(),
        Some("net_rx"),
        "the feature made extreme leads: {outlier}"
    );

    let metrics = http()
        .get(agent.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    let count = |series: &str| metric_value(&metrics, series).unwrap_or(0.0);
    assert_eq!(
        count(r#"request_predict_seconds_count{model_name="anomaly-detector"}"#),
        5.0
    );
    assert_eq!(
        count(r#"request_predict_seconds_count{model_name="predictive-analytics"}"#),
        1.0
    );
    assert_eq!(
        count(r#"request_explain_seconds_count{model_name="anomaly-detector"}"#),
        1.0
    );
    assert!(
        metrics.contains(
            r#"request_predict_seconds_bucket{model_name="anomaly-detector",le="0.001"}"#
        )
    );
}

#[test]
fn client_mistakes_are_400_404_413_501_with_a_message_naming_the_problem() {
    let agent = trained_agent();
    let cases: &[(&str, &str, u16, &str)] = &[
        ("anomaly-detector", "{not json", 400, "bad JSON"),
        ("anomaly-detector", "", 400, "bad JSON"),
        (
            "anomaly-detector",
            r#"{"rows": [[1,2,3,4,5]]}"#,
            400,
            "no \"instances\"",
        ),
        (
            "anomaly-detector",
            r#"{"instances": []}"#,
            400,
            "\"instances\" is empty",
        ),
        (
            "anomaly-detector",
            r#"{"instances": [[1, 2, 3]]}"#,
            400,
            "expected 5 features, got 3",
        ),
        (
            "anomaly-detector",
            r#"{"instances": [[1,2,3,4,5], [1,2,3,4]]}"#,
            400,
            "ragged",
        ),
        (
            "anomaly-detector",
            r#"{"instances": [0.5, 0.6, 0.4, 100, 80]}"#,
            400,
            "instances[0] is a number",
        ),
        (
            "anomaly-detector",
            r#"{"instances": [[0.5, "high", 0.4, 100, 80]]}"#,
            400,
            "expected a number at instances[0][1]",
        ),
        (
            "anomaly-detector",
            r#"{"instances": [[0.5, null, 0.4, 100, 80]]}"#,
            400,
            "instances[0][1]",
        ),
        (
            "anomaly-detector",
            r#"{"instances": [[[0.5], 0.6, 0.4, 100, 80]]}"#,
            400,
            "instances[0][0]",
        ),
        (
            "anomaly-detector",
            r#"{"instances": "rows"}"#,
            400,
            "a list of rows",
        ),
        ("anomaly-detector", r#"[[1,2,3,4,5]]"#, 400, "JSON object"),
        (
            "predictive-analytics",
            r#"{"instances": [[1,2,3,4,5]]}"#,
            400,
            "expected 120 values per row (24 steps x 5 features, time-major), got 5",
        ),
        (
            "no-such-model",
            r#"{"instances": [[1,2,3,4,5]]}"#,
            404,
            "no model named \"no-such-model\"",
        ),
    ];
    for &(model, body, status, message) in cases {
        let (got, answer) = predict(&agent, model, body);
        assert_eq!(got, status, "{body}: {answer}");
        assert!(
            error_of(&answer).contains(message),
            "{body}: want {message:?}, got {answer}"
        );
    }

    let (status, body) = post(
        &agent,
        "/v1/models/predictive-analytics:explain",
        None,
        &format!(r#"{{"instances": [{}]}}"#, window()),
    );
    assert_eq!(status, 501, "{body}");
    assert!(error_of(&body).contains("predictive-analytics has no explanations"));

    let (status, body) = get(&agent, "/v1/models/no-such-model");
    assert_eq!(status, 404);
    assert!(
        error_of(&body).contains("anomaly-detector, predictive-analytics"),
        "{body}"
    );
    for path in [
        "/v1/models/anomaly-detector:train",
        "/v1/models/anomaly-detector",
        "/v1/nothing",
    ] {
        let (status, body) = post(&agent, path, None, "{}");
        assert_eq!(status, 404, "{path}: {body}");
        assert!(
            error_of(&body).contains("no such endpoint"),
            "{path}: {body}"
        );
    }

    let big = format!(
        r#"{{"instances": [{}]}}"#,
        vec![ROW; MAX_BODY_BYTES / ROW.len() + 1].join(",")
    );
    let (status, body) = predict(&agent, "anomaly-detector", &big);
    assert_eq!(status, 413, "{body}");
    assert!(error_of(&body).contains(&format!("{MAX_BODY_BYTES}-byte limit")));
    // Sent chunked, without a Content-Length: refused while reading.
    let r = http()
        .post(agent.url("/v1/models/anomaly-detector:predict"))
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(
            big.into_bytes(),
        )))
        .send()
        .expect("POST chunked");
    assert_eq!(r.status(), 413);
}
