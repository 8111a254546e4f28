//! `POST /api/v1/write` (and `/api/v1/push`): every status code remote-write can answer is
//! decided in [`remote_write`], in one place.
//!
//! | answer | when |
//! |---|---|
//! | 204 | accepted (all of it) |
//! | 400 | undecodable body (bad snappy or protobuf), or some series invalid (the rest accepted) |
//! | 413 | compressed body or its decoded size over the limit, or decoding it alone needs more than `max_inflight_bytes` |
//! | 415 | a Content-Type other than remote-write 1.0/2.0 protobuf, or a Content-Encoding other than snappy |
//! | 503 + Retry-After | overload: `max_inflight_requests` requests, or `max_inflight_bytes` bytes, in flight |
//!
//! Never 5xx for bad data: Prometheus retries 5xx forever and drops the batch on any other
//! non-2xx. Every 2.0 answer after content negotiation carries the
//! `X-Prometheus-Remote-Write-*-Written` headers (0s when nothing was written: an undecodable
//! body, 413, 503); a 415 does not, as the request was not understood as 2.0. 1.0 answers never
//! carry them.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use metrics::counter;
use tokio::sync::Semaphore;

use super::decode::Allowance;
use super::{IngestError, Ingestor, Protocol, WriteOutcome};

const SAMPLES_WRITTEN: &str = "x-prometheus-remote-write-samples-written";
const HISTOGRAMS_WRITTEN: &str = "x-prometheus-remote-write-histograms-written";
const EXEMPLARS_WRITTEN: &str = "x-prometheus-remote-write-exemplars-written";

/// Seconds a client is asked to wait after a 503.
const RETRY_AFTER_SECONDS: &str = "5";

/// The remote-write route's shared state: the ingestor, and the permits that bound how many
/// requests and how many bytes are held in memory at once.
pub(crate) struct RemoteWrite {
    pub(crate) ingestor: Arc<Ingestor>,
    pub(crate) permits: Semaphore,
    /// In-flight bytes, one permit per KiB: a request holds its compressed body's, then its
    /// decoded size, then what its decoded labels, samples and series grow to, asked for as they
    /// grow.
    bytes: Semaphore,
    /// The byte permits in all: a request that needs more alone can never be taken (413).
    bytes_total: u32,
}

impl RemoteWrite {
    pub fn new(
        ingestor: Arc<Ingestor>,
        max_inflight: usize,
        max_inflight_bytes: usize,
    ) -> Arc<RemoteWrite> {
        let bytes_total = (max_inflight_bytes / 1024).min(Semaphore::MAX_PERMITS);
        Arc::new(RemoteWrite {
            ingestor,
            permits: Semaphore::new(max_inflight),
            bytes: Semaphore::new(bytes_total),
            bytes_total: u32::try_from(bytes_total).unwrap_or(u32::MAX),
        })
    }
}

/// The byte permits (KiB, rounded up) for `bytes`.
fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// Reads the protocol from the Content-Type, parsed as HTTP says: the media type and parameter
/// names case-insensitive, spaces allowed around `;` and `=`, a parameter value optionally quoted.
/// An absent Content-Type is 1.0, as older senders omit it.
pub(crate) fn negotiate(headers: &HeaderMap) -> Result<Protocol, String> {
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
pub(crate) async fn remote_write(
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

enum BodyError {
    TooLarge,
    Unreadable(axum::Error),
}

/// Reads a body of at most `limit` bytes into one buffer, sized up front when its length is
/// declared, so the body is held once (not as chunks and then a copy).
async fn read_body(
    mut body: Body,
    limit: usize,
    declared: Option<usize>,
) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Unreadable)?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
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
    let overloaded = |what: &str| {
        let mut a = Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("overloaded: too many remote-write {what} in flight, retry later"),
        );
        a.retry_after = true;
        a.written = nothing_written();
        (a, Some("overloaded"))
    };
    let Ok(_permit) = rw.permits.try_acquire() else {
        return overloaded("requests");
    };
    // The body's bytes are reserved before it is read: its declared length, or the limit when
    // it declares none (chunked).
    let Ok(body_bytes) = rw.bytes.try_acquire_many(kib(declared.unwrap_or(limit))) else {
        return overloaded("bytes");
    };
    let compressed = match read_body(body, limit, declared).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return too_large(format!("more than {limit}")),
        Err(BodyError::Unreadable(e)) => {
            let mut a = Answer::new(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {e}"),
            );
            a.written = nothing_written();
            return (a, Some("unreadable_body"));
        }
    };
    // Then what decoding it holds, known from snappy's header before anything is decoded; an
    // undecodable header or a size over the limit is the ingestor's to refuse.
    let decoded = snap::raw::decompress_len(&compressed)
        .ok()
        .filter(|&n| n <= rw.ingestor.limits().max_decoded_bytes)
        .unwrap_or(0);
    let Ok(decoded_bytes) = rw.bytes.try_acquire_many(kib(decoded)) else {
        return overloaded("bytes");
    };
    // The decoded structures are charged as they grow; `held` counts this request's permits.
    let mut held = body_bytes.num_permits() + decoded_bytes.num_permits();
    let mut over_total = false;
    let mut grants = Vec::new();
    let mut grow = |bytes: usize| {
        let want = kib(bytes);
        if held.saturating_add(want as usize) > rw.bytes_total as usize {
            over_total = true;
            return false;
        }
        match rw.bytes.try_acquire_many(want) {
            Ok(p) => {
                held += p.num_permits();
                grants.push(p);
                true
            }
            Err(_) => false,
        }
    };
    let written = rw
        .ingestor
        .write(protocol, &compressed, &mut Allowance::new(&mut grow));
    match written {
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
        // Alone over the whole budget: retrying cannot help, so 413 (a sender drops it); over
        // what the other requests in flight leave: 503, retry later.
        Err(e @ IngestError::OverBudget { .. }) if over_total => {
            let mut a = Answer::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{e}: the request alone needs more than limits.max_inflight_bytes"),
            );
            a.written = nothing_written();
            (a, Some("too_large"))
        }
        Err(IngestError::OverBudget { .. }) => overloaded("bytes"),
        Err(e @ (IngestError::Snappy(_) | IngestError::Wire { .. })) => {
            let mut a = Answer::new(StatusCode::BAD_REQUEST, e.to_string());
            a.written = nothing_written();
            (a, Some("undecodable"))
        }
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
