//! `POST /api/v1/write` (and `/api/v1/push`): every status code remote-write can answer is
//! decided in [`remote_write`], in one place.
//!
//! | answer | when |
//! |---|---|
//! | 204 | accepted (all of it) |
//! | 400 | undecodable body (bad snappy or protobuf), or some series invalid (the rest accepted) |
//! | 413 | compressed body or its decoded size over the limit |
//! | 415 | a Content-Type other than remote-write 1.0/2.0 protobuf, or a Content-Encoding other than snappy |
//! | 503 + Retry-After | overload: all `max_inflight_requests` permits taken |
//!
//! Never 5xx for bad data: Prometheus retries 5xx forever and drops the batch on any other
//! non-2xx. 2.0 answers carry the `X-Prometheus-Remote-Write-*-Written` headers, except 415 and
//! undecodable bodies, where nothing was read; 1.0 answers never do.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use metrics::counter;
use tokio::sync::Semaphore;

use super::{IngestError, Ingestor, Protocol, WriteOutcome};

const SAMPLES_WRITTEN: &str = "x-prometheus-remote-write-samples-written";
const HISTOGRAMS_WRITTEN: &str = "x-prometheus-remote-write-histograms-written";
const EXEMPLARS_WRITTEN: &str = "x-prometheus-remote-write-exemplars-written";

/// Seconds a client is asked to wait after a 503.
const RETRY_AFTER_SECONDS: &str = "5";

/// The remote-write route's shared state: the ingestor and the permits that bound how many
/// bodies are held in memory at once (each up to the decoded-size limit).
pub struct RemoteWrite {
    pub ingestor: Arc<Ingestor>,
    pub permits: Semaphore,
}

impl RemoteWrite {
    pub fn new(ingestor: Arc<Ingestor>, max_inflight: usize) -> Arc<RemoteWrite> {
        Arc::new(RemoteWrite {
            ingestor,
            permits: Semaphore::new(max_inflight),
        })
    }
}

/// Reads the protocol from the Content-Type, parsed as HTTP says: the media type and parameter
/// names case-insensitive, spaces allowed around `;` and `=`, a parameter value optionally quoted.
/// An absent Content-Type is 1.0, as older senders omit it.
pub fn negotiate(headers: &HeaderMap) -> Result<Protocol, String> {
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("").trim();
        if !enc.eq_ignore_ascii_case("snappy") {
            return Err(format!(
                "unsupported Content-Encoding {enc:?}: remote-write bodies are snappy"
            ));
        }
    }
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Protocol::V1);
    };
    let ct = ct
        .to_str()
        .map_err(|_| "Content-Type is not ASCII".to_owned())?;
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/x-protobuf") {
        return Err(format!(
            "unsupported Content-Type {ct:?}: expected application/x-protobuf (remote-write 1.0 or 2.0)"
        ));
    }
    let mut protocol = Protocol::V1;
    for param in parts {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("proto") {
            continue;
        }
        protocol = match value.trim().trim_matches('"') {
            "prometheus.WriteRequest" => Protocol::V1,
            "io.prometheus.write.v2.Request" => Protocol::V2,
            other => {
                return Err(format!(
                    "unsupported remote-write message {other:?}: expected prometheus.WriteRequest or io.prometheus.write.v2.Request"
                ));
            }
        };
    }
    Ok(protocol)
}

/// The answer's pieces: kept apart from axum so that the whole table above reads in one match.
struct Answer {
    status: StatusCode,
    reason: Option<String>,
    written: Option<WriteOutcome>,
    retry_after: bool,
}

impl Answer {
    fn new(status: StatusCode, reason: impl Into<Option<String>>) -> Answer {
        Answer {
            status,
            reason: reason.into(),
            written: None,
            retry_after: false,
        }
    }
}

/// The remote-write endpoint.
pub async fn remote_write(
    State(rw): State<Arc<RemoteWrite>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let protocol = negotiate(&headers);
    let (answer, rejected) = decide(&rw, &protocol, &headers, body).await;
    let proto_label = protocol.as_ref().map_or("unknown", |p| p.label());
    if let Some(reason) = rejected {
        counter!("canopy_remote_write_rejected_total", "reason" => reason).increment(1);
    }
    counter!("canopy_remote_write_requests_total", "protocol" => proto_label, "code" => answer.status.as_str().to_owned())
        .increment(1);
    if let Some(reason) = &answer.reason {
        tracing::debug!(status = answer.status.as_u16(), protocol = proto_label, %reason, "remote-write refused");
    }

    let mut response = match answer.reason {
        Some(reason) => (answer.status, format!("{reason}\n")).into_response(),
        None => answer.status.into_response(),
    };
    let h = response.headers_mut();
    if answer.retry_after {
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
    }
    if let (Ok(Protocol::V2), Some(w)) = (protocol, answer.written) {
        h.insert(SAMPLES_WRITTEN, HeaderValue::from(w.samples_written));
        h.insert(HISTOGRAMS_WRITTEN, HeaderValue::from(w.histograms_written));
        h.insert(EXEMPLARS_WRITTEN, HeaderValue::from(w.exemplars_written));
    }
    response
}

/// Decides the answer; the second value is the request-level rejection reason for the metric.
async fn decide(
    rw: &RemoteWrite,
    protocol: &Result<Protocol, String>,
    headers: &HeaderMap,
    body: Body,
) -> (Answer, Option<&'static str>) {
    let nothing_written = || Some(WriteOutcome::default());
    let protocol = match protocol {
        Ok(p) => *p,
        Err(reason) => {
            return (
                Answer::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, reason.clone()),
                Some("unsupported_media_type"),
            );
        }
    };
    let limit = rw.ingestor.limits().max_request_bytes;
    let too_large = |size: String| {
        let mut a = Answer::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body of {size} bytes is over the limit of {limit}"),
        );
        a.written = nothing_written();
        (a, Some("too_large"))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(len) = declared.filter(|&len| len > limit) {
        return too_large(len.to_string());
    }
    let Ok(_permit) = rw.permits.try_acquire() else {
        let mut a = Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded: too many remote-write requests in flight, retry later".to_owned(),
        );
        a.retry_after = true;
        a.written = nothing_written();
        return (a, Some("overloaded"));
    };
    let compressed: Bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return too_large(format!("more than {limit}"));
        }
        Err(e) => {
            return (
                Answer::new(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the request body: {e}"),
                ),
                Some("unreadable_body"),
            );
        }
    };
    match rw.ingestor.write(protocol, &compressed) {
        Ok(outcome) => {
            let mut a = match &outcome.first_problem {
                None => Answer::new(StatusCode::NO_CONTENT, None),
                Some(problem) => Answer::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{} of the request's series were refused, the rest accepted; first: {problem}",
                        outcome.invalid_series
                    ),
                ),
            };
            let rejected = outcome.first_problem.is_some().then_some("invalid_series");
            a.written = Some(outcome);
            (a, rejected)
        }
        Err(e @ IngestError::DecodedTooLarge { .. }) => {
            let mut a = Answer::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string());
            a.written = nothing_written();
            (a, Some("too_large"))
        }
        Err(e @ (IngestError::Snappy(_) | IngestError::Wire { .. })) => (
            Answer::new(StatusCode::BAD_REQUEST, e.to_string()),
            Some("undecodable"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: Option<&str>, enc: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(ct).expect("ascii"),
            );
        }
        if let Some(enc) = enc {
            h.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_str(enc).expect("ascii"),
            );
        }
        h
    }

    #[test]
    fn content_negotiation_follows_http_parsing() {
        let ok = |ct, enc| negotiate(&headers(ct, enc));
        assert_eq!(ok(None, None), Ok(Protocol::V1));
        assert_eq!(
            ok(Some("application/x-protobuf"), Some("snappy")),
            Ok(Protocol::V1)
        );
        assert_eq!(
            ok(
                Some("Application/X-Protobuf ; proto=prometheus.WriteRequest"),
                None
            ),
            Ok(Protocol::V1)
        );
        assert_eq!(
            ok(
                Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
                Some("SNAPPY")
            ),
            Ok(Protocol::V2)
        );
        assert_eq!(
            ok(
                Some("application/x-protobuf ; PROTO = \"io.prometheus.write.v2.Request\""),
                None
            ),
            Ok(Protocol::V2)
        );
        for (ct, enc) in [
            (Some("application/json"), None),
            (Some("image/png"), None),
            (Some("application/x-protobuf;proto=foo.Bar"), None),
            (None, Some("gzip")),
            (None, Some("deflate")),
            (Some("application/x-protobuf"), Some("identity")),
        ] {
            assert!(ok(ct, enc).is_err(), "{ct:?} {enc:?} must be refused");
        }
    }
}
