//! KServe's V1 protocol, as its sklearn server answers it: `GET /`, `GET /v1/models`,
//! `GET /v1/models/{name}`, `POST /v1/models/{name}:predict` and `:explain`.
//!
//! A predict body is `{"instances": [[...], ...]}` (or `"inputs"`), parsed straight into flat
//! rows by [`super::rows::Rows`]; the Content-Type is not consulted, so an absent one,
//! `application/json` and `application/json; charset=utf-8` all parse as JSON.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};

use super::infer::{Kind, OutputData, Served, ServedModel};
use super::rows::Rows;
use super::{KserveError, json_response, parse_object, read_body};

/// `GET /`: liveness, as KServe's model server answers it.
pub(crate) async fn root() -> Response {
    json_response(StatusCode::OK, &serde_json::json!({ "status": "alive" }))
}

/// `GET /v1/models`: every served model's name.
pub(crate) async fn list(State(served): State<Arc<Served>>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "models": served.names() }),
    )
}

/// `GET /v1/models/{name}`: 200 `{"name", "ready": true}`, or 503 with `"ready": false` and why.
pub(crate) async fn status(
    State(served): State<Arc<Served>>,
    Path(name): Path<String>,
) -> Response {
    let model = match served.model(&name) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    if model.is_ready() {
        json_response(
            StatusCode::OK,
            &serde_json::json!({ "name": model.name, "ready": true }),
        )
    } else {
        let error = KserveError::NotReady(model.name.clone()).to_string();
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "name": model.name, "ready": false, "error": error }),
        )
    }
}

/// `POST /v1/models/{name}:predict` and `POST /v1/models/{name}:explain`.
pub(crate) async fn action(
    State(served): State<Arc<Served>>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some((name, verb)) = segment.rsplit_once(':') else {
        return KserveError::NoEndpoint(format!("/v1/models/{segment} (POST)")).into_response();
    };
    let model = match served.model(name) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    match verb {
        "predict" => {
            let started = model.start_timer();
            let answer = predict(model, &headers, body, served.max_body_bytes).await;
            model.record_predict(started);
            answer.unwrap_or_else(IntoResponse::into_response)
        }
        "explain" => {
            let started = model.start_timer();
            let answer = explain(model, &headers, body, served.max_body_bytes).await;
            model.record_explain(started);
            answer.unwrap_or_else(IntoResponse::into_response)
        }
        _ => KserveError::NoEndpoint(format!("/v1/models/{segment}")).into_response(),
    }
}

/// A V1 request body: only `instances` (or `inputs`) is read; other keys are ignored.
#[derive(Deserialize)]
#[serde(expecting = "a JSON object with \"instances\": a list of rows")]
struct V1Request {
    instances: Option<Rows>,
    inputs: Option<Rows>,
}

/// The rows of a V1 request, checked against the model's input width. Readiness is checked
/// first: a client of a model still training learns that before anything about its body.
async fn rows(
    model: &ServedModel,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Rows, KserveError> {
    if !model.is_ready() {
        return Err(KserveError::NotReady(model.name.clone()));
    }
    let body = read_body(headers, body, limit).await?;
    let request: V1Request = parse_object(&body, "{\"instances\": [[...], ...]}")?;
    let rows = request
        .instances
        .or(request.inputs)
        .ok_or(KserveError::MissingInstances)?;
    if rows.rows == 0 {
        return Err(KserveError::EmptyInstances);
    }
    model.check_width(rows.width)?;
    Ok(rows)
}

async fn predict(
    model: &ServedModel,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Response, KserveError> {
    let rows = rows(model, headers, body, limit).await?;
    let mut outputs = model.compute(&rows.values, &["output-0"])?;
    let Some(output) = outputs.pop() else {
        return Err(KserveError::NotReady(model.name.clone()));
    };
    Ok(json_response(
        StatusCode::OK,
        &Predictions {
            predictions: PredictionRows {
                output: &output,
                width: model.output_width(),
            },
        },
    ))
}

async fn explain(
    model: &ServedModel,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Response, KserveError> {
    let Kind::Detector(detector) = &model.kind else {
        return Err(KserveError::NoExplanations(model.name.clone()));
    };
    let rows = rows(model, headers, body, limit).await?;
    let contributions = model.explain(&rows.values)?;
    let explanations: Vec<Explanation> = contributions
        .iter()
        .map(|c| Explanation {
            features: &detector.features,
            contributions: c,
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &Explanations { explanations },
    ))
}

#[derive(Serialize)]
struct Predictions<'a> {
    predictions: PredictionRows<'a>,
}

/// `output-0` as V1 lists it: one int per row (detector), or one list per row (forecaster).
struct PredictionRows<'a> {
    output: &'a OutputData,
    width: usize,
}

impl Serialize for PredictionRows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.output {
            OutputData::Int64(v) => v.serialize(s),
            OutputData::Fp64(v) => {
                let mut seq = s.serialize_seq(Some(v.len() / self.width.max(1)))?;
                for row in v.chunks(self.width.max(1)) {
                    seq.serialize_element(row)?;
                }
                seq.end()
            }
        }
    }
}

#[derive(Serialize)]
struct Explanations<'a> {
    explanations: Vec<Explanation<'a>>,
}

/// One row's contributions, keyed by feature name in the model's feature order.
struct Explanation<'a> {
    features: &'a [String],
    contributions: &'a [f64],
}

impl Serialize for Explanation<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.features.len()))?;
        for (name, c) in self.features.iter().zip(self.contributions) {
            map.serialize_entry(name, c)?;
        }
        map.end()
    }
}
