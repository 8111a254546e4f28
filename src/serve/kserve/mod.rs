//! KServe-compatible serving: the V1 protocol of KServe's sklearn server and the V2 / Open
//! Inference Protocol (JSON and the binary tensor extension), for every model in a [`Registry`].
//!
//! [`router`] holds every KServe route and decides every status code they answer, so the agent's
//! router and a serve-only runtime mount the same thing. Errors are `{"error": "..."}` naming the
//! problem, by [`KserveError::status`]:
//!
//! | answer | when |
//! |---|---|
//! | 400 | bad JSON, a missing key, empty or ragged or 1-D instances, non-numeric values, wrong feature count or shape, bad binary tensors, an unknown requested output |
//! | 404 | unknown model or path |
//! | 413 | body over the limit |
//! | 501 | explain on a model without explanations |
//! | 503 | the model has no published forest yet (not trained or restored) |
//!
//! Owns HTTP parsing and encoding only: scoring is the models' ([`crate::model`]), and a forest is
//! read from its `arc-swap` cell per request, never behind a lock that training holds. Submodules:
//! `rows` (V1 instances and V2 tensor data, parsed straight into flat `f64` rows), `infer` (the
//! served models and what each computes), `v1` and `v2` (the two protocols' handlers).

mod infer;
mod rows;
mod v1;
mod v2;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::model::iforest::IsolationForestError;
use crate::model::rforest::RandomForestError;
use crate::serve::registry::Registry;

use infer::Served;

/// The body limit of [`router`]: 32 MiB, the same default as a remote-write body.
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 32 << 20;

/// Every KServe route for the models of `registry`, with bodies limited to
/// [`DEFAULT_MAX_BODY_BYTES`]; unknown paths answer 404 with a JSON error.
pub fn router(registry: Registry) -> Router {
    router_with_body_limit(registry, DEFAULT_MAX_BODY_BYTES)
}

/// [`router`] with bodies over `max_body_bytes` answered 413.
pub(crate) fn router_with_body_limit(registry: Registry, max_body_bytes: usize) -> Router {
    let served = Arc::new(Served::new(registry, max_body_bytes));
    Router::new()
        .route("/", get(v1::root))
        .route("/v1/models", get(v1::list))
        // `{name}:predict` is one path segment: matchit 0.8.4 has no parameter with a literal
        // suffix, so GET takes the segment as the name and POST splits it on its last `:`.
        .route("/v1/models/{segment}", get(v1::status).post(v1::action))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .route("/v2/models/{name}", get(v2::model_metadata))
        .route("/v2/models/{name}/ready", get(v2::model_ready))
        .route("/v2/models/{name}/infer", post(v2::infer))
        .with_state(served)
        .fallback(not_found)
}

async fn not_found(uri: Uri) -> Response {
    KserveError::NoEndpoint(uri.path().to_owned()).into_response()
}

/// Why a KServe request failed; [`KserveError::status`] maps each to its answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KserveError {
    #[error("no such endpoint: {0}")]
    NoEndpoint(String),
    #[error("no model named {name:?}; served models: {served}")]
    UnknownModel { name: String, served: String },
    #[error("model {0} is not ready: it has not been trained or restored yet")]
    NotReady(String),
    #[error("model {0} has no explanations: explain is available for isolation forest models")]
    NoExplanations(String),
    #[error("request body is larger than the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("could not read the request body: {0}")]
    Body(String),
    #[error("bad JSON: {0}")]
    Json(String),
    #[error(
        "the request has no \"instances\" (or \"inputs\"): send {{\"instances\": [[...], ...]}}"
    )]
    MissingInstances,
    #[error("\"instances\" is empty: send at least one row")]
    EmptyInstances,
    #[error("expected {expected} features, got {got}")]
    FeatureCount { expected: usize, got: usize },
    #[error(
        "expected {expected} values per row ({lookback} steps x {features} features, time-major), got {got}"
    )]
    WindowWidth {
        expected: usize,
        lookback: usize,
        features: usize,
        got: usize,
    },
    #[error("shape {shape} does not match {values} values")]
    ShapeMismatch { shape: String, values: usize },
    #[error("bad input tensor: {0}")]
    Tensor(String),
    #[error("unknown output {name:?}: model {model} has outputs {available}")]
    UnknownOutput {
        name: String,
        model: String,
        available: String,
    },
    #[error(transparent)]
    Detector(#[from] IsolationForestError),
    #[error(transparent)]
    Forecaster(#[from] RandomForestError),
}

impl KserveError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            KserveError::NoEndpoint(_) | KserveError::UnknownModel { .. } => StatusCode::NOT_FOUND,
            KserveError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            KserveError::NoExplanations(_) => StatusCode::NOT_IMPLEMENTED,
            KserveError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            KserveError::Body(_)
            | KserveError::Json(_)
            | KserveError::MissingInstances
            | KserveError::EmptyInstances
            | KserveError::FeatureCount { .. }
            | KserveError::WindowWidth { .. }
            | KserveError::ShapeMismatch { .. }
            | KserveError::Tensor(_)
            | KserveError::UnknownOutput { .. }
            | KserveError::Detector(_)
            | KserveError::Forecaster(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// A serde_json error as a request error: a syntax error keeps its position, a data error
    /// (wrong type, ragged rows, ...) already names where it is and drops serde's position.
    fn from_json(e: serde_json::Error) -> KserveError {
        let text = e.to_string();
        if e.is_data() {
            let position = format!(" at line {} column {}", e.line(), e.column());
            if let Some(message) = text.strip_suffix(&position) {
                return KserveError::Json(message.to_owned());
            }
        }
        KserveError::Json(text)
    }
}

/// Parses a request body that must be a JSON object: serde would also take a struct from a
/// JSON array (its fields in order), which no client means.
fn parse_object<'a, T: serde::Deserialize<'a>>(
    body: &'a [u8],
    shape: &str,
) -> Result<T, KserveError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b != b'{') {
        return Err(KserveError::Json(format!(
            "the body must be a JSON object: {shape}"
        )));
    }
    serde_json::from_slice(body).map_err(KserveError::from_json)
}

impl IntoResponse for KserveError {
    fn into_response(self) -> Response {
        json_response(
            self.status(),
            &serde_json::json!({ "error": self.to_string() }),
        )
    }
}

/// `value` serialized as an `application/json` body.
fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"error\":\"could not encode the response: {e}\"}}"),
        )
            .into_response(),
    }
}

/// Reads a whole body, refusing it (413) from its declared Content-Length before reading, or
/// while reading when it is sent chunked.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, KserveError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(KserveError::TooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(KserveError::TooLarge { limit })
        }
        Err(e) => Err(KserveError::Body(e.to_string())),
    }
}
