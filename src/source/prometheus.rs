//! The Prometheus backfill source: each of a model's feature expressions, asked of a real
//! Prometheus with `query_range` over the model's training days at the model's step, turned into
//! the same per-entity feature history the live stream builds.
//!
//! - Prometheus refuses a `query_range` answer of more than 11,000 points per series, so the range
//!   is cut into chunks of at most [`MAX_POINTS_PER_QUERY`] steps; chunks share no timestamp.
//! - Each request has a timeout (`[source] query_timeout`) and is retried with doubling backoff
//!   (`query_retries`) on connection errors, timeouts, 5xx and 429; other answers (a 4xx such as
//!   `bad_data`) fail at once, since asking again cannot help.
//! - Authentication and TLS: a bearer token read from `bearer_token_file`, or basic auth with
//!   `basic_auth_user` and a password read from `basic_auth_password_file`; `ca_file` replaces the
//!   Mozilla roots with the PEM certificates it holds (an in-cluster CA).
//! - Every answer is joined into entity vectors by [`entity_vectors`], the function the live
//!   stream uses, so the entities (result label sets without `__name__`) and the rule for
//!   complete vectors are the same whether a row was backfilled or streamed.
//!
//! This module does blocking HTTP and must run on a plain thread, never on an async worker.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;

use crate::features::entities::{EntityHistory, entity_vectors};
use crate::features::{FeatureValues, StepResult};
use crate::series::Labels;

/// Points per series asked for in one `query_range`, under Prometheus's limit of 11,000.
pub(crate) const MAX_POINTS_PER_QUERY: usize = 10_000;

/// The largest answer body read for one chunk.
const MAX_BODY_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("cannot read {what} {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ca_file {0}")]
    BadCertificate(String),
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error("request failed after {attempts} attempts: {last}")]
    Request { attempts: u32, last: String },
    #[error("answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("answered an unreadable body: {0}")]
    Body(String),
    #[error("query `{query}` failed: {error_type}: {error}")]
    Query {
        query: String,
        error_type: String,
        error: String,
    },
    #[error("query `{query}` answered a {result_type}, not a matrix")]
    NotMatrix { query: String, result_type: String },
    #[error("no complete feature vector in the backfilled range")]
    NoData,
}

/// How to reach Prometheus; resolved from `[source]`.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub url: String,
    pub bearer_token_file: Option<PathBuf>,
    pub basic_auth_user: Option<String>,
    pub basic_auth_password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    pub retries: u32,
    /// The first retry's wait; each next one doubles it.
    pub backoff: Duration,
    pub max_points: usize,
}

impl ClientOptions {
    pub(crate) fn from_config(source: &crate::config::SourceConfig) -> ClientOptions {
        ClientOptions {
            url: source.prometheus_url.clone(),
            bearer_token_file: source.bearer_token_file.clone(),
            basic_auth_user: source.basic_auth_user.clone(),
            basic_auth_password_file: source.basic_auth_password_file.clone(),
            ca_file: source.ca_file.clone(),
            timeout: source.query_timeout,
            retries: source.query_retries,
            backoff: Duration::from_millis(500),
            max_points: MAX_POINTS_PER_QUERY,
        }
    }
}

/// A blocking `query_range` client.
pub struct PrometheusClient {
    endpoint: String,
    agent: reqwest::blocking::Client,
    authorization: Option<String>,
    retries: u32,
    backoff: Duration,
    max_points: usize,
}

/// One series of a `query_range` answer: its labels and its `(t_ms, value)` points.
pub(crate) type RangeSeries = (Labels, Vec<(i64, f64)>);

#[derive(Deserialize)]
struct QueryRangeAnswer {
    status: String,
    #[serde(default)]
    data: Option<QueryRangeData>,
    #[serde(default, rename = "errorType")]
    error_type: String,
    #[serde(default)]
    error: String,
}

#[derive(Deserialize)]
struct QueryRangeData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<MatrixSeries>,
}

#[derive(Deserialize)]
struct MatrixSeries {
    metric: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, PrometheusError> {
    std::fs::read(path).map_err(|source| PrometheusError::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })
}

impl PrometheusClient {
    /// Builds the client, reading the token, password and CA files once.
    pub fn new(options: &ClientOptions) -> Result<PrometheusClient, PrometheusError> {
        let authorization = match (&options.bearer_token_file, &options.basic_auth_user) {
            (Some(path), _) => {
                let token = read_file("bearer_token_file", path)?;
                Some(format!("Bearer {}", String::from_utf8_lossy(&token).trim()))
            }
            (None, Some(user)) => {
                let password = match &options.basic_auth_password_file {
                    Some(path) => {
                        String::from_utf8_lossy(&read_file("basic_auth_password_file", path)?)
                            .trim_end_matches(['\n', '\r'])
                            .to_owned()
                    }
                    None => String::new(),
                };
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Some(format!("Basic {encoded}"))
            }
            (None, None) => None,
        };
        let roots = match &options.ca_file {
            Some(path) => {
                let pem = read_file("ca_file", path)?;
                crate::http::pem_roots(path, &pem).map_err(PrometheusError::BadCertificate)?
            }
            None => crate::http::mozilla_roots(),
        };
        let agent = crate::http::client_builder(roots)
            .timeout(options.timeout)
            .build()
            .map_err(|e| PrometheusError::Client(e.to_string()))?;
        Ok(PrometheusClient {
            endpoint: format!("{}/api/v1/query_range", options.url.trim_end_matches('/')),
            agent,
            authorization,
            retries: options.retries,
            backoff: options.backoff,
            max_points: options.max_points.max(1),
        })
    }

    /// `query_range` of `query` over one chunk, `[start_ms, end_ms]` at `step_ms`, `__name__`
    /// kept as Prometheus answered it.
    fn query_chunk(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<RangeSeries>, PrometheusError> {
        let form = [
            ("query", query.to_owned()),
            ("start", seconds(start_ms)),
            ("end", seconds(end_ms)),
            ("step", seconds(step_ms)),
        ];
        let mut attempt = 0;
        let body = loop {
            attempt += 1;
            let mut request = self.agent.post(&self.endpoint).form(&form);
            if let Some(auth) = &self.authorization {
                request = request.header("Authorization", auth);
            }
            let retryable = match request.send() {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let text = read_body(response);
                    match (status, text) {
                        // Prometheus answers 400/422 with a JSON error body: parse it for the reason
                        (200 | 400 | 422, Ok(text)) => break text,
                        (429 | 500..=599, Ok(text)) => {
                            format!("answered {status}: {}", snippet(&text))
                        }
                        (_, Ok(text)) => {
                            return Err(PrometheusError::Status {
                                status,
                                body: snippet(&text),
                            });
                        }
                        (_, Err(e)) => format!("answered {status} with an unreadable body: {e}"),
                    }
                }
                Err(e) => error_chain(&e),
            };
            if attempt > self.retries {
                return Err(PrometheusError::Request {
                    attempts: attempt,
                    last: retryable,
                });
            }
            let wait = self.backoff * 2u32.saturating_pow(attempt - 1);
            tracing::warn!(endpoint = %self.endpoint, attempt, error = %retryable, wait_ms = wait.as_millis() as u64, "query_range failed; retrying");
            std::thread::sleep(wait);
        };
        parse_matrix(query, &body)
    }
}

/// An error with its causes: reqwest's own text names only the URL ("error sending request
/// for url …"); what went wrong (refused, timed out, a certificate) is in its sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A body as text, refusing one larger than [`MAX_BODY_BYTES`].
fn read_body(response: reqwest::blocking::Response) -> Result<String, String> {
    let mut body = Vec::new();
    response
        .take(MAX_BODY_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    if body.len() as u64 > MAX_BODY_BYTES {
        return Err(format!("larger than {} MiB", MAX_BODY_BYTES >> 20));
    }
    String::from_utf8(body).map_err(|e| e.to_string())
}

/// Parses a `query_range` answer body.
fn parse_matrix(query: &str, body: &str) -> Result<Vec<RangeSeries>, PrometheusError> {
    let answer: QueryRangeAnswer = serde_json::from_str(body)
        .map_err(|e| PrometheusError::Body(format!("{e}: {}", snippet(body))))?;
    if answer.status != "success" {
        return Err(PrometheusError::Query {
            query: query.to_owned(),
            error_type: answer.error_type,
            error: answer.error,
        });
    }
    let data = answer
        .data
        .ok_or_else(|| PrometheusError::Body("a success without data".into()))?;
    if data.result_type != "matrix" {
        return Err(PrometheusError::NotMatrix {
            query: query.to_owned(),
            result_type: data.result_type,
        });
    }
    let mut out = Vec::with_capacity(data.result.len());
    for series in data.result {
        let labels =
            Labels::from_pairs(series.metric.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut points = Vec::with_capacity(series.values.len());
        for (t, v) in series.values {
            let value: f64 = v
                .parse()
                .map_err(|_| PrometheusError::Body(format!("`{v}` is not a sample value")))?;
            points.push(((t * 1000.0).round() as i64, value));
        }
        out.push((labels, points));
    }
    Ok(out)
}

fn snippet(body: &str) -> String {
    let line = body.trim().replace('\n', " ");
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// Seconds with millisecond precision, as the API takes them.
fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// Cuts `[start_ms, end_ms]` at `step_ms` into ranges of at most `max_points` steps each,
/// sharing no step.
pub(crate) fn chunks(
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    max_points: usize,
) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    if step_ms <= 0 || end_ms < start_ms {
        return out;
    }
    let span = (max_points.max(1) as i64 - 1) * step_ms;
    let mut s = start_ms;
    while s <= end_ms {
        let e = (s + span).min(end_ms);
        out.push((s, e));
        s = e + step_ms;
    }
    out
}

/// One model's backfill: features (name, expression) in the model's order.
pub struct BackfillRequest<'a> {
    pub model: &'a str,
    pub features: &'a [(String, String)],
    pub step_ms: i64,
    /// First and last step, both multiples of `step_ms`.
    pub start_ms: i64,
    pub end_ms: i64,
}

/// What a backfill brought: the per-entity history and how it went.
pub struct Backfill {
    pub history: EntityHistory,
    /// Complete vectors (rows without a gap).
    pub rows: usize,
    pub chunks: usize,
}

/// Backfills one model's features into an [`EntityHistory`] of `max_rows` rows per entity and at
/// most `max_entities` entities, logging progress per chunk.
pub fn backfill(
    client: &PrometheusClient,
    request: &BackfillRequest<'_>,
    max_rows: usize,
    max_entities: usize,
) -> Result<Backfill, PrometheusError> {
    let started = Instant::now();
    let ranges = chunks(
        request.start_ms,
        request.end_ms,
        request.step_ms,
        client.max_points,
    );
    let total = ranges.len() * request.features.len();
    let nf = request.features.len();
    let mut history = EntityHistory::new(nf, max_rows, max_entities);
    let (mut done, mut rows) = (0, 0);
    let indices: Vec<usize> = (0..nf).collect();
    for &(s, e) in &ranges {
        // every feature's answer for this chunk, then the vectors step by step
        let mut answers: Vec<Vec<RangeSeries>> = Vec::with_capacity(nf);
        for (_, expr) in request.features {
            answers.push(client.query_chunk(expr, s, e, request.step_ms)?);
            done += 1;
        }
        let mut cursors: Vec<Vec<usize>> = answers.iter().map(|a| vec![0; a.len()]).collect();
        let mut t = s;
        while t <= e {
            let values: Vec<Option<FeatureValues>> = answers
                .iter()
                .zip(cursors.iter_mut())
                .map(|(series, cursor)| {
                    let mut at_t = Vec::new();
                    for ((labels, points), c) in series.iter().zip(cursor.iter_mut()) {
                        while *c < points.len() && points[*c].0 < t {
                            *c += 1;
                        }
                        if let Some(&(pt, v)) = points.get(*c)
                            && pt == t
                        {
                            at_t.push((labels.clone(), v));
                        }
                    }
                    Some(at_t)
                })
                .collect();
            let vectors = entity_vectors(&StepResult { t_ms: t, values }, &indices);
            rows += vectors.len();
            history.push(t, &vectors);
            t += request.step_ms;
        }
        tracing::info!(
            model = request.model,
            chunks_done = done,
            chunks_total = total,
            rows,
            "backfill progress"
        );
    }
    tracing::info!(
        model = request.model,
        rows,
        chunks = total,
        seconds = started.elapsed().as_secs_f64(),
        "backfill done"
    );
    if rows == 0 {
        return Err(PrometheusError::NoData);
    }
    Ok(Backfill {
        history,
        rows,
        chunks: total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stay_under_the_limit_and_share_no_step() {
        let step = 60_000;
        let end = 7 * 86_400_000;
        let start = step;
        let c = chunks(start, end, step, 1_000);
        assert_eq!(c.len(), 11, "10,080 steps in chunks of 1,000");
        assert_eq!(c[0], (start, start + 999 * step));
        assert!(c.windows(2).all(|w| w[1].0 == w[0].1 + step));
        assert_eq!(c.last().map(|l| l.1), Some(end));
        let points: i64 = c.iter().map(|(s, e)| (e - s) / step + 1).sum();
        assert_eq!(points, 10_080);
        assert!(c.iter().all(|(s, e)| (e - s) / step < 1_000));
        assert_eq!(chunks(0, 0, step, 10), [(0, 0)]);
        assert!(chunks(10, 0, step, 10).is_empty());
    }

    #[test]
    fn parses_matrices_and_errors() {
        let ok = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"up","instance":"a"},"values":[[1700000000,"1"],[1700000060.5,"NaN"]]}]}}"#;
        let m = parse_matrix("up", ok).expect("matrix");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].0.get("instance"), Some("a"));
        assert_eq!(m[0].1[0], (1_700_000_000_000, 1.0));
        assert_eq!(m[0].1[1].0, 1_700_000_060_500);
        assert!(m[0].1[1].1.is_nan());
        let err = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        let e = parse_matrix("x(", err).expect_err("error").to_string();
        assert!(
            e.contains("bad_data") && e.contains("parse error") && e.contains("x("),
            "{e}"
        );
        let e = parse_matrix("x", "<html>oops</html>")
            .expect_err("garbage")
            .to_string();
        assert!(e.contains("unreadable") && e.contains("oops"), "{e}");
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(matches!(
            parse_matrix("x", vector),
            Err(PrometheusError::NotMatrix { .. })
        ));
    }

    #[test]
    fn seconds_keep_milliseconds() {
        assert_eq!(seconds(1_700_000_000_500), "1700000000.500");
        assert_eq!(seconds(60_000), "60.000");
    }

    #[test]
    fn auth_and_ca_files_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = |f: &dyn Fn(&mut ClientOptions)| {
            let mut o = ClientOptions {
                url: "http://127.0.0.1:1".into(),
                bearer_token_file: None,
                basic_auth_user: None,
                basic_auth_password_file: None,
                ca_file: None,
                timeout: Duration::from_secs(1),
                retries: 0,
                backoff: Duration::from_millis(1),
                max_points: 10,
            };
            f(&mut o);
            o
        };
        let token = dir.path().join("token");
        std::fs::write(&token, "abc\n").expect("write");
        let c = PrometheusClient::new(&options(&|o| o.bearer_token_file = Some(token.clone())))
            .expect("client");
        assert_eq!(c.authorization.as_deref(), Some("Bearer abc"));
        let password = dir.path().join("password");
        std::fs::write(&password, "s3cret\n").expect("write");
        let c = PrometheusClient::new(&options(&|o| {
            o.basic_auth_user = Some("prom".into());
            o.basic_auth_password_file = Some(password.clone());
        }))
        .expect("client");
        // base64("prom:s3cret")
        assert_eq!(c.authorization.as_deref(), Some("Basic cHJvbTpzM2NyZXQ="));
        let missing = dir.path().join("missing");
        let e = PrometheusClient::new(&options(&|o| o.ca_file = Some(missing.clone())))
            .err()
            .expect("missing CA file refused")
            .to_string();
        assert!(e.contains("ca_file") && e.contains("missing"), "{e}");
        let e = PrometheusClient::new(&options(&|o| o.ca_file = Some(token.clone())))
            .err()
            .expect("a file without certificates refused")
            .to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn an_unreachable_prometheus_is_retried_then_reported() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let client = PrometheusClient::new(&ClientOptions {
            url: format!("http://127.0.0.1:{port}"),
            bearer_token_file: None,
            basic_auth_user: None,
            basic_auth_password_file: None,
            ca_file: None,
            timeout: Duration::from_secs(2),
            retries: 2,
            backoff: Duration::from_millis(10),
            max_points: 10,
        })
        .expect("client");
        let e = client
            .query_chunk("up", 0, 60_000, 60_000)
            .expect_err("nothing listens");
        assert!(
            matches!(e, PrometheusError::Request { attempts: 3, .. }),
            "{e}"
        );
    }
}
