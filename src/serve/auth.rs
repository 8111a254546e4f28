//! Bearer-token authentication, on when `[server] bearer_token_file` is set.
//!
//! One middleware, [`require_token`], wraps the whole router, so that one function
//! ([`open_without_token`]) decides for every path, known or not, which ones answer without a
//! token: the probes, because kubelet's probes carry none (`/-/healthy`, `/-/ready`, and KServe's
//! health endpoints: V1 `/` and `/v1/models/{name}`, V2 `/v2/health/{live,ready}` and
//! `/v2/models/{name}/ready`), and `/metrics` when `metrics_open`. Every other request needs
//! `Authorization: Bearer <token>`; without it, or with another token, it gets 401, a JSON
//! reason, `WWW-Authenticate: Bearer`, and a count in `canopy_http_unauthorized_total{reason}`.
//! An unknown path without the token is 401 too, as in Prometheus: nothing about the routes is
//! told to a client that cannot use them.
//!
//! The token lives in a file (a mounted Secret). [`TokenFile::refresh`] re-reads it; the server's
//! watcher calls it every second, so a rotated Secret is in use about a second after kubelet
//! writes it. A request only loads the current token from an `ArcSwap` and compares it in
//! constant time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("config key `server.bearer_token_file`: cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "config key `server.bearer_token_file`: {path} is empty: write the token into it (a trailing newline is fine)"
    )]
    Empty { path: PathBuf },
}

/// The token file and the token last read from it.
#[derive(Debug)]
pub(crate) struct TokenFile {
    path: PathBuf,
    token: ArcSwap<Vec<u8>>,
    /// The last refresh failed; set while it keeps failing, so that it is logged once.
    failing: AtomicBool,
}

/// The token in a file: its content without surrounding whitespace (a Secret written with
/// `echo` or from a text file ends in a newline), as Prometheus reads `credentials_file`.
fn read_token(path: &Path) -> Result<Vec<u8>, TokenError> {
    let bytes = std::fs::read(path).map_err(|source| TokenError::Read {
        path: path.to_owned(),
        source,
    })?;
    let token = bytes.trim_ascii();
    if token.is_empty() {
        return Err(TokenError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(token.to_vec())
}

impl TokenFile {
    /// Reads the token: an unreadable or empty file is a configuration error at start.
    pub(crate) fn load(path: &Path) -> Result<TokenFile, TokenError> {
        Ok(TokenFile {
            token: ArcSwap::from_pointee(read_token(path)?),
            path: path.to_owned(),
            failing: AtomicBool::new(false),
        })
    }

    /// Re-reads the file and puts a changed token in use. A file that has become unreadable or
    /// empty keeps the last token in use (a Secret being rewritten, a volume remounting), logged
    /// once until it is readable again.
    pub(crate) fn refresh(&self) {
        match read_token(&self.path) {
            Ok(token) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(path = %self.path.display(), "the bearer token file is readable again");
                }
                if **self.token.load() != token {
                    self.token.store(Arc::new(token));
                    tracing::info!(path = %self.path.display(), "the bearer token file changed: the new token is in use");
                }
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "the bearer token file cannot be re-read: the last token read stays in use");
                }
            }
        }
    }

    /// Whether `presented` is the token, in time that does not depend on where they differ.
    fn accepts(&self, presented: &[u8]) -> bool {
        self.token.load().as_slice().ct_eq(presented).into()
    }
}

/// What the middleware needs: the token, and whether `/metrics` is open.
#[derive(Clone, Debug)]
pub(crate) struct Access {
    pub(crate) token: Arc<TokenFile>,
    pub(crate) metrics_open: bool,
}

/// Whether a request may be answered without the token: the probes, and `/metrics` when open.
/// Only reads (GET, HEAD): a probe never writes.
pub(crate) fn open_without_token(method: &Method, path: &str, metrics_open: bool) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    let one_segment = |s: &str| !s.is_empty() && !s.contains('/');
    match path {
        "/-/healthy" | "/-/ready" | "/" | "/v2/health/live" | "/v2/health/ready" => true,
        "/metrics" => metrics_open,
        _ => {
            // model readiness: V2 `/v2/models/{name}/ready`, V1 `/v1/models/{name}`
            path.strip_prefix("/v2/models/")
                .and_then(|rest| rest.strip_suffix("/ready"))
                .is_some_and(one_segment)
                || path.strip_prefix("/v1/models/").is_some_and(one_segment)
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case, as RFC 7235
/// has it); `None` when there is no such header.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, token) = value.split_at(space);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| token.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// The middleware: passes the request on when it is open or carries the token, else 401.
pub(crate) async fn require_token(
    State(access): State<Access>,
    request: Request,
    next: Next,
) -> Response {
    if open_without_token(request.method(), request.uri().path(), access.metrics_open) {
        return next.run(request).await;
    }
    // A refused request's body is never read, so the connection cannot carry another request:
    // say so (`Connection: close`), or a client that reuses it races the server closing it.
    let unread_body = request.body().size_hint().exact() != Some(0);
    match bearer(request.headers()) {
        Some(token) if access.token.accepts(token) => next.run(request).await,
        Some(_) => unauthorized(
            "invalid",
            "the bearer token is not the one configured",
            r#"Bearer realm="canopy", error="invalid_token""#,
            unread_body,
        ),
        None => unauthorized(
            "missing",
            "authentication required: send Authorization: Bearer <token>",
            r#"Bearer realm="canopy""#,
            unread_body,
        ),
    }
}

fn unauthorized(
    reason: &'static str,
    message: &str,
    challenge: &'static str,
    close: bool,
) -> Response {
    metrics::counter!("canopy_http_unauthorized_total", "reason" => reason).increment(1);
    let mut response = (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response();
    if close {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probes_are_open_and_everything_else_needs_the_token() {
        let get = Method::GET;
        for path in [
            "/-/healthy",
            "/-/ready",
            "/",
            "/v2/health/live",
            "/v2/health/ready",
            "/v2/models/anomaly-detector/ready",
            "/v1/models/anomaly-detector",
        ] {
            assert!(open_without_token(&get, path, false), "{path}");
            assert!(open_without_token(&Method::HEAD, path, false), "{path}");
        }
        for path in [
            "/metrics",
            "/api/v1/write",
            "/api/v1/series",
            "/api/v1/features/cpu",
            "/v1/models",
            "/v1/models/",
            "/v1/models/a/b",
            "/v2",
            "/v2/models/anomaly-detector",
            "/v2/models//ready",
            "/v2/models/a/b/ready",
            "/v2/models/anomaly-detector/infer",
            "/-/healthy/x",
            "/nope",
        ] {
            assert!(!open_without_token(&get, path, false), "{path}");
        }
        assert!(open_without_token(&get, "/metrics", true));
        assert!(!open_without_token(&Method::POST, "/", true));
        assert!(!open_without_token(
            &Method::POST,
            "/v1/models/anomaly-detector",
            true
        ));
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().expect("header value"));
            h
        };
        assert_eq!(bearer(&headers("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer(&headers("bearer  abc ")), Some(&b"abc"[..]));
        assert_eq!(bearer(&headers("Basic YTpi")), None);
        assert_eq!(bearer(&headers("Bearer")), None);
        assert_eq!(bearer(&headers("Bearer ")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn the_token_is_trimmed_refreshed_and_kept_when_the_file_breaks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").expect("write");
        let file = TokenFile::load(&path).expect("token");
        assert!(file.accepts(b"s3cret"));
        assert!(!file.accepts(b"s3cret\n") && !file.accepts(b"s3cre") && !file.accepts(b""));
        std::fs::write(&path, "rotated\r\n").expect("write");
        file.refresh();
        assert!(file.accepts(b"rotated") && !file.accepts(b"s3cret"));
        // emptied, then removed: the last token stays
        std::fs::write(&path, "\n").expect("write");
        file.refresh();
        std::fs::remove_file(&path).expect("remove");
        file.refresh();
        assert!(file.accepts(b"rotated"));
        std::fs::write(&path, "back").expect("write");
        file.refresh();
        assert!(file.accepts(b"back"));
        // at start, the same problems are errors that name the key
        std::fs::write(&path, " \n").expect("write");
        let e = TokenFile::load(&path).expect_err("empty").to_string();
        assert!(
            e.contains("server.bearer_token_file") && e.contains("empty"),
            "{e}"
        );
        let e = TokenFile::load(&dir.path().join("missing"))
            .expect_err("missing")
            .to_string();
        assert!(
            e.contains("server.bearer_token_file") && e.contains("missing"),
            "{e}"
        );
    }
}
