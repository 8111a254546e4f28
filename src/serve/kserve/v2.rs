//! The V2 / Open Inference Protocol: server and model metadata, health, readiness, and
//! `POST /v2/models/{name}/infer` in JSON and with the binary tensor extension.
//!
//! Binary requests carry `Inference-Header-Content-Length: N`: the body's first N bytes are the
//! JSON, and each input with `parameters.binary_data_size` takes its raw little-endian tensor
//! from the bytes after it, in input order. An output is answered in binary when it asks for
//! `binary_data` or the request sets `binary_data_output` (as tritonclient does when it names no
//! outputs); its raw bytes then follow the JSON answer, whose length the response's
//! `Inference-Header-Content-Length` gives.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::infer::{Kind, OutputData, Served, ServedModel};
use super::rows::TensorData;
use super::{KserveError, json_response, parse_object, read_body};

const HEADER_LENGTH: &str = "inference-header-content-length";

/// `GET /v2`: server metadata.
pub(crate) async fn server_metadata() -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "name": "canopy",
            "version": env!("CARGO_PKG_VERSION"),
            "extensions": ["binary_tensor_data"],
        }),
    )
}

/// `GET /v2/health/live`.
pub(crate) async fn live() -> Response {
    json_response(StatusCode::OK, &serde_json::json!({ "live": true }))
}

/// `GET /v2/health/ready`: 200 once every model has a published forest, 503 until then.
pub(crate) async fn ready(State(served): State<Arc<Served>>) -> Response {
    let ready = served.all_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &serde_json::json!({ "ready": ready }))
}

/// `GET /v2/models/{name}/ready`: 200 or 503, with `{"name", "ready"}`.
pub(crate) async fn model_ready(
    State(served): State<Arc<Served>>,
    Path(name): Path<String>,
) -> Response {
    let model = match served.model(&name) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let ready = model.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        status,
        &serde_json::json!({ "name": model.name, "ready": ready }),
    )
}

#[derive(Serialize)]
struct TensorMetadata {
    name: &'static str,
    datatype: &'static str,
    shape: Vec<i64>,
}

/// What the metadata's `parameters` say of a model's input: its features in row order, and for
/// a forecaster its targets, lookback, horizon and the (time-major) layouts; and of the forest
/// serving now, when it was trained (`trained_at`, RFC 3339) and from what (`training_source`),
/// so a client can tell which model answers after a retrain or a reload. Strings and numbers
/// only, as the protocol's `$parameters` are; clients that do not know them ignore them.
fn model_parameters(kind: &Kind) -> serde_json::Value {
    let (mut parameters, info) = match kind {
        Kind::Detector(d) => (
            serde_json::json!({
                "features": d.features.join(","),
            }),
            d.model.info(),
        ),
        Kind::Forecaster(f) => (
            serde_json::json!({
                "features": f.features.join(","),
                "targets": f.targets.join(","),
                "lookback": f.lookback,
                "horizon": f.horizon,
                "input_layout": "time-major: lookback steps of the features, oldest first",
                "output_layout": "time-major: horizon steps of the targets, nearest first",
            }),
            f.model.info(),
        ),
    };
    let trained_at = info
        .trained_at_ms
        .and_then(|ms| u64::try_from(ms).ok())
        .map(|ms| {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
            humantime::format_rfc3339_millis(at).to_string()
        });
    if let Some(object) = parameters.as_object_mut() {
        if let Some(at) = trained_at {
            object.insert("trained_at".into(), at.into());
        }
        if !info.source.is_empty() {
            object.insert("training_source".into(), info.source.clone().into());
        }
    }
    parameters
}

/// `GET /v2/models/{name}`: the input tensor `[-1, width]`, every output the model can answer,
/// and in `parameters` the features (comma-separated, in the order a row carries them).
pub(crate) async fn model_metadata(
    State(served): State<Arc<Served>>,
    Path(name): Path<String>,
) -> Response {
    let model = match served.model(&name) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let (platform, outputs) = match &model.kind {
        Kind::Detector(_) => (
            "canopy_isolation_forest",
            vec![
                TensorMetadata {
                    name: "output-0",
                    datatype: "INT64",
                    shape: vec![-1],
                },
                TensorMetadata {
                    name: "score",
                    datatype: "FP64",
                    shape: vec![-1],
                },
                TensorMetadata {
                    name: "decision_function",
                    datatype: "FP64",
                    shape: vec![-1],
                },
            ],
        ),
        Kind::Forecaster(_) => (
            "canopy_random_forest",
            vec![TensorMetadata {
                name: "output-0",
                datatype: "FP64",
                shape: vec![-1, model.output_width() as i64],
            }],
        ),
    };
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "name": model.name,
            "versions": [],
            "platform": platform,
            "inputs": [TensorMetadata {
                name: "input-0",
                datatype: "FP64",
                shape: vec![-1, model.input_width() as i64],
            }],
            "outputs": outputs,
            "parameters": model_parameters(&model.kind),
        }),
    )
}

#[derive(Deserialize)]
#[serde(expecting = "an inference request: a JSON object with \"inputs\"")]
struct InferRequest {
    id: Option<String>,
    #[serde(default)]
    parameters: RequestParameters,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Vec<RequestedOutput>,
}

#[derive(Deserialize, Default)]
struct RequestParameters {
    #[serde(default)]
    binary_data_output: bool,
}

#[derive(Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: InputParameters,
    data: Option<TensorData>,
}

#[derive(Deserialize, Default)]
struct InputParameters {
    binary_data_size: Option<usize>,
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: OutputParameters,
}

#[derive(Deserialize, Default)]
struct OutputParameters {
    binary_data: Option<bool>,
}

/// `POST /v2/models/{name}/infer`.
pub(crate) async fn infer(
    State(served): State<Arc<Served>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let model = match served.model(&name) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let started = model.start_timer();
    let answer = match read_body(&headers, body, served.max_body_bytes).await {
        Ok(body) => answer(model, &headers, body),
        Err(e) => Err(e),
    };
    model.record_predict(started);
    answer.unwrap_or_else(IntoResponse::into_response)
}

fn answer(model: &ServedModel, headers: &HeaderMap, body: Bytes) -> Result<Response, KserveError> {
    if !model.is_ready() {
        return Err(KserveError::NotReady(model.name.clone()));
    }
    let json_len = match headers.get(HEADER_LENGTH) {
        None => body.len(),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n <= body.len())
            .ok_or_else(|| {
                KserveError::Tensor(format!(
                    "Inference-Header-Content-Length {v:?} is not a length within the {}-byte body",
                    body.len()
                ))
            })?,
    };
    let request: InferRequest = parse_object(
        &body[..json_len],
        "{\"inputs\": [{\"name\", \"shape\", \"datatype\", \"data\"}]}",
    )?;
    let values = input_values(model, &request.inputs, &body[json_len..])?;

    let mut wanted: Vec<(&str, bool)> = Vec::with_capacity(request.outputs.len().max(1));
    for o in &request.outputs {
        model.check_output(&o.name)?;
        let binary = o
            .parameters
            .binary_data
            .unwrap_or(request.parameters.binary_data_output);
        wanted.push((o.name.as_str(), binary));
    }
    if wanted.is_empty() {
        wanted.push(("output-0", request.parameters.binary_data_output));
    }
    let names: Vec<&str> = wanted.iter().map(|(n, _)| *n).collect();
    let computed = model.compute(&values, &names)?;

    let rows = values.len() / model.input_width().max(1);
    let mut raw = Vec::new();
    let outputs: Vec<OutputTensor> = wanted
        .iter()
        .zip(&computed)
        .map(|(&(name, binary), data)| {
            let shape = if name == "output-0" && model.output_width() > 1 {
                vec![rows, model.output_width()]
            } else {
                vec![rows]
            };
            let (data_json, parameters) = if binary {
                data.append_le_bytes(&mut raw);
                (
                    None,
                    Some(BinaryParameters {
                        binary_data_size: data.byte_len(),
                    }),
                )
            } else {
                (Some(data), None)
            };
            OutputTensor {
                name,
                datatype: data.datatype(),
                shape,
                data: data_json.map(DataJson),
                parameters,
            }
        })
        .collect();
    let response = InferResponse {
        model_name: &model.name,
        id: request.id.as_deref(),
        outputs,
    };
    if raw.is_empty() {
        return Ok(json_response(StatusCode::OK, &response));
    }
    let mut body = serde_json::to_vec(&response).map_err(|e| KserveError::Json(e.to_string()))?;
    let json_len = body.len();
    body.extend_from_slice(&raw);
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r.headers_mut()
        .insert(HEADER_LENGTH, HeaderValue::from(json_len));
    Ok(r)
}

#[derive(Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputTensor<'a>>,
}

#[derive(Serialize)]
struct OutputTensor<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<DataJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParameters>,
}

#[derive(Serialize)]
struct BinaryParameters {
    binary_data_size: usize,
}

/// An output's values as a flat JSON list (the shape says how they make rows).
struct DataJson<'a>(&'a OutputData);

impl Serialize for DataJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            OutputData::Int64(v) => v.serialize(s),
            OutputData::Fp64(v) => v.serialize(s),
        }
    }
}

/// The numeric datatypes an input tensor may have; each is read as `f64`.
#[derive(Clone, Copy)]
enum Datatype {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    F32,
    F64,
}

impl Datatype {
    fn parse(name: &str) -> Option<Datatype> {
        Some(match name {
            "BOOL" => Datatype::Bool,
            "UINT8" => Datatype::U8,
            "UINT16" => Datatype::U16,
            "UINT32" => Datatype::U32,
            "UINT64" => Datatype::U64,
            "INT8" => Datatype::I8,
            "INT16" => Datatype::I16,
            "INT32" => Datatype::I32,
            "INT64" => Datatype::I64,
            "FP16" => Datatype::F16,
            "FP32" => Datatype::F32,
            "FP64" => Datatype::F64,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Datatype::Bool | Datatype::U8 | Datatype::I8 => 1,
            Datatype::U16 | Datatype::I16 | Datatype::F16 => 2,
            Datatype::U32 | Datatype::I32 | Datatype::F32 => 4,
            Datatype::U64 | Datatype::I64 | Datatype::F64 => 8,
        }
    }

    /// Decodes little-endian elements of this type into `out`.
    fn decode(self, raw: &[u8], out: &mut Vec<f64>) {
        let size = self.size();
        out.reserve(raw.len() / size);
        for b in raw.chunks_exact(size) {
            let v = match self {
                Datatype::Bool => f64::from(u8::from(b[0] != 0)),
                Datatype::U8 => f64::from(b[0]),
                Datatype::I8 => f64::from(b[0] as i8),
                Datatype::U16 => f64::from(u16::from_le_bytes([b[0], b[1]])),
                Datatype::I16 => f64::from(i16::from_le_bytes([b[0], b[1]])),
                Datatype::F16 => f16_to_f64(u16::from_le_bytes([b[0], b[1]])),
                Datatype::U32 => f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                Datatype::I32 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                Datatype::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                Datatype::U64 => u64::from_le_bytes(eight(b)) as f64,
                Datatype::I64 => i64::from_le_bytes(eight(b)) as f64,
                Datatype::F64 => f64::from_le_bytes(eight(b)),
            };
            out.push(v);
        }
    }
}

fn eight(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

/// IEEE 754 half precision to f64.
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

fn shape_text(shape: &[i64]) -> String {
    let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
    format!("[{}]", dims.join(","))
}

/// The request's one input tensor as flat rows of the model's input width, from its JSON
/// `data` or from its bytes in `binary`.
fn input_values(
    model: &ServedModel,
    inputs: &[InputTensor],
    binary: &[u8],
) -> Result<Vec<f64>, KserveError> {
    let input = match inputs {
        [one] => one,
        _ => {
            return Err(KserveError::Tensor(format!(
                "expected 1 input tensor, got {}",
                inputs.len()
            )));
        }
    };
    let datatype = Datatype::parse(&input.datatype).ok_or_else(|| {
        KserveError::Tensor(format!(
            "input {:?} has datatype {:?}: expected a numeric one (BOOL, UINT8..64, INT8..64, FP16, FP32, FP64)",
            input.name, input.datatype
        ))
    })?;
    let shape = &input.shape;
    if shape.len() < 2 {
        return Err(KserveError::Tensor(format!(
            "input {:?} has shape {}: expected [rows, {}]",
            input.name,
            shape_text(shape),
            model.input_width()
        )));
    }
    let dims: Option<Vec<usize>> = shape.iter().map(|&d| usize::try_from(d).ok()).collect();
    let count = dims
        .as_ref()
        .and_then(|d| d.iter().try_fold(1usize, |acc, &x| acc.checked_mul(x)))
        .ok_or_else(|| {
            KserveError::Tensor(format!(
                "input {:?} has shape {}: every dimension must be a non-negative size",
                input.name,
                shape_text(shape)
            ))
        })?;
    let rows = dims.as_ref().map_or(0, |d| d[0]);
    if rows == 0 {
        return Err(KserveError::Tensor(format!(
            "input {:?} has shape {}: no rows to infer",
            input.name,
            shape_text(shape)
        )));
    }

    let mut values = Vec::new();
    match (&input.data, input.parameters.binary_data_size) {
        (Some(data), None) => {
            if data.0.len() != count {
                return Err(KserveError::ShapeMismatch {
                    shape: shape_text(shape),
                    values: data.0.len(),
                });
            }
            values.extend_from_slice(&data.0);
        }
        (None, Some(size)) => {
            if size != binary.len() {
                return Err(KserveError::Tensor(format!(
                    "input {:?} has binary_data_size {size}, but {} bytes follow the JSON header",
                    input.name,
                    binary.len()
                )));
            }
            let needed = count.saturating_mul(datatype.size());
            if size != needed {
                return Err(KserveError::Tensor(format!(
                    "input {:?}: shape {} of {} needs {needed} bytes, binary_data_size is {size}",
                    input.name,
                    shape_text(shape),
                    input.datatype
                )));
            }
            datatype.decode(binary, &mut values);
        }
        (Some(_), Some(_)) => {
            return Err(KserveError::Tensor(format!(
                "input {:?} has both data and binary_data_size",
                input.name
            )));
        }
        (None, None) => {
            return Err(KserveError::Tensor(format!(
                "input {:?} has no data and no binary_data_size",
                input.name
            )));
        }
    }
    // After the data matches its shape: a shape that does not fit the data is the first problem.
    model.check_width(count / rows)?;
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_numeric_datatype_decodes_little_endian() {
        let mut out = Vec::new();
        Datatype::F32.decode(&1.5f32.to_le_bytes(), &mut out);
        Datatype::I16.decode(&(-3i16).to_le_bytes(), &mut out);
        Datatype::U64.decode(&7u64.to_le_bytes(), &mut out);
        Datatype::Bool.decode(&[0, 1], &mut out);
        Datatype::F16.decode(&0x3e00u16.to_le_bytes(), &mut out);
        Datatype::I8.decode(&[0xff], &mut out);
        assert_eq!(out, [1.5, -3.0, 7.0, 0.0, 1.0, 1.5, -1.0]);
    }

    #[test]
    fn shapes_print_as_the_error_messages_show_them() {
        assert_eq!(shape_text(&[2, 4]), "[2,4]");
    }
}
